//! What Slurm says about the sweep's tasks, from `squeue`. Every question either gets Slurm's
//! answer or an error: a failing `squeue` is never read as "nothing queued", since that could
//! let a job be trained twice.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output};

use elab_job::SweepDir;

use super::submit::{RecordError, record, submissions};

/// Where a job stands in Slurm: the task of its latest submission and that task's state.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmTask {
    pub array_id: String,
    pub task: usize,
    /// squeue's state (PENDING, RUNNING, COMPLETED, CANCELLED, ...), `GONE` when Slurm no
    /// longer knows the task, `?` when squeue could not be asked.
    pub state: String,
}

impl SlurmTask {
    /// In the queue or running: must not be submitted again, nor run anywhere else.
    pub fn active(&self) -> bool {
        is_active(&self.state)
    }
}

/// Slurm's states that end a task; everything else (pending, running, requeued, suspended,
/// completing, held, unknown) counts as still in the queue, so a job is never run twice.
fn is_active(state: &str) -> bool {
    const FINAL: &[&str] = &[
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "REVOKED",
        "GONE",
    ];
    !FINAL.contains(&state)
}

/// squeue could not be asked or did not answer, or what the sweep submitted cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot ask Slurm for the state of the sweep's tasks: {0}")]
    Squeue(String),
    #[error(transparent)]
    Record(#[from] RecordError),
}

fn squeue(args: &[&str]) -> Result<Output, QueryError> {
    Command::new("squeue")
        .args(args)
        .output()
        .map_err(|e| QueryError::Squeue(format!("squeue: {e}")))
}

/// The last non-empty line of squeue's stderr, for an error message.
fn complaint(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message");
    format!("squeue failed ({}): {last}", out.status)
}

/// Every task of `array_id` that Slurm still knows, task index -> state.
fn query_array(array_id: &str) -> Result<HashMap<usize, String>, QueryError> {
    let out = squeue(&["-h", "-t", "all", "-r", "-j", array_id, "-o", "%i %T"])?;
    if !out.status.success() {
        // A job Slurm has forgotten (older than MinJobAge) is an error to squeue -j: an
        // answer ("no such job"), not a failure to answer.
        if String::from_utf8_lossy(&out.stderr).contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(QueryError::Squeue(complaint(&out)));
    }
    let mut tasks = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((array, task)) = id.split_once('_') else {
            continue;
        };
        if array != array_id {
            continue;
        }
        if let Ok(task) = task.parse::<usize>() {
            // "CANCELLED by 0" prints as CANCELLED with %T; keep the first word anyway.
            tasks.insert(task, state.trim_end_matches('+').to_string());
        }
    }
    Ok(tasks)
}

/// A submission whose submitter died between sbatch and recording the array id: the array
/// found by its unique job name, `None` if Slurm has none by that name.
fn recover_array_id(job_name: &str) -> Result<Option<String>, QueryError> {
    let out = squeue(&["-h", "-t", "all", "-n", job_name, "-o", "%F"])?;
    if !out.status.success() {
        return Err(QueryError::Squeue(complaint(&out)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string))
}

/// The Slurm task of every job the sweep ever submitted (its latest submission wins).
/// `Err` when squeue cannot be asked.
pub fn job_tasks(dir: &SweepDir) -> Result<BTreeMap<String, SlurmTask>, QueryError> {
    let mut out = BTreeMap::new();
    let mut states: HashMap<String, HashMap<usize, String>> = HashMap::new();
    for mut sub in submissions(dir)? {
        if sub.array_id.is_none() {
            match recover_array_id(&sub.job_name)? {
                Some(id) => {
                    sub.array_id = Some(id);
                    let _ = record(dir, &sub);
                }
                // Never reached Slurm (or Slurm forgot it long ago): nothing is queued.
                None => continue,
            }
        }
        let array = sub.array_id.clone().expect("set above");
        if !states.contains_key(&array) {
            states.insert(array.clone(), query_array(&array)?);
        }
        let known = &states[&array];
        for (task, pack) in sub.jobs.iter().enumerate() {
            let state = known.get(&task).cloned().unwrap_or_else(|| "GONE".into());
            for job in pack.split(' ') {
                out.insert(
                    job.to_string(),
                    SlurmTask {
                        array_id: array.clone(),
                        task,
                        state: state.clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}
