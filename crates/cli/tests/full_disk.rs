//! A run whose disk fills up (a small tmpfs): `elab train` fails naming the file it could not
//! write, keeps every record it reported saved, and, copied to a disk with room, resumes to the
//! records and snapshots of a run that never ran out of space; an export that fills it fails
//! naming the file and leaves the previous export whole. Needs root (to mount the tmpfs):
//! skipped with a message elsewhere, a failure when ELAB_NO_SKIP is set (CI runs as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use elab_job::{RunDir, read_evals};

const JOB: &str = r#"
seed = 3
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 300
val_size = 100
[model]
n_layer = 1
d_model = 32
n_head = 2
[train]
steps = 400
batch_size = 32
lr = 3e-3
warmup_steps = 0
snapshots = "every:50"
[eval]
every = 40
"#;

/// A tmpfs of `kib` KiB at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: usize) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output();
        let mounted = out.as_ref().is_ok_and(|o| o.status.success());
        let why = match &out {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        if !skip_unless(
            mounted,
            &format!("cannot mount a tmpfs (needs root): {why}"),
        ) {
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn train(job: &Path, out: &Path) -> std::process::Output {
    run(elab()
        .arg("train")
        .arg(job)
        .arg("--out")
        .arg(out)
        .arg("--backend")
        .arg("cpu"))
}

#[test]
fn a_full_disk_names_the_file_keeps_the_records_and_resumes_elsewhere_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, JOB).unwrap();
    let reference = tmp.path().join("reference");
    let out = train(&job, &reference);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Room for the checkpoints and the first snapshots: the disk fills mid-run (at step 256
    // of 400 when written), on a checkpoint.
    let Some(disk) = Tmpfs::mount(&tmp.path().join("small"), 900) else {
        return;
    };
    let full = disk.0.join("run");
    let out = train(&job, &full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the run fitted in the tmpfs: make it smaller"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains(&full.display().to_string()),
        "the failing file is not named: {stderr}"
    );
    let saved = read_evals(&RunDir::new(&full).evals()).unwrap();
    assert!(
        !saved.is_empty(),
        "nothing was saved before the disk filled"
    );

    // Moved to a disk with room (as a user would: cp -a), it resumes and finishes.
    let moved = tmp.path().join("moved");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&full)
        .arg(&moved)
        .status()
        .unwrap();
    assert!(cp.success());
    drop(disk);
    let out = train(&job, &moved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (want, got) = (
        read_evals(&RunDir::new(&reference).evals()).unwrap(),
        read_evals(&RunDir::new(&moved).evals()).unwrap(),
    );
    // Every row saved before the disk filled is still there, and the run ends as the reference.
    for row in &saved {
        assert!(
            got.iter()
                .any(|r| r.step == row.step && r.split == row.split)
        );
    }
    assert_bitwise_rows(&want, &got, "resumed run");
    let (want, got) = (
        snapshot_tensors(&RunDir::new(&reference)),
        snapshot_tensors(&RunDir::new(&moved)),
    );
    assert!(!want.is_empty());
    assert!(got == want, "the snapshots differ from the reference run's");
}

/// Every file under `dir` (relative path -> bytes).
fn files(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn an_export_that_fills_the_disk_names_the_file_and_leaves_the_previous_export_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| t);
    let sweeps = tmp.path().join("sweeps");
    let out = run(&mut sweep_cmd(&config, &sweeps));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep = sweeps.join("smoke");

    // Room for one export (about 0.8 MB), not for a second one beside it.
    let Some(disk) = Tmpfs::mount(&tmp.path().join("small"), 1200) else {
        return;
    };
    let results = disk.0.join("results");
    let export = || run(elab().arg("export").arg(&sweep).arg("--out").arg(&results));
    let first = export();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = files(&results);
    assert!(before.contains_key(Path::new("report.html")));

    let second = export();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second export fitted: make the tmpfs smaller"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains(&disk.0.display().to_string()),
        "the failing file is not named: {stderr}"
    );
    // The previous export, whole and unchanged; nothing half-written left beside it.
    assert!(files(&results) == before, "the previous export changed");
    let beside: Vec<String> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "results" && !n.ends_with(".lock"))
        .collect();
    assert!(beside.is_empty(), "left beside the export: {beside:?}");
}
