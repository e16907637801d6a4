//! The connection-state sync's wire codec (`fo_agent::sync::codec`) and the replay
//! guard behind it (`sync::guard::PeerGuard`), with the harness holding the key, so
//! the fuzzer reaches past the HMAC.
//!
//! The input is a sequence of datagrams, each `[op, len_hi, len_lo, body (len bytes)]`
//! (the last one takes what is left). `op` bit 0: the harness signs the body with the
//! key, as a peer would (else the body goes as it is, unsigned); bits 1-7 choose the
//! bit the tampering check flips. For each datagram:
//!
//! - `decode` never panics; an unsigned body is never accepted (nobody without the
//!   key makes a datagram that authenticates);
//! - a decoded message encodes back to the same datagram (the reserved byte aside,
//!   which encode writes as 0);
//! - a message built from the body's bytes (any kind, header, up to 32 records)
//!   encodes and decodes back to itself;
//! - each datagram that decodes, with one bit flipped (where `op` says, and in the
//!   kind, the last byte before the MAC and the MAC's last byte), or under another key,
//!   is refused;
//! - through one `PeerGuard` for the whole sequence (our epoch [`MINE`], the clock at
//!   the datagram's own `sent at` so the skew check passes): no (epoch, counter) pair is
//!   accepted twice (the datagram just accepted, offered again, is refused as a
//!   replay), epochs accepted never go back, and what is accepted echoes our epoch.

#![no_main]

use std::collections::BTreeSet;
use std::time::Duration;

use fo_agent::sync::codec::{
    self, HEADER_LEN, Header, Kind, MAC_LEN, MAX_RECORDS, Message, Op, RECORD_LEN, Record,
};
use fo_agent::sync::guard::{PeerGuard, Refusal};
use hmac::{Hmac, KeyInit as _, Mac as _};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const KEY: &[u8] = b"fo-sync-fuzz-key-0123456789abcdef";
const OTHER_KEY: &[u8] = b"fo-sync-fuzz-key-0123456789abcdeF";
/// Our epoch, as the seeds echo it.
const MINE: u64 = 0x0000_0001_0000_0001;
const SKEW: Duration = Duration::from_secs(30);

/// `body` with the HMAC-SHA256 tag a key-holder appends.
fn signed(body: &[u8], key: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(body);
    let mut d = body.to_vec();
    d.extend_from_slice(&mac.finalize().into_bytes());
    d
}

/// A message made of `b`'s bytes (zeros past its end), read as the codec reads a
/// datagram, but any kind, record count and op (slots for the kinds that carry them).
fn message(b: &[u8]) -> Message {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let n = usize::from(at(1)) % (MAX_RECORDS + 1);
    let kind = Kind::ALL[usize::from(at(0)) % Kind::ALL.len()];
    let bytes = |r: usize| -> [u8; RECORD_LEN] {
        let o = HEADER_LEN + r * RECORD_LEN;
        std::array::from_fn(|k| at(o + k))
    };
    let (records, slots) = if kind.carries_records() {
        let records = (0..n)
            .map(|r| {
                let mut bytes = bytes(r);
                bytes[0] = [Op::Upsert, Op::Remove, Op::Owns][usize::from(bytes[0]) % 3] as u8;
                Record::read(&bytes).expect("a known op")
            })
            .collect();
        (records, Vec::new())
    } else {
        (Vec::new(), (0..n).map(bytes).collect())
    };
    Message {
        kind,
        header: Header::read(&std::array::from_fn(at)),
        records,
        slots,
    }
}

/// `d` (which decodes) with bit `bit` flipped must not.
fn refused_with_bit_flipped(d: &[u8], bit: usize) {
    let mut bad = d.to_vec();
    bad[bit / 8] ^= 1 << (bit % 8);
    assert!(
        codec::decode(&bad, KEY).is_err(),
        "bit {bit} of {} flipped and the datagram still decoded",
        d.len() * 8
    );
}

fuzz_target!(|data: &[u8]| {
    let mut guard = PeerGuard::default();
    let mut accepted: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut last_epoch = 0u64;
    let mut rest = data;
    while let [op, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let sign = op & 1 != 0;
        let d = if sign {
            signed(body, KEY)
        } else {
            body.to_vec()
        };

        // From the other side: a message made of the body's bytes.
        let built = message(body);
        let e = codec::encode(&built, KEY).expect("at most MAX_RECORDS records encode");
        assert_eq!(
            codec::decode(&e, KEY).as_ref(),
            Ok(&built),
            "decode(encode(m)) is not m"
        );
        for bit in [4 * 8, (e.len() - MAC_LEN) * 8 - 1, e.len() * 8 - 1] {
            refused_with_bit_flipped(&e, bit);
        }

        let Ok(m) = codec::decode(&d, KEY) else {
            continue;
        };
        assert!(sign, "an unsigned datagram was accepted: {d:02x?}");

        // Round trip: the format is canonical but for the reserved byte.
        let again = codec::encode(&m, KEY).expect("a decoded message encodes");
        let mut expected = d[..d.len() - MAC_LEN].to_vec();
        expected[5] = 0;
        assert_eq!(
            again[..again.len() - MAC_LEN],
            expected[..],
            "encode(decode(d)) differs from d"
        );
        assert_eq!(codec::decode(&again, KEY).as_ref(), Ok(&m));

        // Tampering: one flipped bit anywhere, or another key.
        for bit in [
            usize::from(op >> 1) * 131 % (d.len() * 8),
            4 * 8,
            (d.len() - MAC_LEN) * 8 - 1,
            d.len() * 8 - 1,
        ] {
            refused_with_bit_flipped(&d, bit);
        }
        assert!(
            codec::decode(&d, OTHER_KEY).is_err(),
            "decoded under another key"
        );
        assert!(d.len() >= HEADER_LEN + MAC_LEN);

        // The replay guard over the sequence.
        let h = &m.header;
        if guard.check(h, MINE, h.sent_unix_ms, SKEW).is_ok() {
            assert_eq!(h.echo, MINE, "accepted without echoing our epoch");
            assert!(
                h.epoch >= last_epoch,
                "epoch went back from {last_epoch} to {}",
                h.epoch
            );
            assert!(
                accepted.insert((h.epoch, h.counter)),
                "epoch {} counter {} accepted twice",
                h.epoch,
                h.counter
            );
            last_epoch = h.epoch;
            // The same datagram again, as a replay from the peer's address.
            assert_eq!(
                guard.clone().check(h, MINE, h.sent_unix_ms, SKEW),
                Err(Refusal::Replay),
                "a datagram just accepted was accepted again"
            );
        }
    }
});
