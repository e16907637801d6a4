//! Which authenticated datagrams a receiver accepts from a peer: the replay guard.
//! Pure, so each rule is tested without a socket.
//!
//! A datagram that passed the MAC is accepted only if, in this order:
//! 1. its `sent at` is within the clock-skew window of our clock (`clock_skew`);
//! 2. its epoch is not older than the peer's latest one we heard (`old_epoch`):
//!    epochs only move forward, so nothing from before a peer's restart is taken;
//! 3. it echoes our own epoch (`unverified`): the sender had heard from this process
//!    of ours, so it was made after we started — nothing captured before our
//!    restart passes;
//! 4. its counter was not seen before in that epoch (`replay`): a sliding window of
//!    [`WINDOW`] counters, as IPsec's anti-replay window (RFC 4303 §3.4.3), takes
//!    datagrams reordered by up to that many and each at most once.
//!
//! A newer epoch is learnt even from a datagram that fails 3 (it passed 1 and 2 and
//! the MAC): that is how we learn what to echo after the peer restarts.

use std::time::Duration;

use super::codec::Header;

/// Counters below the highest seen that may still arrive (reordering), once each.
pub const WINDOW: u64 = 64;

/// Why a datagram was refused: the `reason` label of `fo_sync_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// From an address that is no configured peer.
    UnknownPeer,
    /// The MAC did not verify (another key, altered, or not ours at all).
    Auth,
    /// Authenticated, but another wire version (a mixed-version pair mid-upgrade).
    Version,
    /// Authenticated, but its fields do not parse.
    Malformed,
    ClockSkew,
    OldEpoch,
    Unverified,
    Replay,
    /// A snapshot request sooner than the peer may ask again.
    RateLimited,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::UnknownPeer,
        Refusal::Auth,
        Refusal::Version,
        Refusal::Malformed,
        Refusal::ClockSkew,
        Refusal::OldEpoch,
        Refusal::Unverified,
        Refusal::Replay,
        Refusal::RateLimited,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnknownPeer => "unknown_peer",
            Refusal::Auth => "auth",
            Refusal::Version => "version",
            Refusal::Malformed => "malformed",
            Refusal::ClockSkew => "clock_skew",
            Refusal::OldEpoch => "old_epoch",
            Refusal::Unverified => "unverified",
            Refusal::Replay => "replay",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// What we know of one peer's datagrams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerGuard {
    /// The peer's latest epoch heard (what we echo to it).
    epoch: Option<u64>,
    /// The replay window of that epoch, from its first accepted datagram on.
    window: Option<Window>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Highest counter accepted.
    top: u64,
    /// Bit i set: counter `top - i` was accepted.
    seen: u64,
}

impl Window {
    fn new(counter: u64) -> Self {
        Window {
            top: counter,
            seen: 1,
        }
    }

    /// Take `counter` if it is new, marking it seen.
    fn take(&mut self, counter: u64) -> bool {
        if counter > self.top {
            let shift = counter - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = counter;
            return true;
        }
        let back = self.top - counter;
        if back >= WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

impl PeerGuard {
    /// The peer's epoch as we last heard it: what our datagrams to it echo (0 before
    /// we heard anything, which it cannot accept: it then learns ours and answers).
    pub fn echo(&self) -> u64 {
        self.epoch.unwrap_or(0)
    }

    /// Accept or refuse the header of an authenticated datagram from this peer.
    /// `mine` is our own epoch, `now_unix_ms` our clock.
    pub fn check(
        &mut self,
        h: &Header,
        mine: u64,
        now_unix_ms: u64,
        max_skew: Duration,
    ) -> Result<(), Refusal> {
        let skew = now_unix_ms.abs_diff(h.sent_unix_ms);
        if u128::from(skew) > max_skew.as_millis() {
            return Err(Refusal::ClockSkew);
        }
        match self.epoch {
            Some(e) if h.epoch < e => return Err(Refusal::OldEpoch),
            Some(e) if h.epoch == e => {}
            _ => {
                self.epoch = Some(h.epoch);
                self.window = None;
            }
        }
        if h.echo != mine {
            return Err(Refusal::Unverified);
        }
        match &mut self.window {
            None => {
                self.window = Some(Window::new(h.counter));
                Ok(())
            }
            Some(w) => {
                if w.take(h.counter) {
                    Ok(())
                } else {
                    Err(Refusal::Replay)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: u64 = 1_000;
    const NOW: u64 = 1_800_000_000_000;
    const SKEW: Duration = Duration::from_secs(30);

    fn h(epoch: u64, counter: u64) -> Header {
        Header {
            epoch,
            counter,
            echo: MINE,
            sent_unix_ms: NOW,
            ..Default::default()
        }
    }

    fn check(g: &mut PeerGuard, h: Header) -> Result<(), Refusal> {
        g.check(&h, MINE, NOW, SKEW)
    }

    #[test]
    fn each_counter_is_taken_once_and_reordering_within_the_window_is_fine() {
        let mut g = PeerGuard::default();
        assert_eq!(check(&mut g, h(5, 10)), Ok(()));
        assert_eq!(check(&mut g, h(5, 10)), Err(Refusal::Replay));
        assert_eq!(check(&mut g, h(5, 12)), Ok(()));
        assert_eq!(check(&mut g, h(5, 11)), Ok(()), "reordered, not seen yet");
        assert_eq!(check(&mut g, h(5, 11)), Err(Refusal::Replay));
        assert_eq!(
            check(&mut g, h(5, 9)),
            Ok(()),
            "below the first, within the window"
        );
        assert_eq!(check(&mut g, h(5, 9)), Err(Refusal::Replay));
        assert_eq!(check(&mut g, h(5, 12 + WINDOW)), Ok(()));
        assert_eq!(
            check(&mut g, h(5, 12)),
            Err(Refusal::Replay),
            "fell out of the window"
        );
        assert_eq!(check(&mut g, h(5, 13)), Ok(()), "the window's last slot");
        assert_eq!(check(&mut g, h(5, 1_000_000)), Ok(()), "a big jump");
        assert_eq!(check(&mut g, h(5, 13 + WINDOW)), Err(Refusal::Replay));
    }

    #[test]
    fn epochs_only_move_forward() {
        let mut g = PeerGuard::default();
        assert_eq!(check(&mut g, h(5, 100)), Ok(()));
        assert_eq!(check(&mut g, h(6, 1)), Ok(()), "the peer restarted");
        assert_eq!(g.echo(), 6);
        assert_eq!(check(&mut g, h(5, 101)), Err(Refusal::OldEpoch));
        assert_eq!(check(&mut g, h(6, 1)), Err(Refusal::Replay));
        assert_eq!(check(&mut g, h(6, 2)), Ok(()));
    }

    #[test]
    fn only_datagrams_that_echo_our_epoch_count_but_they_teach_the_peer_epoch() {
        let mut g = PeerGuard::default();
        assert_eq!(g.echo(), 0);
        let hello = Header { echo: 0, ..h(7, 1) };
        assert_eq!(check(&mut g, hello), Err(Refusal::Unverified));
        assert_eq!(g.echo(), 7, "learnt from the unverified datagram");
        let before_our_restart = Header {
            echo: MINE - 1,
            ..h(7, 2)
        };
        assert_eq!(check(&mut g, before_our_restart), Err(Refusal::Unverified));
        assert_eq!(check(&mut g, h(7, 3)), Ok(()));
        assert_eq!(check(&mut g, h(7, 3)), Err(Refusal::Replay));
    }

    #[test]
    fn the_clock_skew_window_is_bounded_both_ways() {
        let mut g = PeerGuard::default();
        let at = |ms: u64| Header {
            sent_unix_ms: ms,
            ..h(5, ms)
        };
        assert_eq!(check(&mut g, at(NOW - 30_001)), Err(Refusal::ClockSkew));
        assert_eq!(check(&mut g, at(NOW + 30_001)), Err(Refusal::ClockSkew));
        assert_eq!(check(&mut g, at(NOW - 30_000)), Ok(()));
        assert_eq!(check(&mut g, at(NOW + 30_000)), Ok(()));
        assert_eq!(g.epoch, Some(5));
        // A skewed datagram teaches nothing, not even a newer epoch.
        let skewed = Header {
            sent_unix_ms: NOW - 60_000,
            ..h(9, 1)
        };
        assert_eq!(check(&mut g, skewed), Err(Refusal::ClockSkew));
        assert_eq!(g.echo(), 5);
    }
}
