//! The trailer against a vector computed independently (Python's `hmac`/`hashlib` over the
//! layout of the module docs), replay, sequences across restarts and the key file. The
//! receive path through `decode_authenticated` (good key, wrong key, altered bytes,
//! truncation, a plain advert in HMAC mode) is tested beside it, in `packet/hmac_tests.rs`;
//! the helpers here are shared with those tests.

use std::net::IpAddr;

use super::*;

pub(crate) const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The v3 IPv4 advert of the codec tests (VRID 51, priority 150, 100 cs, 192.168.1.100,
/// 192.168.1.11 -> 224.0.0.18).
pub(crate) const V3_V4: [u8; 12] = [
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

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

pub(crate) fn key() -> AuthKey {
    AuthKey::new(KEY).expect("32-byte key")
}

pub(crate) fn seq() -> Sequence {
    let mut g = SequenceGen::new(1_700_000_000_000);
    for _ in 0..5 {
        g.next_sequence();
    }
    g.next_sequence()
}

pub(crate) fn sealed() -> Vec<u8> {
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
