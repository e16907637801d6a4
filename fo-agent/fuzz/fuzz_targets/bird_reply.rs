//! The BIRD control-socket reply reader (`bgp::birdc::ReplyReader`) and the parsers of
//! its replies, on any text from the socket:
//!
//! - never a panic;
//! - a line is refused exactly when BIRD's format does not allow it: neither
//!   `CODE-text` / `CODE text` (four digits) nor, inside a reply, a continuation line
//!   starting with a space (the agent then drops the connection);
//! - every complete reply, written out again in BIRD's line format (`CODE-text`,
//!   `CODE text` for the last line), reads back as exactly that reply;
//! - what the parsers return comes from the reply's lines of their code: each
//!   `show protocols` row (1002), BFD session (1020) and route prefix (1007) is made of
//!   the whitespace-separated fields of one such line, in order, at most one per line.
//!
//! The input is what BIRD sends; it is cut into lines at `\n`, as the agent's reader
//! does, which stops at the first line that is not UTF-8 (`lines()` fails there).

#![no_main]

use fo_agent::bgp::birdc::{self, Reply, ReplyReader};
use libfuzzer_sys::fuzz_target;

/// The reply as BIRD would send it (a `\r` ends each line, which the reader strips,
/// so text that itself ends in `\r` is kept).
fn written(reply: &Reply) -> Vec<String> {
    let last = reply.lines.len().saturating_sub(1);
    reply
        .lines
        .iter()
        .enumerate()
        .map(|(i, (code, text))| {
            let sep = if i == last { ' ' } else { '-' };
            format!("{code:04}{sep}{text}\r")
        })
        .collect()
}

/// Whether BIRD's format allows `line` (its `\r` already stripped), `open` telling
/// whether a reply is under way.
fn allowed(line: &str, open: bool) -> bool {
    let b = line.as_bytes();
    let coded =
        b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && matches!(b[4], b' ' | b'-');
    coded || (open && b.first() == Some(&b' '))
}

/// The fields of the reply's lines of `code`.
fn rows(reply: &Reply, code: u16) -> Vec<Vec<&str>> {
    reply
        .texts(code)
        .map(|t| t.split_whitespace().collect())
        .collect()
}

/// Each of `picked` is made of one of `rows` (as `made_of` says), in order, at most
/// one per row.
fn one_row_each<T: std::fmt::Debug>(
    picked: &[T],
    rows: &[Vec<&str>],
    made_of: impl Fn(&T, &[&str]) -> bool,
    what: &str,
) {
    let mut rows = rows.iter();
    for p in picked {
        assert!(
            rows.any(|r| made_of(p, r)),
            "{what} {p:?} is not made of one line of its code, in order"
        );
    }
}

fn parsers_agree_with_lines(reply: &Reply) {
    // `show protocols`: name, protocol, table, state, since (one or two fields), info.
    one_row_each(
        &birdc::parse_protocols(reply),
        &rows(reply, 1002),
        |p, r| {
            r.len() >= 4
                && (r[0], r[1], r[3]) == (p.name.as_str(), p.proto.as_str(), p.state.as_str())
                && (0..=2).any(|skip| r[4..].get(skip..).unwrap_or_default().join(" ") == p.info)
        },
        "protocol row",
    );
    // `show bfd sessions`: peer address, interface, state, …
    one_row_each(
        &birdc::parse_bfd_sessions(reply),
        &rows(reply, 1020),
        |s, r| {
            r.len() >= 3
                && r[0].parse() == Ok(s.peer)
                && (r[1], r[2]) == (s.interface.as_str(), s.state.as_str())
        },
        "BFD session",
    );
    // `show route`: the prefix leads its line (repeats of one prefix counted once).
    let prefixes = birdc::parse_route_prefixes(reply);
    one_row_each(
        &prefixes,
        &rows(reply, 1007),
        |p, r| r.first() == Some(&p.as_str()) && p.contains('/'),
        "route prefix",
    );
    assert!(
        prefixes.windows(2).all(|w| w[0] != w[1]),
        "a prefix repeated"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut reader = ReplyReader::default();
    let mut open = false;
    for line in data.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let bare = line.strip_suffix('\r').unwrap_or(line);
        let reply = match reader.push(line) {
            Err(e) => {
                assert!(!allowed(bare, open), "{e} for a line BIRD's format allows");
                // The agent drops the connection here: a new one starts afresh.
                reader = ReplyReader::default();
                open = false;
                continue;
            }
            Ok(r) => {
                assert!(
                    allowed(bare, open),
                    "accepted {bare:?}, which BIRD's format refuses"
                );
                r
            }
        };
        let Some(reply) = reply else {
            open = true;
            continue;
        };
        open = false;
        assert!(!reply.lines.is_empty());
        assert!(reply.code() <= 9999);
        assert_eq!(reply.is_error(), reply.code() >= 8000);
        let _ = reply.message();
        parsers_agree_with_lines(&reply);

        let mut again = ReplyReader::default();
        let lines = written(&reply);
        let mut replies = Vec::new();
        for l in &lines {
            match again.push(l) {
                Ok(Some(r)) => replies.push(r),
                Ok(None) => {}
                Err(e) => panic!("{e} when reading back {lines:?}"),
            }
        }
        assert_eq!(replies, [reply], "read back from {lines:?}");
    }
});
