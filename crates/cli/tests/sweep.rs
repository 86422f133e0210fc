//! The sweep engine, end to end with real workers: killed and resumed, interrupted (Ctrl-C,
//! a hang-up, a stop before a worker's handlers are up), a worker killed alone, a diverging
//! job, the slot limit, a changed config.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use elab_job::eval_steps;

/// The smoke sweep with `steps` steps per job and a snapshot every 500 steps.
fn config_with_snapshots(tmp: &Path, steps: u64) -> std::path::PathBuf {
    smoke_config(tmp, "smoke.toml", |t| {
        assert!(t.contains("steps = 120\n"));
        t.replace(
            "steps = 120\n",
            &format!("steps = {steps}\nsnapshots = \"every:500\"\n"),
        )
    })
}

/// Each job's snapshots.
fn snapshots(sweep: &Path) -> std::collections::BTreeMap<String, Snapshots> {
    records(sweep)
        .keys()
        .map(|id| {
            let run = elab_job::RunDir::new(sweep.join("jobs").join(id));
            (id.clone(), snapshot_tensors(&run))
        })
        .collect()
}

/// A reference run of the smoke sweep, uninterrupted; returns its wall time.
fn reference(tmp: &Path, steps: u64) -> (std::path::PathBuf, Duration) {
    let config = config_with_snapshots(tmp, steps);
    let sweeps = tmp.join("ref");
    let start = Instant::now();
    let out = run(&mut sweep_cmd(&config, &sweeps));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (sweeps.join("smoke"), start.elapsed())
}

/// Steps per job of the kill test: long enough that five kills land before the sweep is done
/// (the smoke jobs train at about 2,000 steps per second).
const KILL_TEST_STEPS: u64 = 3000;

#[test]
fn a_sweep_killed_at_random_moments_ends_exactly_like_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, took) = reference(tmp.path(), KILL_TEST_STEPS);
    // Concurrency never exceeded the slots (2) in the reference run. The jobs of a pack (here
    // the two seeds of a size) share their attempts' start and end: one worker.
    let mut spans = Vec::new();
    for id in records(&reference).keys() {
        let attempts =
            std::fs::read_to_string(reference.join("jobs").join(id).join("attempts.jsonl"))
                .unwrap();
        for line in attempts.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            spans.push((v["started"].as_f64().unwrap(), v["ended"].as_f64().unwrap()));
        }
    }
    let jobs_attempts = spans.len();
    spans.sort_by(|a, b| a.partial_cmp(b).unwrap());
    spans.dedup();
    assert_eq!(
        spans.len() * 2,
        jobs_attempts,
        "every job trained in a pack of 2"
    );
    let max_overlap = spans
        .iter()
        .map(|&(s, _)| spans.iter().filter(|&&(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(
        max_overlap <= 2,
        "{max_overlap} workers ran at once with 2 slots"
    );
    assert_eq!(max_overlap, 2, "the two slots were used");

    let config = config_with_snapshots(tmp.path(), KILL_TEST_STEPS);
    let sweeps = tmp.path().join("killed");
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut kills = 0;
    for _ in 0..12 {
        let mut child = spawn_quiet(&mut sweep_cmd(&config, &sweeps));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Anywhere from start-up to a tenth of the whole sweep: mid-step, mid-eval,
        // mid-checkpoint, between jobs (short enough that several kills land before it ends).
        let at = Duration::from_millis(100 + rng % (took.as_millis() as u64 / 10).max(300));
        let exited = wait_for(at, || child.try_wait().unwrap().is_some());
        if exited {
            break;
        }
        kill(child.id(), libc::SIGKILL);
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= 5,
        "only {kills} kills landed before the sweep finished"
    );
    let out = run(&mut sweep_cmd(&config, &sweeps));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_equal_records(&reference, &sweeps.join("smoke"), KILL_TEST_STEPS, 40, 4);
    // The weights kept along training too: every snapshot, bit for bit, whatever the kills
    // interrupted (a snapshot being written included), and no temporary file left.
    let (want, got) = (snapshots(&reference), snapshots(&sweeps.join("smoke")));
    assert_eq!(want.len(), 4);
    for (id, files) in &want {
        let steps: Vec<u64> = files.keys().copied().collect();
        assert_eq!(steps, vec![0, 500, 1000, 1500, 2000, 2500, 3000], "{id}");
        assert!(
            got[id] == *files,
            "job {id}: the snapshots differ from the uninterrupted run's"
        );
        let left: Vec<_> = std::fs::read_dir(sweeps.join("smoke/jobs").join(id).join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{id}: {left:?}");
    }
}

#[test]
fn interrupt_checkpoints_every_job_and_a_rerun_finishes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 2000")
    });
    let sweeps = tmp.path().join("sweeps");
    let mut child = spawn_quiet(&mut sweep_cmd(&config, &sweeps));
    let jobs = sweeps.join("smoke/jobs");
    // Wait until two jobs are past their first checkpoints.
    assert!(wait_for(Duration::from_secs(120), || {
        std::fs::read_dir(&jobs).map_or(0, |d| {
            d.filter(|e| {
                let p = e.as_ref().unwrap().path().join("checkpoint.json");
                std::fs::read_to_string(p).is_ok_and(|s| !s.contains("\"step\":0"))
            })
            .count()
        }) >= 2
    }));
    kill(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // No job is left looking alive, and each started one is resumable from past step 0.
    let out = run(elab().arg("status").arg(sweeps.join("smoke")));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("running"), "{table}");
    assert!(table.matches("resumable").count() >= 2, "{table}");
    // Rerun: nothing restarts from scratch, everything finishes.
    let out = run(&mut sweep_cmd(&config, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Both packs (two seeds each) had started: all four jobs resume, none starts over.
    assert!(
        stderr.contains("4 to resume from checkpoint, 0 new"),
        "{stderr}"
    );
    for (id, (raw, _)) in records(&sweeps.join("smoke")) {
        assert_eq!(raw.len(), eval_steps(2000, 40).len() * 2, "{id}");
    }
}

/// Jobs in `jobs` (a sweep's `jobs/`) with a checkpoint past step 0.
fn checkpointed_past_zero(jobs: &Path) -> usize {
    std::fs::read_dir(jobs).map_or(0, |d| {
        d.filter(|e| {
            let p = e.as_ref().unwrap().path().join("checkpoint.json");
            std::fs::read_to_string(p).is_ok_and(|s| !s.contains("\"step\":0"))
        })
        .count()
    })
}

/// A stderr that can no longer be written (a `| tee` that died, a closed terminal) changes
/// nothing: the sweep runs to the end. Before, the scheduler's next message panicked (EPIPE),
/// and so did its report of that panic, outside its panic guard: the workers were SIGKILLed.
#[test]
fn a_sweep_whose_stderr_goes_away_runs_to_the_end() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 2000")
    });
    let sweeps = tmp.path().join("sweeps");
    let (mut reader, stderr) = std::io::pipe().unwrap();
    let mut child = sweep_cmd(&config, &sweeps)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    // The sweep's first line ("sweep smoke: 4 jobs: ..."), then the reader goes away while
    // the workers train.
    let mut first = [0u8; 16];
    reader.read_exact(&mut first).unwrap();
    drop(reader);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let done = records(&sweeps.join("smoke"));
    assert_eq!(done.len(), 4);
    for id in done.keys() {
        assert!(
            sweeps
                .join("smoke/jobs")
                .join(id)
                .join("summary.json")
                .exists()
        );
    }
}

#[test]
fn a_hang_up_checkpoints_every_job_and_nohup_ignores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 2000")
    });
    // The terminal is a pipe, closed when it "hangs up": stderr then fails to write (EPIPE),
    // as a hung-up terminal does (EIO).
    let sweeps = tmp.path().join("hup");
    let (terminal, stderr) = std::io::pipe().unwrap();
    let mut cmd = sweep_cmd(&config, &sweeps);
    // A hang-up that is not ignored, even where the tests themselves run under `nohup` (the
    // sweep would inherit the ignored SIGHUP and rightly go on, the case tested below).
    on_sighup(&mut cmd, libc::SIG_DFL);
    let mut child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    let jobs = sweeps.join("smoke/jobs");
    assert!(wait_for(Duration::from_secs(120), || {
        checkpointed_past_zero(&jobs) >= 2
    }));
    drop(terminal);
    // Twice, as it comes: the shell passes the hang-up on to its jobs, and the kernel sends
    // another to the foreground group when the shell exits.
    kill(child.id(), libc::SIGHUP);
    kill(child.id(), libc::SIGHUP);
    let status = child.wait().unwrap();
    // Before, the sweep died of the signal (129) and its workers were SIGKILLed with no
    // checkpoint and no attempt recorded.
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut stopped = 0;
    for entry in std::fs::read_dir(&jobs).unwrap() {
        let tried = attempts(&entry.unwrap().path());
        let Some(last) = tried.last() else { continue };
        assert!(last["signal"].is_null(), "{tried:?}");
        match last["exit"].as_i64() {
            Some(75) => stopped += 1,
            Some(0) => {}
            _ => panic!("{tried:?}"),
        }
    }
    assert!(stopped >= 2, "{stopped} jobs checkpointed and stopped");
    let out = run(elab().arg("status").arg(sweeps.join("smoke")));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("running"), "{table}");
    assert!(table.matches("resumable").count() >= 2, "{table}");

    // Under nohup (SIGHUP ignored, and so for the workers too), a hang-up changes nothing.
    let sweeps = tmp.path().join("nohup");
    let mut cmd = sweep_cmd(&config, &sweeps);
    on_sighup(&mut cmd, libc::SIG_IGN);
    let mut child = spawn_quiet(&mut cmd);
    let jobs = sweeps.join("smoke/jobs");
    assert!(wait_for(Duration::from_secs(120), || {
        checkpointed_past_zero(&jobs) >= 1
    }));
    kill(child.id(), libc::SIGHUP);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let done = records(&sweeps.join("smoke"));
    assert_eq!(done.len(), 4);
    for id in done.keys() {
        let tried = attempts(&jobs.join(id));
        assert!(jobs.join(id).join("summary.json").exists(), "{id}");
        assert!(tried.iter().all(|a| a["exit"] == 0), "{id}: {tried:?}");
    }
}

/// `cmd` starts with SIGHUP's disposition set to `action` (`SIG_DFL` or `SIG_IGN`).
fn on_sighup(cmd: &mut Command, action: libc::sighandler_t) {
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGHUP, action);
            Ok(())
        });
    }
}

/// A worker asked to stop before its signal handlers are installed checkpoints and exits 75.
/// The scheduler starts workers with their stop signals blocked, so such a request (a Ctrl-C
/// in a sweep's first milliseconds) is pending when `elab train` starts: here it is pending
/// from the start. Before, `elab train` never unblocked it, and a worker started that way
/// trained to the end (and one started the old way died of the signal, uncheckpointed).
#[test]
fn a_stop_pending_when_a_worker_starts_is_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(
        &job,
        "seed = 1\n[task]\nkind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\n\
         train_size = 200\nval_size = 100\n[model]\nn_layer = 1\nd_model = 16\nn_head = 2\n\
         d_mlp = 32\n[train]\nsteps = 400\nbatch_size = 32\nlr = 3e-3\n[eval]\nevery = 100\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let mut cmd = elab();
    cmd.arg("train")
        .arg(&job)
        .arg("--out")
        .arg(&out)
        .args(["--backend", "cpu"]);
    // SAFETY: pthread_sigmask and raise are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            elab_job::signals::set_blocked(true)?;
            libc::raise(libc::SIGINT);
            Ok(())
        });
    }
    let done = run(&mut cmd);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(75), "{stderr}");
    let run_dir = elab_job::RunDir::new(&out);
    assert_eq!(run_dir.checkpoints().unwrap(), vec![0], "{stderr}");
    assert!(run_dir.read_summary().is_none());
}

#[test]
fn a_worker_killed_alone_is_rerun_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 1500")
            .replace("seed = [0, 1]", "seed = [0]")
    });
    let sweeps = tmp.path().join("sweeps");
    let mut child = spawn_quiet(&mut sweep_cmd(&config, &sweeps));
    let jobs = sweeps.join("smoke/jobs");
    let mut victim = None;
    assert!(wait_for(Duration::from_secs(120), || {
        for e in std::fs::read_dir(&jobs).into_iter().flatten() {
            let dir = e.unwrap().path();
            let beat = std::fs::read_to_string(dir.join("heartbeat.json")).unwrap_or_default();
            let ckpt = std::fs::read_to_string(dir.join("checkpoint.json")).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&beat)
                && !ckpt.is_empty()
                && !ckpt.contains("\"step\":0")
            {
                victim = Some((dir, v["pid"].as_u64().unwrap() as u32));
                return true;
            }
        }
        false
    }));
    let (dir, pid) = victim.unwrap();
    kill(pid, libc::SIGKILL);
    let status = child.wait().unwrap();
    assert!(status.success());
    let attempts = std::fs::read_to_string(dir.join("attempts.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = attempts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{attempts}");
    assert_eq!(lines[0]["signal"], 9);
    assert_eq!(lines[1]["exit"], 0);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["resumes"], 1,
        "resumed from the checkpoint, not from step 0"
    );
    let (raw, _) =
        &records(&sweeps.join("smoke"))[&dir.file_name().unwrap().to_string_lossy().into_owned()];
    assert_eq!(raw.len(), eval_steps(1500, 40).len() * 2);
}

#[test]
fn a_diverging_job_is_recorded_and_does_not_stop_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("seed = [0, 1]", "seed = [0]\ntrain.lr = [3e-3, 1e30]")
    });
    let sweeps = tmp.path().join("sweeps");
    let out = run(&mut sweep_cmd(&config, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 done, 2 diverged, 0 failed"), "{stderr}");
    let mut diverged = 0;
    for entry in std::fs::read_dir(sweeps.join("smoke/jobs")).unwrap() {
        let dir = entry.unwrap().path();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        if summary["status"] == "diverged" {
            diverged += 1;
            assert!(summary["step"].as_u64().unwrap() >= 1);
            // The last good checkpoint is kept.
            assert!(dir.join("checkpoint.json").exists());
            // Diverged jobs are not retried.
            assert_eq!(
                std::fs::read_to_string(dir.join("attempts.jsonl"))
                    .unwrap()
                    .lines()
                    .count(),
                1
            );
        }
    }
    assert_eq!(diverged, 2);
}

#[test]
fn a_changed_config_adds_jobs_keeps_orphans_and_refuses_changed_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let sweeps = tmp.path().join("sweeps");
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 40")
    });
    assert!(run(&mut sweep_cmd(&config, &sweeps)).status.success());
    let frozen = std::fs::read_to_string(sweeps.join("smoke/config.toml")).unwrap();

    // One more seed, one size fewer: 2 new jobs, 2 orphans, 2 done.
    let grown = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 40")
            .replace("seed = [0, 1]", "seed = [0, 1, 2]")
            .replace(
                "[[sizes]]\nname = \"s\"\nn_layer = 1\nd_model = 32\nn_head = 4\n",
                "",
            )
    });
    let out = run(&mut sweep_cmd(&grown, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("3 jobs: 2 done, 0 to resume from checkpoint, 1 new"),
        "{stderr}"
    );
    assert!(stderr.contains("2 orphaned"), "{stderr}");
    let status =
        String::from_utf8_lossy(&run(elab().arg("status").arg(sweeps.join("smoke"))).stdout)
            .into_owned();
    assert_eq!(status.matches(" orphaned ").count(), 2, "{status}");

    // A changed default would alter the jobs already run: refused, nothing written.
    let changed = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replace("steps = 120", "steps = 50")
    });
    let out = run(&mut sweep_cmd(&changed, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("train.steps: 40 -> 50") && stderr.contains("--allow-changed-config"),
        "{stderr}"
    );
    assert_ne!(
        std::fs::read_to_string(sweeps.join("smoke/config.toml")).unwrap(),
        std::fs::read_to_string(&changed).unwrap()
    );
    let _ = frozen;

    // Accepted with the flag: 4 new jobs run, the 5 old ones are orphans.
    let out = run(sweep_cmd(&changed, &sweeps).arg("--allow-changed-config"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 jobs: 0 done, 0 to resume from checkpoint, 4 new")
            && stderr.contains("5 orphaned"),
        "{stderr}"
    );
}
