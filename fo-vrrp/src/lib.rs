//! fo's VRRP engine: a packet codec and a pure state machine. No sockets, no clock, no async
//! runtime — the agent's thin tokio layer owns those and feeds this crate data.
//!
//! # API in one screen
//!
//! Packets ([`packet`], RFC 5798 v3 over IPv4/IPv6, RFC 3768 v2 with keepalived `auth_pass`):
//!
//! ```text
//! Advert { vrid: Vrid, priority: Priority, max_adver_interval: AdverInterval,
//!          addresses: Vec<IpAddr>, auth: Auth }
//! Advert::encode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError>
//! peek_vrid(payload: &[u8]) -> Option<Vrid>               // find the router first
//! decode(payload: &[u8], meta: &RxMeta) -> Result<Advert, DropReason>
//! DropReason::as_str(&self) -> &'static str               // "ttl", "checksum", "auth", …
//! ```
//!
//! HMAC mode between fo nodes ([`auth`]: an HMAC-SHA256 trailer after the v3 message, with
//! an anti-replay sequence):
//!
//! ```text
//! AuthKey::from_file_content(&[u8]) -> Result<AuthKey, KeyError>   // Debug never shows it
//! auth::seal(msg, src, dst, &key, SequenceGen::next_sequence()) -> Vec<u8>   // msg || 48-byte trailer
//! decode_authenticated(payload, meta, &key) -> Result<(Advert, Sequence), DropReason>
//! ReplayGuard::{check(src, seq), accept(src, seq)}                  // "replay" drops
//! ```
//!
//! State machine ([`fsm`], RFC 5798 §6.4):
//!
//! ```text
//! Router::new(Config { priority, advert_interval, preempt, preempt_delay,
//!                      primary_address }) -> Result<Router, ConfigError>
//! Router::handle(&mut self, now: Time, event: Event) -> Vec<Action>
//! Router::{state, priority, master, master_since, deadline, next_deadline, …}
//! skew_time(Priority, AdverInterval) -> Duration             // timing: what fo arms
//! master_down_interval(Priority, AdverInterval) -> Duration
//! master_down_interval_exact(Priority, AdverInterval) -> Duration // the bound tests measure against
//! ```
//!
//! Events (`Event::advert(src, &advert)` builds the one for a decoded packet): `Startup`, `Shutdown`, `AdvertReceived { from, priority, interval }`,
//! `TimerFired { which: Timer }`, `PriorityChanged { effective }`,
//! `Fault { source: FaultSource, failing }` (`FaultSet`/`FaultCleared` are the source
//! `External`), `AdminPromote`, `AdminDemote`, `AdminResume`.
//! Actions: `SendAdvert { priority }`, `SendGratuitous`, `SetOwnership { owned }`,
//! `ArmTimer { which, after }`, `CancelTimer { which }`, `Transition { from, to, reason }`,
//! `RunHook { state }`. Events and actions are serde types (JSON Lines in the golden tests), so
//! the agent can record live events and replay an incident as a test.
//!
//! Drops: decode with the [`RxMeta`] of the router found by [`peek_vrid`]; a VRID no router
//! has is the caller's `"vrid"` drop. Count every `Err(reason)` under `reason.as_str()`.
//!
//! Tests: byte vectors and seeded properties in `src/packet/tests.rs`, timer arithmetic in
//! `src/fsm/tests.rs`, golden scenarios (JSONL events in, JSONL transcript out, timers fired by
//! the harness at their deadlines) in `tests/golden.rs`, a cargo-fuzz target in `fuzz/`.
//!
//! Units are types ([`types`]): [`Centisecs`] (v3 wire), [`Seconds`] (v2 wire), and
//! [`std::time::Duration`] for timers; [`AdverInterval`] carries one of the wire units and
//! with it the protocol version.
//!
//! # Receive path, as the agent wires it
//!
//! ```
//! use fo_vrrp::{packet, fsm, AdverInterval, Auth, Centisecs, Priority, Version, Vrid};
//! # use std::time::Duration;
//! # let payload = [0x31u8, 0x33, 0x96, 0x01, 0x00, 0x64, 0xd4, 0x17, 0xc0, 0xa8, 0x01, 0x64];
//! let interval = AdverInterval::Centisecs(Centisecs(100));
//! let vrid = packet::peek_vrid(&payload).expect("has a VRID");
//! let meta = packet::RxMeta {
//!     src: "192.168.1.11".parse().unwrap(),
//!     dst: "224.0.0.18".parse().unwrap(),
//!     ttl_or_hop_limit: 255,
//!     version: Version::V3,
//!     vrid,
//!     interval,
//!     auth: Auth::None,
//!     peers: &[],
//! };
//! let advert = packet::decode(&payload, &meta).expect("valid");
//! let mut router = fsm::Router::new(fsm::Config {
//!     priority: Priority(100),
//!     advert_interval: interval,
//!     preempt: true,
//!     preempt_delay: Duration::ZERO,
//!     primary_address: "192.168.1.12".parse().unwrap(),
//!     fence_timeout: None,
//!     sync_then_claim: false,
//!     drain_grace: Duration::from_secs(2),
//! })
//! .unwrap();
//! let now = fsm::Time::ZERO;
//! router.handle(now, fsm::Event::Startup);
//! let actions = router.handle(now, fsm::Event::advert(meta.src, &advert));
//! assert_eq!(actions, vec![fsm::Action::ArmTimer {
//!     which: fsm::Timer::MasterDown,
//!     after: Duration::from_millis(3600), // 3 × 100 cs + ⌊(256 − 100) × 100 / 256⌋ = 360 cs
//! }]);
//! ```

pub mod auth;
pub mod drops;
pub mod fsm;
pub mod packet;
pub mod timing;
pub mod types;

pub use auth::{AuthKey, ReplayGuard, Sequence, SequenceGen};
pub use fsm::{
    Action, Admin, Config, Event, FaultSource, NotReady, Reason, Router, State, Time, Timer,
};
pub use packet::{
    Advert, DropReason, EncodeError, RxMeta, decode, decode_authenticated, peek_vrid,
};
pub use timing::{master_down_interval, master_down_interval_exact, skew_time};
pub use types::{
    AdverInterval, Auth, Centisecs, IntervalError, Password, Priority, Seconds, Version, Vrid,
};
