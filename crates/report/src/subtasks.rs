//! The task-specific part of the report: for multitask sparse parity, the per-subtask
//! thresholds and the mean loss's power law (`elab_results::subtasks`) as `subtasks.csv` and a
//! section of report.html; for induction, the in-context-learning score and repeated-segment
//! accuracy of every run, with the step at which the repeat is first mostly right (a section
//! only, the curves being in curves.csv).

use std::fmt::Write as _;

use elab_job::Split;
use elab_results::load::Group;
use elab_results::subtasks::SubtaskGroup;
use elab_results::thresholds::fitted_jobs;
use elab_tasks::TaskSpec;

use crate::html::escape;

/// Metrics particular to a task: extra keys of the eval rows (see `elab_train::task_metrics`).
const TASK_METRICS: [(&str, &str, &str); 6] = [
    (
        "subtask_accuracy.<i>",
        "fraction",
        "sparse parity: fraction of subtask i's examples answered right (i = 0 is the most frequent); digit addition: of the examples with i carries; NaN when the scored slice has none",
    ),
    (
        "subtask_loss.<i>",
        "nats/token",
        "sparse parity: mean cross-entropy of subtask i's answers; digit addition: of the answers of examples with i carries",
    ),
    (
        "icl_score",
        "nats",
        "induction: loss on the last answer token minus loss on the second (Olsson et al. 2022); below 0 once the model uses its context",
    ),
    (
        "repeat_accuracy",
        "fraction",
        "induction: teacher-forced accuracy on the repeated segment's tokens after its first (the predictable ones)",
    ),
    (
        "repeat_loss",
        "nats/token",
        "induction: mean cross-entropy on the same tokens",
    ),
    (
        "random_loss",
        "nats/token",
        "induction: mean cross-entropy on the unpredictable tokens (floor ln(vocab))",
    ),
];

/// The columns of `subtasks.csv`: name, unit, meaning.
const COLUMNS: [(&str, &str, &str); 14] = [
    (
        "group",
        "text",
        "comparison group label (as in thresholds.csv)",
    ),
    ("subtask", "index", "0 = the most frequent"),
    ("frequency", "fraction", "the subtask's Zipf probability"),
    (
        "verdict",
        "text",
        "`elab_analysis::Verdict` of the subtask's final validation accuracy over params_total",
    ),
    (
        "reason",
        "text",
        "unresolved only: why (between_sizes, top_edge, bottom_edge, ladder_too_short, too_few_seeds), as in thresholds.csv",
    ),
    ("threshold_params", "params", "10^x0"),
    ("x0", "log10 params", "midpoint of the logistic fit"),
    (
        "x0_ci_low",
        "log10 params",
        "2.5% bootstrap quantile of x0 (seeds resampled)",
    ),
    (
        "x0_ci_high",
        "log10 params",
        "97.5% bootstrap quantile of x0",
    ),
    (
        "width_decades",
        "decades",
        "10%-90% rise width of the logistic",
    ),
    (
        "accuracy_smallest",
        "fraction",
        "mean over seeds at the smallest size",
    ),
    (
        "accuracy_largest",
        "fraction",
        "mean over seeds at the largest size",
    ),
    (
        "mean_loss_exponent",
        "exponent",
        "b in loss = c * params_total^-b, least squares on the per-size mean validation loss in log-log (same on every row of the group)",
    ),
    ("mean_loss_r2_log", "R^2", "of that line in log-log"),
];

/// The schema's section on task-specific metrics and `subtasks.csv` (appended to SCHEMA.md).
pub fn schema_markdown() -> String {
    let mut out = String::from(
        "\n## Task-specific metrics\n\nExtra metric keys in curves.csv (and the eval rows) for some tasks.\n\n\
         | metric | unit | meaning |\n|---|---|---|\n",
    );
    for (m, unit, meaning) in TASK_METRICS {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning} |");
    }
    out.push_str(
        "\n## subtasks.csv\n\nOnly for sweeps with a sparse-parity group: one row per (group, subtask), each subtask's\n\
         final validation accuracy fitted over params_total on its own by\n\
         `elab_analysis::subtask_thresholds` (default criteria, 1000 bootstrap resamples).\n\n\
         | column | unit | meaning |\n|---|---|---|\n",
    );
    for (c, unit, meaning) in COLUMNS {
        let _ = writeln!(out, "| `{c}` | {unit} | {meaning} |");
    }
    out
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// `subtasks.csv`: one row per (sparse-parity group, subtask). `None` when there is none.
pub fn subtasks_csv(groups: &[Group<'_>], analysed: &[SubtaskGroup]) -> Option<(String, usize)> {
    if analysed.is_empty() {
        return None;
    }
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut csv = names.join(",") + "\n";
    let mut n = 0;
    for g in analysed {
        for (i, r) in g.thresholds.iter().enumerate() {
            let acc = &g.accuracy_by_size[i];
            let _ = writeln!(
                csv,
                "{},{i},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&groups[g.group].label),
                g.frequencies[i],
                r.verdict,
                r.reason.map_or("", |u| u.tag()),
                num(r.threshold),
                num(r.x0),
                num(r.x0_ci_low),
                num(r.x0_ci_high),
                num(r.width_decades),
                num(acc.first().map(|p| p.1)),
                num(acc.last().map(|p| p.1)),
                num(g.loss_fit.as_ref().map(|f| f.exponent)),
                num(g.loss_fit.as_ref().map(|f| f.r2_log)),
            );
            n += 1;
        }
    }
    Some((csv, n))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report section (HTML), empty when the sweep has neither task.
pub fn section(groups: &[Group<'_>], analysed: &[SubtaskGroup]) -> String {
    let mut h = String::new();
    for g in analysed {
        let _ = writeln!(
            h,
            "<h2>Subtasks: {}</h2>\n<p>Each subtask's final validation accuracy against \
             parameters, fitted on its own (the quantization model predicts thresholds rising as \
             the frequency falls). Placed thresholds (emergent, or a jump between two adjacent \
             sizes) in frequency order: {} pairs, out of \
             order: {}.</p>",
            escape(&groups[g.group].label),
            g.in_order.0,
            g.in_order.1
        );
        h.push_str(
            "<table><tr><th>subtask</th><th>frequency</th><th class=\"l\">verdict</th>\
             <th>threshold (params)</th><th>95% interval</th><th>10-90% width (decades)</th></tr>\n",
        );
        for (i, r) in g.thresholds.iter().enumerate() {
            // A logistic's midpoint is a threshold only where the verdict says the rise is sharp
            // and inside the sampled sizes (subtasks.csv keeps every fit).
            let emergent = r.verdict == elab_analysis::Verdict::Emergent;
            let ci = match (r.x0_ci_low, r.x0_ci_high) {
                _ if !emergent => "–".into(),
                (Some(lo), Some(hi)) => {
                    format!("{:.3e} – {:.3e}", 10f64.powf(lo), 10f64.powf(hi))
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                h,
                "<tr><td>{i}</td><td>{:.3}</td><td class=\"l\">{}</td><td>{}</td><td>{ci}</td><td>{}</td></tr>",
                g.frequencies[i],
                r.verdict,
                r.threshold
                    .filter(|_| emergent)
                    .map_or("–".into(), |t| format!("{t:.3e}")),
                r.width_decades
                    .filter(|_| emergent)
                    .map_or("–".into(), |w| format!("{w:.2}")),
            );
        }
        h.push_str("</table>\n<table><tr><th>params</th><th>seeds</th>");
        for i in 0..g.thresholds.len() {
            let _ = write!(h, "<th>accuracy {i}</th>");
        }
        h.push_str("<th>mean val loss</th></tr>\n");
        for (row, &(params, loss, seeds)) in g.loss_by_size.iter().enumerate() {
            let _ = write!(h, "<tr><td>{params:.0}</td><td>{seeds}</td>");
            for acc in &g.accuracy_by_size {
                let v = acc.get(row).filter(|p| p.0 == params).map(|p| p.1);
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    v.map_or("–".into(), |v| format!("{v:.3}"))
                );
            }
            let _ = writeln!(h, "<td>{loss:.4}</td></tr>");
        }
        h.push_str("</table>\n");
        let _ = writeln!(
            h,
            "<p>Mean validation loss (the Zipf mixture): {}</p>",
            match &g.loss_fit {
                Some(f) => format!(
                    "{:.3} &times; N<sup>&minus;{:.3}</sup> over {} sizes, R<sup>2</sup> = {:.3} in log-log",
                    f.coefficient, f.exponent, f.n_sizes, f.r2_log
                ),
                None => "no power-law fit (fewer than 2 sizes or a zero loss)".into(),
            }
        );
    }
    for group in groups {
        if !matches!(
            group.jobs.first().map(|j| &j.spec.task),
            Some(TaskSpec::Induction(_))
        ) {
            continue;
        }
        let _ = writeln!(
            h,
            "<h2>In-context learning: {}</h2>\n<p>icl_score: validation loss on the last token \
             minus the loss on the second (Olsson et al. 2022; below 0 once the model uses its \
             context). repeat_accuracy: teacher-forced accuracy on the predictable tokens of the \
             repeated segment. Phase change: the first evaluation step with repeat_accuracy \
             &ge; 0.5.</p>",
            escape(&group.label)
        );
        h.push_str(
            "<table><tr><th class=\"l\">size</th><th>layers</th><th>seed</th><th>final icl_score</th>\
             <th>final repeat_accuracy</th><th>phase change (step)</th></tr>\n",
        );
        for j in fitted_jobs(group) {
            let phase = j
                .curve(Split::Val, "repeat_accuracy")
                .into_iter()
                .find(|&(_, v)| v >= 0.5)
                .map_or("–".into(), |(s, _)| s.to_string());
            let _ = writeln!(
                h,
                "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{phase}</td></tr>",
                escape(&j.size),
                j.spec.model.n_layer,
                j.spec.seed,
                j.final_value(Split::Val, "icl_score")
                    .map_or("–".into(), |v| format!("{v:.3}")),
                j.final_value(Split::Val, "repeat_accuracy")
                    .map_or("–".into(), |v| format!("{v:.3}")),
            );
        }
        h.push_str("</table>\n");
    }
    h
}

/// `page` with `section` inserted before `</body>` (at the end if there is none).
pub fn insert_before_body_end(mut page: String, section: &str) -> String {
    match page.rfind("</body>") {
        Some(at) => page.insert_str(at, section),
        None => page.push_str(section),
    }
    page
}
