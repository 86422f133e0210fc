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
    /// Held: in the queue, but it will not run until someone releases it (see [`is_held`]).
    pub held: bool,
}

impl SlurmTask {
    /// In the queue or running: must not be submitted again, nor run anywhere else.
    pub fn active(&self) -> bool {
        is_active(&self.state)
    }

    /// In the queue and waiting for a person, not for Slurm: waiting for it would never end.
    pub fn needs_user(&self) -> bool {
        self.held && self.active()
    }
}

/// States (and pending reasons) in which a task stays in the queue until a person acts:
/// `scontrol release` (or `scancel`). REQUEUE_HOLD: requeued with a hold (`scontrol
/// requeuehold`, or by Slurm after a launch failure); SPECIAL_EXIT: requeued in a special
/// state after an exit code the site marked; a pending task held by a user or an admin
/// (`scontrol hold`, reason JobHeldUser / JobHeldAdmin). Such a task is still active (it
/// must not be submitted again, it may yet run) but nothing will change without the user.
pub fn is_held(state: &str, reason: &str) -> bool {
    matches!(state, "REQUEUE_HOLD" | "SPECIAL_EXIT" | "RESV_DEL_HOLD")
        || (state == "PENDING" && reason.starts_with("JobHeld"))
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

/// Every task of `array_id` that Slurm still knows, task index -> (state, held).
fn query_array(array_id: &str) -> Result<HashMap<usize, (String, bool)>, QueryError> {
    let out = squeue(&["-h", "-t", "all", "-r", "-j", array_id, "-o", "%i %T %r"])?;
    if !out.status.success() {
        // A job Slurm has forgotten (older than MinJobAge) is an error to squeue -j: an
        // answer ("no such job"), not a failure to answer.
        if String::from_utf8_lossy(&out.stderr).contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        return Err(QueryError::Squeue(complaint(&out)));
    }
    Ok(parse_tasks(&String::from_utf8_lossy(&out.stdout), array_id))
}

/// squeue's `%i %T %r` lines: task index -> (state, held).
fn parse_tasks(text: &str, array_id: &str) -> HashMap<usize, (String, bool)> {
    let mut tasks = HashMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(id), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let reason = parts.next().unwrap_or_default();
        let Some((array, task)) = id.split_once('_') else {
            continue;
        };
        if array != array_id {
            continue;
        }
        if let Ok(task) = task.parse::<usize>() {
            // "CANCELLED by 0" prints as CANCELLED with %T; keep the first word anyway.
            let state = state.trim_end_matches('+');
            tasks.insert(task, (state.to_string(), is_held(state, reason)));
        }
    }
    tasks
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
    let mut states: HashMap<String, HashMap<usize, (String, bool)>> = HashMap::new();
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
            let (state, held) = known
                .get(&task)
                .cloned()
                .unwrap_or_else(|| ("GONE".into(), false));
            for job in pack.split(' ') {
                out.insert(
                    job.to_string(),
                    SlurmTask {
                        array_id: array.clone(),
                        task,
                        state: state.clone(),
                        held,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tasks_are_active_and_need_the_user() {
        let text = "12_0 REQUEUE_HOLD JobHeldAdmin\n12_1 PENDING JobHeldUser\n\
                    12_2 PENDING Priority\n12_3 RUNNING None\n12_4 SPECIAL_EXIT None\n\
                    12_5 COMPLETED None\n13_6 PENDING JobHeldUser\n12_7 FAILED\n";
        let tasks = parse_tasks(text, "12");
        let task = |i: usize| {
            let (state, held) = tasks[&i].clone();
            SlurmTask {
                array_id: "12".into(),
                task: i,
                state,
                held,
            }
        };
        for i in [0, 1, 4] {
            assert!(task(i).active() && task(i).needs_user(), "{:?}", task(i));
        }
        for i in [2, 3] {
            assert!(task(i).active() && !task(i).needs_user(), "{:?}", task(i));
        }
        for i in [5, 7] {
            assert!(!task(i).active() && !task(i).needs_user(), "{:?}", task(i));
        }
        assert!(!tasks.contains_key(&6), "another array's task");
    }
}
