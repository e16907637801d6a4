//! `track_script`, `track_interface` and `track_file` entries into the router's
//! tracked `[[check]]`s.

use std::time::Duration;

use super::state::State;
use crate::ParseError;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, fit_timeout, fo_name, int, unique};
use crate::plan::{Check, CheckKind, Plan, Router};
use crate::source::Loc;

/// fo's rise and fall are 1..=100.
pub(super) const FO_MAX_RISE_FALL: i64 = 100;

/// A tracked thing before it becomes a `[[check]]`.
pub(super) enum Tracked {
    Script(String),
    Interface(String),
    File(String),
}

/// A tracked thing with its weight, whether the weight is reversed, where it is
/// named and the directive that names it.
pub(super) type TrackedAt = (Tracked, Option<i64>, bool, Loc, String);

/// Adds what a `track_script`, `track_interface` or `track_file` block `s` names (an
/// interface's weight defaults to 0); any other statement adds nothing.
pub(super) fn track_block(
    s: &Stmt,
    d: &str,
    tracked: &mut Vec<TrackedAt>,
) -> Result<(), ParseError> {
    let (kind, limit, default): (fn(String) -> Tracked, i64, Option<i64>) = match s.keyword() {
        "track_script" => (Tracked::Script, 253, None),
        "track_interface" => (Tracked::Interface, 253, Some(0)),
        "track_file" => (Tracked::File, 254, None),
        _ => return Ok(()),
    };
    for t in s.children() {
        let (w, rev) = track_weight(t, limit)?;
        tracked.push((
            kind(t.keyword().to_owned()),
            w.or(default),
            rev,
            t.at(),
            d.to_owned(),
        ));
    }
    Ok(())
}

/// `NAME [weight N [reverse|noreverse|no_reverse]]`: (weight, reverse).
pub(super) fn track_weight(t: &Stmt, limit: i64) -> Result<(Option<i64>, bool), ParseError> {
    match t.arg(0) {
        None => Ok((None, false)),
        Some("weight") => {
            let w = int(t, 1, -254, 254)?;
            let w = w.clamp(-limit, limit);
            let rev = match t.arg(2) {
                None | Some("noreverse" | "no_reverse") => false,
                Some("reverse") => true,
                Some(other) => {
                    return Err(ParseError::at(
                        t.args()[2].at,
                        format!("unknown weight option {other:?} (reverse, noreverse)"),
                    ));
                }
            };
            Ok((Some(w), rev))
        }
        Some(other) => Err(ParseError::at(
            t.args()[0].at,
            format!("expected `weight N` after {}, got {other:?}", t.keyword()),
        )),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one tracked item with its context"
)]
pub(super) fn track(
    cx: &mut Cx<'_>,
    st: &mut State<'_>,
    plan: &mut Plan,
    r: &mut Router,
    interface: &str,
    t: Tracked,
    weight: Option<i64>,
    reverse: bool,
    at: Loc,
    d: &str,
    no_weights: bool,
    why_no_weights: &str,
) {
    let (check, weight) = match t {
        Tracked::Script(name) => {
            let Some(sc) = st.scripts.get(&name) else {
                cx.report.ignored(
                    at,
                    d,
                    format!(
                        "no vrrp_script {name} before this instance: keepalived ignores the entry"
                    ),
                );
                return;
            };
            let Some(mut argv) = sc.argv.clone() else {
                cx.report.ignored(
                    at,
                    d,
                    format!("vrrp_script {name} has no script: keepalived removes it"),
                );
                return;
            };
            let weight = weight.unwrap_or(sc.weight);
            let reverse = reverse || (weight != 0 && sc.reverse);
            if no_weights && weight != 0 {
                cx.report.ignored(at, d, format!("{name}: keepalived drops a weighted track_script of {why_no_weights}; so does the import"));
                return;
            }
            if reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{name}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            let check = match &sc.check {
                Some(c) => c.clone(),
                None => {
                    let name_c = unique(fo_name(&name), &st.check_names);
                    st.check_names.push(name_c.clone());
                    let (timeout, adjusted) = match sc.timeout {
                        Some((t, _)) => fit_timeout(t, sc.interval),
                        None => (fit_timeout(sc.interval, sc.interval).0, false),
                    };
                    if adjusted && let Some((_, tat)) = sc.timeout {
                        cx.report.approximated(
                            tat,
                            format!("vrrp_script {name} > timeout"),
                            format!(
                                "fo needs timeout < interval: {}",
                                fo_config::format_duration(timeout)
                            ),
                        );
                    }
                    let cap = |n: u32, what: &str, cx: &mut Cx<'_>| {
                        if i64::from(n) > FO_MAX_RISE_FALL {
                            cx.report.approximated(
                                sc.at,
                                format!("vrrp_script {name} > {what}"),
                                format!("fo allows at most {FO_MAX_RISE_FALL}"),
                            );
                            FO_MAX_RISE_FALL as u32
                        } else {
                            n
                        }
                    };
                    let rise = cap(sc.rise, "rise", cx);
                    let fall = cap(sc.fall, "fall", cx);
                    let directive = format!("vrrp_script {name} > script");
                    cx.absolute_program(sc.at, &directive, &mut argv);
                    if let Some(p) = argv.first() {
                        cx.check_program(sc.at, &directive, p);
                    }
                    plan.checks.push(Check {
                        from: sc.from.clone(),
                        name: name_c.clone(),
                        kind: CheckKind::Exec {
                            command: argv,
                            run_as: sc.run_as.clone(),
                        },
                        interval: sc.interval,
                        timeout,
                        rise,
                        fall,
                    });
                    if let Some(sc) = st.scripts.get_mut(&name) {
                        sc.check = Some(name_c.clone());
                    }
                    name_c
                }
            };
            (check, weight)
        }
        Tracked::Interface(ifname) => {
            let weight = weight.unwrap_or(0);
            let weight = if no_weights && weight != 0 {
                if r.priority == 255 {
                    cx.report.ignored(at, d, format!("{ifname}: keepalived stops tracking a weighted interface of the address owner"));
                    return;
                }
                cx.report.ignored(at, d, format!("{ifname}: keepalived counts a weighted interface of a sync group member as weight 0 (fault); so does the import"));
                0
            } else {
                weight
            };
            if reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{ifname}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            if ifname == interface {
                if weight == 0 {
                    cx.report.ignored(
                        at,
                        d,
                        format!(
                            "{ifname}: fo faults the router when its own interface loses its link"
                        ),
                    );
                } else {
                    cx.report.approximated(at, d, format!("{ifname}: fo faults the router when its own interface loses its link, instead of moving the priority by {weight}"));
                }
                return;
            }
            let check = match st.iface_checks.get(&ifname) {
                Some(c) => c.clone(),
                None => {
                    let name = unique(fo_name(&format!("if-{ifname}")), &st.check_names);
                    st.check_names.push(name.clone());
                    plan.checks.push(Check {
                        from: format!("from {} track_interface {ifname}", cx.files.at(at)),
                        name: name.clone(),
                        kind: CheckKind::File {
                            path: format!("/sys/class/net/{ifname}/carrier"),
                            contains: Some("1".into()),
                        },
                        interval: Duration::from_secs(1),
                        timeout: Duration::from_millis(500),
                        rise: 1,
                        fall: 1,
                    });
                    st.iface_checks.insert(ifname.clone(), name.clone());
                    cx.report.approximated(
                        at,
                        d,
                        format!("{ifname}: a check reads /sys/class/net/{ifname}/carrier every second (keepalived follows netlink at once)"),
                    );
                    name
                }
            };
            (check, weight)
        }
        Tracked::File(name) => {
            let Some(f) = st.files.get(&name).cloned() else {
                cx.report.ignored(
                    at,
                    d,
                    format!(
                        "no track_file {name} before this instance: keepalived ignores the entry"
                    ),
                );
                return;
            };
            let Some(path) = f.path.clone() else {
                cx.report.ignored(
                    at,
                    d,
                    format!("track_file {name} has no file: keepalived ignores it"),
                );
                return;
            };
            let mut weight = weight.unwrap_or(f.weight);
            if no_weights && weight != 0 {
                if weight == 1 {
                    cx.report.ignored(at, d, format!("{name}: keepalived makes the default weight 0 for {why_no_weights}; so does the import"));
                    weight = 0;
                } else {
                    cx.report.ignored(at, d, format!("{name}: keepalived drops a weighted track_file of {why_no_weights}; so does the import"));
                    return;
                }
            }
            if reverse || f.reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{name}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            if let Some(init) = f.init_file {
                cx.report.approximated(
                    init,
                    format!("track_file {name} > init_file"),
                    format!("fo does not create {path}: create it (holding 0) before fo starts"),
                );
            }
            let weight = weight.clamp(-254, 254);
            // Weight 0 and negative weights act while the value is not 0 (the check
            // "the file holds 0" fails); positive weights while it is not 0 (the check
            // "the file holds a non-zero number" passes).
            let nonzero = weight > 0;
            let check = match st.file_checks.get(&(name.clone(), nonzero)) {
                Some(c) => c.clone(),
                None => {
                    let cname = unique(
                        fo_name(&format!(
                            "file-{name}{}",
                            if nonzero { "-nonzero" } else { "" }
                        )),
                        &st.check_names,
                    );
                    st.check_names.push(cname.clone());
                    let test = if nonzero {
                        "read v < \"$0\" && [ \"$v\" -ne 0 ]"
                    } else {
                        "read v < \"$0\" && [ \"$v\" -eq 0 ]"
                    };
                    plan.checks.push(Check {
                        from: f.from.clone(),
                        name: cname.clone(),
                        kind: CheckKind::Exec {
                            command: vec!["/bin/sh".into(), "-c".into(), test.into(), path.clone()],
                            run_as: None,
                        },
                        interval: Duration::from_secs(1),
                        timeout: Duration::from_millis(500),
                        rise: 1,
                        fall: 1,
                    });
                    st.file_checks
                        .insert((name.clone(), nonzero), cname.clone());
                    cname
                }
            };
            let how = match weight {
                0 => "fault while it holds a non-zero number".to_owned(),
                w => format!(
                    "{w:+} while it holds a non-zero number (keepalived adds the number × {w})"
                ),
            };
            cx.report
                .approximated(at, d, format!("{name}: {path} is read every second: {how}"));
            (check, weight)
        }
    };
    if r.track.iter().any(|(c, _)| *c == check) {
        cx.report.approximated(at, d, format!("{check} is tracked twice by this instance (with its sync group): fo tracks it once, with the first weight"));
        return;
    }
    r.track.push((check, weight as i16));
}
