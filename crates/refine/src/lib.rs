//! Adaptive refinement of a sweep: from the thresholds of its comparison groups (exactly as
//! the export computes them) to the sizes to add next.
//!
//! Data flows one way: the sweep's records -> `elab-results`' groups and thresholds ->
//! `elab_analysis::refinement_points` (log10 scales) -> [`interpolate_shape`] (model shapes) ->
//! a round of [`RefinedSize`]s, which `elab refine` records in `refine.json` and runs as
//! ordinary jobs of the sweep. This crate decides; it writes and runs nothing.

mod shape;

pub use shape::{Rung, interpolate_shape};

use elab_analysis::{ThresholdReport, Verdict, refinement_points};
use elab_job::{JobState, param_counts};
use elab_results::load::{Group, SweepData, groups};
use elab_results::thresholds::{Scale, Score, fitted_ladder, group_threshold};
use elab_sweep::{RefineSection, RefinedSize, Refinements, Size, SweepConfig};

/// The score and scale refinement narrows: exact match over total parameters (the headline
/// threshold of a model-scale group).
pub const SCORE: Score = Score::ExactMatch;
pub const SCALE: Scale = Scale::Params;

/// Where one comparison group's threshold stands.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub label: String,
    pub verdict: Verdict,
    /// The threshold interval, log10 params.
    pub interval: Option<(f64, f64)>,
    /// Distinct sizes fitted.
    pub n_sizes: usize,
    /// log10 scales `refinement_points` asks for.
    pub points: Vec<f64>,
}

impl GroupState {
    pub fn width(&self) -> Option<f64> {
        self.interval.map(|(lo, hi)| hi - lo)
    }
}

/// What a round would add.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    pub groups: Vec<GroupState>,
    /// Sizes to add, within the job budget.
    pub sizes: Vec<RefinedSize>,
    /// Points left out: no shape fits, or over the budget (with why).
    pub skipped: Vec<String>,
}

/// The sizes round `recorded.rounds.len() + 1` adds to the sweep `data` was loaded from:
/// for every group compared over model scale, the points where its exact-match threshold is
/// `unresolved` or wider than `settings.target_width_decades`, each turned into a shape along
/// the group's ladder and added for every seed, in group order until the job budget
/// (`max_new_jobs` less what earlier rounds added) runs out.
pub fn propose(
    data: &SweepData,
    config: &SweepConfig,
    settings: &RefineSection,
    recorded: &Refinements,
) -> Proposal {
    let round = recorded.rounds.len() + 1;
    let mut budget = settings.max_new_jobs.saturating_sub(recorded.jobs());
    let base_ids: Vec<String> = config
        .plan_with(&recorded.sizes())
        .map(|p| p.jobs.into_iter().map(|j| j.id).collect())
        .unwrap_or_default();
    let mut proposal = Proposal::default();
    for group in groups(data).iter().filter(|g| g.over.is_none()) {
        let report = group_threshold(group, SCORE, &SCALE);
        let ladder = fitted_ladder(group, &SCALE);
        let points = refinement_points(&report, &ladder, settings.target_width_decades);
        proposal.groups.push(GroupState {
            label: group.label.clone(),
            verdict: report.verdict,
            interval: report.x0_ci_low.zip(report.x0_ci_high),
            n_sizes: report.n_sizes,
            points: points.clone(),
        });
        let rungs = rungs(group);
        let mut added: Vec<Rung> = Vec::new();
        for point in points {
            let Some(shape) = interpolate_shape(&rungs, point, |r| params(group, r)) else {
                proposal.skipped.push(format!(
                    "{}: no shape between the sizes around 10^{point:.3} params",
                    group.label
                ));
                continue;
            };
            if added.contains(&shape) {
                continue;
            }
            let size = Size {
                name: format!("r{round}-L{}d{}", shape.n_layer, shape.d_model),
                n_layer: shape.n_layer,
                d_model: shape.d_model,
                n_head: shape.n_head,
                d_mlp: Some(shape.d_mlp),
                lr: (shape.lr != config.base.train.lr).then_some(shape.lr),
            };
            let jobs: Vec<String> = match config.plan_with(&[(&size, &group.axes)]) {
                Ok(plan) => plan
                    .jobs
                    .into_iter()
                    .filter(|j| j.size == size.name && !base_ids.contains(&j.id))
                    .map(|j| j.id)
                    .collect(),
                Err(e) => {
                    proposal.skipped.push(format!(
                        "{}: {} is not a valid job: {e}",
                        group.label, size.name
                    ));
                    continue;
                }
            };
            if jobs.is_empty() {
                continue;
            }
            if jobs.len() > budget {
                proposal.skipped.push(format!(
                    "{}: {} ({} jobs) is over the budget of max_new_jobs = {} ({} left)",
                    group.label,
                    size.name,
                    jobs.len(),
                    settings.max_new_jobs,
                    budget
                ));
                continue;
            }
            budget -= jobs.len();
            let between = neighbours(&rungs, point, |r| params(group, r));
            proposal.sizes.push(RefinedSize {
                params: params(group, &shape),
                reason: reason(&report, &ladder, &between),
                size,
                group: group.label.clone(),
                axes: group.axes.clone(),
                target_log10_params: point,
                jobs,
            });
            added.push(shape);
        }
    }
    proposal
}

/// The distinct shapes of a group (any state: a shape that already has jobs is never added
/// again), with their learning rates.
fn rungs(group: &Group<'_>) -> Vec<Rung> {
    let mut out: Vec<Rung> = Vec::new();
    for job in &group.jobs {
        if job.state == JobState::Orphaned {
            continue;
        }
        let m = &job.spec.model;
        let rung = Rung {
            n_layer: m.n_layer,
            d_model: m.d_model,
            n_head: m.n_head,
            d_mlp: m.d_mlp,
            lr: job.spec.train.lr,
        };
        if !out.contains(&rung) {
            out.push(rung);
        }
    }
    out
}

/// Total parameters of `shape` with the rest of the group's model (vocabulary, context,
/// embeddings) as its jobs have it: the count the threshold was fitted over.
fn params(group: &Group<'_>, shape: &Rung) -> u64 {
    let spec = &group.jobs[0].spec;
    let model = elab_job::ModelSpec {
        n_layer: shape.n_layer,
        d_model: shape.d_model,
        n_head: shape.n_head,
        d_mlp: shape.d_mlp,
        ..spec.model.clone()
    };
    let (vocab, _, _) = spec.task.shape();
    param_counts(&model, vocab, spec.n_ctx()).total
}

/// The parameter counts of the rungs on either side of `point` (log10), if any.
fn neighbours(
    rungs: &[Rung],
    point: f64,
    count: impl Fn(&Rung) -> u64,
) -> (Option<u64>, Option<u64>) {
    let counts: Vec<u64> = rungs.iter().map(count).collect();
    let below = counts
        .iter()
        .copied()
        .filter(|&c| (c as f64).log10() < point)
        .max();
    let above = counts
        .iter()
        .copied()
        .filter(|&c| (c as f64).log10() > point)
        .min();
    (below, above)
}

fn reason(
    report: &ThresholdReport,
    ladder: &[f64],
    between: &(Option<u64>, Option<u64>),
) -> String {
    let interval = match report.x0_ci_low.zip(report.x0_ci_high) {
        Some((lo, hi)) => format!(", x0 in [{lo:.3}, {hi:.3}] ({:.3} decades)", hi - lo),
        None => String::new(),
    };
    let place = match between {
        (Some(lo), Some(hi)) => format!("between {lo} and {hi} params"),
        (Some(lo), None) => format!("above the largest size ({lo} params)"),
        (None, Some(hi)) => format!("below the smallest size ({hi} params)"),
        (None, None) => String::new(),
    };
    format!(
        "{} over {}: {}{interval}, {} sizes; {place}",
        SCORE.label(),
        SCALE.name(),
        report.verdict,
        ladder.len()
    )
}

/// Per-group lines for the terminal: verdict, interval and width.
pub fn describe(groups: &[GroupState]) -> String {
    let mut out = String::new();
    for g in groups {
        let interval = match (g.interval, g.width()) {
            (Some((lo, hi)), Some(w)) => format!("x0 in [{lo:.3}, {hi:.3}], width {w:.3} decades"),
            _ => "no interval".into(),
        };
        out.push_str(&format!(
            "  {}: {}, {} sizes, {interval}\n",
            g.label, g.verdict, g.n_sizes
        ));
    }
    out
}
