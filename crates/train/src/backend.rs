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

/// Turns on flush-to-zero and denormals-are-zero on this thread and on rayon's global pool, for
/// CPU work outside the compute pool (whose threads always flush: `threads.rs` says why).
fn flush_subnormals() {
    crate::threads::flush_subnormals_on_this_thread();
    static RAYON: std::sync::Once = std::sync::Once::new();
    RAYON.call_once(|| {
        let pool = rayon::ThreadPoolBuilder::new()
            .start_handler(|_| crate::threads::flush_subnormals_on_this_thread())
            .build_global();
        if let Err(e) = pool {
            tracing::warn!("rayon's threads keep subnormal floats (slower): {e}");
        }
    });
}
