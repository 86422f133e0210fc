//! Schaeffer et al. 2023 on the lab's ladder: per answer length, does exact match jump, and
//! does a continuous metric jump with it?

use crate::fmt::{opt, p};
use crate::scale;
use crate::table::{Row, Table};
use anyhow::Result;
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
    Ok(s)
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
