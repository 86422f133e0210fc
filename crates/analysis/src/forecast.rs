//! Predictability, in Wei et al.'s own definition of emergence: an ability is emergent when it
//! "cannot be predicted simply by extrapolating the performance of smaller models". A straight
//! line in log10(scale) is fitted to the per-size mean scores below the threshold, and the
//! larger sizes are forecast with 95% prediction intervals; the report says how far outside the
//! interval the observed means fall.

use serde::Serialize;

use crate::emergence::{fit_line, size_summary};
use crate::stats;

/// Fewest sizes below the threshold for a forecast: a line and a residual variance need 3.
pub const MIN_FORECAST_SIZES: usize = 3;

/// The forecast from the sizes below a threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// Sizes fitted (those below x0).
    pub sizes_fitted: usize,
    /// Sizes forecast (those at or above x0).
    pub sizes_forecast: usize,
    /// Forecast sizes whose observed mean lies outside the 95% prediction interval.
    pub outside: usize,
    /// Max over the forecast sizes of how far the observed mean lies beyond the interval, in
    /// score units (above its upper end, or below its lower end); 0 when all lie inside.
    pub max_excess: f64,
    /// `(log10 scale, low, forecast, high, observed mean)` at every forecast size.
    #[serde(skip)]
    pub at: Vec<(f64, f64, f64, f64, f64)>,
}

impl Forecast {
    /// Whether the larger sizes were predictable from the smaller ones.
    pub fn predictable(&self) -> bool {
        self.outside == 0
    }
}

/// Forecast from the `(scale, score, seed)` points below `x0` (log10 scale); `None` with fewer
/// than [`MIN_FORECAST_SIZES`] sizes below it or none above.
///
/// The interval for a size's mean is the line's prediction interval,
/// `t_{n-2} s sqrt(1 + 1/n + (x - mean x)^2 / Sxx)`, with `s^2` the larger of the line's
/// residual variance and the seeds' variance of a size mean (so that a line through three
/// nearly collinear means is not trusted beyond the seeds' own noise).
pub fn forecast(points: &[(f64, f64, u64)], x0: f64) -> Option<Forecast> {
    let sizes = size_summary(points);
    let (below, above): (Vec<&(f64, f64, usize, f64)>, Vec<_>) =
        sizes.iter().partition(|s| s.0.log10() < x0);
    let n = below.len();
    if n < MIN_FORECAST_SIZES || above.is_empty() {
        return None;
    }
    let xs: Vec<f64> = below.iter().map(|s| s.0.log10()).collect();
    let ys: Vec<f64> = below.iter().map(|s| s.1).collect();
    let fit = fit_line(&xs, &ys)?;
    let mx = stats::mean(&xs)?;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let line = |x: f64| fit.intercept + fit.slope * x;
    let residual = fit.rss / (n - 2) as f64;
    // The variance of a size's mean, averaged over the replicated sizes fitted.
    let of_means: Vec<f64> = below
        .iter()
        .filter(|s| s.2 > 1)
        .map(|s| s.3 / s.2 as f64)
        .collect();
    let seed_var = stats::mean(&of_means).unwrap_or(0.0);
    let s = residual.max(seed_var).sqrt();
    let t = stats::t975(n - 2);
    let mut out = Forecast {
        sizes_fitted: n,
        sizes_forecast: above.len(),
        outside: 0,
        max_excess: 0.0,
        at: Vec::new(),
    };
    for &&(scale, observed, _, _) in &above {
        let x = scale.log10();
        let half = t * s * (1.0 + 1.0 / n as f64 + (x - mx).powi(2) / sxx).sqrt();
        let (lo, mid, hi) = (line(x) - half, line(x), line(x) + half);
        let excess = (observed - hi).max(lo - observed);
        if excess > 0.0 {
            out.outside += 1;
            out.max_excess = out.max_excess.max(excess);
        }
        out.at.push((x, lo, mid, hi, observed));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(f: impl Fn(f64) -> f64) -> Vec<(f64, f64, u64)> {
        (0..9)
            .flat_map(|i| {
                let x = 3.0 + 0.25 * i as f64;
                let y = f(x);
                (0..4).map(move |s| (10f64.powf(x), y + 0.01 * (s as f64 - 1.5), s))
            })
            .collect()
    }

    #[test]
    fn a_line_is_predictable_and_a_jump_is_not() {
        let f = forecast(&points(|x| 0.1 * x), 4.0).unwrap();
        assert_eq!((f.sizes_fitted, f.sizes_forecast), (4, 5));
        assert!(f.predictable() && f.max_excess == 0.0, "{f:?}");
        // Flat at 0.02 below 10^4, then 0.9: far above anything the small sizes forecast.
        let f = forecast(&points(|x| if x < 4.1 { 0.02 } else { 0.9 }), 4.1).unwrap();
        assert_eq!(f.outside, 4);
        assert!(f.max_excess > 0.8, "{f:?}");
        let (_, lo, mid, hi, obs) = f.at[0];
        assert!(lo < mid && mid < hi && obs > hi);
    }

    #[test]
    fn too_few_sizes_below_gives_none() {
        assert!(forecast(&points(|x| 0.1 * x), 3.4).is_none());
        assert!(forecast(&points(|x| 0.1 * x), 9.0).is_none());
    }
}
