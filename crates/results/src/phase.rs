//! Phase diagrams: for every pair of swept axes that vary (seed aside), one grid of cells, each
//! cell the runs sharing both axis values (its seeds), summarised by the mean final validation
//! exact match and the Kaplan-Meier time to grok.
//!
//! Axes are the size ladder (`size`, ordered by parameter count) and every other swept key of
//! the plan with at least two values (numbers sorted numerically, anything else as text). With
//! more than two varying axes, each pair gets one diagram per combination of the remaining
//! axes' values (the diagram's group). The export writes every diagram to `phase.csv` and
//! draws some of them (elab-report decides which).

use std::collections::BTreeMap;

use elab_analysis::{Crossing, GrokkingTimes, TimeToEvent, as_event, kaplan_meier};
use elab_job::{JobState, Split};

use crate::load::{JobRecord, SweepData, numeric, value_text};

/// The pseudo-key of the size ladder (a job's `size`), the only axis not in `axes`.
pub const SIZE_AXIS: &str = "size";

/// The validation exact match a run must reach and hold to have grokked. 0.95 rather than
/// 0.99: small validation sets and label noise keep some runs just under 0.99 for good.
pub const GROK_LEVEL: &str = "0.95";

/// A varying axis with its values in display order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// `size` or the dotted key of the swept axis.
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    fn index_of(&self, value: &str) -> Option<usize> {
        self.values.iter().position(|v| v == value)
    }
}

/// The value of axis `key` for `job` as text: its size name for `size`, else the swept value.
fn axis_value(job: &JobRecord, key: &str) -> Option<String> {
    if key == SIZE_AXIS {
        return (!job.size.is_empty()).then(|| job.size.clone());
    }
    job.axes.get(key).map(value_text)
}

/// The number an axis value sorts by: parameters for a size, the value itself for a number.
fn sort_number(job: &JobRecord, key: &str) -> Option<f64> {
    if key == SIZE_AXIS {
        return Some(job.counts.total as f64);
    }
    job.axes.get(key).and_then(numeric)
}

/// Distinct `(text, number)` values in display order: by number when every value has one
/// (sizes by their smallest parameter count), else by text.
pub fn ordered_values(values: &[(String, Option<f64>)]) -> Vec<String> {
    let mut by_text: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    for (text, number) in values {
        let entry = by_text.entry(text).or_insert(*number);
        *entry = match (*entry, *number) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
    }
    let mut out: Vec<(&str, Option<f64>)> = by_text.into_iter().collect();
    if out.iter().all(|(_, n)| n.is_some()) {
        out.sort_by(|a, b| a.1.unwrap().total_cmp(&b.1.unwrap()).then(a.0.cmp(b.0)));
    }
    out.into_iter().map(|(t, _)| t.to_string()).collect()
}

/// Every axis with at least two values among `jobs`: size first, then the swept keys in
/// order. Seed is never an axis (seeds are the repeats a cell averages over).
pub fn varying_axes(jobs: &[&JobRecord], axis_keys: &[String]) -> Vec<Axis> {
    let keys = std::iter::once(SIZE_AXIS).chain(
        axis_keys
            .iter()
            .map(String::as_str)
            .filter(|k| *k != "seed" && *k != SIZE_AXIS),
    );
    keys.filter_map(|key| {
        let values: Vec<(String, Option<f64>)> = jobs
            .iter()
            .filter_map(|j| Some((axis_value(j, key)?, sort_number(j, key))))
            .collect();
        let values = ordered_values(&values);
        (values.len() >= 2).then(|| Axis {
            key: key.to_string(),
            values,
        })
    })
    .collect()
}

/// What one run contributes to its cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOutcome {
    /// Validation exact match at the last evaluation.
    pub final_accuracy: Option<f64>,
    /// When validation exact match reached [`GROK_LEVEL`] for good (censored at the last eval).
    pub grok: Crossing,
    /// Step of the last evaluation.
    pub last_step: u64,
    pub done: bool,
}

impl RunOutcome {
    fn of(job: &JobRecord) -> Self {
        let times = GrokkingTimes::from_curves(
            &job.curve(Split::Train, "exact_match"),
            &job.curve(Split::Val, "exact_match"),
        );
        Self {
            final_accuracy: job.final_value(Split::Val, "exact_match"),
            grok: times.t_val95,
            last_step: job.evals.last().map_or(0, |r| r.step),
            done: job.state == JobState::Done,
        }
    }
}

/// One cell of a phase diagram: the runs (seeds) at one pair of axis values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub n_runs: usize,
    pub n_done: usize,
    /// Mean over the runs with a finite final value (a diverged eval can be NaN).
    pub mean_final_accuracy: Option<f64>,
    /// Largest last eval step of the runs: how long a censored cell was watched. (The
    /// Kaplan-Meier `grok.budget` is the largest event or censoring time, which is the
    /// latest crossing when every run crossed.)
    pub budget: u64,
    /// Kaplan-Meier time to grok over the runs: censored runs count at their last eval rather
    /// than being dropped, so the median is `None` (censored) unless half the runs grokked.
    pub grok: TimeToEvent,
}

impl Cell {
    /// `None` for no runs.
    pub fn from_runs(runs: &[RunOutcome]) -> Option<Self> {
        let events: Vec<(u64, bool)> = runs.iter().map(|r| as_event(r.grok)).collect();
        let grok = kaplan_meier(&events)?;
        let finite: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.final_accuracy)
            .filter(|v| v.is_finite())
            .collect();
        Some(Self {
            n_runs: runs.len(),
            n_done: runs.iter().filter(|r| r.done).count(),
            budget: runs.iter().map(|r| r.last_step).max().unwrap_or(0),
            mean_final_accuracy: (!finite.is_empty())
                .then(|| finite.iter().sum::<f64>() / finite.len() as f64),
            grok,
        })
    }

    /// No median time to grok within the budget: fewer than half the runs grokked.
    pub fn censored(&self) -> bool {
        self.grok.median.is_none()
    }

    /// log10 of the median step to grok (a crossing at step 0 counts as step 1, so that a run
    /// that starts above the level still has a finite log).
    pub fn log10_time_to_grok(&self) -> Option<f64> {
        self.grok.median.map(|m| (m.max(1) as f64).log10())
    }
}

/// One phase diagram: `x` against `y` at fixed values of every other varying axis.
#[derive(Debug, Clone)]
pub struct Diagram {
    pub x: Axis,
    pub y: Axis,
    /// The other varying axes' values, `(key, value)` in axis order; empty with two axes.
    pub group: Vec<(String, String)>,
    /// `(x index, y index, cell)` for every pair of values with runs.
    pub cells: Vec<(usize, usize, Cell)>,
}

impl Diagram {
    /// `k=v k2=v2`, empty when only the diagram's two axes vary.
    pub fn group_label(&self) -> String {
        let parts: Vec<String> = self.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.join(" ")
    }

    pub fn title(&self) -> String {
        let mut t = format!("{} x {}", self.x.key, self.y.key);
        if !self.group.is_empty() {
            t.push_str(&format!(" at {}", self.group_label()));
        }
        t
    }
}

/// Every phase diagram of the sweep: each pair of varying axes (in [`varying_axes`] order, the
/// earlier one on x) and each combination of the other axes' values present. Planned jobs with
/// records only: orphans have no axis values, and a job never started has no outcome.
pub fn diagrams(data: &SweepData) -> Vec<Diagram> {
    let jobs: Vec<&JobRecord> = data
        .jobs
        .iter()
        .filter(|j| j.state != JobState::Orphaned && !j.evals.is_empty())
        .collect();
    let axes = varying_axes(&jobs, &data.axis_keys);
    let mut out = Vec::new();
    for (i, x) in axes.iter().enumerate() {
        for y in &axes[i + 1..] {
            let others: Vec<&Axis> = axes
                .iter()
                .filter(|a| a.key != x.key && a.key != y.key)
                .collect();
            out.extend(pair_diagrams(&jobs, x, y, &others));
        }
    }
    out
}

/// Diagrams of `x` against `y`, one per combination of the `others` values, in axis order.
fn pair_diagrams(jobs: &[&JobRecord], x: &Axis, y: &Axis, others: &[&Axis]) -> Vec<Diagram> {
    // (indices of the other axes' values) -> (x index, y index) -> runs.
    type Cells = BTreeMap<(usize, usize), Vec<RunOutcome>>;
    let mut by_group: BTreeMap<Vec<usize>, Cells> = BTreeMap::new();
    for job in jobs {
        let index = |axis: &Axis| axis.index_of(&axis_value(job, &axis.key)?);
        let (Some(xi), Some(yi)) = (index(x), index(y)) else {
            continue;
        };
        let Some(group) = others.iter().map(|a| index(a)).collect::<Option<Vec<_>>>() else {
            continue;
        };
        by_group
            .entry(group)
            .or_default()
            .entry((xi, yi))
            .or_default()
            .push(RunOutcome::of(job));
    }
    by_group
        .into_iter()
        .map(|(group, cells)| Diagram {
            x: x.clone(),
            y: y.clone(),
            group: others
                .iter()
                .zip(group)
                .map(|(a, i)| (a.key.clone(), a.values[i].clone()))
                .collect(),
            cells: cells
                .into_iter()
                .filter_map(|((xi, yi), runs)| Some((xi, yi, Cell::from_runs(&runs)?)))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acc: f64, grok: Crossing) -> RunOutcome {
        RunOutcome {
            final_accuracy: Some(acc),
            grok,
            last_step: 1000,
            done: true,
        }
    }

    const fn at(step: u64) -> Crossing {
        Crossing::At {
            after: step - 100,
            step,
        }
    }

    const NEVER: Crossing = Crossing::Censored { last_step: 1000 };

    #[test]
    fn numbers_sort_numerically_and_text_alphabetically() {
        let v = |t: &str, n: Option<f64>| (t.to_string(), n);
        let numbers = [v("10", Some(10.0)), v("0.5", Some(0.5)), v("2", Some(2.0))];
        assert_eq!(ordered_values(&numbers), ["0.5", "2", "10"]);
        // Sizes: by their parameter count, the smallest where a name has several.
        let sizes = [
            v("m", Some(5e4)),
            v("s", Some(2e4)),
            v("m", Some(3e4)),
            v("l", Some(1e6)),
        ];
        assert_eq!(ordered_values(&sizes), ["s", "m", "l"]);
        let mixed = [v("b", None), v("a", Some(1.0)), v("b", None)];
        assert_eq!(ordered_values(&mixed), ["a", "b"]);
    }

    #[test]
    fn a_cell_where_every_seed_groks_has_the_median_step() {
        let c =
            Cell::from_runs(&[run(1.0, at(300)), run(0.98, at(500)), run(0.99, at(400))]).unwrap();
        assert_eq!((c.n_runs, c.n_done, c.grok.events), (3, 3, 3));
        assert!((c.mean_final_accuracy.unwrap() - 0.99).abs() < 1e-12);
        assert_eq!(c.grok.median, Some(400));
        // The budget is how long the runs were watched, not the latest crossing.
        assert_eq!((c.budget, c.grok.budget), (1000, 500));
        assert!(!c.censored());
        assert!((c.log10_time_to_grok().unwrap() - 400f64.log10()).abs() < 1e-12);
    }

    #[test]
    fn a_cell_where_fewer_than_half_grok_is_censored() {
        let c = Cell::from_runs(&[run(0.97, at(600)), run(0.1, NEVER), run(0.2, NEVER)]).unwrap();
        assert!(c.censored());
        assert_eq!((c.grok.events, c.budget), (1, 1000));
        assert_eq!(c.log10_time_to_grok(), None);
        assert!((c.grok.fraction_by_budget - 1.0 / 3.0).abs() < 1e-12);
        // Two of three: the median is the second crossing, not the mean of the two.
        let c =
            Cell::from_runs(&[run(0.97, at(200)), run(0.1, NEVER), run(0.98, at(800))]).unwrap();
        assert_eq!((c.grok.median, c.censored()), (Some(800), false));
    }

    #[test]
    fn non_finite_accuracies_are_left_out_of_the_mean_and_step_zero_has_a_log() {
        let mut diverged = run(f64::NAN, NEVER);
        diverged.done = false;
        let c = Cell::from_runs(&[
            run(0.5, Crossing::At { after: 0, step: 0 }),
            run(0.5, Crossing::At { after: 0, step: 0 }),
            diverged,
        ])
        .unwrap();
        assert_eq!((c.n_runs, c.n_done), (3, 2));
        assert_eq!(c.mean_final_accuracy, Some(0.5));
        assert_eq!(c.log10_time_to_grok(), Some(0.0));
        assert!(Cell::from_runs(&[]).is_none());
    }
}
