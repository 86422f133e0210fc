//! Export of a sweep's records: tidy CSV (`runs.csv`, `curves.csv`, `thresholds.csv`,
//! `grokking.csv`, `phase.csv` where two or more axes vary, with `SCHEMA.md` describing every
//! column), figures (`plots/*.svg` and `*.png`, phase diagrams included) and a self-contained
//! `report.html`.
//!
//! The sweep directory is read once, and groups, thresholds, grokking times, per-subtask fits
//! and phase diagrams are computed once, by `elab-results`; every writer here renders from
//! those. Every file is written and fsynced in a fresh folder beside `out_dir`, which then
//! replaces `out_dir` whole ([`publish`]): no file of an earlier export stays beside the new
//! ones, a crash leaves the old export or the new one complete, and two exports to one folder
//! take turns.

mod html;
mod plots;
pub mod publish;
pub mod schema;
mod subtasks;
mod tables;
mod weights;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Context;
use elab_analysis::Verdict;
use elab_results::load::{self, SweepData};
use elab_results::{grokking, phase, thresholds};
pub use publish::OutDirError;

/// What to write besides the CSV files.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Render figures (SVG + PNG) and inline them in the report.
    pub plots: bool,
    /// Put the runs' snapshots (`train.snapshots`) under `weights/`, with `weights/index.csv`.
    pub weights: bool,
}

impl ExportOptions {
    /// The CSV files and the report, no figures.
    pub fn csv_only() -> Self {
        Self {
            plots: false,
            ..Self::default()
        }
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            plots: true,
            weights: false,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    pub sweep: String,
    pub out_dir: PathBuf,
    /// Every file written, relative to `out_dir`, in the order they were published.
    pub files: Vec<PathBuf>,
    pub jobs: usize,
    /// Jobs per status (done, diverged, failed, orphaned, ...).
    pub by_status: BTreeMap<String, usize>,
    pub groups: usize,
    pub runs_rows: usize,
    pub curve_rows: usize,
    pub threshold_rows: usize,
    pub grokking_rows: usize,
    /// Cells of every phase diagram (0 with fewer than two varying axes: no phase.csv).
    pub phase_rows: usize,
    /// Phase diagrams of the sweep, drawn or not.
    pub phase_diagrams: usize,
    /// Every figure drawn, phase diagrams included.
    pub figures: usize,
    /// One line per emergent (group, score, scale).
    pub emergent: Vec<String>,
    /// One line per lottery (group, score, scale), with the width of the acquisition fit and
    /// its interval.
    pub lottery: Vec<String>,
    /// One line per unresolved (group, score, scale), with what to add.
    pub unresolved: Vec<String>,
    /// Orphaned jobs left out because their spec no longer parses, with the reason.
    pub skipped: Vec<String>,
    /// Snapshots under `weights/` (`--weights`), and the jobs they come from.
    pub weights: usize,
    pub weight_jobs: usize,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            f,
            "exported sweep {}: {} jobs ({}) -> {}",
            self.sweep,
            self.jobs,
            status.join(", "),
            self.out_dir.display()
        )?;
        if self.runs_rows > 0 || self.curve_rows > 0 {
            writeln!(f, "  runs.csv        {} rows", self.runs_rows)?;
            writeln!(f, "  curves.csv      {} rows", self.curve_rows)?;
            writeln!(
                f,
                "  thresholds.csv  {} rows, {} groups, {} emergent, {} lottery",
                self.threshold_rows,
                self.groups,
                self.emergent.len(),
                self.lottery.len()
            )?;
            writeln!(f, "  grokking.csv    {} rows", self.grokking_rows)?;
            if self.phase_rows > 0 {
                writeln!(
                    f,
                    "  phase.csv       {} rows, {} diagrams",
                    self.phase_rows, self.phase_diagrams
                )?;
            }
        }
        if self.figures > 0 {
            writeln!(f, "  plots/          {} figures (SVG + PNG)", self.figures)?;
        }
        if self.weights > 0 {
            writeln!(
                f,
                "  weights/        {} snapshots of {} jobs, index.csv",
                self.weights, self.weight_jobs
            )?;
        }
        writeln!(f, "  report.html")?;
        for line in &self.emergent {
            writeln!(f, "  emergent: {line}")?;
        }
        for line in &self.lottery {
            writeln!(f, "  lottery: {line}")?;
        }
        for line in &self.unresolved {
            writeln!(f, "  unresolved: {line}")?;
        }
        for line in &self.skipped {
            writeln!(f, "  skipped orphan {line}")?;
        }
        Ok(())
    }
}

/// Which outputs to produce; `report.html` is always written.
#[derive(Debug, Clone, Copy)]
struct Outputs {
    csv: bool,
    plots: bool,
    weights: bool,
}

/// Writes CSV files, `SCHEMA.md`, figures (if `opts.plots`) and `report.html` to `out_dir`.
pub fn export(
    sweep_dir: &Path,
    out_dir: &Path,
    opts: &ExportOptions,
) -> anyhow::Result<ExportSummary> {
    run(
        sweep_dir,
        out_dir,
        Outputs {
            csv: true,
            plots: opts.plots,
            weights: opts.weights,
        },
    )
}

/// Figures and `report.html` only (no CSV).
pub fn plot(sweep_dir: &Path, out_dir: &Path) -> anyhow::Result<ExportSummary> {
    run(
        sweep_dir,
        out_dir,
        Outputs {
            csv: false,
            plots: true,
            weights: false,
        },
    )
}

fn run(sweep_dir: &Path, out_dir: &Path, outputs: Outputs) -> anyhow::Result<ExportSummary> {
    // Read (and refuse unreadable records) before anything is written.
    let data = SweepData::load(sweep_dir)?;
    let target = publish::Target::open(out_dir)?;
    let staging = Staging {
        dir: target.new.clone(),
    };
    // On an error the target is dropped unpublished: its folder goes, the old export stays.
    let mut summary = write_all(&data, &staging, outputs)?;
    if outputs.weights {
        let w = weights::write_weights(sweep_dir, &data, &staging, &mut summary.files)?;
        (summary.weights, summary.weight_jobs) = (w.snapshots, w.jobs);
    }
    staging.write(
        publish::MARKER,
        publish::MARKER_TEXT.as_bytes(),
        &mut summary.files,
    )?;
    target.publish(&summary.files)?;
    summary.out_dir = out_dir.to_path_buf();
    Ok(summary)
}

fn write_all(
    data: &SweepData,
    staging: &Staging,
    outputs: Outputs,
) -> anyhow::Result<ExportSummary> {
    // Groups over model scale first (figures and grokking summaries are theirs), then groups
    // over each swept numeric axis (data thresholds), which add rows to thresholds.csv only.
    let mut groups = load::groups(data);
    let n_scale_groups = groups.len();
    groups.extend(load::axis_groups(data, n_scale_groups));
    let rows = thresholds::threshold_rows(&groups);
    let grok = grokking::grokking_rows(&groups[..n_scale_groups]);
    let by_subtask = elab_results::subtasks::subtask_groups(&groups);
    let diagrams = phase::diagrams(data);
    let mut summary = ExportSummary {
        sweep: data.name.clone(),
        jobs: data.jobs.len(),
        groups: n_scale_groups,
        skipped: data.skipped.clone(),
        phase_diagrams: diagrams.len(),
        ..Default::default()
    };
    for job in &data.jobs {
        *summary.by_status.entry(job.state.to_string()).or_default() += 1;
    }
    for r in rows
        .iter()
        .filter(|r| r.report.verdict == Verdict::Emergent)
    {
        let ci = match (r.report.x0_ci_low, r.report.x0_ci_high) {
            (Some(lo), Some(hi)) => format!(" [{lo:.2}, {hi:.2}]"),
            _ => String::new(),
        };
        summary.emergent.push(format!(
            "{} {} vs {} at {:.3e} (log10 {:.2}{ci})",
            groups[r.group].label,
            r.score.label(),
            r.scale.name(),
            r.report.threshold.unwrap_or(f64::NAN),
            r.report.x0.unwrap_or(f64::NAN),
        ));
    }

    for r in rows.iter().filter(|r| r.report.verdict == Verdict::Lottery) {
        let t = &r.report;
        let ci = match (t.acq_width_low, t.acq_width_high) {
            (Some(lo), Some(hi)) => format!(" [{lo:.2}, {hi:.2}]"),
            _ => String::new(),
        };
        summary.lottery.push(format!(
            "{} {} vs {}: P(acquire) rises over {:.2}{ci} decades, midpoint {:.3e} ({} of {} runs acquired)",
            groups[r.group].label,
            r.score.label(),
            r.scale.name(),
            t.acq_width_decades.unwrap_or(f64::NAN),
            t.acq_x0.map_or(f64::NAN, |x| 10f64.powf(x)),
            t.runs_acquired,
            t.runs,
        ));
    }

    for r in rows
        .iter()
        .filter(|r| r.report.verdict == Verdict::Unresolved)
    {
        summary.unresolved.push(format!(
            "{} {} vs {}: {}",
            groups[r.group].label,
            r.score.label(),
            r.scale.name(),
            r.report.note().unwrap_or_default()
        ));
    }

    let mut data_files: Vec<&str> = Vec::new();
    if outputs.csv {
        let (bytes, n) = tables::runs_csv(data)?;
        staging.write("runs.csv", &bytes, &mut summary.files)?;
        summary.runs_rows = n;
        // The largest table (a row per job, eval, split and metric): streamed to its file.
        let path = staging.dir.join("curves.csv");
        let file = File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        summary.curve_rows = tables::curves_csv(data, std::io::BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
        staging.adopt("curves.csv", &mut summary.files)?;
        let (bytes, n) = tables::thresholds_csv(data, &groups, &rows)?;
        staging.write("thresholds.csv", &bytes, &mut summary.files)?;
        summary.threshold_rows = n;
        let (bytes, _) = tables::threshold_steps_csv(&groups, &rows)?;
        staging.write("threshold_steps.csv", &bytes, &mut summary.files)?;
        let acquisition =
            elab_results::acquisition::acquisition_rows(&groups[..n_scale_groups], &rows);
        let (bytes, _) = tables::acquisition_csv(&groups, &acquisition)?;
        staging.write("acquisition.csv", &bytes, &mut summary.files)?;
        let (bytes, n) = tables::grokking_csv(data, &groups, &grok)?;
        staging.write("grokking.csv", &bytes, &mut summary.files)?;
        summary.grokking_rows = n;
        staging.write(
            "SCHEMA.md",
            schema::markdown().as_bytes(),
            &mut summary.files,
        )?;
        data_files = vec![
            "runs.csv",
            "curves.csv",
            "thresholds.csv",
            "threshold_steps.csv",
            "acquisition.csv",
            "grokking.csv",
            "SCHEMA.md",
        ];
        if let Some((csv, _)) = subtasks::subtasks_csv(&groups, &by_subtask) {
            staging.write("subtasks.csv", csv.as_bytes(), &mut summary.files)?;
            data_files.push("subtasks.csv");
        }
        // No phase.csv at all (rather than a header alone) with fewer than two varying axes.
        if !diagrams.is_empty() {
            let (bytes, n) = tables::phase_csv(&diagrams)?;
            staging.write("phase.csv", &bytes, &mut summary.files)?;
            summary.phase_rows = n;
            data_files.push("phase.csv");
        }
    }

    let mut figures = Vec::new();
    let mut phase_figures = Vec::new();
    if outputs.plots {
        let plots_dir = staging.dir.join("plots");
        fs::create_dir_all(&plots_dir)?;
        figures = plots::figures(&groups[..n_scale_groups], &rows, &by_subtask, &plots_dir)?;
        phase_figures = plots::phase_figures(&diagrams, &plots_dir)?;
        for fig in figures.iter().chain(&phase_figures) {
            let png = format!("plots/{}.png", fig.stem);
            staging.adopt(&png, &mut summary.files)?;
            staging.write(
                &format!("plots/{}.svg", fig.stem),
                fig.svg.as_bytes(),
                &mut summary.files,
            )?;
        }
        summary.figures = figures.len() + phase_figures.len();
    }

    let by_status = summary.by_status.clone();
    let page = html::report_html(
        data,
        &by_status,
        &groups,
        &rows,
        &grok,
        &figures,
        &data_files,
    );
    let page = subtasks::insert_before_body_end(page, &subtasks::section(&groups, &by_subtask));
    let page = subtasks::insert_before_body_end(
        page,
        &html::phase_section(&diagrams, &phase_figures, outputs.csv),
    );
    staging.write("report.html", page.as_bytes(), &mut summary.files)?;
    Ok(summary)
}

/// The folder an export is written into before it replaces the output folder: each file is
/// complete and fsynced here before the swap.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn write(&self, rel: &str, bytes: &[u8], files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let path = self.dir.join(rel);
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.adopt(rel, files)
    }

    /// Fsyncs a file something else wrote into the staging directory and lists it.
    fn adopt(&self, rel: &str, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let path = self.dir.join(rel);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", path.display()))?;
        files.push(PathBuf::from(rel));
        Ok(())
    }
}
