//! The seed table behind a fit and the seed-block bootstrap's noise model: per-size means
//! weighted by precision, floors on the variance, and resamples of whole seeds.

use elab_tasks::SplitMix64;

use super::fit::fit_logistic;
use super::usable;
use crate::stats;

/// Scores by seed and size: `values[s][i]` is seed block `s` at size `i` (sizes sorted).
/// One seed fixes the data split (and the init) for every size, so a seed's scores are
/// correlated across sizes: the bootstrap resamples whole rows.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) scales: Vec<f64>,
    pub(super) xs: Vec<f64>,
    pub(super) values: Vec<Vec<Option<f64>>>,
    /// Lower bound on the variance of one seed's score at each size (see [`Table::floors`]).
    pub(super) floor: Vec<f64>,
}

/// The per-size summary a fit needs: sizes with at least one value, their means, and the
/// precision of each mean (seeds / variance) as its weight.
#[derive(Debug, Clone)]
pub(super) struct Summary {
    pub(super) xs: Vec<f64>,
    pub(super) means: Vec<f64>,
    pub(super) weights: Vec<f64>,
}

impl Table {
    /// Points with a non-positive or non-finite scale, or a non-finite score, are dropped;
    /// repeated (scale, seed) rows are averaged.
    pub(super) fn new(points: &[(f64, f64, u64)], n_val: Option<u64>) -> Self {
        let pts: Vec<_> = points.iter().copied().filter(usable).collect();
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

    pub(super) fn column(&self, values: &[Vec<Option<f64>>], i: usize) -> Vec<f64> {
        values.iter().filter_map(|r| r[i]).collect()
    }

    pub(super) fn seeds_at(&self, i: usize) -> usize {
        self.column(&self.values, i).len()
    }

    /// Unbiased variance between seeds at each size (0 with fewer than 2 seeds).
    pub(super) fn seed_variances(&self) -> Vec<f64> {
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
    pub(super) fn floors(&self, n_val: Option<u64>) -> Vec<f64> {
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
    pub(super) fn variances(&self) -> Vec<f64> {
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
    pub(super) fn summary(&self, values: &[Vec<Option<f64>>], variances: &[f64]) -> Summary {
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
pub(super) struct NoiseModel {
    /// `residuals[s][i]`: seed s's deviation from the mean at size i, inflated by sqrt(n/(n-1))
    /// so that resampled deviations have the unbiased variance (plain resampling shrinks it by
    /// (n-1)/n, a third with 3 seeds); 0 where a size has one seed.
    residuals: Vec<Vec<Option<f64>>>,
    /// Standard deviation of the extra Gaussian noise at each size.
    extra_sd: Vec<f64>,
}

impl NoiseModel {
    pub(super) fn new(table: &Table) -> Self {
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
    pub(super) fn draw(&self, centre: &[f64], rng: &mut SplitMix64) -> Vec<Vec<Option<f64>>> {
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
