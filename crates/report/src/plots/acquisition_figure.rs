//! Run-level acquisition for a group's exact match over params (docs/analysis.md, "Emergence
//! over scale"): each run's final score, coloured by whether it acquired (at or above the
//! report's `acquire_level`), with the forecast from the sizes below the threshold; the share
//! of runs that acquired per size with Wilson intervals and the fitted P(acquire) with its
//! midpoint's interval; and threshold(t), the threshold placed at earlier eval steps. Nothing
//! is refitted here: the shares count the runs the fit counted, the rest is the report's.

use elab_analysis::emergence::acquisition::Counts;
use elab_analysis::{usable, wilson};
use elab_results::load::Group;
use elab_results::thresholds::{Scale, Score, ThresholdRow, points};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FAMILY, Plot, draw_legend, log_bounds, log_tick, no_data, sci};

const ACQUIRED: RGBColor = RGBColor(213, 94, 0);
const NOT_ACQUIRED: RGBColor = RGBColor(0, 114, 178);
const FORECAST: RGBColor = RGBColor(0, 140, 60);

pub struct AcquisitionPlot<'a> {
    label: &'a str,
    row: &'a ThresholdRow,
    /// `(params, final validation exact match, seed)` of every fitted (done) run.
    runs: Vec<(f64, f64, u64)>,
}

impl<'a> AcquisitionPlot<'a> {
    /// The figure of a group over model scale, from its exact-match row over params; `None`
    /// when it has none.
    pub fn of(group: &'a Group<'a>, rows: &[&'a ThresholdRow]) -> Option<Self> {
        let row = rows
            .iter()
            .find(|r| r.score == Score::ExactMatch && r.scale == Scale::Params)?;
        Some(Self {
            label: &group.label,
            row,
            runs: points(group, Score::ExactMatch, &Scale::Params)
                .into_iter()
                .filter(usable)
                .collect(),
        })
    }

    /// Runs per size and how many acquired, as the acquisition fit counted them.
    fn counts(&self) -> Option<Counts> {
        Some(Counts::new(&self.runs, self.row.report.acquire_level?))
    }
}

impl Plot for AcquisitionPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (1650, 480)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: acquisition (runs, P(acquire), threshold over training)",
                self.label
            ),
            (FAMILY, 20),
        )?;
        let panels = root.split_evenly((1, 3));
        self.runs_panel(&panels[0])?;
        self.share_panel(&panels[1])?;
        self.steps_panel(&panels[2])?;
        Ok(())
    }
}

/// ` [lo, hi]` with two decimals, or nothing when either end is missing.
fn interval(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!(" [{lo:.2}, {hi:.2}]"),
        _ => String::new(),
    }
}

impl AcquisitionPlot<'_> {
    fn runs_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let title = "final validation exact match per run";
        let Some((xlo, xhi)) = log_bounds(self.runs.iter().map(|p| p.0)) else {
            return no_data(area, title);
        };
        let (ylo, yhi) = (-0.02, 1.02);
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, 15))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("params_total")
            .x_label_formatter(&sci)
            .label_style((FAMILY, 12))
            .draw()?;

        // The forecast from the sizes below the threshold, under the runs.
        if let Some(f) = self.row.forecast.as_ref().filter(|f| !f.at.is_empty()) {
            let at: Vec<(f64, f64, f64, f64)> =
                f.at.iter()
                    .map(|&(x, lo, mid, hi, _)| {
                        let c = |y: f64| y.clamp(ylo, yhi);
                        (10f64.powf(x), c(lo), c(mid), c(hi))
                    })
                    .collect();
            let band: Vec<(f64, f64)> = at
                .iter()
                .map(|p| (p.0, p.3))
                .chain(at.iter().rev().map(|p| (p.0, p.1)))
                .collect();
            chart.draw_series([Polygon::new(band, FORECAST.mix(0.15).filled())])?;
            chart.draw_series(at.iter().map(|&(x, lo, _, hi)| {
                PathElement::new(vec![(x, lo), (x, hi)], FORECAST.mix(0.6).stroke_width(2))
            }))?;
            chart
                .draw_series(LineSeries::new(
                    at.iter().map(|p| (p.0, p.2)),
                    FORECAST.stroke_width(2),
                ))?
                .label("forecast from smaller sizes (95%)")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], FORECAST.stroke_width(2))
                });
        }

        let level = self.row.report.acquire_level;
        if let Some(level) = level {
            dashed_level(
                &mut chart,
                (xlo, xhi),
                level,
                format!("acquire level {level:.2}"),
            )?;
        }
        let acquired = |p: &&(f64, f64, u64)| level.is_some_and(|l| p.1 >= l);
        let (yes, no): (Vec<&(f64, f64, u64)>, Vec<_>) = self.runs.iter().partition(acquired);
        for (runs, colour, name) in [
            (no, NOT_ACQUIRED, "not acquired"),
            (yes, ACQUIRED, "acquired"),
        ] {
            if runs.is_empty() {
                continue;
            }
            let n = runs.len();
            let style = colour.mix(0.6).filled();
            chart
                .draw_series(runs.into_iter().map(|p| Circle::new((p.0, p.1), 4, style)))?
                .label(format!("{name} ({n} runs)"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, style));
        }
        // Two-state runs leave the middle empty, and the forecast lies to the right.
        draw_legend(&mut chart, SeriesLabelPosition::MiddleLeft)?;
        Ok(())
    }

    fn share_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let r = &self.row.report;
        let fit = match r.acq_width_decades {
            Some(w) => format!(
                "width {w:.2}{} decades",
                interval(r.acq_width_low, r.acq_width_high)
            ),
            None => "no fit".to_string(),
        };
        let reason = r
            .reason
            .map_or_else(String::new, |reason| format!(" ({})", reason.tag()));
        let title = format!("P(acquire): {fit} — {}{reason}", r.verdict);
        let (Some(counts), Some((xlo, xhi))) =
            (self.counts(), log_bounds(self.runs.iter().map(|p| p.0)))
        else {
            return no_data(area, &title);
        };
        let (ylo, yhi) = (-0.02, 1.08);
        let mut chart = ChartBuilder::on(area)
            .caption(&title, (FAMILY, 15))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("params_total")
            .y_desc("share of runs acquired")
            .x_label_formatter(&sci)
            .label_style((FAMILY, 12))
            .draw()?;

        // The midpoint's 95% interval, then the fitted curve, under the shares.
        let clamp = |x: f64| 10f64.powf(x).clamp(xlo, xhi);
        if let (Some(lo), Some(hi)) = (r.acq_x0_low, r.acq_x0_high) {
            chart
                .draw_series([Rectangle::new(
                    [(clamp(lo), 0.0), (clamp(hi), 1.0)],
                    ACQUIRED.mix(0.12).filled(),
                )])?
                .label(format!(
                    "x0 95% interval [{:.1e}, {:.1e}]",
                    10f64.powf(lo),
                    10f64.powf(hi)
                ))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], ACQUIRED.mix(0.12).filled())
                });
        }
        if let (Some(x0), Some(w)) = (r.acq_x0, r.acq_width_decades.filter(|w| *w > 0.0)) {
            let k = 81f64.ln() / w;
            let (a, b) = (xlo.log10(), xhi.log10());
            let curve = (0..=200).map(|i| {
                let x = a + (b - a) * f64::from(i) / 200.0;
                (10f64.powf(x), 1.0 / (1.0 + (-k * (x - x0)).exp()))
            });
            chart
                .draw_series(LineSeries::new(curve, ACQUIRED.stroke_width(2)))?
                .label(format!("fitted P(acquire), x0 {:.2e}", 10f64.powf(x0)))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], ACQUIRED.stroke_width(2))
                });
        }

        let sizes: Vec<(f64, u32, u32)> = counts
            .xs
            .iter()
            .zip(&counts.runs)
            .zip(&counts.hits)
            .map(|((x, n), a)| (10f64.powf(*x), *n, *a))
            .collect();
        chart.draw_series(sizes.iter().map(|&(x, n, a)| {
            let (lo, hi) = wilson(a, n);
            PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(1))
        }))?;
        chart
            .draw_series(sizes.iter().map(|&(x, n, a)| {
                Circle::new((x, f64::from(a) / f64::from(n)), 4, BLACK.filled())
            }))?
            .label("share acquired (Wilson 95%)")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        // How many runs each share is of.
        chart.draw_series(sizes.iter().map(|&(x, n, a)| {
            let y = (f64::from(a) / f64::from(n) + 0.04).min(1.05);
            Text::new(format!("{a}/{n}"), (x, y), (FAMILY, 11))
        }))?;
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }

    fn steps_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let budget = if self.row.budget_limited == Some(true) {
            " — budget-limited"
        } else {
            ""
        };
        let title = format!("threshold(t) over training steps{budget}");
        // (step, threshold, interval low, interval high) in params, where one was placed; the
        // interval is the threshold itself where there is none.
        let placed: Vec<(f64, f64, f64, f64)> = self
            .row
            .over_steps
            .iter()
            .filter(|s| s.step > 0)
            .filter_map(|s| {
                let x0 = s.x0?;
                let (lo, hi) = (s.x0_low.unwrap_or(x0), s.x0_high.unwrap_or(x0));
                Some((
                    s.step as f64,
                    10f64.powf(x0),
                    10f64.powf(lo),
                    10f64.powf(hi),
                ))
            })
            .collect();
        let final_x0 = self.row.report.threshold;
        let (Some((slo, shi)), Some((tlo, thi))) = (
            log_bounds(
                self.row
                    .over_steps
                    .iter()
                    .map(|s| s.step as f64)
                    .filter(|s| *s > 0.0),
            ),
            log_bounds(placed.iter().flat_map(|p| [p.1, p.2, p.3]).chain(final_x0)),
        ) else {
            return no_data(area, &title);
        };
        if placed.is_empty() {
            return no_data(area, &title);
        }
        // plotters puts log ticks from the first power of ten inside the range on: start at the
        // power of ten below where it is near, so that short axes get their 1-2-5 ticks.
        let near_decade = |x: f64| {
            let decade = 10f64.powf(x.log10().floor());
            if x / decade <= 4.0 { decade } else { x }
        };
        let (slo, tlo) = (near_decade(slo), near_decade(tlo));
        let mut chart = ChartBuilder::on(area)
            .caption(&title, (FAMILY, 15))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((slo..shi).log_scale(), (tlo..thi).log_scale())?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("step")
            .y_desc("threshold (params_total)")
            .x_labels(20)
            .y_labels(20)
            .x_label_formatter(&log_tick)
            .y_label_formatter(&sci)
            .label_style((FAMILY, 12))
            .draw()?;
        if let Some(t) = final_x0 {
            dashed_level(
                &mut chart,
                (slo, shi),
                t,
                format!("final threshold {t:.2e}"),
            )?;
        }
        chart.draw_series(placed.iter().filter(|p| p.2 < p.3).map(|&(s, _, lo, hi)| {
            PathElement::new(vec![(s, lo), (s, hi)], ACQUIRED.mix(0.6).stroke_width(2))
        }))?;
        chart
            .draw_series(LineSeries::new(
                placed.iter().map(|p| (p.0, p.1)),
                ACQUIRED.stroke_width(2),
            ))?
            .label("threshold at step (95% interval)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ACQUIRED.stroke_width(2)));
        chart.draw_series(
            placed
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, ACQUIRED.filled())),
        )?;
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

/// A dashed grey horizontal line at `y` from `x.0` to `x.1`, with its legend entry: the
/// acquisition level over the runs, the final threshold over training.
fn dashed_level<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    x: (f64, f64),
    y: f64,
    label: String,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate<From = (f64, f64)>,
{
    let style = BLACK.mix(0.6).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new([(x.0, y), (x.1, y)], 6, 4, style))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    Ok(())
}
