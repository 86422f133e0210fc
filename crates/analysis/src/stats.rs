//! Small numeric helpers shared by the other modules: means, quantiles, BIC. (The bootstrap's
//! reproducible RNG is the tasks' SplitMix64.)

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Median (average of the two middle values for even lengths); `None` for an empty slice.
pub fn median(xs: &[f64]) -> Option<f64> {
    quantile(xs, 0.5)
}

/// Quantile `q` in [0, 1] with linear interpolation between order statistics (numpy's default).
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Number of distinct values (exact comparison: scales are counts, not measurements).
pub fn distinct_count(xs: &[f64]) -> usize {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}

/// Total sum of squares about the mean.
pub fn total_ss(ys: &[f64]) -> f64 {
    let m = mean(ys).unwrap_or(0.0);
    ys.iter().map(|y| (y - m).powi(2)).sum()
}

/// Gaussian BIC `n ln(rss/n) + p ln(n)`.
///
/// `rss` is floored at `1e-12 * tss` (and the smallest positive float): an exact fit would give
/// `-inf`, and differences below that floor are rounding noise, not evidence for either model.
pub fn bic(rss: f64, tss: f64, n: usize, p: usize) -> f64 {
    let n_f = n as f64;
    let rss = rss.max(1e-12 * tss).max(f64::MIN_POSITIVE);
    n_f * (rss / n_f).ln() + p as f64 * n_f.ln()
}

/// Coefficient of determination `1 - rss/tss`; 1 when the data have no spread and the fit is exact.
pub fn r_squared(rss: f64, tss: f64) -> f64 {
    if tss > 0.0 {
        1.0 - rss / tss
    } else if rss <= f64::EPSILON {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), Some(2.5));
        assert_eq!(median(&[5.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(quantile(&[0.0, 10.0], 0.25), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn bic_prefers_smaller_rss_and_floors_zero() {
        assert!(bic(1.0, 10.0, 10, 2) < bic(2.0, 10.0, 10, 2));
        assert!(bic(0.0, 10.0, 10, 2).is_finite());
        assert_eq!(distinct_count(&[1.0, 2.0, 1.0, 3.0]), 3);
    }
}
