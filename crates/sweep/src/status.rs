//! Human-readable tables: the plan before a sweep runs, the state of a sweep while or after
//! it runs. Both read only small files, so they stay fast for thousands of jobs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};

use elab_job::{
    EvalRow, Heartbeat, JobSpec, JobState, Plan, PlannedJob, Split, SweepDir, param_counts,
};

use crate::packs::{Device, PackSize, form_packs};

/// One job of the plan, with what it costs.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub id: String,
    pub size: String,
    pub axes: String,
    pub params_total: u64,
    pub params_non_embedding: u64,
    /// Estimated training FLOPs: flops per token x steps x batch x context.
    pub train_flops: f64,
    /// About the disk its snapshots (`train.snapshots`) take.
    pub snapshot_bytes: u64,
}

/// About the disk the plan's snapshots take in all.
pub fn snapshot_bytes(plan: &Plan) -> u64 {
    plan.jobs
        .iter()
        .filter_map(|job| job.spec.as_ref())
        .map(JobSpec::snapshot_bytes)
        .sum()
}

/// `bytes` in MB or GB (1e6, 1e9).
fn disk(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

pub fn plan_rows(plan: &Plan) -> Vec<PlanRow> {
    plan.jobs
        .iter()
        .filter_map(|job| {
            let spec: &JobSpec = job.spec.as_ref()?;
            let (vocab, _, _) = spec.task.shape();
            let counts = param_counts(&spec.model, vocab, spec.n_ctx());
            Some(PlanRow {
                id: job.id.clone(),
                size: job.size.clone(),
                axes: job
                    .axes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                params_total: counts.total,
                params_non_embedding: counts.non_embedding,
                train_flops: spec.train_flops(),
                snapshot_bytes: spec.snapshot_bytes(),
            })
        })
        .collect()
}

/// The plan as a table, each job with the pack it trains in (`pack`, `slots`, `backend`: see
/// `packs`).
pub fn print_plan(plan: &Plan, pack: PackSize, slots: usize, backend: &str) -> String {
    let rows = plan_rows(plan);
    let jobs: Vec<(&PlannedJob, Option<&JobSpec>)> =
        plan.jobs.iter().map(|j| (j, j.spec.as_ref())).collect();
    let packs = form_packs(&jobs, pack, slots, Device::of_backend(backend));
    let pack_of: BTreeMap<&str, usize> = packs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.iter().map(move |j| (j.id.as_str(), i + 1)))
        .collect();
    let mut out = String::new();
    // The snapshots' disk, only for a plan that keeps some.
    let snapshots = rows.iter().any(|r| r.snapshot_bytes > 0);
    let _ = write!(
        out,
        "{:<12} {:<10} {:>12} {:>12} {:>10} {:>5}",
        "job", "size", "params", "non-emb", "FLOPs", "pack"
    );
    if snapshots {
        let _ = write!(out, " {:>10}", "snapshots");
    }
    let _ = writeln!(out, "  axes");
    for r in &rows {
        let _ = write!(
            out,
            "{:<12} {:<10} {:>12} {:>12} {:>10.2e} {:>5}",
            r.id,
            r.size,
            r.params_total,
            r.params_non_embedding,
            r.train_flops,
            pack_of.get(r.id.as_str()).copied().unwrap_or_default(),
        );
        if snapshots {
            let _ = write!(out, " {:>10}", disk(r.snapshot_bytes));
        }
        let _ = writeln!(out, "  {}", r.axes);
    }
    let total: f64 = rows.iter().map(|r| r.train_flops).sum();
    let _ = writeln!(
        out,
        "{} jobs in {} packs (pack = {pack}, {slots} slots), {:.2e} training FLOPs in all",
        rows.len(),
        packs.len(),
        total
    );
    if snapshots {
        let bytes: u64 = rows.iter().map(|r| r.snapshot_bytes).sum();
        let _ = writeln!(out, "snapshots: about {} in all", disk(bytes));
    }
    out
}

/// The last validation row of a run, read from the end of its records file.
fn last_val_row(dir: &SweepDir, id: &str) -> Option<EvalRow> {
    let mut file = std::fs::File::open(dir.job(id).evals()).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).ok()?;
    tail.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<EvalRow>(l).ok())
        .find(|r| r.split == Split::Val)
}

/// `elab status`: counts by state, then one line per size, then one line per job.
pub fn status_table(dir: &SweepDir, plan: &Plan) -> std::io::Result<String> {
    let states = dir.states(plan)?;
    let mut out = String::new();
    let mut counts: BTreeMap<JobState, usize> = BTreeMap::new();
    for state in states.values() {
        *counts.entry(*state).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(
        out,
        "{}: {} jobs: {}",
        dir.root.display(),
        states.len(),
        summary.join(", ")
    );
    // Refined sizes are ordinary jobs of the plan (listed below); say where they came from.
    if let Ok(refinements) = crate::refinements::read_refinements(dir)
        && !refinements.rounds.is_empty()
    {
        let sizes: Vec<&str> = refinements
            .sizes()
            .iter()
            .map(|(s, _)| s.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "refined: {} round(s) added {} size(s) ({}), {} jobs; see refine.json",
            refinements.rounds.len(),
            sizes.len(),
            sizes.join(", "),
            refinements.jobs()
        );
    }

    let mut by_size: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for job in &plan.jobs {
        let entry = by_size.entry(&job.size).or_default();
        entry.1 += 1;
        if states.get(&job.id) == Some(&JobState::Done) {
            entry.0 += 1;
        }
    }
    let _ = writeln!(out, "\n{:<12} {:>9}", "size", "done");
    for job in plan
        .jobs
        .iter()
        .map(|j| j.size.as_str())
        .fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        })
    {
        let (done, total) = by_size[job];
        let _ = writeln!(out, "{:<12} {:>4}/{:<4}", job, done, total);
    }

    let _ = writeln!(
        out,
        "\n{:<12} {:<10} {:<9} {:>8} {:>9} {:>9} {:>9}  axes",
        "job", "size", "state", "step", "val loss", "val tok", "val exact"
    );
    let planned = plan.jobs.iter().map(|j| {
        (
            j.id.clone(),
            j.size.clone(),
            j.axes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
    });
    let orphans = states
        .iter()
        .filter(|(_, s)| **s == JobState::Orphaned)
        .map(|(id, _)| (id.clone(), "-".to_string(), String::new()));
    for (id, size, axes) in planned.chain(orphans) {
        let state = states[&id];
        let row = last_val_row(dir, &id);
        let metric = |name: &str| {
            row.as_ref()
                .and_then(|r| r.metrics.get(name))
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into())
        };
        let step = match state {
            JobState::Running => Heartbeat::read(&dir.job(&id))
                .map(|beat| beat.step)
                .or(row.as_ref().map(|r| r.step)),
            _ => row.as_ref().map(|r| r.step),
        };
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:<9} {:>8} {:>9} {:>9} {:>9}  {}",
            id,
            size,
            state.to_string(),
            step.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            metric("loss"),
            metric("token_accuracy"),
            metric("exact_match"),
            axes
        );
    }
    Ok(out)
}
