//! fo-natfill: put made-up NAT connections into an agent's pinned tables (see
//! `fo_tests::natfill`), for benchmarks and tests of the sync at scale.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::Parser;

/// Write COUNT established NAT connections to VIP:1514 into the NAT tables pinned in
/// PIN_DIR (the agent's `bpf_dir`).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The agent's `bpf_dir`.
    #[arg(long)]
    pin_dir: PathBuf,
    #[arg(long)]
    vip: Ipv4Addr,
    /// The SNAT address the connections are translated from.
    #[arg(long)]
    snat: Ipv4Addr,
    /// Number of the first connection (clients are numbered from 10.200.0.0).
    #[arg(long, default_value_t = 0)]
    first: u32,
    #[arg(long)]
    count: u32,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let started = std::time::Instant::now();
    fo_tests::natfill::Fill {
        vip: a.vip.octets(),
        snat: a.snat.octets(),
        first: a.first,
        count: a.count,
    }
    .write(&a.pin_dir)?;
    println!(
        "wrote {} NAT connections into {} in {:.1} s",
        a.count,
        a.pin_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
