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
    // (subtask, frequency, x0, interval low, interval high) of every placed threshold.
    let mut placed: Vec<(String, f64, f64, f64, f64)> = Vec::new();
    let mut emergent = 0;
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
        emergent += usize::from(r.get("verdict")? == "emergent");
        if let (Some(x0), Some(lo), Some(hi)) =
            (r.num("x0")?, r.num("x0_ci_low")?, r.num("x0_ci_high")?)
        {
            placed.push((
                r.get("subtask")?.to_string(),
                r.req("frequency")?,
                x0,
                lo,
                hi,
            ));
        }
    }
    // The quantization model's order: a rarer subtask's threshold above a more frequent one's.
    let (mut in_order, mut out_of_order) = (0, 0);
    for (i, a) in placed.iter().enumerate() {
        for b in &placed[i + 1..] {
            if a.1 == b.1 {
                continue;
            }
            let (frequent, rare) = if a.1 > b.1 { (a, b) } else { (b, a) };
            if rare.2 > frequent.2 {
                in_order += 1;
            } else {
                out_of_order += 1;
            }
        }
    }
    // Distinct thresholds, whatever the verdict on each one's sharpness: a chain of placed
    // thresholds whose intervals do not overlap, greedily from the lowest interval's end (the
    // longest such chain).
    placed.sort_by(|a, b| a.4.total_cmp(&b.4));
    let mut chain: Vec<&(String, f64, f64, f64, f64)> = Vec::new();
    for t in &placed {
        if chain.last().is_none_or(|last| t.3 > last.4) {
            chain.push(t);
        }
    }
    writeln!(
        s,
        "\n{emergent} of {} subtasks `emergent`. {} thresholds placed; of their pairs with different frequencies, {in_order} have the rarer subtask's threshold higher and {out_of_order} lower. The most with pairwise disjoint 95% intervals: {} ({}).",
        subtasks.rows().count(),
        placed.len(),
        chain.len(),
        chain
            .iter()
            .map(|(n, _, _, lo, hi)| format!(
                "subtask {n}: [{}, {}]",
                params_log(*lo),
                params_log(*hi)
            ))
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
