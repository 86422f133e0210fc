//! Olsson et al. 2022: the repeated segment's accuracy over training, per depth (curves.csv.gz).

use crate::fmt::{opt, params, steps};
use crate::table::Table;
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
    let mut rows: Vec<_> = runs.rows().collect();
    rows.sort_by(|a, b| {
        let k = |r: &crate::table::Row| {
            (
                r.req("n_layer").unwrap_or(0.0),
                r.req("d_model").unwrap_or(0.0),
                r.req("seed").unwrap_or(0.0),
            )
        };
        k(a).partial_cmp(&k(b)).unwrap()
    });
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
    Ok(s)
}
