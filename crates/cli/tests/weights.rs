//! A sweep with `[train] snapshots` keeps each run's weights along training, and
//! `elab export --weights` puts them in the export with an index; a plain export does not.

mod common;

use common::*;

#[test]
fn export_weights_lists_every_snapshot_of_every_job() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        assert!(t.contains("warmup_steps = 10\n"));
        t.replacen(
            "warmup_steps = 10\n",
            "warmup_steps = 10\nsnapshots = \"every:60\"\n",
            1,
        )
    });
    let sweeps = tmp.path().join("sweeps");
    let out = run(&mut sweep_cmd(&config, &sweeps));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sweep = sweeps.join("smoke");

    let plain = tmp.path().join("plain");
    let out = run(elab().arg("export").arg(&sweep).arg("--out").arg(&plain));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!plain.join("weights").exists());

    let with = tmp.path().join("with");
    let out = run(elab()
        .arg("export")
        .arg(&sweep)
        .arg("--out")
        .arg(&with)
        .arg("--weights"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("12 snapshots of 4 jobs"), "{stdout}");

    let index = std::fs::read_to_string(with.join("weights/index.csv")).unwrap();
    let mut lines = index.lines();
    assert_eq!(lines.next(), Some("job,step,path"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 12);
    let mut jobs: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    jobs.dedup();
    assert_eq!(jobs.len(), 4);
    for row in &rows {
        let [job, step, path] = [row[0], row[1], row[2]];
        assert!(["0", "60", "120"].contains(&step), "{row:?}");
        let exported = std::fs::read(with.join(path)).unwrap();
        let step: u64 = step.parse().unwrap();
        let kept = std::fs::read(
            sweep
                .join("jobs")
                .join(job)
                .join(format!("snapshots/step-{step:09}.safetensors")),
        )
        .unwrap();
        assert!(exported == kept, "{path} differs from the run's snapshot");
        // A safetensors file: an 8-byte little-endian header length, then the JSON header.
        let n = u64::from_le_bytes(exported[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&exported[8..8 + n]).unwrap();
        assert!(header.contains(&format!("\"job\":\"{job}\"")), "{header}");
    }
}
