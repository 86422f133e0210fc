//! Small numeric helpers shared by the other modules: a reproducible RNG, means, quantiles, BIC.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny deterministic PRNG so bootstraps are reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform index in `0..n` (`n > 0`); the modulo bias is negligible for the small `n` used here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

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
    fn splitmix_matches_reference_output() {
        // First output of the reference C implementation for seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        let x = r.next_f64();
        assert!((0.0..1.0).contains(&x));
    }

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
