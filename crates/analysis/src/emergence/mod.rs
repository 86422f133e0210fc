//! Emergence over scale: is a score's rise over x = log10(scale) sharper than any smooth curve
//! can explain, given the spread between seeds? Logistic fits, a smooth null, a seed-block
//! bootstrap (for the test's null distribution, the threshold interval and the verdict's
//! stability), BIG-bench breakthroughness. The statistics and their measured calibration are
//! described in docs/analysis.md.

use elab_tasks::SplitMix64;
use serde::Serialize;

use crate::stats;

pub mod acquisition;
#[cfg(test)]
mod calibration;
mod decide;
mod fit;
mod noise;
pub mod over_steps;

use acquisition::{Counts, Split, population_test};
pub use decide::{Criteria, Unresolved, Verdict};
use decide::{bracket, compare, decide, range, sharp};
pub use fit::{LineFit, LogisticFit, Shape as RiseShape, breakthroughness, fit_line, fit_logistic};
use fit::{Shape, fit_either, width_of};
use noise::{NoiseModel, Table};

/// Whether a `(scale, score, seed)` point can enter a fit: a positive, finite scale (its log is
/// the x axis) and a finite score. Every fit and count of runs uses this one rule.
pub fn usable(p: &(f64, f64, u64)) -> bool {
    p.0.is_finite() && p.0 > 0.0 && p.1.is_finite()
}

/// Fewest distinct sizes for any verdict: the logistic has 4 parameters, and with 4 sizes it
/// nearly interpolates anything, so the test against the smooth null has nothing left to judge.
pub const MIN_SIZES: usize = 5;

/// Everything measured about one score over scale. Flat fields so it writes as one CSV row.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdReport {
    /// The verdict under the criteria used.
    pub verdict: Verdict,
    /// Distinct sizes.
    pub n_sizes: usize,
    /// Fewest seeds at any size.
    pub min_seeds: usize,
    /// Distinct seeds: the blocks the bootstrap resamples.
    pub n_seeds: usize,
    /// max - min of the per-size mean scores.
    pub score_range: f64,
    /// Logistic midpoint, log10(scale).
    pub x0: Option<f64>,
    /// 10^x0, in the units of scale.
    pub threshold: Option<f64>,
    /// 10%-90% width of the logistic, in decades.
    pub width_decades: Option<f64>,
    /// Logistic lower asymptote.
    pub y0: Option<f64>,
    /// Logistic upper asymptote.
    pub y1: Option<f64>,
    /// R^2 of the logistic (on the per-size means, weighted by seeds).
    pub r2_logistic: Option<f64>,
    /// R^2 of the line (on the per-size means).
    pub r2_line: Option<f64>,
    /// BIC(line) - BIC(logistic) on the per-size means; positive favours the logistic.
    /// Descriptive only: the verdict uses the bootstrap test.
    pub delta_bic: Option<f64>,
    /// BIG-bench breakthroughness of the per-size means.
    pub breakthroughness: Option<f64>,
    /// p-value of the smooth null (a logistic at least `max_width_decades` wide) against the free
    /// logistic, from the seed-block bootstrap; `None` without resamples or a noise model.
    pub p_smooth: Option<f64>,
    /// Share of seed-block resamples of the data whose verdict equals `verdict`.
    pub stability: Option<f64>,
    /// Lower end of the threshold interval (log10 scale): the expanded seed-block bootstrap
    /// interval of x0, or the gap between the bracketing sizes when the rise falls between them.
    pub x0_ci_low: Option<f64>,
    /// Upper end of the threshold interval.
    pub x0_ci_high: Option<f64>,
    /// Why a verdict is `unresolved`, and which sizes (or seeds) to add.
    pub reason: Option<Unresolved>,
    /// Whether the verdict was made on acquisition (runs two-state: each acquired or not) rather
    /// than on per-size means. x0, the width, their intervals and `p_smooth` then belong to the
    /// acquisition fit, and y0 / y1 are the mean scores of the runs that did not / did acquire.
    pub two_state: bool,
    /// The score at which a run counts as acquired: midway between the lowest and highest run.
    pub acquire_level: Option<f64>,
    /// Share of runs in the middle half between the lowest and highest run score (two-state
    /// when at most [`acquisition::TWO_STATE_MAX_MIDDLE`]).
    pub middle_share: Option<f64>,
    /// Runs fitted, and how many acquired.
    pub runs: usize,
    pub runs_acquired: usize,
    /// Sizes where some runs acquired and some did not.
    pub mixed_sizes: usize,
    /// The probability of acquiring, fitted by logistic regression on the runs: its midpoint
    /// (log10 scale) with a 95% profile-likelihood interval, and its 10%-90% width in decades
    /// with its interval. Reported for every group; decisive only when `two_state`.
    pub acq_x0: Option<f64>,
    pub acq_x0_low: Option<f64>,
    pub acq_x0_high: Option<f64>,
    pub acq_width_decades: Option<f64>,
    pub acq_width_low: Option<f64>,
    pub acq_width_high: Option<f64>,
    /// p-value of "the share that acquires rises within less than the criterion width" (the
    /// sharp null); small for a lottery. Two-state runs only.
    pub p_sharp: Option<f64>,
}

impl ThresholdReport {
    /// The human-readable reason for an `unresolved` verdict.
    pub fn note(&self) -> Option<String> {
        self.reason.map(|r| r.to_string())
    }

    /// Whether the score rises more sharply than the criterion: `emergent`, or `unresolved`
    /// only because the ladder cannot place the sharp rise (not for want of seeds).
    pub fn rises_sharply(&self) -> bool {
        match self.verdict {
            Verdict::Emergent => true,
            Verdict::Unresolved => !matches!(self.reason, Some(Unresolved::TooFewSeeds) | None),
            _ => false,
        }
    }

    /// The two sizes (log10) a rise falls between, when that is why it is unresolved.
    pub fn between_sizes(&self) -> Option<(f64, f64)> {
        match self.reason {
            Some(Unresolved::BetweenSizes { below, above }) => Some((below.log10(), above.log10())),
            _ => None,
        }
    }
}

/// The smooth null fitted to `(scale, score, seed)` points: the best logistic at least
/// `max_width_decades` wide with asymptotes in the score's range, on per-size means weighted as
/// in [`analyze_threshold`]. `None` with fewer than 4 sizes.
pub fn fit_smooth(
    points: &[(f64, f64, u64)],
    criteria: &Criteria,
    n_val: Option<u64>,
) -> Option<LogisticFit> {
    let t = Table::new(points, n_val);
    let s = t.summary(&t.values, &t.variances());
    let k_null = width_of(criteria.max_width_decades.max(1e-9));
    let bounds = (criteria.score_min, criteria.score_max);
    fit_either(&s.xs, &s.means, &s.weights, k_null, bounds)
}

/// Per-scale means: `(scale, mean score, seeds)`, sorted by scale (for plots and tables).
pub fn mean_by_scale(points: &[(f64, f64, u64)]) -> Vec<(f64, f64, usize)> {
    size_summary(points)
        .into_iter()
        .map(|(scale, m, seeds, _)| (scale, m, seeds))
        .collect()
}

/// Per scale, sorted: `(scale, mean score, seeds, unbiased variance between the seeds)` (0 with
/// one seed), from the same seed table the fits use.
pub(crate) fn size_summary(points: &[(f64, f64, u64)]) -> Vec<(f64, f64, usize, f64)> {
    let t = Table::new(points, None);
    let s = t.summary(&t.values, &t.variances());
    t.scales
        .iter()
        .zip(s.means)
        .zip(t.seed_variances())
        .enumerate()
        .map(|(i, ((&scale, m), v))| (scale, m, t.seeds_at(i), v))
        .collect()
}

/// Classify one score per size (x = log10 scale, y = the score, one seed): the same test as
/// [`analyze_threshold`], with the noise estimated from the free fit's residuals.
pub fn classify(xs: &[f64], ys: &[f64], criteria: &Criteria) -> Verdict {
    let points: Vec<_> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (10f64.powf(*x), *y, 0))
        .collect();
    analyze_threshold(&points, criteria, None, 199, 0).verdict
}

/// Analyse `(scale, score, seed)` points: per-size means weighted by seeds, a free logistic in
/// log10(scale) against the smooth null (logistics at least `max_width_decades` wide), a
/// verdict, and a seed-block bootstrap (`resamples` draws, reproducible from `rng_seed`).
///
/// `n_val` is the number of validation examples behind each score when the score is a
/// fraction of them (exact match, token accuracy): it sets a floor of binomial noise, so that
/// seeds that agree by chance (all at 0, say) do not make the noise look like zero.
///
/// The bootstrap draws whole seeds (one seed's scores at every size), adds the floor noise,
/// and serves three purposes: around the null fit it gives the statistic's null distribution
/// (the p-value); around the observed means it gives x0's interval (percentiles widened by
/// t_{m-1}/z for m seeds, since a percentile interval from few blocks is too narrow) and the
/// verdict's stability (share of resamples, judged against the null's critical value, that
/// agree). No p-value, interval or stability when `resamples` is 0.
pub fn analyze_threshold(
    points: &[(f64, f64, u64)],
    criteria: &Criteria,
    n_val: Option<u64>,
    resamples: usize,
    rng_seed: u64,
) -> ThresholdReport {
    analyze(points, criteria, n_val, resamples, rng_seed, true)
}

/// [`analyze_threshold`] without the data resamples: verdict and p-value only (no threshold
/// interval, no stability), at half the cost, for tests run many times over.
pub fn test_smooth(
    points: &[(f64, f64, u64)],
    criteria: &Criteria,
    n_val: Option<u64>,
    resamples: usize,
    rng_seed: u64,
) -> ThresholdReport {
    analyze(points, criteria, n_val, resamples, rng_seed, false)
}

fn analyze(
    points: &[(f64, f64, u64)],
    criteria: &Criteria,
    n_val: Option<u64>,
    resamples: usize,
    rng_seed: u64,
    describe: bool,
) -> ThresholdReport {
    let table = Table::new(points, n_val);
    let variances = table.variances();
    let summary = table.summary(&table.values, &variances);
    let means = &summary.means;
    let cmp = compare(&summary, criteria);
    let line = fit_line(&summary.xs, means);
    let plain = fit_logistic(&summary.xs, means);
    let score_range = if means.is_empty() { 0.0 } else { range(means) };

    let mut p_smooth = None;
    let mut stability = None;
    let (mut ci_low, mut ci_high) = (None, None);
    let mut verdict_note = decide(&summary, cmp.as_ref(), false, criteria);
    if let Some(c) = cmp.as_ref().filter(|_| resamples > 0) {
        let noise = NoiseModel::new(&table);
        let at = |f: &LogisticFit| -> Vec<f64> {
            let rise = f.y1 - f.y0;
            table
                .xs
                .iter()
                .map(|&x| f.y0 + rise * f.shape.basis(f.k * (x - f.x0)))
                .collect()
        };
        let mut rng = SplitMix64::new(rng_seed);
        let null_centre = at(&c.null);
        // A statistic of 0 (the free fit is itself in the null class) is matched by every
        // null draw, so p = 1 exactly; without data resamples to judge, nothing to simulate.
        let simulate = describe || c.stat > 0.0;
        let null_stats: Vec<f64> = (0..resamples * usize::from(simulate))
            .map(|_| {
                let sim = table.summary(&noise.draw(&null_centre, &mut rng), &variances);
                compare(&sim, criteria).map_or(0.0, |c| c.stat)
            })
            .collect();
        let exceed = if simulate {
            null_stats.iter().filter(|&&t| t >= c.stat).count()
        } else {
            resamples
        };
        let p = (1 + exceed) as f64 / (1 + resamples) as f64;
        p_smooth = Some(p);
        verdict_note = decide(&summary, cmp.as_ref(), p < criteria.alpha, criteria);
        // The resampled data are judged against the null distribution's critical value.
        let critical = stats::quantile(&null_stats, 1.0 - criteria.alpha).unwrap_or(f64::INFINITY);

        let observed: Vec<f64> = (0..table.xs.len() * usize::from(describe))
            .map(|i| {
                let col: Vec<f64> = table.values.iter().filter_map(|r| r[i]).collect();
                stats::mean(&col).unwrap_or(f64::NAN)
            })
            .collect();
        let mut x0s = Vec::with_capacity(resamples);
        let mut agree = 0;
        for _ in 0..resamples * usize::from(describe) {
            let sim = table.summary(&noise.draw(&observed, &mut rng), &variances);
            let sc = compare(&sim, criteria);
            let significant = sc.as_ref().is_some_and(|c| c.stat > critical);
            let (v, _) = decide(&sim, sc.as_ref(), significant, criteria);
            agree += usize::from(v == verdict_note.0);
            if let Some(sc) = sc {
                x0s.push(sc.free.x0);
            }
        }
        stability = describe.then(|| agree as f64 / resamples as f64);
        let x0 = c.free.x0;
        if let (Some(q_lo), Some(q_hi)) =
            (stats::quantile(&x0s, 0.025), stats::quantile(&x0s, 0.975))
        {
            let m = table.values.len();
            let widen = if m > 1 {
                stats::t975(m - 1) / stats::Z975
            } else {
                1.0
            };
            ci_low = Some(x0 - widen * (x0 - q_lo).max(0.0));
            ci_high = Some(x0 + widen * (q_hi - x0).max(0.0));
        }
    }
    let (verdict, reason) = verdict_note;
    // Between two rungs every x0 in the gap fits equally well: the gap is the interval.
    if let Some(c) = cmp
        .as_ref()
        .filter(|_| matches!(reason, Some(Unresolved::BetweenSizes { .. })))
    {
        let (lo, hi) = bracket(&summary.xs, c.free.x0);
        (ci_low, ci_high) = (Some(lo), Some(hi));
    }

    let g = cmp.as_ref().map(|c| &c.free);
    let mut report = ThresholdReport {
        verdict,
        n_sizes: summary.xs.len(),
        min_seeds: (0..table.xs.len())
            .map(|i| table.seeds_at(i))
            .min()
            .unwrap_or(0),
        n_seeds: table.values.len(),
        score_range,
        x0: g.map(|f| f.x0),
        threshold: g.map(|f| 10f64.powf(f.x0)),
        width_decades: g.map(|f| f.width_decades),
        y0: g.map(|f| f.y0),
        y1: g.map(|f| f.y1),
        r2_logistic: g.map(|f| f.r2),
        r2_line: line.as_ref().map(|l| l.r2),
        delta_bic: plain.zip(line.as_ref()).map(|(f, l)| l.bic - f.bic),
        breakthroughness: breakthroughness(means),
        p_smooth,
        stability,
        x0_ci_low: ci_low,
        x0_ci_high: ci_high,
        reason,
        two_state: false,
        acquire_level: None,
        middle_share: None,
        runs: 0,
        runs_acquired: 0,
        mixed_sizes: 0,
        acq_x0: None,
        acq_x0_low: None,
        acq_x0_high: None,
        acq_width_decades: None,
        acq_width_low: None,
        acq_width_high: None,
        p_sharp: None,
    };
    run_level(&mut report, points, criteria, resamples, rng_seed);
    report
}

/// The run-level view: each run acquired or not, the probability of acquiring fitted over
/// scale, and, when the runs are two-state, the verdict made on it instead of on the means
/// (a bimodal size's mean says nothing about how sharply any run, or the population, rises).
fn run_level(
    report: &mut ThresholdReport,
    points: &[(f64, f64, u64)],
    c: &Criteria,
    resamples: usize,
    rng_seed: u64,
) {
    let runs: Vec<(f64, f64, u64)> = points.iter().copied().filter(usable).collect();
    let scores: Vec<f64> = runs.iter().map(|p| p.1).collect();
    let Some(split) = Split::of(&scores) else {
        return;
    };
    let counts = Counts::new(&runs, split.level);
    report.acquire_level = Some(split.level);
    report.middle_share = Some(split.middle_share);
    report.runs = runs.len();
    report.runs_acquired = counts.hits.iter().sum::<u32>() as usize;
    report.mixed_sizes = counts.mixed_sizes();
    report.two_state = split.two_state();
    // The tests' bootstrap is only needed where they decide; elsewhere the fit is descriptive.
    let decides =
        report.two_state && !matches!(report.verdict, Verdict::NotEnoughSizes | Verdict::Flat);
    let mut rng = SplitMix64::derive(rng_seed, 0xacc);
    let resamples = if decides { resamples } else { 0 };
    let Some(test) = population_test(counts, c.max_width_decades, resamples, &mut rng) else {
        return;
    };
    let (f, counts) = (test.free, &test.counts);
    let (x_lo, x_hi) = counts.x0_interval(&f);
    let (w_lo, w_hi) = counts.width_interval(&f);
    report.acq_x0 = Some(f.x0);
    report.acq_x0_low = Some(x_lo);
    report.acq_x0_high = Some(x_hi);
    report.acq_width_decades = Some(f.width_decades);
    report.acq_width_low = Some(w_lo);
    report.acq_width_high = Some(w_hi);
    if !decides {
        return;
    }
    report.p_sharp = Some(test.p_sharp);
    report.p_smooth = Some(test.p_smooth);
    report.stability = None;
    report.x0 = Some(f.x0);
    report.threshold = Some(10f64.powf(f.x0));
    report.width_decades = Some(f.width_decades);
    report.x0_ci_low = Some(x_lo);
    report.x0_ci_high = Some(x_hi);
    let mean_of = |acquired: bool| {
        let ys: Vec<f64> = scores
            .iter()
            .copied()
            .filter(|&y| (y >= split.level) == acquired)
            .collect();
        stats::mean(&ys)
    };
    report.y0 = mean_of(false);
    report.y1 = mean_of(true);
    let alpha = c.alpha;
    (report.verdict, report.reason) = if test.p_smooth < alpha {
        sharp(&counts.xs, f.x0, f.k, Shape::Logistic, c)
    } else if test.p_sharp < alpha {
        (Verdict::Lottery, None)
    } else {
        // Neither test decides. A rise at the ladder's edge needs sizes before seeds.
        match sharp(&counts.xs, f.x0, f.k, Shape::Logistic, c) {
            (v, Some(r @ (Unresolved::TopEdge { .. } | Unresolved::BottomEdge { .. }))) => {
                (v, Some(r))
            }
            _ => (Verdict::Unresolved, Some(Unresolved::TooFewSeeds)),
        }
    };
    if let Some(Unresolved::BetweenSizes { below, above }) = report.reason {
        (report.x0_ci_low, report.x0_ci_high) = (Some(below.log10()), Some(above.log10()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes at log10 = 3.0, 3.5, ..., 7.0.
    fn grid() -> Vec<f64> {
        (0..9).map(|i| 3.0 + 0.5 * i as f64).collect()
    }

    /// Sizes at log10 = 3.0, 3.25, ..., 7.0: dense enough that 8 seeds tell a jump from a
    /// lottery.
    fn fine_grid() -> Vec<f64> {
        (0..17).map(|i| 3.0 + 0.25 * i as f64).collect()
    }

    fn logistic(x: f64) -> f64 {
        1.0 / (1.0 + (-6.0 * (x - 5.0)).exp())
    }

    #[test]
    fn noiseless_logistic_is_recovered_and_emergent() {
        let xs = grid();
        let ys: Vec<f64> = xs.iter().map(|&x| logistic(x)).collect();
        let f = fit_logistic(&xs, &ys).unwrap();
        assert!((f.x0 - 5.0).abs() < 0.1, "x0 = {}", f.x0);
        assert!((f.k - 6.0).abs() < 0.5, "k = {}", f.k);
        assert!(f.y0.abs() < 0.02 && (f.y1 - 1.0).abs() < 0.02);
        assert!(f.r2 > 0.999);
        // One run per size, each at the floor or the top but one: as consistent with runs
        // that each succeed by chance as with a jump. One seed cannot tell them apart.
        let points: Vec<_> = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (10f64.powf(*x), *y, 0))
            .collect();
        let r = analyze_threshold(&points, &Criteria::default(), None, 199, 0);
        assert_eq!(
            (r.verdict, r.reason, r.two_state),
            (Verdict::Unresolved, Some(Unresolved::TooFewSeeds), true)
        );
    }

    /// The logistic at every size for `seeds` seeds, plus uniform noise in ±0.02 from `noise_seed`.
    fn noisy_points(seeds: u64, noise_seed: u64) -> Vec<(f64, f64, u64)> {
        let mut rng = SplitMix64::new(noise_seed);
        let mut pts = Vec::new();
        for x in fine_grid() {
            for seed in 0..seeds {
                pts.push((
                    10f64.powf(x),
                    logistic(x) + 0.04 * (rng.next_f64() - 0.5),
                    seed,
                ));
            }
        }
        pts
    }

    #[test]
    fn noisy_seeds_give_threshold_interval_and_stability() {
        // Steep enough that nearly every run sits at the floor or the top: two-state, judged
        // on acquisition, with 8 seeds enough to reject a lottery at the criterion width.
        let pts = noisy_points(8, 1);
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 42);
        assert_eq!(r.verdict, Verdict::Emergent, "{r:?}");
        assert!(r.two_state && r.mixed_sizes >= 1, "{r:?}");
        assert_eq!((r.n_sizes, r.min_seeds, r.n_seeds), (17, 8, 8));
        let x0 = r.x0.unwrap();
        assert!((x0 - 5.0).abs() < 0.1, "x0 = {x0}");
        let (lo, hi) = (r.x0_ci_low.unwrap(), r.x0_ci_high.unwrap());
        assert!(lo <= 5.0 && 5.0 <= hi && hi - lo < 0.5, "CI [{lo}, {hi}]");
        assert!(r.p_smooth.unwrap() < 0.01, "p = {:?}", r.p_smooth);
        // Stability is a property of the means' bootstrap, which did not decide.
        assert_eq!(r.stability, None);
        assert!(r.note().is_none());
        // Same seed, same answer.
        let again = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 42);
        assert_eq!(again.x0_ci_low, r.x0_ci_low);
        assert_eq!(again.p_smooth, r.p_smooth);
    }

    #[test]
    fn seed_blocks_keep_a_seeds_sizes_together() {
        // Seed 1 is 0.3 above seed 0 at every size: resampling whole rows keeps that offset out
        // of the shape, so the residuals about the per-size means are ±0.15 at every size.
        let pts: Vec<_> = grid()
            .into_iter()
            .flat_map(|x| [(10f64.powf(x), 0.2, 0), (10f64.powf(x), 0.5, 1)])
            .collect();
        let t = Table::new(&pts, None);
        let s = t.summary(&t.values, &t.variances());
        let noise = NoiseModel::new(&t);
        let mut rng = SplitMix64::new(5);
        for _ in 0..20 {
            for row in noise.draw(&s.means, &mut rng) {
                let first = row[0].unwrap();
                assert!(row.iter().all(|v| v.unwrap() == first), "{row:?}");
            }
        }
    }

    #[test]
    fn straight_and_clipped_lines_are_smooth() {
        // y = 0.1 x - 0.2 clipped to [0, 1], over log10 sizes 1..7: a kink at x = 2, then a line.
        let xs: Vec<f64> = (0..13).map(|i| 1.0 + 0.5 * i as f64).collect();
        let ys: Vec<f64> = xs
            .iter()
            .map(|x| (0.1 * x - 0.2f64).clamp(0.0, 1.0))
            .collect();
        assert_eq!(classify(&xs, &ys, &Criteria::default()), Verdict::Smooth);
        let inner: Vec<f64> = grid().iter().map(|x| 0.1 * x - 0.2).collect();
        assert_eq!(
            classify(&grid(), &inner, &Criteria::default()),
            Verdict::Smooth
        );
        // A steep clipped line (0 -> 1 over 3.3 decades) is curved, but too wide to be a jump.
        let steep: Vec<f64> = grid()
            .iter()
            .map(|x| (0.3 * x - 1.0f64).clamp(0.0, 1.0))
            .collect();
        assert_eq!(
            classify(&grid(), &steep, &Criteria::default()),
            Verdict::Smooth
        );
    }

    #[test]
    fn jump_at_the_edge_is_unresolved_with_what_to_add() {
        let xs = grid();
        let ys: Vec<f64> = xs
            .iter()
            .map(|&x| 1.0 / (1.0 + (-6.0 * (x - 6.9)).exp()))
            .collect();
        let pts: Vec<_> = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (10f64.powf(*x), *y, 0))
            .collect();
        let r = analyze_threshold(&pts, &Criteria::default(), None, 199, 0);
        assert_eq!(r.verdict, Verdict::Unresolved);
        assert_eq!(
            r.note().as_deref(),
            Some("rise at the top of the ladder: add sizes above 1.000e7")
        );
    }

    #[test]
    fn jump_between_two_rungs_is_unresolved_with_the_gap_as_interval() {
        // 8 seeds all jump from 0.02 to 0.95 between 1e5 and 10^5.25: no size inside the rise.
        let mut pts = Vec::new();
        let mut rng = SplitMix64::new(9);
        for x in fine_grid() {
            for seed in 0..8 {
                let y = if x < 5.1 { 0.02 } else { 0.95 };
                pts.push((10f64.powf(x), y + 0.01 * stats::normal(&mut rng), seed));
            }
        }
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 1);
        assert_eq!(r.verdict, Verdict::Unresolved, "{r:?}");
        assert!(r.p_smooth.unwrap() < 0.01);
        assert!(r.two_state && r.p_sharp.unwrap() > 0.5, "{r:?}");
        let (lo, hi) = r.between_sizes().unwrap();
        assert!((lo - 5.0).abs() < 1e-9 && (hi - 5.25).abs() < 1e-9);
        assert_eq!((r.x0_ci_low, r.x0_ci_high), (Some(lo), Some(hi)));
        let note = r.note().unwrap();
        assert!(
            note.starts_with("rise between sizes 1.000e5 and 1.778e5") && note.contains("1.334e5"),
            "{note}"
        );
        assert!(r.between_sizes().is_some());
    }

    #[test]
    fn flat_and_too_few_sizes() {
        let xs = grid();
        let flat: Vec<f64> = xs.iter().map(|x| 0.25 + 0.002 * x).collect();
        assert_eq!(classify(&xs, &flat, &Criteria::default()), Verdict::Flat);
        // Four sizes are not enough for any verdict, even a clean jump.
        let four = [3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            classify(&four, &[0.0, 0.0, 1.0, 1.0], &Criteria::default()),
            Verdict::NotEnoughSizes
        );
        assert!(fit_logistic(&[3.0, 4.0, 5.0], &[0.0, 0.5, 1.0]).is_none());
        // Repeated x values do not count as sizes.
        assert!(fit_logistic(&[3.0, 3.0, 4.0, 5.0], &[0.0, 0.1, 0.5, 1.0]).is_none());
        assert_eq!(Verdict::NotEnoughSizes.to_string(), "not enough sizes");
    }

    #[test]
    fn line_fit_is_exact_on_a_line() {
        let l = fit_line(&[1.0, 2.0, 3.0], &[1.0, 3.0, 5.0]).unwrap();
        assert!((l.slope - 2.0).abs() < 1e-12 && (l.intercept + 1.0).abs() < 1e-12);
        assert!(l.rss < 1e-20 && (l.r2 - 1.0).abs() < 1e-12);
    }

    /// The flagship as the verdict issue measured it (configs/arith.toml, 3 seeds): final
    /// validation exact match per size and seed. Each run acquires or not, and the share that
    /// acquires rises from 0/3 to 3/3 over about a decade.
    #[test]
    fn the_three_seed_arith_lottery_is_not_called_emergent() {
        let rows: [(f64, [f64; 3]); 7] = [
            (1184.0, [0.08, 0.01, 0.06]),
            (2352.0, [0.87, 0.01, 0.01]),
            (3904.0, [0.01, 0.84, 0.02]),
            (5840.0, [0.87, 0.92, 0.02]),
            (8160.0, [0.91, 0.87, 0.05]),
            (13952.0, [0.96, 0.97, 0.95]),
            (30144.0, [0.98, 0.99, 0.97]),
        ];
        let pts: Vec<_> = rows
            .iter()
            .flat_map(|(n, ys)| ys.iter().enumerate().map(move |(s, y)| (*n, *y, s as u64)))
            .collect();
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 1000, 0);
        assert!(r.two_state && r.mixed_sizes == 4, "{r:?}");
        assert_eq!(
            (r.verdict, r.reason),
            (Verdict::Unresolved, Some(Unresolved::TooFewSeeds)),
            "{r:?}"
        );
        // The acquisition midpoint sits inside the ladder, its interval wide.
        let (lo, hi) = (r.acq_x0_low.unwrap(), r.acq_x0_high.unwrap());
        assert!(lo < 3.6 && hi > 3.8, "[{lo}, {hi}]");
    }

    #[test]
    fn breakthroughness_by_hand() {
        // Steps 0.1, 0, 0.8, 0.1 -> squared 0.01, 0, 0.64, 0.01 -> median 0.01 -> B = 1.0 / 0.1.
        let b = breakthroughness(&[0.0, 0.1, 0.1, 0.9, 1.0]).unwrap();
        assert!((b - 10.0).abs() < 1e-9, "B = {b}");
        let b = breakthroughness(&[1.0, 0.9, 0.1, 0.1, 0.0]).unwrap();
        assert!((b + 10.0).abs() < 1e-9, "B = {b}");
        // Odd number of steps: 0.2, 0.2, 0.2 -> median 0.04 -> 0.6 / 0.2.
        assert!((breakthroughness(&[0.0, 0.2, 0.4, 0.6]).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(breakthroughness(&[0.0, 0.0, 0.0, 1.0]), Some(f64::INFINITY));
        assert_eq!(breakthroughness(&[0.5, 0.5, 0.5]), Some(0.0));
        assert_eq!(breakthroughness(&[0.0, 1.0]), None);
    }
}
