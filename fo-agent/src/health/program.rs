//! Which file a hook or an exec check runs, and whether it is safe to run it.
//!
//! Hooks and exec checks are the agent's children, and the agent runs as root: whoever
//! can change one of those programs runs code as root at the next transition or check.
//! So fo always applies a rule like keepalived's `enable_script_security`, and goes a
//! little further:
//!
//! - **Which file.** A program written as an absolute path is that path. A bare name
//!   (`docker`) is looked up in the agent's `PATH`, in order, skipping empty and relative
//!   entries (fo never searches its working directory); without `PATH`, in
//!   [`DEFAULT_PATH`]. The first regular file with an execute bit wins, and the child
//!   runs that absolute path (its `argv[0]` stays the name as written). The look-up and
//!   the rule run again before every run, so the file judged is the file run.
//! - **The rule.** Every entry the kernel passes through to reach the file must be owned
//!   by root, not writable by its group unless the group is root, and not writable by
//!   others: `/`, each directory, each symbolic link (the link itself, then every entry
//!   of its target, relative to the link's directory or from `/`), and the file itself.
//!   An owner other than root is refused even without its write bit: an owner may chmod.
//!   A directory with the sticky bit (`/tmp`) may be writable by group and others: there
//!   only an entry's owner may rename or remove it, and the entry is held to the rule. A
//!   symbolic link's mode means nothing (it is always 0777); its owner counts (in a
//!   sticky directory the owner may replace it). Group write for group root is allowed
//!   only without a POSIX ACL (with one, the group bits are the ACL's mask and a named
//!   user may be able to write). keepalived checks the same owners and bits, but with
//!   stat(2), which follows links (a link's own owner is never judged), and knows no ACL.
//! - **The interpreter.** A script's `#!` interpreter is held to the same rule, through
//!   [`MAX_INTERPRETERS`] levels like the kernel; `#!/usr/bin/env NAME` judges `env`,
//!   not what `env` then finds in `PATH`.
//! - **Another user.** A program run as a non-root `user` (with neither group nor any
//!   supplementary group root) may also be owned by that user: who can change it is who
//!   it runs as, so nobody gains anything. Group and others' write stays refused: other
//!   users would run code as that user. (keepalived checks nothing for a script whose
//!   user and group are not root.)
//!
//! [`problems`] applies the rule to a config (for `fo-agent check`, `run` and `reload`,
//! with the hook's or command's line and column); [`checked`] applies it before a run.

use std::ffi::{CString, OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use fo_config::{CheckKind, Config, RunAs, ServiceCheckKind};

use super::probe::Problem;

/// The search path when the agent has no `PATH` (systemd's default for services).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Nested `#!` interpreters judged (the kernel follows at most 4).
pub const MAX_INTERPRETERS: usize = 4;
/// Symbolic links followed in one walk before giving up (the kernel's ELOOP limit).
const MAX_LINKS: usize = 40;
/// Bytes read from the start of a program to find a `#!` line.
const SHEBANG_MAX: usize = 256;

/// Whose programs may be owned by someone other than root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    /// Besides root: the non-root user the program runs as (uid, name).
    user: Option<(u32, String)>,
}

impl Trust {
    /// Only root may own or write (a program run as root, or as root's group).
    pub const ROOT: Trust = Trust { user: None };

    /// The trust for a program run as `name` (`uid`, `gid`, supplementary `groups`):
    /// root, and the user itself unless any of its ids is root's.
    pub fn run_as(name: &str, uid: u32, gid: u32, groups: &[u32]) -> Trust {
        if uid == 0 || gid == 0 || groups.contains(&0) {
            return Self::ROOT;
        }
        Trust {
            user: Some((uid, name.to_owned())),
        }
    }

    fn may_own(&self, uid: u32) -> bool {
        uid == 0 || self.user.as_ref().is_some_and(|(u, _)| *u == uid)
    }

    /// Who runs the program, for messages: "root" or "user NAME".
    fn runs_as(&self) -> String {
        match &self.user {
            None => "root".into(),
            Some((_, name)) => format!("user {name}"),
        }
    }

    fn owners(&self) -> String {
        match &self.user {
            None => "root".into(),
            Some((_, name)) => format!("root or {name}"),
        }
    }
}

/// What an entry on the way to a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
    /// The program (or anything else that is neither a directory nor a link).
    File,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Directory => "directory",
            Self::Symlink => "symbolic link",
            Self::File => "file",
        })
    }
}

/// The facts of one entry the rule looks at (from lstat(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with set-id and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// A POSIX access ACL is set (only looked at with the group write bit).
    pub acl: bool,
}

/// Why an entry breaks the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    Owner { uid: u32 },
    GroupWritable { gid: u32 },
    AclWritable,
    OthersWritable,
}

const S_ISVTX: u32 = 0o1000;
const S_IWGRP: u32 = 0o020;
const S_IWOTH: u32 = 0o002;

/// The rule for one entry (see the module doc).
pub fn judge(e: &Entry, trust: &Trust) -> Result<(), Flaw> {
    if !trust.may_own(e.uid) {
        return Err(Flaw::Owner { uid: e.uid });
    }
    // A link's mode is always 0777 and means nothing; a sticky directory protects
    // its entries from everyone but their owner (and the directory's).
    if e.kind == Kind::Symlink || (e.kind == Kind::Directory && e.mode & S_ISVTX != 0) {
        return Ok(());
    }
    if e.mode & S_IWOTH != 0 {
        return Err(Flaw::OthersWritable);
    }
    if e.mode & S_IWGRP != 0 {
        if e.gid != 0 {
            return Err(Flaw::GroupWritable { gid: e.gid });
        }
        if e.acl {
            return Err(Flaw::AclWritable);
        }
    }
    Ok(())
}

/// Why a program is not run (or a config naming it is refused).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{name:?} is not in PATH ({search})")]
    NotInPath { name: String, search: String },
    #[error("{} does not exist ({} is missing)", program.display(), missing.display())]
    Missing { program: PathBuf, missing: PathBuf },
    #[error("{}: {}: {source}", program.display(), entry.display())]
    Io {
        program: PathBuf,
        entry: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: not an absolute path (a program is an absolute path, or a bare name looked up in PATH)",
        program.display()
    )]
    Relative { program: PathBuf },
    #[error("{}: too many levels of symbolic links", program.display())]
    Loop { program: PathBuf },
    #[error("{}: {} is not a directory", program.display(), entry.display())]
    NotDirectory { program: PathBuf, entry: PathBuf },
    #[error("{}: not a regular file", program.display())]
    NotFile { program: PathBuf },
    #[error("{}: not executable", program.display())]
    NotExecutable { program: PathBuf },
    #[error("{}: its interpreter {} is not an absolute path", program.display(), interpreter.display())]
    RelativeInterpreter {
        program: PathBuf,
        interpreter: PathBuf,
    },
    #[error("{}: {} {}{}", program.display(), kind, entry.display(), unsafe_text(flaw, *mode, trust, interpreter_of))]
    Unsafe {
        /// The program as configured (or the interpreter, see `interpreter_of`).
        program: PathBuf,
        /// The entry at fault.
        entry: PathBuf,
        kind: Kind,
        flaw: Flaw,
        mode: u32,
        trust: Trust,
        /// When `program` is the `#!` interpreter of this script.
        interpreter_of: Option<PathBuf>,
    },
}

impl Refusal {
    /// The program, its directories or its interpreter are not there (not found in
    /// `PATH` included): an exec check then fails when it runs, which is what it checks.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::NotInPath { .. } | Self::Missing { .. })
    }
}

fn unsafe_text(flaw: &Flaw, mode: u32, trust: &Trust, interpreter_of: &Option<PathBuf>) -> String {
    let what = match flaw {
        Flaw::Owner { uid } => format!("is owned by {}, not {}", user_name(*uid), trust.owners()),
        Flaw::GroupWritable { gid } => {
            format!(
                "is writable by group {} (mode {mode:04o})",
                group_name(*gid)
            )
        }
        Flaw::AclWritable => format!(
            "is group-writable (mode {mode:04o}) with an ACL, which may let other users write (getfacl shows who)"
        ),
        Flaw::OthersWritable => format!("is writable by others (mode {mode:04o})"),
    };
    let of = interpreter_of
        .as_ref()
        .map(|s| format!(" (the #! interpreter of {})", s.display()))
        .unwrap_or_default();
    format!(
        " {what}{of}: a user other than {} could change what fo runs as {}; make it root's and writable by root only (chown root, chmod go-w), or move the program",
        trust.owners(),
        trust.runs_as()
    )
}

fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("uid {uid} ({})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{gid} ({})", g.name),
        _ => gid.to_string(),
    }
}

/// The file `program` names: itself when it contains a `/`, else the first regular
/// file with an execute bit named so in an absolute entry of `path_var` (unset:
/// [`DEFAULT_PATH`]). Not judged yet: see [`checked`].
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, Refusal> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let search = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    for dir in std::env::split_paths(search) {
        if !dir.is_absolute() {
            continue;
        }
        let candidate = dir.join(program);
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
            && m.mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Refusal::NotInPath {
        name: program.to_string_lossy().into_owned(),
        search: search.to_string_lossy().into_owned(),
    })
}

/// [`resolve`] `program`, then hold the file, every entry on the way to it and its
/// interpreters to the rule, for a program run with `trust`. Returns the absolute path
/// to run.
pub fn checked(
    program: &OsStr,
    path_var: Option<&OsStr>,
    trust: &Trust,
) -> Result<PathBuf, Refusal> {
    let file = resolve(program, path_var)?;
    if !file.is_absolute() {
        // fo-config refuses these in a config.
        return Err(Refusal::Relative { program: file });
    }
    let mut script = file.clone();
    let mut interpreter_of: Option<PathBuf> = None;
    for _ in 0..=MAX_INTERPRETERS {
        let (target, meta) = walk(&script, trust, interpreter_of.as_deref())?;
        if !meta.is_file() {
            return Err(Refusal::NotFile { program: script });
        }
        if meta.mode() & 0o111 == 0 {
            return Err(Refusal::NotExecutable { program: script });
        }
        let Some(interp) = interpreter(&target) else {
            break;
        };
        if !interp.is_absolute() {
            return Err(Refusal::RelativeInterpreter {
                program: script,
                interpreter: interp,
            });
        }
        interpreter_of = Some(script);
        script = interp;
    }
    Ok(file)
}

/// The `#!` interpreter of the file at `path`, if it starts with one and can be read.
///
/// Opened without following a link and without blocking, and read only if the opened
/// file is a regular one: a file swapped for a FIFO or a device after it was judged
/// cannot hang the check or the hook queue.
fn interpreter(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    file.take(SHEBANG_MAX as u64).read_to_end(&mut head).ok()?;
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let word = line
        .split(|b| *b == b' ' || *b == b'\t')
        .find(|w| !w.is_empty())?;
    Some(PathBuf::from(OsStr::from_bytes(word)))
}

/// Resolve the absolute `path` as the kernel does, judging `/`, every directory, every
/// symbolic link and the final entry. Returns the final entry's physical path and its
/// metadata (not judged as a regular file yet).
fn walk(
    path: &Path,
    trust: &Trust,
    interpreter_of: Option<&Path>,
) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
    let program = path.to_path_buf();
    let refuse = |entry: &Path, kind: Kind, flaw: Flaw, mode: u32| Refusal::Unsafe {
        program: program.clone(),
        entry: entry.to_path_buf(),
        kind,
        flaw,
        mode,
        trust: trust.clone(),
        interpreter_of: interpreter_of.map(Path::to_path_buf),
    };
    let io = |entry: &Path, source: std::io::Error| Refusal::Io {
        program: program.clone(),
        entry: entry.to_path_buf(),
        source,
    };
    // Components still to walk, in order, and the physical directory reached.
    let mut pending: Vec<OsString> = Vec::new();
    push_front(&mut pending, path);
    let mut here = PathBuf::from("/");
    let root = std::fs::symlink_metadata(&here).map_err(|e| io(&here, e))?;
    judge_meta(&here, &root, trust).map_err(|(k, f, m)| refuse(&here, k, f, m))?;
    let mut links = 0;
    let mut last = root;
    // `pending` is a stack: the next component is at the end.
    while let Some(name) = pending.pop() {
        match name.as_bytes() {
            b"/" => {
                here = PathBuf::from("/");
                last = std::fs::symlink_metadata(&here).map_err(|e| io(&here, e))?;
                continue;
            }
            b"." => continue,
            b".." => {
                here.pop();
                last = std::fs::symlink_metadata(&here).map_err(|e| io(&here, e))?;
                continue;
            }
            _ => {}
        }
        if !last.is_dir() {
            return Err(Refusal::NotDirectory {
                program: program.clone(),
                entry: here,
            });
        }
        let entry = here.join(&name);
        let meta = match std::fs::symlink_metadata(&entry) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Refusal::Missing {
                    program: program.clone(),
                    missing: entry,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Refusal::NotDirectory {
                    program: program.clone(),
                    entry: here,
                });
            }
            Err(e) => return Err(io(&entry, e)),
        };
        judge_meta(&entry, &meta, trust).map_err(|(k, f, m)| refuse(&entry, k, f, m))?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(Refusal::Loop {
                    program: program.clone(),
                });
            }
            let target = std::fs::read_link(&entry).map_err(|e| io(&entry, e))?;
            // The target's entries are walked next, from `/` or from the link's
            // directory (`here`, unchanged).
            push_front(&mut pending, &target);
            last = std::fs::symlink_metadata(&here).map_err(|e| io(&here, e))?;
            continue;
        }
        here = entry;
        last = meta;
    }
    Ok((here, last))
}

/// Put the components of `path` in front of those still pending (`pending` is a stack
/// whose next component is last): `/` for an absolute path, then each name.
fn push_front(pending: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir => pending.push(OsString::from("/")),
            Component::CurDir => pending.push(OsString::from(".")),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::Normal(n) => pending.push(n.to_owned()),
            Component::Prefix(_) => {}
        }
    }
}

fn judge_meta(
    path: &Path,
    meta: &std::fs::Metadata,
    trust: &Trust,
) -> Result<(), (Kind, Flaw, u32)> {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Directory
    } else {
        Kind::File
    };
    let mode = meta.mode() & 0o7777;
    let entry = Entry {
        kind,
        uid: meta.uid(),
        gid: meta.gid(),
        mode,
        acl: kind != Kind::Symlink && mode & S_IWGRP != 0 && has_access_acl(path),
    };
    judge(&entry, trust).map_err(|f| (kind, f, mode))
}

/// True when `path` (not followed) carries a POSIX access ACL, or when that cannot be
/// told (then the group write bit is not trusted).
fn has_access_acl(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: lgetxattr(2) with a NUL-terminated path and name and a null buffer of
    // size 0 only returns the attribute's size; it writes no memory of ours.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if n >= 0 {
        return n > 0;
    }
    let e = std::io::Error::last_os_error().raw_os_error();
    !matches!(e, Some(libc::ENODATA | libc::EOPNOTSUPP))
}

/// Every hook and exec-check program of `config` that breaks the rule (or, for hooks,
/// is missing or not executable), with where the config names it. `trust` gives the
/// trust for a `user` (`None` when the user cannot be resolved: root's rule applies,
/// and the unknown user is reported elsewhere). Exec programs that are not there are
/// not reported: the check fails when it runs.
pub fn problems(
    config: &Config,
    path_var: Option<&OsStr>,
    trust: impl Fn(&RunAs) -> Option<Trust>,
) -> Vec<Problem> {
    let trust_of = |r: &Option<RunAs>| r.as_ref().and_then(&trust).unwrap_or_default();
    let mut out = Vec::new();
    for r in &config.routers {
        let t = trust_of(&r.hooks.run_as);
        for (kind, cmd) in r.hooks.all() {
            if let Err(e) = checked(cmd.program.as_os_str(), path_var, &t) {
                out.push(Problem {
                    at: cmd.at.known(),
                    message: format!("router {}: {kind} hook {e}", r.name),
                });
            }
        }
    }
    let mut exec =
        |what: String, command: &[String], run_as: &Option<RunAs>, at: fo_config::Position| {
            let Some(program) = command.first() else {
                return;
            };
            match checked(OsStr::new(program), path_var, &trust_of(run_as)) {
                Err(e) if !e.is_missing() => out.push(Problem {
                    at: at.known(),
                    message: format!("{what}: command {e}"),
                }),
                _ => {}
            }
        };
    for c in &config.checks {
        if let CheckKind::Exec {
            command,
            run_as,
            at,
        } = &c.kind
        {
            exec(format!("check {}", c.name), command, run_as, *at);
        }
    }
    for s in &config.services {
        if let Some(c) = &s.check
            && let ServiceCheckKind::Exec {
                command,
                run_as,
                at,
            } = &c.kind
        {
            exec(format!("service {} check", s.name), command, run_as, *at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt as _;

    const NOBODY: u32 = 65534;

    fn entry(kind: Kind, uid: u32, gid: u32, mode: u32) -> Entry {
        Entry {
            kind,
            uid,
            gid,
            mode,
            acl: false,
        }
    }

    /// The rule, entry by entry (keepalived's owners and bits, plus ACLs and the
    /// run-as user).
    #[test]
    fn the_rule_for_one_entry() {
        use Kind::*;
        let root = Trust::ROOT;
        let nobody = Trust::run_as("nobody", NOBODY, NOBODY, &[NOBODY]);
        let cases: &[(&str, Entry, &Trust, Result<(), Flaw>)] = &[
            (
                "root's 0755 directory",
                entry(Directory, 0, 0, 0o755),
                &root,
                Ok(()),
            ),
            ("root's 0755 file", entry(File, 0, 0, 0o755), &root, Ok(())),
            (
                "a user's directory, even 0555: an owner may chmod",
                entry(Directory, 1000, 0, 0o555),
                &root,
                Err(Flaw::Owner { uid: 1000 }),
            ),
            (
                "group-writable, group not root",
                entry(Directory, 0, 100, 0o775),
                &root,
                Err(Flaw::GroupWritable { gid: 100 }),
            ),
            (
                "group-writable by group root",
                entry(File, 0, 0, 0o775),
                &root,
                Ok(()),
            ),
            (
                "group root, but an ACL",
                Entry {
                    acl: true,
                    ..entry(File, 0, 0, 0o775)
                },
                &root,
                Err(Flaw::AclWritable),
            ),
            (
                "an ACL without group write (its mask) lets nobody write",
                Entry {
                    acl: true,
                    ..entry(File, 0, 0, 0o755)
                },
                &root,
                Ok(()),
            ),
            (
                "others may write",
                entry(Directory, 0, 0, 0o777),
                &root,
                Err(Flaw::OthersWritable),
            ),
            (
                "a sticky directory (/tmp)",
                entry(Directory, 0, 0, 0o1777),
                &root,
                Ok(()),
            ),
            (
                "sticky means nothing on a file",
                entry(File, 0, 0, 0o1777),
                &root,
                Err(Flaw::OthersWritable),
            ),
            (
                "a sticky directory is still someone's",
                entry(Directory, 1000, 0, 0o1777),
                &root,
                Err(Flaw::Owner { uid: 1000 }),
            ),
            (
                "root's link (mode 0777 means nothing)",
                entry(Symlink, 0, 0, 0o777),
                &root,
                Ok(()),
            ),
            (
                "a user's link: in a sticky directory the user may replace it",
                entry(Symlink, 1000, 1000, 0o777),
                &root,
                Err(Flaw::Owner { uid: 1000 }),
            ),
            (
                "run as nobody: nobody's own file",
                entry(File, NOBODY, NOBODY, 0o755),
                &nobody,
                Ok(()),
            ),
            (
                "run as nobody: writable by nobody's group (others in it)",
                entry(File, NOBODY, NOBODY, 0o775),
                &nobody,
                Err(Flaw::GroupWritable { gid: NOBODY }),
            ),
            (
                "run as nobody: another user's file",
                entry(File, 1000, 1000, 0o755),
                &nobody,
                Err(Flaw::Owner { uid: 1000 }),
            ),
            (
                "run as nobody: others may write",
                entry(Directory, NOBODY, NOBODY, 0o777),
                &nobody,
                Err(Flaw::OthersWritable),
            ),
        ];
        for (what, e, trust, want) in cases {
            assert_eq!(&judge(e, trust), want, "{what}: {e:?}");
        }
        assert_eq!(
            Trust::run_as("app", 1000, 0, &[0]),
            Trust::ROOT,
            "a user in group root gets root's rule"
        );
        assert_eq!(Trust::run_as("app", 1000, 1000, &[1000, 0]), Trust::ROOT);
        assert_eq!(Trust::run_as("root", 0, 0, &[0]), Trust::ROOT);
    }

    fn is_root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    fn mkdir(p: &Path, mode: u32) -> PathBuf {
        std::fs::create_dir_all(p).expect("mkdir");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.to_path_buf()
    }

    fn script(p: &Path, body: &str) -> PathBuf {
        std::fs::write(p, body).expect("write");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p.to_path_buf()
    }

    fn chown(p: &Path, uid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), None).expect("chown");
    }

    fn check(p: &Path, trust: &Trust) -> Result<PathBuf, Refusal> {
        checked(p.as_os_str(), None, trust)
    }

    /// The entry a refusal names, and its flaw.
    #[track_caller]
    fn refused_at(r: Result<PathBuf, Refusal>, entry: &Path) -> Flaw {
        match r {
            Err(Refusal::Unsafe { entry: e, flaw, .. }) if e == entry => flaw,
            other => panic!("expected {} refused, saw {other:?}", entry.display()),
        }
    }

    /// Real files (root makes them another user's): the program, each directory above
    /// it, and what a link leads to.
    #[test]
    fn programs_and_every_directory_above_them_are_judged() {
        if !is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let t = TempDir::new("program-rule");
        let root = Trust::ROOT;
        let good = mkdir(&t.path().join("good"), 0o755);
        let ok = script(&good.join("ok.sh"), "#!/bin/sh\nexit 0\n");
        assert_eq!(check(&ok, &root).expect("a root-owned 0755 tree"), ok);

        // Others may write the directory: refused there, with its mode.
        let open = mkdir(&t.path().join("open"), 0o777);
        let s = script(&open.join("s.sh"), "#!/bin/sh\n");
        let e = check(&s, &root).expect_err("a world-writable directory");
        assert!(
            e.to_string().contains(&format!(
                "directory {} is writable by others (mode 0777)",
                open.display()
            )),
            "{e}"
        );
        // ...and two levels up as well.
        let deep = mkdir(&open.join("a/b"), 0o755);
        let s = script(&deep.join("s.sh"), "#!/bin/sh\n");
        assert_eq!(refused_at(check(&s, &root), &open), Flaw::OthersWritable);
        // A group that is not root may write.
        let grp = mkdir(&t.path().join("grp"), 0o775);
        std::os::unix::fs::chown(&grp, None, Some(NOBODY)).expect("chgrp");
        let s = script(&grp.join("s.sh"), "#!/bin/sh\n");
        assert_eq!(
            refused_at(check(&s, &root), &grp),
            Flaw::GroupWritable { gid: NOBODY }
        );
        // The script itself: another owner, or writable by others.
        let theirs = script(&good.join("theirs.sh"), "#!/bin/sh\n");
        chown(&theirs, NOBODY);
        assert_eq!(
            refused_at(check(&theirs, &root), &theirs),
            Flaw::Owner { uid: NOBODY }
        );
        assert_eq!(
            check(&theirs, &Trust::run_as("nobody", NOBODY, NOBODY, &[NOBODY]))
                .expect("run as nobody, nobody's own script is fine"),
            theirs
        );
        let writable = script(&good.join("w.sh"), "#!/bin/sh\n");
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o757)).expect("chmod");
        assert_eq!(
            refused_at(check(&writable, &root), &writable),
            Flaw::OthersWritable
        );

        // A sticky directory (like /tmp): root's entries in it are fine, a user's not.
        let sticky = mkdir(&t.path().join("sticky"), 0o1777);
        let s = script(&sticky.join("s.sh"), "#!/bin/sh\n");
        assert!(
            check(&s, &root).is_ok(),
            "root's script in a sticky directory"
        );
        chown(&s, NOBODY);
        assert_eq!(
            refused_at(check(&s, &root), &s),
            Flaw::Owner { uid: NOBODY }
        );

        // Missing: a hook that is not there; and what is judged before the gap.
        assert!(matches!(
            check(&good.join("nope.sh"), &root),
            Err(Refusal::Missing { .. })
        ));
        assert_eq!(
            refused_at(check(&open.join("later/s.sh"), &root), &open),
            Flaw::OthersWritable,
            "a missing program under a writable directory: someone could put it there"
        );
        let plain = good.join("plain");
        std::fs::write(&plain, "x").expect("write");
        assert!(matches!(
            check(&plain, &root),
            Err(Refusal::NotExecutable { .. })
        ));
        assert!(matches!(check(&good, &root), Err(Refusal::NotFile { .. })));
        assert!(matches!(
            check(&ok.join("x"), &root),
            Err(Refusal::NotDirectory { .. })
        ));
    }

    /// A link is judged itself (its owner), then every entry of its target: the
    /// target's directories and the target, wherever they are.
    #[test]
    fn links_are_judged_on_both_paths() {
        if !is_root() {
            eprintln!("skipped: needs root (chown)");
            return;
        }
        let t = TempDir::new("program-links");
        let root = Trust::ROOT;
        let good = mkdir(&t.path().join("good"), 0o755);
        let open = mkdir(&t.path().join("open"), 0o777);
        let target = script(&open.join("real.sh"), "#!/bin/sh\n");
        // An absolute link from a good directory into a writable one.
        let link = good.join("hook.sh");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(refused_at(check(&link, &root), &open), Flaw::OthersWritable);
        // A relative one, through `..`.
        let rel = good.join("rel.sh");
        std::os::unix::fs::symlink("../open/real.sh", &rel).expect("symlink");
        assert_eq!(refused_at(check(&rel, &root), &open), Flaw::OthersWritable);
        // A good target through a link in a sticky directory: fine while the link is
        // root's; a user's link there could be replaced by that user.
        let fine = script(&good.join("fine.sh"), "#!/bin/sh\n");
        let sticky = mkdir(&t.path().join("sticky"), 0o1777);
        let l = sticky.join("l.sh");
        std::os::unix::fs::symlink(&fine, &l).expect("symlink");
        assert_eq!(check(&l, &root).expect("root's link to a good script"), l);
        chown(&l, NOBODY);
        assert_eq!(
            refused_at(check(&l, &root), &l),
            Flaw::Owner { uid: NOBODY }
        );
        // A directory link on the way.
        let dirlink = t.path().join("via");
        std::os::unix::fs::symlink(&open, &dirlink).expect("symlink");
        assert_eq!(
            refused_at(check(&dirlink.join("real.sh"), &root), &open),
            Flaw::OthersWritable
        );
        // A loop.
        let a = good.join("a");
        std::os::unix::fs::symlink(good.join("b"), &a).expect("symlink");
        std::os::unix::fs::symlink(&a, good.join("b")).expect("symlink");
        assert!(matches!(check(&a, &root), Err(Refusal::Loop { .. })));
    }

    /// The `#!` interpreter is a program too.
    #[test]
    fn a_script_s_interpreter_is_judged() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = TempDir::new("program-interp");
        let root = Trust::ROOT;
        let good = mkdir(&t.path().join("good"), 0o755);
        let open = mkdir(&t.path().join("open"), 0o777);
        let interp = open.join("sh");
        std::fs::copy("/bin/sh", &interp).expect("copy sh");
        let s = script(
            &good.join("s.sh"),
            &format!("#!{} -e\nexit 0\n", interp.display()),
        );
        let e = check(&s, &root).expect_err("interpreter in a writable directory");
        assert!(
            matches!(&e, Refusal::Unsafe { interpreter_of: Some(of), entry, .. } if *of == s && *entry == open),
            "{e:?}"
        );
        assert!(e.to_string().contains("the #! interpreter of"), "{e}");
        let env = script(&good.join("env.sh"), "#!/usr/bin/env sh\nexit 0\n");
        assert!(check(&env, &root).is_ok(), "/usr/bin/env is root's");
        let rel = script(&good.join("rel.sh"), "#!sh\n");
        assert!(matches!(
            check(&rel, &root),
            Err(Refusal::RelativeInterpreter { .. })
        ));
    }

    /// An ACL that lets a user write, with group root's write bit as its mask.
    #[test]
    fn an_acl_on_a_group_root_writable_file_is_refused() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = TempDir::new("program-acl");
        let good = mkdir(&t.path().join("good"), 0o755);
        let s = script(&good.join("s.sh"), "#!/bin/sh\n");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o775)).expect("chmod");
        assert!(check(&s, &Trust::ROOT).is_ok(), "group root may write");
        // system.posix_acl_access, version 2: user::rwx, user:nobody:rwx, group::r-x,
        // mask::rwx, other::r-x (tag u16, perm u16, id u32, little-endian).
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (0x01u16, 7u16, u32::MAX),
            (0x02, 7, NOBODY),
            (0x04, 5, u32::MAX),
            (0x10, 7, u32::MAX),
            (0x20, 5, u32::MAX),
        ] {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let c = CString::new(s.as_os_str().as_bytes()).expect("path");
        // SAFETY: NUL-terminated path and name; the value is a live buffer of that size.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            )
        };
        if rc != 0 {
            eprintln!(
                "skipped: this file system takes no ACL ({})",
                std::io::Error::last_os_error()
            );
            return;
        }
        assert_eq!(refused_at(check(&s, &Trust::ROOT), &s), Flaw::AclWritable);
    }

    /// A bare name is found in PATH as the child's exec would (absolute entries only).
    #[test]
    fn bare_names_are_found_in_path() {
        let t = TempDir::new("program-path");
        let a = mkdir(&t.path().join("a"), 0o755);
        let b = mkdir(&t.path().join("b"), 0o755);
        let s = script(&b.join("fo-probe-x"), "#!/bin/sh\n");
        std::fs::write(a.join("fo-probe-x"), "not executable").expect("write");
        let path =
            std::env::join_paths([PathBuf::from("relative"), a.clone(), b.clone()]).expect("path");
        assert_eq!(
            resolve(OsStr::new("fo-probe-x"), Some(&path)).expect("found"),
            s,
            "a's file is not executable, relative entries are skipped"
        );
        assert!(matches!(
            resolve(OsStr::new("fo-no-such-program"), Some(&path)),
            Err(Refusal::NotInPath { .. })
        ));
        assert_eq!(
            resolve(OsStr::new("sh"), None).expect("sh in the default PATH"),
            DEFAULT_PATH
                .split(':')
                .map(|d| Path::new(d).join("sh"))
                .find(|p| p.is_file())
                .expect("a sh in the default PATH"),
            "the default PATH in order"
        );
        assert!(matches!(
            checked(OsStr::new("bin/sh"), None, &Trust::ROOT),
            Err(Refusal::Relative { .. })
        ));
    }

    /// The config's hooks and exec programs, with where they are written: hooks also
    /// when missing; exec programs that are not there are left to the check.
    #[test]
    fn a_config_s_unsafe_programs_are_reported_at_their_position() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = TempDir::new("program-config");
        let good = mkdir(&t.path().join("good"), 0o755);
        let open = mkdir(&t.path().join("open"), 0o777);
        let ok = script(&good.join("ok.sh"), "#!/bin/sh\n");
        let bad = script(&open.join("bad.sh"), "#!/bin/sh\n");
        let text = format!(
            r#"[node]
interface = "eth0"

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]
hooks = {{ master = "{ok}", backup = "{bad}", fault = "{missing}" }}

[[check]]
name = "app"
kind = "exec"
command = ["{bad}", "-q"]

[[check]]
name = "later"
kind = "exec"
command = ["{later}"]

[[check]]
name = "docker"
kind = "exec"
command = ["fo-no-such-program", "info"]

[[service]]
vip = "192.0.2.10"
port = 80
check = {{ kind = "exec", command = ["{bad}"] }}
backends = [{{ address = "192.0.2.21" }}]
"#,
            ok = ok.display(),
            bad = bad.display(),
            missing = good.join("missing.sh").display(),
            later = good.join("later").display(),
        );
        let config = Config::parse(&text).expect("valid");
        let p = problems(&config, None, |_| None);
        let seen: Vec<(Option<(usize, usize)>, String)> = p
            .iter()
            .map(|p| {
                (
                    p.at,
                    p.message.split(": ").take(2).collect::<Vec<_>>().join(": "),
                )
            })
            .collect();
        let col = |line: usize, needle: &str| {
            let l = text.lines().nth(line - 1).expect("line");
            Some((line, l.find(needle).expect("needle") + 1))
        };
        assert_eq!(
            seen,
            [
                (
                    col(8, &format!("\"{}", bad.display())),
                    format!("router web: backup hook {}", bad.display())
                ),
                (
                    col(8, &format!("\"{}", good.join("missing.sh").display())),
                    "router web: fault hook ".to_owned()
                        + &good.join("missing.sh").display().to_string()
                        + " does not exist ("
                        + &good.join("missing.sh").display().to_string()
                        + " is missing)"
                ),
                (
                    col(13, "\"/"),
                    format!("check app: command {}", bad.display())
                ),
                (
                    col(28, "\"/"),
                    format!("service 192.0.2.10:80/tcp check: command {}", bad.display())
                ),
            ]
            .to_vec(),
            "{p:#?}"
        );
        assert!(
            p[0].message.contains(&format!(
                "directory {} is writable by others",
                open.display()
            )),
            "{}",
            p[0].message
        );
    }
}
