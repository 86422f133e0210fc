//! Grokking times: when each run's exact match crosses 0.95 and 0.99 on each split, and per
//! (group, size, split, level) their Kaplan-Meier summary over the seeds (the rows of
//! `grokking.csv`).

use elab_analysis::{Crossing, GrokkingTimes, TimeToEvent, as_event, kaplan_meier};
use elab_job::Split;

use crate::load::{Group, JobRecord};

/// Crossings of exact match on both splits (see `elab_analysis::first_crossing`; for
/// single-token answers exact match is token accuracy).
pub fn job_times(job: &JobRecord) -> GrokkingTimes {
    GrokkingTimes::from_curves(
        &job.curve(Split::Train, "exact_match"),
        &job.curve(Split::Val, "exact_match"),
    )
}

/// Kaplan-Meier time to cross of one (group, size, split, level) over the group's seeds.
pub struct GrokRow {
    pub group: usize,
    pub size: String,
    pub params: u64,
    pub split: &'static str,
    pub level: &'static str,
    pub km: TimeToEvent,
}

/// Per group, size, split and level, the Kaplan-Meier time to cross over the group's jobs of
/// that size that have records (censored runs included, at their last eval).
pub fn grokking_rows(groups: &[Group<'_>]) -> Vec<GrokRow> {
    type Pick = fn(&GrokkingTimes) -> Crossing;
    let levels: [(&str, &str, Pick); 4] = [
        ("val", "0.99", |t| t.t_val99),
        ("val", "0.95", |t| t.t_val95),
        ("train", "0.99", |t| t.t_train99),
        ("train", "0.95", |t| t.t_train95),
    ];
    let mut rows = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (params, size) in g.sizes() {
            let times: Vec<GrokkingTimes> = g
                .jobs
                .iter()
                .filter(|j| j.size == size && !j.evals.is_empty())
                .map(|j| job_times(j))
                .collect();
            // The budget is how long the runs trained, not the latest crossing: when every run
            // crossed, the Kaplan-Meier estimate's own largest time is an event's.
            let budget = g
                .jobs
                .iter()
                .filter(|j| j.size == size)
                .filter_map(|j| j.evals.last().map(|e| e.step))
                .max()
                .unwrap_or(0);
            for (split, level, pick) in levels {
                let runs: Vec<(u64, bool)> = times.iter().map(|t| as_event(pick(t))).collect();
                if let Some(mut km) = kaplan_meier(&runs) {
                    km.budget = km.budget.max(budget);
                    rows.push(GrokRow {
                        group: gi,
                        size: size.to_string(),
                        params,
                        split,
                        level,
                        km,
                    });
                }
            }
        }
    }
    rows
}
