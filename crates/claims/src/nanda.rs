//! Nanda et al. 2023: each run's memorization and grokking steps (runs.csv), and the progress
//! measures along training (curves.csv.gz).

use crate::fmt::{opt, steps};
use crate::table::{Row, Table};
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// Restricted loss (nats) below which the key frequencies alone fit the training set: the
/// Fourier circuit has formed (Nanda et al.'s "circuit formation").
const RESTRICTED: f64 = 0.1;
/// Excluded loss (nats) above which the model no longer fits the training set without its key
/// frequencies, once it had memorized it: the memorizing components are gone ("cleanup").
const EXCLUDED: f64 = 1.0;

pub fn render(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let rows = by_decay_then_seed(&runs);
    let mut s = String::new();
    writeln!(
        s,
        "| weight decay | seed | steps | train EM >= 0.99 from | val EM >= 0.95 from | val EM >= 0.99 from | final val EM |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|")?;
    // (runs, of them reaching val EM >= 0.95) with weight decay and without
    let (mut decayed, mut undecayed) = ((0, 0), (0, 0));
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
        let count = if wd > 0.0 {
            &mut decayed
        } else {
            &mut undecayed
        };
        count.0 += 1;
        count.1 += usize::from(r.num("t_val95")?.is_some());
    }
    writeln!(s)?;
    write!(
        s,
        "With weight decay, {} of {} runs hold validation exact match >= 0.95 within the budget; without it, {} of {}.",
        decayed.1, decayed.0, undecayed.1, undecayed.0,
    )?;
    Ok(s)
}

/// The progress measures of each run (training split, every evaluation): when the excluded
/// loss rises above [`EXCLUDED`] and the restricted loss falls below [`RESTRICTED`], beside the
/// grokking step, and the weight norm from memorization to the end.
pub fn progress(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let curves = Table::read(dir, "curves.csv.gz")?;
    let wanted = [
        "fourier.restricted_loss",
        "fourier.excluded_loss",
        "fourier.key_share",
        "weight_norm",
    ];
    let series = curves.series("train", |m| wanted.contains(&m))?;
    let mut s = format!(
        "| weight decay | seed | train EM >= 0.99 from | excluded loss > {EXCLUDED} from (after memorizing) | restricted loss < {RESTRICTED} from | val EM >= 0.95 from | weight norm at memorizing, final | final key-frequency share |\n|---|---|---|---|---|---|---|---|\n"
    );
    let (mut grokked, mut in_order) = (0, 0);
    let mut undecayed_restricted: Vec<f64> = Vec::new();
    let mut undecayed_excluded: Vec<f64> = Vec::new();
    for r in by_decay_then_seed(&runs) {
        let job = series.get(r.get("job_id")?);
        let points = |m: &str| job.and_then(|j| j.get(m)).map_or(&[][..], Vec::as_slice);
        let memorized = r.num("t_train99")?;
        let restricted = points("fourier.restricted_loss")
            .iter()
            .find(|p| p.1 < RESTRICTED)
            .map(|p| p.0);
        let excluded = memorized.and_then(|m| {
            points("fourier.excluded_loss")
                .iter()
                .find(|p| p.0 >= m && p.1 > EXCLUDED)
                .map(|p| p.0)
        });
        let norm_at = |step: f64| {
            points("weight_norm")
                .iter()
                .find(|p| p.0 >= step)
                .map(|p| p.1)
        };
        let last = |m: &str| points(m).last().map(|p| p.1);
        let grok = r.num("t_val95")?;
        let wd = r.req("axis_train.weight_decay")?;
        if let Some(g) = grok {
            grokked += 1;
            in_order +=
                usize::from(restricted.is_some_and(|t| t <= g) && excluded.is_some_and(|t| t <= g));
        }
        if wd == 0.0 {
            undecayed_restricted.extend(last("fourier.restricted_loss"));
            undecayed_excluded.extend(last("fourier.excluded_loss"));
        }
        let when = |t: Option<f64>| t.map_or("never".into(), steps);
        writeln!(
            s,
            "| {wd:.1} | {} | {} | {} | {} | {} | {}, {} | {} |",
            r.get("seed")?,
            when(memorized),
            when(excluded),
            when(restricted),
            when(grok),
            opt(memorized.and_then(norm_at), 1),
            opt(last("weight_norm"), 1),
            opt(last("fourier.key_share"), 2),
        )?;
    }
    writeln!(s)?;
    write!(
        s,
        "Of the {grokked} runs that reach validation exact match >= 0.95, {in_order} have excluded loss above {EXCLUDED} and restricted loss below {RESTRICTED} no later than that step."
    )?;
    let range = |v: &[f64]| -> Option<(f64, f64)> {
        let lo = v.iter().copied().reduce(f64::min)?;
        Some((lo, v.iter().copied().reduce(f64::max)?))
    };
    if let (Some((rlo, rhi)), Some((_, ehi))) =
        (range(&undecayed_restricted), range(&undecayed_excluded))
    {
        write!(
            s,
            " Without weight decay, the final restricted loss is {rlo:.2}-{rhi:.2} nats and the final excluded loss at most {ehi:.1e}."
        )?;
    }
    Ok(s)
}

/// The runs with weight decay first (the paper's recipe), each by seed.
fn by_decay_then_seed(runs: &Table) -> Vec<Row<'_>> {
    let mut rows: Vec<_> = runs.rows().collect();
    let key = |r: &Row| {
        (
            -r.num("axis_train.weight_decay")
                .ok()
                .flatten()
                .unwrap_or(0.0),
            r.num("seed").ok().flatten().unwrap_or(0.0),
        )
    };
    rows.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    rows
}
