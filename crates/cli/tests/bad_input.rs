//! Malformed sweep and job files: each is rejected with its own message naming the file
//! (and line where there is one), exit code 2, and nothing written.

mod common;

use common::*;

/// An edit to the text of the smoke config.
type Edit = Box<dyn Fn(String) -> String>;

/// (what is wrong, edit to the smoke config, expected fragment of the message)
fn cases() -> Vec<(&'static str, Edit, &'static str)> {
    let replace = |from: &'static str, to: &'static str| -> Edit {
        Box::new(move |t: String| {
            assert!(t.contains(from), "smoke.toml no longer contains {from:?}");
            t.replacen(from, to, 1)
        })
    };
    let append = |extra: &'static str| -> Edit { Box::new(move |t: String| t + extra) };
    vec![
        (
            "unknown top-level table",
            replace("[sweep]", "[sweeps]"),
            "did you mean `sweep`?",
        ),
        (
            "unknown train key",
            replace("lr = 3e-3", "lrr = 3e-3"),
            "did you mean `lr`?",
        ),
        (
            "wrong type",
            replace("steps = 120", "steps = \"120\""),
            "invalid type",
        ),
        (
            "empty axis",
            replace("seed = [0, 1]", "seed = []"),
            "at least one value",
        ),
        (
            "axis is not a list",
            replace("seed = [0, 1]", "seed = 3"),
            "list of values",
        ),
        (
            "impossible shape",
            replace("d_model = 32\nn_head = 4", "d_model = 30\nn_head = 4"),
            "must divide model.d_model",
        ),
        (
            "misspelled axis field",
            append("train.weight_decy = [0.0, 1.0]\n"),
            "did you mean `weight_decay`?",
        ),
        (
            "misspelled axis section",
            append("trian.lr = [0.001]\n"),
            "did you mean `train`?",
        ),
        (
            "unsafe sweep name",
            replace("name = \"smoke\"", "name = \"../evil\""),
            "letters, digits",
        ),
        (
            "zero slots",
            replace("slots = 2", "slots = 0"),
            "at least 1",
        ),
        (
            "unknown backend",
            replace("backend = \"cpu\"", "backend = \"tpu\""),
            "auto, wgpu or cpu",
        ),
        (
            "unknown task kind",
            replace("kind = \"digits\"", "kind = \"digit\""),
            "did you mean `digits`?",
        ),
        (
            "duplicate size name",
            replace("name = \"s\"", "name = \"xs\""),
            "duplicate size name",
        ),
        (
            "shape axis beside sizes",
            append("model.d_model = [16, 32]\n"),
            "set by [[sizes]]",
        ),
        (
            "too many examples",
            replace("train_size = 400", "train_size = 9900"),
            "at most the 10000",
        ),
        (
            "negative lr on an axis",
            append("train.lr = [0.001, -1.0]\n"),
            "positive finite",
        ),
        (
            "size without n_head",
            replace("d_model = 16\nn_head = 2", "d_model = 16"),
            "missing field `n_head`",
        ),
        (
            "toml syntax",
            replace("steps = 120", "steps = = 120"),
            "smoke.toml:",
        ),
        (
            "bad train fraction",
            replace(
                "kind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\ntrain_size = 400\nval_size = 300",
                "kind = \"modular\"\np = 97\ntrain_fraction = 1.5",
            ),
            "(0, 1)",
        ),
        (
            "composite modulus",
            replace(
                "kind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\ntrain_size = 400\nval_size = 300",
                "kind = \"modular\"\np = 91",
            ),
            "prime",
        ),
        (
            "sparse parity reading more bits than it has",
            replace(
                "kind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\ntrain_size = 400\nval_size = 300",
                "kind = \"sparse_parity\"\nn_bits = 8\nk = 9",
            ),
            "`task.k`: must be an integer from 1 to n_bits = 8, got 9",
        ),
        (
            "induction segment longer than half the sequence",
            replace(
                "kind = \"digits\"\nop = \"add\"\ndigits = 2\nreversed = true\ntrain_size = 400\nval_size = 300",
                "kind = \"induction\"\nseq_len = 16\nsegment_len = 9",
            ),
            "`task.segment_len`: must be an integer from 2 to seq_len / 2 = 8, got 9",
        ),
        (
            "shape field in [model] and in [[sizes]]",
            replace(
                "[model]\nactivation = \"gelu\"",
                "[model]\nactivation = \"gelu\"\nd_model = 64",
            ),
            "`model.d_model`: is set both in [model] and in [[sizes]] (size \"xs\", \"s\"); a shape field (n_layer, d_model, n_head, d_mlp) is set in one place",
        ),
        (
            "d_mlp in [model] and in a size",
            Box::new(|t: String| {
                t.replacen(
                    "[model]\nactivation = \"gelu\"",
                    "[model]\nactivation = \"gelu\"\nd_mlp = 64",
                    1,
                )
                .replacen(
                    "d_model = 32\nn_head = 4",
                    "d_model = 32\nn_head = 4\nd_mlp = 96",
                    1,
                )
            }),
            "`model.d_mlp`: is set both in [model] and in [[sizes]] (size \"s\")",
        ),
        (
            "snapshots neither none, log nor every:K",
            replace(
                "warmup_steps = 10\n",
                "warmup_steps = 10\nsnapshots = \"every:0\"\n",
            ),
            "snapshots must be \"none\", \"log\" or \"every:K\" with K a whole number >= 1, got \"every:0\"",
        ),
        (
            "negative snapshot budget",
            replace(
                "backend = \"cpu\"\n",
                "backend = \"cpu\"\nsnapshot_budget_gb = -1\n",
            ),
            "`sweep.snapshot_budget_gb`: must be a finite number of GB >= 0, got -1",
        ),
        (
            "unknown network",
            replace("[model]\n", "[model]\narch = \"cnn\"\n"),
            "unknown variant `cnn`, expected `gpt` or `mlp`",
        ),
        (
            "attention heads on an MLP",
            replace("[model]\n", "[model]\narch = \"mlp\"\n"),
            "`model.n_head`: must be 1 with model.arch = \"mlp\" (an MLP has no attention heads), got 2 (in the job for size \"xs\"",
        ),
    ]
}

#[test]
fn malformed_sweep_configs_exit_2_with_their_message_and_write_nothing() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for (what, edit, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let config = smoke_config(tmp.path(), "smoke.toml", edit);
        let sweeps = tmp.path().join("sweeps");
        for cmd in [sweep_cmd(&config, &sweeps), {
            let mut c = elab();
            c.arg("plan").arg(&config);
            c
        }] {
            let mut cmd = cmd;
            let out = run(&mut cmd);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
            assert!(
                stderr.contains(expected),
                "{what}: expected {expected:?} in:\n{stderr}"
            );
            assert!(
                stderr.contains("smoke.toml"),
                "{what}: the file is not named:\n{stderr}"
            );
        }
        assert!(
            !sweeps.exists(),
            "{what}: a bad config wrote {}",
            sweeps.display()
        );
    }
}

#[test]
fn snapshots_over_the_budget_are_shown_by_plan_and_refused_by_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(
        tmp.path(),
        "smoke.toml",
        Box::new(|t: String| {
            assert!(t.contains("warmup_steps = 10\n") && t.contains("backend = \"cpu\"\n"));
            t.replacen(
                "warmup_steps = 10\n",
                "warmup_steps = 10\nsnapshots = \"log\"\n",
                1,
            )
            .replacen(
                "backend = \"cpu\"\n",
                "backend = \"cpu\"\nsnapshot_budget_gb = 0.0001\n",
                1,
            )
        }),
    );
    let mut plan = elab();
    plan.arg("plan").arg(&config);
    let out = run(&mut plan);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("snapshots"), "{stdout}");
    assert!(stdout.contains("MB in all"), "{stdout}");
    assert!(
        stdout.contains("`elab sweep` will refuse this plan"),
        "{stdout}"
    );

    let sweeps = tmp.path().join("sweeps");
    let out = run(&mut sweep_cmd(&config, &sweeps));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("smoke.toml"), "{stderr}");
    assert!(stderr.contains("`train.snapshots`"), "{stderr}");
    assert!(stderr.contains("snapshot_budget_gb = 0.0001"), "{stderr}");
    assert!(
        !sweeps.exists(),
        "a refused sweep wrote {}",
        sweeps.display()
    );
}

#[test]
fn an_impossible_size_points_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replacen("d_model = 32\nn_head = 4", "d_model = 30\nn_head = 4", 1)
    });
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text.lines().position(|l| l == "name = \"s\"").unwrap();
    let out = run(elab().arg("plan").arg(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The [[sizes]] header is the line before `name = "s"`.
    assert!(stderr.contains(&format!("smoke.toml:{line}:")), "{stderr}");
}

#[test]
fn errors_point_at_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = smoke_config(tmp.path(), "smoke.toml", |t| {
        t.replacen("lr = 3e-3", "lrr = 3e-3", 1)
    });
    let line = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("lrr"))
        .unwrap()
        + 1;
    let out = run(elab().arg("plan").arg(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("smoke.toml:{line}:")), "{stderr}");
}

#[test]
fn bad_job_files_exit_2_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    for (job, expected) in [
        (
            "[task]\nkind = \"modular\"\np = 97\n[model]\nd_model = 64\nn_head = 5\n",
            "must divide",
        ),
        (
            "[task]\nkind = \"modular\"\n[train]\nsteps = 0\n",
            "train.steps",
        ),
        (
            "[task]\nkind = \"modular\"\n[modle]\nd_model = 64\n",
            "did you mean `model`?",
        ),
        (
            "[task]\nkind = \"modular\"\n[eval]\nevery = 0\n",
            "eval.every",
        ),
    ] {
        let path = tmp.path().join("job.toml");
        std::fs::write(&path, job).unwrap();
        let out_dir = tmp.path().join("run");
        let out = run(elab()
            .arg("train")
            .arg(&path)
            .arg("--out")
            .arg(&out_dir)
            .arg("--backend")
            .arg("cpu"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains("job.toml"),
            "{expected}: {stderr}"
        );
        assert!(!out_dir.exists());
    }
}

#[test]
fn an_export_into_a_folder_of_other_files_exits_2_and_leaves_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweeps/empty");
    std::fs::create_dir_all(&sweep).unwrap();
    std::fs::write(sweep.join("plan.json"), r#"{"sweep":"empty","jobs":[]}"#).unwrap();
    // An export replaces its folder whole: someone's folder is refused, not emptied.
    let mine = tmp.path().join("paper");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("draft.tex"), "x").unwrap();
    let out = run(elab().arg("export").arg(&sweep).arg("--out").arg(&mine));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("paper") && stderr.contains("not an export folder"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "nothing beside it: {left:?}");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 1);
    // A new folder takes the export.
    let fresh = tmp.path().join("results/empty");
    let out = run(elab().arg("export").arg(&sweep).arg("--out").arg(&fresh));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fresh.join("report.html").is_file());
}
