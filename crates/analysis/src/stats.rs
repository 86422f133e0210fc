//! Small numeric helpers shared by the other modules: means, quantiles, BIC, t quantiles, normal
//! draws. (The bootstrap's reproducible RNG is the tasks' SplitMix64.)

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

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom (table for df <= 30,
/// the normal quantile beyond, where the two differ by under 4%). `df = 0` gives infinity.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => Z975,
    }
}

/// The standard normal's 97.5% quantile.
pub const Z975: f64 = 1.959964;

/// A standard normal draw (Box-Muller; one of the pair is discarded for simplicity).
pub fn normal(rng: &mut elab_tasks::SplitMix64) -> f64 {
    // 1 - u is in (0, 1], so the logarithm is finite.
    let u = 1.0 - rng.next_f64();
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
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

    #[test]
    fn t_quantiles_and_normal_draws() {
        assert_eq!(t975(4), 2.776);
        assert!(t975(0).is_infinite() && t975(100) == Z975);
        let mut rng = elab_tasks::SplitMix64::new(3);
        let xs: Vec<f64> = (0..20000).map(|_| normal(&mut rng)).collect();
        let m = mean(&xs).unwrap();
        let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            m.abs() < 0.03 && (var - 1.0).abs() < 0.04,
            "mean {m}, var {var}"
        );
    }
}
