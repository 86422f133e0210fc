//! `elab bench` and `elab device`: training speed per size, and which device a backend picks.

use std::path::PathBuf;
use std::process::ExitCode;

use elab_train::Backend;

pub(crate) fn bench(
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
    let cores = elab_sweep::cores();
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
pub(crate) fn device(backend: &str) -> anyhow::Result<ExitCode> {
    let chosen = elab_train::choose_device(backend.parse()?)?;
    let line = serde_json::json!({
        "backend": chosen.backend,
        "name": chosen.name,
        "reason": chosen.reason,
    });
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}
