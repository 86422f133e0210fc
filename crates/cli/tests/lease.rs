//! Leases beside the locks: a fresh lease of another node keeps `elab train` off a run and
//! `elab resume` off a sweep, whatever flock says (it reaches one node only on some cluster
//! filesystems).

mod common;
use common::*;

use elab_job::unix_now;

/// A lease as a process on another node keeps it: refreshed 5 s ago.
fn foreign_lease(path: &std::path::Path) {
    let now = unix_now();
    let lease = serde_json::json!({
        "host": "node-elsewhere-17",
        "pid": 4242,
        "started": now - 600.0,
        "heartbeat": now - 5.0,
    });
    std::fs::write(path, lease.to_string()).unwrap();
}

fn assert_refused(out: &std::process::Output, lease: &std::path::Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for part in [
        lease.display().to_string(),
        "host node-elsewhere-17".to_string(),
        "pid 4242".to_string(),
    ] {
        assert!(stderr.contains(&part), "{part:?} not in {stderr}");
    }
}

#[test]
fn a_fresh_lease_of_another_node_keeps_a_worker_off_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, "[task]\nkind = \"modular\"\n").unwrap();
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let lease = run_dir.join("lease.json");
    foreign_lease(&lease);
    let out = run(elab()
        .arg("train")
        .arg(&job)
        .arg("--out")
        .arg(&run_dir)
        .arg("--backend")
        .arg("cpu"));
    assert_refused(&out, &lease);
    assert!(!run_dir.join("evals.jsonl").exists(), "nothing trained");
    assert!(!run_dir.join("spec.toml").exists(), "nothing claimed");
}

#[test]
fn a_fresh_lease_of_another_node_keeps_resume_off_its_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweeps/smoke");
    std::fs::create_dir_all(&sweep).unwrap();
    smoke_config(&sweep, "config.toml", |t| t);
    let lease = sweep.join("lease.json");
    foreign_lease(&lease);
    let out = run(elab().arg("resume").arg(&sweep));
    assert_refused(&out, &lease);
    assert!(!sweep.join("plan.json").exists(), "nothing planned");
    assert!(!sweep.join("jobs").exists(), "nothing run");
}
