//! fo's authenticated advertisements (HMAC mode, between fo nodes only): an HMAC-SHA256
//! trailer after the VRRP v3 message, and the anti-replay sequence it carries.
//!
//! The IP payload of an authenticated advert is the ordinary VRRP v3 message (whose
//! checksum still covers only that message and its pseudo-header, RFC 5798 §5.2.8)
//! followed by 48 bytes:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      'f'      |      'o'      | Trailer ver 1 | Alg 1 (SHA256)|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Key ID (first 4 bytes of SHA-256               |
//! |                 ("fo-vrrp-key-id" || key))                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Sequence (64 bits, big-endian)              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +          HMAC-SHA256 (32 bytes), keyed with the key file,     +
//! |   over: "fo-vrrp-hmac" 0x01 || IP source || IP destination    |
//! +        || VRRP message || the first 16 bytes of the trailer   +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The IP addresses are bound into the tag (4 or 16 bytes each, one family), so an advert
//! captured from one node cannot be replayed as another's, nor a unicast advert sent to one
//! peer be redirected to another. TTL / hop limit is not covered (it changes hop by hop)
//! but is still required to be 255. The key ID tells "the peer has another key" apart from
//! "the packet was altered" in logs; it reveals nothing usable about a random key.
//!
//! # Anti-replay ([`SequenceGen`], [`ReplayGuard`])
//!
//! * A sender's sequence starts at `boot_unix_ms << 22` (its wall clock when the router
//!   started, in milliseconds) and grows by one per advert. 22 bits is 4 194 304 adverts
//!   before the count carries into the millisecond part, which stays far behind real time,
//!   so a restarted agent (wall clock later than at its previous start) always starts above
//!   everything it sent before: its peers accept it at once.
//! * A receiver accepts an authenticated advert only if its sequence is greater than the
//!   last one it accepted from that source address (per virtual router); anything else is
//!   dropped as `replay`. Nothing is updated before the tag is verified.
//! * A receiver that restarts forgets what it accepted and takes the next valid advert of
//!   each peer as the new floor: an advert captured earlier can be replayed to it only in
//!   the moments after its start, before the peer's next real advert (at most one
//!   advertisement interval) raises the floor above it.
//! * Rule for operators: a node's wall clock at agent start must be later than at its
//!   previous start (NTP, an RTC). If it went back, its peers drop its adverts as `replay`
//!   until they restart; the log says so.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::drops::DropReason;

/// Length of the trailer after the VRRP message.
pub const TRAILER_LEN: usize = 48;
/// Shortest key accepted (bytes): 128 bits.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key accepted (bytes).
pub const MAX_KEY_LEN: usize = 1024;

const MAGIC: [u8; 2] = *b"fo";
const TRAILER_VERSION: u8 = 1;
const ALG_HMAC_SHA256: u8 = 1;
const HEAD_LEN: usize = 16;
const TAG_LEN: usize = 32;
const _: () = assert!(HEAD_LEN + TAG_LEN == TRAILER_LEN);
const DOMAIN: &[u8] = b"fo-vrrp-hmac\x01";
const KEY_ID_DOMAIN: &[u8] = b"fo-vrrp-key-id";
/// Bits of the sequence counted within one start of the sender.
const COUNT_BITS: u32 = 22;

type HmacSha256 = Hmac<Sha256>;

/// A shared secret. Its `Debug` shows only the key ID, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    bytes: Vec<u8>,
    id: u32,
}

/// Why bytes are not a usable key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Too short to resist guessing.
    #[error(
        "the key has {len} bytes; at least {MIN_KEY_LEN} are needed (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Bytes found.
        len: usize,
    },
    /// Larger than any sensible key (a wrong file?).
    #[error("the key has {len} bytes; at most {MAX_KEY_LEN} are accepted")]
    TooLong {
        /// Bytes found.
        len: usize,
    },
}

impl AuthKey {
    /// A key from the content of a key file: trailing ASCII whitespace (the newline an
    /// editor or `echo` adds) is not part of the key, so `openssl rand -hex 32 > FILE`
    /// gives the same key on every node.
    pub fn from_file_content(content: &[u8]) -> Result<AuthKey, KeyError> {
        let end = content
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        AuthKey::new(&content[..end])
    }

    /// A key from its exact bytes.
    pub fn new(bytes: &[u8]) -> Result<AuthKey, KeyError> {
        let len = bytes.len();
        if len < MIN_KEY_LEN {
            return Err(KeyError::TooShort { len });
        }
        if len > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len });
        }
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(bytes)
            .finalize();
        let id = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Ok(AuthKey {
            bytes: bytes.to_vec(),
            id,
        })
    }

    /// The key ID carried in every trailer (safe to log and show).
    pub const fn id(&self) -> u32 {
        self.id
    }

    fn mac(&self, src: IpAddr, dst: IpAddr, msg: &[u8], head: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; the constructor cannot fail for Hmac.
        let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(DOMAIN);
        for a in [src, dst] {
            match a {
                IpAddr::V4(a) => mac.update(&a.octets()),
                IpAddr::V6(a) => mac.update(&a.octets()),
            }
        }
        mac.update(msg);
        mac.update(head);
        mac
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(id {:08x}, bytes redacted)", self.id)
    }
}

/// An anti-replay sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sequence(pub u64);

/// The sender's sequence: see the module docs.
#[derive(Clone, Debug)]
pub struct SequenceGen {
    next: u64,
}

impl SequenceGen {
    /// Start from the sender's wall clock at router start, in ms since the Unix epoch.
    pub fn new(boot_unix_ms: u64) -> SequenceGen {
        SequenceGen {
            next: boot_unix_ms << COUNT_BITS,
        }
    }

    /// The sequence for the next advert.
    pub fn next_sequence(&mut self) -> Sequence {
        let s = self.next;
        self.next = self.next.saturating_add(1);
        Sequence(s)
    }
}

/// The receiver's memory: the last sequence accepted per source address.
#[derive(Clone, Debug, Default)]
pub struct ReplayGuard {
    last: HashMap<IpAddr, Sequence>,
}

impl ReplayGuard {
    /// `Err(Replay)` unless `seq` is above the last accepted from `src`. Call only for
    /// adverts whose tag verified, and [`ReplayGuard::accept`] once the advert is valid.
    pub fn check(&self, src: IpAddr, seq: Sequence) -> Result<(), DropReason> {
        match self.last.get(&src) {
            Some(&last) if seq <= last => Err(DropReason::Replay {
                seq: seq.0,
                last: last.0,
            }),
            _ => Ok(()),
        }
    }

    /// Remember `seq` as the last accepted from `src`.
    pub fn accept(&mut self, src: IpAddr, seq: Sequence) {
        let e = self.last.entry(src).or_insert(seq);
        *e = (*e).max(seq);
    }

    /// The last accepted from `src`.
    pub fn last(&self, src: IpAddr) -> Option<Sequence> {
        self.last.get(&src).copied()
    }
}

/// Append the trailer to `msg` (an encoded VRRP message) for a packet from `src` to `dst`.
pub fn seal(msg: &[u8], src: IpAddr, dst: IpAddr, key: &AuthKey, seq: Sequence) -> Vec<u8> {
    let mut head = [0u8; HEAD_LEN];
    head[..2].copy_from_slice(&MAGIC);
    head[2] = TRAILER_VERSION;
    head[3] = ALG_HMAC_SHA256;
    head[4..8].copy_from_slice(&key.id.to_be_bytes());
    head[8..16].copy_from_slice(&seq.0.to_be_bytes());
    let tag = key.mac(src, dst, msg, &head).finalize().into_bytes();
    let mut out = Vec::with_capacity(msg.len() + TRAILER_LEN);
    out.extend_from_slice(msg);
    out.extend_from_slice(&head);
    out.extend_from_slice(&tag);
    out
}

/// Verify the trailer of a received payload; returns the VRRP message (for the packet decoder)
/// and the sequence (to [`ReplayGuard`]). Constant-time tag comparison.
pub fn open<'a>(
    payload: &'a [u8],
    src: IpAddr,
    dst: IpAddr,
    key: &AuthKey,
) -> Result<(&'a [u8], Sequence), DropReason> {
    let len = payload.len();
    let Some(split) = len.checked_sub(TRAILER_LEN) else {
        return Err(DropReason::AuthMissing { len });
    };
    let (msg, trailer) = payload.split_at(split);
    let (head, tag) = trailer.split_at(HEAD_LEN);
    if head[..2] != MAGIC || head[2] != TRAILER_VERSION || head[3] != ALG_HMAC_SHA256 {
        return Err(DropReason::AuthMissing { len });
    }
    let id = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if id != key.id {
        return Err(DropReason::AuthKey {
            got: id,
            ours: key.id,
        });
    }
    key.mac(src, dst, msg, head)
        .verify_slice(tag)
        .map_err(|_| DropReason::AuthTag)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&head[8..16]);
    Ok((msg, Sequence(u64::from_be_bytes(seq))))
}

#[cfg(test)]
pub(crate) mod tests;
