//! Shared by the trainer's integration tests (one test per binary: burn's seed is
//! process-global).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use elab_job::{JobSpec, RunDir};
use elab_train::{Backend, Outcome, RunOptions, train_pack};

/// A 1-layer model on 2-digit reversed addition: a run of 40 steps takes well under a second.
pub fn tiny_job(seed: u64, lr: f64) -> JobSpec {
    JobSpec::from_toml(&format!(
        r#"
seed = {seed}
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 200
val_size = 100
[model]
n_layer = 1
d_model = 16
n_head = 2
d_mlp = 32
[train]
steps = 40
batch_size = 32
lr = {lr:e}
warmup_steps = 0
[eval]
every = 10
"#
    ))
    .unwrap()
}

/// Trains `dir` on the CPU, asking it to stop (it checkpoints) once step `stop_at` is done;
/// `Some(0)` stops it before its first update.
pub fn train_cpu(spec: &JobSpec, dir: &RunDir, stop_at: Option<u64>) -> anyhow::Result<Outcome> {
    Ok(train_pack_cpu(&[(spec, dir)], stop_at)?.remove(0))
}

/// Trains the jobs as one pack on the CPU, stopping as [`train_cpu`] does.
pub fn train_pack_cpu(
    jobs: &[(&JobSpec, &RunDir)],
    stop_at: Option<u64>,
) -> anyhow::Result<Vec<Outcome>> {
    // As `elab` does at start-up: burn stages loaded optimizer state on the default device.
    // SAFETY: each test binary calls this from its only test, and no thread of its own reads
    // the environment.
    unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    let stop = Arc::new(AtomicBool::new(stop_at == Some(0)));
    let flag = stop.clone();
    let mut on_progress = |_job, p: &elab_train::Progress| {
        if Some(p.step) == stop_at {
            flag.store(true, Ordering::SeqCst);
        }
    };
    train_pack(
        jobs,
        RunOptions {
            backend: Backend::Cpu,
            stop,
            on_progress: &mut on_progress,
        },
    )
}
