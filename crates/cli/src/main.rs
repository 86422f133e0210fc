//! `elab`: the lab's command line. It parses arguments and calls the library crates; the
//! exit code says what happened: 0 done, 2 bad input (nothing written), 3 diverged,
//! 75 stopped on request (resumable), 1 anything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::{Parser, Subcommand};
use elab_job::{JobSpec, RunDir, RunStatus, SpecError};
use elab_train::{Backend, Outcome, RunOptions};
use tracing_subscriber::fmt::writer::MakeWriterExt;

const EXIT_BAD_INPUT: u8 = 2;
const EXIT_DIVERGED: u8 = 3;
const EXIT_INTERRUPTED: u8 = 75;

#[derive(Parser)]
#[command(name = "elab", version, about = "Train families of small GPTs and find where abilities appear")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one job (the unit the sweep engine and Slurm run), resuming it if interrupted.
    Train {
        /// A job file: task, model, train, eval, seed.
        job: PathBuf,
        /// Run directory [default: sweeps/_runs/<job id>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// auto: wgpu on a real GPU, else the CPU (Flex).
        #[arg(long, default_value = "auto", value_parser = ["auto", "wgpu", "cpu"])]
        backend: String,
        /// Print progress as JSON lines on stdout (for the sweep scheduler).
        #[arg(long)]
        progress_json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train {
            job,
            out,
            backend,
            progress_json,
        } => train(job, out, &backend, progress_json),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(spec) = err.downcast_ref::<SpecError>() {
                eprintln!("error: {spec}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn train(job: PathBuf, out: Option<PathBuf>, backend: &str, progress_json: bool) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::from_file(&job)?;
    let run = RunDir::new(out.unwrap_or_else(|| PathBuf::from("sweeps/_runs").join(spec.id())));
    std::fs::create_dir_all(run.path())?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(run.log())?;
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr.and(std::sync::Mutex::new(log)))
        .init();

    // SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (Slurm's warning before preemption) all mean:
    // checkpoint at the next step boundary and exit 75 so that the run can be resumed.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let mut last_print = Instant::now();
    let mut on_progress = |p: &elab_train::Progress| {
        if progress_json && (last_print.elapsed().as_millis() >= 250 || p.step == p.steps) {
            last_print = Instant::now();
            println!("{}", serde_json::to_string(p).unwrap_or_default());
        }
    };
    let outcome = elab_train::train(
        &spec,
        &run,
        RunOptions {
            backend: backend.parse::<Backend>()?,
            stop,
            on_progress: &mut on_progress,
        },
    )?;
    Ok(match outcome {
        Outcome::Finished(summary) => match summary.status {
            RunStatus::Done => ExitCode::SUCCESS,
            RunStatus::Diverged { step } => {
                eprintln!("diverged at step {step}; the last good checkpoint is kept");
                ExitCode::from(EXIT_DIVERGED)
            }
        },
        Outcome::Interrupted { step } => {
            eprintln!("stopped at step {step}; run the same command again to resume");
            ExitCode::from(EXIT_INTERRUPTED)
        }
    })
}
