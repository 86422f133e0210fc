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
pub const PROGRESS_MEASURES: [(&str, &str, &str); 9] = [
    (
        "weight_norm",
        "L2 norm",
        "of all parameters: weight decay holds it down, and its fall marks the cleanup that ends grokking",
    ),
    (
        "weight_norm.<module>",
        "L2 norm",
        "of one module's parameters: `wte`, `wpe`, `blocks.<i>.attn`, `blocks.<i>.mlp`, `blocks.<i>.ln_1`, `blocks.<i>.ln_2`, `ln_f`, `lm_head` (those the model has); for an MLP (`arch = \"mlp\"`) `input`, `hidden` (all hidden layers after the first) and `head`",
    ),
    (
        "fourier.key_freq_<r>",
        "frequency k",
        "modular addition and subtraction only (Nanda et al. 2023): the r-th largest Fourier component (r = 1..5) of the residues' token embeddings, k in 1..(p-1)/2",
    ),
    (
        "fourier.key_share",
        "fraction",
        "modular addition and subtraction only: share of the embeddings' non-constant squared norm in those 5 key frequencies (about 5/((p-1)/2) at random, near 1 once the algorithm is learned)",
    ),
    (
        "fourier.restricted_loss",
        "nats",
        "modular addition and subtraction only: cross-entropy over every equation of the logits kept along cos/sin(w_k(a +- b - c)) for the key frequencies; falls before the test loss",
    ),
    (
        "fourier.excluded_loss",
        "nats",
        "modular addition and subtraction only: cross-entropy on the training equations with those directions removed from the logits; rises as memorization gives way to the algorithm",
    ),
    (
        "heads.prefix_matching.<layer>.<head>",
        "fraction",
        "induction task only (Olsson et al. 2022): on 64 sequences of random tokens repeated once, the head's mean attention from each repeated token to the token after its first occurrence (an induction head's target); about 1/position at random",
    ),
    (
        "heads.copying.<layer>.<head>",
        "ratio",
        "induction task only: sum(lambda) / sum(|lambda|) over the eigenvalues of the head's OV circuit W_E W_V W_O W_U (LayerNorm left out; Elhage et al. 2021), in [-1, 1], near 1 for a head whose output raises the logit of the token it attends to",
    ),
    (
        "heads.induction",
        "fraction",
        "induction task only: the highest prefix-matching score of a head whose copying score is positive (0 when none copies): high for a model with an induction head",
    ),
];

/// Per answer position, for Schaeffer's test (both splits; in curves.csv only).
pub const POSITION_METRICS: [(&str, &str, &str); 2] = [
    (
        "token_accuracy.pos<i>",
        "fraction",
        "fraction of examples whose teacher-forced argmax at answer position i (0 = first) is right; exact match is the share right at every position",
    ),
    (
        "token_logprob.pos<i>",
        "nats",
        "mean log-probability of the target token at answer position i",
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
    c.extend([]);
    for (name, split, level) in [
        ("train99", "train", "0.99"),
        ("val99", "val", "0.99"),
        ("train95", "train", "0.95"),
        ("val95", "val", "0.95"),
    ] {
        c.push(Column {
            name: format!("t_{name}_after"),
            unit: "steps",
            meaning: format!(
                "the eval step before t_{name}: the crossing lies in (t_{name}_after, t_{name}]"
            ),
        });
        c.push(Column {
            name: format!("t_{name}"),
            unit: "steps",
            meaning: format!("first eval step from which {split} exact_match stays >= {level} at every later eval; empty if never (censored)"),
        });
        c.push(Column {
            name: format!("t_{name}_censored_at"),
            unit: "steps",
            meaning: format!("when {split} exact_match never reached {level} for good: the last eval step (the run is censored there, not failed); empty if crossed"),
        });
    }
    c.extend([
        col("grok_delay", "steps", "t_val99 - t_train99; empty if either is censored"),
        col("grok_ratio", "ratio", "t_val99 / t_train99; empty if either is censored or t_train99 = 0"),
        col("wall_seconds", "s", "wall-clock training time summed over attempts (from summary.json; empty until the run ends)"),
        col("backend", "", "burn backend that trained the run (from summary.json)"),
        col("device", "", "device that trained the run (from summary.json)"),
        col("resumes", "", "times the run was resumed from a checkpoint (from summary.json)"),
    ]);
    c
}

/// `grokking.csv`: one row per (group, size, split, level). `group_axis_keys` as in
/// [`thresholds_columns`].
pub fn grokking_columns(group_axis_keys: Option<&[String]>) -> Vec<Column> {
    let mut c = vec![
        col("group", "", "comparison group (as in thresholds.csv)"),
        col("task", "", "task label"),
    ];
    c.extend(axis_columns(
        group_axis_keys,
        "one column per swept axis other than seed and model shape",
        "value shared by the group of the swept axis",
    ));
    c.extend([
        col("size", "", "size name"),
        col("params_total", "parameters", "every trainable parameter"),
        col("split", "", "train or val: whose exact_match crosses"),
        col("level", "fraction", "0.99 or 0.95"),
        col("n_runs", "jobs", "the group's jobs of this size with records (seeds), every state: unfinished and diverged runs are censored at their last eval"),
        col("n_crossed", "jobs", "runs that crossed the level for good (see t_val99 in runs.csv)"),
        col("budget", "steps", "largest last eval step among the runs"),
        col("fraction_crossed", "fraction", "Kaplan-Meier share of runs crossed by the budget (equals n_crossed / n_runs when no run stopped early)"),
        col("km_median", "steps", "Kaplan-Meier median time to cross: first crossing step where the share not yet crossed falls to 0.5; empty when fewer than half are known to have crossed (not the mean of the crossed runs, which drops censored ones)"),
        col("km_median_low", "steps", "95% interval of the median, low end (Brookmeyer-Crowley with Greenwood's variance)"),
        col("km_median_high", "steps", "high end; empty when the data do not bound the median within the budget"),
    ]);
    c
}

/// `phase.csv`: one row per cell of every phase diagram (see `elab_results::phase`).
pub fn phase_columns() -> Vec<Column> {
    vec![
        col(
            "x_axis",
            "",
            "the diagram's x axis: `size` (the size ladder) or the dotted key of a swept axis",
        ),
        col(
            "x",
            "as swept",
            "the cell's value on x (a size name for `size`)",
        ),
        col(
            "x_index",
            "",
            "position of x on its axis, from 0: numbers in increasing order, sizes by params_total, text alphabetically",
        ),
        col(
            "y_axis",
            "",
            "the diagram's y axis, as x_axis (the later of the two in axis order: size, then swept keys sorted)",
        ),
        col("y", "as swept", "the cell's value on y"),
        col("y_index", "", "position of y on its axis, as x_index"),
        col(
            "group",
            "",
            "values of the other varying axes, `key=value` separated by spaces (one diagram per combination); empty when only two axes vary",
        ),
        col(
            "n_runs",
            "jobs",
            "the cell's jobs with records (its seeds), every state: unfinished and diverged runs count, censored at their last eval",
        ),
        col("n_done", "jobs", "of those, the done ones"),
        col(
            "final_val_exact_match",
            "fraction",
            "validation exact_match at the last evaluation, mean over the cell's runs with a finite value",
        ),
        col(
            "n_grokked",
            "jobs",
            "runs whose validation exact_match reached 0.95 and held at every later eval (t_val95 in runs.csv)",
        ),
        col(
            "budget",
            "steps",
            "largest last eval step among the cell's runs",
        ),
        col(
            "fraction_grokked",
            "fraction",
            "Kaplan-Meier share of runs grokked by the budget",
        ),
        col(
            "t_grok",
            "steps",
            "Kaplan-Meier median of t_val95 over the cell's runs; empty when censored",
        ),
        col(
            "log10_t_grok",
            "log10(steps)",
            "log10 of t_grok (a crossing at step 0 counts as step 1); the colour of the time-to-grok heatmap",
        ),
        col(
            "censored",
            "bool",
            "true when fewer than half the runs grokked within the budget (no median: the heatmap shows the cell hatched, marked > budget)",
        ),
    ]
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
            "metric name: loss, answer_logprob, token_accuracy, exact_match, edit_distance, brier, token_accuracy.pos<i>, token_logprob.pos<i>, or any other recorded",
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

/// `acquisition.csv`: one row per (group, size): Kaplan-Meier time to acquire.
pub fn acquisition_columns() -> Vec<Column> {
    vec![
        col("group", "", "comparison group (as in thresholds.csv)"),
        col("size", "", "size name"),
        col("params_total", "parameters", "every trainable parameter"),
        col(
            "level",
            "fraction",
            "validation exact match a run must hold to have acquired: the group's acquire_level (thresholds.csv, exact_match over params)",
        ),
        col(
            "n_runs",
            "jobs",
            "the group's jobs of this size with records (seeds); a run that has not acquired is censored at its last eval",
        ),
        col(
            "n_acquired",
            "jobs",
            "runs that acquired: from some eval on, every later eval at or above the level",
        ),
        col("budget", "steps", "largest last eval step among the runs"),
        col(
            "fraction_acquired",
            "fraction",
            "Kaplan-Meier share of runs acquired by the budget",
        ),
        col(
            "km_median",
            "steps",
            "Kaplan-Meier median time to acquire; empty when fewer than half are known to have acquired",
        ),
        col(
            "km_median_low",
            "steps",
            "95% interval of the median, low end (Brookmeyer-Crowley with Greenwood's variance)",
        ),
        col(
            "km_median_high",
            "steps",
            "high end; empty when the data do not bound the median within the budget",
        ),
    ]
}

/// `threshold_steps.csv`: one row per (group, metric, scale, eval step) of threshold(t).
pub fn threshold_steps_columns() -> Vec<Column> {
    vec![
        col("group", "", "comparison group (as in thresholds.csv)"),
        col("score", "", "the score fitted (as in thresholds.csv)"),
        col("scale", "", "x axis (as in thresholds.csv)"),
        col(
            "step",
            "steps",
            "eval step: the last, and the first at or after each halving of it (8 at most); each job's last eval at or before it",
        ),
        col(
            "x0",
            "log10(scale)",
            "midpoint of the rise at this step, placed as the final row's is: P(acquire) at the final acquire_level when two_state, else the free curve through the per-scale means; empty when nothing (or everything) has risen",
        ),
        col(
            "x0_low",
            "log10(scale)",
            "two_state only: 95% profile-likelihood interval, low end",
        ),
        col(
            "x0_high",
            "log10(scale)",
            "two_state only: 95% profile-likelihood interval, high end",
        ),
        col(
            "acquired",
            "jobs",
            "runs at or above the final acquire_level at this step",
        ),
        col("runs", "jobs", "runs with an eval at or before this step"),
    ]
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
        col("scale", "", "x axis: params (params_total), params_non_embedding, flops (train_flops; with equal steps and batch for every run, nearly a relabelling of parameters), or the dotted key of a swept numeric axis (e.g. task.train_size) for a group compared over it"),
        col("n_jobs", "jobs", "done jobs in the group (other states are left out: their training is incomplete)"),
        col("verdict", "", "emergent, lottery (each run acquires or not, and the share that acquires rises over at least the 1-decade criterion), smooth, flat, unresolved (the reason column says why), or not enough sizes (fewer than 5); see docs/analysis.md"),
        col("n_sizes", "", "distinct scales"),
        col("min_seeds", "", "fewest seeds at any scale"),
        col("n_seeds", "", "distinct seeds: the blocks the bootstrap resamples (one seed's scores at every scale)"),
        col("score_range", "score units", "max - min of the per-scale mean scores"),
        col("x0", "log10(scale)", "midpoint of the rise: of the probability of acquiring (acq_x0) when two_state, else of the free logistic fitted to per-scale means weighted by seeds / variance"),
        col("threshold", "scale units", "10^x0: parameters or FLOPs"),
        col("width_decades", "decades", "10%-90% width of the free logistic, ln(81)/k"),
        col("y0", "score units", "logistic lower asymptote"),
        col("y1", "score units", "logistic upper asymptote"),
        col("r2_logistic", "", "weighted R^2 of the free logistic"),
        col("r2_line", "", "R^2 of a straight line in log10(scale) through the per-scale means"),
        col("delta_bic", "", "BIC(line) - BIC(logistic) on the per-scale means; descriptive only (the verdict uses p_smooth)"),
        col("breakthroughness", "", "BIG-bench emergence score of the per-scale means"),
        col("p_smooth", "", "p-value of the smooth null (every logistic at least 1 decade wide, asymptotes in the score's range) against the free logistic, from 1000 seed-block bootstrap draws (rng seed 0); emergent needs p_smooth < 0.05"),
        col("stability", "fraction", "share of 1000 seed-block resamples of the data whose verdict equals this one"),
        col("x0_ci_low", "log10(scale)", "threshold interval, low end: 2.5th percentile of bootstrapped x0, widened by t_{seeds-1}/z; when the verdict is unresolved between two scales, the lower of them"),
        col("x0_ci_high", "log10(scale)", "threshold interval, high end (the upper bracketing scale when unresolved between two)"),
        col("note", "", "unresolved only: the reason in words, with the sizes (or seeds) to add"),
        col("reason", "", "unresolved only: between_sizes, top_edge, bottom_edge, ladder_too_short (less than the criterion width of ladder on a side of a sharp rise), or too_few_seeds (two-state runs, neither a jump nor a lottery rejected)"),
        col("two_state", "", "true when at most 15% of runs score in the middle half between the lowest and highest run: each run acquired or not, and the verdict, x0, width, interval and p_smooth are those of the acquisition fit"),
        col("acquire_level", "score units", "a run acquired when its final score is at least this: midway between the lowest and highest run"),
        col("middle_share", "fraction", "share of runs in the middle half between the lowest and highest run score"),
        col("runs", "jobs", "runs fitted"),
        col("runs_acquired", "jobs", "runs at or above acquire_level"),
        col("mixed_sizes", "", "scales where some runs acquired and some did not"),
        col("acq_x0", "log10(scale)", "midpoint of P(acquire), logistic regression on the runs (binomial likelihood)"),
        col("acq_x0_low", "log10(scale)", "its 95% profile-likelihood interval, low end"),
        col("acq_x0_high", "log10(scale)", "its 95% profile-likelihood interval, high end"),
        col("acq_width_decades", "decades", "10%-90% width of P(acquire): how sharply the population acquires"),
        col("acq_width_low", "decades", "its 95% profile-likelihood interval, low end"),
        col("acq_width_high", "decades", "its 95% profile-likelihood interval, high end"),
        col("p_sharp", "", "two_state only: p-value of the sharp null (P(acquire) rises within less than 1 decade), parametric bootstrap of the likelihood ratio; lottery needs p_sharp < 0.05"),
        col("budget_limited", "", "true when the threshold still moved over the last doubling of training steps: placed the same way at the eval nearest half the budget, it lies outside the final interval (or, without one, more than 0.1 decade away), or there was none yet; training longer would move it (threshold_steps.csv has threshold(t))"),
        col("run_rise_decades", "decades of steps", "median over the runs that acquired of their rise over training, log10(step at 90%) - log10(step at 10%) of the way from their first to their last score: how sharply each run acquires"),
        col("forecast_sizes", "", "scales below x0 through which a line in log10(scale) forecasts the larger ones (Wei et al.'s predictability; at least 3)"),
        col("forecast_outside", "", "scales at or above x0 whose mean score lies outside the forecast's 95% prediction interval"),
        col("forecast_max_excess", "score units", "how far the farthest of them lies beyond the interval (0 when none)"),
        col("predictable", "", "true when every larger scale lies inside the forecast's interval"),
        col("answer_len", "tokens", "answer tokens per example (L)"),
        col("schaeffer", "", "exact_match rows whose exact match rises sharply (emergent, or unresolved for want of sizes, not seeds), with per-position scores recorded: metric-induced (every position's probability of the right token is smooth and the product of their smooth fits puts the threshold where exact match has it), genuine (a continuous metric jumps too: some position's probability, or the group's answer_logprob or edit score), or unresolved (smooth positions whose product misses the observed threshold); Schaeffer et al. 2023, see docs/analysis.md"),
        col("schaeffer_positions", "", "what the per-position scores were: probability (exp of token_logprob.pos<i>, continuous) or accuracy (token_accuracy.pos<i>, records without log-probabilities)"),
        col("schaeffer_continuous_jump", "", "whether a continuous score of the same group and scale (answer_logprob or the edit score; -brier is reported, not used) rises sharply too; genuine needs a continuous metric that jumps"),
        col("schaeffer_predicted_x0", "log10(scale)", "threshold of the predicted exact match (product over answer positions of each position's smooth fit), measured as x0 is"),
        col("schaeffer_predicted_x0_low", "log10(scale)", "its seed-block bootstrap interval, low end (widened by t_{seeds-1}/z)"),
        col("schaeffer_predicted_x0_high", "log10(scale)", "its interval, high end"),
        col("schaeffer_token_p_min", "", "smallest p-value of the smooth null over the answer positions' accuracies; a position jumps when below 0.05 / answer_len"),
        col("em_product_gap", "fraction", "max over scales of |mean exact_match - mean over seeds of the product of that job's per-position accuracies|; small means independent positions explain exact match"),
        col("loss_E", "nats/token", "validation loss over the same scale fitted as L = E + A scale^-alpha (E, A >= 0; seeds averaged per scale): the irreducible loss E"),
        col("loss_A", "nats/token x scale^alpha", "the coefficient A"),
        col("loss_alpha", "", "the exponent alpha (searched in [0.001, 3])"),
        col("loss_r2", "", "R^2 of the loss fit over the per-scale means"),
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
         | `threshold_steps.csv` | one row per (comparison group, metric, scale, eval step): threshold(t) over the training budget |\n\
         | `acquisition.csv` | one row per (comparison group, size): Kaplan-Meier time to acquire |\n\
         | `grokking.csv` | one row per (comparison group, size, split, level): Kaplan-Meier time to cross over seeds |\n\
         | `phase.csv` | one row per cell of every phase diagram (pairs of swept axes; only when at least two axes vary) |\n\
         | `SCHEMA.md` | this file |\n\
         | `weights/index.csv`, `weights/<job>/step-<N>.safetensors` | only with `elab export --weights`: each run's snapshots (`[train] snapshots`; docs/weights.md), one row per file: `job`, `step`, `path` (relative to the export folder) |\n\
         | `plots/<group>_scale.{svg,png}` | final validation score vs params_total, one panel per metric (exact_match, token_accuracy, answer_logprob, edit score): seeds as points, mean per size as a line, threshold (red line) and its bootstrap interval (band) where the verdict is emergent |\n\
         | `plots/<group>_curves.{svg,png}` | train and validation exact_match / token_accuracy vs step (log axis, step 0 omitted), one line per job, coloured by size |\n\
         | `plots/<group>_map.{svg,png}` | emergence map: size (y) x eval step (x), colour = validation exact_match averaged over seeds |\n\
         | `plots/<group>_acquisition.{svg,png}` | run-level acquisition of validation exact_match over params_total (docs/analysis.md, \"Emergence over scale\"): each run's final score, coloured by whether it acquired (at or above `acquire_level`, dashed), with the forecast from the sizes below the threshold and its 95% band where thresholds.csv has one; the share of runs that acquired per size with Wilson 95% intervals, the fitted P(acquire) (midpoint `acq_x0`, 10%-90% width `acq_width_decades`) and the midpoint's interval (band), titled with the width, its interval and the verdict (and reason); threshold(t) over eval steps (log axes) from threshold_steps.csv with its interval where placed by acquisition, marked budget-limited where `budget_limited` |\n\
         | `plots/<group>_progress.{svg,png}` | progress measures over linear steps, a line per job, only where the runs recorded them: validation exact_match and `weight_norm`; for modular addition and subtraction also `fourier.key_share`, validation loss, `fourier.restricted_loss` and `fourier.excluded_loss` (losses on a log10 axis); for the induction task instead validation `repeat_accuracy`, `heads.induction` and, per layer, every head's `heads.prefix_matching.<layer>.<head>` and `heads.copying.<layer>.<head>` (a line per head, a colour per job) |\n\
         | `plots/<group>_subtasks.{svg,png}` | sparse parity only (Michaud et al. 2023's quantization model): each subtask's final validation accuracy over params_total (a line per subtask, darkest the most frequent); each placed threshold (emergent, or a jump between two adjacent sizes) with its bootstrap interval against the subtask's frequency; the mean validation loss over params_total in log-log with the power law of subtasks.csv |\n\
         | `plots/phaseNN_<x>_x_<y>[_at_<group>].{svg,png}` | phase diagram: final validation exact_match (left) and log10 time to grok (right) over two swept axes, mean / Kaplan-Meier median over seeds; censored cells hatched and marked > budget; at most 12 |\n\
         | `report.html` | self-contained page: job counts by status, thresholds table, every figure inlined as SVG |\n\n\
         `<group>` is `gNN_<task and swept values>`. An export replaces its output folder whole:\n\
         every file is written and fsynced in a fresh folder beside it (`.<name>.export-new-<pid>`),\n\
         which is then renamed into place (the old folder renamed away first, then removed). So\n\
         the folder holds exactly what the last export wrote, no file of an earlier one, and a\n\
         crash leaves the old folder or the new one complete (between the two renames the old one\n\
         waits under `.<name>.export-old-<pid>`; the next export puts it back before it starts\n\
         and removes every leftover). Two exports to one folder take turns on\n\
         `.<name>.export.lock`, beside it. The folder is marked `.elab-export`; a folder that\n\
         holds files without that mark (or an earlier export's `report.html`) is refused (exit\n\
         2), never replaced. A job's `summary.json` that exists but does not parse stops the\n\
         export, naming the file, before anything is written.\n\n",
    );
    out.push_str("## Metrics\n\n| metric | unit | meaning |\n|---|---|---|\n");
    for (m, unit, meaning) in METRICS {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning} |");
    }
    for (m, unit, meaning) in POSITION_METRICS {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning}; both splits |");
    }
    for (m, unit, meaning) in PROGRESS_MEASURES {
        let _ = writeln!(out, "| `{m}` | {unit} | {meaning}; train rows only |");
    }
    out.push_str(
        "\n## runs.csv\n\nOne row per job: every planned job, then every orphan (a job directory no\n\
         longer in the plan; an orphan whose spec no longer parses is skipped and named in the\n\
         export summary). Grokking crossings use exact_match on each split (for single-token\n\
         answers, as in modular tasks, exact match equals token accuracy); a crossing is the\n\
         interval (previous eval step, first eval step >= the level that holds at every later\n\
         eval], so a spike that falls back does not count, and a run that never crosses for good\n\
         is censored at its last eval (`_censored_at`), not zero.\n\n",
    );
    table(&mut out, &runs_columns(None));
    out.push_str(
        "\n## grokking.csv\n\nPer comparison group and size, the seeds' times to cross 0.99 and 0.95\n\
         exact match on each split, as a Kaplan-Meier estimate: a run that has not crossed is\n\
         censored at its last eval, not dropped and not counted as crossing at the budget.\n\n",
    );
    table(&mut out, &grokking_columns(None));
    out.push_str(
        "\n## phase.csv\n\nWritten when at least two axes vary among the planned jobs with records: the\n\
         size ladder (`size`, ordered by params_total) and every swept key except seed with at\n\
         least two values. Every pair of them is a phase diagram (x the earlier in that order); with\n\
         more than two varying axes, each pair gets one diagram per combination of the other axes'\n\
         values (`group`). A cell is the runs (seeds) at one (x, y, group); cells without runs have\n\
         no row. Time to grok is validation exact_match reaching 0.95 for good, summarised over\n\
         the cell's seeds by Kaplan-Meier as in grokking.csv: a run that never got there is\n\
         censored at its last eval, and a cell where fewer than half the runs grokked has no\n\
         median (`censored` = true). At most 12 diagrams are drawn, as\n\
         `plots/phaseNN_*.{svg,png}` (NN: the diagram's place in phase.csv) and shown in\n\
         report.html: every pair at its first group before any pair at its second.\n\n",
    );
    table(&mut out, &phase_columns());
    out.push_str("\n## curves.csv\n\nTidy long format: one row per (job, eval step, split, metric), sorted by job (runs.csv order),\nstep, split, metric.\n\n");
    table(&mut out, &curves_columns());
    out.push_str(
        "\n## thresholds.csv\n\nOne row per (group, metric, scale). A group is the planned jobs sharing the task and every\n\
         swept value except size and seed, compared over the model's scale (params,\n\
         params_non_embedding, flops); and, for every swept axis with numeric values other than\n\
         seed and shape, the planned jobs sharing the task, the size and every other swept value,\n\
         compared over that axis (`<task> size=<size> ... over <key>`: data thresholds such as\n\
         train_size or train_fraction are found the same way). Its points are (scale, final\n\
         validation score, seed) of its done jobs, fitted by `elab_analysis::analyze_threshold`\n\
         (seed-block bootstrap test of a free logistic in log10(scale) against a smooth null; see\n\
         docs/analysis.md). Scores are oriented so that bigger is better: edit\n\
         distance becomes the edit score 1 - edit_distance/answer_len (fraction of answer tokens\n\
         right up to edits), brier is negated. Default criteria (`elab_analysis::Criteria`) apply\n\
         to every score in [0, 1]; for answer_logprob (nats, unbounded) the flat range is\n\
         0.05 nats per answer token (0.05 x answer_len).\n\n",
    );
    table(&mut out, &thresholds_columns(None));
    out.push_str(
        "\n## threshold_steps.csv\n\nthreshold(t): every row of thresholds.csv placed again at earlier eval steps, so that a\n\
         threshold still moving when training ended (`budget_limited`) shows how it moved.\n\n",
    );
    table(&mut out, &threshold_steps_columns());
    out.push_str(
        "\n## acquisition.csv\n\nEmergence over training time: per comparison group (over params) and size, when runs\n\
         acquire, as a Kaplan-Meier estimate over the seeds. A run acquires at the first eval from\n\
         which its validation exact match stays at or above the group's acquire_level.\n\n",
    );
    table(&mut out, &acquisition_columns());
    out.push_str(&crate::subtasks::schema_markdown());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_md_matches_the_code() {
        // At run time, not `env!`: CI's target dir reuses binaries built at another path.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = std::path::Path::new(&dir).join("../../docs/csv-schema.md");
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
            phase_columns(),
        ] {
            let mut n = names(&cols);
            let len = n.len();
            n.sort();
            n.dedup();
            assert_eq!(n.len(), len);
        }
    }
}
