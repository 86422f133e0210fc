//! `elab train` and `elab repair`: one job (or a pack) in this process, and a run's
//! checkpoint pointer rebuilt; the process-wide logging and device set-up they share.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use elab_job::{JobSpec, RunDir, RunStatus, exit};
use elab_train::{Backend, Outcome, RunOptions};
use tracing_subscriber::fmt::writer::MakeWriterExt;

pub(crate) fn train(
    jobs: Vec<PathBuf>,
    out: Vec<PathBuf>,
    backend: &str,
    progress_json: bool,
) -> anyhow::Result<ExitCode> {
    if !out.is_empty() && out.len() != jobs.len() {
        anyhow::bail!(
            "{} job files but {} --out directories: give one per job, or none",
            jobs.len(),
            out.len()
        );
    }
    let specs = jobs
        .iter()
        .map(|job| JobSpec::from_file(job))
        .collect::<Result<Vec<_>, _>>()?;
    let runs: Vec<RunDir> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            RunDir::new(
                out.get(i)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from("sweeps/_runs").join(spec.id())),
            )
        })
        .collect();
    for run in &runs {
        std::fs::create_dir_all(run.path())?;
    }
    // A pack logs into its first job's log (the others' say where to look).
    log_to(&runs[0].log(), true)?;
    for run in &runs[1..] {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.log())?;
        writeln!(log, "trained in a pack: see {}", runs[0].log().display())?;
    }

    // SIGINT (Ctrl-C), SIGTERM, SIGUSR1 (Slurm's warning before the time limit) and SIGHUP
    // (unless ignored) all mean: checkpoint at the next step boundary and exit 75 so that the
    // run can be resumed.
    let stop = elab_train::stop_on_signals()?;
    let ids: Vec<String> = specs.iter().map(JobSpec::id).collect();
    let mut last_print = vec![Instant::now(); specs.len()];
    let mut on_progress = |job: usize, p: &elab_train::Progress| {
        if progress_json && (last_print[job].elapsed().as_millis() >= 250 || p.step == p.steps) {
            last_print[job] = Instant::now();
            let p = elab_train::Progress {
                job: (ids.len() > 1).then(|| ids[job].clone()),
                ..p.clone()
            };
            println!("{}", serde_json::to_string(&p).unwrap_or_default());
        }
    };
    let pack: Vec<(&JobSpec, &RunDir)> = specs.iter().zip(&runs).collect();
    let outcomes = elab_train::train_pack(
        &pack,
        RunOptions {
            backend: backend.parse::<Backend>()?,
            stop,
            on_progress: &mut on_progress,
        },
    )?;
    // One exit code for the pack: interrupted if any job was, else diverged if any job did
    // (the scheduler reads each job's state from its directory).
    let mut code = ExitCode::SUCCESS;
    for (id, outcome) in ids.iter().zip(&outcomes) {
        match outcome {
            Outcome::Finished(summary) => {
                if let RunStatus::Diverged { step } = summary.status {
                    eprintln!("{id}: diverged at step {step}; the last good checkpoint is kept");
                    if code == ExitCode::SUCCESS {
                        code = ExitCode::from(exit::DIVERGED);
                    }
                }
            }
            Outcome::Interrupted { step } => {
                eprintln!("{id}: stopped at step {step}; run the same command again to resume");
                code = ExitCode::from(exit::INTERRUPTED);
            }
        }
    }
    Ok(code)
}

/// `elab repair <run dir>...`: each run's checkpoint pointer rebuilt from the checkpoint
/// directories that load (see `elab_train::repair_checkpoints`).
pub(crate) fn repair(run_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for dir in run_dirs {
        let run = RunDir::new(dir);
        let spec = JobSpec::from_file(&run.spec())?;
        let r = elab_train::repair_checkpoints(&spec, &run)?;
        let fallback = r
            .previous
            .map_or("none".to_string(), |p| format!("step {p}"));
        println!(
            "{}: resumes from step {} (fallback: {fallback})",
            run.checkpoint_pointer().display(),
            r.step
        );
        for (step, why) in &r.unreadable {
            println!("  ckpt-{step:09} does not load ({why}); the next checkpoint removes it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// burn builds the optimizer state it loads from a checkpoint on `Device::default()`, which
/// is wgpu whenever wgpu is compiled in: on a machine without a GPU that would open a software
/// Vulkan device just to read a file. The CPU is always right: at its next step the optimizer
/// moves each state to its parameter's device (burn-optim's `ModuleOptimizer::load_record`).
pub(crate) fn stage_loaded_optimizer_state_on_the_cpu() {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { std::env::set_var("BURN_DEVICE", "flex") };
}

/// Sends this process's tracing logs to `path` (appended), and to stderr too if asked.
pub(crate) fn log_to(path: &std::path::Path, also_stderr: bool) -> anyhow::Result<()> {
    let file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    );
    let stderr = move || -> Box<dyn std::io::Write> {
        if also_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::sink())
        }
    };
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(stderr.and(file))
        .init();
    Ok(())
}
