//! Schaeffer et al.'s test (2023): is a jump in exact match made by the metric? If per-token
//! accuracy p improves smoothly with scale, exact match over an L-token answer is about p^L,
//! which can look like a jump on a log axis. The test fits a smooth curve to every answer
//! position's accuracy, predicts the exact-match curve as their product, and compares its
//! threshold with the observed one; if some position's accuracy itself jumps, the jump is
//! genuine. See docs/analysis.md.

use std::fmt;

use elab_tasks::SplitMix64;
use serde::Serialize;

use crate::emergence::{
    Criteria, LogisticFit, ThresholdReport, fit_logistic, fit_smooth, test_smooth,
};
use crate::stats;

/// Exact match expected from independent tokens: `p^L`. `answer_len` may be a mean length, in
/// which case this is only an approximation (`E[p^L] >= p^E[L]` by Jensen).
pub fn expected_exact_match(token_accuracy: f64, answer_len: f64) -> f64 {
    token_accuracy.powf(answer_len)
}

/// What made a jump in exact match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Attribution {
    /// Every position's accuracy is smooth, and the product of the smooth curves puts the
    /// threshold where exact match has it (the two thresholds' intervals overlap).
    #[serde(rename = "metric-induced")]
    MetricInduced,
    /// Some position's accuracy jumps too (the smooth null is rejected for it).
    #[serde(rename = "genuine")]
    Genuine,
    /// The per-token accuracies are smooth, but their product does not place the threshold
    /// where exact match has it (positions are not independent), or there is no interval.
    #[serde(rename = "unresolved")]
    Unresolved,
}

impl fmt::Display for Attribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Attribution::MetricInduced => "metric-induced",
            Attribution::Genuine => "genuine",
            Attribution::Unresolved => "unresolved",
        })
    }
}

/// One job's final validation scores.
#[derive(Debug, Clone)]
pub struct JobScores {
    pub scale: f64,
    pub seed: u64,
    pub exact_match: f64,
    /// Per answer position, the quantity named by [`PositionMetric`].
    pub positions: Vec<f64>,
}

/// What the per-position scores are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionMetric {
    /// exp of the mean log-probability of the right token (continuous: the test's own choice).
    Probability,
    /// Teacher-forced argmax accuracy, itself a thresholded metric (records from before
    /// per-position log-probabilities were kept).
    Accuracy,
}

/// The outcome of [`schaeffer_test`].
#[derive(Debug, Clone, Serialize)]
pub struct SchaefferReport {
    pub verdict: Attribution,
    /// What the positions' scores were.
    pub position_metric: PositionMetric,
    /// Whether a continuous score of the group (answer log-probability, edit score, Brier)
    /// rises sharply as well.
    pub continuous_jump: bool,
    /// Answer positions tested.
    pub positions: usize,
    /// Smallest p-value of the smooth null over the positions' accuracies tested (in order,
    /// up to the first that jumps); a position jumps when its p-value is below
    /// alpha / positions (Bonferroni) and its rise is sharp.
    pub token_p_smooth_min: Option<f64>,
    /// The first position whose accuracy jumps, if any.
    pub jumping_position: Option<usize>,
    /// Threshold of the predicted exact match (the product of the positions' smooth fits),
    /// measured as exact match's: midpoint of a logistic fitted to it at the ladder's sizes.
    pub predicted_x0: Option<f64>,
    /// Its interval: seed-block bootstrap percentiles widened by t_{m-1}/z, as for x0.
    pub predicted_x0_low: Option<f64>,
    pub predicted_x0_high: Option<f64>,
    /// Max over sizes of |mean observed exact match - mean over seeds of the product of that
    /// job's per-position accuracies| (per job, so seeds that differ do not bias it).
    pub max_gap: Option<f64>,
    /// (log10 scale, predicted exact match) across the ladder, for plots.
    #[serde(skip)]
    pub predicted_curve: Vec<(f64, f64)>,
}

/// Resamples for each position's test: enough that a p-value can fall below alpha / L.
pub fn position_resamples(positions: usize, alpha: f64, at_least: usize) -> usize {
    at_least.max((2.0 * positions as f64 / alpha).ceil() as usize)
}

/// Schaeffer's test for one group, given the observed exact-match report, every job's
/// per-position scores (`metric` says which) and whether a continuous score of the group
/// (answer log-probability, edit score, Brier) rises sharply too. `None` when there is no jump
/// to explain (exact match does not rise sharply) or the per-position scores are missing.
///
/// `genuine` needs a continuous metric that jumps: a position's probability of the right
/// token, or one of the group's continuous scores. A jump in argmax accuracy alone is itself
/// thresholded and settles nothing.
#[allow(clippy::too_many_arguments)]
pub fn schaeffer_test(
    jobs: &[JobScores],
    metric: PositionMetric,
    exact: &ThresholdReport,
    continuous_jump: bool,
    criteria: &Criteria,
    n_val: Option<u64>,
    resamples: usize,
    rng_seed: u64,
) -> Option<SchaefferReport> {
    let jumped = exact.rises_sharply();
    let l = jobs.first()?.positions.len();
    if !jumped || l == 0 || jobs.iter().any(|j| j.positions.len() != l) {
        return None;
    }
    let position_points = |i: usize| -> Vec<(f64, f64, u64)> {
        jobs.iter()
            .map(|j| (j.scale, j.positions[i], j.seed))
            .collect()
    };
    let b = position_resamples(l, criteria.alpha, resamples);
    let mut p_min: Option<f64> = None;
    let mut jumping = None;
    for i in 0..l {
        let r = test_smooth(&position_points(i), criteria, n_val, b, rng_seed + i as u64);
        let p = r.p_smooth?;
        p_min = Some(p_min.map_or(p, |m| m.min(p)));
        let sharp = r.rises_sharply();
        if sharp && p < criteria.alpha / l as f64 {
            // One jumping position settles the verdict; the rest need not be tested.
            jumping = Some(i);
            break;
        }
    }
    let xs: Vec<f64> = jobs.iter().map(|j| j.scale.log10()).collect();
    let (lo, hi) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let mut sizes = xs.clone();
    sizes.sort_by(f64::total_cmp);
    sizes.dedup();
    // The product of the positions' smooth fits, and its threshold measured as exact match's
    // is (the midpoint of a logistic fitted at the ladder's sizes): p^L is not a logistic, so
    // any other definition would differ from the observed x0 by the shape alone.
    let predictor = |jobs: &[JobScores]| -> Option<Vec<LogisticFit>> {
        (0..l)
            .map(|i| {
                let pts: Vec<_> = jobs
                    .iter()
                    .map(|j| (j.scale, j.positions[i], j.seed))
                    .collect();
                fit_smooth(&pts, criteria, n_val)
            })
            .collect()
    };
    let product = |fits: &[LogisticFit], x: f64| {
        fits.iter()
            .map(|f| f.at(x).clamp(0.0, 1.0))
            .product::<f64>()
    };
    let threshold = |fits: &[LogisticFit]| {
        let ys: Vec<f64> = sizes.iter().map(|&x| product(fits, x)).collect();
        fit_logistic(&sizes, &ys).map(|f| f.x0)
    };
    let fits = predictor(jobs)?;
    let predicted_x0 = threshold(&fits);
    let predicted_curve = (0..=60)
        .map(|i| {
            let x = lo + (hi - lo) * i as f64 / 60.0;
            (x, product(&fits, x))
        })
        .collect();

    // Seed-block bootstrap of the predicted threshold: whole seeds drawn with replacement,
    // each draw relabelled so that a seed drawn twice counts as two blocks.
    let mut seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let m = seeds.len();
    let mut rng = SplitMix64::new(rng_seed ^ 0x5c4a_effe);
    let mut draws = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let sample: Vec<JobScores> = (0..m)
            .flat_map(|d| {
                let seed = seeds[rng.below(m as u64) as usize];
                jobs.iter()
                    .filter(move |j| j.seed == seed)
                    .map(move |j| JobScores {
                        seed: d as u64,
                        ..j.clone()
                    })
            })
            .collect();
        if let Some(x) = predictor(&sample).and_then(|f| threshold(&f)) {
            draws.push(x);
        }
    }
    let widen = if m > 1 {
        stats::t975(m - 1) / stats::Z975
    } else {
        1.0
    };
    let (predicted_x0_low, predicted_x0_high) = match (
        predicted_x0,
        stats::quantile(&draws, 0.025),
        stats::quantile(&draws, 0.975),
    ) {
        (Some(x), Some(a), Some(b)) => (
            Some(x - widen * (x - a).max(0.0)),
            Some(x + widen * (b - x).max(0.0)),
        ),
        _ => (None, None),
    };

    let position_jumps = jumping.is_some() && metric == PositionMetric::Probability;
    let verdict = if position_jumps || continuous_jump {
        Attribution::Genuine
    } else {
        // The two thresholds agree when their intervals overlap.
        let agree = predicted_x0_low
            .zip(predicted_x0_high)
            .zip(exact.x0_ci_low.zip(exact.x0_ci_high))
            .is_some_and(|((a, b), (c, d))| a <= d && c <= b);
        if agree {
            Attribution::MetricInduced
        } else {
            Attribution::Unresolved
        }
    };
    Some(SchaefferReport {
        verdict,
        position_metric: metric,
        continuous_jump,
        positions: l,
        token_p_smooth_min: p_min,
        jumping_position: jumping,
        predicted_x0,
        predicted_x0_low,
        predicted_x0_high,
        max_gap: max_product_gap(jobs),
        predicted_curve,
    })
}

/// Max over sizes of |mean exact match - mean product of per-position accuracies|.
fn max_product_gap(jobs: &[JobScores]) -> Option<f64> {
    let mut scales: Vec<f64> = jobs.iter().map(|j| j.scale).collect();
    scales.sort_by(f64::total_cmp);
    scales.dedup();
    scales
        .iter()
        .map(|&s| {
            let at: Vec<_> = jobs.iter().filter(|j| j.scale == s).collect();
            let n = at.len() as f64;
            let em = at.iter().map(|j| j.exact_match).sum::<f64>() / n;
            let pred = at
                .iter()
                .map(|j| j.positions.iter().product::<f64>())
                .sum::<f64>()
                / n;
            (em - pred).abs()
        })
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergence::analyze_threshold;

    #[test]
    fn expected_exact_match_is_p_to_the_l() {
        assert!((expected_exact_match(0.9, 2.0) - 0.81).abs() < 1e-12);
        assert!((expected_exact_match(0.5, 5.0) - 0.03125).abs() < 1e-12);
        assert_eq!(expected_exact_match(1.0, 20.0), 1.0);
    }

    const N_VAL: u64 = 2000;

    /// 17 sizes (log10 3..7), 8 seeds (enough to tell a jump in exact match from a lottery), `l` positions each with accuracy `p(x)` plus seed and
    /// binomial noise; exact match is the product of the positions' accuracies (independent
    /// tokens) plus binomial noise.
    fn jobs(l: usize, p: impl Fn(f64) -> f64, rng_seed: u64) -> Vec<JobScores> {
        let mut rng = SplitMix64::new(rng_seed);
        let mut out = Vec::new();
        for i in 0..17 {
            let x = 3.0 + 0.25 * i as f64;
            for seed in 0..8 {
                let noisy = |v: f64, rng: &mut SplitMix64| {
                    let sd = (v * (1.0 - v) / N_VAL as f64).sqrt();
                    (v + sd * stats::normal(rng)).clamp(0.0, 1.0)
                };
                let positions: Vec<f64> = (0..l)
                    .map(|_| {
                        let v = (p(x) + 0.003 * stats::normal(&mut rng)).clamp(0.0, 1.0);
                        noisy(v, &mut rng)
                    })
                    .collect();
                let em = noisy(positions.iter().product(), &mut rng);
                out.push(JobScores {
                    scale: 10f64.powf(x),
                    seed,
                    exact_match: em,
                    positions,
                });
            }
        }
        out
    }

    fn run(jobs: &[JobScores]) -> (ThresholdReport, Option<SchaefferReport>) {
        let c = Criteria::default();
        let em: Vec<_> = jobs
            .iter()
            .map(|j| (j.scale, j.exact_match, j.seed))
            .collect();
        let exact = analyze_threshold(&em, &c, Some(N_VAL), 400, 7);
        let s = schaeffer_test(
            jobs,
            PositionMetric::Probability,
            &exact,
            false,
            &c,
            Some(N_VAL),
            199,
            11,
        );
        (exact, s)
    }

    #[test]
    fn smooth_tokens_to_the_power_l_are_metric_induced() {
        // Per-token accuracy: a logistic 1.2 decades wide (smooth by the criterion) from 0.5 to
        // 1; over a 20-token answer its product jumps within about 0.8 decades.
        let k = 81f64.ln() / 1.2;
        let p = |x: f64| 0.5 + 0.5 / (1.0 + (-k * (x - 4.5)).exp());
        let jobs = jobs(20, p, 1);
        let (exact, s) = run(&jobs);
        assert!(exact.rises_sharply(), "{exact:?}");
        assert!(exact.width_decades.unwrap() < 1.0);
        let s = s.expect("a jump to explain");
        assert_eq!(s.verdict, Attribution::MetricInduced, "{s:?} {exact:?}");
        assert_eq!((s.positions, s.jumping_position), (20, None));
        assert!(s.max_gap.unwrap() < 0.05, "{s:?}");
        let (x, obs) = (s.predicted_x0.unwrap(), exact.x0.unwrap());
        assert!((x - obs).abs() < 0.15, "predicted {x}, observed {obs}");
    }

    #[test]
    fn jumping_tokens_are_genuine() {
        // Per-token accuracy itself jumps (0.3 decades wide) from 0.4 to 0.99 at 10^5.2.
        let k = 81f64.ln() / 0.3;
        let p = |x: f64| 0.4 + 0.59 / (1.0 + (-k * (x - 5.2)).exp());
        let jobs = jobs(4, p, 2);
        let (exact, s) = run(&jobs);
        let s = s.expect("a jump to explain");
        assert_eq!(s.verdict, Attribution::Genuine, "{s:?} {exact:?}");
        assert_eq!(s.jumping_position, Some(0));
        assert!(s.token_p_smooth_min.unwrap() < 0.05 / 4.0);
    }

    #[test]
    fn no_jump_no_test_and_missing_positions() {
        // Exact match that rises slowly (p^1 with a wide p) has nothing to explain.
        let p = |x: f64| 0.1 + 0.05 * x;
        let (_, s) = run(&jobs(1, p, 3));
        assert!(s.is_none());
        let mut js = jobs(4, |x| 0.4 + 0.59 / (1.0 + (-20.0 * (x - 5.2)).exp()), 4);
        js[0].positions.pop();
        assert!(run(&js).1.is_none());
    }

    #[test]
    fn dependent_positions_are_not_explained_by_the_product() {
        // Smooth per-token accuracy, but positions fail together (exact match = p, not p^L):
        // the product predicts a threshold far above the observed one.
        let k = 81f64.ln() / 1.2;
        let p = |x: f64| 0.5 + 0.5 / (1.0 + (-k * (x - 4.5)).exp());
        let mut js = jobs(20, p, 5);
        // Exact match jumps as a sharp logistic at 10^4.2, well below p^20's threshold.
        for j in &mut js {
            let x = j.scale.log10();
            j.exact_match = 0.9 / (1.0 + (-20.0 * (x - 4.2)).exp());
        }
        let (exact, s) = run(&js);
        let s = s.expect("a jump to explain");
        assert_eq!(s.verdict, Attribution::Unresolved, "{s:?} {exact:?}");
        assert!(s.max_gap.unwrap() > 0.3);
    }
}
