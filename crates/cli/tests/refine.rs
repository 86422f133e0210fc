//! `elab refine` end to end with real workers: a coarse ladder whose exact-match jump falls
//! between two rungs gets a size in the gap, trained for every seed, recorded in refine.json,
//! listed by `elab status`, kept by `elab resume` and exported; a second run adds nothing. The
//! same round also runs through Slurm (skipped without a cluster, as in tests/slurm.rs).
//!
//! Models this small learn nothing in 40 steps, so the jump is written into the first
//! sweep's records (the final validation exact match: 0.02 below d_model 20, 0.95 above):
//! that is what makes the threshold `unresolved` between d16 and d24. 8 seeds: with fewer,
//! every run at the floor or the top could as well be a lottery (`too_few_seeds`, for which
//! refine adds no sizes). The refined jobs then train for real and keep their own records.

mod common;

use std::path::Path;

use common::*;
use elab_job::{JobSpec, RunDir};

const CONFIG: &str = r#"[sweep]
name = "coarse"
slots = 2
backend = "cpu"

[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 400
val_size = 300

[model]
activation = "gelu"

[train]
steps = 40
batch_size = 32
lr = 3e-3
warmup_steps = 5

[eval]
every = 20
max_train_examples = 100

[refine]
max_rounds = 1

[axes]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"#;

/// 1-layer sizes; n_head 2 up to d16, 4 above.
const LADDER: [(usize, usize); 5] = [(8, 2), (12, 2), (16, 2), (24, 4), (32, 4)];

fn write_config(dir: &Path) -> std::path::PathBuf {
    let mut text = CONFIG.to_string();
    for (d, h) in LADDER {
        text.push_str(&format!(
            "\n[[sizes]]\nname = \"d{d}\"\nn_layer = 1\nd_model = {d}\nn_head = {h}\n"
        ));
    }
    let path = dir.join("coarse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Rewrites every validation row's exact match as a step between d16 and d24.
fn write_a_jump_between_d16_and_d24(sweep: &Path) {
    for entry in std::fs::read_dir(sweep.join("jobs")).unwrap() {
        let run = RunDir::new(entry.unwrap().path());
        let spec = JobSpec::from_file(&run.spec()).unwrap();
        let level = if spec.model.d_model < 20 { 0.02 } else { 0.95 };
        let text = std::fs::read_to_string(run.evals()).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            if row["split"] == "val" {
                row["exact_match"] = (level + 0.003 * spec.seed as f64).into();
            }
            out.push_str(&format!("{row}\n"));
        }
        std::fs::write(run.evals(), out).unwrap();
    }
}

fn specs(sweep: &Path) -> Vec<(String, JobSpec)> {
    let mut out: Vec<(String, JobSpec)> = std::fs::read_dir(sweep.join("jobs"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let id = path.file_name().unwrap().to_string_lossy().into_owned();
            (id, JobSpec::from_file(&RunDir::new(&path).spec()).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn params(spec: &JobSpec) -> u64 {
    let (vocab, _, _) = spec.task.shape();
    elab_job::param_counts(&spec.model, vocab, spec.n_ctx()).total
}

fn ok(cmd: &mut std::process::Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_coarse_ladder_is_refined_between_its_rungs_and_a_second_run_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("coarse");
    ok(&mut sweep_cmd(&config, &sweeps));
    let before = specs(&sweep);
    assert_eq!(before.len(), 40);
    write_a_jump_between_d16_and_d24(&sweep);

    let stdout = ok(elab().arg("refine").arg(&sweep));
    assert!(
        stdout.contains("unresolved") && stdout.contains("round 1 adds"),
        "{stdout}"
    );

    // New jobs: one size strictly between d16 and d24, for every seed.
    let after = specs(&sweep);
    let new: Vec<&(String, JobSpec)> = after
        .iter()
        .filter(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .collect();
    assert_eq!(new.len(), 8, "one size x 8 seeds: {stdout}");
    let rung = |d: usize| params(&before.iter().find(|(_, s)| s.model.d_model == d).unwrap().1);
    let mut seeds = Vec::new();
    for (id, spec) in &new {
        let p = params(spec);
        assert!(
            p > rung(16) && p < rung(24),
            "{id}: {p} params not between d16 ({}) and d24 ({})",
            rung(16),
            rung(24)
        );
        assert_eq!(spec.model, new[0].1.model, "one shape for every seed");
        seeds.push(spec.seed);
        // They trained: records up to the last step and a summary.
        let run = RunDir::new(sweep.join("jobs").join(id));
        let rows = elab_job::read_evals(&run.evals()).unwrap();
        assert_eq!(rows.last().map(|r| r.step), Some(40), "{id}");
        assert!(run.read_summary().is_some(), "{id} finished");
    }
    seeds.sort();
    assert_eq!(seeds, (0..8).collect::<Vec<u64>>());

    // refine.json records the round: the size, its group and its jobs.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep.join("refine.json")).unwrap()).unwrap();
    let rounds = record["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 1);
    assert_eq!(rounds[0]["round"], 1);
    let size = &rounds[0]["sizes"][0];
    let name = size["size"]["name"].as_str().unwrap().to_string();
    assert_eq!(size["group"], "add2r");
    let mut recorded: Vec<&str> = size["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    recorded.sort();
    let mut new_ids: Vec<&str> = new.iter().map(|(id, _)| id.as_str()).collect();
    new_ids.sort();
    assert_eq!(recorded, new_ids);

    // `elab status` lists them (as a size, and each job), with the round.
    let status = ok(elab().arg("status").arg(&sweep));
    assert!(status.contains("48 jobs: 48 done"), "{status}");
    assert!(status.contains("refined: 1 round(s)"), "{status}");
    for id in &new_ids {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(id) && l.contains(&name)),
            "{id} in {status}"
        );
    }

    // A second run with nothing left to do (max_rounds = 1 is used) adds and trains nothing.
    let stdout = ok(elab().arg("refine").arg(&sweep));
    assert!(stdout.contains("no sizes added"), "{stdout}");
    assert_eq!(specs(&sweep).len(), 48);
    let record_again = std::fs::read(sweep.join("refine.json")).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&record_again).unwrap(),
        record
    );

    // The refined jobs are jobs of the sweep for `elab resume` (not orphans) and the export.
    let out = run(elab().arg("resume").arg(&sweep));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("48 done"),
        "{stderr}"
    );
    assert!(stderr.contains("0 orphaned"), "{stderr}");
    let results = tmp.path().join("results");
    ok(elab()
        .arg("export")
        .arg(&sweep)
        .arg("--out")
        .arg(&results)
        .arg("--no-plots"));
    let runs = std::fs::read_to_string(results.join("runs.csv")).unwrap();
    for id in &new_ids {
        assert!(
            runs.lines().any(|l| l.starts_with(id) && l.contains(&name)),
            "{id} in runs.csv"
        );
    }
}

#[test]
fn bad_refine_limits_exit_2_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_rounds = 1", "max_rounds = 0");
    std::fs::write(&config, text).unwrap();
    let out = run(elab().arg("plan").arg(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("coarse.toml")
            && stderr.contains("refine.max_rounds")
            && stderr.contains("from 1 to 20"),
        "{stderr}"
    );
    // The flags are checked the same way, before anything is read or run.
    for (flag, allowed) in [
        ("--target-width-decades=-1", "(0, 10]"),
        ("--max-rounds=0", "from 1 to 20"),
        ("--max-new-jobs=0", "from 1 to 10000"),
    ] {
        let out = run(elab().arg("refine").arg(tmp.path()).arg(flag));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = flag.split('=').next().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(allowed),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn a_round_interrupted_by_ctrl_c_is_finished_by_the_next_refine() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    // Long enough (a checkpoint every 50 steps) that the interrupt lands mid-round.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("steps = 40", "steps = 1000")
        .replace("every = 20", "every = 50");
    std::fs::write(&config, text).unwrap();
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("coarse");
    ok(&mut sweep_cmd(&config, &sweeps));
    write_a_jump_between_d16_and_d24(&sweep);

    let mut child = spawn_quiet(elab().arg("refine").arg(&sweep));
    // Wait until a job of the recorded round is past its first checkpoint.
    let round_jobs = || -> Vec<String> {
        std::fs::read(sweep.join("refine.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| {
                v["rounds"][0]["sizes"][0]["jobs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|j| j.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(wait_for(std::time::Duration::from_secs(120), || {
        round_jobs().iter().any(|id| {
            std::fs::read_to_string(sweep.join("jobs").join(id).join("checkpoint.json"))
                .is_ok_and(|s| !s.contains("\"step\":0"))
        })
    }));
    kill(child.id(), libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let ids = round_jobs();
    assert_eq!(ids.len(), 8);
    let unfinished = ids
        .iter()
        .filter(|id| !sweep.join("jobs").join(id).join("summary.json").exists())
        .count();
    assert!(
        unfinished > 0,
        "the round was interrupted before its jobs finished"
    );

    // The rerun resumes them (none starts over, the finished ones are skipped), finishes the
    // round and records no other.
    let out = run(elab().arg("refine").arg(&sweep));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "40 done, {unfinished} to resume from checkpoint, 0 new"
        )) || stderr.contains(&format!(
            "41 done, {unfinished} to resume from checkpoint, 0 new"
        )),
        "{stderr}"
    );
    assert_eq!(round_jobs(), ids);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep.join("refine.json")).unwrap()).unwrap();
    assert_eq!(record["rounds"].as_array().unwrap().len(), 1);
    // Every eval step of the refined jobs is recorded once per split: resumed, not restarted.
    for id in &ids {
        let run = RunDir::new(sweep.join("jobs").join(id));
        let rows = elab_job::read_evals(&run.evals()).unwrap();
        assert_eq!(rows.len(), elab_job::eval_steps(1000, 50).len() * 2, "{id}");
        assert!(run.read_summary().is_some(), "{id}");
    }
}

#[test]
fn a_round_through_slurm_trains_its_jobs_as_array_tasks_and_is_recorded_once() {
    if !slurm_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let sweeps = tmp.path().join("sweeps");
    let sweep = sweeps.join("coarse");
    ok(sweep_cmd(&config, &sweeps).args(["--executor", "slurm"]));
    let before = specs(&sweep);
    assert_eq!(before.len(), 40);
    write_a_jump_between_d16_and_d24(&sweep);

    let refine = || {
        let mut cmd = elab();
        cmd.arg("refine").arg(&sweep).args(["--executor", "slurm"]);
        cmd
    };
    let stdout = ok(&mut refine());
    assert!(stdout.contains("round 1 adds"), "{stdout}");
    let new: Vec<(String, JobSpec)> = specs(&sweep)
        .into_iter()
        .filter(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .collect();
    assert_eq!(new.len(), 8, "one size x 8 seeds: {stdout}");
    // The round went to Slurm as its own submission, after the coarse sweep's.
    assert!(sweep.join("slurm/sub-2.json").exists());
    let round_tasks = std::fs::read_to_string(sweep.join("slurm/sub-2.tasks")).unwrap();
    for (id, _) in &new {
        assert!(
            round_tasks.contains(id.as_str()),
            "{id} not in {round_tasks}"
        );
        let dir = sweep.join("jobs").join(id);
        let attempts = attempts(&dir);
        assert_eq!(attempts.len(), 1, "{id}: {attempts:?}");
        assert!(
            attempts[0]["executor"]
                .as_str()
                .is_some_and(|e| e.starts_with("slurm:")),
            "{id}: {attempts:?}"
        );
        assert_eq!(attempts[0]["exit"], 0, "{id}");
        let run = RunDir::new(&dir);
        let rows = elab_job::read_evals(&run.evals()).unwrap();
        assert_eq!(rows.last().map(|r| r.step), Some(40), "{id}");
        assert!(run.read_summary().is_some(), "{id} finished");
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep.join("refine.json")).unwrap()).unwrap();
    assert_eq!(record["rounds"].as_array().unwrap().len(), 1);

    // Again: nothing to add, nothing submitted.
    let stdout = ok(&mut refine());
    assert!(stdout.contains("no sizes added"), "{stdout}");
    assert!(!sweep.join("slurm/sub-3.json").exists());
    assert_eq!(specs(&sweep).len(), 48);
}
