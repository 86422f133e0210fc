//! The Slurm executor against a real single-node Slurm cluster (.ci/slurm-up starts one and
//! exports SLURM_CONF). Skipped, with a message, when `sinfo` is missing or not root; failed
//! instead when ELAB_NO_SKIP is set (CI): see `slurm_available`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use elab_job::RunDir;

/// The cluster has a couple of cores: one test at a time, or their tasks queue behind each other.
static CLUSTER: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn slurm_cmd(config: &Path, sweeps: &Path) -> Command {
    let mut cmd = sweep_cmd(config, sweeps);
    cmd.args(["--executor", "slurm"]);
    cmd
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\n{stderr}",
        out.status.code()
    );
    stderr
}

fn submission(sweep: &Path, n: u32) -> serde_json::Value {
    let path = sweep.join(format!("slurm/sub-{n}.json"));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn array_id(sweep: &Path, n: u32) -> String {
    submission(sweep, n)["array_id"]
        .as_str()
        .expect("submitted")
        .to_string()
}

/// Task index -> job id, from the mapping file written before submission.
/// Array task index -> the job ids it trains (a pack; space-separated).
fn mapping(sweep: &Path, n: u32) -> Vec<String> {
    std::fs::read_to_string(sweep.join(format!("slurm/sub-{n}.tasks")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn task_state(task: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-r", "-j", task, "-o", "%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A directory holding a `squeue` that fails as it does when slurmctld is down.
fn broken_squeue(tmp: &Path) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let squeue = bin.join("squeue");
    std::fs::write(
        &squeue,
        "#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller (connect failure)' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&squeue, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// A directory of stand-ins: `sbatch` answers array 4242, `squeue` says every task of it is
/// held (REQUEUE_HOLD), `scontrol` knows no limits.
fn held_slurm(tmp: &Path) -> std::ffi::OsString {
    use std::os::unix::fs::PermissionsExt;
    let bin = tmp.join("held-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, text) in [
        ("sbatch", "#!/bin/sh\necho 4242\n"),
        (
            "squeue",
            "#!/bin/sh\nfor i in 0 1 2 3; do echo \"4242_$i REQUEUE_HOLD JobHeldAdmin\"; done\n",
        ),
        ("scontrol", "#!/bin/sh\nexit 0\n"),
    ] {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[test]
fn held_tasks_end_the_wait_and_status_says_they_need_the_user() {
    // No cluster needed. Before, a held task (REQUEUE_HOLD, SPECIAL_EXIT, `scontrol hold`)
    // counted as active like a pending one, and `elab sweep --executor slurm` waited forever.
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| t);
    let sweeps = tmp.path().join("sweeps");
    let path = held_slurm(tmp.path());
    let log = tmp.path().join("stderr");
    let mut child = slurm_cmd(&config, &sweeps)
        .env("PATH", &path)
        .env("ELAB_SLURM_POLL_SECS", "0.05")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    if !wait_for(Duration::from_secs(120), || {
        child.try_wait().unwrap().is_some()
    }) {
        kill(child.id(), libc::SIGKILL);
        child.wait().unwrap();
        panic!("still waiting for held tasks");
    }
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("scontrol release 4242_0") && stderr.contains("held in Slurm"),
        "{stderr}"
    );
    // Still in the queue: never submitted again, never run here.
    let out = run(slurm_cmd(&config, &sweeps)
        .arg("--detach")
        .env("PATH", &path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to submit"), "{stderr}");
    let out = run(sweep_cmd(&config, &sweeps).env("PATH", &path));
    assert_eq!(out.status.code(), Some(1));
    // `elab status` says who they wait for.
    let out = run(elab()
        .arg("status")
        .arg(sweeps.join("smoke"))
        .env("PATH", &path));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("requeue_hold (held)") && table.contains("scontrol release 4242_0"),
        "{table}"
    );
}

#[test]
fn a_time_limit_within_the_warning_lead_is_refused_before_anything_is_written() {
    // No cluster needed: refused before sbatch, with exit 2 naming both settings. Before, the
    // task was warned as it started, checkpointed, requeued itself, and so on in a loop.
    let tmp = tempfile::tempdir().unwrap();
    let sweeps = tmp.path().join("sweeps");
    let config = smoke_config(tmp.path(), "short.toml", |t| {
        format!("{t}\n[executor.slurm]\ntime = \"2:00\"\n")
    });
    let out = run(&mut slurm_cmd(&config, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("short.toml")
            && stderr.contains("executor.slurm.time")
            && stderr.contains("signal_secs"),
        "{stderr}"
    );
    assert!(!sweeps.exists());
    let config = smoke_config(tmp.path(), "lead.toml", |t| {
        format!("{t}\n[executor.slurm]\nsignal_secs = 600\n")
    });
    let out = run(slurm_cmd(&config, &sweeps).args(["--time", "10"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--time") && stderr.contains("signal_secs (600 s)"),
        "{stderr}"
    );
    assert!(!sweeps.exists());
}

#[test]
fn a_failing_squeue_refuses_a_local_run_of_a_sweep_submitted_to_slurm() {
    // No cluster needed: squeue is a stand-in that fails. Before, the failure read as
    // "nothing queued" and the sweep ran here, beside Slurm tasks that might train the same jobs.
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| t);
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("smoke");
    std::fs::create_dir_all(sweep.join("slurm")).unwrap();
    let submission = serde_json::json!({
        "n": 1, "array_id": "4242", "job_name": "elab-smoke-0a0b0c0d-1",
        "script": "slurm/sub-1.sh", "tasks": "slurm/sub-1.tasks", "jobs": [],
        "submitted": 0.0, "sbatch_args": [],
    });
    std::fs::write(sweep.join("slurm/sub-1.json"), submission.to_string()).unwrap();
    let path = broken_squeue(tmp.path());

    let out = run(sweep_cmd(&config, &sweeps).env("PATH", &path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Unable to contact slurm controller")
            && stderr.contains("was submitted to Slurm")
            && stderr.contains("could be trained twice"),
        "{stderr}"
    );
    let trained: Vec<_> = std::fs::read_dir(sweep.join("jobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|job| job.join("evals.jsonl").exists() || job.join("attempts.jsonl").exists())
        .collect();
    assert!(trained.is_empty(), "jobs ran locally: {trained:?}");

    // A submission whose array id was never recorded is looked up by name: a failing squeue
    // there is an error too, not "never submitted".
    let mut lost = submission.clone();
    lost["array_id"] = serde_json::Value::Null;
    std::fs::write(sweep.join("slurm/sub-1.json"), lost.to_string()).unwrap();
    let out = run(sweep_cmd(&config, &sweeps).env("PATH", &path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Unable to contact slurm controller"),
        "{stderr}"
    );

    // `elab status` still works, showing the recorded tasks with an unknown state.
    let out = run(elab().arg("status").arg(&sweep).env("PATH", &path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_sweep_through_slurm_equals_the_local_executor() {
    if !slurm_available() {
        return;
    }
    let _cluster = lock();
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| t);
    let local = tmp.path().join("local");
    ok(&run(&mut sweep_cmd(&config, &local)));

    let sweeps = tmp.path().join("slurm");
    let stderr = ok(&run(&mut slurm_cmd(&config, &sweeps)));
    assert!(stderr.contains("submitted array"), "{stderr}");
    assert!(stderr.contains("4 done, 0 diverged, 0 failed"), "{stderr}");
    let sweep = sweeps.join("smoke");
    assert_equal_records(&local.join("smoke"), &sweep, 120, 40, 4);

    // The script and the mapping are kept; every job ran once, in its pack's array task (a
    // task per size: its two seeds train as one pack).
    let array = array_id(&sweep, 1);
    let script = std::fs::read_to_string(sweep.join("slurm/sub-1.sh")).unwrap();
    assert!(script.contains("scontrol requeue"), "{script}");
    let packs = mapping(&sweep, 1);
    assert_eq!(packs.len(), 2, "{packs:?}");
    for (task, pack) in packs.iter().enumerate() {
        for (k, id) in pack.split(' ').enumerate() {
            let a = attempts(&sweep.join("jobs").join(id));
            assert_eq!(a.len(), 1, "{a:?}");
            assert_eq!(a[0]["executor"], format!("slurm:{array}_{task}"));
            assert_eq!(a[0]["exit"], 0);
            assert_eq!(a[0]["restart_count"], 0);
            // The task's output is in its first job's directory.
            let out = sweep
                .join("jobs")
                .join(id)
                .join(format!("slurm-{array}_{task}.out"));
            assert_eq!(out.exists(), k == 0, "{}", out.display());
        }
    }

    // Status shows Slurm's view next to the lab's; a rerun submits nothing.
    let out = run(elab().arg("status").arg(&sweep));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("slurm state") && table.contains("completed"),
        "{table}"
    );
    let stderr = ok(&run(&mut slurm_cmd(&config, &sweeps)));
    assert!(stderr.contains("nothing to submit"), "{stderr}");
    assert!(!sweep.join("slurm/sub-2.json").exists());
}

#[test]
fn a_requeued_task_resumes_from_its_checkpoint() {
    if !slurm_available() {
        return;
    }
    let _cluster = lock();
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 1000")
            .replace("every = 40", "every = 50")
            .replace("seed = [0, 1]", "seed = [0]")
            .replace(
                "name = \"s\"\nn_layer = 1\nd_model = 32\nn_head = 4",
                "name = \"s\"\nn_layer = 1\nd_model = 16\nn_head = 2\nd_mlp = 32",
            )
    });
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("smoke");
    let log = std::fs::File::create(tmp.path().join("sweep.err")).unwrap();
    let mut child = slurm_cmd(&config, &sweeps)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    // Once a task has a checkpoint past step 0, requeue it: Slurm kills it and starts it again.
    let mut victim: Option<(usize, PathBuf)> = None;
    assert!(
        wait_for(Duration::from_secs(180), || {
            let Ok(text) = std::fs::read_to_string(sweep.join("slurm/sub-1.tasks")) else {
                return false;
            };
            for (task, id) in text.lines().enumerate() {
                let run = RunDir::new(sweep.join("jobs").join(id));
                if run.checkpoint_step().is_some_and(|s| s > 0) && run.read_summary().is_none() {
                    victim = Some((task, run.path().to_path_buf()));
                    return true;
                }
            }
            false
        }),
        "no task got past its first checkpoint"
    );
    let (task, dir) = victim.unwrap();
    let array = array_id(&sweep, 1);
    let target = format!("{array}_{task}");
    let out = Command::new("scontrol")
        .args(["requeue", &target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scontrol requeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(tmp.path().join("sweep.err")).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("2 done, 0 diverged, 0 failed"), "{stderr}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["resumes"].as_u64().unwrap() >= 1,
        "resumed from its checkpoint, not step 0: {summary}"
    );
    let a = attempts(&dir);
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(a[0]["restart_count"], 0, "{a:?}");
    assert_eq!(
        a[0]["exit"], 75,
        "the worker checkpointed on the signal: {a:?}"
    );
    let last = a.last().unwrap();
    assert_eq!(last["exit"], 0, "{a:?}");
    assert!(
        last["restart_count"].as_u64().unwrap() >= 1,
        "SLURM_RESTART_COUNT recorded: {a:?}"
    );
    assert_eq!(last["executor"], format!("slurm:{target}"));
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
    assert!(log.contains("resumed from checkpoint"), "{log}");

    // Complete, without duplicates, and equal to an uninterrupted local run.
    let local = tmp.path().join("local");
    ok(&run(&mut sweep_cmd(&config, &local)));
    assert_equal_records(&local.join("smoke"), &sweep, 1000, 50, 2);
}

#[test]
fn a_task_warned_of_its_time_limit_checkpoints_requeues_itself_and_resumes() {
    if !slurm_available() {
        return;
    }
    let _cluster = lock();
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        let t = t
            .replace("steps = 120", "steps = 1000")
            .replace("every = 40", "every = 50")
            .replace("seed = [0, 1]", "seed = [0]")
            .replace(
                "name = \"s\"\nn_layer = 1\nd_model = 32\nn_head = 4",
                "name = \"s\"\nn_layer = 1\nd_model = 16\nn_head = 2\nd_mlp = 32",
            );
        format!("{t}\n[executor.slurm]\ntime = \"30:00\"\nsignal_secs = 60\n")
    });
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("smoke");
    let log = std::fs::File::create(tmp.path().join("sweep.err")).unwrap();
    let mut child = slurm_cmd(&config, &sweeps)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    // Once a task has a checkpoint past step 0, warn it as Slurm does `signal_secs` before the
    // time limit: SIGUSR1 to the batch script alone (sbatch --signal=B:USR1@60). Waiting for
    // the real limit would take minutes; this is the same signal to the same process.
    let mut victim: Option<(usize, PathBuf)> = None;
    assert!(
        wait_for(Duration::from_secs(180), || {
            let Ok(text) = std::fs::read_to_string(sweep.join("slurm/sub-1.tasks")) else {
                return false;
            };
            for (task, id) in text.lines().enumerate() {
                let run = RunDir::new(sweep.join("jobs").join(id));
                if run.checkpoint_step().is_some_and(|s| s > 0) && run.read_summary().is_none() {
                    victim = Some((task, run.path().to_path_buf()));
                    return true;
                }
            }
            false
        }),
        "no task got past its first checkpoint"
    );
    let (task, dir) = victim.unwrap();
    let array = array_id(&sweep, 1);
    let target = format!("{array}_{task}");
    let args: Vec<String> =
        serde_json::from_value(submission(&sweep, 1)["sbatch_args"].clone()).unwrap();
    assert!(
        args.contains(&"--signal=B:USR1@60".to_string()) && args.contains(&"--requeue".to_string()),
        "{args:?}"
    );
    let out = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scancel --signal=USR1: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(tmp.path().join("sweep.err")).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("2 done, 0 diverged, 0 failed"), "{stderr}");

    // The worker checkpointed and exited 75; the script requeued its own task; the task ran
    // again, resumed from the checkpoint and finished.
    let a = attempts(&dir);
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(
        (&a[0]["exit"], &a[0]["restart_count"]),
        (&serde_json::json!(75), &serde_json::json!(0)),
        "{a:?}"
    );
    let last = a.last().unwrap();
    assert_eq!(last["exit"], 0, "{a:?}");
    assert!(last["restart_count"].as_u64().unwrap() >= 1, "{a:?}");
    assert_eq!(last["executor"], format!("slurm:{target}"));
    let out = std::fs::read_to_string(dir.join(format!("slurm-{target}.out"))).unwrap();
    assert!(out.contains(&format!("elab: requeueing {target}")), "{out}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["resumes"].as_u64().unwrap() >= 1, "{summary}");
    let log = std::fs::read_to_string(dir.join("train.log")).unwrap();
    assert!(log.contains("resumed from checkpoint"), "{log}");

    // Complete, without duplicates, and equal to an uninterrupted local run.
    let local = tmp.path().join("local");
    ok(&run(&mut sweep_cmd(&config, &local)));
    assert_equal_records(&local.join("smoke"), &sweep, 1000, 50, 2);
}

#[test]
fn a_cancelled_task_is_resubmitted_and_nothing_done_is() {
    if !slurm_available() {
        return;
    }
    let _cluster = lock();
    let tmp = tempfile::tempdir().unwrap();
    // Settings from the sweep file's [executor.slurm]: one task at a time, a job per task.
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        format!(
            "{}\n[executor.slurm]\npartition = \"debug\"\nmax_running = 1\ntime = \"10:00\"\n",
            t.replace("steps = 120", "steps = 400")
                .replace("[sweep]\n", "[sweep]\npack = 1\n")
        )
    });
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("smoke");
    let stderr = ok(&run(slurm_cmd(&config, &sweeps).arg("--detach")));
    assert!(
        stderr.contains("submitted array") && stderr.contains("at most 1 at once"),
        "{stderr}"
    );
    let array = array_id(&sweep, 1);
    let jobs = mapping(&sweep, 1);
    assert_eq!(jobs.len(), 4);
    let sub = submission(&sweep, 1);
    let args: Vec<String> = serde_json::from_value(sub["sbatch_args"].clone()).unwrap();
    assert!(
        args.contains(&"--partition=debug".to_string())
            && args.contains(&"--array=0-3%1".to_string()),
        "{args:?}"
    );

    // A rerun while the tasks are queued or running submits nothing.
    let stderr = ok(&run(slurm_cmd(&config, &sweeps).arg("--detach")));
    assert!(
        stderr.contains("nothing to submit") && stderr.contains("4 already in the queue"),
        "{stderr}"
    );
    assert!(!sweep.join("slurm/sub-2.json").exists());

    // Task 0 finishes; task 1 is cancelled once it runs.
    let victim = format!("{array}_1");
    assert!(
        wait_for(Duration::from_secs(180), || task_state(&victim)
            == "RUNNING"),
        "{victim} never ran"
    );
    assert!(
        sweep
            .join("jobs")
            .join(&jobs[0])
            .join("summary.json")
            .exists(),
        "task 0 finished first"
    );
    let out = Command::new("scancel").arg(&victim).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The rest finish.
    assert!(
        wait_for(Duration::from_secs(180), || (2..4)
            .all(|t| task_state(&format!("{array}_{t}")) == "COMPLETED")),
        "tasks 2 and 3 did not complete"
    );
    assert!(
        wait_for(Duration::from_secs(60), || task_state(&victim)
            == "CANCELLED"),
        "{}",
        task_state(&victim)
    );
    let out = run(elab().arg("status").arg(&sweep));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("cancelled"), "{table}");
    assert!(
        !sweep
            .join("jobs")
            .join(&jobs[1])
            .join("summary.json")
            .exists()
    );

    // The next sweep resubmits the cancelled job alone, and it finishes.
    let stderr = ok(&run(&mut slurm_cmd(&config, &sweeps)));
    assert!(stderr.contains("4 done, 0 diverged, 0 failed"), "{stderr}");
    assert_eq!(
        mapping(&sweep, 2),
        vec![jobs[1].clone()],
        "only the cancelled job is resubmitted"
    );
    assert!(!sweep.join("slurm/sub-3.json").exists());
    let a = attempts(&sweep.join("jobs").join(&jobs[1]));
    assert_eq!(
        a.last().unwrap()["executor"],
        format!("slurm:{}_0", array_id(&sweep, 2))
    );
    for (i, id) in jobs.iter().enumerate().filter(|(i, _)| *i != 1) {
        assert_eq!(
            attempts(&sweep.join("jobs").join(id)).len(),
            1,
            "job {i} ran once"
        );
    }

    // `elab cancel` with nothing queued is a no-op.
    let out = run(elab().arg("cancel").arg(&sweep));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing in the Slurm queue"));
}

#[test]
fn shell_metacharacters_are_rejected_or_inert() {
    let tmp = tempfile::tempdir().unwrap();
    let pwned = tmp.path().join("pwned");
    // In the sweep file: refused with exit 2, naming the field, before anything is written.
    let config = smoke_config(tmp.path(), "bad.toml", |t| {
        format!(
            "{t}\n[executor.slurm]\npartition = \"debug; touch {}\"\n",
            pwned.display()
        )
    });
    let sweeps = tmp.path().join("sweeps");
    let out = run(&mut slurm_cmd(&config, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("executor.slurm.partition"), "{stderr}");
    assert!(!sweeps.join("smoke").exists());
    // On the command line, likewise.
    let config = smoke_config(tmp.path(), "smoke.toml", |t| t);
    for (flag, value) in [
        ("--partition", format!("x$(touch {})", pwned.display())),
        ("--mem", "4G;id".to_string()),
        ("--time", "1:00`id`".to_string()),
        ("--sbatch-arg", "--wrap=id".to_string()),
    ] {
        let out = run(slurm_cmd(&config, &sweeps).arg(flag).arg(&value));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!sweeps.join("smoke").exists());
    }
    // An unknown key in [executor.slurm] is refused too.
    let typo = smoke_config(tmp.path(), "typo.toml", |t| {
        format!("{t}\n[executor.slurm]\npartiton = \"debug\"\n")
    });
    assert_eq!(run(&mut slurm_cmd(&typo, &sweeps)).status.code(), Some(2));

    // Paths are quoted: a sweep directory named with quotes, spaces and $(...) just works.
    if !slurm_available() {
        return;
    }
    let _cluster = lock();
    let one = smoke_config(tmp.path(), "one.toml", |t| {
        t.replace("seed = [0, 1]", "seed = [0]")
            .replace("steps = 120", "steps = 40")
    });
    let weird = tmp
        .path()
        .join(format!("it's a $(touch {}) `id` dir", pwned.display()));
    let stderr = ok(&run(&mut slurm_cmd(&one, &weird)));
    assert!(stderr.contains("2 done, 0 diverged, 0 failed"), "{stderr}");
    assert!(!pwned.exists(), "a path was executed");
    assert_eq!(records(&weird.join("smoke")).len(), 2);
}
