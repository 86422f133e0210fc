//! Fitting: the bounded logistic (least squares, asymptotes inside the score's range), the line,
//! and BIG-bench breakthroughness.

use serde::Serialize;

use crate::stats;

/// Bounds on the logistic steepness k (per decade). `K_MIN` gives a width of ~88 decades
/// (indistinguishable from a line); `K_MAX` a width of ~0.02 decades (a step between two sizes).
pub(super) const K_MIN: f64 = 0.05;
pub(super) const K_MAX: f64 = 200.0;

/// 10%-90% width of a logistic of steepness k is ln(81)/k.
pub(super) fn width_of(k: f64) -> f64 {
    81f64.ln() / k
}

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
    /// Logistic, or a clipped line (smooth-null and free fits try both).
    pub shape: Shape,
}

impl LogisticFit {
    /// The fitted curve at x (log10 scale).
    pub fn at(&self, x: f64) -> f64 {
        self.y0 + (self.y1 - self.y0) * self.shape.basis(self.k * (x - self.x0))
    }
}

/// The shape of a rise from 0 to 1 in `z = k (x - x0)`. Both have their steepest slope, k / 4
/// per unit of rise, at x0, so one k bounds the steepness of either: the widths reported are
/// the logistic's, ln(81) / k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Logistic,
    /// A straight rise between two kinks (a clipped line): what a ramp from the floor looks
    /// like. A logistic as steep bends early and late, so without this shape in the smooth
    /// null, a ramp's kinks read as sharpness.
    Ramp,
}

impl Shape {
    pub fn basis(self, z: f64) -> f64 {
        match self {
            Shape::Logistic => sigmoid(z),
            Shape::Ramp => (0.5 + 0.25 * z).clamp(0.0, 1.0),
        }
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

pub(super) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// For fixed (x0, k) the model is linear in (y0, rise = y1 - y0): solve that by weighted least
/// squares in closed form and return (rss, y0, rise), with `rise >= 0` (k > 0 means increasing)
/// and both asymptotes inside `bounds` (a score's possible range; infinite ends for none).
///
/// The problem is a convex quadratic over a polygon, so its minimum is the unconstrained one if
/// feasible, else the best of the 1-D optima along the edges y0 = lo, y1 = hi and rise = 0.
fn profile(
    shape: Shape,
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
            *v = shape.basis(k * (x - x0));
        }
        &s[..xs.len()]
    } else {
        sv = xs.iter().map(|x| shape.basis(k * (x - x0))).collect();
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
pub(super) fn nelder_mead(
    f: impl Fn([f64; 2]) -> f64,
    start: [f64; 2],
    step: [f64; 2],
) -> [f64; 2] {
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
pub(super) fn fit_bounded(
    shape: Shape,
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
        profile(shape, xs, ys, ws, x0, lk.exp(), bounds).0
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
    let (rss, y0, rise) = profile(shape, xs, ys, ws, x0, k, bounds);
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
        shape,
    })
}

/// The better of a logistic and a clipped line under the same bounds ([`fit_bounded`]).
pub(super) fn fit_either(
    xs: &[f64],
    ys: &[f64],
    ws: &[f64],
    k_max: f64,
    bounds: (f64, f64),
) -> Option<LogisticFit> {
    let l = fit_bounded(Shape::Logistic, xs, ys, ws, k_max, bounds)?;
    match fit_bounded(Shape::Ramp, xs, ys, ws, k_max, bounds) {
        Some(r) if r.rss < l.rss => Some(r),
        _ => Some(l),
    }
}

/// Fit the logistic in x (log10 scale); `None` with fewer than 4 distinct x or non-finite input.
/// Only rising curves are fitted: falling data (e.g. loss) give a constant (y1 = y0), so negate them.
pub fn fit_logistic(xs: &[f64], ys: &[f64]) -> Option<LogisticFit> {
    fit_bounded(
        Shape::Logistic,
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
