//! `vrrp_sync_group`: what a member instance takes from its group, and the group's report.

use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, describe, within};

#[derive(Debug, Clone)]
pub(super) struct Group<'t> {
    pub(super) stmt: &'t Stmt,
    pub(super) tracking_weight: bool,
}

pub(super) fn sync_group(cx: &mut Cx<'_>, g: &Stmt) {
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
