//! The connection-state sync wire format, version 1: UDP datagrams between node
//! addresses, authenticated with HMAC-SHA256 under a shared key. All integers are
//! big-endian.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                     magic "FOS1" (46 4f 53 31)                |
//! +---------------+---------------+-------------------------------+
//! |     kind      |   reserved 0  |        record count (u16)     |
//! +---------------+---------------+-------------------------------+
//! |        sender epoch (u64): random per sender process          |
//! +---------------------------------------------------------------+
//! |        sequence (u64): per epoch, +1 per Update message;      |
//! |        Heartbeat and SnapshotEnd carry the last one sent      |
//! +---------------------------------------------------------------+
//! |        sent at (u64): ms since the Unix epoch                 |
//! +---------------------------------------------------------------+
//! |        records, RECORD_LEN bytes each ...                     |
//! +---------------------------------------------------------------+
//! |        HMAC-SHA256 over everything above (32 bytes)           |
//! +---------------------------------------------------------------+
//!
//! record (37 bytes):
//!  op (1: upsert, 2: remove, 3: owns) | proto | client v4 | VIP v4 | client port |
//!  VIP port | backend v4 | backend port | SNAT v4 | SNAT port | client MAC (6) |
//!  state | age (u32, ms since the connection's last packet, at sending)
//!
//! A SnapshotEnd carries one `owns` record per VIP the sender owns (only `VIP` is
//! set): the snapshot is complete for exactly those VIPs.
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const MAGIC: [u8; 4] = *b"FOS1";
pub const HEADER_LEN: usize = 32;
pub const RECORD_LEN: usize = 37;
pub const MAC_LEN: usize = 32;
/// Records per datagram: the whole datagram stays under 1400 bytes.
pub const MAX_RECORDS: usize = 32;
const _: () = assert!(HEADER_LEN + MAX_RECORDS * RECORD_LEN + MAC_LEN <= 1400);

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Connections opened, changed or closed (streamed by the master).
    Update = 1,
    /// Part of a full snapshot, answering a `SnapshotRequest`.
    Snapshot = 2,
    /// The snapshot is complete; `seq` is the sender's sequence when it began.
    SnapshotEnd = 3,
    /// Nothing new; `seq` is the last Update sent (lets a receiver see a loss).
    Heartbeat = 4,
    /// "Send me everything": a node (re)joined or lost a message.
    SnapshotRequest = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Update,
            2 => Kind::Snapshot,
            3 => Kind::SnapshotEnd,
            4 => Kind::Heartbeat,
            5 => Kind::SnapshotRequest,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Upsert = 1,
    Remove = 2,
    /// In a SnapshotEnd: the sender owns `vip` (its snapshot covers that VIP).
    Owns = 3,
}

/// One NAT connection as synced (IPv4: NAT is IPv4 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub op: Op,
    pub proto: u8,
    pub client: Ipv4Addr,
    pub vip: Ipv4Addr,
    pub client_port: u16,
    pub vip_port: u16,
    pub backend: Ipv4Addr,
    pub backend_port: u16,
    pub snat: Ipv4Addr,
    pub snat_port: u16,
    pub client_mac: [u8; 6],
    pub state: u8,
    /// Time since the connection's last packet when the record was sent.
    pub age: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub epoch: u64,
    pub seq: u64,
    pub sent_unix_ms: u64,
    pub records: Vec<Record>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is shorter than a header and its MAC")]
    Short { len: usize },
    #[error("bad magic (not an fo sync message, or another version)")]
    Magic,
    #[error("authentication failed (wrong key, or the datagram was altered)")]
    Auth,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("record count {count} does not match the length {len}")]
    Length { count: usize, len: usize },
    #[error("unknown record op {0}")]
    Op(u8),
    #[error("too many records ({0})")]
    TooMany(usize),
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The datagram for `m`, authenticated with `key`.
pub fn encode(m: &Message, key: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if m.records.len() > MAX_RECORDS {
        return Err(DecodeError::TooMany(m.records.len()));
    }
    let mut b = Vec::with_capacity(HEADER_LEN + m.records.len() * RECORD_LEN + MAC_LEN);
    b.extend_from_slice(&MAGIC);
    b.push(m.kind as u8);
    b.push(0);
    b.extend_from_slice(&(m.records.len() as u16).to_be_bytes());
    b.extend_from_slice(&m.epoch.to_be_bytes());
    b.extend_from_slice(&m.seq.to_be_bytes());
    b.extend_from_slice(&m.sent_unix_ms.to_be_bytes());
    for r in &m.records {
        b.push(r.op as u8);
        b.push(r.proto);
        b.extend_from_slice(&r.client.octets());
        b.extend_from_slice(&r.vip.octets());
        b.extend_from_slice(&r.client_port.to_be_bytes());
        b.extend_from_slice(&r.vip_port.to_be_bytes());
        b.extend_from_slice(&r.backend.octets());
        b.extend_from_slice(&r.backend_port.to_be_bytes());
        b.extend_from_slice(&r.snat.octets());
        b.extend_from_slice(&r.snat_port.to_be_bytes());
        b.extend_from_slice(&r.client_mac);
        b.push(r.state);
        let age = u32::try_from(r.age.as_millis()).unwrap_or(u32::MAX);
        b.extend_from_slice(&age.to_be_bytes());
    }
    let mut h = mac(key);
    h.update(&b);
    b.extend_from_slice(&h.finalize().into_bytes());
    Ok(b)
}

/// Authenticate and parse a datagram. Nothing is parsed before the MAC verifies.
pub fn decode(d: &[u8], key: &[u8]) -> Result<Message, DecodeError> {
    if d.len() < HEADER_LEN + MAC_LEN {
        return Err(DecodeError::Short { len: d.len() });
    }
    if d[..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let (body, tag) = d.split_at(d.len() - MAC_LEN);
    let mut h = mac(key);
    h.update(body);
    h.verify_slice(tag).map_err(|_| DecodeError::Auth)?;
    let kind = Kind::from_u8(body[4]).ok_or(DecodeError::Kind(body[4]))?;
    let count = usize::from(u16::from_be_bytes([body[6], body[7]]));
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&body[i..i + 8]);
        u64::from_be_bytes(a)
    };
    if body.len() != HEADER_LEN + count * RECORD_LEN {
        return Err(DecodeError::Length {
            count,
            len: d.len(),
        });
    }
    if count > MAX_RECORDS {
        return Err(DecodeError::TooMany(count));
    }
    let mut records = Vec::with_capacity(count);
    for r in body[HEADER_LEN..].as_chunks::<RECORD_LEN>().0 {
        let ip = |i: usize| Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]);
        let port = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
        let op = match r[0] {
            1 => Op::Upsert,
            2 => Op::Remove,
            3 => Op::Owns,
            other => return Err(DecodeError::Op(other)),
        };
        let mut client_mac = [0u8; 6];
        client_mac.copy_from_slice(&r[26..32]);
        records.push(Record {
            op,
            proto: r[1],
            client: ip(2),
            vip: ip(6),
            client_port: port(10),
            vip_port: port(12),
            backend: ip(14),
            backend_port: port(18),
            snat: ip(20),
            snat_port: port(24),
            client_mac,
            state: r[32],
            age: Duration::from_millis(u64::from(u32::from_be_bytes([r[33], r[34], r[35], r[36]]))),
        });
    }
    Ok(Message {
        kind,
        epoch: u64_at(8),
        seq: u64_at(16),
        sent_unix_ms: u64_at(24),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    fn record(i: u8) -> Record {
        Record {
            op: if i.is_multiple_of(2) {
                Op::Upsert
            } else {
                Op::Remove
            },
            proto: 6,
            client: Ipv4Addr::new(198, 51, 100, i),
            vip: Ipv4Addr::new(192, 0, 2, 100),
            client_port: 40000 + u16::from(i),
            vip_port: 1514,
            backend: Ipv4Addr::new(10, 1, 0, 21),
            backend_port: 11514,
            snat: Ipv4Addr::new(192, 0, 2, 101),
            snat_port: 20000 + u16::from(i),
            client_mac: [2, 0xc1, 0, 0, 0, i],
            state: 2,
            age: Duration::from_millis(1234),
        }
    }

    fn message(n: u8) -> Message {
        Message {
            kind: Kind::Update,
            epoch: 0x0102_0304_0506_0708,
            seq: 42,
            sent_unix_ms: 1_700_000_000_000,
            records: (0..n).map(record).collect(),
        }
    }

    #[test]
    fn round_trips_with_the_layout_of_the_diagram() {
        let m = message(2);
        let d = encode(&m, KEY).expect("encode");
        assert_eq!(d.len(), HEADER_LEN + 2 * RECORD_LEN + MAC_LEN);
        assert_eq!(&d[..8], &[0x46, 0x4f, 0x53, 0x31, 1, 0, 0, 2]);
        assert_eq!(&d[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[16..24], &42u64.to_be_bytes());
        let r = &d[HEADER_LEN..HEADER_LEN + RECORD_LEN];
        assert_eq!(
            r,
            &[
                1, 6, 198, 51, 100, 0, 192, 0, 2, 100, 0x9c, 0x40, 0x05, 0xea, 10, 1, 0, 21, 0x2c,
                0xfa, 192, 0, 2, 101, 0x4e, 0x20, 2, 0xc1, 0, 0, 0, 0, 2, 0, 0, 0x04, 0xd2
            ][..]
        );
        assert_eq!(decode(&d, KEY).expect("decode"), m);
    }

    #[test]
    fn a_full_datagram_round_trips() {
        let m = message(MAX_RECORDS as u8);
        let d = encode(&m, KEY).expect("encode");
        assert!(d.len() <= 1400);
        assert_eq!(decode(&d, KEY).expect("decode"), m);
        let mut too_many = m.clone();
        too_many.records.push(record(0));
        assert_eq!(encode(&too_many, KEY), Err(DecodeError::TooMany(33)));
    }

    #[test]
    fn a_snapshot_end_names_the_owned_vips() {
        let mut owns = record(0);
        owns.op = Op::Owns;
        let m = Message {
            kind: Kind::SnapshotEnd,
            records: vec![owns],
            ..message(0)
        };
        let d = encode(&m, KEY).expect("encode");
        assert_eq!(d[HEADER_LEN], 3, "op owns");
        assert_eq!(decode(&d, KEY).expect("decode"), m);
    }

    #[test]
    fn wrong_key_or_any_flipped_bit_fails_authentication() {
        let d = encode(&message(1), KEY).expect("encode");
        assert_eq!(decode(&d, b"another key entirely"), Err(DecodeError::Auth));
        for i in 4..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                decode(&bad, KEY),
                Err(DecodeError::Auth),
                "bit flipped at {i}"
            );
        }
    }

    #[test]
    fn short_and_foreign_datagrams_are_refused() {
        assert_eq!(decode(&[0; 10], KEY), Err(DecodeError::Short { len: 10 }));
        let mut d = encode(&message(0), KEY).expect("encode");
        d[0] = b'X';
        assert_eq!(decode(&d, KEY), Err(DecodeError::Magic));
    }

    #[test]
    fn a_count_that_lies_is_refused_even_when_authenticated() {
        let mut d = encode(&message(1), KEY).expect("encode");
        d.truncate(d.len() - MAC_LEN);
        d[7] = 2; // claims two records
        let mut h = mac(KEY);
        h.update(&d);
        d.extend_from_slice(&h.finalize().into_bytes());
        assert!(matches!(
            decode(&d, KEY),
            Err(DecodeError::Length { count: 2, .. })
        ));
    }
}
