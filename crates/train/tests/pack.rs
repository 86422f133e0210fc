//! Jobs trained as one pack leave the records they leave when trained alone: a pack mixing
//! seeds, learning rates, weight decays, training-set sizes and clipping, with one job that
//! diverges, and a pack that is stopped and resumed. One test per binary: burn's seed is
//! process-global.

mod common;

use common::{tiny_job, train_cpu, train_pack_cpu};
use elab_job::{EvalRow, JobSpec, RunDir, RunStatus, read_evals};
use elab_tasks::TaskSpec;
use elab_train::Outcome;

fn mixed_pack() -> Vec<JobSpec> {
    let mut jobs = vec![
        tiny_job(1, 3e-3),
        tiny_job(2, 1e-3),
        tiny_job(3, 1e30), // diverges
        tiny_job(4, 3e-3),
    ];
    jobs[1].train.weight_decay = 0.5;
    jobs[3].train.grad_clip = 0.1;
    jobs[3].train.warmup_steps = 10;
    if let TaskSpec::Digits(t) = &mut jobs[3].task {
        t.train_size = 300;
    }
    jobs
}

fn status(outcome: &Outcome) -> RunStatus {
    match outcome {
        Outcome::Finished(s) => s.status.clone(),
        other => panic!("not finished: {other:?}"),
    }
}

/// Rows equal but for float noise: same steps and splits, every metric within 1e-4 relative.
fn assert_same_records(alone: &[EvalRow], packed: &[EvalRow], job: usize) {
    assert_eq!(alone.len(), packed.len(), "job {job}: number of rows");
    for (a, p) in alone.iter().zip(packed) {
        assert_eq!((a.step, a.split), (p.step, p.split), "job {job}");
        assert_eq!(
            a.metrics.keys().collect::<Vec<_>>(),
            p.metrics.keys().collect::<Vec<_>>()
        );
        for (name, &x) in &a.metrics {
            let y = p.metrics[name];
            let same = (x.is_nan() && y.is_nan())
                || x == y
                || (x - y).abs() <= 1e-4 * x.abs().max(y.abs());
            assert!(
                same,
                "job {job} step {} {name}: alone {x}, packed {y}",
                a.step
            );
        }
    }
}

#[test]
fn a_job_in_a_pack_trains_as_it_does_alone() {
    let jobs = mixed_pack();
    let tmp = tempfile::tempdir().unwrap();
    let dirs = |name: &str| -> Vec<RunDir> {
        (0..jobs.len())
            .map(|i| RunDir::new(tmp.path().join(format!("{name}{i}"))))
            .collect()
    };
    let (alone, packed, resumed) = (dirs("alone"), dirs("packed"), dirs("resumed"));

    let alone_outcomes: Vec<Outcome> = jobs
        .iter()
        .zip(&alone)
        .map(|(spec, run)| train_cpu(spec, run, None).unwrap())
        .collect();
    let pack: Vec<(&JobSpec, &RunDir)> = jobs.iter().zip(&packed).collect();
    let packed_outcomes = train_pack_cpu(&pack, None).unwrap();

    // Stopped after step 15 (between evaluations), then resumed: the jobs split into a pack
    // of the finished diverged one and the rest, which resume together.
    let pack: Vec<(&JobSpec, &RunDir)> = jobs.iter().zip(&resumed).collect();
    let stopped = train_pack_cpu(&pack, Some(15)).unwrap();
    assert!(
        stopped
            .iter()
            .any(|o| matches!(o, Outcome::Interrupted { step: 15 })),
        "{stopped:?}"
    );
    let resumed_outcomes = train_pack_cpu(&pack, None).unwrap();

    for i in 0..jobs.len() {
        assert_eq!(
            status(&alone_outcomes[i]),
            status(&packed_outcomes[i]),
            "job {i}"
        );
        assert_eq!(
            status(&alone_outcomes[i]),
            status(&resumed_outcomes[i]),
            "job {i}"
        );
        let rows = |run: &RunDir| read_evals(&run.evals()).unwrap();
        assert_same_records(&rows(&alone[i]), &rows(&packed[i]), i);
        assert_same_records(&rows(&alone[i]), &rows(&resumed[i]), i);
    }
    assert!(matches!(
        status(&alone_outcomes[2]),
        RunStatus::Diverged { .. }
    ));
    assert_eq!(status(&alone_outcomes[0]), RunStatus::Done);
    // The mix really differs: weight decay and the learning rate change the records.
    let last_loss =
        |run: &RunDir| read_evals(&run.evals()).unwrap().last().unwrap().metrics["loss"];
    assert_ne!(last_loss(&alone[0]), last_loss(&alone[1]));
}
