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
    /// `fo_config::Config::parse` on any text (fo-config/fuzz).
    ConfigParse,
    /// Any frame through the real XDP program (BPF_PROG_TEST_RUN; needs root) (tests/fuzz).
    Xdp,
    /// `fo_import` on any keepalived.conf text: no panic, no hang, valid output (fo-import/fuzz).
    KeepalivedImport,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::VrrpDecode,
        Target::ConfigParse,
        Target::Xdp,
        Target::KeepalivedImport,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::VrrpDecode => "vrrp-decode",
            Target::ConfigParse => "config-parse",
            Target::Xdp => "xdp",
            Target::KeepalivedImport => "keepalived-import",
        }
    }

    /// The cargo-fuzz workspace, the target's name in it, and its seed corpus.
    fn place(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Target::VrrpDecode => ("fo-vrrp/fuzz", "decode", "corpus/decode"),
            Target::ConfigParse => ("fo-config/fuzz", "parse", "corpus/parse"),
            Target::Xdp => ("tests/fuzz", "xdp", "corpus/xdp"),
            Target::KeepalivedImport => ("fo-import/fuzz", "keepalived", "corpus/keepalived"),
        }
    }

    /// The cargo target directory under `target/fuzz/build/`. The config and import
    /// targets share one (same compiler flags, the same locked versions of fo-config,
    /// serde, toml and libfuzzer-sys): the second builds only its own crates.
    fn build_dir(self) -> &'static str {
        match self {
            Target::VrrpDecode => "vrrp-decode",
            Target::ConfigParse | Target::KeepalivedImport => "config",
            Target::Xdp => "xdp",
        }
    }

    /// libFuzzer options beyond the time limit.
    fn options(self) -> &'static [&'static str] {
        match self {
            Target::VrrpDecode => &["-max_len=1024"],
            Target::ConfigParse => &["-max_len=8192"],
            // An Ethernet frame of MTU 1500 (the harness ignores longer inputs).
            Target::Xdp => &["-max_len=1514"],
            // A hang is a failure: any input must be read in well under 10 s.
            Target::KeepalivedImport => &["-max_len=16384", "-timeout=10"],
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Which targets (default: all).
    #[arg(value_enum)]
    pub targets: Vec<Target>,
    /// How long to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
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
    for t in targets {
        let started = Instant::now();
        let execs = fuzz_one(t, opts.seconds, &opts.libfuzzer)?;
        summary.push(format!(
            "  {:<13} {} s of fuzzing, {} runs, no crash ({:.0} s with the build)",
            t.name(),
            opts.seconds,
            execs.map_or_else(|| "?".into(), |n| n.to_string()),
            started.elapsed().as_secs_f64()
        ));
    }
    println!("fuzz:\n{}", summary.join("\n"));
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
