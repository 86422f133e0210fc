//! `sweeps/<name>/refine.json`: the sizes `elab refine` added to a sweep, round by round.
//!
//! The sweep file is never rewritten: the frozen config plus this record is the whole sweep.
//! Every plan of the directory (`elab sweep`, `elab resume`, `elab refine`) expands both, so
//! refined jobs are ordinary jobs of the sweep (in `plan.json`, `elab status`, the export),
//! and a round recorded before its jobs ran is resumed like any other job.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use elab_job::{SweepDir, fsio};
use serde::{Deserialize, Serialize};

use crate::config::Size;

/// Everything refinement added to a sweep (`refine.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Refinements {
    pub rounds: Vec<RefineRound>,
}

/// One round: the sizes added after analysing the sweep as it then was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefineRound {
    /// 1, 2, ...
    pub round: usize,
    /// Unix time the round was recorded.
    pub created: f64,
    pub target_width_decades: f64,
    pub sizes: Vec<RefinedSize>,
}

/// A size added for one comparison group: trained for every seed of the sweep, with the
/// group's values of the other axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinedSize {
    /// The shape (d_mlp always set), as a `[[sizes]]` entry would give it.
    pub size: Size,
    /// The group's label in the export (`add3 train.weight_decay=0.5`).
    pub group: String,
    /// The group's swept values other than seed and shape (empty: the sweep has no others).
    pub axes: BTreeMap<String, toml::Value>,
    /// The scale asked for (log10 total parameters) and the one the shape has.
    pub target_log10_params: f64,
    pub params: u64,
    /// Why: the verdict and interval that asked for it, and the rungs it falls between.
    pub reason: String,
    /// The jobs it adds (one per seed), for reading the record; the plan recomputes them.
    pub jobs: Vec<String>,
}

impl Refinements {
    /// Every added size with the group it belongs to, in the order they were added.
    pub fn sizes(&self) -> Vec<(&Size, &BTreeMap<String, toml::Value>)> {
        self.rounds
            .iter()
            .flat_map(|r| &r.sizes)
            .map(|s| (&s.size, &s.axes))
            .collect()
    }

    /// Jobs added over all rounds.
    pub fn jobs(&self) -> usize {
        self.rounds
            .iter()
            .flat_map(|r| &r.sizes)
            .map(|s| s.jobs.len())
            .sum()
    }
}

/// `<sweep>/refine.json`.
pub fn refinements_path(dir: &SweepDir) -> PathBuf {
    dir.root.join("refine.json")
}

/// What refinement added to the sweep in `dir`: empty if it never ran. A file that does not
/// parse is `InvalidData`, with its path.
pub fn read_refinements(dir: &SweepDir) -> io::Result<Refinements> {
    let path = refinements_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refinements::default()),
        Err(e) => Err(e),
    }
}

/// Replaces `refine.json` atomically: a crash leaves the old record or the new one.
pub fn write_refinements(dir: &SweepDir, refinements: &Refinements) -> io::Result<()> {
    fsio::write_atomic(
        &refinements_path(dir),
        &serde_json::to_vec_pretty(refinements)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_record_is_empty_and_a_written_one_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path());
        assert_eq!(read_refinements(&dir).unwrap(), Refinements::default());
        let record = Refinements {
            rounds: vec![RefineRound {
                round: 1,
                created: 1.5,
                target_width_decades: 0.2,
                sizes: vec![RefinedSize {
                    size: Size {
                        name: "r1-L1d10".into(),
                        n_layer: 1,
                        d_model: 10,
                        n_head: 2,
                        d_mlp: Some(40),
                        lr: None,
                    },
                    group: "add2r train.weight_decay=0.5".into(),
                    axes: BTreeMap::from([("train.weight_decay".into(), toml::Value::Float(0.5))]),
                    target_log10_params: 3.2,
                    params: 1600,
                    reason: "unresolved".into(),
                    jobs: vec!["0123456789ab".into()],
                }],
            }],
        };
        write_refinements(&dir, &record).unwrap();
        assert_eq!(read_refinements(&dir).unwrap(), record);
        assert_eq!(record.jobs(), 1);
        std::fs::write(refinements_path(&dir), "{").unwrap();
        let err = read_refinements(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("refine.json"), "{err}");
    }
}
