//! Faults a run must survive without losing or repeating a record: a resume from step 0, a
//! corrupt newest checkpoint (falls back to the one before), an unreadable checkpoint pointer
//! (an error, never a silent restart). One test per binary: burn's seed is process-global.

mod common;

use common::{tiny_job, train_cpu as run};
use elab_job::{RunDir, read_evals};
use elab_train::Outcome;

fn lines(dir: &RunDir) -> Vec<String> {
    std::fs::read_to_string(dir.evals())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn resumes_from_step_zero_and_from_the_previous_checkpoint_and_fails_closed() {
    let spec = tiny_job(5, 3e-3);
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
