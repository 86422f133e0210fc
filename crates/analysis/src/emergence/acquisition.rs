//! Run-level acquisition: real sweeps at this scale are often seed lotteries, where each run
//! either acquires a skill or does not and the share that acquires rises with size. Averaging
//! such runs per size hides that; here each run is a Bernoulli outcome, and the probability of
//! acquiring is fitted over log10(scale) by logistic regression on the runs (binomial
//! likelihood), with two tests against the criterion width W:
//!
//! * the smooth null (width >= W) rejected: the population acquires sharply (a jump);
//! * the sharp null (width <= W) rejected: the share rises gradually (a lottery);
//! * neither: too few runs to tell.
//!
//! Both tests are likelihood ratios calibrated by a parametric bootstrap under the null's best
//! fit (exact Bernoulli draws, so lotteries are simulated as what they are).

use elab_tasks::SplitMix64;
use serde::Serialize;

use super::fit::{K_MAX, K_MIN, nelder_mead, sigmoid, width_of};
use super::usable;
use crate::stats;

/// Runs whose final scores fall in the middle half between the lowest and highest run score,
/// at most this share of them: the runs are two-state (each acquired or not), and the verdict
/// is made on acquisition rather than on per-size means. A ramp or a seed-offset curve spreads
/// its runs through the middle; a lottery or a jump leaves it nearly empty.
pub const TWO_STATE_MAX_MIDDLE: f64 = 0.15;

/// `p(x) = 1 / (1 + exp(-k (x - x0)))`: the probability that a run at log10 scale x acquires.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AcquisitionFit {
    pub x0: f64,
    pub k: f64,
    /// 10%-90% width of p, in decades.
    pub width_decades: f64,
    /// Negative log-likelihood of the runs.
    pub nll: f64,
}

impl AcquisitionFit {
    pub fn at(&self, x: f64) -> f64 {
        sigmoid(self.k * (x - self.x0))
    }
}

/// Acquisitions per size: `xs[i]` (log10 scale, sorted), `runs[i]` runs of which `hits[i]`
/// acquired.
#[derive(Debug, Clone, PartialEq)]
pub struct Counts {
    pub xs: Vec<f64>,
    pub runs: Vec<u32>,
    pub hits: Vec<u32>,
}

impl Counts {
    /// From `(scale, score, seed)` points: a run acquired when its score is at least `level`.
    pub fn new(points: &[(f64, f64, u64)], level: f64) -> Self {
        let mut pts: Vec<(f64, bool)> = points
            .iter()
            .filter(|p| usable(p))
            .map(|p| (p.0.log10(), p.1 >= level))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut c = Counts {
            xs: Vec::new(),
            runs: Vec::new(),
            hits: Vec::new(),
        };
        for (x, hit) in pts {
            if c.xs.last() != Some(&x) {
                c.xs.push(x);
                c.runs.push(0);
                c.hits.push(0);
            }
            *c.runs.last_mut().unwrap() += 1;
            *c.hits.last_mut().unwrap() += u32::from(hit);
        }
        c
    }

    /// Sizes where some runs acquired and some did not.
    pub fn mixed_sizes(&self) -> usize {
        self.runs
            .iter()
            .zip(&self.hits)
            .filter(|(n, a)| **a > 0 && *a < *n)
            .count()
    }

    fn nll(&self, x0: f64, k: f64) -> f64 {
        let mut nll = 0.0;
        for ((x, n), a) in self.xs.iter().zip(&self.runs).zip(&self.hits) {
            // ln p and ln(1 - p) computed stably from the logit.
            let z = k * (x - x0);
            let ln_p = -softplus(-z);
            let ln_q = -softplus(z);
            nll -= f64::from(*a) * ln_p + f64::from(n - a) * ln_q;
        }
        nll
    }

    /// Maximum-likelihood fit with steepness in `[k_lo, k_hi]`; `None` with fewer than 2 sizes.
    pub fn fit(&self, k_lo: f64, k_hi: f64) -> Option<AcquisitionFit> {
        if self.xs.len() < 2 {
            return None;
        }
        let lo = self.xs[0] - 1.0;
        let hi = self.xs[self.xs.len() - 1] + 1.0;
        let (lk_lo, lk_hi) = (k_lo.max(K_MIN).ln(), k_hi.min(K_MAX).ln());
        let clamp = |t: [f64; 2]| [t[0].clamp(lo, hi), t[1].clamp(lk_lo, lk_hi)];
        let objective = |t: [f64; 2]| {
            let [x0, lk] = clamp(t);
            self.nll(x0, lk.exp())
        };
        let (nx, nk) = (41, 13);
        let dx = (hi - lo) / (nx - 1) as f64;
        let dk = (lk_hi - lk_lo) / (nk - 1) as f64;
        let mut best = ([lo, lk_lo], f64::INFINITY);
        for i in 0..nx {
            for j in 0..nk {
                let t = [lo + i as f64 * dx, lk_lo + j as f64 * dk];
                let v = objective(t);
                if v < best.1 {
                    best = (t, v);
                }
            }
        }
        let [x0, lk] = clamp(nelder_mead(objective, best.0, [dx, dk.max(1e-3)]));
        let k = lk.exp();
        Some(AcquisitionFit {
            x0,
            k,
            width_decades: width_of(k),
            nll: self.nll(x0, k),
        })
    }

    /// A parametric resample: each run acquires with the fit's probability at its size.
    fn draw(&self, fit: &AcquisitionFit, rng: &mut SplitMix64) -> Self {
        let hits = self
            .xs
            .iter()
            .zip(&self.runs)
            .map(|(&x, &n)| {
                let p = fit.at(x);
                (0..n).map(|_| u32::from(rng.next_f64() < p)).sum()
            })
            .collect();
        Counts {
            xs: self.xs.clone(),
            runs: self.runs.clone(),
            hits,
        }
    }

    /// Profile-likelihood 95% interval of x0 (k free): every x0 whose best fit is within
    /// chi2(1, 0.95) / 2 of the maximum. Scanned on a grid of 0.01 decades over the ladder and
    /// one decade beyond it, so an interval that reaches the scan's end is open there.
    pub fn x0_interval(&self, best: &AcquisitionFit) -> (f64, f64) {
        let (lo, hi) = (self.xs[0] - 1.0, self.xs[self.xs.len() - 1] + 1.0);
        let (lk_lo, lk_hi) = (K_MIN.ln(), K_MAX.ln());
        let profile = |x0: f64| {
            (0..=60)
                .map(|j| self.nll(x0, (lk_lo + (lk_hi - lk_lo) * j as f64 / 60.0).exp()))
                .fold(f64::INFINITY, f64::min)
        };
        let cut = best.nll + CHI2_1_95 / 2.0;
        let n = ((hi - lo) / 0.01).round() as usize;
        let inside: Vec<f64> = (0..=n)
            .map(|i| lo + (hi - lo) * i as f64 / n as f64)
            .filter(|&x0| profile(x0) <= cut)
            .collect();
        let first = inside.first().copied().unwrap_or(best.x0);
        let last = inside.last().copied().unwrap_or(best.x0);
        (first.min(best.x0), last.max(best.x0))
    }

    /// Profile-likelihood 95% interval of the width in decades (x0 free), scanned over k.
    pub fn width_interval(&self, best: &AcquisitionFit) -> (f64, f64) {
        let (lo, hi) = (self.xs[0] - 1.0, self.xs[self.xs.len() - 1] + 1.0);
        let profile = |k: f64| {
            (0..=200)
                .map(|i| self.nll(lo + (hi - lo) * i as f64 / 200.0, k))
                .fold(f64::INFINITY, f64::min)
        };
        let cut = best.nll + CHI2_1_95 / 2.0;
        let (lk_lo, lk_hi) = (K_MIN.ln(), K_MAX.ln());
        let widths: Vec<f64> = (0..=120)
            .map(|j| (lk_lo + (lk_hi - lk_lo) * j as f64 / 120.0).exp())
            .filter(|&k| profile(k) <= cut)
            .map(width_of)
            .collect();
        let min = widths.iter().copied().fold(best.width_decades, f64::min);
        let max = widths.iter().copied().fold(best.width_decades, f64::max);
        (min, max)
    }
}

const CHI2_1_95: f64 = 3.841_459;

fn softplus(z: f64) -> f64 {
    if z > 30.0 { z } else { z.exp().ln_1p() }
}

/// The level that splits runs into acquired or not, and how two-state the runs are.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Midway between the lowest and the highest run score.
    pub level: f64,
    /// Share of runs in the middle half between the lowest and highest run score.
    pub middle_share: f64,
}

impl Split {
    pub fn of(scores: &[f64]) -> Option<Self> {
        let finite: Vec<f64> = scores.iter().copied().filter(|y| y.is_finite()).collect();
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if finite.is_empty() || hi <= lo {
            return None;
        }
        let r = hi - lo;
        let middle = finite
            .iter()
            .filter(|&&y| y > lo + 0.25 * r && y < hi - 0.25 * r)
            .count();
        Some(Split {
            level: lo + 0.5 * r,
            middle_share: middle as f64 / finite.len() as f64,
        })
    }

    pub fn two_state(&self) -> bool {
        self.middle_share <= TWO_STATE_MAX_MIDDLE
    }
}

/// The population's acquisition curve and the two tests of its width against `w` decades.
#[derive(Debug, Clone)]
pub struct PopulationTest {
    pub counts: Counts,
    pub free: AcquisitionFit,
    /// p-value of "width >= w" (the population acquires gradually).
    pub p_smooth: f64,
    /// p-value of "width <= w" (the population acquires sharply).
    pub p_sharp: f64,
}

/// Fits and tests the acquisition curve; `None` with fewer than 2 sizes.
pub fn population_test(
    counts: Counts,
    w: f64,
    resamples: usize,
    rng: &mut SplitMix64,
) -> Option<PopulationTest> {
    let k_w = width_of(w.max(1e-9));
    let free = counts.fit(K_MIN, K_MAX)?;
    let smooth = counts.fit(K_MIN, k_w)?;
    let sharp = counts.fit(k_w, K_MAX)?;
    // Likelihood ratios; the free model contains both nulls, so an optimizer miss is clamped.
    let stat = |c: &Counts, null_hi: f64, null_lo: f64| -> f64 {
        match (c.fit(K_MIN, K_MAX), c.fit(null_lo, null_hi)) {
            (Some(f), Some(n)) => (n.nll - f.nll).max(0.0),
            _ => 0.0,
        }
    };
    let observed_smooth = (smooth.nll - free.nll).max(0.0);
    let observed_sharp = (sharp.nll - free.nll).max(0.0);
    let p_value = |observed: f64, null: &AcquisitionFit, lo: f64, hi: f64, rng: &mut SplitMix64| {
        // A statistic of 0 is matched by every draw.
        if observed <= 1e-9 || resamples == 0 {
            return 1.0;
        }
        let exceed = (0..resamples)
            .filter(|_| stat(&counts.draw(null, rng), hi, lo) >= observed - 1e-9)
            .count();
        (1 + exceed) as f64 / (1 + resamples) as f64
    };
    let p_smooth = p_value(observed_smooth, &smooth, K_MIN, k_w, rng);
    let p_sharp = p_value(observed_sharp, &sharp, k_w, K_MAX, rng);
    Some(PopulationTest {
        counts,
        free,
        p_smooth,
        p_sharp,
    })
}

/// Wilson 95% interval of a share `hits / runs`.
pub fn wilson(hits: u32, runs: u32) -> (f64, f64) {
    if runs == 0 {
        return (0.0, 1.0);
    }
    let (n, z) = (f64::from(runs), stats::Z975);
    let p = f64::from(hits) / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// When a run acquired along training: the first eval step from which its score stays at or
/// above `level` to the end (`None` if the last eval is below it).
pub fn acquisition_step(curve: &[(u64, f64)], level: f64) -> Option<u64> {
    let last_below = curve.iter().rposition(|(_, y)| y.is_nan() || *y < level);
    match last_below {
        None => curve.first().map(|p| p.0),
        Some(i) => curve.get(i + 1).map(|p| p.0),
    }
}

/// How sharply one run rises over training: log10 of the step at which it first reaches 90% of
/// the way from its first to its last score, minus log10 of the step at 10%. `None` for a run
/// that does not rise or starts at step 0 inside its own rise.
pub fn rise_decades(curve: &[(u64, f64)]) -> Option<f64> {
    let (first, last) = (curve.first()?.1, curve.last()?.1);
    if first.is_nan() || last.is_nan() || last <= first {
        return None;
    }
    let reach = |f: f64| {
        curve
            .iter()
            .find(|(_, y)| *y >= first + f * (last - first))
            .map(|p| p.0)
    };
    let (a, b) = (reach(0.1)?, reach(0.9)?);
    (a > 0).then(|| (b as f64).log10() - (a as f64).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(xs: &[f64], runs: u32, hits: &[u32]) -> Counts {
        Counts {
            xs: xs.to_vec(),
            runs: vec![runs; xs.len()],
            hits: hits.to_vec(),
        }
    }

    #[test]
    fn counts_group_runs_by_size() {
        let pts = [
            (100.0, 0.9, 0),
            (100.0, 0.1, 1),
            (10.0, 0.0, 0),
            (10.0, 0.2, 1),
        ];
        let c = Counts::new(&pts, 0.5);
        assert_eq!(c.xs, vec![1.0, 2.0]);
        assert_eq!((c.runs, c.hits), (vec![2, 2], vec![0, 1]));
    }

    #[test]
    fn a_gradual_share_is_recovered_and_its_interval_covers_it() {
        // 40 runs per size, share rising as a logistic 2 decades wide centred at 4.
        let xs: Vec<f64> = (0..9).map(|i| 3.0 + 0.25 * i as f64).collect();
        let truth = AcquisitionFit {
            x0: 4.0,
            k: width_of(2.0),
            width_decades: 2.0,
            nll: 0.0,
        };
        let hits: Vec<u32> = xs
            .iter()
            .map(|&x| (40.0 * truth.at(x)).round() as u32)
            .collect();
        let c = counts(&xs, 40, &hits);
        let f = c.fit(K_MIN, K_MAX).unwrap();
        assert!((f.x0 - 4.0).abs() < 0.05, "{f:?}");
        assert!((f.width_decades - 2.0).abs() < 0.2, "{f:?}");
        let (lo, hi) = c.x0_interval(&f);
        assert!(lo < 4.0 && 4.0 < hi && hi - lo < 0.5, "[{lo}, {hi}]");
        let (wl, wh) = c.width_interval(&f);
        assert!(wl < 2.0 && 2.0 < wh, "[{wl}, {wh}]");
        let mut rng = SplitMix64::new(1);
        let t = population_test(c, 1.0, 199, &mut rng).unwrap();
        assert!(t.p_sharp < 0.01 && t.p_smooth > 0.5, "{t:?}");
    }

    #[test]
    fn a_unanimous_jump_rejects_the_smooth_null_with_the_gap_as_interval() {
        let xs: Vec<f64> = (0..9).map(|i| 3.0 + 0.25 * i as f64).collect();
        let hits = [0, 0, 0, 0, 8, 8, 8, 8, 8];
        let c = counts(&xs, 8, &hits);
        let f = c.fit(K_MIN, K_MAX).unwrap();
        assert!(f.x0 > 3.75 && f.x0 < 4.0, "{f:?}");
        let (lo, hi) = c.x0_interval(&f);
        assert!(lo >= 3.74 && hi <= 4.01, "[{lo}, {hi}]");
        let mut rng = SplitMix64::new(2);
        let t = population_test(c, 1.0, 199, &mut rng).unwrap();
        assert!(t.p_smooth < 0.01 && t.p_sharp > 0.5, "{t:?}");
    }

    #[test]
    fn split_finds_two_states_and_a_ramp() {
        let lottery = [0.01, 0.02, 0.9, 0.85, 0.05, 0.93];
        let s = Split::of(&lottery).unwrap();
        assert!(s.two_state() && (s.level - 0.47).abs() < 1e-9);
        let ramp: Vec<f64> = (0..10).map(|i| 0.1 * i as f64).collect();
        assert!(!Split::of(&ramp).unwrap().two_state());
        assert!(Split::of(&[0.3, 0.3]).is_none());
    }

    #[test]
    fn acquisition_step_is_where_the_score_stays_above() {
        let c = [(0, 0.0), (10, 0.6), (20, 0.4), (30, 0.7), (40, 0.8)];
        assert_eq!(acquisition_step(&c, 0.5), Some(30));
        assert_eq!(acquisition_step(&c, 0.9), None);
        assert_eq!(acquisition_step(&c, -1.0), Some(0));
        let r = rise_decades(&[(0, 0.0), (10, 0.05), (100, 0.5), (1000, 0.95), (2000, 1.0)]);
        assert!((r.unwrap() - 1.0).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn wilson_interval_contains_the_share() {
        let (lo, hi) = wilson(1, 3);
        assert!(lo < 1.0 / 3.0 && 1.0 / 3.0 < hi);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        assert!(wilson(0, 8).0 == 0.0 && wilson(8, 8).1 == 1.0);
    }
}
