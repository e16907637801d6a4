//! haproxy.cfg's grammar: sections of lines of words, and HAProxy's time format.

use std::time::Duration;

use crate::ParseError;
use crate::source::Loc;

/// A line: words with the position of the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: Loc,
    pub words: Vec<String>,
}

impl Line {
    pub(super) fn kw(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    pub(super) fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i + 1).map(String::as_str)
    }
}

/// A section: its header line and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub head: Line,
    pub lines: Vec<Line>,
}

impl Section {
    pub(super) fn kind(&self) -> &str {
        self.head.kw()
    }

    pub(super) fn name(&self) -> &str {
        self.head.arg(0).unwrap_or("")
    }

    pub(super) fn label(&self) -> String {
        format!("{} {}", self.kind(), self.name())
            .trim_end()
            .to_owned()
    }
}

pub(super) const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "crt-store",
    "traces",
];

/// Parse haproxy.cfg text (file index `file`).
pub fn parse(text: &str, file: usize) -> Result<Vec<Section>, ParseError> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line_no = n + 1;
        let Some((words, col)) = split(raw).map_err(|(col, m)| {
            ParseError::at(
                Loc {
                    file,
                    line: line_no,
                    col,
                },
                m,
            )
        })?
        else {
            continue;
        };
        let line = Line {
            at: Loc {
                file,
                line: line_no,
                col,
            },
            words,
        };
        if SECTIONS.contains(&line.kw()) {
            out.push(Section {
                head: line,
                lines: Vec::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.lines.push(line);
        } else {
            return Err(ParseError::at(
                line.at,
                format!(
                    "{:?} outside a section (global, defaults, frontend, backend, listen, ...)",
                    line.kw()
                ),
            ));
        }
    }
    Ok(out)
}

/// Words of a line and the column of the first; `None` for blank/comment lines.
#[expect(
    clippy::type_complexity,
    reason = "(words, column) or (column, message)"
)]
pub(super) fn split(raw: &str) -> Result<Option<(Vec<String>, usize)>, (usize, String)> {
    let c: Vec<char> = raw.chars().collect();
    let mut words = Vec::new();
    let mut first_col = 0;
    let mut i = 0;
    while i < c.len() {
        if c[i] == ' ' || c[i] == '\t' {
            i += 1;
            continue;
        }
        if c[i] == '#' {
            break;
        }
        if words.is_empty() {
            first_col = i + 1;
        }
        let mut w = String::new();
        while i < c.len() && c[i] != ' ' && c[i] != '\t' {
            match c[i] {
                '#' => break,
                '\\' => {
                    i += 1;
                    if let Some(&e) = c.get(i) {
                        w.push(e);
                        i += 1;
                    }
                }
                '"' | '\'' => i = quoted(&c, i, &mut w)?,
                ch => {
                    w.push(ch);
                    i += 1;
                }
            }
        }
        words.push(w);
        if c.get(i) == Some(&'#') {
            break;
        }
    }
    Ok((!words.is_empty()).then_some((words, first_col)))
}

/// The quoted part of a word that opens at `c[open]` (`"` or `'`): its text is added to
/// `w` and the index after the closing quote returned. Inside `"..."` a backslash
/// escapes the next character; inside `'...'` nothing is special.
pub(super) fn quoted(c: &[char], open: usize, w: &mut String) -> Result<usize, (usize, String)> {
    let quote = c[open];
    let mut i = open + 1;
    loop {
        match c.get(i) {
            None if quote == '"' => return Err((open + 1, "unterminated double quote".into())),
            None => return Err((open + 1, "unterminated single quote".into())),
            Some(&ch) if ch == quote => return Ok(i + 1),
            Some('\\') if quote == '"' => {
                if let Some(&e) = c.get(i + 1) {
                    w.push(e);
                }
                i += 2;
            }
            Some(&ch) => {
                w.push(ch);
                i += 1;
            }
        }
    }
}

/// HAProxy's time format: a number with an optional unit (`us`, `ms`, `s`, `m`, `h`,
/// `d`); no unit means milliseconds.
pub fn time(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            split("  server a 10.0.0.1:80 check # x").unwrap(),
            Some((
                vec![
                    "server".into(),
                    "a".into(),
                    "10.0.0.1:80".into(),
                    "check".into()
                ],
                3
            ))
        );
        assert_eq!(
            split(r#"acl x "a b\"c" 'd\e' f\ g"#).unwrap().unwrap().0,
            ["acl", "x", "a b\"c", "d\\e", "f g"]
        );
        assert_eq!(split("   # only").unwrap(), None);
        assert_eq!(split("bind \"x").unwrap_err().0, 6);
    }
}
