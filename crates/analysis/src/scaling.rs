//! Smooth scaling laws: validation loss over scale as `L(N) = E + A N^-alpha` (Kaplan et al.
//! 2020; Hoffmann et al. 2022), fitted beside each threshold so that a jump in a score can be
//! read against a loss that falls smoothly.

use serde::Serialize;

use crate::emergence::mean_by_scale;
use crate::stats;

/// Least-squares fit of `L(N) = E + A N^-alpha` with `E >= 0`, `A >= 0`, `alpha` in
/// [`ALPHA_MIN`, `ALPHA_MAX`], to the per-size mean losses.
#[derive(Debug, Clone, Serialize)]
pub struct PowerLawFit {
    /// Irreducible loss (the limit at infinite scale).
    pub e: f64,
    /// Scale coefficient, in the units of the scale axis (`A N^-alpha` is in loss units).
    pub a: f64,
    /// Exponent.
    pub alpha: f64,
    /// Residual sum of squares over the per-size means.
    pub rss: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

pub const ALPHA_MIN: f64 = 1e-3;
pub const ALPHA_MAX: f64 = 3.0;

/// For fixed alpha the model is linear in (E, A): least squares with both kept >= 0.
/// `z` is `(N / N_min)^-alpha`, so the numbers stay near 1 whatever the scale's units.
fn solve(z: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let n = z.len() as f64;
    let (mz, my) = (z.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let szz: f64 = z.iter().map(|v| (v - mz).powi(2)).sum();
    let szy: f64 = z.iter().zip(ys).map(|(v, y)| (v - mz) * (y - my)).sum();
    let rss =
        |e: f64, a: f64| -> f64 { z.iter().zip(ys).map(|(v, y)| (y - e - a * v).powi(2)).sum() };
    let a = if szz > 1e-300 { szy / szz } else { 0.0 };
    let e = my - a * mz;
    if a >= 0.0 && e >= 0.0 {
        return (rss(e, a), e, a);
    }
    // On the boundary: A = 0 (a constant), or E = 0 (a pure power law through the origin).
    let e0 = my.max(0.0);
    let szz0: f64 = z.iter().map(|v| v * v).sum();
    let a0 = if szz0 > 0.0 {
        (z.iter().zip(ys).map(|(v, y)| v * y).sum::<f64>() / szz0).max(0.0)
    } else {
        0.0
    };
    let (r1, r2) = (rss(e0, 0.0), rss(0.0, a0));
    if r1 <= r2 {
        (r1, e0, 0.0)
    } else {
        (r2, 0.0, a0)
    }
}

/// Fit `(scale, loss, seed)` points (seeds averaged per scale); `None` with fewer than 3
/// distinct positive scales or non-finite losses. A grid over ln(alpha), then golden-section
/// refinement around the best grid point.
pub fn fit_power_law(points: &[(f64, f64, u64)]) -> Option<PowerLawFit> {
    let means = mean_by_scale(points);
    if means.len() < 3 || means.iter().any(|m| !m.1.is_finite()) {
        return None;
    }
    let n_min = means[0].0;
    let ys: Vec<f64> = means.iter().map(|m| m.1).collect();
    let at = |alpha: f64| -> (f64, f64, f64) {
        let z: Vec<f64> = means.iter().map(|m| (m.0 / n_min).powf(-alpha)).collect();
        solve(&z, &ys)
    };
    let (lo, hi) = (ALPHA_MIN.ln(), ALPHA_MAX.ln());
    let grid = 120;
    let step = (hi - lo) / grid as f64;
    let best = (0..=grid)
        .map(|i| lo + step * i as f64)
        .min_by(|a, b| at(a.exp()).0.total_cmp(&at(b.exp()).0))?;
    // Golden section on [best - step, best + step] in ln(alpha).
    let (mut a, mut b) = ((best - step).max(lo), (best + step).min(hi));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if at(c.exp()).0 <= at(d.exp()).0 {
            b = d;
        } else {
            a = c;
        }
    }
    let alpha = (0.5 * (a + b)).exp();
    let (rss, e, a_norm) = at(alpha);
    Some(PowerLawFit {
        e,
        // Back to the scale's units: A' (N / N_min)^-alpha = (A' N_min^alpha) N^-alpha.
        a: a_norm * n_min.powf(alpha),
        alpha,
        rss,
        r2: stats::r_squared(rss, stats::total_ss(&ys)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_law_from_seeds() {
        // L = 1.7 + 400 N^-0.35 over 1e3..1e7, two seeds +-0.001 around it.
        let pts: Vec<(f64, f64, u64)> = (0..9)
            .flat_map(|i| {
                let n = 10f64.powf(3.0 + 0.5 * i as f64);
                let l = 1.7 + 400.0 * n.powf(-0.35);
                [(n, l - 0.001, 0), (n, l + 0.001, 1)]
            })
            .collect();
        let f = fit_power_law(&pts).unwrap();
        assert!((f.alpha - 0.35).abs() < 1e-3, "{f:?}");
        assert!((f.e - 1.7).abs() < 1e-3, "{f:?}");
        assert!((f.a / 400.0 - 1.0).abs() < 1e-2, "{f:?}");
        assert!(f.r2 > 0.999999);
    }

    #[test]
    fn constraints_and_too_few_sizes() {
        // A rising "loss" cannot have A >= 0 and alpha > 0: the fit is the constant mean.
        let pts: Vec<_> = [(1e3, 1.0, 0), (1e4, 2.0, 0), (1e5, 3.0, 0)].to_vec();
        let f = fit_power_law(&pts).unwrap();
        assert_eq!(f.a, 0.0);
        assert!((f.e - 2.0).abs() < 1e-12);
        assert!(fit_power_law(&pts[..2]).is_none());
    }
}
