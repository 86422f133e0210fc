//! The run directory and the records in it.
//!
//! ```text
//! <run>/spec.toml        the resolved job (its hash is the job id)
//! <run>/evals.jsonl      one JSON object per (step, split), appended and fsynced
//! <run>/checkpoint.json  points at the last complete checkpoint directory
//! <run>/ckpt-<step>/     model.bpk, optim.bpk
//! <run>/summary.json     written once, when the run ends (done or diverged)
//! <run>/heartbeat.json   rewritten by a live worker: pid, step, time
//! <run>/train.log        the worker's log
//! <run>/lock             flock-ed by the live worker
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsio;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Metrics of one split at one step. Metric names are open-ended so that progress measures
/// (weight norm, Fourier structure) are additions, not schema changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub step: u64,
    pub split: Split,
    /// Training tokens read so far (steps x batch x context length).
    pub tokens: u64,
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RunStatus {
    Done,
    /// A non-finite loss at `step`; the last good checkpoint is kept.
    Diverged {
        step: u64,
    },
}

/// Written once when a run ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub status: RunStatus,
    pub steps: u64,
    /// Wall-clock seconds spent training, summed over every attempt.
    pub wall_seconds: f64,
    pub backend: String,
    pub device: String,
    /// Times the run was resumed from a checkpoint.
    pub resumes: u32,
}

/// Paths inside one run directory.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn spec(&self) -> PathBuf {
        self.0.join("spec.toml")
    }
    pub fn evals(&self) -> PathBuf {
        self.0.join("evals.jsonl")
    }
    pub fn checkpoint_pointer(&self) -> PathBuf {
        self.0.join("checkpoint.json")
    }
    pub fn checkpoint_dir(&self, step: u64) -> PathBuf {
        self.0.join(format!("ckpt-{step:09}"))
    }
    pub fn summary(&self) -> PathBuf {
        self.0.join("summary.json")
    }
    pub fn heartbeat(&self) -> PathBuf {
        self.0.join("heartbeat.json")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("train.log")
    }
    pub fn lock(&self) -> PathBuf {
        self.0.join("lock")
    }

    pub fn read_summary(&self) -> Option<Summary> {
        read_json(&self.summary())
    }

    /// Step of the last complete checkpoint, if any.
    pub fn checkpoint_step(&self) -> Option<u64> {
        read_json::<CheckpointPointer>(&self.checkpoint_pointer()).map(|p| p.step)
    }

    /// Publishes `ckpt-<step>/` (already written and fsynced) as the checkpoint to resume
    /// from, then removes older checkpoint directories.
    pub fn publish_checkpoint(&self, step: u64) -> io::Result<()> {
        let pointer = serde_json::to_vec(&CheckpointPointer { step })?;
        fsio::write_atomic(&self.checkpoint_pointer(), &pointer)?;
        let keep = self.checkpoint_dir(step);
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            let is_ckpt = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"));
            if is_ckpt && path != keep {
                std::fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }

    /// Drops records past `step` (written after the checkpoint a run resumes from), so that
    /// the resumed run appends them again exactly once. Atomic: old file or new one.
    pub fn truncate_evals_after(&self, step: u64) -> io::Result<()> {
        let rows: Vec<EvalRow> = read_evals(&self.evals())?
            .into_iter()
            .filter(|r| r.step <= step)
            .collect();
        let mut text = String::new();
        for row in &rows {
            text.push_str(&serde_json::to_string(row)?);
            text.push('\n');
        }
        fsio::write_atomic(&self.evals(), text.as_bytes())
    }

    pub fn append_eval(&self, row: &EvalRow) -> io::Result<()> {
        fsio::append_line(&self.evals(), &serde_json::to_string(row)?)
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointPointer {
    step: u64,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads evaluation records, skipping a torn last line and keeping one row per (step, split)
/// (the last written), sorted by step then split. A missing file is no records.
pub fn read_evals(path: &Path) -> io::Result<Vec<EvalRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        if let Ok(row) = serde_json::from_str::<EvalRow>(line) {
            rows.insert((row.step, row.split), row);
        }
    }
    Ok(rows.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, split: Split, loss: f64) -> EvalRow {
        EvalRow {
            step,
            split,
            tokens: step * 10,
            metrics: BTreeMap::from([("loss".to_string(), loss)]),
        }
    }

    #[test]
    fn torn_lines_and_duplicates_are_tolerated_and_truncation_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for r in [
            row(0, Split::Train, 2.0),
            row(0, Split::Val, 2.1),
            row(4, Split::Train, 1.0),
        ] {
            run.append_eval(&r).unwrap();
        }
        run.append_eval(&row(4, Split::Train, 0.9)).unwrap();
        std::fs::write(
            run.evals(),
            std::fs::read_to_string(run.evals()).unwrap() + "{\"step\":8,\"spl",
        )
        .unwrap();
        let rows = read_evals(&run.evals()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].metrics["loss"], 0.9);

        run.truncate_evals_after(0).unwrap();
        let rows = read_evals(&run.evals()).unwrap();
        assert_eq!(
            rows,
            vec![row(0, Split::Train, 2.0), row(0, Split::Val, 2.1)]
        );
        // f64 values survive the JSON round trip bit for bit.
        let x = 0.1f64 + 0.2;
        let back: EvalRow =
            serde_json::from_str(&serde_json::to_string(&row(1, Split::Val, x)).unwrap()).unwrap();
        assert_eq!(back.metrics["loss"].to_bits(), x.to_bits());
    }

    #[test]
    fn checkpoint_pointer_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.checkpoint_step(), None);
        for step in [4, 8] {
            std::fs::create_dir(run.checkpoint_dir(step)).unwrap();
            run.publish_checkpoint(step).unwrap();
        }
        assert_eq!(run.checkpoint_step(), Some(8));
        assert!(!run.checkpoint_dir(4).exists());
        assert!(run.checkpoint_dir(8).exists());
    }
}
