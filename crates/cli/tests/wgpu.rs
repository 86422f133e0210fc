//! The wgpu code path (on Mesa's software Vulkan in CI) trains like the CPU backend: the same
//! initial weights (initialized on the CPU) and the same losses over a few steps, within a
//! tolerance, since the backends' float reductions differ in order. On wgpu the two transformer
//! jobs train as one pack; on the CPU each alone; the MLP alone on each.

mod common;

use std::path::Path;
use std::process::Command;

use elab_job::{Split, read_evals};

const JOB: &str = r#"
seed = 3
[task]
kind = "modular"
p = 23
train_fraction = 0.5
[model]
n_layer = 1
d_model = 32
n_head = 4
d_mlp = 64
[train]
steps = 4
batch_size = 0
lr = 1e-3
warmup_steps = 0
[eval]
every = 2
"#;

/// Relative tolerance on losses and log-probabilities between Flex and wgpu (float32; the
/// backends sum in different orders, and the difference compounds over steps).
const TOLERANCE: f64 = 1e-3;

fn train(jobs: &[&Path], outs: &[&Path], backend: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_elab"));
    cmd.arg("train").args(jobs);
    for out in outs {
        cmd.arg("--out").arg(out);
    }
    let status = cmd.args(["--backend", backend]).status().unwrap();
    assert!(status.success(), "{backend} run failed");
}

#[test]
fn a_few_wgpu_steps_match_the_cpu_backend() {
    if !common::vulkan_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (job, other) = (tmp.path().join("job.toml"), tmp.path().join("other.toml"));
    std::fs::write(&job, JOB).unwrap();
    let other_job = JOB
        .replace("seed = 3", "seed = 4")
        .replace("lr = 1e-3", "lr = 3e-3");
    std::fs::write(&other, other_job).unwrap();
    let dir = |name: &str| tmp.path().join(name);
    train(&[&job], &[&dir("cpu")], "cpu");
    train(&[&other], &[&dir("cpu-other")], "cpu");
    train(&[&job, &other], &[&dir("wgpu"), &dir("wgpu-other")], "wgpu");
    // The MLP's gather and running sum over positions, on both backends: a 3-token answer, so
    // evaluation asks for logits at several positions.
    let mlp = tmp.path().join("mlp.toml");
    let task = "kind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\ntrain_size = 200\nval_size = 100";
    let mlp_job = JOB
        .replace("kind = \"modular\"\np = 23\ntrain_fraction = 0.5", task)
        .replace("n_layer = 1", "arch = \"mlp\"\nn_layer = 1")
        .replace("n_head = 4", "n_head = 1")
        .replace("lr = 1e-3", "lr = 1e-2");
    assert!(mlp_job.contains("digits = 2"));
    std::fs::write(&mlp, mlp_job).unwrap();
    train(&[&mlp], &[&dir("cpu-mlp")], "cpu");
    train(&[&mlp], &[&dir("wgpu-mlp")], "wgpu");
    for (cpu, gpu) in [
        ("cpu", "wgpu"),
        ("cpu-other", "wgpu-other"),
        ("cpu-mlp", "wgpu-mlp"),
    ] {
        compare(&dir(cpu), &dir(gpu));
    }
}

/// The records in `cpu_dir` and `gpu_dir` agree within the tolerance, after real training.
fn compare(cpu_dir: &Path, gpu_dir: &Path) {
    let cpu = read_evals(&cpu_dir.join("evals.jsonl")).unwrap();
    let gpu = read_evals(&gpu_dir.join("evals.jsonl")).unwrap();
    assert_eq!(cpu.len(), gpu.len());
    assert_eq!(
        cpu.iter().map(|r| r.step).collect::<Vec<_>>(),
        vec![0, 0, 1, 1, 2, 2, 4, 4]
    );
    for (c, g) in cpu.iter().zip(&gpu) {
        for metric in ["loss", "answer_logprob"] {
            let (x, y) = (c.metrics[metric], g.metrics[metric]);
            assert!(
                (x - y).abs() <= TOLERANCE * x.abs().max(1e-6),
                "step {} {:?} {metric}: cpu {x} wgpu {y}",
                c.step,
                c.split
            );
        }
    }
    // Training moved the loss, so the comparison is not of two untrained models.
    let loss = |rows: &[elab_job::EvalRow], step| {
        rows.iter()
            .find(|r| r.step == step && r.split == Split::Train)
            .unwrap()
            .metrics["loss"]
    };
    assert!(
        loss(&cpu, 4) < loss(&cpu, 0) - 0.01,
        "{}",
        cpu_dir.display()
    );
    let summary = std::fs::read_to_string(gpu_dir.join("summary.json")).unwrap();
    assert!(summary.contains("\"backend\": \"wgpu\""), "{summary}");
}
