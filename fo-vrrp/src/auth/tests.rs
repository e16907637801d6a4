//! The trailer against a vector computed independently (Python's `hmac`/`hashlib` over the
//! layout of the module docs), then good key, wrong key, altered bytes, truncation, a plain
//! advert in HMAC mode, and replay.

use std::net::IpAddr;

use super::*;
use crate::packet::{RxMeta, decode_authenticated};
use crate::types::{AdverInterval, Auth, Centisecs, Version, Vrid};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The v3 IPv4 advert of the codec tests (VRID 51, priority 150, 100 cs, 192.168.1.100,
/// 192.168.1.11 -> 224.0.0.18).
const V3_V4: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0xd4, 0x17, 0xc0, 0xa8, 0x01, 0x64,
];

/// `python3 -c 'import hmac,hashlib; …'`: key ID = SHA-256("fo-vrrp-key-id" || KEY)[..4],
/// sequence (1 700 000 000 000 << 22) + 5, tag = HMAC-SHA256(KEY, "fo-vrrp-hmac\x01" ||
/// src || dst || message || head).
const TRAILER: [u8; 48] = [
    0x66, 0x6f, 0x01, 0x01, 0x93, 0x84, 0x50, 0x92, 0x62, 0xf3, 0xf9, 0x5a, 0x00, 0x00, 0x00, 0x05,
    0xb8, 0x80, 0x04, 0x70, 0x95, 0x24, 0x6f, 0x5c, 0xd2, 0x5e, 0x8a, 0x46, 0x92, 0x1a, 0x36, 0x11,
    0x9f, 0x63, 0xca, 0xa6, 0xee, 0xc3, 0x25, 0x93, 0x9a, 0x03, 0x61, 0x3f, 0x51, 0x71, 0xfc, 0xcd,
];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn key() -> AuthKey {
    AuthKey::new(KEY).expect("32-byte key")
}

fn seq() -> Sequence {
    let mut g = SequenceGen::new(1_700_000_000_000);
    for _ in 0..5 {
        g.next_sequence();
    }
    g.next_sequence()
}

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

fn sealed() -> Vec<u8> {
    seal(&V3_V4, ip("192.168.1.11"), ip("224.0.0.18"), &key(), seq())
}

#[test]
fn trailer_matches_the_independent_vector() {
    assert_eq!(key().id(), 0x9384_5092);
    let p = sealed();
    assert_eq!(&p[..12], &V3_V4, "the VRRP message is left as it is");
    assert_eq!(
        &p[12..],
        &TRAILER,
        "trailer differs from the Python-computed one"
    );
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
fn replayed_sequences_are_refused_per_source() {
    let mut guard = ReplayGuard::default();
    let a = ip("192.168.1.11");
    let b = ip("192.168.1.12");
    assert_eq!(guard.check(a, Sequence(10)), Ok(()), "first from a source");
    guard.accept(a, Sequence(10));
    let err = guard.check(a, Sequence(10)).unwrap_err();
    assert_eq!(err, DropReason::Replay { seq: 10, last: 10 });
    assert_eq!(err.as_str(), "replay");
    assert!(guard.check(a, Sequence(9)).is_err(), "older");
    assert_eq!(guard.check(a, Sequence(11)), Ok(()), "newer");
    assert_eq!(
        guard.check(b, Sequence(1)),
        Ok(()),
        "sources are independent"
    );
    guard.accept(a, Sequence(5));
    assert_eq!(
        guard.last(a),
        Some(Sequence(10)),
        "accept never lowers the floor"
    );
}

#[test]
fn a_restarted_sender_starts_above_everything_it_sent() {
    let boot = 1_700_000_000_000u64;
    let mut first = SequenceGen::new(boot);
    // A week of 10 ms adverts on the first start.
    let mut last = Sequence(0);
    for _ in 0..3 {
        last = first.next_sequence();
    }
    let week: u64 = 7 * 24 * 3600 * 100;
    let after_a_week = Sequence(last.0 + week);
    // Restarted a week later; even one restarted 1 ms after its start wins over everything
    // its first run could send in the first 4 million adverts.
    let second = SequenceGen::new(boot + 7 * 24 * 3600 * 1000).next_sequence();
    assert!(
        second > after_a_week,
        "{second:?} must be above {after_a_week:?}"
    );
    let quick = SequenceGen::new(boot + 1).next_sequence();
    assert!(quick > Sequence((boot << 22) + (1 << 22) - 1));
}

#[test]
fn key_file_content_and_debug() {
    let k = AuthKey::from_file_content(b"0123456789abcdef0123456789abcdef\n").expect("key");
    assert_eq!(k, key(), "the trailing newline is not part of the key");
    assert_eq!(
        AuthKey::from_file_content(b"short\n"),
        Err(KeyError::TooShort { len: 5 })
    );
    assert_eq!(
        AuthKey::from_file_content(b"\n \n"),
        Err(KeyError::TooShort { len: 0 })
    );
    let shown = format!("{k:?}");
    assert!(
        !shown.contains("0123456789abcdef") && shown.contains("93845092"),
        "Debug must show the key ID only, got {shown}"
    );
}

#[test]
fn ipv6_adverts_are_sealed_and_bound_to_their_addresses() {
    let (src, dst) = (ip("fe80::1"), ip("ff02::12"));
    let advert = crate::packet::Advert {
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
