//! Thresholds over scale for every comparison group, metric and scale (params, FLOPs), with
//! Schaeffer's test on the exact-match rows. Pure computation on loaded records.

use elab_analysis::{
    Criteria, JobScores, PowerLawFit, SchaefferReport, ThresholdReport, analyze_threshold,
    fit_power_law, schaeffer_test,
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
        Some(match self {
            Score::EditScore => 1.0 - v / job.answer_len.max(1) as f64,
            Score::NegBrier => -v,
            _ => v,
        })
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
}

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

    // Schaeffer's test needs the exact-match report of its (group, scale): a second pass.
    let schaeffer: Vec<Option<SchaefferReport>> = work
        .par_iter()
        .zip(&reports)
        .map(|((gi, scale, score), report)| {
            if *score != Score::ExactMatch {
                return None;
            }
            let group = &groups[*gi];
            schaeffer_test(
                &job_scores(group, scale),
                report,
                &score.criteria(answer_len(group)),
                val_examples[*gi],
                SCHAEFFER_RESAMPLES,
                BOOTSTRAP_SEED,
            )
        })
        .collect();

    work.into_iter()
        .zip(reports)
        .zip(schaeffer)
        .map(|(((gi, scale, score), report), schaeffer)| ThresholdRow {
            group: gi,
            score,
            loss_fit: fit_power_law(&loss_points(&groups[gi], &scale)),
            scale,
            n_jobs: fitted_jobs(&groups[gi]).len(),
            answer_len: answer_len(&groups[gi]),
            report,
            schaeffer,
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

/// Every done job's final exact match and per-position validation accuracies
/// (`token_accuracy.pos<i>`); empty if any job lacks them (records from before they existed).
fn job_scores(group: &Group<'_>, scale: &Scale) -> Vec<JobScores> {
    let l = answer_len(group);
    let jobs: Option<Vec<JobScores>> = fitted_jobs(group)
        .into_iter()
        .map(|j| {
            Some(JobScores {
                scale: scale.of(j),
                seed: j.spec.seed,
                exact_match: j.final_value(Split::Val, "exact_match")?,
                positions: (0..l)
                    .map(|i| j.final_value(Split::Val, &format!("token_accuracy.pos{i}")))
                    .collect::<Option<_>>()?,
            })
        })
        .collect();
    jobs.unwrap_or_default()
}

/// Validation examples scored at each eval (the task's validation set, capped by
/// `eval.max_val_examples`), from the group's first job; `None` for an empty group. Generating
/// the split is the only way to count it for every task, and it takes milliseconds.
fn val_examples(group: &Group<'_>) -> Option<u64> {
    let spec = &group.jobs.first()?.spec;
    let n = spec.task.generate(spec.seed).val.len();
    let cap = spec.eval.max_val_examples;
    Some(if cap == 0 { n } else { n.min(cap) } as u64)
}

/// A group shares its task, hence its answer length.
fn answer_len(group: &Group<'_>) -> usize {
    group.jobs.first().map_or(1, |j| j.answer_len)
}
