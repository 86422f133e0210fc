//! Faults a run must survive without losing or repeating a record: a resume from step 0, a
//! corrupt newest checkpoint (falls back to the one before, which stays the fallback until a
//! good checkpoint replaces it), corrupt checkpoints again after that, an unreadable
//! checkpoint pointer (an error, never a silent restart; `repair_checkpoints` rebuilds it from
//! the directories that load). One test per binary: burn's seed is process-global.

mod common;

use common::{tiny_job, train_cpu as run};
use elab_job::{RunDir, read_evals};
use elab_train::{Outcome, repair_checkpoints};

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

    // Faults after a fallback. Stopped at 30, newest checkpoint corrupt, resumed from 20 and
    // stopped at 30 again: checkpoint 30 is written anew (before, the directory of step 30
    // was taken as already written, so the unreadable one stayed the newest).
    let torn = |dir: &RunDir, step| {
        std::fs::write(dir.checkpoint_dir(step).join("model.bpk"), b"torn").unwrap()
    };
    let model_of = |dir: &RunDir, step| std::fs::read(dir.checkpoint_dir(step).join("model.bpk"));
    let again = RunDir::new(tmp.path().join("again"));
    run(&spec, &again, Some(30)).unwrap();
    torn(&again, 30);
    assert_eq!(
        run(&spec, &again, Some(30)).unwrap(),
        Outcome::Interrupted { step: 30 }
    );
    assert_eq!(again.checkpoints().unwrap(), vec![30, 20]);
    assert_ne!(model_of(&again, 30).unwrap(), b"torn");
    // Corrupt again, resumed from 20 and stopped at 25: the fallback of 25 is 20, which
    // loaded, never the unreadable 30 (before, the pointer became [25, 30] and 20 was deleted).
    torn(&again, 30);
    assert_eq!(
        run(&spec, &again, Some(25)).unwrap(),
        Outcome::Interrupted { step: 25 }
    );
    assert_eq!(again.checkpoints().unwrap(), vec![25, 20]);
    assert!(!again.checkpoint_dir(30).exists());
    // A third fault, in the newest again: 20 is still there, and the records come out whole.
    torn(&again, 25);
    assert!(matches!(
        run(&spec, &again, None).unwrap(),
        Outcome::Finished(_)
    ));
    assert_eq!(
        lines(&again),
        expected,
        "records differ from a straight run"
    );

    // An unreadable pointer stops the run with an error and leaves its records alone.
    let broken = RunDir::new(tmp.path().join("broken"));
    assert_eq!(
        run(&spec, &broken, Some(20)).unwrap(),
        Outcome::Interrupted { step: 20 }
    );
    let saved = broken.checkpoints().unwrap();
    assert_eq!(saved.len(), 2);
    let before = std::fs::read(broken.evals()).unwrap();
    std::fs::write(broken.checkpoint_pointer(), b"{\"st").unwrap();
    let err = run(&spec, &broken, None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("checkpoint.json"), "{msg}");
    assert_eq!(std::fs::read(broken.evals()).unwrap(), before);
    // The advice it prints rebuilds the pointer from the directories that load (before, it
    // said to move the pointer away, and the run then started over: records deleted, intact
    // checkpoints removed). Here the newest directory is corrupt too, so the one before it is
    // the checkpoint to resume from; then every record comes out as in a straight run.
    assert!(
        msg.contains(&format!("elab repair {}", broken.path().display())),
        "{msg}"
    );
    torn(&broken, saved[0]);
    let repaired = repair_checkpoints(&spec, &broken).unwrap();
    assert_eq!((repaired.step, repaired.previous), (saved[1], None));
    assert_eq!(repaired.unreadable.len(), 1, "{repaired:?}");
    assert_eq!(repaired.unreadable[0].0, saved[0]);
    assert_eq!(std::fs::read(broken.evals()).unwrap(), before);
    assert!(matches!(
        run(&spec, &broken, None).unwrap(),
        Outcome::Finished(_)
    ));
    assert_eq!(
        lines(&broken),
        expected,
        "records differ from a straight run"
    );
}
