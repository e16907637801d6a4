//! The data-plane tables: each row an input frame, the expected XDP action, the exact
//! expected output frame and the counter that must move, run through BPF_PROG_TEST_RUN
//! against the real compiled object. One table per feature (`tests/dataplane_arp_nd.rs`,
//! `dataplane_dsr.rs`, `dataplane_pass.rs`), all on [`standard_fixture`].
//!
//! ```text
//! table::run(&mut fx, &[
//!     Row::new("TCP SYN to a service goes to its backend (DSR)")
//!         .input(syn.clone()).tx(dsr(&syn, BACKEND_MAC, OUR_MAC)).counts("tx"),
//!     Row::new("IPv4 first fragment (MF)").input(fragment).passes().counts("fragment"),
//! ]);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_common::xdp_action::{XDP_PASS, XDP_TX};
use fo_common::{PROTO_TCP, PROTO_UDP};

use crate::fixture::{Fixture, backend, service};
use crate::frames::{self, Mac};

pub const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
pub const BACKEND_MAC: Mac = [0x02, 0xbe, 0, 0, 0, 0x01];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const VIP_UNOWNED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
pub const OTHER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
pub const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21);

/// Loaded once per test: VIP and VIP6 owned, VIP_UNOWNED known but not owned,
/// services tcp/1514 and udp/514 on VIP and tcp/1514 on VIP6, one backend each.
pub fn standard_fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    fx.dp
        .set_vip(
            IpAddr::V4(VIP_UNOWNED),
            false,
            fo_agent::dataplane::MonoNanos(0),
        )
        .expect("VIPS");
    // Each service has one backend, of weight 1, on the service's own port.
    let one =
        |vip, port, proto, to| service(vip, port, proto, vec![backend(to, port, 1, BACKEND_MAC)]);
    let (vip, vip_unowned, vip6) = (IpAddr::V4(VIP), IpAddr::V4(VIP_UNOWNED), IpAddr::V6(VIP6));
    let (b4, b6) = (IpAddr::V4(BACKEND), IpAddr::V6(BACKEND6));
    fx.services(&[
        one(vip, 1514, PROTO_TCP, b4),
        one(vip, 514, PROTO_UDP, b4),
        one(vip_unowned, 1514, PROTO_TCP, b4),
        one(vip6, 1514, PROTO_TCP, b6),
    ]);
    fx
}

/// One row: what it shows, the input, what must come out and which counter moves.
pub struct Row {
    pub what: &'static str,
    pub input: Vec<u8>,
    pub action: u32,
    /// None: the output must equal the input (passed untouched).
    pub output: Option<Vec<u8>>,
    pub counter: &'static str,
}

impl Row {
    /// A row that passes its input untouched until told otherwise.
    pub fn new(what: &'static str) -> Row {
        Row {
            what,
            input: Vec::new(),
            action: XDP_PASS,
            output: None,
            counter: "",
        }
    }

    pub fn input(mut self, frame: Vec<u8>) -> Row {
        self.input = frame;
        self
    }

    /// XDP_TX with exactly this frame.
    pub fn tx(mut self, frame: Vec<u8>) -> Row {
        self.action = XDP_TX;
        self.output = Some(frame);
        self
    }

    /// XDP_PASS with the input untouched.
    pub fn passes(mut self) -> Row {
        self.action = XDP_PASS;
        self.output = None;
        self
    }

    /// The counter (`fo_common::Counter` name) that must go up by one.
    pub fn counts(mut self, counter: &'static str) -> Row {
        self.counter = counter;
        self
    }
}

/// Check that the `name` table has the `expected` number of rows (guarding against a
/// row lost in a move), then [`run`] it on a [`standard_fixture`].
pub fn run_standard(name: &str, expected: usize, rows: &[Row]) {
    assert_eq!(rows.len(), expected, "rows in the {name} table");
    run(&mut standard_fixture(), rows);
}

/// Run every row in order on `fx` (rows may depend on the ones before: a flow's later
/// segment follows its SYN) and panic with one message per failing row.
pub fn run(fx: &mut Fixture, rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let before = fx.counter(row.counter);
        let run = fx.run(&row.input);
        let expected = row.output.clone().unwrap_or_else(|| row.input.clone());
        let after = fx.counter(row.counter);
        if run.action != row.action {
            failures.push(format!(
                "{}: expected action {}, got {}",
                row.what, row.action, run.action
            ));
        } else if run.frame != expected {
            failures.push(format!(
                "{}: output frame differs\n  expected {:02x?}\n  got      {:02x?}",
                row.what, expected, run.frame
            ));
        } else if after != before + 1 {
            failures.push(format!(
                "{}: counter {} went {} -> {}, expected +1",
                row.what, row.counter, before, after
            ));
        }
        if row.counter == "na_reply"
            && run.action == XDP_TX
            && !frames::icmpv6_checksum_ok(&run.frame)
        {
            failures.push(format!(
                "{}: the NA's ICMPv6 checksum does not verify",
                row.what
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the table's rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
