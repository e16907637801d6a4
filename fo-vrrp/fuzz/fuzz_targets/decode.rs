//! `decode` must never panic, whatever the bytes and whatever the router expects; and what it
//! accepts must survive an encode/decode round trip unchanged.
//!
//! Input layout: `[flags, vrid, interval, payload...]`, where `flags` picks the expectations:
//! bit 0 v3 (else v2), bit 1 IPv6 (v3 only), bit 2 unicast peers (else multicast), bit 3 a
//! TTL other than 255, bit 4 a v2 simple password ("Ns3c2024").

#![no_main]

use std::net::IpAddr;

use fo_vrrp::{AdverInterval, Auth, Centisecs, Password, RxMeta, Seconds, Version, Vrid, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, vrid, interval, payload @ ..] = data else {
        return;
    };
    let v3 = flags & 1 != 0;
    let v6 = v3 && flags & 2 != 0;
    let unicast = flags & 4 != 0;
    let (src, dst): (IpAddr, IpAddr) = match (v6, unicast) {
        (false, false) => ([192, 168, 1, 11].into(), [224, 0, 0, 18].into()),
        (false, true) => ([192, 168, 1, 11].into(), [192, 168, 1, 12].into()),
        (true, false) => (
            "fe80::1".parse().expect("literal"),
            "ff02::12".parse().expect("literal"),
        ),
        (true, true) => (
            "fe80::1".parse().expect("literal"),
            "fe80::2".parse().expect("literal"),
        ),
    };
    let peers = [src];
    let auth = if !v3 && flags & 0x10 != 0 {
        Auth::Simple(Password::new(b"Ns3c2024").expect("8 bytes"))
    } else {
        Auth::None
    };
    let meta = RxMeta {
        src,
        dst,
        ttl_or_hop_limit: if flags & 8 != 0 { 64 } else { 255 },
        version: if v3 { Version::V3 } else { Version::V2 },
        vrid: Vrid::new(*vrid).unwrap_or(Vrid::new(1).expect("non-zero")),
        interval: if v3 {
            AdverInterval::Centisecs(Centisecs(100))
        } else {
            AdverInterval::Seconds(Seconds(*interval))
        },
        auth,
        peers: if unicast { &peers } else { &[] },
    };
    if let Ok(advert) = decode(payload, &meta) {
        let bytes = advert
            .encode(src, dst)
            .expect("an accepted advert can be encoded again");
        assert_eq!(
            decode(&bytes, &meta),
            Ok(advert),
            "round trip changed the advert"
        );
    }
});
