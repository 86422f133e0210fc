//! The CSV files, rendered to bytes (the caller decides where and how they are written).
//! Column order comes from `schema.rs`; each writer checks its rows against the header width.

use elab_analysis::PositionMetric;
use elab_analysis::{Crossing, TimeToEvent};
use elab_job::Split;
use elab_results::acquisition::AcquireRow;
use elab_results::grokking::{GrokRow, job_times};
use elab_results::load::{Group, SweepData, value_text};
use elab_results::phase::Diagram;
use elab_results::thresholds::ThresholdRow;

use crate::schema::{self, METRICS};

/// A number as CSV text: shortest round-trip form, `NaN`/`inf` for non-finite values.
pub(crate) fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == 0.0 {
        // -0.0 (e.g. -ln 1) reads as a distinct value in some tools; zero is zero.
        "0".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        v.to_string()
    }
}

pub(crate) fn opt_num(v: Option<f64>) -> String {
    v.map(num).unwrap_or_default()
}

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub(crate) fn write_csv(
    header: Vec<String>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut bytes = Vec::new();
    let n = stream_csv(&mut bytes, header, rows)?;
    Ok((bytes, n))
}

/// Writes the header and `rows` to `out` as they come (the table is never held whole); returns
/// the row count.
pub(crate) fn stream_csv(
    out: impl std::io::Write,
    header: Vec<String>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<usize> {
    let width = header.len();
    let mut w = csv::Writer::from_writer(out);
    w.write_record(&header)?;
    let mut n = 0;
    for row in rows {
        // A row that does not match the header is a bug here, not a data problem.
        anyhow::ensure!(
            row.len() == width,
            "internal: row has {} fields, header {}",
            row.len(),
            width
        );
        w.write_record(&row)?;
        n += 1;
    }
    // Flushed here, not on drop, where a write error (a full disk) would be lost.
    let mut out = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
    out.flush()?;
    Ok(n)
}

/// Task parameters by name, read from the spec's serialized form so that every task variant
/// fills the columns it has and leaves the others empty.
fn task_field(task: &serde_json::Value, name: &str) -> String {
    match task.get(name) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `runs.csv` and its row count.
pub fn runs_csv(data: &SweepData) -> anyhow::Result<(Vec<u8>, usize)> {
    let header = schema::names(&schema::runs_columns(Some(&data.axis_keys)));
    let rows = data.jobs.iter().map(|job| {
        let spec = &job.spec;
        let task = serde_json::to_value(&spec.task).unwrap_or_default();
        let m = &spec.model;
        let mut row = vec![job.id.clone(), spec.task.label()];
        for field in [
            "kind",
            "p",
            "op",
            "train_fraction",
            "digits",
            "reversed",
            "train_size",
            "val_size",
        ] {
            row.push(task_field(&task, field));
        }
        row.extend([
            job.answer_len.to_string(),
            job.size.clone(),
            m.n_layer.to_string(),
            m.d_model.to_string(),
            m.n_head.to_string(),
            m.d_mlp.to_string(),
            job.counts.total.to_string(),
            job.counts.non_embedding.to_string(),
            num(job.flops_per_token),
            job.tokens_seen().to_string(),
            num(job.train_flops()),
            spec.seed.to_string(),
        ]);
        for key in &data.axis_keys {
            row.push(job.axes.get(key).map(value_text).unwrap_or_default());
        }
        row.push(job.state.to_string());
        row.push(opt(job.evals.last().map(|r| r.step)));
        for split in [Split::Train, Split::Val] {
            for (metric, _, _) in METRICS {
                row.push(opt_num(job.final_value(split, metric)));
            }
        }
        let times = job_times(job);
        let summary = job.summary.as_ref();
        for c in [
            times.t_train99,
            times.t_val99,
            times.t_train95,
            times.t_val95,
        ] {
            let (after, step, censored_at) = match c {
                Crossing::At { after, step } => (Some(after), Some(step), None),
                Crossing::Censored { last_step } => (None, None, Some(last_step)),
            };
            row.extend([opt(after), opt(step), opt(censored_at)]);
        }
        row.extend([
            opt(times.delay()),
            opt_num(times.ratio()),
            opt_num(summary.map(|s| s.wall_seconds)),
            summary.map(|s| s.backend.clone()).unwrap_or_default(),
            summary.map(|s| s.device.clone()).unwrap_or_default(),
            opt(summary.map(|s| s.resumes)),
        ]);
        row
    });
    write_csv(header, rows)
}

/// `grokking.csv` and its row count.
pub fn grokking_csv(
    data: &SweepData,
    groups: &[Group<'_>],
    rows: &[GrokRow],
) -> anyhow::Result<(Vec<u8>, usize)> {
    let group_keys = data.group_axis_keys();
    let header = schema::names(&schema::grokking_columns(Some(&group_keys)));
    let out = rows.iter().map(|r| {
        let g = &groups[r.group];
        let mut row = vec![g.label.clone(), g.task.clone()];
        for key in &group_keys {
            row.push(g.axes.get(key).map(value_text).unwrap_or_default());
        }
        row.extend([
            r.size.clone(),
            r.params.to_string(),
            r.split.to_string(),
            r.level.to_string(),
        ]);
        row.extend(km_fields(&r.km));
        row
    });
    write_csv(header, out)
}

/// `curves.csv` and its row count.
pub fn curves_csv(data: &SweepData, out: impl std::io::Write) -> anyhow::Result<usize> {
    let header = schema::names(&schema::curves_columns());
    let rows = data.jobs.iter().flat_map(|job| {
        job.evals.iter().map(move |(r, metric, value)| {
            vec![
                job.id.clone(),
                job.size.clone(),
                job.counts.total.to_string(),
                job.spec.seed.to_string(),
                r.step.to_string(),
                r.tokens.to_string(),
                num(r.tokens as f64 * job.flops_per_token),
                r.split.as_str().to_string(),
                metric.to_string(),
                num(value),
            ]
        })
    });
    stream_csv(out, header, rows)
}

/// A Kaplan-Meier summary's columns, as grokking.csv and acquisition.csv both write them:
/// runs, events, budget, share by the budget, median and its interval.
fn km_fields(km: &TimeToEvent) -> [String; 7] {
    [
        km.n.to_string(),
        km.events.to_string(),
        km.budget.to_string(),
        num(km.fraction_by_budget),
        opt(km.median),
        opt(km.median_low),
        opt(km.median_high),
    ]
}

/// `acquisition.csv` and its row count.
pub fn acquisition_csv(
    groups: &[Group<'_>],
    rows: &[AcquireRow],
) -> anyhow::Result<(Vec<u8>, usize)> {
    let header = schema::names(&schema::acquisition_columns());
    let out = rows.iter().map(|r| {
        vec![
            groups[r.group].label.clone(),
            r.size.clone(),
            r.params.to_string(),
            num(r.level),
        ]
        .into_iter()
        .chain(km_fields(&r.km))
        .collect::<Vec<_>>()
    });
    write_csv(header, out)
}

/// `threshold_steps.csv` and its row count.
pub fn threshold_steps_csv(
    groups: &[Group<'_>],
    rows: &[ThresholdRow],
) -> anyhow::Result<(Vec<u8>, usize)> {
    let header = schema::names(&schema::threshold_steps_columns());
    let out = rows.iter().flat_map(|t| {
        t.over_steps.iter().map(move |s| {
            vec![
                groups[t.group].label.clone(),
                t.score.label().to_string(),
                t.scale.name().to_string(),
                s.step.to_string(),
                opt_num(s.x0),
                opt_num(s.x0_low),
                opt_num(s.x0_high),
                s.acquired.to_string(),
                s.runs.to_string(),
            ]
        })
    });
    write_csv(header, out)
}

/// `thresholds.csv` and its row count.
pub fn thresholds_csv(
    data: &SweepData,
    groups: &[Group<'_>],
    rows: &[ThresholdRow],
) -> anyhow::Result<(Vec<u8>, usize)> {
    let group_keys = data.group_axis_keys();
    let header = schema::names(&schema::thresholds_columns(Some(&group_keys)));
    let out = rows.iter().map(|t| {
        let g = &groups[t.group];
        let r = &t.report;
        let sc = t.schaeffer.as_ref();
        let mut row = vec![g.label.clone(), g.task.clone()];
        for key in &group_keys {
            row.push(g.axes.get(key).map(value_text).unwrap_or_default());
        }
        row.extend([
            t.score.metric().to_string(),
            t.score.label().to_string(),
            t.scale.name().to_string(),
            t.n_jobs.to_string(),
            r.verdict.to_string(),
            r.n_sizes.to_string(),
            r.min_seeds.to_string(),
            r.n_seeds.to_string(),
            num(r.score_range),
            opt_num(r.x0),
            opt_num(r.threshold),
            opt_num(r.width_decades),
            opt_num(r.y0),
            opt_num(r.y1),
            opt_num(r.r2_logistic),
            opt_num(r.r2_line),
            opt_num(r.delta_bic),
            opt_num(r.breakthroughness),
            opt_num(r.p_smooth),
            opt_num(r.stability),
            opt_num(r.x0_ci_low),
            opt_num(r.x0_ci_high),
            r.note().unwrap_or_default(),
            opt(r.reason.map(|u| u.tag())),
            r.two_state.to_string(),
            opt_num(r.acquire_level),
            opt_num(r.middle_share),
            r.runs.to_string(),
            r.runs_acquired.to_string(),
            r.mixed_sizes.to_string(),
            opt_num(r.acq_x0),
            opt_num(r.acq_x0_low),
            opt_num(r.acq_x0_high),
            opt_num(r.acq_width_decades),
            opt_num(r.acq_width_low),
            opt_num(r.acq_width_high),
            opt_num(r.p_sharp),
            opt(t.budget_limited),
            opt_num(t.run_rise_decades),
            opt(t.forecast.as_ref().map(|f| f.sizes_fitted)),
            opt(t.forecast.as_ref().map(|f| f.outside)),
            opt_num(t.forecast.as_ref().map(|f| f.max_excess)),
            opt(t.forecast.as_ref().map(|f| f.predictable())),
            t.answer_len.to_string(),
            opt(sc.map(|s| s.verdict)),
            opt(sc.map(|s| match s.position_metric {
                PositionMetric::Probability => "probability",
                PositionMetric::Accuracy => "accuracy",
            })),
            opt(sc.map(|s| s.continuous_jump)),
            opt_num(sc.and_then(|s| s.predicted_x0)),
            opt_num(sc.and_then(|s| s.predicted_x0_low)),
            opt_num(sc.and_then(|s| s.predicted_x0_high)),
            opt_num(sc.and_then(|s| s.token_p_smooth_min)),
            opt_num(sc.and_then(|s| s.max_gap)),
            opt_num(t.loss_fit.as_ref().map(|f| f.e)),
            opt_num(t.loss_fit.as_ref().map(|f| f.a)),
            opt_num(t.loss_fit.as_ref().map(|f| f.alpha)),
            opt_num(t.loss_fit.as_ref().map(|f| f.r2)),
        ]);
        row
    });
    write_csv(header, out)
}

/// `phase.csv` and its row count: one row per cell of every diagram.
pub fn phase_csv(diagrams: &[Diagram]) -> anyhow::Result<(Vec<u8>, usize)> {
    let header = schema::names(&schema::phase_columns());
    let rows = diagrams.iter().flat_map(|d| {
        d.cells.iter().map(move |(xi, yi, c)| {
            vec![
                d.x.key.clone(),
                d.x.values[*xi].clone(),
                xi.to_string(),
                d.y.key.clone(),
                d.y.values[*yi].clone(),
                yi.to_string(),
                d.group_label(),
                c.n_runs.to_string(),
                c.n_done.to_string(),
                opt_num(c.mean_final_accuracy),
                c.grok.events.to_string(),
                c.budget.to_string(),
                num(c.grok.fraction_by_budget),
                opt(c.grok.median),
                opt_num(c.log10_time_to_grok()),
                c.censored().to_string(),
            ]
        })
    });
    write_csv(header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_mark_non_finite() {
        assert_eq!(num(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(num(1e22), "10000000000000000000000");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(f64::NEG_INFINITY), "-inf");
        assert_eq!(opt_num(None), "");
    }
}
