//! The quantization model's figure (Michaud et al. 2023) for a sparse-parity group: each
//! subtask's final validation accuracy against parameters (one line per subtask, darkest the
//! most frequent), each placed threshold against its subtask's frequency (rarer subtasks
//! should need more parameters), and the mean validation loss in log-log with its power law.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FAMILY, Plot, draw_legend, log_bounds, log_tick, no_data, sci, viridis};
use elab_results::subtasks::SubtaskGroup;

pub struct SubtaskPlot<'a> {
    pub label: &'a str,
    pub analysed: &'a SubtaskGroup,
}

impl Plot for SubtaskPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (1500, 460)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("{}: subtasks (quantization model)", self.label),
            (FAMILY, 20),
        )?;
        let panels = root.split_evenly((1, 3));
        self.accuracy_panel(&panels[0])?;
        self.threshold_panel(&panels[1])?;
        self.loss_panel(&panels[2])?;
        Ok(())
    }
}

impl SubtaskPlot<'_> {
    /// Subtask i's colour: viridis from dark (most frequent) to yellow (rarest).
    fn colour(&self, i: usize) -> RGBColor {
        let n = self.analysed.frequencies.len();
        viridis(Some(i as f64 / (n.max(2) - 1) as f64 * 0.9))
    }

    fn accuracy_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let title = "final validation accuracy per subtask";
        let by_size = &self.analysed.accuracy_by_size;
        let Some((lo, hi)) = log_bounds(by_size.iter().flatten().map(|p| p.0)) else {
            return no_data(area, title);
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, 16))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((lo..hi).log_scale(), 0.3f64..1.02)?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("params_total")
            .x_label_formatter(&log_tick)
            .label_style((FAMILY, 12))
            .draw()?;
        let last = by_size.len().saturating_sub(1);
        for (i, curve) in by_size.iter().enumerate() {
            let colour = self.colour(i);
            let line: Vec<(f64, f64)> = curve.iter().map(|p| (p.0, p.1)).collect();
            let series = chart.draw_series(LineSeries::new(line, colour.stroke_width(2)))?;
            // The most and the least frequent subtasks name the colour scale.
            if i == 0 || i == last {
                series
                    .label(format!(
                        "subtask {i} (p = {:.3})",
                        self.analysed.frequencies[i]
                    ))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }

    /// Placed thresholds (emergent, or between two adjacent sizes) with their bootstrap
    /// intervals, against the subtask's frequency on log axes.
    fn threshold_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let title = "threshold vs subtask frequency";
        let g = self.analysed;
        // (frequency, threshold, interval low, interval high, subtask) in params.
        let points: Vec<(f64, f64, f64, f64, usize)> = g
            .placed
            .iter()
            .enumerate()
            .filter_map(|(i, x0)| {
                let x0 = (*x0)?;
                let r = &g.thresholds[i];
                let lo = r.x0_ci_low.unwrap_or(x0);
                let hi = r.x0_ci_high.unwrap_or(x0);
                Some((
                    g.frequencies[i],
                    10f64.powf(x0),
                    10f64.powf(lo),
                    10f64.powf(hi),
                    i,
                ))
            })
            .collect();
        let (Some((flo, fhi)), Some((tlo, thi))) = (
            log_bounds(points.iter().map(|p| p.0)),
            log_bounds(points.iter().flat_map(|p| [p.2, p.3])),
        ) else {
            return no_data(area, title);
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, 16))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((flo..fhi).log_scale(), (tlo..thi).log_scale())?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("subtask frequency")
            .y_desc("threshold (params_total)")
            .x_label_formatter(&sci)
            .y_label_formatter(&log_tick)
            .label_style((FAMILY, 12))
            .draw()?;
        for &(f, t, lo, hi, i) in &points {
            let colour = self.colour(i);
            chart.draw_series([PathElement::new(
                vec![(f, lo), (f, hi)],
                colour.stroke_width(1),
            )])?;
            chart.draw_series([Circle::new((f, t), 4, colour.filled())])?;
        }
        Ok(())
    }

    fn loss_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let title = "mean validation loss (log-log)";
        let g = self.analysed;
        let points: Vec<(f64, f64)> = g
            .loss_by_size
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|p| (p.0, p.1))
            .collect();
        let (Some((xlo, xhi)), Some((ylo, yhi))) = (
            log_bounds(points.iter().map(|p| p.0)),
            log_bounds(points.iter().map(|p| p.1)),
        ) else {
            return no_data(area, title);
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, 16))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .x_desc("params_total")
            .y_desc("loss (nats)")
            .x_label_formatter(&log_tick)
            .y_label_formatter(&sci)
            .label_style((FAMILY, 12))
            .draw()?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, BLACK.filled())))?
            .label("mean over seeds")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, BLACK.filled()));
        if let Some(fit) = &g.loss_fit {
            let line = [xlo, xhi].map(|x| (x, fit.coefficient * x.powf(-fit.exponent)));
            chart
                .draw_series(LineSeries::new(line, RED.stroke_width(2)))?
                .label(format!(
                    "loss = {:.3e} N^-{:.2} (R^2 log {:.2})",
                    fit.coefficient, fit.exponent, fit.r2_log
                ))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
        }
        // Upper right: the loss falls from the upper left.
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}
