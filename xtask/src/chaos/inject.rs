//! One fault of each kind injected into the lab (and undone), with what the run's state
//! must learn from it: when a node stopped and started being eligible, which backend's
//! sink was stopped, whether a reload was applied or refused.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::config::broken_config;
use super::faults::{Fault, Kind};
use super::state::Chaos;
use super::{EXTRA_PORT, PORT, PRIORITIES};
use crate::lab::Bins;
use crate::lab::config::XDP_MODE;

impl Chaos<'_> {
    pub(super) fn inject(&mut self, kind: Kind, bins: &Bins) -> anyhow::Result<Fault> {
        let nodes = self.lab.nodes.len();
        let mut f = Fault::new(kind);
        match kind {
            Kind::KillAgent => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                let at = self.lab.nodes[i].kill9()?;
                f.started = at;
                self.eligible[i].down(at);
                std::thread::sleep(self.rng.between_ms(200, 2000));
                let ready = self.lab.nodes[i].start(bins)?;
                self.eligible[i].up(ready);
                f.ended = ready;
            }
            Kind::LinkFlap => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                self.lab.nodes[i].ns.sh("ip link set eth0 down")?;
                std::thread::sleep(self.rng.between_ms(100, 1500));
                self.lab.nodes[i].ns.sh("ip link set eth0 up")?;
                f.ended = SystemTime::now();
                self.eligible[i].up(f.ended);
            }
            Kind::Partition => {
                let i = self.rng.below(nodes);
                let port = self.lab.nodes[i].port.clone();
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                // Out of the bridge, the port stays up (so does the node's link) but
                // forwards nothing either way.
                self.lab
                    .switch
                    .sh(&format!("ip link set {port} nomaster"))?;
                std::thread::sleep(self.rng.between_ms(500, 3000));
                self.lab
                    .switch
                    .sh(&format!("ip link set {port} master br0"))?;
                f.ended = SystemTime::now();
                self.eligible[i].up(f.ended);
            }
            Kind::StopBackend => {
                // Never b1: the agents it serves are the ones invariant (c) counts.
                let i = 1 + self.rng.below(self.lab.backends.len() - 1);
                f.target = format!("b{}", i + 1);
                f.started = SystemTime::now();
                self.stopped_backends[i] = true;
                self.lab.stop_sink(i)?;
                std::thread::sleep(self.rng.between_ms(500, 2000));
                self.lab.start_sink(i, &format!("0.0.0.0:{PORT}"))?;
                f.ended = SystemTime::now();
            }
            Kind::ReloadValid => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                self.extra[i] = !self.extra[i];
                self.write_config(i)?;
                f.started = SystemTime::now();
                let line = self.hup_and_wait(i, f.started)?;
                f.ended = SystemTime::now();
                if !line.contains("reloaded") {
                    self.problems.push(format!(
                        "a valid reload of {} was not applied: {line}",
                        f.target
                    ));
                    f.note = "NOT applied".into();
                } else {
                    f.note = format!(
                        "service {EXTRA_PORT} {}",
                        if self.extra[i] { "added" } else { "removed" }
                    );
                }
            }
            Kind::ReloadBroken => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                let text = broken_config(PRIORITIES[i].1, self.peer(i), &self.gates[i], &self.key);
                self.lab.nodes[i].write_config(XDP_MODE, &text)?;
                f.started = SystemTime::now();
                let line = self.hup_and_wait(i, f.started);
                // The good config goes back at once: a later restart reads it.
                self.write_config(i)?;
                let line = line?;
                f.ended = SystemTime::now();
                if line.contains("reload refused") {
                    f.note = "refused".into();
                } else {
                    self.problems.push(format!(
                        "a broken config was not refused by {}: {line}",
                        f.target
                    ));
                    f.note = "NOT refused".into();
                }
                if !self.lab.nodes[i].running() {
                    bail!("agent {} died on a broken config", f.target);
                }
            }
            Kind::GateFail => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                std::fs::remove_file(&self.gates[i])
                    .with_context(|| format!("remove {}", self.gates[i].display()))?;
                let check_is = |want: &'static str| {
                    move |l: &str| {
                        crate::lab::log_fields(l).is_some_and(|f| {
                            f.get("message").and_then(Value::as_str) == Some(want)
                                && f.get("target")
                                    .and_then(Value::as_str)
                                    .is_some_and(|t| t.contains("ready"))
                        })
                    }
                };
                // The gate must have closed (two failed probes) before the file returns.
                let p = self.lab.nodes[i].runs.last_mut().context("no agent run")?;
                p.wait_for_line_since(f.started, Duration::from_secs(5), check_is("down"))?;
                std::thread::sleep(self.rng.between_ms(0, 1500));
                let back = SystemTime::now();
                self.open_gate(i)?;
                // Eligible again once the agent has seen the check pass.
                let p = self.lab.nodes[i].runs.last_mut().context("no agent run")?;
                let (open, _) =
                    p.wait_for_line_since(back, Duration::from_secs(5), check_is("up"))?;
                f.ended = open;
                self.eligible[i].up(open);
                f.note = format!(
                    "gate open again {} ms after the file",
                    open.duration_since(back).unwrap_or_default().as_millis()
                );
            }
        }
        Ok(f)
    }

    /// SIGHUP node `i`'s agent; the log line that answered it (reloaded or refused).
    fn hup_and_wait(&mut self, i: usize, since: SystemTime) -> anyhow::Result<String> {
        let node = &mut self.lab.nodes[i];
        let p = node.runs.last_mut().context("no agent run")?;
        p.signal("HUP")?;
        let (_, line) = p.wait_for_line_since(since, Duration::from_secs(5), |l| {
            l.contains("reloaded ") || l.contains("reload refused")
        })?;
        Ok(line)
    }
}
