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
    let mut placed: Vec<Placed> = Vec::new();
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
            placed.push(Placed {
                subtask: r.get("subtask")?.to_string(),
                frequency: r.req("frequency")?,
                x0,
                lo,
                hi,
            });
        }
    }
    let (in_order, out_of_order) = frequency_order(&placed);
    let chain = disjoint_chain(&placed);
    writeln!(
        s,
        "\n{emergent} of {} subtasks `emergent`. {} thresholds placed; of their pairs with different frequencies, {in_order} have the rarer subtask's threshold higher and {out_of_order} lower. The most with pairwise disjoint 95% intervals: {} ({}).",
        subtasks.rows().count(),
        placed.len(),
        chain.len(),
        chain
            .iter()
            .map(|t| format!(
                "subtask {}: [{}, {}]",
                t.subtask,
                params_log(t.lo),
                params_log(t.hi)
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

/// A subtask's placed threshold: log10 params and its 95% interval.
struct Placed {
    subtask: String,
    frequency: f64,
    x0: f64,
    lo: f64,
    hi: f64,
}

/// The quantization model's order, pair by pair: (pairs whose rarer subtask has the higher
/// threshold, pairs where it has the lower or the same), over pairs of different frequency.
fn frequency_order(placed: &[Placed]) -> (usize, usize) {
    let (mut in_order, mut out_of_order) = (0, 0);
    for (i, a) in placed.iter().enumerate() {
        for b in &placed[i + 1..] {
            if a.frequency == b.frequency {
                continue;
            }
            let (frequent, rare) = if a.frequency > b.frequency {
                (a, b)
            } else {
                (b, a)
            };
            if rare.x0 > frequent.x0 {
                in_order += 1;
            } else {
                out_of_order += 1;
            }
        }
    }
    (in_order, out_of_order)
}

/// Distinct thresholds, whatever the verdict on each one's sharpness: the most thresholds
/// whose intervals are pairwise disjoint, lowest first (taking, each time, the interval that
/// ends first among those starting after the last one taken, which is optimal).
fn disjoint_chain(placed: &[Placed]) -> Vec<&Placed> {
    let mut by_end: Vec<&Placed> = placed.iter().collect();
    by_end.sort_by(|a, b| a.hi.total_cmp(&b.hi));
    let mut chain: Vec<&Placed> = Vec::new();
    for t in by_end {
        if chain.last().is_none_or(|last| t.lo > last.hi) {
            chain.push(t);
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(subtask: &str, frequency: f64, lo: f64, hi: f64) -> Placed {
        Placed {
            subtask: subtask.into(),
            frequency,
            x0: (lo + hi) / 2.0,
            lo,
            hi,
        }
    }

    #[test]
    fn pairs_count_the_rarer_subtask_above_as_in_order() {
        let p = [
            placed("0", 0.5, 2.0, 2.2),
            placed("1", 0.3, 3.0, 3.2),
            placed("2", 0.2, 2.5, 2.7),
            placed("3", 0.2, 4.0, 4.2),
        ];
        // In order: 0<1, 0<2, 0<3, 1<3; out: 1 above 2; 2 and 3 share a frequency.
        assert_eq!(frequency_order(&p), (4, 1));
    }

    #[test]
    fn the_chain_is_the_longest_set_of_disjoint_intervals() {
        // A wide interval first by its start would block the two narrow ones inside it.
        let p = [
            placed("wide", 0.5, 1.0, 5.0),
            placed("a", 0.4, 1.5, 2.0),
            placed("b", 0.3, 2.5, 3.0),
            placed("touching b", 0.2, 3.0, 3.5),
            placed("c", 0.1, 3.6, 4.0),
        ];
        let chain: Vec<&str> = disjoint_chain(&p)
            .iter()
            .map(|t| t.subtask.as_str())
            .collect();
        assert_eq!(chain, ["a", "b", "c"]);
    }
}
