//! `elab export`, `plot` and `claims`: result folders from a sweep, and the docs' numbers
//! from the result folders.

use std::path::PathBuf;
use std::process::ExitCode;

/// `results/<sweep name>` unless `--out` says otherwise.
fn results_dir(sweep_dir: &std::path::Path, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| {
        let name = sweep_dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        PathBuf::from("results").join(name)
    })
}

/// `elab claims`: every doc brought up to date, or with `--check` compared (exit 1 on a
/// difference, naming the doc).
pub(crate) fn claims(
    docs: &[PathBuf],
    results: &std::path::Path,
    check: bool,
) -> anyhow::Result<ExitCode> {
    let mut agreed = true;
    for doc in docs {
        if !elab_claims::sync(doc, results, check)? {
            eprintln!(
                "{}: its numbers differ from {}: run `elab claims`",
                doc.display(),
                results.display()
            );
            agreed = false;
        }
    }
    Ok(if agreed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `elab export`: every CSV, the plots unless `no_plots`, and report.html.
pub(crate) fn export(
    sweep_dir: &std::path::Path,
    out: Option<PathBuf>,
    no_plots: bool,
    weights: bool,
) -> anyhow::Result<ExitCode> {
    let out = results_dir(sweep_dir, out);
    let options = elab_report::ExportOptions {
        plots: !no_plots,
        weights,
    };
    let summary = elab_report::export(sweep_dir, &out, &options)?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}

/// `elab plot`: the plots and report.html only.
pub(crate) fn plot(sweep_dir: &std::path::Path, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let out = results_dir(sweep_dir, out);
    let summary = elab_report::plot(sweep_dir, &out)?;
    print!("{summary}");
    Ok(ExitCode::SUCCESS)
}
