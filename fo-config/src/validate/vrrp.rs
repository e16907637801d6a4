//! A router's `ownership = "vrrp"` keys: VRID, priority, version and interval,
//! preemption, authentication, witness, peers and tracked checks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use toml::Spanned;

use crate::model::*;
use crate::raw::*;

use super::cx::family;
use super::{Checks, Cx, Span};

/// One `[[router]]` table as its ownership and VRRP keys are read.
pub(super) struct RouterTable<'r> {
    pub raw: &'r RawRouter,
    /// The whole table: where a missing key is reported.
    pub span: &'r Span,
    /// Its VIPs, when they are valid.
    pub vips: Option<&'r [IpAddr]>,
    /// The VRIDs taken so far on the interface, with the router and the place.
    pub vrids: &'r mut HashMap<u8, (String, Span)>,
    /// The router's name as written (for messages).
    pub name: &'r str,
    pub checks: &'r Checks,
}

impl Cx<'_> {
    pub(super) fn vrrp(&mut self, table: RouterTable<'_>) -> Option<Vrrp> {
        let RouterTable {
            raw,
            span,
            vips,
            vrids,
            name: router,
            checks,
        } = table;
        let vrid = match &raw.vrid {
            Some(v) => {
                let n = self.int(v, "vrid", 1, 255).map(|n| n as u8);
                if let Some(n) = n {
                    if let Some((other, at)) = vrids.get(&n) {
                        let line = self.line(at);
                        self.err(v.span(), format!("vrid {n} is already used by router {other:?} (line {line}) on this interface"));
                    } else {
                        vrids.insert(n, (router.to_owned(), v.span()));
                    }
                }
                n
            }
            None => {
                self.missing(
                    "vrid",
                    span.clone(),
                    "a VRRP router needs a `vrid` (1..=255, unique on the interface)",
                );
                None
            }
        };
        let priority = self.opt_int(&raw.priority, "priority", 1, 255, 100);
        let version = match &raw.version {
            None => Some(VrrpVersion::V3),
            Some(v) => match v.get_ref() {
                3 => Some(VrrpVersion::V3),
                2 => Some(VrrpVersion::V2),
                n => {
                    self.err(v.span(), format!("version must be 3 or 2, got {n}"));
                    None
                }
            },
        };
        let advert_interval = match (&raw.advert_interval, version) {
            (None, _) => Some(Duration::from_secs(1)),
            (Some(v), Some(VrrpVersion::V3)) => {
                let d = v.get_ref().get();
                let ms = d.as_millis();
                if d.as_nanos() % 10_000_000 != 0 || !(10..=40_950).contains(&ms) {
                    self.err(v.span(), format!("advert_interval {} must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)", v.get_ref()));
                    None
                } else {
                    Some(d)
                }
            }
            (Some(v), Some(VrrpVersion::V2)) => {
                let d = v.get_ref().get();
                if d.subsec_nanos() != 0 || !(1..=255).contains(&d.as_secs()) {
                    self.err(v.span(), format!("advert_interval {} must be whole seconds between 1s and 255s in VRRP version 2", v.get_ref()));
                    None
                } else {
                    Some(d)
                }
            }
            (Some(_), None) => None,
        };
        let preempt = raw.preempt.as_ref().is_none_or(|p| *p.get_ref());
        let preempt_delay = raw
            .preempt_delay
            .as_ref()
            .map_or(Duration::ZERO, |d| d.get_ref().get());
        if let Some(d) = &raw.preempt_delay
            && !preempt
        {
            self.err(d.span(), "preempt_delay has no effect with preempt = false");
        }

        let mut ok = true;
        if version == Some(VrrpVersion::V2)
            && let (Some(list), Some(vips)) = (&raw.vips, vips)
            && vips.first().is_some_and(IpAddr::is_ipv6)
        {
            self.err(
                list.span(),
                "VRRP version 2 carries IPv4 VIPs only: use version = 3 for IPv6",
            );
            ok = false;
        }
        let auth_pass = match &raw.auth_pass {
            None => None,
            Some(p) => {
                let len = p.get_ref().len();
                if self.refuse_in(
                    version,
                    VrrpVersion::V3,
                    p.span(),
                    "auth_pass only exists in VRRP version 2 (set version = 2, or remove it)",
                ) {
                    ok = false;
                } else if !(1..=8).contains(&len) {
                    self.err(
                        p.span(),
                        format!("auth_pass must be 1 to 8 bytes, got {len}"),
                    );
                    ok = false;
                }
                Some(p.get_ref().clone())
            }
        };
        let auth_key_file = match &raw.auth_key_file {
            None => None,
            Some(f) => {
                ok &= !self.refuse_in(
                    version,
                    VrrpVersion::V2,
                    f.span(),
                    "auth_key_file (HMAC between fo nodes) needs version = 3; version 2 has only auth_pass, for keepalived peers",
                );
                let path = self.abs_path(f, "auth_key_file");
                ok &= path.is_some();
                path
            }
        };
        let peers = self.peers(raw, vips);
        let track = self.track(raw, checks);
        let witness = match (&raw.witness, advert_interval) {
            (None, _) => Some(None),
            (Some(w), Some(adv)) => self.witness(w, adv, vips, peers.as_deref()).map(Some),
            (Some(_), None) => None,
        };
        if !ok {
            return None;
        }
        Some(Vrrp {
            vrid: vrid?,
            priority: priority? as u8,
            version: version?,
            advert_interval: advert_interval?,
            preempt,
            preempt_delay,
            peers: peers?,
            auth_pass,
            auth_key_file,
            track: track?,
            witness: witness?,
        })
    }

    /// Whether a key is refused because the router's `version` is `without`, a version
    /// that lacks it; if so, `problem` is reported at `span`.
    fn refuse_in(
        &mut self,
        version: Option<VrrpVersion>,
        without: VrrpVersion,
        span: Span,
        problem: &str,
    ) -> bool {
        let refused = version == Some(without);
        if refused {
            self.err(span, problem);
        }
        refused
    }

    /// `witness = { address, interval, timeout }` of a router advertising every `adv`.
    fn witness(
        &mut self,
        w: &Spanned<RawWitness>,
        adv: Duration,
        vips: Option<&[IpAddr]>,
        peers: Option<&[IpAddr]>,
    ) -> Option<Witness> {
        let raw = w.get_ref();
        let address = match &raw.address {
            Some(a) => self.unicast_ip(a, "witness address").and_then(|ip| {
                if vips.is_some_and(|v| v.contains(&ip)) {
                    self.err(a.span(), format!("witness address {ip} is one of this router's VIPs: pick an address another host answers for (e.g. the gateway)"));
                    None
                } else if peers.is_some_and(|p| p.contains(&ip)) {
                    self.err(a.span(), format!("witness address {ip} is this router's peer: the witness must be a third host (e.g. the gateway)"));
                    None
                } else {
                    Some(ip)
                }
            }),
            None => {
                self.missing(
                    "address",
                    w.span(),
                    "witness needs `address` (e.g. the gateway of the segment, which answers ICMP echo)",
                );
                None
            }
        };
        let fmt = crate::duration::format_duration;
        let interval = match &raw.interval {
            Some(i) => {
                let d = i.get_ref().get();
                if d < Witness::MIN_INTERVAL {
                    self.err(
                        i.span(),
                        format!(
                            "witness interval must be at least {}, got {}",
                            fmt(Witness::MIN_INTERVAL),
                            fmt(d)
                        ),
                    );
                    None
                } else {
                    Some(d)
                }
            }
            None => Some(Witness::default_interval(adv)),
        };
        let timeout = raw
            .timeout
            .as_ref()
            .map_or(Witness::default_timeout(adv), |t| t.get_ref().get());
        let at = raw
            .timeout
            .as_ref()
            .or(raw.interval.as_ref())
            .map_or(w.span(), Spanned::span);
        let mut ok = true;
        if timeout > adv * 3 {
            self.err(at.clone(), format!("witness timeout ({}) must not exceed 3 × advert_interval ({}), the shortest Master_Down_Interval: a cut-off master would still serve when its peer takes over", fmt(timeout), fmt(adv * 3)));
            ok = false;
        }
        if let Some(iv) = interval
            && timeout < iv * 2
        {
            self.err(at, format!("witness timeout ({}) must be at least twice the probe interval ({}): one lost probe must not count as unreachable", fmt(timeout), fmt(iv)));
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Witness {
            address: address?,
            interval: interval?,
            timeout,
        })
    }

    fn peers(&mut self, raw: &RawRouter, vips: Option<&[IpAddr]>) -> Option<Vec<IpAddr>> {
        let Some(list) = &raw.peers else {
            return Some(Vec::new());
        };
        let mut ok = true;
        let mut out: Vec<IpAddr> = Vec::new();
        let fam = vips.and_then(|v| v.first().copied());
        for p in list.get_ref() {
            let Some(ip) = self.unicast_ip(p, "peer") else {
                ok = false;
                continue;
            };
            if let Some(f) = fam
                && family(f) != family(ip)
            {
                self.err(
                    p.span(),
                    format!("peer {ip} is {} but the VIPs are {}", family(ip), family(f)),
                );
                ok = false;
            } else if out.contains(&ip) {
                self.err(p.span(), format!("peer {ip} is listed twice"));
                ok = false;
            } else if vips.is_some_and(|v| v.contains(&ip)) {
                self.err(p.span(), format!("peer {ip} is one of this router's VIPs"));
                ok = false;
            }
            out.push(ip);
        }
        ok.then_some(out)
    }

    fn track(&mut self, raw: &RawRouter, checks: &Checks) -> Option<Vec<Track>> {
        let Some(list) = &raw.track else {
            return Some(Vec::new());
        };
        let mut ok = true;
        let mut out: Vec<Track> = Vec::new();
        for t in list.get_ref() {
            let check = match &t.get_ref().check {
                Some(c) => self.check_ref(c, checks, "track"),
                None => {
                    self.missing(
                        "check",
                        t.span(),
                        "a track entry needs `check` (the name of a [[check]])",
                    );
                    None
                }
            };
            let weight = match &t.get_ref().weight {
                Some(w) => self.int(w, "track weight", -254, 254),
                None => {
                    self.missing("weight", t.span(), "a track entry needs `weight`: positive = added while the check passes, negative = added while it fails, 0 = fault while it fails");
                    None
                }
            };
            match (check, weight) {
                (Some(check), Some(weight)) => {
                    if out.iter().any(|x| x.check == check) {
                        let at = t.get_ref().check.as_ref().map_or(t.span(), Spanned::span);
                        self.err(at, format!("check {check:?} is tracked twice"));
                        ok = false;
                    }
                    out.push(Track {
                        check,
                        weight: weight as i16,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }
}
