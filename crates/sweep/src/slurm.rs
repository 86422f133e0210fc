//! The Slurm executor: the jobs of a sweep that are not finished run as one Slurm job array,
//! each task an `elab train` worker against the shared sweep directory.
//!
//! ```text
//! sweeps/<name>/slurm/sub-<n>.sh      the generated sbatch script (kept; readable)
//! sweeps/<name>/slurm/sub-<n>.tasks   array task index -> job id, one id per line
//! sweeps/<name>/slurm/sub-<n>.json    the submission: array id, script, tasks, sbatch options
//! sweeps/<name>/slurm/sub-<n>_<array>_<task>.out   the task's output until it knows its job
//! sweeps/<name>/jobs/<id>/slurm-<array>_<task>.out  the task's output (appended on requeue)
//! ```
//!
//! The script and the task list are written before `sbatch` runs, and the submission record
//! (first without, then with the array id) atomically, so a rerun always knows which job
//! each queued task trains. What runs is decided from the sweep directory (done, diverged)
//! and from `squeue` (pending, running): a rerun submits only jobs that failed, were
//! cancelled or were lost. Tasks are requeueable and get SIGUSR1 before their time limit; the
//! script forwards it to the worker, which checkpoints and exits 75, and the script requeues
//! its own task, which then resumes from the checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use elab_job::{SpecError, fsio};
use serde::{Deserialize, Serialize};

use crate::config::Plan;
use crate::sweepdir::{JobState, SweepDir, now};

/// `[executor.slurm]` of a sweep file, and the `elab sweep --executor slurm` flags (which
/// override it). Execution settings only: they never enter job ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition` (letters, digits, `_`, `.`, `-`; several separated by commas).
    #[serde(default)]
    pub partition: Option<String>,
    /// GPUs per job (`--gres=gpu:N`).
    #[serde(default)]
    pub gpus_per_job: Option<u32>,
    /// `--cpus-per-task`.
    #[serde(default)]
    pub cpus_per_job: Option<u32>,
    /// `--mem`: a number with an optional K, M, G or T suffix.
    #[serde(default)]
    pub mem: Option<String>,
    /// `--time`: digits, `:` and `-` (e.g. `30`, `2:00:00`, `1-12:00:00`).
    #[serde(default)]
    pub time: Option<String>,
    /// At most this many tasks of the array run at once (`--array=...%K`).
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Seconds before the time limit at which the task is told to checkpoint (default 120).
    #[serde(default)]
    pub signal_secs: Option<u32>,
    /// More sbatch options, each `--name` or `--name=value` (e.g. `--account=lab`, `--qos=low`).
    #[serde(default)]
    pub extra: Vec<String>,
}

const DEFAULT_SIGNAL_SECS: u32 = 120;
/// Options the executor sets itself; `extra` may not override them.
const RESERVED: &[&str] = &[
    "array",
    "wrap",
    "output",
    "error",
    "input",
    "chdir",
    "open-mode",
    "signal",
    "requeue",
    "no-requeue",
    "job-name",
    "parsable",
    "export",
    "export-file",
];

impl SlurmOptions {
    /// Checks every value against a strict pattern; `prefix` names where it came from
    /// (`executor.slurm` in a sweep file, `-` for command-line flags).
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |name: &str| {
            if prefix == "-" && name == "extra" {
                "--sbatch-arg".to_string()
            } else if prefix == "-" {
                format!("--{}", name.replace('_', "-"))
            } else {
                format!("{prefix}.{name}")
            }
        };
        let bad = |name: &str, what: &str, value: &str| {
            Err(SpecError::new(
                field(name),
                format!("must be {what}, got {value:?}"),
            ))
        };
        if let Some(p) = &self.partition {
            let ok = !p.is_empty()
                && !p.starts_with(['-', ','])
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-,".contains(c));
            if !ok {
                return bad(
                    "partition",
                    "letters, digits, `_`, `.`, `-` (several separated by `,`)",
                    p,
                );
            }
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
            let ok = !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && m.len() - digits.len() <= 1;
            if !ok {
                return bad(
                    "mem",
                    "a number with an optional K, M, G or T suffix (e.g. 8G)",
                    m,
                );
            }
        }
        if let Some(t) = &self.time {
            let ok = !t.is_empty()
                && t.starts_with(|c: char| c.is_ascii_digit())
                && t.chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '-');
            if !ok {
                return bad(
                    "time",
                    "digits, `:` and `-` (e.g. 30, 2:00:00, 1-12:00:00)",
                    t,
                );
            }
        }
        for (name, v) in [
            ("gpus_per_job", self.gpus_per_job),
            ("cpus_per_job", self.cpus_per_job),
            ("max_running", self.max_running),
        ] {
            if v == Some(0) {
                return bad(name, "at least 1", "0");
            }
        }
        for e in &self.extra {
            let (name, value) = match e.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (e.as_str(), None),
            };
            let name_ok = name.len() > 2
                && name.starts_with("--")
                && name[2..].starts_with(|c: char| c.is_ascii_lowercase())
                && name[2..]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            let value_ok = value.is_none_or(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.,:@+/=-".contains(c))
            });
            if !name_ok || !value_ok {
                return bad(
                    "extra",
                    "sbatch options `--name` or `--name=value` (value: letters, digits and _.,:@+/=-)",
                    e,
                );
            }
            if RESERVED.contains(&&name[2..]) {
                return bad("extra", "an option the executor does not set itself", e);
            }
        }
        Ok(())
    }

    /// `self` with every option that `over` sets replaced by it.
    pub fn overridden_by(self, over: SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: over.partition.or(self.partition),
            gpus_per_job: over.gpus_per_job.or(self.gpus_per_job),
            cpus_per_job: over.cpus_per_job.or(self.cpus_per_job),
            mem: over.mem.or(self.mem),
            time: over.time.or(self.time),
            max_running: over.max_running.or(self.max_running),
            signal_secs: over.signal_secs.or(self.signal_secs),
            extra: if over.extra.is_empty() {
                self.extra
            } else {
                over.extra
            },
        }
    }

    /// The sbatch options these settings translate to.
    fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(g) = self.gpus_per_job {
            args.push(format!("--gres=gpu:{g}"));
        }
        if let Some(c) = self.cpus_per_job {
            args.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            args.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            args.push(format!("--time={t}"));
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// How the Slurm executor runs a sweep.
#[derive(Debug, Clone)]
pub struct SlurmSettings {
    /// The `elab` binary the tasks run; it and the sweep directory must be visible at the
    /// same absolute paths on the compute nodes.
    pub elab: PathBuf,
    pub backend: String,
    pub options: SlurmOptions,
    /// Return right after submitting instead of waiting for the tasks.
    pub detach: bool,
}

/// One `sbatch` of the sweep: which array task trains which job.
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
    /// Task index -> job id.
    pub jobs: Vec<String>,
    pub submitted: f64,
    pub sbatch_args: Vec<String>,
}

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
    /// In the queue or running: must not be submitted again.
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

pub fn slurm_dir(dir: &SweepDir) -> PathBuf {
    dir.root.join("slurm")
}

/// Every submission of the sweep, oldest first.
pub fn submissions(dir: &SweepDir) -> Vec<Submission> {
    let mut subs: Vec<Submission> = std::fs::read_dir(slurm_dir(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("sub-") && name.ends_with(".json")
        })
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    subs.sort_by_key(|s| s.n);
    subs
}

fn record(dir: &SweepDir, sub: &Submission) -> std::io::Result<()> {
    let path = slurm_dir(dir).join(format!("sub-{}.json", sub.n));
    fsio::write_atomic(&path, &serde_json::to_vec_pretty(sub)?)
}

/// squeue could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask Slurm for the state of the sweep's tasks: {0}")]
pub struct QueryError(String);

/// Every task of `array_id` that Slurm still knows, task index -> state.
fn query_array(array_id: &str) -> Result<HashMap<usize, String>, QueryError> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-r", "-j", array_id, "-o", "%i %T"])
        .output()
        .map_err(|e| QueryError(format!("squeue: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // A job Slurm has forgotten (older than MinJobAge) is an error to squeue -j.
        if stderr.contains("Invalid job id") {
            return Ok(HashMap::new());
        }
        let last = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("failed");
        return Err(QueryError(last.to_string()));
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

/// A submission whose submitter died between sbatch and recording the array id: find the
/// array by its unique job name.
fn recover_array_id(sub: &Submission) -> Option<String> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-n", &sub.job_name, "-o", "%F"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

/// The Slurm task of every job the sweep ever submitted (its latest submission wins).
/// `Err` when squeue cannot be asked.
pub fn job_tasks(dir: &SweepDir) -> Result<BTreeMap<String, SlurmTask>, QueryError> {
    let mut out = BTreeMap::new();
    let mut states: HashMap<String, HashMap<usize, String>> = HashMap::new();
    for mut sub in submissions(dir) {
        if sub.array_id.is_none() {
            match recover_array_id(&sub) {
                Some(id) => {
                    sub.array_id = Some(id);
                    let _ = record(dir, &sub);
                }
                None => continue,
            }
        }
        let array = sub.array_id.clone().expect("set above");
        if !states.contains_key(&array) {
            states.insert(array.clone(), query_array(&array)?);
        }
        let known = &states[&array];
        for (task, job) in sub.jobs.iter().enumerate() {
            let state = known.get(&task).cloned().unwrap_or_else(|| "GONE".into());
            out.insert(
                job.clone(),
                SlurmTask {
                    array_id: array.clone(),
                    task,
                    state,
                },
            );
        }
    }
    Ok(out)
}

/// `'text'` for bash; refuses what cannot be a sane path in a script.
fn shell_quote(field: &str, text: &str) -> Result<String, SpecError> {
    if text.chars().any(|c| c.is_control()) {
        return Err(SpecError::new(
            field,
            format!("contains a control character: {text:?}"),
        ));
    }
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

fn abs_utf8(field: &str, path: &Path) -> Result<String, SpecError> {
    let abs = std::path::absolute(path)
        .map_err(|e| SpecError::new(field, format!("{}: {e}", path.display())))?;
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| SpecError::new(field, format!("is not valid UTF-8: {}", abs.display())))
}

/// A short stable tag of the sweep directory, so that job names of two sweeps never collide.
fn dir_tag(root: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in root.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:08x}", h as u32)
}

/// The sbatch script of one submission. Every value in it is validated (job ids are hex,
/// the backend is a keyword) or single-quoted (paths).
fn script(
    elab: &str,
    root: &str,
    backend: &str,
    tasks_file: &str,
    sweep: &str,
    n: u32,
    args: &[String],
) -> Result<String, SpecError> {
    let q = |f: &str, s: &str| shell_quote(f, s);
    let shown: Vec<String> = args
        .iter()
        .map(|a| q("sbatch option", a))
        .collect::<Result<_, _>>()?;
    Ok(format!(
        r#"#!/bin/bash
# Generated by `elab sweep --executor slurm` for sweep {sweep}, submission {n}; kept for reference.
# Submitted as: sbatch {shown} <this script>
# Each array task trains the job on line (SLURM_ARRAY_TASK_ID + 1) of the task list.
set -u
ELAB={elab}
SWEEP={root}
TASKS={tasks}
BACKEND={backend}
TASK="${{SLURM_ARRAY_TASK_ID:?run this script as a Slurm array task}}"
ARRAY="${{SLURM_ARRAY_JOB_ID:?run this script as a Slurm array task}}"
JOB="$(sed -n "$((TASK + 1))p" "$SWEEP/$TASKS")"
case "$JOB" in
    "" | *[!0-9a-f]*) echo "elab: no job for array task $TASK in $SWEEP/$TASKS" >&2; exit 2 ;;
esac
DIR="$SWEEP/jobs/$JOB"
exec >>"$DIR/slurm-${{ARRAY}}_${{TASK}}.out" 2>&1
RESTARTS="${{SLURM_RESTART_COUNT:-0}}"
case "$RESTARTS" in "" | *[!0-9]*) RESTARTS=0 ;; esac
STARTED="$(date +%s.%N)"
echo "elab: job $JOB as task ${{ARRAY}}_${{TASK}}, restart $RESTARTS, on $(hostname) at $(date -Is)"

# SIGUSR1 comes before the time limit (--signal=B:USR1@secs), SIGTERM on scancel, requeue or
# preemption: the worker checkpoints at the next step and exits 75.
PID=
WARNED=0
trap 'WARNED=1; [ -n "$PID" ] && kill -USR1 "$PID" 2>/dev/null' USR1
trap '[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null' TERM
trap '[ -n "$PID" ] && kill -INT "$PID" 2>/dev/null' INT
"$ELAB" train "$DIR/spec.toml" --out "$DIR" --backend "$BACKEND" </dev/null &
PID=$!
while :; do
    wait "$PID"
    # A trapped signal interrupts wait; the worker may still be checkpointing.
    kill -0 "$PID" 2>/dev/null || break
done
wait "$PID"
CODE=$?
ENDED="$(date +%s.%N)"
rm -f "$DIR/heartbeat.json"
if [ "$CODE" -gt 128 ]; then EXIT=null; SIGNAL=$((CODE - 128)); else EXIT=$CODE; SIGNAL=null; fi
printf '{{"started":%s,"ended":%s,"exit":%s,"signal":%s,"executor":"slurm:%s_%s","restart_count":%s}}\n' \
    "$STARTED" "$ENDED" "$EXIT" "$SIGNAL" "$ARRAY" "$TASK" "$RESTARTS" >>"$DIR/attempts.jsonl"
echo "elab: worker exited $CODE at $(date -Is)"
if [ "$CODE" = 75 ] && [ "$WARNED" = 1 ]; then
    # Checkpointed before the time limit: run again, from the checkpoint.
    echo "elab: requeueing ${{ARRAY}}_${{TASK}}"
    scontrol requeue "${{ARRAY}}_${{TASK}}"
fi
exit "$CODE"
"#,
        shown = shown.join(" "),
        elab = q("elab binary", elab)?,
        root = q("sweep directory", root)?,
        tasks = q("task list", tasks_file)?,
        backend = q("backend", backend)?,
    ))
}

/// The largest array Slurm accepts here (MaxArraySize - 1 is the largest index).
fn max_array_size() -> usize {
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

/// How a Slurm run of the sweep ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmReport {
    /// Array ids submitted by this call.
    pub submitted: Vec<String>,
    /// Jobs submitted by this call.
    pub submitted_jobs: usize,
    /// Jobs already in the queue (pending or running), not submitted again.
    pub queued: usize,
    pub done: usize,
    pub diverged: usize,
    /// Not done and not in the queue when the call returned (only when waiting).
    pub failed: Vec<String>,
    pub detached: bool,
}

/// Submits every job of `plan` that is not done, diverged, pending or running, as job arrays
/// (one unless the sweep exceeds MaxArraySize), then waits for the sweep's tasks unless
/// `settings.detach`.
pub fn run_slurm(
    dir: &SweepDir,
    plan: &Plan,
    settings: &SlurmSettings,
) -> anyhow::Result<SlurmReport> {
    settings.options.validate("-")?;
    if !["auto", "wgpu", "cpu"].contains(&settings.backend.as_str()) {
        return Err(SpecError::new(
            "backend",
            format!("must be auto, wgpu or cpu, got {:?}", settings.backend),
        )
        .into());
    }
    let root = abs_utf8("sweep directory", &dir.root)?;
    let elab = abs_utf8("elab binary", &settings.elab)?;
    let mut report = SlurmReport {
        detached: settings.detach,
        ..Default::default()
    };
    let tasks = job_tasks(dir)?;
    let mut pending = Vec::new();
    for job in &plan.jobs {
        match dir.job_state(&job.id) {
            JobState::Done => report.done += 1,
            JobState::Diverged => report.diverged += 1,
            _ if tasks.get(&job.id).is_some_and(SlurmTask::active) => report.queued += 1,
            _ => pending.push(job.id.clone()),
        }
    }
    std::fs::create_dir_all(slurm_dir(dir))?;
    let tag = dir_tag(&root);
    let chunk = max_array_size().saturating_sub(1).max(1);
    for ids in pending.chunks(chunk) {
        let n = submissions(dir).last().map_or(1, |s| s.n + 1);
        let sub = submit(dir, &root, &elab, settings, plan, ids, n, &tag)?;
        eprintln!(
            "slurm: submitted array {} ({} tasks{}): {}",
            sub.array_id.as_deref().unwrap_or("?"),
            ids.len(),
            settings
                .options
                .max_running
                .map(|k| format!(", at most {k} at once"))
                .unwrap_or_default(),
            dir.root.join(&sub.script).display(),
        );
        report.submitted.extend(sub.array_id);
        report.submitted_jobs += ids.len();
    }
    if pending.is_empty() {
        eprintln!(
            "slurm: nothing to submit ({} done, {} diverged, {} already in the queue)",
            report.done, report.diverged, report.queued
        );
    }
    if settings.detach {
        eprintln!(
            "detached: follow with `elab status {root}`, stop with `elab cancel {root}`; rerun the same command to resubmit what fails"
        );
        return Ok(report);
    }
    wait(dir)?;
    report.done = 0;
    report.diverged = 0;
    let tasks = job_tasks(dir).unwrap_or_default();
    for job in &plan.jobs {
        match dir.job_state(&job.id) {
            JobState::Done => report.done += 1,
            JobState::Diverged => report.diverged += 1,
            _ => {
                let how = tasks
                    .get(&job.id)
                    .map(|t| format!("slurm {}_{} {}", t.array_id, t.task, t.state))
                    .unwrap_or_else(|| "never submitted".into());
                eprintln!(
                    "failed    {} ({how}); log: {}",
                    job.id,
                    dir.job(&job.id).log().display()
                );
                report.failed.push(job.id.clone());
            }
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn submit(
    dir: &SweepDir,
    root: &str,
    elab: &str,
    settings: &SlurmSettings,
    plan: &Plan,
    ids: &[String],
    n: u32,
    tag: &str,
) -> anyhow::Result<Submission> {
    for id in ids {
        // Job ids are hashes; anything else would be a bug, and must not reach a script.
        anyhow::ensure!(
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "job id {id:?} is not lowercase hex"
        );
    }
    let job_name = format!("elab-{}-{tag}-{n}", plan.sweep);
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
        format!("--chdir={root}"),
        format!("--output=slurm/sub-{n}_%A_%a.out"),
    ];
    args.extend(settings.options.sbatch_args());
    let text = script(
        elab,
        root,
        &settings.backend,
        &format!("slurm/{tasks_name}"),
        &plan.sweep,
        n,
        &args,
    )?;
    let sdir = slurm_dir(dir);
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
        jobs: ids.to_vec(),
        submitted: now(),
        sbatch_args: args.clone(),
    };
    record(dir, &sub)?;
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
    record(dir, &sub)?;
    tracing::info!(array = ?sub.array_id, jobs = ids.len(), "submitted");
    Ok(sub)
}

/// Polls squeue until no task of the sweep is pending or running, printing a line whenever
/// the counts change.
fn wait(dir: &SweepDir) -> anyhow::Result<()> {
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
            *counts.entry(t.state.clone()).or_default() += 1;
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
        if !tasks.values().any(SlurmTask::active) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs_f64(poll));
    }
}

/// `elab status`'s Slurm section: each submitted job's task and its state in the queue.
/// `None` when the sweep was never submitted to Slurm.
pub fn slurm_status(dir: &SweepDir, plan: &Plan) -> Option<String> {
    let subs = submissions(dir);
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
                for (i, job) in s.jobs.iter().enumerate() {
                    t.insert(
                        job.clone(),
                        SlurmTask {
                            array_id: s.array_id.clone().unwrap_or_else(|| "?".into()),
                            task: i,
                            state: "?".into(),
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
    for id in ids {
        let Some(t) = tasks.get(&id) else { continue };
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
    Some(out)
}

/// Refuses to run the sweep here while Slurm still has tasks of it in the queue: a job would
/// be trained by two workers. Sweeps never submitted to Slurm pass without asking squeue.
pub fn refuse_if_queued(dir: &SweepDir) -> anyhow::Result<()> {
    if submissions(dir).is_empty() {
        return Ok(());
    }
    let queued = job_tasks(dir)
        .map(|t| t.values().filter(|t| t.active()).count())
        .unwrap_or(0);
    anyhow::ensure!(
        queued == 0,
        "{} has {queued} job(s) pending or running in Slurm; wait for them, or `elab cancel {}` first",
        dir.root.display(),
        dir.root.display()
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
    fn rejects_shell_metacharacters() {
        let bad = [
            SlurmOptions {
                partition: Some("debug; touch /tmp/pwned".into()),
                ..Default::default()
            },
            SlurmOptions {
                mem: Some("4G$(id)".into()),
                ..Default::default()
            },
            SlurmOptions {
                time: Some("1:00`id`".into()),
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--qos=low --wrap=id".into()],
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--wrap=id".into()],
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--account=a'b".into()],
                ..Default::default()
            },
        ];
        for o in bad {
            assert!(o.validate("executor.slurm").is_err(), "{o:?}");
        }
        let good = SlurmOptions {
            partition: Some("gpu-a100,debug".into()),
            mem: Some("16G".into()),
            time: Some("1-02:00:00".into()),
            gpus_per_job: Some(1),
            extra: vec!["--account=lab_1".into(), "--exclusive".into()],
            ..Default::default()
        };
        good.validate("executor.slurm").unwrap();
        assert_eq!(
            SlurmOptions {
                partition: Some("x;y".into()),
                ..Default::default()
            }
            .validate("-")
            .unwrap_err()
            .field,
            "--partition"
        );
    }

    #[test]
    fn quotes_paths() {
        assert_eq!(shell_quote("p", "/a b/it's").unwrap(), r"'/a b/it'\''s'");
        assert!(shell_quote("p", "/a\nb").is_err());
    }
}
