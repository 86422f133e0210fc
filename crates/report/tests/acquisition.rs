//! End-to-end: a hand-written seed lottery (12 sizes over 3 decades x 16 seeds, each run at
//! the floor or the top, the share that acquires rising over 2 decades), exported; the
//! verdict must be `lottery`, listed in the export summary and marked in report.html, and the
//! acquisition figure must be drawn with its three panels and linked from the report.

use std::collections::BTreeMap;

use elab_job::{EvalRow, JobSpec, Split, param_counts};
use elab_report::schema;
use elab_report::{ExportOptions, export};

mod common;

/// d_model over 3 decades of params, about 1.37x apart (multiples of the 4 heads).
const D_MODELS: [usize; 12] = [8, 12, 16, 20, 28, 40, 52, 72, 100, 136, 188, 256];
const SEEDS: u64 = 16;
const STEPS: u64 = 128;
/// 10%-90% width of the share that acquires, in decades of params.
const LOTTERY_WIDTH: f64 = 2.0;

const BASE: &str = r#"
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 200
val_size = 200
[model]
n_layer = 2
n_head = 4
[train]
steps = 128
batch_size = 10
[eval]
every = 16
"#;

fn spec(d_model: usize, seed: u64) -> JobSpec {
    let mut spec = JobSpec::from_toml(BASE).unwrap();
    spec.model.d_model = d_model;
    spec.model.d_mlp = 4 * d_model;
    spec.seed = seed;
    spec
}

fn log_params(d_model: usize) -> f64 {
    let spec = spec(d_model, 0);
    let (vocab, _, _) = spec.task.shape();
    (param_counts(&spec.model, vocab, spec.n_ctx()).total as f64).log10()
}

/// A run's validation exact match at `step`: at the floor, or from `acquire_at` on at the top
/// (a little per-seed spread, so that no two runs are copies).
fn val_exact_match(seed: u64, acquire_at: Option<u64>, step: u64) -> f64 {
    match acquire_at {
        Some(at) if step >= at => 0.9 + 0.002 * seed as f64,
        _ => 0.02 + 0.001 * seed as f64,
    }
}

#[test]
fn a_lottery_gets_its_verdict_listed_and_an_acquisition_figure() {
    let xs: Vec<f64> = D_MODELS.iter().map(|&d| log_params(d)).collect();
    let span = xs[xs.len() - 1] - xs[0];
    assert!(span > 2.5, "the ladder spans {span} decades");
    let mid = (xs[0] + xs[xs.len() - 1]) / 2.0;
    let k = 81f64.ln() / LOTTERY_WIDTH;

    let mut hand_made = common::HandMadeSweep::new("lottery");
    let mut truth = Vec::new();
    for (i, (&d, &x)) in D_MODELS.iter().zip(&xs).enumerate() {
        // The share that acquires, exactly: seeds below round(16 p) acquire; larger models
        // acquire earlier in training, so that threshold(t) falls over the steps.
        let p = 1.0 / (1.0 + (-k * (x - mid)).exp());
        let acquiring = (SEEDS as f64 * p).round() as u64;
        let acquire_at = STEPS - 16 * (i as u64 / 2);
        truth.push((acquiring, acquire_at));
        for seed in 0..SEEDS {
            let at = (seed < acquiring).then_some(acquire_at);
            let rows = (0..=STEPS).step_by(16).flat_map(|step| {
                let em = val_exact_match(seed, at, step);
                [
                    (Split::Train, 1.0, 0.01),
                    (Split::Val, em, -(em.max(1e-3)).ln()),
                ]
                .map(|(split, em, loss)| EvalRow {
                    step,
                    split,
                    tokens: step * 100,
                    metrics: BTreeMap::from([
                        ("exact_match".to_string(), em),
                        ("loss".to_string(), loss),
                    ]),
                })
            });
            let axes = BTreeMap::from([("seed".to_string(), toml::Value::Integer(seed as i64))]);
            hand_made.add_done_job(&spec(d, seed), &format!("d{d}"), axes, rows, STEPS);
        }
    }
    hand_made.write_plan();
    let (sweep, out) = (&hand_made.sweep, &hand_made.out);

    let summary = export(sweep, out, &ExportOptions::default()).unwrap();
    let (_, thresholds) = common::read_csv(&out.join("thresholds.csv"));
    let em = thresholds
        .iter()
        .find(|r| r["metric"] == "exact_match" && r["scale"] == "params")
        .unwrap();
    assert_eq!(
        (em["verdict"].as_str(), em["two_state"].as_str()),
        ("lottery", "true"),
        "{em:?}"
    );

    // acquisition.csv: per size, the runs that acquired and, where at least half did, the
    // Kaplan-Meier median time to acquire, which is when they did.
    let (header, acquisition) = common::read_csv(&out.join("acquisition.csv"));
    assert_eq!(header, schema::names(&schema::acquisition_columns()));
    assert_eq!(acquisition.len(), D_MODELS.len());
    for (row, (acquiring, at)) in acquisition.iter().zip(&truth) {
        assert_eq!(row["n_runs"], SEEDS.to_string(), "{row:?}");
        assert_eq!(row["n_acquired"], acquiring.to_string(), "{row:?}");
        if 2 * acquiring >= SEEDS {
            assert_eq!(row["km_median"], at.to_string(), "{row:?}");
        } else {
            assert_eq!(row["km_median"], "", "{row:?}");
        }
    }

    // The summary lists the lottery with the acquisition width and its interval.
    let line = summary
        .lottery
        .iter()
        .find(|l| l.contains("exact_match vs params"))
        .unwrap_or_else(|| panic!("no lottery line: {summary}"));
    let width: f64 = em["acq_width_decades"].parse().unwrap();
    assert!(line.contains(&format!("rises over {width:.2} [")), "{line}");
    assert!(summary.to_string().contains("  lottery: "), "{summary}");

    // The figure: PNG and SVG, three panels, the forecast from the smaller sizes.
    let stem = "plots/g01_add2r_acquisition";
    let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
    for text in [
        "add2r: acquisition (runs, P(acquire), threshold over training)",
        "final validation exact match per run",
        &format!("P(acquire): width {width:.2} ["),
        "decades — lottery",
        "threshold(t) over training steps",
        "forecast from smaller sizes",
        "share acquired (Wilson 95%)",
    ] {
        assert!(svg.contains(text), "{text:?} not in the acquisition figure");
    }

    // report.html: the row marked, the figure inlined and linked, every link resolving.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("tr.lottery td{"), "no style for lottery rows");
    assert!(
        html.contains("<tr class=\"lottery\">"),
        "lottery row unmarked"
    );
    for ext in ["png", "svg"] {
        assert!(
            html.contains(&format!("href=\"{stem}.{ext}\"")),
            "{stem}.{ext} not linked"
        );
    }
    for link in common::local_links(&html) {
        assert!(out.join(&link).is_file(), "{link}");
    }
}
