//! BIRD 2's control-socket protocol (what `birdc` speaks), without I/O.
//!
//! The daemon answers every command with lines `CODE-text` (more follows) or
//! `CODE text` (the reply's last line), where CODE is four digits; a line starting
//! with a space continues the previous code. On connecting, the daemon sends its
//! greeting `0001 BIRD 2.0.12 ready.` as a reply of its own. Codes 0xxx end a
//! successful command, 1xxx are table rows, 2xxx table headings, 8xxx run-time
//! errors and 9xxx parse errors (BIRD's `doc/reply_codes`).

use std::net::IpAddr;

/// One complete reply: every line with the code it belongs to, the last line's code
/// deciding success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<(u16, String)>,
}

impl Reply {
    /// The code of the last line.
    pub fn code(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.0)
    }

    /// 8xxx (run-time) and 9xxx (syntax) codes are errors.
    pub fn is_error(&self) -> bool {
        self.code() >= 8000
    }

    /// The text of every line of `code`.
    pub fn texts(&self, code: u16) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |l| l.0 == code)
            .map(|l| l.1.as_str())
    }

    /// Every line's text, joined (for error messages).
    pub fn message(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.1.trim())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A line the protocol does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed line from BIRD's control socket: {line:?}")]
pub struct Malformed {
    pub line: String,
}

/// Collects lines into replies.
#[derive(Debug, Default)]
pub struct ReplyReader {
    lines: Vec<(u16, String)>,
}

impl ReplyReader {
    /// Feed one line (without its newline). Returns the reply it completes, if any.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, Malformed> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let b = line.as_bytes();
        if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && (b[4] == b' ' || b[4] == b'-') {
            let code: u16 = line[..4].parse().expect("four digits");
            self.lines.push((code, line[5..].to_string()));
            if b[4] == b' ' {
                return Ok(Some(Reply {
                    lines: std::mem::take(&mut self.lines),
                }));
            }
            return Ok(None);
        }
        if let (Some(rest), Some(&(code, _))) = (line.strip_prefix(' '), self.lines.last()) {
            self.lines.push((code, rest.to_string()));
            return Ok(None);
        }
        Err(Malformed {
            line: line.to_string(),
        })
    }
}

/// Name of the `protocol static` that holds a router's VIP routes: `fo_` and the
/// router name with `-` as `_` (BIRD symbols are letters, digits and `_`).
pub fn protocol_name(router: &str) -> String {
    format!("fo_{}", router.replace('-', "_"))
}

/// One row of `show protocols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolRow {
    pub name: String,
    /// `BGP`, `Static`, `BFD`, `Device`, …
    pub proto: String,
    /// `up`, `down`, `start` or `stop`.
    pub state: String,
    /// What follows the state and its time: for BGP `Established`, `Active  Socket: …`.
    pub info: String,
}

/// Rows of a `show protocols` reply (code 1002).
pub fn parse_protocols(reply: &Reply) -> Vec<ProtocolRow> {
    reply
        .texts(1002)
        .filter_map(|t| {
            let mut f = t.split_whitespace();
            let name = f.next()?.to_string();
            let proto = f.next()?.to_string();
            let _table = f.next()?;
            let state = f.next()?.to_string();
            let rest: Vec<&str> = f.collect();
            // "Since" is one token ("03:01:02.123") or two (a date, then the time).
            let skip = match rest.first() {
                Some(d) if d.len() == 10 && d.as_bytes().get(4) == Some(&b'-') => 2,
                Some(_) => 1,
                None => 0,
            };
            Some(ProtocolRow {
                name,
                proto,
                state,
                info: rest.get(skip..).unwrap_or_default().join(" "),
            })
        })
        .collect()
}

/// One row of `show bfd sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdSession {
    pub peer: IpAddr,
    pub interface: String,
    /// `Up`, `Down`, `Init` or `AdminDown`.
    pub state: String,
}

impl BfdSession {
    pub fn is_up(&self) -> bool {
        self.state.eq_ignore_ascii_case("up")
    }
}

/// Rows of a `show bfd sessions` reply (code 1020: `IP address  Interface  State …`).
pub fn parse_bfd_sessions(reply: &Reply) -> Vec<BfdSession> {
    reply
        .texts(1020)
        .filter_map(|t| {
            let mut f = t.split_whitespace();
            let peer: IpAddr = f.next()?.parse().ok()?;
            let interface = f.next()?.to_string();
            let state = f.next()?.to_string();
            Some(BfdSession {
                peer,
                interface,
                state,
            })
        })
        .collect()
}

/// Prefixes of a `show route` reply (code 1007; the first column of route lines,
/// `Table master4:` headings skipped).
pub fn parse_route_prefixes(reply: &Reply) -> Vec<String> {
    let mut out: Vec<String> = reply
        .texts(1007)
        .filter_map(|t| t.split_whitespace().next())
        .filter(|p| p.contains('/'))
        .map(str::to_string)
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<Reply> {
        let mut r = ReplyReader::default();
        text.lines()
            .filter_map(|l| r.push(l).expect("well-formed"))
            .collect()
    }

    /// Captured from BIRD 2.0.12 (`birdc -v`), with the `0000` ending birdc hides.
    const SHOW_PROTOCOLS: &str = "\
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     02:59:01.136  
     fo_ingest  Static     master4    down   02:59:01.136  
     up1        BGP        ---        start  02:59:01.136  Active        Socket: Connection refused
     up2        BGP        ---        up     2026-11-22 02:59:03  Established   
0000 
";

    #[test]
    fn greeting_is_a_reply_of_its_own() {
        let r = read("0001 BIRD 2.0.12 ready.\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code(), 1);
        assert!(!r[0].is_error());
    }

    #[test]
    fn continuation_lines_keep_their_code() {
        let r = read(SHOW_PROTOCOLS);
        assert_eq!(r.len(), 1, "one reply");
        assert_eq!(r[0].texts(1002).count(), 4);
        assert_eq!(r[0].texts(2002).count(), 1);
        assert_eq!(r[0].code(), 0);
    }

    #[test]
    fn protocols_rows() {
        let rows = parse_protocols(&read(SHOW_PROTOCOLS)[0]);
        let brief: Vec<(&str, &str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.proto.as_str(),
                    r.state.as_str(),
                    r.info.as_str(),
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                ("device1", "Device", "up", ""),
                ("fo_ingest", "Static", "down", ""),
                ("up1", "BGP", "start", "Active Socket: Connection refused"),
                ("up2", "BGP", "up", "Established"),
            ]
        );
    }

    #[test]
    fn errors_and_enable_replies() {
        let r = read(
            "0011-fo_ingest: enabled\n0000 \n\
             9001 syntax error, unexpected CF_SYM_UNDEFINED, expecting CF_SYM_KNOWN or TEXT or ALL\n\
             8003 No protocols match\n",
        );
        assert_eq!(r.len(), 3);
        assert!(!r[0].is_error());
        assert_eq!(r[0].texts(11).next(), Some("fo_ingest: enabled"));
        assert!(r[1].is_error() && r[2].is_error());
        assert_eq!(r[2].message(), "No protocols match");
    }

    #[test]
    fn malformed_lines_are_refused() {
        let mut r = ReplyReader::default();
        assert!(r.push("hello").is_err(), "no code");
        assert!(r.push(" continuation before any code").is_err());
        assert!(r.push("12a4 x").is_err());
        assert!(r.push("1234").is_err(), "no separator");
        assert_eq!(
            r.push("1234 ok\r"),
            Ok(Some(Reply {
                lines: vec![(1234, "ok".into())]
            }))
        );
    }

    #[test]
    fn bfd_sessions() {
        let r = read(
            "1020-bfd1:\n\
             \x20    IP address                Interface  State      Since         Interval  Timeout\n\
             \x20    10.9.9.2                  veth0      Up         03:00:00.000    0.100    0.500\n\
             \x20    fd00::2                   veth0      Down       03:00:00.000    1.000    3.000\n\
             0000 \n",
        );
        let s = parse_bfd_sessions(&r[0]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].peer, "10.9.9.2".parse::<IpAddr>().unwrap());
        assert!(s[0].is_up() && !s[1].is_up());
        assert_eq!(s[1].interface, "veth0");
    }

    #[test]
    fn route_prefixes() {
        let r = read(
            "1007-Table master4:\n\
             \x20    192.0.2.100/32       blackhole [fo_ingest 02:59:03.624] * (200)\n\
             \x20    192.0.2.101/32       blackhole [fo_ingest 02:59:03.624] * (200)\n\
             0000 \n",
        );
        assert_eq!(
            parse_route_prefixes(&r[0]),
            ["192.0.2.100/32", "192.0.2.101/32"]
        );
    }

    #[test]
    fn protocol_names_are_bird_symbols() {
        assert_eq!(protocol_name("ingest"), "fo_ingest");
        assert_eq!(protocol_name("edge-v4_1"), "fo_edge_v4_1");
    }
}
