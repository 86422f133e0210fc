//! A run whose learning rate blows it up ends as diverged with every record kept (non-finite
//! values written as such) and only finite checkpoints. One test per binary: burn's seed is
//! process-global.

mod common;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use common::{tiny_job, train_cpu};
use elab_job::{JobSpec, RunDir, RunStatus, eval_steps, read_evals};
use elab_model::GptConfig;
use elab_train::Outcome;

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
    let spec = tiny_job(3, 1e30);
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::new(tmp.path().join("run"));
    let outcome = train_cpu(&spec, &run, None).unwrap();
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
