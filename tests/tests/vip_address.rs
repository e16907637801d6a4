//! `vip_on_interface = true`: the VIP is an address on the interface exactly while the
//! node serves it (for local services that bind to it), and is removed when it stops.

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
    assert!(
        lab.wait_master(&lab.a, Duration::from_secs(10)),
        "A never became master:\n{}",
        lab.a.log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || has_vip(&lab).then_some(())).is_some(),
        "the VIP is not on eth0 while master"
    );
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
