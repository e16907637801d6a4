//! The tunnel keys of a `[[service]]`: `encap`, `tunnel_source`, `gue_port`, `mtu`.
//! They apply to `mode = "tunnel"` only.

use std::net::IpAddr;

use toml::Spanned;

use crate::model::*;
use crate::raw::*;

use super::Cx;
use super::cx::family;

/// At most this many host bits of `tunnel_source` are varied (65536 sources is more
/// than any receive-side scaling spreads over).
pub(crate) const MAX_SOURCE_HOST_BITS: u8 = 16;

impl Cx<'_> {
    /// The tunnel of a service, or `None` when it is not a tunnel service (the keys
    /// are then refused) or a key is wrong (reported).
    pub(super) fn tunnel(
        &mut self,
        raw: &RawService,
        mode: ForwardMode,
        vip: Option<IpAddr>,
    ) -> Result<Option<Tunnel>, ()> {
        if mode != ForwardMode::Tunnel {
            let ctx = format!("mode = \"{}\" (only to mode = \"tunnel\")", mode.as_str());
            self.not_for(raw.encap.as_ref().map(Spanned::span), "encap", &ctx);
            self.not_for(
                raw.tunnel_source.as_ref().map(Spanned::span),
                "tunnel_source",
                &ctx,
            );
            self.not_for(raw.gue_port.as_ref().map(Spanned::span), "gue_port", &ctx);
            self.not_for(raw.mtu.as_ref().map(Spanned::span), "mtu", &ctx);
            let any = raw.encap.is_some()
                || raw.tunnel_source.is_some()
                || raw.gue_port.is_some()
                || raw.mtu.is_some();
            return if any { Err(()) } else { Ok(None) };
        }
        let encap = raw.encap.as_ref().map(|e| *e.get_ref()).unwrap_or_default();
        let mut ok = true;
        let gue_port = match (&raw.gue_port, encap) {
            (Some(p), Encap::Gue) => self.int(p, "gue_port", 1, 65_535).map(|p| p as u16),
            (Some(p), Encap::Ipip) => {
                self.not_for(Some(p.span()), "gue_port", "encap = \"ipip\"");
                None
            }
            (None, _) => Some(Tunnel::DEFAULT_GUE_PORT),
        };
        ok &= gue_port.is_some();
        let mtu = match &raw.mtu {
            Some(m) => {
                // 576 is IPv4's minimum datagram; an IPv6 client must still be able to
                // send 1280 bytes inside the largest tunnel header (40 + 8 + 4).
                let lo = if vip.is_some_and(|v| v.is_ipv6()) {
                    1332
                } else {
                    576
                };
                self.int(m, "mtu", lo, 65_535).map(|v| Some(v as u32))
            }
            None => Some(None),
        };
        ok &= mtu.is_some();
        let source = match &raw.tunnel_source {
            Some(s) => self.source_prefix(s, vip).map(Some),
            None => Some(None),
        };
        ok &= source.is_some();
        match (ok, gue_port, mtu, source) {
            (true, Some(gue_port), Some(mtu), Some(source)) => Ok(Some(Tunnel {
                encap,
                source,
                gue_port,
                mtu,
            })),
            _ => Err(()),
        }
    }

    /// `"ADDRESS/LEN"` or `"ADDRESS"` (one fixed source), of the VIP's family, host
    /// bits zero, at most [`MAX_SOURCE_HOST_BITS`] of them.
    fn source_prefix(&mut self, v: &Spanned<String>, vip: Option<IpAddr>) -> Option<SourcePrefix> {
        let text = v.get_ref().trim();
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let Ok(base) = addr.parse::<IpAddr>() else {
            self.err(
                v.span(),
                format!("tunnel_source {text:?} is not an address or prefix like \"10.9.0.0/24\""),
            );
            return None;
        };
        let width: u8 = if base.is_ipv4() { 32 } else { 128 };
        let len = match len.map(str::parse::<u8>) {
            None => width,
            Some(Ok(l)) if l <= width => l,
            Some(_) => {
                self.err(
                    v.span(),
                    format!("tunnel_source {text:?}: the prefix length must be 0..={width}"),
                );
                return None;
            }
        };
        if base.is_unspecified() || base.is_multicast() || base.is_loopback() {
            self.err(v.span(), format!("tunnel_source {text:?} is not unicast"));
            return None;
        }
        if let Some(vip) = vip
            && family(vip) != family(base)
        {
            self.err(
                v.span(),
                format!(
                    "tunnel_source {text:?} is {} but the service VIP {vip} is {}",
                    family(base),
                    family(vip)
                ),
            );
            return None;
        }
        let host_bits = width - len;
        if host_bits > MAX_SOURCE_HOST_BITS {
            self.err(
                v.span(),
                format!("tunnel_source {text:?} varies {host_bits} host bits; at most {MAX_SOURCE_HOST_BITS} (a /{} or longer)", width - MAX_SOURCE_HOST_BITS),
            );
            return None;
        }
        let host_mask: u128 = if host_bits == 0 {
            0
        } else {
            (1u128 << host_bits) - 1
        };
        let bits = match base {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if bits & host_mask != 0 {
            self.err(
                v.span(),
                format!(
                    "tunnel_source {text:?} has host bits set: write the prefix's first address"
                ),
            );
            return None;
        }
        Some(SourcePrefix { base, len })
    }
}
