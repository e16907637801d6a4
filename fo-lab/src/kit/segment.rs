//! One L2 segment: a bridge in a switch namespace that forwards frames and nothing else,
//! and veths from it into the hosts' namespaces.
//!
//! A hardware switch does not run the hosts' firewall on what it switches, but when the
//! kernel has br_netfilter, every bridged IPv4, IPv6 and ARP frame goes through the switch
//! namespace's netfilter hooks by default (`net.bridge.bridge-nf-call-*` = 1, a
//! per-namespace setting). Measured here: about 1.3 µs per frame, which a path that crosses
//! the bridge twice (client → LB → backend) pays twice. So the bridge is set up with it off
//! in its own switch namespace; the host's setting is untouched.

use super::Netns;

/// Bring up `br0` in `switch`, without br_netfilter's hooks.
pub fn bridge_up(switch: &Netns) -> anyhow::Result<()> {
    switch
        .sh(
            "ip link add br0 type bridge && ip link set br0 up && \
             for f in /proc/sys/net/bridge/bridge-nf-call-*; do if [ -e \"$f\" ]; then echo 0 > \"$f\"; fi; done",
        )
        .map(drop)
}

/// Add a veth from `switch`'s bridge (its end named `port`) into `ns` as `ifname`, up,
/// with `cidr` (e.g. "192.0.2.10/24").
pub fn plug(
    switch: &Netns,
    port: &str,
    ns: &Netns,
    ifname: &str,
    cidr: &str,
) -> anyhow::Result<()> {
    switch.sh(&format!(
        "ip link add {port} type veth peer name {ifname} netns {ns} && ip link set {port} master br0 up",
        ns = ns.name
    ))?;
    ns.sh(&format!(
        "ip link set {ifname} up && ip addr add {cidr} dev {ifname}"
    ))?;
    Ok(())
}
