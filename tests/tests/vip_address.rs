//! `vip_on_interface = true`: the VIP is an address on the interface exactly while the
//! node serves it (for local services that bind to it), and is removed when it stops;
//! with VRRP and with static ownership.

use std::time::Duration;

use fo_tests::netns::wait_for;
use fo_tests::pair::{Pair, PairOptions, VIP};

fn has_vip(lab: &Pair) -> bool {
    lab.a
        .ns
        .sh("ip -br addr show dev eth0")
        .contains(&format!("{VIP}/32"))
}

#[test]
fn vip_address_follows_mastership() {
    let mut lab = Pair::new(&PairOptions {
        advert_interval: "100ms",
        backends: 1,
        extra: String::new(),
        ..Default::default()
    });
    let cfg = std::fs::read_to_string(&lab.a.config).expect("config");
    std::fs::write(
        &lab.a.config,
        cfg.replace(
            "flow_table_size = 65536",
            "flow_table_size = 65536\nvip_on_interface = true",
        ),
    )
    .expect("write");
    // A stale address, as a crashed master would leave it, is cleared at start.
    lab.a.ns.sh(&format!("ip addr add {VIP}/32 dev eth0"));
    lab.a.start();
    // Alone, A becomes master after Master_Down_Interval (0.34 s).
    lab.assert_a_master();
    assert!(
        wait_for(Duration::from_secs(5), || has_vip(&lab).then_some(())).is_some(),
        "the VIP is not on eth0 while master"
    );
    // A demote hands over (make before break): B must be there to take over.
    lab.b.start();
    let (ok, out) = lab.a.ctl(&["demote", "lab"]);
    assert!(ok, "demote: {out}");
    assert!(
        wait_for(Duration::from_secs(5), || (!has_vip(&lab)).then_some(())).is_some(),
        "the VIP stayed on eth0 after the node gave it up"
    );
    let (ok, out) = lab.a.ctl(&["resume", "lab"]);
    assert!(ok, "resume: {out}");
    assert!(
        wait_for(Duration::from_secs(5), || has_vip(&lab).then_some(())).is_some(),
        "the VIP did not come back"
    );
}

/// A static router's VIPs are addresses too while it serves them, also after a restart
/// that finds the pinned data plane already serving.
#[test]
fn a_static_vip_is_an_address_while_served() {
    let mut lab = Pair::new(&PairOptions {
        backends: 1,
        ..Default::default()
    });
    let cfg = std::fs::read_to_string(&lab.a.config).expect("config");
    let node = &cfg[..cfg.find("[[router]]").expect("a router table")];
    std::fs::write(
        &lab.a.config,
        format!(
            "{}\nvip_on_interface = true\n\n[[router]]\nname = \"lab\"\nownership = \"static\"\nvips = [\"{VIP}\"]\n",
            node.trim_end()
        ),
    )
    .expect("write");
    lab.a.start();
    assert!(
        wait_for(Duration::from_secs(5), || has_vip(&lab).then_some(())).is_some(),
        "the static VIP is not on eth0:\n{}",
        lab.a.log()
    );
    lab.a.kill9();
    // A crash leaves the address; take it away to see the restarted agent restore it.
    lab.a.ns.sh(&format!("ip addr del {VIP}/32 dev eth0"));
    lab.a.start();
    assert!(
        wait_for(Duration::from_secs(5), || has_vip(&lab).then_some(())).is_some(),
        "the restarted agent did not put the static VIP on eth0:\n{}",
        lab.a.log()
    );
}
