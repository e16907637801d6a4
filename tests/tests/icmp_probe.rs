//! The fence's ICMP echo prober against a real kernel, both families: a target in
//! another namespace over a veth (IPv4, IPv6 global, IPv6 link-local through the
//! interface's scope) answers; an address nobody holds does not; a reply to someone
//! else's identifier is not taken for ours.
//!
//! Run: `cargo test -p fo-tests --test icmp_probe` (root).

use std::net::IpAddr;
use std::time::Duration;

use fo_agent::net::icmp::Pinger;
use fo_tests::netns::Netns;

/// Send `seq` and wait up to `wait` for its reply.
fn echo(target: IpAddr, id: u16, ifindex: u32, seq: u16, wait: Duration) -> Option<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let p = Pinger::open(target, id, ifindex).expect("raw ICMP socket");
        p.send(seq).ok()?;
        tokio::time::timeout(wait, async {
            loop {
                match p.recv().await {
                    Ok(s) if s == seq => return s,
                    _ => continue,
                }
            }
        })
        .await
        .ok()
    })
}

#[test]
fn echo_reaches_a_neighbour_in_both_families() {
    let a = Netns::new("ia");
    let b = Netns::new("ib");
    a.sh(&format!(
        "ip link add eth0 type veth peer name eth0 netns {} && ip link set eth0 up \
         && ip addr add 198.51.100.1/24 dev eth0 \
         && ip -6 addr add 2001:db8:1::1/64 dev eth0 nodad && ip -6 addr add fe80::a/64 dev eth0 nodad",
        b.name
    ));
    b.sh(
        "ip link set eth0 up && ip addr add 198.51.100.2/24 dev eth0 \
         && ip -6 addr add 2001:db8:1::2/64 dev eth0 nodad && ip -6 addr add fe80::b/64 dev eth0 nodad",
    );
    let ifindex: u32 = a
        .sh("ip -o link show eth0 | cut -d: -f1")
        .trim()
        .parse()
        .expect("ifindex");
    let wait = Duration::from_secs(3);
    for (target, seq) in [("198.51.100.2", 1u16), ("2001:db8:1::2", 2), ("fe80::b", 3)] {
        let t: IpAddr = target.parse().unwrap();
        let got = a.run(move || echo(t, 0x4242, ifindex, seq, wait));
        assert_eq!(got, Some(seq), "expected an echo reply from {target}");
    }
    // Nobody holds .3: no reply (ARP fails), and the probe must not hang.
    let none: IpAddr = "198.51.100.3".parse().unwrap();
    let got = a.run(move || echo(none, 0x4242, ifindex, 4, Duration::from_millis(1500)));
    assert_eq!(got, None, "no host at 198.51.100.3, yet a reply was taken");
    // A reply to another identifier (another pinger, another agent) is not ours: the
    // kernel gives every raw ICMP socket a copy of every echo reply.
    let t: IpAddr = "198.51.100.2".parse().unwrap();
    let got = a.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ours = Pinger::open(t, 1, ifindex).expect("socket");
            let theirs = Pinger::open(t, 2, ifindex).expect("socket");
            theirs.send(9).expect("send");
            tokio::time::timeout(Duration::from_millis(1500), ours.recv())
                .await
                .ok()
        })
    });
    assert!(
        got.is_none(),
        "took a reply meant for another identifier: {got:?}"
    );
}
