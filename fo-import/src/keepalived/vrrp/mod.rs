//! `global_defs`, `vrrp_script`, `track_file`, `vrrp_instance` and `vrrp_sync_group`
//! into `[node]`, `[[router]]` and `[[check]]`.
//!
//! Parts:
//! - `globals`: `global_defs`;
//! - `scripts`: `vrrp_script` and `track_file` definitions;
//! - `sync_group`: `vrrp_sync_group`;
//! - `state`: what the translation keeps while it reads the config;
//! - `instance`: `vrrp_instance` and its hooks;
//! - `vips`: `virtual_ipaddress`;
//! - `track`: an instance's tracked scripts, interfaces and files;
//! - `user`: the user a script or hook runs as.

mod globals;
mod instance;
mod scripts;
mod state;
mod sync_group;
mod track;
mod user;
mod vips;

pub use user::check_user;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use fo_config::valid_interface_name;

use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, Error, describe, need};
use crate::plan::{Plan, RunAs};
use globals::{Globals, global_defs};
use instance::instance;
use scripts::{track_file_def, vrrp_script};
use state::State;
use sync_group::{Group, sync_group};

/// What `virtual_server` translation needs from the VRRP side.
#[derive(Debug, Default)]
pub struct Vrrp {
    /// Every VIP of an imported router, with the router's name.
    pub vips: HashMap<IpAddr, String>,
    /// `global_defs script_user`.
    pub script_user: Option<RunAs>,
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
