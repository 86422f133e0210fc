//! Grokking times from accuracy curves, and their distribution over seeds.
//!
//! Curves are only observed at eval steps, so a crossing is the interval (previous eval step,
//! first step at or above the threshold that the curve holds at every later eval]; the `step`
//! end is what delays and ratios use. A curve that never reaches the threshold for good is
//! censored at its last step: not zero, not the budget. Across seeds, censored runs enter a
//! Kaplan-Meier estimate instead of being dropped (an average of crossing steps over the runs
//! that crossed is biased low).

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

/// The crossing of `threshold` in a curve of `(step, value)` sorted by step: the first eval at
/// or above it from which the curve stays there at every later eval. A spike that falls back
/// is not a crossing (grokking is a transition, not a fluctuation); the last eval counts when
/// it is the first one above.
pub fn first_crossing(curve: &[(u64, f64)], threshold: f64) -> Crossing {
    // The crossing starts after the last eval below the threshold.
    // NaN (a diverged eval) is not above the threshold.
    let held = |v: f64| v >= threshold;
    let last_below = curve.iter().rposition(|&(_, v)| !held(v));
    let first_held = last_below.map_or(0, |i| i + 1);
    match curve.get(first_held) {
        Some(&(step, _)) => Crossing::At {
            after: first_held.checked_sub(1).map_or(0, |i| curve[i].0),
            step,
        },
        None => Crossing::Censored {
            last_step: curve.last().map_or(0, |p| p.0),
        },
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

/// Kaplan-Meier summary of times to an event (here: a crossing) over runs, some censored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToEvent {
    /// Runs.
    pub n: usize,
    /// Runs whose event was observed.
    pub events: usize,
    /// Largest step observed (event or censoring): the budget.
    pub budget: u64,
    /// Kaplan-Meier estimate of the share of runs with the event by `budget`.
    pub fraction_by_budget: f64,
    /// Kaplan-Meier median time: the first event time where the survival S(t) <= 0.5; `None`
    /// when fewer than half the runs are known to have had the event.
    pub median: Option<u64>,
    /// 95% interval of the median (Brookmeyer-Crowley, from Greenwood's variance): from the
    /// first time where S's pointwise lower 95% limit falls to 0.5 (the earliest median the
    /// data allow) to the first where its upper limit does; `None` where it never does (for
    /// the high end: the data do not bound the median within the budget).
    pub median_low: Option<u64>,
    pub median_high: Option<u64>,
}

/// The survival estimate S (share not yet crossed) after an event time, with its pointwise
/// 95% limits.
struct KmStep {
    t: u64,
    s: f64,
    lower: f64,
    upper: f64,
}

/// Kaplan-Meier over `(time, event)` pairs (`event` false: censored at `time`). Censoring at a
/// tied time counts as after the events there (the usual convention). `None` for no runs.
pub fn kaplan_meier(runs: &[(u64, bool)]) -> Option<TimeToEvent> {
    if runs.is_empty() {
        return None;
    }
    let mut times: Vec<u64> = runs.iter().filter(|r| r.1).map(|r| r.0).collect();
    times.sort_unstable();
    times.dedup();
    let mut s = 1.0;
    let mut greenwood = 0.0;
    let mut steps: Vec<KmStep> = Vec::new();
    for &t in &times {
        let at_risk = runs.iter().filter(|r| r.0 >= t).count() as f64;
        let d = runs.iter().filter(|r| r.1 && r.0 == t).count() as f64;
        s *= 1.0 - d / at_risk;
        if at_risk > d {
            greenwood += d / (at_risk * (at_risk - d));
        }
        let se = s * greenwood.sqrt();
        steps.push(KmStep {
            t,
            s,
            lower: (s - 1.96 * se).max(0.0),
            upper: (s + 1.96 * se).min(1.0),
        });
    }
    let first = |f: fn(&KmStep) -> f64| steps.iter().find(|st| f(st) <= 0.5).map(|st| st.t);
    Some(TimeToEvent {
        n: runs.len(),
        events: runs.iter().filter(|r| r.1).count(),
        budget: runs.iter().map(|r| r.0).max().unwrap_or(0),
        fraction_by_budget: 1.0 - s,
        median: first(|st| st.s),
        median_low: first(|st| st.lower),
        median_high: first(|st| st.upper),
    })
}

/// The Kaplan-Meier input of one crossing: its step if crossed, else its censoring step.
pub fn as_event(c: Crossing) -> (u64, bool) {
    match c {
        Crossing::At { step, .. } => (step, true),
        Crossing::Censored { last_step } => (last_step, false),
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
    fn a_crossing_that_falls_back_does_not_count() {
        // Over 0.99 at step 20, back to 0.9 at 30, up for good from 40.
        let curve = [(10, 0.5), (20, 0.995), (30, 0.9), (40, 0.99), (50, 1.0)];
        assert_eq!(
            first_crossing(&curve, 0.99),
            Crossing::At {
                after: 30,
                step: 40
            }
        );
        // Falling back at the last eval: not crossed for good.
        let curve = [(10, 0.5), (20, 0.995), (30, 0.9)];
        assert_eq!(
            first_crossing(&curve, 0.99),
            Crossing::Censored { last_step: 30 }
        );
        // A NaN eval (diverged) is not above the threshold.
        let curve = [(10, 0.995), (20, f64::NAN), (30, 0.999)];
        assert_eq!(
            first_crossing(&curve, 0.99),
            Crossing::At {
                after: 20,
                step: 30
            }
        );
    }

    #[test]
    fn kaplan_meier_by_hand() {
        // Five runs: events at 100, 200, 400; censored at 300 and 500.
        let runs = [
            (100, true),
            (200, true),
            (300, false),
            (400, true),
            (500, false),
        ];
        let km = kaplan_meier(&runs).unwrap();
        // S: 100 -> 4/5, 200 -> 3/5, 400 -> 3/5 * (1 - 1/2) = 0.3.
        assert_eq!((km.n, km.events, km.budget), (5, 3, 500));
        assert!((km.fraction_by_budget - 0.7).abs() < 1e-12);
        assert_eq!(km.median, Some(400));
        // Greenwood: at 100, 1/(5*4) = 0.05, se = 0.8 * 0.224 = 0.179, lower limit 0.449 <= 0.5:
        // the interval starts at 100. Upper limits: 100 -> 1, 200 -> 0.6 + 1.96 * 0.6 *
        // sqrt(0.05 + 1/12) > 1, 400 -> 0.3 + 1.96 * 0.3 * sqrt(0.633) = 0.768 > 0.5: no high end.
        assert_eq!((km.median_low, km.median_high), (Some(100), None));
        // With ten runs all crossing at 100..=1000, the median is bounded on both sides.
        let runs: Vec<(u64, bool)> = (1..=10).map(|i| (100 * i, true)).collect();
        let km = kaplan_meier(&runs).unwrap();
        assert_eq!(km.median, Some(500));
        let (lo, hi) = (km.median_low.unwrap(), km.median_high.unwrap());
        assert!(lo < 500 && 500 < hi, "[{lo}, {hi}]");
        assert_eq!(km.fraction_by_budget, 1.0);

        // Censoring alone: no median, nothing grokked.
        let km = kaplan_meier(&[(1000, false), (1000, false)]).unwrap();
        assert_eq!((km.median, km.fraction_by_budget), (None, 0.0));
        assert!(kaplan_meier(&[]).is_none());
        assert_eq!(as_event(Crossing::Censored { last_step: 7 }), (7, false));
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
