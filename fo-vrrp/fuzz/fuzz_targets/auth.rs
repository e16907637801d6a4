//! fo's authenticated adverts (`auth::open`, `decode_authenticated`), with the harness
//! holding the key, so the fuzzer reaches past the HMAC:
//!
//! - raw bytes (no trailer sealed by the harness) never authenticate;
//! - a message the harness sealed opens to exactly that message and sequence, and
//!   `decode_authenticated` agrees with `decode` on it, byte for byte;
//! - the sealed packet with any byte altered, from another source or to another
//!   destination, or under another key, is refused;
//! - a sealed advert accepted once is refused as a replay by `ReplayGuard`;
//! - what `decode_authenticated` accepts survives encode, seal and decode unchanged.
//!
//! Input layout: `[flags, pos_hi, pos_lo, mask, seq (8 bytes), message...]`. `flags`:
//! bit 0 IPv6, bit 1 unicast peers (else multicast), bit 2 raw (the message is the
//! whole payload, nothing sealed). `pos`/`mask`: the byte of the sealed packet to alter
//! and how (a zero mask flips bit 0). `seq`: the anti-replay sequence to seal with.

#![no_main]

use std::net::IpAddr;

use fo_vrrp::auth::{self, AuthKey, ReplayGuard, Sequence};
use fo_vrrp::{
    AdverInterval, Auth, Centisecs, RxMeta, Version, Vrid, decode, decode_authenticated,
};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fo-vrrp-fuzz-key-0123456789abcdef";
const OTHER_KEY: &[u8] = b"another key, another node entirely";

fuzz_target!(|data: &[u8]| {
    let [
        flags,
        pos_hi,
        pos_lo,
        mask,
        s0,
        s1,
        s2,
        s3,
        s4,
        s5,
        s6,
        s7,
        msg @ ..,
    ] = data
    else {
        return;
    };
    let key = AuthKey::new(KEY).expect("a valid key");
    let v6 = flags & 1 != 0;
    let unicast = flags & 2 != 0;
    let raw = flags & 4 != 0;
    let (src, dst, stranger): (IpAddr, IpAddr, IpAddr) = match (v6, unicast) {
        (false, false) => (
            [192, 168, 1, 11].into(),
            [224, 0, 0, 18].into(),
            [192, 168, 1, 13].into(),
        ),
        (false, true) => (
            [192, 168, 1, 11].into(),
            [192, 168, 1, 12].into(),
            [192, 168, 1, 13].into(),
        ),
        (true, false) => (
            "fe80::1".parse().expect("literal"),
            "ff02::12".parse().expect("literal"),
            "fe80::3".parse().expect("literal"),
        ),
        (true, true) => (
            "fe80::1".parse().expect("literal"),
            "fe80::2".parse().expect("literal"),
            "fe80::3".parse().expect("literal"),
        ),
    };
    let peers = [src, stranger];
    let meta = RxMeta {
        src,
        dst,
        ttl_or_hop_limit: 255,
        version: Version::V3,
        vrid: msg
            .get(1)
            .and_then(|v| Vrid::new(*v))
            .unwrap_or(Vrid::new(1).expect("non-zero")),
        interval: AdverInterval::Centisecs(Centisecs(100)),
        auth: Auth::None,
        peers: if unicast { &peers } else { &[] },
    };

    if raw {
        // Nothing sealed it: whatever the bytes, no key-holder's tag is in them.
        assert!(
            auth::open(msg, src, dst, &key).is_err(),
            "unsealed bytes authenticated"
        );
        assert!(
            decode_authenticated(msg, &meta, &key).is_err(),
            "unsealed bytes decoded as authenticated"
        );
        return;
    }

    let seq = Sequence(u64::from_be_bytes([*s0, *s1, *s2, *s3, *s4, *s5, *s6, *s7]));
    let sealed = auth::seal(msg, src, dst, &key, seq);
    assert_eq!(
        auth::open(&sealed, src, dst, &key),
        Ok((msg, seq)),
        "a sealed message does not open to itself"
    );
    let verdict = decode_authenticated(&sealed, &meta, &key);
    assert_eq!(
        verdict,
        decode(msg, &meta).map(|a| (a, seq)),
        "decode_authenticated and decode disagree on a sealed message"
    );

    // Tampering of any kind is refused.
    let mut altered = sealed.clone();
    let i = usize::from(u16::from_be_bytes([*pos_hi, *pos_lo])) % altered.len();
    altered[i] ^= if *mask == 0 { 1 } else { *mask };
    assert!(
        auth::open(&altered, src, dst, &key).is_err(),
        "byte {i} altered and the packet still opened"
    );
    assert!(decode_authenticated(&altered, &meta, &key).is_err());
    assert!(
        auth::open(&sealed, stranger, dst, &key).is_err(),
        "the tag does not bind the source address"
    );
    assert!(
        auth::open(&sealed, src, stranger, &key).is_err(),
        "the tag does not bind the destination address"
    );
    let other = AuthKey::new(OTHER_KEY).expect("a valid key");
    assert!(
        auth::open(&sealed, src, dst, &other).is_err(),
        "opened under another key"
    );
    let truncated = &sealed[..sealed.len() - 1];
    assert!(auth::open(truncated, src, dst, &key).is_err());

    // What is accepted is accepted once, and survives a round trip.
    if let Ok((advert, seq)) = verdict {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(src, seq), Ok(()));
        guard.accept(src, seq);
        assert!(
            guard.check(src, seq).is_err(),
            "the same sealed advert accepted twice"
        );
        let bytes = advert
            .encode(src, dst)
            .expect("an accepted advert can be encoded again");
        let again = auth::seal(&bytes, src, dst, &key, seq);
        assert_eq!(
            decode_authenticated(&again, &meta, &key),
            Ok((advert, seq)),
            "round trip changed the advert"
        );
    }
});
