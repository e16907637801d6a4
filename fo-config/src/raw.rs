//! The file as written: serde structs with spans, before validation.
//!
//! Every field is optional here (required ones are reported by `validate`), and
//! numbers are read as `i64` so that range errors carry our message and position
//! rather than aborting the whole table.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::duration::HumanDuration as Duration;
use crate::model::{BgpDaemon, Encap, ForwardMode, HashMode, OwnershipKind, Protocol, XdpMode};

type S<T> = Spanned<T>;

/// A key's name and, when it is written, its span.
pub(crate) type Written = (&'static str, Option<std::ops::Range<usize>>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub interface: Option<S<String>>,
    pub xdp_mode: Option<XdpMode>,
    pub bpf_dir: Option<S<PathBuf>>,
    pub control_socket: Option<S<PathBuf>>,
    pub state_file: Option<S<PathBuf>>,
    pub metrics: Option<S<String>>,
    pub maglev_table_size: Option<S<i64>>,
    pub max_services: Option<S<i64>>,
    pub max_backends: Option<S<i64>>,
    pub flow_table_size: Option<S<i64>>,
    pub garp_count: Option<S<i64>>,
    pub garp_interval: Option<S<Duration>>,
    pub garp_refresh: Option<Duration>,
    pub vip_on_interface: Option<bool>,
    pub control_group: Option<S<String>>,
    pub nat_table_size: Option<S<i64>>,
    pub nat_timeouts: Option<S<RawNatTimeouts>>,
    pub sync: Option<S<RawSync>>,
    pub tunnel_check_mark: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNatTimeouts {
    pub syn: Option<S<Duration>>,
    pub established: Option<S<Duration>>,
    pub fin: Option<S<Duration>>,
    pub closed: Option<S<Duration>>,
    pub udp: Option<S<Duration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    pub peers: Option<S<Vec<S<String>>>>,
    pub port: Option<S<i64>>,
    pub key_file: Option<S<PathBuf>>,
    pub max_clock_skew: Option<S<crate::HumanDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub name: Option<S<String>>,
    pub ownership: Option<S<OwnershipKind>>,
    pub vrid: Option<S<i64>>,
    pub priority: Option<S<i64>>,
    pub version: Option<S<i64>>,
    pub advert_interval: Option<S<Duration>>,
    pub preempt: Option<S<bool>>,
    pub preempt_delay: Option<S<Duration>>,
    pub vips: Option<S<Vec<S<String>>>>,
    pub snat: Option<S<Vec<S<String>>>>,
    pub vlan: Option<S<i64>>,
    pub peers: Option<S<Vec<S<String>>>>,
    pub auth_pass: Option<S<String>>,
    pub auth_key_file: Option<S<PathBuf>>,
    pub track: Option<S<Vec<S<RawTrack>>>>,
    pub gates: Option<S<Vec<S<String>>>>,
    pub hooks: Option<RawHooks>,
    pub bgp: Option<S<RawBgp>>,
    pub witness: Option<S<RawWitness>>,
}

impl RawRouter {
    /// Each key that only `ownership = "vrrp"` takes, with its span when written.
    pub fn vrrp_keys(&self) -> [Written; 11] {
        [
            ("vrid", self.vrid.as_ref().map(S::span)),
            ("priority", self.priority.as_ref().map(S::span)),
            ("version", self.version.as_ref().map(S::span)),
            (
                "advert_interval",
                self.advert_interval.as_ref().map(S::span),
            ),
            ("preempt", self.preempt.as_ref().map(S::span)),
            ("preempt_delay", self.preempt_delay.as_ref().map(S::span)),
            ("peers", self.peers.as_ref().map(S::span)),
            ("auth_pass", self.auth_pass.as_ref().map(S::span)),
            ("auth_key_file", self.auth_key_file.as_ref().map(S::span)),
            ("track", self.track.as_ref().map(S::span)),
            ("witness", self.witness.as_ref().map(S::span)),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWitness {
    pub address: Option<S<String>>,
    pub interval: Option<S<Duration>>,
    pub timeout: Option<S<Duration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrack {
    pub check: Option<S<String>>,
    pub weight: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    pub master: Option<S<RawCommand>>,
    pub backup: Option<S<RawCommand>>,
    pub fault: Option<S<RawCommand>>,
    pub stop: Option<S<RawCommand>>,
    pub notify: Option<S<RawCommand>>,
    pub timeout: Option<S<Duration>>,
    pub user: Option<S<String>>,
    pub group: Option<S<String>>,
}

/// A hook: `"/path"` or `["/path", "arg", ...]`.
#[derive(Debug)]
pub(crate) enum RawCommand {
    Path(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a path in quotes or an array [program, args...]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Ok(RawCommand::Path(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawCommand, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(RawCommand::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    pub daemon: Option<BgpDaemon>,
    pub control: Option<S<PathBuf>>,
    pub bfd: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Option<S<String>>,
    pub vip: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub protocol: Option<Protocol>,
    pub mode: Option<S<ForwardMode>>,
    pub encap: Option<S<Encap>>,
    pub tunnel_source: Option<S<String>>,
    pub gue_port: Option<S<i64>>,
    pub mtu: Option<S<i64>>,
    pub hash: Option<HashMode>,
    pub check: Option<S<RawServiceCheck>>,
    pub backends: Option<S<Vec<S<RawBackend>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub address: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub weight: Option<S<i64>>,
    pub name: Option<S<String>>,
}

/// Kinds a service check may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ServiceCheckTag {
    Tcp,
    Http,
    Https,
    Exec,
}

/// `expect_status`: one status code or a list of them.
#[derive(Debug)]
pub(crate) enum Statuses {
    One(i64),
    Many(Vec<S<i64>>),
}

impl<'de> Deserialize<'de> for Statuses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Statuses;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an HTTP status code or a list of them, like 200 or [200, 204]")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Statuses, E> {
                Ok(Statuses::One(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Statuses, E> {
                Ok(Statuses::One(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Statuses, A::Error> {
                let mut out = Vec::new();
                while let Some(code) = seq.next_element::<S<i64>>()? {
                    out.push(code);
                }
                Ok(Statuses::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The TLS keys of an `https` check, borrowed from either kind of raw check.
pub(crate) struct RawTls<'r> {
    pub sni: &'r Option<S<String>>,
    pub ca: &'r Option<S<PathBuf>>,
    pub cert: &'r Option<S<PathBuf>>,
    pub key: &'r Option<S<PathBuf>>,
    pub insecure: &'r Option<S<bool>>,
    pub min_cert_validity: &'r Option<S<Duration>>,
}

impl RawTls<'_> {
    /// Each key that is written, with its span.
    pub fn written(&self) -> [Written; 6] {
        [
            ("sni", self.sni.as_ref().map(S::span)),
            ("ca", self.ca.as_ref().map(S::span)),
            ("cert", self.cert.as_ref().map(S::span)),
            ("key", self.key.as_ref().map(S::span)),
            ("insecure", self.insecure.as_ref().map(S::span)),
            (
                "min_cert_validity",
                self.min_cert_validity.as_ref().map(S::span),
            ),
        ]
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServiceCheck {
    pub kind: Option<ServiceCheckTag>,
    pub interval: Option<S<Duration>>,
    pub timeout: Option<S<Duration>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub path: Option<S<String>>,
    pub expect_status: Option<S<Statuses>>,
    pub expect_body: Option<S<String>>,
    /// Refused with a hint: `kind = "https"` replaced it.
    pub https: Option<S<bool>>,
    pub sni: Option<S<String>>,
    pub ca: Option<S<PathBuf>>,
    pub cert: Option<S<PathBuf>>,
    pub key: Option<S<PathBuf>>,
    pub insecure: Option<S<bool>>,
    pub min_cert_validity: Option<S<Duration>>,
    pub command: Option<S<Vec<S<String>>>>,
    pub user: Option<S<String>>,
    pub group: Option<S<String>>,
}

impl RawServiceCheck {
    pub fn tls(&self) -> RawTls<'_> {
        RawTls {
            sni: &self.sni,
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
            insecure: &self.insecure,
            min_cert_validity: &self.min_cert_validity,
        }
    }
}

/// Kinds a node-level check may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckTag {
    Tcp,
    Http,
    Https,
    Exec,
    Process,
    File,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub name: Option<S<String>>,
    pub kind: Option<S<CheckTag>>,
    pub interval: Option<S<Duration>>,
    pub timeout: Option<S<Duration>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    // tcp, http, https
    pub address: Option<S<String>>,
    pub port: Option<S<i64>>,
    // http, https
    pub url: Option<S<String>>,
    pub path: Option<S<String>>,
    pub expect_status: Option<S<Statuses>>,
    pub expect_body: Option<S<String>>,
    /// Refused with a hint: `kind = "https"` replaced it.
    pub https: Option<S<bool>>,
    // https
    pub sni: Option<S<String>>,
    pub ca: Option<S<PathBuf>>,
    pub cert: Option<S<PathBuf>>,
    pub key: Option<S<PathBuf>>,
    pub insecure: Option<S<bool>>,
    pub min_cert_validity: Option<S<Duration>>,
    // exec
    pub command: Option<S<Vec<S<String>>>>,
    pub user: Option<S<String>>,
    pub group: Option<S<String>>,
    // process
    pub pidfile: Option<S<PathBuf>>,
    pub process: Option<S<String>>,
    // file
    pub contains: Option<S<String>>,
}

impl RawCheck {
    /// Each key that belongs to some kinds only (but the TLS ones, see [`Self::tls`]),
    /// with its span when written.
    pub fn kind_keys(&self) -> Vec<Written> {
        vec![
            ("address", self.address.as_ref().map(S::span)),
            ("port", self.port.as_ref().map(S::span)),
            ("url", self.url.as_ref().map(S::span)),
            ("path", self.path.as_ref().map(S::span)),
            ("expect_status", self.expect_status.as_ref().map(S::span)),
            ("expect_body", self.expect_body.as_ref().map(S::span)),
            ("command", self.command.as_ref().map(S::span)),
            ("pidfile", self.pidfile.as_ref().map(S::span)),
            ("process", self.process.as_ref().map(S::span)),
            ("contains", self.contains.as_ref().map(S::span)),
            ("user", self.user.as_ref().map(S::span)),
            ("group", self.group.as_ref().map(S::span)),
        ]
    }

    pub fn tls(&self) -> RawTls<'_> {
        RawTls {
            sni: &self.sni,
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
            insecure: &self.insecure,
            min_cert_validity: &self.min_cert_validity,
        }
    }
}
