//! One fo node alone on a segment, for the tests of what an operator watches (the
//! journal, `/metrics`): router `wazuh` (VRRP, 100 ms adverts, its peer absent, so the
//! node takes over by Master_Down_Timer soon after it starts) with a `master` hook the
//! test writes, and service `events` with one DSR backend whose check fails (the
//! backend listens on the VIP only, the check asks its own address). Torn down on
//! drop.

use std::path::PathBuf;
use std::process::Command;

use crate::netns::{Netns, Segment};
use crate::pair::Backend;

pub const VIP: &str = "192.0.2.100";
pub const NODE: &str = "192.0.2.2";
pub const METRICS_PORT: u16 = 9469;

pub struct Lone {
    // Drop order: the backend's sink, the node's namespace, the segment.
    pub backend: Backend,
    pub ns: Netns,
    pub segment: Segment,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub hook: PathBuf,
}

impl Lone {
    /// The lab, with `master.sh` running `hook_body` (a shell script body) and
    /// `node_extra` added to `[node]`.
    pub fn new(hook_body: &str, node_extra: &str) -> Lone {
        let (tag, dir) = crate::temp::new_dir("lone");
        let segment = Segment::new();
        let ns = Netns::new("lone");
        segment.plug(&ns, "eth0", &format!("{NODE}/24"));
        let backend = crate::pair::Pair::backend(&segment, &dir, 1);
        let hook = dir.join("master.sh");
        std::fs::write(&hook, format!("#!/bin/sh\n{hook_body}\n")).expect("hook");
        std::process::Command::new("chmod")
            .arg("755")
            .arg(&hook)
            .status()
            .expect("chmod");
        let lone = Lone {
            config: dir.join("fo.toml"),
            socket: dir.join("fo.sock"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/fo-lone-{tag}")),
            hook,
            backend,
            ns,
            segment,
            dir,
        };
        std::fs::write(&lone.config, lone.config_text(node_extra)).expect("config");
        lone
    }

    pub fn config_text(&self, node_extra: &str) -> String {
        format!(
            r#"{node}
{node_extra}

[[router]]
name = "wazuh"
vrid = 51
priority = 150
advert_interval = "100ms"
vips = ["{VIP}"]
peers = ["192.0.2.3"]
hooks = {{ master = "{hook}", timeout = "5s" }}

[[service]]
name = "events"
vip = "{VIP}"
port = 1514
check = {{ kind = "tcp", interval = "200ms", timeout = "100ms", rise = 1, fall = 1 }}
backends = [{{ address = "{backend}" }}]
"#,
            node = crate::node_table(&self.pin_dir, &self.socket, METRICS_PORT),
            hook = self.hook.display(),
            backend = self.backend.addr,
        )
    }

    /// `fo-agent run --config …` inside the node's namespace, run by `wrap` (e.g.
    /// [`crate::journal::Journal::wrap`]) or directly.
    pub fn agent_command(&self, wrap: Option<&dyn Fn(&std::path::Path) -> Command>) -> Command {
        let mut c = match wrap {
            Some(w) => w(std::path::Path::new("nsenter")),
            None => Command::new("nsenter"),
        };
        c.arg(format!("--net={}", self.ns.path()))
            .arg("--")
            .arg(crate::agent_bin())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("FO_LOG", "info");
        c
    }

    /// `fo-agent ARGS --socket …`: (success, stdout+stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        fo_lab::kit::agent::ctl(&crate::agent_bin(), &self.socket, args).expect("run fo-agent")
    }

    /// `fo-agent status --json`, parsed (`None` while the agent does not answer).
    pub fn status(&self) -> Option<serde_json::Value> {
        fo_lab::kit::agent::status(&crate::agent_bin(), &self.socket).ok()
    }

    /// GET /metrics from inside the namespace with `accept` (if any): (head, body).
    pub fn metrics(&self, accept: Option<&str>) -> (String, String) {
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        let raw = self.ns.run(move || {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT))
                .expect("connect to metrics");
            s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n").as_bytes())
                .expect("request");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        });
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (head.to_string(), body.to_string())
    }
}

impl Drop for Lone {
    fn drop(&mut self) {
        // The agent runs in the namespace and dies with it (Netns's drop); its pins
        // stay unless removed.
        for p in crate::netns::sh(&format!(
            "ip netns pids {} 2>/dev/null || true",
            self.ns.name
        ))
        .split_whitespace()
        {
            let _ = Command::new("kill").args(["-9", p]).status();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = fo_agent::dataplane::remove_all_pins(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
