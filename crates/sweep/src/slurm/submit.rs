//! Submitting jobs as an array (`sbatch`), recording each submission before and after, and
//! waiting for the tasks to leave the queue.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use elab_job::{Plan, SweepDir, fsio, is_job_id, unix_now};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::SlurmSettings;
use super::script::{ScriptValues, script};
use super::squeue::job_tasks;
use crate::config::DEFAULT_SIGNAL_SECS;

/// One `sbatch` of the sweep: which array task trains which job (`slurm/sub-<n>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub n: u32,
    /// Set once sbatch answered; `None` if the submitter died in between (then found again
    /// by `job_name`).
    pub array_id: Option<String>,
    pub job_name: String,
    /// Relative to the sweep directory.
    pub script: String,
    pub tasks: String,
    /// Task index -> the ids of the jobs it trains as one pack, separated by spaces (one id
    /// without packing).
    pub jobs: Vec<String>,
    pub submitted: f64,
    pub sbatch_args: Vec<String>,
}

/// `sweeps/<name>/slurm/`.
pub fn slurm_dir(dir: &SweepDir) -> PathBuf {
    dir.root.join("slurm")
}

/// A submission record (`slurm/sub-<n>.json`), or the folder of them, that cannot be read.
/// Never taken as "no such submission": its tasks may still be queued or running, and its
/// number would be reused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: {why}. It records a Slurm submission whose tasks may still be queued or running, \
     so nothing is submitted or run while it cannot be read (a job could be trained twice). \
     Restore it; or check the sweep's arrays with `squeue --me`, `scancel` any still queued, \
     and move the file out of the folder"
)]
pub struct RecordError {
    pub path: PathBuf,
    pub why: String,
}

/// Every submission of the sweep, oldest first; an error if any record (a file named
/// `sub-<n>.json`) cannot be read or does not hold submission n.
pub fn submissions(dir: &SweepDir) -> Result<Vec<Submission>, RecordError> {
    let folder = slurm_dir(dir);
    let fail = |path: &std::path::Path, why: String| RecordError {
        path: path.to_path_buf(),
        why,
    };
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(fail(&folder, e.to_string())),
    };
    let mut subs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(&folder, e.to_string()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("sub-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(|e| fail(&path, e.to_string()))?;
        let sub: Submission = serde_json::from_slice(&bytes)
            .map_err(|e| fail(&path, format!("not a submission record ({e})")))?;
        if n.parse::<u32>().ok() != Some(sub.n) {
            return Err(fail(&path, format!("holds submission {}, not {n}", sub.n)));
        }
        subs.push(sub);
    }
    subs.sort_by_key(|s| s.n);
    Ok(subs)
}

pub(super) fn record(dir: &SweepDir, sub: &Submission) -> std::io::Result<()> {
    let path = slurm_dir(dir).join(format!("sub-{}.json", sub.n));
    fsio::write_atomic(&path, &serde_json::to_vec_pretty(sub)?)
}

/// A short stable tag of the sweep directory, so that job names of two sweeps never collide.
pub(super) fn dir_tag(root: &str) -> String {
    let digest = Sha256::digest(root.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The largest array Slurm accepts here (MaxArraySize - 1 is the largest index).
pub(super) fn max_array_size() -> usize {
    let out = Command::new("scontrol").args(["show", "config"]).output();
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.trim_start().starts_with("MaxArraySize"))
                .and_then(|l| l.split('=').nth(1))
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .unwrap_or(1001)
        .max(1)
}

/// Where one submission goes: the sweep directory and `elab` by absolute path, and the tag
/// that makes its job names unique.
pub(super) struct Target<'a> {
    pub dir: &'a SweepDir,
    pub root: &'a str,
    pub elab: &'a str,
    pub tag: &'a str,
}

/// Writes the task list, the script and the submission record, then runs sbatch and records
/// the array id it answers.
pub(super) fn submit(
    to: &Target<'_>,
    settings: &SlurmSettings,
    plan: &Plan,
    packs: &[Vec<String>],
    n: u32,
) -> anyhow::Result<Submission> {
    for id in packs.iter().flatten() {
        // Job ids are hashes; anything else would be a bug, and must not reach a script.
        anyhow::ensure!(is_job_id(id), "{id:?} is not a job id");
    }
    let ids: Vec<String> = packs.iter().map(|p| p.join(" ")).collect();
    let job_name = format!("elab-{}-{}-{n}", plan.sweep, to.tag);
    let script_name = format!("sub-{n}.sh");
    let tasks_name = format!("sub-{n}.tasks");
    let signal = settings.options.signal_secs.unwrap_or(DEFAULT_SIGNAL_SECS);
    let array = match settings.options.max_running {
        Some(k) => format!("0-{}%{k}", ids.len() - 1),
        None => format!("0-{}", ids.len() - 1),
    };
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={job_name}"),
        format!("--array={array}"),
        "--requeue".into(),
        "--open-mode=append".into(),
        format!("--signal=B:USR1@{signal}"),
        format!("--chdir={}", to.root),
        format!("--output=slurm/sub-{n}_%A_%a.out"),
    ];
    args.extend(settings.options.sbatch_args());
    let text = script(&ScriptValues {
        elab: to.elab,
        sweep_dir: to.root,
        backend: &settings.backend,
        tasks_file: &format!("slurm/{tasks_name}"),
        sweep_name: &plan.sweep,
        n,
        sbatch_args: &args,
    })?;
    let sdir = slurm_dir(to.dir);
    fsio::write_atomic(
        &sdir.join(&tasks_name),
        format!("{}\n", ids.join("\n")).as_bytes(),
    )?;
    fsio::write_atomic(&sdir.join(&script_name), text.as_bytes())?;
    let mut sub = Submission {
        n,
        array_id: None,
        job_name,
        script: format!("slurm/{script_name}"),
        tasks: format!("slurm/{tasks_name}"),
        jobs: ids.clone(),
        submitted: unix_now(),
        sbatch_args: args.clone(),
    };
    record(to.dir, &sub)?;
    let out = Command::new("sbatch")
        .args(&args)
        .arg(sdir.join(&script_name))
        .output()
        .map_err(|e| anyhow::anyhow!("sbatch: {e} (is Slurm installed here?)"))?;
    if !out.status.success() {
        // Not submitted: drop the record so that it is not mistaken for a lost submission.
        let _ = std::fs::remove_file(sdir.join(format!("sub-{n}.json")));
        anyhow::bail!(
            "sbatch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch answered {stdout:?}, not a job id"
    );
    sub.array_id = Some(id);
    record(to.dir, &sub)?;
    tracing::info!(array = ?sub.array_id, tasks = ids.len(), "submitted");
    Ok(sub)
}

/// Polls squeue until no task of the sweep is pending or running (or every one left is held,
/// waiting for the user rather than for Slurm), printing a line whenever the counts change.
/// Gives up after 10 failed polls in a row.
pub(super) fn wait(dir: &SweepDir) -> anyhow::Result<()> {
    eprintln!(
        "waiting for the tasks (Ctrl-C stops waiting; the tasks keep running: `elab status`, `elab cancel`)"
    );
    let poll = std::env::var("ELAB_SLURM_POLL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let mut last = String::new();
    let mut errors = 0;
    loop {
        let tasks = match job_tasks(dir) {
            Ok(t) => {
                errors = 0;
                t
            }
            Err(e) if errors < 10 => {
                errors += 1;
                tracing::warn!("{e}");
                std::thread::sleep(Duration::from_secs_f64(poll));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for t in tasks.values() {
            let state = match t.needs_user() {
                true => format!("{} (held)", t.state),
                false => t.state.clone(),
            };
            *counts.entry(state).or_default() += 1;
        }
        let line: Vec<String> = counts
            .iter()
            .map(|(s, n)| format!("{n} {}", s.to_lowercase()))
            .collect();
        let line = format!("slurm: {}", line.join(", "));
        if line != last {
            eprintln!("{line}");
            tracing::info!("{line}");
            last = line;
        }
        if !tasks.values().any(|t| t.active() && !t.needs_user()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(poll));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_tags_are_short_stable_and_distinct() {
        let a = dir_tag("/home/me/sweeps/arith");
        assert_eq!(a.len(), 8);
        assert_eq!(a, dir_tag("/home/me/sweeps/arith"));
        assert_ne!(a, dir_tag("/home/me/sweeps/arith2"));
    }
}
