//! A short run of each task with its own metrics: the eval rows carry the task-specific keys,
//! and they agree with the generic metrics they refine. One test per binary: burn's seed is
//! process-global.

mod common;

use common::train_cpu;
use elab_job::{JobSpec, RunDir, Split, read_evals};

fn job(task: &str) -> JobSpec {
    JobSpec::from_toml(&format!(
        r#"
[task]
{task}
[model]
n_layer = 1
d_model = 16
n_head = 2
d_mlp = 32
[train]
steps = 4
batch_size = 16
[eval]
every = 4
max_train_examples = 40
"#
    ))
    .unwrap()
}

#[test]
fn eval_rows_carry_subtask_and_induction_metrics() {
    let tmp = tempfile::tempdir().unwrap();

    let parity = job(
        "kind = \"sparse_parity\"\nn_tasks = 3\nn_bits = 8\nk = 2\ntrain_size = 60\nval_size = 50",
    );
    let dir = RunDir::new(tmp.path().join("parity"));
    train_cpu(&parity, &dir, None).unwrap();
    let rows = read_evals(&dir.evals()).unwrap();
    assert!(!rows.is_empty());
    let data = parity.task.generate(parity.seed);
    for row in &rows {
        let m = &row.metrics;
        // The subtask accuracies, weighted by each subtask's share of the scored examples,
        // average back to the overall exact match.
        // The first 40 training examples are scored (max_train_examples), every validation one.
        let groups = match row.split {
            Split::Train => &data.breakdown.groups(true)[..40],
            Split::Val => data.breakdown.groups(false),
        };
        let mut weighted = 0.0;
        for i in 0..3 {
            let share = groups.iter().filter(|&&g| g == i).count() as f64 / groups.len() as f64;
            let acc = m[&format!("subtask_accuracy.{i}")];
            assert!(m.contains_key(&format!("subtask_loss.{i}")));
            if share > 0.0 {
                weighted += share * acc;
            }
        }
        assert!(
            (weighted - m["exact_match"]).abs() < 1e-9,
            "{weighted} vs {}",
            m["exact_match"]
        );
        assert!(!m.contains_key("icl_score"));
        assert!(
            !m.contains_key("heads.induction"),
            "head scores are the induction task's"
        );
    }

    let induction = job(
        "kind = \"induction\"\nvocab = 8\nseq_len = 12\nsegment_len = 3\ntrain_size = 60\nval_size = 20",
    );
    let dir = RunDir::new(tmp.path().join("induction"));
    train_cpu(&induction, &dir, None).unwrap();
    for row in read_evals(&dir.evals()).unwrap() {
        let m = &row.metrics;
        for key in ["icl_score", "repeat_accuracy", "repeat_loss", "random_loss"] {
            assert!(m[key].is_finite(), "{key} in {m:?}");
        }
        assert!((0.0..=1.0).contains(&m["repeat_accuracy"]));
        assert!(!m.contains_key("subtask_accuracy.0"));
        // Olsson et al.'s head scores, per layer and head, beside the weight norms.
        if row.split == Split::Train {
            for h in 0..2 {
                let prefix = m[&format!("heads.prefix_matching.0.{h}")];
                let copying = m[&format!("heads.copying.0.{h}")];
                assert!((0.0..=1.0).contains(&prefix), "{prefix}");
                assert!((-1.0..=1.0).contains(&copying), "{copying}");
            }
            assert!(
                !m.contains_key("heads.prefix_matching.1.0"),
                "one layer only"
            );
            assert!((0.0..=1.0).contains(&m["heads.induction"]));
        }
    }
}
