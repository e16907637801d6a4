//! Tunnelled DSR (`mode = "tunnel"`) in the maps: each tunnel service's outer source,
//! encapsulation and MTU (`TUNNEL_SERVICES`, written by `ServiceTable` before the
//! service is published, as a NAT service's SNAT pool), and the outer source
//! prefixes (`TUNNEL_SOURCES`), whose ICMP errors the program relays to clients.
//!
//! What the rest of the agent provides (see `fo_common::tunnel`): a [`TunnelSpec`] in
//! `ServiceSpec::tunnel`, and for every backend of a tunnel service a `BackendSpec`
//! whose `addr` is the outer destination and whose `mac` / `src_mac` / `ifindex` are
//! the FIB's next hop towards it (its neighbour's MAC, our interface's MAC and index),
//! refreshed as a DSR backend's MAC is.
//!
//! The backends' side, the decapsulation program, is a separate object: see
//! [`DECAP_OBJECT`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use aya::maps::MapError;
use aya::maps::lpm_trie::Key;
use fo_common::{
    Addr, FAMILY_V4, TUNNEL_GUE, TUNNEL_IPIP, TUNNEL_MIN_MTU_V4, TUNNEL_MIN_MTU_V6, TunnelService,
    TunnelSourceKey,
};

use super::{Dataplane, DataplaneError, Result, map_err};

/// The backends' decapsulation program, built from `fo-ebpf` (binary `fo-decap`) by
/// build.rs next to `fo-xdp`: a separate ELF object, so that a backend loads none of
/// the load balancer's maps.
///
/// Loader's contract (`fo-agent decap`): load [`DECAP_OBJECT`], program
/// [`DECAP_PROGRAM`] (XDP), with the global `DECAP_GUE_PORT` (u16, host order; 0 =
/// no GUE) set by `override_global`, and write the local outer addresses it
/// decapsulates for into its one configuration map [`DECAP_ADDRS_MAP`]
/// (`HashMap<fo_common::VipKey, u32>`, value non-zero, 64 entries). Its only other
/// map is `DECAP_STATS` (`PerCpuArray<u64>`, slots `fo_common::DECAP_*`). Pin both
/// maps and the link under the decap pin directory so it survives restarts.
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fo-decap"));
/// Name of the XDP program in [`DECAP_OBJECT`].
pub const DECAP_PROGRAM: &str = "fo_decap";
/// The decapsulation program's map of local outer addresses.
pub const DECAP_ADDRS_MAP: &str = "DECAP_ADDRS";
/// The decapsulation program's per-CPU counters.
pub const DECAP_STATS_MAP: &str = "DECAP_STATS";
/// The global of [`DECAP_OBJECT`] that holds the GUE port (u16, host order).
pub const DECAP_GUE_PORT_GLOBAL: &str = "DECAP_GUE_PORT";

/// How a tunnel service encapsulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    /// IPv4-in-IPv4 (IPv4 VIP) or IPv6-in-IPv6 (IPv6 VIP).
    Ipip,
    /// IP in UDP + GUE (version 0) to this destination port on the backends.
    Gue { port: u16 },
}

/// A tunnel service's parameters (`ServiceSpec::tunnel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Outer source address, the VIP's family: the base of the range flows are
    /// spread over.
    pub source: IpAddr,
    /// Low bits of `source` varied per flow (0..=32; 0 = always `source`). The whole
    /// range `source/(len - bits)` must route back to this node (ICMP errors from the
    /// path come to it), and be given to [`Dataplane::set_tunnel_sources`].
    pub source_bits: u8,
    pub encap: Encap,
    /// Largest outer L3 packet the path to the backends carries (bytes).
    pub mtu: u16,
}

impl TunnelSpec {
    /// The map value, or why it cannot be written (the config checks the same).
    pub fn value(&self) -> Result<TunnelService> {
        let (src_base, family) = Addr::from_ip(self.source);
        let min = if family == FAMILY_V4 {
            TUNNEL_MIN_MTU_V4
        } else {
            TUNNEL_MIN_MTU_V6
        };
        if self.source_bits > 32 || self.mtu < min {
            return Err(DataplaneError::Invalid {
                what: "tunnel service (source bits over 32, or mtu too small)",
            });
        }
        let (encap, gue_port_be) = match self.encap {
            Encap::Ipip => (TUNNEL_IPIP, 0),
            Encap::Gue { port } => (TUNNEL_GUE, port.to_be()),
        };
        Ok(TunnelService {
            src_base,
            src_bits: self.source_bits,
            encap,
            gue_port_be,
            mtu: self.mtu,
            _pad: [0; 2],
        })
    }
}

/// An outer source prefix: address and prefix length.
pub type SourcePrefix = (IpAddr, u8);

fn source_key(prefix: SourcePrefix) -> Key<TunnelSourceKey> {
    let (addr, family) = Addr::from_ip(prefix.0);
    let max = if family == FAMILY_V4 { 32 } else { 128 };
    let len = prefix.1.min(max);
    // Host bits cleared, so that equal prefixes make equal keys.
    let mut bytes = addr.bytes;
    for (i, b) in bytes.iter_mut().enumerate() {
        let bit = i as u32 * 8;
        let keep = u32::from(len).saturating_sub(bit).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    Key::new(
        8 + u32::from(len),
        TunnelSourceKey {
            family,
            addr: bytes,
            _pad: [0; 3],
        },
    )
}

impl Dataplane {
    /// A tunnel service's parameters, at its slot (before the service is published).
    pub(super) fn put_tunnel_service(&mut self, id: u32, value: TunnelService) -> Result<()> {
        self.maps
            .tunnel_services
            .set(id, &value, 0)
            .map_err(map_err("TUNNEL_SERVICES"))
    }

    /// Make `TUNNEL_SOURCES` hold exactly `prefixes`: new ones are added before old
    /// ones go, so a prefix that stays is never missing.
    pub fn set_tunnel_sources(&mut self, prefixes: &[SourcePrefix]) -> Result<()> {
        let wanted: Vec<Key<TunnelSourceKey>> = prefixes.iter().map(|p| source_key(*p)).collect();
        let ident = |k: &Key<TunnelSourceKey>| {
            let d = k.data();
            (k.prefix_len(), d.family, d.addr)
        };
        let keep: BTreeSet<_> = wanted.iter().map(ident).collect();
        for key in &wanted {
            self.maps
                .tunnel_sources
                .insert(key, &1, 0)
                .map_err(map_err("TUNNEL_SOURCES"))?;
        }
        let present: Vec<Key<TunnelSourceKey>> = self
            .maps
            .tunnel_sources
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(map_err("TUNNEL_SOURCES"))?;
        for key in present.iter().filter(|k| !keep.contains(&ident(k))) {
            match self.maps.tunnel_sources.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err("TUNNEL_SOURCES")(e)),
            }
        }
        Ok(())
    }

    /// The outer source prefixes in the map.
    pub fn tunnel_sources(&self) -> Result<Vec<SourcePrefix>> {
        self.maps
            .tunnel_sources
            .keys()
            .map(|k| {
                let k = k.map_err(map_err("TUNNEL_SOURCES"))?;
                let d = k.data();
                let ip = Addr { bytes: d.addr }.to_ip(d.family);
                Ok((ip, (k.prefix_len() - 8) as u8))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_keys_clear_host_bits_and_count_the_family_byte() {
        let k = source_key(("10.9.1.77".parse().unwrap(), 20));
        assert_eq!(k.prefix_len(), 28);
        assert_eq!(k.data().family, FAMILY_V4);
        assert_eq!(&k.data().addr[..4], &[10, 9, 0, 0]);
        let k = source_key(("2001:db8::ff".parse().unwrap(), 120));
        assert_eq!(k.prefix_len(), 128);
        assert_eq!(k.data().addr[15], 0);
    }

    #[test]
    fn specs_below_the_minimum_mtu_are_refused() {
        let spec = TunnelSpec {
            source: "10.9.0.0".parse().unwrap(),
            source_bits: 8,
            encap: Encap::Gue { port: 6080 },
            mtu: 1500,
        };
        let v = spec.value().unwrap();
        assert_eq!(
            (v.encap, u16::from_be(v.gue_port_be), v.src_bits),
            (TUNNEL_GUE, 6080, 8)
        );
        assert!(
            TunnelSpec {
                mtu: 500,
                ..spec.clone()
            }
            .value()
            .is_err()
        );
        assert!(
            TunnelSpec {
                source_bits: 33,
                ..spec
            }
            .value()
            .is_err()
        );
    }
}
