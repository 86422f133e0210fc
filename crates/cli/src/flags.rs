//! The command line's arguments: every subcommand and flag, with its help text (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use elab_job::SpecError;
use elab_sweep::RefineSection;

/// The values of every `--backend` (parsed by `elab_train::Backend`): `auto` takes wgpu only for
/// a real GPU.
const BACKENDS: [&str; 3] = ["auto", "wgpu", "cpu"];
/// `elab bench` also takes `all`: the CPU, and wgpu if a real GPU exists.
const BENCH_BACKENDS: [&str; 4] = ["all", "auto", "wgpu", "cpu"];

#[derive(Parser)]
#[command(
    name = "elab",
    version,
    about = "Train families of small GPTs and find where abilities appear"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Also the runs' snapshots (`[train] snapshots`), under weights/ with weights/index.csv.
        #[arg(long)]
        weights: bool,
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
        #[arg(long, default_value = "all", value_parser = BENCH_BACKENDS)]
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
        #[arg(long, default_value = "auto", value_parser = BACKENDS)]
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
        #[arg(long, default_value = "auto", value_parser = BACKENDS)]
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
pub(crate) struct RefineArgs {
    /// Stop once every threshold interval is at most this wide (decades of parameters).
    #[arg(long)]
    pub(crate) target_width_decades: Option<f64>,
    /// Rounds in all, counting those already recorded in refine.json.
    #[arg(long)]
    pub(crate) max_rounds: Option<usize>,
    /// Jobs refinement may add in all, counting those already added.
    #[arg(long)]
    pub(crate) max_new_jobs: Option<usize>,
}

impl RefineArgs {
    pub(crate) fn applied_to(&self, section: RefineSection) -> Result<RefineSection, SpecError> {
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
pub(crate) struct SweepRunArgs {
    /// Where sweep directories live.
    #[arg(long, default_value = "sweeps")]
    pub(crate) sweeps_dir: PathBuf,
    /// Jobs run side by side [default: [sweep] slots, else the number of CPU cores].
    #[arg(long)]
    pub(crate) slots: Option<usize>,
    /// Overrides [sweep] backend: auto, wgpu or cpu.
    #[arg(long, value_parser = BACKENDS)]
    pub(crate) backend: Option<String>,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
}

/// `elab sweep --executor ...` and the Slurm options (they override `[executor.slurm]`).
#[derive(clap::Args)]
pub(crate) struct ClusterArgs {
    /// Where the jobs run: local (worker processes here) or slurm (one job array; docs/cluster.md).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    pub(crate) executor: String,
    /// Slurm partition(s), e.g. gpu or gpu,debug.
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// GPUs per job (--gres=gpu:N); use with --backend wgpu or auto.
    #[arg(long)]
    pub(crate) gpus_per_job: Option<u32>,
    /// CPU cores per job (--cpus-per-task).
    #[arg(long)]
    pub(crate) cpus_per_job: Option<u32>,
    /// Memory per job, e.g. 8G (--mem).
    #[arg(long)]
    pub(crate) mem: Option<String>,
    /// Time limit per task, e.g. 2:00:00 (--time); tasks checkpoint and requeue before it.
    #[arg(long)]
    pub(crate) time: Option<String>,
    /// At most this many array tasks run at once (--array=...%K).
    #[arg(long)]
    pub(crate) max_running: Option<u32>,
    /// Another sbatch option, `--name=value` (repeatable), e.g. --sbatch-arg=--account=lab.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub(crate) sbatch_arg: Vec<String>,
    /// Return right after submitting; `elab status` and `elab cancel` work without the submitter.
    #[arg(long)]
    pub(crate) detach: bool,
}
