//! Nanda et al.'s Fourier progress measures, as the trainer records them: every evaluation of a
//! modular job carries them, within their ranges, and a job in a pack (here addition beside
//! subtraction, whose answers have the other sign) gets the measures it gets alone. One test
//! per binary: burn's seed is process-global.

mod common;

use common::{train_cpu, train_pack_cpu};
use elab_job::{JobSpec, RunDir, Split, eval_steps, read_evals};

const P: usize = 13;

fn modular_job(op: &str, weight_decay: f64) -> JobSpec {
    JobSpec::from_toml(&format!(
        r#"
seed = 3
[task]
kind = "modular"
p = {P}
op = "{op}"
train_fraction = 0.5
op_token = false
[model]
n_layer = 1
d_model = 32
n_head = 4
d_mlp = 64
layer_norm = false
init = "nanda"
[train]
steps = 60
batch_size = 0
lr = 3e-3
weight_decay = {weight_decay}
warmup_steps = 0
[eval]
every = 20
max_train_examples = 0
"#
    ))
    .unwrap()
}

#[test]
fn modular_jobs_record_the_fourier_measures_alone_and_in_a_pack() {
    let jobs = [modular_job("add", 1.0), modular_job("sub", 0.0)];
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: String| RunDir::new(tmp.path().join(name));
    let alone: Vec<RunDir> = (0..2).map(|i| dir(format!("alone{i}"))).collect();
    let packed: Vec<RunDir> = (0..2).map(|i| dir(format!("packed{i}"))).collect();
    for (spec, run) in jobs.iter().zip(&alone) {
        train_cpu(spec, run, None).unwrap();
    }
    let pack: Vec<(&JobSpec, &RunDir)> = jobs.iter().zip(&packed).collect();
    train_pack_cpu(&pack, None).unwrap();

    for i in 0..2 {
        let rows = read_evals(&alone[i].evals()).unwrap();
        let packed_rows = read_evals(&packed[i].evals()).unwrap();
        // The model-wide measures (weight norms, Fourier) go on the training split's rows.
        let train: Vec<_> = rows.iter().filter(|r| r.split == Split::Train).collect();
        assert_eq!(
            train.len(),
            eval_steps(60, 20).len(),
            "job {i}: one row per evaluation"
        );
        for row in train {
            let m = &row.metrics;
            for rank in 1..=5 {
                let k = m[&format!("fourier.key_freq_{rank}")];
                assert!(
                    k.fract() == 0.0 && (1.0..=((P - 1) / 2) as f64).contains(&k),
                    "job {i} step {}: key frequency {k}",
                    row.step
                );
            }
            let share = m["fourier.key_share"];
            assert!(share > 0.0 && share <= 1.0 + 1e-9, "key share {share}");
            for loss in ["fourier.restricted_loss", "fourier.excluded_loss"] {
                assert!(m[loss].is_finite() && m[loss] > 0.0, "{loss}: {}", m[loss]);
            }
        }
        assert_eq!(rows.len(), packed_rows.len());
        for (a, b) in rows.iter().zip(&packed_rows) {
            for (name, &x) in a.metrics.iter().filter(|(n, _)| n.starts_with("fourier.")) {
                let y = b.metrics[name];
                assert!(
                    (x - y).abs() <= 1e-4 * x.abs().max(1.0),
                    "job {i} step {} {name}: alone {x}, packed {y}",
                    a.step
                );
            }
        }
    }
    // The jobs differ (another operation, another weight decay), so the pack really holds two
    // models: their restricted losses part.
    let last = |run: &RunDir| {
        let rows = read_evals(&run.evals()).unwrap();
        let last_train = rows.iter().rfind(|r| r.split == Split::Train).unwrap();
        last_train.metrics["fourier.restricted_loss"]
    };
    assert_ne!(last(&packed[0]), last(&packed[1]));
}
