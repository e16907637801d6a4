//! haproxy.cfg (`mode tcp`) into `[[service]]`s on the imported routers' VIPs.
//!
//! A frontend's `bind VIP:PORT` and its `default_backend`'s `server` lines (or a
//! `listen` section's own) become a service: address, port and weight per server,
//! `check` with `inter`/`rise`/`fall` as the service check (`option httpchk` makes it
//! an http check), `disabled` a drained backend (weight 0), `backup` servers left
//! out. `balance source` is `hash = "source-ip"`; other algorithms become `5-tuple`
//! (reported). HTTP-mode proxies are reported, not translated.
//!
//! The grammar (HAProxy 2.6's, from its configuration manual): a section starts with
//! `global`, `defaults`, `frontend`, `backend`, `listen`, ... at any indentation;
//! `#` outside quotes starts a comment; words are split on blanks, `"..."` quotes
//! with backslash escapes, `'...'` quotes without, `\` escapes outside quotes.
//!
//! Parts: `parse` (the grammar), `options` (server options and proxy settings),
//! `service` (a backend into a service, bind addresses); this module joins them.

mod options;
mod parse;
mod service;

pub use parse::{Line, Section, parse, time};

use std::collections::HashMap;
use std::net::IpAddr;

use crate::plan::Plan;
use crate::report::Report;
use crate::source::Files;
use options::{Proxy, proxy_lines};
use service::{bind_addresses, service_of};

/// Translate haproxy.cfg sections into services on the plan's VIPs.
pub fn translate(secs: &[Section], plan: &mut Plan, files: &Files, r: &mut Report) {
    let _ = files;
    let vips: Vec<(IpAddr, String)> = plan
        .routers
        .iter()
        .flat_map(|ro| ro.vips.iter().map(|v| (*v, ro.name.clone())))
        .collect();
    let mut defaults = Proxy::default();
    // Backends by name, with the defaults in force where they were written.
    let mut backends: HashMap<&str, (&Section, Proxy)> = HashMap::new();
    let mut current = Proxy::default();
    let mut fronts: Vec<(&Section, Proxy)> = Vec::new();
    let mut server_verify = true;
    for sec in secs {
        match sec.kind() {
            "defaults" => {
                let mut d = Proxy::default();
                let (servers, front) = proxy_lines(r, sec, &mut d);
                for l in servers.into_iter().chain(front) {
                    r.not_translated(
                        l.at,
                        format!("{} > {}", sec.label(), l.kw()),
                        "not allowed in defaults",
                    );
                }
                defaults = d;
                current = defaults.clone();
            }
            "backend" => {
                backends.insert(sec.name(), (sec, current.clone()));
            }
            "frontend" | "listen" => fronts.push((sec, current.clone())),
            "global" => {
                for l in &sec.lines {
                    if l.kw() == "ssl-server-verify" {
                        // The default of `verify` on server lines (check-ssl checks).
                        server_verify = l.arg(0) != Some("none");
                        continue;
                    }
                    r.ignored(
                        l.at,
                        format!("global > {}", l.kw()),
                        "HAProxy process setting",
                    );
                }
            }
            _ => {
                r.not_translated(sec.head.at, sec.label(), "no equivalent in fo");
            }
        }
    }
    let _ = defaults;
    let mut used: Vec<&str> = Vec::new();
    for (sec, base) in fronts {
        let mut fp = base.clone();
        let (own_servers, front) = proxy_lines(r, sec, &mut fp);
        let label = sec.label();
        let mode = fp.mode.clone().map_or("tcp".to_owned(), |m| m.0);
        if mode != "tcp" {
            r.not_translated(
                sec.head.at,
                label,
                format!("mode {mode}: fo balances at layer 4 (TCP/UDP) and does not proxy HTTP"),
            );
            continue;
        }
        // The servers: a listen section's own, or the default backend's.
        let mut servers_from: Option<(&Section, Proxy, Vec<&Line>)> = None;
        if sec.kind() == "listen" {
            servers_from = Some((sec, fp.clone(), own_servers));
        }
        let mut binds: Vec<&Line> = Vec::new();
        for l in front {
            match l.kw() {
                "bind" => binds.push(l),
                "default_backend" => {
                    let Some(name) = l.arg(0) else { continue };
                    match backends.get(name) {
                        Some((b, bp)) => {
                            let mut bp = bp.clone();
                            let (servers, stray) = proxy_lines(r, b, &mut bp);
                            for s in stray {
                                r.not_translated(s.at, format!("{} > {}", b.label(), s.kw()), "not allowed in a backend");
                            }
                            let bmode = bp.mode.clone().map_or("tcp".to_owned(), |m| m.0);
                            if bmode != "tcp" {
                                r.not_translated(b.head.at, b.label(), format!("mode {bmode}: fo does not proxy HTTP"));
                                continue;
                            }
                            used.push(b.name());
                            servers_from = Some((b, bp, servers));
                        }
                        None => r.not_translated(l.at, format!("{label} > default_backend"), format!("no backend {name}")),
                    }
                }
                _ => r.not_translated(l.at, format!("{label} > {}", l.kw()), "rules choosing backends per connection have no fo equivalent: a service has one backend set"),
            }
        }
        let Some((bsec, bp, servers)) = servers_from else {
            r.not_translated(sec.head.at, label, "no backend servers: nothing to balance");
            continue;
        };
        let Some(svc) = service_of(r, bsec, &bp, &servers, server_verify) else {
            continue;
        };
        for b in binds {
            for (vip, port) in bind_addresses(r, b, &label, &vips) {
                if port == 0 {
                    r.not_translated(b.at, format!("{label} > bind"), "port 0");
                    continue;
                }
                let active = plan
                    .services
                    .iter()
                    .filter(|o| o.commented.is_none())
                    .count();
                if active >= crate::keepalived::MAX_SERVICES {
                    r.not_translated(
                        b.at,
                        format!("{label} > bind"),
                        "more than 64 services: raise [node] max_services and translate it by hand",
                    );
                    continue;
                }
                if plan
                    .services
                    .iter()
                    .any(|s| s.vip == vip && s.port == port && !s.udp)
                {
                    r.not_translated(b.at, format!("{label} > bind"), format!("{vip}:{port}/tcp is already a service (from keepalived's virtual_server)"));
                    continue;
                }
                let mut s = svc.clone();
                s.vip = vip;
                s.port = port;
                s.from = format!("from {} {label}", files.at(sec.head.at));
                s.name = Some(if sec.kind() == "listen" {
                    sec.name().to_owned()
                } else {
                    format!("{}-{port}", sec.name())
                });
                if plan.services.iter().any(|o| o.name == s.name) {
                    s.name = Some(format!("{}-{vip}-{port}", sec.name()));
                }
                for be in &mut s.backends {
                    if be.port == 0 {
                        be.port = port;
                    }
                }
                plan.services.push(s);
            }
        }
    }
    for (name, (b, _)) in &backends {
        if !used.contains(name) {
            r.ignored(b.head.at, b.label(), "used by no translated frontend");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::service::server_address;
    use super::*;

    #[test]
    fn times_and_addresses() {
        assert_eq!(time("2s"), Some(Duration::from_secs(2)));
        assert_eq!(time("500"), Some(Duration::from_millis(500)));
        assert_eq!(time("1m"), Some(Duration::from_secs(60)));
        assert_eq!(time("x"), None);
        assert_eq!(
            server_address("10.0.0.1:80"),
            Some(("10.0.0.1".parse().unwrap(), Some(80)))
        );
        assert_eq!(
            server_address("[2001:db8::1]:80"),
            Some(("2001:db8::1".parse().unwrap(), Some(80)))
        );
        assert_eq!(server_address("web1.example:80"), None);
    }
}
