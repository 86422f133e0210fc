//! `sweeps/<name>/`: the frozen config, the plan and one run directory per job. Everything
//! here can be read with ls and cat, and every state is derived from files that are written
//! atomically, so the directory is consistent whenever the process dies.
//!
//! ```text
//! sweeps/<name>/config.toml      the sweep file as it was first run (frozen)
//! sweeps/<name>/plan.json        the jobs of the current config, in run order
//! sweeps/<name>/sweep.log        the scheduler's log
//! sweeps/<name>/lock             held by the live scheduler
//! sweeps/<name>/jobs/<id>/       one run directory per job (see elab_job::RunDir)
//! sweeps/<name>/jobs/<id>/attempts.jsonl   one line per worker attempt: start, end, exit
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use elab_job::{RunDir, RunStatus, fsio};
use serde::{Deserialize, Serialize};

use crate::config::Plan;

/// A heartbeat older than this means the worker is gone, whatever its last state said.
pub const HEARTBEAT_STALE_SECS: f64 = 90.0;

#[derive(Debug, Clone)]
pub struct SweepDir {
    pub root: PathBuf,
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

/// One worker attempt, as the scheduler recorded it.
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

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
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
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub fn job(&self, id: &str) -> RunDir {
        RunDir::new(self.jobs_dir().join(id))
    }
    pub fn attempts(&self, id: &str) -> PathBuf {
        self.jobs_dir().join(id).join("attempts.jsonl")
    }

    pub fn exists(&self) -> bool {
        self.config().exists()
    }

    pub fn read_plan(&self) -> io::Result<Plan> {
        let bytes = std::fs::read(self.plan_path())?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
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
        std::fs::read_to_string(self.attempts(id))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn record_attempt(&self, id: &str, attempt: &Attempt) -> io::Result<()> {
        fsio::append_line(&self.attempts(id), &serde_json::to_string(attempt)?)
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
        if heartbeat_age(&run).is_some_and(|age| age < HEARTBEAT_STALE_SECS) {
            return JobState::Running;
        }
        let last_failed = self
            .read_attempts(id)
            .last()
            .is_some_and(|a| a.ended.is_some() && a.exit != Some(0) && a.exit != Some(75));
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

/// What a live worker last wrote to `heartbeat.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Heartbeat {
    pub unix_time: f64,
    pub step: u64,
}

pub fn read_heartbeat(run: &RunDir) -> Option<Heartbeat> {
    serde_json::from_slice(&std::fs::read(run.heartbeat()).ok()?).ok()
}

/// Seconds since the worker's last heartbeat, if it left one.
pub fn heartbeat_age(run: &RunDir) -> Option<f64> {
    read_heartbeat(run).map(|beat| now() - beat.unix_time)
}

/// `sweeps/<name>` under `root`.
pub fn sweep_dir(root: &Path, name: &str) -> SweepDir {
    SweepDir::new(root.join(name))
}
