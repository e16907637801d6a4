//! `cargo xtask bench dataplane`: the XDP program's cost per packet, measured by the
//! kernel with BPF_PROG_TEST_RUN on the real object, with 3 and with 1,000 backends.
//!
//! Two methods, because BPF_PROG_TEST_RUN's `repeat` reruns the program on the same
//! buffer, which the program may have rewritten:
//! - batch: one frame, `repeat` = 200,000; the kernel's mean per run. Used for frames
//!   the program leaves valid for a rerun (established flow: a MAC rewrite; pass).
//! - single: 2,000 distinct frames with `repeat` = 1, median of the kernel's times.
//!   Used for a new flow (Maglev; each frame a new 5-tuple) and the ARP reply (the
//!   request becomes a reply). It includes the fixed cost of one test run (clock
//!   reads), so the same method is also reported for the established flow: the
//!   difference between the two single-shot rows is the cost of the Maglev path.
//!
//! NAT rows (`mode = "nat"`, 3 backends behind a gateway) run in a network namespace
//! made for them, since the program asks the kernel's FIB for next hops there; every
//! NAT packet is rewritten, so they use the single method only.
//!
//! Tunnel rows (`mode = "tunnel"`, IPIP and GUE, 3 backends) are measured with the
//! single method beside DSR rows measured the same way in the same runs (the ratio
//! of the established rows is the tunnel's cost), on this build's object only.
//!
//! Every figure: min / median / max over 5 runs. Report: target/bench/dataplane.{md,json}.
//!
//! A/B: with `FO_BENCH_BASELINE_OBJECT` set to another build of the XDP object (`cargo
//! xtask bench dataplane --baseline REV` builds one from a git revision and sets it,
//! with `FO_BENCH_BASELINE_REV` naming it), every row is measured on both objects in
//! the same run: each object on its own maps, loaded and filled the same way, the two
//! taking turns run by run (which goes first alternates), and the report gives old,
//! new and the difference.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fo_agent::dataplane::{
    Attach, BackendSpec, Dataplane, LoadOptions, MonoNanos, ServiceSpec, ServiceTable,
    remove_all_pins,
};
use fo_common::PROTO_TCP;
use fo_tests::frames;

const RUNS: usize = 5;
const BATCH_REPEAT: u32 = 200_000;
const SINGLES: u32 = 2_000;
const OUR_MAC: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 1];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

struct Bench {
    dp: Dataplane,
    dir: std::path::PathBuf,
}

/// An XDP object under test: this build's (embedded in the agent) or a baseline's.
#[derive(Clone)]
struct Object {
    /// `new`, or `old` for the baseline.
    label: &'static str,
    /// The baseline's object file; `None`: this build's.
    bytes: Option<std::sync::Arc<Vec<u8>>>,
}

/// This build's object, after the baseline's when `FO_BENCH_BASELINE_OBJECT` names one.
fn objects() -> Vec<Object> {
    let mut v = Vec::new();
    if let Some(path) = std::env::var_os("FO_BENCH_BASELINE_OBJECT") {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "FO_BENCH_BASELINE_OBJECT={}: {e}",
                std::path::Path::new(&path).display()
            )
        });
        // The ELF parser reads 64-bit headers in place: the buffer must be 8-aligned,
        // as the allocator's blocks are.
        assert_eq!(
            bytes.as_ptr() as usize % 8,
            0,
            "the baseline object's buffer is not 8-byte aligned"
        );
        v.push(Object {
            label: "old",
            bytes: Some(std::sync::Arc::new(bytes)),
        });
    }
    v.push(Object {
        label: "new",
        bytes: None,
    });
    v
}

/// The order in which the objects take their turn in `run`: alternating, so that
/// neither always runs on caches the other warmed.
fn turns(n: usize, run: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    if run % 2 == 1 {
        v.reverse();
    }
    v
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = remove_all_pins(&self.dir);
    }
}

const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const NAT_BACKEND_PORT: u16 = 11514;
const D0_MAC: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 2];
const GW_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0xfe];

fn setup(backends: u32, nat: bool, object: &Object) -> Bench {
    fo_tests::require_root();
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/fo-bench-{}-{backends}-{nat}-{}",
        std::process::id(),
        object.label
    ));
    let opts = LoadOptions {
        pin_dir: dir.clone(),
        maglev_size: 65_537,
        max_services: 4,
        max_backends: 1024,
        flow_table_size: 1 << 20,
        nat_table_size: 1 << 16,
    };
    let mut dp = match &object.bytes {
        None => Dataplane::open(&opts, &Attach::Detached).expect("load the XDP object"),
        Some(bytes) => Dataplane::open_detached_object(&opts, bytes)
            .unwrap_or_else(|e| panic!("load the baseline XDP object: {e:#?}")),
    };
    dp.set_iface(1, OUR_MAC).expect("IFACES");
    if nat {
        let d0 = fo_agent::dataplane::ifindex("d0").expect("d0");
        dp.set_iface(d0, D0_MAC).expect("IFACES");
        dp.set_vip_role(IpAddr::V4(VIP), true, false).expect("role");
        dp.set_vip_role(IpAddr::V4(SNAT), false, true)
            .expect("role");
        dp.set_vip(
            IpAddr::V4(SNAT),
            true,
            MonoNanos::now().after(Duration::from_secs(3600)),
        )
        .expect("VIPS");
    }
    dp.set_vip(
        IpAddr::V4(VIP),
        true,
        MonoNanos::now().after(Duration::from_secs(3600)),
    )
    .expect("VIPS");
    let mut table = ServiceTable::from_dataplane(&dp).expect("table");
    let specs = vec![ServiceSpec {
        vip: IpAddr::V4(VIP),
        port: 1514,
        proto: PROTO_TCP,
        hash_5tuple: true,
        backends: (0..backends)
            .map(|i| BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::from(0xc612_0000u32 + i)), // 198.18.0.0/15
                port: if nat { NAT_BACKEND_PORT } else { 1514 },
                weight: 1,
                mac: [0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8],
                src_mac: OUR_MAC,
                ifindex: 0,
            })
            .collect(),
        nat: nat.then(|| fo_agent::dataplane::NatSpec {
            snat: vec![IpAddr::V4(SNAT)],
        }),
        tunnel: None,
    }];
    table.apply(&mut dp, &specs).expect("apply");
    Bench { dp, dir }
}

/// NAT rows: new connection (port reservation, both entries, FIB), client packet of
/// an established connection, and the backend's reply, 3 backends behind a gateway.
fn nat_rows(objects: &[Object]) -> Vec<Row> {
    use fo_common::xdp_action::XDP_REDIRECT;
    let ns = fo_tests::netns::Netns::new("natbench");
    ns.sh(
        "ip link add d0 type veth peer name d0p && ip link set d0 address 02:f0:00:00:00:02 \
         && ip link set d0 up && ip link set d0p up && ip addr add 192.0.2.1/24 dev d0 \
         && ip route add 10.0.0.0/8 dev d0 && ip route add 198.18.0.0/15 via 192.0.2.254 dev d0 \
         && ip neigh add 192.0.2.254 lladdr 02:99:00:00:00:fe dev d0 nud permanent \
         && sysctl -qw net.ipv4.ip_forward=1",
    );
    let objects = objects.to_vec();
    ns.run(move || {
        let mut benches: Vec<Bench> = objects.iter().map(|o| setup(3, true, o)).collect();
        let nat_frame = |i: u32, flags: u8| {
            let mut f = client_syn(i, flags);
            f[0..6].copy_from_slice(&D0_MAC);
            f
        };
        // A reply of each connection's backend, from its NAT entry.
        let from_backend = |f: &fo_common::NatFlow, flags: u8, seq: u32, ack: u32| {
            let be = f.backend.bytes;
            let sn = f.snat.bytes;
            frames::Tcp4::new(
                (D0_MAC, GW_MAC),
                (
                    Ipv4Addr::new(be[0], be[1], be[2], be[3]),
                    u16::from_be(f.backend_port_be),
                ),
                (
                    Ipv4Addr::new(sn[0], sn[1], sn[2], sn[3]),
                    u16::from_be(f.snat_port_be),
                ),
            )
            .flags(flags)
            .seq(seq)
            .ack(ack)
            .frame()
        };
        // Client ISN 1000 (the frames' default), backend ISN 5000.
        let client_ack = |i: u32| {
            let mut f = frames::Tcp4::new(
                (D0_MAC, CLIENT_MAC),
                (
                    Ipv4Addr::from(0x0a00_0000u32 + (i >> 14)),
                    1024 + (i & 0x3fff) as u16,
                ),
                (VIP, 1514),
            )
            .flags(frames::TCP_ACK)
            .seq(1001)
            .ack(5001)
            .frame();
            f[0..6].copy_from_slice(&D0_MAC);
            f
        };
        let n = benches.len();
        let (mut open, mut syn_ack, mut promote, mut est, mut reply) = (
            Samples::new(n),
            Samples::new(n),
            Samples::new(n),
            Samples::new(n),
            Samples::new(n),
        );
        for run in 0..RUNS {
            let base = run as u32 * SINGLES * 2 + 1;
            for k in turns(n, run) {
                let b = &mut benches[k];
                open.push(
                    k,
                    single(
                        b,
                        (0..SINGLES).map(|i| nat_frame(base + i, frames::TCP_SYN)),
                        XDP_REDIRECT,
                    ),
                );
                let table = b.dp.nat_table().expect("NAT table");
                let embryonic = table.embryonic().expect("embryonic NAT flows");
                syn_ack.push(
                    k,
                    single(
                        b,
                        embryonic
                            .iter()
                            .map(|(_, f)| from_backend(f, 0x12, 5000, 1001)),
                        XDP_REDIRECT,
                    ),
                );
                promote.push(
                    k,
                    single(b, (0..SINGLES).map(|i| client_ack(base + i)), XDP_REDIRECT),
                );
                est.push(
                    k,
                    single(b, (0..SINGLES).map(|i| client_ack(base + i)), XDP_REDIRECT),
                );
                let flows = table.flows().expect("NAT flows");
                reply.push(
                    k,
                    single(
                        b,
                        flows
                            .iter()
                            .take(SINGLES as usize)
                            .map(|(_, f)| from_backend(f, frames::TCP_ACK, 5001, 1001)),
                        XDP_REDIRECT,
                    ),
                );
            }
        }
        vec![
            stats(
                "NAT new connection: SYN, SNAT port reserved (embryonic), FIB",
                "single",
                3,
                open,
            ),
            stats(
                "NAT SYN-ACK: backend -> client, embryonic entry, rewrite + FIB",
                "single",
                3,
                syn_ack,
            ),
            stats(
                "NAT handshake done: client ACK, entry promoted, event",
                "single",
                3,
                promote,
            ),
            stats(
                "NAT established: client -> backend, rewrite + FIB",
                "single",
                3,
                est,
            ),
            stats(
                "NAT reply: backend -> client, rewrite + FIB",
                "single",
                3,
                reply,
            ),
        ]
    })
}

/// Tunnel rows (`mode = "tunnel"`): a DSR service and IPIP and GUE tunnel services, 3
/// backends each, on this build's object only (a baseline may predate tunnels). Every
/// tunnel packet is rewritten (encapsulated), so the single method only; the DSR rows
/// here are measured the same way in the same runs, for the ratio.
fn tunnel_rows(objects: &[Object]) -> Vec<Row> {
    use fo_agent::dataplane::tunnel::{Encap, TunnelSpec};
    use fo_common::xdp_action::XDP_TX;
    let Some(object) = objects.iter().find(|o| o.bytes.is_none()) else {
        return Vec::new();
    };
    let mut b = setup(3, false, object);
    let tunnel = |port: u16, encap| ServiceSpec {
        vip: IpAddr::V4(VIP),
        port,
        proto: PROTO_TCP,
        hash_5tuple: true,
        backends: (0..3u32)
            .map(|i| BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::from(0x0a14_0000u32 + i)), // 10.20.0.0/16
                port,
                weight: 1,
                mac: [0x02, 0x40, 0, 0, 0, 1],
                src_mac: OUR_MAC,
                ifindex: 0,
            })
            .collect(),
        nat: None,
        tunnel: Some(TunnelSpec {
            source: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 0)),
            source_bits: 8,
            encap,
            mtu: 1500,
        }),
    };
    let mut table = ServiceTable::from_dataplane(&b.dp).expect("table");
    let mut specs = table_specs_dsr();
    specs.push(tunnel(1515, Encap::Ipip));
    specs.push(tunnel(1516, Encap::Gue { port: 6080 }));
    table
        .apply(&mut b.dp, &specs)
        .expect("apply tunnel services");
    let ports = [1514u16, 1515, 1516];
    let mut syn: Vec<Samples> = ports.iter().map(|_| Samples::new(1)).collect();
    let mut est: Vec<Samples> = ports.iter().map(|_| Samples::new(1)).collect();
    for run in 0..RUNS {
        // Flows of their own, apart from the DSR rows' (which start at 1).
        let base = (1 << 20) + run as u32 * SINGLES;
        for (k, &port) in ports.iter().enumerate() {
            let flows = || (0..SINGLES).map(move |i| (base + i, port));
            syn[k].push(
                0,
                single(
                    &mut b,
                    flows().map(|(i, p)| client_to(i, p, frames::TCP_SYN)),
                    XDP_TX,
                ),
            );
            // The first packet after the SYN moves the flow to the flow table ...
            single(
                &mut b,
                flows().map(|(i, p)| client_to(i, p, frames::TCP_ACK)),
                XDP_TX,
            );
            // ... then it is established.
            est[k].push(
                0,
                single(
                    &mut b,
                    flows().map(|(i, p)| client_to(i, p, frames::TCP_ACK)),
                    XDP_TX,
                ),
            );
        }
    }
    let names = ["DSR", "tunnel IPIP", "tunnel GUE"];
    let mut rows = Vec::new();
    for (k, (syn, est)) in syn.into_iter().zip(est).enumerate() {
        rows.push(stats(
            &format!("{}: new flow, TCP SYN via Maglev (same run)", names[k]),
            "single",
            3,
            syn,
        ));
        rows.push(stats(
            &format!("{}: established flow (same run)", names[k]),
            "single",
            3,
            est,
        ));
    }
    rows
}

/// The DSR service `setup` installs with 3 backends (so that `apply` keeps it).
fn table_specs_dsr() -> Vec<ServiceSpec> {
    vec![ServiceSpec {
        vip: IpAddr::V4(VIP),
        port: 1514,
        proto: PROTO_TCP,
        hash_5tuple: true,
        backends: (0..3u32)
            .map(|i| BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::from(0xc612_0000u32 + i)),
                port: 1514,
                weight: 1,
                mac: [0x02, 0xbe, 0, 0, (i >> 8) as u8, i as u8],
                src_mac: OUR_MAC,
                ifindex: 0,
            })
            .collect(),
        nat: None,
        tunnel: None,
    }]
}

/// A client's segment to `port` on the VIP, flow `i`.
fn client_to(i: u32, port: u16, flags: u8) -> Vec<u8> {
    let src = Ipv4Addr::from(0x0a00_0000u32 + (i >> 14));
    frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        src,
        VIP,
        1024 + (i & 0x3fff) as u16,
        port,
        flags,
        b"",
    )
}

fn client_syn(i: u32, flags: u8) -> Vec<u8> {
    let src = Ipv4Addr::from(0x0a00_0000u32 + (i >> 14));
    frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        src,
        VIP,
        1024 + (i & 0x3fff) as u16,
        1514,
        flags,
        b"",
    )
}

fn batch(b: &mut Bench, frame: &[u8], expect: u32) -> f64 {
    let run = b.dp.test_run(frame, BATCH_REPEAT).expect("test run");
    assert_eq!(run.action, expect, "unexpected action in batch run");
    run.duration.as_nanos() as f64
}

fn single(b: &mut Bench, frames: impl Iterator<Item = Vec<u8>>, expect: u32) -> f64 {
    let mut ns: Vec<u128> = frames
        .map(|f| {
            let run = b.dp.test_run(&f, 1).expect("test run");
            assert_eq!(run.action, expect, "unexpected action in single run");
            run.duration.as_nanos()
        })
        .collect();
    ns.sort_unstable();
    ns[ns.len() / 2] as f64
}

/// Per object, the figure of each run.
struct Samples(Vec<Vec<f64>>);

impl Samples {
    fn new(objects: usize) -> Self {
        Self(vec![Vec::new(); objects])
    }

    fn push(&mut self, object: usize, v: f64) {
        self.0[object].push(v);
    }
}

#[derive(serde::Serialize)]
struct Figures {
    min_ns: f64,
    median_ns: f64,
    max_ns: f64,
}

impl Figures {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Figures {
            min_ns: v[0],
            median_ns: v[v.len() / 2],
            max_ns: v[v.len() - 1],
        }
    }
}

/// A row: this build's figures (flattened, as before A/B), and the baseline's.
#[derive(serde::Serialize)]
struct Row {
    case: String,
    method: &'static str,
    backends: u32,
    #[serde(flatten)]
    new: Figures,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<Figures>,
}

fn stats(case: &str, method: &'static str, backends: u32, samples: Samples) -> Row {
    let mut per_object = samples.0;
    let new = Figures::of(per_object.pop().expect("this build's samples"));
    let baseline = per_object.pop().map(Figures::of);
    Row {
        case: case.into(),
        method,
        backends,
        new,
        baseline,
    }
}

fn main() {
    use fo_common::xdp_action::{XDP_PASS, XDP_TX};
    // `cargo bench` passes --bench; nothing else is accepted.
    let objects = objects();
    let n = objects.len();
    let mut rows = Vec::new();
    for backends in [3u32, 1000] {
        let mut benches: Vec<Bench> = objects.iter().map(|o| setup(backends, false, o)).collect();
        let (mut new_flow, mut first, mut est_single, mut est_batch) = (
            Samples::new(n),
            Samples::new(n),
            Samples::new(n),
            Samples::new(n),
        );
        let (mut arp, mut pass, mut floor) = (Samples::new(n), Samples::new(n), Samples::new(n));
        for run in 0..RUNS {
            let base = run as u32 * SINGLES * 2 + 1;
            for k in turns(n, run) {
                let b = &mut benches[k];
                new_flow.push(
                    k,
                    single(
                        b,
                        (0..SINGLES).map(|i| client_syn(base + i, frames::TCP_SYN)),
                        XDP_TX,
                    ),
                );
                // The same flows again: the first packet after the SYN moves each from
                // FLOWS_NEW to the flow table ...
                first.push(
                    k,
                    single(
                        b,
                        (0..SINGLES).map(|i| client_syn(base + i, frames::TCP_ACK)),
                        XDP_TX,
                    ),
                );
                // ... and from then on they are established there.
                est_single.push(
                    k,
                    single(
                        b,
                        (0..SINGLES).map(|i| client_syn(base + i, frames::TCP_ACK)),
                        XDP_TX,
                    ),
                );
                est_batch.push(k, batch(b, &client_syn(base, frames::TCP_ACK), XDP_TX));
                arp.push(
                    k,
                    single(
                        b,
                        (0..SINGLES).map(|i| {
                            frames::arp(
                                1,
                                CLIENT_MAC,
                                Ipv4Addr::from(0x0a00_0000u32 + i),
                                [0; 6],
                                VIP,
                            )
                        }),
                        XDP_TX,
                    ),
                );
                let other = frames::tcp4(
                    OUR_MAC,
                    CLIENT_MAC,
                    Ipv4Addr::new(10, 0, 0, 1),
                    Ipv4Addr::new(192, 0, 2, 55),
                    1000,
                    22,
                    frames::TCP_ACK,
                    b"",
                );
                pass.push(k, batch(b, &other, XDP_PASS));
                let mut lldp = frames::eth(OUR_MAC, CLIENT_MAC, 0x88cc);
                lldp.extend_from_slice(&[0u8; 46]);
                floor.push(k, batch(b, &lldp, XDP_PASS));
            }
        }
        drop(benches);
        rows.push(stats(
            "new flow: TCP SYN via Maglev",
            "single",
            backends,
            new_flow,
        ));
        rows.push(stats(
            "first packet after the SYN: FLOWS_NEW to the flow table",
            "single",
            backends,
            first,
        ));
        rows.push(stats(
            "established flow: flow table",
            "single",
            backends,
            est_single,
        ));
        rows.push(stats(
            "established flow: flow table",
            "batch",
            backends,
            est_batch,
        ));
        rows.push(stats("ARP reply for the VIP", "single", backends, arp));
        rows.push(stats("pass-through (not a VIP)", "batch", backends, pass));
        rows.push(stats(
            "floor: non-IP frame, parse and count only",
            "batch",
            backends,
            floor,
        ));
    }

    rows.extend(nat_rows(&objects));
    rows.extend(tunnel_rows(&objects));

    let md = report(&rows);
    let out = fo_tests::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("dataplane.md"), &md).expect("write report");
    std::fs::write(
        out.join("dataplane.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "baseline": std::env::var("FO_BENCH_BASELINE_REV").ok(),
            "rows": rows,
        }))
        .expect("json"),
    )
    .expect("write json");
    println!("{md}");
    println!("report: {}", out.join("dataplane.md").display());
}

fn report(rows: &[Row]) -> String {
    let mut md = String::from(
        "# Data plane: cost per packet (BPF_PROG_TEST_RUN, real object)\n\n\
         Kernel-measured time per program run, min / median / max over 5 runs. \
         `batch`: one frame, repeat 200,000. `single`: 2,000 distinct frames, repeat 1, median \
         (includes one test run's fixed cost; compare single with single).\n\n",
    );
    let baseline = rows.first().is_some_and(|r| r.baseline.is_some());
    if !baseline {
        md.push_str(
            "| case | method | backends | min ns | median ns | max ns |\n|---|---|---:|---:|---:|---:|\n",
        );
        for r in rows {
            md.push_str(&format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                r.case, r.method, r.backends, r.new.min_ns, r.new.median_ns, r.new.max_ns
            ));
        }
        return md;
    }
    let rev = std::env::var("FO_BENCH_BASELINE_REV").unwrap_or_else(|_| "baseline".into());
    md.push_str(&format!(
        "A/B in one run: `old` is the object built from `{rev}`, `new` this build's; the two \
         take turns run by run. Medians, with min–max. Δ: new − old of the medians.\n\n\
         | case | method | backends | old ns | new ns | Δ ns | Δ % |\n|---|---|---:|---:|---:|---:|---:|\n",
    ));
    for r in rows {
        let Some(old) = &r.baseline else { continue };
        let new = &r.new;
        let delta = new.median_ns - old.median_ns;
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} ({:.1}–{:.1}) | {:.1} ({:.1}–{:.1}) | {:+.1} | {:+.0} % |\n",
            r.case,
            r.method,
            r.backends,
            old.median_ns,
            old.min_ns,
            old.max_ns,
            new.median_ns,
            new.min_ns,
            new.max_ns,
            delta,
            100.0 * delta / old.median_ns,
        ));
    }
    md
}
