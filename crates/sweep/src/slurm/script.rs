//! The sbatch script of one submission: `task.sh` with its `@NAME@` placeholders filled in.
//! Every value put in is validated (job ids are hex, the backend is a keyword, exit codes are
//! numbers) or single-quoted (paths, sbatch options).

use std::path::Path;

use elab_job::{SpecError, exit};

const TEMPLATE: &str = include_str!("task.sh");

/// What one submission's script runs.
pub(super) struct ScriptValues<'a> {
    pub elab: &'a str,
    pub sweep_dir: &'a str,
    pub backend: &'a str,
    /// The task list, relative to the sweep directory.
    pub tasks_file: &'a str,
    pub sweep_name: &'a str,
    pub n: u32,
    pub sbatch_args: &'a [String],
}

pub(super) fn script(v: &ScriptValues<'_>) -> Result<String, SpecError> {
    let shown: Vec<String> = v
        .sbatch_args
        .iter()
        .map(|a| shell_quote("sbatch option", a))
        .collect::<Result<_, _>>()?;
    Ok(render(
        TEMPLATE,
        &[
            ("SWEEP_NAME", v.sweep_name.to_string()),
            ("N", v.n.to_string()),
            ("SBATCH_ARGS", shown.join(" ")),
            ("ELAB", shell_quote("elab binary", v.elab)?),
            ("SWEEP_DIR", shell_quote("sweep directory", v.sweep_dir)?),
            ("TASKS", shell_quote("task list", v.tasks_file)?),
            ("BACKEND", shell_quote("backend", v.backend)?),
            ("EXIT_BAD_INPUT", exit::BAD_INPUT.to_string()),
            ("EXIT_INTERRUPTED", exit::INTERRUPTED.to_string()),
        ],
    ))
}

/// Replaces each `@NAME@` (capitals and `_`) of `template` by its value, in one pass, so a
/// value is never scanned for placeholders. Other `@`s, and names without a value, are kept.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
            .count();
        let value = (len > 0 && after[len..].starts_with('@'))
            .then(|| values.iter().find(|(name, _)| *name == &after[..len]))
            .flatten();
        match value {
            Some((_, value)) => {
                out.push_str(value);
                rest = &after[len + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `'text'` for bash; refuses what cannot be a sane path in a script.
pub(super) fn shell_quote(field: &str, text: &str) -> Result<String, SpecError> {
    if text.chars().any(|c| c.is_control()) {
        return Err(SpecError::new(
            field,
            format!("contains a control character: {text:?}"),
        ));
    }
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

/// `path` made absolute, as UTF-8 (it is written into a script).
pub(super) fn abs_utf8(field: &str, path: &Path) -> Result<String, SpecError> {
    let abs = std::path::absolute(path)
        .map_err(|e| SpecError::new(field, format!("{}: {e}", path.display())))?;
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| SpecError::new(field, format!("is not valid UTF-8: {}", abs.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_paths() {
        assert_eq!(shell_quote("p", "/a b/it's").unwrap(), r"'/a b/it'\''s'");
        assert!(shell_quote("p", "/a\nb").is_err());
    }

    /// The `@NAME@` tokens of `text`.
    fn placeholders(text: &str) -> Vec<&str> {
        let mut names = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('@') {
            let after = &rest[at + 1..];
            let len = after
                .bytes()
                .take_while(|b| b.is_ascii_uppercase() || *b == b'_')
                .count();
            if len > 0 && after[len..].starts_with('@') {
                names.push(&after[..len]);
                rest = &after[len + 1..];
            } else {
                rest = after;
            }
        }
        names
    }

    #[test]
    fn every_placeholder_is_filled() {
        assert!(placeholders(TEMPLATE).len() >= 9);
        let args = vec!["--signal=B:USR1@120".to_string(), "--job-name=x".into()];
        let text = script(&ScriptValues {
            elab: "/opt/elab",
            sweep_dir: "/s/it's",
            backend: "cpu",
            tasks_file: "slurm/sub-1.tasks",
            sweep_name: "smoke",
            n: 1,
            sbatch_args: &args,
        })
        .unwrap();
        assert_eq!(placeholders(&text), Vec::<&str>::new(), "{text}");
        assert!(text.starts_with("#!/bin/bash\n"));
        assert!(text.contains("ELAB='/opt/elab'\n"));
        assert!(text.contains(r"SWEEP='/s/it'\''s'"));
        assert!(text.contains("'--signal=B:USR1@120'"));
        assert!(text.contains(r#"if [ "$CODE" = 75 ]"#));
        assert!(text.contains("exit 2 ;;"));
        assert!(text.contains("\"$ELAB\" record-attempt"));
        // One pass: a value is never scanned for placeholders.
        assert_eq!(
            render("a@X@b@Y@c@", &[("X", "@Y@".into()), ("Y", "2".into())]),
            "a@Y@b2c@"
        );
    }

    /// The script as a warned task runs it, with stand-ins for `elab` (whose worker exits 75
    /// once warned) and `scontrol` (whose requeue fails): the failure is reported in the
    /// task's output. Before, it was ignored, and the task silently ended unrequeued.
    #[test]
    fn a_failed_requeue_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        let sweep = tmp.path().join("sweep");
        let job = "0123456789ab";
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(sweep.join("slurm")).unwrap();
        std::fs::create_dir_all(sweep.join("jobs").join(job)).unwrap();
        std::fs::write(sweep.join("slurm/sub-1.tasks"), format!("{job}\n")).unwrap();
        // The worker warns its script (as Slurm's --signal=B:USR1 would) until the script
        // passes the warning on, then exits 75 like a checkpointed worker.
        let fake_elab = "#!/bin/sh\n[ \"$1\" = train ] || exit 0\n\
            trap 'exit 75' USR1\n\
            while :; do kill -USR1 $PPID; sleep 0.05; done\n";
        let fake_scontrol = "#!/bin/sh\necho 'slurm_requeue error: Requested operation is presently disabled' >&2\nexit 1\n";
        for (name, text) in [("elab", fake_elab), ("scontrol", fake_scontrol)] {
            let path = bin.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let elab = bin.join("elab");
        let text = script(&ScriptValues {
            elab: elab.to_str().unwrap(),
            sweep_dir: sweep.to_str().unwrap(),
            backend: "cpu",
            tasks_file: "slurm/sub-1.tasks",
            sweep_name: "t",
            n: 1,
            sbatch_args: &[],
        })
        .unwrap();
        let script_path = tmp.path().join("sub-1.sh");
        std::fs::write(&script_path, text).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let status = std::process::Command::new("bash")
            .arg(&script_path)
            .env("PATH", path)
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("SLURM_ARRAY_JOB_ID", "77")
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(i32::from(exit::INTERRUPTED)));
        let out =
            std::fs::read_to_string(sweep.join("jobs").join(job).join("slurm-77_0.out")).unwrap();
        assert!(
            out.contains("scontrol requeue 77_0 failed: slurm_requeue error: Requested operation is presently disabled")
                && out.contains("not requeued"),
            "{out}"
        );
    }
}
