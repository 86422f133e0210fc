//! Packs: jobs with equal [`JobSpec::pack_key`]s (model shape, token layout, batch size,
//! steps, evaluation steps) train together in one worker as one batched model (`elab train`
//! with several jobs; the model axis of `elab-model`). Tiny models cannot keep a CPU core, let
//! alone a GPU, busy on their own; a pack of them can. Packing changes no result: a job's
//! records are those it has alone (within float noise) and its files are its own.

use std::fmt;

use elab_job::{JobSpec, PlannedJob, param_counts};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[sweep] pack`: how many jobs one worker trains at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackSize {
    /// Few enough packs to keep every slot busy, each at most [`AUTO_MAX_JOBS`] jobs and
    /// [`AUTO_MAX_PARAMS`] parameters, and on the CPU at most [`AUTO_MAX_STEP_FLOPS_CPU`] per
    /// step.
    #[default]
    Auto,
    /// At most this many jobs per pack; 1 trains every job in its own worker.
    Max(usize),
}

/// The most jobs `pack = "auto"` puts in one pack.
pub const AUTO_MAX_JOBS: usize = 64;
/// The most parameters (all jobs together) `pack = "auto"` puts in one pack.
pub const AUTO_MAX_PARAMS: u64 = 20_000_000;
/// On the CPU, the most training FLOPs per step (all jobs together) `pack = "auto"` puts in one
/// pack. A pack saves per-op overhead, which matters only while a step is small: a job whose
/// step is already this big trains alone (measured: Nanda et al.'s shape, 16 GFLOPs a step,
/// trains slower per job in a pack of 3 than alone; 64 jobs of 76 MFLOPs, 1.8x faster in packs;
/// docs/performance.md). A GPU has no such limit: there packing is what fills the device.
pub const AUTO_MAX_STEP_FLOPS_CPU: f64 = 2e9;

impl fmt::Display for PackSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PackSize::Auto => write!(f, "auto"),
            PackSize::Max(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for PackSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PackSize::Auto => s.serialize_str("auto"),
            PackSize::Max(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for PackSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        let wrong = || {
            serde::de::Error::custom(
                "must be \"auto\" or the most jobs per pack (an integer >= 1; 1 = no packing)",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "auto" => Ok(PackSize::Auto),
            Raw::Number(n) if n >= 1 => Ok(PackSize::Max(n as usize)),
            _ => Err(wrong()),
        }
    }
}

/// Where the workers train, for `pack = "auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    /// The device a sweep's `backend` setting ("auto", "wgpu", "cpu") trains on, as far as the
    /// scheduler can tell without probing (it does not link burn): "auto" counts as the CPU.
    pub fn of_backend(backend: &str) -> Self {
        if backend == "wgpu" {
            Device::Gpu
        } else {
            Device::Cpu
        }
    }
}

/// Splits `jobs` (in plan order, each with its spec where known) into packs: jobs with equal
/// pack keys, in groups of near-equal size. `slots` is how many workers run side by side:
/// `auto` makes at least that many packs when there are enough jobs. A job without a spec
/// is a pack of its own. Packs come in the order of their first job.
pub fn form_packs<'a>(
    jobs: &[(&'a PlannedJob, Option<&JobSpec>)],
    size: PackSize,
    slots: usize,
    device: Device,
) -> Vec<Vec<&'a PlannedJob>> {
    // Per group: its key, a job's parameters and training FLOPs per step, its jobs.
    let mut groups: Vec<(String, u64, f64, Vec<&'a PlannedJob>)> = Vec::new();
    for (job, spec) in jobs {
        let (key, params, step_flops) = match spec {
            Some(spec) => {
                let (vocab, _, _) = spec.task.shape();
                let params = param_counts(&spec.model, vocab, spec.n_ctx()).total;
                let step_flops = spec.train_flops() / spec.train.steps.max(1) as f64;
                (spec.pack_key(), params, step_flops)
            }
            None => (format!("job {}", job.id), 0, 0.0),
        };
        match groups.iter_mut().find(|(k, ..)| *k == key) {
            Some((.., members)) => members.push(job),
            None => groups.push((key, params, step_flops, vec![job])),
        }
    }
    let n_groups = groups.len();
    let mut packs = Vec::new();
    for (_, params, step_flops, members) in groups {
        let n = members.len();
        let most = match size {
            PackSize::Max(k) => k,
            PackSize::Auto => {
                let by_params = (AUTO_MAX_PARAMS / params.max(1)).max(1) as usize;
                let by_work = match device {
                    Device::Cpu => {
                        (AUTO_MAX_STEP_FLOPS_CPU / step_flops.max(1.0)).max(1.0) as usize
                    }
                    Device::Gpu => usize::MAX,
                };
                // Spread a group over the slots the other groups leave idle.
                let packs_wanted = slots.div_ceil(n_groups).max(1);
                AUTO_MAX_JOBS
                    .min(by_params)
                    .min(by_work)
                    .min(n.div_ceil(packs_wanted))
            }
        };
        let count = n.div_ceil(most.max(1));
        // `count` packs whose sizes differ by at most one.
        let mut rest = members.into_iter();
        for i in 0..count {
            let len = n / count + usize::from(i < n % count);
            packs.push(rest.by_ref().take(len).collect());
        }
    }
    packs
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn job(seed: u64, d_model: usize, lr: f64) -> (PlannedJob, JobSpec) {
        let spec = JobSpec::from_toml(&format!(
            "seed = {seed}\n[task]\nkind = \"modular\"\np = 13\ntrain_fraction = 0.5\n\
             [model]\nn_layer = 1\nd_model = {d_model}\nn_head = 2\n[train]\nlr = {lr:e}\n"
        ))
        .unwrap();
        let planned = PlannedJob {
            id: spec.id(),
            size: format!("d{d_model}"),
            axes: BTreeMap::new(),
            spec: None,
        };
        (planned, spec)
    }

    fn ids(packs: &[Vec<&PlannedJob>]) -> Vec<Vec<String>> {
        packs
            .iter()
            .map(|p| p.iter().map(|j| j.size.clone()).collect())
            .collect()
    }

    #[test]
    fn packs_hold_one_shape_and_keep_every_slot_busy() {
        let jobs: Vec<(PlannedJob, JobSpec)> = (0..3)
            .flat_map(|seed| [job(seed, 8, 1e-3), job(seed, 16, 3e-3)])
            .collect();
        let refs: Vec<(&PlannedJob, Option<&JobSpec>)> =
            jobs.iter().map(|(j, s)| (j, Some(s))).collect();
        // Two shapes, two slots: one pack per shape, learning rates mixed freely.
        let packs = form_packs(&refs, PackSize::Auto, 2, Device::Cpu);
        assert_eq!(ids(&packs), [["d8", "d8", "d8"], ["d16", "d16", "d16"]]);
        // Eight slots: each shape spread over 4 packs at most (here 3 of one job).
        assert_eq!(form_packs(&refs, PackSize::Auto, 8, Device::Cpu).len(), 6);
        // A cap of 2: packs of 2 and 1 per shape; a cap of 1 is one job per worker.
        let capped = form_packs(&refs, PackSize::Max(2), 2, Device::Cpu);
        assert_eq!(
            capped.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 1, 2, 1]
        );
        assert_eq!(form_packs(&refs, PackSize::Max(1), 2, Device::Cpu).len(), 6);
        // A job whose spec is unknown trains alone.
        let alone: Vec<_> = refs.iter().map(|(j, _)| (*j, None)).collect();
        assert_eq!(form_packs(&alone, PackSize::Auto, 1, Device::Cpu).len(), 6);
    }

    #[test]
    fn on_the_cpu_big_steps_train_alone_and_on_a_gpu_they_pack() {
        // d_model 512, batch 512 x 3 tokens: about 10 GFLOPs a step.
        let jobs: Vec<(PlannedJob, JobSpec)> = (0..4).map(|seed| job(seed, 512, 1e-3)).collect();
        let refs: Vec<(&PlannedJob, Option<&JobSpec>)> =
            jobs.iter().map(|(j, s)| (j, Some(s))).collect();
        assert!(jobs[0].1.train_flops() / jobs[0].1.train.steps as f64 > AUTO_MAX_STEP_FLOPS_CPU);
        assert_eq!(form_packs(&refs, PackSize::Auto, 1, Device::Cpu).len(), 4);
        assert_eq!(form_packs(&refs, PackSize::Auto, 1, Device::Gpu).len(), 1);
        assert_eq!(Device::of_backend("auto"), Device::Cpu);
    }

    #[test]
    fn pack_size_reads_auto_or_a_positive_integer() {
        #[derive(Deserialize)]
        struct S {
            pack: PackSize,
        }
        let read = |v: &str| toml::from_str::<S>(&format!("pack = {v}")).map(|s| s.pack);
        assert_eq!(read("\"auto\"").unwrap(), PackSize::Auto);
        assert_eq!(read("8").unwrap(), PackSize::Max(8));
        for bad in ["0", "-1", "\"many\"", "2.5"] {
            let e = read(bad).unwrap_err().to_string();
            assert!(
                e.contains("must be \"auto\" or the most jobs per pack"),
                "{bad}: {e}"
            );
        }
    }
}
