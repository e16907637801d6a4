//! The `[node]` table: interface, XDP mode, paths, table sizes, NAT timeouts, sync and
//! the control socket's group.

use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use crate::model::*;
use crate::names::valid_interface_name;
use crate::raw::*;

use super::{Cx, Span};

const MAGLEV_MIN: i64 = 251;
const MAGLEV_MAX: i64 = 1_000_003;

impl Cx<'_> {
    pub(super) fn node(&mut self, value: Spanned<DeValue<'_>>) -> Option<Node> {
        let span = value.span();
        let raw: RawNode = self.de("[node]", value)?;
        let interface = match &raw.interface {
            Some(v) => self.interface(v),
            None => {
                self.missing(
                    "interface",
                    span,
                    "[node] needs `interface` (the network interface XDP and VRRP use)",
                );
                None
            }
        };
        let bpf_dir = match &raw.bpf_dir {
            Some(v) => self.abs_path(v, "bpf_dir"),
            None => Some(Node::DEFAULT_BPF_DIR.into()),
        };
        let control_socket = match &raw.control_socket {
            Some(v) => self.abs_path(v, "control_socket"),
            None => Some(Node::DEFAULT_CONTROL_SOCKET.into()),
        };
        let state_file = match &raw.state_file {
            Some(v) => self.abs_path(v, "state_file"),
            None => Some(Node::DEFAULT_STATE_FILE.into()),
        };
        let maglev_table_size = match &raw.maglev_table_size {
            Some(v) => self.maglev_size(v),
            None => Some(Node::DEFAULT_MAGLEV_TABLE_SIZE),
        };
        let max_services = self.opt_int(
            &raw.max_services,
            "max_services",
            1,
            65_535,
            Node::DEFAULT_MAX_SERVICES.into(),
        );
        let max_backends = self.opt_int(
            &raw.max_backends,
            "max_backends",
            1,
            1 << 20,
            Node::DEFAULT_MAX_BACKENDS.into(),
        );
        let flow_table_size = self.opt_int(
            &raw.flow_table_size,
            "flow_table_size",
            1,
            u32::MAX.into(),
            Node::DEFAULT_FLOW_TABLE_SIZE.into(),
        );
        let garp_count = self.opt_int(
            &raw.garp_count,
            "garp_count",
            1,
            255,
            Node::DEFAULT_GARP_COUNT.into(),
        );
        let garp_interval = match &raw.garp_interval {
            Some(v) => self.positive(v, "garp_interval"),
            None => Some(Node::DEFAULT_GARP_INTERVAL),
        };
        let garp_refresh = match raw.garp_refresh {
            Some(d) if d.get().is_zero() => None,
            Some(d) => Some(d.get()),
            None => Some(Node::DEFAULT_GARP_REFRESH),
        };
        let metrics = match &raw.metrics {
            Some(m) => match m.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(Some(a)),
                Err(_) => {
                    self.err(
                        m.span(),
                        format!("metrics {:?} is not an IP:PORT like \"127.0.0.1:9469\" or \"[::1]:9469\"", m.get_ref()),
                    );
                    None
                }
            },
            None => Some(None),
        };
        let control_group = match &raw.control_group {
            Some(v) => Some(self.group(v)?),
            None => None,
        };
        let nat_table_size = self.opt_int(
            &raw.nat_table_size,
            "nat_table_size",
            16,
            1 << 26,
            Node::DEFAULT_NAT_TABLE_SIZE.into(),
        );
        let sync = match &raw.sync {
            Some(v) => Some(self.sync(v)?),
            None => None,
        };
        let nat_timeouts = match &raw.nat_timeouts {
            Some(v) => self.nat_timeouts(v.get_ref()),
            None => Some(NatTimeouts::default()),
        };
        let tunnel_check_mark = match &raw.tunnel_check_mark {
            Some(v) => match self.int(v, "tunnel_check_mark", 0x1_0000, 0xffff_0000) {
                Some(n) if n & 0xffff != 0 => {
                    self.err(
                        v.span(),
                        format!(
                            "tunnel_check_mark {n:#x} must have its low 16 bits zero (they carry the GUE port), e.g. {:#x}",
                            n & !0xffff
                        ),
                    );
                    None
                }
                n => n.map(|n| n as u32),
            },
            None => Some(Node::DEFAULT_TUNNEL_CHECK_MARK),
        };
        Some(Node {
            interface: interface?,
            xdp_mode: raw.xdp_mode.unwrap_or_default(),
            bpf_dir: bpf_dir?,
            control_socket: control_socket?,
            state_file: state_file?,
            metrics: metrics?,
            maglev_table_size: maglev_table_size?,
            max_services: max_services? as u32,
            max_backends: max_backends? as u32,
            flow_table_size: flow_table_size? as u32,
            garp_count: garp_count? as u32,
            garp_interval: garp_interval?,
            garp_refresh,
            vip_on_interface: raw.vip_on_interface.unwrap_or(false),
            control_group,
            nat_table_size: nat_table_size? as u32,
            nat_timeouts: nat_timeouts?,
            sync,
            tunnel_check_mark: tunnel_check_mark?,
        })
    }

    fn nat_timeouts(&mut self, raw: &RawNatTimeouts) -> Option<NatTimeouts> {
        let d = NatTimeouts::default();
        let mut one = |v: &Option<Spanned<crate::HumanDuration>>, what: &str, default| match v {
            Some(v) if v.get_ref().get() < NatTimeouts::MIN => {
                self.err(
                    v.span(),
                    format!(
                        "nat_timeouts {what} must be at least {:?}: aging runs every second, and a live connection's last-seen time is refreshed only every 250 ms",
                        NatTimeouts::MIN
                    ),
                );
                None
            }
            Some(v) if v.get_ref().get() > NatTimeouts::MAX => {
                self.err(
                    v.span(),
                    format!("nat_timeouts {what} must be at most a year (8760h)"),
                );
                None
            }
            Some(v) => Some(v.get_ref().get()),
            None => Some(default),
        };
        let syn = one(&raw.syn, "syn", d.syn);
        let established = one(&raw.established, "established", d.established);
        let fin = one(&raw.fin, "fin", d.fin);
        let closed = one(&raw.closed, "closed", d.closed);
        let udp = one(&raw.udp, "udp", d.udp);
        Some(NatTimeouts {
            syn: syn?,
            established: established?,
            fin: fin?,
            closed: closed?,
            udp: udp?,
        })
    }

    fn sync(&mut self, v: &Spanned<RawSync>) -> Option<SyncConfig> {
        let raw = v.get_ref();
        let peers = match &raw.peers {
            Some(list) if list.get_ref().is_empty() => {
                self.err(list.span(), "sync peers must not be empty");
                None
            }
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for p in list.get_ref() {
                    match self.unicast_ip(p, "sync peer") {
                        Some(ip) => out.push(ip),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            None => {
                self.missing(
                    "peers",
                    v.span(),
                    "sync needs `peers` (the other nodes' addresses)",
                );
                None
            }
        };
        let port = self
            .opt_int(
                &raw.port,
                "sync port",
                1,
                65_535,
                SyncConfig::DEFAULT_PORT.into(),
            )
            .map(|p| p as u16);
        let key_file = match &raw.key_file {
            Some(k) => self
                .abs_path(k, "sync key_file")
                .and_then(|path| self.key_file(k.span(), path)),
            None => {
                self.missing(
                    "key_file",
                    v.span(),
                    "sync needs `key_file` (a shared secret of at least 16 bytes, mode 0600): flows are authenticated with it",
                );
                None
            }
        };
        let max_clock_skew = match &raw.max_clock_skew {
            Some(v) => {
                let d = v.get_ref().get();
                if (SyncConfig::MIN_CLOCK_SKEW..=SyncConfig::MAX_CLOCK_SKEW).contains(&d) {
                    Some(d)
                } else {
                    self.err(
                        v.span(),
                        "sync max_clock_skew must be between 1s and 1h: a datagram further off our clock is refused",
                    );
                    None
                }
            }
            None => Some(SyncConfig::DEFAULT_MAX_CLOCK_SKEW),
        };
        Some(SyncConfig {
            peers: peers?,
            port: port?,
            key_file: key_file?,
            max_clock_skew: max_clock_skew?,
        })
    }

    /// The sync key must exist, be long enough and readable by its owner only.
    fn key_file(&mut self, span: Span, path: PathBuf) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.err(span, format!("sync key_file {}: {e}", path.display()));
                return None;
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.err(
                span,
                format!(
                    "sync key_file {} has mode {mode:04o}: the key must be readable by its owner only (chmod 600)",
                    path.display()
                ),
            );
            return None;
        }
        if (meta.len() as usize) < SyncConfig::MIN_KEY_LEN {
            self.err(
                span,
                format!(
                    "sync key_file {} holds {} bytes: the key needs at least {}",
                    path.display(),
                    meta.len(),
                    SyncConfig::MIN_KEY_LEN
                ),
            );
            return None;
        }
        Some(path)
    }

    fn interface(&mut self, v: &Spanned<String>) -> Option<String> {
        self.text_where(v, valid_interface_name, |s| {
            format!("interface {s:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)")
        })
    }

    fn maglev_size(&mut self, v: &Spanned<i64>) -> Option<u32> {
        let n = *v.get_ref();
        if !(MAGLEV_MIN..=MAGLEV_MAX).contains(&n) {
            self.err(
                v.span(),
                format!("maglev_table_size must be a prime between {MAGLEV_MIN} and {MAGLEV_MAX}, got {n}"),
            );
            None
        } else if !is_prime(n as u64) {
            self.err(
                v.span(),
                format!("maglev_table_size must be prime (e.g. 65537), got {n}"),
            );
            None
        } else {
            Some(n as u32)
        }
    }

    fn group(&mut self, v: &Spanned<String>) -> Option<String> {
        self.text_where(
            v,
            |s| {
                !s.is_empty()
                    && s.len() <= 32
                    && !s.starts_with('-')
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            },
            |s| format!("control_group {s:?} is not a valid group name"),
        )
    }
}

/// Trial division is plenty for numbers up to about a million.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(1_000_003));
        assert!(!is_prime(65_536));
        assert!(is_prime(251));
    }
}
