use std::fmt;
use std::path::{Path, PathBuf};

/// A bad job or sweep file: which file, which field, what is allowed. The CLI turns it into
/// exit code 2, before anything is written.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file.get_or_insert_with(|| file.to_path_buf());
        self
    }

    pub fn at_line(mut self, line: usize) -> Self {
        self.line.get_or_insert(line);
        self
    }

    /// Wraps a TOML/serde error, keeping its line and adding a "did you mean" for unknown keys.
    pub fn from_toml(err: &toml::de::Error, source: &str) -> Self {
        let line = err
            .span()
            .map(|span| source[..span.start.min(source.len())].matches('\n').count() + 1);
        let message = err.message().to_string();
        let field = err
            .span()
            .map(|span| source[span].trim().to_string())
            .filter(|s| !s.is_empty() && s.len() < 60)
            .unwrap_or_default();
        Self {
            file: None,
            line,
            field,
            message: did_you_mean(&message),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if !self.field.is_empty() {
            write!(f, "`{}`: ", self.field)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SpecError {}

/// serde says "unknown field `lrr`, expected one of `lr`, `steps`"; add "did you mean `lr`?".
pub fn did_you_mean(message: &str) -> String {
    let unknown = |m: &str| -> Option<(String, Vec<String>)> {
        let rest = m
            .strip_prefix("unknown field `")
            .or_else(|| m.strip_prefix("unknown variant `"))?;
        let (name, rest) = rest.split_once('`')?;
        let expected: Vec<String> = rest
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        Some((name.to_string(), expected))
    };
    let Some((name, expected)) = unknown(message) else {
        return message.to_string();
    };
    let best = expected
        .iter()
        .map(|e| (strsim::levenshtein(&name, e), e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 3))
        .min();
    match best {
        Some((_, e)) => format!("{message}; did you mean `{e}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_field() {
        let m = did_you_mean("unknown field `lrr`, expected one of `steps`, `lr`, `batch_size`");
        assert!(m.ends_with("did you mean `lr`?"), "{m}");
        let m = did_you_mean("unknown field `zzzzzz`, expected `steps` or `lr`");
        assert!(!m.contains("did you mean"), "{m}");
    }
}
