//! journald's native socket, played by a test: a datagram socket that a process run
//! through [`Journal::wrap`] finds at `/run/systemd/journal/socket` (in a private mount
//! namespace, so the host's journal is never touched), and a reader of the native
//! protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>):
//! - a datagram is a list of fields, each either `NAME=value\n`, or `NAME\n`, a
//!   64-bit little-endian length, the value's bytes (any, newlines too) and `\n`;
//! - an entry too big for a datagram comes as an empty datagram carrying a sealed
//!   memfd (SCM_RIGHTS) that holds the same list.

use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One journal entry: its fields in the order sent (a name may repeat).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub fields: Vec<(String, Vec<u8>)>,
    /// It came in a memfd, not in the datagram itself.
    pub via_memfd: bool,
}

impl std::fmt::Debug for Entry {
    /// Fields as text, long values cut, for test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v);
                let cut: String = v.chars().take(160).collect();
                format!("{n}={cut}{}", if cut.len() < v.len() { "…" } else { "" })
            })
            .collect();
        write!(
            f,
            "[{}]{}",
            fields.join(" "),
            if self.via_memfd { " (memfd)" } else { "" }
        )
    }
}

impl Entry {
    /// The first value of field `name`, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of field `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn message(&self) -> String {
        self.get("MESSAGE").unwrap_or_default()
    }

    pub fn priority(&self) -> Option<u8> {
        self.get("PRIORITY").and_then(|p| p.parse().ok())
    }
}

/// Parse one payload of the native protocol.
pub fn parse(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let nl = data.iter().position(|&b| b == b'\n').ok_or_else(|| {
            format!(
                "field without a newline: {:?}",
                String::from_utf8_lossy(data)
            )
        })?;
        let line = &data[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                line[eq + 1..].to_vec(),
            ));
            data = &data[nl + 1..];
            continue;
        }
        let name = String::from_utf8_lossy(line).into_owned();
        let rest = &data[nl + 1..];
        let len: [u8; 8] = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("field {name}: no length"))?;
        let len = usize::try_from(u64::from_le_bytes(len))
            .map_err(|_| format!("field {name}: length too big"))?;
        let value = rest
            .get(8..8 + len)
            .ok_or_else(|| format!("field {name}: {len} bytes announced, fewer sent"))?;
        if rest.get(8 + len) != Some(&b'\n') {
            return Err(format!("field {name}: no newline after its {len} bytes"));
        }
        fields.push((name, value.to_vec()));
        data = &rest[8 + len + 1..];
    }
    Ok(fields)
}

/// The journal socket of a test, removed on drop.
pub struct Journal {
    dir: PathBuf,
    socket: UnixDatagram,
    /// `wrap` found no /run/systemd on this machine (it is made, as a mount point
    /// for the private namespace, and removed on drop).
    made_run_systemd: std::sync::atomic::AtomicBool,
}

impl Journal {
    pub fn new() -> Journal {
        let dir = std::env::temp_dir().join(format!("fo-journal-{}", crate::netns::unique_tag()));
        std::fs::create_dir_all(&dir).expect("journal dir");
        let socket = UnixDatagram::bind(dir.join("socket")).expect("bind the journal socket");
        // An entry of a few hundred kB must fit in the receive buffer.
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt on our socket with a c_int option value.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Journal {
            dir,
            socket,
            made_run_systemd: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program` run in a private mount namespace where this journal's directory is
    /// `/run/systemd/journal` (tmpfs over `/run/systemd` there; the host's stays as it
    /// was). A host without /run/systemd gets it as an empty mount point until this
    /// journal is dropped (after the program: drop the program's guard first).
    pub fn wrap(&self, program: &Path) -> Command {
        if !Path::new(RUN_SYSTEMD).exists() {
            self.made_run_systemd
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mkdir -p /run/systemd && mount -t tmpfs fo-journal /run/systemd && \
                 mkdir /run/systemd/journal && mount --bind \"$0\" /run/systemd/journal && \
                 exec \"$@\"",
            )
            .arg(&self.dir)
            .arg(program);
        c
    }

    /// Every entry that arrives until none has come for `quiet` (or `max` passed).
    pub fn receive(&self, quiet: Duration, max: Duration) -> Vec<Entry> {
        let started = Instant::now();
        let mut out = Vec::new();
        self.socket
            .set_read_timeout(Some(quiet))
            .expect("read timeout");
        while started.elapsed() < max {
            match self.receive_one() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => panic!("reading the journal socket: {e}"),
            }
        }
        out
    }

    /// One datagram: an entry, or `None` for an empty one (a logger's "are you there").
    fn receive_one(&self) -> std::io::Result<Option<Entry>> {
        let mut buf = vec![0u8; 4 << 20];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one cmsg with a few fds, aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: a zeroed msghdr is valid; we point it at buffers we own.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: recvmsg writes within the iovec and control buffers described above.
        let n = unsafe {
            libc::recvmsg(
                self.socket.as_raw_fd(),
                &raw mut msg,
                libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut memfd = None;
        // SAFETY: walking the control messages the kernel wrote into `msg`.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    memfd = Some(OwnedFd::from_raw_fd(fd));
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        let (payload, via_memfd) = match memfd {
            Some(fd) => {
                let mut f = std::fs::File::from(fd);
                // The sender's writes moved the shared offset to the end.
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
                let mut data = Vec::new();
                f.read_to_end(&mut data)?;
                (data, true)
            }
            None => (buf[..n as usize].to_vec(), false),
        };
        if payload.is_empty() {
            return Ok(None);
        }
        let fields = parse(&payload).unwrap_or_else(|e| {
            panic!(
                "not the native journal protocol ({e}): {:?}",
                String::from_utf8_lossy(&payload)
            )
        });
        Ok(Some(Entry { fields, via_memfd }))
    }
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self
            .made_run_systemd
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Empty unless something else made it since: then it stays.
            let _ = std::fs::remove_dir(RUN_SYSTEMD);
        }
    }
}

const RUN_SYSTEMD: &str = "/run/systemd";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_field_forms_are_read() {
        let mut d = b"PRIORITY=3\nMESSAGE\n".to_vec();
        d.extend_from_slice(&5u64.to_le_bytes());
        d.extend_from_slice(b"a\nb=c\n");
        d.extend_from_slice(b"FO_ROUTER=wazuh\n");
        let f = parse(&d).expect("parses");
        assert_eq!(
            f,
            vec![
                ("PRIORITY".to_string(), b"3".to_vec()),
                ("MESSAGE".to_string(), b"a\nb=c".to_vec()),
                ("FO_ROUTER".to_string(), b"wazuh".to_vec()),
            ]
        );
        assert!(
            parse(b"MESSAGE\n\x05\0\0\0\0\0\0\0ab").is_err(),
            "short value"
        );
        assert!(parse(b"PRIORITY=3").is_err(), "no newline");
    }
}
