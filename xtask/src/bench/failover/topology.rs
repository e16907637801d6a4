//! The failover bench's lab: the topology, each system's configuration (fo, fo NAT,
//! keepalived + HAProxy), starting a node, waiting for its state, and failing and
//! restoring node a.

use super::*;

pub(super) fn spec() -> Spec {
    Spec {
        client_sources: test_net(SOURCES.0..=SOURCES.1),
        backends: test_net(BACKENDS),
        ..Spec::pair("fo-bench", VIP, PORT)
    }
}

pub(super) fn fo_router(v: Variant, priority: u8, peer: Ipv4Addr, key: &Path) -> String {
    // `write_config` puts the body after [node]: the sync line belongs to [node].
    let (sync, snat, mode) = if v.nat {
        (
            format!(
                "sync = {{ peers = [\"{peer}\"], key_file = \"{}\" }}\n\n",
                key.display()
            ),
            format!("snat = [\"{SNAT}\"]\n"),
            "nat",
        )
    } else {
        (String::new(), String::new(), "dsr")
    };
    let router = vrrp_router("bench", 51, v.version, priority, v.advert_ms, VIP, peer);
    let service = tcp_service(VIP, PORT, mode, "source-ip", &test_net(BACKENDS), None);
    format!("{sync}{router}{snat}\n{service}")
}

/// keepalived's config matching the fo router: same VRID, priorities, interval, unicast
/// peers, VIP.
pub(super) fn keepalived_conf(
    v: Variant,
    name: &str,
    priority: u8,
    me: Ipv4Addr,
    peer: Ipv4Addr,
) -> String {
    let advert = if v.advert_ms >= 1000 {
        format!("{}", v.advert_ms / 1000)
    } else {
        format!("{}", v.advert_ms as f64 / 1000.0)
    };
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_garp_master_delay 0\n}}\n\
         vrrp_instance VI {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int {advert}\n  version {version}\n  \
         unicast_src_ip {me}\n  unicast_peer {{\n    {peer}\n  }}\n  \
         virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n",
        version = v.version
    )
}

/// HAProxy in TCP mode in front of the same backends as fo's service, `balance source`
/// (fo's `hash = "source-ip"`), no health checks (fo's service has none either).
pub(super) fn haproxy_cfg(dir: &Path, node: &str) -> String {
    let servers: String = BACKENDS
        .iter()
        .enumerate()
        .map(|(n, i)| format!("  server b{} 192.0.2.{i}:{PORT}\n", n + 1))
        .collect();
    format!(
        "global\n  maxconn 8000\n  nbthread 2\n  pidfile {pid}\n\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5m\n  timeout server 5m\n\n\
         frontend fe\n  bind {VIP}:{PORT}\n  default_backend be\n\n\
         backend be\n  balance source\n{servers}",
        pid = dir.join(format!("haproxy-{node}.pid")).display()
    )
}

impl Bench<'_> {
    pub(super) fn configure(&mut self) -> anyhow::Result<()> {
        let v = self.variant;
        let (a, b) = (self.lab.nodes[0].addr, self.lab.nodes[1].addr);
        let prios = [(150u8, a, b), (100u8, b, a)];
        match v.system {
            System::Fo => {
                let key = self.lab.dir.join("sync.key");
                if v.nat {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::write(&key, b"fo-bench-sync-key-0123456789abcdef")?;
                    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
                    let script = root().join("deploy/backend-dsr.sh");
                    for be in &self.lab.backends {
                        be.ns
                            .sh(&format!("sh {} --remove {VIP}", script.display()))?;
                        be.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
                    }
                    self.lab.client.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
                }
                for (i, (prio, _, peer)) in prios.iter().enumerate() {
                    let n = &mut self.lab.nodes[i];
                    if !v.realtime {
                        n.agent_args = vec!["--no-realtime".into()];
                    }
                    n.write_config(XDP_MODE, &fo_router(v, *prio, *peer, &key))?;
                    keep_config(
                        self.out,
                        &n.config,
                        &format!("failover-{}-{}.toml", v.key, n.name),
                    )?;
                }
            }
            System::Baseline => {
                let script = root().join("deploy/backend-dsr.sh");
                for be in &self.lab.backends {
                    be.ns
                        .sh(&format!("sh {} --remove {VIP}", script.display()))?;
                }
                for (i, (prio, me, peer)) in prios.iter().enumerate() {
                    let n = &self.lab.nodes[i];
                    n.ns.sh("sysctl -q -w net.ipv4.ip_nonlocal_bind=1")?;
                    let ka = self.lab.dir.join(format!("keepalived-{}.conf", n.name));
                    std::fs::write(&ka, keepalived_conf(v, &n.name, *prio, *me, *peer))?;
                    keep_config(
                        self.out,
                        &ka,
                        &format!("failover-{}-keepalived-{}.conf", v.key, n.name),
                    )?;
                    let hp = self.lab.dir.join(format!("haproxy-{}.cfg", n.name));
                    std::fs::write(&hp, haproxy_cfg(&self.lab.dir, &n.name))?;
                    keep_config(
                        self.out,
                        &hp,
                        &format!("failover-{}-haproxy-{}.cfg", v.key, n.name),
                    )?;
                }
                self.base = (0..self.lab.nodes.len())
                    .map(|_| BaseProcs::default())
                    .collect();
            }
        }
        Ok(())
    }

    pub(super) fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        match self.variant.system {
            System::Fo => {
                let bins = self.lab.bins.clone();
                self.lab.nodes[i].start(&bins)?;
            }
            System::Baseline => {
                let n = &self.lab.nodes[i];
                let dir = &self.lab.dir;
                let bp = &mut self.base[i];
                bp.runs += 1;
                let run = bp.runs;
                // After a kill -9 the pid files are stale, and keepalived refuses to start
                // while they name a pid.
                let _ = std::fs::remove_file(dir.join(format!("keepalived-{}.pid", n.name)));
                let _ = std::fs::remove_file(dir.join(format!("vrrp-{}.pid", n.name)));
                let mut cmd = n.ns.command("stdbuf");
                cmd.args(["-oL", "-eL", "/usr/sbin/keepalived", "-n", "-l", "-D", "-f"])
                    .arg(dir.join(format!("keepalived-{}.conf", n.name)))
                    .arg("-p")
                    .arg(dir.join(format!("keepalived-{}.pid", n.name)))
                    .arg("-r")
                    .arg(dir.join(format!("vrrp-{}.pid", n.name)));
                // `keepalived a`, logging to `keepalived-a-<run>.log`; likewise HAProxy.
                let spawn = |what: &str, cmd| {
                    Proc::spawn(
                        &format!("{what} {}", n.name),
                        cmd,
                        &dir.join(format!("{what}-{}-{run}.log", n.name)),
                    )
                };
                bp.keepalived = Some(spawn("keepalived", cmd)?);
                let mut cmd = n.ns.command("/usr/sbin/haproxy");
                cmd.arg("-db")
                    .arg("-f")
                    .arg(dir.join(format!("haproxy-{}.cfg", n.name)));
                bp.haproxy = Some(spawn("haproxy", cmd)?);
                let start = Instant::now();
                loop {
                    let s = n.ns.sh(&format!("ss -Hltn 'sport = :{PORT}'"))?;
                    if !s.trim().is_empty() {
                        break;
                    }
                    if let Some(p) = bp.haproxy.as_mut()
                        && let Some(st) = p.exited()
                    {
                        bail!("haproxy on {} exited ({st}):\n{}", n.name, p.tail(20));
                    }
                    if start.elapsed() > Duration::from_secs(10) {
                        bail!("haproxy on {} does not listen on :{PORT}", n.name);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(())
    }

    /// Wait for node `i` to enter `state` (`master`, `backup`: a transition logged at or
    /// after `since`). Returns when it did: fo, a master's log line's own timestamp (else
    /// the line's arrival); keepalived, the line's arrival.
    pub(super) fn wait_state(
        &mut self,
        i: usize,
        state: &str,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        match self.variant.system {
            System::Fo => {
                let name = self.lab.nodes[i].name.clone();
                let arrived = self.lab.nodes[i].wait_state_after(state, since, timeout)?;
                if state != "master" {
                    return Ok(arrived);
                }
                let logged = crate::bench::takeover::master_line(&self.lab, &name, since)
                    .and_then(|(_, l)| log_time(&l));
                Ok(logged.unwrap_or(arrived))
            }
            System::Baseline => {
                let line = format!("Entering {} STATE", state.to_uppercase());
                self.wait_ka(i, &line, since, timeout)
            }
        }
    }

    pub(super) fn wait_ka(
        &mut self,
        i: usize,
        what: &str,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        let name = self.lab.nodes[i].name.clone();
        let p = self.base[i]
            .keepalived
            .as_mut()
            .with_context(|| format!("keepalived {name} is not running"))?;
        let (at, _) = p
            .wait_for_line_since(since, timeout, |l| l.contains(what))
            .with_context(|| format!("keepalived {name}: no `{what}`"))?;
        Ok(at)
    }

    /// Fail node a; returns the instant just before.
    pub(super) fn fail(&mut self, f: Failure) -> anyhow::Result<SystemTime> {
        let ns = self.lab.nodes[0].ns.clone();
        match f {
            Failure::Kill => {
                let pids = netns::sh(&format!("ip netns pids {}", ns.name))?;
                // Children (keepalived's VRRP process) first: they would otherwise get
                // their parent-death signal and shut down cleanly.
                let mut pids: Vec<&str> = pids.split_whitespace().collect();
                pids.reverse();
                let at = SystemTime::now();
                let ok = Command::new("kill")
                    .arg("-9")
                    .args(&pids)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok || pids.is_empty() {
                    bail!("kill -9 {pids:?} in {} failed", ns.name);
                }
                // Reap.
                if let Some(p) = self.lab.nodes[0].runs.last_mut() {
                    let _ = p.wait(Duration::from_secs(5));
                }
                if let Some(bp) = self.base.get_mut(0) {
                    bp.keepalived.take();
                    bp.haproxy.take();
                }
                Ok(at)
            }
            Failure::LinkDown => {
                let at = SystemTime::now();
                ns.sh("ip link set eth0 down")?;
                Ok(at)
            }
            Failure::Planned => {
                let at = SystemTime::now();
                self.hand_over(true)?;
                Ok(at)
            }
        }
    }

    /// The planned move away from a (`away`) or back to it: fo `demote`/`resume bench`;
    /// keepalived, a's priority set below b's (50) or back to 150, and SIGHUP.
    fn hand_over(&mut self, away: bool) -> anyhow::Result<()> {
        match self.variant.system {
            System::Fo => {
                let cmd = if away { "demote" } else { "resume" };
                self.lab.nodes[0].ctl(&self.lab.bins, &[cmd, "bench"])
            }
            System::Baseline => {
                let (a, b) = (&self.lab.nodes[0], &self.lab.nodes[1]);
                let prio = if away { 50 } else { 150 };
                let ka = self.lab.dir.join(format!("keepalived-{}.conf", a.name));
                let conf = keepalived_conf(self.variant, &a.name, prio, a.addr, b.addr);
                std::fs::write(&ka, conf)?;
                self.base[0]
                    .keepalived
                    .as_ref()
                    .context("keepalived a is not running")?
                    .signal("HUP")
            }
        }
    }

    /// Bring node a back after `f`; wait until it is master again and b backup.
    /// Returns when a became master.
    pub(super) fn restore(&mut self, f: Failure) -> anyhow::Result<SystemTime> {
        let t = SystemTime::now();
        match f {
            Failure::Kill => {
                if self.variant.system == System::Baseline {
                    // keepalived's kill -9 left the VIP on a's interface; a restarted
                    // keepalived would find it there (see docs/lab.md).
                    let _ = self.lab.nodes[0]
                        .ns
                        .sh(&format!("ip addr del {VIP}/32 dev eth0"));
                }
                self.start_node(0)?;
            }
            Failure::LinkDown => {
                self.lab.nodes[0].ns.sh("ip link set eth0 up")?;
            }
            Failure::Planned => self.hand_over(false)?,
        }
        let back = self
            .wait_state(0, "master", t, Duration::from_secs(20))
            .context("node a did not take the VIP back")?;
        self.wait_state(1, "backup", t, Duration::from_secs(10))
            .context("node b did not go back to backup")?;
        Ok(back)
    }
}
