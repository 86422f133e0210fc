//! One training run of the lab: choose a device, train a network ([`elab_model::Gpt`] or
//! [`elab_model::MlpNet`]) on a task,
//! evaluate it along the way, checkpoint it, resume it exactly.

mod backend;
pub mod bench;
pub mod fourier;
pub mod heads;
pub mod metrics;
mod optim;
mod signals;
pub mod snapshot;
pub mod task_metrics;
mod threads;
mod trainer;

pub use backend::{Backend, ChosenDevice, choose_device};
pub use elab_job::Progress;
pub use signals::stop_on_signals;
pub use threads::on_compute_threads;
pub use trainer::{
    Outcome, Repaired, RunOptions, repair_checkpoints, time_steps, train, train_pack,
};
