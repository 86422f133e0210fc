//! Figures, each drawn once per backend from the same code: SVG (kept as a string, for files
//! and for inlining into the HTML) and PNG (written by plotters' bitmap encoder).
//!
//! * scale view (the mirage view): final validation score vs params_total, one panel per
//!   metric, seeds as points, the mean per size as a line, the threshold where emergent (its
//!   interval where unresolved), and on the exact-match panel the exact match predicted from
//!   smooth per-position accuracies (Schaeffer's test);
//! * grokking curves: train and validation exact match / token accuracy vs step, one line per job;
//! * emergence map: size x eval step, colour = validation exact match averaged over seeds;
//! * progress measures (`progress_figure`), where the runs recorded them: weight norm and, for
//!   modular tasks, Nanda et al.'s Fourier measures, under the validation curve;
//! * acquisition (`acquisition_figure`): exact match over params run by run, coloured by
//!   whether each run acquired, with the forecast from the smaller sizes; the share that
//!   acquired per size with the fitted P(acquire); threshold(t) over training steps;
//! * subtasks (`subtask_figure`), for sparse parity: each subtask's accuracy over params, its
//!   threshold against its frequency, the mean loss's power law;
//! * phase diagrams (`phase_figure`): two swept axes, final accuracy and time to grok.

mod acquisition_figure;
mod phase_figure;
mod progress_figure;
mod subtask_figure;

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use elab_analysis::{Verdict, mean_by_scale};
use elab_job::Split;
use elab_results::load::{Group, JobRecord};
use elab_results::subtasks::SubtaskGroup;
use elab_results::thresholds::{Scale, Score, ThresholdRow, points};
use plotters::coord::Shift;
use plotters::prelude::*;

pub use phase_figure::phase_figures;

/// DejaVu Sans (see assets/DejaVuSans-LICENSE.txt): plotters' ab_glyph text needs a font
/// registered at runtime, and bundling one keeps exports identical on every machine.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled DejaVu Sans font is invalid".to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A figure drawable on any plotters backend.
trait Plot {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static;
}

/// One rendered figure: `<stem>.svg` and `<stem>.png` under `plots/`.
#[derive(Debug, Clone)]
pub struct Figure {
    pub stem: String,
    pub title: String,
    pub svg: String,
}

/// Draws `plot` to an SVG string and to `png_path`.
fn render(plot: &impl Plot, png_path: &Path) -> anyhow::Result<String> {
    let size = plot.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        plot.draw(&root)?;
        root.present()?;
    }
    let root = BitMapBackend::new(png_path, size).into_drawing_area();
    plot.draw(&root)?;
    root.present()
        .with_context(|| format!("writing {}", png_path.display()))?;
    Ok(svg)
}

/// Renders every figure of every group; PNGs go to `plots_dir`, SVG strings are returned (the
/// caller writes them, so that all files go through the same crash-safe path).
pub fn figures(
    groups: &[Group<'_>],
    rows: &[ThresholdRow],
    subtasks: &[SubtaskGroup],
    plots_dir: &Path,
) -> anyhow::Result<Vec<Figure>> {
    register_font()?;
    let mut out = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        let params_rows: Vec<&ThresholdRow> = rows
            .iter()
            .filter(|r| r.group == gi && r.scale == Scale::Params)
            .collect();
        let mut add = |stem: String,
                       title: String,
                       plot: &dyn Fn(&Path) -> anyhow::Result<String>|
         -> anyhow::Result<()> {
            let svg = plot(&plots_dir.join(format!("{stem}.png")))?;
            out.push(Figure { stem, title, svg });
            Ok(())
        };
        let scale = ScalePlot {
            group,
            rows: &params_rows,
        };
        add(
            format!("{}_scale", group.slug),
            format!("{}: final validation score vs parameters", group.label),
            &|p| render(&scale, p),
        )?;
        let grok = GrokPlot { group };
        add(
            format!("{}_curves", group.slug),
            format!("{}: training curves", group.label),
            &|p| render(&grok, p),
        )?;
        let map = MapPlot { group };
        add(
            format!("{}_map", group.slug),
            format!("{}: emergence map (validation exact match)", group.label),
            &|p| render(&map, p),
        )?;
        if let Some(acquisition) = acquisition_figure::AcquisitionPlot::of(group, &params_rows) {
            add(
                format!("{}_acquisition", group.slug),
                format!(
                    "{}: acquisition (runs, P(acquire), threshold over training)",
                    group.label
                ),
                &|p| render(&acquisition, p),
            )?;
        }
        if let Some(progress) = progress_figure::ProgressPlot::of(group) {
            add(
                format!("{}_progress", group.slug),
                format!("{}: progress measures", group.label),
                &|p| render(&progress, p),
            )?;
        }
        if let Some(analysed) = subtasks.iter().find(|s| s.group == gi) {
            let plot = subtask_figure::SubtaskPlot {
                label: &group.label,
                analysed,
            };
            add(
                format!("{}_subtasks", group.slug),
                format!("{}: subtasks (quantization model)", group.label),
                &|p| render(&plot, p),
            )?;
        }
    }
    Ok(out)
}

/// Scientific tick text for a log axis, on 1, 2 and 5 times a power of ten only.
fn sci(x: &f64) -> String {
    if is_nice(*x) {
        format!("{x:.0e}")
    } else {
        String::new()
    }
}

/// Whether `x` is 1, 2 or 5 times a power of ten: the only ticks labelled on log axes, so
/// that labels never overlap.
fn is_nice(x: f64) -> bool {
    let mantissa = x / 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
}

/// Log-axis tick text: plain numbers below 1e5, only on 1, 2 and 5 times a power of ten.
fn log_tick(x: &f64) -> String {
    match () {
        _ if !is_nice(*x) => String::new(),
        _ if *x >= 1e5 => format!("{x:.0e}"),
        _ => format!("{}", x.round()),
    }
}

/// Log-axis bounds that leave a margin around the data (half a decade when there is one point).
fn log_bounds(xs: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = xs
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    (hi > 0.0).then(|| {
        if lo == hi {
            (lo / 3.0, hi * 3.0)
        } else {
            (lo / 1.5, hi * 1.5)
        }
    })
}

fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, what: &str) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    area.draw(&Text::new(
        format!("{what}: no data"),
        (30, 40),
        (FAMILY, 15),
    ))?;
    Ok(())
}

struct ScalePlot<'a> {
    group: &'a Group<'a>,
    rows: &'a [&'a ThresholdRow],
}

/// Panels of the mirage view, left to right.
const SCALE_PANELS: [Score; 4] = [
    Score::ExactMatch,
    Score::TokenAccuracy,
    Score::AnswerLogprob,
    Score::EditScore,
];

impl Plot for ScalePlot<'_> {
    fn size(&self) -> (u32, u32) {
        (1600, 420)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.group.label, (FAMILY, 20))?;
        for (panel, score) in root
            .split_evenly((1, SCALE_PANELS.len()))
            .iter()
            .zip(SCALE_PANELS)
        {
            let pts: Vec<(f64, f64, u64)> = points(self.group, score, &Scale::Params)
                .into_iter()
                .filter(|p| p.1.is_finite())
                .collect();
            let Some((xlo, xhi)) = log_bounds(pts.iter().map(|p| p.0)) else {
                no_data(panel, score.label())?;
                continue;
            };
            let (ylo, yhi) = match score {
                Score::AnswerLogprob => {
                    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                    let hi = pts
                        .iter()
                        .map(|p| p.1)
                        .fold(f64::NEG_INFINITY, f64::max)
                        .max(0.0);
                    let pad = ((hi - lo) * 0.05).max(0.01);
                    (lo - pad, hi + pad)
                }
                _ => (-0.02, 1.02),
            };
            let report = self
                .rows
                .iter()
                .find(|r| r.score == score)
                .map(|r| &r.report);
            let verdict = report.map_or_else(String::new, |r| format!(" ({})", r.verdict));
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{}{verdict}", score.label()), (FAMILY, 16))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)?;
            chart
                .configure_mesh()
                .max_light_lines(1)
                .x_desc("params_total")
                .x_label_formatter(&sci)
                .label_style((FAMILY, 12))
                .draw()?;
            // The threshold and its interval, drawn first so the data stays on top (for an
            // unresolved verdict, the interval is where to add sizes).
            if let Some(r) =
                report.filter(|r| matches!(r.verdict, Verdict::Emergent | Verdict::Unresolved))
            {
                if let (Some(lo), Some(hi)) = (r.x0_ci_low, r.x0_ci_high) {
                    let (lo, hi) = (
                        10f64.powf(lo).clamp(xlo, xhi),
                        10f64.powf(hi).clamp(xlo, xhi),
                    );
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(lo, ylo), (hi, yhi)],
                        RED.mix(0.12).filled(),
                    )))?;
                }
                if let Some(t) = r.threshold.filter(|t| (xlo..=xhi).contains(t)) {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(t, ylo), (t, yhi)],
                            RED.stroke_width(2),
                        )))?
                        .label(format!("threshold {t:.2e}"))
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2))
                        });
                }
            }
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y, _)| Circle::new((x, y), 4, BLUE.mix(0.5).filled())),
                )?
                .label("seeds")
                .legend(|(x, y)| Circle::new((x + 9, y), 4, BLUE.mix(0.5).filled()));
            // Schaeffer's prediction: exact match as the product of smooth per-position fits.
            let predicted = self
                .rows
                .iter()
                .find(|r| r.score == score)
                .and_then(|r| r.schaeffer.as_ref());
            if let Some(s) = predicted {
                let curve = s
                    .predicted_curve
                    .iter()
                    .map(|&(x, y)| (10f64.powf(x), y.clamp(ylo, yhi)));
                let green = RGBColor(0, 140, 60);
                chart
                    .draw_series(LineSeries::new(curve, green.stroke_width(2)))?
                    .label(format!("p^L of smooth per-token fits ({})", s.verdict))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], green.stroke_width(2))
                    });
            }
            let means: Vec<(f64, f64)> = mean_by_scale(&pts)
                .into_iter()
                .map(|m| (m.0, m.1))
                .collect();
            chart
                .draw_series(LineSeries::new(means, BLACK.stroke_width(2)))?
                .label("mean over seeds")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2))
                });
            draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
        Ok(())
    }
}

/// The last evaluated step of any of the jobs (0 with no records).
fn last_step(jobs: &[&JobRecord]) -> u64 {
    jobs.iter()
        .flat_map(|j| j.evals.last())
        .map(|r| r.step)
        .max()
        .unwrap_or(0)
}

/// The series legend of every figure, on a translucent box at `position` (upper left unless
/// the data lie there).
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// Distinct size names of a group, smallest model first, with their parameter counts.
fn sizes_by_params(jobs: &[&JobRecord]) -> Vec<(String, u64)> {
    let mut sizes: Vec<(String, u64)> = jobs
        .iter()
        .map(|j| (j.size.clone(), j.counts.total))
        .collect();
    sizes.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    sizes.dedup();
    sizes
}

struct GrokPlot<'a> {
    group: &'a Group<'a>,
}

impl Plot for GrokPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (1200, 820)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("{} (step 0 omitted on the log axis)", self.group.label),
            (FAMILY, 20),
        )?;
        let sizes = sizes_by_params(&self.group.jobs);
        let max_step = last_step(&self.group.jobs).max(2);
        let panels = [
            ("exact_match", Split::Train),
            ("exact_match", Split::Val),
            ("token_accuracy", Split::Train),
            ("token_accuracy", Split::Val),
        ];
        for (i, (panel, (metric, split))) in
            root.split_evenly((2, 2)).iter().zip(panels).enumerate()
        {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{} {metric}", split.as_str()), (FAMILY, 16))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d((1f64..max_step as f64 * 1.2).log_scale(), -0.02f64..1.02)?;
            chart
                .configure_mesh()
                .max_light_lines(1)
                .x_desc("step")
                .x_label_formatter(&log_tick)
                .label_style((FAMILY, 12))
                .draw()?;
            let mut labelled = Vec::new();
            for job in &self.group.jobs {
                let size_index = sizes
                    .iter()
                    .position(|s| s.0 == job.size && s.1 == job.counts.total)
                    .unwrap_or(0);
                let color = Palette99::pick(size_index).to_rgba();
                let curve: Vec<(f64, f64)> = job
                    .curve(split, metric)
                    .into_iter()
                    .filter(|p| p.0 > 0 && p.1.is_finite())
                    .map(|(s, v)| (s as f64, v))
                    .collect();
                let series = chart.draw_series(LineSeries::new(curve, color.stroke_width(2)))?;
                // One legend entry per size, not per seed.
                if !labelled.contains(&size_index) {
                    labelled.push(size_index);
                    let (name, params) = &sizes[size_index];
                    series
                        .label(format!(
                            "{name} ({params:.1e} params)",
                            params = *params as f64
                        ))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                        });
                }
            }
            if i == 1 {
                draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
            }
        }
        Ok(())
    }
}

/// Viridis (plotters' colormap) for a value in [0, 1], clamped; `None` or NaN (no data) is
/// light grey.
fn viridis(v: Option<f64>) -> RGBColor {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    match v.filter(|v| v.is_finite()) {
        Some(v) => ViridisRGB.get_color(v.clamp(0.0, 1.0) as f32),
        None => RGBColor(220, 220, 220),
    }
}

struct MapPlot<'a> {
    group: &'a Group<'a>,
}

impl MapPlot<'_> {
    /// (sizes, steps, cells[size][step]) with cells the mean over the size's jobs (seeds).
    #[allow(clippy::type_complexity)]
    fn grid(&self) -> (Vec<(String, u64)>, Vec<u64>, Vec<Vec<Option<f64>>>) {
        let sizes = sizes_by_params(&self.group.jobs);
        let mut steps: Vec<u64> = self
            .group
            .jobs
            .iter()
            .flat_map(|j| j.curve(Split::Val, "exact_match"))
            .map(|p| p.0)
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let cells = sizes
            .iter()
            .map(|(name, params)| {
                let jobs: Vec<_> = self
                    .group
                    .jobs
                    .iter()
                    .filter(|j| &j.size == name && j.counts.total == *params)
                    .collect();
                steps
                    .iter()
                    .map(|step| {
                        let vals: Vec<f64> = jobs
                            .iter()
                            .filter_map(|j| {
                                j.curve(Split::Val, "exact_match")
                                    .into_iter()
                                    .find(|p| p.0 == *step)
                            })
                            .map(|p| p.1)
                            .filter(|v| v.is_finite())
                            .collect();
                        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
                    })
                    .collect()
            })
            .collect();
        (sizes, steps, cells)
    }
}

impl Plot for MapPlot<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = sizes_by_params(&self.group.jobs).len() as u32;
        (1000, (200 + 45 * rows).max(360))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: validation exact match, mean over seeds",
                self.group.label
            ),
            (FAMILY, 20),
        )?;
        let (sizes, steps, cells) = self.grid();
        if steps.is_empty() {
            return no_data(&root, "validation exact_match");
        }
        let (width, _) = root.dim_in_pixel();
        let (main, bar) = root.split_horizontally(width.saturating_sub(110));
        let (nx, ny) = (steps.len() as f64, sizes.len() as f64);
        let mut chart = ChartBuilder::on(&main)
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(150)
            .build_cartesian_2d(-0.5..nx - 0.5, -0.5..ny - 0.5)?;
        // Cell centres sit on integers; label only those.
        let step_label = |x: &f64| {
            if (x - x.round()).abs() < 1e-6 {
                steps
                    .get(x.round() as usize)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        let size_label = |y: &f64| {
            if (y - y.round()).abs() < 1e-6 {
                sizes
                    .get(y.round() as usize)
                    .map(|(n, p)| format!("{n} ({:.1e})", *p as f64))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("eval step")
            .y_desc("size (params_total)")
            .x_labels(steps.len().min(16))
            .y_labels(sizes.len())
            .x_label_formatter(&step_label)
            .y_label_formatter(&size_label)
            .label_style((FAMILY, 12))
            .draw()?;
        chart.draw_series(cells.iter().enumerate().flat_map(|(yi, row)| {
            row.iter().enumerate().map(move |(xi, v)| {
                let (x, y) = (xi as f64, yi as f64);
                Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    viridis(*v).filled(),
                )
            })
        }))?;

        let mut legend = ChartBuilder::on(&bar)
            .margin(10)
            .margin_top(30)
            .margin_bottom(55)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)?;
        legend
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .label_style((FAMILY, 12))
            .draw()?;
        legend.draw_series((0..50).map(|i| {
            let (lo, hi) = (i as f64 / 50.0, (i + 1) as f64 / 50.0);
            Rectangle::new(
                [(0.0, lo), (1.0, hi)],
                viridis(Some((lo + hi) / 2.0)).filled(),
            )
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_missing() {
        assert_eq!(viridis(Some(0.0)), RGBColor(68, 1, 84));
        assert_eq!(viridis(Some(1.0)), RGBColor(254, 232, 37));
        assert_eq!(viridis(Some(7.0)), RGBColor(254, 232, 37));
        assert_eq!(viridis(None), RGBColor(220, 220, 220));
        assert_eq!(viridis(Some(f64::NAN)), RGBColor(220, 220, 220));
    }

    #[test]
    fn log_ticks_are_sparse() {
        let shown: Vec<String> = [1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 20.0, 70.0, 100.0, 2e5]
            .iter()
            .map(log_tick)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(shown, ["1", "2", "5", "10", "20", "100", "2e5"]);
    }

    #[test]
    fn log_bounds_pad_the_data() {
        assert_eq!(
            log_bounds([10.0, 1000.0].into_iter()),
            Some((10.0 / 1.5, 1500.0))
        );
        assert_eq!(log_bounds([0.0, f64::NAN].into_iter()), None);
        let (lo, hi) = log_bounds(std::iter::once(100.0)).unwrap();
        assert!(lo < 100.0 && hi > 100.0);
    }
}
