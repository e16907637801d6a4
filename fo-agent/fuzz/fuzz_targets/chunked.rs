//! A reader that hands the harness's bytes over in pieces of sizes the input chooses,
//! the way a socket does, so a reader's loop sees its delimiters split across reads.
//!
//! Input layout shared by the targets using it: `[n, sizes (n % 8 bytes), bytes...]`;
//! the sizes (x16) are the pieces the peer's bytes arrive in, and when `n`'s top bit
//! is set the bytes are padded with their last one up to the target's length, so that
//! the readers' size caps are reached from small inputs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

pub struct Chunked<'a> {
    data: &'a [u8],
    /// Sizes of the reads in units of 16 bytes, cycled (a 0 is taken as 1).
    sizes: &'a [u8],
    next: usize,
    /// Bytes handed over so far.
    pub consumed: usize,
    total: usize,
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8], sizes: &'a [u8]) -> Self {
        Chunked {
            data,
            sizes,
            next: 0,
            consumed: 0,
            total: data.len(),
        }
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // At least a 32nd of the whole: the readers scan what they hold after every
        // read, so tiny pieces of a padded input would cost the fuzzer most of its runs.
        let size = match self.sizes {
            [] => usize::MAX,
            s => (usize::from(s[self.next % s.len()].max(1)) * 16).max(self.total / 32),
        };
        self.next += 1;
        let n = size.min(buf.remaining()).min(self.data.len());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        self.consumed += n;
        Poll::Ready(Ok(()))
    }
}

/// The read sizes and the peer's bytes of an input (see the module's comment), or
/// `None` for an empty one.
pub fn split(data: &[u8], pad_to: usize) -> Option<(&[u8], Vec<u8>)> {
    let (n, rest) = data.split_first()?;
    let (sizes, bytes) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let mut bytes = bytes.to_vec();
    if n & 0x80 != 0 {
        let fill = bytes.last().copied().unwrap_or(b' ');
        bytes.resize(bytes.len().max(pad_to), fill);
    }
    Some((sizes, bytes))
}

/// Run a future that never waits (every read above is ready at once) to its end.
pub fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the reader waited on a reader that is always ready"),
    }
}
