//! The packaged unit in the booted root: it starts the agent, reloads a good config and
//! refuses a bad one, lets the group `fo` ask for status, survives an upgrade in place,
//! lets a slow STOP hook finish, and `dpkg -r` removes the pinned data plane.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure};

use super::CONF;
use super::chroot::Chroot;
use super::command::output;
use super::nspawn::{BOOTED_COMMAND_SECONDS, Booted};

/// The config the booted root runs: a static router and a VRRP router (alone, so
/// master) on a veth of its own; the VRRP router's notify hook takes 11 s on STOP.
const BOOTED_CONFIG: &str = r#"[node]
interface = "fo0"
xdp_mode = "generic"
control_group = "fo"

[[router]]
name = "web"
ownership = "static"
vips = ["192.0.2.100"]

[[router]]
name = "vr"
vrid = 9
advert_interval = "100ms"
vips = ["192.0.2.101"]
hooks = { notify = "/etc/fo/hooks/slow-stop.sh", timeout = "20s" }

[[check]]
name = "alive"
kind = "exec"
command = ["/bin/true"]
"#;

/// The booted root's notify hook: on STOP it outlasts the unit's TimeoutStopSec (10 s)
/// but not its hooks.timeout (20 s), then says it finished.
const SLOW_STOP_HOOK: &str =
    "#!/bin/sh\n[ \"$3\" = STOP ] || exit 0\nsleep 11\necho finished > /var/lib/fo/stop-hook\n";

/// The id of the XDP program attached to fo0 in the booted root, if any.
fn xdp_prog(b: &Booted) -> anyhow::Result<Option<u32>> {
    let said = b.sh("ip -d link show fo0")?;
    Ok(said
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|id| id.parse().ok()))
}

pub(super) fn under_systemd(c: &Chroot, dir: &Path, report: &mut String) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(c.path(CONF), BOOTED_CONFIG)?;
    let hook = c.path("/etc/fo/hooks/slow-stop.sh");
    std::fs::create_dir_all(hook.parent().expect("hooks dir"))?;
    std::fs::write(&hook, SLOW_STOP_HOOK)?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    c.run("useradd --groups fo alice && systemctl enable fo-agent.service")?;
    // The booted root gets a tmpfs on /tmp: keep the package where it can be seen.
    std::fs::copy(c.path("/tmp/fo.deb"), c.path("/var/tmp/fo.deb"))?;
    let b = Booted::boot(c, &dir.join("nspawn.log"))?;
    // nspawn gives a container a /sys without /sys/fs/bpf (a host has it, and systemd
    // mounts bpffs there at boot): make the mount point; the unit mounts bpffs on it.
    output(&mut b.command(
        BOOTED_COMMAND_SECONDS,
        true,
        "mount -o remount,rw /sys && mkdir -p /sys/fs/bpf && mount -o remount,ro /sys",
    ))?;
    b.sh(
        "ip link add fo0 type veth peer name fo1 && ip link set fo0 up && ip link set fo1 up \
         && ip addr add 192.0.2.11/24 dev fo0",
    )?;
    let (started, said) =
        b.try_sh("systemctl reset-failed fo-agent; systemctl restart fo-agent")?;
    let (_, state) = b.try_sh("systemctl is-active fo-agent")?;
    if !started || state.trim() != "active" {
        let (_, log) = b.try_sh("journalctl -u fo-agent --no-pager -n 40")?;
        bail!(
            "under systemd the unit did not start ({}): {said}\n{log}",
            state.trim()
        );
    }
    let (ok, said) = b.try_sh("systemctl reload fo-agent")?;
    ensure!(ok, "systemctl reload of a good config failed: {said}");
    b.sh("cp /etc/fo/fo.toml /etc/fo/good && \
         sed -i 's/^control_group/max_services = 0\\ncontrol_group/' /etc/fo/fo.toml")?;
    let (ok, said) = b.try_sh("systemctl reload fo-agent")?;
    ensure!(
        !ok,
        "systemctl reload of a refused config succeeded: {said}"
    );
    let log = b.sh("journalctl -u fo-agent --no-pager -n 20")?;
    ensure!(
        log.contains("reload refused"),
        "no refusal in the journal:\n{log}"
    );
    b.sh("mv /etc/fo/good /etc/fo/fo.toml")?;
    let (ok, said) = b.try_sh("su alice -s /bin/sh -c 'fo-agent status'")?;
    ensure!(
        ok && said.contains("web"),
        "fo-agent status as a member of fo: {said}"
    );
    let restarts = b.sh("systemctl show fo-agent -p NRestarts --value")?;
    ensure!(
        restarts.trim() == "0",
        "the agent restarted {} times",
        restarts.trim()
    );
    // An upgrade (the package installed again over itself) leaves the running agent
    // alone (the operator restarts it, backup first) and its pinned data plane too.
    let pid = b.sh("systemctl show fo-agent -p MainPID --value")?;
    let prog = xdp_prog(&b)?;
    ensure!(
        prog.is_some(),
        "no XDP program on fo0 under the running agent"
    );
    b.sh("DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /var/tmp/fo.deb")?;
    let after = b.sh("systemctl show fo-agent -p MainPID --value")?;
    let (_, state) = b.try_sh("systemctl is-active fo-agent")?;
    ensure!(
        pid.trim() == after.trim() && state.trim() == "active",
        "the upgrade touched the running agent: MainPID {} -> {}, {}",
        pid.trim(),
        after.trim(),
        state.trim()
    );
    ensure!(
        xdp_prog(&b)? == prog,
        "the upgrade changed the XDP program on fo0: {prog:?} -> {:?}",
        xdp_prog(&b)?
    );
    writeln!(
        report,
        "under systemd (nspawn): active; systemctl reload OK; refused config: reload failed; \
         fo-agent status as a member of fo: OK; restarts 0; upgrade in place: same MainPID, \
         same XDP program"
    )?;

    // A stop lets the last hooks run for their hooks.timeout, past TimeoutStopSec: the
    // agent extends it. Without that systemd kills the hook (and the agent) at 10 s.
    let t = Instant::now();
    let (stopped, said) = b.try_sh("systemctl stop fo-agent")?;
    let took = t.elapsed().as_secs_f64();
    let result = b.sh("systemctl show fo-agent -p Result --value")?;
    let (_, hook) = b.try_sh("cat /var/lib/fo/stop-hook")?;
    if !stopped || result.trim() != "success" || hook.trim() != "finished" {
        let (_, log) = b.try_sh("journalctl -u fo-agent --no-pager -n 30")?;
        bail!(
            "systemctl stop with an 11 s STOP hook: stop ok {stopped} ({said}), result {}, \
             hook {:?} (not finished: killed before its hooks.timeout)\n{log}",
            result.trim(),
            hook.trim()
        );
    }
    ensure!(
        xdp_prog(&b)? == prog,
        "the stop took the XDP program off fo0: {prog:?} -> {:?}",
        xdp_prog(&b)?
    );
    writeln!(
        report,
        "stop with an 11 s STOP hook (TimeoutStopSec=10s): the hook finished, result \
         success, {took:.1} s; the XDP program stays attached"
    )?;

    // Removing the package removes the pinned data plane (an upgrade did not, above).
    b.sh("DEBIAN_FRONTEND=noninteractive dpkg -r fo")?;
    let (_, pins) = b.try_sh("ls -A /sys/fs/bpf/fo 2>&1")?;
    ensure!(
        xdp_prog(&b)?.is_none() && pins.contains("No such file"),
        "after dpkg -r: XDP program {:?} on fo0, /sys/fs/bpf/fo: {}",
        xdp_prog(&b)?,
        pins.trim()
    );
    writeln!(
        report,
        "dpkg -r: the pins are gone and fo0 has no XDP program"
    )?;
    Ok(())
}
