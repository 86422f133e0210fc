//! The sweep's tasks as seen from outside the submitter: `elab status`'s Slurm section, the
//! local executor's check that Slurm runs nothing of the sweep, and `elab cancel`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use elab_job::{Plan, SweepDir};

use super::squeue::{SlurmTask, job_tasks};
use super::submit::submissions;

/// `elab status`'s Slurm section: each submitted job's task and its state in the queue.
/// `None` when the sweep was never submitted to Slurm.
pub fn slurm_status(dir: &SweepDir, plan: &Plan) -> Option<String> {
    let subs = match submissions(dir) {
        Ok(subs) => subs,
        Err(e) => return Some(format!("\nslurm: {e}\n")),
    };
    if subs.is_empty() {
        return None;
    }
    let mut out = String::new();
    let arrays: Vec<String> = subs
        .iter()
        .map(|s| s.array_id.clone().unwrap_or_else(|| "?".into()))
        .collect();
    let _ = writeln!(
        out,
        "\nslurm: {} submission(s), arrays {}",
        subs.len(),
        arrays.join(", ")
    );
    let tasks = match job_tasks(dir) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "({e}; showing the recorded tasks only)");
            let mut t = BTreeMap::new();
            for s in &subs {
                for (i, job) in s
                    .jobs
                    .iter()
                    .enumerate()
                    .flat_map(|(i, pack)| pack.split(' ').map(move |job| (i, job)))
                {
                    t.insert(
                        job.to_string(),
                        SlurmTask {
                            array_id: s.array_id.clone().unwrap_or_else(|| "?".into()),
                            task: i,
                            state: "?".into(),
                            held: false,
                        },
                    );
                }
            }
            t
        }
    };
    let _ = writeln!(
        out,
        "{:<12} {:<9} {:<16} {:<14} {:>8}",
        "job", "lab", "slurm task", "slurm state", "restarts"
    );
    let ids = plan.jobs.iter().map(|j| j.id.clone()).chain(
        tasks
            .keys()
            .filter(|k| !plan.jobs.iter().any(|j| &j.id == *k))
            .cloned(),
    );
    let mut held = Vec::new();
    for id in ids {
        let Some(t) = tasks.get(&id) else { continue };
        if t.needs_user() {
            held.push(format!("{}_{}", t.array_id, t.task));
        }
        let restarts = dir
            .read_attempts(&id)
            .iter()
            .rev()
            .find(|a| a.executor == format!("slurm:{}_{}", t.array_id, t.task))
            .and_then(|a| a.restart_count)
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into());
        let state = if t.state == "GONE" {
            "gone (not in squeue)".to_string()
        } else if t.needs_user() {
            format!("{} (held)", t.state.to_lowercase())
        } else {
            t.state.to_lowercase()
        };
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:<16} {:<14} {:>8}",
            id,
            dir.job_state(&id).to_string(),
            format!("{}_{}", t.array_id, t.task),
            state,
            restarts
        );
    }
    if !held.is_empty() {
        held.sort();
        held.dedup();
        let _ = writeln!(
            out,
            "{} task(s) held by Slurm: they will not run until you release them \
             (`scontrol release {}`), or cancel them (`elab cancel {}`)",
            held.len(),
            held.join(","),
            dir.root.display()
        );
    }
    Some(out)
}

/// Refuses to run the sweep here while Slurm still has tasks of it in the queue: a job would
/// be trained by two workers. Sweeps never submitted to Slurm pass without asking squeue; a
/// sweep that was, when squeue cannot answer, is refused too.
pub fn refuse_if_queued(dir: &SweepDir) -> anyhow::Result<()> {
    if submissions(dir)?.is_empty() {
        return Ok(());
    }
    let root = dir.root.display();
    let tasks = job_tasks(dir).map_err(|e| {
        anyhow::anyhow!(
            "{root} was submitted to Slurm, and whether tasks of it still run cannot be told: {e}.\nNot running it here, where a job could be trained twice; retry when `squeue` works, or `elab cancel {root}` first"
        )
    })?;
    let queued = tasks.values().filter(|t| t.active()).count();
    anyhow::ensure!(
        queued == 0,
        "{root} has {queued} job(s) pending or running in Slurm; wait for them, or `elab cancel {root}` first"
    );
    Ok(())
}

/// `elab cancel`: scancel every array of the sweep that still has tasks in the queue.
/// Returns the arrays cancelled.
pub fn cancel(dir: &SweepDir) -> anyhow::Result<Vec<String>> {
    let tasks = job_tasks(dir)?;
    let mut arrays: Vec<String> = tasks
        .values()
        .filter(|t| t.active())
        .map(|t| t.array_id.clone())
        .collect();
    arrays.sort();
    arrays.dedup();
    for array in &arrays {
        let out = Command::new("scancel")
            .arg(array)
            .output()
            .map_err(|e| anyhow::anyhow!("scancel: {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "scancel {array}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tracing::info!(array, "cancelled");
    }
    Ok(arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_submission_record_is_refused_never_read_as_no_submission() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path());
        let slurm = tmp.path().join("slurm");
        std::fs::create_dir_all(&slurm).unwrap();
        std::fs::write(slurm.join("sub-2.sh"), "#!/bin/bash\n").unwrap();
        // No record: never submitted, nothing to ask squeue (there is none here).
        refuse_if_queued(&dir).unwrap();
        // A record that cannot be read. Before, it was skipped: the local run went ahead
        // beside tasks that might still train its jobs, and the next submission took its
        // number.
        std::fs::write(slurm.join("sub-2.json"), "{\"n\": 2, \"array_id\": \"42").unwrap();
        let err = refuse_if_queued(&dir).unwrap_err().to_string();
        assert!(
            err.contains("sub-2.json") && err.contains("could be trained twice"),
            "{err}"
        );
        assert!(submissions(&dir).is_err());
        let plan = Plan {
            sweep: "t".into(),
            jobs: Vec::new(),
        };
        let status = slurm_status(&dir, &plan).unwrap();
        assert!(status.contains("sub-2.json"), "{status}");
        // A record under another submission's number is refused too.
        let record = serde_json::json!({
            "n": 1, "array_id": "42", "job_name": "elab-t-0-1", "script": "slurm/sub-1.sh",
            "tasks": "slurm/sub-1.tasks", "jobs": [], "submitted": 0.0, "sbatch_args": [],
        });
        std::fs::write(slurm.join("sub-2.json"), record.to_string()).unwrap();
        let err = submissions(&dir).unwrap_err().to_string();
        assert!(err.contains("holds submission 1, not 2"), "{err}");
    }
}
