//! The phase-diagram figure: two heatmaps over the same pair of axes, final validation exact
//! match (left) and log10 time to grok (right). Censored cells are hatched grey and marked
//! `> budget`, so that "never grokked" cannot be read as a colour.

use std::collections::BTreeMap;
use std::path::Path;

use elab_results::load::slugify;
use elab_results::phase::{Cell, Diagram, GROK_LEVEL};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{FAMILY, Figure, Plot, register_font, render, viridis};

/// Fill of a censored cell (hatched on top) and of a cell whose value is missing.
const CENSORED_FILL: RGBColor = RGBColor(200, 200, 200);

/// Phase figures drawn at most (two heatmaps each); phase.csv is not bounded by this.
const MAX_FIGURES: usize = 12;

/// The diagrams to draw with their index, at most [`MAX_FIGURES`], in index order: the first
/// group of every pair, then the second of every pair, and so on, so that with many groups the
/// cap leaves out repeats of a pair rather than whole pairs.
fn drawn(diagrams: &[Diagram]) -> Vec<(usize, &Diagram)> {
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut ranked: Vec<(usize, usize)> = diagrams
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let count = seen.entry((&d.x.key, &d.y.key)).or_insert(0);
            *count += 1;
            (*count, i)
        })
        .collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked.into_iter().take(MAX_FIGURES).map(|r| r.1).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| (i, &diagrams[i])).collect()
}

/// File stem of diagram `index` (0-based) under `plots/`.
fn stem(index: usize, d: &Diagram) -> String {
    format!("phase{:02}_{}", index + 1, slugify(&d.title()))
}

/// Draws the diagrams [`drawn`] picks; PNGs go to `plots_dir`, SVGs are returned.
pub fn phase_figures(diagrams: &[Diagram], plots_dir: &Path) -> anyhow::Result<Vec<Figure>> {
    register_font()?;
    drawn(diagrams)
        .into_iter()
        .map(|(i, d)| {
            let stem = stem(i, d);
            let svg = render(
                &PhasePlot { diagram: d },
                &plots_dir.join(format!("{stem}.png")),
            )?;
            Ok(Figure {
                stem,
                title: format!("phase diagram {}", d.title()),
                svg,
            })
        })
        .collect()
}

/// What one heatmap cell shows.
struct Paint {
    color: RGBColor,
    text: String,
    hatched: bool,
}

/// A heatmap panel: cells at integer positions, a colour bar for `scale` (lo, hi, label).
struct Heatmap<'a> {
    title: String,
    diagram: &'a Diagram,
    cells: Vec<(usize, usize, Paint)>,
    scale: (f64, f64, &'static str),
}

struct PhasePlot<'a> {
    diagram: &'a Diagram,
}

impl PhasePlot<'_> {
    fn accuracy(&self) -> Heatmap<'_> {
        let cells = self
            .diagram
            .cells
            .iter()
            .map(|(x, y, c)| {
                let v = c.mean_final_accuracy;
                let paint = Paint {
                    color: viridis(v),
                    text: v.map_or("–".into(), |v| format!("{v:.2}")),
                    hatched: false,
                };
                (*x, *y, paint)
            })
            .collect();
        Heatmap {
            title: "final validation exact match (mean over seeds)".into(),
            diagram: self.diagram,
            cells,
            scale: (0.0, 1.0, "exact match"),
        }
    }

    fn time_to_grok(&self) -> Heatmap<'_> {
        let (lo, hi) = log_range(&self.diagram.cells);
        let cells = self
            .diagram
            .cells
            .iter()
            .map(|(x, y, c)| (*x, *y, grok_paint(c, lo, hi)))
            .collect();
        Heatmap {
            title: format!(
                "log10 steps to grok (val exact match >= {}, KM median)",
                GROK_LEVEL
            ),
            diagram: self.diagram,
            cells,
            scale: (lo, hi, "log10 steps"),
        }
    }
}

/// The colour range of the time-to-grok panel: the cells' log10 medians, widened to half a
/// decade either side when they are all equal (or to [0, 1] when there are none).
fn log_range(cells: &[(usize, usize, Cell)]) -> (f64, f64) {
    let logs: Vec<f64> = cells
        .iter()
        .filter_map(|c| c.2.log10_time_to_grok())
        .collect();
    let lo = logs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match () {
        _ if logs.is_empty() => (0.0, 1.0),
        _ if lo == hi => (lo - 0.5, hi + 0.5),
        _ => (lo, hi),
    }
}

/// A grokked cell: coloured by log10 median, with `(k/n)` when not every seed grokked; a
/// censored cell: hatched grey, `> budget` and how many seeds grokked.
fn grok_paint(c: &Cell, lo: f64, hi: f64) -> Paint {
    let partial = if c.grok.events < c.n_runs {
        format!(" ({}/{})", c.grok.events, c.n_runs)
    } else {
        String::new()
    };
    match c.log10_time_to_grok() {
        Some(v) => Paint {
            color: viridis(Some((v - lo) / (hi - lo))),
            text: format!("{v:.2}{partial}"),
            hatched: false,
        },
        None => Paint {
            color: CENSORED_FILL,
            text: format!("> {}{partial}", c.budget),
            hatched: true,
        },
    }
}

/// Black on the light end of viridis, white on the dark end.
fn text_color(fill: RGBColor) -> &'static RGBColor {
    let luminance = 0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64;
    if luminance > 140.0 { &BLACK } else { &WHITE }
}

/// Segments of diagonal hatching inside the unit square at `(x - 0.5, y - 0.5)`: the lines
/// u - v = c for a few offsets c, clipped to the square.
fn hatch(x: f64, y: f64) -> Vec<[(f64, f64); 2]> {
    let (x0, y0) = (x - 0.5, y - 0.5);
    [-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75]
        .iter()
        .map(|&c: &f64| {
            let start = (c.max(0.0), (-c).max(0.0));
            let end = ((1.0 + c).min(1.0), (1.0 - c).min(1.0));
            [(x0 + start.0, y0 + start.1), (x0 + end.0, y0 + end.1)]
        })
        .collect()
}

impl Plot for PhasePlot<'_> {
    fn size(&self) -> (u32, u32) {
        let (nx, ny) = (self.diagram.x.values.len(), self.diagram.y.values.len());
        let panel_width = (260 + 80 * nx as u32).max(560);
        (2 * panel_width, (220 + 50 * ny as u32).max(420))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.diagram.title(), (FAMILY, 20))?;
        let panels = root.split_evenly((1, 2));
        self.accuracy().draw(&panels[0])?;
        self.time_to_grok().draw(&panels[1])?;
        Ok(())
    }
}

impl Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (x_axis, y_axis) = (&self.diagram.x, &self.diagram.y);
        let (width, _) = area.dim_in_pixel();
        let (main, bar) = area.split_horizontally(width.saturating_sub(100));
        let (nx, ny) = (x_axis.values.len() as f64, y_axis.values.len() as f64);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FAMILY, 15))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(90)
            .build_cartesian_2d(-0.5..nx - 0.5, -0.5..ny - 0.5)?;
        // Cell centres sit on integers; label only those.
        let label = |values: &[String], v: f64| {
            if (v - v.round()).abs() < 1e-6 {
                values.get(v.round() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let x_label = |v: &f64| label(&x_axis.values, *v);
        let y_label = |v: &f64| label(&y_axis.values, *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&x_axis.key)
            .y_desc(&y_axis.key)
            .x_labels(x_axis.values.len() * 2 + 1)
            .y_labels(y_axis.values.len() * 2 + 1)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .label_style((FAMILY, 12))
            .draw()?;
        chart.draw_series(self.cells.iter().map(|(xi, yi, p)| {
            let (x, y) = (*xi as f64, *yi as f64);
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], p.color.filled())
        }))?;
        for (xi, yi, _) in self.cells.iter().filter(|c| c.2.hatched) {
            chart.draw_series(
                hatch(*xi as f64, *yi as f64)
                    .into_iter()
                    .map(|seg| PathElement::new(seg.to_vec(), BLACK.mix(0.35).stroke_width(1))),
            )?;
        }
        chart.draw_series(self.cells.iter().map(|(xi, yi, p)| {
            let style = TextStyle::from((FAMILY, 13).into_font())
                .color(text_color(p.color))
                .pos(plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ));
            Text::new(p.text.clone(), (*xi as f64, *yi as f64), style)
        }))?;
        self.draw_bar(&bar)
    }

    fn draw_bar<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (lo, hi, label) = self.scale;
        let mut bar = ChartBuilder::on(area)
            .margin(10)
            .margin_top(40)
            .margin_bottom(55)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1.0, lo..hi)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_desc(label)
            .label_style((FAMILY, 12))
            .draw()?;
        bar.draw_series((0..50).map(|i| {
            let (a, b) = (i as f64 / 50.0, (i + 1) as f64 / 50.0);
            let (ya, yb) = (lo + a * (hi - lo), lo + b * (hi - lo));
            Rectangle::new(
                [(0.0, ya), (1.0, yb)],
                viridis(Some((a + b) / 2.0)).filled(),
            )
        }))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use elab_results::phase::Axis;

    use super::*;

    fn diagram(x: &str, y: &str, group: &str) -> Diagram {
        let axis = |key: &str| Axis {
            key: key.into(),
            values: vec!["0".into(), "1".into()],
        };
        Diagram {
            x: axis(x),
            y: axis(y),
            group: vec![("other".into(), group.into())],
            cells: Vec::new(),
        }
    }

    #[test]
    fn the_cap_draws_every_pair_before_repeating_one() {
        // Pair (a, b) in 10 groups, then pairs (a, c) and (b, c) in 3 each: 16 diagrams.
        let mut diagrams: Vec<Diagram> =
            (0..10).map(|g| diagram("a", "b", &g.to_string())).collect();
        for (x, y) in [("a", "c"), ("b", "c")] {
            diagrams.extend((0..3).map(|g| diagram(x, y, &g.to_string())));
        }
        let chosen: Vec<usize> = drawn(&diagrams).into_iter().map(|(i, _)| i).collect();
        // Rounds 1-3 take every group of all three pairs (9), rounds 4-6 (a, b)'s fourth to
        // sixth: 12, in index order.
        assert_eq!(chosen, [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn hatching_stays_inside_its_cell() {
        for seg in hatch(2.0, 3.0) {
            for (x, y) in seg {
                assert!(
                    (1.5..=2.5).contains(&x) && (2.5..=3.5).contains(&y),
                    "{x} {y}"
                );
            }
            // Every segment runs along the diagonal direction (slope 1).
            let [(x0, y0), (x1, y1)] = seg;
            assert!(((x1 - x0) - (y1 - y0)).abs() < 1e-12 && x1 > x0);
        }
    }

    #[test]
    fn text_contrasts_with_the_fill() {
        assert_eq!(*text_color(viridis(Some(0.0))), WHITE);
        assert_eq!(*text_color(viridis(Some(1.0))), BLACK);
        assert_eq!(*text_color(CENSORED_FILL), BLACK);
    }
}
