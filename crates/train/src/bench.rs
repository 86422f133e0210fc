//! `elab bench`: training speed for a ladder of model sizes on each backend, as a markdown
//! table for docs/performance.md. A benchmark, not a test: numbers, never assertions.

use std::fmt::Write as _;

use elab_job::{JobSpec, ModelSpec, param_counts, train_flops_per_token};
use elab_tasks::{DigitOp, DigitsTask, TaskSpec};

use crate::{ChosenDevice, time_steps};

/// (name, n_layer, d_model, n_head): from ~10k to ~10M parameters (the last is the
/// 6-layer, 384-wide nanoGPT of Lee et al. 2024).
pub const LADDER: [(&str, usize, usize, usize); 5] = [
    ("10k", 2, 24, 2),
    ("100k", 2, 64, 4),
    ("1M", 4, 144, 4),
    ("3M", 6, 208, 4),
    ("10M", 6, 384, 6),
];

/// Batch of the benchmark job (3-digit reversed addition: 11 tokens of context).
pub const BENCH_BATCH: usize = 256;

fn job(n_layer: usize, d_model: usize, n_head: usize) -> JobSpec {
    let mut spec = JobSpec::from_toml("[task]\nkind = \"modular\"").expect("a valid job");
    spec.task = TaskSpec::Digits(DigitsTask {
        op: DigitOp::Add,
        digits: 3,
        reversed: true,
        train_size: 4096,
        val_size: 256,
    });
    spec.model = ModelSpec {
        n_layer,
        d_model,
        n_head,
        d_mlp: 4 * d_model,
        ..ModelSpec::default()
    };
    spec.train.batch_size = BENCH_BATCH;
    spec
}

/// Measures every rung on `chosen`; returns the device line and a markdown table.
pub fn bench(chosen: ChosenDevice, steps: u64, max_params: u64) -> anyhow::Result<String> {
    let mut out = String::new();
    let device_line = format!(
        "{} on `{}` ({})",
        chosen.backend, chosen.name, chosen.reason
    );
    for (name, n_layer, d_model, n_head) in LADDER {
        let spec = job(n_layer, d_model, n_head);
        let (vocab, _, _) = spec.task.shape();
        let counts = param_counts(&spec.model, vocab, spec.n_ctx());
        if counts.total > max_params {
            continue;
        }
        let backend_name = chosen.backend;
        let seconds = time_steps(&spec, chosen.clone(), 3, steps)?;
        let tokens_per_s = (BENCH_BATCH * spec.n_ctx()) as f64 / seconds;
        let flops = train_flops_per_token(&spec.model, &counts, spec.n_ctx()) * tokens_per_s;
        let _ = writeln!(
            out,
            "| {backend_name} | {name} | {} | {} | {} | {:.1} | {:.0} | {:.2} |",
            n_layer,
            d_model,
            counts.total,
            seconds * 1e3,
            tokens_per_s,
            flops / 1e9
        );
        eprintln!(
            "{backend_name} {name}: {:.1} ms/step, {tokens_per_s:.0} tokens/s",
            seconds * 1e3
        );
    }
    Ok(format!(
        "Device: {device_line}\n\n| backend | size | n_layer | d_model | params | ms/step | tokens/s | GFLOP/s (6N+attn) |\n|---|---|---|---|---|---|---|---|\n{out}"
    ))
}
