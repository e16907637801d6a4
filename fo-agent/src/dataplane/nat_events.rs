//! The NAT event ring (`NAT_EVENTS`): the program reports new and closed connections there;
//! the connection-state sync reads them, and without sync the agent drains them so the ring
//! never fills. One type reads it, so the fd registration and the record layout are in one
//! place.

use std::io;

use aya::maps::{MapData, RingBuf};
use fo_common::NatEvent;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Dataplane;

/// The data plane's NAT event ring, registered with the tokio runtime.
pub struct NatEvents {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl NatEvents {
    /// Take the ring from the data plane (it has one reader): `None` when it was taken
    /// already or the program has none; an error when the runtime cannot poll it.
    pub fn take(dp: &mut Dataplane) -> Option<io::Result<NatEvents>> {
        let ring = dp.take_nat_events()?;
        // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd until both are
        // dropped together; nothing else closes or reuses it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) };
        Some(
            ring.map(|ring| NatEvents { ring })
                .map_err(|e| io::Error::other(e.to_string())),
        )
    }

    /// Wait until the ring has records, then append every whole one to `out`; returns how
    /// many. Cancel-safe: nothing is read before the wait ends.
    pub async fn read(&mut self, out: &mut Vec<NatEvent>) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<NatEvent>() {
                continue;
            }
            // SAFETY: the program writes whole NatEvent records (checked length above);
            // the ring gives no alignment, so read unaligned.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
            n += 1;
        }
        guard.clear_ready();
        Ok(n)
    }

    /// Wait until the ring has records, then drop them all; returns how many.
    pub async fn discard(&mut self) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut n = 0;
        while ring.next().is_some() {
            n += 1;
        }
        guard.clear_ready();
        Ok(n)
    }
}
