//! The fo-lab wire protocol, version 1. All integers are big-endian.
//!
//! ```text
//! agent -> sink, once, first bytes of every connection (HELLO, 20 bytes):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                    magic "FOL1" (46 4f 4c 31)                 |
//! +---------------------------------------------------------------+
//! |                         agent id (u32)                        |
//! +---------------------------------------------------------------+
//! |              connection epoch (u32, 1 = first connection)     |
//! +---------------------------------------------------------------+
//! |        resume_from (u64): highest sequence the agent has      |
//! |        seen acknowledged; the next event is resume_from + 1   |
//! +---------------------------------------------------------------+
//!
//! agent -> sink, repeated (EVENT, 19 + payload_len bytes):
//! +---------------+-----------------------------------------------+
//! | type 'E' 0x45 | sequence (u64, per agent, starts at 1,        |
//! +---------------+   monotonic across reconnects; a resend       |
//! |                   repeats the original number)                |
//! +---------------------------------------------------------------+
//! |  send time (u64, ns since the Unix epoch, CLOCK_REALTIME,     |
//! |  taken when the event was written to this connection)         |
//! +-------------------------------+-------------------------------+
//! | payload_len (u16, <= 8192)    | payload_len filler bytes ...  |
//! +-------------------------------+-------------------------------+
//!
//! sink -> agent, repeated (ACK, 9 bytes):
//! +---------------+-----------------------------------------------+
//! | type 'A' 0x41 | acknowledged (u64): every sequence <= this    |
//! +---------------+   value was received, by this sink or (below  |
//!                     the agent's resume_from) by an earlier one  |
//! +---------------------------------------------------------------+
//! ```
//!
//! Acks are cumulative and never decrease on one connection. An agent counts an event as
//! acknowledged only when an ACK covers it; after a reconnect it resends everything after
//! its highest ACK, so a loss shows up at the sink as a resend (duplicate), never silently.

/// First four bytes of every connection.
pub const MAGIC: [u8; 4] = *b"FOL1";
/// Length of a HELLO.
pub const HELLO_LEN: usize = 20;
/// Length of an EVENT without its payload.
pub const EVENT_HEADER_LEN: usize = 19;
/// Length of an ACK.
pub const ACK_LEN: usize = 9;
/// Largest payload an EVENT may carry; a sink's read buffer holds at least one whole frame.
pub const MAX_PAYLOAD: u16 = 8192;
/// Frame type of an EVENT.
pub const TYPE_EVENT: u8 = b'E';
/// Frame type of an ACK.
pub const TYPE_ACK: u8 = b'A';

/// A protocol violation by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("bad magic {found:02x?}, expected \"FOL1\"")]
    BadMagic { found: [u8; 4] },
    #[error("unknown frame type {found:#04x}, expected {expected:#04x}")]
    BadType { found: u8, expected: u8 },
    #[error("event payload of {len} bytes exceeds the maximum of {MAX_PAYLOAD}")]
    PayloadTooLong { len: u16 },
    #[error("sequence 0 is reserved (sequences start at 1)")]
    ZeroSequence,
}

/// The first frame of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub agent: u32,
    pub epoch: u32,
    pub resume_from: u64,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.agent.to_be_bytes());
        b[8..12].copy_from_slice(&self.epoch.to_be_bytes());
        b[12..20].copy_from_slice(&self.resume_from.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Self, ProtoError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(ProtoError::BadMagic { found: magic });
        }
        Ok(Self {
            agent: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            epoch: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            resume_from: u64_at(b, 12),
        })
    }
}

/// An EVENT header (the payload is filler and is skipped by the sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub sent_unix_ns: u64,
    pub payload_len: u16,
}

impl Event {
    /// Appends the frame (header and `payload_len` filler bytes) to `buf`; no allocation
    /// once `buf` has grown to its working size.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.push(TYPE_EVENT);
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.sent_unix_ns.to_be_bytes());
        buf.extend_from_slice(&self.payload_len.to_be_bytes());
        buf.resize(buf.len() + usize::from(self.payload_len), b'.');
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` when `buf` holds less than a
    /// whole frame, else the event and the number of bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtoError> {
        if !holds_frame(buf, TYPE_EVENT, EVENT_HEADER_LEN)? {
            return Ok(None);
        }
        let payload_len = u16::from_be_bytes([buf[17], buf[18]]);
        if payload_len > MAX_PAYLOAD {
            return Err(ProtoError::PayloadTooLong { len: payload_len });
        }
        let len = EVENT_HEADER_LEN + usize::from(payload_len);
        if buf.len() < len {
            return Ok(None);
        }
        let seq = u64_at(buf, 1);
        if seq == 0 {
            return Err(ProtoError::ZeroSequence);
        }
        let ev = Self {
            seq,
            sent_unix_ns: u64_at(buf, 9),
            payload_len,
        };
        Ok(Some((ev, len)))
    }
}

/// Encodes an ACK.
pub fn encode_ack(acked: u64) -> [u8; ACK_LEN] {
    let mut b = [0u8; ACK_LEN];
    b[0] = TYPE_ACK;
    b[1..9].copy_from_slice(&acked.to_be_bytes());
    b
}

/// Decodes one ACK from the front of `buf`: `Ok(None)` when fewer than [`ACK_LEN`] bytes.
pub fn decode_ack(buf: &[u8]) -> Result<Option<u64>, ProtoError> {
    if !holds_frame(buf, TYPE_ACK, ACK_LEN)? {
        return Ok(None);
    }
    Ok(Some(u64_at(buf, 1)))
}

/// Whether `buf` starts with `len` bytes of a frame of type `expected`: false while
/// fewer have arrived, an error as soon as its first byte names another type.
fn holds_frame(buf: &[u8], expected: u8, len: usize) -> Result<bool, ProtoError> {
    match buf.first() {
        None => Ok(false),
        Some(&found) if found != expected => Err(ProtoError::BadType { found, expected }),
        Some(_) => Ok(buf.len() >= len),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_bytes_both_ways() {
        let h = Hello {
            agent: 0x0102_0304,
            epoch: 7,
            resume_from: 0x1122_3344_5566_7788,
        };
        let bytes = [
            b'F', b'O', b'L', b'1', 1, 2, 3, 4, 0, 0, 0, 7, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
            0x77, 0x88,
        ];
        assert_eq!(h.encode(), bytes, "hello encoding");
        assert_eq!(Hello::decode(&bytes), Ok(h), "hello decoding");
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(
            Hello::decode(&bad),
            Err(ProtoError::BadMagic { found: *b"XOL1" })
        );
    }

    #[test]
    fn event_bytes_both_ways_and_partial_frames() {
        let ev = Event {
            seq: 5,
            sent_unix_ns: 0x0a0b,
            payload_len: 3,
        };
        let mut buf = Vec::new();
        ev.encode_into(&mut buf);
        let expected = [
            b'E', 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b, 0, 3, b'.', b'.', b'.',
        ];
        assert_eq!(buf, expected, "event encoding");
        for cut in 0..expected.len() {
            assert_eq!(
                Event::decode(&expected[..cut]),
                Ok(None),
                "a frame cut at {cut} bytes must read as incomplete"
            );
        }
        assert_eq!(Event::decode(&expected), Ok(Some((ev, expected.len()))));
        let mut zero = expected;
        zero[8] = 0;
        assert_eq!(Event::decode(&zero), Err(ProtoError::ZeroSequence));
        assert_eq!(
            Event::decode(b"Z"),
            Err(ProtoError::BadType {
                found: b'Z',
                expected: TYPE_EVENT
            })
        );
        let mut long = expected;
        long[17] = 0xff;
        assert_eq!(
            Event::decode(&long),
            Err(ProtoError::PayloadTooLong { len: 0xff03 })
        );
    }

    #[test]
    fn ack_bytes_both_ways() {
        let bytes = [b'A', 0, 0, 0, 0, 0, 0, 1, 2];
        assert_eq!(encode_ack(258), bytes);
        assert_eq!(decode_ack(&bytes), Ok(Some(258)));
        assert_eq!(decode_ack(&bytes[..8]), Ok(None));
        assert_eq!(
            decode_ack(b"E"),
            Err(ProtoError::BadType {
                found: b'E',
                expected: TYPE_ACK
            })
        );
    }
}
