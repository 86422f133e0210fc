//! What one training run is, and what it and the sweeps around it leave on disk.
//!
//! A [`JobSpec`] is plain data read from TOML: task, model shape, optimizer and schedule,
//! evaluation, seed. Its canonical JSON hashes to the job id, so everything that changes the
//! result is in it and nothing else is. A run directory ([`RunDir`]) holds the spec, the
//! append-only evaluation records, the checkpoint pointer, the summary, the heartbeat and the
//! lease beside its lock ([`lease`]); a sweep directory ([`SweepDir`]) holds the plan and one
//! run directory per job, with the attempts of each. Every write is crash-safe (write, fsync, rename) so a `kill -9` at any
//! instant loses nothing reported saved. This crate is the one definition of these formats,
//! of the progress lines a worker prints and of `elab`'s exit codes; it knows nothing of burn,
//! so the trainer, the sweep engine and the exporters all read and write through it.

mod counts;
mod error;
pub mod exit;
pub mod fsio;
mod heartbeat;
pub mod lease;
mod progress;
mod records;
pub mod signals;
mod spec;
mod sweepdir;

pub use counts::{ParamCounts, param_counts, train_flops_per_token};
pub use error::{SpecError, did_you_mean};
pub use heartbeat::{HEARTBEAT_STALE_SECS, Heartbeat, unix_now};
pub use progress::Progress;
pub use records::{EvalRow, RunDir, RunStatus, Split, Summary, read_evals};
pub use spec::{
    Activation, Arch, DecayOn, EvalSpec, Init, JobSpec, ModelSpec, Schedule, Snapshots, TrainSpec,
    eval_steps, is_job_id,
};
pub use sweepdir::{
    Attempt, JobState, Plan, PlannedJob, SweepDir, attempts_path, read_attempts, record_attempt,
    sweep_dir,
};

/// Re-exported so that callers need one crate for everything a job is.
pub use elab_tasks::{DigitOp, DigitsTask, ModOp, ModularTask, TaskSpec};
