//! Sweeps: a TOML file declares a family of jobs; the plan expands it; the sweep directory
//! keeps every job's state on disk; an executor runs what is not finished.
//!
//! Data flows one way: [`SweepConfig`] -> [`Plan`] -> [`SweepDir`] -> executor -> records.
//! The plan and the sweep directory are on-disk formats, defined in `elab-job`; this crate
//! writes them. The executors run `elab train` workers, so this crate never links burn.
//!
//! Modules, each importing only those above it: `packs` (which jobs train together),
//! `config` (the sweep file, with the Slurm options), `refinements` (the sizes `elab refine`
//! added, `refine.json`), `status` (plan and status tables), `local` and `slurm` (the
//! executors).

mod config;
mod local;
mod packs;
mod refinements;
mod slurm;
mod status;

pub use config::{RefineSection, Size, SlurmOptions, SweepConfig, SweepSection};
pub use local::{LocalSettings, SweepReport, cores, run_local};
pub use packs::{
    AUTO_MAX_JOBS, AUTO_MAX_PARAMS, AUTO_MAX_STEP_FLOPS_CPU, Device, PackSize, form_packs,
};
pub use refinements::{
    RefineRound, RefinedSize, Refinements, read_refinements, refinements_path, write_refinements,
};
pub use slurm::{SlurmReport, SlurmSettings, SlurmTask, Submission, run_slurm, slurm_status};
pub use slurm::{
    cancel as cancel_slurm, job_tasks as slurm_job_tasks,
    refuse_if_queued as refuse_if_queued_in_slurm, submissions as slurm_submissions,
};
pub use status::{PlanRow, plan_rows, print_plan, snapshot_bytes, status_table};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elab_job::{JobState, Plan, SpecError, SweepDir, unix_now};

/// What a (re)start of a sweep will do, job by job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resumption {
    pub done: Vec<String>,
    pub resume: Vec<String>,
    pub new: Vec<String>,
    pub orphaned: Vec<String>,
    pub failed_before: Vec<String>,
    pub diverged: Vec<String>,
}

/// Prepares `dir` to run `config`: freezes the config on first run; on a rerun, checks that
/// the fixed defaults did not change (refused unless `allow_changed`), adds new jobs, and
/// reports done / resumable / new / orphaned jobs. The plan includes the sizes recorded in
/// `refine.json`. Writes nothing if it refuses.
pub fn prepare(
    dir: &SweepDir,
    config: &SweepConfig,
    allow_changed: bool,
) -> Result<(Plan, Resumption), PrepareError> {
    let refinements = read_refinements(dir).map_err(PrepareError::Io)?;
    let plan = config.plan_with(&refinements.sizes())?;
    config.check_snapshot_budget(&plan)?;
    let frozen = if dir.exists() {
        let text = std::fs::read_to_string(dir.config()).map_err(PrepareError::Io)?;
        Some(SweepConfig::parse(&dir.config(), &text)?)
    } else {
        None
    };
    let mut config_text = Some(config.text.as_str());
    if let Some(frozen) = &frozen {
        if frozen.base != config.base {
            if !allow_changed {
                return Err(PrepareError::ChangedDefaults {
                    dir: dir.root.display().to_string(),
                    diff: diff_defaults(frozen, config),
                });
            }
            // Keep the previous config beside the new one: the orphans were made from it.
            keep_previous_config(&dir.root, &frozen.text, unix_now() as u64)
                .map_err(PrepareError::Io)?;
        } else if frozen.text == config.text {
            config_text = None;
        }
    }
    dir.write_plan(config_text, &plan)
        .map_err(PrepareError::Io)?;
    let states = dir.states(&plan).map_err(PrepareError::Io)?;
    let mut r = Resumption::default();
    for (id, state) in states {
        match state {
            JobState::Done => r.done.push(id),
            JobState::Diverged => r.diverged.push(id),
            JobState::Resumable | JobState::Running => r.resume.push(id),
            JobState::Failed => r.failed_before.push(id),
            JobState::New => r.new.push(id),
            JobState::Orphaned => r.orphaned.push(id),
        }
    }
    Ok((plan, r))
}

/// Saves a replaced config as `config.<unix seconds>.toml` in `root` (`-2`, `-3`, ... after the
/// seconds when that name is taken: two changes within one second must not leave only the
/// second's), written atomically; returns its path.
fn keep_previous_config(root: &Path, text: &str, now: u64) -> std::io::Result<PathBuf> {
    let mut n = 1;
    loop {
        let name = match n {
            1 => format!("config.{now}.toml"),
            n => format!("config.{now}-{n}.toml"),
        };
        let path = root.join(name);
        if !path.exists() {
            elab_job::fsio::write_atomic(&path, text.as_bytes())?;
            return Ok(path);
        }
        n += 1;
    }
}

/// Lines `model.d_mlp: 512 -> 256` for every default that differs.
fn diff_defaults(old: &SweepConfig, new: &SweepConfig) -> Vec<String> {
    let flat = |c: &SweepConfig| {
        let mut out = BTreeMap::new();
        let table = toml::Table::try_from(&c.base).expect("a job spec is a table");
        flatten_table("", &table, &mut out);
        out
    };
    let (a, b) = (flat(old), flat(new));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

fn flatten_table(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_table(&key, t, out),
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{dir} was started with other fixed defaults; changing them would change jobs already run:\n  {}\nRun with --allow-changed-config to accept: the old jobs are kept and reported as orphaned, the new ones are added.", diff.join("\n  "))]
    ChangedDefaults { dir: String, diff: Vec<String> },
    #[error("sweep directory: {0}")]
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_config_changes_in_one_second_keep_both_previous_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let first = keep_previous_config(tmp.path(), "steps = 40\n", 1_700_000_000).unwrap();
        let second = keep_previous_config(tmp.path(), "steps = 50\n", 1_700_000_000).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "steps = 40\n");
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "steps = 50\n");
        assert!(
            second.ends_with("config.1700000000-2.toml"),
            "{}",
            second.display()
        );
    }
}
