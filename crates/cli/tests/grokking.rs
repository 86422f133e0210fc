//! A small modular-addition model really groks (configs/grok-small.toml): training accuracy
//! reaches 0.99 first, validation stays low for a long stretch, then reaches 0.95 within the
//! budget; with weight decay 0 it does not. Three seeds each, through the real sweep engine.

mod common;

use std::collections::BTreeMap;

use common::*;
use elab_job::{JobSpec, Split};

fn first_step(curve: &BTreeMap<u64, f64>, threshold: f64) -> Option<u64> {
    curve
        .iter()
        .find(|&(_, &v)| v >= threshold)
        .map(|(&s, _)| s)
}

#[test]
fn modular_addition_groks_with_weight_decay_and_not_without() {
    let tmp = tempfile::tempdir().unwrap();
    let sweeps = tmp.path().join("sweeps");
    let out = run(sweep_cmd(&repo_file("configs/grok-small.toml"), &sweeps)
        .arg("--backend")
        .arg("cpu"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let jobs = sweeps.join("grok-small/jobs");
    let (mut grokked, mut controls) = (0, 0);
    // The final total weight norm (a progress measure recorded on the train rows), by weight decay.
    let (mut norms_wd, mut norms_free) = (Vec::new(), Vec::new());
    for (id, (_, rows)) in records(&sweeps.join("grok-small")) {
        let spec = JobSpec::from_file(&jobs.join(&id).join("spec.toml")).unwrap();
        let curve = |split| -> BTreeMap<u64, f64> {
            rows.iter()
                .filter(|r| r.split == split)
                .map(|r| (r.step, r.metrics["token_accuracy"]))
                .collect()
        };
        let (train, val) = (curve(Split::Train), curve(Split::Val));
        let t_train99 = first_step(&train, 0.99).expect("training accuracy reaches 0.99");
        let final_norm = rows
            .iter()
            .rfind(|r| r.split == Split::Train)
            .map(|r| r.metrics["weight_norm"])
            .unwrap();
        let t_val95 = first_step(&val, 0.95);
        let report = format!(
            "seed {} wd {}: t_train99 {t_train99}, t_val95 {t_val95:?}",
            spec.seed, spec.train.weight_decay
        );
        eprintln!("{report}");
        if spec.train.weight_decay > 0.0 {
            let t_val95 = t_val95.unwrap_or_else(|| panic!("did not generalize: {report}"));
            // Memorization first, then a long stretch of low validation accuracy.
            assert!(t_val95 >= 10 * t_train99, "{report}");
            assert!(
                val[&t_train99] < 0.5,
                "validation already high at memorization: {report}"
            );
            let stretch = val
                .range(t_train99..t_train99 * 8)
                .map(|(_, &v)| v)
                .fold(0.0, f64::max);
            assert!(stretch < 0.6, "validation rose early ({stretch}): {report}");
            grokked += 1;
            norms_wd.push(final_norm);
        } else {
            assert_eq!(t_val95, None, "generalized without weight decay: {report}");
            controls += 1;
            norms_free.push(final_norm);
        }
    }
    assert_eq!((grokked, controls), (3, 3));
    // Weight decay holds the weight norm down (about 20 here); without it the norm grows
    // several-fold while the model memorizes (about 125).
    let most_wd = norms_wd.iter().copied().fold(0.0, f64::max);
    let least_free = norms_free.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        least_free > 3.0 * most_wd,
        "weight norms: with weight decay {norms_wd:?}, without {norms_free:?}"
    );
}
