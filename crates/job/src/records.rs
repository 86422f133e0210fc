//! The run directory and the records in it.
//!
//! ```text
//! <run>/spec.toml        the resolved job (its hash is the job id)
//! <run>/evals.jsonl      one JSON object per (step, split), appended and fsynced
//! <run>/checkpoint.json  points at the last complete checkpoint directory and the one before
//! <run>/ckpt-<step>/     model.bpk, optim.bpk, state.json (the last two complete ones are kept)
//! <run>/summary.json     written once, when the run ends (done or diverged)
//! <run>/heartbeat.json   rewritten by a live worker: pid, step, time
//! <run>/train.log        the worker's log
//! <run>/lock             flock-ed by the live worker
//! <run>/lease.json       the live worker's lease: host, pid, start, heartbeat (see `lease`)
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
    /// Non-finite values are kept (JSON has no NaN: they are written as "NaN", "inf", "-inf").
    #[serde(flatten, with = "finite_or_text")]
    pub metrics: BTreeMap<String, f64>,
}

/// serde_json writes NaN and +-inf as `null`, which reads back as no value at all: a diverging
/// run's last records would vanish. Finite values stay JSON numbers (bit-exact round trip);
/// the others become the strings Rust prints for them, which the CSV export writes as they are.
mod finite_or_text {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(f64),
        Text(String),
        /// Written for NaN by versions before this encoding.
        Null,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, &v)| {
            let value = if v.is_finite() {
                Value::Number(v)
            } else {
                Value::Text(v.to_string())
            };
            (k, value)
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        BTreeMap::<String, Value>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| match v {
                Value::Number(x) => Ok((k, x)),
                Value::Null => Ok((k, f64::NAN)),
                Value::Text(t) => match t.as_str() {
                    "NaN" => Ok((k, f64::NAN)),
                    "inf" => Ok((k, f64::INFINITY)),
                    "-inf" => Ok((k, f64::NEG_INFINITY)),
                    _ => Err(D::Error::custom(format!(
                        "metric `{k}`: expected a number, \"NaN\", \"inf\" or \"-inf\", got \"{t}\""
                    ))),
                },
            })
            .collect()
    }
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
    /// The weights kept along training (`train.snapshots`): never touched by checkpoint
    /// rotation.
    pub fn snapshots(&self) -> PathBuf {
        self.0.join("snapshots")
    }
    pub fn snapshot(&self, step: u64) -> PathBuf {
        self.snapshots().join(format!("step-{step:09}.safetensors"))
    }
    /// The steps of the snapshots on disk, in order (none when there is no snapshot folder).
    pub fn snapshot_steps(&self) -> io::Result<Vec<u64>> {
        let entries = match std::fs::read_dir(self.snapshots()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut steps = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let step = name
                .to_str()
                .and_then(|n| n.strip_prefix("step-")?.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<u64>().ok());
            steps.extend(step);
        }
        steps.sort_unstable();
        Ok(steps)
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
    pub fn lease(&self) -> PathBuf {
        self.0.join("lease.json")
    }

    /// The summary, if it reads; for display and scheduling, where an unreadable one reads as
    /// an unfinished run. What reports on runs uses [`RunDir::summary_checked`].
    pub fn read_summary(&self) -> Option<Summary> {
        read_json(&self.summary())
    }

    /// The summary, `None` if the run has not ended (no file); a file that cannot be read or
    /// parsed is an error naming it, never "unfinished": a finished run would otherwise drop
    /// out of every fit and table without a word.
    pub fn summary_checked(&self) -> io::Result<Option<Summary>> {
        let path = self.summary();
        let Some(bytes) = fsio::read_if_exists(&path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a run summary ({e}; expected the JSON object a run writes when it \
                     ends: status, steps, wall_seconds, backend, device, resumes). It is written \
                     once, atomically, so it was damaged or edited: restore it, or move it away \
                     to count the run as unfinished",
                    path.display()
                ),
            )
        })
    }

    /// Step of the last complete checkpoint, if any (for display: an unreadable pointer reads
    /// as none here; the trainer uses [`RunDir::checkpoints`], which fails instead).
    pub fn checkpoint_step(&self) -> Option<u64> {
        self.checkpoints().ok()?.first().copied()
    }

    /// Steps of the complete checkpoints to resume from, newest first (at most two: a corrupt
    /// newest one falls back to the one before). No pointer file means no checkpoint; a pointer
    /// that cannot be read or parsed is an error, never "start over".
    pub fn checkpoints(&self) -> io::Result<Vec<u64>> {
        let path = self.checkpoint_pointer();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        // Moving the pointer away is no remedy: without one, the run starts over, dropping its
        // records and, at its first checkpoint, the intact checkpoint directories.
        let pointer: CheckpointPointer = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt ({e}); nothing was changed. Rebuild it from the intact \
                     checkpoint directories with `elab repair {}` (every record is kept), \
                     then run again",
                    path.display(),
                    self.0.display()
                ),
            )
        })?;
        Ok(std::iter::once(pointer.step)
            .chain(pointer.previous)
            .filter(|&s| self.checkpoint_dir(s).is_dir())
            .collect())
    }

    /// Steps of every `ckpt-<step>/` directory, newest first, whatever the pointer says (to
    /// rebuild a corrupt one).
    pub fn checkpoint_dirs(&self) -> io::Result<Vec<u64>> {
        let mut steps = Vec::new();
        for entry in std::fs::read_dir(&self.0)? {
            let entry = entry?;
            let name = entry.file_name();
            let step = name
                .to_str()
                .and_then(|n| n.strip_prefix("ckpt-"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            if let Some(step) = step
                && entry.file_type()?.is_dir()
                && self.checkpoint_dir(step) == entry.path()
            {
                steps.push(step);
            }
        }
        steps.sort_unstable_by(|a, b| b.cmp(a));
        Ok(steps)
    }

    /// Writes the pointer (atomically): resume from `ckpt-<step>/`, else from
    /// `ckpt-<previous>/`. Removes nothing.
    pub fn point_checkpoints(&self, step: u64, previous: Option<u64>) -> io::Result<()> {
        let pointer = serde_json::to_vec(&CheckpointPointer { step, previous })?;
        fsio::write_atomic(&self.checkpoint_pointer(), &pointer)
    }

    /// After `unreadable` (newer checkpoints that did not load) a run resumed from
    /// `ckpt-<step>/`: the pointer names it alone, and the unreadable directories go. Pointer
    /// first, so that a crash in between leaves only stray directories (removed at the next
    /// publish), never a pointer to them.
    pub fn fall_back_to(&self, step: u64, unreadable: &[u64]) -> io::Result<()> {
        self.point_checkpoints(step, None)?;
        for &bad in unreadable {
            match std::fs::remove_dir_all(self.checkpoint_dir(bad)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Publishes `ckpt-<step>/` (already written and fsynced) as the checkpoint to resume
    /// from, keeps the one it replaces as the fallback, and removes older directories.
    pub fn publish_checkpoint(&self, step: u64) -> io::Result<()> {
        let previous = self.checkpoints()?.first().copied().filter(|&s| s != step);
        self.point_checkpoints(step, previous)?;
        let keep = [Some(step), previous].map(|s| s.map(|s| self.checkpoint_dir(s)));
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            let is_ckpt = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"));
            if is_ckpt && !keep.contains(&Some(path.clone())) {
                std::fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }

    /// Drops records past `step` (written after the checkpoint a run resumes from), so that
    /// the resumed run appends them again exactly once. Atomic: old file or new one.
    /// The kept lines are copied as they were written: serde_json's default float parser can
    /// be one ulp off, so a parse and re-serialization would change the records.
    pub fn truncate_evals_after(&self, step: u64) -> io::Result<()> {
        let mut text = String::new();
        for (row, line) in read_eval_lines(&self.evals())? {
            if row.step <= step {
                text.push_str(&line);
                text.push('\n');
            }
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
    /// The checkpoint this one replaced, kept as a fallback.
    #[serde(default)]
    previous: Option<u64>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads evaluation records, keeping one row per (step, split) (the last written), sorted by
/// step then split. A missing file is no records. A last line without its newline is a write
/// torn by a crash and is skipped; any other line that does not parse is an error, so that a
/// record is never dropped silently.
pub fn read_evals(path: &Path) -> io::Result<Vec<EvalRow>> {
    Ok(read_eval_lines(path)?
        .into_iter()
        .map(|(row, _)| row)
        .collect())
}

/// [`read_evals`] with the line each row was read from.
fn read_eval_lines(path: &Path) -> io::Result<Vec<(EvalRow, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let torn = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut rows = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<EvalRow>(line) {
            Ok(row) => {
                rows.insert((row.step, row.split), (row, line.to_string()));
            }
            Err(_) if torn && i + 1 == lines.len() => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: not an evaluation record ({e})",
                        path.display(),
                        i + 1
                    ),
                ));
            }
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
    fn non_finite_metrics_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for (step, loss) in [
            (1, 2.5),
            (2, f64::NAN),
            (4, f64::INFINITY),
            (8, f64::NEG_INFINITY),
        ] {
            run.append_eval(&row(step, Split::Train, loss)).unwrap();
        }
        run.truncate_evals_after(4).unwrap();
        let rows = read_evals(&run.evals()).unwrap();
        let losses: Vec<f64> = rows.iter().map(|r| r.metrics["loss"]).collect();
        assert_eq!(losses.len(), 3);
        assert_eq!(losses[0], 2.5);
        assert!(losses[1].is_nan());
        assert_eq!(losses[2], f64::INFINITY);
        // Records written as `null` by earlier versions read as NaN, not as a missing row.
        let old: EvalRow =
            serde_json::from_str(r#"{"step":3,"split":"val","tokens":0,"loss":null}"#).unwrap();
        assert!(old.metrics["loss"].is_nan());
    }

    #[test]
    fn a_corrupt_record_that_is_not_the_torn_last_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run.append_eval(&row(0, Split::Train, 1.0)).unwrap();
        std::fs::write(
            run.evals(),
            std::fs::read_to_string(run.evals()).unwrap() + "garbage\n",
        )
        .unwrap();
        run.append_eval(&row(1, Split::Train, 1.0)).unwrap();
        assert!(read_evals(&run.evals()).is_err());
    }

    #[test]
    fn an_unreadable_summary_is_an_error_not_an_unfinished_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(
            run.summary_checked().unwrap().is_none(),
            "no file: not ended"
        );
        std::fs::write(run.summary(), "{\"status\":\"do").unwrap();
        let err = run.summary_checked().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("summary.json"), "{err}");
        let summary = Summary {
            status: RunStatus::Done,
            steps: 4,
            wall_seconds: 1.0,
            backend: "cpu".into(),
            device: "cpu".into(),
            resumes: 0,
        };
        std::fs::write(run.summary(), serde_json::to_vec(&summary).unwrap()).unwrap();
        assert_eq!(run.summary_checked().unwrap(), Some(summary));
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
        assert_eq!(run.checkpoints().unwrap(), vec![8, 4]);
        std::fs::create_dir(run.checkpoint_dir(16)).unwrap();
        run.publish_checkpoint(16).unwrap();
        // The newest two are kept: a corrupt newest one falls back to the one before.
        assert_eq!(run.checkpoints().unwrap(), vec![16, 8]);
        assert!(!run.checkpoint_dir(4).exists());
        assert!(run.checkpoint_dir(8).exists());
        // An unreadable pointer is an error, not "no checkpoint".
        std::fs::write(run.checkpoint_pointer(), "{\"ste").unwrap();
        assert!(run.checkpoints().is_err());
        assert_eq!(run.checkpoint_step(), None);
    }
}
