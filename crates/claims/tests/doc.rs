//! docs/reproductions.md against the committed results/: CI fails when a number drifts.

use std::path::{Path, PathBuf};

/// The repository root, from the manifest directory cargo gives the test when it runs it: the
/// compile-time one (`env!`) is where the binary was built, and CI's persistent target dir
/// reuses a binary built in a clone at another path.
fn root() -> PathBuf {
    Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("../..")
}

/// The docs `elab claims` keeps (its default `--doc`s).
const DOCS: [&str; 2] = ["README.md", "docs/reproductions.md"];

#[test]
fn the_docs_agree_with_the_committed_results() {
    for name in DOCS {
        let doc = std::fs::read_to_string(root().join(name)).unwrap();
        assert!(
            !elab_claims::blocks(&doc).is_empty(),
            "{name} has no claims block"
        );
        let new = elab_claims::update(&doc, &root().join("results")).unwrap();
        if new != doc {
            let (old_line, new_line) = doc
                .lines()
                .zip(new.lines())
                .find(|(a, b)| a != b)
                .unwrap_or(("(end)", "(end)"));
            panic!(
                "{name} disagrees with results/: run `elab claims`.\nfirst difference:\n  doc:  {old_line}\n  data: {new_line}"
            );
        }
    }
}

#[test]
fn every_shipped_result_with_a_renderer_has_its_block() {
    let doc = std::fs::read_to_string(root().join("docs/reproductions.md")).unwrap();
    let blocks = elab_claims::blocks(&doc);
    for entry in std::fs::read_dir(root().join("results")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if elab_claims::known(&name) {
            assert!(
                blocks.contains(&name.as_str()),
                "results/{name} has no claims block in docs/reproductions.md"
            );
        }
    }
}

#[test]
fn a_changed_number_in_the_data_changes_the_doc() {
    // The arith block from a copy of results/arith whose exact-match verdict row is altered:
    // the regenerated block must differ, so the check above would fail.
    let tmp = tempdir();
    let src = root().join("results/arith");
    let dst = tmp.join("arith");
    std::fs::create_dir_all(&dst).unwrap();
    for f in [
        "thresholds.csv",
        "acquisition.csv",
        "runs.csv",
        "threshold_steps.csv",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let before = elab_claims::render(&tmp, "arith").unwrap();
    let csv = std::fs::read_to_string(dst.join("runs.csv")).unwrap();
    let (header, rest) = csv.split_once('\n').unwrap();
    let col = header
        .split(',')
        .position(|c| c == "final_val_exact_match")
        .unwrap();
    let mut first: Vec<String> = rest
        .lines()
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    assert_ne!(first[col], "0.123", "the pattern to change was there");
    first[col] = "0.123".into();
    let changed = format!(
        "{header}\n{}\n{}",
        first.join(","),
        rest.lines().skip(1).collect::<Vec<_>>().join("\n")
    );
    std::fs::write(dst.join("runs.csv"), changed).unwrap();
    let after = elab_claims::render(&tmp, "arith").unwrap();
    assert_ne!(before, after);
    assert!(after.contains("0.12"), "{after}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("claims-drift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The column names of each `## <file>.csv` table in an export's SCHEMA.md.
fn documented_columns(schema: &str) -> Vec<(String, Vec<String>)> {
    schema
        .split("\n## ")
        .filter_map(|section| {
            let (title, body) = section.split_once('\n')?;
            let file = title.trim();
            file.ends_with(".csv").then(|| {
                let columns = body
                    .lines()
                    .filter_map(|line| line.strip_prefix("| `")?.split_once('`'))
                    .map(|(name, _)| name.to_string())
                    .collect();
                (file.to_string(), columns)
            })
        })
        .collect()
}

/// A shipped CSV file's header (through gzip when it was shipped as `<file>.gz`).
fn header(dir: &Path, file: &str) -> Option<Vec<String>> {
    let name = [file.to_string(), format!("{file}.gz")]
        .into_iter()
        .find(|name| dir.join(name).exists())?;
    Some(
        elab_claims::table::Table::read(dir, &name)
            .unwrap()
            .headers()
            .to_vec(),
    )
}

#[test]
fn every_shipped_csv_has_the_columns_its_schema_documents() {
    // A reader opens results/<name>/SCHEMA.md beside the CSVs: each file's columns must be the
    // ones it documents, in both directions (`axis_<key>` stands for the swept keys).
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("results")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue; // .gitkeep, export locks
        }
        let schema = std::fs::read_to_string(dir.join("SCHEMA.md"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join("SCHEMA.md").display()));
        let documented = documented_columns(&schema);
        assert!(
            documented.iter().any(|(file, _)| file == "runs.csv"),
            "{}: no runs.csv table",
            dir.display()
        );
        for (file, columns) in documented {
            let Some(header) = header(&dir, &file) else {
                continue;
            };
            let place = format!("{}/{file}", dir.display());
            let axes = columns.iter().any(|c| c == "axis_<key>");
            for name in &header {
                assert!(
                    columns.contains(name) || (axes && name.starts_with("axis_")),
                    "{place}: column `{name}` is not in its SCHEMA.md"
                );
            }
            for name in columns.iter().filter(|c| *c != "axis_<key>") {
                assert!(
                    header.contains(name),
                    "{place}: SCHEMA.md documents `{name}`, the file has no such column"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} shipped CSV files checked");
}
