//! Byte vectors built by hand from the RFC layouts (checksums worked out separately with the
//! RFC 1071 algorithm, the v2 one by hand in the comment), in both directions, plus seeded
//! property-style round trips and a mutation sweep that must never panic.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn vrid(n: u8) -> Vrid {
    Vrid::new(n).expect("non-zero VRID")
}

/// keepalived `vrrp_instance` with `version 2`, `virtual_router_id 51`, `priority 150`,
/// `advert_int 1`, `auth_type PASS`, `auth_pass Ns3c2024`, VIP 192.168.1.100, from
/// 192.168.1.11 to 224.0.0.18.
///
/// Checksum over the message only: 0x2133 + 0x9601 + 0x0101 + 0xc0a8 + 0x0164 + 0x4e73 +
/// 0x3363 + 0x3230 + 0x3234 = 0x2607b, folded 0x607d, complemented 0x9f82.
const V2_KEEPALIVED: [u8; 20] = [
    0x21, 0x33, 0x96, 0x01, // version 2, type 1, VRID 51, priority 150, 1 address
    0x01, 0x01, 0x9f, 0x82, // auth type 1, adver int 1 s, checksum
    0xc0, 0xa8, 0x01, 0x64, // 192.168.1.100
    b'N', b's', b'3', b'c', b'2', b'0', b'2', b'4', // auth_pass, exactly 8 bytes
];

/// v2, no authentication (type 0, 8 zero bytes), VRID 7, priority 100, two addresses.
const V2_NO_AUTH: [u8; 24] = [
    0x21, 0x07, 0x64, 0x02, // version 2, type 1, VRID 7, priority 100, 2 addresses
    0x00, 0x01, 0x66, 0x2c, // auth type 0, adver int 1 s, checksum
    0x0a, 0x00, 0x00, 0x64, // 10.0.0.100
    0x0a, 0x00, 0x00, 0x65, // 10.0.0.101
    0, 0, 0, 0, 0, 0, 0, 0, // authentication data
];

/// v3 over IPv4, VRID 51, priority 150, Max Adver Int 100 cs (0x064), 192.168.1.100, from
/// 192.168.1.11 to 224.0.0.18; checksum includes the IPv4 pseudo-header (protocol 112, 12).
const V3_V4: [u8; 12] = [
    0x31, 0x33, 0x96, 0x01, // version 3, type 1, VRID 51, priority 150, 1 address
    0x00, 0x64, 0xd4, 0x17, // rsvd 0, interval 100 cs, checksum
    0xc0, 0xa8, 0x01, 0x64, // 192.168.1.100
];

/// v3 over IPv6, VRID 51, priority 100, 100 cs, addresses fe80::51 (the link-local first, as
/// RFC 5798 §5.2.9 wants) and 2001:db8::100, from fe80::1 to ff02::12; checksum includes the
/// IPv6 pseudo-header (length 40, next header 112).
const V3_V6: [u8; 40] = [
    0x31, 0x33, 0x64, 0x02, // version 3, type 1, VRID 51, priority 100, 2 addresses
    0x00, 0x64, 0x3e, 0xac, // rsvd 0, interval 100 cs, checksum
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x51, // fe80::51
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // 2001:db8::100
];

fn keepalived_advert() -> Advert {
    Advert {
        vrid: vrid(51),
        priority: Priority(150),
        max_adver_interval: AdverInterval::Seconds(Seconds(1)),
        addresses: vec![ip("192.168.1.100")],
        auth: Auth::Simple(Password::new(b"Ns3c2024").expect("8 bytes fit")),
    }
}

fn v3_v6_advert() -> Advert {
    Advert {
        vrid: vrid(51),
        priority: Priority(100),
        max_adver_interval: AdverInterval::Centisecs(Centisecs(100)),
        addresses: vec![ip("fe80::51"), ip("2001:db8::100")],
        auth: Auth::None,
    }
}

fn meta_for(advert: &Advert, src: IpAddr, dst: IpAddr) -> RxMeta<'static> {
    RxMeta {
        src,
        dst,
        ttl_or_hop_limit: 255,
        version: advert.version(),
        vrid: advert.vrid,
        interval: match advert.version() {
            Version::V2 => advert.max_adver_interval,
            Version::V3 => AdverInterval::Centisecs(Centisecs(100)),
        },
        auth: advert.auth,
        peers: &[],
    }
}

fn v2_meta() -> RxMeta<'static> {
    meta_for(&keepalived_advert(), ip("192.168.1.11"), ip("224.0.0.18"))
}

fn v3_v6_meta() -> RxMeta<'static> {
    meta_for(&v3_v6_advert(), ip("fe80::1"), ip("ff02::12"))
}

fn v3_v4_meta() -> RxMeta<'static> {
    RxMeta {
        version: Version::V3,
        interval: AdverInterval::Centisecs(Centisecs(100)),
        auth: Auth::None,
        ..v2_meta()
    }
}

/// `advert` sent on `(src, dst)` is `bytes`, and `bytes` received with `meta` decode
/// back to `advert`.
#[track_caller]
fn both_ways(advert: Advert, (src, dst): (IpAddr, IpAddr), bytes: &[u8], meta: &RxMeta<'_>) {
    assert_eq!(advert.encode(src, dst).expect("valid advert"), bytes);
    assert_eq!(decode(bytes, meta), Ok(advert));
}

/// `base` with `change` made to it.
fn with<'a>(mut base: RxMeta<'a>, change: impl FnOnce(&mut RxMeta<'a>)) -> RxMeta<'a> {
    change(&mut base);
    base
}

fn expect_drop(payload: &[u8], meta: &RxMeta<'_>, label: &str) -> DropReason {
    match decode(payload, meta) {
        Ok(advert) => panic!("expected a drop for {label}, decoded {advert:?}"),
        Err(reason) => {
            assert_eq!(reason.as_str(), label, "expected {label}, got {reason:?}");
            reason
        }
    }
}

#[test]
fn encodes_keepalived_v2_with_auth_pass() {
    let bytes = keepalived_advert().encode(ip("192.168.1.11"), ip("224.0.0.18"));
    assert_eq!(bytes.expect("valid v2 advert"), V2_KEEPALIVED);
}

#[test]
fn decodes_keepalived_v2_with_auth_pass() {
    let advert = decode(&V2_KEEPALIVED, &v2_meta()).expect("valid keepalived packet");
    assert_eq!(advert, keepalived_advert());
}

#[test]
fn v2_without_auth_both_ways() {
    let advert = Advert {
        vrid: vrid(7),
        priority: Priority(100),
        max_adver_interval: AdverInterval::Seconds(Seconds(1)),
        addresses: vec![ip("10.0.0.100"), ip("10.0.0.101")],
        auth: Auth::None,
    };
    let (src, dst) = (ip("10.0.0.2"), ip("224.0.0.18"));
    let meta = meta_for(&advert, src, dst);
    both_ways(advert, (src, dst), &V2_NO_AUTH, &meta);
}

#[test]
fn v3_ipv4_both_ways() {
    // keepalived's advert in version 3: 100 cs, no authentication.
    let advert = Advert {
        max_adver_interval: AdverInterval::Centisecs(Centisecs(100)),
        auth: Auth::None,
        ..keepalived_advert()
    };
    let route = (ip("192.168.1.11"), ip("224.0.0.18"));
    both_ways(advert, route, &V3_V4, &v3_v4_meta());
}

#[test]
fn v3_ipv6_both_ways() {
    let route = (ip("fe80::1"), ip("ff02::12"));
    both_ways(v3_v6_advert(), route, &V3_V6, &v3_v6_meta());
}

#[test]
fn v3_checksum_depends_on_the_pseudo_header_and_v2_does_not() {
    let meta = with(v3_v4_meta(), |m| m.src = ip("192.168.1.12"));
    expect_drop(&V3_V4, &meta, "checksum");
    let meta = with(v2_meta(), |m| m.src = ip("192.168.1.12"));
    assert!(decode(&V2_KEEPALIVED, &meta).is_ok());
}

#[test]
fn v3_reserved_bits_are_ignored() {
    let mut bytes = V3_V4;
    bytes[4] |= 0xf0;
    // Keep the checksum right: the reserved nibble adds 0xf000 to the sum.
    let sum = u32::from(u16::from_be_bytes([bytes[6], bytes[7]])) + 0xffff - 0xf000;
    let fixed = u16::try_from((sum & 0xffff) + (sum >> 16)).expect("folded");
    bytes[6..8].copy_from_slice(&fixed.to_be_bytes());
    let advert = decode(&bytes, &v3_v4_meta()).expect("reserved bits ignored");
    assert_eq!(
        advert.max_adver_interval,
        AdverInterval::Centisecs(Centisecs(100))
    );
}

#[test]
fn drops_wrong_ttl() {
    let meta = with(v2_meta(), |m| m.ttl_or_hop_limit = 254);
    assert_eq!(
        expect_drop(&V2_KEEPALIVED, &meta, "ttl"),
        DropReason::Ttl { got: 254 }
    );
}

#[test]
fn drops_wrong_version() {
    let meta = with(v2_meta(), |m| {
        m.version = Version::V3;
        m.interval = AdverInterval::Centisecs(Centisecs(100));
        m.auth = Auth::None;
    });
    expect_drop(&V2_KEEPALIVED, &meta, "version");
    expect_drop(&V3_V4, &v2_meta(), "version");
}

#[test]
fn drops_wrong_type() {
    let mut bytes = V2_KEEPALIVED;
    bytes[0] = 0x22;
    assert_eq!(
        expect_drop(&bytes, &v2_meta(), "type"),
        DropReason::Type { got: 2 }
    );
}

#[test]
fn drops_bad_checksum() {
    let mut bytes = V2_KEEPALIVED;
    bytes[7] ^= 1;
    assert_eq!(
        expect_drop(&bytes, &v2_meta(), "checksum"),
        DropReason::Checksum {
            got: 0x9f83,
            computed: 0x9f82
        }
    );
    let mut bytes = V3_V6;
    bytes[39] ^= 0x80;
    expect_drop(&bytes, &v3_v6_meta(), "checksum");
}

#[test]
fn drops_truncated_and_miscounted() {
    expect_drop(&V3_V4[..7], &v3_v4_meta(), "length");
    expect_drop(&V2_KEEPALIVED[..12], &v2_meta(), "length");
    expect_drop(&V3_V4[..10], &v3_v4_meta(), "address_count");
    expect_drop(&V3_V6[..24], &v3_v6_meta(), "address_count");
    let mut longer = V3_V4.to_vec();
    longer.extend_from_slice(&[10, 0, 0, 1]);
    expect_drop(&longer, &v3_v4_meta(), "address_count");
    let mut zero = V3_V4;
    zero[3] = 0;
    expect_drop(&zero[..8], &v3_v4_meta(), "address_count");
}

#[test]
fn drops_family_mismatch() {
    // IPv6 addresses in an IPv4 packet read as a miscount; mixed headers as family.
    let meta = with(v3_v4_meta(), |m| m.dst = ip("ff02::12"));
    expect_drop(&V3_V4, &meta, "family");
    let meta = with(v2_meta(), |m| {
        m.src = ip("fe80::1");
        m.dst = ip("ff02::12");
    });
    expect_drop(&V2_KEEPALIVED, &meta, "family");
    let meta = with(v3_v6_meta(), |m| {
        m.src = ip("192.168.1.11");
        m.dst = ip("224.0.0.18");
    });
    expect_drop(&V3_V6, &meta, "address_count");
}

#[test]
fn drops_wrong_vrid() {
    let meta = with(v2_meta(), |m| m.vrid = vrid(52));
    expect_drop(&V2_KEEPALIVED, &meta, "vrid");
    assert_eq!(peek_vrid(&V2_KEEPALIVED), Some(vrid(51)));
    assert_eq!(peek_vrid(&[0x31]), None);
    assert_eq!(peek_vrid(&[0x31, 0]), None);
}

#[test]
fn drops_v2_interval_mismatch_and_v3_zero_interval() {
    let meta = with(v2_meta(), |m| {
        m.interval = AdverInterval::Seconds(Seconds(2))
    });
    expect_drop(&V2_KEEPALIVED, &meta, "interval");

    let zero = Advert {
        max_adver_interval: AdverInterval::Centisecs(Centisecs(1)),
        ..v3_v6_advert()
    };
    let mut bytes = zero.encode(ip("fe80::1"), ip("ff02::12")).expect("valid");
    // Interval 1 -> 0 lowers the sum by one: raise the checksum by one to keep it valid.
    bytes[5] = 0;
    let checksum = u16::from_be_bytes([bytes[6], bytes[7]]).wrapping_add(1);
    bytes[6..8].copy_from_slice(&checksum.to_be_bytes());
    expect_drop(&bytes, &v3_v6_meta(), "interval");
}

#[test]
fn v3_accepts_any_nonzero_interval() {
    let advert = Advert {
        max_adver_interval: AdverInterval::Centisecs(Centisecs(4095)),
        ..v3_v6_advert()
    };
    let bytes = advert.encode(ip("fe80::1"), ip("ff02::12")).expect("valid");
    assert_eq!(decode(&bytes, &v3_v6_meta()), Ok(advert));
}

#[test]
fn drops_v2_auth_mismatches() {
    let wrong = with(v2_meta(), |m| {
        m.auth = Auth::Simple(Password::new(b"Ns3c2025").expect("fits"))
    });
    assert_eq!(
        expect_drop(&V2_KEEPALIVED, &wrong, "auth"),
        DropReason::AuthPassword
    );
    let none = with(v2_meta(), |m| m.auth = Auth::None);
    assert_eq!(
        expect_drop(&V2_KEEPALIVED, &none, "auth"),
        DropReason::AuthType {
            got: 1,
            expected: 0
        }
    );
    // A shorter password is zero-padded: "Ns3c" does not match "Ns3c2024".
    let short = with(v2_meta(), |m| {
        m.auth = Auth::Simple(Password::new(b"Ns3c").expect("fits"))
    });
    expect_drop(&V2_KEEPALIVED, &short, "auth");
    // IP AH (type 2) is never accepted.
    let mut ah = V2_KEEPALIVED;
    ah[4] = 2;
    ah[6..8].copy_from_slice(&(0x9f82u16 - 0x0100).to_be_bytes());
    expect_drop(&ah, &v2_meta(), "auth");
}

#[test]
fn drops_by_addressing() {
    let meta = with(v2_meta(), |m| m.dst = ip("192.168.1.12"));
    expect_drop(&V2_KEEPALIVED, &meta, "destination");
    let peers = [ip("192.168.1.12")];
    let meta = with(v2_meta(), |m| {
        m.dst = ip("192.168.1.12");
        m.peers = &peers;
    });
    expect_drop(&V2_KEEPALIVED, &meta, "not_peer");
    let peers = [ip("192.168.1.11")];
    let meta = with(v2_meta(), |m| {
        m.dst = ip("192.168.1.12");
        m.peers = &peers;
    });
    assert!(decode(&V2_KEEPALIVED, &meta).is_ok());
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry() {
    let (s4, d4) = (ip("10.0.0.1"), ip("224.0.0.18"));
    let none = Advert {
        addresses: vec![],
        ..keepalived_advert()
    };
    assert_eq!(
        none.encode(s4, d4),
        Err(EncodeError::AddressCount { count: 0 })
    );
    let too_many = Advert {
        addresses: vec![ip("10.0.0.9"); 256],
        ..keepalived_advert()
    };
    assert_eq!(
        too_many.encode(s4, d4),
        Err(EncodeError::AddressCount { count: 256 })
    );
    let v6_in_v2 = Advert {
        addresses: vec![ip("2001:db8::1")],
        ..keepalived_advert()
    };
    assert!(matches!(
        v6_in_v2.encode(s4, d4),
        Err(EncodeError::Family { .. })
    ));
    assert!(matches!(
        v3_v6_advert().encode(s4, d4),
        Err(EncodeError::Family { .. })
    ));
    let big = Advert {
        max_adver_interval: AdverInterval::Centisecs(Centisecs(4096)),
        ..v3_v6_advert()
    };
    assert!(matches!(
        big.encode(ip("fe80::1"), ip("ff02::12")),
        Err(EncodeError::Interval { .. })
    ));
    let v3_auth = Advert {
        max_adver_interval: AdverInterval::Centisecs(Centisecs(100)),
        ..keepalived_advert()
    };
    assert_eq!(v3_auth.encode(s4, d4), Err(EncodeError::AuthWithV3));
}

#[test]
fn labels_are_listed() {
    let samples = [
        DropReason::Ttl { got: 1 },
        DropReason::AuthPassword,
        DropReason::Checksum {
            got: 0,
            computed: 1,
        },
        DropReason::AuthMissing { len: 12 },
        DropReason::AuthKey { got: 1, ours: 2 },
        DropReason::AuthTag,
        DropReason::Replay { seq: 1, last: 2 },
    ];
    for reason in samples {
        assert!(
            DropReason::LABELS.contains(&reason.as_str()),
            "{reason:?} missing from LABELS"
        );
    }
}

/// A small deterministic generator (xorshift64*), so the property tests need no dependency
/// and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_advert(rng: &mut Rng, many: bool) -> (Advert, IpAddr, IpAddr) {
    let v6 = rng.below(3) == 0;
    let v2 = !v6 && rng.below(2) == 0;
    let max = if many && rng.below(8) == 0 { 255 } else { 4 };
    let count = 1 + rng.below(max);
    let address = |rng: &mut Rng| -> IpAddr {
        if v6 {
            let mut o = [0u8; 16];
            o.iter_mut().for_each(|b| *b = rng.byte());
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                rng.byte(),
                rng.byte(),
                rng.byte(),
                rng.byte(),
            ))
        }
    };
    let addresses = (0..count).map(|_| address(rng)).collect();
    let src = address(rng);
    let dst = if v6 {
        IpAddr::V6(MULTICAST_V6)
    } else {
        IpAddr::V4(MULTICAST_V4)
    };
    let (max_adver_interval, auth) = if v2 {
        let secs = Seconds(rng.byte().max(1));
        let auth = if rng.below(2) == 0 {
            Auth::None
        } else {
            let len = 1 + usize::try_from(rng.below(8)).expect("small");
            let pw: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            Auth::Simple(Password::new(&pw).expect("1..=8 bytes"))
        };
        (AdverInterval::Seconds(secs), auth)
    } else {
        let cs = u16::try_from(1 + rng.below(4095)).expect("12 bits");
        (AdverInterval::Centisecs(Centisecs(cs)), Auth::None)
    };
    let advert = Advert {
        vrid: vrid(rng.byte().max(1)),
        priority: Priority(rng.byte()),
        max_adver_interval,
        addresses,
        auth,
    };
    (advert, src, dst)
}

#[test]
fn property_round_trip() {
    for seed in 1..=5_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (advert, src, dst) = random_advert(&mut rng, true);
        let bytes = advert
            .encode(src, dst)
            .unwrap_or_else(|e| panic!("seed {seed}: encode failed: {e} for {advert:?}"));
        let meta = RxMeta {
            interval: match advert.version() {
                Version::V2 => advert.max_adver_interval,
                Version::V3 => AdverInterval::Centisecs(Centisecs(100)),
            },
            ..meta_for(&advert, src, dst)
        };
        assert_eq!(
            decode(&bytes, &meta),
            Ok(advert.clone()),
            "seed {seed}: round trip changed the advert"
        );
        // Re-encoding what was decoded gives the same bytes.
        assert_eq!(
            advert.encode(src, dst).as_deref(),
            Ok(bytes.as_slice()),
            "seed {seed}"
        );
    }
}

#[test]
fn property_single_bit_flips_are_caught_or_harmless() {
    // A one's-complement sum changes by a non-zero amount for any single flipped bit, so every
    // flip must be refused (by the checksum if nothing earlier catches it). Never a panic.
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd134_2543_de82_ef95));
        let (advert, src, dst) = random_advert(&mut rng, false);
        let bytes = advert.encode(src, dst).expect("valid");
        let meta = meta_for(&advert, src, dst);
        let meta = RxMeta {
            interval: if advert.version() == Version::V2 {
                advert.max_adver_interval
            } else {
                meta.interval
            },
            ..meta
        };
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Ok(got) = decode(&flipped, &meta) {
                panic!("seed {seed}: bit {bit} flipped and still decoded as {got:?}");
            }
        }
    }
}

#[test]
fn property_random_bytes_never_panic() {
    let peers = [ip("10.0.0.1")];
    for seed in 1..=20_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
        let len = usize::try_from(rng.below(64)).expect("small");
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if let Some(first) = bytes.first_mut() {
            *first = 0x20 | (*first & 0x1f); // mostly version 2 or 3
        }
        for meta in [v2_meta(), v3_v4_meta(), v3_v6_meta()] {
            let _ = decode(&bytes, &meta);
            let _ = decode(
                &bytes,
                &RxMeta {
                    peers: &peers,
                    ..meta
                },
            );
        }
    }
}
