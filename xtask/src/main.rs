//! `cargo xtask`: fo's build, test, demo and benchmark orchestration. It holds no
//! product logic, and depends on nothing of the product, so that `setup` can run on a
//! machine that cannot build the product yet.

mod bench;
mod chaos;
mod demo;
mod fuzz;
mod lab;
mod package;
mod package_test;
mod setup;
mod test;
mod util;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "cargo xtask", about = "fo's developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, clap::Subcommand)]
enum Task {
    /// Install everything a fresh Debian 12 machine lacks (idempotent).
    Setup,
    /// Build every crate (debug), including the XDP object.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, start a two-node fo lab in network namespaces with three backends and a
    /// 300-agent fleet, kill the master, bring it back; print the timeline and figures
    /// (target/demo/demo.json, target/demo/timeline.png).
    Demo,
    /// Run every test: unit, golden, BPF_PROG_TEST_RUN tables, network namespaces; then
    /// 30-60 s of fuzzing per target and a 2-minute chaos run (both skipped with a filter).
    Test {
        /// Only tests whose name contains this (passed to the test binaries).
        filter: Option<String>,
        /// Skip the setup step (when you know the machine is ready).
        #[arg(long)]
        no_setup: bool,
    },
    /// Random faults (agent kill -9, link flap, partition, backend stop, good and bad
    /// reloads) on the two-node lab under the fleet; fails if an invariant breaks.
    /// Report: target/chaos/report.{md,json}.
    Chaos {
        #[command(flatten)]
        opts: chaos::Opts,
        /// Skip the setup step.
        #[arg(long)]
        no_setup: bool,
    },
    /// Fuzz for a bounded time: the VRRP decoder, the config parser, the XDP program
    /// (BPF_PROG_TEST_RUN). A crash fails and names the saved input.
    Fuzz {
        #[command(flatten)]
        opts: fuzz::Opts,
        /// Skip the setup step.
        #[arg(long)]
        no_setup: bool,
    },
    /// The Debian package: target/debian/fo_<version>_<arch>.deb (cargo-deb; arm64 is
    /// cross-built, and its binary runs under qemu-user to write the man pages).
    Package {
        #[arg(long, value_enum, default_value = "amd64")]
        arch: package::Arch,
        /// Skip the setup step.
        #[arg(long)]
        no_setup: bool,
    },
    /// The Debian packages (amd64, arm64) checked as an operator gets them: lintian,
    /// install into a clean Debian 12 root (debootstrap, cached), arm64 under qemu-user,
    /// the unit's exposure beside keepalived's and haproxy's. Part of `test`.
    TestPackage {
        /// Skip the setup step.
        #[arg(long)]
        no_setup: bool,
    },
    /// Benchmarks, fo against keepalived + HAProxy on the same lab; report written to
    /// target/bench/report.{md,json} (PNGs and generated configs beside it).
    Bench {
        /// Which benchmark (default: all).
        #[arg(value_enum)]
        which: Option<bench::BenchKind>,
        #[command(flatten)]
        opts: bench::Opts,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build { release } => {
            setup::run()?;
            test::build(release)
        }
        Task::Demo => {
            setup::run()?;
            demo::run()
        }
        Task::Test { filter, no_setup } => {
            if !no_setup {
                setup::run()?;
            }
            test::run(filter.as_deref())
        }
        Task::Chaos { opts, no_setup } => {
            if !no_setup {
                setup::run()?;
            }
            chaos::run(&opts)
        }
        Task::Fuzz { opts, no_setup } => {
            if !no_setup {
                setup::run()?;
            }
            fuzz::run(&opts)
        }
        Task::Package { arch, no_setup } => {
            if !no_setup {
                setup::run()?;
            }
            package::run(arch).map(drop)
        }
        Task::TestPackage { no_setup } => {
            if !no_setup {
                setup::run()?;
            }
            package_test::run()
        }
        Task::Bench { which, opts } => {
            setup::run()?;
            bench::run(which, &opts)
        }
    }
}
