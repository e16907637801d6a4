//! The control socket's request decoding (`api::control::read_request`: one line of at
//! most `MAX_LINE` bytes, JSON), on any bytes delivered in any pieces:
//!
//! - never a panic, never a wait on a reader that has more to give;
//! - no more than `MAX_LINE` bytes read, however long the line;
//! - a request decoded is re-encoded (`serde_json`, what `fo-agent` clients send) and
//!   decoded again to the same request.
//!
//! Input layout: `[n, sizes (n % 8 bytes), bytes...]`; the sizes (x16) are the pieces
//! the peer's bytes arrive in; `n`'s top bit pads the bytes past the cap (`chunked.rs`).

#![no_main]

mod chunked;

use chunked::{Chunked, now, split};
use fo_agent::api::control::{MAX_LINE, read_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sizes, bytes)) = split(data, MAX_LINE + 64) else {
        return;
    };
    let bytes = &bytes[..];
    let mut reader = Chunked::new(bytes, sizes);
    let got = now(read_request(&mut reader));
    assert!(
        reader.consumed <= MAX_LINE,
        "read {} bytes of a request line capped at {MAX_LINE}",
        reader.consumed
    );
    match got {
        None => assert!(bytes.is_empty(), "no request from {} bytes", bytes.len()),
        Some(Ok(req)) => {
            let mut line = serde_json::to_string(&req).expect("a request encodes");
            line.push('\n');
            let again = now(read_request(Chunked::new(line.as_bytes(), &[])));
            assert_eq!(again, Some(Ok(req)), "round trip through {line:?}");
        }
        Some(Err(message)) => assert!(!message.is_empty()),
    }
});
