//! benches/gpu-check.sh, the GPU check of issue 23, exercised before a GPU machine runs it: its
//! dry run goes through every phase (the adapter probe on lavapipe, the ladder, packed vs
//! unpacked sweeps; training on the CPU, see the script) with one rung and the smoke sweep, and
//! without `--dry-run` it refuses the software adapter. `elab device`, its probe, names the
//! adapter. All pin Vulkan to lavapipe (VK_DRIVER_FILES), so that a machine with a GPU tests the
//! same thing. Skipped without lavapipe, unless ELAB_NO_SKIP is set (CI).

mod common;

use std::path::Path;
use std::process::Output;

use common::{lavapipe_available, lavapipe_icd, repo_file};

fn gpu_check(args: &[&str], out: &Path) -> Output {
    let output = std::process::Command::new(repo_file("benches/gpu-check.sh"))
        .args(args)
        .arg(out)
        .env("ELAB", env!("CARGO_BIN_EXE_elab"))
        .env("VK_DRIVER_FILES", lavapipe_icd().unwrap())
        .output()
        .expect("benches/gpu-check.sh runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// The cells of the markdown table row that starts with `| first |`.
fn row<'a>(md: &'a str, first: &str) -> Vec<&'a str> {
    let line = md
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no `{first}` row in:\n{md}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

fn seconds(cell: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("`{cell}` is not a time"))
}

#[test]
fn the_dry_run_measures_every_phase_on_lavapipe() {
    if !lavapipe_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = gpu_check(&["--dry-run"], &out);
    assert!(output.status.success(), "the dry run failed");
    let md = std::fs::read_to_string(out.join("gpu-check.md")).unwrap();

    // The probe names the software adapter, which elab's `auto` does not take for a GPU.
    assert!(md.contains("none usable as a GPU"), "{md}");
    assert!(md.contains("llvmpipe"), "{md}");
    // The ladder's one rung trained (on the CPU): rung, params, elab ms/step, ...
    let ladder = std::fs::read_to_string(out.join("ladder-elab.jsonl")).unwrap();
    assert!(ladder.contains(r#""backend":"cpu""#), "{ladder}");
    let tenk = row(&md, "10k");
    assert_eq!(tenk[1], "15384");
    assert!(seconds(tenk[2]) > 0.0);
    // Both sweeps of the smoke config finished: 4 jobs, 2 packs under "auto".
    let smoke = row(&md, "smoke");
    assert_eq!(&smoke[1..3], ["4", "2"]);
    assert!(
        seconds(smoke[3]) > 0.0 && seconds(smoke[4]) > 0.0,
        "{smoke:?}"
    );
    assert!(
        md.contains("Backend: cpu. Every job trained 2 steps"),
        "{md}"
    );
    // Whether or not PyTorch is here, the markdown says what became of the twin.
    assert!(
        md.contains("PyTorch is not installed") || row(&md, "10k")[3] != "-",
        "{md}"
    );
    assert!(
        !std::fs::read_to_string(out.join("gpu-check.log"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_software_adapter_fails_the_real_check() {
    if !lavapipe_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let output = gpu_check(&[], &out);
    assert_eq!(output.status.code(), Some(2), "the check went on");
    let md = std::fs::read_to_string(out.join("gpu-check.md")).unwrap();
    assert!(md.contains("FAILED: no GPU adapter for wgpu"), "{md}");
    assert!(md.contains("llvmpipe"), "{md}");
    // It stopped before measuring anything.
    assert!(!out.join("ladder-elab.jsonl").exists());
}

#[test]
fn elab_device_names_the_adapter_and_why() {
    if !lavapipe_available() {
        return;
    }
    let device = |backend: &str| -> serde_json::Value {
        let out = common::elab()
            .args(["device", "--backend", backend])
            .env("VK_DRIVER_FILES", lavapipe_icd().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let auto = device("auto");
    assert_eq!(auto["backend"], "cpu");
    let reason = auto["reason"].as_str().unwrap();
    assert!(
        reason.contains("llvmpipe") && reason.contains("software rasterizer"),
        "{reason}"
    );
    let wgpu = device("wgpu");
    assert_eq!(wgpu["backend"], "wgpu");
    assert!(
        wgpu["name"].as_str().unwrap().contains("llvmpipe"),
        "{wgpu}"
    );
}
