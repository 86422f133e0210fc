//! Emergence over training time: per (group, size), when runs acquire the skill, as a
//! Kaplan-Meier summary over the seeds (the rows of `acquisition.csv`). A run acquires at the
//! first eval from which its validation exact match stays at or above the group's acquisition
//! level (`acquire_level` of its exact-match row over parameters); a run that never does is
//! censored at its last eval. Beside threshold(t) this shows emergence over scale and over
//! time as one picture: the share acquired by the budget rises with size.

use elab_analysis::{TimeToEvent, acquisition_step, kaplan_meier};
use elab_job::Split;

use crate::load::Group;
use crate::thresholds::{Scale, Score, ThresholdRow};

/// Kaplan-Meier time to acquire of one (group, size).
pub struct AcquireRow {
    pub group: usize,
    pub size: String,
    pub params: u64,
    /// The exact-match level a run must hold to have acquired.
    pub level: f64,
    pub km: TimeToEvent,
}

/// Per group and size, over the group's jobs of that size with records; groups whose
/// exact-match row over parameters has no acquisition level get none.
pub fn acquisition_rows(groups: &[Group<'_>], rows: &[ThresholdRow]) -> Vec<AcquireRow> {
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let Some(level) = rows
            .iter()
            .find(|r| r.group == gi && r.score == Score::ExactMatch && r.scale == Scale::Params)
            .and_then(|r| r.report.acquire_level)
        else {
            continue;
        };
        for (params, size) in g.sizes() {
            let runs: Vec<(u64, bool)> = g
                .jobs
                .iter()
                .filter(|j| j.size == size)
                .filter_map(|j| {
                    let curve = j.curve(Split::Val, "exact_match");
                    let last = curve.last()?.0;
                    Some(match acquisition_step(&curve, level) {
                        Some(step) => (step, true),
                        None => (last, false),
                    })
                })
                .collect();
            // The budget is how long the runs trained, not the latest acquisition.
            let budget = g
                .jobs
                .iter()
                .filter(|j| j.size == size)
                .filter_map(|j| j.curve(Split::Val, "exact_match").last().map(|p| p.0))
                .max()
                .unwrap_or(0);
            if let Some(mut km) = kaplan_meier(&runs) {
                km.budget = km.budget.max(budget);
                out.push(AcquireRow {
                    group: gi,
                    size: size.to_string(),
                    params,
                    level,
                    km,
                });
            }
        }
    }
    out
}
