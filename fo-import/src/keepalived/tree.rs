//! keepalived.conf as a tree of statements: a keyword line, and the `{ ... }` block
//! that follows it (on the same line or the next), with `include`s read in place.
//!
//! The tree does not know keepalived's keywords: which statements may have blocks
//! is the translator's business. Structure errors (a `}` without `{`, a block never
//! closed, a `{` after a statement that already has one) are parse errors with their
//! position, as are blocks nested deeper than [`MAX_DEPTH`] (keepalived's deepest
//! is four) and includes nested deeper than [`MAX_INCLUDE_DEPTH`] (a cycle).

use std::path::{Path, PathBuf};

use super::lex::{self, Item, Text, Word};
use crate::ParseError;
use crate::source::{Files, Loc, Reader};

pub const MAX_DEPTH: usize = 32;
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// One keyword line and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub words: Vec<Word>,
    /// The line as keepalived's script keywords re-read it.
    pub text: Text,
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    pub fn at(&self) -> Loc {
        self.words.first().map_or_else(|| self.text.at(0), |w| w.at)
    }

    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    /// Words after the keyword.
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args().get(i).map(|w| w.text.as_str())
    }

    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// A warning found while reading (an include that matched nothing, a skipped file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadNote {
    pub at: Loc,
    pub message: String,
}

/// Read `main` (shown as `name`) and every file it includes into a tree.
pub fn read(
    reader: &dyn Reader,
    main: &Path,
    text: &str,
    files: &mut Files,
    notes: &mut Vec<ReadNote>,
) -> Result<Vec<Stmt>, ParseError> {
    let id = files.add(main.display().to_string());
    let mut items = Vec::new();
    expand(reader, main, text, id, files, notes, 0, &mut items)?;
    build(items)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one recursive walk with its context"
)]
fn expand(
    reader: &dyn Reader,
    path: &Path,
    text: &str,
    id: usize,
    files: &mut Files,
    notes: &mut Vec<ReadNote>,
    depth: usize,
    out: &mut Vec<Item>,
) -> Result<(), ParseError> {
    for item in lex::items(text, id)? {
        let Item::Include { pattern, at } = item else {
            out.push(item);
            continue;
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ParseError::at(
                at,
                format!(
                    "includes nested deeper than {MAX_INCLUDE_DEPTH} (does a file include itself?)"
                ),
            ));
        }
        let full = resolve(path, &pattern);
        let wild =
            pattern.contains(['*', '?', '[']) || crate::source::expand_braces(&pattern).len() > 1;
        let matched = reader
            .glob(&full.to_string_lossy())
            .map_err(|e| ParseError::at(at, format!("include {pattern}: {e}")))?;
        if matched.is_empty() {
            if wild {
                notes.push(ReadNote {
                    at,
                    message: format!(
                        "include {pattern}: no file matches (keepalived reads none either)"
                    ),
                });
                continue;
            }
            return Err(ParseError::at(
                at,
                format!("include {pattern}: {} does not exist", full.display()),
            ));
        }
        for file in matched {
            if reader.executable(&file) {
                notes.push(ReadNote {
                    at,
                    message: format!(
                        "include {pattern}: {} is executable; keepalived skips it, so does the import",
                        file.display()
                    ),
                });
                continue;
            }
            let text = reader
                .read(&file)
                .map_err(|e| ParseError::at(at, format!("include {}: {e}", file.display())))?;
            let sub = files.add(file.display().to_string());
            expand(reader, &file, &text, sub, files, notes, depth + 1, out)?;
        }
    }
    Ok(())
}

/// keepalived opens included files relative to the directory of the file that
/// includes them.
fn resolve(including: &Path, pattern: &str) -> PathBuf {
    let p = Path::new(pattern);
    if p.is_absolute() {
        return p.to_owned();
    }
    match including.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_owned(),
    }
}

/// Items into statements and blocks (iteratively, so no input can exhaust the stack).
fn build(items: Vec<Item>) -> Result<Vec<Stmt>, ParseError> {
    // Open blocks: the statements collected so far in each, and where it opened.
    let mut stack: Vec<(Vec<Stmt>, Option<Loc>)> = vec![(Vec::new(), None)];
    for item in items {
        match item {
            Item::Text(text) => {
                let words = lex::words(&text);
                if let Some(level) = stack.last_mut() {
                    level.0.push(Stmt {
                        words,
                        text,
                        block: None,
                    });
                }
            }
            Item::Open(at) => {
                let has_owner = stack
                    .last()
                    .and_then(|l| l.0.last())
                    .is_some_and(|s| s.block.is_none());
                if !has_owner {
                    return Err(ParseError::at(at, "'{' without a keyword before it"));
                }
                if stack.len() > MAX_DEPTH {
                    return Err(ParseError::at(
                        at,
                        format!("blocks nested deeper than {MAX_DEPTH}"),
                    ));
                }
                stack.push((Vec::new(), Some(at)));
            }
            Item::Close(at) => {
                if stack.len() == 1 {
                    return Err(ParseError::at(at, "'}' without a matching '{'"));
                }
                let (block, _) = stack.pop().unwrap_or_default();
                if let Some(owner) = stack.last_mut().and_then(|l| l.0.last_mut()) {
                    owner.block = Some(block);
                }
            }
            Item::Include { .. } => {}
        }
    }
    if stack.len() > 1 {
        let opened = stack.last().and_then(|l| l.1);
        return Err(ParseError::at(
            opened.unwrap_or(Loc {
                file: 0,
                line: 1,
                col: 1,
            }),
            "'{' is never closed",
        ));
    }
    Ok(stack.pop().map(|l| l.0).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::NoFiles;

    fn parse(s: &str) -> Result<Vec<Stmt>, ParseError> {
        let mut files = Files::default();
        read(
            &NoFiles,
            Path::new("k.conf"),
            s,
            &mut files,
            &mut Vec::new(),
        )
    }

    #[test]
    fn blocks_on_the_same_line_or_the_next() {
        let t = parse("global_defs\n{\n router_id a\n}\nvrrp_instance X { state MASTER\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n")
            .expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].keyword(), "global_defs");
        assert_eq!(t[0].children()[0].arg(0), Some("a"));
        assert_eq!(t[1].arg(0), Some("X"));
        let inner = t[1].children();
        assert_eq!(inner[0].words.len(), 2);
        assert_eq!(inner[1].children()[0].keyword(), "10.0.0.1");
    }

    #[test]
    fn structure_errors_have_positions() {
        let e = parse("a {\n b\n").unwrap_err();
        assert_eq!(
            (e.at.line, e.at.col, e.message.as_str()),
            (1, 3, "'{' is never closed")
        );
        let e = parse("a\n}\n").unwrap_err();
        assert_eq!((e.at.line, e.at.col), (2, 1));
        let e = parse("{\n}\n").unwrap_err();
        assert_eq!(e.message, "'{' without a keyword before it");
        let e = parse(&"a {\n".repeat(40)).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e:?}");
        let e = parse("include /nonexistent/x.conf\n").unwrap_err();
        assert!(e.message.contains("does not exist"), "{e:?}");
    }
}
