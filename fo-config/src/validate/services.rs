//! The `[[service]]` tables: VIP, port, protocol, mode and hash, the backends, and the
//! service's own health check.

use std::collections::HashMap;
use std::net::IpAddr;

use toml::Spanned;
use toml::de::DeValue;

use crate::model::*;
use crate::raw::*;

use super::cx::family;
use super::{Cx, Routers, Span};

impl Cx<'_> {
    pub(super) fn services(
        &mut self,
        items: Vec<Spanned<DeValue<'_>>>,
        node: Option<&Node>,
        routers: &Routers,
    ) -> Vec<Service> {
        let max_services = node.map_or(Node::DEFAULT_MAX_SERVICES, |n| n.max_services) as usize;
        let max_backends = node.map_or(Node::DEFAULT_MAX_BACKENDS, |n| n.max_backends) as usize;
        let mut out = Vec::new();
        let mut keys: HashMap<(IpAddr, u16, Protocol), Span> = HashMap::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut total_backends = 0usize;
        for (i, item) in items.into_iter().enumerate() {
            let span = item.span();
            if i == max_services {
                self.err(
                    span.clone(),
                    format!(
                        "too many services: max_services = {max_services} (raise it in [node])"
                    ),
                );
            }
            let Some(raw) = self.de::<RawService>("[[service]]", item) else {
                continue;
            };
            let vip = match &raw.vip {
                Some(v) => self.ip(v, "vip").and_then(|ip| {
                    match routers.vip_owner.get(&ip) {
                        Some(r) => Some((ip, r.clone())),
                        None if routers.any_broken => None,
                        None => {
                            self.err(v.span(), format!("vip {ip} is not a VIP of any [[router]]: add it to a router's `vips`"));
                            None
                        }
                    }
                }),
                None => {
                    self.missing("vip", span.clone(), "[[service]] needs a `vip`");
                    None
                }
            };
            let port = match &raw.port {
                Some(p) => self.int(p, "port", 1, 65_535).map(|p| p as u16),
                None => {
                    self.missing("port", span.clone(), "[[service]] needs a `port`");
                    None
                }
            };
            let protocol = raw.protocol.unwrap_or_default();
            let mode = raw.mode.as_ref().map(|m| *m.get_ref()).unwrap_or_default();
            if let (Some(m), Some((ip, router))) = (&raw.mode, &vip)
                && mode == ForwardMode::Nat
            {
                if routers.bgp_vips.contains(ip) {
                    self.err(
                        m.span(),
                        format!("mode = \"nat\" is not supported on VIP {ip}: router {router:?} announces it over BGP from every node, and NAT flow state is not shared between nodes (use mode = \"dsr\")"),
                    );
                } else if let Some(id) = routers.vlan_of.get(router) {
                    self.err(
                        m.span(),
                        format!("mode = \"nat\" is not supported on VIP {ip}: router {router:?} is on vlan {id}, and the data plane's NAT sends untagged frames only (use mode = \"dsr\")"),
                    );
                } else {
                    let (v4, v6) = routers.with_snat.get(router).copied().unwrap_or_default();
                    if !v4 && !v6 {
                        self.err(
                            m.span(),
                            format!("mode = \"nat\" needs SNAT addresses: add `snat = [\"ADDRESS\"]` to router {router:?} (an {} address of its own that moves with the router)", family(*ip)),
                        );
                    } else if (ip.is_ipv6() && !v6) || (ip.is_ipv4() && !v4) {
                        self.err(
                            m.span(),
                            format!("mode = \"nat\" on the {} VIP {ip} needs an {} SNAT address: router {router:?} has only {} ones (add one to its `snat`)", family(*ip), family(*ip), if v6 { "IPv6" } else { "IPv4" }),
                        );
                    }
                }
            }
            if let (Some(m), Some((ip, router))) = (&raw.mode, &vip)
                && mode == ForwardMode::Tunnel
                && let Some(id) = routers.vlan_of.get(router)
            {
                self.err(
                    m.span(),
                    format!("mode = \"tunnel\" is not supported on VIP {ip}: router {router:?} is on vlan {id}, and the data plane's tunnel sends untagged frames only (use mode = \"dsr\")"),
                );
            }
            let mut duplicate = false;
            if let (Some((ip, _)), Some(port)) = (&vip, port) {
                let at = raw.port.as_ref().map_or(span.clone(), Spanned::span);
                if let Some(prev) = keys.get(&(*ip, port, protocol)) {
                    duplicate = true;
                    let line = self.line(prev);
                    self.err(
                        at,
                        format!(
                            "service {} is defined twice (first on line {line})",
                            default_service_name(*ip, port, protocol)
                        ),
                    );
                } else {
                    keys.insert((*ip, port, protocol), span.clone());
                }
            }
            let name = match (&raw.name, &vip, port) {
                (Some(n), _, _) => self.label(n, "service name").map(|s| (s, n.span())),
                // A defaulted name repeats only if the service does (reported above).
                (None, Some(_), Some(_)) if duplicate => None,
                (None, Some((ip, _)), Some(port)) => {
                    Some((default_service_name(*ip, port, protocol), span.clone()))
                }
                _ => None,
            };
            let name = name.and_then(|(name, at)| {
                if let Some(prev) = names.get(&name) {
                    let line = self.line(prev);
                    self.err(
                        at,
                        format!("duplicate service name {name:?} (first on line {line})"),
                    );
                    None
                } else {
                    names.insert(name.clone(), at);
                    Some(name)
                }
            });
            let tunnel = self.tunnel(&raw, mode, vip.as_ref().map(|v| v.0));
            let check = match &raw.check {
                Some(c) => self.service_check(c).map(Some),
                None => Some(None),
            };
            let backends = self.backends(
                &raw,
                &span,
                vip.as_ref().map(|v| v.0),
                port,
                mode,
                &mut total_backends,
                max_backends,
            );
            if let (
                Some(name),
                Some((vip, router)),
                Some(port),
                Some(check),
                Some(backends),
                Ok(tunnel),
            ) = (name, vip, port, check, backends, tunnel)
            {
                out.push(Service {
                    name,
                    vip,
                    port,
                    protocol,
                    mode,
                    hash: raw.hash.unwrap_or_default(),
                    router,
                    check,
                    backends,
                    tunnel,
                });
            }
        }
        out
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "service context shared with every backend"
    )]
    fn backends(
        &mut self,
        raw: &RawService,
        span: &Span,
        vip: Option<IpAddr>,
        service_port: Option<u16>,
        mode: ForwardMode,
        total: &mut usize,
        max_backends: usize,
    ) -> Option<Vec<Backend>> {
        let list = self.required_list(
            &raw.backends,
            "backends",
            span,
            "[[service]] needs `backends` (at least one)",
        )?;
        let mut ok = true;
        let mut out: Vec<Backend> = Vec::new();
        let mut seen: HashMap<(IpAddr, u16), Span> = HashMap::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        for b in list {
            *total += 1;
            if *total == max_backends + 1 {
                self.err(b.span(), format!("too many backends in all services: max_backends = {max_backends} (raise it in [node])"));
                ok = false;
            }
            let rb = b.get_ref();
            let address = match &rb.address {
                Some(a) => self
                    .unicast_ip(a, "backend address")
                    .and_then(|ip| match vip {
                        Some(v) if family(v) != family(ip) => {
                            self.err(
                                a.span(),
                                format!(
                                    "backend {ip} is {} but the service VIP {v} is {}",
                                    family(ip),
                                    family(v)
                                ),
                            );
                            None
                        }
                        Some(v) if v == ip => {
                            self.err(a.span(), format!("backend {ip} is the service VIP itself"));
                            None
                        }
                        _ => Some(ip),
                    }),
                None => {
                    self.missing("address", b.span(), "a backend needs an `address`");
                    None
                }
            };
            let port = match (&rb.port, service_port) {
                (Some(p), _) => self.int(p, "backend port", 1, 65_535).map(|p| p as u16),
                (None, sp) => sp,
            };
            if let (true, Some(p), Some(port), Some(sp)) =
                (mode.direct_return(), &rb.port, port, service_port)
                && port != sp
                && !self.removed.contains("mode")
            {
                self.err(
                    p.span(),
                    format!("backend port {port} differs from the service port {sp}: {} cannot change ports (use mode = \"nat\")", if mode == ForwardMode::Tunnel { "a tunnel (direct server return)" } else { "direct server return" }),
                );
                ok = false;
            }
            let weight = self.opt_int(&rb.weight, "backend weight", 0, 1000, 1);
            let (Some(address), Some(port), Some(weight)) = (address, port, weight) else {
                ok = false;
                continue;
            };
            let at = rb.address.as_ref().map_or(b.span(), Spanned::span);
            if let Some(prev) = seen.get(&(address, port)) {
                let line = self.line(prev);
                self.err(
                    at,
                    format!(
                        "backend {} is listed twice in this service (first on line {line})",
                        default_backend_name(address, port)
                    ),
                );
                ok = false;
                continue;
            }
            seen.insert((address, port), at.clone());
            let name = match &rb.name {
                Some(n) => match self.label(n, "backend name") {
                    Some(s) => (s, n.span()),
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => (default_backend_name(address, port), at),
            };
            if let Some(prev) = names.get(&name.0) {
                let line = self.line(prev);
                self.err(
                    name.1,
                    format!(
                        "backend name {:?} is used twice in this service (first on line {line})",
                        name.0
                    ),
                );
                ok = false;
                continue;
            }
            names.insert(name.0.clone(), name.1);
            out.push(Backend {
                name: name.0,
                address,
                port,
                weight: weight as u16,
            });
        }
        ok.then_some(out)
    }

    fn service_check(&mut self, c: &Spanned<RawServiceCheck>) -> Option<ServiceCheck> {
        let raw = c.get_ref();
        let timing = self.timing(&raw.interval, &raw.timeout, &raw.rise, &raw.fall);
        self.no_https_key(&raw.https);
        let Some(tag) = raw.kind else {
            self.missing(
                "kind",
                c.span(),
                "a service check needs `kind`: tcp, http, https or exec",
            );
            return None;
        };
        let name = match tag {
            ServiceCheckTag::Tcp => "tcp",
            ServiceCheckTag::Http => "http",
            ServiceCheckTag::Https => "https",
            ServiceCheckTag::Exec => "exec",
        };
        let ctx = format!("service checks of kind {name}");
        let http = matches!(tag, ServiceCheckTag::Http | ServiceCheckTag::Https);
        if !http {
            self.not_for(raw.path.as_ref().map(Spanned::span), "path", &ctx);
            self.not_for(
                raw.expect_status.as_ref().map(Spanned::span),
                "expect_status",
                &ctx,
            );
            self.not_for(
                raw.expect_body.as_ref().map(Spanned::span),
                "expect_body",
                &ctx,
            );
        }
        if tag != ServiceCheckTag::Https {
            for (key, at) in raw.tls().written() {
                self.not_for(at, key, &ctx);
            }
        }
        if tag != ServiceCheckTag::Exec {
            self.not_for(raw.command.as_ref().map(Spanned::span), "command", &ctx);
            self.not_for(raw.user.as_ref().map(Spanned::span), "user", &ctx);
            self.not_for(raw.group.as_ref().map(Spanned::span), "group", &ctx);
        }
        let kind = match tag {
            ServiceCheckTag::Tcp => Some(ServiceCheckKind::Tcp),
            ServiceCheckTag::Http => self
                .http_get(&raw.path, &raw.expect_status, &raw.expect_body)
                .map(ServiceCheckKind::Http),
            ServiceCheckTag::Https => {
                let get = self.http_get(&raw.path, &raw.expect_status, &raw.expect_body);
                let tls = self.tls(&raw.tls());
                get.zip(tls)
                    .map(|(get, tls)| ServiceCheckKind::Https { get, tls })
            }
            ServiceCheckTag::Exec => match &raw.command {
                Some(cmd) => self
                    .exec(cmd, &raw.user, &raw.group)
                    .map(|(command, run_as, at)| ServiceCheckKind::Exec {
                        command,
                        run_as,
                        at,
                    }),
                None => {
                    self.missing(
                        "command",
                        c.span(),
                        "an exec check needs `command` = [program, args...]",
                    );
                    None
                }
            },
        };
        let (interval, timeout, rise, fall) = timing?;
        Some(ServiceCheck {
            kind: kind?,
            interval,
            timeout,
            rise,
            fall,
        })
    }
}

pub(crate) fn default_service_name(vip: IpAddr, port: u16, protocol: Protocol) -> String {
    format!(
        "{}/{}",
        std::net::SocketAddr::new(vip, port),
        protocol.as_str()
    )
}

pub(crate) fn default_backend_name(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}
