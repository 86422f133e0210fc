//! Exact resume: 2N steps straight and N steps + stop + N more give the same records, bit for
//! bit on the Flex CPU backend. One test per binary: burn's seed is process-global.

mod common;

use elab_job::{JobSpec, RunDir, RunStatus, read_evals};
use elab_train::Outcome;

const JOB: &str = r#"
seed = 7
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 300
val_size = 200
[model]
n_layer = 2
d_model = 32
n_head = 4
d_mlp = 64
[train]
steps = 60
batch_size = 32
lr = 3e-3
warmup_steps = 5
schedule = "cosine"
grad_clip = 1.0
[eval]
every = 10
"#;

fn run(spec: &JobSpec, dir: &RunDir, stop_at: Option<u64>) -> Outcome {
    common::train_cpu(spec, dir, stop_at).unwrap()
}

#[test]
fn stopping_and_resuming_gives_the_records_of_a_straight_run() {
    let spec = JobSpec::from_toml(JOB).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let straight = RunDir::new(tmp.path().join("straight"));
    let resumed = RunDir::new(tmp.path().join("resumed"));

    let Outcome::Finished(summary) = run(&spec, &straight, None) else {
        panic!("not finished")
    };
    assert_eq!(summary.status, RunStatus::Done);
    assert_eq!(summary.resumes, 0);

    // Stop at step 30 (an eval step) and at 43 (between evals), then finish.
    assert_eq!(
        run(&spec, &resumed, Some(30)),
        Outcome::Interrupted { step: 30 }
    );
    assert_eq!(resumed.checkpoint_step(), Some(30));
    assert_eq!(
        run(&spec, &resumed, Some(43)),
        Outcome::Interrupted { step: 43 }
    );
    let Outcome::Finished(summary) = run(&spec, &resumed, None) else {
        panic!("not finished")
    };
    assert_eq!(summary.resumes, 2);

    let a = read_evals(&straight.evals()).unwrap();
    let b = read_evals(&resumed.evals()).unwrap();
    let raw_lines = std::fs::read_to_string(resumed.evals())
        .unwrap()
        .lines()
        .count();
    assert_eq!(raw_lines, b.len(), "no duplicate lines on disk");
    let steps: Vec<u64> = a.iter().map(|r| r.step).step_by(2).collect();
    assert_eq!(steps, vec![0, 1, 2, 4, 8, 10, 16, 20, 30, 32, 40, 50, 60]);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.step, x.split, x.tokens), (y.step, y.split, y.tokens));
        for (name, v) in &x.metrics {
            assert_eq!(
                v.to_bits(),
                y.metrics[name].to_bits(),
                "step {} {name}: {v} vs {}",
                x.step,
                y.metrics[name]
            );
        }
    }
    // The model really trained: validation loss fell well below its starting value.
    let val_loss = |step| {
        a.iter()
            .find(|r| r.step == step && r.split == elab_job::Split::Val)
            .unwrap()
            .metrics["loss"]
    };
    assert!(
        val_loss(60) < 0.8 * val_loss(0),
        "{} -> {}",
        val_loss(0),
        val_loss(60)
    );

    // A finished run is not trained again.
    let before = std::fs::read(resumed.evals()).unwrap();
    assert!(matches!(run(&spec, &resumed, None), Outcome::Finished(_)));
    assert_eq!(std::fs::read(resumed.evals()).unwrap(), before);
}
