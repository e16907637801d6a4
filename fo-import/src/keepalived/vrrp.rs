//! `global_defs`, `vrrp_script`, `track_file`, `vrrp_instance` and `vrrp_sync_group`
//! into `[node]`, `[[router]]` and `[[check]]`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use fo_config::{valid_account_name, valid_interface_name};

use super::lex::words_escaped;
use super::tree::Stmt;
use super::{
    Cx, Error, describe, fit_timeout, fo_name, int, need, seconds, unicast, unique, within,
};
use crate::ParseError;
use crate::plan::{Check, CheckKind, Hooks, Plan, Router, RunAs};
use crate::source::Loc;

/// What `virtual_server` translation needs from the VRRP side.
#[derive(Debug, Default)]
pub struct Vrrp {
    /// Every VIP of an imported router, with the router's name.
    pub vips: HashMap<IpAddr, String>,
    /// `global_defs script_user`.
    pub script_user: Option<RunAs>,
}

/// keepalived's limits.
const MAX_TIMER: Duration = Duration::from_secs(1_000_000);
const SCRIPT_DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// fo's rise and fall are 1..=100.
const FO_MAX_RISE_FALL: i64 = 100;

#[derive(Debug, Clone)]
struct Script {
    from: String,
    at: Loc,
    argv: Option<Vec<String>>,
    interval: Duration,
    timeout: Option<(Duration, Loc)>,
    weight: i64,
    reverse: bool,
    rise: u32,
    fall: u32,
    run_as: Option<RunAs>,
    /// The `[[check]]` name, once an imported router tracks it.
    check: Option<String>,
}

#[derive(Debug, Clone)]
struct TrackFile {
    from: String,
    path: Option<String>,
    weight: i64,
    reverse: bool,
    init_file: Option<Loc>,
}

#[derive(Debug, Default)]
struct Globals {
    version: u8,
    script_user: Option<RunAs>,
}

#[derive(Debug, Clone)]
struct Group<'t> {
    stmt: &'t Stmt,
    tracking_weight: bool,
}

/// A tracked thing before it becomes a `[[check]]`.
enum Tracked {
    Script(String),
    Interface(String),
    File(String),
}

/// A tracked thing with its weight, whether the weight is reversed, where it is
/// named and the directive that names it.
type TrackedAt = (Tracked, Option<i64>, bool, Loc, String);

/// Adds what a `track_script`, `track_interface` or `track_file` block `s` names (an
/// interface's weight defaults to 0); any other statement adds nothing.
fn track_block(s: &Stmt, d: &str, tracked: &mut Vec<TrackedAt>) -> Result<(), ParseError> {
    let (kind, limit, default): (fn(String) -> Tracked, i64, Option<i64>) = match s.keyword() {
        "track_script" => (Tracked::Script, 253, None),
        "track_interface" => (Tracked::Interface, 253, Some(0)),
        "track_file" => (Tracked::File, 254, None),
        _ => return Ok(()),
    };
    for t in s.children() {
        let (w, rev) = track_weight(t, limit)?;
        tracked.push((
            kind(t.keyword().to_owned()),
            w.or(default),
            rev,
            t.at(),
            d.to_owned(),
        ));
    }
    Ok(())
}

/// Everything translated from the VRRP side of the config.
struct State<'t> {
    globals: Globals,
    scripts: BTreeMap<String, Script>,
    files: BTreeMap<String, TrackFile>,
    /// instance name -> its sync group.
    groups: HashMap<String, Group<'t>>,
    /// `[[check]]` names taken, in order.
    check_names: Vec<String>,
    /// Interface checks by interface, file checks by (track_file name, non-zero?).
    iface_checks: HashMap<String, String>,
    file_checks: HashMap<(String, bool), String>,
}

pub fn translate(cx: &mut Cx<'_>, tree: &[Stmt], plan: &mut Plan) -> Result<Vrrp, Error> {
    let mut st = State {
        globals: Globals {
            version: 2,
            script_user: None,
        },
        scripts: BTreeMap::new(),
        files: BTreeMap::new(),
        groups: HashMap::new(),
        check_names: Vec::new(),
        iface_checks: HashMap::new(),
        file_checks: HashMap::new(),
    };
    // Global settings and sync groups apply wherever they are written; scripts and
    // track files only to instances after them (keepalived looks a tracked name up
    // when it reads the instance: "track script ... not found, ignoring").
    for s in tree {
        match s.keyword() {
            "global_defs" => global_defs(cx, s, &mut st.globals, plan)?,
            "vrrp_sync_group" => {
                let tracking_weight = s
                    .children()
                    .iter()
                    .any(|c| c.keyword() == "sync_group_tracking_weight");
                for c in s.children() {
                    if c.keyword() == "group" {
                        for m in c.children() {
                            for w in &m.words {
                                st.groups.insert(
                                    w.text.clone(),
                                    Group {
                                        stmt: s,
                                        tracking_weight,
                                    },
                                );
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let instances: Vec<&Stmt> = tree
        .iter()
        .filter(|s| s.keyword() == "vrrp_instance")
        .collect();
    let interface = match &cx.input.interface {
        Some(i) => i.clone(),
        None => instances
            .iter()
            .find_map(|i| {
                i.children()
                    .iter()
                    .find(|c| c.keyword() == "interface")
                    .and_then(|c| c.arg(0))
            })
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::Input(
                    "no vrrp_instance names an interface: pass --interface IF (the interface fo attaches to)"
                        .to_owned(),
                )
            })?,
    };
    if !valid_interface_name(&interface) {
        return Err(Error::Input(format!(
            "interface {interface:?} is not an interface name fo accepts (1 to 15 bytes, no '/', ':' or spaces): pass --interface IF"
        )));
    }
    plan.node.interface = interface.clone();

    let mut out = Vrrp {
        vips: HashMap::new(),
        script_user: st.globals.script_user.clone(),
    };
    for s in tree {
        match s.keyword() {
            "vrrp_script" => {
                let name = need(s, 0, "a name")?.to_owned();
                let script = vrrp_script(cx, s, &st.globals)?;
                st.scripts.insert(name, script);
            }
            "track_file" | "vrrp_track_file" => {
                let name = need(s, 0, "a name")?.to_owned();
                let f = track_file_def(cx, s)?;
                st.files.insert(name, f);
            }
            "vrrp_instance" => {
                if let Some(r) = instance(cx, s, &interface, &mut st, plan)? {
                    for v in &r.vips {
                        out.vips.insert(*v, r.name.clone());
                    }
                    plan.routers.push(r);
                }
            }
            _ => {}
        }
    }

    // Sync groups: reported once each (their members became routers above).
    for s in tree.iter().filter(|s| s.keyword() == "vrrp_sync_group") {
        sync_group(cx, s);
    }
    // Scripts nobody imported tracks: keepalived does not run them either.
    for (name, sc) in &st.scripts {
        if sc.check.is_none() {
            cx.report.ignored(
                sc.at,
                format!("vrrp_script {name}"),
                "tracked by no imported vrrp_instance (keepalived runs a script only while an instance tracks it)",
            );
        }
    }
    // Top level: everything not handled above.
    for s in tree {
        top_level(cx, s);
    }
    Ok(out)
}

fn top_level(cx: &mut Cx<'_>, s: &Stmt) {
    let at = s.at();
    let d = describe(s);
    let r = &mut *cx.report;
    match s.keyword() {
        "global_defs" | "vrrp_script" | "track_file" | "vrrp_track_file" | "vrrp_instance"
        | "vrrp_sync_group" | "virtual_server" => {}
        "virtual_server_group" => r.not_translated(at, d, "fo services have one VIP and port each: write one virtual_server per address"),
        "static_ipaddress" | "static_routes" | "static_rules" => r.not_translated(
            at,
            d,
            "fo manages no static addresses, routes or rules: configure them with the system's network configuration",
        ),
        "vrrp_track_process" => r.not_translated(
            at,
            d,
            "no process tracking with quorum in fo: a [[check]] of kind process (name or pidfile) tracked by the router is the nearest",
        ),
        "bfd_instance" => r.not_translated(at, d, "fo runs no BFD of its own (BFD is used through BIRD for ownership = \"bgp\")"),
        "garp_group" => r.not_translated(at, d, "fo's gratuitous ARP settings are per node ([node] garp_count, garp_interval)"),
        "linkbeat_interfaces" => r.ignored(at, d, "fo follows link state through netlink"),
        "track_group" => r.not_translated(at, d, "no track groups in fo"),
        "SSL" => r.not_translated(
            at,
            d,
            "the client certificate of every SSL_GET: fo's https checks take `cert` and `key` (unencrypted, mode 0600) per check, add them by hand; keepalived loads `ca` but verifies nothing with it",
        ),
        "net_namespace" | "net_namespace_ipvs" | "namespace_with_ipsets" | "instance"
        | "use_pid_dir" | "child_wait_time" | "linkbeat_use_polling" => {
            r.ignored(at, d, "keepalived process setting: fo runs as one systemd service in the namespace it is started in")
        }
        _ => r.not_translated(at, d, "not a keepalived top-level keyword the importer knows"),
    }
}

// ------------------------------------------------------------ global_defs

fn global_defs(
    cx: &mut Cx<'_>,
    g: &Stmt,
    globals: &mut Globals,
    plan: &mut Plan,
) -> Result<(), ParseError> {
    for s in g.children() {
        let at = s.at();
        let d = within(g, s);
        match s.keyword() {
            "router_id" => cx.report.ignored(at, d, "names the node in keepalived's logs and e-mails; fo logs under the host name"),
            "vrrp_version" => {
                globals.version = int(s, 0, 2, 3)? as u8;
            }
            "script_user" => globals.script_user = Some(user_of(s, 0)?),
            "enable_script_security" => {
                cx.script_security = true;
                cx.report.ignored(
                    at,
                    d,
                    "fo always does this: fo-agent check, run and reload refuse a hook or check program that a user other than root could change (the program, a directory above it, a link on the way or its #! interpreter), and such a program is not run",
                );
            }
            "vrrp_garp_master_repeat" => {
                let n = int(s, 0, 1, 10_000)?;
                if n > 255 {
                    cx.report.approximated(at, d, "fo sends at most 255 gratuitous ARPs per takeover");
                }
                plan.node.garp_count = Some(n.min(255) as u32);
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                let v = seconds(s, 0, Duration::from_secs(1))?;
                if v.is_zero() {
                    cx.report.approximated(at, d, "0 sends the burst back to back; fo keeps at least 1 ms between gratuitous ARPs");
                }
                let v = v.max(Duration::from_millis(1));
                if let Some(prev) = plan.node.garp_interval
                    && prev != v
                {
                    cx.report.approximated(at, within(g, s), "fo has one interval for gratuitous ARP and unsolicited NA: the first one given is used");
                } else {
                    plan.node.garp_interval = Some(v);
                }
            }
            "vrrp_garp_master_refresh" => {
                plan.node.garp_refresh = Some(seconds(s, 0, MAX_TIMER)?);
            }
            "vrrp_garp_master_delay" => cx.report.approximated(
                at,
                d,
                "fo sends one burst of garp_count gratuitous ARPs on takeover and then refreshes every garp_refresh; there is no second burst after a delay",
            ),
            "vrrp_garp_master_refresh_repeat" | "vrrp_garp_lower_prio_delay" | "vrrp_garp_lower_prio_repeat"
            | "vrrp_min_garp" | "vrrp_garp_extra_if" | "vrrp_vmac_garp_intvl" => {
                cx.report.not_translated(at, d, "no such gratuitous ARP setting in fo ([node] garp_count, garp_interval, garp_refresh)")
            }
            "notification_email" | "notification_email_from" | "smtp_server" | "smtp_helo_name"
            | "smtp_connect_timeout" | "smtp_alert" | "smtp_alert_vrrp" | "smtp_alert_checker"
            | "no_email_faults" | "checker_log_all_failures" => cx.report.not_translated(
                at,
                d,
                "fo sends no e-mail: alert on its metrics (fo_vrrp_state, fo_vrrp_transitions_total) or mail from a notify hook",
            ),
            "vrrp_check_unicast_src" => cx.report.ignored(at, d, "fo always accepts unicast adverts only from the router's peers"),
            "vrrp_skip_check_adv_addr" => cx.report.ignored(at, d, "fo never drops an advert for its address list (it logs a mismatch once)"),
            "vrrp_strict" => cx.report.not_translated(
                at,
                d,
                "no strict mode in fo: it accepts traffic to the VIPs (keepalived's accept mode) and allows unicast and auth_pass",
            ),
            "vrrp_mcast_group4" | "vrrp_mcast_group6" => cx.report.not_translated(at, d, "fo sends adverts to the standard VRRP groups (224.0.0.18, ff02::12)"),
            "vrrp_lower_prio_no_advert" | "vrrp_higher_prio_send_advert" | "vrrp_down_timer_adverts" => {
                cx.report.not_translated(at, d, "fo follows RFC 5798 here (a master answers a lower priority advert at once; Master_Down_Interval is 3 intervals + skew)")
            }
            "notify_fifo" | "notify_fifo_script" | "vrrp_notify_fifo" | "vrrp_notify_fifo_script"
            | "lvs_notify_fifo" | "lvs_notify_fifo_script" | "vrrp_notify_priority_changes"
            | "fifo_write_vrrp_states_on_reload" => cx.report.not_translated(at, d, "no notify FIFO in fo: use the router's notify hook"),
            "enable_traps" | "snmp_socket" | "enable_snmp_vrrp" | "enable_snmp_keepalived"
            | "enable_snmp_rfc" | "enable_snmp_rfcv2" | "enable_snmp_rfcv3" | "enable_snmp_checker"
            | "enable_dbus" | "dbus_service_name" => cx.report.not_translated(at, d, "fo exports Prometheus metrics and a control socket, not SNMP or D-Bus"),
            "vrrp_iptables" | "vrrp_ipsets" | "nftables" | "nftables_priority" | "nftables_ifindex"
            | "nftables_ipvs" | "nftables_ipvs_priority" | "nftables_ipvs_start_fwmark"
            | "nftables_counters" => cx.report.not_translated(at, d, "fo adds no firewall rules for the VIPs"),
            "startup_script" | "startup_script_timeout" | "shutdown_script" | "shutdown_script_timeout" => {
                cx.report.not_translated(at, d, "no start/stop scripts in fo: use ExecStartPre=/ExecStopPost= in the systemd unit")
            }
            "lvs_timeouts" | "lvs_flush" | "lvs_flush_on_stop" | "lvs_flush_onstop" | "lvs_sync_daemon" => {
                cx.report.not_translated(at, d, "IPVS setting: fo forwards with its own XDP program (NAT connections are synced with [node] sync)")
            }
            "vrrp_priority" | "vrrp_no_swap" | "vrrp_rt_priority" | "vrrp_cpu_affinity"
            | "vrrp_rlimit_rttime" | "vrrp_rlimit_rtime" | "checker_priority" | "checker_no_swap"
            | "checker_rt_priority" | "checker_cpu_affinity" | "checker_rlimit_rttime"
            | "checker_rlimit_rtime" | "bfd_priority" | "bfd_no_swap" | "bfd_rt_priority"
            | "bfd_cpu_affinity" | "bfd_rlimit_rttime" | "bfd_rlimit_rtime" | "process_names"
            | "process_name" | "vrrp_process_name" | "checker_process_name" | "lvs_process_name"
            | "bfd_process_name" | "max_auto_priority" | "min_auto_priority_delay"
            | "vrrp_netlink_cmd_rcv_bufs" | "vrrp_netlink_cmd_rcv_bufs_force"
            | "vrrp_netlink_monitor_rcv_bufs" | "vrrp_netlink_monitor_rcv_bufs_force"
            | "process_monitor_rcv_bufs" | "process_monitor_rcv_bufs_force"
            | "lvs_netlink_cmd_rcv_bufs" | "lvs_netlink_cmd_rcv_bufs_force"
            | "lvs_netlink_monitor_rcv_bufs" | "lvs_netlink_monitor_rcv_bufs_force"
            | "vrrp_rx_bufs_policy" | "vrrp_rx_bufs_multiplier" | "umask" | "random_seed"
            | "reload_check_config" | "reload_time_file" | "reload_repeat" | "reload_file"
            | "include_check" | "config_save_dir" | "tmp_config_directory" | "data_use_instance"
            | "use_pid_dir" | "instance" | "child_wait_time" | "net_namespace"
            | "net_namespace_ipvs" | "namespace_with_ipsets" | "linkbeat_use_polling"
            | "dynamic_interfaces" | "disable_local_igmp" | "default_interface"
            | "log_unknown_vrids" | "vrrp_startup_delay" | "rs_init_notifies"
            | "no_checker_emails" | "vmac_prefix" | "vmac_addr_prefix" => {
                cx.report.ignored(at, d, "keepalived process setting; fo runs as one systemd service")
            }
            _ => cx.report.not_translated(at, d, "not a global_defs keyword the importer knows"),
        }
    }
    Ok(())
}

// ----------------------------------------------------------- vrrp_script

fn user_of(s: &Stmt, first: usize) -> Result<RunAs, ParseError> {
    let r = RunAs {
        user: need(s, first, "a user name")?.to_owned(),
        group: s.arg(first + 1).map(str::to_owned),
    };
    check_user(&r, s.at())?;
    Ok(r)
}

/// A user/group keepalived could look up is one fo can name.
pub fn check_user(r: &RunAs, at: Loc) -> Result<(), ParseError> {
    for n in std::iter::once(&r.user).chain(r.group.as_ref()) {
        if !valid_account_name(n) {
            return Err(ParseError::at(
                at,
                format!("{n:?} is not a user or group name"),
            ));
        }
    }
    Ok(())
}

fn vrrp_script(cx: &mut Cx<'_>, v: &Stmt, globals: &Globals) -> Result<Script, ParseError> {
    let mut sc = Script {
        from: cx.from(v),
        at: v.at(),
        argv: None,
        interval: SCRIPT_DEFAULT_INTERVAL,
        timeout: None,
        weight: 0,
        reverse: false,
        rise: 1,
        fall: 1,
        run_as: globals.script_user.clone(),
        check: None,
    };
    for s in v.children() {
        match s.keyword() {
            "script" => {
                let line = words_escaped(&s.text.string())
                    .map_err(|e| ParseError::at(s.at(), format!("script: {e}")))?;
                let argv = match line.get(1) {
                    Some(cmd) => words_escaped(cmd)
                        .map_err(|e| ParseError::at(s.at(), format!("script: {e}")))?,
                    None => Vec::new(),
                };
                if argv.is_empty() {
                    return Err(ParseError::at(s.at(), "script needs a command"));
                }
                sc.argv = Some(argv);
            }
            "interval" => {
                sc.interval = Duration::from_secs(int(s, 0, 0, 1_000_000)?.max(1) as u64);
            }
            "timeout" => {
                let t = Duration::from_secs(int(s, 0, 0, 1_000_000)?.max(1) as u64);
                sc.timeout = Some((t, s.at()));
            }
            "weight" => {
                sc.weight = int(s, 0, -253, 253)?;
                match s.arg(1) {
                    Some("reverse") => sc.reverse = true,
                    Some(other) => {
                        return Err(ParseError::at(
                            s.args()[1].at,
                            format!("unknown weight option {other:?} (reverse)"),
                        ));
                    }
                    None => {}
                }
            }
            "rise" => sc.rise = int(s, 0, 1, i64::from(i32::MAX))? as u32,
            "fall" => sc.fall = int(s, 0, 1, i64::from(i32::MAX))? as u32,
            "user" => sc.run_as = Some(user_of(s, 0)?),
            "init_fail" => cx.report.ignored(
                s.at(),
                within(v, s),
                "fo's checks always start failing until they pass `rise` times",
            ),
            _ => cx.report.not_translated(
                s.at(),
                within(v, s),
                "not a vrrp_script keyword the importer knows",
            ),
        }
    }
    Ok(sc)
}

fn track_file_def(cx: &mut Cx<'_>, v: &Stmt) -> Result<TrackFile, ParseError> {
    let mut f = TrackFile {
        from: cx.from(v),
        path: None,
        weight: 1,
        reverse: false,
        init_file: None,
    };
    for s in v.children() {
        match s.keyword() {
            "file" => f.path = Some(need(s, 0, "a file name")?.to_owned()),
            "weight" => {
                f.weight = int(s, 0, -254, 254)?;
                f.reverse = s.arg(1) == Some("reverse");
            }
            "init_file" => f.init_file = Some(s.at()),
            _ => cx.report.not_translated(
                s.at(),
                within(v, s),
                "not a track_file keyword the importer knows",
            ),
        }
    }
    Ok(f)
}

// ---------------------------------------------------------- vrrp_instance

/// One VRRP instance into a router, or `None` when it is not imported.
fn instance(
    cx: &mut Cx<'_>,
    v: &Stmt,
    interface: &str,
    st: &mut State<'_>,
    plan: &mut Plan,
) -> Result<Option<Router>, Error> {
    let iname = need(v, 0, "a name")?.to_owned();
    let here = describe(v);
    let find = |k: &str| v.children().iter().find(|c| c.keyword() == k);
    // Which interface?
    match find("interface").and_then(|c| c.arg(0)) {
        Some(i) if i != interface => {
            cx.report.not_translated(
                v.at(),
                here,
                format!("runs on interface {i}; this import is for {interface} (one fo agent serves one interface: import it again with --interface {i} for another node config)"),
            );
            return Ok(None);
        }
        None => cx.report.approximated(
            v.at(),
            here.clone(),
            format!("no interface given (keepalived picks one from the unicast addresses): imported on {interface}"),
        ),
        Some(_) => {}
    }
    let taken: Vec<String> = plan.routers.iter().map(|r| r.name.clone()).collect();
    let mut r = Router {
        from: cx.from(v),
        name: unique(fo_name(&iname), &taken),
        priority: 0,
        version: 0,
        advert_interval: Duration::from_secs(1),
        preempt: true,
        ..Router::default()
    };
    let mut vrid: Option<(u8, Loc)> = None;
    let mut state_master = false;
    let mut nopreempt: Option<Loc> = None;
    let mut preempt_delay: Option<(Duration, Loc)> = None;
    let mut auth: Option<(&Stmt, Option<String>, bool)> = None;
    let mut tracked: Vec<TrackedAt> = Vec::new();
    let group = st.groups.get(&iname).cloned();

    for s in v.children() {
        let at = s.at();
        let d = within(v, s);
        match s.keyword() {
            "interface" => {}
            "state" => {
                match need(s, 0, "MASTER or BACKUP")? {
                    "MASTER" => state_master = true,
                    "BACKUP" => {}
                    other => {
                        return Err(ParseError::at(
                            s.args()[0].at,
                            format!("state must be MASTER or BACKUP, got {other:?}"),
                        )
                        .into());
                    }
                }
                cx.report.ignored(at, d, "fo starts every router as backup and elects by priority (an address owner, priority 255, takes over at once)");
            }
            "virtual_router_id" => vrid = Some((int(s, 0, 1, 255)? as u8, at)),
            "priority" => r.priority = int(s, 0, 1, 255)? as u8,
            "advert_int" => {
                let a = seconds(s, 0, Duration::from_secs(255))?;
                if a < Duration::from_millis(10) {
                    return Err(ParseError::at(s.args()[0].at, "advert_int must be at least 0.01").into());
                }
                r.advert_interval = a;
            }
            "version" => r.version = int(s, 0, 2, 3)? as u8,
            "nopreempt" => nopreempt = Some(at),
            "preempt" => {}
            "preempt_delay" => preempt_delay = Some((seconds(s, 0, Duration::from_secs(1000))?, at)),
            "virtual_ipaddress" => vips(cx, v, s, interface, &plan.routers, &mut r.vips)?,
            "virtual_ipaddress_excluded" => cx.report.not_translated(
                at,
                d,
                "fo has no addresses outside the adverts: add them to `vips` once every node runs fo (a keepalived peer drops adverts whose address list differs from its own)",
            ),
            "unicast_peer" => {
                for p in s.children() {
                    let a = p.keyword();
                    let ip: IpAddr = a.parse().map_err(|_| {
                        ParseError::at(p.at(), format!("unicast_peer: {a:?} is not an IP address"))
                    })?;
                    if p.args().iter().any(|w| w.text == "min_ttl" || w.text == "max_ttl") {
                        cx.report.approximated(p.at(), d.clone(), "fo accepts adverts only with TTL 255 (RFC 5798), whatever min_ttl/max_ttl say");
                    }
                    if !r.peers.contains(&ip) {
                        r.peers.push(ip);
                    }
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => cx.report.approximated(
                at,
                d,
                format!("fo sends adverts from {interface}'s primary address: make sure that is {}", s.arg(0).unwrap_or("?")),
            ),
            "authentication" => {
                let mut pass = None;
                let mut ah = false;
                for a in s.children() {
                    match a.keyword() {
                        "auth_type" => ah = need(a, 0, "PASS or AH")? == "AH",
                        "auth_pass" => pass = Some(need(a, 0, "a password")?.to_owned()),
                        _ => cx.report.not_translated(a.at(), within(s, a), "not an authentication keyword"),
                    }
                }
                auth = Some((s, pass, ah));
            }
            "track_script" | "track_interface" | "track_file" => track_block(s, &d, &mut tracked)?,
            "track_process" | "track_bfd" => cx.report.not_translated(at, d, "no process (quorum) or BFD tracking in fo"),
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                hook(cx, v, s, &st.globals, &mut r.hooks)?;
            }
            "notify_deleted" | "notify_master_rx_lower_pri" => cx.report.not_translated(at, d, "no such hook in fo (master, backup, fault, stop, notify)"),
            "notify_priority_changes" => cx.report.not_translated(at, d, "no notify FIFO in fo"),
            "smtp_alert" => cx.report.not_translated(at, d, "fo sends no e-mail: alert on its metrics or mail from a notify hook"),
            "dont_track_primary" => cx.report.not_translated(at, d, "fo always faults a router whose interface loses its link"),
            "use_vmac" | "use_vmac_addr" | "vmac_xmit_base" | "use_ipvlan" => cx.report.not_translated(
                at,
                d,
                "fo answers ARP/ND for the VIPs with the interface's own MAC (no virtual MAC or ipvlan)",
            ),
            "native_ipv6" => cx.report.ignored(at, d, "deprecated in keepalived: the VIPs' family decides"),
            "mcast_dst_ip" => cx.report.not_translated(at, d, "fo sends adverts to the standard VRRP groups"),
            "track_src_ip" | "unicast_fault_no_peer" | "old_unicast_checksum" | "unicast_ttl"
            | "down_timer_adverts" | "lower_prio_no_advert" | "higher_prio_send_advert"
            | "vrf" | "lvs_sync_daemon_interface" | "garp_extra_if" | "vmac_garp_intvl" => {
                cx.report.not_translated(at, d, "no equivalent in fo")
            }
            "strict_mode" => cx.report.not_translated(at, d, "no strict mode in fo"),
            "accept" => cx.report.ignored(at, d, "fo always accepts traffic to the VIPs (accept mode)"),
            "no_accept" => cx.report.not_translated(at, d, "fo always accepts traffic to the VIPs"),
            "skip_check_adv_addr" | "check_unicast_src" => cx.report.ignored(at, d, "fo behaves so already (peers only; address lists logged, not enforced)"),
            "promote_secondaries" | "kernel_rx_buf_size" | "debug" | "linkbeat_use_polling" => {
                cx.report.ignored(at, d, "keepalived-specific setting without effect in fo")
            }
            "virtual_routes" | "virtual_rules" => cx.report.not_translated(at, d, "fo adds no routes or rules on takeover: add them from the master hook (and remove them in backup/fault)"),
            "garp_master_delay" => cx.report.approximated(at, d, "fo sends one burst on takeover, then refreshes every [node] garp_refresh"),
            "garp_master_repeat" => node_garp(cx, s, &mut plan.node.garp_count, int(s, 0, 1, 10_000)?.min(255) as u32),
            "garp_master_refresh" => {
                let v = seconds(s, 0, MAX_TIMER)?;
                node_garp(cx, s, &mut plan.node.garp_refresh, v);
            }
            "garp_master_refresh_repeat" | "garp_lower_prio_delay" | "garp_lower_prio_repeat" => {
                cx.report.not_translated(at, d, "no such gratuitous ARP setting in fo")
            }
            _ => cx.report.not_translated(at, d, "not a vrrp_instance keyword the importer knows"),
        }
    }

    let Some((vrid, _)) = vrid else {
        return Err(ParseError::at(v.at(), "vrrp_instance needs virtual_router_id").into());
    };
    if let Some(other) = plan.routers.iter().find(|o| o.vrid == vrid) {
        cx.report.not_translated(
            v.at(),
            here,
            format!("virtual_router_id {vrid} is already router {}'s on {interface} (fo needs one VRID per router on an interface)", other.name),
        );
        return Ok(None);
    }
    r.vrid = vrid;
    if r.vips.is_empty() {
        cx.report.not_translated(
            v.at(),
            here,
            "no VIP fo can serve on this interface: nothing to fail over",
        );
        return Ok(None);
    }
    let family_v4 = r.vips[0].is_ipv4();
    let peers = std::mem::take(&mut r.peers);
    for p in peers {
        if !unicast(p) || p.is_ipv4() != family_v4 || r.vips.contains(&p) {
            cx.report.not_translated(
                v.at(),
                format!("{here} > unicast_peer"),
                format!("{p}: a peer must be a unicast address of the VIPs' family, and no VIP"),
            );
        } else {
            r.peers.push(p);
        }
    }
    // keepalived: no priority -> 255 with state MASTER, else 100.
    if r.priority == 0 {
        r.priority = if state_master { 255 } else { 100 };
        if state_master {
            cx.report.ignored(v.at(), here.clone(), "state MASTER without priority: keepalived makes it the address owner (255), so does the import");
        }
    }
    let ipv6 = r.vips[0].is_ipv6();
    if r.version == 0 {
        r.version = if ipv6 { 3 } else { st.globals.version };
    }
    if ipv6 && r.version == 2 {
        r.version = 3;
        cx.report.ignored(
            v.at(),
            here.clone(),
            "IPv6 runs VRRP version 3 (keepalived too)",
        );
    }
    if r.version == 2 && r.advert_interval.subsec_nanos() != 0 {
        let whole = r.advert_interval.as_secs().max(1);
        cx.report.approximated(
            v.at(),
            here.clone(),
            format!("VRRPv2 adverts carry whole seconds (keepalived truncates on the wire): advert_interval {whole}s"),
        );
        r.advert_interval = Duration::from_secs(whole);
    }
    if r.version == 3 && !r.advert_interval.as_millis().is_multiple_of(10) {
        let cs = (r.advert_interval.as_millis() / 10).max(1) as u64;
        r.advert_interval = Duration::from_millis(cs * 10);
        cx.report.approximated(
            v.at(),
            here.clone(),
            "VRRPv3 adverts carry centiseconds: rounded down",
        );
    }
    if r.version == 3 && r.advert_interval > Duration::from_millis(40_950) {
        return Err(
            ParseError::at(v.at(), "advert_int above 40.95 s cannot be sent in VRRPv3").into(),
        );
    }
    // Preemption, with keepalived's clearing rules.
    r.preempt = nopreempt.is_none();
    if let Some(at) = nopreempt {
        if r.priority == 255 {
            r.preempt = true;
            cx.report.ignored(
                at,
                format!("{here} > nopreempt"),
                "keepalived clears nopreempt on an address owner (255)",
            );
        } else if state_master {
            r.preempt = true;
            cx.report.ignored(
                at,
                format!("{here} > nopreempt"),
                "keepalived clears nopreempt with state MASTER",
            );
        }
    }
    if let Some((delay, at)) = preempt_delay {
        if state_master || !r.preempt {
            cx.report.ignored(
                at,
                format!("{here} > preempt_delay"),
                "keepalived clears preempt_delay with state MASTER or nopreempt",
            );
        } else {
            r.preempt_delay = delay;
        }
    }
    // Authentication.
    if let Some((s, pass, ah)) = auth {
        let d = within(v, s);
        if r.version == 3 {
            cx.report.ignored(
                s.at(),
                d,
                "keepalived ignores authentication with VRRP version 3",
            );
        } else if ah {
            cx.report.not_translated(s.at(), d, "AH authentication is not supported by fo (use auth_pass with version 2, or plain version 3)");
        } else if let Some(p) = pass {
            if p.is_empty() {
                cx.report.ignored(
                    s.at(),
                    d,
                    "keepalived ignores authentication without a password",
                );
            } else {
                let mut p8 = p.clone();
                while p8.len() > 8 {
                    p8.pop();
                }
                if p8 != p {
                    cx.report.ignored(
                        s.at(),
                        d,
                        "keepalived uses the first 8 characters of auth_pass; so does the import",
                    );
                }
                r.auth_pass = Some(p8);
            }
        } else {
            cx.report.ignored(
                s.at(),
                d,
                "keepalived ignores authentication without auth_pass",
            );
        }
    }
    // Tracking: the instance's own, then its sync group's.
    if let Some(g) = &group {
        for c in g.stmt.children() {
            let d = format!("{} > {}", describe(g.stmt), c.keyword());
            track_block(c, &d, &mut tracked)?;
        }
    }
    let no_weights = r.priority == 255 || group.as_ref().is_some_and(|g| !g.tracking_weight);
    let why_no_weights = if r.priority == 255 {
        "the address owner (255)"
    } else {
        "a vrrp_sync_group member without sync_group_tracking_weight"
    };
    if r.hooks.notify.is_some()
        && r.name != iname
        && let Some(n) = v.children().iter().find(|c| c.keyword() == "notify")
    {
        cx.report.approximated(
            n.at(),
            within(v, n),
            format!(
                "the notify script gets the router's name {} where keepalived passed {iname}",
                r.name
            ),
        );
    }
    for (t, weight, reverse, at, d) in tracked {
        track(
            cx,
            st,
            plan,
            &mut r,
            interface,
            t,
            weight,
            reverse,
            at,
            &d,
            no_weights,
            why_no_weights,
        );
    }
    Ok(Some(r))
}

/// `NAME [weight N [reverse|noreverse|no_reverse]]`: (weight, reverse).
fn track_weight(t: &Stmt, limit: i64) -> Result<(Option<i64>, bool), ParseError> {
    match t.arg(0) {
        None => Ok((None, false)),
        Some("weight") => {
            let w = int(t, 1, -254, 254)?;
            let w = w.clamp(-limit, limit);
            let rev = match t.arg(2) {
                None | Some("noreverse" | "no_reverse") => false,
                Some("reverse") => true,
                Some(other) => {
                    return Err(ParseError::at(
                        t.args()[2].at,
                        format!("unknown weight option {other:?} (reverse, noreverse)"),
                    ));
                }
            };
            Ok((Some(w), rev))
        }
        Some(other) => Err(ParseError::at(
            t.args()[0].at,
            format!("expected `weight N` after {}, got {other:?}", t.keyword()),
        )),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one tracked item with its context"
)]
fn track(
    cx: &mut Cx<'_>,
    st: &mut State<'_>,
    plan: &mut Plan,
    r: &mut Router,
    interface: &str,
    t: Tracked,
    weight: Option<i64>,
    reverse: bool,
    at: Loc,
    d: &str,
    no_weights: bool,
    why_no_weights: &str,
) {
    let (check, weight) = match t {
        Tracked::Script(name) => {
            let Some(sc) = st.scripts.get(&name) else {
                cx.report.ignored(
                    at,
                    d,
                    format!(
                        "no vrrp_script {name} before this instance: keepalived ignores the entry"
                    ),
                );
                return;
            };
            let Some(mut argv) = sc.argv.clone() else {
                cx.report.ignored(
                    at,
                    d,
                    format!("vrrp_script {name} has no script: keepalived removes it"),
                );
                return;
            };
            let weight = weight.unwrap_or(sc.weight);
            let reverse = reverse || (weight != 0 && sc.reverse);
            if no_weights && weight != 0 {
                cx.report.ignored(at, d, format!("{name}: keepalived drops a weighted track_script of {why_no_weights}; so does the import"));
                return;
            }
            if reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{name}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            let check = match &sc.check {
                Some(c) => c.clone(),
                None => {
                    let name_c = unique(fo_name(&name), &st.check_names);
                    st.check_names.push(name_c.clone());
                    let (timeout, adjusted) = match sc.timeout {
                        Some((t, _)) => fit_timeout(t, sc.interval),
                        None => (fit_timeout(sc.interval, sc.interval).0, false),
                    };
                    if adjusted && let Some((_, tat)) = sc.timeout {
                        cx.report.approximated(
                            tat,
                            format!("vrrp_script {name} > timeout"),
                            format!(
                                "fo needs timeout < interval: {}",
                                fo_config::format_duration(timeout)
                            ),
                        );
                    }
                    let cap = |n: u32, what: &str, cx: &mut Cx<'_>| {
                        if i64::from(n) > FO_MAX_RISE_FALL {
                            cx.report.approximated(
                                sc.at,
                                format!("vrrp_script {name} > {what}"),
                                format!("fo allows at most {FO_MAX_RISE_FALL}"),
                            );
                            FO_MAX_RISE_FALL as u32
                        } else {
                            n
                        }
                    };
                    let rise = cap(sc.rise, "rise", cx);
                    let fall = cap(sc.fall, "fall", cx);
                    let directive = format!("vrrp_script {name} > script");
                    cx.absolute_program(sc.at, &directive, &mut argv);
                    if let Some(p) = argv.first() {
                        cx.check_program(sc.at, &directive, p);
                    }
                    plan.checks.push(Check {
                        from: sc.from.clone(),
                        name: name_c.clone(),
                        kind: CheckKind::Exec {
                            command: argv,
                            run_as: sc.run_as.clone(),
                        },
                        interval: sc.interval,
                        timeout,
                        rise,
                        fall,
                    });
                    if let Some(sc) = st.scripts.get_mut(&name) {
                        sc.check = Some(name_c.clone());
                    }
                    name_c
                }
            };
            (check, weight)
        }
        Tracked::Interface(ifname) => {
            let weight = weight.unwrap_or(0);
            let weight = if no_weights && weight != 0 {
                if r.priority == 255 {
                    cx.report.ignored(at, d, format!("{ifname}: keepalived stops tracking a weighted interface of the address owner"));
                    return;
                }
                cx.report.ignored(at, d, format!("{ifname}: keepalived counts a weighted interface of a sync group member as weight 0 (fault); so does the import"));
                0
            } else {
                weight
            };
            if reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{ifname}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            if ifname == interface {
                if weight == 0 {
                    cx.report.ignored(
                        at,
                        d,
                        format!(
                            "{ifname}: fo faults the router when its own interface loses its link"
                        ),
                    );
                } else {
                    cx.report.approximated(at, d, format!("{ifname}: fo faults the router when its own interface loses its link, instead of moving the priority by {weight}"));
                }
                return;
            }
            let check = match st.iface_checks.get(&ifname) {
                Some(c) => c.clone(),
                None => {
                    let name = unique(fo_name(&format!("if-{ifname}")), &st.check_names);
                    st.check_names.push(name.clone());
                    plan.checks.push(Check {
                        from: format!("from {} track_interface {ifname}", cx.files.at(at)),
                        name: name.clone(),
                        kind: CheckKind::File {
                            path: format!("/sys/class/net/{ifname}/carrier"),
                            contains: Some("1".into()),
                        },
                        interval: Duration::from_secs(1),
                        timeout: Duration::from_millis(500),
                        rise: 1,
                        fall: 1,
                    });
                    st.iface_checks.insert(ifname.clone(), name.clone());
                    cx.report.approximated(
                        at,
                        d,
                        format!("{ifname}: a check reads /sys/class/net/{ifname}/carrier every second (keepalived follows netlink at once)"),
                    );
                    name
                }
            };
            (check, weight)
        }
        Tracked::File(name) => {
            let Some(f) = st.files.get(&name).cloned() else {
                cx.report.ignored(
                    at,
                    d,
                    format!(
                        "no track_file {name} before this instance: keepalived ignores the entry"
                    ),
                );
                return;
            };
            let Some(path) = f.path.clone() else {
                cx.report.ignored(
                    at,
                    d,
                    format!("track_file {name} has no file: keepalived ignores it"),
                );
                return;
            };
            let mut weight = weight.unwrap_or(f.weight);
            if no_weights && weight != 0 {
                if weight == 1 {
                    cx.report.ignored(at, d, format!("{name}: keepalived makes the default weight 0 for {why_no_weights}; so does the import"));
                    weight = 0;
                } else {
                    cx.report.ignored(at, d, format!("{name}: keepalived drops a weighted track_file of {why_no_weights}; so does the import"));
                    return;
                }
            }
            if reverse || f.reverse {
                cx.report.not_translated(
                    at,
                    d,
                    format!("{name}: `reverse` weights have no fo equivalent"),
                );
                return;
            }
            if let Some(init) = f.init_file {
                cx.report.approximated(
                    init,
                    format!("track_file {name} > init_file"),
                    format!("fo does not create {path}: create it (holding 0) before fo starts"),
                );
            }
            let weight = weight.clamp(-254, 254);
            // Weight 0 and negative weights act while the value is not 0 (the check
            // "the file holds 0" fails); positive weights while it is not 0 (the check
            // "the file holds a non-zero number" passes).
            let nonzero = weight > 0;
            let check = match st.file_checks.get(&(name.clone(), nonzero)) {
                Some(c) => c.clone(),
                None => {
                    let cname = unique(
                        fo_name(&format!(
                            "file-{name}{}",
                            if nonzero { "-nonzero" } else { "" }
                        )),
                        &st.check_names,
                    );
                    st.check_names.push(cname.clone());
                    let test = if nonzero {
                        "read v < \"$0\" && [ \"$v\" -ne 0 ]"
                    } else {
                        "read v < \"$0\" && [ \"$v\" -eq 0 ]"
                    };
                    plan.checks.push(Check {
                        from: f.from.clone(),
                        name: cname.clone(),
                        kind: CheckKind::Exec {
                            command: vec!["/bin/sh".into(), "-c".into(), test.into(), path.clone()],
                            run_as: None,
                        },
                        interval: Duration::from_secs(1),
                        timeout: Duration::from_millis(500),
                        rise: 1,
                        fall: 1,
                    });
                    st.file_checks
                        .insert((name.clone(), nonzero), cname.clone());
                    cname
                }
            };
            let how = match weight {
                0 => "fault while it holds a non-zero number".to_owned(),
                w => format!(
                    "{w:+} while it holds a non-zero number (keepalived adds the number × {w})"
                ),
            };
            cx.report
                .approximated(at, d, format!("{name}: {path} is read every second: {how}"));
            (check, weight)
        }
    };
    if r.track.iter().any(|(c, _)| *c == check) {
        cx.report.approximated(at, d, format!("{check} is tracked twice by this instance (with its sync group): fo tracks it once, with the first weight"));
        return;
    }
    r.track.push((check, weight as i16));
}

fn node_garp<T: PartialEq + Copy>(cx: &mut Cx<'_>, s: &Stmt, slot: &mut Option<T>, v: T) {
    match slot {
        Some(prev) if *prev != v => cx.report.approximated(
            s.at(),
            s.keyword().to_owned(),
            "fo's gratuitous ARP settings are per node ([node]): the first value given is used",
        ),
        Some(_) => {}
        None => *slot = Some(v),
    }
}

fn vips(
    cx: &mut Cx<'_>,
    v: &Stmt,
    s: &Stmt,
    interface: &str,
    taken: &[Router],
    out: &mut Vec<IpAddr>,
) -> Result<(), ParseError> {
    let d = within(v, s);
    for line in s.children() {
        let at = line.at();
        let word = line.keyword();
        let (addr, prefix) = match word.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (word, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            ParseError::at(
                at,
                format!("virtual_ipaddress: {word:?} is not an IP address"),
            )
        })?;
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => full,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= full => n,
                _ => {
                    return Err(ParseError::at(
                        at,
                        format!("virtual_ipaddress: bad prefix in {word:?}"),
                    ));
                }
            },
        };
        let mut dev: Option<&str> = None;
        let mut label = false;
        let mut vmac = false;
        let args = line.args();
        let mut i = 0;
        while i < args.len() {
            match args[i].text.as_str() {
                "dev" => {
                    dev = args.get(i + 1).map(|w| w.text.as_str());
                    i += 1;
                }
                "label" => {
                    label = true;
                    i += 1;
                }
                "brd" | "scope" | "peer" | "preferred_lft" | "track_group" => i += 1,
                "use_vmac" => vmac = true,
                _ => {}
            }
            i += 1;
        }
        if let Some(dev) = dev
            && dev != interface
        {
            cx.report.not_translated(
                at,
                d.clone(),
                format!("{word} is on {dev}; fo serves VIPs on {interface} only"),
            );
            continue;
        }
        if vmac {
            cx.report
                .not_translated(at, d.clone(), format!("{word}: no virtual MAC in fo"));
            continue;
        }
        if let Some(first) = out.first()
            && first.is_ipv4() != ip.is_ipv4()
        {
            cx.report.not_translated(
                at,
                d.clone(),
                format!("{word}: the VIPs of a router share one address family"),
            );
            continue;
        }
        if out.contains(&ip) {
            cx.report
                .ignored(at, d.clone(), format!("{ip} is listed twice"));
            continue;
        }
        if !unicast(ip) {
            cx.report
                .not_translated(at, d.clone(), format!("{ip} is not a unicast address"));
            continue;
        }
        if let Some(other) = taken.iter().find(|r| r.vips.contains(&ip)) {
            cx.report.not_translated(
                at,
                d.clone(),
                format!(
                    "{ip} is already a VIP of router {} (one router per VIP in fo)",
                    other.name
                ),
            );
            continue;
        }
        if prefix != full {
            cx.report.approximated(
                at,
                d.clone(),
                format!("{word}: fo serves the address itself (ARP/ND in XDP); the /{prefix} subnet route keepalived adds with it is not created"),
            );
        }
        if label {
            cx.report.ignored(
                at,
                d.clone(),
                format!("{word}: fo puts no label on the address"),
            );
        }
        if args.iter().any(|w| {
            matches!(
                w.text.as_str(),
                "brd"
                    | "scope"
                    | "peer"
                    | "home"
                    | "-nodad"
                    | "nodad"
                    | "mngtmpaddr"
                    | "noprefixroute"
                    | "autojoin"
                    | "no_track"
                    | "preferred_lft"
            )
        }) {
            cx.report.ignored(
                at,
                d.clone(),
                format!(
                    "{word}: address options for the kernel; fo answers ARP/ND for the VIP in XDP"
                ),
            );
        }
        out.push(ip);
    }
    Ok(())
}

/// `notify_*` lines into the router's hooks.
fn hook(
    cx: &mut Cx<'_>,
    v: &Stmt,
    s: &Stmt,
    globals: &Globals,
    hooks: &mut Hooks,
) -> Result<(), ParseError> {
    let at = s.at();
    let d = within(v, s);
    let line = words_escaped(&s.text.string())
        .map_err(|e| ParseError::at(at, format!("{}: {e}", s.keyword())))?;
    let Some(cmd) = line.get(1) else {
        return Err(ParseError::at(
            at,
            format!("{} needs a script", s.keyword()),
        ));
    };
    let argv =
        words_escaped(cmd).map_err(|e| ParseError::at(at, format!("{}: {e}", s.keyword())))?;
    let Some(program) = argv.first().cloned() else {
        return Err(ParseError::at(
            at,
            format!("{} needs a script", s.keyword()),
        ));
    };
    if !program.starts_with('/') {
        cx.report
            .not_translated(at, d, format!("{program}: fo hooks need an absolute path"));
        return Ok(());
    }
    let run_as = match line.get(2) {
        Some(u) => {
            let r = RunAs {
                user: u.clone(),
                group: line.get(3).cloned(),
            };
            check_user(&r, at)?;
            Some(r)
        }
        None => globals.script_user.clone(),
    };
    let first_hook = hooks.master.is_none()
        && hooks.backup.is_none()
        && hooks.fault.is_none()
        && hooks.stop.is_none()
        && hooks.notify.is_none();
    if first_hook {
        hooks.run_as = run_as;
    } else if hooks.run_as != run_as {
        cx.report.not_translated(
            at,
            d,
            "fo runs every hook of a router as one user: this one's user differs from the first hook's",
        );
        return Ok(());
    }
    cx.check_program(at, &d, &program);
    let slot = match s.keyword() {
        "notify_master" => &mut hooks.master,
        "notify_backup" => &mut hooks.backup,
        "notify_fault" => &mut hooks.fault,
        "notify_stop" => &mut hooks.stop,
        _ => &mut hooks.notify,
    };
    if slot.is_some() {
        cx.report.ignored(
            at,
            d,
            "given twice: keepalived keeps the last one; so does the import",
        );
    }
    *slot = Some(argv);
    Ok(())
}

fn sync_group(cx: &mut Cx<'_>, g: &Stmt) {
    cx.report.not_translated(
        g.at(),
        describe(g),
        "fo has no sync groups: each member is its own router and fails over on its own (one member's fault does not take the others along); to move VIPs together, put them in one router once every node runs fo",
    );
    for c in g.children() {
        let d = within(g, c);
        match c.keyword() {
            "group" | "sync_group_tracking_weight" | "global_tracking" => {}
            "track_script" | "track_interface" | "track_file" => cx.report.approximated(
                c.at(),
                d,
                "added to every member's router (keepalived applies the group's tracking to each member)",
            ),
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                cx.report.not_translated(c.at(), d, "no group notifies in fo: give the member routers hooks")
            }
            _ => cx.report.not_translated(c.at(), d, "no equivalent in fo"),
        }
    }
}
