//! The metrics endpoint's request head (`api::http::read_head` and `route`), on any
//! bytes delivered in any pieces:
//!
//! - never a panic, never a wait on a reader that has more to give;
//! - the head read stops at its blank line or within one read past `MAX_REQUEST`;
//! - a head routes the same whatever pieces it arrived in: a client cannot change
//!   what is served by how its bytes are split (compared with the whole input read in
//!   one piece, whenever both readings return the complete head).
//!
//! Input layout: `[n, sizes (n % 8 bytes), bytes...]`; the sizes (x16) are the pieces
//! the peer's bytes arrive in; `n`'s top bit pads the bytes past the cap (`chunked.rs`).

#![no_main]

mod chunked;

use chunked::{Chunked, now, split};
use fo_agent::api::http::{MAX_REQUEST, read_head, route};
use libfuzzer_sys::fuzz_target;

/// The reader's buffer: the most one read adds.
const CHUNK: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((sizes, bytes)) = split(data, MAX_REQUEST + 2 * CHUNK) else {
        return;
    };
    let bytes = &bytes[..];
    let mut reader = Chunked::new(bytes, sizes);
    let Some(head) = now(read_head(&mut reader)) else {
        assert!(
            !bytes.windows(4).any(|w| w == b"\r\n\r\n") && bytes.len() < MAX_REQUEST,
            "no head from bytes that hold one, or hold more than the cap"
        );
        return;
    };
    assert_eq!(head, bytes[..head.len()], "the head is not what was sent");
    assert!(
        head.len() < MAX_REQUEST + CHUNK,
        "read {} bytes of a head capped at {MAX_REQUEST}",
        head.len()
    );
    let r = route(&head);
    let whole = now(read_head(Chunked::new(bytes, &[])));
    if let Some(whole) = whole
        && whole.windows(4).any(|w| w == b"\r\n\r\n")
        && head.windows(4).any(|w| w == b"\r\n\r\n")
    {
        assert_eq!(
            route(&whole),
            r,
            "the same request routed differently in other pieces"
        );
    }
});
