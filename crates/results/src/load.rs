//! Reads a sweep directory into plain records: one [`JobRecord`] per job (planned or orphaned),
//! with its spec, sizes, state, evaluation rows and summary, and groups them for comparison.
//! Everything downstream (the fits of this crate, elab-report's CSV, plots and HTML,
//! elab-refine's proposals) works from these records only, so the sweep directory is read
//! exactly once.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use elab_job::{
    JobSpec, JobState, ModelSpec, ParamCounts, Split, Summary, SweepDir, param_counts, read_evals,
    train_flops_per_token,
};

use crate::evals::Evals;

/// Everything the exporters need about one job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    /// Size name from the plan; empty for an orphan (no longer in the plan).
    pub size: String,
    /// Swept values from the plan (dotted key -> value), empty for an orphan.
    pub axes: BTreeMap<String, toml::Value>,
    pub state: JobState,
    pub spec: JobSpec,
    pub counts: ParamCounts,
    /// Training FLOPs per token (see `elab_job::train_flops_per_token`).
    pub flops_per_token: f64,
    /// Answer tokens per example (L in p^L).
    pub answer_len: usize,
    /// One evaluation per (step, split), sorted by step then split.
    pub evals: Evals,
    pub summary: Option<Summary>,
}

impl JobRecord {
    /// Training tokens read by the last evaluation (0 with no records).
    pub fn tokens_seen(&self) -> u64 {
        self.evals.tokens_seen()
    }

    /// Estimated training compute so far: FLOPs per token x tokens seen.
    pub fn train_flops(&self) -> f64 {
        self.flops_per_token * self.tokens_seen() as f64
    }

    /// `(step, value)` of one metric on one split, sorted by step.
    pub fn curve(&self, split: Split, metric: &str) -> Vec<(u64, f64)> {
        self.evals.curve(split, metric)
    }

    /// The metric's value at the last evaluation of `split`.
    pub fn final_value(&self, split: Split, metric: &str) -> Option<f64> {
        self.evals.final_value(split, metric)
    }

    /// The swept values that define a comparison group: every axis except `seed` (seeds are
    /// repeats) and the model shape (sizes are the x axis).
    pub fn group_axes(&self) -> BTreeMap<String, toml::Value> {
        self.axes
            .iter()
            .filter(|(k, _)| !is_size_or_seed_axis(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub fn is_size_or_seed_axis(key: &str) -> bool {
    key == "seed" || ModelSpec::is_shape_key(key)
}

/// A whole sweep: its name and every job, planned jobs first (in plan order), then orphans.
#[derive(Debug, Clone)]
pub struct SweepData {
    pub name: String,
    pub jobs: Vec<JobRecord>,
    /// Every swept key of the plan, sorted (the `axis_<key>` columns).
    pub axis_keys: Vec<String>,
    /// Orphans whose spec could not be read, with the reason.
    pub skipped: Vec<String>,
}

impl SweepData {
    pub fn load(sweep_dir: &Path) -> anyhow::Result<Self> {
        let dir = SweepDir::new(sweep_dir);
        let plan = dir.read_plan().with_context(|| {
            format!(
                "reading {} (is this a sweep directory?)",
                dir.plan_path().display()
            )
        })?;
        let states = dir
            .states(&plan)
            .with_context(|| format!("listing jobs in {}", dir.jobs_dir().display()))?;

        let planned = plan
            .jobs
            .iter()
            .map(|j| (j.id.clone(), j.size.clone(), j.axes.clone()));
        let orphans = states
            .iter()
            .filter(|(_, s)| **s == JobState::Orphaned)
            .map(|(id, _)| (id.clone(), String::new(), BTreeMap::new()));
        let mut jobs = Vec::new();
        let mut skipped = Vec::new();
        for (id, size, axes) in planned.chain(orphans) {
            let run = dir.job(&id);
            // A planned job whose spec was never written has nothing to report.
            if !run.spec().exists() {
                continue;
            }
            let spec = match JobSpec::from_file(&run.spec()) {
                Ok(spec) => spec,
                // An orphan may come from an older version of the job format: report it as
                // skipped rather than refuse to export the jobs that matter.
                Err(e) if states.get(&id) == Some(&JobState::Orphaned) => {
                    skipped.push(format!("{id}: {e}"));
                    continue;
                }
                Err(e) => anyhow::bail!("{e}"),
            };
            let (vocab, _, answer_len) = spec.task.shape();
            let n_ctx = spec.n_ctx();
            let counts = param_counts(&spec.model, vocab, n_ctx);
            let evals = Evals::from_rows(
                read_evals(&run.evals())
                    .with_context(|| format!("reading {}", run.evals().display()))?,
            );
            // Fail closed: an unreadable summary would make a finished run read as unfinished,
            // left out of every fit.
            let summary = run.summary_checked()?;
            jobs.push(JobRecord {
                state: states.get(&id).copied().unwrap_or(JobState::New),
                flops_per_token: train_flops_per_token(&spec.model, &counts, n_ctx),
                summary,
                id,
                size,
                axes,
                spec,
                counts,
                answer_len,
                evals,
            });
        }
        let mut axis_keys: Vec<String> = plan
            .jobs
            .iter()
            .flat_map(|j| j.axes.keys().cloned())
            .collect();
        axis_keys.sort();
        axis_keys.dedup();
        Ok(Self {
            name: plan.sweep,
            jobs,
            axis_keys,
            skipped,
        })
    }

    /// Axis keys that split jobs into comparison groups (not seed, not shape).
    pub fn group_axis_keys(&self) -> Vec<String> {
        self.axis_keys
            .iter()
            .filter(|k| !is_size_or_seed_axis(k))
            .cloned()
            .collect()
    }
}

/// Jobs that are compared over scale: same task, same non-size non-seed axis values.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// `add3r` or `add3r train.weight_decay=0.5`.
    pub label: String,
    /// File-name-safe form of the label, unique within the sweep.
    pub slug: String,
    pub task: String,
    pub axes: BTreeMap<String, toml::Value>,
    pub jobs: Vec<&'a JobRecord>,
    /// The swept numeric axis the group is compared over (a data threshold: train size,
    /// train fraction, steps, ...); `None` for comparison over model scale.
    pub over: Option<String>,
}

impl Group<'_> {
    /// Its distinct sizes, `(params_total, size name)`, smallest model first.
    pub fn sizes(&self) -> Vec<(u64, &str)> {
        let mut sizes: Vec<(u64, &str)> = self
            .jobs
            .iter()
            .map(|j| (j.counts.total, j.size.as_str()))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }
}

/// Planned jobs grouped for comparison over scale, in order of first appearance. Orphans are
/// left out: they were made from another config, so their axis values are unknown.
pub fn groups(data: &SweepData) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for job in data.jobs.iter().filter(|j| j.state != JobState::Orphaned) {
        let task = job.spec.task.label();
        let axes = job.group_axes();
        match groups.iter_mut().find(|g| g.task == task && g.axes == axes) {
            Some(g) => g.jobs.push(job),
            None => {
                let mut label = task.clone();
                for (k, v) in &axes {
                    label.push_str(&format!(" {k}={}", value_text(v)));
                }
                let slug = format!("g{:02}_{}", groups.len() + 1, slugify(&label));
                groups.push(Group {
                    label,
                    slug,
                    task,
                    axes,
                    jobs: vec![job],
                    over: None,
                });
            }
        }
    }
    groups
}

/// A swept value as a number, if it is one.
pub fn numeric(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// For every swept axis other than seed and model shape whose values are numbers (at least
/// two distinct): planned jobs grouped for comparison over that axis, sharing the task, the
/// size and every other swept value. Slugs continue the numbering after `first_index` groups.
pub fn axis_groups(data: &SweepData, first_index: usize) -> Vec<Group<'_>> {
    let planned: Vec<&JobRecord> = data
        .jobs
        .iter()
        .filter(|j| j.state != JobState::Orphaned)
        .collect();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for key in data.group_axis_keys() {
        let values: Option<Vec<f64>> = planned
            .iter()
            .map(|j| j.axes.get(&key).and_then(numeric))
            .collect();
        let Some(mut values) = values else { continue };
        values.sort_by(f64::total_cmp);
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        for job in &planned {
            let task = job.spec.task.label();
            let mut axes = job.group_axes();
            axes.remove(&key);
            let found = groups.iter_mut().find(|g| {
                g.over.as_deref() == Some(&key)
                    && g.task == task
                    && g.axes == axes
                    && g.jobs[0].size == job.size
            });
            match found {
                Some(g) => g.jobs.push(job),
                None => {
                    let mut label = format!("{task} size={}", job.size);
                    for (k, v) in &axes {
                        label.push_str(&format!(" {k}={}", value_text(v)));
                    }
                    label.push_str(&format!(" over {key}"));
                    let n = first_index + groups.len() + 1;
                    groups.push(Group {
                        slug: format!("g{n:02}_{}", slugify(&label)),
                        label,
                        task,
                        axes,
                        jobs: vec![job],
                        over: Some(key.clone()),
                    });
                }
            }
        }
    }
    groups
}

/// A TOML axis value as CSV text: strings without quotes, everything else as TOML writes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A label as a file-name-safe slug: ASCII letters (lowercased), digits, `.` and `-`, every
/// other run of characters one `_`, at most 60 characters.
pub fn slugify(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.truncate(60);
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(
            slugify("add3r train.weight_decay=0.5"),
            "add3r_train.weight_decay_0.5"
        );
        assert_eq!(
            slugify("mod97_add task.op=\"x/y\""),
            "mod97_add_task.op_x_y"
        );
        assert_eq!(value_text(&toml::Value::String("add".into())), "add");
        assert_eq!(value_text(&toml::Value::Float(0.5)), "0.5");
    }
}
