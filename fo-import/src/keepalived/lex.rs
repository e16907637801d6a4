//! keepalived's lines, as its parser (`lib/parser.c`, 2.2.x) cuts them — written from
//! its documented behaviour, not its code:
//!
//! - leading and trailing blanks are dropped; `!` or `#` outside double quotes starts
//!   a comment (`\#` and `\!` outside quotes are literal);
//! - an unterminated double quote is an error;
//! - `{` and `}` outside double quotes are always lines of their own, wherever they
//!   stand (`vrrp_instance VI_1 {` is the line `vrrp_instance VI_1`, then `{`);
//! - `include PATTERN` (and `includer|m|w|b|a`) names more files (glob(3) patterns,
//!   braces included);
//! - words are split on blanks; a word that starts with `"` runs to the next `"` (the
//!   quotes are dropped; no escapes); a `"` inside a word ends it;
//! - scripts (`script`, `notify*`, `misc_path`) are cut again with both quote kinds and
//!   backslash escapes, see [`words_escaped`].
//!
//! Parameter definitions (`$NAME=...`), `~SEQ`/`~LST` blocks and `@id` conditional lines
//! are refused with their position: the importer does not expand them.

use super::super::ParseError;
use crate::source::Loc;

/// One of keepalived's logical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Text (never empty, no braces outside quotes), with the column of each character.
    Text(Text),
    Open(Loc),
    Close(Loc),
    /// `include PATTERN` (any variant).
    Include {
        pattern: String,
        at: Loc,
    },
}

/// A logical line's text and where each of its characters came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub chars: Vec<char>,
    /// 1-based column of each char in its physical line.
    pub cols: Vec<usize>,
    pub file: usize,
    pub line: usize,
}

impl Text {
    pub fn at(&self, i: usize) -> Loc {
        Loc {
            file: self.file,
            line: self.line,
            col: self
                .cols
                .get(i)
                .copied()
                .unwrap_or_else(|| self.cols.last().map_or(1, |c| c + 1)),
        }
    }

    pub fn string(&self) -> String {
        self.chars.iter().collect()
    }
}

/// A word of a line and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub at: Loc,
}

/// Cut the text of one file into logical lines.
pub fn items(text: &str, file: usize) -> Result<Vec<Item>, ParseError> {
    let mut out = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut chars: Vec<char> = Vec::new();
        let mut cols: Vec<usize> = Vec::new();
        for (i, c) in raw.chars().enumerate() {
            if c == '\0' {
                return Err(ParseError::at(
                    Loc {
                        file,
                        line,
                        col: i + 1,
                    },
                    "a NUL character (keepalived ignores such lines; remove it)",
                ));
            }
            chars.push(c);
            cols.push(i + 1);
        }
        let mut t = Text {
            chars,
            cols,
            file,
            line,
        };
        decomment(&mut t)?;
        if t.chars.is_empty() {
            continue;
        }
        if let Some(word) = refused_start(&t) {
            return Err(ParseError::at(t.at(0), word));
        }
        if let Some(pattern) = include_pattern(&t) {
            out.push(Item::Include {
                pattern,
                at: t.at(0),
            });
            continue;
        }
        split_braces(t, &mut out);
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Where the next word starts: the first character at or after `i` that is not blank.
fn next_word(c: &[char], i: usize) -> Option<usize> {
    (i..c.len()).find(|&j| !is_blank(c[j]))
}

fn trim(t: &mut Text) {
    let start = t.chars.iter().take_while(|c| is_blank(**c)).count();
    t.chars.drain(..start);
    t.cols.drain(..start);
    while t.chars.last().is_some_and(|c| is_blank(*c)) {
        t.chars.pop();
        t.cols.pop();
    }
}

/// Drop comments and `\` before `#`/`!`, and surrounding blanks.
fn decomment(t: &mut Text) -> Result<(), ParseError> {
    trim(t);
    let mut quote: Option<usize> = None;
    let mut i = 0;
    while i < t.chars.len() {
        match t.chars[i] {
            '"' => {
                quote = if quote.is_some() { None } else { Some(i) };
                i += 1;
            }
            '\\' if i + 1 < t.chars.len() => {
                if quote.is_none() && matches!(t.chars[i + 1], '#' | '!') {
                    t.chars.remove(i);
                    t.cols.remove(i);
                    i += 1;
                } else {
                    i += 2;
                }
            }
            '!' | '#' if quote.is_none() => {
                t.chars.truncate(i);
                t.cols.truncate(i);
                break;
            }
            _ => i += 1,
        }
    }
    if let Some(q) = quote {
        return Err(ParseError::at(t.at(q), "unterminated quote"));
    }
    trim(t);
    Ok(())
}

/// Lines keepalived expands before parsing, which the importer does not.
fn refused_start(t: &Text) -> Option<&'static str> {
    let s: String = t.chars.iter().take(4).collect();
    if s.starts_with('$') {
        Some(
            "keepalived parameter definitions and substitutions ($NAME) are not supported by the importer: expand them by hand first",
        )
    } else if s.starts_with('@') {
        Some(
            "conditional lines (@ID / @^ID) are not supported by the importer: keep the lines for this node and remove the marks",
        )
    } else if s.starts_with("~SEQ") || s.starts_with("~LST") {
        Some("~SEQ and ~LST blocks are not supported by the importer: expand them by hand first")
    } else {
        None
    }
}

/// `include PATTERN`, `includer PATTERN`, ... : the pattern.
fn include_pattern(t: &Text) -> Option<String> {
    let s = t.string();
    let rest = s.strip_prefix("include")?;
    let mut chars = rest.chars();
    let first = chars.next()?;
    let rest = if is_blank(first) {
        rest
    } else if "rmwba".contains(first) && chars.next().is_some_and(is_blank) {
        &rest[1..]
    } else {
        return None;
    };
    let pattern = rest.trim_start_matches(is_blank).to_owned();
    (!pattern.is_empty()).then_some(pattern)
}

/// Make `{` and `}` (outside double quotes) lines of their own.
fn split_braces(mut t: Text, out: &mut Vec<Item>) {
    loop {
        trim(&mut t);
        if t.chars.is_empty() {
            return;
        }
        let at = match t.chars[0] {
            '{' | '}' => Some(0),
            _ => find_brace(&t.chars),
        };
        let Some(i) = at else {
            out.push(Item::Text(t));
            return;
        };
        if i == 0 {
            let loc = t.at(0);
            out.push(if t.chars[0] == '{' {
                Item::Open(loc)
            } else {
                Item::Close(loc)
            });
            t.chars.remove(0);
            t.cols.remove(0);
        } else {
            let rest = Text {
                chars: t.chars.split_off(i),
                cols: t.cols.split_off(i),
                file: t.file,
                line: t.line,
            };
            trim(&mut t);
            if !t.chars.is_empty() {
                out.push(Item::Text(t));
            }
            t = rest;
        }
    }
}

/// The first brace outside `"..."`; none after an unterminated quote.
fn find_brace(chars: &[char]) -> Option<usize> {
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' | '}' => return Some(i),
            '"' => {
                let close = chars[i + 1..].iter().position(|c| *c == '"')?;
                i += close + 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// keepalived's plain word split: blanks separate words; a word starting with `"` runs
/// to the next `"` (quotes dropped); a `"` inside a word ends it.
pub fn words(t: &Text) -> Vec<Word> {
    let c = &t.chars;
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(start) = next_word(c, i) {
        i = start;
        if c[i] == '"' {
            let end = c[i + 1..]
                .iter()
                .position(|x| *x == '"')
                .map_or(c.len(), |p| i + 1 + p);
            out.push(Word {
                text: c[i + 1..end].iter().collect(),
                at: t.at(start),
            });
            i = end + 1;
        } else {
            while i < c.len() && !is_blank(c[i]) && c[i] != '"' {
                i += 1;
            }
            out.push(Word {
                text: c[start..i].iter().collect(),
                at: t.at(start),
            });
        }
    }
    out
}

/// keepalived's split for scripts: blanks separate words; `"..."` and `'...'` quote
/// (and may join parts: `a"b c"d` is one word `ab cd`); backslash escapes as in the
/// shell and C (`\n`, `\t`, `\x41`, `\101`, `\cC`, any other `\C` is `C`).
pub fn words_escaped(s: &str) -> Result<Vec<String>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(start) = next_word(&c, i) {
        i = start;
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while i < c.len() {
            let ch = c[i];
            match (quote, ch) {
                (_, '\\') => {
                    i += 1;
                    let Some(&e) = c.get(i) else {
                        return Err(format!("a backslash at the end of {s:?}"));
                    };
                    i += 1;
                    match e {
                        'x' if c.get(i).is_some_and(char::is_ascii_hexdigit) => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2 && c.get(i).is_some_and(char::is_ascii_hexdigit) {
                                v = v * 16 + c[i].to_digit(16).unwrap_or(0);
                                i += 1;
                                n += 1;
                            }
                            word.push(char::from_u32(v).unwrap_or('?'));
                        }
                        'c' if i < c.len() => {
                            let v = u32::from(c[i]) & 0x1f;
                            word.push(char::from_u32(v).unwrap_or('?'));
                            i += 1;
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            let mut n = 1;
                            while n < 3 && c.get(i).is_some_and(|d| ('0'..='7').contains(d)) {
                                v = v * 8 + c[i].to_digit(8).unwrap_or(0);
                                i += 1;
                                n += 1;
                            }
                            word.push(char::from_u32(v & 0xff).unwrap_or('?'));
                        }
                        'a' => word.push('\x07'),
                        'b' => word.push('\x08'),
                        'E' => word.push('\x1b'),
                        'f' => word.push('\x0c'),
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        'v' => word.push('\x0b'),
                        other => word.push(other),
                    }
                }
                (Some(q), ch) if ch == q => {
                    quote = None;
                    i += 1;
                }
                (Some(_), ch) => {
                    word.push(ch);
                    i += 1;
                }
                (None, '"' | '\'') => {
                    quote = Some(ch);
                    i += 1;
                }
                (None, ch) if is_blank(ch) => break,
                (None, ch) => {
                    word.push(ch);
                    i += 1;
                }
            }
        }
        if let Some(q) = quote {
            return Err(format!("missing terminating {q} in {s:?}"));
        }
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        items(s, 0)
            .expect("lexes")
            .into_iter()
            .map(|i| match i {
                Item::Text(t) => t.string(),
                Item::Open(_) => "{".into(),
                Item::Close(_) => "}".into(),
                Item::Include { pattern, .. } => format!("include<{pattern}>"),
            })
            .collect()
    }

    #[test]
    fn braces_are_lines_of_their_own_and_comments_go() {
        assert_eq!(
            texts("vrrp_instance VI_1 {  # the web VIP\n  virtual_ipaddress { 10.0.0.1/24 }\n}\n"),
            [
                "vrrp_instance VI_1",
                "{",
                "virtual_ipaddress",
                "{",
                "10.0.0.1/24",
                "}",
                "}"
            ]
        );
        assert_eq!(texts("! all comment\n   \n#x\n"), Vec::<String>::new());
        assert_eq!(
            texts(r#"script "echo {a} #1" ! c"#),
            [r#"script "echo {a} #1""#]
        );
        assert_eq!(texts(r"auth_pass a\#b"), ["auth_pass a#b"]);
        assert_eq!(
            texts("include /etc/k/*.conf\nincluder  x"),
            ["include</etc/k/*.conf>", "include<x>"]
        );
    }

    #[test]
    fn columns_point_into_the_physical_line() {
        let it = items("  state  MASTER\n", 3).expect("lexes");
        let Item::Text(t) = &it[0] else {
            panic!("text expected")
        };
        let w = words(t);
        assert_eq!(w[0].text, "state");
        assert_eq!(
            w[0].at,
            Loc {
                file: 3,
                line: 1,
                col: 3
            }
        );
        assert_eq!(w[1].at.col, 10);
    }

    #[test]
    fn errors_carry_positions() {
        let e = items("a\n  script \"x y\n", 0).unwrap_err();
        assert_eq!((e.at.line, e.at.col), (2, 10));
        assert!(e.message.contains("unterminated quote"), "{e:?}");
        let e = items("$IP=10.0.0.1\n", 0).unwrap_err();
        assert!(e.message.contains("definitions"), "{e:?}");
    }

    #[test]
    fn plain_and_escaped_words() {
        let t = match &items(r#"a "b c"d e"#, 0).expect("lexes")[0] {
            Item::Text(t) => t.clone(),
            _ => panic!(),
        };
        let w: Vec<String> = words(&t).into_iter().map(|w| w.text).collect();
        assert_eq!(w, ["a", "b c", "d", "e"]);
        assert_eq!(
            words_escaped(r#"/bin/chk 'a b' "c\"d" e\ f \x41\101"#).expect("ok"),
            ["/bin/chk", "a b", "c\"d", "e f", "AA"]
        );
        assert!(words_escaped("'open").is_err());
    }
}
