//! The flagship: exact match of 3-digit addition over a ladder of widths, many seeds.

use crate::fmt::{opt, params, params_log, steps};
use crate::scale;
use crate::table::Table;
use anyhow::{Result, bail};
use std::fmt::Write;
use std::path::Path;

pub fn render(dir: &Path) -> Result<String> {
    let thresholds = Table::read(dir, "thresholds.csv")?;
    let over_params: Vec<_> = thresholds.filter("scale", "params").collect();
    let Some(em) = over_params
        .iter()
        .find(|r| r.get("score").is_ok_and(|s| s == "exact_match"))
    else {
        bail!(
            "{}: no exact_match row over params",
            dir.join("thresholds.csv").display()
        );
    };
    let group = em.get("group")?;
    let mut s = String::new();
    writeln!(s, "{}\n", scale::summary(em)?)?;

    // Per size: who acquired, when, and where the seeds ended.
    let acquisition = Table::read(dir, "acquisition.csv")?;
    let runs = Table::read(dir, "runs.csv")?;
    writeln!(
        s,
        "| size | params | runs acquired | median steps to acquire [95%] | final validation exact match of each seed |\n|---|---|---|---|---|"
    )?;
    for a in acquisition.filter("group", group) {
        let size = a.get("size")?;
        let mut finals = runs
            .filter("size", size)
            .map(|r| r.req("final_val_exact_match"))
            .collect::<Result<Vec<_>>>()?;
        finals.sort_by(f64::total_cmp);
        let median = match a.num("km_median")? {
            None => "-".into(),
            Some(m) => format!(
                "{} [{}, {}]",
                steps(m),
                a.num("km_median_low")?.map_or("-".into(), steps),
                a.num("km_median_high")?.map_or("-".into(), steps)
            ),
        };
        writeln!(
            s,
            "| {size} | {} | {}/{} | {median} | {} |",
            params(a.req("params_total")?),
            a.get("n_acquired")?,
            a.get("n_runs")?,
            finals
                .iter()
                .map(|f| format!("{f:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
        )?;
    }
    writeln!(s)?;

    // Every score of the same group over params: do the continuous ones jump too?
    let same_group: Vec<_> = over_params
        .iter()
        .copied()
        .filter(|r| r.get("group").is_ok_and(|g| g == group))
        .collect();
    writeln!(s, "{}", scale::score_rows(&same_group)?)?;

    // threshold(t): where P(acquire) sat at earlier steps.
    let steps_table = Table::read(dir, "threshold_steps.csv")?;
    writeln!(
        s,
        "| step | threshold (parameters) [95%] | runs acquired |\n|---|---|---|"
    )?;
    let mut rows: Vec<_> = steps_table
        .rows()
        .filter(|r| {
            r.get("group").is_ok_and(|g| g == group)
                && r.get("score").is_ok_and(|g| g == "exact_match")
                && r.get("scale").is_ok_and(|g| g == "params")
        })
        .collect();
    rows.sort_by(|a, b| {
        a.req("step")
            .unwrap_or(0.0)
            .total_cmp(&b.req("step").unwrap_or(0.0))
    });
    for r in rows {
        let x0 = match r.num("x0")? {
            None => "-".into(),
            Some(x) => format!(
                "{} [{}, {}]",
                params_log(x),
                r.num("x0_low")?.map_or("-".into(), params_log),
                r.num("x0_high")?.map_or("-".into(), params_log)
            ),
        };
        writeln!(
            s,
            "| {} | {x0} | {}/{} |",
            steps(r.req("step")?),
            r.get("acquired")?,
            r.get("runs")?
        )?;
    }
    Ok(s)
}

/// README's first lines of results: the flagship's verdict in one paragraph.
pub fn headline(dir: &Path) -> Result<String> {
    let thresholds = Table::read(dir, "thresholds.csv")?;
    let em = thresholds.one(&[("scale", "params"), ("score", "exact_match")])?;
    let acquisition = Table::read(dir, "acquisition.csv")?;
    let sizes: Vec<_> = acquisition.filter("group", em.get("group")?).collect();
    let share = |r: &crate::table::Row| -> Result<String> {
        Ok(format!(
            "{} of {} runs at {} parameters",
            r.get("n_acquired")?,
            r.get("n_runs")?,
            params(r.req("params_total")?)
        ))
    };
    let (Some(first), Some(last)) = (sizes.first(), sizes.last()) else {
        bail!(
            "{}: no sizes for the exact-match group",
            dir.join("acquisition.csv").display()
        );
    };
    let ladder = last.req("params_total")?.log10() - first.req("params_total")?.log10();
    let mut s = format!(
        "**What the flagship shows** (`configs/arith.toml`, {} runs over {ladder:.1} decades of parameters; results/arith): ",
        em.get("runs")?
    );
    if em.get("two_state")? == "true" {
        s += &format!(
            "each run either learns 3-digit addition or does not, and the share that learns rises with size, from {} to {}. P(acquire) is half at {} parameters and rises over {} decades [{}, {}] (10-90%). ",
            share(first)?,
            share(last)?,
            scale::midpoint(&em, "acq_x0", "acq_x0_low", "acq_x0_high")?,
            opt(em.num("acq_width_decades")?, 2),
            opt(em.num("acq_width_low")?, 2),
            opt(em.num("acq_width_high")?, 2),
        );
    }
    s += &format!("The lab's verdict: {}", scale::verdict(&em)?);
    s += match (em.get("verdict")?, em.get("reason")?) {
        ("unresolved", "too_few_seeds") => {
            ": that width is neither shown sharper than the 1-decade criterion (a jump, `emergent`) nor wider (a `lottery`); more seeds would tell."
        }
        ("emergent", _) => {
            ": the share rises faster than the 1-decade criterion allows a smooth trend."
        }
        ("lottery", _) => {
            ": the share rises over more than the 1-decade criterion, so the sharpness is in each run, not in scale."
        }
        _ => " (docs/analysis.md says what it means).",
    };
    Ok(s)
}
