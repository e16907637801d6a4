//! A lab process whose stdout and stderr are read line by line, each line timestamped
//! as it arrives.

use std::io::{BufRead as _, BufReader, Read};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fo_lab::locks::lock;

use crate::netns::ChildGuard;

/// Lines of a process's stdout and stderr, each with the instant it arrived.
pub type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// A child process whose output is read as it comes.
pub struct Proc {
    pub guard: ChildGuard,
    pub log: Log,
}

impl Proc {
    pub fn spawn(what: &str, cmd: Command) -> Proc {
        let mut guard = ChildGuard::spawn(what, cmd);
        let log: Log = Arc::default();
        let child = guard.child.as_mut().expect("just spawned");
        if let Some(out) = child.stdout.take() {
            reader(out, log.clone());
        }
        if let Some(err) = child.stderr.take() {
            reader(err, log.clone());
        }
        Proc { guard, log }
    }

    pub fn text(&self) -> String {
        let log = lock(&self.log);
        log.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn reader(stream: impl Read + Send + 'static, log: Log) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            lock(&log).push((now, strip_ansi(&line)));
        }
    });
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            strip_ansi("\x1b[2mtime\x1b[0m \x1b[32m INFO\x1b[0m x"),
            "time  INFO x"
        );
    }
}
