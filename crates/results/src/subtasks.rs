//! Per-subtask analysis of multitask sparse parity: one threshold per subtask (over
//! parameters), each subtask's mean accuracy per size, and a power law for the mean validation
//! loss, with how far the placed thresholds follow the subtasks' frequency order.

use elab_analysis::{
    Criteria, LogLogFit, ThresholdReport, fit_log_log, frequency_order, mean_by_scale,
    subtask_thresholds,
};
use elab_job::Split;
use elab_tasks::TaskSpec;

use crate::load::Group;
use crate::thresholds::{BOOTSTRAP, BOOTSTRAP_SEED, Scale, fitted_jobs, val_examples};

/// Per-subtask analysis of one sparse-parity group.
#[derive(Debug, Clone)]
pub struct SubtaskGroup {
    pub group: usize,
    /// Zipf frequency of each subtask, most frequent first.
    pub frequencies: Vec<f64>,
    pub thresholds: Vec<ThresholdReport>,
    /// `(params, mean final accuracy over seeds)` per size, one list per subtask.
    pub accuracy_by_size: Vec<Vec<(f64, f64, usize)>>,
    /// `(params, mean final validation loss)` per size.
    pub loss_by_size: Vec<(f64, f64, usize)>,
    pub loss_fit: Option<LogLogFit>,
    /// Each subtask's placed threshold, log10 params: emergent, or a jump between two adjacent
    /// sizes (unresolved, but located to the gap).
    pub placed: Vec<Option<f64>>,
    /// Pairs of subtasks with placed thresholds that follow the frequency order, and not.
    pub in_order: (usize, usize),
}

/// `(scale, final validation value, seed)` of `metric` over the group's done jobs.
fn points(group: &Group<'_>, metric: &str) -> Vec<(f64, f64, u64)> {
    fitted_jobs(group)
        .into_iter()
        .filter_map(|j| {
            let v = j.final_value(Split::Val, metric)?;
            v.is_finite()
                .then_some((Scale::Params.of(j), v, j.spec.seed))
        })
        .collect()
}

/// Analyses every sparse-parity group; other groups are skipped.
pub fn subtask_groups(groups: &[Group<'_>]) -> Vec<SubtaskGroup> {
    let mut out = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        let Some(TaskSpec::SparseParity(task)) = group.jobs.first().map(|j| &j.spec.task) else {
            continue;
        };
        let per_subtask: Vec<Vec<(f64, f64, u64)>> = (0..task.n_tasks)
            .map(|i| points(group, &format!("subtask_accuracy.{i}")))
            .collect();
        // Each subtask's share of the validation examples scored: its accuracy's binomial floor.
        let scored = val_examples(group);
        let n_val: Vec<Option<u64>> = task
            .frequencies()
            .iter()
            .map(|f| scored.map(|n| ((f * n as f64).round() as u64).max(1)))
            .collect();
        let thresholds = subtask_thresholds(
            &per_subtask,
            &n_val,
            &Criteria::default(),
            BOOTSTRAP,
            BOOTSTRAP_SEED,
        );
        let losses = points(group, "loss");
        let placed: Vec<Option<f64>> = thresholds
            .iter()
            .map(|r| {
                let located =
                    r.verdict == elab_analysis::Verdict::Emergent || r.between_sizes().is_some();
                located.then_some(r.x0?)
            })
            .collect();
        out.push(SubtaskGroup {
            group: gi,
            frequencies: task.frequencies(),
            in_order: frequency_order(&placed),
            placed,
            thresholds,
            accuracy_by_size: per_subtask.iter().map(|p| mean_by_scale(p)).collect(),
            loss_by_size: mean_by_scale(&losses),
            loss_fit: fit_log_log(&losses),
        });
    }
    out
}
