//! `elab`: the lab's command line. It parses arguments and calls the library crates; the
//! exit code says what happened: 0 done, 2 bad input (nothing written), 3 diverged,
//! 75 stopped on request (resumable), 1 anything else (see `elab_job::exit`).

use std::process::ExitCode;

use clap::Parser;
use elab_job::{SpecError, SweepDir, exit, sweep_dir};
use elab_sweep::{PrepareError, SweepConfig};

/// jemalloc, told never to return freed pages to the kernel. burn's CPU backend frees and
/// reallocates every activation buffer each step; glibc's malloc hands blocks above its mmap
/// threshold (128 KiB, capped at 32 MiB) back to the kernel, and the page faults and page
/// zeroing that follow took a quarter of a step (Nanda recipe profile). With decay off, a
/// training process keeps its peak working set and reuses it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up: `-1` disables purging.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 36] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

/// `eprintln!` that never panics. A sweep outlives its terminal (a hang-up, a `| tee` that
/// died): its last words must not turn a clean stop, with every job checkpointed, into a
/// panic and exit code 101.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod flags;
mod results;
mod slurm;
mod sweep;
mod train;

use bench::{bench, device};
use flags::{Cli, Command};
use results::{claims, export, plot};
use slurm::{cancel, record_attempt};
use sweep::{plan, refine, status, sweep};
use train::{repair, stage_loaded_optimizer_state_on_the_cpu, train};

fn main() -> ExitCode {
    stage_loaded_optimizer_state_on_the_cpu();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan { config } => plan(&config),
        Command::Sweep {
            config,
            run,
            allow_changed_config,
        } => SweepConfig::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|c| {
                let dir = sweep_dir(&run.sweeps_dir, &c.sweep.name);
                sweep(c, dir, &run, allow_changed_config)
            }),
        Command::Resume { sweep_dir, run } => {
            SweepConfig::load(&SweepDir::new(&sweep_dir).config())
                .map_err(anyhow::Error::from)
                .and_then(|c| sweep(c, SweepDir::new(&sweep_dir), &run, false))
        }
        Command::Refine {
            sweep_dir,
            run,
            limits,
        } => refine(&sweep_dir, &run, &limits),
        Command::Status { sweep_dir } => status(&sweep_dir),
        Command::Cancel { sweep_dir } => cancel(&sweep_dir),
        Command::Repair { run_dirs } => repair(&run_dirs),
        Command::Export {
            sweep_dir,
            out,
            no_plots,
            weights,
        } => export(&sweep_dir, out, no_plots, weights),
        Command::Claims {
            docs,
            results,
            check,
        } => claims(&docs, &results, check),
        Command::Plot { sweep_dir, out } => plot(&sweep_dir, out),
        Command::Bench {
            backend,
            steps,
            max_params,
            rungs,
            json,
            append_to,
        } => bench(&backend, steps, max_params, &rungs, json, append_to),
        Command::Device { backend } => device(&backend),
        Command::Train {
            jobs,
            out,
            backend,
            progress_json,
        } => train(jobs, out, &backend, progress_json),
        Command::RecordAttempt {
            job_dir,
            started,
            ended,
            status,
            executor,
            restart_count,
        } => record_attempt(&job_dir, started, ended, status, executor, restart_count),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(spec) = err.downcast_ref::<SpecError>() {
                eprintln!("error: {spec}");
                return ExitCode::from(exit::BAD_INPUT);
            }
            if let Some(PrepareError::Spec(spec)) = err.downcast_ref::<PrepareError>() {
                eprintln!("error: {spec}");
                return ExitCode::from(exit::BAD_INPUT);
            }
            if let Some(e @ PrepareError::ChangedDefaults { .. }) =
                err.downcast_ref::<PrepareError>()
            {
                eprintln!("error: {e}");
                return ExitCode::from(exit::BAD_INPUT);
            }
            if let Some(e) = err.downcast_ref::<elab_report::OutDirError>() {
                eprintln!("error: {e}");
                return ExitCode::from(exit::BAD_INPUT);
            }
            note!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
