//! The `[[router]]` tables: names, VIPs, SNAT addresses, ownership, gates and hooks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use crate::model::*;
use crate::raw::*;

use super::cx::{family, str_field, str_list_field};
use super::vrrp::RouterTable;
use super::{Checks, Cx, Routers, Span};

/// Most SNAT addresses per router (the data plane's `NAT_MAX_SNAT`).
const SNAT_MAX: usize = fo_common::NAT_MAX_SNAT;

/// Most VIP and SNAT addresses in all routers: the data plane's `VIPS` map holds one
/// entry each, and its size is fixed when the program is built.
const ADDRESSES_MAX: usize = fo_common::VIPS_CAPACITY as usize;

impl Cx<'_> {
    pub(super) fn routers(&mut self, items: Vec<Spanned<DeValue<'_>>>, checks: &Checks) -> Routers {
        let mut out = Routers {
            resolved: Vec::new(),
            vip_owner: HashMap::new(),
            bgp_vips: HashSet::new(),
            with_snat: HashMap::new(),
            vlan_of: HashMap::new(),
            any_broken: false,
        };
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut vrids: HashMap<u8, (String, Span)> = HashMap::new();
        let mut vip_first: HashMap<IpAddr, (String, Span)> = HashMap::new();
        for item in items {
            let span = item.span();
            let written_name = str_field(item.get_ref(), "name").unwrap_or_default();
            let written_vips = str_list_field(item.get_ref(), "vips");
            let written_snat = str_list_field(item.get_ref(), "snat");
            if !written_snat.is_empty() {
                let families = out.with_snat.entry(written_name.clone()).or_default();
                for a in written_snat {
                    match a.trim().parse::<IpAddr>() {
                        Ok(IpAddr::V6(_)) => families.1 = true,
                        // A broken address counts as IPv4, so it is not also reported
                        // as missing.
                        _ => families.0 = true,
                    }
                }
            }
            let raw = self.de::<RawRouter>("[[router]]", item);
            if raw.is_none() || !self.removed.is_empty() {
                // Services may still name this router's VIPs: take them as written.
                out.any_broken |= written_vips.is_empty();
                for v in written_vips {
                    if let Ok(ip) = v.trim().parse() {
                        out.vip_owner
                            .entry(ip)
                            .or_insert_with(|| written_name.clone());
                    }
                }
            }
            let Some(raw) = raw else { continue };
            let name = self.name(&raw.name, "router", &span, &mut names);
            let label = raw
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_default();

            let vips = self
                .required_list(
                    &raw.vips,
                    "vips",
                    &span,
                    "[[router]] needs `vips` (at least one address)",
                )
                .and_then(|list| self.vips(list, &label, &mut vip_first, &mut out.vip_owner));
            let ownership = self.ownership(RouterTable {
                raw: &raw,
                span: &span,
                vips: vips.as_deref(),
                vrids: &mut vrids,
                name: &label,
                checks,
            });
            let snat = self.snat(&raw, &label, &mut vip_first);
            let vlan = self.vlan(&raw);
            if let Some(Some(id)) = vlan {
                out.vlan_of.insert(label.clone(), id);
            }
            let gates = self.gates(&raw, checks);
            let hooks = self.hooks(&raw);
            if let (
                Some(name),
                Some(vips),
                Some(snat),
                Some(vlan),
                Some(ownership),
                Some(gates),
                Some(hooks),
            ) = (name, vips, snat, vlan, ownership, gates, hooks)
            {
                if matches!(ownership, Ownership::Bgp(_)) {
                    out.bgp_vips.extend(vips.iter().copied());
                }
                out.resolved.push(Router {
                    name,
                    ownership,
                    vips,
                    snat,
                    vlan,
                    gates,
                    hooks,
                });
            }
        }
        out
    }

    /// The router's VIPs: unicast, of one address family, each written once in all
    /// routers (`first` holds each address with its router and place, `owner` with its
    /// router).
    fn vips(
        &mut self,
        list: &[Spanned<String>],
        router: &str,
        first: &mut HashMap<IpAddr, (String, Span)>,
        owner: &mut HashMap<IpAddr, String>,
    ) -> Option<Vec<IpAddr>> {
        let mut ok = true;
        let mut out = Vec::new();
        for v in list {
            let Some(ip) = self.unicast_ip(v, "VIP") else {
                ok = false;
                continue;
            };
            if let Some((other, at)) = first.get(&ip) {
                let line = self.line(at);
                let msg = if other == router {
                    format!("VIP {ip} is listed twice (first on line {line})")
                } else {
                    format!("VIP {ip} already belongs to router {other:?} (line {line})")
                };
                self.err(v.span(), msg);
                ok = false;
                continue;
            }
            first.insert(ip, (router.to_owned(), v.span()));
            self.address_capacity(first.len(), v.span());
            owner.insert(ip, router.to_owned());
            if let Some(&f) = out.first()
                && family(f) != family(ip)
            {
                self.err(
                    v.span(),
                    format!("VIP {ip} is {} but the router's first VIP {f} is {}: one router, one address family", family(ip), family(f)),
                );
                ok = false;
                continue;
            }
            out.push(ip);
        }
        ok.then_some(out)
    }

    /// `vlan`: an 802.1Q VLAN identifier (1..=4094; 0 and 4095 are reserved), and no
    /// `snat` beside it (NAT sends untagged frames only). `Some(None)`: not written.
    fn vlan(&mut self, raw: &RawRouter) -> Option<Option<u16>> {
        let Some(v) = &raw.vlan else {
            return Some(None);
        };
        let id = self.int(v, "vlan", 1, 4094)? as u16;
        if let Some(s) = &raw.snat {
            self.err(
                s.span(),
                format!("snat on a router with vlan = {id}: NAT is not supported on a VLAN (the data plane's NAT sends untagged frames only); use mode = \"dsr\" services"),
            );
            return None;
        }
        Some(Some(id))
    }

    /// `snat`: unicast (IPv4 for IPv4 NAT services, IPv6 for NAT66 ones), at most
    /// `NAT_MAX_SNAT`, no address used twice (as a VIP or as another router's SNAT
    /// address).
    fn snat(
        &mut self,
        raw: &RawRouter,
        router: &str,
        first: &mut HashMap<IpAddr, (String, Span)>,
    ) -> Option<Vec<IpAddr>> {
        let Some(list) = &raw.snat else {
            return Some(Vec::new());
        };
        let mut ok = true;
        if list.get_ref().len() > SNAT_MAX {
            self.err(
                list.span(),
                format!(
                    "snat lists {} addresses: at most {SNAT_MAX}",
                    list.get_ref().len()
                ),
            );
            ok = false;
        }
        let mut out = Vec::new();
        for v in list.get_ref() {
            let Some(ip) = self.unicast_ip(v, "snat address") else {
                ok = false;
                continue;
            };
            if let Some((other, at)) = first.get(&ip) {
                let line = self.line(at);
                self.err(
                    v.span(),
                    format!("snat address {ip} is already used by router {other:?} (line {line}): a SNAT address must be an address of its own"),
                );
                ok = false;
                continue;
            }
            first.insert(ip, (router.to_owned(), v.span()));
            self.address_capacity(first.len(), v.span());
            out.push(ip);
        }
        ok.then_some(out)
    }

    /// The `n`th VIP or SNAT address of the config, written at `at`: the first one
    /// past what the data plane's `VIPS` map holds is an error (once).
    fn address_capacity(&mut self, n: usize, at: Span) {
        if n == ADDRESSES_MAX + 1 {
            self.err(
                at,
                format!("too many addresses: the data plane holds {ADDRESSES_MAX} VIP and SNAT addresses in all routers, and this is address {n}"),
            );
        }
    }

    fn ownership(&mut self, table: RouterTable<'_>) -> Option<Ownership> {
        let (raw, span) = (table.raw, table.span);
        if self.removed.contains("ownership") {
            return None;
        }
        let kind = raw
            .ownership
            .as_ref()
            .map(|o| *o.get_ref())
            .unwrap_or_default();
        let kind_name = match kind {
            OwnershipKind::Vrrp => "vrrp",
            OwnershipKind::Bgp => "bgp",
            OwnershipKind::Static => "static",
        };
        if kind != OwnershipKind::Vrrp {
            let ctx = format!("ownership = \"{kind_name}\" (only to \"vrrp\")");
            for (key, at) in raw.vrrp_keys() {
                self.not_for(at, key, &ctx);
            }
        }
        if kind != OwnershipKind::Bgp
            && let Some(b) = &raw.bgp
        {
            self.err(
                b.span(),
                format!(
                    "`bgp` only applies to ownership = \"bgp\" (this router is \"{kind_name}\")"
                ),
            );
        }
        match kind {
            OwnershipKind::Static => Some(Ownership::Static),
            OwnershipKind::Bgp => {
                let Some(b) = &raw.bgp else {
                    let at = raw.ownership.as_ref().map_or(span.clone(), Spanned::span);
                    self.missing("bgp", at, "ownership = \"bgp\" needs `bgp = { daemon = \"bird\" | \"frr\", control = \"/path/to/socket\" }`");
                    return None;
                };
                let daemon = b.get_ref().daemon;
                if daemon.is_none() {
                    self.missing(
                        "daemon",
                        b.span(),
                        "bgp needs `daemon` (\"bird\" or \"frr\")",
                    );
                }
                let control = match &b.get_ref().control {
                    Some(c) => self.abs_path(c, "bgp control"),
                    None => {
                        self.missing(
                            "control",
                            b.span(),
                            "bgp needs `control` (the routing daemon's control socket)",
                        );
                        None
                    }
                };
                Some(Ownership::Bgp(Bgp {
                    daemon: daemon?,
                    control: control?,
                    bfd: b.get_ref().bfd.unwrap_or(false),
                }))
            }
            OwnershipKind::Vrrp => self.vrrp(table).map(Ownership::Vrrp),
        }
    }

    pub(super) fn check_ref(
        &mut self,
        c: &Spanned<String>,
        checks: &Checks,
        what: &str,
    ) -> Option<String> {
        if checks.names.contains(c.get_ref()) {
            Some(c.get_ref().clone())
        } else {
            self.err(
                c.span(),
                format!(
                    "{what} names check {:?}, but there is no [[check]] with that name",
                    c.get_ref()
                ),
            );
            None
        }
    }

    fn gates(&mut self, raw: &RawRouter, checks: &Checks) -> Option<Vec<String>> {
        let Some(list) = &raw.gates else {
            return Some(Vec::new());
        };
        self.unique_list(
            list.get_ref(),
            |cx, g| cx.check_ref(g, checks, "gate"),
            |name| format!("gate {name:?} is listed twice"),
        )
    }

    fn hooks(&mut self, raw: &RawRouter) -> Option<Hooks> {
        let Some(h) = &raw.hooks else {
            return Some(Hooks::default());
        };
        let command = |cx: &mut Self, v: &Option<Spanned<RawCommand>>, what: &str| match v {
            Some(c) => cx.hook_command(c, what).map(Some),
            None => Some(None),
        };
        let master = command(self, &h.master, "hooks.master");
        let backup = command(self, &h.backup, "hooks.backup");
        let fault = command(self, &h.fault, "hooks.fault");
        let stop = command(self, &h.stop, "hooks.stop");
        let notify = command(self, &h.notify, "hooks.notify");
        let timeout = match &h.timeout {
            Some(t) => self.positive(t, "hooks.timeout"),
            None => Some(Hooks::DEFAULT_TIMEOUT),
        };
        let run_as = self.run_as(&h.user, &h.group);
        Some(Hooks {
            master: master?,
            backup: backup?,
            fault: fault?,
            stop: stop?,
            notify: notify?,
            timeout: timeout?,
            run_as: run_as?,
        })
    }

    /// A hook: an absolute path, or `[absolute path, args...]`.
    fn hook_command(&mut self, c: &Spanned<RawCommand>, what: &str) -> Option<HookCommand> {
        let (program, args) = match c.get_ref() {
            RawCommand::Path(p) => (p.clone(), Vec::new()),
            RawCommand::Argv(v) => match v.split_first() {
                Some((p, rest)) => (p.clone(), rest.to_vec()),
                None => {
                    self.err(c.span(), format!("{what} must not be an empty array"));
                    return None;
                }
            },
        };
        let program = self.abs_path(&Spanned::new(c.span(), PathBuf::from(program)), what)?;
        let (line, col) = self.idx.position(c.span().start);
        Some(HookCommand {
            program,
            args,
            at: Position { line, col },
        })
    }
}
