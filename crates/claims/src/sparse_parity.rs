//! Michaud et al. 2023, multitask sparse parity: one threshold per subtask, in frequency order?

use crate::fmt::{opt, params_log};
use crate::table::Table;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub fn render(dir: &Path) -> Result<String> {
    let subtasks = Table::read(dir, "subtasks.csv")?;
    let mut s = String::from(
        "| subtask | frequency | verdict | threshold (parameters) [95%] | 10-90% width (decades) | accuracy at the smallest / largest size |\n|---|---|---|---|---|---|\n",
    );
    let mut resolved = Vec::new();
    for r in subtasks.rows() {
        let reason = r.get("reason")?;
        let verdict = if reason.is_empty() {
            format!("`{}`", r.get("verdict")?)
        } else {
            format!("`{}` ({reason})", r.get("verdict")?)
        };
        let threshold = match r.num("x0")? {
            None => "-".into(),
            Some(x) => format!(
                "{} [{}, {}]",
                params_log(x),
                r.num("x0_ci_low")?.map_or("-".into(), params_log),
                r.num("x0_ci_high")?.map_or("-".into(), params_log)
            ),
        };
        writeln!(
            s,
            "| {} | {:.3} | {verdict} | {threshold} | {} | {} / {} |",
            r.get("subtask")?,
            r.req("frequency")?,
            opt(r.num("width_decades")?, 2),
            opt(r.num("accuracy_smallest")?, 2),
            opt(r.num("accuracy_largest")?, 2),
        )?;
        if let ("emergent", Some(lo), Some(hi)) =
            (r.get("verdict")?, r.num("x0_ci_low")?, r.num("x0_ci_high")?)
        {
            resolved.push((r.get("subtask")?.to_string(), lo, hi));
        }
    }
    // Distinct thresholds: a chain of `emergent` subtasks whose intervals do not overlap,
    // greedily from the lowest.
    resolved.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut chain: Vec<&(String, f64, f64)> = Vec::new();
    for t in &resolved {
        if chain.last().is_none_or(|last| t.1 > last.2) {
            chain.push(t);
        }
    }
    writeln!(
        s,
        "\n{} subtasks `emergent`; the most with pairwise disjoint 95% intervals: {} ({}).",
        resolved.len(),
        chain.len(),
        chain
            .iter()
            .map(|(n, lo, hi)| format!("subtask {n}: [{}, {}]", params_log(*lo), params_log(*hi)))
            .collect::<Vec<_>>()
            .join("; ")
    )?;
    if let Some(first) = subtasks.rows().next() {
        write!(
            s,
            "Mean loss over parameters, fitted as a power law: exponent {} (R^2 in log-log {}).",
            opt(first.num("mean_loss_exponent")?, 2),
            opt(first.num("mean_loss_r2_log")?, 2)
        )?;
    }
    Ok(s)
}
