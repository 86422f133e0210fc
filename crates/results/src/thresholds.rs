//! Thresholds over scale for every comparison group, metric and scale (params, FLOPs), with
//! Schaeffer's test on the exact-match rows. Pure computation on loaded records.

use elab_analysis::{
    Criteria, Forecast, JobScores, Points, PositionMetric, PowerLawFit, SchaefferReport,
    StepThreshold, ThresholdReport, analyze_threshold, budget_limited, fit_power_law, forecast,
    log_spaced, rise_decades, schaeffer_test, threshold_over_steps,
};
use elab_job::{JobState, Split};
use rayon::prelude::*;

use crate::load::{Group, JobRecord, numeric};

/// Seed-block bootstrap resamples (for the p-value of the smooth null, the x0 interval and the
/// verdict's stability), and the fixed seed that makes exports reproducible.
pub const BOOTSTRAP: usize = 1000;
pub const BOOTSTRAP_SEED: u64 = 0;

/// A score fitted over scale: the metric it comes from and how it is oriented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    ExactMatch,
    TokenAccuracy,
    AnswerLogprob,
    /// 1 - edit_distance / answer_len: the fraction of the answer right up to edits.
    EditScore,
    /// -brier, so that bigger is better like every other score.
    NegBrier,
}

impl Score {
    pub const ALL: [Score; 5] = [
        Score::ExactMatch,
        Score::TokenAccuracy,
        Score::AnswerLogprob,
        Score::EditScore,
        Score::NegBrier,
    ];

    /// The recorded metric it is computed from.
    pub fn metric(self) -> &'static str {
        match self {
            Score::ExactMatch => "exact_match",
            Score::TokenAccuracy => "token_accuracy",
            Score::AnswerLogprob => "answer_logprob",
            Score::EditScore => "edit_distance",
            Score::NegBrier => "brier",
        }
    }

    /// What is fitted, as written in the `score` column and on plot axes.
    pub fn label(self) -> &'static str {
        match self {
            Score::ExactMatch => "exact_match",
            Score::TokenAccuracy => "token_accuracy",
            Score::AnswerLogprob => "answer_logprob",
            Score::EditScore => "1 - edit_distance/answer_len",
            Score::NegBrier => "-brier",
        }
    }

    /// The job's final validation score, oriented so that bigger is better.
    pub fn of(self, job: &JobRecord) -> Option<f64> {
        let v = job.final_value(Split::Val, self.metric())?;
        Some(self.orient(job, v))
    }

    /// The job's validation score along training, oriented as [`Score::of`].
    pub fn curve(self, job: &JobRecord) -> Vec<(u64, f64)> {
        job.curve(Split::Val, self.metric())
            .into_iter()
            .map(|(step, v)| (step, self.orient(job, v)))
            .collect()
    }

    fn orient(self, job: &JobRecord, v: f64) -> f64 {
        match self {
            Score::EditScore => 1.0 - v / job.answer_len.max(1) as f64,
            Score::NegBrier => -v,
            _ => v,
        }
    }

    /// Criteria suited to the score's units: defaults assume [0, 1]; a summed log-probability
    /// is in nats over L tokens (at most 0, unbounded below), so "flat" means less than 0.05
    /// nats per answer token; -brier lies in [-2, 0].
    pub fn criteria(self, answer_len: usize) -> Criteria {
        match self {
            Score::AnswerLogprob => Criteria {
                flat_range: 0.05 * answer_len.max(1) as f64,
                score_min: f64::NEG_INFINITY,
                score_max: 0.0,
                ..Criteria::default()
            },
            Score::NegBrier => Criteria {
                score_min: -2.0,
                score_max: 0.0,
                ..Criteria::default()
            },
            _ => Criteria::default(),
        }
    }

    /// Whether a sharp rise of this score makes a jump in exact match genuine in Schaeffer's
    /// test: the continuous scores that are linear (edit score) or logarithmic (answer
    /// log-probability) in the per-token probabilities. Brier squares the error, which makes a
    /// smooth per-token logistic up to 18% steeper at its steepest: it is reported, not used.
    pub fn is_continuous(self) -> bool {
        matches!(self, Score::AnswerLogprob | Score::EditScore)
    }

    /// Whether the score is a fraction of validation examples (or of their tokens), so that
    /// its noise is at least binomial.
    pub fn is_fraction(self) -> bool {
        matches!(self, Score::ExactMatch | Score::TokenAccuracy)
    }
}

/// The x axis of a threshold fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scale {
    Params,
    /// Kaplan et al.'s N: embeddings and unembedding left out.
    ParamsNonEmbedding,
    Flops,
    /// A swept numeric axis (dotted job key), for groups compared over it.
    Axis(String),
}

impl Scale {
    pub const MODEL: [Scale; 3] = [Scale::Params, Scale::ParamsNonEmbedding, Scale::Flops];

    /// The scales a group is fitted over: its axis, or the model's size.
    pub fn of_group(group: &Group<'_>) -> Vec<Scale> {
        match &group.over {
            Some(key) => vec![Scale::Axis(key.clone())],
            None => Scale::MODEL.to_vec(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scale::Params => "params",
            Scale::ParamsNonEmbedding => "params_non_embedding",
            Scale::Flops => "flops",
            Scale::Axis(key) => key,
        }
    }

    /// The job's position on this axis; NaN (left out of fits) when it has no numeric value.
    pub fn of(&self, job: &JobRecord) -> f64 {
        match self {
            Scale::Params => job.counts.total as f64,
            Scale::ParamsNonEmbedding => job.counts.non_embedding as f64,
            Scale::Flops => job.train_flops(),
            Scale::Axis(key) => job.axes.get(key).and_then(numeric).unwrap_or(f64::NAN),
        }
    }
}

/// Jobs whose final scores enter a fit: finished ones. Running, resumable or failed runs stopped
/// early and would read as smaller models; diverged runs have no trustworthy final score.
pub fn fitted_jobs<'a>(group: &Group<'a>) -> Vec<&'a JobRecord> {
    group
        .jobs
        .iter()
        .copied()
        .filter(|j| j.state == JobState::Done)
        .collect()
}

/// `(scale, score, seed)` of every done job of the group that recorded the metric.
pub fn points(group: &Group<'_>, score: Score, scale: &Scale) -> Vec<(f64, f64, u64)> {
    fitted_jobs(group)
        .into_iter()
        .filter_map(|j| Some((scale.of(j), score.of(j)?, j.spec.seed)))
        .collect()
}

/// One row of `thresholds.csv`.
#[derive(Debug, Clone)]
pub struct ThresholdRow {
    pub group: usize,
    pub score: Score,
    pub scale: Scale,
    pub n_jobs: usize,
    pub answer_len: usize,
    pub report: ThresholdReport,
    /// Exact-match rows only, when exact match jumps and the per-position accuracies were
    /// recorded: is the jump made by the metric?
    pub schaeffer: Option<SchaefferReport>,
    /// Validation loss over the same scale, `L = E + A N^-alpha`: the smooth law beside the
    /// threshold (the same for every score of a group and scale).
    pub loss_fit: Option<PowerLawFit>,
    /// The larger sizes forecast from those below the threshold (Wei et al.'s predictability).
    pub forecast: Option<Forecast>,
    /// The threshold placed the same way at log-spaced eval steps: threshold(t).
    pub over_steps: Vec<StepThreshold>,
    /// Whether the threshold still moved over the last doubling of steps.
    pub budget_limited: Option<bool>,
    /// Median over the runs that acquired of their rise over training, in decades of steps
    /// (10% to 90% of the way from their first to their last score): how sharply each run
    /// acquires.
    pub run_rise_decades: Option<f64>,
}

/// Eval steps at which threshold(t) is placed: the last and the first at or after each of its
/// halvings, 8 in all at most.
pub const THRESHOLD_STEPS: usize = 8;

/// Every (group, score, scale) fit, in group order, then scale, then score.
pub fn threshold_rows(groups: &[Group<'_>]) -> Vec<ThresholdRow> {
    let val_examples: Vec<Option<u64>> = groups.iter().map(val_examples).collect();
    // The seed bootstrap dominates the cost (4000 logistic fits per row): fit rows in parallel.
    let work: Vec<(usize, Scale, Score)> = (0..groups.len())
        .flat_map(|gi| {
            Scale::of_group(&groups[gi])
                .into_iter()
                .flat_map(move |scale| {
                    Score::ALL
                        .into_iter()
                        .map(move |score| (gi, scale.clone(), score))
                })
        })
        .collect();
    let reports: Vec<ThresholdReport> = work
        .par_iter()
        .map(|(gi, scale, score)| fit(&groups[*gi], *score, scale, val_examples[*gi]))
        .collect();

    // Schaeffer's test needs the exact-match report of its (group, scale) and whether the
    // continuous scores of the same (group, scale) rise sharply: a second pass.
    let continuous_jump = |gi: usize, scale: &Scale| {
        work.iter().zip(&reports).any(|((g, s, score), r)| {
            *g == gi && s == scale && score.is_continuous() && r.rises_sharply()
        })
    };
    let schaeffer: Vec<Option<SchaefferReport>> = work
        .par_iter()
        .zip(&reports)
        .map(|((gi, scale, score), report)| {
            if *score != Score::ExactMatch {
                return None;
            }
            let group = &groups[*gi];
            let (metric, jobs) = job_scores(group, scale);
            schaeffer_test(
                &jobs,
                metric,
                report,
                continuous_jump(*gi, scale),
                &score.criteria(answer_len(group)),
                val_examples[*gi],
                SCHAEFFER_RESAMPLES,
                BOOTSTRAP_SEED,
            )
        })
        .collect();

    // Forecasts and threshold(t) refit every row at several steps: in parallel, in order.
    let rows: Vec<_> = work.into_iter().zip(reports).zip(schaeffer).collect();
    rows.into_par_iter()
        .map(|(((gi, scale, score), report), schaeffer)| {
            let group = &groups[gi];
            let over_steps = over_steps(group, score, &scale, &report, val_examples[gi]);
            ThresholdRow {
                group: gi,
                score,
                loss_fit: fit_power_law(&loss_points(group, &scale)),
                forecast: report
                    .x0
                    .and_then(|x0| forecast(&points(group, score, &scale), x0)),
                budget_limited: budget_limited(&over_steps),
                over_steps,
                run_rise_decades: run_rise_decades(group, score, &report),
                scale,
                n_jobs: fitted_jobs(group).len(),
                answer_len: answer_len(group),
                report,
                schaeffer,
            }
        })
        .collect()
}

/// The threshold of one (group, score, scale), exactly as its row of `thresholds.csv` has it:
/// what `elab refine` reads to decide where to add sizes.
pub fn group_threshold(group: &Group<'_>, score: Score, scale: &Scale) -> ThresholdReport {
    fit(group, score, scale, val_examples(group))
}

/// The distinct log10 positions of the group's fitted jobs on `scale`, sorted: the ladder the
/// threshold of [`group_threshold`] was placed on.
pub fn fitted_ladder(group: &Group<'_>, scale: &Scale) -> Vec<f64> {
    let mut xs: Vec<f64> = fitted_jobs(group)
        .into_iter()
        .map(|j| scale.of(j).log10())
        .filter(|x| x.is_finite())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

/// One fit; `val_examples` sets the binomial noise floor of fraction scores.
fn fit(
    group: &Group<'_>,
    score: Score,
    scale: &Scale,
    val_examples: Option<u64>,
) -> ThresholdReport {
    analyze_threshold(
        &points(group, score, scale),
        &score.criteria(answer_len(group)),
        if score.is_fraction() {
            val_examples
        } else {
            None
        },
        BOOTSTRAP,
        BOOTSTRAP_SEED,
    )
}

/// threshold(t) of one (group, score, scale): the report's way of placing the rise, at
/// log-spaced eval steps of the group's first job (each job's last eval at or before the step).
fn over_steps(
    group: &Group<'_>,
    score: Score,
    scale: &Scale,
    last: &ThresholdReport,
    val_examples: Option<u64>,
) -> Vec<StepThreshold> {
    let jobs = fitted_jobs(group);
    let curves: Vec<(&JobRecord, Vec<(u64, f64)>)> =
        jobs.iter().map(|j| (*j, score.curve(j))).collect();
    let Some((_, first)) = curves.first() else {
        return Vec::new();
    };
    let steps: Vec<u64> = first.iter().map(|p| p.0).collect();
    let at = |step: u64| -> Vec<(f64, f64, u64)> {
        curves
            .iter()
            .filter_map(|(j, c)| {
                let v = c.iter().rev().find(|p| p.0 <= step)?.1;
                Some((scale.of(j), v, j.spec.seed))
            })
            .collect()
    };
    let data: Vec<(u64, Points)> = log_spaced(&steps, THRESHOLD_STEPS)
        .into_iter()
        .map(|s| (s, at(s)))
        .collect();
    let n_val = if score.is_fraction() {
        val_examples
    } else {
        None
    };
    threshold_over_steps(&data, last, &score.criteria(answer_len(group)), n_val)
}

/// Median over the runs that acquired (final score at or above the report's level) of their
/// rise over training in decades of steps.
fn run_rise_decades(group: &Group<'_>, score: Score, report: &ThresholdReport) -> Option<f64> {
    let level = report.acquire_level?;
    let rises: Vec<f64> = fitted_jobs(group)
        .into_iter()
        .filter(|j| score.of(j).is_some_and(|v| v >= level))
        .filter_map(|j| rise_decades(&score.curve(j)))
        .collect();
    elab_analysis::stats::median(&rises)
}

/// `(scale, final validation loss, seed)` of every done job of the group.
fn loss_points(group: &Group<'_>, scale: &Scale) -> Vec<(f64, f64, u64)> {
    fitted_jobs(group)
        .into_iter()
        .filter_map(|j| Some((scale.of(j), j.final_value(Split::Val, "loss")?, j.spec.seed)))
        .collect()
}

/// Resamples for Schaeffer's test (each refits every answer position; per-position p-values
/// get at least 2 L / alpha, see `elab_analysis::position_resamples`).
pub const SCHAEFFER_RESAMPLES: usize = 200;

/// Every done job's final exact match and per-position validation scores: the probability of
/// the right token (exp of `token_logprob.pos<i>`) where every job recorded it, else the
/// teacher-forced accuracy (`token_accuracy.pos<i>`); empty if jobs lack both (records from
/// before either existed).
fn job_scores(group: &Group<'_>, scale: &Scale) -> (PositionMetric, Vec<JobScores>) {
    let l = answer_len(group);
    let of = |name: &str, f: fn(f64) -> f64| -> Option<Vec<JobScores>> {
        fitted_jobs(group)
            .into_iter()
            .map(|j| {
                Some(JobScores {
                    scale: scale.of(j),
                    seed: j.spec.seed,
                    exact_match: j.final_value(Split::Val, "exact_match")?,
                    positions: (0..l)
                        .map(|i| j.final_value(Split::Val, &format!("{name}.pos{i}")).map(f))
                        .collect::<Option<_>>()?,
                })
            })
            .collect()
    };
    match of("token_logprob", f64::exp) {
        Some(jobs) => (PositionMetric::Probability, jobs),
        None => (
            PositionMetric::Accuracy,
            of("token_accuracy", |v| v).unwrap_or_default(),
        ),
    }
}

/// Validation examples scored at each eval (the task's validation set, capped by
/// `eval.max_val_examples`), from the group's first job; `None` for an empty group. Generating
/// the split is the only way to count it for every task, and it takes milliseconds.
pub(crate) fn val_examples(group: &Group<'_>) -> Option<u64> {
    let spec = &group.jobs.first()?.spec;
    let n = spec.task.generate(spec.seed).val.len();
    let cap = spec.eval.max_val_examples;
    Some(if cap == 0 { n } else { n.min(cap) } as u64)
}

/// A group shares its task, hence its answer length.
fn answer_len(group: &Group<'_>) -> usize {
    group.jobs.first().map_or(1, |j| j.answer_len)
}
