//! The step timings of a run: wall time and the CPU time of the commands it ran.

use std::time::Instant;

/// Wall time and the CPU time of the commands run (children waited for), per step:
/// on a shared machine the CPU seconds tell what a step costs better than the wall time.
pub(super) struct Clock {
    laps: Vec<(&'static str, f64, f64)>,
    wall: Instant,
    cpu: f64,
}

impl Clock {
    pub(super) fn start() -> Clock {
        Clock {
            laps: Vec::new(),
            wall: Instant::now(),
            cpu: children_cpu(),
        }
    }

    /// End the step `what` (and say so at once: a failed run still shows its steps).
    pub(super) fn lap(&mut self, what: &'static str) {
        let (wall, cpu) = (self.wall.elapsed().as_secs_f64(), children_cpu() - self.cpu);
        eprintln!("package test: {what}: {wall:.1} s, CPU {cpu:.1} s");
        self.laps.push((what, wall, cpu));
        self.wall = Instant::now();
        self.cpu = children_cpu();
    }

    pub(super) fn table(&self) -> String {
        let mut t = format!("\n{:<20} {:>8} {:>8}\n", "seconds", "wall", "CPU");
        let (mut wall, mut cpu) = (0.0, 0.0);
        for (what, w, c) in &self.laps {
            t.push_str(&format!("  {what:<18} {w:8.1} {c:8.1}\n"));
            wall += w;
            cpu += c;
        }
        t.push_str(&format!("  {:<18} {wall:8.1} {cpu:8.1}\n", "total"));
        t
    }
}

/// User and system CPU seconds of this process's waited-for children so far
/// (/proc/self/stat cutime and cstime, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // cutime and cstime are fields 16 and 17, i.e. 14 and 15 after field 2.
    (f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)) / 100.0
}
