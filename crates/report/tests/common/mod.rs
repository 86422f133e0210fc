//! What the export tests share: writing a hand-made sweep directory (run directories, plan) as
//! the sweep engine would, and reading back CSV and HTML.

// Each test binary uses its own subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elab_job::{EvalRow, JobSpec, Plan, PlannedJob, RunDir, RunStatus, Summary};

/// A hand-made sweep in a fresh temporary directory: `sweep` (sweeps/<name>) to fill as the
/// sweep engine would, `out` (results/<name>) to export to, and the plan being written.
pub struct HandMadeSweep {
    /// Keeps both directories alive.
    pub tmp: tempfile::TempDir,
    pub sweep: PathBuf,
    pub out: PathBuf,
    pub plan: Plan,
}

impl HandMadeSweep {
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Self {
            sweep: tmp.path().join("sweeps").join(name),
            out: tmp.path().join("results").join(name),
            plan: Plan {
                sweep: name.into(),
                jobs: Vec::new(),
            },
            tmp,
        }
    }

    /// Writes a finished job under `sweeps/<name>/jobs/<id>`, as the sweep engine would: its
    /// spec, its eval rows and a `done` summary after `steps` steps; and adds it to the plan.
    pub fn add_done_job(
        &mut self,
        spec: &JobSpec,
        size: &str,
        axes: BTreeMap<String, toml::Value>,
        rows: impl IntoIterator<Item = EvalRow>,
        steps: u64,
    ) {
        let id = spec.id();
        let run = RunDir::new(self.sweep.join("jobs").join(&id));
        std::fs::create_dir_all(run.path()).unwrap();
        std::fs::write(run.spec(), spec.to_toml()).unwrap();
        for row in rows {
            run.append_eval(&row).unwrap();
        }
        let summary = Summary {
            status: RunStatus::Done,
            steps,
            wall_seconds: 1.5,
            backend: "cpu".into(),
            device: "cpu".into(),
            resumes: 0,
        };
        std::fs::write(run.summary(), serde_json::to_vec(&summary).unwrap()).unwrap();
        self.plan.jobs.push(PlannedJob {
            id,
            size: size.to_string(),
            axes,
            spec: None,
        });
    }

    /// Writes plan.json.
    pub fn write_plan(&self) {
        std::fs::write(
            self.sweep.join("plan.json"),
            serde_json::to_vec_pretty(&self.plan).unwrap(),
        )
        .unwrap();
    }
}

/// The header and the rows (column name to value) of a CSV file.
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

/// `src="..."` and `href="..."` values that are not anchors or absolute URLs.
pub fn local_links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let link = &rest[..rest.find('"').unwrap()];
            if !link.starts_with('#') && !link.contains("://") {
                out.push(link.to_string());
            }
        }
    }
    out
}
