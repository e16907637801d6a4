//! What the import says about the input: every directive it did not translate, or
//! translated only approximately, with its file and line and the reason.

use std::fmt;

use crate::source::{Files, Loc};

/// How a directive fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Its effect is not in the output (fo has no equivalent, or the importer cannot
    /// express it). Makes the import exit 2 (`--strict`: a failure).
    NotTranslated,
    /// Translated to the nearest fo setting; the reason says how behaviour differs.
    Approximated,
    /// Needs nothing in fo (keepalived ignores it itself, or it only concerns the
    /// program keepalived/HAProxy is: logging, e-mail, pid files, ...).
    Ignored,
    /// About the machine the import ran on (a referenced file is missing), or about
    /// reading the input.
    Warning,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotTranslated => "not translated",
            Self::Approximated => "approximated",
            Self::Ignored => "ignored",
            Self::Warning => "warning",
        }
    }
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: Loc,
    pub kind: Kind,
    /// The directive as written (keyword and, where it helps, its block's name).
    pub directive: String,
    pub reason: String,
}

/// Every finding, in input order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn push(
        &mut self,
        at: Loc,
        kind: Kind,
        directive: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.findings.push(Finding {
            at,
            kind,
            directive: directive.into(),
            reason: reason.into(),
        });
    }

    pub fn not_translated(
        &mut self,
        at: Loc,
        directive: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.push(at, Kind::NotTranslated, directive, reason);
    }

    pub fn approximated(
        &mut self,
        at: Loc,
        directive: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.push(at, Kind::Approximated, directive, reason);
    }

    pub fn ignored(&mut self, at: Loc, directive: impl Into<String>, reason: impl Into<String>) {
        self.push(at, Kind::Ignored, directive, reason);
    }

    pub fn warning(&mut self, at: Loc, directive: impl Into<String>, reason: impl Into<String>) {
        self.push(at, Kind::Warning, directive, reason);
    }

    /// True when some directive was left out.
    pub fn left_out(&self) -> bool {
        self.findings.iter().any(|f| f.kind == Kind::NotTranslated)
    }

    /// Sorted by file, line, column (stable for findings at one place).
    pub fn sort(&mut self) {
        self.findings.sort_by_key(|f| f.at);
    }

    /// One line per finding, `FILE:LINE: KIND: DIRECTIVE: REASON`, then a summary.
    pub fn render(&self, files: &Files) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{}: {}: {}: {}\n",
                files.at(f.at),
                f.kind.as_str(),
                f.directive,
                f.reason
            ));
        }
        let count = |k: Kind| self.findings.iter().filter(|f| f.kind == k).count();
        out.push_str(&format!(
            "{} not translated, {} approximated, {} ignored, {} warnings\n",
            count(Kind::NotTranslated),
            count(Kind::Approximated),
            count(Kind::Ignored),
            count(Kind::Warning)
        ));
        out
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
