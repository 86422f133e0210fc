//! Where an export lands: the output folder is replaced whole, never updated file by file.
//!
//! ```text
//! results/.<name>.export.lock        flock-ed by the export writing results/<name>
//! results/.<name>.export-new-<pid>/  the folder being written (fsynced before the swap)
//! results/.<name>.export-old-<pid>/  the folder replaced, removed after the swap
//! results/<name>/                    the last complete export, with its marker `.elab-export`
//! ```
//!
//! Updating files in place left those an earlier export made and this one does not (a
//! `phase.csv` from a config with two swept axes, figures of groups since removed) beside the
//! new ones, as if current. So the whole folder is written beside the old one and swapped in
//! by two renames in one directory (old away, new into place): a crash at any instant leaves
//! the old folder or the new one complete, under its name or, between the two renames, under
//! `.export-old-<pid>`, from where the next export puts it back before it starts. Two exports
//! to one folder take turns on the lock file beside it: without it, one could rename the
//! other's folder away mid-swap or remove its half-written new folder as a leftover.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use elab_job::fsio;

/// Marks a folder as an export's own, to be replaced whole by the next export.
pub const MARKER: &str = ".elab-export";

/// What the marker says to someone who finds it.
pub const MARKER_TEXT: &str =
    "written by `elab export` / `elab plot`: the next one replaces this whole folder\n";

/// An output folder that cannot be replaced: not a folder, or a folder with files of someone
/// else's (no export marker, no `report.html`). The CLI exits 2; nothing was written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutDirError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for OutDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for OutDirError {}

/// The output folder of one export, locked, with a fresh folder beside it to write into.
/// Dropped without [`Target::publish`], it removes that folder and leaves the old one as it
/// was.
pub struct Target {
    /// The folder to replace, symlinks and `..` resolved (the swap renames the real folder).
    out: PathBuf,
    /// Where the new folder is written.
    pub new: PathBuf,
    old: PathBuf,
    published: bool,
    /// Held until the swap is over; released when dropped or the process dies.
    _lock: File,
}

impl Target {
    /// Checks that `out` may be replaced, takes its lock (waiting for an export that holds it),
    /// repairs what a killed export left and creates the folder to write into.
    pub fn open(out: &Path) -> anyhow::Result<Self> {
        let out = resolve(out)?;
        check_replaceable(&out)?;
        let (parent, name) = split(&out)?;
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let lock_path = parent.join(format!(".{name}.export.lock"));
        let lock = match fsio::try_lock(&lock_path)
            .with_context(|| format!("locking {}", lock_path.display()))?
        {
            Some(lock) => lock,
            None => {
                // Another export is writing this folder: its snapshot goes in first, then ours.
                eprintln!(
                    "waiting for another export to {} (it holds {})",
                    out.display(),
                    lock_path.display()
                );
                fsio::lock(&lock_path)
                    .with_context(|| format!("locking {}", lock_path.display()))?
            }
        };
        recover(&out, parent, &name)?;
        let pid = std::process::id();
        let new = parent.join(format!(".{name}.export-new-{pid}"));
        let old = parent.join(format!(".{name}.export-old-{pid}"));
        fs::create_dir(&new).with_context(|| format!("creating {}", new.display()))?;
        Ok(Self {
            out,
            new,
            old,
            published: false,
            _lock: lock,
        })
    }

    /// Swaps the new folder in: `files` (relative to it, every one already fsynced, the
    /// [`MARKER`] among them) and their directories are made durable first, so that the folder under the output's name is
    /// complete whenever it is there.
    pub fn publish(mut self, files: &[PathBuf]) -> anyhow::Result<()> {
        let mut dirs = vec![self.new.clone()];
        for rel in files {
            if let Some(dir) = self.new.join(rel).parent()
                && !dirs.iter().any(|d| d == dir)
            {
                dirs.push(dir.to_path_buf());
            }
        }
        for dir in &dirs {
            fsio::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
        }
        let (parent, _) = split(&self.out)?;
        let had_old = match fs::rename(&self.out, &self.old) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("moving {} to {}", self.out.display(), self.old.display())
                });
            }
        };
        if let Err(e) = fs::rename(&self.new, &self.out) {
            // Put the old folder back rather than leave the name empty.
            if had_old {
                let _ = fs::rename(&self.old, &self.out);
            }
            return Err(e).with_context(|| {
                format!("moving {} to {}", self.new.display(), self.out.display())
            });
        }
        self.published = true;
        fsio::sync_dir(parent).with_context(|| format!("syncing {}", parent.display()))?;
        if had_old {
            // The new folder is in place and durable: a failure here only leaves a leftover,
            // which the next export removes.
            let _ = fs::remove_dir_all(&self.old);
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.new);
        }
    }
}

/// `out` made absolute; an existing one with symlinks and `..` resolved.
fn resolve(out: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
    Ok(fs::canonicalize(&abs).unwrap_or(abs))
}

/// The folder holding `out` and `out`'s name.
fn split(out: &Path) -> anyhow::Result<(&Path, String)> {
    match (out.parent(), out.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name.to_string_lossy().into_owned())),
        _ => Err(OutDirError {
            path: out.to_path_buf(),
            reason: "an export replaces its output folder whole, so it must be a folder inside \
                     another (such as results/<name>), not a file system root"
                .into(),
        }
        .into()),
    }
}

/// An output folder may be replaced if it does not exist, is empty, or is an export's (its
/// marker, or a `report.html` that every export, before the marker too, wrote). Anything else
/// could be someone's files that the swap would delete.
fn check_replaceable(out: &Path) -> anyhow::Result<()> {
    let refuse = |reason: &str| -> anyhow::Result<()> {
        Err(OutDirError {
            path: out.to_path_buf(),
            reason: reason.to_string(),
        }
        .into())
    };
    let mut entries = match fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) if out.exists() && !out.is_dir() => {
            return refuse(
                "is not a folder; the output of an export must be a new, empty or earlier \
                 export folder",
            );
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    if entries.next().is_none() || out.join(MARKER).is_file() || out.join("report.html").is_file() {
        return Ok(());
    }
    refuse(&format!(
        "holds files but is not an export folder (no {MARKER}, no report.html), and an export \
         replaces its output folder whole; choose a new, empty or earlier export folder with \
         --out"
    ))
}

/// Undoes what a killed export left beside `out`: put the old folder back if it died between
/// its two renames, and remove its half-written new folder and its old one. Called with the
/// lock held, so none of these belongs to a live export.
fn recover(out: &Path, parent: &Path, name: &str) -> anyhow::Result<()> {
    let new_prefix = format!(".{name}.export-new-");
    let old_prefix = format!(".{name}.export-old-");
    let mut leftovers = Vec::new();
    for entry in fs::read_dir(parent).with_context(|| format!("reading {}", parent.display()))? {
        let entry = entry.with_context(|| format!("reading {}", parent.display()))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let is_old = file_name.starts_with(&old_prefix);
        if (is_old || file_name.starts_with(&new_prefix)) && entry.file_type()?.is_dir() {
            leftovers.push((is_old, entry.path()));
        }
    }
    if !out.exists()
        && let Some((_, old)) = leftovers.iter().find(|(is_old, _)| *is_old)
    {
        // Moved away, and the new folder not yet in place: the old one is complete.
        fs::rename(old, out)
            .with_context(|| format!("moving {} back to {}", old.display(), out.display()))?;
        fsio::sync_dir(parent).with_context(|| format!("syncing {}", parent.display()))?;
    }
    for (_, path) in leftovers.iter().filter(|(_, p)| p.exists()) {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_of_someone_elses_files_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("mine");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("thesis.tex"), "x").unwrap();
        let err = Target::open(&out).err().unwrap();
        let err = err.downcast_ref::<OutDirError>().unwrap();
        assert!(err.to_string().contains("not an export folder"), "{err}");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "nothing written"
        );
        // A file is refused too; an empty folder or an earlier export is replaced.
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(Target::open(&file).is_err());
        fs::write(out.join("report.html"), "<html>").unwrap();
        assert!(Target::open(&out).is_ok());
    }

    #[test]
    fn a_swap_killed_between_its_renames_is_undone_by_the_next_export() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("sweep");
        // What an export killed after moving the old folder away leaves: the old folder under
        // its leftover name, the new one complete beside it, no folder under the name.
        let old = tmp.path().join(".sweep.export-old-4242");
        fs::create_dir(&old).unwrap();
        fs::write(old.join("report.html"), "old").unwrap();
        fs::create_dir(tmp.path().join(".sweep.export-new-4242")).unwrap();
        fs::create_dir(tmp.path().join(".sweep.export-new-4243")).unwrap();
        let target = Target::open(&out).unwrap();
        assert_eq!(fs::read_to_string(out.join("report.html")).unwrap(), "old");
        drop(target);
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".sweep.export.lock", "sweep"]);
    }

    #[test]
    fn an_open_target_holds_the_lock_beside_its_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("sweep");
        let lock = tmp.path().join(".sweep.export.lock");
        let target = Target::open(&out).unwrap();
        // A second export's try fails until the first is over (then it waits, in `open`).
        assert!(fsio::try_lock(&lock).unwrap().is_none());
        fs::write(target.new.join("report.html"), "new").unwrap();
        target.publish(&[PathBuf::from("report.html")]).unwrap();
        assert_eq!(fs::read_to_string(out.join("report.html")).unwrap(), "new");
        let held = fsio::try_lock(&lock).unwrap();
        assert!(held.is_some(), "released after the swap");
    }
}
