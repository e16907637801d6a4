//! The run's state: the lab, per node when it was healthy and eligible, the faults so
//! far, the NAT fleet and the observer; and the few moves every part makes (a node's
//! config written, its gate opened).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use super::PRIORITIES;
use super::config::config;
use super::faults::{Fault, Rng};
use super::verdict::Span;
use crate::lab::config::XDP_MODE;
use crate::lab::{Lab, Proc, unix_ns};

/// Per node: whether it is healthy and eligible now, and its windows so far.
#[derive(Debug, Default)]
pub(super) struct Eligibility {
    pub(super) since: Option<u64>,
    pub(super) spans: Vec<Span>,
}

impl Eligibility {
    pub(super) fn up(&mut self, at: SystemTime) {
        self.since.get_or_insert(unix_ns(at));
    }
    pub(super) fn down(&mut self, at: SystemTime) {
        if let Some(from_ns) = self.since.take() {
            self.spans.push(Span {
                from_ns,
                to_ns: unix_ns(at).max(from_ns),
            });
        }
    }
}

pub(super) struct Chaos<'l> {
    pub(super) lab: &'l mut Lab,
    pub(super) rng: Rng,
    pub(super) duration: Duration,
    pub(super) eligible: Vec<Eligibility>,
    /// Backends whose sink was stopped at some point.
    pub(super) stopped_backends: Vec<bool>,
    /// Per node: is the extra service in its config now.
    pub(super) extra: Vec<bool>,
    /// Per node: the file its gate checks.
    pub(super) gates: Vec<PathBuf>,
    /// The sync's key file.
    pub(super) key: PathBuf,
    pub(super) faults: Vec<Fault>,
    /// The fleet of the NAT service (the lab's own fleet is the DSR one).
    pub(super) nat_fleet: Option<Proc>,
    pub(super) observer: Option<(Proc, Proc)>,
    pub(super) observer_mac: String,
    pub(super) problems: Vec<String>,
}

impl<'l> Chaos<'l> {
    pub(super) fn new(
        lab: &'l mut Lab,
        seed: u64,
        duration: Duration,
    ) -> anyhow::Result<Chaos<'l>> {
        let n = lab.nodes.len();
        let b = lab.backends.len();
        let gates = lab
            .nodes
            .iter()
            .map(|n| n.config.with_file_name(format!("ready-{}", n.name)))
            .collect();
        let key = lab.dir.join("sync.key");
        Ok(Chaos {
            lab,
            rng: Rng::new(seed),
            duration,
            eligible: (0..n).map(|_| Eligibility::default()).collect(),
            stopped_backends: vec![false; b],
            extra: vec![false; n],
            gates,
            key,
            faults: Vec::new(),
            nat_fleet: None,
            observer: None,
            observer_mac: String::new(),
            problems: Vec::new(),
        })
    }

    pub(super) fn peer(&self, i: usize) -> Ipv4Addr {
        self.lab.nodes[(i + 1) % self.lab.nodes.len()].addr
    }

    pub(super) fn write_config(&mut self, i: usize) -> anyhow::Result<()> {
        let text = config(
            PRIORITIES[i].1,
            self.peer(i),
            self.extra[i],
            &self.gates[i],
            &self.key,
        );
        self.lab.nodes[i].write_config(XDP_MODE, &text)
    }

    pub(super) fn open_gate(&self, i: usize) -> anyhow::Result<()> {
        std::fs::write(&self.gates[i], "ready\n")
            .with_context(|| format!("write {}", self.gates[i].display()))
    }
}
