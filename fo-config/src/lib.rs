//! fo's configuration: the TOML schema, parsing, and validation that reports
//! every problem with its line and column.
//!
//! Pure: no I/O besides [`Config::load`] reading a file, no async, no BPF. The
//! agent calls [`Config::load`] (or [`Config::parse`]) and gets either a fully
//! resolved [`Config`] — defaults applied, cross-references checked, no spans —
//! or [`ConfigErrors`], one `LINE:COL: message` per problem.
//!
//! ```
//! let cfg = fo_config::Config::parse(r#"
//! [node]
//! interface = "eth0"
//!
//! [[router]]
//! name = "web"
//! vrid = 51
//! vips = ["192.0.2.10"]
//!
//! [[service]]
//! vip = "192.0.2.10"
//! port = 80
//! backends = [{ address = "192.0.2.21" }, { address = "192.0.2.22", weight = 2 }]
//! "#).unwrap();
//! assert_eq!(cfg.services[0].backends()[0].port, 80);
//! assert_eq!(cfg.routers[0].vrrp().unwrap().priority, 100);
//! ```
//!
//! # Schema (extensions of the README's shape; defaults in parentheses)
//!
//! Every key with its type, default, range and an example: `reference.toml`, rendered
//! as fo.toml(5) (see [`reference`]).
//!
//! - `[node]`: `interface` (required), `xdp_mode` native|generic (native), `bpf_dir`
//!   (/sys/fs/bpf/fo), `control_socket` (/run/fo/control.sock), `state_file`
//!   (/var/lib/fo/state.json: `demote`s and drains kept across restarts), `metrics` (off),
//!   `maglev_table_size` (65537; a prime in 251..=1000003), `max_services` (64),
//!   `max_backends` (4096), `flow_table_size` (1000000), `garp_count` (5),
//!   `garp_interval` (100ms), `garp_refresh` (60s; "0s" = off), `vip_on_interface`
//!   (false), `control_group` (none), `tunnel_check_mark` (0x4f480000).
//! - `[[router]]`: `name` ([a-z0-9_-], unique), `ownership` vrrp|bgp|static (vrrp),
//!   `vips` (one family), `gates`, `hooks = { master, backup, fault, stop, notify, timeout (30s), user, group }` (each hook
//!   an absolute path or `[path, args...]`; `notify` gets keepalived's four arguments
//!   appended).
//!   VRRP only: `vrid` (required, unique), `priority` (100), `version` 3|2 (3),
//!   `advert_interval` (1s), `preempt` (true), `preempt_delay` (0s), `peers`, `auth_pass`
//!   (v2), `auth_key_file` (v3, HMAC between fo nodes; absolute path), `track = [{ check, weight }]` (keepalived's rules: a positive weight is added while
//!   the check passes, a negative one while it fails, 0 = fault while it fails), `witness = { address, interval (advert_interval
//!   / 2), timeout (2 × advert_interval; ≤ 3 × advert_interval, ≥ 2 × interval) }`
//!   (split-brain protection: fence when neither the peer nor the witness answers). BGP only: `bgp = { daemon, control, bfd }`.
//!   Static: this node always serves the VIPs (single-node sites, labs); two nodes
//!   with static ownership of one VIP both answer ARP for it.
//! - `[[service]]`: `vip` (a router's), `port`, `protocol` tcp|udp (tcp), `mode` dsr|nat
//!   (dsr: backend port = service port), `hash` source-ip|5-tuple (source-ip), `name`
//!   (VIP:PORT/PROTO), `check = { kind tcp|http|https|exec, interval (2s), timeout (1s),
//!   rise (2), fall (3), path (/), expect_status (200, or a list), expect_body, command,
//!   user, group, TLS keys }`,
//!   `backends = [{ address, port (service port), weight (1; 0 = drained), name (ADDR:PORT) }]`.
//! - `[[check]]`: `name`, `kind` tcp (`address`, `port`) | http (`url`, or `address`,
//!   `port` (80), `path`; `expect_status`, `expect_body`) | https (the same, port 443, and
//!   the TLS keys) | exec (`command`, `user`, `group`) | process (`process` = name, or
//!   `pidfile`) | file (`path`, `contains`), `interval` (2s), `timeout` (1s, < interval),
//!   `rise` (2), `fall` (3).
//! - TLS keys of https checks: `sni` (the target's host), `ca` (the system store), `cert` +
//!   `key` (mutual TLS), `insecure` (false), `min_cert_validity` (none, e.g. "30d"). Files
//!   are absolute paths; the agent reads them (and `fo-agent check` does).
//!
//! Durations are strings with units (see [`HumanDuration`]). Unknown keys are errors.
//!
//! Errors point at the offending key or value:
//!
//! ```
//! let err = fo_config::Config::parse("[node]\ninterface = \"eth0\"\nmaglev_table_size = 1000\n").unwrap_err();
//! assert_eq!(err.to_string(), "3:21: maglev_table_size must be prime (e.g. 65537), got 1000");
//! ```

mod error;
mod model;
mod names;
mod raw;
pub mod reference;
mod validate;

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

pub use fo_units::{DurationError, HumanDuration, format_duration, parse_duration};

/// The grammar lives in fo-units (shared with the lab tools and xtask); the config
/// modules keep reaching it as `crate::duration`.
mod duration {
    pub use fo_units::duration::*;
}
pub use error::{ConfigError, ConfigErrors, LoadError};
pub use model::*;
pub use names::{valid_account_name, valid_interface_name};

/// A validated configuration with every default applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub node: Node,
    /// In file order.
    pub routers: Vec<Router>,
    /// In file order.
    pub services: Vec<Service>,
    /// In file order.
    pub checks: Vec<Check>,
}

impl Config {
    /// Parse and validate a configuration; on failure every problem found is
    /// returned, each with its 1-based line and column.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        validate::parse(text)
    }

    /// Read, parse and validate the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|errors| LoadError::Invalid {
            path: path.to_owned(),
            errors,
        })
    }

    /// The router named `name`.
    pub fn router(&self, name: &str) -> Option<&Router> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The router that owns `vip`.
    pub fn router_for_vip(&self, vip: IpAddr) -> Option<&Router> {
        self.routers.iter().find(|r| r.vips.contains(&vip))
    }

    /// The service named `name` (its `name`, or `VIP:PORT/PROTOCOL`).
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The services whose VIP belongs to router `router`.
    pub fn services_of<'a>(&'a self, router: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| s.router == router)
    }

    /// The node-level check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}
