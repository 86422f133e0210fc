//! Olsson et al. 2022: the repeated segment's accuracy over training, per depth (curves.csv.gz).

use crate::fmt::{opt, params, steps};
use crate::table::{Row, Table};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Repeat accuracy at which a run counts as copying in context: halfway from the 1-layer
/// plateau (about 1/6) to a working induction head (about 0.9).
const COPYING: f64 = 0.5;

pub fn render(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let curves = Table::read(dir, "curves.csv.gz")?;
    // Per job, the validation series of the two induction metrics, in step order.
    let mut series: BTreeMap<&str, Vec<(f64, &str, f64)>> = BTreeMap::new();
    for r in curves.filter("split", "val") {
        let metric = r.get("metric")?;
        if metric == "repeat_accuracy" || metric == "icl_score" {
            series.entry(r.get("job_id")?).or_default().push((
                r.req("step")?,
                metric,
                r.req("value")?,
            ));
        }
    }
    let mut s = String::from(
        "| layers | width | params | seed | steps | first eval with repeat accuracy >= 0.5 | final repeat accuracy | final icl_score (nats) |\n|---|---|---|---|---|---|---|---|\n",
    );
    let rows = by_shape(&runs);
    let mut copying: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let id = r.get("job_id")?;
        let points = series.get(id).map(Vec::as_slice).unwrap_or_default();
        let last = |m: &str| points.iter().rev().find(|p| p.1 == m).map(|p| p.2);
        let first = points
            .iter()
            .find(|p| p.1 == "repeat_accuracy" && p.2 >= COPYING)
            .map(|p| p.0);
        let layers = r.get("n_layer")?;
        let entry = copying.entry(layers.to_string()).or_default();
        entry.1 += 1;
        entry.0 += usize::from(last("repeat_accuracy").is_some_and(|a| a >= COPYING));
        writeln!(
            s,
            "| {layers} | {} | {} | {} | {} | {} | {} | {} |",
            r.get("d_model")?,
            params(r.req("params_total")?),
            r.get("seed")?,
            steps(r.req("last_step")?),
            first.map_or("never".into(), steps),
            opt(last("repeat_accuracy"), 2),
            opt(last("icl_score"), 2),
        )?;
    }
    writeln!(s)?;
    for (layers, (k, n)) in copying {
        writeln!(
            s,
            "- {layers}-layer models: {k} of {n} runs end with repeat accuracy >= {COPYING}."
        )?;
    }
    heads(&runs, &curves, &mut s)?;
    Ok(s)
}

/// The runs ordered by layers, width, seed.
fn by_shape(runs: &Table) -> Vec<Row<'_>> {
    let mut rows: Vec<_> = runs.rows().collect();
    let key = |r: &Row| {
        (
            r.req("n_layer").unwrap_or(0.0),
            r.req("d_model").unwrap_or(0.0),
            r.req("seed").unwrap_or(0.0),
        )
    };
    rows.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap());
    rows
}

/// Olsson et al.'s head scores at the last evaluation (train rows of curves.csv.gz, where the
/// runs recorded them): per layer the head with the highest prefix-matching score and its
/// copying score, and `heads.induction` at the end and at its peak.
fn heads(runs: &Table, curves: &Table, s: &mut String) -> Result<()> {
    let series = curves.series("train", |m| m.starts_with("heads."))?;
    if series.is_empty() {
        return Ok(());
    }
    writeln!(
        s,
        "\nHead scores at the last evaluation: per layer, the head with the highest prefix-matching score (layer.head) and its copying score; `heads.induction` at the end and at its highest.\n"
    )?;
    s.push_str(
        "| layers | width | seed | layer 0: prefix matching (head), copying | layer 1: prefix matching (head), copying | final heads.induction | highest heads.induction (step) |\n|---|---|---|---|---|---|---|\n",
    );
    let rows = by_shape(runs);
    for r in rows {
        let Some(job) = series.get(r.get("job_id")?) else {
            continue;
        };
        let last = |m: &str| job.get(m).and_then(|v| v.last()).map(|p| p.1);
        let layers = r.req("n_layer")? as usize;
        let mut cells = Vec::new();
        for l in 0..2 {
            if l >= layers {
                cells.push("-".to_string());
                continue;
            }
            let best = (0..)
                .map_while(|h| last(&format!("heads.prefix_matching.{l}.{h}")).map(|v| (h, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            cells.push(match best {
                Some((h, v)) => format!(
                    "{} ({l}.{h}), {}",
                    opt(Some(v), 2),
                    opt(last(&format!("heads.copying.{l}.{h}")), 2)
                ),
                None => "-".to_string(),
            });
        }
        let peak = job
            .get("heads.induction")
            .and_then(|v| v.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)));
        writeln!(
            s,
            "| {layers} | {} | {} | {} | {} | {} | {} |",
            r.get("d_model")?,
            r.get("seed")?,
            cells[0],
            cells[1],
            opt(last("heads.induction"), 2),
            peak.map_or("-".into(), |(step, v)| format!(
                "{} ({})",
                opt(Some(v), 2),
                steps(step)
            )),
        )?;
    }
    Ok(())
}
