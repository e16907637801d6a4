//! The data plane end to end, in network namespaces: a client, an LB node running
//! the real `fo-agent`, and three DSR backends on one bridge. The agent attaches the
//! compiled XDP program (native mode with the veth workarounds of docs/lab.md, and generic
//! mode), owns the VIP, and forwards 300 TCP connections; then it is killed with
//! SIGKILL (forwarding goes on: the data plane is pinned) and restarted (it adopts
//! the pinned program and maps instead of reloading them); then restarted over pins
//! left by another build (it swaps its program in and keeps every map); then stopped
//! and its data plane removed with `fo-agent detach`.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use fo_agent::dataplane::{Attach, Dataplane, LoadOptions, XdpAttachMode, remove_all_pins};
use fo_lab::kit::Proc;
use fo_tests::id_server::IdServer;
use fo_tests::netns::{Netns, Segment, unique_tag, wait_for};
use fo_tests::pins;

const VIP: &str = "192.0.2.100";
const PORT: u16 = 1514;

struct Lab {
    // Field order is drop order: processes and servers before their namespaces.
    agent: Option<Proc>,
    _servers: Vec<IdServer>,
    peer_xdp: Option<(Dataplane, PathBuf)>,
    client: Netns,
    lb: Netns,
    _backends: Vec<Netns>,
    _segment: Segment,
    dir: tempdir::Dir,
    pin_dir: PathBuf,
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("fo-test-{tag}"));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill9_agent();
        if let Some((dp, dir)) = self.peer_xdp.take() {
            drop(dp);
            let _ = remove_all_pins(&dir);
        }
        let _ = remove_all_pins(&self.pin_dir);
    }
}

impl Lab {
    fn new(mode: XdpAttachMode) -> Lab {
        let tag = unique_tag();
        let segment = Segment::new();
        let client = Netns::new("cl");
        let lb = Netns::new("lb");
        segment.plug(&client, "eth0", "192.0.2.10/24");
        let lb_port = segment.plug(&lb, "eth0", "192.0.2.2/24");
        let script = fo_tests::workspace_root().join("deploy/backend-dsr.sh");
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        for i in 1..=3u8 {
            let b = Netns::new(&format!("b{i}"));
            segment.plug(&b, "eth0", &format!("192.0.2.2{i}/24"));
            b.sh(&format!("sh {} {VIP}", script.display()));
            servers.push(IdServer::start(&b, i, VIP, PORT));
            backends.push(b);
        }
        let mut peer_xdp = None;
        if mode == XdpAttachMode::Native {
            // docs/lab.md: XDP_TX out of a native-mode veth is dropped unless the peer veth
            // has an XDP program too, and the client's TX checksum offload must be off.
            let dir = PathBuf::from(format!("/sys/fs/bpf/fo-peer-{tag}"));
            let opts = LoadOptions {
                pin_dir: dir.clone(),
                maglev_size: 251,
                max_services: 1,
                max_backends: 1,
                flow_table_size: 16,
                nat_table_size: 16,
            };
            let attach = Attach::Interface {
                name: lb_port.clone(),
                mode: XdpAttachMode::Native,
            };
            let dp = segment
                .switch
                .run(move || Dataplane::open(&opts, &attach).map_err(|e| e.to_string()));
            peer_xdp = Some((dp.expect("XDP pass program on the switch port"), dir));
            client.sh("ethtool -K eth0 tx off >/dev/null");
        }
        let dir = tempdir::Dir::new(&tag);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-it-{tag}"));
        let mode_name = if mode == XdpAttachMode::Native {
            "native"
        } else {
            "generic"
        };
        let config = format!(
            r#"[node]
interface = "eth0"
xdp_mode = "{mode_name}"
bpf_dir = "{pin}"
control_socket = "{sock}"
state_file = "{sock}.state.json"
flow_table_size = 65536

[[router]]
name = "lab"
ownership = "static"
vips = ["{VIP}"]

[[service]]
vip = "{VIP}"
port = {PORT}
hash = "5-tuple"
backends = [{{ address = "192.0.2.21" }}, {{ address = "192.0.2.22" }}, {{ address = "192.0.2.23" }}]
"#,
            pin = pin_dir.display(),
            sock = dir.0.join("control.sock").display(),
        );
        std::fs::write(dir.0.join("fo.toml"), config).expect("write config");
        Lab {
            agent: None,
            _servers: servers,
            peer_xdp,
            client,
            lb,
            _backends: backends,
            _segment: segment,
            dir,
            pin_dir,
        }
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.0.join(format!("agent-{n}.log"))
    }

    /// Start agent run `n` (logging to its own file) and wait for "running" in its log.
    fn start_agent(&mut self, n: usize) {
        let mut cmd = self
            .lb
            .command(fo_tests::agent_bin().to_str().expect("utf-8 path"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.0.join("fo.toml"));
        let mut agent =
            Proc::spawn_attached("fo-agent", cmd, &self.log_path(n)).expect("spawn fo-agent");
        agent
            .wait_for_line(Duration::from_secs(30), |l| l.contains("running"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.agent = Some(agent);
    }

    /// SIGKILL the agent: no clean-up runs, the data plane stays pinned.
    fn kill9_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
    }

    fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// `fo-agent detach --config …` on the LB: (success, stdout and stderr together).
    fn detach(&self) -> (bool, String) {
        let out = self.lb.try_sh(&format!(
            "'{}' detach --config '{}' 2>&1",
            fo_tests::agent_bin().display(),
            self.dir.0.join("fo.toml").display()
        ));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The XDP program id attached to the LB's eth0.
    fn xdp_prog_id(&self) -> Option<u32> {
        let out = self.lb.sh("ip -d link show dev eth0");
        let i = out.find("prog/xdp id ")?;
        out[i + 12..].split_whitespace().next()?.parse().ok()
    }

    /// Open `n` connections to VIP:1514 from the client: every one must be answered by a
    /// backend (`when` says at which stage of the scenario).
    fn all_answered(&self, n: usize, when: &str) {
        let counts = self.connect(n);
        assert_eq!(
            counts[1..].iter().sum::<usize>(),
            n,
            "connections {when}: {counts:?}"
        );
    }

    /// Open `n` connections to VIP:1514 from the client; count the answers per backend.
    fn connect(&self, n: usize) -> [usize; 4] {
        self.client.run(move || {
            let addr = SocketAddr::new(VIP.parse::<IpAddr>().expect("VIP"), PORT);
            let mut per_backend = [0usize; 4];
            for i in 0..n {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connection {i} of {n} to the VIP failed: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .expect("timeout");
                let mut id = [0u8; 1];
                s.read_exact(&mut id)
                    .unwrap_or_else(|e| panic!("connection {i}: no answer from a backend: {e}"));
                per_backend[usize::from(id[0]).min(3)] += 1;
            }
            per_backend
        })
    }
}

fn scenario(mode: XdpAttachMode) {
    let mut lab = Lab::new(mode);
    lab.start_agent(1);
    let prog = lab.xdp_prog_id().unwrap_or_else(|| {
        panic!(
            "no XDP program on the LB's eth0 after start:\n{}",
            lab.log(1)
        )
    });

    let counts = lab.connect(300);
    for (b, &c) in counts.iter().enumerate().skip(1) {
        assert!(
            (70..=130).contains(&c),
            "backend {b} got {c} of 300 connections, expected 100 ± 30 ({counts:?})"
        );
    }
    let lb_mac = lab.lb.mac("eth0");
    let vip_mac = lab.client.neighbour(VIP.parse().expect("VIP"));
    assert_eq!(
        vip_mac,
        Some(lb_mac),
        "the client's neighbour entry for the VIP must carry the LB's MAC"
    );

    // SIGKILL: no clean-up runs; the pinned program keeps forwarding.
    lab.kill9_agent();
    lab.all_answered(60, "after kill -9");
    assert_eq!(
        lab.xdp_prog_id(),
        Some(prog),
        "the program must stay attached after the agent died"
    );

    // A restarted agent adopts the pinned program and maps.
    lab.start_agent(2);
    let log = lab.log(2);
    assert!(
        log.contains("adopted the pinned XDP program"),
        "the restarted agent did not adopt the pinned data plane:\n{log}"
    );
    assert_eq!(
        lab.xdp_prog_id(),
        Some(prog),
        "the restarted agent replaced the program instead of adopting it"
    );
    lab.all_answered(60, "after restart");

    // An upgrade: the pins say another build of the XDP object runs. The restarted
    // agent keeps every map and swaps this build's program into the pinned link.
    let flows = pins::flows(&lab.pin_dir);
    let map_ids = |dir: &PathBuf| ["FLOWS", "VIPS", "BACKENDS"].map(|m| pins::map_id(dir, m));
    let maps_before = map_ids(&lab.pin_dir);
    lab.kill9_agent();
    pins::set_build(&lab.pin_dir, [0xee; 16]);
    lab.start_agent(3);
    let log = lab.log(3);
    assert!(
        log.contains("replaced the pinned XDP program with this build's in place"),
        "the agent did not upgrade the pinned program in place:\n{log}"
    );
    let upgraded = lab.xdp_prog_id();
    assert!(
        upgraded.is_some() && upgraded != Some(prog),
        "the upgraded program must be a new one on the interface (was {prog}, now {upgraded:?})"
    );
    assert_eq!(
        map_ids(&lab.pin_dir),
        maps_before,
        "the upgrade must keep the maps (FLOWS, VIPS, BACKENDS ids)"
    );
    let kept = pins::flows(&lab.pin_dir);
    assert!(
        flows > 0 && kept >= flows,
        "the flow table must survive the upgrade: {flows} entries before, {kept} after"
    );
    assert_eq!(
        pins::info(&lab.pin_dir).build,
        fo_agent::dataplane::build_id(),
        "INFO must name this build after the upgrade"
    );
    lab.all_answered(60, "after the upgrade");

    // The next start finds this build's program and adopts it.
    lab.kill9_agent();
    lab.start_agent(4);
    assert!(
        lab.log(4).contains("adopted the pinned XDP program"),
        "an agent of the same build must adopt the upgraded program:\n{}",
        lab.log(4)
    );
    assert_eq!(lab.xdp_prog_id(), upgraded);

    // Removing fo (`apt remove` runs `fo-agent detach` after the stop): refused while
    // the agent runs; after a clean stop (which keeps the pins) it takes the program
    // off eth0 and removes the pins; a second run has nothing to do.
    let (ok, said) = lab.detach();
    assert!(
        !ok && said.contains("an agent is running"),
        "detach must refuse while the agent runs: {said}"
    );
    assert_eq!(
        lab.xdp_prog_id(),
        upgraded,
        "a refused detach changes nothing"
    );
    let mut agent = lab.agent.take().expect("agent");
    agent.signal("TERM").expect("SIGTERM the agent");
    let exited = wait_for(Duration::from_secs(30), || agent.exited());
    assert!(exited.is_some(), "the agent did not stop on SIGTERM");
    assert_eq!(
        lab.xdp_prog_id(),
        upgraded,
        "a clean stop keeps the data plane pinned"
    );
    let (ok, said) = lab.detach();
    assert!(
        ok && said.contains("the XDP program left eth0"),
        "detach after the stop: {said}"
    );
    assert_eq!(
        lab.xdp_prog_id(),
        None,
        "detach must take the program off eth0"
    );
    assert!(
        !lab.pin_dir.exists(),
        "detach must remove {}",
        lab.pin_dir.display()
    );
    let (ok, said) = lab.detach();
    assert!(
        ok && said.contains("nothing to do"),
        "a second detach: {said}"
    );
}

#[test]
fn dsr_native_mode() {
    scenario(XdpAttachMode::Native);
}

#[test]
fn dsr_generic_mode() {
    scenario(XdpAttachMode::Generic);
}
