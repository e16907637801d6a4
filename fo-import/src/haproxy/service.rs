//! One backend's servers and checks into a service, and the addresses its `bind`
//! lines name.

use std::net::IpAddr;
use std::time::Duration;

use super::options::{Proxy, ServerOpts, opts};
use super::parse::{Line, Section};
use crate::keepalived::fit_timeout;
use crate::plan::{Backend, Hash, HttpsCheck, Mode, Service, ServiceCheck, ServiceCheckKind};
use crate::report::Report;
use crate::source::Loc;

/// The backend part of a service (VIP and port filled in per bind).
pub(super) fn service_of(
    r: &mut Report,
    sec: &Section,
    p: &Proxy,
    servers: &[&Line],
    server_verify: bool,
) -> Option<Service> {
    let label = sec.label();
    let hash = match &p.balance {
        Some((b, _)) if b == "source" => Hash::SourceIp,
        Some((b, at)) => {
            r.approximated(*at, format!("{label} > balance {b}"), "hash = \"5-tuple\": fo spreads connections by a weighted consistent hash (Maglev), not by this algorithm");
            Hash::FiveTuple
        }
        None => {
            r.approximated(
                sec.head.at,
                label.clone(),
                "no balance (HAProxy's default is roundrobin): hash = \"5-tuple\"",
            );
            Hash::FiveTuple
        }
    };
    let mut backends = Vec::new();
    let mut checked: Option<(ServerOpts, String)> = None;
    let mut any_unchecked = None;
    let mut tls_reported: Vec<(&str, Loc)> = Vec::new();
    for l in servers {
        let name = l.arg(0).unwrap_or("");
        let d = format!("{label} > server {name}");
        let Some(addr) = l.arg(1) else {
            r.not_translated(l.at, d, "no address");
            continue;
        };
        let mut o = p.default_server.clone();
        o.check = false;
        let default_check = p.default_server.check;
        opts(r, &l.words[3.min(l.words.len())..], l.at, &d, &mut o);
        o.check = o.check || (default_check && !l.words.iter().any(|w| w == "no-check"));
        if !(o.check && o.check_ssl && p.httpchk.is_some()) {
            // No https check uses them: they are HAProxy's own TLS to the server, or
            // a handshake-only check's, which fo runs as a TCP connect.
            let why = if o.check && o.check_ssl {
                "a setting of HAProxy's TLS handshake check, which fo runs as a TCP connect"
            } else {
                "HAProxy's own TLS to the server (fo forwards the client's connection untouched)"
            };
            for (key, at) in o.tls_locs() {
                if !tls_reported.contains(&(key, at)) {
                    tls_reported.push((key, at));
                    r.not_translated(at, format!("{d} {key}"), why);
                }
            }
        }
        let Some((ip, port)) = server_address(addr) else {
            r.not_translated(
                l.at,
                d,
                format!("{addr}: fo needs an IP address (and optional port), not a name"),
            );
            continue;
        };
        if !crate::keepalived::unicast(ip) || port == Some(0) {
            r.not_translated(l.at, d, format!("{addr}: not a unicast address and port"));
            continue;
        }
        if backends
            .iter()
            .any(|b: &Backend| b.address == ip && b.port == port.unwrap_or(0))
        {
            r.ignored(l.at, d, "the same address and port as an earlier server");
            continue;
        }
        if o.backup {
            r.not_translated(l.at, d, "backup servers have no fo equivalent (with every backend down fo forwards to all of them)");
            continue;
        }
        let mut weight = o.weight.unwrap_or(1).min(1000) as u16;
        if o.disabled {
            weight = 0;
            r.approximated(
                l.at,
                d.clone(),
                "disabled: weight 0 (drained: no new connections; established ones stay)",
            );
        }
        if o.check {
            if let Some(port) = o.check_port
                && Some(port) != port_or_zero(addr)
            {
                r.not_translated(
                    l.at,
                    d.clone(),
                    format!("check port {port}: fo checks each backend on its own port"),
                );
            }
            match &checked {
                None => checked = Some((o.clone(), d.clone())),
                Some((first, _)) => {
                    if first.inter != o.inter
                        || first.rise != o.rise
                        || first.fall != o.fall
                        || (first.check_ssl, first.tls_key()) != (o.check_ssl, o.tls_key())
                    {
                        r.approximated(l.at, d.clone(), "fo checks every backend of a service the same way: the first server's inter/rise/fall and TLS settings are used");
                    }
                }
            }
        } else {
            any_unchecked = Some((l.at, d.clone()));
        }
        backends.push(Backend {
            address: ip,
            port: port.unwrap_or(0),
            weight,
            name: Some(name.to_owned()),
        });
    }
    if backends.is_empty() {
        r.not_translated(
            sec.head.at,
            label,
            "no server fo can use: nothing to balance",
        );
        return None;
    }
    let check = checked.map(|(o, first_server)| {
        let interval = o
            .inter
            .unwrap_or(Duration::from_secs(2))
            .max(Duration::from_millis(10));
        let (timeout, adjusted) = fit_timeout(p.timeout_check.unwrap_or(interval), interval);
        if adjusted && p.timeout_check.is_some() {
            r.approximated(
                sec.head.at,
                format!("{label} > timeout check"),
                format!(
                    "fo needs timeout < interval: {}",
                    fo_config::format_duration(timeout)
                ),
            );
        }
        let kind = if let Some((path, at)) = &p.httpchk {
            if p.expect_status.is_none() {
                r.approximated(
                    *at,
                    format!("{label} > option httpchk"),
                    "HAProxy accepts any 2xx or 3xx; fo expects 200",
                );
            }
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            let expect_status = p.expect_status.into_iter().collect();
            if o.check_ssl {
                ServiceCheckKind::Https {
                    path,
                    expect_status,
                    tls: https_check(r, &first_server, &o, server_verify),
                }
            } else {
                ServiceCheckKind::Http {
                    path,
                    expect_status,
                }
            }
        } else {
            if o.check_ssl && p.other_check.is_none() {
                r.approximated(
                    sec.head.at,
                    format!("{label} > check-ssl"),
                    "without option httpchk HAProxy checks a TLS handshake; fo checks a TCP connect (an https check would also need an HTTP answer)",
                );
            }
            if let Some((name, at)) = &p.other_check {
                r.approximated(
                    *at,
                    format!("{label} > option {name}"),
                    "fo checks with a TCP connect instead (an exec check can run the same test)",
                );
            }
            ServiceCheckKind::Tcp
        };
        ServiceCheck {
            kind,
            interval,
            timeout,
            rise: o.rise.unwrap_or(2).clamp(1, 100),
            fall: o.fall.unwrap_or(3).clamp(1, 100),
        }
    });
    if check.is_some()
        && let Some((at, d)) = any_unchecked
    {
        r.approximated(
            at,
            d,
            "has no `check` (HAProxy counts it always up); fo checks it like the others",
        );
    }
    Some(Service {
        from: String::new(),
        commented: None,
        name: None,
        vip: IpAddr::from([0, 0, 0, 0]),
        port: 0,
        udp: false,
        mode: Mode::Dsr,
        hash,
        check,
        backends,
    })
}

/// The TLS keys of a `check-ssl` http check from the server's settings. HAProxy
/// verifies the server's certificate unless `verify none` (or `ssl-server-verify none`
/// in global): against `ca-file`, and its name against `verifyhost`, else the
/// `check-sni` name, else not at all. fo verifies the name it sends as `sni`, else
/// the backend's address.
pub(super) fn https_check(
    r: &mut Report,
    server: &str,
    o: &ServerOpts,
    server_verify: bool,
) -> HttpsCheck {
    let d = |k: &str| format!("{server} {k}");
    let verify = o.verify.as_ref().map_or(server_verify, |v| v.0);
    let mut tls = HttpsCheck::default();
    let sni = |r: &mut Report, name: &str, at: Loc, key: &str| {
        if crate::plan::sni_accepted(name) {
            Some(name.to_owned())
        } else {
            r.not_translated(
                at,
                d(key),
                format!("{name:?} is not a DNS name or address fo can send as `sni`"),
            );
            None
        }
    };
    tls.sni = o
        .check_sni
        .as_ref()
        .and_then(|(n, at)| sni(r, n, *at, "check-sni"));
    if !verify {
        tls.insecure = true;
        if let Some((_, at)) = &o.ca_file {
            r.ignored(*at, d("ca-file"), "verify none: HAProxy verifies nothing with it, and fo's insecure = true takes no `ca`");
        }
        if let Some((_, at)) = &o.verifyhost {
            r.ignored(*at, d("verifyhost"), "verify none: no name is verified");
        }
        return tls;
    }
    match &o.ca_file {
        Some((f, _)) if f == "@system-ca" => {}
        Some((f, _)) if f.starts_with('/') => tls.ca = Some(f.clone()),
        Some((f, at)) => r.not_translated(*at, d("ca-file"), format!("{f}: fo needs an absolute path; the check uses the system store until `ca` is written")),
        None => {}
    }
    match (&o.verifyhost, &tls.sni) {
        (Some((h, _)), Some(s)) if h == s => {}
        (Some((h, at)), Some(s)) => r.approximated(
            *at,
            d("verifyhost"),
            format!("fo verifies the name it sends ({s}), not {h}"),
        ),
        (Some((h, at)), None) => {
            tls.sni = sni(r, h, *at, "verifyhost");
            if tls.sni.is_some() {
                r.approximated(
                    *at,
                    d("verifyhost"),
                    format!("sni = {h:?}: fo sends the name it verifies as SNI and Host"),
                );
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            let at = o
                .ca_file
                .as_ref()
                .map_or(o.verify.as_ref().map(|v| v.1), |c| Some(c.1));
            if let Some(at) = at {
                r.approximated(at, d("verify"), "HAProxy verifies the certificate's chain but no name here; fo verifies the name too, the backend's address: set `sni` to the name the certificates hold");
            }
        }
    }
    tls
}

pub(super) fn port_or_zero(addr: &str) -> Option<u16> {
    server_address(addr).and_then(|(_, p)| p)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `2001:db8::1` (HAProxy also takes
/// `ipv6@`, `ipv4@`).
pub(super) fn server_address(a: &str) -> Option<(IpAddr, Option<u16>)> {
    let a = a
        .strip_prefix("ipv4@")
        .or_else(|| a.strip_prefix("ipv6@"))
        .unwrap_or(a);
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Some(rest) = a.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        return Some((ip.parse().ok()?, Some(port.parse().ok()?)));
    }
    let (ip, port) = a.rsplit_once(':')?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// The VIP:port pairs of a `bind` line.
pub(super) fn bind_addresses(
    r: &mut Report,
    l: &Line,
    label: &str,
    vips: &[(IpAddr, String)],
) -> Vec<(IpAddr, u16)> {
    let d = format!("{label} > bind");
    let mut out = Vec::new();
    let Some(spec) = l.arg(0) else {
        r.not_translated(l.at, d, "bind without an address");
        return out;
    };
    if l.words.len() > 2 {
        r.ignored(
            l.at,
            d.clone(),
            format!(
                "bind options ({}) concern the proxy's socket",
                l.words[2..].join(" ")
            ),
        );
    }
    for part in spec.split(',') {
        let part = part
            .strip_prefix("ipv4@")
            .or_else(|| part.strip_prefix("ipv6@"))
            .unwrap_or(part);
        let Some((host, port)) = part.rsplit_once(':') else {
            r.not_translated(l.at, d.clone(), format!("{part}: no port"));
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            r.not_translated(
                l.at,
                d.clone(),
                format!("{part}: port ranges have no fo equivalent (one service per port)"),
            );
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host {
            "" | "*" | "0.0.0.0" | "::" => {
                let all: Vec<IpAddr> = vips
                    .iter()
                    .map(|(v, _)| *v)
                    .filter(|v| host != "0.0.0.0" || v.is_ipv4())
                    .collect();
                if all.is_empty() {
                    r.not_translated(l.at, d.clone(), format!("{part}: no imported VIP to serve it on"));
                } else {
                    r.approximated(l.at, d.clone(), format!("{part} listens on every address: one service per VIP ({})", all.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")));
                    out.extend(all.into_iter().map(|v| (v, port)));
                }
            }
            h => match h.parse::<IpAddr>() {
                Ok(ip) if vips.iter().any(|(v, _)| *v == ip) => out.push((ip, port)),
                Ok(ip) => r.not_translated(l.at, d.clone(), format!("{ip} is no VIP of an imported vrrp_instance: fo serves services on a router's VIP")),
                Err(_) => r.not_translated(l.at, d.clone(), format!("{h}: not an IP address")),
            },
        }
    }
    out
}
