//! `[train] snapshots`: safetensors files at the snapshot steps, under the model's parameter
//! names, that load back into the network bit for bit, that checkpoint rotation never deletes,
//! and that a job writes alike alone and in a pack. One test per binary: burn's seed is
//! process-global.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use common::{tiny_job, train_cpu, train_pack_cpu};
use elab_job::{JobSpec, RunDir, Snapshots, read_evals};
use elab_model::{Gpt, LanguageModel};
use elab_train::snapshot;

/// Every parameter's values, in visiting order.
fn values<M: Module>(model: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.push(data.try_to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

fn blank_model(spec: &JobSpec) -> Gpt {
    let data = spec.task.generate(spec.seed);
    Gpt::init(&spec.model, data.vocab_size, spec.n_ctx(), &Device::flex())
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|t| t.iter().map(|x| x.to_bits()).collect())
        .collect()
}

#[test]
fn snapshots_are_safetensors_that_load_back_exactly_and_outlive_checkpoints() {
    let mut spec = tiny_job(5, 3e-3);
    spec.train.snapshots = Snapshots::Log;
    let mut other = tiny_job(6, 1e-3);
    other.train.snapshots = Snapshots::Every(15);
    let tmp = tempfile::tempdir().unwrap();
    let alone = RunDir::new(tmp.path().join("alone"));
    let (packed, packed_other) = (
        RunDir::new(tmp.path().join("packed")),
        RunDir::new(tmp.path().join("packed-other")),
    );
    // What writes killed before their rename leave behind: removed when a worker takes the run.
    std::fs::create_dir_all(alone.snapshots()).unwrap();
    let stale = [
        alone.path().join(".summary.json.x1Yz.tmp"),
        alone
            .snapshots()
            .join(".step-000000008.safetensors.AbC.tmp"),
    ];
    for file in &stale {
        std::fs::write(file, b"torn").unwrap();
    }
    train_cpu(&spec, &alone, None).unwrap();
    for file in &stale {
        assert!(!file.exists(), "{} was left", file.display());
    }
    train_pack_cpu(&[(&spec, &packed), (&other, &packed_other)], None).unwrap();

    // Keeping snapshots changes nothing the run records: the same rows, bit for bit, as the
    // same job without them.
    let plain = RunDir::new(tmp.path().join("plain"));
    train_cpu(&tiny_job(5, 3e-3), &plain, None).unwrap();
    let (with, without) = (
        read_evals(&alone.evals()).unwrap(),
        read_evals(&plain.evals()).unwrap(),
    );
    assert_eq!(with.len(), without.len());
    for (a, b) in with.iter().zip(&without) {
        assert_eq!((a.step, a.split), (b.step, b.split));
        for (name, x) in &a.metrics {
            assert_eq!(
                x.to_bits(),
                b.metrics[name].to_bits(),
                "step {} {name}",
                a.step
            );
        }
    }
    assert!(plain.snapshot_steps().unwrap().is_empty());

    // Log-spaced and aligned with the evaluations (every 10 of 40 steps).
    let want = vec![0, 1, 2, 4, 8, 10, 16, 20, 30, 32, 40];
    assert_eq!(spec.snapshot_steps(), want);
    assert_eq!(alone.snapshot_steps().unwrap(), want);
    assert_eq!(packed.snapshot_steps().unwrap(), want);
    assert_eq!(packed_other.snapshot_steps().unwrap(), vec![0, 15, 30, 40]);
    // Checkpoint rotation kept two checkpoints and every snapshot.
    assert_eq!(alone.checkpoint_dirs().unwrap().len(), 2);

    // The file: plain safetensors, float32, named as the model names its parameters, with the
    // pack axis and the axes of length 1 dropped, and a manifest.
    let bytes = std::fs::read(alone.snapshot(40)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert!(names.contains(&"wte"), "{names:?}");
    assert!(names.contains(&"blocks.0.attn.c_attn.weight"), "{names:?}");
    let c_attn = file.tensor("blocks.0.attn.c_attn.weight").unwrap();
    assert_eq!(c_attn.shape(), [16, 48]);
    assert_eq!(c_attn.dtype(), safetensors::Dtype::F32);
    assert_eq!(
        file.tensor("blocks.0.attn.c_attn.bias").unwrap().shape(),
        [48]
    );
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().as_ref().unwrap();
    assert_eq!(meta["job"], spec.id());
    assert_eq!(meta["step"], "40");
    assert_eq!(meta["spec_sha256"], spec.sha256());

    // Loaded into the network, the last snapshot is the last checkpoint's weights, bit for bit.
    let (loaded, manifest) = snapshot::read_into(blank_model(&spec), &alone.snapshot(40)).unwrap();
    assert_eq!(manifest, snapshot::Manifest::new(&spec, 40));
    let checkpointed = blank_model(&spec)
        .try_load_file(alone.checkpoint_dir(40).join("model.bpk"))
        .unwrap();
    assert_eq!(bits(&values(&loaded)), bits(&values(&checkpointed)));
    assert_ne!(
        bits(&values(&loaded)),
        bits(&values(&blank_model(&spec))),
        "the snapshot changed the model"
    );
    // And written again, it holds the same tensors, byte for byte.
    let again = tmp.path().join("again.safetensors");
    snapshot::write(&loaded, &again, &manifest).unwrap();
    let again = std::fs::read(&again).unwrap();
    let again = safetensors::SafeTensors::deserialize(&again).unwrap();
    assert_eq!(again.len(), file.len());
    for (name, view) in file.tensors() {
        let other = again.tensor(&name).unwrap();
        assert_eq!(other.shape(), view.shape(), "{name}");
        assert!(
            other.data() == view.data(),
            "{name} changed on the round trip"
        );
    }

    // A job's snapshots in a pack are those it writes alone: the initial weights bit for bit,
    // the trained ones up to float noise (as its records are).
    for step in want {
        let a = values(
            &snapshot::read_into(blank_model(&spec), &alone.snapshot(step))
                .unwrap()
                .0,
        );
        let p = values(
            &snapshot::read_into(blank_model(&spec), &packed.snapshot(step))
                .unwrap()
                .0,
        );
        if step == 0 {
            assert_eq!(bits(&a), bits(&p));
        }
        for (x, y) in a.iter().flatten().zip(p.iter().flatten()) {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                "step {step}: {x} vs {y}"
            );
        }
    }

    // A snapshot that does not fit the network is refused, naming the parameter.
    let mut wider = spec.clone();
    wider.model.d_model = 32;
    let err = snapshot::read_into(blank_model(&wider), &alone.snapshot(0)).unwrap_err();
    assert!(format!("{err:#}").contains("wte"), "{err:#}");
}
