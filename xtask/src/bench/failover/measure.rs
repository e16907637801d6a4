//! The failover bench's measurement: one run (the fleet through a failure of node a and
//! its return), read from the fleet's and the sinks' reports.

use super::*;

impl Bench<'_> {
    /// The fleet's reset count in its last progress line.
    pub(super) fn fleet_resets(&self) -> anyhow::Result<u64> {
        let p = self.lab.fleet.as_ref().context("fleet")?;
        let lines = p.lock();
        let last = lines
            .iter()
            .rev()
            .find(|(_, l)| l.starts_with("fo-fleet: t="))
            .context("no progress line from the fleet")?;
        last.1
            .split_whitespace()
            .find_map(|w| w.strip_prefix("resets="))
            .and_then(|n| n.parse().ok())
            .context("no resets= in the fleet's progress line")
    }

    pub(super) fn one_run(&mut self, f: Failure, run: usize) -> anyhow::Result<RunResult> {
        let v = self.variant;
        match v.system {
            System::Fo if !v.nat => self.lab.start_sinks()?,
            System::Fo | System::Baseline => {
                self.lab.start_sinks_on(|_| format!("0.0.0.0:{PORT}"))?
            }
        }
        let args = crate::lab::fleet_args(AGENTS, RATE_PER_S, SOURCES, DRAIN, "2m");
        self.lab.start_fleet(&args)?;
        let fleet_start = SystemTime::now();
        let connected = format!("connected={AGENTS}/{AGENTS}");
        self.lab
            .fleet
            .as_mut()
            .context("fleet")?
            .wait_for_line(Duration::from_secs(15), |l| l.contains(&connected))
            .context("the fleet could not connect every agent through the VIP")?;
        std::thread::sleep(PRE);

        let failed = self.fail(f)?;
        let took = self.wait_state(1, "master", failed, Duration::from_secs(15))?;
        let takeover_ms = ms_between(failed, took);
        self.wait_whole(took)?;
        // The old master's return, the fleet still running.
        let fail_resets = self.fleet_resets()?;
        let restored = SystemTime::now();
        let back = self.restore(f)?;
        let preempt_ms = ms_between(restored, back);
        self.wait_whole(back)?;
        let stop = SystemTime::now();
        let fleet_report = self.lab.stop_fleet(DRAIN)?;
        let fleet_keep = self.lab.dir.join(format!("fleet-{}-{run}.json", f.key()));
        std::fs::rename(&fleet_report, &fleet_keep).context("keep the fleet report")?;
        self.lab.stop_sinks()?;
        let sink_reports = self.lab.last_sink_reports();
        let merged = self.lab.merge(&fleet_keep, &sink_reports)?;
        let sinks: Vec<Value> = sink_reports
            .iter()
            .map(|p| read_json(p))
            .collect::<anyhow::Result<_>>()?;
        let buckets = sum_timelines(&sinks);
        let gap = longest_empty_ms(&buckets, failed, restored);
        let return_gap = longest_empty_ms(&buckets, restored, stop);
        let fleet_doc = read_json(&fleet_keep)?;
        let restored_ns = restored
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let outage_max = |after: bool| {
            fleet_doc["outages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| (o["start_unix_ns"].as_u64().unwrap_or(0) >= restored_ns) == after)
                .filter_map(|o| o["duration_ms"].as_f64())
                .fold(0.0, f64::max)
        };
        let num = |k: &str| merged.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ms = |k: &str| merged.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let png = if run == 1 {
            let name = format!("failover-{}-{}.png", v.key, f.key());
            let rel = |t: SystemTime| ms_between(failed, t) / 1e3;
            let series: Vec<(f64, u64)> = buckets
                .iter()
                .map(|(&ns, &c)| (rel(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)), c))
                .collect();
            let markers = [
                Marker::new(0.0, format!("a failed ({})", f.key()), plot::RED),
                Marker::new(takeover_ms / 1e3, "b master", plot::GREEN),
                Marker::new(rel(restored), "a restored", plot::RED),
                Marker::new(rel(back), "a master again", plot::GREEN),
            ];
            let zoom_end = (takeover_ms / 1e3 + 1.5).max(2.0);
            let panels = [
                Panel::new("whole run", rel(fleet_start) - 0.2..rel(stop) + 0.2),
                Panel::new("around the failure", -0.5..zoom_end),
                Panel::new(
                    "around a's return",
                    rel(restored) - 0.5..(rel(back) + 1.5).max(rel(restored) + 2.0),
                ),
            ];
            let title = format!(
                "{} — {}: takeover {:.0} ms, gap {} ms, {} resets; a back: gap {} ms, {} resets",
                v.label,
                f.label(),
                takeover_ms,
                gap,
                fail_resets,
                return_gap,
                num("connections_reset").saturating_sub(fail_resets)
            );
            match plot::timeline_png(
                &self.out.join(&name),
                &plot::Timeline {
                    title: &title,
                    x_desc: "seconds since the failure",
                    y_desc: "events per 10 ms",
                    bucket_s: 0.01,
                    buckets: &series,
                    markers: &markers,
                    panels: &panels,
                },
            ) {
                Ok(()) => Some(name),
                Err(e) => {
                    eprintln!("failover: {name} not written: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        Ok(RunResult {
            run,
            takeover_ms,
            service_gap_ms: gap,
            max_silence_ms: ms("max_silence_ms"),
            connections_reset: fail_resets,
            sink_connections_rst: num("sink_connections_rst"),
            reconnects: num("reconnects"),
            events_sent: num("events_sent"),
            lost_acked: num("lost_acked"),
            lost_unacked: num("lost_unacked"),
            unacked_at_disconnect: num("unacked_at_disconnect"),
            recovery_ms: outage_max(false),
            preempt_ms,
            return_gap_ms: return_gap,
            return_resets: num("connections_reset").saturating_sub(fail_resets),
            return_recovery_ms: outage_max(true),
            png,
        })
    }

    /// Wait until the fleet is whole again after the takeover: two progress lines (one
    /// per second) at least 1 s after `took`, every agent connected, the reset count
    /// unchanged between them. At most `SETTLE_MAX`.
    pub(super) fn wait_whole(&mut self, took: SystemTime) -> anyhow::Result<()> {
        let from = took + Duration::from_secs(1);
        let deadline = Instant::now() + SETTLE_MAX;
        let want = format!("connected={AGENTS}/{AGENTS}");
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let p = self.lab.fleet.as_mut().context("fleet")?;
            if let Some(st) = p.exited() {
                bail!("fo-fleet exited ({st}):\n{}", p.tail(20));
            }
            let lines: Vec<String> = p
                .lock()
                .iter()
                .filter(|(at, l)| *at >= from && l.starts_with("fo-fleet: t="))
                .map(|(_, l)| l.clone())
                .collect();
            let resets = |l: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("resets="))
                    .map(str::to_owned)
            };
            if let [.., x, y] = lines.as_slice()
                && x.contains(&want)
                && y.contains(&want)
                && resets(x) == resets(y)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!(
                    "failover: the fleet is not whole {SETTLE_MAX:?} after the takeover; ending the run"
                );
                return Ok(());
            }
        }
    }
}
