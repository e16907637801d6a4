//! Certificates for the https check tests, made by the real `openssl` command in a
//! temporary directory (removed on drop): two CAs, server certificates that are valid,
//! about to expire, expired and self-signed, and a client certificate for mutual TLS.
//! Keys are EC P-256 (fast to make) and mode 0600.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::netns::unique_tag;

/// The server certificates' DNS name.
pub const SERVER_NAME: &str = "good.fo.test";

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Make every file; `server_ip` goes into the server certificates' names too.
    pub fn new(server_ip: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("fo-pki-{}", unique_tag()));
        std::fs::create_dir_all(dir.join("db")).expect("create the PKI temp dir");
        let pki = Pki { dir };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for (name, cn) in [("ca", "fo test CA"), ("other-ca", "fo other CA")] {
            pki.openssl(&[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-subj",
                    &format!("/CN={cn}"),
                    "-days",
                    "3650",
                ],
            ]);
        }
        pki.write(
            "server.ext",
            &format!(
                "basicConstraints = CA:FALSE\nsubjectAltName = DNS:{SERVER_NAME},IP:{server_ip}\nextendedKeyUsage = serverAuth\n"
            ),
        );
        pki.write(
            "client.ext",
            "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
        );
        for (name, cn) in [("server", SERVER_NAME), ("client", "fo-agent")] {
            pki.openssl(&[
                &["req"],
                &ec[..],
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={cn}"),
                ],
            ]);
        }
        let sign = |out: &str, csr: &str, ext: &str, days: &str| {
            pki.openssl(&[&[
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                out,
                "-days",
                days,
                "-extfile",
                ext,
            ]]);
        };
        sign("good.pem", "server.csr", "server.ext", "365");
        sign("soon.pem", "server.csr", "server.ext", "10");
        sign("client.pem", "client.csr", "client.ext", "365");
        // Expired: valid during 2024 only (`openssl ca` takes explicit dates).
        pki.write("db/index.txt", "");
        pki.write("db/serial", "1000\n");
        pki.write(
            "ca.cnf",
            "[ca]\ndefault_ca = fo\n[fo]\ndatabase = db/index.txt\nnew_certs_dir = db\nserial = db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n",
        );
        pki.openssl(&[&[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            "server.csr",
            "-out",
            "expired.pem",
            "-startdate",
            "20240101000000Z",
            "-enddate",
            "20250101000000Z",
            "-extfile",
            "server.ext",
            "-notext",
        ]]);
        // Self-signed, with the same names and key.
        pki.openssl(&[&[
            "req",
            "-x509",
            "-new",
            "-key",
            "server.key",
            "-out",
            "self.pem",
            "-subj",
            &format!("/CN={SERVER_NAME}"),
            "-days",
            "365",
            "-addext",
            &format!("subjectAltName = DNS:{SERVER_NAME},IP:{server_ip}"),
        ]]);
        for key in ["ca.key", "other-ca.key", "server.key", "client.key"] {
            pki.chmod(key, 0o600);
        }
        pki
    }

    /// The path of file `name` in the PKI directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// As [`Pki::path`], as a string for configs.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    pub fn chmod(&self, name: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(self.dir.join(name), std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
    }

    /// Run `openssl ARGS` in the PKI directory; panic with its output on failure.
    fn openssl(&self, parts: &[&[&str]]) {
        let args: Vec<&str> = parts.concat();
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
