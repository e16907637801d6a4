//! `cargo xtask fuzz [TARGET…] --seconds N`: run each libFuzzer target for a bounded
//! time with cargo-fuzz. A crash (a panic, a sanitizer report, a broken contract) fails
//! the run and names the saved input.
//!
//! Each target lives in its own cargo-fuzz workspace beside the crate it tests; its seed
//! corpus is in the repository (read only during a run), what libFuzzer finds goes to
//! `target/fuzz/corpus/<target>/`, crashes to `target/fuzz/artifacts/<target>/`.
//!
//! Toolchain: the pinned 1.98.0 with `RUSTC_BOOTSTRAP=1` (cargo-fuzz passes `-Z` flags);
//! its x86_64 standard library ships the AddressSanitizer runtime, so the default
//! `--sanitizer address` works on the pinned stable compiler.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::lab::target_dir;
use crate::setup::TOOLCHAIN;
use crate::util::{root, show};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `fo_vrrp::decode` on any bytes (fo-vrrp/fuzz).
    VrrpDecode,
    /// `fo_vrrp::auth::open` and `decode_authenticated`, the harness holding the key:
    /// sealed adverts open, tampered ones never do (fo-vrrp/fuzz).
    VrrpAuth,
    /// `fo_config::Config::parse` on any text (fo-config/fuzz).
    ConfigParse,
    /// Any frame through the real XDP program (BPF_PROG_TEST_RUN; needs root) (tests/fuzz).
    Xdp,
    /// Any frame through the real XDP program's NAT, which must keep checksums valid and
    /// change only addresses, ports and MACs (needs root) (tests/fuzz).
    XdpNat,
    /// `fo_import` on any keepalived.conf text: no panic, no hang, valid output (fo-import/fuzz).
    KeepalivedImport,
    /// The sync's wire codec and replay guard, the harness holding the key (fo-agent/fuzz).
    SyncCodec,
    /// The control socket's request line (fo-agent/fuzz).
    ControlRequest,
    /// The metrics endpoint's HTTP request head (fo-agent/fuzz).
    MetricsHead,
    /// BIRD's control-socket replies (fo-agent/fuzz).
    BirdReply,
}

impl Target {
    /// In the order `cargo xtask test` runs them: those sharing a build directory run
    /// one after the other.
    pub const ALL: [Target; 10] = [
        Target::VrrpDecode,
        Target::VrrpAuth,
        Target::ConfigParse,
        Target::KeepalivedImport,
        Target::Xdp,
        Target::XdpNat,
        Target::SyncCodec,
        Target::ControlRequest,
        Target::MetricsHead,
        Target::BirdReply,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::VrrpDecode => "vrrp-decode",
            Target::VrrpAuth => "vrrp-auth",
            Target::ConfigParse => "config-parse",
            Target::Xdp => "xdp",
            Target::XdpNat => "xdp-nat",
            Target::KeepalivedImport => "keepalived-import",
            Target::SyncCodec => "sync-codec",
            Target::ControlRequest => "control-request",
            Target::MetricsHead => "metrics-head",
            Target::BirdReply => "bird-reply",
        }
    }

    /// The cargo-fuzz workspace, the target's name in it, and its seed corpus.
    fn place(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Target::VrrpDecode => ("fo-vrrp/fuzz", "decode", "corpus/decode"),
            Target::VrrpAuth => ("fo-vrrp/fuzz", "auth", "corpus/auth"),
            Target::ConfigParse => ("fo-config/fuzz", "parse", "corpus/parse"),
            Target::Xdp => ("tests/fuzz", "xdp", "corpus/xdp"),
            Target::XdpNat => ("tests/fuzz", "xdp-nat", "corpus/xdp-nat"),
            Target::KeepalivedImport => ("fo-import/fuzz", "keepalived", "corpus/keepalived"),
            Target::SyncCodec => ("fo-agent/fuzz", "sync-codec", "corpus/sync-codec"),
            Target::ControlRequest => {
                ("fo-agent/fuzz", "control-request", "corpus/control-request")
            }
            Target::MetricsHead => ("fo-agent/fuzz", "metrics-head", "corpus/metrics-head"),
            Target::BirdReply => ("fo-agent/fuzz", "bird-reply", "corpus/bird-reply"),
        }
    }

    /// The cargo target directory under `target/fuzz/build/`. Targets of one workspace
    /// share one; so do workspaces built with the same compiler flags and the same
    /// locked versions of what they share, the second building only its own crates:
    /// config and import (fo-config, serde, toml), and the XDP and agent targets
    /// (fo-agent and its whole tree, by far the longest build: every package
    /// `fo-agent/fuzz`'s Cargo.lock shares with `tests/fuzz`'s has the same version).
    fn build_dir(self) -> &'static str {
        match self {
            Target::VrrpDecode | Target::VrrpAuth => "vrrp",
            Target::ConfigParse | Target::KeepalivedImport => "config",
            Target::Xdp
            | Target::XdpNat
            | Target::SyncCodec
            | Target::ControlRequest
            | Target::MetricsHead
            | Target::BirdReply => "agent",
        }
    }

    /// How long `cargo xtask test` fuzzes the target. 60 s, but 30 s for the small
    /// line and head readers (control-request, metrics-head, bird-reply): a few dozen
    /// branches of ours each, whose coverage (libFuzzer's `cov`, serde_json's and
    /// tokio's included) grew by 3 % or less over the second half of a 30 s run from the
    /// seeds when measured; a second half-minute would buy little but CI time.
    pub fn ci_seconds(self) -> u64 {
        match self {
            Target::ControlRequest | Target::MetricsHead | Target::BirdReply => 30,
            _ => 60,
        }
    }

    /// libFuzzer options beyond the time limit. A hang is a failure: no input may take
    /// 10 s.
    fn options(self) -> &'static [&'static str] {
        match self {
            Target::VrrpDecode | Target::VrrpAuth => &["-max_len=1024", "-timeout=10"],
            Target::ConfigParse => &["-max_len=8192", "-timeout=10"],
            // An Ethernet frame of MTU 1500 (the harness ignores longer inputs), and
            // the NAT target's mode byte.
            Target::Xdp => &["-max_len=1514", "-timeout=10"],
            Target::XdpNat => &["-max_len=1515", "-timeout=10"],
            Target::KeepalivedImport => &["-max_len=16384", "-timeout=10"],
            // A few datagrams of up to 1,400 bytes.
            Target::SyncCodec => &["-max_len=4096", "-timeout=10"],
            // Past the 64 KiB line cap and the 8 KiB head cap.
            Target::ControlRequest => &["-max_len=70000", "-timeout=10"],
            Target::MetricsHead => &["-max_len=12000", "-timeout=10"],
            Target::BirdReply => &["-max_len=8192", "-timeout=10"],
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Which targets (default: all).
    #[arg(value_enum)]
    pub targets: Vec<Target>,
    /// How long to fuzz each target (default: each target's CI time, 30 or 60 s).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// More libFuzzer options, after `--` (e.g. `-- -jobs=2 -rss_limit_mb=4096`).
    #[arg(last = true)]
    pub libfuzzer: Vec<String>,
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let targets: Vec<Target> = if opts.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        opts.targets.clone()
    };
    let mut summary = Vec::new();
    let all = Instant::now();
    for t in targets {
        let seconds = opts.seconds.unwrap_or(t.ci_seconds());
        let started = Instant::now();
        let execs = fuzz_one(t, seconds, &opts.libfuzzer)?;
        summary.push(format!(
            "  {:<17} {seconds} s of fuzzing, {} runs ({}/s), no crash ({:.0} s with the build)",
            t.name(),
            execs.map_or_else(|| "?".into(), |n| n.to_string()),
            execs.map_or_else(|| "?".into(), |n| (n / seconds.max(1)).to_string()),
            started.elapsed().as_secs_f64()
        ));
    }
    println!(
        "fuzz ({:.0} s in all):\n{}",
        all.elapsed().as_secs_f64(),
        summary.join("\n")
    );
    Ok(())
}

/// Build and run one target; returns the number of runs libFuzzer reported.
fn fuzz_one(t: Target, seconds: u64, extra: &[String]) -> anyhow::Result<Option<u64>> {
    let (dir, bin, seeds) = t.place();
    let work = root().join(dir);
    let out = target_dir().join("fuzz");
    let corpus = out.join("corpus").join(t.name());
    let artifacts = out.join("artifacts").join(t.name());
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let before = listing(&artifacts);
    let log = out.join(format!("{}.log", t.name()));
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&work)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", out.join("build").join(t.build_dir()))
        .args(["run", TOOLCHAIN, "cargo", "fuzz", "run", bin])
        .arg(&corpus)
        .arg(seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .args(t.options())
        .args(extra);
    eprintln!("+ (in {dir}) {}", show(&cmd));
    // libFuzzer writes its progress to stderr; keep a copy for the run count and for
    // the failure message.
    let status = tee_stderr(&mut cmd, &log)?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let new: Vec<PathBuf> = listing(&artifacts)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let named = new
            .iter()
            .map(|p| format!("  {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "fuzz target {} failed ({status}); log {}\n{}\nreproduce: cd {dir} && RUSTC_BOOTSTRAP=1 cargo +{TOOLCHAIN} fuzz run {bin} CRASH_INPUT",
            t.name(),
            log.display(),
            if new.is_empty() {
                "no artifact was written (a build or setup failure? see the log)".to_owned()
            } else {
                format!("crash input(s):\n{named}")
            }
        );
    }
    Ok(runs(&text))
}

/// Run `cmd` with its stderr copied to the terminal and to `log`.
fn tee_stderr(cmd: &mut Command, log: &Path) -> anyhow::Result<std::process::ExitStatus> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {}", show(cmd)))?;
    let mut file =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).split(b'\n') {
            let Ok(line) = line else { break };
            let _ = std::io::stderr().write_all(&line);
            let _ = std::io::stderr().write_all(b"\n");
            let _ = file.write_all(&line);
            let _ = file.write_all(b"\n");
        }
    }
    child.wait().context("wait for cargo fuzz")
}

/// `stat::number_of_executed_units: N` from libFuzzer's final stats.
fn runs(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}
