//! End-to-end: a synthetic sweep directory written by hand, exported, and every output checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elab_job::{
    EvalRow, JobSpec, Plan, PlannedJob, RunDir, Split, eval_steps, param_counts,
    train_flops_per_token,
};
use elab_report::{ExportOptions, export, plot, schema};

mod common;
use common::{local_links, read_csv};

const D_MODELS: [usize; 5] = [16, 32, 64, 128, 256];
const SEEDS: [u64; 2] = [0, 1];
const STEPS: u64 = 64;
const LOGISTIC_K: f64 = 8.0;

const BASE: &str = r#"
[task]
kind = "digits"
op = "add"
digits = 3
reversed = true
train_size = 1000
val_size = 2000
[model]
n_layer = 2
n_head = 4
[train]
steps = 64
batch_size = 100
[eval]
every = 32
"#;

fn spec(d_model: usize, seed: u64) -> JobSpec {
    let mut spec = JobSpec::from_toml(BASE).unwrap();
    spec.model.d_model = d_model;
    spec.model.d_mlp = 4 * d_model;
    spec.seed = seed;
    spec
}

fn params(spec: &JobSpec) -> u64 {
    let (vocab, _, _) = spec.task.shape();
    param_counts(&spec.model, vocab, spec.n_ctx()).total
}

/// The true threshold: halfway (in log10 params) between the third and fourth size.
fn true_x0() -> f64 {
    let lp = |d| (params(&spec(d, 0)) as f64).log10();
    (lp(D_MODELS[2]) + lp(D_MODELS[3])) / 2.0
}

/// Metrics of one eval row with exact match `em`, token accuracy em^(1/L) (so em = p^L).
fn metrics(em: f64, answer_len: usize) -> BTreeMap<String, f64> {
    let p = em.clamp(0.0, 1.0).powf(1.0 / answer_len as f64);
    metrics_of(p, em, answer_len)
}

/// Metrics of one eval row with token accuracy `p` at every answer position and exact match
/// `em`; the other smooth metrics follow p (log-probability L ln p, edit distance L (1 - p)).
fn metrics_of(p: f64, em: f64, answer_len: usize) -> BTreeMap<String, f64> {
    let l = answer_len as f64;
    let floor = p.max(1e-3);
    let positions = (0..answer_len).flat_map(|i| {
        [
            (format!("token_accuracy.pos{i}"), p),
            (format!("token_logprob.pos{i}"), floor.ln()),
        ]
    });
    let mut m = BTreeMap::from([
        ("loss".to_string(), -floor.ln()),
        ("answer_logprob".to_string(), l * floor.ln()),
        ("token_accuracy".to_string(), p),
        ("exact_match".to_string(), em),
        ("edit_distance".to_string(), l * (1.0 - p)),
        ("brier".to_string(), 2.0 * (1.0 - p).powi(2)),
    ]);
    m.extend(positions);
    m
}

struct Synthetic {
    _tmp: tempfile::TempDir,
    sweep: PathBuf,
    out: PathBuf,
    specs: Vec<JobSpec>,
}

/// 5 sizes x 2 seeds, every job done, plus whatever `extra` adds to the sweep directory. The
/// final validation exact match is a logistic in log10(params).
fn synthetic(extra: impl FnOnce(&Path, &mut Plan)) -> Synthetic {
    let x0 = true_x0();
    let specs: Vec<JobSpec> = SEEDS
        .iter()
        .flat_map(|&seed| D_MODELS.iter().map(move |&d| spec(d, seed)))
        .collect();
    synthetic_with(specs, extra, |x, seed, answer_len, progress| {
        let noise = if seed == 0 { -0.01 } else { 0.01 };
        let final_em = (1.0 / (1.0 + (-LOGISTIC_K * (x - x0)).exp()) + noise).clamp(0.0, 1.0);
        let em = final_em * progress;
        (em.powf(1.0 / answer_len as f64), em)
    })
}

/// A sweep of `specs`, every job done. `val(x, seed, L, progress)` gives the validation
/// (token accuracy, exact match) of a job with 10^x parameters and an L-token answer, at
/// `progress` = step / steps of its training.
fn synthetic_with(
    specs: Vec<JobSpec>,
    extra: impl FnOnce(&Path, &mut Plan),
    val: impl Fn(f64, u64, usize, f64) -> (f64, f64),
) -> Synthetic {
    let mut hand_made = common::HandMadeSweep::new("synthetic");
    let mut sizes: Vec<usize> = specs.iter().map(|s| s.model.d_model).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for spec in &specs {
        let seed = spec.seed;
        let i = sizes.iter().position(|&d| d == spec.model.d_model).unwrap();
        let (_, _, answer_len) = spec.task.shape();
        let x = (params(spec) as f64).log10();
        let rows = eval_steps(STEPS, spec.eval.every)
            .into_iter()
            .flat_map(|step| {
                let tokens = step * 100 * spec.n_ctx() as u64;
                let train_em = (step as f64 / 8.0).min(1.0);
                let (p, em) = val(x, seed, answer_len, step as f64 / STEPS as f64);
                [
                    (Split::Train, metrics(train_em, answer_len)),
                    (Split::Val, metrics_of(p, em, answer_len)),
                ]
                .map(|(split, metrics)| EvalRow {
                    step,
                    split,
                    tokens,
                    metrics,
                })
            });
        let axes = BTreeMap::from([
            ("seed".to_string(), toml::Value::Integer(seed as i64)),
            ("train.weight_decay".to_string(), toml::Value::Float(1.0)),
        ]);
        hand_made.add_done_job(spec, &format!("s{i}"), axes, rows, STEPS);
    }
    extra(&hand_made.sweep, &mut hand_made.plan);
    hand_made.write_plan();
    Synthetic {
        _tmp: hand_made.tmp,
        sweep: hand_made.sweep,
        out: hand_made.out,
        specs,
    }
}

/// Every documented column (axis placeholders aside) appears in SCHEMA.md's tables.
fn assert_documented(header: &[String]) {
    let doc = std::fs::read_to_string(
        // At run time, not `env!`: CI's target dir reuses binaries built at another path.
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
            .join("../../docs/csv-schema.md"),
    )
    .unwrap();
    for name in header.iter().filter(|n| !n.starts_with("axis_")) {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "column {name} is not in SCHEMA.md"
        );
    }
}

fn axis_keys() -> Vec<String> {
    vec!["seed".to_string(), "train.weight_decay".to_string()]
}

#[test]
fn exports_csv_plots_and_report() {
    let s = synthetic(|_, _| {});
    let summary = export(&s.sweep, &s.out, &ExportOptions::default()).unwrap();
    assert_eq!(summary.jobs, 10);
    assert_eq!(summary.by_status.get("done"), Some(&10));
    assert!(summary.to_string().contains("10 done"), "{summary}");

    // runs.csv: one row per job, documented header, closed-form parameter counts.
    let (header, runs) = read_csv(&s.out.join("runs.csv"));
    assert_eq!(
        header,
        schema::names(&schema::runs_columns(Some(&axis_keys())))
    );
    assert_documented(&header);
    assert_eq!(runs.len(), 10);
    for spec in &s.specs {
        let row = runs
            .iter()
            .find(|r| r["job_id"] == spec.id())
            .expect("every job has a row");
        assert_eq!(row["params_total"], params(spec).to_string());
        assert_eq!(row["task"], "add3r");
        assert_eq!(row["task_kind"], "digits");
        assert_eq!(row["task_digits"], "3");
        assert_eq!(row["task_reversed"], "true");
        assert_eq!(row["task_p"], "");
        assert_eq!(row["answer_len"], "4");
        assert_eq!(row["seed"], spec.seed.to_string());
        assert_eq!(row["axis_seed"], spec.seed.to_string());
        assert_eq!(row["axis_train.weight_decay"], "1.0");
        assert_eq!(row["status"], "done");
        let tokens = STEPS * 100 * spec.n_ctx() as u64;
        assert_eq!(row["tokens_seen"], tokens.to_string());
        let (vocab, _, _) = spec.task.shape();
        let fpt = train_flops_per_token(
            &spec.model,
            &param_counts(&spec.model, vocab, spec.n_ctx()),
            spec.n_ctx(),
        );
        let flops: f64 = row["train_flops"].parse().unwrap();
        assert!((flops - fpt * tokens as f64).abs() <= 1e-9 * flops);
        assert_eq!(row["final_train_exact_match"], "1");
        // Train exact match is 0.5 at step 4 and 1 at step 8: crossing in (4, 8].
        assert_eq!(
            (row["t_train99_after"].as_str(), row["t_train99"].as_str()),
            ("4", "8")
        );
        assert_eq!(row["backend"], "cpu");
    }

    // curves.csv: jobs x steps x splits x metrics rows.
    let (header, curves) = read_csv(&s.out.join("curves.csv"));
    assert_eq!(header, schema::names(&schema::curves_columns()));
    assert_documented(&header);
    let steps = eval_steps(STEPS, 32).len();
    // Six metrics plus accuracy and log-probability at each of the 4 answer positions.
    assert_eq!(curves.len(), 10 * steps * 2 * (6 + 2 * 4));
    assert_eq!(summary.curve_rows, curves.len());

    // thresholds.csv: exact match over params jumps between the third and fourth size (0.6
    // decades apart, rise 0.55 decades wide). Each of the 2 seeds' runs is at the floor or
    // the top: two-state, and 10 runs cannot tell a jump from a lottery, so the verdict is
    // unresolved for too few seeds, with the acquisition midpoint's interval around the gap.
    let (header, thresholds) = read_csv(&s.out.join("thresholds.csv"));
    assert_eq!(
        header,
        schema::names(&schema::thresholds_columns(Some(&[
            "train.weight_decay".to_string()
        ])))
    );
    assert_documented(&header);
    assert_eq!(thresholds.len(), 5 * 3, "5 scores x 3 scales, one group");
    let em = thresholds
        .iter()
        .find(|r| r["metric"] == "exact_match" && r["scale"] == "params")
        .unwrap();
    assert_eq!(
        (
            em["verdict"].as_str(),
            em["reason"].as_str(),
            em["two_state"].as_str()
        ),
        ("unresolved", "too_few_seeds", "true"),
        "{em:?}"
    );
    assert_eq!(em["group"], "add3r train.weight_decay=1.0");
    assert_eq!(
        (em["runs"].as_str(), em["mixed_sizes"].as_str()),
        ("10", "0")
    );
    let lp = |d| (params(&spec(d, 0)) as f64).log10();
    let gap = (lp(D_MODELS[2]), lp(D_MODELS[3]));
    let ci = (
        em["x0_ci_low"].parse::<f64>().unwrap(),
        em["x0_ci_high"].parse::<f64>().unwrap(),
    );
    assert!(ci.0 <= gap.0 && gap.1 <= ci.1, "{ci:?} around {gap:?}");
    assert!(em["note"].contains("add seeds"), "{em:?}");
    assert!(em["p_sharp"].parse::<f64>().unwrap() >= 0.05, "{em:?}");
    assert!(em["p_smooth"].parse::<f64>().unwrap() >= 0.05, "{em:?}");
    assert_eq!(
        (
            em["n_sizes"].as_str(),
            em["min_seeds"].as_str(),
            em["n_jobs"].as_str()
        ),
        ("5", "2", "10")
    );
    let x0: f64 = em["x0"].parse().unwrap();
    assert!((x0 - true_x0()).abs() < 0.1, "x0 {x0}, truth {}", true_x0());
    let (lo, hi): (f64, f64) = (
        em["x0_ci_low"].parse().unwrap(),
        em["x0_ci_high"].parse().unwrap(),
    );
    assert!(lo <= x0 && x0 <= hi, "{lo} {x0} {hi}");
    // The loss fit beside the threshold: constrained parameters, falling loss.
    let alpha: f64 = em["loss_alpha"].parse().unwrap();
    assert!((0.001..=3.0).contains(&alpha), "{em:?}");
    assert!(em["loss_E"].parse::<f64>().unwrap() >= 0.0);
    assert!(em["loss_A"].parse::<f64>().unwrap() > 0.0, "{em:?}");
    // Exact match does not rise sharply here (too few seeds to tell), so Schaeffer's test has
    // nothing to explain and leaves its columns empty.
    assert_eq!(
        (em["schaeffer"].as_str(), em["em_product_gap"].as_str()),
        ("", "")
    );
    // (schaeffer_test_gives_the_known_answer covers both of its answers, with 8 seeds.)
    let edit = thresholds
        .iter()
        .find(|r| r["metric"] == "edit_distance" && r["scale"] == "params")
        .unwrap();
    assert_eq!(edit["score"], "1 - edit_distance/answer_len");
    assert_eq!(edit["schaeffer"], "");

    // grokking.csv: every size's two seeds cross train exact match 0.99 at step 8 (0.5 at 4, 1
    // from 8 on): Kaplan-Meier median 8, all crossed.
    let (header, grok) = read_csv(&s.out.join("grokking.csv"));
    assert_eq!(
        header,
        schema::names(&schema::grokking_columns(Some(&[
            "train.weight_decay".to_string()
        ])))
    );
    assert_documented(&header);
    assert_eq!(grok.len(), 5 * 4, "5 sizes x (2 splits x 2 levels)");
    assert_eq!(summary.grokking_rows, grok.len());
    for r in grok
        .iter()
        .filter(|r| r["split"] == "train" && r["level"] == "0.99")
    {
        assert_eq!(
            (
                r["n_runs"].as_str(),
                r["n_crossed"].as_str(),
                r["km_median"].as_str(),
                r["fraction_crossed"].as_str()
            ),
            ("2", "2", "8", "1"),
            "{r:?}"
        );
        // The budget is how long the runs trained, not the last crossing.
        let last = runs.iter().find(|j| j["size"] == r["size"]).unwrap();
        assert_eq!(r["budget"], last["last_step"], "{r:?}");
        assert_ne!(r["budget"], "8");
    }
    // runs.csv carries the censoring: the smallest model's validation never reaches 0.99.
    let small = runs.iter().find(|r| r["size"] == "s0").unwrap();
    assert_eq!(small["t_val99"], "");
    assert_eq!(small["t_val99_censored_at"], small["last_step"]);

    // Figures: PNG magic, SVG text, four per group (scale, curves, map, acquisition).
    assert_eq!(summary.figures, 4);
    let plots: Vec<PathBuf> = std::fs::read_dir(s.out.join("plots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(plots.len(), 8);
    for p in &plots {
        let bytes = std::fs::read(p).unwrap();
        match p.extension().and_then(|e| e.to_str()) {
            Some("png") => assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", p.display()),
            Some("svg") => assert!(
                String::from_utf8(bytes)
                    .unwrap()
                    .trim_start()
                    .starts_with("<svg"),
                "{}",
                p.display()
            ),
            other => panic!("unexpected file {other:?}"),
        }
    }

    // report.html: inline figures, the thresholds table, and every local link resolves.
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(html.contains("synthetic"));
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("<td class=\"l\">unresolved</td>"));
    let links = local_links(&html);
    assert!(links.len() >= 4 + 8, "{links:?}");
    for link in links {
        let path = s.out.join(&link);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            len > 0,
            "report.html links {link}, which is missing or empty"
        );
    }

    // Nothing staged is left behind, and every listed file was published.
    let leftovers: Vec<_> = std::fs::read_dir(&s.out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.') && n != elab_report::publish::MARKER)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(beside(&s.out), [".synthetic.export.lock", "synthetic"]);
    for f in &summary.files {
        assert!(s.out.join(f).is_file(), "{}", f.display());
    }
}

/// The final validation verdicts (metric -> verdict over params) and Schaeffer's verdict of a
/// one-group sweep of 9 sizes x 8 seeds (enough to tell a jump from a lottery) of 9-digit multiplication (an 18-token answer), whose
/// final token accuracy is `p(t)` with t in [0, 1] spanning the sizes' log10(params), and
/// whose exact match is p^18, as if tokens were independent.
fn mirage_case(p: impl Fn(f64) -> f64) -> (BTreeMap<String, String>, String) {
    const BASE_MUL: &str = "[task]\nkind = \"digits\"\nop = \"mul\"\ndigits = 9\ntrain_size = 1000\nval_size = 2000\n[model]\nn_layer = 2\nn_head = 4\n[train]\nsteps = 64\nbatch_size = 100\n[eval]\nevery = 32\n";
    let specs: Vec<JobSpec> = (0..8u64)
        .flat_map(|seed| {
            [8, 12, 16, 24, 32, 48, 64, 96, 128].map(|d| {
                let mut spec = JobSpec::from_toml(BASE_MUL).unwrap();
                spec.model.d_model = d;
                spec.model.d_mlp = 4 * d;
                spec.seed = seed;
                spec
            })
        })
        .collect();
    let xs: Vec<f64> = specs.iter().map(|s| (params(s) as f64).log10()).collect();
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let s = synthetic_with(
        specs,
        |_, _| {},
        |x, seed, answer_len, progress| {
            assert_eq!(answer_len, 18);
            // A little seed noise, so that the seeds are not copies.
            let noise = 0.0005 * (seed as f64 - 3.5);
            let p = ((p((x - lo) / (hi - lo)) + noise).clamp(0.0, 1.0)) * progress;
            (p, p.powi(18))
        },
    );
    export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    let (_, thresholds) = read_csv(&s.out.join("thresholds.csv"));
    let params_rows: Vec<_> = thresholds
        .iter()
        .filter(|r| r["scale"] == "params")
        .collect();
    let verdicts = params_rows
        .iter()
        .map(|r| (r["metric"].clone(), r["verdict"].clone()))
        .collect();
    let em = params_rows
        .iter()
        .find(|r| r["metric"] == "exact_match")
        .unwrap();
    let sharp = em["verdict"] == "emergent"
        || (em["verdict"] == "unresolved" && em["reason"] != "too_few_seeds");
    assert!(sharp, "exact match should rise sharply: {em:?}");
    (verdicts, em["schaeffer"].clone())
}

#[test]
fn schaeffer_test_gives_the_known_answer() {
    // Token accuracy rises smoothly (a logistic from 0.5 to 1, 1.05 decades wide over the
    // ladder's ~2.1: smooth by the criterion); p^18 is about a third steeper at its steepest
    // (0.35 k against a unit rise's k / 4): a metric-made jump.
    let (verdicts, mirage) = mirage_case(|t| 0.5 + 0.5 / (1.0 + (-8.8 * (t - 0.35)).exp()));
    assert_eq!(verdicts["token_accuracy"], "smooth", "{verdicts:?}");
    assert_ne!(verdicts["answer_logprob"], "emergent", "{verdicts:?}");
    assert_ne!(verdicts["edit_distance"], "emergent", "{verdicts:?}");
    assert_eq!(mirage, "metric-induced", "{verdicts:?}");

    // Token accuracy itself jumps (a logistic in log params, 0.3 to 0.99 within half a
    // decade): exact match jumps with it, and that jump is not the metric's doing.
    let (verdicts, mirage) = mirage_case(|t| 0.3 + 0.69 / (1.0 + (-20.0 * (t - 0.5)).exp()));
    // (Sharp, though placed only to within what the ladder allows: emergent or unresolved.)
    assert_ne!(verdicts["token_accuracy"], "smooth", "{verdicts:?}");
    assert_eq!(mirage, "genuine", "{verdicts:?}");
}

#[test]
fn orphans_and_unfinished_jobs_are_reported_but_not_fitted() {
    let mut orphan_id = String::new();
    let mut new_id = String::new();
    let s = synthetic(|sweep, plan| {
        // An orphan: a job directory from an older config, with records but not in the plan.
        let orphan = spec(24, 7);
        orphan_id = orphan.id();
        let run = RunDir::new(sweep.join("jobs").join(&orphan_id));
        std::fs::create_dir_all(run.path()).unwrap();
        std::fs::write(run.spec(), orphan.to_toml()).unwrap();
        run.append_eval(&EvalRow {
            step: 0,
            split: Split::Val,
            tokens: 0,
            metrics: metrics(0.0, 4),
        })
        .unwrap();
        // A planned job that never ran.
        let fresh = spec(512, 0);
        new_id = fresh.id();
        let run = RunDir::new(sweep.join("jobs").join(&new_id));
        std::fs::create_dir_all(run.path()).unwrap();
        std::fs::write(run.spec(), fresh.to_toml()).unwrap();
        let axes = BTreeMap::from([
            ("seed".to_string(), toml::Value::Integer(0)),
            ("train.weight_decay".to_string(), toml::Value::Float(1.0)),
        ]);
        plan.jobs.push(PlannedJob {
            id: new_id.clone(),
            size: "s5".into(),
            axes,
            spec: None,
        });
        // An orphan whose spec no longer parses is skipped, not fatal.
        let stale = sweep.join("jobs/0123456789ab");
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("spec.toml"), "[task]\nkind = \"retired\"\n").unwrap();
    });
    // Exporting twice over the same directory replaces the files.
    export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    let summary = export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    assert_eq!(summary.jobs, 12);
    assert_eq!(summary.skipped.len(), 1, "{summary}");
    assert!(
        summary.to_string().contains("skipped orphan 0123456789ab"),
        "{summary}"
    );
    assert_eq!(summary.figures, 0);
    assert!(!s.out.join("plots").exists());

    let (_, runs) = read_csv(&s.out.join("runs.csv"));
    assert_eq!(runs.len(), 12);
    let orphan = runs.iter().find(|r| r["job_id"] == orphan_id).unwrap();
    assert_eq!(
        (
            orphan["status"].as_str(),
            orphan["size"].as_str(),
            orphan["axis_seed"].as_str()
        ),
        ("orphaned", "", "")
    );
    assert_eq!(orphan["seed"], "7");
    assert_eq!(orphan["final_train_loss"], "");
    assert_eq!(orphan["t_val99"], "", "never crossed: censored, not zero");
    let fresh = runs.iter().find(|r| r["job_id"] == new_id).unwrap();
    assert_eq!(
        (
            fresh["status"].as_str(),
            fresh["tokens_seen"].as_str(),
            fresh["wall_seconds"].as_str()
        ),
        ("new", "0", "")
    );

    let (_, thresholds) = read_csv(&s.out.join("thresholds.csv"));
    let em = thresholds
        .iter()
        .find(|r| r["metric"] == "exact_match" && r["scale"] == "params")
        .unwrap();
    assert_eq!(
        (em["n_jobs"].as_str(), em["n_sizes"].as_str()),
        ("10", "5"),
        "only done jobs are fitted"
    );

    // Figures only: plot() writes plots and the page, no CSV is required by the page.
    let plots_out = s.out.join("figs");
    let summary = plot(&s.sweep, &plots_out).unwrap();
    assert_eq!(summary.figures, 4);
    assert!(!plots_out.join("runs.csv").exists());
    let html = std::fs::read_to_string(plots_out.join("report.html")).unwrap();
    for link in local_links(&html) {
        assert!(plots_out.join(&link).is_file(), "{link}");
    }
}

#[test]
fn a_missing_sweep_is_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let err = export(&tmp.path().join("nope"), &out, &ExportOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("plan.json"), "{err:#}");
    assert!(!out.exists());
}

#[test]
fn a_swept_data_axis_gets_threshold_rows_over_it() {
    // In the plan's eyes one model size ("s0") and five training-set sizes, doubling, tagged
    // onto the synthetic jobs (whose exact match jumps between the third and fourth job).
    let s = synthetic(|_, plan| {
        for job in &mut plan.jobs {
            let i: u32 = job.size[1..].parse().unwrap();
            job.axes.insert(
                "task.train_size".to_string(),
                toml::Value::Integer(1000 * 2i64.pow(i)),
            );
            job.size = "s0".to_string();
        }
    });
    export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    let (header, thresholds) = read_csv(&s.out.join("thresholds.csv"));
    assert!(header.contains(&"axis_task.train_size".to_string()));
    let over: Vec<_> = thresholds
        .iter()
        .filter(|r| r["scale"] == "task.train_size")
        .collect();
    assert_eq!(over.len(), 5, "one group over the axis, 5 scores");
    let em = over.iter().find(|r| r["metric"] == "exact_match").unwrap();
    assert_eq!(
        em["group"],
        "add3r size=s0 train.weight_decay=1.0 over task.train_size"
    );
    assert_eq!(em["axis_task.train_size"], "");
    assert_eq!((em["n_sizes"].as_str(), em["n_jobs"].as_str()), ("5", "10"));
    // The rise is 0.27 decades of training-set size wide, the values 0.3 apart: the jump lies
    // between 4000 and 8000 examples, every run at the floor or the top, and 2 seeds cannot
    // tell it from a lottery: unresolved for too few seeds, the interval around that gap.
    assert_eq!(
        (em["verdict"].as_str(), em["reason"].as_str()),
        ("unresolved", "too_few_seeds"),
        "{em:?}"
    );
    let gap = (4000f64.log10(), 8000f64.log10());
    let ci = (
        em["x0_ci_low"].parse::<f64>().unwrap(),
        em["x0_ci_high"].parse::<f64>().unwrap(),
    );
    assert!(ci.0 <= gap.0 && gap.1 <= ci.1, "{ci:?} around {gap:?}");
    // The per-size groups over parameters each have one size: no verdict there.
    let per_size: Vec<_> = thresholds
        .iter()
        .filter(|r| r["scale"] == "params")
        .collect();
    assert_eq!(per_size.len(), 5 * 5);
    assert!(per_size.iter().all(|r| r["verdict"] == "not enough sizes"));
}

/// Every path under `dir` with its bytes, relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

/// The names beside the output folder (its leftovers, if any, and the lock).
fn beside(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_re_export_replaces_the_whole_folder() {
    let s = synthetic(|_, _| {});
    export(&s.sweep, &s.out, &ExportOptions::default()).unwrap();
    assert!(s.out.join("plots").is_dir());
    // A file an earlier export (or version) made and the next one does not.
    std::fs::write(s.out.join("stale.csv"), "old\n").unwrap();
    let summary = export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    assert!(!s.out.join("stale.csv").exists(), "a stale file stays");
    assert!(
        !s.out.join("plots").exists(),
        "figures of the earlier export stay"
    );
    let mut written: Vec<PathBuf> = summary.files.clone();
    written.sort();
    assert!(written.contains(&PathBuf::from(elab_report::publish::MARKER)));
    let found: Vec<PathBuf> = tree(&s.out).into_keys().collect();
    assert_eq!(found, written, "exactly what this export wrote");
    assert_eq!(beside(&s.out), [".synthetic.export.lock", "synthetic"]);
}

#[test]
fn an_unreadable_summary_fails_naming_it_and_keeps_the_last_export() {
    let s = synthetic(|_, _| {});
    export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap();
    let before = tree(&s.out);
    let summary = s
        .sweep
        .join("jobs")
        .join(s.specs[3].id())
        .join("summary.json");
    std::fs::write(&summary, "{\"status\": \"do").unwrap();
    let err = export(&s.sweep, &s.out, &ExportOptions::csv_only()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&summary.display().to_string()), "{msg}");
    assert!(msg.contains("not a run summary"), "{msg}");
    assert_eq!(tree(&s.out), before, "the last export is kept as it was");
    assert_eq!(beside(&s.out), [".synthetic.export.lock", "synthetic"]);
    // Into a new folder: nothing at all.
    let fresh = s.out.with_file_name("fresh");
    assert!(export(&s.sweep, &fresh, &ExportOptions::csv_only()).is_err());
    assert!(!fresh.exists());
    assert!(!beside(&s.out).iter().any(|n| n.contains("fresh")));
}

#[test]
fn a_second_export_to_one_folder_waits_for_the_first() {
    let s = synthetic(|_, _| {});
    std::fs::create_dir_all(s.out.parent().unwrap()).unwrap();
    // Held as a running export holds it.
    let lock = elab_job::fsio::try_lock(&s.out.with_file_name(".synthetic.export.lock"))
        .unwrap()
        .unwrap();
    let (sweep, out) = (s.sweep.clone(), s.out.clone());
    let second = std::thread::spawn(move || export(&sweep, &out, &ExportOptions::csv_only()));
    // Without the lock this export is done in well under this (its records are 10 small jobs).
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!second.is_finished(), "the second export did not wait");
    assert!(!s.out.exists());
    drop(lock);
    let summary = second.join().unwrap().unwrap();
    assert_eq!(summary.jobs, 10);
    assert!(s.out.join("report.html").is_file());
}
