//! `elab bench`: training speed for a ladder of model sizes, plus the Nanda et al. grokking
//! recipe, on one device. A benchmark, not a test: numbers, never assertions.
//! `benches/torch_twin.py` builds the same models in PyTorch for `just bench-compare`.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use elab_job::{JobSpec, ModelSpec, param_counts, train_flops_per_token};
use elab_tasks::{DigitOp, DigitsTask, ModOp, ModularTask, TaskSpec};
use serde::Serialize;

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

/// Batch of the ladder's job (3-digit reversed addition: 11 tokens of context).
pub const BENCH_BATCH: usize = 256;

/// One rung's measurement (also a JSON line of `elab bench --json`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub rung: String,
    pub backend: String,
    pub device: String,
    pub n_layer: usize,
    pub d_model: usize,
    pub params: u64,
    pub batch: usize,
    pub n_ctx: usize,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    /// Training FLOP/s counted as 6N + 6 n_layer n_ctx d per token (N: non-embedding).
    pub gflops: f64,
    /// The same backend's large float32 matmul rate on this device ([`matmul_peak`]), GFLOP/s.
    pub peak_gflops: f64,
    /// gflops / peak_gflops: how far the rung is from what the device's matmul can do.
    pub peak_share: f64,
    /// Peak resident memory while this rung ran (Linux: VmHWM after a reset), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// A job with every default (the task is replaced by each rung).
fn default_job() -> JobSpec {
    JobSpec::from_toml("[task]\nkind = \"modular\"").expect("a valid job")
}

/// The ladder's job: 3-digit reversed addition, default model with d_mlp = 4 d.
fn ladder_job(n_layer: usize, d_model: usize, n_head: usize) -> JobSpec {
    let mut spec = default_job();
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

/// The shape of Nanda et al. 2023's grokking run: x + y (mod 113), 30% of the pairs as one
/// full batch, 1 layer, d 128, 4 heads, d_mlp 512, ReLU, no LayerNorm.
fn nanda_job() -> JobSpec {
    let mut spec = default_job();
    spec.task = TaskSpec::Modular(ModularTask {
        p: 113,
        op: ModOp::Add,
        train_fraction: 0.3,
        op_token: true,
    });
    spec.model = ModelSpec {
        layer_norm: false,
        ..ModelSpec::default()
    };
    spec.train.batch_size = 0;
    spec
}

/// The rungs in order: the ladder, then "nanda".
pub fn rungs() -> Vec<(&'static str, JobSpec)> {
    LADDER
        .iter()
        .map(|&(name, l, d, h)| (name, ladder_job(l, d, h)))
        .chain(std::iter::once(("nanda", nanda_job())))
        .collect()
}

/// Measures the rungs named in `only` (all if empty) of at most `max_params` parameters.
pub fn bench(
    chosen: ChosenDevice,
    steps: u64,
    max_params: u64,
    only: &[String],
) -> anyhow::Result<Vec<BenchRow>> {
    let rungs = rungs();
    let names: Vec<&str> = rungs.iter().map(|(name, _)| *name).collect();
    if let Some(unknown) = only.iter().find(|r| !names.contains(&r.as_str())) {
        anyhow::bail!(
            "unknown rung `{unknown}`: expected one of {}",
            names.join(", ")
        );
    }
    // On the pool the steps run on (`time_steps`), so the yardstick sees the same threads.
    let peak = crate::on_compute_threads(|| matmul_peak(&chosen, peak_size(&chosen)));
    eprintln!("{} matmul peak: {peak:.1} GFLOP/s", chosen.backend);
    let mut rows = Vec::new();
    for (name, spec) in rungs {
        if !only.is_empty() && !only.iter().any(|r| r == name) {
            continue;
        }
        let data = spec.task.generate(spec.seed);
        let counts = param_counts(&spec.model, data.vocab_size, spec.n_ctx());
        if counts.total > max_params {
            continue;
        }
        let batch = match spec.train.batch_size {
            0 => data.train.len(),
            b => b,
        };
        reset_peak_rss();
        let seconds = time_steps(&spec, chosen.clone(), 3, steps)?;
        let tokens_per_s = (batch * spec.n_ctx()) as f64 / seconds;
        let flops = train_flops_per_token(&spec.model, &counts, spec.n_ctx()) * tokens_per_s;
        let row = BenchRow {
            rung: name.to_string(),
            backend: chosen.backend.to_string(),
            device: device_label(&chosen),
            n_layer: spec.model.n_layer,
            d_model: spec.model.d_model,
            params: counts.total,
            batch,
            n_ctx: spec.n_ctx(),
            ms_per_step: seconds * 1e3,
            tokens_per_s,
            gflops: flops / 1e9,
            peak_gflops: peak,
            peak_share: flops / 1e9 / peak,
            peak_rss_mib: peak_rss_mib(),
        };
        eprintln!(
            "{} {name}: {:.1} ms/step, {tokens_per_s:.0} tokens/s",
            row.backend, row.ms_per_step
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The device's name, and on x86 whether gemm may use its AVX-512 kernels (the `avx512` feature):
/// what `just bench-compare isa=avx2` holds the CPU to shows in the table.
fn device_label(chosen: &ChosenDevice) -> String {
    if chosen.backend == "cpu" && cfg!(all(target_arch = "x86_64", not(feature = "avx512"))) {
        format!(
            "{}, matmuls held to AVX2 (built without the avx512 feature)",
            chosen.name
        )
    } else {
        chosen.name.clone()
    }
}

/// The side of the yardstick's square matmul: large enough that the product runs at the
/// backend's best rate (2048^3 is 17 GFLOP, about 0.1 s on two AVX-512 cores), on a GPU 8192
/// (as benches/gpu-check.sh measures PyTorch).
pub fn peak_size(chosen: &ChosenDevice) -> usize {
    if chosen.backend == "wgpu" { 8192 } else { 2048 }
}

/// The backend's float32 matmul rate on `chosen`, GFLOP/s: the best of 5 products of two
/// `n` x `n` random matrices after 2 untimed ones, each finished by reading one element back
/// (so the time includes the device's work, not only its queueing).
pub fn matmul_peak(chosen: &ChosenDevice, n: usize) -> f64 {
    let device = &chosen.device;
    let a = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
    let b = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
    let product = || {
        let c = a.clone().matmul(b.clone());
        let _ = c.slice([0..1, 0..1]).into_data();
    };
    for _ in 0..2 {
        product();
    }
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            product();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// The rows as a markdown table.
pub fn markdown(rows: &[BenchRow]) -> String {
    let mut out = String::from(
        "| backend | rung | n_layer | d_model | params | batch x n_ctx | ms/step | tokens/s | GFLOP/s (6N+attn) | share of matmul peak | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let rss = r.peak_rss_mib.map_or("-".into(), |m| format!("{m:.0}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} x {} | {:.1} | {:.0} | {:.2} | {:.0}% of {:.0} | {rss} |\n",
            r.backend,
            r.rung,
            r.n_layer,
            r.d_model,
            r.params,
            r.batch,
            r.n_ctx,
            r.ms_per_step,
            r.tokens_per_s,
            r.gflops,
            100.0 * r.peak_share,
            r.peak_gflops
        ));
    }
    out
}

/// Linux resets the peak resident set size (VmHWM) when "5" is written to clear_refs.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    #[test]
    fn the_matmul_yardstick_is_a_rate() {
        let cpu = crate::choose_device(Backend::Cpu).unwrap();
        let small = matmul_peak(&cpu, 64);
        assert!(small.is_finite() && small > 0.0, "{small}");
        assert_eq!(peak_size(&cpu), 2048);
    }
}
