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
/// How much earlier than `signal_secs` Slurm may send the warning (its event loop's
/// resolution; sbatch(1), `--signal`).
const SIGNAL_EARLY_SECS: u64 = 60;

/// Seconds in a Slurm time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S` (each field
/// digits); `None` for anything else.
pub fn time_limit_secs(time: &str) -> Option<u64> {
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (days, rest) = match time.split_once('-') {
        Some((d, rest)) => (Some(num(d)?), rest),
        None => (None, time),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Option<_>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) | (Some(_), [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(_), [h]) => h * 3600,
        (Some(_), [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(days.unwrap_or(0) * 86_400 + secs)
}

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
        if let Some(t) = &self.time
            && time_limit_secs(t).is_none()
        {
            return bad(
                "time",
                "a Slurm time: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 30, 2:00:00, 1-12:00:00)",
                t,
            );
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

    /// Checks that the time limit, if set, leaves the task time to train: Slurm warns a task
    /// `signal_secs` before its limit (and may do so up to 60 s earlier), the task then
    /// checkpoints and requeues itself, so a limit within that lead would requeue it in a loop
    /// without a step done. `time_field` names where the limit came from.
    pub fn check_time_limit(&self, time_field: &str) -> Result<(), SpecError> {
        let Some(time) = &self.time else {
            return Ok(());
        };
        let Some(secs) = time_limit_secs(time) else {
            return Ok(()); // refused by `validate`
        };
        let signal = self.signal_secs.unwrap_or(DEFAULT_SIGNAL_SECS);
        let least = u64::from(signal) + SIGNAL_EARLY_SECS;
        if secs <= least {
            return Err(SpecError::new(
                time_field,
                format!(
                    "{time:?} ({secs} s) must be longer than executor.slurm.signal_secs \
                     ({signal} s) + {SIGNAL_EARLY_SECS} s = {least} s: Slurm warns a task \
                     signal_secs before its time limit (up to {SIGNAL_EARLY_SECS} s earlier), \
                     and the task then checkpoints and requeues itself, so it would requeue \
                     in a loop without training. Set a longer time limit or a smaller \
                     signal_secs"
                ),
            ));
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
        let malformed = SlurmOptions {
            time: Some("1:2:3:4".into()),
            ..Default::default()
        };
        assert!(malformed.validate("executor.slurm").is_err());
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

#[cfg(test)]
mod time_limit_tests {
    use super::*;

    #[test]
    fn slurm_time_formats_are_read_in_seconds() {
        for (text, secs) in [
            ("30", 1800),
            ("2:30", 150),
            ("1:00:00", 3600),
            ("1-12", 129_600),
            ("1-0:30", 88_200),
            ("1-00:00:10", 86_410),
        ] {
            assert_eq!(time_limit_secs(text), Some(secs), "{text}");
        }
        for bad in ["", "-1", "1-", "1:", "1:2:3:4", "1-2:3:4:5", "a", "1--2"] {
            assert_eq!(time_limit_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_time_limit_within_the_warning_lead_is_refused_naming_both() {
        let with = |time: &str, signal: Option<u32>| SlurmOptions {
            time: Some(time.into()),
            signal_secs: signal,
            ..Default::default()
        };
        // The default warning comes 120 s (up to 180 s) before the limit.
        let err = with("3", None).check_time_limit("--time").unwrap_err();
        assert_eq!(err.field, "--time");
        assert!(
            err.message.contains("signal_secs") && err.message.contains("(120 s)"),
            "{}",
            err.message
        );
        assert!(with("3:01", None).check_time_limit("--time").is_ok());
        let err = with("10:00", Some(600))
            .check_time_limit("executor.slurm.time")
            .unwrap_err();
        assert!(err.message.contains("(600 s)"), "{}", err.message);
        assert!(with("30:00", Some(60)).check_time_limit("t").is_ok());
        // No time limit: the partition's, which is not known here.
        assert!(SlurmOptions::default().check_time_limit("t").is_ok());
    }
}
