//! The HMAC key file of a router (`auth_key_file`): read once per start or reload, after
//! checking that only its owner can read it. The key's bytes never reach a log, an error
//! or the status; only its ID ([`fo_vrrp::AuthKey::id`]) does.
//!
//! Rules, checked on the opened file (so a symlink is judged by what it points to):
//! * a regular file of at most [`MAX_FILE`] bytes;
//! * owned by root or by the user the agent runs as;
//! * no permission bits for group or others (`chmod 600` or `400`);
//! * content: the key, trailing whitespace ignored, at least 16 bytes
//!   (`openssl rand -hex 32 > FILE` gives 64).

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use fo_config::Config;
use fo_vrrp::AuthKey;
use fo_vrrp::auth::KeyError;

/// Largest key file read.
pub const MAX_FILE: u64 = 4096;

/// Why a key file is refused. Never carries the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("auth_key_file {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth_key_file {path}: not a regular file")]
    NotFile { path: PathBuf },
    #[error(
        "auth_key_file {path}: mode {mode:04o} lets group or others access the key; run `chmod 600 {path}`"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error(
        "auth_key_file {path}: owned by uid {owner}; it must be owned by root or by the agent's user (uid {euid}): `chown root {path}`"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("auth_key_file {path}: {size} bytes is too large for a key file (at most {MAX_FILE})")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("auth_key_file {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
}

/// Read and check the key file at `path`.
pub fn load(path: &Path) -> Result<AuthKey, KeyFileError> {
    let p = || path.to_owned();
    let file =
        std::fs::File::open(path).map_err(|source| KeyFileError::Read { path: p(), source })?;
    let meta = file
        .metadata()
        .map_err(|source| KeyFileError::Read { path: p(), source })?;
    if !meta.is_file() {
        return Err(KeyFileError::NotFile { path: p() });
    }
    let euid = effective_uid();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(KeyFileError::Owner {
            path: p(),
            owner: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Mode { path: p(), mode });
    }
    if meta.len() > MAX_FILE {
        return Err(KeyFileError::TooLarge {
            path: p(),
            size: meta.len(),
        });
    }
    let mut content = Vec::with_capacity(64);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut content)
        .map_err(|source| KeyFileError::Read { path: p(), source })?;
    let key = AuthKey::from_file_content(&content)
        .map_err(|source| KeyFileError::Key { path: p(), source });
    // The buffer held the key: clear it before it is freed.
    content.iter_mut().for_each(|b| *b = 0);
    key
}

/// Every router's key of `config`, by router name; every problem, one line each
/// (`router NAME: …`), for `check`, `run` and `reload`.
pub fn load_all(config: &Config) -> Result<Vec<(String, AuthKey)>, Vec<String>> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for r in &config.routers {
        if let Some(path) = r.vrrp().and_then(|v| v.auth_key_file.as_ref()) {
            match load(path) {
                Ok(k) => keys.push((r.name.clone(), k)),
                Err(e) => problems.push(format!("router {}: {e}", r.name)),
            }
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, cannot fail and touches no memory of ours; std
    // has no wrapper for it.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn file(name: &str, content: &[u8], mode: u32) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fo-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_private_key_file_loads() {
        let path = file("good", b"0123456789abcdef0123456789abcdef\n", 0o600);
        let key = load(&path).expect("a 0600 file of ours");
        assert_eq!(
            key,
            AuthKey::new(b"0123456789abcdef0123456789abcdef").expect("key")
        );
        let ro = file("ro", b"0123456789abcdef0123456789abcdef", 0o400);
        assert!(load(&ro).is_ok(), "0400 is fine too");
    }

    #[test]
    fn group_or_other_access_is_refused_without_showing_the_key() {
        for mode in [0o640, 0o604, 0o620, 0o644, 0o601] {
            let path = file(
                &format!("m{mode:o}"),
                b"very-secret-key-bytes-0123456789",
                mode,
            );
            let err = load(&path).expect_err("must refuse");
            let msg = err.to_string();
            assert!(
                matches!(err, KeyFileError::Mode { mode: m, .. } if m == mode),
                "mode {mode:o}: expected a mode error, got {msg}"
            );
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(!msg.contains("very-secret"), "the key leaked into: {msg}");
        }
    }

    #[test]
    fn short_missing_and_directory_are_refused() {
        let short = file("short", b"abc\n", 0o600);
        let msg = load(&short).expect_err("short").to_string();
        assert!(msg.contains("at least 16"), "{msg}");
        assert!(!msg.contains("abc"), "the key leaked into: {msg}");
        let missing = std::env::temp_dir().join("fo-keyfile-does-not-exist");
        assert!(matches!(load(&missing), Err(KeyFileError::Read { .. })));
        assert!(matches!(
            load(&std::env::temp_dir()),
            Err(KeyFileError::NotFile { .. } | KeyFileError::Mode { .. })
        ));
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        if effective_uid() != 0 {
            return; // only root can give a file away
        }
        let path = file("other", b"0123456789abcdef0123456789abcdef", 0o600);
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown nobody");
        let err = load(&path).expect_err("owned by nobody");
        assert!(
            matches!(err, KeyFileError::Owner { owner: 65534, .. }),
            "expected an owner error, got {err}"
        );
    }
}
