//! What one training run is, and what it leaves on disk.
//!
//! A [`JobSpec`] is plain data read from TOML: task, model shape, optimizer and schedule,
//! evaluation, seed. Its canonical JSON hashes to the job id, so everything that changes the
//! result is in it and nothing else is. A run directory ([`RunDir`]) holds the spec, the
//! append-only evaluation records, the checkpoint pointer and the summary; every write is
//! crash-safe (write, fsync, rename) so a `kill -9` at any instant loses nothing reported saved.
//! This crate knows nothing of burn: the sweep engine and the exporters read runs through it.

mod counts;
mod error;
pub mod fsio;
mod records;
mod spec;

pub use counts::{ParamCounts, param_counts, train_flops_per_token};
pub use error::{SpecError, did_you_mean};
pub use records::{EvalRow, RunDir, RunStatus, Split, Summary, read_evals};
pub use spec::{Activation, EvalSpec, JobSpec, ModelSpec, Schedule, TrainSpec, eval_steps};

/// Re-exported so that callers need one crate for everything a job is.
pub use elab_tasks::{DigitOp, DigitsTask, ModOp, ModularTask, TaskSpec};
