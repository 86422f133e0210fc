//! A run whose learning rate blows it up ends as diverged with every record kept (non-finite
//! values written as such) and only finite checkpoints. One test per binary: burn's seed is
//! process-global.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use elab_job::{JobSpec, RunDir, RunStatus, eval_steps, read_evals};
use elab_model::GptConfig;
use elab_train::{Backend, Outcome, RunOptions, train};

const JOB: &str = r#"
seed = 3
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
lr = 1e30
warmup_steps = 0
[eval]
every = 10
"#;

/// True when every parameter of the checkpointed model in `dir` is finite.
fn weights_are_finite(spec: &JobSpec, dir: &std::path::Path) -> bool {
    struct AllFinite(bool);
    impl ModuleVisitor for AllFinite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            self.0 &= values.iter().all(|v| v.is_finite());
        }
    }
    let device = Device::flex();
    let data = spec.task.generate(spec.seed);
    let model = GptConfig::from_spec(&spec.model, data.vocab_size, spec.n_ctx())
        .init(&device)
        .try_load_file(dir.join("model.bpk"))
        .unwrap();
    let mut check = AllFinite(true);
    model.visit(&mut check);
    check.0
}

#[test]
fn a_diverged_run_keeps_every_record_and_only_finite_checkpoints() {
    let spec = JobSpec::from_toml(JOB).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::new(tmp.path().join("run"));
    let outcome = train(
        &spec,
        &run,
        RunOptions {
            backend: Backend::Cpu,
            stop: Arc::new(AtomicBool::new(false)),
            on_progress: &mut |_| {},
        },
    )
    .unwrap();
    let Outcome::Finished(summary) = outcome else {
        panic!("not finished: {outcome:?}")
    };
    let RunStatus::Diverged { step: diverged } = summary.status else {
        panic!("an lr of 1e30 did not diverge: {summary:?}")
    };
    assert!(diverged >= 1);

    // Every record is on disk once and parses: the evaluations before the divergence, and the
    // one at it if it was seen there, with its non-finite values written as such.
    let raw = std::fs::read_to_string(run.evals()).unwrap();
    assert!(!raw.contains("null"), "non-finite values lost: {raw}");
    let rows = read_evals(&run.evals()).unwrap();
    assert_eq!(raw.lines().count(), rows.len());
    let steps: Vec<u64> = rows.iter().map(|r| r.step).step_by(2).collect();
    let before: Vec<u64> = eval_steps(spec.train.steps, spec.eval.every)
        .into_iter()
        .filter(|&s| s < diverged)
        .collect();
    assert_eq!(steps[..before.len()], before[..], "{raw}");
    assert!(steps.len() <= before.len() + 1 && steps.iter().all(|&s| s <= diverged));
    if steps.len() > before.len() {
        assert!(
            rows.iter()
                .filter(|r| r.step == diverged)
                .any(|r| !r.metrics["loss"].is_finite()),
            "a record at the divergence step must show it: {raw}"
        );
    }

    // Only finite checkpoints, all before the divergence.
    let saved = run.checkpoints().unwrap();
    assert!(!saved.is_empty());
    for step in saved {
        assert!(step < diverged);
        assert!(
            weights_are_finite(&spec, &run.checkpoint_dir(step)),
            "checkpoint {step} holds non-finite weights"
        );
    }
}
