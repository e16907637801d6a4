//! The resolved configuration: validated, defaults applied, no spans (except the
//! position of a file name that the agent reads later: [`ConfigFile`]).
//!
//! These are what the agent uses. They derive `PartialEq` so that a reload can
//! be diffed against the running configuration, and `Serialize` for status output
//! (durations are written as strings such as `"100ms"`).
//!
//! One piece on purpose: the whole configuration's vocabulary in one place, table by
//! table (`[node]`, `[[router]]`, `[[service]]`, `[[check]]`); types and small
//! accessors only, the rules are in `validate`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::duration::{serialize_std, serialize_std_opt};

/// `[node]`: this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// XDP attaches here; VRRP speaks here.
    pub interface: String,
    pub xdp_mode: XdpMode,
    /// Pinned programs and maps (forwarding survives agent restarts).
    pub bpf_dir: PathBuf,
    pub control_socket: PathBuf,
    /// Where the operator's `demote` and `backend drain` are kept across restarts.
    pub state_file: PathBuf,
    /// Prometheus endpoint; `None` disables metrics.
    pub metrics: Option<SocketAddr>,
    /// Maglev lookup table size per service (prime).
    pub maglev_table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    /// Gratuitous ARPs / unsolicited NAs sent on becoming master.
    pub garp_count: u32,
    #[serde(serialize_with = "serialize_std")]
    pub garp_interval: Duration,
    /// Period of the gratuitous ARP refresh while master; `None` = disabled (`"0s"`).
    #[serde(serialize_with = "serialize_std_opt")]
    pub garp_refresh: Option<Duration>,
    /// Add the VIPs to `interface` while master (otherwise XDP answers for them).
    pub vip_on_interface: bool,
    /// Group (name) allowed on the control socket besides root.
    pub control_group: Option<String>,
    /// Connections of the NAT table (`mode = "nat"` services).
    pub nat_table_size: u32,
    /// How long a NAT connection may stay idle, by state, before aging removes it.
    pub nat_timeouts: NatTimeouts,
    /// Connection-state sync of NAT flows with the other nodes; `None` = off.
    pub sync: Option<SyncConfig>,
    /// Base of the `SO_MARK` range of tunnel services' backend probes (low 16 bits
    /// zero; they carry the GUE port): `tunnel_check_mark`.
    pub tunnel_check_mark: u32,
}

/// `[node] nat_timeouts = { syn, established, fin, closed, udp }`: how long a NAT
/// connection may go without a packet, in each TCP state (or as UDP), before aging
/// removes it and frees its SNAT port. Each at least [`NatTimeouts::MIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NatTimeouts {
    /// Handshake seen, not yet established.
    #[serde(serialize_with = "serialize_std")]
    pub syn: Duration,
    #[serde(serialize_with = "serialize_std")]
    pub established: Duration,
    /// One side has sent FIN.
    #[serde(serialize_with = "serialize_std")]
    pub fin: Duration,
    /// Both FINs, or an RST, seen.
    #[serde(serialize_with = "serialize_std")]
    pub closed: Duration,
    #[serde(serialize_with = "serialize_std")]
    pub udp: Duration,
}

impl NatTimeouts {
    /// Aging runs every second and the program refreshes a connection's last-seen
    /// time at most every 250 ms: shorter timeouts would expire live connections.
    pub const MIN: Duration = Duration::from_secs(1);
    /// A year: a connection idle longer than that is gone for good.
    pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);
}

impl Default for NatTimeouts {
    fn default() -> Self {
        NatTimeouts {
            syn: Duration::from_secs(30),
            established: Duration::from_secs(3600),
            fin: Duration::from_secs(60),
            closed: Duration::from_secs(10),
            udp: Duration::from_secs(60),
        }
    }
}

/// `[node] sync = { peers, port, key_file, max_clock_skew }`: NAT connections are
/// streamed from the master to these peers (UDP, HMAC-SHA256 with the key in
/// `key_file`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncConfig {
    /// The other nodes' addresses (unicast).
    pub peers: Vec<IpAddr>,
    /// UDP port, the same on every node.
    pub port: u16,
    /// Shared secret, at least 16 bytes; owner-only permissions (0600 or 0400).
    pub key_file: PathBuf,
    /// A datagram sent more than this before or after our clock says is refused.
    #[serde(serialize_with = "serialize_std")]
    pub max_clock_skew: Duration,
}

impl SyncConfig {
    pub const DEFAULT_PORT: u16 = 7480;
    pub const MIN_KEY_LEN: usize = 16;
    pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
    /// Bounds of `max_clock_skew`: below a second, ordinary NTP jitter and transit
    /// would refuse live datagrams; above an hour it bounds nothing worth the name.
    pub const MIN_CLOCK_SKEW: Duration = Duration::from_secs(1);
    pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);
}

impl Node {
    pub const DEFAULT_BPF_DIR: &'static str = "/sys/fs/bpf/fo";
    pub const DEFAULT_CONTROL_SOCKET: &'static str = "/run/fo/control.sock";
    pub const DEFAULT_STATE_FILE: &'static str = "/var/lib/fo/state.json";
    pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65_537;
    pub const DEFAULT_MAX_SERVICES: u32 = 64;
    pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
    pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1_000_000;
    pub const DEFAULT_GARP_COUNT: u32 = 5;
    pub const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(100);
    pub const DEFAULT_GARP_REFRESH: Duration = Duration::from_secs(60);
    pub const DEFAULT_NAT_TABLE_SIZE: u32 = 262_144;
    pub const DEFAULT_TUNNEL_CHECK_MARK: u32 = 0x4f48_0000;
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver mode.
    #[default]
    Native,
    /// SKB mode: works everywhere, slower.
    Generic,
}

/// `[[router]]`: a set of VIPs that move together between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Router {
    /// Unique, `[a-z0-9_-]+`.
    pub name: String,
    /// Who decides that this node serves the VIPs, with that mechanism's settings.
    pub ownership: Ownership,
    /// Non-empty, one address family.
    pub vips: Vec<IpAddr>,
    /// Source addresses of NAT services on this router's VIPs (IPv4, at most 4).
    /// They move with the router like VIPs (ARP answered by the master only), so
    /// backends' replies reach whichever node is master.
    pub snat: Vec<IpAddr>,
    /// The 802.1Q VLAN (1..=4094) of the node's interface the VIPs live on, if any: the
    /// data plane serves them for frames with that tag only and keeps the tag on what it
    /// sends. VRRP and the kernel's own traffic are not tagged by fo (in production they
    /// run over the VLAN device, e.g. `eth0.100`, while XDP sits on `eth0`). No `snat`.
    pub vlan: Option<u16>,
    /// Names of `[[check]]`s that must all pass before this node may serve the VIPs.
    pub gates: Vec<String>,
    pub hooks: Hooks,
}

impl Router {
    /// The VRRP settings, if `ownership = "vrrp"`.
    pub fn vrrp(&self) -> Option<&Vrrp> {
        match &self.ownership {
            Ownership::Vrrp(v) => Some(v),
            _ => None,
        }
    }

    /// The BGP settings, if `ownership = "bgp"`.
    pub fn bgp(&self) -> Option<&Bgp> {
        match &self.ownership {
            Ownership::Bgp(b) => Some(b),
            _ => None,
        }
    }

    /// The kind of ownership without its settings.
    pub fn ownership_kind(&self) -> OwnershipKind {
        match self.ownership {
            Ownership::Vrrp(_) => OwnershipKind::Vrrp,
            Ownership::Bgp(_) => OwnershipKind::Bgp,
            Ownership::Static => OwnershipKind::Static,
        }
    }

    /// The VIPs and the SNAT addresses: every address the master owns.
    pub fn owned_addresses(&self) -> Vec<IpAddr> {
        self.vips.iter().chain(&self.snat).copied().collect()
    }

    /// True when every VIP is IPv6 (VIPs of a router share one family).
    pub fn is_ipv6(&self) -> bool {
        self.vips.first().is_some_and(IpAddr::is_ipv6)
    }
}

/// `ownership = "vrrp" | "bgp" | "static"`, with the settings of each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Ownership {
    /// A VRRP election decides (RFC 5798 v3 or RFC 3768 v2).
    Vrrp(Vrrp),
    /// Every healthy node serves the VIPs and announces them over BGP (active-active).
    Bgp(Bgp),
    /// This node always serves the VIPs: for single-node sites and labs. Two nodes
    /// with static ownership of the same VIP both answer ARP for it.
    Static,
}

/// `ownership` without its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnershipKind {
    #[default]
    Vrrp,
    Bgp,
    Static,
}

/// VRRP settings of a router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vrrp {
    /// 1..=255, unique on the interface.
    pub vrid: u8,
    /// 1..=255 (255 = address owner).
    pub priority: u8,
    pub version: VrrpVersion,
    /// v3: a multiple of 10 ms in 10 ms..=40.95 s; v2: whole seconds in 1..=255 s.
    #[serde(serialize_with = "serialize_std")]
    pub advert_interval: Duration,
    pub preempt: bool,
    #[serde(serialize_with = "serialize_std")]
    pub preempt_delay: Duration,
    /// Unicast peers (same family as the VIPs); empty = multicast.
    pub peers: Vec<IpAddr>,
    /// VRRPv2 simple-text authentication (1..=8 bytes).
    pub auth_pass: Option<String>,
    /// fo's HMAC-SHA256 advert authentication (version 3, fo peers only): the file holding
    /// the shared key. Absolute; its permissions are checked by the agent, not here.
    pub auth_key_file: Option<PathBuf>,
    /// Checks that move the priority, or fault the router, by their state (keepalived's
    /// `track_script` rules; see [`Track`]).
    pub track: Vec<Track>,
    /// Split-brain protection: see [`Witness`]. `None` = off.
    pub witness: Option<Witness>,
}

/// `witness = { address, interval, timeout }`: an address this node probes (ICMP echo),
/// together with the router's peers, to tell "my peer died" from "I am cut off".
/// A node that reaches neither its peer nor the witness fences itself: a master stops
/// serving the VIPs, a backup does not claim them (state fault, source "fenced").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Witness {
    /// Usually the default gateway of the segment; any address that answers ICMP echo.
    pub address: IpAddr,
    /// Between probes (default: half the advert interval).
    #[serde(serialize_with = "serialize_std")]
    pub interval: Duration,
    /// A target with no reply for this long is unreachable (default: twice the advert
    /// interval; at most three advert intervals, the shortest Master_Down_Interval, and
    /// at least twice `interval`).
    #[serde(serialize_with = "serialize_std")]
    pub timeout: Duration,
}

impl Witness {
    /// The shortest probe interval accepted.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

    /// Defaults derived from the router's advert interval.
    pub fn default_interval(advert_interval: Duration) -> Duration {
        (advert_interval / 2).max(Self::MIN_INTERVAL)
    }

    pub fn default_timeout(advert_interval: Duration) -> Duration {
        advert_interval * 2
    }
}

/// VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VrrpVersion {
    /// RFC 3768 (IPv4 only; for keepalived `auth_pass` interop).
    V2,
    /// RFC 5798.
    #[default]
    V3,
}

impl VrrpVersion {
    /// 2 or 3, as on the wire.
    pub fn number(self) -> u8 {
        match self {
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }
}

impl Serialize for VrrpVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.number())
    }
}

/// `track = [{ check, weight }]`, with keepalived's `track_script` rules:
///
/// - `weight > 0` is added to the priority while the check passes;
/// - `weight < 0` is added (it lowers the priority) while the check fails;
/// - `weight = 0` puts the router in fault while the check fails (like a gate).
///
/// A check that has not passed `rise` times yet counts as failing. The result is
/// clamped to 1..=254, and an address owner (priority 255) ignores weights (weight 0
/// still faults it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Track {
    pub check: String,
    /// -254..=254.
    pub weight: i16,
}

impl Track {
    /// How this entry acts on the router.
    pub fn effect(&self) -> TrackEffect {
        match self.weight {
            0 => TrackEffect::Fault,
            w if w > 0 => TrackEffect::AddWhileUp(w),
            w => TrackEffect::AddWhileDown(w),
        }
    }
}

/// What a [`Track`] entry does, by the sign of its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackEffect {
    /// Positive weight: added while the check passes.
    AddWhileUp(i16),
    /// Negative weight: added (lowering the priority) while the check fails.
    AddWhileDown(i16),
    /// Weight 0: the router is in fault while the check fails.
    Fault,
}

/// Who a program (exec check, hook) runs as: `user = "name"`, optionally
/// `group = "name"`. Without `group` the user's primary group; the supplementary
/// groups are the user's (from the group database), as `initgroups(3)` sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
}

/// Where a value was written in the configuration: 1-based line and column (0, 0 for
/// a value that was not read from a file). Every position equals every other, so that
/// moving a line does not change the config (as with [`ConfigFile`]); it is there for
/// the agent's messages about the thing the value names (a program, a file).
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl PartialEq for Position {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Position {
    /// `Some((line, col))`, or `None` when the value was not read from a file.
    pub fn known(self) -> Option<(usize, usize)> {
        (self.line > 0).then_some((self.line, self.col))
    }
}

/// A program and its arguments, run without a shell: `"/path"` or
/// `["/path", "arg", ...]` in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookCommand {
    /// Absolute.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where the hook is written in the file.
    #[serde(skip)]
    pub at: Position,
}

impl HookCommand {
    /// A program without arguments.
    pub fn path(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            at: Position::default(),
        }
    }
}

/// Scripts run on state changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hooks {
    pub master: Option<HookCommand>,
    pub backup: Option<HookCommand>,
    pub fault: Option<HookCommand>,
    /// Run when the agent stops the router (shutdown, or the router removed).
    pub stop: Option<HookCommand>,
    /// Run on every transition, with keepalived's four `notify` arguments appended.
    pub notify: Option<HookCommand>,
    /// A hook still running after this is killed.
    #[serde(serialize_with = "serialize_std")]
    pub timeout: Duration,
    /// Run every hook as this user; `None` = as the agent.
    pub run_as: Option<RunAs>,
}

impl Hooks {
    /// Every configured hook with its key (`master`, `backup`, `fault`, `stop`, `notify`).
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &HookCommand)> {
        [
            ("master", &self.master),
            ("backup", &self.backup),
            ("fault", &self.fault),
            ("stop", &self.stop),
            ("notify", &self.notify),
        ]
        .into_iter()
        .filter_map(|(k, h)| h.as_ref().map(|h| (k, h)))
    }
}

impl Hooks {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            master: None,
            backup: None,
            fault: None,
            stop: None,
            notify: None,
            timeout: Self::DEFAULT_TIMEOUT,
            run_as: None,
        }
    }
}

/// `bgp = { daemon, control, bfd }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bgp {
    pub daemon: BgpDaemon,
    /// The daemon's control socket.
    pub control: PathBuf,
    pub bfd: bool,
}

/// The routing daemon that announces the VIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BgpDaemon {
    Bird,
    Frr,
}

/// `[[service]]`: a VIP:port balanced over backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    /// `name` from the file, or `VIP:PORT/PROTOCOL` (`[V6]:PORT/PROTOCOL`).
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: ForwardMode,
    pub hash: HashMode,
    /// Name of the router owning `vip`.
    pub router: String,
    /// Health check run against every backend; `None` = backends are always up.
    pub check: Option<ServiceCheck>,
    /// Non-empty; ports defaulted to the service port.
    pub backends: Vec<Backend>,
    /// `mode = "tunnel"` only: how packets are encapsulated.
    pub tunnel: Option<Tunnel>,
}

impl Service {
    /// The backends, with their port defaults applied.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// `vip:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }
}

/// `protocol = "tcp" | "udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// `mode = "dsr" | "nat" | "tunnel"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Direct server return: backends hold the VIP on `lo` and answer clients
    /// directly. Backend port = service port.
    #[default]
    Dsr,
    /// Destination NAT through this node.
    Nat,
    /// Direct server return through a tunnel: the client's packet, encapsulated
    /// (IPIP / IP6IP6, optionally in GUE), goes to the backend's address through the
    /// FIB's next hop, so backends may sit on other subnets. Backend port = service
    /// port; backends hold the VIP on `lo` and decapsulate.
    Tunnel,
}

impl ForwardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dsr => "dsr",
            Self::Nat => "nat",
            Self::Tunnel => "tunnel",
        }
    }

    /// Whether the backend answers the client itself (the VIP on its `lo`).
    pub fn direct_return(self) -> bool {
        matches!(self, Self::Dsr | Self::Tunnel)
    }
}

/// `encap = "ipip" | "gue"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// IPv4-in-IPv4 (protocol 4) for an IPv4 VIP, IPv6-in-IPv6 (next header 41) for
    /// an IPv6 VIP.
    #[default]
    Ipip,
    /// The same inner packet in GUE (version 0) over UDP to `gue_port`: the UDP
    /// source port varies per flow too.
    Gue,
}

impl Encap {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipip => "ipip",
            Self::Gue => "gue",
        }
    }
}

/// The outer source of a tunnel service: `tunnel_source = "PREFIX"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SourcePrefix {
    /// The prefix's first address (host bits zero).
    pub base: IpAddr,
    /// Prefix length; the remaining host bits are varied by the flow hash.
    pub len: u8,
}

impl SourcePrefix {
    /// How many low bits of the address the flow hash chooses.
    pub fn host_bits(self) -> u8 {
        let width = if self.base.is_ipv4() { 32 } else { 128 };
        width - self.len
    }
}

impl std::fmt::Display for SourcePrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

/// The tunnel of a `mode = "tunnel"` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    pub encap: Encap,
    /// `tunnel_source`; `None` = the node's own address toward the backends (the
    /// route's preferred source), fixed: then only GUE's source port spreads flows.
    pub source: Option<SourcePrefix>,
    /// `gue_port`: the backends' GUE (fou) receive port.
    pub gue_port: u16,
    /// `mtu`: the largest outer packet the path to the backends carries; `None` =
    /// the MTU of the interface the next hop is on.
    pub mtu: Option<u32>,
}

impl Tunnel {
    /// Katran's GUE port (its `GUE_DPORT`), also what fo's decap program listens on.
    pub const DEFAULT_GUE_PORT: u16 = 6080;
}

/// `hash = "source-ip" | "5-tuple"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum HashMode {
    /// A client always lands on the same backend.
    #[default]
    #[serde(rename = "source-ip")]
    SourceIp,
    /// Spread the flows of one client too.
    #[serde(rename = "5-tuple")]
    FiveTuple,
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// `name` from the file, or `ADDRESS:PORT` (`[V6]:PORT`).
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// 0..=1000; 0 = drained (no new flows).
    pub weight: u16,
}

impl Backend {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Weight 0: keeps its flows, takes no new ones.
    pub fn is_drained(&self) -> bool {
        self.weight == 0
    }
}

/// A service's backend health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceCheck {
    pub kind: ServiceCheckKind,
    #[serde(serialize_with = "serialize_std")]
    pub interval: Duration,
    /// Always < interval.
    #[serde(serialize_with = "serialize_std")]
    pub timeout: Duration,
    /// Consecutive successes before a backend is up.
    pub rise: u32,
    /// Consecutive failures before a backend is down.
    pub fall: u32,
}

/// What a service check does against each backend's address and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceCheckKind {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http(HttpGet),
    /// HTTP GET over TLS.
    Https {
        #[serde(flatten)]
        get: HttpGet,
        tls: Tls,
    },
    /// Run `command` (argv, no shell); exit 0 = healthy.
    Exec {
        command: Vec<String>,
        /// `user` / `group`; `None` = as the agent.
        run_as: Option<RunAs>,
        /// Where the program (`command`'s first element) is written in the file.
        #[serde(skip)]
        at: Position,
    },
}

/// What an HTTP(S) check asks for, and what the answer must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpGet {
    /// Path and query, starting with `/`.
    pub path: String,
    /// The answer's status must be one of these (never empty; default 200).
    pub expect_status: Vec<u16>,
    /// The body must contain this (within the first MiB).
    pub expect_body: Option<String>,
}

/// How an `https` check sets up TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tls {
    /// The server name sent (SNI), verified against the certificate and sent as `Host`.
    /// `None`: the target's host (a DNS name is sent; an IP address is not, and the
    /// certificate must then name that address).
    pub sni: Option<String>,
    /// CA certificates (PEM) to trust; `None`: the system's store.
    pub ca: Option<ConfigFile>,
    /// A client certificate for servers that require one (mutual TLS).
    pub client: Option<ClientCert>,
    /// Skip every verification of the server's certificate (trust, name, dates).
    pub insecure: bool,
    /// Fail while a certificate the server presents expires within this.
    #[serde(serialize_with = "serialize_std_opt")]
    pub min_cert_validity: Option<Duration>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCert {
    pub cert: ConfigFile,
    pub key: ConfigFile,
}

/// A file the agent reads, with the 1-based line and column of its name in the
/// configuration, so that a problem found when it is read points there. Two are
/// equal when their paths are (moving the line does not change the config).
#[derive(Debug, Clone, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfigFile {
    pub path: PathBuf,
    #[serde(skip)]
    pub line: usize,
    #[serde(skip)]
    pub col: usize,
}

impl PartialEq for ConfigFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

/// `[[check]]`: a node-level check used by `track` and `gates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    #[serde(serialize_with = "serialize_std")]
    pub interval: Duration,
    /// Always < interval.
    #[serde(serialize_with = "serialize_std")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// What a node-level check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect to `address:port`.
    Tcp { address: IpAddr, port: u16 },
    /// HTTP GET.
    Http(HttpCheck),
    /// HTTP GET over TLS.
    Https {
        #[serde(flatten)]
        target: HttpCheck,
        tls: Tls,
    },
    /// Run `command` (argv, no shell); exit 0 = healthy.
    Exec {
        command: Vec<String>,
        /// `user` / `group`; `None` = as the agent.
        run_as: Option<RunAs>,
        /// Where the program (`command`'s first element) is written in the file.
        #[serde(skip)]
        at: Position,
    },
    /// A process is running.
    Process { by: ProcessMatch },
    /// A file exists (and contains `contains`, if given).
    File {
        path: PathBuf,
        contains: Option<String>,
    },
}

/// Where an HTTP(S) node check connects, from `url` or from `address`/`port`/`path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpCheck {
    /// IP address or DNS name (without brackets for IPv6).
    pub host: String,
    pub port: u16,
    #[serde(flatten)]
    pub get: HttpGet,
}

impl HttpCheck {
    /// The URL this check requests (`https` for a TLS check).
    pub fn url(&self, https: bool) -> String {
        let scheme = if https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.get.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.get.path)
        }
    }
}

/// How a process check finds its process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessMatch {
    /// A process whose name (comm) is this.
    Name(String),
    /// The process whose pid is in this file.
    Pidfile(PathBuf),
}
