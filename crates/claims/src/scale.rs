//! A verdict over scale (one thresholds.csv row) in words and numbers; shared by the arith
//! flagship and Schaeffer's answer lengths.

use crate::fmt::{opt, p, params_log};
use crate::table::Row;
use anyhow::Result;

/// The verdict with its reason when unresolved: `lottery`, `unresolved (too_few_seeds)`.
pub fn verdict(row: &Row) -> Result<String> {
    let v = row.get("verdict")?;
    let reason = row.get("reason")?;
    Ok(if reason.is_empty() {
        format!("`{v}`")
    } else {
        format!("`{v}` ({reason})")
    })
}

/// A log10(scale) midpoint as parameters with its interval: "4.6k [3.1k, 6.0k]".
pub fn midpoint(row: &Row, x0: &str, low: &str, high: &str) -> Result<String> {
    let Some(x) = row.num(x0)? else {
        return Ok("-".into());
    };
    let end = |c: &str| -> Result<String> { Ok(row.num(c)?.map_or("-".into(), params_log)) };
    Ok(format!("{} [{}, {}]", params_log(x), end(low)?, end(high)?))
}

/// The whole row in one paragraph: what the verdict rests on.
pub fn summary(row: &Row) -> Result<String> {
    let mut s = format!(
        "Verdict {} over {} jobs ({} sizes, at least {} seeds each).",
        verdict(row)?,
        row.get("n_jobs")?,
        row.get("n_sizes")?,
        row.get("min_seeds")?,
    );
    if row.get("two_state")? == "true" {
        s += &format!(
            " Each run either acquires or not (at most 15% of runs between the two states: {}); {} of {} runs acquired (exact match at least {}). P(acquire) rises at {} parameters with a 10-90% width of {} decades [{}, {}]; p_smooth = {} (a jump when below 0.05), p_sharp = {} (a lottery when below 0.05).",
            opt(row.num("middle_share")?, 2),
            row.get("runs_acquired")?,
            row.get("runs")?,
            opt(row.num("acquire_level")?, 2),
            midpoint(row, "acq_x0", "acq_x0_low", "acq_x0_high")?,
            opt(row.num("acq_width_decades")?, 2),
            opt(row.num("acq_width_low")?, 2),
            opt(row.num("acq_width_high")?, 2),
            p(row.num("p_smooth")?),
            p(row.num("p_sharp")?),
        );
    } else {
        s += &format!(
            " The runs' scores spread between their extremes (share in the middle half: {}), so the per-size means are fitted: midpoint {} parameters, 10-90% width {} decades, p_smooth = {}.",
            opt(row.num("middle_share")?, 2),
            midpoint(row, "x0", "x0_ci_low", "x0_ci_high")?,
            opt(row.num("width_decades")?, 2),
            p(row.num("p_smooth")?),
        );
    }
    s += match row.get("budget_limited")? {
        "true" => " The threshold was still moving when training ended (budget_limited).",
        "false" => " The threshold had settled over the last doubling of training steps.",
        _ => "",
    };
    s += match row.get("predictable")? {
        "true" => {
            " A line through the smaller sizes forecasts the larger ones within its 95% interval (predictable, in Wei et al.'s sense)."
        }
        "false" => {
            " A line through the smaller sizes does not forecast the larger ones (not predictable, in Wei et al.'s sense)."
        }
        _ => "",
    };
    Ok(s)
}

/// One table row per score: verdict, width, p-values.
pub fn score_rows(rows: &[Row]) -> Result<String> {
    let mut s = String::from(
        "| score | verdict | 10-90% width (decades) | p_smooth | runs acquired | P(acquire) width (decades) | p_sharp |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let two = r.get("two_state")? == "true";
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.get("score")?,
            verdict(r)?,
            opt(r.num("width_decades")?, 2),
            p(r.num("p_smooth")?),
            if two {
                format!("{}/{}", r.get("runs_acquired")?, r.get("runs")?)
            } else {
                "not two-state".into()
            },
            if two {
                opt(r.num("acq_width_decades")?, 2)
            } else {
                "-".into()
            },
            if two {
                p(r.num("p_sharp")?)
            } else {
                "-".into()
            },
        );
    }
    Ok(s)
}
