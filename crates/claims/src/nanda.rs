//! Nanda et al. 2023: each run's memorization and grokking steps (runs.csv).

use crate::fmt::{opt, steps};
use crate::table::Table;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

pub fn render(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let mut rows: Vec<_> = runs.rows().collect();
    // Weight decay 1 first, as the paper's recipe, then by seed.
    rows.sort_by(|a, b| {
        let key = |r: &crate::table::Row| {
            (
                -r.num("axis_train.weight_decay")
                    .ok()
                    .flatten()
                    .unwrap_or(0.0),
                r.num("seed").ok().flatten().unwrap_or(0.0),
            )
        };
        key(a).partial_cmp(&key(b)).unwrap()
    });
    let mut s = String::new();
    writeln!(
        s,
        "| weight decay | seed | steps | train EM >= 0.99 from | val EM >= 0.95 from | val EM >= 0.99 from | final val EM |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    let mut grokked = 0;
    let mut decayed = 0;
    for r in &rows {
        let wd = r.req("axis_train.weight_decay")?;
        let cross = |c: &str| -> Result<String> { Ok(r.num(c)?.map_or("never".into(), steps)) };
        writeln!(
            s,
            "| {wd:.1} | {} | {} | {} | {} | {} | {} |",
            r.get("seed")?,
            steps(r.req("last_step")?),
            cross("t_train99")?,
            cross("t_val95")?,
            cross("t_val99")?,
            opt(r.num("final_val_exact_match")?, 3),
        )?;
        if wd > 0.0 {
            decayed += 1;
            grokked += usize::from(r.num("t_val95")?.is_some());
        }
    }
    writeln!(s)?;
    write!(
        s,
        "With weight decay, {grokked} of {decayed} runs hold validation exact match >= 0.95 within the budget; without it, {} of {}.",
        rows.iter()
            .filter(
                |r| r.num("axis_train.weight_decay").ok().flatten() == Some(0.0)
                    && r.num("t_val95").ok().flatten().is_some()
            )
            .count(),
        rows.len() - decayed,
    )?;
    Ok(s)
}
