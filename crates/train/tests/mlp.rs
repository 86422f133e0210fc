//! The MLP (`arch = "mlp"`) trains through the same loop as the transformer: it learns sparse
//! parity from the one-hot prefix, and a run stopped and resumed from its checkpoint writes the
//! records of a straight run, bit for bit. One test per binary: burn's seed is process-global.

mod common;

use common::train_cpu;
use elab_job::{JobSpec, RunDir, Split, read_evals};
use elab_train::Outcome;

const JOB: &str = r#"
seed = 3
[task]
kind = "sparse_parity"
n_tasks = 3
n_bits = 14
k = 2
alpha = 1.0
train_size = 7000
val_size = 500
[model]
arch = "mlp"
n_layer = 1
d_model = 32
[train]
steps = 800
batch_size = 250
lr = 1e-2
weight_decay = 0.0
warmup_steps = 0
[eval]
every = 200
max_train_examples = 500
"#;

#[test]
fn an_mlp_learns_sparse_parity_and_resumes_exactly() {
    let spec = JobSpec::from_toml(JOB).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let straight = RunDir::new(tmp.path().join("straight"));
    let resumed = RunDir::new(tmp.path().join("resumed"));

    assert!(matches!(
        train_cpu(&spec, &straight, None).unwrap(),
        Outcome::Finished(_)
    ));
    assert_eq!(
        train_cpu(&spec, &resumed, Some(300)).unwrap(),
        Outcome::Interrupted { step: 300 }
    );
    assert!(matches!(
        train_cpu(&spec, &resumed, None).unwrap(),
        Outcome::Finished(_)
    ));

    let a = read_evals(&straight.evals()).unwrap();
    let b = read_evals(&resumed.evals()).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.step, x.split), (y.step, y.split));
        for (name, v) in &x.metrics {
            assert_eq!(
                v.to_bits(),
                y.metrics[name].to_bits(),
                "step {} {name}",
                x.step
            );
        }
    }

    // It starts at chance and ends solving every subtask on held-out inputs.
    let val = |step| {
        a.iter()
            .find(|r| r.step == step && r.split == Split::Val)
            .unwrap()
    };
    assert!(val(0).metrics["exact_match"] < 0.7, "{:?}", val(0).metrics);
    for i in 0..3 {
        let acc = val(800).metrics[&format!("subtask_accuracy.{i}")];
        assert!(acc > 0.95, "subtask {i}: {acc}");
    }
}
