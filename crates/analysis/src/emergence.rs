//! Emergence over scale: is a score's rise over x = log10(scale) sharper than any smooth curve
//! can explain, given the spread between seeds? Logistic fits, a smooth null, a seed-block
//! bootstrap (for the test's null distribution, the threshold interval and the verdict's
//! stability), BIG-bench breakthroughness. The statistics and their measured calibration are
//! described in docs/analysis.md.

use std::fmt;

use elab_tasks::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::stats;

/// Bounds on the logistic steepness k (per decade). `K_MIN` gives a width of ~88 decades
/// (indistinguishable from a line); `K_MAX` a width of ~0.02 decades (a step between two sizes).
const K_MIN: f64 = 0.05;
const K_MAX: f64 = 200.0;

/// 10%-90% width of a logistic of steepness k is ln(81)/k.
fn width_of(k: f64) -> f64 {
    81f64.ln() / k
}

/// Fewest distinct sizes for any verdict: the logistic has 4 parameters, and with 4 sizes it
/// nearly interpolates anything, so the test against the smooth null has nothing left to judge.
pub const MIN_SIZES: usize = 5;

/// Least-squares fit of `y = y0 + (y1 - y0) / (1 + exp(-k (x - x0)))`, with `k > 0` and `y1 >= y0`.
#[derive(Debug, Clone, Serialize)]
pub struct LogisticFit {
    /// Midpoint of the rise, in the units of x (log10 scale).
    pub x0: f64,
    /// Steepness per unit of x.
    pub k: f64,
    /// Lower asymptote.
    pub y0: f64,
    /// Upper asymptote.
    pub y1: f64,
    /// 10%-90% rise width in units of x: ln(81) / k.
    pub width_decades: f64,
    /// Residual sum of squares (weighted, where the fit was weighted).
    pub rss: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// BIC with 4 parameters.
    pub bic: f64,
}

impl LogisticFit {
    /// The fitted curve at x (log10 scale).
    pub fn at(&self, x: f64) -> f64 {
        self.y0 + (self.y1 - self.y0) * sigmoid(self.k * (x - self.x0))
    }
}

/// Least-squares straight line `y = slope * x + intercept`.
#[derive(Debug, Clone, Serialize)]
pub struct LineFit {
    /// Slope per unit of x.
    pub slope: f64,
    /// Value at x = 0.
    pub intercept: f64,
    /// Residual sum of squares.
    pub rss: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// BIC with 2 parameters.
    pub bic: f64,
}

/// How a score behaves over scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A rise sharper than the width criterion that no smooth curve explains (the test rejects
    /// the smooth null), located inside the ladder.
    Emergent,
    /// Changes with scale, and a smooth curve explains it within the seeds' noise.
    Smooth,
    /// Barely changes over the sampled range.
    Flat,
    /// A rise no smooth curve explains, but the ladder cannot place it: it falls between two
    /// adjacent sizes or at the ladder's edge (see the report's `note` for what to add).
    Unresolved,
    /// Fewer than [`MIN_SIZES`] distinct sizes.
    #[serde(rename = "not enough sizes")]
    NotEnoughSizes,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Emergent => "emergent",
            Verdict::Smooth => "smooth",
            Verdict::Flat => "flat",
            Verdict::Unresolved => "unresolved",
            Verdict::NotEnoughSizes => "not enough sizes",
        })
    }
}

/// Thresholds for the verdict. Defaults assume scores in [0, 1] and x in decades.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Criteria {
    /// Below this spread (max - min of the per-size means) the curve is Flat (0.05 = 5 points).
    pub flat_range: f64,
    /// A rise is sharp when its 10%-90% width is below this many decades (1.0: most of the
    /// change within one decade of scale, as in Wei et al.'s examples, e.g. 13B -> 175B). The
    /// smooth null is every logistic at least this wide, lines and saturating curves included.
    pub max_width_decades: f64,
    /// Sizes needed strictly on each side of x0 (2: a jump at the grid's edge, pinned by one
    /// point, cannot be told from a curve that keeps bending beyond the data).
    pub min_sizes_each_side: usize,
    /// The score's possible range. Both fits keep their asymptotes inside it: without that, a
    /// wide logistic with a huge amplitude is locally as steep as any jump, and "width" would
    /// say nothing. Use infinite ends for an unbounded score.
    pub score_min: f64,
    /// Upper end of the score's range.
    pub score_max: f64,
    /// Level of the test against the smooth null (0.05: at most 5% of smooth curves are called
    /// emergent, as measured by the calibration tests).
    pub alpha: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            flat_range: 0.05,
            max_width_decades: 1.0,
            min_sizes_each_side: 2,
            score_min: 0.0,
            score_max: 1.0,
            alpha: 0.05,
        }
    }
}

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
    /// Why a verdict is `unresolved`, and which sizes to add.
    pub note: Option<String>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// For fixed (x0, k) the model is linear in (y0, rise = y1 - y0): solve that by weighted least
/// squares in closed form and return (rss, y0, rise), with `rise >= 0` (k > 0 means increasing)
/// and both asymptotes inside `bounds` (a score's possible range; infinite ends for none).
///
/// The problem is a convex quadratic over a polygon, so its minimum is the unconstrained one if
/// feasible, else the best of the 1-D optima along the edges y0 = lo, y1 = hi and rise = 0.
fn profile(
    xs: &[f64],
    ys: &[f64],
    ws: &[f64],
    x0: f64,
    k: f64,
    bounds: (f64, f64),
) -> (f64, f64, f64) {
    let mut s = [0.0; 64];
    let sv: Vec<f64>;
    let s: &[f64] = if xs.len() <= s.len() {
        for (v, x) in s.iter_mut().zip(xs) {
            *v = sigmoid(k * (x - x0));
        }
        &s[..xs.len()]
    } else {
        sv = xs.iter().map(|x| sigmoid(k * (x - x0))).collect();
        &sv
    };
    let (lo, hi) = bounds;
    let rss = |y0: f64, rise: f64| -> f64 {
        s.iter()
            .zip(ys)
            .zip(ws)
            .map(|((v, y), w)| w * (y - y0 - rise * v).powi(2))
            .sum()
    };
    let feasible = |y0: f64, rise: f64| rise >= 0.0 && y0 >= lo - 1e-12 && y0 + rise <= hi + 1e-12;
    let sw: f64 = ws.iter().sum();
    let ms = s.iter().zip(ws).map(|(v, w)| v * w).sum::<f64>() / sw;
    let my = ys.iter().zip(ws).map(|(y, w)| y * w).sum::<f64>() / sw;
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for ((v, y), w) in s.iter().zip(ys).zip(ws) {
        sxx += w * (v - ms) * (v - ms);
        sxy += w * (v - ms) * (y - my);
    }
    // A sigmoid that is constant over the data carries no shape; avoid dividing by ~0.
    let rise = if sxx > 1e-14 { sxy / sxx } else { 0.0 };
    let y0 = my - rise * ms;
    if feasible(y0, rise) {
        return (rss(y0, rise), y0, rise);
    }
    let span = hi - lo;
    let mut best = (rss(my.clamp(lo, hi), 0.0), my.clamp(lo, hi), 0.0);
    let mut consider = |y0: f64, r: f64| {
        let v = rss(y0, r);
        if v < best.0 {
            best = (v, y0, r);
        }
    };
    if lo.is_finite() {
        // y0 = lo: y - lo = rise * s.
        let num: f64 = s
            .iter()
            .zip(ys)
            .zip(ws)
            .map(|((v, y), w)| w * v * (y - lo))
            .sum();
        let den: f64 = s.iter().zip(ws).map(|(v, w)| w * v * v).sum();
        let r = if den > 1e-300 { num / den } else { 0.0 };
        consider(lo, r.clamp(0.0, span));
    }
    if hi.is_finite() {
        // y1 = hi: hi - y = rise * (1 - s).
        let num: f64 = s
            .iter()
            .zip(ys)
            .zip(ws)
            .map(|((v, y), w)| w * (1.0 - v) * (hi - y))
            .sum();
        let den: f64 = s.iter().zip(ws).map(|(v, w)| w * (1.0 - v).powi(2)).sum();
        let r = if den > 1e-300 { num / den } else { 0.0 };
        let r = r.clamp(0.0, span);
        consider(hi - r, r);
    }
    best
}

/// Minimal Nelder-Mead in two dimensions; returns the best vertex found.
fn nelder_mead(f: impl Fn([f64; 2]) -> f64, start: [f64; 2], step: [f64; 2]) -> [f64; 2] {
    let lerp =
        |a: [f64; 2], b: [f64; 2], t: f64| [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
    let mut p = [
        start,
        [start[0] + step[0], start[1]],
        [start[0], start[1] + step[1]],
    ];
    let mut v = p.map(&f);
    for _ in 0..400 {
        let mut idx = [0, 1, 2];
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let [b, m, w] = idx;
        let size = (p[w][0] - p[b][0]).abs()
            + (p[w][1] - p[b][1]).abs()
            + (p[m][0] - p[b][0]).abs()
            + (p[m][1] - p[b][1]).abs();
        // 1e-8 in x0 (decades) and ln k: far below anything the data can resolve.
        if size < 1e-8 {
            break;
        }
        let c = lerp(p[b], p[m], 0.5);
        let r = lerp(c, p[w], -1.0);
        let fr = f(r);
        if fr < v[b] {
            let e = lerp(c, p[w], -2.0);
            let fe = f(e);
            (p[w], v[w]) = if fe < fr { (e, fe) } else { (r, fr) };
        } else if fr < v[m] {
            (p[w], v[w]) = (r, fr);
        } else {
            // Contract toward the centroid, on whichever side of it is better; else shrink toward best.
            let ct = if fr < v[w] {
                lerp(c, r, 0.5)
            } else {
                lerp(c, p[w], 0.5)
            };
            let fc = f(ct);
            if fc < fr.min(v[w]) {
                (p[w], v[w]) = (ct, fc);
            } else {
                for i in [m, w] {
                    p[i] = lerp(p[b], p[i], 0.5);
                    v[i] = f(p[i]);
                }
            }
        }
    }
    let best = (0..3).min_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0);
    p[best]
}

fn finite_pairs(xs: &[f64], ys: &[f64]) -> bool {
    xs.len() == ys.len() && xs.iter().chain(ys).all(|v| v.is_finite())
}

/// Weighted logistic fit with steepness at most `k_max`; `None` with fewer than 4 distinct x.
///
/// A coarse grid over x0 in [min x - 1, max x + 1] and log-spaced k, each with (y0, y1) solved
/// exactly, then Nelder-Mead on (x0, ln k) from the best grid point, kept inside the same box.
fn fit_bounded(
    xs: &[f64],
    ys: &[f64],
    ws: &[f64],
    k_max: f64,
    bounds: (f64, f64),
) -> Option<LogisticFit> {
    if !finite_pairs(xs, ys) || ws.len() != xs.len() || stats::distinct_count(xs) < 4 {
        return None;
    }
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min) - 1.0;
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max) + 1.0;
    let (lk_lo, lk_hi) = (K_MIN.ln(), k_max.clamp(K_MIN, K_MAX).ln());
    let clamp = |t: [f64; 2]| [t[0].clamp(lo, hi), t[1].clamp(lk_lo, lk_hi)];
    let objective = |t: [f64; 2]| {
        let [x0, lk] = clamp(t);
        profile(xs, ys, ws, x0, lk.exp(), bounds).0
    };

    // The grid only has to land in the right basin; Nelder-Mead does the rest. Its x0 step is
    // about a tenth of a decade on the lab's ladders, finer than their rung spacing.
    let (nx, nk) = (31, 17);
    let (dx, dk) = (
        (hi - lo) / (nx - 1) as f64,
        (lk_hi - lk_lo) / (nk - 1) as f64,
    );
    let mut best = ([lo, lk_lo], f64::INFINITY);
    for i in 0..nx {
        for j in 0..nk {
            let t = [lo + i as f64 * dx, lk_lo + j as f64 * dk];
            let r = objective(t);
            if r < best.1 {
                best = (t, r);
            }
        }
    }
    let [x0, lk] = clamp(nelder_mead(objective, best.0, [dx, dk.max(1e-3)]));
    let k = lk.exp();
    let (rss, y0, rise) = profile(xs, ys, ws, x0, k, bounds);
    let sw: f64 = ws.iter().sum();
    let my = ys.iter().zip(ws).map(|(y, w)| y * w).sum::<f64>() / sw;
    let tss: f64 = ys.iter().zip(ws).map(|(y, w)| w * (y - my).powi(2)).sum();
    Some(LogisticFit {
        x0,
        k,
        y0,
        y1: y0 + rise,
        width_decades: width_of(k),
        rss,
        r2: stats::r_squared(rss, tss),
        bic: stats::bic(rss, tss, ys.len(), 4),
    })
}

/// Fit the logistic in x (log10 scale); `None` with fewer than 4 distinct x or non-finite input.
/// Only rising curves are fitted: falling data (e.g. loss) give a constant (y1 = y0), so negate them.
pub fn fit_logistic(xs: &[f64], ys: &[f64]) -> Option<LogisticFit> {
    fit_bounded(
        xs,
        ys,
        &vec![1.0; xs.len()],
        K_MAX,
        (f64::NEG_INFINITY, f64::INFINITY),
    )
}

/// Ordinary least-squares line; `None` with fewer than 2 distinct x or non-finite input.
pub fn fit_line(xs: &[f64], ys: &[f64]) -> Option<LineFit> {
    if !finite_pairs(xs, ys) || stats::distinct_count(xs) < 2 {
        return None;
    }
    let (mx, my) = (stats::mean(xs)?, stats::mean(ys)?);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let rss = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let tss = stats::total_ss(ys);
    Some(LineFit {
        slope,
        intercept,
        rss,
        r2: stats::r_squared(rss, tss),
        bic: stats::bic(rss, tss, ys.len(), 2),
    })
}

/// BIG-bench breakthroughness of scores sorted by scale:
/// `sign(argmax - argmin) * (max - min) / sqrt(median_i (y_{i+1} - y_i)^2)`.
///
/// `None` for fewer than 3 points or non-finite scores. When the median squared step is 0 (most
/// steps are exactly flat, all the change in a few jumps) the result is `±inf`, or 0 if the scores
/// are all equal. First occurrences decide argmax and argmin on ties.
pub fn breakthroughness(ys_sorted_by_scale: &[f64]) -> Option<f64> {
    let ys = ys_sorted_by_scale;
    if ys.len() < 3 || ys.iter().any(|y| !y.is_finite()) {
        return None;
    }
    let arg = |better: fn(f64, f64) -> bool| {
        (1..ys.len()).fold(0, |a, i| if better(ys[i], ys[a]) { i } else { a })
    };
    let (imax, imin) = (arg(|a, b| a > b), arg(|a, b| a < b));
    let range = ys[imax] - ys[imin];
    if range == 0.0 {
        return Some(0.0);
    }
    let sign = if imax > imin { 1.0 } else { -1.0 };
    let steps: Vec<f64> = ys.windows(2).map(|w| (w[1] - w[0]).powi(2)).collect();
    let med = stats::median(&steps)?;
    Some(if med > 0.0 {
        sign * range / med.sqrt()
    } else {
        sign * f64::INFINITY
    })
}

/// Scores by seed and size: `values[s][i]` is seed block `s` at size `i` (sizes sorted).
/// One seed fixes the data split (and the init) for every size, so a seed's scores are
/// correlated across sizes: the bootstrap resamples whole rows.
#[derive(Debug, Clone)]
struct Table {
    scales: Vec<f64>,
    xs: Vec<f64>,
    values: Vec<Vec<Option<f64>>>,
    /// Lower bound on the variance of one seed's score at each size (see [`Table::floors`]).
    floor: Vec<f64>,
}

/// The per-size summary a fit needs: sizes with at least one value, their means, and the
/// precision of each mean (seeds / variance) as its weight.
#[derive(Debug, Clone)]
struct Summary {
    xs: Vec<f64>,
    means: Vec<f64>,
    weights: Vec<f64>,
}

impl Table {
    /// Points with a non-positive or non-finite scale, or a non-finite score, are dropped;
    /// repeated (scale, seed) rows are averaged.
    fn new(points: &[(f64, f64, u64)], n_val: Option<u64>) -> Self {
        let pts: Vec<_> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.0 > 0.0 && p.1.is_finite())
            .copied()
            .collect();
        let mut scales: Vec<f64> = pts.iter().map(|p| p.0).collect();
        scales.sort_by(f64::total_cmp);
        scales.dedup();
        let mut seeds: Vec<u64> = pts.iter().map(|p| p.2).collect();
        seeds.sort_unstable();
        seeds.dedup();
        let mut sums = vec![vec![(0.0, 0usize); scales.len()]; seeds.len()];
        for (scale, y, seed) in pts {
            let i = scales.partition_point(|s| *s < scale);
            let s = seeds.partition_point(|v| *v < seed);
            sums[s][i].0 += y;
            sums[s][i].1 += 1;
        }
        let values = sums
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(sum, n)| (n > 0).then(|| sum / n as f64))
                    .collect()
            })
            .collect();
        let mut t = Self {
            xs: scales.iter().map(|s| s.log10()).collect(),
            scales,
            values,
            floor: Vec::new(),
        };
        t.floor = t.floors(n_val);
        t
    }

    fn column(&self, values: &[Vec<Option<f64>>], i: usize) -> Vec<f64> {
        values.iter().filter_map(|r| r[i]).collect()
    }

    fn seeds_at(&self, i: usize) -> usize {
        self.column(&self.values, i).len()
    }

    /// Unbiased variance between seeds at each size (0 with fewer than 2 seeds).
    fn seed_variances(&self) -> Vec<f64> {
        (0..self.xs.len())
            .map(|i| {
                let col = self.column(&self.values, i);
                let n = col.len();
                match stats::mean(&col) {
                    Some(m) if n > 1 => {
                        col.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1) as f64
                    }
                    _ => 0.0,
                }
            })
            .collect()
    }

    /// The variance of one seed's score can be no smaller than: the binomial variance of a
    /// fraction of `n_val` examples; at a size with one seed, the median seed variance of the
    /// other sizes (or, with no replication anywhere, the residual variance of a free fit);
    /// and 1e-8 (so identical seeds do not get infinite weight).
    fn floors(&self, n_val: Option<u64>) -> Vec<f64> {
        let seed_var = self.seed_variances();
        let replicated: Vec<f64> = (0..self.xs.len())
            .filter(|&i| self.seeds_at(i) > 1)
            .map(|i| seed_var[i])
            .collect();
        let pooled = stats::median(&replicated).unwrap_or_else(|| {
            let means: Vec<f64> = (0..self.xs.len())
                .map(|i| stats::mean(&self.column(&self.values, i)).unwrap_or(f64::NAN))
                .collect();
            fit_logistic(&self.xs, &means)
                .map_or(0.0, |f| f.rss / means.len().saturating_sub(4).max(1) as f64)
        });
        (0..self.xs.len())
            .map(|i| {
                let m = stats::mean(&self.column(&self.values, i)).unwrap_or(0.0);
                let binomial = n_val.filter(|&n| n > 0).map_or(0.0, |n| {
                    // (k + 0.5) / (n + 1): a score of exactly 0 or 1 still has noise.
                    let n = n as f64;
                    let p = (m.clamp(0.0, 1.0) * n + 0.5) / (n + 1.0);
                    p * (1.0 - p) / n
                });
                let single = if self.seeds_at(i) > 1 { 0.0 } else { pooled };
                binomial.max(single).max(1e-8)
            })
            .collect()
    }

    /// Each size's variance of one seed's score: the seeds' variance, floored.
    fn variances(&self) -> Vec<f64> {
        self.seed_variances()
            .iter()
            .zip(&self.floor)
            .map(|(v, f)| v.max(*f))
            .collect()
    }

    /// Means and weights of (resampled) values, with `variances` from [`Table::variances`] of
    /// the observed data. The weight of a mean is seeds / variance, so that a size where seeds
    /// disagree (bimodal, near a threshold) counts for less than one where they agree.
    ///
    /// Resamples keep the observed variances rather than re-estimating them: at a bimodal size,
    /// a resample that happens to draw only the seeds on one side would otherwise see almost no
    /// variance there, and that artefact, not noise, would dominate the null distribution.
    fn summary(&self, values: &[Vec<Option<f64>>], variances: &[f64]) -> Summary {
        let mut out = Summary {
            xs: Vec::new(),
            means: Vec::new(),
            weights: Vec::new(),
        };
        for (i, &x) in self.xs.iter().enumerate() {
            let col = self.column(values, i);
            if let Some(m) = stats::mean(&col) {
                out.xs.push(x);
                out.means.push(m);
                out.weights.push(col.len() as f64 / variances[i]);
            }
        }
        out
    }
}

/// The noise a resample adds around a centre curve: a resampled seed's deviations from the
/// per-size means (as a whole row), plus independent Gaussian noise where the seeds' spread is
/// below the table's floor.
#[derive(Debug, Clone)]
struct NoiseModel {
    /// `residuals[s][i]`: seed s's deviation from the mean at size i, inflated by sqrt(n/(n-1))
    /// so that resampled deviations have the unbiased variance (plain resampling shrinks it by
    /// (n-1)/n, a third with 3 seeds); 0 where a size has one seed.
    residuals: Vec<Vec<Option<f64>>>,
    /// Standard deviation of the extra Gaussian noise at each size.
    extra_sd: Vec<f64>,
}

impl NoiseModel {
    fn new(table: &Table) -> Self {
        let n_sizes = table.xs.len();
        let mut residuals = vec![vec![None; n_sizes]; table.values.len()];
        for i in 0..n_sizes {
            let col = table.column(&table.values, i);
            let n = col.len();
            let Some(m) = stats::mean(&col) else {
                continue;
            };
            let inflate = if n > 1 {
                (n as f64 / (n - 1) as f64).sqrt()
            } else {
                0.0
            };
            for (s, row) in table.values.iter().enumerate() {
                residuals[s][i] = row[i].map(|y| inflate * (y - m));
            }
        }
        let extra_sd = table
            .seed_variances()
            .iter()
            .zip(&table.floor)
            .map(|(v, f)| (f - v).max(0.0).sqrt())
            .collect();
        Self {
            residuals,
            extra_sd,
        }
    }

    /// A seed-block resample around `centre` (one value per size of the table).
    fn draw(&self, centre: &[f64], rng: &mut SplitMix64) -> Vec<Vec<Option<f64>>> {
        let m = self.residuals.len() as u64;
        (0..m)
            .map(|_| {
                let row = &self.residuals[rng.below(m) as usize];
                row.iter()
                    .enumerate()
                    .map(|(i, e)| e.map(|e| centre[i] + e + self.extra_sd[i] * stats::normal(rng)))
                    .collect()
            })
            .collect()
    }
}

/// The free logistic, the smooth null, and the statistic comparing them.
#[derive(Debug, Clone)]
struct Comparison {
    free: LogisticFit,
    null: LogisticFit,
    /// Weighted RSS(null) - RSS(free): with precision weights, the chi-square that only a rise
    /// sharper than the criterion removes.
    stat: f64,
}

fn compare(s: &Summary, c: &Criteria) -> Option<Comparison> {
    let bounds = (c.score_min, c.score_max);
    let free = fit_bounded(&s.xs, &s.means, &s.weights, K_MAX, bounds)?;
    let k_null = width_of(c.max_width_decades.max(1e-9));
    let null = fit_bounded(&s.xs, &s.means, &s.weights, k_null, bounds)?;
    // The free model contains the null; an optimizer miss must not make the statistic negative.
    let stat = (null.rss - free.rss).max(0.0);
    Some(Comparison { free, null, stat })
}

/// The verdict for one (resampled) data set, and the note explaining an `unresolved`.
fn decide(
    s: &Summary,
    cmp: Option<&Comparison>,
    significant: bool,
    table: &Table,
    c: &Criteria,
) -> (Verdict, Option<String>) {
    let Some(cmp) = cmp.filter(|_| stats::distinct_count(&s.xs) >= MIN_SIZES) else {
        return (Verdict::NotEnoughSizes, None);
    };
    let range = s.means.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - s.means.iter().copied().fold(f64::INFINITY, f64::min);
    let g = &cmp.free;
    if range < c.flat_range {
        return (Verdict::Flat, None);
    }
    if g.width_decades >= c.max_width_decades || !significant {
        return (Verdict::Smooth, None);
    }
    let scale = |x: f64| 10f64.powf(x);
    let below = s.xs.iter().filter(|&&x| x < g.x0).count();
    let above = s.xs.iter().filter(|&&x| x > g.x0).count();
    if above < c.min_sizes_each_side {
        let top = table.scales.last().copied().unwrap_or(f64::NAN);
        return (
            Verdict::Unresolved,
            Some(format!(
                "rise at the top of the ladder: add sizes above {top:.3e}"
            )),
        );
    }
    if below < c.min_sizes_each_side {
        let bottom = table.scales.first().copied().unwrap_or(f64::NAN);
        return (
            Verdict::Unresolved,
            Some(format!(
                "rise at the bottom of the ladder: add sizes below {bottom:.3e}"
            )),
        );
    }
    // A size "inside the rise" has a fitted value between 10% and 90% of the way up. With none,
    // any x0 in the gap fits as well: the data locate the rise only to the gap.
    let inside =
        s.xs.iter()
            .any(|&x| (0.1..=0.9).contains(&sigmoid(g.k * (x - g.x0))));
    if !inside {
        let (lo, hi) = bracket(&s.xs, g.x0);
        return (
            Verdict::Unresolved,
            Some(format!(
                "{BETWEEN} {:.3e} and {:.3e}: add sizes in between (geometric midpoint {:.3e})",
                scale(lo),
                scale(hi),
                scale(0.5 * (lo + hi))
            )),
        );
    }
    (Verdict::Emergent, None)
}

/// Whether a verdict is `unresolved` because the rise falls between two adjacent sizes.
pub fn is_between_rungs(verdict: Verdict, note: Option<&str>) -> bool {
    verdict == Verdict::Unresolved && note.is_some_and(|n| n.starts_with(BETWEEN))
}

const BETWEEN: &str = "rise between sizes";

/// The largest x below `x0` and the smallest above (the ends of xs if none).
fn bracket(xs: &[f64], x0: f64) -> (f64, f64) {
    let lo = xs
        .iter()
        .copied()
        .filter(|&x| x <= x0)
        .fold(f64::NAN, f64::max);
    let hi = xs
        .iter()
        .copied()
        .filter(|&x| x >= x0)
        .fold(f64::NAN, f64::min);
    let first = xs.first().copied().unwrap_or(f64::NAN);
    let last = xs.last().copied().unwrap_or(f64::NAN);
    (
        if lo.is_nan() { first } else { lo },
        if hi.is_nan() { last } else { hi },
    )
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
    fit_bounded(&s.xs, &s.means, &s.weights, k_null, bounds)
}

/// Per-scale means: `(scale, mean score, seeds)`, sorted by scale (for plots and tables).
pub fn mean_by_scale(points: &[(f64, f64, u64)]) -> Vec<(f64, f64, usize)> {
    let t = Table::new(points, None);
    let s = t.summary(&t.values, &t.variances());
    t.scales
        .iter()
        .zip(s.means)
        .enumerate()
        .map(|(i, (&scale, m))| (scale, m, t.seeds_at(i)))
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
    let score_range = if means.is_empty() {
        0.0
    } else {
        means.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - means.iter().copied().fold(f64::INFINITY, f64::min)
    };

    let mut p_smooth = None;
    let mut stability = None;
    let (mut ci_low, mut ci_high) = (None, None);
    let mut verdict_note = decide(&summary, cmp.as_ref(), false, &table, criteria);
    if let Some(c) = cmp.as_ref().filter(|_| resamples > 0) {
        let noise = NoiseModel::new(&table);
        let at = |f: &LogisticFit| -> Vec<f64> {
            let rise = f.y1 - f.y0;
            table
                .xs
                .iter()
                .map(|&x| f.y0 + rise * sigmoid(f.k * (x - f.x0)))
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
        verdict_note = decide(&summary, cmp.as_ref(), p < criteria.alpha, &table, criteria);
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
            let (v, _) = decide(&sim, sc.as_ref(), significant, &table, criteria);
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
    let (verdict, note) = verdict_note;
    // Between two rungs every x0 in the gap fits equally well: the gap is the interval.
    if let Some(c) = cmp
        .as_ref()
        .filter(|_| is_between_rungs(verdict, note.as_deref()))
    {
        let (lo, hi) = bracket(&summary.xs, c.free.x0);
        (ci_low, ci_high) = (Some(lo), Some(hi));
    }

    let g = cmp.as_ref().map(|c| &c.free);
    ThresholdReport {
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
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes at log10 = 3.0, 3.5, ..., 7.0.
    fn grid() -> Vec<f64> {
        (0..9).map(|i| 3.0 + 0.5 * i as f64).collect()
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
        assert_eq!(classify(&xs, &ys, &Criteria::default()), Verdict::Emergent);
    }

    /// The logistic at every size for `seeds` seeds, plus uniform noise in ±0.02 from `noise_seed`.
    fn noisy_points(seeds: u64, noise_seed: u64) -> Vec<(f64, f64, u64)> {
        let mut rng = SplitMix64::new(noise_seed);
        let mut pts = Vec::new();
        for x in grid() {
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
        let pts = noisy_points(3, 1);
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 42);
        assert_eq!(r.verdict, Verdict::Emergent);
        assert_eq!((r.n_sizes, r.min_seeds, r.n_seeds), (9, 3, 3));
        let x0 = r.x0.unwrap();
        assert!((x0 - 5.0).abs() < 0.1, "x0 = {x0}");
        let (lo, hi) = (r.x0_ci_low.unwrap(), r.x0_ci_high.unwrap());
        assert!(lo <= 5.0 && 5.0 <= hi && hi - lo < 0.5, "CI [{lo}, {hi}]");
        assert!(r.p_smooth.unwrap() < 0.01, "p = {:?}", r.p_smooth);
        assert!(r.stability.unwrap() > 0.9, "stability {:?}", r.stability);
        assert!(r.note.is_none());
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
            r.note.as_deref(),
            Some("rise at the top of the ladder: add sizes above 1.000e7")
        );
    }

    #[test]
    fn jump_between_two_rungs_is_unresolved_with_the_gap_as_interval() {
        // Seeds all jump from 0.02 to 0.95 between 1e5 and 10^5.5: no size inside the rise.
        let mut pts = Vec::new();
        let mut rng = SplitMix64::new(9);
        for x in grid() {
            for seed in 0..5 {
                let y = if x < 5.2 { 0.02 } else { 0.95 };
                pts.push((10f64.powf(x), y + 0.01 * stats::normal(&mut rng), seed));
            }
        }
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 1);
        assert_eq!(r.verdict, Verdict::Unresolved, "{r:?}");
        assert!(r.p_smooth.unwrap() < 0.01);
        assert_eq!((r.x0_ci_low, r.x0_ci_high), (Some(5.0), Some(5.5)));
        let note = r.note.unwrap();
        assert!(
            note.starts_with("rise between sizes 1.000e5 and 3.162e5") && note.contains("1.778e5"),
            "{note}"
        );
        assert!(is_between_rungs(r.verdict, Some(&note)));
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

    /// Simulated sweeps shaped like the lab's: 5-9 sizes 0.15-0.5 decades apart, 3-5 seeds,
    /// a per-seed offset (one seed fixes the data split at every size), per-run noise, and the
    /// binomial noise of a 2000-example validation set.
    struct Sweep {
        points: Vec<(f64, f64, u64)>,
    }

    const N_VAL: u64 = 2000;

    fn ladder(rng: &mut SplitMix64) -> Vec<f64> {
        let n = 5 + rng.below(5) as usize;
        let step = 0.15 + 0.35 * rng.next_f64();
        (0..n).map(|i| 3.0 + step * i as f64).collect()
    }

    /// `curve(seed, x)` is a seed's true score; noise is added here.
    fn simulate(
        rng: &mut SplitMix64,
        xs: Vec<f64>,
        seeds: u64,
        curve: impl Fn(u64, f64) -> f64,
    ) -> Sweep {
        let seed_sd = 0.005 + 0.025 * rng.next_f64();
        let run_sd = 0.005 + 0.025 * rng.next_f64();
        let offsets: Vec<f64> = (0..seeds).map(|_| seed_sd * stats::normal(rng)).collect();
        let mut points = Vec::new();
        for &x in &xs {
            for s in 0..seeds {
                let p = (curve(s, x) + offsets[s as usize] + run_sd * stats::normal(rng))
                    .clamp(0.0, 1.0);
                let binomial = (p * (1.0 - p) / N_VAL as f64).sqrt() * stats::normal(rng);
                points.push((10f64.powf(x), (p + binomial).clamp(0.0, 1.0), s));
            }
        }
        Sweep { points }
    }

    /// A smooth curve: a logistic 1-3 decades wide (the null's edge included), a power law of
    /// the error rate, or a clipped line.
    fn smooth_sweep(rng: &mut SplitMix64) -> Sweep {
        let xs = ladder(rng);
        let seeds = 3 + rng.below(3);
        let (first, last) = (xs[0], xs[xs.len() - 1]);
        let kind = rng.below(3);
        let (a, b, c, d) = (
            rng.next_f64(),
            rng.next_f64(),
            rng.next_f64(),
            rng.next_f64(),
        );
        let curve = move |_: u64, x: f64| match kind {
            0 => {
                let k = width_of(1.0 + 2.0 * a);
                let x0 = first - 0.5 + (last - first + 1.0) * b;
                0.1 * c + (0.5 + 0.5 * d - 0.1 * c) * sigmoid(k * (x - x0))
            }
            1 => 1.0 - (0.5 + 0.5 * a) * 10f64.powf(-(0.1 + 0.5 * b) * (x - first)),
            _ => (0.1 * c + (0.1 + 0.3 * a) * (x - first)).min(1.0),
        };
        simulate(rng, xs, seeds, curve)
    }

    /// A true jump inside the ladder: each seed jumps sharply (0.02-0.3 decades wide) at its own
    /// threshold, scattered by 0.05-0.15 decades around x0, so seeds disagree (bimodal scores)
    /// near x0. Returns the sweep and x0, the midpoint of the seed-averaged curve.
    fn jump_sweep(rng: &mut SplitMix64, seeds: u64) -> (Sweep, f64) {
        let xs = ladder(rng);
        let n = xs.len();
        let x0 = xs[1] + (xs[n - 2] - xs[1]) * rng.next_f64();
        let k = width_of(0.02 + 0.28 * rng.next_f64());
        let scatter = 0.05 + 0.1 * rng.next_f64();
        let (lo, hi) = (0.1 * rng.next_f64(), 0.7 + 0.3 * rng.next_f64());
        // Seed thresholds in symmetric pairs about x0, so the population curve's midpoint is x0.
        let shifts: Vec<f64> = (0..seeds).map(|_| scatter * stats::normal(rng)).collect();
        let curve =
            move |s: u64, x: f64| lo + (hi - lo) * sigmoid(k * (x - x0 - shifts[s as usize]));
        (simulate(rng, xs, seeds, curve), x0)
    }

    /// Resamples per analysis in the calibration tests: fewer than the export's 1000 to keep CI
    /// short (p-values then have a resolution of 1/200, ample at a 5% level).
    const CAL_RESAMPLES: usize = 199;
    const CAL_SWEEPS: u64 = 200;

    /// Runs `f` on `CAL_SWEEPS` draws on two threads; returns the results in draw order.
    fn calibrate<T: Send>(f: impl Fn(u64) -> T + Sync) -> Vec<T> {
        let half = CAL_SWEEPS / 2;
        std::thread::scope(|s| {
            let a = s.spawn(|| (0..half).map(&f).collect::<Vec<_>>());
            let mut out: Vec<T> = (half..CAL_SWEEPS).map(&f).collect();
            let mut first = a.join().unwrap();
            first.append(&mut out);
            first
        })
    }

    #[test]
    fn calibration_smooth_curves_are_rarely_called_emergent() {
        let verdicts = calibrate(|d| {
            let mut rng = SplitMix64::derive(1, d);
            let sw = smooth_sweep(&mut rng);
            analyze_threshold(
                &sw.points,
                &Criteria::default(),
                Some(N_VAL),
                CAL_RESAMPLES,
                d,
            )
            .verdict
        });
        let emergent = verdicts.iter().filter(|v| **v == Verdict::Emergent).count();
        let unresolved = verdicts
            .iter()
            .filter(|v| **v == Verdict::Unresolved)
            .count();
        eprintln!("smooth: {emergent}/{CAL_SWEEPS} emergent, {unresolved} unresolved");
        assert!(
            emergent * 20 <= CAL_SWEEPS as usize,
            "false emergent {emergent}/{CAL_SWEEPS}"
        );
    }

    #[test]
    fn calibration_true_jumps_are_detected() {
        let reports = calibrate(|d| {
            let mut rng = SplitMix64::derive(2, d);
            let seeds = 3 + rng.below(3);
            let (sw, _) = jump_sweep(&mut rng, seeds);
            analyze_threshold(
                &sw.points,
                &Criteria::default(),
                Some(N_VAL),
                CAL_RESAMPLES,
                d,
            )
        });
        // Detected: the smooth null is rejected and the rise located in the ladder or between
        // two of its rungs.
        let detected = reports
            .iter()
            .filter(|r| {
                r.verdict == Verdict::Emergent || is_between_rungs(r.verdict, r.note.as_deref())
            })
            .count();
        let emergent = reports
            .iter()
            .filter(|r| r.verdict == Verdict::Emergent)
            .count();
        eprintln!("jumps: {detected}/{CAL_SWEEPS} detected ({emergent} emergent)");
        assert!(
            detected * 10 >= CAL_SWEEPS as usize * 9,
            "detected {detected}/{CAL_SWEEPS}"
        );
    }

    #[test]
    fn calibration_threshold_interval_covers_with_five_seeds() {
        let hits = calibrate(|d| {
            let mut rng = SplitMix64::derive(3, d);
            let (sw, x0) = jump_sweep(&mut rng, 5);
            let r = analyze_threshold(
                &sw.points,
                &Criteria::default(),
                Some(N_VAL),
                CAL_RESAMPLES,
                d,
            );
            let covered = r
                .x0_ci_low
                .zip(r.x0_ci_high)
                .map(|(lo, hi)| lo <= x0 && x0 <= hi);
            (r.verdict, covered)
        });
        let with_interval: Vec<_> = hits.iter().filter_map(|h| h.1.map(|c| (h.0, c))).collect();
        let covered = with_interval.iter().filter(|h| h.1).count();
        let emergent: Vec<_> = with_interval
            .iter()
            .filter(|h| h.0 == Verdict::Emergent)
            .collect();
        let emergent_covered = emergent.iter().filter(|h| h.1).count();
        eprintln!(
            "coverage: {covered}/{} ({emergent_covered}/{} where emergent)",
            with_interval.len(),
            emergent.len()
        );
        assert!(with_interval.len() * 10 >= CAL_SWEEPS as usize * 9);
        assert!(
            covered * 10 >= with_interval.len() * 9,
            "covered {covered}/{}",
            with_interval.len()
        );
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
