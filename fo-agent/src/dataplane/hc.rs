//! Health checks through the tunnel, the load balancer's side: load [`HC_OBJECT`]
//! (a TC classifier of its own object), set its mark range and attach it with tcx
//! to the egress of the interface the probes leave by, pinned as `hclink_IFNAME`
//! in the agent's pin directory so that a restart does not drop it (and
//! `remove_all_pins` removes it with the XDP program's link).
//!
//! The program encapsulates only packets whose mark lies in the range (the probes
//! of tunnel services' backends, see `health::probe::tunnel_mark`); everything else
//! leaves untouched. It keeps no state: its one map is its counters.

use std::path::{Path, PathBuf};

use aya::programs::SchedClassifier;
use aya::programs::links::{FdLink, LinkOrder};
use aya::programs::tc::{SchedClassifierLink, TcAttach, TcAttachType};

use super::loader::{ensure_bpffs, ifindex};
use super::{DataplaneError, Result, program_err};

/// The health-check encapsulation program, built from `fo-ebpf` (binary `fo-hc`).
pub static HC_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fo-hc"));
/// Name of the TC program in [`HC_OBJECT`].
pub const HC_PROGRAM: &str = "fo_hc";
/// The global holding the mark range's base (u32; 0 = encapsulate nothing).
pub const HC_MARK_GLOBAL: &str = "HC_MARK_BASE_CFG";

/// What [`attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    New,
    /// The pinned link of an earlier run now runs this build's program.
    Replaced,
}

/// Prefix of the link pins (`hclink_IFNAME`): not `link_`, which names the XDP
/// program's interfaces (`fo-agent detach` waits for those).
pub const LINK_PREFIX: &str = "hclink_";

/// Where the link of `interface` is pinned.
pub fn link_pin(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join(format!("{LINK_PREFIX}{interface}"))
}

/// The program loaded with a mark base (not attached), for BPF_PROG_TEST_RUN: the
/// frame tests.
pub struct TestRunner {
    ebpf: aya::Ebpf,
}

impl TestRunner {
    pub fn new(mark_base: u32) -> Result<TestRunner> {
        let base = mark_base & fo_common::HC_MARK_MASK;
        let mut ebpf = aya::EbpfLoader::new()
            .override_global(HC_MARK_GLOBAL, &base, true)
            .load(HC_OBJECT)
            .map_err(DataplaneError::Load)?;
        program(&mut ebpf)?
            .load()
            .map_err(program_err("load the health-check program"))?;
        Ok(TestRunner { ebpf })
    }

    /// Run the program once on `frame` as a packet carrying `mark`: its return code
    /// and the frame it leaves.
    pub fn run(&mut self, frame: &[u8], mark: u32) -> Result<(u32, Vec<u8>)> {
        let prog = program(&mut self.ebpf)?;
        // `struct __sk_buff` up to `mark`: `len` and `pkt_type` must be zero.
        let mut ctx = [0u8; 12];
        ctx[8..].copy_from_slice(&mark.to_ne_bytes());
        let room = frame.len() + 128;
        let mut out = vec![0u8; room];
        let opts = aya::programs::TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        use aya::programs::TestRun as _;
        let result = prog
            .test_run(opts)
            .map_err(program_err("BPF_PROG_TEST_RUN"))?;
        out.truncate((result.data_size_out as usize).min(room));
        Ok((result.return_value, out))
    }
}

fn program(ebpf: &mut aya::Ebpf) -> Result<&mut SchedClassifier> {
    ebpf.program_mut(HC_PROGRAM)
        .ok_or(DataplaneError::Invalid {
            what: "health-check object (no program fo_hc)",
        })?
        .try_into()
        .map_err(program_err("not a TC program"))
}

/// Load the program with `mark_base` (low 16 bits ignored) and attach it to the
/// egress of `interface`, or swap it into the link an earlier run pinned.
pub fn attach(pin_dir: &Path, interface: &str, mark_base: u32) -> Result<Attached> {
    let index = ifindex(interface)?;
    ensure_bpffs(pin_dir)?;
    std::fs::create_dir_all(pin_dir).map_err(|source| DataplaneError::Io {
        what: "creating",
        path: pin_dir.to_owned(),
        source,
    })?;
    let base = mark_base & fo_common::HC_MARK_MASK;
    let mut ebpf = aya::EbpfLoader::new()
        .override_global(HC_MARK_GLOBAL, &base, true)
        .load(HC_OBJECT)
        .map_err(DataplaneError::Load)?;
    let prog: &mut SchedClassifier = ebpf
        .program_mut(HC_PROGRAM)
        .ok_or(DataplaneError::Invalid {
            what: "health-check object (no program fo_hc)",
        })?
        .try_into()
        .map_err(program_err("not a TC program"))?;
    prog.load()
        .map_err(super::load_err("load the health-check program"))?;
    let pin = link_pin(pin_dir, interface);
    if let Some(old) = super::pinned_link::<SchedClassifierLink>(&pin)? {
        let id = prog.attach_to_link(old).map_err(program_err(
            "replace the health-check program in its pinned link",
        ))?;
        drop(prog.take_link(id));
        return Ok(Attached::Replaced);
    }
    let id = prog
        .attach(
            index,
            TcAttach::Tcx {
                attach_type: TcAttachType::Egress,
                order: LinkOrder::default(),
            },
        )
        .map_err(program_err("attach the health-check program (tcx egress)"))?;
    let owned = prog
        .take_link(id)
        .map_err(program_err("take the health-check link"))?;
    let fd: FdLink = owned.try_into().map_err(|source| DataplaneError::Link {
        path: pin.clone(),
        source,
    })?;
    fd.pin(&pin).map_err(|source| DataplaneError::Pin {
        path: pin.clone(),
        source,
    })?;
    Ok(Attached::New)
}

/// Remove the pinned link at `pin_dir`/`hclink_IFNAME` (which unloads the
/// program). Returns whether there was one.
pub fn detach(pin_dir: &Path, interface: &str) -> Result<bool> {
    let pin = link_pin(pin_dir, interface);
    match std::fs::remove_file(&pin) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DataplaneError::Io {
            what: "removing",
            path: pin,
            source,
        }),
    }
}
