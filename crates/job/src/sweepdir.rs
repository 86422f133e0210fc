//! `sweeps/<name>/`: the frozen config, the plan and one run directory per job. Everything
//! here can be read with ls and cat, and every state is derived from files that are written
//! atomically, so the directory is consistent whenever a process dies.
//!
//! ```text
//! sweeps/<name>/config.toml      the sweep file as it was first run (frozen)
//! sweeps/<name>/plan.json        the jobs of the current config, in run order
//! sweeps/<name>/sweep.log        the scheduler's log
//! sweeps/<name>/lock             held by the live scheduler
//! sweeps/<name>/lease.json       the live scheduler's lease: host, pid, start, heartbeat
//! sweeps/<name>/jobs/<id>/       one run directory per job (see RunDir)
//! sweeps/<name>/jobs/<id>/attempts.jsonl   one line per worker attempt: start, end, exit
//! ```
//!
//! The sweep engine writes this directory; `elab status` and the exporters only read it.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::heartbeat::Heartbeat;
use crate::{JobSpec, RunDir, RunStatus, exit, fsio, is_job_id};

/// One job of a plan: its spec, id, size, swept values and place in the run order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedJob {
    pub id: String,
    pub size: String,
    /// The value of every product axis for this job (dotted key -> value).
    pub axes: BTreeMap<String, toml::Value>,
    /// Set when the plan comes from a sweep file; `plan.json` does not keep it (the job's
    /// `spec.toml` does).
    #[serde(skip)]
    pub spec: Option<JobSpec>,
}

/// All jobs of a sweep, in the order they run (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub sweep: String,
    pub jobs: Vec<PlannedJob>,
}

impl Plan {
    /// Every job id is a job id (12 lowercase hex digits): ids name directories and reach Slurm
    /// scripts, and `plan.json` is a file that can be edited by hand.
    pub fn check_ids(&self) -> Result<(), String> {
        for (i, job) in self.jobs.iter().enumerate() {
            if !is_job_id(&job.id) {
                return Err(format!(
                    "job {} has id {:?}, which is not a job id (12 lowercase hex digits, the hash of its spec); plan.json is written by `elab sweep`: rerun it rather than edit the plan",
                    i + 1,
                    job.id
                ));
            }
        }
        Ok(())
    }
}

/// A job's state, derived from its run directory alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Nothing trained yet.
    New,
    /// A worker's heartbeat is fresh.
    Running,
    /// Has a checkpoint, no summary: continues from the checkpoint.
    Resumable,
    /// The last attempt failed (and no checkpoint could make progress yet).
    Failed,
    Diverged,
    Done,
    /// In the sweep directory but no longer in the config.
    Orphaned,
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            JobState::New => "new",
            JobState::Running => "running",
            JobState::Resumable => "resumable",
            JobState::Failed => "failed",
            JobState::Diverged => "diverged",
            JobState::Done => "done",
            JobState::Orphaned => "orphaned",
        };
        f.write_str(s)
    }
}

/// One worker attempt: a line of `<run>/attempts.jsonl`, written by the local scheduler and, for
/// Slurm tasks, by `elab record-attempt` in the task script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub started: f64,
    pub ended: Option<f64>,
    /// Exit code, or `None` when killed by a signal (then `signal` says which).
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    /// Where it ran: `local` or `slurm:<array job>_<task>`.
    pub executor: String,
    /// Slurm's SLURM_RESTART_COUNT: how often the task was requeued before this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
}

impl Attempt {
    /// `(exit, signal)` from a shell's `$?`: above 128 is death by signal `status - 128`.
    pub fn from_shell_status(status: i32) -> (Option<i32>, Option<i32>) {
        if status > 128 {
            (None, Some(status - 128))
        } else {
            (Some(status), None)
        }
    }

    /// Ended in a way that leaves the job to continue: done, or stopped after a checkpoint.
    fn ended_well(&self) -> bool {
        self.exit == Some(exit::DONE.into()) || self.exit == Some(exit::INTERRUPTED.into())
    }
}

/// `<run>/attempts.jsonl`.
pub fn attempts_path(run: &RunDir) -> PathBuf {
    run.path().join("attempts.jsonl")
}

/// Appends one attempt to `<run>/attempts.jsonl` (fsynced).
pub fn record_attempt(run: &RunDir, attempt: &Attempt) -> io::Result<()> {
    fsio::append_line(&attempts_path(run), &serde_json::to_string(attempt)?)
}

/// The attempts recorded in `<run>/attempts.jsonl`, oldest first; lines that do not parse (a
/// torn last line) are skipped.
pub fn read_attempts(run: &RunDir) -> Vec<Attempt> {
    std::fs::read_to_string(attempts_path(run))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A sweep directory.
#[derive(Debug, Clone)]
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn plan_path(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("sweep.log")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn lease(&self) -> PathBuf {
        self.root.join("lease.json")
    }
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub fn job(&self, id: &str) -> RunDir {
        RunDir::new(self.jobs_dir().join(id))
    }
    pub fn attempts(&self, id: &str) -> PathBuf {
        attempts_path(&self.job(id))
    }

    pub fn exists(&self) -> bool {
        self.config().exists()
    }

    /// The plan, with every job id checked ([`Plan::check_ids`]). A missing file is
    /// `ErrorKind::NotFound`; a file that does not parse or holds a bad id is `InvalidData`, with
    /// the path in the message.
    pub fn read_plan(&self) -> io::Result<Plan> {
        let path = self.plan_path();
        let bytes = std::fs::read(&path)?;
        let invalid = |e: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        };
        let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        plan.check_ids().map_err(invalid)?;
        Ok(plan)
    }

    /// Writes the frozen config (if given), the plan, and every new job's spec. Called only
    /// after the whole config validated, so a bad config leaves nothing behind.
    pub fn write_plan(&self, config_text: Option<&str>, plan: &Plan) -> io::Result<()> {
        std::fs::create_dir_all(self.jobs_dir())?;
        for job in &plan.jobs {
            let run = self.job(&job.id);
            if !run.spec().exists() {
                std::fs::create_dir_all(run.path())?;
                let spec = job.spec.as_ref().expect("a fresh plan carries specs");
                fsio::write_atomic(&run.spec(), spec.to_toml().as_bytes())?;
            }
        }
        if let Some(text) = config_text {
            fsio::write_atomic(&self.config(), text.as_bytes())?;
        }
        fsio::write_atomic(&self.plan_path(), &serde_json::to_vec_pretty(plan)?)
    }

    /// Ids of every job directory, planned or not.
    pub fn job_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        match std::fs::read_dir(self.jobs_dir()) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    if entry.path().join("spec.toml").exists() {
                        ids.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        ids.sort();
        Ok(ids)
    }

    pub fn read_attempts(&self, id: &str) -> Vec<Attempt> {
        read_attempts(&self.job(id))
    }

    pub fn record_attempt(&self, id: &str, attempt: &Attempt) -> io::Result<()> {
        record_attempt(&self.job(id), attempt)
    }

    /// The state of a planned job (orphans are the caller's to mark).
    pub fn job_state(&self, id: &str) -> JobState {
        let run = self.job(id);
        if let Some(summary) = run.read_summary() {
            return match summary.status {
                RunStatus::Done => JobState::Done,
                RunStatus::Diverged { .. } => JobState::Diverged,
            };
        }
        if Heartbeat::read(&run).is_some_and(|beat| beat.is_fresh()) {
            return JobState::Running;
        }
        let last_failed = self
            .read_attempts(id)
            .last()
            .is_some_and(|a| a.ended.is_some() && !a.ended_well());
        if last_failed {
            JobState::Failed
        } else if run.checkpoint_step().is_some() {
            JobState::Resumable
        } else {
            JobState::New
        }
    }

    /// Every job of the plan and every orphan, with its state.
    pub fn states(&self, plan: &Plan) -> io::Result<BTreeMap<String, JobState>> {
        let mut states = BTreeMap::new();
        for job in &plan.jobs {
            states.insert(job.id.clone(), self.job_state(&job.id));
        }
        for id in self.job_ids()? {
            states.entry(id).or_insert(JobState::Orphaned);
        }
        Ok(states)
    }
}

/// `sweeps/<name>` under `root`.
pub fn sweep_dir(root: &Path, name: &str) -> SweepDir {
    SweepDir::new(root.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ids: &[&str]) -> Plan {
        Plan {
            sweep: "s".into(),
            jobs: ids
                .iter()
                .map(|id| PlannedJob {
                    id: id.to_string(),
                    size: "xs".into(),
                    axes: BTreeMap::new(),
                    spec: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_hand_edited_plan_with_a_bad_id_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path());
        let good = plan(&["0123456789ab"]);
        std::fs::write(dir.plan_path(), serde_json::to_vec(&good).unwrap()).unwrap();
        assert_eq!(dir.read_plan().unwrap(), good);
        for bad in ["abc", "../../../etc", "0123456789AB", ""] {
            let edited = plan(&["0123456789ab", bad]);
            std::fs::write(dir.plan_path(), serde_json::to_vec(&edited).unwrap()).unwrap();
            let err = dir.read_plan().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let msg = err.to_string();
            assert!(
                msg.contains("plan.json") && msg.contains("job 2") && msg.contains("not a job id"),
                "{msg}"
            );
        }
        std::fs::write(dir.plan_path(), "{").unwrap();
        assert_eq!(
            dir.read_plan().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn states_follow_summary_heartbeat_attempts_and_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path());
        let id = "0123456789ab";
        let run = dir.job(id);
        std::fs::create_dir_all(run.path()).unwrap();
        std::fs::write(run.spec(), "").unwrap();
        assert_eq!(dir.job_state(id), JobState::New);
        let attempt = |exit, signal| Attempt {
            started: 1.0,
            ended: Some(2.0),
            exit,
            signal,
            executor: "local".into(),
            restart_count: None,
        };
        dir.record_attempt(id, &attempt(Some(75), None)).unwrap();
        assert_eq!(dir.job_state(id), JobState::New, "stopped, not failed");
        dir.record_attempt(id, &attempt(None, Some(9))).unwrap();
        assert_eq!(dir.job_state(id), JobState::Failed);
        assert_eq!(dir.read_attempts(id).len(), 2);
        Heartbeat::now(3).write(&run).unwrap();
        assert_eq!(dir.job_state(id), JobState::Running);
        let states = dir.states(&plan(&[])).unwrap();
        assert_eq!(states[id], JobState::Orphaned);
        assert_eq!(Attempt::from_shell_status(75), (Some(75), None));
        assert_eq!(Attempt::from_shell_status(137), (None, Some(9)));
    }
}
