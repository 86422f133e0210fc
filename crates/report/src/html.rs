//! `report.html`: one self-contained page. Figures are inlined as SVG so the page reads
//! offline on its own; links to the PNG/SVG/CSV files next to it are extras, and every link
//! points at a file written by the same export.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use elab_analysis::Verdict;
use elab_results::grokking::GrokRow;
use elab_results::load::{Group, SweepData};
use elab_results::phase::{Diagram, GROK_LEVEL};
use elab_results::thresholds::ThresholdRow;

use crate::plots::Figure;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure inline (its SVG) with its caption and links to the PNG and SVG files.
pub fn figure(h: &mut String, fig: &Figure) {
    // plotters writes a bare <svg> element; keep only that, in case a prolog is ever added.
    let svg = fig
        .svg
        .find("<svg")
        .map_or(fig.svg.as_str(), |i| &fig.svg[i..]);
    let _ = writeln!(
        h,
        "<figure id=\"{stem}\">\n{svg}\n<figcaption>{title} (<a href=\"plots/{stem}.png\">PNG</a>, <a href=\"plots/{stem}.svg\">SVG</a>)</figcaption>\n</figure>",
        stem = escape(&fig.stem),
        title = escape(&fig.title),
    );
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.filter(|v| v.is_finite())
        .map(f)
        .unwrap_or_else(|| "–".into())
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1700px;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f0f0f0}td.l,th.l{text-align:left}\
tr.emergent td{background:#fff1e6}tr.lottery td{background:#f3ecfa}tr.unresolved td{background:#eef3ff}\
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{font-size:0.9em;color:#555}";

/// The page. `files` are the CSV (and other) files written beside it, relative to it.
pub fn report_html(
    data: &SweepData,
    status_counts: &BTreeMap<String, usize>,
    groups: &[Group<'_>],
    rows: &[ThresholdRow],
    grok: &[GrokRow],
    figures: &[Figure],
    files: &[&str],
) -> String {
    let mut h = String::new();
    let title = format!("emergence-lab report: {}", data.name);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        h,
        "<p>Sweep <b>{}</b>: {} jobs in {} comparison group(s).</p>",
        escape(&data.name),
        data.jobs.len(),
        groups.len()
    );

    h.push_str(
        "<h2>Jobs by status</h2>\n<table><tr><th class=\"l\">status</th><th>jobs</th></tr>\n",
    );
    for (status, n) in status_counts {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{n}</td></tr>",
            escape(status)
        );
    }
    h.push_str("</table>\n");

    h.push_str("<h2>Data files</h2>\n<ul>\n");
    for f in files {
        let _ = writeln!(h, "<li><a href=\"{0}\">{0}</a></li>", escape(f));
    }
    h.push_str("</ul>\n");

    thresholds_table(&mut h, groups, rows);
    grokking_table(&mut h, groups, grok);

    h.push_str("<h2>Figures</h2>\n");
    for fig in figures {
        figure(&mut h, fig);
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// Validation 0.99 rows of grokking.csv: the time to generalize, over seeds.
fn grokking_table(h: &mut String, groups: &[Group<'_>], grok: &[GrokRow]) {
    h.push_str(
        "<h2>Time to generalize</h2>\n<p>Validation exact match reaching 0.99 for good, per group and size, over \
         seeds: Kaplan-Meier median step with its 95% interval (runs that have not crossed are censored at \
         their last eval, not dropped), and the share crossed by the budget. All levels and splits in \
         grokking.csv.</p>\n<table><tr><th class=\"l\">group</th><th class=\"l\">size</th><th>runs</th>\
         <th>crossed</th><th>share by budget</th><th>median step [95% CI]</th><th>budget</th></tr>\n",
    );
    for r in grok
        .iter()
        .filter(|r| r.split == "val" && r.level == "0.99")
    {
        let k = &r.km;
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{} [{}, {}]</td><td>{}</td></tr>",
            escape(&groups[r.group].label),
            escape(&r.size),
            k.n,
            k.events,
            k.fraction_by_budget,
            show(k.median),
            show(k.median_low),
            show(k.median_high),
            k.budget,
        );
    }
    h.push_str("</table>\n");
}

fn thresholds_table(h: &mut String, groups: &[Group<'_>], rows: &[ThresholdRow]) {
    h.push_str(
        "<h2>Thresholds</h2>\n<p>Final validation score of each done job vs scale. A free logistic in log10(scale) \
         is tested against the smooth null (every logistic at least one decade wide) with a seed-block bootstrap: \
         emergent needs p &lt; 0.05, a rise narrower than a decade and the rise located inside the ladder; \
         unresolved means the rise falls between two sizes or at the ladder's edge (the note says what to add). \
         Threshold = 10^x0 with its 95% interval (the gap between sizes when unresolved there); stability = share of \
         bootstrap resamples with the same verdict. Where runs are two-state (each acquired or not), the verdict is \
         made on the share of runs that acquire: lottery when that share rises over at least a decade (width: the \
         acquisition fit's, with its 95% interval; see the acquisition figures). Method and calibration: docs/analysis.md. \
         Schaeffer (exact match rows that jump): metric-induced if the product of smooth per-position accuracies \
         predicts the observed threshold, genuine if a position's accuracy jumps too (Schaeffer et al. 2023). \
         Full columns in thresholds.csv.</p>\n",
    );
    h.push_str(
        "<table><tr><th class=\"l\">group</th><th class=\"l\">score</th><th class=\"l\">scale</th><th class=\"l\">verdict</th>\
         <th>jobs</th><th>sizes</th><th>min seeds</th><th>threshold</th><th>x0 [95% CI]</th><th>width (decades)</th>\
         <th>p smooth</th><th>stability</th><th>breakthroughness</th><th class=\"l\">Schaeffer</th><th class=\"l\">note</th></tr>\n",
    );
    for r in rows {
        let t = &r.report;
        let class = match t.verdict {
            Verdict::Emergent => " class=\"emergent\"",
            Verdict::Lottery => " class=\"lottery\"",
            Verdict::Unresolved => " class=\"unresolved\"",
            _ => "",
        };
        let ci = match (t.x0_ci_low, t.x0_ci_high) {
            (Some(lo), Some(hi)) => format!(" [{lo:.2}, {hi:.2}]"),
            _ => String::new(),
        };
        // Rows decided on acquisition (two-state runs, `p_sharp` tested): its width, with its
        // interval.
        let width = match (
            t.p_sharp,
            t.acq_width_decades,
            t.acq_width_low,
            t.acq_width_high,
        ) {
            (Some(_), Some(w), Some(lo), Some(hi)) => format!("{w:.2} [{lo:.2}, {hi:.2}]"),
            _ => fmt_opt(t.width_decades, |v| format!("{v:.2}")),
        };
        let schaeffer = r.schaeffer.as_ref().map_or_else(String::new, |s| {
            format!(
                "{}{}",
                s.verdict,
                fmt_opt(s.predicted_x0, |x| format!(" (p^L predicts x0 {x:.2})"))
            )
        });
        let _ = writeln!(
            h,
            "<tr{class}><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            escape(&groups[r.group].label),
            escape(r.score.label()),
            r.scale.name(),
            t.verdict,
            r.n_jobs,
            t.n_sizes,
            t.min_seeds,
            fmt_opt(t.threshold, |v| format!("{v:.3e}")),
            fmt_opt(t.x0, |v| format!("{v:.2}")),
            ci,
            width,
            fmt_opt(t.p_smooth, |v| format!("{v:.3}")),
            fmt_opt(t.stability, |v| format!("{v:.2}")),
            fmt_opt(t.breakthroughness, |v| format!("{v:.1}")),
            schaeffer,
            escape(&t.note().unwrap_or_default()),
        );
    }
    h.push_str("</table>\n");
}

/// The phase-diagram section: what the diagrams show, then each drawn figure (inlined SVG), or
/// nothing when the sweep has fewer than two varying axes.
pub fn phase_section(diagrams: &[Diagram], figures: &[Figure], csv_written: bool) -> String {
    if diagrams.is_empty() {
        return String::new();
    }
    let mut h = format!(
        "<h2>Phase diagrams</h2>\n<p>For each pair of swept axes (seed aside; sizes ordered by \
         parameters), left: final validation exact match, mean over seeds; right: log10 of the \
         step at which validation exact match reaches {GROK_LEVEL} and holds, the Kaplan-Meier \
         median over seeds (runs that never got there are censored at their last eval, not \
         dropped). A hatched grey cell marked &gt; budget is censored: fewer than half its seeds \
         grokked within the budget; (k/n) marks a cell where only k of n seeds grokked. With more \
         than two varying axes, one diagram per value of the others.{}</p>\n",
        if csv_written {
            " Every cell of every diagram: <a href=\"phase.csv\">phase.csv</a>."
        } else {
            ""
        }
    );
    if figures.is_empty() {
        let _ = writeln!(h, "<p>{} diagram(s), not drawn.</p>", diagrams.len());
    } else if diagrams.len() > figures.len() {
        let _ = writeln!(
            h,
            "<p>{} of {} diagrams are drawn (each pair of axes at its first values of the \
             other axes first); all are in phase.csv.</p>",
            figures.len(),
            diagrams.len()
        );
    }
    for fig in figures {
        figure(&mut h, fig);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
