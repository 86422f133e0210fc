//! The numbers of docs/reproductions.md, recomputed from committed files.
//!
//! The doc holds generated blocks between `<!-- claims: NAME -->` and `<!-- /claims -->`; each
//! NAME is a renderer here that reads results/NAME/ (what `elab export` wrote, committed) and
//! writes the tables and the sentences that carry numbers. Prose outside the blocks says what
//! the numbers mean and quotes none. `elab claims` rewrites the blocks; the test in
//! tests/doc.rs fails when the committed doc and the committed data disagree, as the schema
//! test does for docs/csv-schema.md.

mod arith;
mod fmt;
mod grokking;
mod induction;
mod nanda;
mod scale;
mod schaeffer;
mod sparse_parity;
pub mod table;

use anyhow::{Context, Result, bail};
use std::path::Path;

const OPEN: &str = "<!-- claims: ";
const CLOSE: &str = "<!-- /claims -->";

/// The renderers, by block name; each reads results/<folder>/.
/// Writes one block from its result folder.
type Renderer = fn(&Path) -> Result<String>;

const RENDERERS: &[(&str, Renderer)] = &[
    ("arith", arith::render),
    ("arith-headline", arith::headline),
    ("schaeffer", schaeffer::render),
    ("power", grokking::power),
    ("omnigrok", grokking::omnigrok),
    ("nanda", nanda::render),
    ("nanda-progress", nanda::progress),
    ("induction", induction::render),
    ("induction-long", induction::render),
    ("sparse-parity", sparse_parity::render),
];

/// The result folder a block reads: its name up to a `-` suffix that names a variant.
fn folder(name: &str) -> &str {
    ["-headline", "-progress"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Whether a block named `name` has a renderer.
pub fn known(name: &str) -> bool {
    RENDERERS.iter().any(|(n, _)| *n == name)
}

/// One block's text, from `results/<name>/`.
pub fn render(results: &Path, name: &str) -> Result<String> {
    match RENDERERS.iter().find(|(n, _)| *n == name) {
        // A block reads the folder its name starts with: `arith-headline` reads results/arith,
        // `nanda-progress` results/nanda.
        Some((_, f)) => f(&results.join(folder(name))),
        None => bail!(
            "no claims named `{name}`; known: {}",
            RENDERERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `doc` with every block rewritten from `results`. Errors name the block and, for data, the
/// file and column.
pub fn update(doc: &str, results: &Path) -> Result<String> {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(start) = rest.find(OPEN) {
        let after_open = &rest[start + OPEN.len()..];
        let Some(name_end) = after_open.find(" -->") else {
            bail!("a `{OPEN}` without its closing ` -->`");
        };
        let name = after_open[..name_end].trim();
        let body = &after_open[name_end + " -->".len()..];
        let Some(close) = body.find(CLOSE) else {
            bail!("claims block `{name}` has no `{CLOSE}`");
        };
        if body[..close].contains(OPEN) {
            bail!("claims block `{name}` is not closed before the next one opens");
        }
        let text = render(results, name).map_err(|e| e.context(format!("claims `{name}`")))?;
        out.push_str(&rest[..start]);
        out.push_str(&format!("{OPEN}{name} -->\n{}\n{CLOSE}", text.trim_end()));
        rest = &body[close + CLOSE.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Brings the blocks of the doc at `doc` up to date with `results` (written atomically), or with
/// `check` only compares. True when they already agreed.
pub fn sync(doc: &Path, results: &Path, check: bool) -> Result<bool> {
    let old =
        std::fs::read_to_string(doc).with_context(|| format!("{}: cannot read", doc.display()))?;
    let new = update(&old, results).with_context(|| doc.display().to_string())?;
    if old == new {
        return Ok(true);
    }
    if !check {
        let tmp = doc.with_extension("md.tmp");
        std::fs::write(&tmp, &new).with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, doc).with_context(|| format!("{}: cannot replace", doc.display()))?;
        eprintln!(
            "{}: rewrote {} blocks from {}",
            doc.display(),
            blocks(&new).len(),
            results.display()
        );
        return Ok(true);
    }
    Ok(false)
}

/// The block names `doc` holds, in order.
pub fn blocks(doc: &str) -> Vec<&str> {
    doc.match_indices(OPEN)
        .filter_map(|(i, _)| {
            let s = &doc[i + OPEN.len()..];
            s.find(" -->").map(|e| s[..e].trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_with_an_unknown_name_is_an_error_naming_it() {
        let doc = "a\n<!-- claims: nope -->\nold\n<!-- /claims -->\nb\n";
        let err = update(doc, Path::new("results")).unwrap_err();
        assert!(
            format!("{err:#}").contains("no claims named `nope`"),
            "{err:#}"
        );
    }

    #[test]
    fn an_unclosed_block_is_an_error() {
        let doc = "<!-- claims: arith -->\nold\n";
        let err = update(doc, Path::new("results")).unwrap_err();
        assert!(
            err.to_string().contains("has no `<!-- /claims -->`"),
            "{err}"
        );
    }

    #[test]
    fn text_outside_blocks_is_kept_and_blocks_are_listed() {
        let doc = "intro\n\nno blocks here\n";
        assert_eq!(update(doc, Path::new("results")).unwrap(), doc);
        let two = "<!-- claims: arith --><!-- /claims --> x <!-- claims: power -->";
        assert_eq!(blocks(two), ["arith", "power"]);
    }

    #[test]
    fn missing_data_names_the_file() {
        let dir = std::env::temp_dir().join(format!("claims-missing-{}", std::process::id()));
        let doc = "<!-- claims: arith -->\n<!-- /claims -->\n";
        let err = update(doc, &dir).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("claims `arith`") && msg.contains("arith/"),
            "{msg}"
        );
    }
}
