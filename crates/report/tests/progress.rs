//! End-to-end: runs that recorded progress measures get a progress figure under their grokking
//! curves, with the Fourier panels where the task is modular addition and without them
//! elsewhere; runs without the measures get none (tests/export.rs counts their figures).

use std::collections::BTreeMap;

use elab_job::{EvalRow, JobSpec, Split};
use elab_report::{ExportOptions, export};

mod common;

const MODULAR: &str = r#"
[task]
kind = "modular"
p = 7
op = "add"
train_fraction = 0.5
[model]
n_layer = 1
n_head = 4
[train]
steps = 1000
batch_size = 0
[eval]
every = 100
max_train_examples = 0
"#;

const DIGITS: &str = r#"
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 100
val_size = 100
[model]
n_layer = 1
n_head = 4
[train]
steps = 1000
batch_size = 10
[eval]
every = 100
"#;

/// A grokking run's records: memorized at once, generalizing at step 600; the weight norm
/// falls from then, and (`fourier`) restricted loss falls ahead of the test loss.
fn rows(fourier: bool) -> Vec<EvalRow> {
    (0..=1000u64)
        .step_by(100)
        .flat_map(|step| {
            let t = step as f64 / 1000.0;
            let val = if step >= 600 { 1.0 } else { 0.1 };
            let mut train = BTreeMap::from([
                ("loss".to_string(), 1e-4),
                ("exact_match".to_string(), 1.0),
                ("weight_norm".to_string(), 40.0 - 20.0 * t),
            ]);
            if fourier {
                train.extend([
                    ("fourier.key_share".to_string(), 0.1 + 0.8 * t),
                    (
                        "fourier.restricted_loss".to_string(),
                        2.0 * (-8.0 * t).exp(),
                    ),
                    ("fourier.excluded_loss".to_string(), 1e-3 * (8.0 * t).exp()),
                ]);
            }
            let val = BTreeMap::from([
                ("loss".to_string(), if val == 1.0 { 1e-3 } else { 5.0 }),
                ("exact_match".to_string(), val),
            ]);
            [(Split::Train, train), (Split::Val, val)].map(|(split, metrics)| EvalRow {
                step,
                split,
                tokens: step * 10,
                metrics,
            })
        })
        .collect()
}

#[test]
fn recorded_progress_measures_get_a_figure_with_the_fourier_panels_where_modular() {
    let mut hand_made = common::HandMadeSweep::new("progress");
    for (base, fourier) in [(MODULAR, true), (DIGITS, false)] {
        for seed in [0, 1] {
            let mut spec = JobSpec::from_toml(base).unwrap();
            spec.seed = seed;
            let axes = BTreeMap::from([("seed".to_string(), toml::Value::Integer(seed as i64))]);
            hand_made.add_done_job(&spec, "default", axes, rows(fourier), 1000);
        }
    }
    hand_made.write_plan();
    let (sweep, out) = (&hand_made.sweep, &hand_made.out);

    let summary = export(sweep, out, &ExportOptions::default()).unwrap();
    let progress: Vec<String> = summary
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .filter(|f| f.ends_with("_progress.svg"))
        .collect();
    assert_eq!(progress.len(), 2, "one per group: {:?}", summary.files);
    for svg_file in &progress {
        let svg = std::fs::read_to_string(out.join(svg_file)).unwrap();
        let png = out.join(svg_file.replace(".svg", ".png"));
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000, "{png:?}");
        assert!(svg.contains("validation exact match") && svg.contains("total weight norm"));
        assert!(
            svg.contains("default seed 1"),
            "a line per job, in the legend"
        );
        let modular = svg_file.contains("mod7");
        for panel in ["restricted loss", "excluded loss", "key frequencies"] {
            assert_eq!(svg.contains(panel), modular, "{svg_file}: {panel}");
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.matches(": progress measures").count() >= 2,
        "not in the report"
    );
    for link in common::local_links(&html) {
        assert!(out.join(&link).exists(), "{link}");
    }
}
