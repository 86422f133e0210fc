//! Thresholds over the training budget: the threshold placed as the final verdict places it, at
//! earlier eval steps too, so that a threshold that still moves when training ends (one that a
//! longer budget would shift) is flagged rather than reported as a property of scale.

use serde::Serialize;

use super::acquisition::Counts;
use super::fit::{K_MAX, K_MIN, fit_either};
use super::noise::Table;
use super::{Criteria, ThresholdReport};

/// The threshold at one eval step.
#[derive(Debug, Clone, Serialize)]
pub struct StepThreshold {
    pub step: u64,
    /// Midpoint of the rise (log10 scale); `None` where nothing rises yet (or everything has).
    pub x0: Option<f64>,
    /// Its 95% interval, for two-state runs (profile likelihood of the acquisition fit).
    pub x0_low: Option<f64>,
    pub x0_high: Option<f64>,
    /// Runs at or above the final verdict's acquisition level at this step, of all runs.
    pub acquired: usize,
    pub runs: usize,
}

/// `(scale, score, seed)` of every run at one eval step.
pub type Points = Vec<(f64, f64, u64)>;

/// `steps`: `(step, (scale, score, seed) of every run at that step)`, ascending. Two-state runs
/// (by the final verdict) are fitted by acquisition at the final level; others by the free
/// curve through the per-size means.
pub fn threshold_over_steps(
    steps: &[(u64, Points)],
    last: &ThresholdReport,
    c: &Criteria,
    n_val: Option<u64>,
) -> Vec<StepThreshold> {
    steps
        .iter()
        .map(|(step, points)| {
            let level = last.acquire_level.unwrap_or(f64::INFINITY);
            let counts = Counts::new(points, level);
            let acquired = counts.hits.iter().sum::<u32>() as usize;
            let runs = counts.runs.iter().sum::<u32>() as usize;
            let mut out = StepThreshold {
                step: *step,
                x0: None,
                x0_low: None,
                x0_high: None,
                acquired,
                runs,
            };
            if last.two_state {
                if let Some(f) = (acquired > 0 && acquired < runs)
                    .then(|| counts.fit(K_MIN, K_MAX))
                    .flatten()
                {
                    let (lo, hi) = counts.x0_interval(&f);
                    (out.x0, out.x0_low, out.x0_high) = (Some(f.x0), Some(lo), Some(hi));
                }
            } else {
                let t = Table::new(points, n_val);
                let s = t.summary(&t.values, &t.variances());
                let bounds = (c.score_min, c.score_max);
                out.x0 = fit_either(&s.xs, &s.means, &s.weights, K_MAX, bounds)
                    .filter(|f| f.y1 - f.y0 >= c.flat_range)
                    .map(|f| f.x0);
            }
            out
        })
        .collect()
}

/// Without an interval, a threshold that moved by more than this over the last doubling of
/// steps is still moving (a tenth of a decade: finer than the lab's ladders resolve).
const MOVED_DECADES: f64 = 0.1;

/// Whether the threshold still moved over the last doubling of training steps: the threshold
/// at the step nearest half the budget lies outside the final one's interval (or more than a
/// tenth of a decade away, without one), or appeared only in the last doubling. `None` without
/// a final threshold or an earlier step at or below half the budget.
pub fn budget_limited(over: &[StepThreshold]) -> Option<bool> {
    let last = over.last()?;
    let x0 = last.x0?;
    let half = last.step / 2;
    let earlier = over.iter().rev().find(|s| s.step <= half)?;
    Some(match earlier.x0 {
        None => true,
        Some(e) => match last.x0_low.zip(last.x0_high) {
            Some((lo, hi)) => e < lo || e > hi,
            None => (e - x0).abs() > MOVED_DECADES,
        },
    })
}

/// Up to `n` of `steps` (sorted), log-spaced back from the last: the last step, then the first
/// step at or after each halving of it.
pub fn log_spaced(steps: &[u64], n: usize) -> Vec<u64> {
    let Some(&last) = steps.last() else {
        return Vec::new();
    };
    let mut out: Vec<u64> = (0..n as u32)
        .filter_map(|j| {
            let target = last >> j;
            steps.iter().copied().find(|&s| s >= target.max(1))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergence::analyze_threshold;

    /// 8 seeds on 12 sizes over 3 decades; at step t a run at x has acquired when x is above
    /// `threshold(t)` (a unanimous jump that moves down in scale as training goes on).
    fn sweep(threshold: impl Fn(u64) -> f64) -> Vec<(u64, Points)> {
        [100u64, 200, 400, 800, 1600]
            .into_iter()
            .map(|t| {
                let pts = (0..12)
                    .flat_map(|i| {
                        let x = 3.0 + 3.0 * i as f64 / 11.0;
                        let y = if x > threshold(t) + 0.01 * (i % 3) as f64 {
                            0.95
                        } else {
                            0.02
                        };
                        (0..8).map(move |s| (10f64.powf(x), y + 0.001 * s as f64, s))
                    })
                    .collect();
                (t, pts)
            })
            .collect()
    }

    #[test]
    fn a_settled_threshold_is_not_budget_limited_a_moving_one_is() {
        let c = Criteria::default();
        let settled = sweep(|t| if t < 400 { 5.5 } else { 4.5 });
        let last = analyze_threshold(&settled.last().unwrap().1, &c, None, 0, 0);
        let over = threshold_over_steps(&settled, &last, &c, None);
        assert_eq!(over.len(), 5);
        assert!(over[4].x0.is_some() && over[4].acquired > 0);
        assert_eq!(budget_limited(&over), Some(false), "{over:?}");

        let moving = sweep(|t| 5.5 - 0.25 * (t as f64 / 100.0).log2());
        let last = analyze_threshold(&moving.last().unwrap().1, &c, None, 0, 0);
        let over = threshold_over_steps(&moving, &last, &c, None);
        assert_eq!(budget_limited(&over), Some(true), "{over:?}");
        let x0s: Vec<f64> = over.iter().filter_map(|s| s.x0).collect();
        assert!(x0s.windows(2).all(|w| w[1] < w[0]), "{x0s:?}");
    }

    #[test]
    fn log_spaced_steps_halve_back_from_the_last() {
        let steps: Vec<u64> = (0..=20).map(|i| i * 100).collect();
        assert_eq!(log_spaced(&steps, 4), vec![300, 500, 1000, 2000]);
        assert!(log_spaced(&[], 4).is_empty());
    }
}
