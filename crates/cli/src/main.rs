//! `elab`: the lab's command line. It parses arguments and calls the library crates; the
//! exit code says what happened: 0 done, 2 bad input (nothing written), 3 diverged,
//! 75 stopped on request (resumable), 1 anything else (see `elab_job::exit`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use elab_job::{Attempt, JobSpec, RunDir, RunStatus, SpecError, SweepDir, exit, sweep_dir};
use elab_sweep::{
    LocalSettings, PrepareError, RefineRound, RefineSection, Resumption, SweepConfig, print_plan,
};
use elab_train::{Backend, Outcome, RunOptions};
use tracing_subscriber::fmt::writer::MakeWriterExt;

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

#[derive(Parser)]
#[command(
    name = "elab",
    version,
    about = "Train families of small GPTs and find where abilities appear"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the jobs a sweep file expands to (size, parameters, FLOPs), without running them.
    Plan { config: PathBuf },
    /// Run a sweep: every job not yet done, resuming interrupted ones from their checkpoints.
    Sweep {
        config: PathBuf,
        #[command(flatten)]
        run: SweepRunArgs,
        /// Accept a change to the sweep's fixed defaults (old jobs become orphaned).
        #[arg(long)]
        allow_changed_config: bool,
    },
    /// Continue a sweep from its frozen config: `elab resume sweeps/<name>`.
    Resume {
        sweep_dir: PathBuf,
        #[command(flatten)]
        run: SweepRunArgs,
    },
    /// Add sizes where a threshold is unresolved or wider than [refine] target_width_decades,
    /// run them, re-analyse, repeat: `elab refine sweeps/<name>` (docs/analysis.md).
    Refine {
        sweep_dir: PathBuf,
        #[command(flatten)]
        run: SweepRunArgs,
        #[command(flatten)]
        limits: RefineArgs,
    },
    /// Jobs by state, per size, with their latest metrics.
    Status { sweep_dir: PathBuf },
    /// Cancel what a sweep has in the Slurm queue: `elab cancel sweeps/<name>`.
    Cancel { sweep_dir: PathBuf },
    /// Rebuild a run's corrupt checkpoint pointer (checkpoint.json) from its intact checkpoint
    /// directories, keeping every record: `elab repair sweeps/<name>/jobs/<id>`.
    Repair {
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
    },
    /// Tidy CSV (runs, curves, thresholds), plots and report.html for a sweep.
    Export {
        sweep_dir: PathBuf,
        /// Output directory [default: results/<sweep name>], replaced whole: it must be new,
        /// empty or an earlier export's.
        #[arg(long)]
        out: Option<PathBuf>,
        /// CSV only, no plots.
        #[arg(long)]
        no_plots: bool,
    },
    /// Recompute the numbers of README.md and docs/reproductions.md from the committed result
    /// folders (results/<name>/) and rewrite their generated blocks; `--check` changes nothing
    /// and exits 1 when a doc and the data disagree.
    Claims {
        #[arg(long = "doc", default_values = ["README.md", "docs/reproductions.md"])]
        docs: Vec<PathBuf>,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Plots and report.html only (replacing the output directory whole, CSV files included).
    Plot {
        sweep_dir: PathBuf,
        /// Output directory [default: results/<sweep name>].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Training speed for a ladder of sizes (~10k to ~10M parameters), as markdown.
    Bench {
        /// all (the CPU, and wgpu if a real GPU exists), cpu, wgpu, or auto.
        #[arg(long, default_value = "all", value_parser = ["all", "auto", "wgpu", "cpu"])]
        backend: String,
        /// Timed steps per size (after 3 warmup steps).
        #[arg(long, default_value_t = 10)]
        steps: u64,
        /// Skip sizes above this many parameters.
        #[arg(long, default_value_t = 20_000_000)]
        max_params: u64,
        /// Only these rungs (comma-separated): 10k, 100k, 1M, 3M, 10M, nanda.
        #[arg(long, value_delimiter = ',')]
        rungs: Vec<String>,
        /// One JSON object per rung on stdout instead of markdown (for `just bench-compare`).
        #[arg(long)]
        json: bool,
        /// Append the results to this markdown file (e.g. docs/performance.md).
        #[arg(long)]
        append_to: Option<PathBuf>,
    },
    /// Which device a run would train on, and why, as one JSON line (backend, name, reason):
    /// `--backend auto` takes wgpu only for a real GPU, never a software adapter.
    Device {
        #[arg(long, default_value = "auto", value_parser = ["auto", "wgpu", "cpu"])]
        backend: String,
    },
    /// Train one job, or several of one shape as a pack (the unit the sweep engine and Slurm
    /// run), resuming each from its checkpoint if interrupted.
    Train {
        /// Job files: task, model, train, eval, seed. Several train as one pack: they must
        /// have the same model shape, token layout, batch size, steps and evaluation steps.
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
        /// Run directory of each job, in order [default: sweeps/_runs/<job id>].
        #[arg(long)]
        out: Vec<PathBuf>,
        /// auto: wgpu on a real GPU, else the CPU (Flex).
        #[arg(long, default_value = "auto", value_parser = ["auto", "wgpu", "cpu"])]
        backend: String,
        /// Print progress as JSON lines on stdout (for the sweep scheduler).
        #[arg(long)]
        progress_json: bool,
    },
    /// Append one worker attempt to `<job dir>/attempts.jsonl` (run by the Slurm task script).
    #[command(hide = true)]
    RecordAttempt {
        job_dir: PathBuf,
        /// Unix time the attempt started and ended.
        #[arg(long)]
        started: f64,
        #[arg(long)]
        ended: f64,
        /// The worker's exit status as the shell saw it (`$?`: above 128 is a signal).
        #[arg(long, allow_negative_numbers = true)]
        status: i32,
        /// `slurm:<array>_<task>`.
        #[arg(long)]
        executor: String,
        /// SLURM_RESTART_COUNT.
        #[arg(long)]
        restart_count: Option<u32>,
    },
}

/// Overrides of the frozen config's `[refine]` section.
#[derive(clap::Args)]
struct RefineArgs {
    /// Stop once every threshold interval is at most this wide (decades of parameters).
    #[arg(long)]
    target_width_decades: Option<f64>,
    /// Rounds in all, counting those already recorded in refine.json.
    #[arg(long)]
    max_rounds: Option<usize>,
    /// Jobs refinement may add in all, counting those already added.
    #[arg(long)]
    max_new_jobs: Option<usize>,
}

impl RefineArgs {
    fn applied_to(&self, section: RefineSection) -> Result<RefineSection, SpecError> {
        let flags = RefineSection {
            target_width_decades: self
                .target_width_decades
                .unwrap_or(section.target_width_decades),
            max_rounds: self.max_rounds.unwrap_or(section.max_rounds),
            max_new_jobs: self.max_new_jobs.unwrap_or(section.max_new_jobs),
        };
        flags.validate("--")?;
        Ok(flags)
    }
}

#[derive(clap::Args)]
struct SweepRunArgs {
    /// Where sweep directories live.
    #[arg(long, default_value = "sweeps")]
    sweeps_dir: PathBuf,
    /// Jobs run side by side [default: [sweep] slots, else the number of CPU cores].
    #[arg(long)]
    slots: Option<usize>,
    /// Overrides [sweep] backend: auto, wgpu or cpu.
    #[arg(long, value_parser = ["auto", "wgpu", "cpu"])]
    backend: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

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
        } => {
            let out = results_dir(&sweep_dir, out);
            elab_report::export(
                &sweep_dir,
                &out,
                &elab_report::ExportOptions { plots: !no_plots },
            )
            .map(|summary| {
                print!("{summary}");
                ExitCode::SUCCESS
            })
        }
        Command::Claims {
            docs,
            results,
            check,
        } => claims(&docs, &results, check),
        Command::Plot { sweep_dir, out } => {
            let out = results_dir(&sweep_dir, out);
            elab_report::plot(&sweep_dir, &out).map(|summary| {
                print!("{summary}");
                ExitCode::SUCCESS
            })
        }
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
        } => {
            let (exit, signal) = Attempt::from_shell_status(status);
            let attempt = Attempt {
                started,
                ended: Some(ended),
                exit,
                signal,
                executor,
                restart_count,
            };
            elab_job::record_attempt(&RunDir::new(&job_dir), &attempt)
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{}: {e}",
                        elab_job::attempts_path(&RunDir::new(&job_dir)).display()
                    )
                })
        }
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

fn train(
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
fn repair(run_dirs: &[PathBuf]) -> anyhow::Result<ExitCode> {
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

/// The default number of slots: one worker per CPU core.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn plan(config: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = SweepConfig::load(config)?;
    let slots = config.sweep.slots.unwrap_or_else(cores);
    let (pack, backend) = (config.sweep.pack, &config.sweep.backend);
    print!("{}", print_plan(&config.plan()?, pack, slots, backend));
    Ok(ExitCode::SUCCESS)
}

fn sweep(
    config: SweepConfig,
    dir: SweepDir,
    args: &SweepRunArgs,
    allow_changed: bool,
) -> anyhow::Result<ExitCode> {
    let slurm = slurm_options(&config, &args.cluster)?;
    std::fs::create_dir_all(&dir.root)?;
    let Some(_lock) = elab_job::lease::lock_with_lease(&dir.lock(), &dir.lease())? else {
        anyhow::bail!(
            "{} is already being run by another `elab sweep`",
            dir.root.display()
        );
    };
    let (plan, r) = elab_sweep::prepare(&dir, &config, allow_changed)?;
    log_to(&dir.log(), false)?;
    print_resumption(&config, &plan, &r);
    let hint = format!(
        "elab sweep {}\nor\n  elab resume {}",
        config.path.display(),
        dir.root.display()
    );
    run_plan(&config, &dir, &plan, args, slurm, &hint)
}

fn print_resumption(config: &SweepConfig, plan: &elab_job::Plan, r: &Resumption) {
    note!(
        "sweep {}: {} jobs: {} done, {} to resume from checkpoint, {} new, {} failed before (rerun), {} diverged, {} orphaned (no longer in the config, kept)",
        config.sweep.name,
        plan.jobs.len(),
        r.done.len(),
        r.resume.len(),
        r.new.len(),
        r.failed_before.len(),
        r.diverged.len(),
        r.orphaned.len()
    );
}

/// Runs every unfinished job of `plan` with the chosen executor. `hint` is the command that
/// continues after an interrupt.
fn run_plan(
    config: &SweepConfig,
    dir: &SweepDir,
    plan: &elab_job::Plan,
    args: &SweepRunArgs,
    slurm: Option<elab_sweep::SlurmOptions>,
    hint: &str,
) -> anyhow::Result<ExitCode> {
    if let Some(options) = slurm {
        return slurm_sweep(config, dir, plan, args, options);
    }
    elab_sweep::refuse_if_queued_in_slurm(dir)?;
    let settings = LocalSettings {
        elab: std::env::current_exe()?,
        slots: args.slots.or(config.sweep.slots).unwrap_or_else(cores),
        max_retries: config.sweep.max_retries,
        pack: config.sweep.pack,
        backend: args
            .backend
            .clone()
            .unwrap_or_else(|| config.sweep.backend.clone()),
    };
    let report = elab_sweep::run_local(dir, plan, &settings)?;
    note!(
        "sweep {}: {} done, {} diverged, {} failed of {} jobs",
        config.sweep.name,
        report.done,
        report.diverged,
        report.failed,
        plan.jobs.len()
    );
    if report.interrupted {
        note!("interrupted; every job is safe on disk. Continue with:\n  {hint}");
        return Ok(ExitCode::from(exit::SWEEP_INTERRUPTED));
    }
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `elab refine sweeps/<name>`: rounds of (run what is unfinished, analyse, record the sizes
/// to add in refine.json) until no threshold asks for more, or a limit of `[refine]` is
/// reached. A round is recorded before its jobs run, so an interrupted round continues on the
/// next `elab refine` (or `elab resume`) like any interrupted sweep.
fn refine(
    sweep_dir: &std::path::Path,
    args: &SweepRunArgs,
    limits: &RefineArgs,
) -> anyhow::Result<ExitCode> {
    // A bad flag is bad whatever the config says: refuse it before reading anything.
    limits.applied_to(RefineSection::default())?;
    let dir = SweepDir::new(sweep_dir);
    if !dir.exists() {
        anyhow::bail!(
            "{} is not a sweep directory (no config.toml): run `elab sweep` first",
            dir.root.display()
        );
    }
    let config = SweepConfig::load(&dir.config())?;
    let settings = limits.applied_to(config.refine)?;
    if config.sizes.len() < 2 {
        return Err(SpecError::new(
            "sizes",
            "refinement interpolates shapes along the [[sizes]] ladder: it needs at least 2 sizes",
        )
        .in_file(&dir.config())
        .into());
    }
    if args.cluster.detach {
        return Err(SpecError::new(
            "--detach",
            "refine waits for each round's jobs before it analyses them; run it without --detach",
        )
        .into());
    }
    let slurm = slurm_options(&config, &args.cluster)?;
    let Some(_lock) = elab_job::lease::lock_with_lease(&dir.lock(), &dir.lease())? else {
        anyhow::bail!(
            "{} is already being run by another `elab sweep`",
            dir.root.display()
        );
    };
    log_to(&dir.log(), false)?;
    let hint = format!("elab refine {}", dir.root.display());
    loop {
        let (plan, r) = elab_sweep::prepare(&dir, &config, false)?;
        print_resumption(&config, &plan, &r);
        let code = run_plan(&config, &dir, &plan, args, slurm.clone(), &hint)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        let mut recorded = elab_sweep::read_refinements(&dir)?;
        let data = elab_results::load::SweepData::load(&dir.root)?;
        let proposal = elab_refine::propose(&data, &config, &settings, &recorded);
        println!(
            "refine {}: after {} round(s), thresholds of {} over {}:",
            config.sweep.name,
            recorded.rounds.len(),
            elab_refine::SCORE.label(),
            elab_refine::SCALE.name()
        );
        print!("{}", elab_refine::describe(&proposal.groups));
        for line in &proposal.skipped {
            println!("  skipped: {line}");
        }
        if recorded.rounds.len() >= settings.max_rounds {
            println!(
                "refine: max_rounds = {} reached; no sizes added",
                settings.max_rounds
            );
            break;
        }
        if proposal.sizes.is_empty() {
            println!(
                "refine: no sizes to add (every threshold is resolved to {} decades, has no point to add, or the job budget is spent)",
                settings.target_width_decades
            );
            break;
        }
        let round = RefineRound {
            round: recorded.rounds.len() + 1,
            created: elab_job::unix_now(),
            target_width_decades: settings.target_width_decades,
            sizes: proposal.sizes,
        };
        for s in &round.sizes {
            println!(
                "refine: round {} adds {} (n_layer {}, d_model {}, n_head {}, {} params, {} jobs) to {}: {}",
                round.round,
                s.size.name,
                s.size.n_layer,
                s.size.d_model,
                s.size.n_head,
                s.params,
                s.jobs.len(),
                s.group,
                s.reason
            );
        }
        recorded.rounds.push(round);
        elab_sweep::write_refinements(&dir, &recorded)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan of an existing sweep directory, or why there is none.
fn read_plan(dir: &SweepDir) -> anyhow::Result<elab_job::Plan> {
    dir.read_plan().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("{} is not a sweep directory ({e})", dir.root.display())
        }
        _ => anyhow::anyhow!("cannot read the plan of {}: {e}", dir.root.display()),
    })
}

/// `elab claims`: every doc brought up to date, or with `--check` compared (exit 1 on a
/// difference, naming the doc).
fn claims(docs: &[PathBuf], results: &std::path::Path, check: bool) -> anyhow::Result<ExitCode> {
    let mut agreed = true;
    for doc in docs {
        if !elab_claims::sync(doc, results, check)? {
            eprintln!(
                "{}: its numbers differ from {}: run `elab claims`",
                doc.display(),
                results.display()
            );
            agreed = false;
        }
    }
    Ok(if agreed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = SweepDir::new(dir);
    let plan = read_plan(&dir)?;
    print!("{}", elab_sweep::status_table(&dir, &plan)?);
    if let Some(section) = elab_sweep::slurm_status(&dir, &plan) {
        print!("{section}");
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(
    backend: &str,
    steps: u64,
    max_params: u64,
    rungs: &[String],
    json: bool,
    append_to: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // `all`: the CPU, then wgpu too when a real GPU is there. The CPU goes first: probing for a
    // GPU starts wgpu's runtime (on a machine without one, Mesa's software adapter), whose
    // threads and memory would otherwise sit in the CPU's numbers.
    let mut rows = Vec::new();
    if backend == "all" {
        let cpu = elab_train::choose_device(Backend::Cpu)?;
        rows.extend(elab_train::bench::bench(cpu, steps, max_params, rungs)?);
        let gpu = elab_train::choose_device(Backend::Auto)?;
        if gpu.backend == "wgpu" {
            rows.extend(elab_train::bench::bench(gpu, steps, max_params, rungs)?);
        }
    } else {
        let device = elab_train::choose_device(backend.parse()?)?;
        rows.extend(elab_train::bench::bench(device, steps, max_params, rungs)?);
    }
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let section = format!(
        "\n### `elab bench --backend {backend}`: {cpu}, {cores} cores\n\n{}\nLadder: 3-digit reversed addition, batch {} x 11 tokens; nanda: x + y (mod 113), full batch. {steps} timed steps after 3 warmup steps. Peak RSS includes memory kept from earlier rungs of the same process (`just bench-compare` runs each rung alone).\n",
        elab_train::bench::markdown(&rows),
        elab_train::bench::BENCH_BATCH
    );
    print!("{section}");
    if let Some(path) = append_to {
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&section);
        elab_job::fsio::write_atomic(&path, text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `choose_device` makes of `--backend` here: the probe of benches/gpu-check.sh, which
/// opens the adapter without compiling a kernel.
fn device(backend: &str) -> anyhow::Result<ExitCode> {
    let chosen = elab_train::choose_device(backend.parse()?)?;
    let line = serde_json::json!({
        "backend": chosen.backend,
        "name": chosen.name,
        "reason": chosen.reason,
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// `results/<sweep name>` unless `--out` says otherwise.
fn results_dir(sweep_dir: &std::path::Path, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| {
        let name = sweep_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        PathBuf::from("results").join(name)
    })
}

/// `elab sweep --executor ...` and the Slurm options (they override `[executor.slurm]`).
#[derive(clap::Args)]
struct ClusterArgs {
    /// Where the jobs run: local (worker processes here) or slurm (one job array; docs/cluster.md).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    executor: String,
    /// Slurm partition(s), e.g. gpu or gpu,debug.
    #[arg(long)]
    partition: Option<String>,
    /// GPUs per job (--gres=gpu:N); use with --backend wgpu or auto.
    #[arg(long)]
    gpus_per_job: Option<u32>,
    /// CPU cores per job (--cpus-per-task).
    #[arg(long)]
    cpus_per_job: Option<u32>,
    /// Memory per job, e.g. 8G (--mem).
    #[arg(long)]
    mem: Option<String>,
    /// Time limit per task, e.g. 2:00:00 (--time); tasks checkpoint and requeue before it.
    #[arg(long)]
    time: Option<String>,
    /// At most this many array tasks run at once (--array=...%K).
    #[arg(long)]
    max_running: Option<u32>,
    /// Another sbatch option, `--name=value` (repeatable), e.g. --sbatch-arg=--account=lab.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    sbatch_arg: Vec<String>,
    /// Return right after submitting; `elab status` and `elab cancel` work without the submitter.
    #[arg(long)]
    detach: bool,
}

/// The validated Slurm options, or `None` for the local executor. Runs before anything is written.
fn slurm_options(
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

fn slurm_sweep(
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

fn cancel(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
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

/// burn builds the optimizer state it loads from a checkpoint on `Device::default()`, which
/// is wgpu whenever wgpu is compiled in: on a machine without a GPU that would open a software
/// Vulkan device just to read a file. The CPU is always right: at its next step the optimizer
/// moves each state to its parameter's device (burn-optim's `ModuleOptimizer::load_record`).
fn stage_loaded_optimizer_state_on_the_cpu() {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { std::env::set_var("BURN_DEVICE", "flex") };
}

/// Sends this process's tracing logs to `path` (appended), and to stderr too if asked.
fn log_to(path: &std::path::Path, also_stderr: bool) -> anyhow::Result<()> {
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
