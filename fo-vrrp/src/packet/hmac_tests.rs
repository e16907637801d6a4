//! The HMAC receive path: `decode_authenticated` with a good key, a wrong key, altered
//! bytes or addresses, a truncated trailer, a plain advert in HMAC mode, and IPv6. The
//! trailer itself (vector, replay, key file) is tested in `auth/tests.rs`, whose helpers
//! these tests share.

use super::{Advert, DropReason, RxMeta, decode_authenticated};
use crate::auth::tests::{V3_V4, ip, key, sealed, seq};
use crate::auth::{AuthKey, Sequence, TRAILER_LEN, seal};
use crate::types::{AdverInterval, Auth, Centisecs, Version, Vrid};

fn meta() -> RxMeta<'static> {
    RxMeta {
        src: ip("192.168.1.11"),
        dst: ip("224.0.0.18"),
        ttl_or_hop_limit: 255,
        version: Version::V3,
        vrid: Vrid::new(51).expect("VRID"),
        interval: AdverInterval::Centisecs(Centisecs(100)),
        auth: Auth::None,
        peers: &[],
    }
}

#[test]
fn good_key_decodes_with_its_sequence() {
    let (advert, s) = decode_authenticated(&sealed(), &meta(), &key()).expect("verifies");
    assert_eq!(s, seq());
    assert_eq!(advert.priority.0, 150);
    assert_eq!(advert.addresses, vec![ip("192.168.1.100")]);
}

#[test]
fn wrong_key_is_an_auth_drop() {
    let other = AuthKey::new(b"another key of enough bytes!").expect("key");
    let err = decode_authenticated(&sealed(), &meta(), &other).unwrap_err();
    assert!(
        matches!(err, DropReason::AuthKey { got: 0x9384_5092, ours } if ours == other.id()),
        "expected AuthKey, got {err:?}"
    );
    assert_eq!(err.as_str(), "auth");
}

#[test]
fn any_altered_byte_or_address_is_an_auth_drop() {
    let good = sealed();
    // Every byte of the message, the sequence and the tag; the key ID bytes give AuthKey,
    // the magic/version/alg bytes AuthMissing — all "auth".
    for i in 0..good.len() {
        let mut p = good.clone();
        p[i] ^= 0x01;
        let err = decode_authenticated(&p, &meta(), &key()).unwrap_err();
        assert_eq!(
            err.as_str(),
            "auth",
            "byte {i} flipped: expected auth, got {err:?}"
        );
    }
    // Another source (multicast), or the same source to another destination (unicast).
    let peers = [ip("192.168.1.11")];
    for (src, dst, peers) in [
        ("192.168.1.12", "224.0.0.18", &[][..]),
        ("192.168.1.11", "192.168.1.12", &peers[..]),
    ] {
        let m = RxMeta {
            src: ip(src),
            dst: ip(dst),
            peers,
            ..meta()
        };
        let err = decode_authenticated(&good, &m, &key()).unwrap_err();
        assert_eq!(
            err,
            DropReason::AuthTag,
            "{src} -> {dst}: the addresses are bound"
        );
    }
}

#[test]
fn truncated_trailer_and_plain_adverts_are_auth_drops() {
    let good = sealed();
    for cut in [1, 10, 32, 47, 48, good.len()] {
        let p = &good[..good.len() - cut];
        let err = decode_authenticated(p, &meta(), &key()).unwrap_err();
        assert_eq!(err.as_str(), "auth", "cut {cut} bytes: got {err:?}");
    }
    let err = decode_authenticated(&V3_V4, &meta(), &key()).unwrap_err();
    assert_eq!(err, DropReason::AuthMissing { len: 12 });
}

#[test]
fn ip_checks_come_first() {
    let m = RxMeta {
        ttl_or_hop_limit: 254,
        ..meta()
    };
    assert_eq!(
        decode_authenticated(&sealed(), &m, &key()).unwrap_err(),
        DropReason::Ttl { got: 254 }
    );
    let peers = [ip("192.168.1.12")];
    let m = RxMeta {
        dst: ip("192.168.1.13"),
        peers: &peers,
        ..meta()
    };
    assert_eq!(
        decode_authenticated(&sealed(), &m, &key())
            .unwrap_err()
            .as_str(),
        "not_peer"
    );
}

#[test]
fn ipv6_adverts_are_sealed_and_bound_to_their_addresses() {
    let (src, dst) = (ip("fe80::1"), ip("ff02::12"));
    let advert = Advert {
        vrid: Vrid::new(51).expect("VRID"),
        priority: crate::types::Priority(100),
        max_adver_interval: AdverInterval::Centisecs(Centisecs(100)),
        addresses: vec![ip("fe80::51"), ip("2001:db8::100")],
        auth: Auth::None,
    };
    let msg = advert.encode(src, dst).expect("encodes");
    let p = seal(&msg, src, dst, &key(), Sequence(7));
    assert_eq!(p.len(), msg.len() + TRAILER_LEN);
    let m = RxMeta { src, dst, ..meta() };
    let (got, s) = decode_authenticated(&p, &m, &key()).expect("verifies");
    assert_eq!((got, s), (advert, Sequence(7)));
    let other = RxMeta {
        src: ip("fe80::2"),
        ..m
    };
    assert_eq!(
        decode_authenticated(&p, &other, &key()).unwrap_err(),
        DropReason::AuthTag
    );
}
