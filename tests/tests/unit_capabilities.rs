//! The capabilities of deploy/fo-agent.service, each one shown to be needed, and the
//! unit's reload command failing on a refused reload.
//!
//! The agent runs in a network namespace the way the unit runs it: as root with only
//! the unit's `CapabilityBoundingSet=` (read from the unit file), no inheritable or
//! ambient capabilities, `NoNewPrivileges`, and the unit's supplementary group (played
//! by "nogroup", which every Debian machine has, as the config's `control_group`), all
//! set with setpriv (util-linux). The config uses what the capabilities are for: XDP,
//! VRRP with authenticated adverts, a witness (ICMP), a tracked exec check, a master
//! hook, a TCP service check, an https check with a CA and a client key (root's files:
//! no CAP_DAC_* needed), metrics and a control socket for a group.
//!
//! - With the unit's set the agent runs, becomes master, runs its hook, answers
//!   `status`, and `fo-agent reload` (the unit's ExecReload=) exits 0 on a good config
//!   and non-zero on a refused one (so `systemctl reload` fails).
//! - Without any one capability of the set, the agent does not start, and fails at the
//!   step that capability is for, with the kernel's refusal (`WITHOUT`).
//!
//! Run: `cargo test -p fo-tests --test unit_capabilities -- --test-threads=1` (root).

use std::path::PathBuf;
use std::time::Duration;

use fo_tests::netns::{ChildGuard, Netns, Segment, unique_tag, wait_for};

/// Debian's "nogroup": stands in for the unit's SupplementaryGroups=fo.
const GROUP_ID: u32 = 65534;
const GROUP: &str = "nogroup";

/// `KEY=` values of the unit (every occurrence, split on white space).
fn unit_values(key: &str) -> Vec<String> {
    let unit = fo_tests::workspace_root().join("deploy/fo-agent.service");
    let text = std::fs::read_to_string(&unit).expect("deploy/fo-agent.service");
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

struct Lab {
    _segment: Segment,
    ns: Netns,
    _witness: Netns,
    dir: PathBuf,
    ifname: String,
    tag: String,
    /// The https check's CA, client certificate and key (root's, key 0600).
    pki: fo_tests::pki::Pki,
}

impl Lab {
    fn new() -> Lab {
        let segment = Segment::new();
        let ns = Netns::new("cap");
        let witness = Netns::new("wit");
        let tag = unique_tag();
        let ifname = format!("cap{tag}");
        segment.plug(&ns, &ifname, "192.0.2.11/24");
        segment.plug(&witness, "eth0", "192.0.2.1/24");
        let dir = std::env::temp_dir().join(format!("fo-unit-caps-{tag}"));
        std::fs::create_dir_all(dir.join("hooks")).expect("temp dir");
        Lab {
            _segment: segment,
            ns,
            _witness: witness,
            dir,
            ifname,
            tag,
            pki: fo_tests::pki::Pki::new("192.0.2.1"),
        }
    }

    /// Write the config of run `run` (its own pin directory) and the files it names.
    fn config(&self, run: &str, priority: u32) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let d = &self.dir;
        let hook = d.join("hooks/master.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$FO_STATE\" >> {}/hook.out\n",
                d.display()
            ),
        )
        .expect("hook");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let key = d.join("vrrp.key");
        std::fs::write(&key, [0x5a; 32]).expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let pins = PathBuf::from(format!("/sys/fs/bpf/fo-caps-{}-{run}", self.tag));
        let config = d.join(format!("{run}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"[node]
interface = "{ifname}"
xdp_mode = "generic"
bpf_dir = "{pins}"
control_socket = "{d}/{run}.sock"
state_file = "{d}/{run}.state.json"
metrics = "127.0.0.1:9469"
control_group = "{GROUP}"

[[router]]
name = "web"
vrid = 51
priority = {priority}
advert_interval = "100ms"
vips = ["192.0.2.100"]
auth_key_file = "{key}"
witness = {{ address = "192.0.2.1" }}
track = [{{ check = "alive", weight = -10 }}]
hooks = {{ master = "{hook}" }}

[[check]]
name = "alive"
kind = "exec"
command = ["/bin/true"]

[[check]]
name = "tls"
kind = "https"
address = "192.0.2.1"
ca = "{ca}"
cert = "{cert}"
key = "{tls_key}"
interval = "500ms"
timeout = "200ms"

[[service]]
vip = "192.0.2.100"
port = 80
check = {{ kind = "tcp", interval = "500ms", timeout = "200ms" }}
backends = [{{ address = "192.0.2.1" }}]
"#,
                ifname = self.ifname,
                pins = pins.display(),
                d = d.display(),
                key = key.display(),
                hook = hook.display(),
                ca = self.pki.file("ca.pem"),
                cert = self.pki.file("client.pem"),
                tls_key = self.pki.file("client.key"),
            ),
        )
        .expect("config");
        (config, pins)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running (or failed) agent with `caps` as its bounding set.
struct Agent {
    guard: ChildGuard,
    log: PathBuf,
    pins: PathBuf,
    socket: PathBuf,
}

impl Agent {
    fn start(lab: &Lab, run: &str, caps: &[String]) -> Agent {
        let (config, pins) = lab.config(run, 100);
        let set: Vec<String> = caps
            .iter()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect();
        let mut cmd = lab.ns.command("setpriv");
        cmd.arg("--inh-caps=-all")
            .arg("--ambient-caps=-all")
            .arg(format!("--bounding-set=-all,{}", set.join(",")))
            .arg(format!("--groups={GROUP_ID}"))
            .arg("--no-new-privs")
            .arg("--")
            .arg(fo_tests::agent_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("NO_COLOR", "1");
        let log = lab.dir.join(format!("{run}.log"));
        let mut guard = ChildGuard::spawn(&format!("fo-agent ({run})"), cmd);
        if let Some(child) = guard.child.as_mut() {
            let mut err = child.stderr.take().expect("stderr");
            let mut file = std::fs::File::create(&log).expect("log");
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut err, &mut file);
            });
        }
        Agent {
            guard,
            log,
            pins,
            socket: lab.dir.join(format!("{run}.sock")),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ok once the agent logs "running"; Err(its log) if it exits first.
    fn outcome(&mut self) -> Result<(), String> {
        let log = self.log.clone();
        let seen = wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(" running") {
                return Some(Ok(()));
            }
            self.guard.exited().map(|_| {
                // Let the log thread write the last lines.
                std::thread::sleep(Duration::from_millis(100));
                Err(std::fs::read_to_string(&log).unwrap_or_default())
            })
        });
        seen.unwrap_or_else(|| {
            Err(format!(
                "neither running nor exited after 30 s:\n{}",
                self.log()
            ))
        })
    }

    fn ctl(&self, args: &[&str]) -> (bool, String) {
        fo_lab::kit::agent::ctl(&fo_tests::agent_bin(), &self.socket, args).expect("run fo-agent")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.guard.kill_and_collect();
        let _ = fo_agent::dataplane::remove_all_pins(&self.pins);
    }
}

/// What the agent says when it starts without each capability of the unit: the step
/// that needs it and the kernel's refusal. Every capability of the unit's set has an
/// entry, and no other.
const WITHOUT: &[(&str, &[&str])] = &[
    (
        "CAP_BPF",
        &[
            "opening the data plane",
            "failed to create map",
            "Operation not permitted",
        ],
    ),
    // Without CAP_PERFMON the verifier refuses pointer arithmetic on packet pointers
    // (no `allow_ptr_leaks`, no `bypass_spec_v1`); which of its rules it meets first
    // depends on the object's instruction order: "pointer arithmetic ... prohibited for
    // !root" or, since the object expands memset and memmove inline, "pointer -=
    // pointer prohibited". Alternatives are separated by " | ".
    (
        "CAP_PERFMON",
        &[
            "the kernel refused the XDP program (BPF_PROG_LOAD: Permission denied",
            "prohibited for !root | pointer -= pointer prohibited",
        ],
    ),
    (
        "CAP_NET_ADMIN",
        &[
            "the kernel refused the XDP program (BPF_PROG_LOAD: Operation not permitted (os error 1)) before the verifier ran",
        ],
    ),
    (
        "CAP_NET_RAW",
        &[
            "starting VRRP: AF_PACKET socket",
            "(needs CAP_NET_RAW): Operation not permitted",
        ],
    ),
];

/// The last error line of a failed start, with the verifier's reason when it has one.
fn error_of(log: &str) -> String {
    let error = log
        .lines()
        .rev()
        .find(|l| l.contains("ERROR") || l.starts_with("fo-agent:"))
        .unwrap_or("(no error line)")
        .trim();
    match log
        .lines()
        .find(|l| l.contains("prohibited") || l.contains("!root"))
    {
        Some(why) => format!("{error} [{}]", why.trim()),
        None => error.to_owned(),
    }
}

#[test]
fn every_capability_of_the_unit_is_needed_and_a_refused_reload_fails() {
    fo_tests::require_root();
    let caps = unit_values("CapabilityBoundingSet");
    assert!(
        !caps.is_empty(),
        "no CapabilityBoundingSet= in deploy/fo-agent.service"
    );
    assert_eq!(
        unit_values("SupplementaryGroups"),
        ["fo"],
        "the test plays the unit's supplementary group fo with {GROUP}"
    );
    assert_eq!(
        unit_values("ExecReload"),
        ["/usr/sbin/fo-agent", "reload"],
        "the unit's ExecReload= must be what this test runs"
    );
    let lab = Lab::new();

    // The unit's set: everything works.
    let mut agent = Agent::start(&lab, "all", &caps);
    if let Err(log) = agent.outcome() {
        panic!("with the unit's capabilities {caps:?} the agent did not start:\n{log}");
    }
    let master = wait_for(Duration::from_secs(10), || {
        let (ok, s) = agent.ctl(&["status", "--json"]);
        (ok && s.contains("\"master\"")).then_some(())
    });
    assert!(
        master.is_some(),
        "the agent never became master:\n{}",
        agent.log()
    );
    // The https check's files (root's, the key 0600) are read without CAP_DAC_OVERRIDE
    // or CAP_DAC_READ_SEARCH: the check probes (nothing listens: refused), it does not
    // fail on its files. (Files of other users are refused by `fo-agent check` anyway.)
    let probed = wait_for(Duration::from_secs(10), || {
        let (ok, s) = agent.ctl(&["status", "--json"]);
        let st: serde_json::Value = serde_json::from_str(&s).ok().filter(|_| ok)?;
        let detail = st["checks"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "tls")?["detail"]
            .as_str()?
            .to_owned();
        (!detail.is_empty()).then_some(detail)
    });
    assert!(
        probed
            .as_deref()
            .is_some_and(|d| d.contains("connect to") && !d.contains("cannot read")),
        "the https check under the unit's capabilities: {probed:?}\n{}",
        agent.log()
    );
    let hooked = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(lab.dir.join("hook.out"))
            .ok()
            .filter(|s| s.contains("master"))
    });
    assert!(
        hooked.is_some(),
        "the master hook did not run:\n{}",
        agent.log()
    );
    let (ok, said) = agent.ctl(&["reload"]);
    assert!(ok, "fo-agent reload of an unchanged config failed: {said}");
    // A config the agent refuses (priority out of range): the reload command fails.
    lab.config("all", 300);
    let (ok, said) = agent.ctl(&["reload"]);
    assert!(
        !ok && said.contains("reload refused"),
        "a refused reload must exit non-zero and say so; ok={ok}: {said}"
    );
    drop(agent);

    // Each capability removed in turn: the agent must not start, and must fail at the
    // step that capability is for.
    let expected: Vec<&str> = WITHOUT.iter().map(|(c, _)| *c).collect();
    let mut sorted = caps.clone();
    sorted.sort();
    let mut known = expected.clone();
    known.sort();
    assert_eq!(
        sorted, known,
        "the unit's capabilities and the failures this test expects without each differ: add an entry to WITHOUT"
    );
    let mut table = Vec::new();
    for cap in &caps {
        let wanted = WITHOUT
            .iter()
            .find(|(c, _)| c == cap)
            .map(|(_, w)| *w)
            .unwrap_or_default();
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let run = format!("no-{}", cap.to_lowercase());
        let mut agent = Agent::start(&lab, &run, &fewer);
        match agent.outcome() {
            Ok(()) => panic!(
                "without {cap} the agent still runs: drop it from the unit's CapabilityBoundingSet=\n{}",
                agent.log()
            ),
            Err(log) => {
                let missing: Vec<&&str> = wanted
                    .iter()
                    .filter(|w| !w.split(" | ").any(|alt| log.contains(alt)))
                    .collect();
                assert!(
                    missing.is_empty(),
                    "without {cap} the agent failed, but not as expected (missing {missing:?}):\n{log}"
                );
                table.push(format!("without {cap:<14} {}", error_of(&log)));
            }
        }
    }
    println!("{}", table.join("\n"));
}
