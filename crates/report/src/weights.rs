//! `elab export --weights`: every run's snapshots (`train.snapshots`) in the export, as
//! `weights/<job>/step-<N>.safetensors`, with `weights/index.csv` (job, step, path). Files are
//! hard links to the sweep's where the file system allows (a snapshot is never rewritten in
//! place: a rewrite renames a new file over it, so a link keeps the bytes it was made with),
//! copies otherwise.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use elab_job::SweepDir;
use elab_results::load::SweepData;

use crate::Staging;

/// What [`write_weights`] wrote: snapshots, and jobs that had any.
pub(crate) struct Weights {
    pub snapshots: usize,
    pub jobs: usize,
}

pub(crate) fn write_weights(
    sweep_dir: &Path,
    data: &SweepData,
    staging: &Staging,
    files: &mut Vec<PathBuf>,
) -> anyhow::Result<Weights> {
    let dir = SweepDir::new(sweep_dir);
    let mut index = csv::Writer::from_writer(Vec::new());
    index.write_record(["job", "step", "path"])?;
    let (mut snapshots, mut jobs) = (0, 0);
    for job in &data.jobs {
        let run = dir.job(&job.id);
        let steps = run
            .snapshot_steps()
            .with_context(|| format!("listing {}", run.snapshots().display()))?;
        if steps.is_empty() {
            continue;
        }
        jobs += 1;
        fs::create_dir_all(staging.dir.join("weights").join(&job.id))?;
        for step in steps {
            let from = run.snapshot(step);
            let rel = format!("weights/{}/step-{step:09}.safetensors", job.id);
            let to = staging.dir.join(&rel);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            }
            staging.adopt(&rel, files)?;
            index.write_record([job.id.as_str(), &step.to_string(), &rel])?;
            snapshots += 1;
        }
    }
    if jobs > 0 {
        staging.write("weights/index.csv", &index.into_inner()?, files)?;
    }
    Ok(Weights { snapshots, jobs })
}
