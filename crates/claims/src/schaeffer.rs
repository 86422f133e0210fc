//! Schaeffer et al. 2023 on the lab's ladder: per answer length, does exact match jump, and
//! does a continuous metric jump with it? And, since a longer sum also carries more often,
//! exact match per number of carries (curves.csv.gz), so that length is read at fixed carries.

use crate::fmt::{opt, p};
use crate::scale;
use crate::table::{Row, Table};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The scores in the order the table shows them: the all-or-nothing one, then the graded ones.
const SCORES: &[&str] = &[
    "exact_match",
    "token_accuracy",
    "1 - edit_distance/answer_len",
    "answer_logprob",
    "-brier",
];

pub fn render(dir: &Path) -> Result<String> {
    let thresholds = Table::read(dir, "thresholds.csv")?;
    let over_params: Vec<Row> = thresholds.filter("scale", "params").collect();
    let mut digits: Vec<f64> = over_params
        .iter()
        .map(|r| r.req("axis_task.digits"))
        .collect::<Result<_>>()?;
    digits.sort_by(f64::total_cmp);
    digits.dedup();
    let find = |d: f64, score: &str| -> Result<Row> {
        let d = format!("{d}");
        thresholds.one(&[
            ("scale", "params"),
            ("axis_task.digits", &d),
            ("score", score),
        ])
    };
    let mut s = String::new();
    writeln!(
        s,
        "| digits | answer tokens L | exact match | Schaeffer's test | a continuous metric jumps | max \\|EM - product of per-position accuracies\\| |\n|---|---|---|---|---|---|"
    )?;
    for &d in &digits {
        let em = find(d, "exact_match")?;
        writeln!(
            s,
            "| {d} | {} | {} | {} | {} | {} |",
            em.get("answer_len")?,
            scale::verdict(&em)?,
            or_dash(em.get("schaeffer")?),
            or_dash(em.get("schaeffer_continuous_jump")?),
            opt(em.num("em_product_gap")?, 3),
        )?;
    }
    writeln!(s)?;
    writeln!(
        s,
        "Each score's verdict over parameters, with p_smooth (a jump when below 0.05):\n"
    )?;
    write!(s, "| digits |")?;
    for score in SCORES {
        write!(s, " {score} |")?;
    }
    writeln!(s, "\n|---|{}", "---|".repeat(SCORES.len()))?;
    for &d in &digits {
        write!(s, "| {d} |")?;
        for score in SCORES {
            let r = find(d, score)?;
            write!(
                s,
                " {}, p = {} |",
                scale::verdict(&r)?,
                p(r.num("p_smooth")?)
            )?;
        }
        writeln!(s)?;
    }
    writeln!(s)?;
    for &d in &digits {
        writeln!(
            s,
            "- {d} digits, exact match: {}",
            scale::summary(&find(d, "exact_match")?)?
        )?;
    }
    writeln!(s)?;
    s.push_str(&by_carries(dir)?);
    Ok(s)
}

/// Final validation exact match per (digits, carries) and width, the mean over seeds: the
/// `subtask_accuracy.<c>` series of curves.csv.gz (examples with c carries) at each run's last
/// eval.
fn by_carries(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let curves = Table::read(dir, "curves.csv.gz")?;
    // (job, carries) -> (step, value) of the latest eval.
    let mut last: BTreeMap<(&str, u32), (f64, f64)> = BTreeMap::new();
    for r in curves.filter("split", "val") {
        let Some(c) = r.get("metric")?.strip_prefix("subtask_accuracy.") else {
            continue;
        };
        let (step, value) = (r.req("step")?, r.req("value")?);
        let slot = last
            .entry((r.get("job_id")?, c.parse()?))
            .or_insert((step, value));
        if step >= slot.0 {
            *slot = (step, value);
        }
    }
    if last.is_empty() {
        anyhow::bail!(
            "{}: no `subtask_accuracy.<carries>` series (exported before addition was grouped by carries)",
            dir.join("curves.csv.gz").display()
        );
    }
    // digits -> carries -> width -> final values over seeds.
    type Cells = BTreeMap<u32, BTreeMap<u32, Vec<f64>>>;
    let mut cells: BTreeMap<u32, Cells> = BTreeMap::new();
    let mut widths: Vec<u32> = Vec::new();
    for r in runs.rows() {
        let (digits, width) = (r.req("axis_task.digits")? as u32, r.req("d_model")? as u32);
        widths.push(width);
        for (&(_, c), &(_, v)) in last.range((r.get("job_id")?, 0)..=(r.get("job_id")?, u32::MAX)) {
            cells
                .entry(digits)
                .or_default()
                .entry(c)
                .or_default()
                .entry(width)
                .or_default()
                .push(v);
        }
    }
    widths.sort_unstable();
    widths.dedup();
    let mut s = String::from(
        "Final exact match by number of carries (mean over seeds; width = d_model):\n\n| digits | carries |",
    );
    for w in &widths {
        write!(s, " {w} |")?;
    }
    writeln!(s, "\n|---|---|{}", "---|".repeat(widths.len()))?;
    for (digits, by_c) in &cells {
        for (c, by_w) in by_c {
            write!(s, "| {digits} | {c} |")?;
            for w in &widths {
                let seen: Vec<f64> = by_w
                    .get(w)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                let mean = (!seen.is_empty()).then(|| seen.iter().sum::<f64>() / seen.len() as f64);
                write!(s, " {} |", opt(mean, 2))?;
            }
            writeln!(s)?;
        }
    }
    Ok(s)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
