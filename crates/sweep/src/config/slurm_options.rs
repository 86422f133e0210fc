//! `[executor.slurm]` of a sweep file and the `elab sweep --executor slurm` flags: how the
//! sweep's tasks are submitted. Configuration only, read by the Slurm executor
//! (`crate::slurm`); none of it enters job ids.

use elab_job::SpecError;
use serde::{Deserialize, Serialize};

/// `[executor.slurm]` of a sweep file, and the `elab sweep --executor slurm` flags (which
/// override it). Execution settings only: they never enter job ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// `--partition` (letters, digits, `_`, `.`, `-`; several separated by commas).
    #[serde(default)]
    pub partition: Option<String>,
    /// GPUs per job (`--gres=gpu:N`).
    #[serde(default)]
    pub gpus_per_job: Option<u32>,
    /// `--cpus-per-task`.
    #[serde(default)]
    pub cpus_per_job: Option<u32>,
    /// `--mem`: a number with an optional K, M, G or T suffix.
    #[serde(default)]
    pub mem: Option<String>,
    /// `--time`: digits, `:` and `-` (e.g. `30`, `2:00:00`, `1-12:00:00`).
    #[serde(default)]
    pub time: Option<String>,
    /// At most this many tasks of the array run at once (`--array=...%K`).
    #[serde(default)]
    pub max_running: Option<u32>,
    /// Seconds before the time limit at which the task is told to checkpoint (default 120).
    #[serde(default)]
    pub signal_secs: Option<u32>,
    /// More sbatch options, each `--name` or `--name=value` (e.g. `--account=lab`, `--qos=low`).
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Seconds before the time limit at which a task is told to checkpoint, unless set.
pub const DEFAULT_SIGNAL_SECS: u32 = 120;
/// Options the executor sets itself; `extra` may not override them.
const RESERVED: &[&str] = &[
    "array",
    "wrap",
    "output",
    "error",
    "input",
    "chdir",
    "open-mode",
    "signal",
    "requeue",
    "no-requeue",
    "job-name",
    "parsable",
    "export",
    "export-file",
];

impl SlurmOptions {
    /// Checks every value against a strict pattern; `prefix` names where it came from
    /// (`executor.slurm` in a sweep file, `-` for command-line flags).
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |name: &str| {
            if prefix == "-" && name == "extra" {
                "--sbatch-arg".to_string()
            } else if prefix == "-" {
                format!("--{}", name.replace('_', "-"))
            } else {
                format!("{prefix}.{name}")
            }
        };
        let bad = |name: &str, what: &str, value: &str| {
            Err(SpecError::new(
                field(name),
                format!("must be {what}, got {value:?}"),
            ))
        };
        if let Some(p) = &self.partition {
            let ok = !p.is_empty()
                && !p.starts_with(['-', ','])
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-,".contains(c));
            if !ok {
                return bad(
                    "partition",
                    "letters, digits, `_`, `.`, `-` (several separated by `,`)",
                    p,
                );
            }
        }
        if let Some(m) = &self.mem {
            let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
            let ok = !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && m.len() - digits.len() <= 1;
            if !ok {
                return bad(
                    "mem",
                    "a number with an optional K, M, G or T suffix (e.g. 8G)",
                    m,
                );
            }
        }
        if let Some(t) = &self.time {
            let ok = !t.is_empty()
                && t.starts_with(|c: char| c.is_ascii_digit())
                && t.chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '-');
            if !ok {
                return bad(
                    "time",
                    "digits, `:` and `-` (e.g. 30, 2:00:00, 1-12:00:00)",
                    t,
                );
            }
        }
        for (name, v) in [
            ("gpus_per_job", self.gpus_per_job),
            ("cpus_per_job", self.cpus_per_job),
            ("max_running", self.max_running),
        ] {
            if v == Some(0) {
                return bad(name, "at least 1", "0");
            }
        }
        for e in &self.extra {
            let (name, value) = match e.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (e.as_str(), None),
            };
            let name_ok = name.len() > 2
                && name.starts_with("--")
                && name[2..].starts_with(|c: char| c.is_ascii_lowercase())
                && name[2..]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            let value_ok = value.is_none_or(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.,:@+/=-".contains(c))
            });
            if !name_ok || !value_ok {
                return bad(
                    "extra",
                    "sbatch options `--name` or `--name=value` (value: letters, digits and _.,:@+/=-)",
                    e,
                );
            }
            if RESERVED.contains(&&name[2..]) {
                return bad("extra", "an option the executor does not set itself", e);
            }
        }
        Ok(())
    }

    /// `self` with every option that `over` sets replaced by it.
    pub fn overridden_by(self, over: SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: over.partition.or(self.partition),
            gpus_per_job: over.gpus_per_job.or(self.gpus_per_job),
            cpus_per_job: over.cpus_per_job.or(self.cpus_per_job),
            mem: over.mem.or(self.mem),
            time: over.time.or(self.time),
            max_running: over.max_running.or(self.max_running),
            signal_secs: over.signal_secs.or(self.signal_secs),
            extra: if over.extra.is_empty() {
                self.extra
            } else {
                over.extra
            },
        }
    }

    /// The sbatch options these settings translate to.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.partition {
            args.push(format!("--partition={p}"));
        }
        if let Some(g) = self.gpus_per_job {
            args.push(format!("--gres=gpu:{g}"));
        }
        if let Some(c) = self.cpus_per_job {
            args.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            args.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            args.push(format!("--time={t}"));
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_shell_metacharacters() {
        let bad = [
            SlurmOptions {
                partition: Some("debug; touch /tmp/pwned".into()),
                ..Default::default()
            },
            SlurmOptions {
                mem: Some("4G$(id)".into()),
                ..Default::default()
            },
            SlurmOptions {
                time: Some("1:00`id`".into()),
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--qos=low --wrap=id".into()],
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--wrap=id".into()],
                ..Default::default()
            },
            SlurmOptions {
                extra: vec!["--account=a'b".into()],
                ..Default::default()
            },
        ];
        for o in bad {
            assert!(o.validate("executor.slurm").is_err(), "{o:?}");
        }
        let good = SlurmOptions {
            partition: Some("gpu-a100,debug".into()),
            mem: Some("16G".into()),
            time: Some("1-02:00:00".into()),
            gpus_per_job: Some(1),
            extra: vec!["--account=lab_1".into(), "--exclusive".into()],
            ..Default::default()
        };
        good.validate("executor.slurm").unwrap();
        assert_eq!(
            SlurmOptions {
                partition: Some("x;y".into()),
                ..Default::default()
            }
            .validate("-")
            .unwrap_err()
            .field,
            "--partition"
        );
    }
}
