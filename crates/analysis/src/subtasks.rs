//! Tasks made of subtasks (multitask sparse parity): one threshold per subtask, and the smooth
//! power law the quantization model (Michaud et al. 2023) predicts for the mean loss.
//!
//! The model says a network of a given size learns the most frequent subtasks it can afford;
//! each subtask's accuracy jumps at its own scale, the scales increase as the frequencies fall,
//! and the frequency-weighted mean loss, a sum of many such steps, falls as a power law.

use crate::emergence::{Criteria, ThresholdReport, analyze_threshold, fit_line, mean_by_scale};

/// `loss ~= coefficient * scale^-exponent`, fitted on the per-scale seed means in log-log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLogFit {
    pub coefficient: f64,
    pub exponent: f64,
    /// R^2 of the line in log10(loss) against log10(scale).
    pub r2_log: f64,
    pub n_sizes: usize,
}

/// Least squares of log10(loss) on log10(scale) over the per-scale means of `(scale, loss,
/// seed)` points. `None` with fewer than 2 sizes, or a non-positive mean loss (no logarithm).
pub fn fit_log_log(points: &[(f64, f64, u64)]) -> Option<LogLogFit> {
    let means = mean_by_scale(points);
    if means
        .iter()
        .any(|&(_, loss, _)| loss.is_nan() || loss <= 0.0)
    {
        return None;
    }
    let xs: Vec<f64> = means.iter().map(|p| p.0.log10()).collect();
    let ys: Vec<f64> = means.iter().map(|p| p.1.log10()).collect();
    let line = fit_line(&xs, &ys)?;
    Some(LogLogFit {
        coefficient: 10f64.powf(line.intercept),
        exponent: -line.slope,
        r2_log: line.r2,
        n_sizes: means.len(),
    })
}

/// One [`analyze_threshold`] per subtask: `per_subtask[i]` are subtask i's `(scale, accuracy,
/// seed)` points, and `n_val[i]` the validation examples of subtask i behind each accuracy.
/// A rare subtask is scored on few examples, so its accuracy carries binomial noise that a
/// handful of seeds can hide; `n_val` puts that floor under its variance, as for exact match.
pub fn subtask_thresholds(
    per_subtask: &[Vec<(f64, f64, u64)>],
    n_val: &[Option<u64>],
    criteria: &Criteria,
    bootstrap: usize,
    rng_seed: u64,
) -> Vec<ThresholdReport> {
    per_subtask
        .iter()
        .enumerate()
        .map(|(i, points)| {
            let n = n_val.get(i).copied().flatten();
            analyze_threshold(points, criteria, n, bootstrap, rng_seed)
        })
        .collect()
}

/// How well thresholds follow the order of the subtasks (most frequent first): over every pair
/// of subtasks that both have a threshold, `(in order, out of order)`. Ties count as neither.
/// The quantization model predicts no pair out of order.
pub fn frequency_order(thresholds: &[Option<f64>]) -> (usize, usize) {
    let known: Vec<f64> = thresholds.iter().flatten().copied().collect();
    let (mut concordant, mut discordant) = (0, 0);
    for i in 0..known.len() {
        for later in &known[i + 1..] {
            if *later > known[i] {
                concordant += 1;
            } else if *later < known[i] {
                discordant += 1;
            }
        }
    }
    (concordant, discordant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    #[test]
    fn power_law_is_recovered_exactly() {
        // loss = 5 * N^-0.3 at four sizes, two seeds each (equal, so the means are exact).
        let points: Vec<(f64, f64, u64)> = [1e3, 1e4, 3e4, 1e5]
            .iter()
            .flat_map(|&n: &f64| [0, 1].map(|seed| (n, 5.0 * n.powf(-0.3), seed)))
            .collect();
        let fit = fit_log_log(&points).unwrap();
        assert!((fit.exponent - 0.3).abs() < 1e-9, "{fit:?}");
        assert!((fit.coefficient - 5.0).abs() < 1e-6);
        assert!((fit.r2_log - 1.0).abs() < 1e-12);
        assert_eq!(fit.n_sizes, 4);
    }

    #[test]
    fn power_law_needs_positive_losses_and_two_sizes() {
        assert_eq!(fit_log_log(&[(1e3, 0.5, 0), (1e4, 0.0, 0)]), None);
        assert_eq!(fit_log_log(&[(1e3, 0.5, 0), (1e3, 0.4, 1)]), None);
    }

    /// Accuracy 0.5 below `threshold` and 1.0 from it on, at widths 10^(2 + i/4), 8 seeds.
    fn step_points(threshold: f64) -> Vec<(f64, f64, u64)> {
        (0..13)
            .flat_map(|i| {
                let n = 10f64.powf(2.0 + i as f64 / 4.0);
                let level = if n < threshold { 0.5 } else { 1.0 };
                (0..8u64).map(move |seed| {
                    let noise = 0.01 * (((i * 7 + seed as usize * 3) % 5) as f64 - 2.0);
                    (n, (level + noise).min(1.0), seed)
                })
            })
            .collect()
    }

    #[test]
    fn each_subtask_gets_its_own_threshold_in_order() {
        let per_subtask = vec![step_points(1.5e3), step_points(4e3), step_points(9e3), {
            // A subtask never learned: flat at chance.
            (0..13)
                .flat_map(|i| (0..8).map(move |seed| (10f64.powf(2.0 + i as f64 / 4.0), 0.5, seed)))
                .collect()
        }];
        let reports = subtask_thresholds(&per_subtask, &[], &Criteria::default(), 200, 0);
        assert_eq!(reports.len(), 4);
        for (i, want) in [1.5e3f64, 4e3, 9e3].iter().enumerate() {
            // A step between two adjacent sizes is located to their gap, no finer: unresolved
            // between those rungs, with x0 inside the gap (a quarter decade wide).
            let r = &reports[i];
            assert_eq!(r.verdict, Verdict::Unresolved, "subtask {i}: {r:?}");
            assert!(r.between_sizes().is_some(), "subtask {i}: {r:?}");
            let x0 = r.x0.unwrap();
            assert!((x0 - want.log10()).abs() < 0.25, "subtask {i}: x0 {x0}");
        }
        assert_ne!(reports[3].verdict, Verdict::Emergent);
        assert!(reports[3].between_sizes().is_none());
        let x0s: Vec<Option<f64>> = reports[..3].iter().map(|r| r.x0).collect();
        assert_eq!(frequency_order(&x0s), (3, 0));
    }

    #[test]
    fn a_rare_subtask_scored_on_few_examples_gets_a_wider_interval() {
        // A gradual rise over 1.5 decades, 4 seeds with tiny seed-to-seed scatter: without a
        // binomial floor the interval is as narrow as the scatter; scored on 40 examples, an
        // accuracy near 0.75 has a standard error near 0.07, and the interval must show it.
        let points: Vec<(f64, f64, u64)> = (0..9)
            .flat_map(|i| {
                let x = 2.0 + i as f64 * 0.25;
                let p = 0.5 + 0.5 / (1.0 + (-(x - 3.0) * 3.0).exp());
                (0..4u64).map(move |seed| (10f64.powf(x), p + 0.003 * seed as f64, seed))
            })
            .collect();
        let width = |n: Option<u64>| {
            let r = &subtask_thresholds(
                std::slice::from_ref(&points),
                &[n],
                &Criteria::default(),
                300,
                0,
            )[0];
            match (r.x0_ci_low, r.x0_ci_high) {
                (Some(lo), Some(hi)) => hi - lo,
                _ => f64::INFINITY,
            }
        };
        let (many, few) = (width(None), width(Some(40)));
        assert!(
            few > 1.5 * many,
            "interval with 40 examples {few}, without a floor {many}"
        );
    }

    #[test]
    fn order_counts_pairs_by_hand() {
        assert_eq!(frequency_order(&[Some(1.0), Some(3.0), Some(2.0)]), (2, 1));
        assert_eq!(frequency_order(&[Some(1.0), None, Some(1.0)]), (0, 0));
        assert_eq!(frequency_order(&[]), (0, 0));
    }
}
