//! Faults a run must survive without losing or repeating a record: a resume from step 0, a
//! corrupt newest checkpoint (falls back to the one before), an unreadable checkpoint pointer
//! (an error, never a silent restart). One test per binary: burn's seed is process-global.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use elab_job::{JobSpec, RunDir, read_evals};
use elab_train::{Backend, Outcome, RunOptions, train};

const JOB: &str = r#"
seed = 5
[task]
kind = "digits"
op = "add"
digits = 2
reversed = true
train_size = 200
val_size = 100
[model]
n_layer = 1
d_model = 16
n_head = 2
d_mlp = 32
[train]
steps = 40
batch_size = 32
lr = 3e-3
[eval]
every = 10
"#;

/// Trains `dir`, stopping (with a checkpoint) once step `stop_at` is reached.
fn run(spec: &JobSpec, dir: &RunDir, stop_at: Option<u64>) -> anyhow::Result<Outcome> {
    let stop = Arc::new(AtomicBool::new(stop_at == Some(0)));
    let flag = stop.clone();
    let mut on_progress = |p: &elab_train::Progress| {
        if Some(p.step) == stop_at {
            flag.store(true, Ordering::SeqCst);
        }
    };
    train(
        spec,
        dir,
        RunOptions {
            backend: Backend::Cpu,
            stop,
            on_progress: &mut on_progress,
        },
    )
}

fn lines(dir: &RunDir) -> Vec<String> {
    std::fs::read_to_string(dir.evals())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn resumes_from_step_zero_and_from_the_previous_checkpoint_and_fails_closed() {
    // As `elab` does at start-up: burn stages loaded optimizer state on the default device.
    // SAFETY: the only test of this binary, before it starts any thread of its own.
    unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    let spec = JobSpec::from_toml(JOB).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let straight = RunDir::new(tmp.path().join("straight"));
    assert!(matches!(
        run(&spec, &straight, None).unwrap(),
        Outcome::Finished(_)
    ));
    let expected = lines(&straight);

    // Stopped before its first update, then resumed: the step-0 rows are written once.
    let dir = RunDir::new(tmp.path().join("resumed"));
    assert_eq!(
        run(&spec, &dir, Some(0)).unwrap(),
        Outcome::Interrupted { step: 0 }
    );
    assert_eq!(dir.checkpoints().unwrap(), vec![0]);
    assert_eq!(
        run(&spec, &dir, Some(30)).unwrap(),
        Outcome::Interrupted { step: 30 }
    );
    assert_eq!(dir.checkpoints().unwrap(), vec![30, 20]);

    // The newest checkpoint is corrupt: resume from step 20, redo 21..30, same records.
    std::fs::write(dir.checkpoint_dir(30).join("model.bpk"), b"torn").unwrap();
    assert!(matches!(
        run(&spec, &dir, None).unwrap(),
        Outcome::Finished(_)
    ));
    assert_eq!(lines(&dir).len(), read_evals(&dir.evals()).unwrap().len());
    assert_eq!(lines(&dir), expected, "records differ from a straight run");

    // An unreadable pointer stops the run with an error and leaves its records alone.
    let broken = RunDir::new(tmp.path().join("broken"));
    assert_eq!(
        run(&spec, &broken, Some(20)).unwrap(),
        Outcome::Interrupted { step: 20 }
    );
    let before = std::fs::read(broken.evals()).unwrap();
    std::fs::write(broken.checkpoint_pointer(), b"{\"st").unwrap();
    let err = run(&spec, &broken, None).unwrap_err();
    assert!(format!("{err:#}").contains("checkpoint.json"), "{err:#}");
    assert_eq!(std::fs::read(broken.evals()).unwrap(), before);
}
