//! End-to-end: a hand-written sparse-parity sweep whose subtasks jump at known sizes, exported;
//! subtasks.csv must give each subtask its own threshold, in frequency order, and the power law
//! of the mean loss; the subtasks figure must show them.

use std::collections::BTreeMap;

use elab_job::{EvalRow, JobSpec, Split, param_counts};
use elab_report::{ExportOptions, export};

mod common;

const D_MODELS: [usize; 8] = [8, 16, 24, 32, 48, 64, 96, 128];
/// 8 seeds: with fewer, runs that each sit at chance or at the top could as well be a lottery.
const SEEDS: [u64; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

const BASE: &str = r#"
[task]
kind = "sparse_parity"
n_tasks = 4
n_bits = 16
k = 2
alpha = 1.0
[model]
n_layer = 2
n_head = 4
[train]
steps = 100
[eval]
every = 100
"#;

fn spec(d_model: usize, seed: u64) -> JobSpec {
    let mut spec = JobSpec::from_toml(BASE).unwrap();
    spec.model.d_model = d_model;
    spec.model.d_mlp = 4 * d_model;
    spec.seed = seed;
    spec
}

fn params(d_model: usize) -> f64 {
    let spec = spec(d_model, 0);
    let (vocab, _, _) = spec.task.shape();
    param_counts(&spec.model, vocab, spec.n_ctx()).total as f64
}

#[test]
fn each_subtask_gets_its_threshold_and_the_mean_loss_its_power_law() {
    // Subtask i is learned from size index 2 + 2i on (subtask 3 never): thresholds between
    // sizes 1|2, 3|4 and 5|6, each with at least two sizes on either side.
    let learned = |i: usize, size: usize| i < 3 && size > 2 * i + 1;
    let mut hand_made = common::HandMadeSweep::new("sp");
    for seed in SEEDS {
        for (size, &d) in D_MODELS.iter().enumerate() {
            let noise = 0.003 * (seed as f64 - 3.5);
            let mut metrics = BTreeMap::from([(
                "loss".to_string(),
                3.0 * params(d).powf(-0.25) * (1.0 + noise),
            )]);
            for i in 0..4 {
                let acc = if learned(i, size) { 0.99 } else { 0.5 } + noise;
                metrics.insert(format!("subtask_accuracy.{i}"), acc);
            }
            let rows = [Split::Train, Split::Val].map(|split| EvalRow {
                step: 100,
                split,
                tokens: 100,
                metrics: metrics.clone(),
            });
            let axes = BTreeMap::from([("seed".to_string(), toml::Value::Integer(seed as i64))]);
            hand_made.add_done_job(&spec(d, seed), &format!("d{d}"), axes, rows, 100);
        }
    }
    hand_made.write_plan();
    let (sweep, out) = (&hand_made.sweep, &hand_made.out);

    let summary = export(sweep, out, &ExportOptions::default()).unwrap();
    assert!(summary.files.iter().any(|f| f.ends_with("subtasks.csv")));
    let (header, rows) = common::read_csv(&out.join("subtasks.csv"));
    assert_eq!(rows.len(), 4);
    let doc = std::fs::read_to_string(out.join("SCHEMA.md")).unwrap();
    for name in &header {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} undocumented"
        );
    }
    let lp = |size: usize| params(D_MODELS[size]).log10();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["subtask"], i.to_string());
        let expected_frequency = (1.0 / (i + 1) as f64) / (1.0 + 0.5 + 1.0 / 3.0 + 0.25);
        let frequency: f64 = row["frequency"].parse().unwrap();
        assert!((frequency - expected_frequency).abs() < 1e-12);
        let exponent: f64 = row["mean_loss_exponent"].parse().unwrap();
        assert!((exponent - 0.25).abs() < 1e-9, "{exponent}");
        if i < 3 {
            // A step between two adjacent sizes cannot be placed more finely than the gap:
            // `unresolved`, its interval the gap itself (docs/analysis.md).
            assert_eq!(row["verdict"], "unresolved", "subtask {i}: {row:?}");
            let x0: f64 = row["x0"].parse().unwrap();
            let (below, above) = (lp(2 * i + 1), lp(2 * i + 2));
            assert!(
                below < x0 && x0 < above,
                "subtask {i}: x0 {x0} not in ({below}, {above})"
            );
            let low: f64 = row["x0_ci_low"].parse().unwrap();
            let high: f64 = row["x0_ci_high"].parse().unwrap();
            assert!(
                (low - below).abs() < 1e-9 && (high - above).abs() < 1e-9,
                "subtask {i}: interval [{low}, {high}] is not the gap [{below}, {above}]"
            );
        } else {
            assert!(
                row["verdict"] != "emergent" && row["verdict"] != "unresolved",
                "never learned: {row:?}"
            );
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<h2>Subtasks: parity4x16k2</h2>"),
        "no section"
    );
    assert!(html.contains("in frequency order: 3 pairs, out of order: 0"));
    assert!(html.contains("subtasks.csv"), "the file is not linked");

    // The figure: accuracy per subtask, thresholds against frequency, the mean loss's law.
    let svg = std::fs::read_to_string(out.join("plots/g01_parity4x16k2_subtasks.svg")).unwrap();
    for text in [
        "final validation accuracy per subtask",
        "threshold vs subtask frequency",
        "subtask 0 (p = 0.480)",
        "subtask 3 (p = 0.120)",
        "N^-0.25",
    ] {
        assert!(svg.contains(text), "{text:?} not in the subtasks figure");
    }
    assert!(
        html.contains("subtasks (quantization model)"),
        "figure not in the report"
    );
}
