//! A sweep as Slurm job arrays: the options, the submission, `elab cancel`, and the attempt
//! records a Slurm task writes.

use std::path::Path;
use std::process::ExitCode;

use elab_job::{Attempt, RunDir, SpecError, SweepDir};
use elab_sweep::SweepConfig;

use crate::flags::{ClusterArgs, SweepRunArgs};
use crate::sweep::read_plan;

/// The validated Slurm options, or `None` for the local executor. Runs before anything is written.
pub(crate) fn slurm_options(
    config: &SweepConfig,
    args: &ClusterArgs,
) -> anyhow::Result<Option<elab_sweep::SlurmOptions>> {
    let flags = elab_sweep::SlurmOptions {
        partition: args.partition.clone(),
        gpus_per_job: args.gpus_per_job,
        cpus_per_job: args.cpus_per_job,
        mem: args.mem.clone(),
        time: args.time.clone(),
        max_running: args.max_running,
        signal_secs: None,
        extra: args.sbatch_arg.clone(),
    };
    if args.executor != "slurm" {
        if flags != elab_sweep::SlurmOptions::default() || args.detach {
            return Err(SpecError::new(
                "--executor",
                "Slurm options (--partition, --detach, ...) need --executor slurm",
            )
            .into());
        }
        return Ok(None);
    }
    flags.validate("-")?;
    let options = config
        .slurm
        .clone()
        .unwrap_or_default()
        .overridden_by(flags);
    // A time limit from the sweep file was checked against its signal_secs when it was read.
    if args.time.is_some() {
        options.check_time_limit("--time")?;
    }
    Ok(Some(options))
}

pub(crate) fn slurm_sweep(
    config: &SweepConfig,
    dir: &SweepDir,
    plan: &elab_job::Plan,
    args: &SweepRunArgs,
    options: elab_sweep::SlurmOptions,
) -> anyhow::Result<ExitCode> {
    let settings = elab_sweep::SlurmSettings {
        elab: std::env::current_exe()?,
        backend: args
            .backend
            .clone()
            .unwrap_or_else(|| config.sweep.backend.clone()),
        options,
        pack: config.sweep.pack,
        detach: args.cluster.detach,
    };
    let report = elab_sweep::run_slurm(dir, plan, &settings)?;
    if report.detached {
        return Ok(ExitCode::SUCCESS);
    }
    let held = match report.held.len() {
        0 => String::new(),
        n => format!(", {n} held in Slurm"),
    };
    eprintln!(
        "sweep {}: {} done, {} diverged, {} failed{held} of {} jobs",
        config.sweep.name,
        report.done,
        report.diverged,
        report.failed.len(),
        plan.jobs.len()
    );
    if !report.failed.is_empty() {
        eprintln!(
            "rerun the same command to resubmit the failed jobs (they resume from their checkpoints)"
        );
    }
    if !report.held.is_empty() {
        eprintln!(
            "held jobs run once released (`scontrol release`; `elab status` lists them); rerun the same command to wait for them"
        );
    }
    Ok(if report.failed.is_empty() && report.held.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn cancel(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = SweepDir::new(dir);
    read_plan(&dir)?;
    let arrays = elab_sweep::cancel_slurm(&dir)?;
    if arrays.is_empty() {
        eprintln!("{}: nothing in the Slurm queue", dir.root.display());
    } else {
        eprintln!(
            "{}: cancelled Slurm array(s) {}; the jobs keep their checkpoints",
            dir.root.display(),
            arrays.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `elab record-attempt`: what a Slurm task's wrapper script saw of its worker, appended to
/// the job's attempts.
pub(crate) fn record_attempt(
    job_dir: &Path,
    started: f64,
    ended: f64,
    status: i32,
    executor: String,
    restart_count: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let (exit, signal) = Attempt::from_shell_status(status);
    let attempt = Attempt {
        started,
        ended: Some(ended),
        exit,
        signal,
        executor,
        restart_count,
    };
    let run = RunDir::new(job_dir);
    elab_job::record_attempt(&run, &attempt)
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| anyhow::anyhow!("{}: {e}", elab_job::attempts_path(&run).display()))
}
