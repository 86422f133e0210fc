//! A job's evaluation records held by column. `evals.jsonl` carries every metric's name on
//! every row, and a map per row in memory repeats them: a sweep of long runs with per-head or
//! per-subtask measures then took about 80 bytes per value. Here each name is stored once per
//! job and a value takes 16 bytes, so an export holds a sweep's records in a fifth of that.

use elab_job::{EvalRow, Split};

/// One evaluation: its step, split and the training tokens read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalPoint {
    pub step: u64,
    pub split: Split,
    pub tokens: u64,
}

/// A job's evaluations in the order they were read (step, then split), each with a value, or
/// none, for every metric any of them has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evals {
    points: Vec<EvalPoint>,
    /// Every metric any evaluation has, sorted.
    names: Vec<String>,
    /// `names.len()` values per point, in the order of `names`.
    values: Vec<Option<f64>>,
}

impl Evals {
    pub fn from_rows(rows: Vec<EvalRow>) -> Self {
        let mut names: Vec<String> = rows
            .iter()
            .flat_map(|r| r.metrics.keys().cloned())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut values = Vec::with_capacity(rows.len() * names.len());
        let mut points = Vec::with_capacity(rows.len());
        for r in rows {
            values.extend(names.iter().map(|n| r.metrics.get(n).copied()));
            points.push(EvalPoint {
                step: r.step,
                split: r.split,
                tokens: r.tokens,
            });
        }
        Self {
            points,
            names,
            values,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The last evaluation read.
    pub fn last(&self) -> Option<&EvalPoint> {
        self.points.last()
    }

    /// Training tokens read by the last evaluation (0 with none).
    pub fn tokens_seen(&self) -> u64 {
        self.points.iter().map(|p| p.tokens).max().unwrap_or(0)
    }

    /// Whether any evaluation has `metric`.
    pub fn has(&self, metric: &str) -> bool {
        self.column(metric).is_some()
    }

    /// `(step, value)` of one metric on one split, in the order read (by step).
    pub fn curve(&self, split: Split, metric: &str) -> Vec<(u64, f64)> {
        let Some(c) = self.column(metric) else {
            return Vec::new();
        };
        self.points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.split == split)
            .filter_map(|(i, p)| self.value(i, c).map(|v| (p.step, v)))
            .collect()
    }

    /// The metric's value at the last evaluation of `split` (none when that one lacks it).
    pub fn final_value(&self, split: Split, metric: &str) -> Option<f64> {
        let c = self.column(metric)?;
        let i = self.points.iter().rposition(|p| p.split == split)?;
        self.value(i, c)
    }

    /// Every `(evaluation, metric, value)`, evaluations in order and each one's metrics by name:
    /// the rows of curves.csv.
    pub fn iter(&self) -> impl Iterator<Item = (&EvalPoint, &str, f64)> {
        self.points.iter().enumerate().flat_map(move |(i, p)| {
            self.names
                .iter()
                .enumerate()
                .filter_map(move |(c, name)| self.value(i, c).map(|v| (p, name.as_str(), v)))
        })
    }

    fn column(&self, metric: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(metric)).ok()
    }

    fn value(&self, point: usize, column: usize) -> Option<f64> {
        self.values[point * self.names.len() + column]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(step: u64, split: Split, metrics: &[(&str, f64)]) -> EvalRow {
        EvalRow {
            step,
            split,
            tokens: step * 10,
            metrics: metrics
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn columns_answer_as_the_rows_would() {
        let rows = vec![
            row(0, Split::Train, &[("loss", 2.0), ("weight_norm", 5.0)]),
            row(0, Split::Val, &[("loss", 2.5), ("exact_match", 0.0)]),
            row(8, Split::Train, &[("loss", 1.0), ("weight_norm", f64::NAN)]),
            row(8, Split::Val, &[("loss", 1.5)]),
        ];
        let evals = Evals::from_rows(rows.clone());
        assert_eq!(evals.curve(Split::Val, "loss"), vec![(0, 2.5), (8, 1.5)]);
        assert_eq!(evals.curve(Split::Val, "exact_match"), vec![(0, 0.0)]);
        assert_eq!(evals.curve(Split::Train, "exact_match"), vec![]);
        assert_eq!(evals.curve(Split::Val, "nothing"), vec![]);
        // The last val row lacks exact_match: no value, as a map per row would say.
        assert_eq!(evals.final_value(Split::Val, "exact_match"), None);
        assert_eq!(evals.final_value(Split::Train, "loss"), Some(1.0));
        assert!(
            evals
                .final_value(Split::Train, "weight_norm")
                .unwrap()
                .is_nan()
        );
        assert!(evals.has("exact_match") && !evals.has("nothing"));
        assert_eq!(evals.tokens_seen(), 80);
        assert_eq!(
            evals.last().map(|p| (p.step, p.split)),
            Some((8, Split::Val))
        );

        // Every value once, rows in order, each row's metrics by name.
        let flat: Vec<(u64, Split, String, f64)> = evals
            .iter()
            .map(|(p, m, v)| (p.step, p.split, m.to_string(), v))
            .collect();
        let want: Vec<(u64, Split, String, f64)> = rows
            .iter()
            .flat_map(|r| {
                r.metrics
                    .iter()
                    .map(|(m, v)| (r.step, r.split, m.clone(), *v))
            })
            .collect();
        assert_eq!(flat.len(), want.len());
        for (a, b) in flat.iter().zip(&want) {
            assert_eq!((a.0, a.1, &a.2), (b.0, b.1, &b.2));
            assert_eq!(a.3.to_bits(), b.3.to_bits());
        }
        assert!(Evals::from_rows(Vec::new()).is_empty());
    }
}
