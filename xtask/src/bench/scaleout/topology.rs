//! The scale-out bench's lab: BIRD configs for the nodes and the ECMP router, the BIRD
//! processes, and the router, client, nodes and backends wired together.

use super::*;

pub(super) fn node_bird(addr: Ipv4Addr, log: &Path) -> String {
    format!(
        "log \"{log}\" all;\nrouter id {addr};\nprotocol device {{}}\n{BFD}\n\
         protocol static fo_ingest {{ disabled; ipv4; route {VIP}/32 blackhole; }}\n\
         protocol bgp upstream {{ local {addr} as 65001; neighbor {ROUTER} as 65000; {TIMERS}\n\
           ipv4 {{ import none; export where proto = \"fo_ingest\"; }}; }}\n",
        log = log.display()
    )
}

pub(super) fn router_bird(log: &Path) -> String {
    let mut s = format!(
        "log \"{log}\" all;\nrouter id {ROUTER};\nprotocol device {{}}\n\
         protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n{BFD}\n\
         template bgp lbnode {{ local {ROUTER} as 65000; {TIMERS} ipv4 {{ import all; export none; }}; }}\n",
        log = log.display()
    );
    for (name, addr) in NODES {
        s.push_str(&format!(
            "protocol bgp {name} from lbnode {{ neighbor {addr} as 65001; }}\n"
        ));
    }
    s
}

/// A BIRD in the foreground in `ns`.
pub(super) struct Bird {
    pub(super) proc: Option<Proc>,
    pub(super) config: std::path::PathBuf,
    pub(super) socket: std::path::PathBuf,
    pub(super) name: String,
}

impl Bird {
    pub(super) fn new(dir: &Path, name: &str, config: &str) -> anyhow::Result<Bird> {
        let path = dir.join(format!("bird-{name}.conf"));
        std::fs::write(&path, config).context("write a BIRD config")?;
        Ok(Bird {
            proc: None,
            config: path,
            socket: dir.join(format!("bird-{name}.ctl")),
            name: name.into(),
        })
    }

    pub(super) fn start(&mut self, ns: &Netns, dir: &Path) -> anyhow::Result<()> {
        let mut cmd = ns.command("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&self.config)
            .arg("-s")
            .arg(&self.socket)
            .arg("-P")
            .arg(dir.join(format!("bird-{}.pid", self.name)));
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        self.proc = Some(Proc::spawn(
            &format!("bird {}", self.name),
            cmd,
            &dir.join(format!("bird-{}-{n}.out", self.name)),
        )?);
        let start = Instant::now();
        while !self.birdc("show status").contains("Daemon is up") {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("bird {} not up after 10 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub(super) fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    pub(super) fn birdc(&self, cmd: &str) -> String {
        std::process::Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(cmd.split_whitespace())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

pub(super) struct ScaleoutLab {
    pub(super) lab: Lab,
    pub(super) router: Netns,
    pub(super) router_bird: Bird,
    pub(super) birds: Vec<Bird>,
}

impl ScaleoutLab {
    pub(super) fn nexthops(&self) -> Vec<Ipv4Addr> {
        let text = self
            .router
            .sh(&format!("ip -4 route show {VIP}/32"))
            .unwrap_or_default();
        let mut hops: Vec<Ipv4Addr> = Vec::new();
        let mut w = text.split_whitespace();
        while let Some(x) = w.next() {
            if x == "via"
                && let Some(h) = w.next().and_then(|h| h.parse().ok())
            {
                hops.push(h);
            }
        }
        hops.sort();
        hops
    }

    /// Wait until the router routes the VIP through exactly `nodes` (indices).
    pub(super) fn wait_nexthops(
        &self,
        nodes: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let mut want: Vec<Ipv4Addr> = nodes.iter().map(|&i| NODES[i].1).collect();
        want.sort();
        let start = Instant::now();
        loop {
            if self.nexthops() == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!(
                    "the router's next hops for {VIP} are {:?}, expected {want:?} (after {timeout:?})\n{}",
                    self.nexthops(),
                    self.router_bird.birdc("show protocols")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Packets the switch sent to each node so far (its port's TX counter).
    pub(super) fn delivered(&self) -> Vec<u64> {
        (0..NODES.len())
            .map(|i| {
                self.lab
                    .switch
                    .sh(&format!("ip -s -j link show p{}", i + 1))
                    .ok()
                    .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                    .and_then(|v| v[0]["stats64"]["tx"]["packets"].as_u64())
                    .unwrap_or(0)
            })
            .collect()
    }

    pub(super) fn ctl(&self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        self.lab.nodes[i].ctl(&self.lab.bins, args)
    }

    /// Start node `i`'s BIRD and agent.
    pub(super) fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let dir = self.lab.dir.clone();
        let ns = self.lab.nodes[i].ns.clone();
        self.birds[i].start(&ns, &dir)?;
        let bins = self.lab.bins.clone();
        self.lab.nodes[i].start(&bins)?;
        Ok(())
    }
}
