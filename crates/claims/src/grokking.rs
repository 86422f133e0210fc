//! Grids over task or training settings, judged by when (and whether) each run generalizes:
//! Power et al. (operation x training fraction) and Omnigrok (initial scale x weight decay).

use crate::fmt::steps;
use crate::table::{Row, Table};
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;

/// The distinct values of `column`, in the order `order` gives (numbers ascending, else as met).
fn values(table: &Table, column: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for r in table.rows() {
        let v = r.get(column)?.to_string();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.iter().all(|v| v.parse::<f64>().is_ok()) {
        out.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap()
                .total_cmp(&b.parse::<f64>().unwrap())
        });
    }
    Ok(out)
}

fn op_name(op: &str) -> &str {
    match op {
        "add" => "x + y",
        "sub" => "x - y",
        "div" => "x / y",
        "quad_sym" => "x^2 + xy + y^2",
        other => other,
    }
}

/// "k/n" runs whose `column` crossing exists, and the Kaplan-Meier median with its interval.
fn km_cell(row: &Row) -> Result<String> {
    let (n, k) = (row.req("n_runs")?, row.req("n_crossed")?);
    let median = match row.num("km_median")? {
        None => "-".to_string(),
        Some(m) => {
            let hi = row.num("km_median_high")?.map_or("-".into(), steps);
            let lo = row.num("km_median_low")?.map_or("-".into(), steps);
            format!("{} [{lo}, {hi}]", steps(m))
        }
    };
    Ok(format!("{k:.0}/{n:.0}: {median}"))
}

pub fn power(dir: &Path) -> Result<String> {
    let grok = Table::read(dir, "grokking.csv")?;
    let ops = values(&grok, "axis_task.op")?;
    let mut fractions = values(&grok, "axis_task.train_fraction")?;
    fractions.reverse();
    let mut s = String::new();
    for level in ["0.95", "0.99"] {
        writeln!(
            s,
            "Steps until validation exact match reaches {level} and holds it: runs that did, of all, and the Kaplan-Meier median with its 95% interval (\"-\": not reached by half the runs within the budget).\n"
        )?;
        write!(s, "| fraction |")?;
        for op in &ops {
            write!(s, " {} |", op_name(op))?;
        }
        writeln!(s)?;
        writeln!(s, "|---|{}", "---|".repeat(ops.len()))?;
        for f in &fractions {
            write!(s, "| {f} |")?;
            for op in &ops {
                let row = grok.one(&[
                    ("axis_task.op", op),
                    ("axis_task.train_fraction", f),
                    ("split", "val"),
                    ("level", level),
                ])?;
                write!(s, " {} |", km_cell(&row)?)?;
            }
            writeln!(s)?;
        }
        writeln!(s)?;
    }
    // Power et al.'s claim is monotone: less data, longer to generalize. Say where the medians
    // are not, at both levels (0.99 is the paper's criterion).
    for level in ["0.95", "0.99"] {
        writeln!(s, "At {level}:\n")?;
        for op in &ops {
            let mut reached = Vec::new();
            for f in fractions.iter().rev() {
                let row = grok.one(&[
                    ("axis_task.op", op),
                    ("axis_task.train_fraction", f),
                    ("split", "val"),
                    ("level", level),
                ])?;
                if let Some(m) = row.num("km_median")? {
                    reached.push((f.clone(), m));
                }
            }
            // Walking up in fraction, a median larger than one at a smaller fraction breaks
            // the order.
            let breaks: Vec<String> = reached
                .windows(2)
                .filter(|w| w[1].1 > w[0].1)
                .map(|w| {
                    format!(
                        "{} at {} against {} at {}",
                        steps(w[1].1),
                        w[1].0,
                        steps(w[0].1),
                        w[0].0
                    )
                })
                .collect();
            let order = match (reached.len(), breaks.is_empty()) {
                (0, _) => "no median within the budget at any fraction".to_string(),
                (1, _) => format!("a median at fraction {} only", reached[0].0),
                (_, true) => format!(
                    "medians from fraction {} up, falling as the fraction grows",
                    reached[0].0
                ),
                (_, false) => format!(
                    "medians from fraction {} up, not monotone: {}",
                    reached[0].0,
                    breaks.join("; ")
                ),
            };
            writeln!(s, "- {}: {order}.", op_name(op))?;
        }
        writeln!(s)?;
    }
    Ok(s)
}

pub fn omnigrok(dir: &Path) -> Result<String> {
    let runs = Table::read(dir, "runs.csv")?;
    let inits = values(&runs, "axis_model.init_scale")?;
    let wds = values(&runs, "axis_train.weight_decay")?;
    let mut s = String::new();
    for (what, column) in [
        ("validation", "final_val_exact_match"),
        ("training", "final_train_exact_match"),
    ] {
        writeln!(
            s,
            "Final {what} exact match per cell: mean over the seeds [lowest, highest]{}.\n",
            if what == "validation" {
                ", and the runs that reached 0.95 on validation and held it"
            } else {
                ""
            }
        )?;
        write!(s, "| init scale \\ weight decay |")?;
        for wd in &wds {
            write!(s, " {wd} |")?;
        }
        writeln!(s)?;
        writeln!(s, "|---|{}", "---|".repeat(wds.len()))?;
        for init in &inits {
            write!(s, "| {init} |")?;
            for wd in &wds {
                let cell: Vec<_> = runs
                    .rows()
                    .filter(|r| {
                        r.get("axis_model.init_scale").is_ok_and(|v| v == init)
                            && r.get("axis_train.weight_decay").is_ok_and(|v| v == wd)
                    })
                    .collect();
                let vals = cell
                    .iter()
                    .map(|r| r.req(column))
                    .collect::<Result<Vec<_>>>()?;
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                write!(s, " {mean:.2} [{lo:.2}, {hi:.2}]")?;
                if what == "validation" {
                    let held = cell
                        .iter()
                        .filter(|r| r.num("t_val95").ok().flatten().is_some())
                        .count();
                    write!(s, ", {held}/{}", cell.len())?;
                }
                write!(s, " |")?;
            }
            writeln!(s)?;
        }
        writeln!(s)?;
    }
    let held = runs
        .rows()
        .filter(|r| r.num("t_val95").ok().flatten().is_some())
        .count();
    write!(
        s,
        "{held} of {} runs reached validation exact match 0.95 and held it within the budget.",
        runs.rows().count()
    )?;
    Ok(s)
}
