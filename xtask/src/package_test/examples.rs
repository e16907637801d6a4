//! What the shipped examples need on disk before `fo-agent check` can pass on them, and
//! throwaway files that provide it inside the install test's root.
//!
//! Every absolute path an example names is classified by the key that names it:
//! - files `fo-agent check` reads get a real stand-in: PEM certificates and keys made
//!   with openssl (a CA, and a client certificate it signed, with its key at 0600), HMAC
//!   key files at 0600, and hooks (the package's own hook when it ships one of that
//!   name, else a throwaway `exit 0` script at 0755);
//! - paths `fo-agent check` does not read (the pin directory, sockets, a file check's
//!   file, an exec check's command line, …) are listed and left alone: a file made for
//!   them would prove nothing.
//!
//! A path under a key this module does not know fails the test, so a new key that names
//! a file cannot slip past it unexercised.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

/// What a path named in a config must be for `fo-agent check` to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// `ca`: PEM certificates of CAs.
    Ca,
    /// `cert`: a PEM client certificate (its key is the config's `key`).
    Cert,
    /// `key`: the PEM private key of `cert`, mode 0600.
    Key,
    /// `auth_key_file`, sync `key_file`: a secret of at least 16 bytes, mode 0600.
    Secret,
    /// A hook program: an executable file.
    Hook,
    /// Named, but not read by `fo-agent check`.
    NotRead,
}

impl Needs {
    fn of(parent: Option<&str>, key: &str) -> Option<Needs> {
        Some(match (parent, key) {
            (_, "ca") => Needs::Ca,
            (_, "cert") => Needs::Cert,
            (_, "key") => Needs::Key,
            (_, "auth_key_file" | "key_file") => Needs::Secret,
            (Some("hooks"), "master" | "backup" | "fault" | "notify" | "stop") => Needs::Hook,
            (
                _,
                "bpf_dir" | "control_socket" | "state_file" | "path" | "pidfile" | "command"
                | "control",
            ) => Needs::NotRead,
            _ => return None,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Needs::Ca => "CA certificate",
            Needs::Cert => "client certificate",
            Needs::Key => "client key, 0600",
            Needs::Secret => "key file, 0600",
            Needs::Hook => "hook",
            Needs::NotRead => "not read by check",
        }
    }
}

/// Every absolute path `config` (TOML text) names, with what it must be. An absolute
/// path under a key of unknown meaning is an error.
pub fn prerequisites(config: &str) -> anyhow::Result<BTreeMap<String, Needs>> {
    let value: toml::Table = toml::from_str(config).context("parsing the example")?;
    let mut out = BTreeMap::new();
    walk(&toml::Value::Table(value), None, None, &mut out)?;
    Ok(out)
}

fn walk(
    v: &toml::Value,
    parent: Option<&str>,
    key: Option<&str>,
    out: &mut BTreeMap<String, Needs>,
) -> anyhow::Result<()> {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                walk(v, key, Some(k), out)?;
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                // A hook written as [path, args...]: the path is the program, the
                // arguments are the hook's business.
                let arg_of_hook = i > 0 && parent == Some("hooks");
                if item.is_str() && arg_of_hook {
                    continue;
                }
                // Arrays of tables ([[router]]) keep the table's own keys.
                let (p, k) = if item.is_table() {
                    (key, None)
                } else {
                    (parent, key)
                };
                walk(item, p, k, out)?;
            }
        }
        toml::Value::String(s) if s.starts_with('/') => {
            let k = key.unwrap_or("?");
            let Some(needs) = Needs::of(parent, k) else {
                bail!(
                    "{s} is named by `{k}`, a key the package test does not know: say in \
                     xtask/src/package_test/examples.rs whether fo-agent check reads it"
                );
            };
            if let Some(before) = out.insert(s.clone(), needs) {
                ensure!(
                    before == needs,
                    "{s} is named as a {} and as a {}",
                    before.describe(),
                    needs.describe()
                );
            }
        }
        _ => {}
    }
    Ok(())
}

/// Throwaway TLS material made with openssl: a CA and a client certificate it signed.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            dir,
            &["req", "-x509"],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=fo package test CA",
            ],
        )?;
        openssl(
            dir,
            &["req"],
            &ec,
            &[
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=fo package test client",
            ],
        )?;
        // Extensions make it X.509 version 3: rustls refuses a version 1 certificate.
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
        )?;
        openssl(
            dir,
            &["x509", "-req"],
            &["-extfile", "client.ext"],
            &[
                "-in",
                "client.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "client.pem",
                "-days",
                "2",
            ],
        )?;
        Ok(Pki {
            dir: dir.to_owned(),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn openssl(dir: &Path, cmd: &[&str], key: &[&str], rest: &[&str]) -> anyhow::Result<()> {
    let mut c = Command::new("openssl");
    c.current_dir(dir).args(cmd).args(key).args(rest);
    let out = c.output().context("spawning openssl")?;
    ensure!(
        out.status.success(),
        "{} failed: {}",
        crate::util::show(&c),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// What [`provide`] did for one path.
pub struct Provided {
    pub path: String,
    pub needs: Needs,
    /// How: "openssl", "package" (a hook the package ships), "throwaway".
    pub how: &'static str,
}

/// Write a stand-in for every path `check` reads that `root` lacks (paths seen as in
/// `root`, a directory holding a Debian root). Files already there are kept: the hooks
/// the package ships, installed as the README says, are used as they are.
pub fn provide(
    root: &Path,
    paths: &BTreeMap<String, Needs>,
    pki: &Pki,
) -> anyhow::Result<Vec<Provided>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    for (path, &needs) in paths {
        if needs == Needs::NotRead {
            continue;
        }
        let at = root.join(path.trim_start_matches('/'));
        if at.exists() {
            out.push(Provided {
                path: path.clone(),
                needs,
                how: "package",
            });
            continue;
        }
        if let Some(dir) = at.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (content, mode, how) = match needs {
            Needs::Ca => (std::fs::read(pki.file("ca.pem"))?, 0o644, "openssl"),
            Needs::Cert => (std::fs::read(pki.file("client.pem"))?, 0o644, "openssl"),
            Needs::Key => (std::fs::read(pki.file("client.key"))?, 0o600, "openssl"),
            Needs::Secret => (
                b"fo-package-test-hmac-key-0123456789abcdef\n".to_vec(),
                0o600,
                "throwaway",
            ),
            Needs::Hook => (b"#!/bin/sh\nexit 0\n".to_vec(), 0o755, "throwaway"),
            Needs::NotRead => unreachable!("skipped above"),
        };
        std::fs::write(&at, content).with_context(|| format!("writing {}", at.display()))?;
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", at.display()))?;
        out.push(Provided {
            path: path.clone(),
            needs,
            how,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> String {
        std::fs::read_to_string(crate::util::root().join("deploy/examples").join(name))
            .expect("example")
    }

    #[test]
    fn every_path_of_every_example_is_known() {
        let dir = crate::util::root().join("deploy/examples");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).expect("deploy/examples").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") {
                prerequisites(&example(&name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
                seen += 1;
            }
        }
        assert!(seen > 0, "no example in {}", dir.display());
    }

    #[test]
    fn tls_files_hooks_and_keys_are_told_apart() {
        let got = prerequisites(
            r#"
[node]
bpf_dir = "/sys/fs/bpf/fo"
[[router]]
name = "r"
auth_key_file = "/etc/fo/vrrp.key"
hooks = { master = ["/etc/fo/hooks/master.sh", "/not/a/path/of/ours"], notify = "/etc/fo/hooks/notify.sh" }
[[check]]
name = "c"
kind = "https"
ca = "/etc/fo/ca.pem"
cert = "/etc/fo/c.pem"
key = "/etc/fo/c.key"
[[check]]
name = "e"
kind = "exec"
command = ["/usr/bin/openssl", "x509", "-in", "/etc/x.crt"]
"#,
        )
        .expect("classified");
        let want: BTreeMap<String, Needs> = [
            ("/sys/fs/bpf/fo", Needs::NotRead),
            ("/etc/fo/vrrp.key", Needs::Secret),
            ("/etc/fo/hooks/master.sh", Needs::Hook),
            ("/etc/fo/hooks/notify.sh", Needs::Hook),
            ("/etc/fo/ca.pem", Needs::Ca),
            ("/etc/fo/c.pem", Needs::Cert),
            ("/etc/fo/c.key", Needs::Key),
            ("/usr/bin/openssl", Needs::NotRead),
            ("/etc/x.crt", Needs::NotRead),
        ]
        .into_iter()
        .map(|(p, n)| (p.to_owned(), n))
        .collect();
        assert_eq!(got, want);
    }

    /// rustls takes only X.509 version 3 certificates.
    #[test]
    fn the_throwaway_certificates_are_version_3() {
        let dir = std::env::temp_dir().join(format!("fo-pkgtest-pki-{}", std::process::id()));
        let pki = Pki::new(&dir).expect("openssl");
        for cert in ["ca.pem", "client.pem"] {
            let out = Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in"])
                .arg(pki.file(cert))
                .output()
                .expect("openssl");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Version: 3 (0x2)"),
                "{cert} is not X.509 version 3:\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_path_under_an_unknown_key_is_an_error() {
        let e = prerequisites("[node]\nsecret_file = \"/etc/fo/s\"\n").expect_err("unknown key");
        assert!(
            format!("{e:#}").contains("`secret_file`"),
            "the error names the key: {e:#}"
        );
    }
}
