//! Which device a run trains on, and why.

use anyhow::{Context, bail};
use burn::prelude::Device;

/// What the user asked for with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// wgpu if a real GPU adapter exists, else the CPU.
    Auto,
    Wgpu,
    Cpu,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "wgpu" => Ok(Backend::Wgpu),
            "cpu" => Ok(Backend::Cpu),
            other => bail!("unknown backend `{other}`: expected auto, wgpu or cpu"),
        }
    }
}

/// The device a run uses, its backend name ("wgpu" or "cpu"), the adapter's name, and why.
#[derive(Debug, Clone)]
pub struct ChosenDevice {
    pub device: Device,
    pub backend: &'static str,
    pub name: String,
    pub reason: String,
}

/// Picks the device. `Auto` takes wgpu only for a real GPU: a software adapter (Mesa's
/// llvmpipe) trains ~30x slower than burn's Flex CPU backend, so it is never chosen silently.
pub fn choose_device(backend: Backend) -> anyhow::Result<ChosenDevice> {
    let chosen = match backend {
        Backend::Cpu => cpu("--backend cpu".into()),
        Backend::Wgpu => {
            let device = Device::wgpu_options()
                .init()
                .context("--backend wgpu: no wgpu adapter could be opened")?;
            let name = device.identity().map(|i| i.name).unwrap_or_default();
            ChosenDevice {
                device,
                backend: "wgpu",
                reason: "--backend wgpu".into(),
                name,
            }
        }
        Backend::Auto => match Device::wgpu_options().init() {
            Ok(device) => match device.identity() {
                Some(id) if id.physical.is_some() => ChosenDevice {
                    device,
                    backend: "wgpu",
                    reason: format!("found GPU `{}`", id.name),
                    name: id.name,
                },
                Some(id) => cpu(format!(
                    "wgpu adapter `{}` is a software rasterizer, not a GPU",
                    id.name
                )),
                None => cpu("the wgpu adapter does not identify itself".into()),
            },
            Err(e) => cpu(format!("no wgpu adapter ({e})")),
        },
    };
    Ok(chosen)
}

fn cpu(reason: String) -> ChosenDevice {
    flush_subnormals();
    ChosenDevice {
        device: Device::flex(),
        backend: "cpu",
        name: "flex".into(),
        reason,
    }
}

/// Turns on flush-to-zero and denormals-are-zero on the threads that train on the CPU: this one
/// and rayon's, on which burn's Flex backend and its matmuls run. A model that memorizes without
/// weight decay (Nanda's recipe at weight decay 0) drives its wrong-class probabilities below
/// float32's normal range, and an x86 core takes a slow microcode assist on every subnormal
/// operand: those runs trained at half the speed of their weight-decay twins. Flushing changes
/// only values below 1.2e-38, which no loss or gradient here can tell from 0; PyTorch offers the
/// same switch (`torch.set_flush_denormal`).
fn flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    {
        fn set_on_this_thread() {
            // MXCSR bit 15 is FTZ, bit 6 DAZ. The intrinsics are deprecated because the
            // compiler assumes the default floating-point environment: with these two flags
            // that assumption differs only on subnormals, which is the point.
            #[allow(deprecated)]
            // SAFETY: reads and writes this thread's SSE control register, nothing else.
            unsafe {
                use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
                _mm_setcsr(_mm_getcsr() | 0x8040);
            }
        }
        set_on_this_thread();
        static RAYON: std::sync::Once = std::sync::Once::new();
        RAYON.call_once(|| {
            let pool = rayon::ThreadPoolBuilder::new()
                .start_handler(|_| set_on_this_thread())
                .build_global();
            if let Err(e) = pool {
                tracing::warn!("rayon's threads keep subnormal floats (slower): {e}");
            }
        });
    }
}
