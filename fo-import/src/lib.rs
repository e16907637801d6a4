//! `fo-agent import`: translate a keepalived.conf (and an haproxy.cfg beside it) into a
//! fo config, and say what was not translated.
//!
//! ```
//! use fo_import::{Input, import_text};
//! let out = import_text(
//!     &Input::default(),
//!     "keepalived.conf",
//!     "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 150\n \
//!      virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n",
//!     None,
//! )
//! .unwrap();
//! assert!(out.toml.contains("vrid = 51"));
//! assert!(fo_config::Config::parse(&out.toml).is_ok());
//! ```
//!
//! - [`keepalived`]: keepalived's grammar (lines, blocks, includes, quoting) and the
//!   translation of `global_defs`, `vrrp_script`, `vrrp_instance`, `vrrp_sync_group`,
//!   `track_file` and `virtual_server`;
//! - [`haproxy`]: `frontend` / `backend` / `listen` / `defaults` in `mode tcp`;
//! - [`plan`]: the fo config being built and its TOML text;
//! - [`report`]: every directive not translated (or approximated), with file and line.
//!
//! Pure apart from reading files through a [`source::Reader`]: the fuzzer drives the
//! keepalived parser with [`source::NoFiles`]. Nothing here checks the machine it runs
//! on except that scripts and hooks the config names exist (a warning when not).

pub mod haproxy;
pub mod keepalived;
pub mod plan;
pub mod report;
pub mod source;

use std::fmt;
use std::path::Path;

pub use report::{Finding, Kind, Report};
pub use source::{Files, Loc};

/// A file that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ParseError {
    pub at: Loc,
    pub message: String,
}

impl ParseError {
    pub fn at(at: Loc, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }

    /// `FILE:LINE:COL: message`.
    pub fn render(&self, files: &Files) -> String {
        format!("{}: {}", files.at_col(self.at), self.message)
    }
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file does not parse (`rendered` is `FILE:LINE:COL: message`).
    #[error("{rendered}")]
    Parse { error: ParseError, rendered: String },
    /// Nothing to import, or no interface to put in `[node]`.
    #[error("{0}")]
    Input(String),
    /// The translation does not validate (a bug of the importer).
    #[error("{0}")]
    Invalid(String),
}

/// Options of an import.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// `--interface`: the keepalived interface whose instances are imported; it
    /// becomes `[node] interface`. Default: the first instance's.
    pub interface: Option<String>,
    /// Warn about scripts and hooks missing on this machine (the CLI does; tests and
    /// the fuzzer do not).
    pub check_files: bool,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Output {
    /// The fo config.
    pub toml: String,
    pub report: Report,
    pub files: Files,
}

impl Output {
    /// The report as printed on stderr.
    pub fn report_text(&self) -> String {
        self.report.render(&self.files)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.toml)
    }
}

/// Import files from disk: `keepalived` (following its includes) and, if given,
/// `haproxy`.
pub fn import(
    input: &Input,
    keepalived: &Path,
    haproxy: Option<&Path>,
) -> Result<Output, ImportError> {
    let read = |p: &Path| {
        source::Reader::read(&source::Disk, p).map_err(|source| ImportError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let ka = read(keepalived)?;
    let hp = match haproxy {
        Some(p) => Some((p, read(p)?)),
        None => None,
    };
    run(
        &source::Disk,
        input,
        keepalived,
        &ka,
        hp.as_ref().map(|(p, t)| (*p, t.as_str())),
    )
}

/// Import from text (no includes are read).
pub fn import_text(
    input: &Input,
    keepalived_name: &str,
    keepalived: &str,
    haproxy: Option<(&str, &str)>,
) -> Result<Output, ImportError> {
    run(
        &source::NoFiles,
        input,
        Path::new(keepalived_name),
        keepalived,
        haproxy.map(|(n, t)| (Path::new(n), t)),
    )
}

fn run(
    reader: &dyn source::Reader,
    input: &Input,
    ka_path: &Path,
    ka_text: &str,
    haproxy: Option<(&Path, &str)>,
) -> Result<Output, ImportError> {
    let mut files = Files::default();
    let mut report = Report::default();
    let parse_err = |error: ParseError, files: &Files| ImportError::Parse {
        rendered: error.render(files),
        error,
    };
    let mut notes = Vec::new();
    let tree = keepalived::tree::read(reader, ka_path, ka_text, &mut files, &mut notes)
        .map_err(|e| parse_err(e, &files))?;
    for n in notes {
        report.warning(n.at, "include", n.message);
    }
    let mut plan =
        keepalived::translate(&tree, input, &files, &mut report).map_err(|e| match e {
            keepalived::Error::Parse(p) => parse_err(p, &files),
            keepalived::Error::Input(m) => ImportError::Input(m),
        })?;
    if let Some((path, text)) = haproxy {
        let id = files.add(path.display().to_string());
        let cfg = haproxy::parse(text, id).map_err(|e| parse_err(e, &files))?;
        haproxy::translate(&cfg, &mut plan, &files, &mut report);
    }
    report.sort();
    let header = format!(
        "Translated by `fo-agent import` from {}{}.\nReview the report it printed (file:line: what was not translated and why) before use.",
        ka_path.display(),
        haproxy.map_or(String::new(), |(p, _)| format!(" and {}", p.display()))
    );
    let toml = plan.to_toml(&header);
    // The translators build only what fo accepts; if one slipped, say so rather than
    // print a config `fo-agent check` refuses.
    if let Err(errors) = fo_config::Config::parse(&toml) {
        return Err(ImportError::Invalid(format!(
            "the translation is not a valid fo config (an importer bug; please report it with the input):\n{errors}\n--- translation:\n{toml}"
        )));
    }
    Ok(Output {
        toml,
        report,
        files,
    })
}
