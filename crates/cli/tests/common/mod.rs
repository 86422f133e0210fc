//! Helpers shared by the CLI's integration tests: run the real `elab` binary in a scratch
//! directory and read what it left on disk.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use elab_job::{EvalRow, RunDir, eval_steps, read_evals};

pub fn elab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_elab"))
}

pub fn repo_file(rel: &str) -> PathBuf {
    // At run time, not `env!`: CI's persistent target dir reuses test binaries built in a clone
    // at another path (.ci/run).
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
        .join("../..")
        .join(rel)
}

/// The smoke config with `edit` applied to its text, written into `dir` as `name`.
pub fn smoke_config(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo_file("configs/smoke.toml")).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("elab runs")
}

pub fn sweep_cmd(config: &Path, sweeps: &Path) -> Command {
    let mut cmd = elab();
    cmd.arg("sweep").arg(config).arg("--sweeps-dir").arg(sweeps);
    cmd
}

pub fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Every job's records, keyed by job id, as raw lines and as parsed rows.
pub fn records(sweep: &Path) -> BTreeMap<String, (Vec<String>, Vec<EvalRow>)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(sweep.join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        let run = RunDir::new(&path);
        let raw: Vec<String> = std::fs::read_to_string(run.evals())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let rows = read_evals(&run.evals()).unwrap();
        out.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            (raw, rows),
        );
    }
    out
}

pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Every job's eval records are complete (each eval step once per split) and bitwise equal
/// to the reference's.
pub fn assert_equal_records(reference: &Path, other: &Path, steps: u64, every: u64, jobs: usize) {
    let (a, b) = (records(reference), records(other));
    assert_eq!(a.len(), jobs);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same jobs"
    );
    let expected = eval_steps(steps, every);
    for (id, (raw_b, rows_b)) in &b {
        let (_, rows_a) = &a[id];
        assert_eq!(
            raw_b.len(),
            expected.len() * 2,
            "{id}: complete, no duplicates"
        );
        let got: Vec<u64> = rows_b.iter().map(|r| r.step).step_by(2).collect();
        assert_eq!(got, expected, "{id}");
        assert_bitwise_rows(rows_a, rows_b, id);
        assert!(other.join("jobs").join(id).join("summary.json").exists());
    }
}

/// The same evaluation rows, every metric bit for bit (`what` names them in a failure).
pub fn assert_bitwise_rows(want: &[EvalRow], got: &[EvalRow], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: rows");
    for (x, y) in want.iter().zip(got) {
        assert_eq!((x.step, x.split, x.tokens), (y.step, y.split, y.tokens));
        for (name, v) in &x.metrics {
            assert_eq!(
                v.to_bits(),
                y.metrics[name].to_bits(),
                "{what} step {} {name}",
                x.step
            );
        }
    }
}

/// Whether a Slurm cluster is up for the tests (.ci/slurm-up starts one). Without one a test
/// skips with a message, or fails when ELAB_NO_SKIP is set (CI).
pub fn slurm_available() -> bool {
    let sinfo = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let why = match sinfo {
        Err(e) => format!("`sinfo` cannot run ({e})"),
        Ok(o) if !o.status.success() => format!(
            "`sinfo` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(_) if !root => "not root".to_string(),
        Ok(_) => return true,
    };
    if std::env::var_os("ELAB_NO_SKIP").is_some() {
        panic!("no Slurm cluster: {why} (ELAB_NO_SKIP is set; start one with .ci/slurm-up)");
    }
    eprintln!(
        "SKIPPED: no Slurm cluster: {why}. Start one with `eval \"$(.ci/slurm-up)\"` (root, Debian)."
    );
    false
}

/// Mesa's software Vulkan driver (lavapipe), if installed: wgpu's adapter when there is no GPU.
pub fn lavapipe_icd() -> Option<PathBuf> {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lvp_icd"))
        })
}

/// Whether a Vulkan driver is installed for the wgpu tests: without one a test skips with a
/// message, or fails when ELAB_NO_SKIP is set (CI installs mesa-vulkan-drivers).
pub fn vulkan_available() -> bool {
    let any = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .any(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()));
    skip_unless(any, "no Vulkan driver (install mesa-vulkan-drivers)")
}

/// Whether Mesa's lavapipe is installed, with the same skip rule as `vulkan_available`.
pub fn lavapipe_available() -> bool {
    skip_unless(
        lavapipe_icd().is_some(),
        "no lavapipe (install mesa-vulkan-drivers)",
    )
}

pub fn skip_unless(present: bool, why: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("ELAB_NO_SKIP").is_none(),
            "{why}, and ELAB_NO_SKIP is set"
        );
        eprintln!("SKIPPED: {why}");
    }
    present
}

/// The worker attempts recorded in a job directory (`attempts.jsonl`), oldest first.
pub fn attempts(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("attempts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A run's snapshots: step -> every tensor's (name, shape, bytes), sorted by name (the header's
/// manifest order varies from write to write; the tensors do not).
pub type Snapshots = BTreeMap<u64, Vec<(String, Vec<usize>, Vec<u8>)>>;

pub fn snapshot_tensors(run: &RunDir) -> Snapshots {
    run.snapshot_steps()
        .unwrap()
        .into_iter()
        .map(|step| {
            let bytes = std::fs::read(run.snapshot(step)).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut tensors: Vec<_> = file
                .tensors()
                .into_iter()
                .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
                .collect();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            (step, tensors)
        })
        .collect()
}
