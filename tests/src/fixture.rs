//! A data plane loaded for BPF_PROG_TEST_RUN, in its own pin directory that is
//! removed when the fixture is dropped (also when the test fails).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fo_agent::dataplane::{
    Attach, BackendSpec, Dataplane, LoadOptions, MonoNanos, ServiceSpec, ServiceTable, TestRun,
    remove_all_pins,
};

/// Ingress interface of BPF_PROG_TEST_RUN: the namespace's loopback.
pub const TEST_IFINDEX: u32 = 1;
/// The MAC the node answers with in these tests.
pub const OUR_MAC: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 0x01];

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Fixture {
    pub dp: Dataplane,
    pub table: ServiceTable,
    dir: PathBuf,
}

impl Fixture {
    /// Load the real compiled object with a Maglev table of `maglev_size` entries.
    pub fn new(maglev_size: u32) -> Self {
        Self::with_nat_table(maglev_size, 1024)
    }

    /// As [`Fixture::new`], with a NAT table of `nat_table_size` connections.
    pub fn with_nat_table(maglev_size: u32, nat_table_size: u32) -> Self {
        Self::with_tables(maglev_size, nat_table_size, 65_536)
    }

    /// As [`Fixture::new`], with the NAT and flow tables of the sizes given.
    pub fn with_tables(maglev_size: u32, nat_table_size: u32, flow_table_size: u32) -> Self {
        crate::require_root();
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/fo-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let opts = LoadOptions {
            pin_dir: dir.clone(),
            maglev_size,
            max_services: 8,
            max_backends: 64,
            flow_table_size,
            nat_table_size,
        };
        let mut dp = match Dataplane::open(&opts, &Attach::Detached) {
            Ok(dp) => dp,
            Err(e) => {
                let _ = remove_all_pins(&dir);
                panic!("loading the XDP object failed: {}", chain(&e));
            }
        };
        dp.set_iface(TEST_IFINDEX, OUR_MAC).expect("IFACES");
        let table = ServiceTable::from_dataplane(&dp).expect("service table");
        Fixture { dp, table, dir }
    }

    /// Own `vip` with a lease one hour ahead.
    pub fn own(&mut self, vip: IpAddr) {
        self.dp
            .set_vip(vip, true, MonoNanos::now().after(Duration::from_secs(3600)))
            .expect("VIPS");
    }

    /// Own `vip` on 802.1Q VLAN `vlan`, with a lease one hour ahead.
    pub fn own_on_vlan(&mut self, vip: IpAddr, vlan: u16) {
        self.dp.set_vip_vlan(vip, vlan).expect("VIPS (VLAN)");
        self.own(vip);
    }

    pub fn services(&mut self, specs: &[ServiceSpec]) {
        self.table
            .apply(&mut self.dp, specs)
            .expect("apply services");
    }

    pub fn run(&mut self, frame: &[u8]) -> TestRun {
        self.dp.test_run(frame, 1).expect("BPF_PROG_TEST_RUN")
    }

    /// A counter's value, by its metrics name.
    pub fn counter(&self, name: &str) -> u64 {
        self.dp
            .counters()
            .expect("COUNTERS")
            .into_iter()
            .find(|(c, _)| c.name() == name)
            .unwrap_or_else(|| panic!("no counter named {name}"))
            .1
    }
}

/// Remove the pin directories of fixtures whose process is gone (a fuzzer or test that
/// crashed or was killed never dropped its fixture). Directories of live processes stay.
pub fn remove_stale_pins() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("fo-test-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_all_pins(&e.path());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = remove_all_pins(&self.dir);
    }
}

/// A backend on the test segment.
pub fn backend(addr: IpAddr, port: u16, weight: u32, mac: [u8; 6]) -> BackendSpec {
    BackendSpec {
        addr,
        port,
        weight,
        mac,
        src_mac: OUR_MAC,
        ifindex: 0,
    }
}

pub fn service(vip: IpAddr, port: u16, proto: u8, backends: Vec<BackendSpec>) -> ServiceSpec {
    ServiceSpec {
        vip,
        port,
        proto,
        hash_5tuple: false,
        backends,
        nat: None,
        tunnel: None,
    }
}

pub use fo_agent::dataplane::error_chain as chain;
