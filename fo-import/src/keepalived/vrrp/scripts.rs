//! `vrrp_script` and `track_file` definitions.

use std::time::Duration;

use super::globals::Globals;
use super::user::user_of;
use crate::ParseError;
use crate::keepalived::lex::words_escaped;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, int, need, within};
use crate::plan::RunAs;
use crate::source::Loc;

pub(super) const SCRIPT_DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(super) struct Script {
    pub(super) from: String,
    pub(super) at: Loc,
    pub(super) argv: Option<Vec<String>>,
    pub(super) interval: Duration,
    pub(super) timeout: Option<(Duration, Loc)>,
    pub(super) weight: i64,
    pub(super) reverse: bool,
    pub(super) rise: u32,
    pub(super) fall: u32,
    pub(super) run_as: Option<RunAs>,
    /// The `[[check]]` name, once an imported router tracks it.
    pub(super) check: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct TrackFile {
    pub(super) from: String,
    pub(super) path: Option<String>,
    pub(super) weight: i64,
    pub(super) reverse: bool,
    pub(super) init_file: Option<Loc>,
}

pub(super) fn vrrp_script(
    cx: &mut Cx<'_>,
    v: &Stmt,
    globals: &Globals,
) -> Result<Script, ParseError> {
    let mut sc = Script {
        from: cx.from(v),
        at: v.at(),
        argv: None,
        interval: SCRIPT_DEFAULT_INTERVAL,
        timeout: None,
        weight: 0,
        reverse: false,
        rise: 1,
        fall: 1,
        run_as: globals.script_user.clone(),
        check: None,
    };
    for s in v.children() {
        match s.keyword() {
            "script" => {
                let line = words_escaped(&s.text.string())
                    .map_err(|e| ParseError::at(s.at(), format!("script: {e}")))?;
                let argv = match line.get(1) {
                    Some(cmd) => words_escaped(cmd)
                        .map_err(|e| ParseError::at(s.at(), format!("script: {e}")))?,
                    None => Vec::new(),
                };
                if argv.is_empty() {
                    return Err(ParseError::at(s.at(), "script needs a command"));
                }
                sc.argv = Some(argv);
            }
            "interval" => {
                sc.interval = Duration::from_secs(int(s, 0, 0, 1_000_000)?.max(1) as u64);
            }
            "timeout" => {
                let t = Duration::from_secs(int(s, 0, 0, 1_000_000)?.max(1) as u64);
                sc.timeout = Some((t, s.at()));
            }
            "weight" => {
                sc.weight = int(s, 0, -253, 253)?;
                match s.arg(1) {
                    Some("reverse") => sc.reverse = true,
                    Some(other) => {
                        return Err(ParseError::at(
                            s.args()[1].at,
                            format!("unknown weight option {other:?} (reverse)"),
                        ));
                    }
                    None => {}
                }
            }
            "rise" => sc.rise = int(s, 0, 1, i64::from(i32::MAX))? as u32,
            "fall" => sc.fall = int(s, 0, 1, i64::from(i32::MAX))? as u32,
            "user" => sc.run_as = Some(user_of(s, 0)?),
            "init_fail" => cx.report.ignored(
                s.at(),
                within(v, s),
                "fo's checks always start failing until they pass `rise` times",
            ),
            _ => cx.report.not_translated(
                s.at(),
                within(v, s),
                "not a vrrp_script keyword the importer knows",
            ),
        }
    }
    Ok(sc)
}

pub(super) fn track_file_def(cx: &mut Cx<'_>, v: &Stmt) -> Result<TrackFile, ParseError> {
    let mut f = TrackFile {
        from: cx.from(v),
        path: None,
        weight: 1,
        reverse: false,
        init_file: None,
    };
    for s in v.children() {
        match s.keyword() {
            "file" => f.path = Some(need(s, 0, "a file name")?.to_owned()),
            "weight" => {
                f.weight = int(s, 0, -254, 254)?;
                f.reverse = s.arg(1) == Some("reverse");
            }
            "init_file" => f.init_file = Some(s.at()),
            _ => cx.report.not_translated(
                s.at(),
                within(v, s),
                "not a track_file keyword the importer knows",
            ),
        }
    }
    Ok(f)
}
