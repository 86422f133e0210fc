//! Progress measures under the grokking curve, over linear steps as in Nanda et al.'s figures:
//! validation exact match and the total weight norm for every task; for modular addition and
//! subtraction also the Fourier measures (key-frequency share of the embedding, test loss,
//! restricted loss, excluded loss; losses on a log axis). One line per job.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FAMILY, Plot, draw_legend, last_step, no_data};
use elab_job::Split;
use elab_results::load::{Group, JobRecord};

/// One panel: metrics of one split (a line per job and metric, a job's lines in one colour),
/// on a linear or a log10 y axis.
struct Panel {
    title: String,
    split: Split,
    metrics: Vec<String>,
    log_y: bool,
}

fn panel(title: &str, split: Split, metric: &str, log_y: bool) -> Panel {
    Panel {
        title: title.to_string(),
        split,
        metrics: vec![metric.to_string()],
        log_y,
    }
}

/// Every task but induction: the grokking curve and what weight decay acts on.
fn common() -> Vec<Panel> {
    vec![
        panel("validation exact match", Split::Val, "exact_match", false),
        panel("total weight norm", Split::Train, "weight_norm", false),
    ]
}

/// Modular addition and subtraction (`crate::fourier` in elab-train): restricted loss falls
/// before the test loss, excluded loss rises as memorization is cleaned up.
fn fourier() -> Vec<Panel> {
    vec![
        panel(
            "embedding norm share of the 5 key frequencies",
            Split::Train,
            "fourier.key_share",
            false,
        ),
        panel("test loss (log10)", Split::Val, "loss", true),
        panel(
            "restricted loss, all pairs (log10)",
            Split::Train,
            "fourier.restricted_loss",
            true,
        ),
        panel(
            "excluded loss, training pairs (log10)",
            Split::Train,
            "fourier.excluded_loss",
            true,
        ),
    ]
}

/// Induction (`crate::heads` in elab-train): the repeated-segment accuracy, the best
/// prefix-matching score of a copying head, and each layer's heads (a line per head).
fn heads(group: &Group<'_>) -> Vec<Panel> {
    let layers = group
        .jobs
        .iter()
        .map(|j| j.spec.model.n_layer)
        .max()
        .unwrap_or(0);
    let n_head = group
        .jobs
        .iter()
        .map(|j| j.spec.model.n_head)
        .max()
        .unwrap_or(0);
    let mut panels = vec![
        panel(
            "validation repeated-segment accuracy",
            Split::Val,
            "repeat_accuracy",
            false,
        ),
        panel(
            "induction score: best prefix matching of a copying head",
            Split::Train,
            "heads.induction",
            false,
        ),
    ];
    for (score, what) in [
        ("prefix_matching", "prefix matching"),
        ("copying", "copying"),
    ] {
        for l in 0..layers {
            panels.push(Panel {
                title: format!("{what}, layer {l} (a line per head)"),
                split: Split::Train,
                metrics: (0..n_head)
                    .map(|h| format!("heads.{score}.{l}.{h}"))
                    .collect(),
                log_y: false,
            });
        }
    }
    panels
}

fn has(group: &Group<'_>, metric: &str) -> bool {
    group.jobs.iter().any(|j| j.evals.has(metric))
}

pub struct ProgressPlot<'a> {
    group: &'a Group<'a>,
    panels: Vec<Panel>,
}

impl<'a> ProgressPlot<'a> {
    /// The figure of a group whose runs recorded the progress measures; `None` for the others
    /// (runs from before the measures existed, hand-made sweeps), which get no figure.
    pub fn of(group: &'a Group<'a>) -> Option<Self> {
        if !has(group, "weight_norm") {
            return None;
        }
        let panels = if has(group, "heads.induction") {
            heads(group)
        } else if has(group, "fourier.key_share") {
            common().into_iter().chain(fourier()).collect()
        } else {
            common()
        };
        Some(Self { group, panels })
    }
}

impl Plot for ProgressPlot<'_> {
    fn size(&self) -> (u32, u32) {
        if self.panels.len() > 2 {
            (1500, 820)
        } else {
            (1200, 420)
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("{}: progress measures", self.group.label),
            (FAMILY, 20),
        )?;
        let grid = match self.panels.len() {
            0..=2 => (1, 2),
            3..=6 => (2, 3),
            n => (n.div_ceil(4), 4),
        };
        let max_step = last_step(&self.group.jobs).max(1) as f64;
        for (i, (area, panel)) in root.split_evenly(grid).iter().zip(&self.panels).enumerate() {
            draw_panel(area, panel, &self.group.jobs, max_step, i == 0)?;
        }
        Ok(())
    }
}

/// A job's line label: its size and seed (the group already fixes the other axes).
fn job_label(job: &JobRecord) -> String {
    format!("{} seed {}", job.size, job.spec.seed)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    jobs: &[&JobRecord],
    max_step: f64,
    legend: bool,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    // Log panels plot log10 of the value on a linear axis (zeros and negatives left out). Each
    // job's curves, one per metric.
    let curves: Vec<Vec<Vec<(f64, f64)>>> = jobs
        .iter()
        .map(|job| {
            panel
                .metrics
                .iter()
                .map(|metric| {
                    job.curve(panel.split, metric)
                        .into_iter()
                        .filter(|(_, v)| v.is_finite() && (!panel.log_y || *v > 0.0))
                        .map(|(s, v)| (s as f64, if panel.log_y { v.log10() } else { v }))
                        .collect()
                })
                .collect()
        })
        .collect();
    let values = || curves.iter().flatten().flatten().map(|p| p.1);
    let Some(lo) = values().reduce(f64::min) else {
        no_data(area, &panel.title)?;
        return Ok(());
    };
    let hi = values().fold(lo, f64::max);
    let (ylo, yhi) = match (panel.log_y, panel.metrics[0].as_str()) {
        (true, _) => (lo.floor() - 0.1, hi.ceil() + 0.1),
        (false, "weight_norm") => (0.0, hi * 1.05),
        (false, m) if m.starts_with("heads.copying") => (-1.02, 1.02),
        (false, _) => (-0.02, 1.02),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 16))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_step * 1.02, ylo..yhi)?;
    let power_of_ten = |y: &f64| {
        if (y - y.round()).abs() < 1e-9 {
            format!("1e{}", y.round())
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.max_light_lines(1)
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style((FAMILY, 12));
    if panel.log_y {
        mesh.y_label_formatter(&power_of_ten);
    }
    mesh.draw()?;
    let width = if panel.metrics.len() > 1 { 1 } else { 2 };
    for (i, (job, job_curves)) in jobs.iter().zip(curves).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (m, curve) in job_curves.into_iter().enumerate() {
            let series = chart.draw_series(LineSeries::new(curve, color.stroke_width(width)))?;
            if legend && m == 0 {
                series.label(job_label(job)).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
    }
    if legend {
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    Ok(())
}
