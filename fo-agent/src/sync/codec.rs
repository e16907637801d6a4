//! The connection-state sync wire format, version 2: UDP datagrams between node
//! addresses, authenticated with HMAC-SHA256 under a shared key. All integers are
//! big-endian.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |     magic "FOS" (46 4f 53) and the wire version "2" (32)      |
//! +---------------+---------------+-------------------------------+
//! |     kind      |   reserved 0  |        record count (u16)     |
//! +---------------+---------------+-------------------------------+
//! |  sender epoch (u64): kept on disk, larger at every start      |
//! +---------------------------------------------------------------+
//! |  counter (u64): +1 per datagram the sender sends in its epoch |
//! +---------------------------------------------------------------+
//! |  echo (u64): the receiver's epoch as the sender last heard it |
//! |  (0: not heard yet)                                           |
//! +---------------------------------------------------------------+
//! |  sent at (u64): ms since the Unix epoch                       |
//! +---------------------------------------------------------------+
//! |  seq (u64): the connection stream's position — Update: its    |
//! |  number (+1 per Update in the epoch); Heartbeat: the last one |
//! |  sent; SnapshotEnd: the last one sent before the snapshot     |
//! +---------------------------------------------------------------+
//! |  snapshot (u64): Snapshot, SnapshotEnd, SnapshotAck: which    |
//! |  snapshot (the counter of the SnapshotRequest that asked it); |
//! |  Heartbeat: the snapshot being prepared for the receiver, or 0|
//! +-------------------------------+-------------------------------+
//! |  index (u32): Snapshot: its   |  total (u32): Snapshot and    |
//! |  number from 0; SnapshotEnd:  |  SnapshotEnd: the connection  |
//! |  datagrams sent; SnapshotAck: |  records in the snapshot      |
//! |  datagrams received           |                               |
//! +-------------------------------+-------------------------------+
//! |        records, RECORD_LEN bytes each ...                     |
//! +---------------------------------------------------------------+
//! |        HMAC-SHA256 over everything above (32 bytes)           |
//! +---------------------------------------------------------------+
//!
//! record, IPv4 (one slot of RECORD_LEN = 37 bytes):
//!  op (1: upsert, 2: remove, 3: owns) | proto | client v4 | VIP v4 | client port |
//!  VIP port | backend v4 | backend port | SNAT v4 | SNAT port | client MAC (6) |
//!  state | age (u32, ms since the connection's last packet, at sending)
//!
//! record, IPv6 (NAT66; RECORD6_SLOTS = 3 slots, 111 bytes, the last 26 zero):
//!  op (0x11: upsert, 0x12: remove, 0x13: owns) | proto | client v6 | VIP v6 |
//!  client port | VIP port | backend v6 | backend port | SNAT v6 | SNAT port |
//!  client MAC (6) | state | age (u32) | zero padding
//!
//! The header's record count counts slots. An IPv6 record's op has bit 0x10 set, an
//! op the agents before NAT66 do not know: they refuse the whole datagram (`unknown
//! record op`), never read an IPv6 record as IPv4 ones. Datagrams with IPv4 records
//! only are unchanged, so the version stays 2 and IPv4 sync keeps working between
//! agents with and without NAT66.
//!
//! A SnapshotEnd carries one `owns` record per VIP the sender owns (only `VIP` is
//! set): the snapshot is complete for exactly those VIPs. IPv6 VIPs are named only if
//! they have NAT66 services, so a node that owns IPv6 DSR VIPs only still sends IPv4
//! records only, which agents before NAT66 read.
//!
//! Ready, DrillRequest and DrillReply carry slots of RECORD_LEN bytes instead of
//! connection records (their layout is in `sync::drill`): the sender's readiness per
//! router, and the drill's request for the peer's forwarding timeline and its answer.
//! ```
//!
//! Every version ends with an HMAC over everything before it, so a datagram is
//! authenticated before its version is read: a refusal for another version names a
//! peer that holds the key (an upgrade under way), never a stranger. Version 1 (magic
//! `FOS1`, no counter, no echo) is refused; see the module docs of `sync` for why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The wire version this build speaks (the magic's last byte is its ASCII digit).
pub const VERSION: u8 = 2;
pub const MAGIC: [u8; 4] = [b'F', b'O', b'S', b'0' + VERSION];
pub const HEADER_LEN: usize = 64;
pub const RECORD_LEN: usize = 37;
pub const MAC_LEN: usize = 32;
/// Slots per datagram (an IPv4 record is one slot, an IPv6 one [`RECORD6_SLOTS`]):
/// the whole datagram stays under 1400 bytes.
pub const MAX_RECORDS: usize = 32;
/// Slots of an IPv6 record.
pub const RECORD6_SLOTS: usize = 3;
/// The op bit of an IPv6 record.
const OP_V6: u8 = 0x10;
/// Bytes of an IPv6 record before its padding.
const RECORD6_USED: usize = 85;
const _: () = assert!(RECORD6_USED <= RECORD6_SLOTS * RECORD_LEN);
const _: () = assert!(HEADER_LEN + MAX_RECORDS * RECORD_LEN + MAC_LEN <= 1400);

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Connections opened, changed or closed (streamed by the master).
    Update = 1,
    /// Part of a full snapshot, answering a `SnapshotRequest`.
    Snapshot = 2,
    /// The snapshot is complete: how many datagrams and records it had, and the stream
    /// position it covers.
    SnapshotEnd = 3,
    /// Nothing new; `seq` is the last Update sent (lets a receiver see a loss).
    Heartbeat = 4,
    /// "Send me everything": a node (re)joined or lost a message.
    SnapshotRequest = 5,
    /// "I have received `index` datagrams of snapshot `snapshot`": paces the sender.
    SnapshotAck = 6,
    /// The sender's readiness per router (state, faults, table current), sent with
    /// every heartbeat: a drill on the peer reads it (`sync::drill`).
    Ready = 7,
    /// "Record your forwarding timeline from `seq` (unix ms) for `index` ms, and send it
    /// back under id `snapshot`" (a drill).
    DrillRequest = 8,
    /// The timeline asked for: `snapshot` is the request's id, `index` the window's
    /// length in ms, `total` the sampler's longest step in µs (see `sync/drill.rs`).
    DrillReply = 9,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Update,
        Kind::Snapshot,
        Kind::SnapshotEnd,
        Kind::Heartbeat,
        Kind::SnapshotRequest,
        Kind::SnapshotAck,
        Kind::Ready,
        Kind::DrillRequest,
        Kind::DrillReply,
    ];

    /// Whether the payload is connection records (else raw slots).
    pub fn carries_records(self) -> bool {
        !matches!(self, Kind::Ready | Kind::DrillRequest | Kind::DrillReply)
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == b)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Update => "update",
            Kind::Snapshot => "snapshot",
            Kind::SnapshotEnd => "snapshot_end",
            Kind::Heartbeat => "heartbeat",
            Kind::SnapshotRequest => "snapshot_request",
            Kind::SnapshotAck => "snapshot_ack",
            Kind::Ready => "ready",
            Kind::DrillRequest => "drill_request",
            Kind::DrillReply => "drill_reply",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Upsert = 1,
    Remove = 2,
    /// In a SnapshotEnd: the sender owns `vip` (its snapshot covers that VIP).
    Owns = 3,
}

/// One NAT connection as synced. Its four addresses are of one family (IPv4 NAT or
/// NAT66); `encode` refuses a record that mixes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub op: Op,
    pub proto: u8,
    pub client: IpAddr,
    pub vip: IpAddr,
    pub client_port: u16,
    pub vip_port: u16,
    pub backend: IpAddr,
    pub backend_port: u16,
    pub snat: IpAddr,
    pub snat_port: u16,
    pub client_mac: [u8; 6],
    pub state: u8,
    /// Time since the connection's last packet when the record was sent.
    pub age: Duration,
}

/// The fields every datagram carries under the MAC, whatever its kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub epoch: u64,
    pub counter: u64,
    pub echo: u64,
    pub sent_unix_ms: u64,
    pub seq: u64,
    pub snapshot: u64,
    pub index: u32,
    pub total: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub header: Header,
    pub records: Vec<Record>,
    /// The payload of the kinds that carry no connection records.
    pub slots: Vec<Slot>,
}

/// One RECORD_LEN-byte slot of a Ready or Drill message.
pub type Slot = [u8; RECORD_LEN];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes is shorter than a header and its MAC")]
    Short { len: usize },
    #[error("bad magic (not an fo sync message)")]
    Magic,
    #[error("authentication failed (wrong key, or the datagram was altered)")]
    Auth,
    #[error("sync wire version {found}, this agent speaks version {VERSION}")]
    Version { found: u8 },
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("record count {count} does not match the length {len}")]
    Length { count: usize, len: usize },
    #[error("unknown record op {0}")]
    Op(u8),
    #[error("too many records ({0})")]
    TooMany(usize),
    #[error("a {0} message carries the other payload (records or slots)")]
    Payload(&'static str),
    #[error("a record mixes IPv4 and IPv6 addresses")]
    Family,
    #[error("an IPv6 record is cut short or its padding is not zero")]
    Record6,
}

impl Record {
    /// Whether this is an IPv6 (NAT66) record: its VIP decides.
    pub fn is_v6(&self) -> bool {
        self.vip.is_ipv6()
    }

    /// Slots this record takes on the wire.
    pub fn slots(&self) -> usize {
        if self.is_v6() { RECORD6_SLOTS } else { 1 }
    }
}

/// `records` cut into datagrams of at most [`MAX_RECORDS`] slots each, in order.
pub fn batches(records: &[Record]) -> Vec<&[Record]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        if used + r.slots() > MAX_RECORDS {
            out.push(&records[start..i]);
            (start, used) = (i, 0);
        }
        used += r.slots();
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// The slots `records` take on the wire.
pub fn slots_of(records: &[Record]) -> usize {
    records.iter().map(Record::slots).sum()
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The datagram for `m`, authenticated with `key`.
pub fn encode(m: &Message, key: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let count = slots_of(&m.records) + m.slots.len();
    if count > MAX_RECORDS {
        return Err(DecodeError::TooMany(count));
    }
    let other_empty = if m.kind.carries_records() {
        m.slots.is_empty()
    } else {
        m.records.is_empty()
    };
    if !other_empty {
        return Err(DecodeError::Payload(m.kind.name()));
    }
    let h = &m.header;
    let mut b = Vec::with_capacity(HEADER_LEN + count * RECORD_LEN + MAC_LEN);
    b.extend_from_slice(&MAGIC);
    b.push(m.kind as u8);
    b.push(0);
    b.extend_from_slice(&(count as u16).to_be_bytes());
    for v in [
        h.epoch,
        h.counter,
        h.echo,
        h.sent_unix_ms,
        h.seq,
        h.snapshot,
    ] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&h.index.to_be_bytes());
    b.extend_from_slice(&h.total.to_be_bytes());
    debug_assert_eq!(b.len(), HEADER_LEN);
    for r in &m.records {
        r.write(&mut b)?;
    }
    for slot in &m.slots {
        b.extend_from_slice(slot);
    }
    let mut mac = mac(key);
    mac.update(&b);
    b.extend_from_slice(&mac.finalize().into_bytes());
    Ok(b)
}

/// Authenticate and parse a datagram. Nothing is parsed before the MAC verifies.
pub fn decode(d: &[u8], key: &[u8]) -> Result<Message, DecodeError> {
    // The shortest datagram of any version: a magic and a MAC.
    if d.len() < MAGIC.len() + MAC_LEN {
        return Err(DecodeError::Short { len: d.len() });
    }
    if d[..3] != MAGIC[..3] {
        return Err(DecodeError::Magic);
    }
    let (body, tag) = d.split_at(d.len() - MAC_LEN);
    let mut mac = mac(key);
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| DecodeError::Auth)?;
    if d[3] != MAGIC[3] {
        return Err(DecodeError::Version {
            found: d[3].wrapping_sub(b'0'),
        });
    }
    let Some((header, rest)) = body.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Short { len: d.len() });
    };
    let kind = Kind::from_u8(body[4]).ok_or(DecodeError::Kind(body[4]))?;
    let count = usize::from(u16::from_be_bytes([body[6], body[7]]));
    if count > MAX_RECORDS {
        return Err(DecodeError::TooMany(count));
    }
    if body.len() != HEADER_LEN + count * RECORD_LEN {
        return Err(DecodeError::Length {
            count,
            len: d.len(),
        });
    }
    let chunks = rest.as_chunks::<RECORD_LEN>().0;
    let (records, slots) = if kind.carries_records() {
        let mut records = Vec::with_capacity(chunks.len());
        let mut i = 0;
        while i < chunks.len() {
            if chunks[i][0] & OP_V6 != 0 {
                let end = i + RECORD6_SLOTS;
                if end > chunks.len() {
                    return Err(DecodeError::Record6);
                }
                records.push(Record::read6(chunks[i..end].as_flattened())?);
                i = end;
            } else {
                records.push(Record::read(&chunks[i])?);
                i += 1;
            }
        }
        (records, Vec::new())
    } else {
        (Vec::new(), chunks.to_vec())
    };
    Ok(Message {
        kind,
        header: Header::read(header),
        records,
        slots,
    })
}

impl Header {
    /// The fields of a datagram's first `HEADER_LEN` bytes (past the magic, kind and
    /// record count, which `decode` reads itself).
    pub fn read(b: &[u8; HEADER_LEN]) -> Header {
        let u64_at = |i: usize| u64::from_be_bytes(std::array::from_fn(|k| b[i + k]));
        let u32_at = |i: usize| u32::from_be_bytes(std::array::from_fn(|k| b[i + k]));
        Header {
            epoch: u64_at(8),
            counter: u64_at(16),
            echo: u64_at(24),
            sent_unix_ms: u64_at(32),
            seq: u64_at(40),
            snapshot: u64_at(48),
            index: u32_at(56),
            total: u32_at(60),
        }
    }
}

fn op_of(b: u8) -> Result<Op, DecodeError> {
    match b & !OP_V6 {
        1 => Ok(Op::Upsert),
        2 => Ok(Op::Remove),
        3 => Ok(Op::Owns),
        _ => Err(DecodeError::Op(b)),
    }
}

impl Record {
    /// Append this record's slots to `b`.
    fn write(&self, b: &mut Vec<u8>) -> Result<(), DecodeError> {
        let start = b.len();
        let v6 = self.is_v6();
        b.push(self.op as u8 | if v6 { OP_V6 } else { 0 });
        b.push(self.proto);
        let addr = |b: &mut Vec<u8>, a: IpAddr| match a {
            IpAddr::V4(a) if !v6 => {
                b.extend_from_slice(&a.octets());
                Ok(())
            }
            IpAddr::V6(a) if v6 => {
                b.extend_from_slice(&a.octets());
                Ok(())
            }
            _ => Err(DecodeError::Family),
        };
        addr(b, self.client)?;
        addr(b, self.vip)?;
        b.extend_from_slice(&self.client_port.to_be_bytes());
        b.extend_from_slice(&self.vip_port.to_be_bytes());
        addr(b, self.backend)?;
        b.extend_from_slice(&self.backend_port.to_be_bytes());
        addr(b, self.snat)?;
        b.extend_from_slice(&self.snat_port.to_be_bytes());
        b.extend_from_slice(&self.client_mac);
        b.push(self.state);
        let age = u32::try_from(self.age.as_millis()).unwrap_or(u32::MAX);
        b.extend_from_slice(&age.to_be_bytes());
        b.resize(start + self.slots() * RECORD_LEN, 0);
        Ok(())
    }

    /// An IPv6 record's `RECORD6_SLOTS` slots; an unknown op or padding that is not
    /// zero is refused.
    pub fn read6(r: &[u8]) -> Result<Record, DecodeError> {
        if r.len() != RECORD6_SLOTS * RECORD_LEN || r[RECORD6_USED..].iter().any(|&b| b != 0) {
            return Err(DecodeError::Record6);
        }
        let ip = |i: usize| {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&r[i..i + 16]).unwrap_or_default(),
            ))
        };
        let port = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
        let op = op_of(r[0])?;
        let mut client_mac = [0u8; 6];
        client_mac.copy_from_slice(&r[74..80]);
        Ok(Record {
            op,
            proto: r[1],
            client: ip(2),
            vip: ip(18),
            client_port: port(34),
            vip_port: port(36),
            backend: ip(38),
            backend_port: port(54),
            snat: ip(56),
            snat_port: port(72),
            client_mac,
            state: r[80],
            age: Duration::from_millis(u64::from(u32::from_be_bytes([r[81], r[82], r[83], r[84]]))),
        })
    }

    /// One IPv4 record's `RECORD_LEN` bytes; an unknown op is refused.
    pub fn read(r: &[u8; RECORD_LEN]) -> Result<Record, DecodeError> {
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        let port = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
        if r[0] & OP_V6 != 0 {
            return Err(DecodeError::Record6);
        }
        let op = op_of(r[0])?;
        let mut client_mac = [0u8; 6];
        client_mac.copy_from_slice(&r[26..32]);
        Ok(Record {
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
        })
    }
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
            client: Ipv4Addr::new(198, 51, 100, i).into(),
            vip: Ipv4Addr::new(192, 0, 2, 100).into(),
            client_port: 40000 + u16::from(i),
            vip_port: 1514,
            backend: Ipv4Addr::new(10, 1, 0, 21).into(),
            backend_port: 11514,
            snat: Ipv4Addr::new(192, 0, 2, 101).into(),
            snat_port: 20000 + u16::from(i),
            client_mac: [2, 0xc1, 0, 0, 0, i],
            state: 2,
            age: Duration::from_millis(1234),
        }
    }

    fn message(n: u8) -> Message {
        Message {
            kind: Kind::Update,
            header: Header {
                epoch: 0x0102_0304_0506_0708,
                counter: 0x1112_1314_1516_1718,
                echo: 0x2122_2324_2526_2728,
                sent_unix_ms: 1_700_000_000_000,
                seq: 42,
                snapshot: 7,
                index: 0x3132_3334,
                total: 0x4142_4344,
            },
            records: (0..n).map(record).collect(),
            slots: Vec::new(),
        }
    }

    #[test]
    fn round_trips_with_the_layout_of_the_diagram() {
        let m = message(2);
        let d = encode(&m, KEY).expect("encode");
        assert_eq!(d.len(), HEADER_LEN + 2 * RECORD_LEN + MAC_LEN);
        assert_eq!(&d[..8], &[0x46, 0x4f, 0x53, 0x32, 1, 0, 0, 2]);
        assert_eq!(&d[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &d[16..24],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(
            &d[24..32],
            &[0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28]
        );
        assert_eq!(&d[32..40], &1_700_000_000_000u64.to_be_bytes());
        assert_eq!(&d[40..48], &42u64.to_be_bytes());
        assert_eq!(&d[48..56], &7u64.to_be_bytes());
        assert_eq!(
            &d[56..64],
            &[0x31, 0x32, 0x33, 0x34, 0x41, 0x42, 0x43, 0x44]
        );
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

    fn record6(i: u8) -> Record {
        let v6 = |s: &str| s.parse::<IpAddr>().expect("address");
        Record {
            client: v6(&format!("2001:db8:c::{i:x}")),
            vip: v6("2001:db8::100"),
            backend: v6("fd00:1::21"),
            snat: v6("2001:db8::101"),
            ..record(i)
        }
    }

    #[test]
    fn an_ipv6_record_takes_three_slots_with_the_layout_of_the_diagram() {
        let mut m = message(0);
        m.records = vec![record(0), record6(2), record(1)];
        let d = encode(&m, KEY).expect("encode");
        assert_eq!(d.len(), HEADER_LEN + 5 * RECORD_LEN + MAC_LEN);
        assert_eq!(&d[4..8], &[1, 0, 0, 5], "the count counts slots");
        let r = &d[HEADER_LEN + RECORD_LEN..HEADER_LEN + 4 * RECORD_LEN];
        let mut want = vec![0x11, 6];
        want.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0xc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        want.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        want.extend_from_slice(&[0x9c, 0x42, 0x05, 0xea]);
        want.extend_from_slice(&[0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21]);
        want.extend_from_slice(&[0x2c, 0xfa]);
        want.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        want.extend_from_slice(&[0x4e, 0x22, 2, 0xc1, 0, 0, 0, 2, 2, 0, 0, 0x04, 0xd2]);
        assert_eq!(want.len(), RECORD6_USED);
        want.resize(RECORD6_SLOTS * RECORD_LEN, 0);
        assert_eq!(r, &want[..]);
        assert_eq!(decode(&d, KEY).expect("decode"), m);
    }

    #[test]
    fn ipv6_records_of_every_op_round_trip_and_fill_a_datagram() {
        for op in [Op::Upsert, Op::Remove, Op::Owns] {
            let mut m = message(0);
            m.records = (0..(MAX_RECORDS / RECORD6_SLOTS) as u8)
                .map(|i| Record { op, ..record6(i) })
                .collect();
            let d = encode(&m, KEY).expect("encode");
            assert!(d.len() <= 1400);
            assert_eq!(decode(&d, KEY).expect("decode"), m);
            m.records.push(record6(0));
            m.records.push(record(0));
            assert_eq!(encode(&m, KEY), Err(DecodeError::TooMany(34)));
        }
    }

    #[test]
    fn a_record_mixing_families_is_not_encoded() {
        let mut m = message(0);
        m.records = vec![Record {
            backend: "fd00::1".parse().expect("address"),
            ..record(0)
        }];
        assert_eq!(encode(&m, KEY), Err(DecodeError::Family));
        m.records = vec![Record {
            snat: Ipv4Addr::new(192, 0, 2, 1).into(),
            ..record6(0)
        }];
        assert_eq!(encode(&m, KEY), Err(DecodeError::Family));
    }

    /// What an agent before NAT66 does with an IPv6 record: its decoder knew ops
    /// 1..=3 on single slots only, so it refuses the datagram on the op.
    #[test]
    fn an_ipv6_record_is_refused_whole_by_the_old_decoding_never_misread() {
        let mut m = message(0);
        m.records = vec![record6(1)];
        let d = encode(&m, KEY).expect("encode");
        let first = &d[HEADER_LEN..HEADER_LEN + RECORD_LEN];
        assert!(!(1..=3).contains(&first[0]), "an op the old agents refuse");
    }

    #[test]
    fn a_cut_or_padded_ipv6_record_is_refused_even_when_authenticated() {
        let mut m = message(0);
        m.records = vec![record6(1)];
        let d = encode(&m, KEY).expect("encode");
        let mut body = d[..d.len() - MAC_LEN].to_vec();
        // Claim two slots and drop the third: the record is cut.
        body.truncate(HEADER_LEN + 2 * RECORD_LEN);
        body[7] = 2;
        assert_eq!(decode(&signed(body), KEY), Err(DecodeError::Record6));
        let mut body = d[..d.len() - MAC_LEN].to_vec();
        *body.last_mut().expect("padding") = 1;
        assert_eq!(decode(&signed(body), KEY), Err(DecodeError::Record6));
        // An IPv4 slot with the IPv6 bit is never read as IPv4.
        assert_eq!(Record::read(&[0x11; RECORD_LEN]), Err(DecodeError::Record6));
    }

    #[test]
    fn batches_keep_every_datagram_within_its_slots_and_in_order() {
        let records: Vec<Record> = (0..40u8)
            .map(|i| if i % 3 == 0 { record6(i) } else { record(i) })
            .collect();
        let batches = batches(&records);
        assert!(batches.iter().all(|b| slots_of(b) <= MAX_RECORDS));
        assert!(
            batches[..batches.len() - 1]
                .iter()
                .all(|b| slots_of(b) > MAX_RECORDS - RECORD6_SLOTS)
        );
        assert_eq!(batches.concat(), records);
        assert!(super::batches(&[]).is_empty());
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in Kind::ALL {
            let mut m = Message { kind, ..message(1) };
            if !kind.carries_records() {
                m.records.clear();
                m.slots = vec![[kind as u8; RECORD_LEN]];
            }
            let d = encode(&m, KEY).expect("encode");
            assert_eq!(d[4], kind as u8);
            assert_eq!(decode(&d, KEY).expect("decode"), m, "{kind:?}");
        }
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
        for i in 3..d.len() {
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

    /// Signs `body` as a datagram of any version would be.
    fn signed(mut body: Vec<u8>) -> Vec<u8> {
        let mut h = mac(KEY);
        h.update(&body);
        body.extend_from_slice(&h.finalize().into_bytes());
        body
    }

    #[test]
    fn another_version_is_named_only_once_authenticated() {
        // A version 1 heartbeat: magic FOS1, kind 4, epoch, seq, sent at.
        let mut v1 = b"FOS1".to_vec();
        v1.extend_from_slice(&[4, 0, 0, 0]);
        v1.extend_from_slice(&[0; 24]);
        let d = signed(v1);
        assert_eq!(decode(&d, KEY), Err(DecodeError::Version { found: 1 }));
        assert_eq!(
            decode(&d, b"another key entirely"),
            Err(DecodeError::Auth),
            "a stranger's datagram is an authentication failure, whatever version it claims"
        );
    }

    #[test]
    fn a_count_that_lies_is_refused_even_when_authenticated() {
        let mut d = encode(&message(1), KEY).expect("encode");
        d.truncate(d.len() - MAC_LEN);
        d[7] = 2; // claims two records
        assert!(matches!(
            decode(&signed(d), KEY),
            Err(DecodeError::Length { count: 2, .. })
        ));
    }

    #[test]
    fn an_authenticated_header_too_short_is_refused() {
        assert_eq!(
            decode(&signed(MAGIC.to_vec()), KEY),
            Err(DecodeError::Short { len: 36 })
        );
    }
}
