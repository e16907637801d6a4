//! `virtual_server` (LVS) into `[[service]]`.
//!
//! keepalived's checkers and fo's service checks differ in shape: keepalived checks
//! each real server with its own checker(s), fo checks every backend of a service
//! with one check. The first real server's first checker becomes the service's check
//! (interval = `delay_loop`, timeout = `connect_timeout`, rise 1, fall = `retry` + 1:
//! a keepalived real server goes down after its retries and up on its first success);
//! real servers whose checker differs are reported.
//!
//! Parts: `checker` (one checker block into a check); this module holds the virtual
//! and real servers.

mod checker;

use std::net::IpAddr;

use crate::ParseError;
use crate::keepalived::tree::Stmt;
use crate::keepalived::vrrp::Vrrp;
use crate::keepalived::{Cx, Error, MAX_SERVICES, describe, int, need, seconds, unicast, within};
use crate::plan::{Backend, Hash, Mode, Plan, Service, ServiceCheck, ServiceCheckKind};
use checker::{
    Checker, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DELAY_LOOP, MAX_TIMER, Parent, Timing, checker,
};

/// fo's backend weights are 0..=1000.
const FO_MAX_WEIGHT: u64 = 1000;

pub fn translate(
    cx: &mut Cx<'_>,
    tree: &[Stmt],
    vrrp: &Vrrp,
    plan: &mut Plan,
) -> Result<(), Error> {
    for v in tree.iter().filter(|s| s.keyword() == "virtual_server") {
        if let Some(s) = virtual_server(cx, v, vrrp)? {
            let dup = plan
                .services
                .iter()
                .any(|o| o.vip == s.vip && o.port == s.port && o.udp == s.udp);
            let active = plan
                .services
                .iter()
                .filter(|o| o.commented.is_none())
                .count();
            if dup {
                cx.report.not_translated(
                    v.at(),
                    describe(v),
                    "the same address, port and protocol as an earlier virtual_server",
                );
            } else if active >= MAX_SERVICES && s.commented.is_none() {
                cx.report.not_translated(v.at(), describe(v), format!("more than {MAX_SERVICES} services: raise [node] max_services and translate it by hand"));
            } else {
                plan.services.push(s);
            }
        }
    }
    Ok(())
}

fn virtual_server(cx: &mut Cx<'_>, v: &Stmt, vrrp: &Vrrp) -> Result<Option<Service>, Error> {
    let here = describe(v);
    let first = need(v, 0, "an address and a port")?;
    if first == "fwmark" || first == "group" {
        cx.report.not_translated(
            v.at(),
            format!("virtual_server {first}"),
            "fo services are one VIP and port (no firewall marks or groups)",
        );
        return Ok(None);
    }
    let vip: IpAddr = first.parse().map_err(|_| {
        ParseError::at(
            v.at(),
            format!("virtual_server: {first:?} is not an IP address"),
        )
    })?;
    let port = int(v, 1, 0, 65_535)? as u16;
    if port == 0 {
        cx.report.not_translated(
            v.at(),
            here,
            "port 0 (every port) has no fo equivalent: fo services have one port",
        );
        return Ok(None);
    }
    let Some(router) = vrrp.vips.get(&vip) else {
        cx.report.not_translated(
            v.at(),
            here,
            format!(
                "{vip} is no VIP of an imported vrrp_instance: fo serves services on a router's VIP"
            ),
        );
        return Ok(None);
    };
    let mut mode = Mode::Dsr;
    let mut nat = false;
    let mut hash: Option<Hash> = None;
    let mut udp = false;
    let mut vs_timing = Timing::default();
    // The default virtualhost of the checkers (an SSL_GET's `sni`).
    let mut vs_vhost: Option<(String, crate::source::Loc, String)> = None;
    let mut real: Vec<&Stmt> = Vec::new();
    for s in v.children() {
        let at = s.at();
        let d = within(v, s);
        match s.keyword() {
            "lb_kind" | "lvs_method" => match need(s, 0, "DR, NAT or TUN")? {
                "DR" => mode = Mode::Dsr,
                "NAT" => nat = true,
                "TUN" => {
                    cx.report.not_translated(at, d, "IPIP tunnelling to the real servers is not in this build of fo (DR or NAT)");
                    return Ok(None);
                }
                other => return Err(ParseError::at(at, format!("unknown lb_kind {other:?}")).into()),
            },
            "lb_algo" | "lvs_sched" => {
                let a = need(s, 0, "a scheduler")?;
                match a {
                    "sh" | "mh" => {
                        hash.get_or_insert(Hash::SourceIp);
                    }
                    _ => {
                        if hash.is_none() {
                            hash = Some(Hash::FiveTuple);
                        }
                        cx.report.approximated(
                            at,
                            d,
                            format!("{a}: fo spreads connections by a weighted consistent hash (Maglev) of the 5-tuple, not by {a}"),
                        );
                    }
                }
            }
            "persistence_timeout" => {
                hash = Some(Hash::SourceIp);
                cx.report.approximated(
                    at,
                    d,
                    "hash = \"source-ip\": a client stays on one backend as long as the backend set does not change, not for a timeout",
                );
            }
            "persistence_granularity" | "persistence_engine" => cx.report.not_translated(at, d, "no persistence masks or engines in fo"),
            "protocol" => match need(s, 0, "TCP or UDP")? {
                "TCP" => udp = false,
                "UDP" => udp = true,
                other => {
                    cx.report.not_translated(at, d, format!("{other}: fo balances TCP and UDP"));
                    return Ok(None);
                }
            },
            "delay_loop" => vs_timing.delay_loop = Some(seconds(s, 0, MAX_TIMER)?),
            "connect_timeout" => vs_timing.connect_timeout = Some(seconds(s, 0, MAX_TIMER)?),
            "retry" => vs_timing.retry = Some(int(s, 0, 0, 1_000_000)? as u32),
            "delay_before_retry" => cx.report.approximated(at, d, "fo retries a failed check at its interval (fall = retry + 1), not after delay_before_retry"),
            "warmup" => cx.report.ignored(at, d, "fo spreads its checks over the interval by itself"),
            "real_server" => real.push(s),
            "ha_suspend" => cx.report.ignored(at, d, "fo checks backends on every node; only the master forwards"),
            "alpha" => cx.report.approximated(at, d, "fo's backends start up and go down after `fall` failed checks (alpha starts them down)"),
            "omega" | "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
                cx.report.not_translated(at, d, "no quorum in fo: with no healthy backend a service forwards to all of them (fail open)")
            }
            "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" => cx.report.not_translated(at, d, "no sorry server in fo"),
            "inhibit_on_failure" => cx.report.approximated(at, d, "fo keeps a failed backend's established flows and sends new ones elsewhere"),
            "virtualhost" => vs_vhost = Some((need(s, 0, "a host name")?.to_owned(), at, d)),
            "ip_family" | "hashed" | "ops" | "snmp_name" | "smtp_alert" => cx.report.ignored(at, d, "no effect in fo"),
            _ => cx.report.not_translated(at, d, "not a virtual_server keyword the importer knows"),
        }
    }
    if nat {
        mode = Mode::Nat;
    }
    let https_checked = |c: &Option<Checker>| {
        matches!(
            c.as_ref().map(|c| &c.kind),
            Some(ServiceCheckKind::Https { .. })
        )
    };
    let default_timing = Timing {
        delay_loop: Some(DEFAULT_DELAY_LOOP),
        connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
        retry: None,
    };
    let vs_timing = vs_timing.or(default_timing);
    let mut backends: Vec<Backend> = Vec::new();
    let mut weights: Vec<u64> = Vec::new();
    let mut check: Option<Checker> = None;
    let mut unchecked = Vec::new();
    for rs in real {
        let at = rs.at();
        let addr = need(rs, 0, "an address and a port")?;
        let ip: IpAddr = addr.parse().map_err(|_| {
            ParseError::at(at, format!("real_server: {addr:?} is not an IP address"))
        })?;
        let rport = match rs.arg(1) {
            Some(_) => int(rs, 1, 0, 65_535)? as u16,
            None => port,
        };
        let rname = format!("{here} > real_server {addr} {rport}");
        if !unicast(ip) {
            cx.report
                .not_translated(at, rname, format!("{ip} is not a unicast address"));
            continue;
        }
        let mut weight: u64 = 1;
        let mut timing = Timing::default();
        let mut checkers: Vec<&Stmt> = Vec::new();
        let mut rs_vhost: Option<(String, crate::source::Loc, String)> = None;
        for s in rs.children() {
            let d = format!("{rname} > {}", s.keyword());
            match s.keyword() {
                "weight" => weight = int(s, 0, 0, 65_535)? as u64,
                "delay_loop" => timing.delay_loop = Some(seconds(s, 0, MAX_TIMER)?),
                "connect_timeout" => timing.connect_timeout = Some(seconds(s, 0, MAX_TIMER)?),
                "retry" => timing.retry = Some(int(s, 0, 0, 1_000_000)? as u32),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => checkers.push(s),
                "SMTP_CHECK" | "DNS_CHECK" | "PING_CHECK" | "UDP_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    cx.report.not_translated(s.at(), d, "fo's service checks are tcp, http, https and exec (an exec check can run the same test)")
                }
                "inhibit_on_failure" => cx.report.approximated(s.at(), d, "fo keeps a failed backend's established flows and sends new ones elsewhere"),
                "delay_before_retry" | "warmup" => cx.report.approximated(s.at(), d, "fo retries a failed check at its interval"),
                "notify_up" | "notify_down" => cx.report.not_translated(s.at(), d, "no backend hooks in fo: watch fo_backend_up"),
                "uthreshold" | "lthreshold" => cx.report.not_translated(s.at(), d, "no connection thresholds in fo"),
                "lvs_method" => cx.report.not_translated(s.at(), d, "one forwarding mode per fo service"),
                "virtualhost" => rs_vhost = Some((need(s, 0, "a host name")?.to_owned(), s.at(), d)),
                "smtp_alert" | "alpha" => cx.report.approximated(s.at(), d, "no per-backend setting in fo"),
                _ => cx.report.not_translated(s.at(), d, "not a real_server keyword the importer knows"),
            }
        }
        let timing = timing.or(vs_timing);
        let mut this: Option<Checker> = None;
        for (i, c) in checkers.iter().enumerate() {
            if i > 0 {
                cx.report.not_translated(
                    c.at(),
                    format!("{rname} > {}", c.keyword()),
                    "fo runs one check per backend: the first checker is used",
                );
                continue;
            }
            let vhost = rs_vhost
                .as_ref()
                .or(vs_vhost.as_ref())
                .map(|v| v.0.as_str());
            let parent = Parent { timing, vhost };
            this = checker(cx, c, &rname, ip, rport, parent, vrrp.script_user.as_ref())?;
        }
        let https = |c: &Option<Checker>| {
            matches!(
                c.as_ref().map(|c| &c.kind),
                Some(ServiceCheckKind::Https { .. })
            )
        };
        if let Some((_, at, d)) = rs_vhost.take()
            && !https(&this)
        {
            cx.report
                .approximated(at, d, "no per-backend setting in fo");
        }
        match (&check, this) {
            (_, None) if checkers.is_empty() => unchecked.push((at, rname.clone())),
            (_, None) => {}
            (None, Some(c)) => {
                for (at, d, why) in &c.notes {
                    cx.report.approximated(*at, d.clone(), why.clone());
                }
                for (at, d, why) in &c.warnings {
                    cx.report.warning(*at, d.clone(), why.clone());
                }
                check = Some(c);
            }
            (Some(first), Some(c)) => {
                if !first.same(&c) {
                    cx.report.approximated(at, rname.clone(), "fo checks every backend of a service the same way: this real server's checker differs from the first one's, the first is used");
                }
            }
        }
        let bport = if mode == Mode::Dsr && rport != port {
            cx.report.ignored(at, rname.clone(), format!("direct routing cannot change the port: {port} is used (LVS DR ignores {rport} too)"));
            port
        } else {
            rport
        };
        if backends.iter().any(|b| b.address == ip && b.port == bport) {
            cx.report.ignored(at, rname, "listed twice");
            continue;
        }
        weights.push(weight);
        backends.push(Backend {
            address: ip,
            port: bport,
            weight: 0,
            name: None,
        });
    }
    if let Some((_, at, d)) = vs_vhost.take()
        && !https_checked(&check)
    {
        cx.report.not_translated(
            at,
            d,
            "fo's http checks send the backend's address as Host (an https check sends its `sni`)",
        );
    }
    if backends.is_empty() {
        cx.report.not_translated(
            v.at(),
            here,
            "no real_server fo can use: nothing to balance",
        );
        return Ok(None);
    }
    // Weights: LVS allows 0..=65535, fo 0..=1000: scale down keeping proportions.
    let max = weights.iter().copied().max().unwrap_or(1);
    let scale = max > FO_MAX_WEIGHT;
    for (b, w) in backends.iter_mut().zip(&weights) {
        b.weight = if scale {
            let s = (w * FO_MAX_WEIGHT).div_ceil(max);
            if *w > 0 { s.max(1) as u16 } else { 0 }
        } else {
            *w as u16
        };
    }
    if scale {
        cx.report.approximated(v.at(), here.clone(), format!("real server weights above {FO_MAX_WEIGHT} scaled down to fo's 0..=1000, keeping their proportions"));
    }
    if check.is_some() {
        for (at, rname) in unchecked {
            cx.report.approximated(
                at,
                rname,
                "has no checker (keepalived counts it always up); fo checks it like the others",
            );
        }
    }
    let hash = hash.unwrap_or_else(|| {
        cx.report.approximated(
            v.at(),
            here.clone(),
            "no lb_algo (LVS's default is wlc): hash = \"5-tuple\"",
        );
        Hash::FiveTuple
    });
    let commented = if mode == Mode::Nat {
        cx.report.not_translated(
            v.at(),
            here.clone(),
            format!("lb_kind NAT: fo's NAT needs an address of its own as the backends' source (router {router}: snat = [\"ADDRESS\"]); LVS NAT keeps the client's address and routes replies through the director. Written commented out"),
        );
        Some(format!(
            "lb_kind NAT: uncomment after adding `snat = [\"ADDRESS\"]` (an unused address of the segment) to router {router}"
        ))
    } else {
        None
    };
    Ok(Some(Service {
        from: cx.from(v),
        commented,
        name: None,
        vip,
        port,
        udp,
        mode,
        hash,
        check: check.map(|c| ServiceCheck {
            kind: c.kind,
            interval: c.interval,
            timeout: c.timeout,
            rise: 1,
            fall: c.fall,
        }),
        backends,
    }))
}
