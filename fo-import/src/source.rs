//! Where text comes from: files read from disk (following `include`), or text held in
//! memory (tests, the fuzzer), and positions in them.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in an input file: its index in [`Files`], 1-based line and column
/// (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: usize,
    pub line: usize,
    pub col: usize,
}

/// The files read so far, by index (a [`Loc`]'s `file`).
#[derive(Debug, Clone, Default)]
pub struct Files {
    names: Vec<String>,
}

impl Files {
    /// Register a file by the name it is shown with; returns its index.
    pub fn add(&mut self, name: impl Into<String>) -> usize {
        self.names.push(name.into());
        self.names.len() - 1
    }

    pub fn name(&self, file: usize) -> &str {
        self.names.get(file).map_or("?", String::as_str)
    }

    /// `FILE:LINE`.
    pub fn at(&self, loc: Loc) -> String {
        format!("{}:{}", self.name(loc.file), loc.line)
    }

    /// `FILE:LINE:COL`.
    pub fn at_col(&self, loc: Loc) -> String {
        format!("{}:{}:{}", self.name(loc.file), loc.line, loc.col)
    }
}

/// How the parser reads an `include`d file and expands its pattern.
pub trait Reader {
    /// The text of `path`.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// The files a glob(3) pattern names, sorted; `Ok(vec![])` when none match.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    /// Whether `path` has an execute bit (keepalived skips such include files).
    fn executable(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl Reader for Disk {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            )
        })
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::new();
        for p in expand_braces(pattern) {
            let paths = glob::glob(&p).map_err(|e| format!("bad pattern {p:?}: {e}"))?;
            for entry in paths {
                let path = entry.map_err(|e| e.to_string())?;
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
        Ok(out)
    }

    fn executable(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
}

/// Nothing but the main text: every `include` finds no file (the fuzzer, unit tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl Reader for NoFiles {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no files in this context", path.display()),
        ))
    }

    fn glob(&self, _pattern: &str) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }

    fn executable(&self, _path: &Path) -> bool {
        false
    }
}

/// glob(3)'s `GLOB_BRACE`: `a{b,c}d` is `abd` and `acd`, nested braces included;
/// a brace without a matching close or comma is literal. At most 1024 results.
pub fn expand_braces(pattern: &str) -> Vec<String> {
    const LIMIT: usize = 1024;
    let mut out = Vec::new();
    let mut work = vec![pattern.to_owned()];
    while let Some(p) = work.pop() {
        if out.len() + work.len() >= LIMIT {
            out.push(p);
            continue;
        }
        match first_group(&p) {
            None => out.push(p),
            Some((open, close, commas)) => {
                let mut start = open + 1;
                let mut parts = Vec::new();
                for c in commas.iter().copied().chain(std::iter::once(close)) {
                    parts.push(&p[start..c]);
                    start = c + 1;
                }
                for part in parts.into_iter().rev() {
                    work.push(format!("{}{}{}", &p[..open], part, &p[close + 1..]));
                }
            }
        }
    }
    out
}

/// The first `{...}` with a top-level comma: (open, close, comma offsets).
fn first_group(p: &str) -> Option<(usize, usize, Vec<usize>)> {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            let mut depth = 0usize;
            let mut commas = Vec::new();
            for (j, &c) in b.iter().enumerate().skip(i) {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            if !commas.is_empty() {
                                return Some((i, j, commas));
                            }
                            break;
                        }
                    }
                    b',' if depth == 1 => commas.push(j),
                    _ => {}
                }
            }
        }
        i += 1;
    }
    None
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_like_glob_brace() {
        assert_eq!(expand_braces("a{b,c}d"), ["abd", "acd"]);
        assert_eq!(
            expand_braces("{x,y{1,2}}.conf"),
            ["x.conf", "y1.conf", "y2.conf"]
        );
        assert_eq!(expand_braces("plain{}.conf"), ["plain{}.conf"]);
        assert_eq!(expand_braces("open{a,b"), ["open{a,b"]);
        assert_eq!(expand_braces("/etc/k/*.conf"), ["/etc/k/*.conf"]);
        assert!(expand_braces(&"{a,b}".repeat(20)).len() <= 1024 + 1);
    }
}
