//! Crash-safe file writes. A reader sees the old file or the new one, never a torn one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: temporary file (a unique name in the same directory,
/// so concurrent writers never share one), fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Removes the temporary files [`write_atomic`] leaves in `dir` when a process dies between
/// creating one and renaming it (`.<name>.<random>.tmp`); returns how many. Only for a
/// directory whose writers are known to be gone (the caller holds its lock): a live writer's
/// temporary file would be taken from under it.
pub fn remove_temps(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The directory holding `path`: `.` for a bare file name (whose `parent()` is `""`).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The bytes of `path`, or `None` when there is no such file; any other failure is an error
/// naming the file (for the records whose absence means "not yet", never their damage).
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// Appends one line and fsyncs it before returning: an appended line is saved. When the
/// append creates the file, its directory is fsynced too: until then the new name is not
/// durable, and a crash could lose the file with the line reported saved (the first record
/// of a run, the first attempt of a job).
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let open = |create_new| {
        OpenOptions::new()
            .append(true)
            .create_new(create_new)
            .open(path)
    };
    let (mut file, created) = match open(true) {
        Ok(file) => (file, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (open(false)?, false),
        Err(e) => return Err(e),
    };
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()?;
    if created {
        sync_dir(parent_dir(path))?;
    }
    Ok(())
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::DIR_SYNCS.with(|n| n.borrow_mut().push(dir.to_path_buf()));
    File::open(dir)?.sync_all()
}

/// An exclusive advisory lock held until the returned file is dropped or the process dies,
/// whichever comes first: it is how a live worker or scheduler is told apart from a dead one.
/// Returns `Ok(None)` if another process holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// [`try_lock`], waiting for the holder to release it instead of returning `None`.
pub fn lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporaries_of_killed_writes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        write_atomic(&path, b"{}").unwrap();
        // What a write killed before its rename leaves, beside files that only look alike.
        let orphan = tempfile::Builder::new()
            .prefix(".summary.json.")
            .suffix(".tmp")
            .tempfile_in(dir.path())
            .unwrap()
            .keep()
            .unwrap()
            .1;
        std::fs::write(dir.path().join("notes.tmp"), b"mine").unwrap();
        std::fs::create_dir(dir.path().join(".cache.tmp")).unwrap();
        assert_eq!(remove_temps(dir.path()).unwrap(), 1);
        assert!(!orphan.exists());
        assert!(path.exists() && dir.path().join("notes.tmp").exists());
        assert!(dir.path().join(".cache.tmp").is_dir());
        assert_eq!(remove_temps(&dir.path().join("absent")).unwrap(), 0);
    }
    use std::fs;

    thread_local! {
        /// The directories this thread fsynced (no crash can be simulated in a test: this is
        /// what makes a new file survive one).
        pub(super) static DIR_SYNCS: std::cell::RefCell<Vec<std::path::PathBuf>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }

    #[test]
    fn an_append_that_creates_its_file_syncs_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("evals.jsonl");
        DIR_SYNCS.with(|n| n.borrow_mut().clear());
        append_line(&p, "one").unwrap();
        assert_eq!(DIR_SYNCS.with(|n| n.take()), vec![dir.path().to_path_buf()]);
        // Appending to an existing file adds no name: no directory sync.
        append_line(&p, "two").unwrap();
        assert!(DIR_SYNCS.with(|n| n.take()).is_empty());
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn atomic_write_replaces_and_lock_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let lock = dir.path().join("lock");
        let held = try_lock(&lock).unwrap();
        assert!(held.is_some());
        // flock locks belong to the open file description: a second open is excluded.
        assert!(try_lock(&lock).unwrap().is_none());
        drop(held);
        assert!(try_lock(&lock).unwrap().is_some());
    }

    #[test]
    fn atomic_write_to_a_bare_file_name_in_the_current_directory() {
        // `Path::new("perf.md").parent()` is `Some("")`: the directory sync must use ".".
        assert_eq!(parent_dir(Path::new("perf.md")), Path::new("."));
        assert_eq!(parent_dir(Path::new("docs/perf.md")), Path::new("docs"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.md");
        write_atomic(&p, b"x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
    }
}
