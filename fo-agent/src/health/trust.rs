//! Who may change a file the agent trusts (an https check's `ca`, `cert` and `key`).
//!
//! A CA file is a trust anchor and a client key an identity: whoever can rewrite either
//! decides what the check accepts or who it claims to be. So such a file, and every
//! directory on the way to it (as named, and as its symlinks resolve), must be:
//! - owned by root or by the user the agent runs as;
//! - not writable by a group other than root's, nor by others, except a directory
//!   with the sticky bit (as /tmp), where nobody can replace a file they do not own.
//!
//! Private keys may also not be read by others, nor by a group other than root or
//! Debian's `ssl-cert` (the convention for keys shared with daemons: 0640 root:ssl-cert).
//!
//! The rules are checked on metadata only (the caller opened the file itself), so
//! `fo-agent check` as root and the agent under its unit (as root without
//! CAP_DAC_OVERRIDE) judge a file alike.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The one group besides root's that may read a private key.
pub const KEY_GROUP: &str = "ssl-cert";

/// Why a file (or a directory on the way to it) is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error(
        "owned by uid {owner}, who could change it; it must be owned by root (or the agent's user, uid {euid})"
    )]
    Owner { owner: u32, euid: u32 },
    #[error("mode {mode:04o} lets {who} change it")]
    Writable { mode: u32, who: String },
    #[error("directory {}: owned by uid {owner}, who could replace what it holds", dir.display())]
    DirOwner { dir: PathBuf, owner: u32 },
    #[error("directory {}: mode {mode:04o} lets {who} replace what it holds", dir.display())]
    DirWritable {
        dir: PathBuf,
        mode: u32,
        who: String,
    },
    #[error("mode {mode:04o} lets {who} read the private key")]
    KeyReadable { mode: u32, who: String },
}

impl Untrusted {
    /// What to run to fix it, for the message.
    pub fn remedy(&self, path: &Path, private: bool) -> String {
        let p = path.display();
        let mode = if private { "0600" } else { "0644" };
        match self {
            Self::Owner { .. } | Self::DirOwner { .. } | Self::DirWritable { .. } => format!(
                "give fo its own copy where only root can change it: `install -o root -g root -m {mode} {p} /etc/fo/`"
            ),
            Self::Writable { .. } => format!("run `chmod go-w {p}`"),
            Self::KeyReadable { .. } => format!("run `chmod 600 {p}` (or `chgrp {KEY_GROUP} {p}`)"),
        }
    }
}

/// Check `meta` (of the file opened at `path`) and the directories on the way to it.
pub fn check(path: &Path, meta: &Metadata, private: bool) -> Result<(), Untrusted> {
    let euid = effective_uid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(Untrusted::Owner {
            owner: meta.uid(),
            euid,
        });
    }
    if let Some(who) = writers(mode, meta.gid()) {
        return Err(Untrusted::Writable { mode, who });
    }
    if private {
        // Root's group is root's; ssl-cert may read, nothing more.
        let group_ok = mode & 0o070 == 0
            || meta.gid() == 0
            || (mode & 0o070 == 0o040 && Some(meta.gid()) == key_gid());
        if mode & 0o007 != 0 {
            return Err(Untrusted::KeyReadable {
                mode,
                who: "others".into(),
            });
        }
        if !group_ok {
            return Err(Untrusted::KeyReadable {
                mode,
                who: group_name(meta.gid()),
            });
        }
    }
    for dir in directories(path) {
        let Ok(m) = std::fs::metadata(&dir) else {
            continue;
        };
        if m.uid() != 0 && m.uid() != euid {
            return Err(Untrusted::DirOwner {
                dir,
                owner: m.uid(),
            });
        }
        let mode = m.mode() & 0o7777;
        if mode & 0o1000 == 0
            && let Some(who) = writers(mode, m.gid())
        {
            return Err(Untrusted::DirWritable { dir, mode, who });
        }
    }
    Ok(())
}

/// Who besides the owner (and root's group) may write with `mode`.
fn writers(mode: u32, gid: u32) -> Option<String> {
    if mode & 0o002 != 0 {
        Some("others".into())
    } else if mode & 0o020 != 0 && gid != 0 {
        Some(group_name(gid))
    } else {
        None
    }
}

/// The directories holding `path`, as named and as its symlinks resolve (each once).
fn directories(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let real = std::fs::canonicalize(path).ok();
    for p in std::iter::once(path).chain(real.as_deref()) {
        for dir in p.ancestors().skip(1) {
            if !dir.as_os_str().is_empty() && !out.iter().any(|d| d == dir) {
                out.push(dir.to_owned());
            }
        }
    }
    out
}

/// `group NAME (gid N)`, or `group N` when /etc/group does not name it.
fn group_name(gid: u32) -> String {
    match groups().into_iter().find(|(_, g)| *g == gid) {
        Some((name, _)) => format!("group {name} (gid {gid})"),
        None => format!("group {gid}"),
    }
}

fn key_gid() -> Option<u32> {
    groups()
        .into_iter()
        .find(|(name, _)| name == KEY_GROUP)
        .map(|(_, g)| g)
}

/// The local groups (/etc/group): system groups such as ssl-cert live there.
fn groups() -> Vec<(String, u32)> {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), gid))
        })
        .collect()
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, cannot fail and touches no memory of ours; std
    // has no wrapper for it.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt as _;

    fn file(dir: &TempDir, name: &str, mode: u32, gid: Option<u32>) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, "x").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if let Some(g) = gid {
            std::os::unix::fs::chown(&p, None, Some(g)).expect("chgrp");
        }
        p
    }

    fn judge(p: &Path, private: bool) -> Result<(), Untrusted> {
        let meta = std::fs::metadata(p).expect("metadata");
        check(p, &meta, private)
    }

    #[test]
    fn keys_may_be_read_by_root_and_ssl_cert_only() {
        if effective_uid() != 0 {
            return; // chgrp to other groups needs root
        }
        let dir = TempDir::new("trust-keys");
        assert_eq!(judge(&file(&dir, "a", 0o600, None), true), Ok(()));
        assert_eq!(judge(&file(&dir, "b", 0o640, Some(0)), true), Ok(()));
        if let Some(ssl) = key_gid() {
            assert_eq!(judge(&file(&dir, "c", 0o640, Some(ssl)), true), Ok(()));
        }
        let nogroup = file(&dir, "d", 0o640, Some(65534));
        assert!(
            matches!(
                judge(&nogroup, true),
                Err(Untrusted::KeyReadable { mode: 0o640, .. })
            ),
            "a key its group nogroup may read"
        );
        assert!(
            matches!(
                judge(&file(&dir, "e", 0o604, Some(0)), true),
                Err(Untrusted::KeyReadable { .. })
            ),
            "a key others may read"
        );
        // The same mode is fine for a certificate: it is public.
        assert_eq!(judge(&nogroup, false), Ok(()));
    }

    #[test]
    fn files_others_may_change_are_refused() {
        if effective_uid() != 0 {
            return;
        }
        let dir = TempDir::new("trust-writers");
        let by_others = file(&dir, "ca.pem", 0o646, None);
        assert!(matches!(
            judge(&by_others, false),
            Err(Untrusted::Writable { mode: 0o646, .. })
        ));
        let by_group = file(&dir, "cert.pem", 0o664, Some(65534));
        assert!(matches!(
            judge(&by_group, false),
            Err(Untrusted::Writable { mode: 0o664, .. })
        ));
        assert_eq!(
            judge(&file(&dir, "root.pem", 0o664, Some(0)), false),
            Ok(())
        );
        let theirs = file(&dir, "theirs.pem", 0o644, None);
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        assert!(matches!(
            judge(&theirs, false),
            Err(Untrusted::Owner { owner: 65534, .. })
        ));
    }

    #[test]
    fn a_directory_others_may_change_is_refused() {
        if effective_uid() != 0 {
            return;
        }
        let dir = TempDir::new("trust-dirs");
        // As Wazuh ships its certificates: a directory of the indexer's user.
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("mkdir");
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        let ca = certs.join("root-ca.pem");
        std::fs::write(&ca, "x").expect("write");
        std::os::unix::fs::chown(&certs, Some(65534), Some(65534)).expect("chown");
        assert!(matches!(
            judge(&ca, false),
            Err(Untrusted::DirOwner { owner: 65534, .. })
        ));
        std::os::unix::fs::chown(&certs, Some(0), Some(0)).expect("chown");
        assert_eq!(judge(&ca, false), Ok(()));
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            judge(&ca, false),
            Err(Untrusted::DirWritable { mode: 0o777, .. })
        ));
        // Sticky, as /tmp: nobody can replace a file they do not own.
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert_eq!(judge(&ca, false), Ok(()));
        // Through a symlink, the directory it resolves to counts too.
        std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let link = dir.path().join("ca-link.pem");
        std::os::unix::fs::symlink(&ca, &link).expect("symlink");
        assert!(matches!(
            judge(&link, false),
            Err(Untrusted::DirWritable { .. })
        ));
    }
}
