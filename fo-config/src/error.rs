//! Problems found in a configuration, each with the 1-based line and column it points at.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use serde::Serialize;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConfigError {
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub col: usize,
    /// What is wrong, on one line.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// Every problem found in a configuration, sorted by position.
///
/// `Display` writes one problem per line as `LINE:COL: message`; the caller
/// prefixes the file name (see [`LoadError`], which does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort();
        errors.dedup();
        Self { errors }
    }

    /// The problems, sorted by line and column.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// The problems, sorted by line and column.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }

    /// How many problems were found (never zero).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one problem.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Iterate over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Failure of [`crate::Config::load`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (or is not UTF-8).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. `Display` prints one
    /// `PATH:LINE:COL: message` line per problem.
    #[error("{}", prefixed(path, errors))]
    Invalid {
        path: PathBuf,
        #[source]
        errors: ConfigErrors,
    },
}

fn prefixed(path: &std::path::Path, errors: &ConfigErrors) -> String {
    let path = path.display();
    errors
        .iter()
        .map(|e| format!("{path}:{e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Turns byte offsets into 1-based line and column (column counted in characters).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of every line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let col = self.text[self.starts[line]..offset].chars().count();
        (line + 1, col + 1)
    }

    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        message: impl fmt::Display,
    ) -> ConfigError {
        let (line, col) = span.map_or((1, 1), |s| self.position(s.start));
        // One problem, one line: keep multi-line messages from breaking the format.
        let message = message.to_string().trim().replace('\n', "; ");
        ConfigError { line, col, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\nçd = 1\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(2), (1, 3));
        assert_eq!(idx.position(3), (2, 1));
        // 'ç' is two bytes: "d" is the 2nd character of line 2.
        assert_eq!(idx.position(5), (2, 2));
        // Inside a multi-byte character: snapped to its start.
        assert_eq!(idx.position(4), (2, 1));
        assert_eq!(idx.position(11), (3, 1));
        assert_eq!(idx.position(12), (4, 1));
        assert_eq!(idx.position(13), (4, 2));
        assert_eq!(idx.position(999), (4, 2));
    }

    #[test]
    fn display_is_one_line_per_problem() {
        let e = ConfigErrors::new(vec![
            ConfigError {
                line: 3,
                col: 1,
                message: "b".into(),
            },
            ConfigError {
                line: 1,
                col: 7,
                message: "a".into(),
            },
        ]);
        assert_eq!(e.to_string(), "1:7: a\n3:1: b");
        let l = LoadError::Invalid {
            path: "/etc/fo.toml".into(),
            errors: e,
        };
        assert_eq!(l.to_string(), "/etc/fo.toml:1:7: a\n/etc/fo.toml:3:1: b");
    }
}
