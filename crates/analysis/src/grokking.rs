//! Grokking times from accuracy curves.
//!
//! Curves are only observed at eval steps, so a crossing is the interval (previous eval step,
//! first step at or above the threshold]; the `step` end is what delays and ratios use. A curve
//! that never reaches the threshold is censored at its last step: not zero, not the budget.

use serde::Serialize;

/// When a curve first reaches a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Crossing {
    /// Crossed somewhere in (`after`, `step`].
    At {
        /// The previous eval step, or 0 if the first eval already crosses.
        after: u64,
        /// The first eval step with value >= threshold.
        step: u64,
    },
    /// Never reached by the last eval step (0 for an empty curve).
    Censored {
        /// Last eval step seen.
        last_step: u64,
    },
}

impl Crossing {
    /// The first crossing step, if any.
    pub fn step(&self) -> Option<u64> {
        match *self {
            Crossing::At { step, .. } => Some(step),
            Crossing::Censored { .. } => None,
        }
    }
}

/// First crossing of `threshold` in a curve of `(step, value)` sorted by step.
pub fn first_crossing(curve: &[(u64, f64)], threshold: f64) -> Crossing {
    let mut after = 0;
    for &(step, value) in curve {
        if value >= threshold {
            return Crossing::At { after, step };
        }
        after = step;
    }
    Crossing::Censored {
        last_step: curve.last().map_or(0, |p| p.0),
    }
}

/// Train and validation crossings at 99% and 95%. Serializes as flat optional columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrokkingTimes {
    /// Train accuracy >= 0.99.
    pub t_train99: Crossing,
    /// Validation accuracy >= 0.99.
    pub t_val99: Crossing,
    /// Train accuracy >= 0.95.
    pub t_train95: Crossing,
    /// Validation accuracy >= 0.95.
    pub t_val95: Crossing,
}

fn delay(train: Crossing, val: Crossing) -> Option<i64> {
    Some(val.step()? as i64 - train.step()? as i64)
}

fn ratio(train: Crossing, val: Crossing) -> Option<f64> {
    let (t, v) = (train.step()?, val.step()?);
    (t > 0).then(|| v as f64 / t as f64)
}

impl GrokkingTimes {
    /// Crossings of both curves (each `(step, accuracy)`, sorted by step).
    pub fn from_curves(train: &[(u64, f64)], val: &[(u64, f64)]) -> Self {
        Self {
            t_train99: first_crossing(train, 0.99),
            t_val99: first_crossing(val, 0.99),
            t_train95: first_crossing(train, 0.95),
            t_val95: first_crossing(val, 0.95),
        }
    }

    /// t_val99 - t_train99 (negative if validation got there first); `None` if either is censored.
    pub fn delay(&self) -> Option<i64> {
        delay(self.t_train99, self.t_val99)
    }

    /// t_val99 / t_train99; `None` if either is censored or train crossed at step 0.
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.t_train99, self.t_val99)
    }

    /// Like [`Self::delay`] at the 95% level.
    pub fn delay95(&self) -> Option<i64> {
        delay(self.t_train95, self.t_val95)
    }

    /// Like [`Self::ratio`] at the 95% level.
    pub fn ratio95(&self) -> Option<f64> {
        ratio(self.t_train95, self.t_val95)
    }
}

/// One CSV row: for each crossing, `_after` and `_step` (empty when censored) and
/// `_censored_at` (empty when crossed), then the 99% delay and ratio.
#[derive(Serialize)]
struct FlatTimes {
    train99_after: Option<u64>,
    train99_step: Option<u64>,
    train99_censored_at: Option<u64>,
    val99_after: Option<u64>,
    val99_step: Option<u64>,
    val99_censored_at: Option<u64>,
    train95_after: Option<u64>,
    train95_step: Option<u64>,
    train95_censored_at: Option<u64>,
    val95_after: Option<u64>,
    val95_step: Option<u64>,
    val95_censored_at: Option<u64>,
    delay99: Option<i64>,
    ratio99: Option<f64>,
}

fn split(c: Crossing) -> (Option<u64>, Option<u64>, Option<u64>) {
    match c {
        Crossing::At { after, step } => (Some(after), Some(step), None),
        Crossing::Censored { last_step } => (None, None, Some(last_step)),
    }
}

impl Serialize for GrokkingTimes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (train99_after, train99_step, train99_censored_at) = split(self.t_train99);
        let (val99_after, val99_step, val99_censored_at) = split(self.t_val99);
        let (train95_after, train95_step, train95_censored_at) = split(self.t_train95);
        let (val95_after, val95_step, val95_censored_at) = split(self.t_val95);
        FlatTimes {
            train99_after,
            train99_step,
            train99_censored_at,
            val99_after,
            val99_step,
            val99_censored_at,
            train95_after,
            train95_step,
            train95_censored_at,
            val95_after,
            val95_step,
            val95_censored_at,
            delay99: self.delay(),
            ratio99: self.ratio(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train() -> Vec<(u64, f64)> {
        vec![
            (0, 0.01),
            (16, 0.3),
            (64, 0.9),
            (100, 0.995),
            (1000, 1.0),
            (4096, 1.0),
            (8000, 1.0),
        ]
    }

    #[test]
    fn grokking_delay_and_ratio() {
        let val = vec![
            (0, 0.01),
            (64, 0.02),
            (100, 0.03),
            (1000, 0.05),
            (4096, 0.5),
            (8000, 0.992),
            (9000, 1.0),
        ];
        let t = GrokkingTimes::from_curves(&train(), &val);
        assert_eq!(
            t.t_train99,
            Crossing::At {
                after: 64,
                step: 100
            }
        );
        assert_eq!(
            t.t_val99,
            Crossing::At {
                after: 4096,
                step: 8000
            }
        );
        assert_eq!(
            t.t_train95,
            Crossing::At {
                after: 64,
                step: 100
            }
        );
        assert_eq!(
            t.t_val95,
            Crossing::At {
                after: 4096,
                step: 8000
            }
        );
        assert_eq!(t.delay(), Some(7900));
        assert_eq!(t.ratio(), Some(80.0));
    }

    #[test]
    fn never_reaching_is_censored() {
        let val = vec![(0, 0.01), (1000, 0.5), (10000, 0.96)];
        let t = GrokkingTimes::from_curves(&train(), &val);
        assert_eq!(t.t_val99, Crossing::Censored { last_step: 10000 });
        assert_eq!(
            t.t_val95,
            Crossing::At {
                after: 1000,
                step: 10000
            }
        );
        assert_eq!((t.delay(), t.ratio()), (None, None));
        assert_eq!(t.delay95(), Some(9900));
        assert_eq!(
            first_crossing(&[], 0.5),
            Crossing::Censored { last_step: 0 }
        );
    }

    #[test]
    fn first_eval_crossing_has_after_zero() {
        assert_eq!(
            first_crossing(&[(10, 1.0), (20, 1.0)], 0.99),
            Crossing::At { after: 0, step: 10 }
        );
        // Exactly at the threshold counts as crossed.
        assert_eq!(
            first_crossing(&[(1, 0.2), (2, 0.99)], 0.99),
            Crossing::At { after: 1, step: 2 }
        );
    }
}
