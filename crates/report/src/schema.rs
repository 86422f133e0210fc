//! The columns of every CSV file: name, unit, meaning. The writers take their headers from
//! here and `SCHEMA.md` is generated from here (a test keeps the two equal), so the
//! documentation cannot drift from the files.

use std::fmt::Write as _;

/// One documented column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub unit: &'static str,
    pub meaning: String,
}

fn col(name: &str, unit: &'static str, meaning: &str) -> Column {
    Column {
        name: name.to_string(),
        unit,
        meaning: meaning.to_string(),
    }
}

/// The six metrics every run records, with their unit and meaning (see `elab-train` metrics).
pub const METRICS: [(&str, &str, &str); 6] = [
    (
        "loss",
        "nats/token",
        "mean cross-entropy per answer token, teacher-forced",
    ),
    (
        "answer_logprob",
        "nats",
        "mean over examples of the summed log-probability of the target answer (<= 0)",
    ),
    (
        "token_accuracy",
        "fraction",
        "fraction of answer tokens whose teacher-forced argmax is right",
    ),
    (
        "exact_match",
        "fraction",
        "fraction of examples whose greedy decoded answer equals the target",
    ),
    (
        "edit_distance",
        "tokens",
        "mean Levenshtein distance between greedy answer and target",
    ),
    (
        "brier",
        "score",
        "mean over answer tokens of sum_k (p_k - 1[k = target])^2, in [0, 2]",
    ),
];

/// Progress measures recorded beside the metrics (train rows only: they do not depend on the
/// split); in curves.csv, not in runs.csv's final columns.
pub const PROGRESS_MEASURES: [(&str, &str, &str); 2] = [
    (
        "weight_norm",
        "L2 norm",
        "of all parameters: weight decay holds it down, and its fall marks the cleanup that ends grokking",
    ),
    (
        "weight_norm.<module>",
        "L2 norm",
        "of one module's parameters: `wte`, `wpe`, `blocks.<i>.attn`, `blocks.<i>.mlp`, `blocks.<i>.ln_1`, `blocks.<i>.ln_2`, `ln_f`, `lm_head` (those the model has)",
    ),
];

/// Placeholder for the per-axis columns, as documented.
pub const AXIS_PATTERN: &str = "axis_<key>";

/// `runs.csv`. `axis_keys` are the plan's swept dotted keys (sorted); `None` gives the
/// documented form, which shows the placeholder `axis_<key>` instead.
pub fn runs_columns(axis_keys: Option<&[String]>) -> Vec<Column> {
    let mut c = vec![
        col(
            "job_id",
            "",
            "job id: 12 hex digits of the hash of the resolved job spec; the run lives in jobs/<job_id>/",
        ),
        col(
            "task",
            "",
            "task label: mod97_add, add3r (digits, op, r = reversed answer)",
        ),
        col("task_kind", "", "task family: modular or digits"),
        col("task_p", "", "modulus (modular tasks; empty otherwise)"),
        col(
            "task_op",
            "",
            "operation: add, sub, mul, div, square_sum, ... (modular) or add, mul (digits)",
        ),
        col(
            "task_train_fraction",
            "fraction",
            "fraction of all equations used for training (modular; empty otherwise)",
        ),
        col(
            "task_digits",
            "digits",
            "digits per operand (digits tasks; empty otherwise)",
        ),
        col(
            "task_reversed",
            "bool",
            "answer written least significant digit first (digits tasks; empty otherwise)",
        ),
        col(
            "task_train_size",
            "examples",
            "training examples (digits tasks; empty otherwise)",
        ),
        col(
            "task_val_size",
            "examples",
            "validation examples (digits tasks; empty otherwise)",
        ),
        col(
            "answer_len",
            "tokens",
            "answer tokens per example (L in exact_match ~ token_accuracy^L)",
        ),
        col(
            "size",
            "",
            "size name from the sweep's [[sizes]] ladder; empty for an orphaned job",
        ),
        col("n_layer", "", "transformer blocks"),
        col("d_model", "", "residual stream width"),
        col("n_head", "", "attention heads"),
        col("d_mlp", "", "MLP hidden width"),
        col(
            "params_total",
            "parameters",
            "every trainable parameter, embeddings and unembedding included (Hoffmann et al. convention)",
        ),
        col(
            "params_non_embedding",
            "parameters",
            "without token/position embeddings and unembedding (Kaplan et al. N)",
        ),
        col(
            "flops_per_token",
            "FLOP/token",
            "training FLOPs per token: 3 x (2 N_non_embedding + 2 n_layer n_ctx d_model)",
        ),
        col(
            "tokens_seen",
            "tokens",
            "training tokens read by the last evaluation (steps x batch x context)",
        ),
        col("train_flops", "FLOP", "flops_per_token x tokens_seen"),
        col(
            "seed",
            "",
            "seed of the data split, batch order and initial weights",
        ),
    ];
    c.extend(axis_columns(
        axis_keys,
        "one column per swept axis of the plan (dotted job key, e.g. axis_train.weight_decay); empty for orphans",
        "value of the swept axis",
    ));
    c.extend([
        col("status", "", "job state: done, diverged, failed, running, resumable, new, or orphaned (in the sweep directory but no longer in its config)"),
        col("last_step", "steps", "step of the last evaluation (empty with no records)"),
    ]);
    for split in ["train", "val"] {
        for (metric, unit, meaning) in METRICS {
            c.push(Column {
                name: format!("final_{split}_{metric}"),
                unit,
                meaning: format!("{meaning}; {split} split, last evaluation"),
            });
        }
    }
    c.extend([
        col("t_train99_after", "steps", "train exact_match first reached 0.99 in (t_train99_after, t_train99]: the previous eval step"),
        col("t_train99", "steps", "first eval step with train exact_match >= 0.99; empty if never (censored at last_step)"),
        col("t_val99_after", "steps", "previous eval step before t_val99"),
        col("t_val99", "steps", "first eval step with val exact_match >= 0.99; empty if never (censored at last_step)"),
        col("grok_delay", "steps", "t_val99 - t_train99; empty if either is censored"),
        col("grok_ratio", "ratio", "t_val99 / t_train99; empty if either is censored or t_train99 = 0"),
        col("wall_seconds", "s", "wall-clock training time summed over attempts (from summary.json; empty until the run ends)"),
        col("backend", "", "burn backend that trained the run (from summary.json)"),
        col("device", "", "device that trained the run (from summary.json)"),
        col("resumes", "", "times the run was resumed from a checkpoint (from summary.json)"),
    ]);
    c
}

/// `curves.csv`: long format, one row per (job, step, split, metric).
pub fn curves_columns() -> Vec<Column> {
    vec![
        col("job_id", "", "job id (joins runs.csv)"),
        col("size", "", "size name; empty for an orphaned job"),
        col("params_total", "parameters", "every trainable parameter"),
        col("seed", "", "job seed"),
        col("step", "steps", "optimizer updates done at this evaluation"),
        col("tokens", "tokens", "training tokens read so far"),
        col(
            "flops",
            "FLOP",
            "training FLOPs so far: tokens x flops_per_token",
        ),
        col("split", "", "train or val"),
        col(
            "metric",
            "",
            "metric name: loss, answer_logprob, token_accuracy, exact_match, edit_distance, brier, or any other recorded",
        ),
        col(
            "value",
            "see metric",
            "metric value (units as in the metric table below)",
        ),
    ]
}

/// The `axis_<key>` columns; `None` gives the documented placeholder `axis_<key>`.
fn axis_columns(keys: Option<&[String]>, placeholder: &str, meaning: &str) -> Vec<Column> {
    match keys {
        None => vec![col(AXIS_PATTERN, "as swept", placeholder)],
        Some(keys) => keys
            .iter()
            .map(|k| {
                col(
                    &format!("axis_{k}"),
                    "as swept",
                    &format!("{meaning} `{k}`"),
                )
            })
            .collect(),
    }
}

/// `thresholds.csv`. `group_axis_keys` as in [`runs_columns`].
pub fn thresholds_columns(group_axis_keys: Option<&[String]>) -> Vec<Column> {
    let mut c = vec![
        col(
            "group",
            "",
            "comparison group: task label plus every swept value other than size and seed",
        ),
        col("task", "", "task label"),
    ];
    c.extend(axis_columns(
        group_axis_keys,
        "one column per swept axis other than seed and model shape",
        "value shared by the group of the swept axis",
    ));
    c.extend([
        col("metric", "", "source metric (validation split, last evaluation of each done job)"),
        col("score", "", "the score fitted, bigger is better: exact_match, token_accuracy, answer_logprob, 1 - edit_distance/answer_len, -brier"),
        col("scale", "", "x axis: params (params_total) or flops (train_flops)"),
        col("n_jobs", "jobs", "done jobs in the group (other states are left out: their training is incomplete)"),
        col("verdict", "", "emergent, smooth, flat, or not enough sizes (elab-analysis criteria)"),
        col("n_sizes", "", "distinct scales"),
        col("min_seeds", "", "fewest seeds at any scale"),
        col("score_range", "score units", "max - min of the per-scale mean scores"),
        col("x0", "log10(scale)", "logistic midpoint"),
        col("threshold", "scale units", "10^x0: parameters or FLOPs"),
        col("width_decades", "decades", "10%-90% width of the logistic, ln(81)/k"),
        col("y0", "score units", "logistic lower asymptote"),
        col("y1", "score units", "logistic upper asymptote"),
        col("r2_logistic", "", "R^2 of the logistic fit to the per-scale means"),
        col("r2_line", "", "R^2 of a straight line in log10(scale)"),
        col("delta_bic", "", "BIC(line) - BIC(logistic); positive favours the logistic"),
        col("breakthroughness", "", "BIG-bench emergence score of the per-scale means"),
        col("x0_ci_low", "log10(scale)", "2.5th percentile of x0 over 1000 seed bootstraps (rng seed 0); empty with one seed per scale"),
        col("x0_ci_high", "log10(scale)", "97.5th percentile of bootstrapped x0"),
        col("answer_len", "tokens", "answer tokens per example (L)"),
        col("mirage", "bool", "exact_match rows only: sharp (emergent) under exact match while token_accuracy, answer_logprob and the edit score are not (Schaeffer et al. 2023)"),
        col("mirage_max_gap", "fraction", "exact_match rows only: max over scales of |mean exact_match - mean token_accuracy^L|; small means p^L explains exact match"),
    ]);
    c
}

/// Column names only.
pub fn names(columns: &[Column]) -> Vec<String> {
    columns.iter().map(|c| c.name.clone()).collect()
}

fn table(out: &mut String, columns: &[Column]) {
    let _ = writeln!(out, "| column | unit | meaning |\n|---|---|---|");
    for c in columns {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            c.name,
            c.unit,
            c.meaning.replace('|', "\\|")
        );
    }
}

/// The schema as markdown: exactly the content of `docs/csv-schema.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Export schema (`elab export`)\n\n\
         Generated from `crates/report/src/schema.rs`; a test fails if this file and the code differ\n\
         (regenerate with `UPDATE_SCHEMA=1 cargo test -p elab-report schema`).\n\n\
         All files are UTF-8 CSV with a header row. Numbers are written in Rust's shortest\n\
         round-trip form; a missing value is an empty field; a non-finite metric is `NaN`, `inf`\n\
         or `-inf`. Parameters and FLOPs use closed forms (`elab_job::param_counts`,\n\
         `train_flops_per_token`): `params_total` counts everything (Hoffmann et al.),\n\
         `params_non_embedding` is Kaplan's N.\n\n",
    );
    out.push_str(
        "## Files\n\n\
         | file | content |\n|---|---|\n\
         | `runs.csv` | one row per job |\n\
         | `curves.csv` | every recorded metric at every eval step, long format |\n\
         | `thresholds.csv` | one row per (comparison group, metric, scale) |\n\
         | `SCHEMA.md` | this file |\n\
         | `plots/<group>_scale.{svg,png}` | final validation score vs params_total, one panel per metric (exact_match, token_accuracy, answer_logprob, edit score): seeds as points, mean per size as a line, threshold (red line) and its bootstrap interval (band) where the verdict is emergent |\n\
         | `plots/<group>_curves.{svg,png}` | train and validation exact_match / token_accuracy vs step (log axis, step 0 omitted), one line per job, coloured by size |\n\
         | `plots/<group>_map.{svg,png}` | emergence map: size (y) x eval step (x), colour = validation exact_match averaged over seeds |\n\
         | `report.html` | self-contained page: job counts by status, thresholds table, every figure inlined as SVG |\n\n\
         `<group>` is `gNN_<task and swept values>`. Every file is written and fsynced in a staging\n\
         directory inside the output directory, then renamed into place (`report.html` last), so a\n\
         file under its final name is always complete.\n\n",
    );
    out.push_str("## Metrics\n\n| metric | unit | meaning |\n|---|---|---|\n");
    for (m, unit, meaning) in METRICS {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning} |");
    }
    for (m, unit, meaning) in PROGRESS_MEASURES {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning}; train rows only |");
    }
    out.push_str(
        "\n## runs.csv\n\nOne row per job: every planned job, then every orphan (a job directory no\n\
         longer in the plan; an orphan whose spec no longer parses is skipped and named in the\n\
         export summary). Grokking crossings use exact_match on each split (for single-token\n\
         answers, as in modular tasks, exact match equals token accuracy); a crossing is the\n\
         interval (previous eval step, first eval step >= 0.99], and a run that never crosses is\n\
         censored (empty), not zero.\n\n",
    );
    table(&mut out, &runs_columns(None));
    out.push_str("\n## curves.csv\n\nTidy long format: one row per (job, eval step, split, metric), sorted by job (runs.csv order),\nstep, split, metric.\n\n");
    table(&mut out, &curves_columns());
    out.push_str(
        "\n## thresholds.csv\n\nOne row per (group, metric, scale). A group is the planned jobs sharing the task and every\n\
         swept value except size and seed; its points are (scale, final validation score, seed) of\n\
         its done jobs, fitted by `elab_analysis::analyze_threshold` (seeds averaged per scale,\n\
         logistic vs line in log10(scale)). Scores are oriented so that bigger is better: edit\n\
         distance becomes the edit score 1 - edit_distance/answer_len (fraction of answer tokens\n\
         right up to edits), brier is negated. Default criteria (`elab_analysis::Criteria`) apply\n\
         to every score in [0, 1]; for answer_logprob (nats, unbounded) the flat range is\n\
         0.05 nats per answer token (0.05 x answer_len).\n\n",
    );
    table(&mut out, &thresholds_columns(None));
    out.push_str(&crate::subtasks::schema_markdown());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_md_matches_the_code() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/csv-schema.md");
        let want = markdown();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/csv-schema.md is stale; regenerate with UPDATE_SCHEMA=1 cargo test --workspace schema"
        );
    }

    #[test]
    fn column_names_are_unique() {
        let keys = vec!["train.weight_decay".to_string(), "seed".to_string()];
        for cols in [
            runs_columns(Some(&keys)),
            curves_columns(),
            thresholds_columns(Some(&keys)),
        ] {
            let mut n = names(&cols);
            let len = n.len();
            n.sort();
            n.dedup();
            assert_eq!(n.len(), len);
        }
    }
}
