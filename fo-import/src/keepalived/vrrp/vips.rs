//! `virtual_ipaddress` lines into a router's VIPs.

use std::net::IpAddr;

use crate::ParseError;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, unicast, within};
use crate::plan::Router;

pub(super) fn vips(
    cx: &mut Cx<'_>,
    v: &Stmt,
    s: &Stmt,
    interface: &str,
    taken: &[Router],
    out: &mut Vec<IpAddr>,
) -> Result<(), ParseError> {
    let d = within(v, s);
    for line in s.children() {
        let at = line.at();
        let word = line.keyword();
        let (addr, prefix) = match word.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (word, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            ParseError::at(
                at,
                format!("virtual_ipaddress: {word:?} is not an IP address"),
            )
        })?;
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => full,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= full => n,
                _ => {
                    return Err(ParseError::at(
                        at,
                        format!("virtual_ipaddress: bad prefix in {word:?}"),
                    ));
                }
            },
        };
        let mut dev: Option<&str> = None;
        let mut label = false;
        let mut vmac = false;
        let args = line.args();
        let mut i = 0;
        while i < args.len() {
            match args[i].text.as_str() {
                "dev" => {
                    dev = args.get(i + 1).map(|w| w.text.as_str());
                    i += 1;
                }
                "label" => {
                    label = true;
                    i += 1;
                }
                "brd" | "scope" | "peer" | "preferred_lft" | "track_group" => i += 1,
                "use_vmac" => vmac = true,
                _ => {}
            }
            i += 1;
        }
        if let Some(dev) = dev
            && dev != interface
        {
            cx.report.not_translated(
                at,
                d.clone(),
                format!("{word} is on {dev}; fo serves VIPs on {interface} only"),
            );
            continue;
        }
        if vmac {
            cx.report
                .not_translated(at, d.clone(), format!("{word}: no virtual MAC in fo"));
            continue;
        }
        if let Some(first) = out.first()
            && first.is_ipv4() != ip.is_ipv4()
        {
            cx.report.not_translated(
                at,
                d.clone(),
                format!("{word}: the VIPs of a router share one address family"),
            );
            continue;
        }
        if out.contains(&ip) {
            cx.report
                .ignored(at, d.clone(), format!("{ip} is listed twice"));
            continue;
        }
        if !unicast(ip) {
            cx.report
                .not_translated(at, d.clone(), format!("{ip} is not a unicast address"));
            continue;
        }
        if let Some(other) = taken.iter().find(|r| r.vips.contains(&ip)) {
            cx.report.not_translated(
                at,
                d.clone(),
                format!(
                    "{ip} is already a VIP of router {} (one router per VIP in fo)",
                    other.name
                ),
            );
            continue;
        }
        if prefix != full {
            cx.report.approximated(
                at,
                d.clone(),
                format!("{word}: fo serves the address itself (ARP/ND in XDP); the /{prefix} subnet route keepalived adds with it is not created"),
            );
        }
        if label {
            cx.report.ignored(
                at,
                d.clone(),
                format!("{word}: fo puts no label on the address"),
            );
        }
        if args.iter().any(|w| {
            matches!(
                w.text.as_str(),
                "brd"
                    | "scope"
                    | "peer"
                    | "home"
                    | "-nodad"
                    | "nodad"
                    | "mngtmpaddr"
                    | "noprefixroute"
                    | "autojoin"
                    | "no_track"
                    | "preferred_lft"
            )
        }) {
            cx.report.ignored(
                at,
                d.clone(),
                format!(
                    "{word}: address options for the kernel; fo answers ARP/ND for the VIP in XDP"
                ),
            );
        }
        out.push(ip);
    }
    Ok(())
}
