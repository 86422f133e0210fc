//! The Slurm executor: the jobs of a sweep that are not finished run as one Slurm job array,
//! each task an `elab train` worker training one pack of jobs (see `packs`: one allocation
//! per pack, up to the `auto` limits) against the shared sweep directory.
//!
//! ```text
//! sweeps/<name>/slurm/sub-<n>.sh      the generated sbatch script (kept; readable)
//! sweeps/<name>/slurm/sub-<n>.tasks   array task index -> job ids (a pack), one line each
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
//! script (`task.sh`) forwards it to the worker, which checkpoints and exits 75, and the script
//! requeues its own task, which then resumes from the checkpoint.
//!
//! Modules: [`submit`] (sbatch, the submission records, waiting), [`squeue`] (what Slurm
//! says), [`status`] (status, the local executor's check, cancel), [`script`] (the script).
//! The options are configuration: [`crate::config::SlurmOptions`].

mod script;
mod squeue;
mod status;
mod submit;

pub use squeue::{SlurmTask, job_tasks};
pub use status::{cancel, refuse_if_queued, slurm_status};
pub use submit::{Submission, slurm_dir, submissions};

use std::path::PathBuf;

use elab_job::{JobState, Plan, SpecError, SweepDir};

use crate::config::SlurmOptions;
use crate::packs::{Device, PackSize, form_packs};
use script::abs_utf8;
use submit::{Target, dir_tag, max_array_size, submit, wait};

/// How the Slurm executor runs a sweep.
#[derive(Debug, Clone)]
pub struct SlurmSettings {
    /// The `elab` binary the tasks run; it and the sweep directory must be visible at the
    /// same absolute paths on the compute nodes.
    pub elab: PathBuf,
    pub backend: String,
    pub options: SlurmOptions,
    pub pack: PackSize,
    /// Return right after submitting instead of waiting for the tasks.
    pub detach: bool,
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
    /// Held in the queue (REQUEUE_HOLD, SPECIAL_EXIT, a user's or admin's hold): they wait for
    /// the user, who releases or cancels them (only when waiting).
    pub held: Vec<String>,
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
    plan.check_ids().map_err(anyhow::Error::msg)?;
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
            _ => pending.push(job),
        }
    }
    // Each array task is an allocation of its own: `auto` packs as much as its limits allow
    // (one slot), rather than spreading jobs over tasks.
    let specs: Vec<Option<elab_job::JobSpec>> = pending
        .iter()
        .map(|job| {
            job.spec.clone().or_else(|| {
                let text = std::fs::read_to_string(dir.job(&job.id).spec()).ok()?;
                elab_job::JobSpec::from_toml(&text).ok()
            })
        })
        .collect();
    let with_specs: Vec<_> = pending
        .iter()
        .copied()
        .zip(specs.iter().map(Option::as_ref))
        .collect();
    let device = Device::of_backend(&settings.backend);
    let pending: Vec<Vec<String>> = form_packs(&with_specs, settings.pack, 1, device)
        .into_iter()
        .map(|pack| pack.iter().map(|j| j.id.clone()).collect())
        .collect();
    std::fs::create_dir_all(slurm_dir(dir))?;
    let tag = dir_tag(&root);
    let target = Target {
        dir,
        root: &root,
        elab: &elab,
        tag: &tag,
    };
    let chunk = max_array_size().saturating_sub(1).max(1);
    for packs in pending.chunks(chunk) {
        let n = submissions(dir)?.last().map_or(1, |s| s.n + 1);
        let sub = submit(&target, settings, plan, packs, n)?;
        let jobs: usize = packs.iter().map(Vec::len).sum();
        eprintln!(
            "slurm: submitted array {} ({} tasks, {jobs} jobs{}): {}",
            sub.array_id.as_deref().unwrap_or("?"),
            packs.len(),
            settings
                .options
                .max_running
                .map(|k| format!(", at most {k} at once"))
                .unwrap_or_default(),
            dir.root.join(&sub.script).display(),
        );
        report.submitted.extend(sub.array_id);
        report.submitted_jobs += jobs;
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
            _ if tasks.get(&job.id).is_some_and(SlurmTask::needs_user) => {
                let t = &tasks[&job.id];
                eprintln!(
                    "held      {} (slurm {}_{} {}): it waits for you: `scontrol release {}_{}` \
                     lets it run, `elab cancel {root}` cancels it",
                    job.id, t.array_id, t.task, t.state, t.array_id, t.task
                );
                report.held.push(job.id.clone());
            }
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
