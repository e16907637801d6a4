//! `vrrp_instance` into a `[[router]]`, with its `notify_*` hooks.

use std::net::IpAddr;
use std::time::Duration;

use super::globals::{Globals, MAX_TIMER};
use super::state::State;
use super::track::{TrackedAt, track, track_block};
use super::user::check_user;
use super::vips::vips;
use crate::ParseError;
use crate::keepalived::lex::words_escaped;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{
    Cx, Error, describe, fo_name, int, need, seconds, unicast, unique, within,
};
use crate::plan::{Hooks, Plan, Router, RunAs};
use crate::source::Loc;

/// One VRRP instance into a router, or `None` when it is not imported.
pub(super) fn instance(
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

pub(super) fn node_garp<T: PartialEq + Copy>(
    cx: &mut Cx<'_>,
    s: &Stmt,
    slot: &mut Option<T>,
    v: T,
) {
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

/// `notify_*` lines into the router's hooks.
pub(super) fn hook(
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
