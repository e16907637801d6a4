//! `global_defs`: node-wide settings into `[node]`, and keepalived's timer limit.

use std::time::Duration;

use super::user::user_of;
use crate::ParseError;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, int, seconds, within};
use crate::plan::{Plan, RunAs};

/// keepalived's limits.
pub(super) const MAX_TIMER: Duration = Duration::from_secs(1_000_000);

#[derive(Debug, Default)]
pub(super) struct Globals {
    pub(super) version: u8,
    pub(super) script_user: Option<RunAs>,
}

pub(super) fn global_defs(
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
