//! End-to-end: hand-written modular sweeps over size x weight decay (and a third axis), whose
//! runs grok at known steps or never, exported; phase.csv must give each cell its mean final
//! accuracy, Kaplan-Meier time to grok and censoring, and the figures must be drawn and shown.

use std::collections::BTreeMap;
use std::path::PathBuf;

use elab_job::{EvalRow, JobSpec, Split};
use elab_report::{ExportOptions, export};

mod common;
use common::{local_links, read_csv};

const STEPS: u64 = 1600;
const EVERY: u64 = 200;
/// Validation exact match before grokking (and for good, in a run that never groks).
const BEFORE: f64 = 0.3;

const BASE: &str = r#"
[task]
kind = "modular"
p = 7
op = "add"
train_fraction = 0.5
[model]
n_layer = 1
n_head = 4
[train]
steps = 1600
batch_size = 0
[eval]
every = 200
max_train_examples = 0
"#;

/// One job: its place on the axes and the step at which it groks (`None`: never).
struct Job {
    size: usize,
    weight_decay: f64,
    /// Tagged onto the plan as a third axis when set.
    train_fraction: Option<f64>,
    seed: u64,
    grok_at: Option<u64>,
}

const D_MODELS: [usize; 3] = [16, 32, 64];
/// Size names in parameter order, not in alphabetical order (the axis must follow parameters).
const SIZE_NAMES: [&str; 3] = ["small", "medium", "large"];

fn spec(job: &Job) -> JobSpec {
    let mut spec = JobSpec::from_toml(BASE).unwrap();
    spec.model.d_model = D_MODELS[job.size];
    spec.model.d_mlp = 4 * D_MODELS[job.size];
    spec.train.weight_decay = job.weight_decay;
    if let (Some(f), elab_job::TaskSpec::Modular(task)) = (job.train_fraction, &mut spec.task) {
        task.train_fraction = f;
    }
    spec.seed = job.seed;
    spec
}

/// Validation exact match at `step`: BEFORE until the grokking step, 1 from there on.
fn val_accuracy(grok_at: Option<u64>, step: u64) -> f64 {
    match grok_at {
        Some(at) if step >= at => 1.0,
        _ => BEFORE,
    }
}

fn metrics(em: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("loss".to_string(), 1.0 - em),
        ("exact_match".to_string(), em),
        ("token_accuracy".to_string(), em),
    ])
}

struct Sweep {
    _tmp: tempfile::TempDir,
    sweep: PathBuf,
    out: PathBuf,
}

/// Writes every job (train memorised from step 200, every job done) and the plan.
fn write_sweep(jobs: &[Job]) -> Sweep {
    write_sweep_with(jobs, |_, _| {})
}

/// As [`write_sweep`], with `more_axes` adding swept values to each job's plan entry.
fn write_sweep_with(
    jobs: &[Job],
    more_axes: impl Fn(&Job, &mut BTreeMap<String, toml::Value>),
) -> Sweep {
    let mut hand_made = common::HandMadeSweep::new("phase");
    for job in jobs {
        let rows = (0..=STEPS).step_by(EVERY as usize).flat_map(|step| {
            let train = if step >= 200 { 1.0 } else { 0.1 };
            [
                (Split::Train, train),
                (Split::Val, val_accuracy(job.grok_at, step)),
            ]
            .map(|(split, em)| EvalRow {
                step,
                split,
                tokens: step * 100,
                metrics: metrics(em),
            })
        });
        let mut axes = BTreeMap::from([
            ("seed".to_string(), toml::Value::Integer(job.seed as i64)),
            (
                "train.weight_decay".to_string(),
                toml::Value::Float(job.weight_decay),
            ),
        ]);
        if let Some(f) = job.train_fraction {
            axes.insert("task.train_fraction".to_string(), toml::Value::Float(f));
        }
        more_axes(job, &mut axes);
        let size = SIZE_NAMES[job.size];
        hand_made.add_done_job(&spec(job), size, axes, rows, STEPS);
    }
    hand_made.write_plan();
    Sweep {
        _tmp: hand_made.tmp,
        sweep: hand_made.sweep,
        out: hand_made.out,
    }
}

/// When each (size, weight decay, seed) groks. Weight decay 0 never does; 2 does at a step
/// that falls with size; 10 does sooner, but at the smallest size only seed 0 does (the cell
/// is censored) and in the middle size seeds 0 and 1 (the cell has a median, 2 of 3 grokked).
/// 10 sorts before 2 as text: the axis must sort numerically.
fn grok_step(size: usize, weight_decay: f64, seed: u64) -> Option<u64> {
    match (weight_decay as u32, size, seed) {
        (0, _, _) => None,
        (2, s, _) => Some(1200 - 400 * s as u64),
        (10, 0, 0) => Some(600),
        (10, 0, _) => None,
        (10, 1, 0) => Some(200),
        (10, 1, 1) => Some(400),
        (10, 1, _) => None,
        (10, 2, _) => Some(200),
        _ => unreachable!(),
    }
}

fn two_axis_jobs() -> Vec<Job> {
    let mut jobs = Vec::new();
    for weight_decay in [10.0, 0.0, 2.0] {
        for size in [2, 0, 1] {
            for seed in 0..3 {
                jobs.push(Job {
                    size,
                    weight_decay,
                    train_fraction: None,
                    seed,
                    grok_at: grok_step(size, weight_decay, seed),
                });
            }
        }
    }
    jobs
}

#[test]
fn size_by_weight_decay_cells_have_the_known_accuracy_and_time_to_grok() {
    let s = write_sweep(&two_axis_jobs());
    let summary = export(&s.sweep, &s.out, &ExportOptions::default()).unwrap();
    assert_eq!(
        (summary.phase_diagrams, summary.phase_rows),
        (1, 9),
        "{summary}"
    );
    assert!(summary.to_string().contains("phase.csv"), "{summary}");

    let (header, rows) = read_csv(&s.out.join("phase.csv"));
    let doc = std::fs::read_to_string(s.out.join("SCHEMA.md")).unwrap();
    for name in &header {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "{name} undocumented"
        );
    }
    assert_eq!(rows.len(), 9);
    let cell = |size: &str, wd: &str| {
        rows.iter()
            .find(|r| r["x"] == size && r["y"] == wd)
            .unwrap_or_else(|| panic!("no cell {size} {wd}: {rows:?}"))
    };
    for r in &rows {
        assert_eq!(
            (r["x_axis"].as_str(), r["y_axis"].as_str()),
            ("size", "train.weight_decay")
        );
        assert_eq!(r["group"], "");
        assert_eq!((r["n_runs"].as_str(), r["n_done"].as_str()), ("3", "3"));
        assert_eq!(r["budget"], "1600");
    }
    // Axes in order: sizes by parameters, weight decay numerically (the plan lists neither so).
    for (i, size) in SIZE_NAMES.iter().enumerate() {
        assert_eq!(cell(size, "0.0")["x_index"], i.to_string());
    }
    for (i, wd) in ["0.0", "2.0", "10.0"].iter().enumerate() {
        assert_eq!(cell("small", wd)["y_index"], i.to_string());
    }

    // Weight decay 0: nothing groks; censored, accuracy stays where it was.
    for size in SIZE_NAMES {
        let c = cell(size, "0.0");
        assert_eq!(c["final_val_exact_match"].parse::<f64>().unwrap(), BEFORE);
        assert_eq!(
            (
                c["n_grokked"].as_str(),
                c["censored"].as_str(),
                c["t_grok"].as_str()
            ),
            ("0", "true", "")
        );
        assert_eq!(
            (c["fraction_grokked"].as_str(), c["log10_t_grok"].as_str()),
            ("0", "")
        );
    }
    // Weight decay 2: every seed at 1200, 800, 400 by size.
    for (size, step) in [("small", 1200), ("medium", 800), ("large", 400)] {
        let c = cell(size, "2.0");
        assert_eq!(c["final_val_exact_match"], "1");
        assert_eq!(
            (c["n_grokked"].as_str(), c["censored"].as_str()),
            ("3", "false")
        );
        assert_eq!(c["t_grok"], step.to_string());
        let log: f64 = c["log10_t_grok"].parse().unwrap();
        assert!((log - (step as f64).log10()).abs() < 1e-12, "{log}");
    }
    // Weight decay 10, smallest size: one seed of three: censored, a third grokked.
    let c = cell("small", "10.0");
    let mean: f64 = c["final_val_exact_match"].parse().unwrap();
    assert!((mean - (1.0 + 2.0 * BEFORE) / 3.0).abs() < 1e-12, "{mean}");
    assert_eq!(
        (c["n_grokked"].as_str(), c["censored"].as_str()),
        ("1", "true")
    );
    let fraction: f64 = c["fraction_grokked"].parse().unwrap();
    assert!((fraction - 1.0 / 3.0).abs() < 1e-12);
    // Middle size: two of three, the median is the second crossing (400), not their mean (300).
    let c = cell("medium", "10.0");
    assert_eq!(
        (c["n_grokked"].as_str(), c["censored"].as_str()),
        ("2", "false")
    );
    assert_eq!(c["t_grok"], "400");
    assert_eq!(cell("large", "10.0")["t_grok"], "200");

    // The figure: a PNG of some substance and its SVG, shown in report.html with phase.csv.
    let stem = "phase01_size_x_train.weight_decay";
    let png = s.out.join(format!("plots/{stem}.png"));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    let svg = std::fs::read_to_string(s.out.join(format!("plots/{stem}.svg"))).unwrap();
    // Censored cells are labelled with the budget; partially grokked ones with k/n.
    assert!(
        svg.contains("&gt; 1600") || svg.contains("> 1600"),
        "no censored label"
    );
    assert!(
        svg.contains("(1/3)") && svg.contains("(2/3)"),
        "no partial marks"
    );
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Phase diagrams</h2>"));
    assert!(html.contains(&format!("plots/{stem}.png")));
    assert!(html.contains("href=\"phase.csv\""));
    for link in local_links(&html) {
        assert!(
            s.out.join(&link).is_file(),
            "{link} is not a file of the export"
        );
    }
    assert!(
        summary
            .files
            .iter()
            .any(|f| f.ends_with(format!("{stem}.png")))
    );
}

#[test]
fn three_axes_give_a_diagram_per_pair_and_value_of_the_third() {
    let mut jobs = Vec::new();
    for size in [0, 1] {
        for weight_decay in [0.0, 1.0] {
            for train_fraction in [0.3, 0.5] {
                jobs.push(Job {
                    size,
                    weight_decay,
                    train_fraction: Some(train_fraction),
                    seed: 0,
                    grok_at: (weight_decay > 0.0 && train_fraction > 0.4).then_some(600),
                });
            }
        }
    }
    let s = write_sweep(&jobs);
    let summary = export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    // Three pairs, each at two values of the third axis, four cells each.
    assert_eq!(
        (summary.phase_diagrams, summary.phase_rows),
        (6, 24),
        "{summary}"
    );
    let (_, rows) = read_csv(&s.out.join("phase.csv"));
    let mut diagrams: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r["x_axis"].clone(), r["y_axis"].clone(), r["group"].clone()))
        .collect();
    diagrams.dedup();
    assert_eq!(
        diagrams,
        [
            ("size", "task.train_fraction", "train.weight_decay=0.0"),
            ("size", "task.train_fraction", "train.weight_decay=1.0"),
            ("size", "train.weight_decay", "task.train_fraction=0.3"),
            ("size", "train.weight_decay", "task.train_fraction=0.5"),
            ("task.train_fraction", "train.weight_decay", "size=small"),
            ("task.train_fraction", "train.weight_decay", "size=medium"),
        ]
        .map(|(x, y, g)| (x.to_string(), y.to_string(), g.to_string()))
    );
    let grokked: Vec<_> = rows.iter().filter(|r| r["censored"] == "false").collect();
    // Only weight decay 1 with half the data groks: one cell per diagram.
    assert_eq!(grokked.len(), 6);
    assert!(grokked.iter().all(|r| r["t_grok"] == "600"));
    // Without plots, the section still points at the data.
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(html.contains("<h2>Phase diagrams</h2>") && html.contains("6 diagram(s), not drawn"));
}

#[test]
fn at_most_twelve_diagrams_are_drawn_and_all_are_in_phase_csv() {
    // Size, weight decay, train fraction and lr at two values each: 6 pairs x 4 groups = 24.
    let mut jobs = Vec::new();
    for size in [0, 1] {
        for weight_decay in [0.0, 1.0] {
            for train_fraction in [0.3, 0.5] {
                for seed in [0, 1] {
                    jobs.push(Job {
                        size,
                        weight_decay,
                        train_fraction: Some(train_fraction),
                        seed,
                        grok_at: (weight_decay > 0.0).then_some(400),
                    });
                }
            }
        }
    }
    let s = write_sweep_with(&jobs, |job, axes| {
        // Seed as a fourth axis in the plan's eyes (renamed, so it is not the repeat axis).
        axes.insert(
            "train.lr".to_string(),
            toml::Value::Float(job.seed as f64 + 1.0),
        );
    });
    let summary = export(&s.sweep, &s.out, &ExportOptions::default()).unwrap();
    assert_eq!(
        (summary.phase_diagrams, summary.phase_rows),
        (24, 96),
        "{summary}"
    );
    let drawn: Vec<_> = std::fs::read_dir(s.out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("phase") && n.ends_with(".png"))
        .collect();
    assert_eq!(drawn.len(), 12, "{drawn:?}");
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(html.contains("12 of 24 diagrams are drawn"));
    // Every pair is drawn (once or twice), rather than the first three pairs four times.
    let keys = [
        "size",
        "task.train_fraction",
        "train.lr",
        "train.weight_decay",
    ];
    for (i, x) in keys.iter().enumerate() {
        for y in &keys[i + 1..] {
            let title = format!("phase diagram {x} x {y} at ");
            let n = html.matches(&title).count();
            assert!(n == 2, "{title}: {n} figures");
        }
    }
}

#[test]
fn one_varying_axis_gives_no_phase_diagram() {
    let jobs: Vec<Job> = (0..3)
        .flat_map(|size| {
            (0..2).map(move |seed| Job {
                size,
                weight_decay: 1.0,
                train_fraction: None,
                seed,
                grok_at: Some(400),
            })
        })
        .collect();
    let s = write_sweep(&jobs);
    let summary = export(&s.sweep, &s.out, &ExportOptions::default()).unwrap();
    assert_eq!((summary.phase_diagrams, summary.phase_rows), (0, 0));
    assert!(!s.out.join("phase.csv").exists());
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(!html.contains("Phase diagrams"));
    assert!(!std::fs::read_dir(s.out.join("plots")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("phase")
    }));
}
