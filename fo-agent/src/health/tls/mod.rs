//! TLS for `https` checks, on rustls with the ring crypto provider (no OpenSSL):
//!
//! - [`Loader`]: a check's TLS settings turned into a client configuration, reading
//!   and checking its files (`ca`, `cert`, `key`: content, and who may change or read
//!   them, [`super::trust`]) once per start or reload. The same code serves
//!   `fo-agent check`, so a file it accepts is one the agent can use;
//! - [`TlsFailure`]: why a handshake failed, worded for `fo-agent status`, and
//!   [`expiring`]: the certificate the server presented that expires first, when it
//!   expires within `min_cert_validity` (both in [`report`]).
//!
//! Without `ca` the server's chain is verified against the system's trust store, read
//! by rustls-native-certs (on Debian `/etc/ssl/certs/ca-certificates.crt`, kept by
//! `update-ca-certificates`, site CAs included; `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! override it). `insecure = true` verifies nothing about the certificate (issuer,
//! name, dates) but still the handshake's signatures, so the connection is at least
//! with the holder of the presented key.
//!
//! Every probe is a full handshake: session resumption is off, so a certificate that
//! changed or expired on the server is seen at the next probe.

use std::fmt;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fo_config::{ConfigFile, Tls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_cert::der::Decode as _;

mod report;

pub use report::{Expiring, TlsFailure, expiring};

/// Largest CA, certificate or key file read.
pub const MAX_FILE: u64 = 1 << 20;

/// The crypto provider of every https check (chosen explicitly, not process-wide).
#[expect(
    deprecated,
    reason = "rustls 0.23.48 deprecates ring for lacking post-quantum key exchange; a health \
              check carries no secret that needs it, and aws-lc-rs adds a large C build (see \
              fo-agent/Cargo.toml)"
)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a check's TLS settings cannot be used. Each names the file and, through
/// [`TlsSetupError::position`], where the config names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{what} {}: cannot read it: {source}", file.path.display())]
    Read {
        what: &'static str,
        file: ConfigFile,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: not a regular file", file.path.display())]
    NotFile {
        what: &'static str,
        file: ConfigFile,
    },
    #[error("{what} {}: {size} bytes is too large (at most {MAX_FILE})", file.path.display())]
    TooLarge {
        what: &'static str,
        file: ConfigFile,
        size: u64,
    },
    #[error(
        "{what} {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)",
        file.path.display()
    )]
    NoCertificate {
        what: &'static str,
        file: ConfigFile,
    },
    #[error("{what} {}: not valid PEM: {reason}", file.path.display())]
    BadPem {
        what: &'static str,
        file: ConfigFile,
        reason: String,
    },
    #[error("ca {}: certificate {index} in it is not usable as a CA: {reason}", file.path.display())]
    BadCa {
        file: ConfigFile,
        /// 1-based, in file order.
        index: usize,
        reason: String,
    },
    #[error(
        "key {}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        file.path.display()
    )]
    NoKey { file: ConfigFile },
    #[error(
        "{what} {}: {reason}; {}",
        file.path.display(),
        reason.remedy(&file.path, *what == "key")
    )]
    Untrusted {
        what: &'static str,
        file: ConfigFile,
        reason: super::trust::Untrusted,
    },
    #[error("cert {} with key {}: {reason}", cert.path.display(), key.path.display())]
    ClientCert {
        cert: ConfigFile,
        key: ConfigFile,
        reason: String,
    },
    #[error(
        "no `ca` is set and the system's trust store has no certificate{reason}: install the ca-certificates package or set `ca`"
    )]
    NoSystemRoots { reason: String },
}

impl TlsSetupError {
    /// 1-based line and column of the file's name in the config, when a file is at fault.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Read { file, .. }
            | Self::NotFile { file, .. }
            | Self::TooLarge { file, .. }
            | Self::NoCertificate { file, .. }
            | Self::BadPem { file, .. }
            | Self::BadCa { file, .. }
            | Self::NoKey { file }
            | Self::Untrusted { file, .. } => Some((file.line, file.col)),
            Self::ClientCert { key, .. } => Some((key.line, key.col)),
            Self::NoSystemRoots { .. } => None,
        }
    }
}

/// Builds client configurations; reads the system's trust store at most once, and
/// each distinct set of settings once (every backend of a service shares one client).
#[derive(Default)]
pub struct Loader {
    system: Option<Result<Arc<RootCertStore>, String>>,
    built: Vec<(Tls, Result<TlsClient, Arc<TlsSetupError>>)>,
}

impl Loader {
    /// [`Loader::client`], built once per distinct settings.
    pub fn shared(&mut self, tls: &Tls) -> Result<TlsClient, Arc<TlsSetupError>> {
        if let Some((_, built)) = self.built.iter().find(|(t, _)| t == tls) {
            return built.clone();
        }
        let built = self.client(tls).map_err(Arc::new);
        self.built.push((tls.clone(), built.clone()));
        built
    }

    /// The client of a check with these settings, its files read and checked now.
    pub fn client(&mut self, tls: &Tls) -> Result<TlsClient, TlsSetupError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls' default protocol versions");
        let builder = if tls.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        } else {
            let roots = match &tls.ca {
                Some(ca) => Arc::new(ca_store(ca)?),
                None => self.system_roots()?,
            };
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsSetupError::NoSystemRoots {
                    reason: format!(" ({e})"),
                })?;
            builder.with_webpki_verifier(verifier)
        };
        let key = match &tls.client {
            Some(c) => {
                let chain = certificates("cert", &c.cert)?;
                let key = private_key(&c.key)?;
                let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                    TlsSetupError::ClientCert {
                        cert: c.cert.clone(),
                        key: c.key.clone(),
                        reason: match e {
                            rustls::Error::InconsistentKeys(_) => {
                                "the key does not belong to the certificate".into()
                            }
                            e => e.to_string(),
                        },
                    }
                })?;
                Some(Arc::new(certified))
            }
            None => None,
        };
        let mut config = builder.with_client_cert_resolver(Arc::new(ClientCertRequest {
            key: key.clone(),
            asked: Arc::default(),
        }));
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            settings: tls.clone(),
            config: Arc::new(config),
            key,
        })
    }

    fn system_roots(&mut self) -> Result<Arc<RootCertStore>, TlsSetupError> {
        let loaded = self.system.get_or_insert_with(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added > 0 {
                Ok(Arc::new(store))
            } else if let Some(e) = found.errors.first() {
                Err(format!(" ({e})"))
            } else {
                Err(String::new())
            }
        });
        loaded
            .clone()
            .map_err(|reason| TlsSetupError::NoSystemRoots { reason })
    }
}

/// Read a PEM file the agent trusts the content of, checking its type, size, owner and
/// mode on the opened file (a symlink is judged by its target) and who may change the
/// directories holding it ([`super::trust`]).
fn read_pem(
    what: &'static str,
    file: &ConfigFile,
    private: bool,
) -> Result<Vec<u8>, TlsSetupError> {
    let read = |source| TlsSetupError::Read {
        what,
        file: file.clone(),
        source,
    };
    // Not blocking on open: a FIFO at the path must not hang start or a reload.
    let f = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&file.path)
            .map_err(read)?
    };
    let meta = f.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(TlsSetupError::NotFile {
            what,
            file: file.clone(),
        });
    }
    super::trust::check(&file.path, &meta, private).map_err(|reason| TlsSetupError::Untrusted {
        what,
        file: file.clone(),
        reason,
    })?;
    if meta.len() > MAX_FILE {
        return Err(TlsSetupError::TooLarge {
            what,
            file: file.clone(),
            size: meta.len(),
        });
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_FILE).read_to_end(&mut data).map_err(read)?;
    Ok(data)
}

/// Every certificate of a PEM file (at least one).
fn certificates(
    what: &'static str,
    file: &ConfigFile,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let data = read_pem(what, file, false)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::NoCertificate {
                what,
                file: file.clone(),
            },
            e => TlsSetupError::BadPem {
                what,
                file: file.clone(),
                reason: e.to_string(),
            },
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            what,
            file: file.clone(),
        });
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_cert::Certificate::from_der(c) {
            return Err(TlsSetupError::BadPem {
                what,
                file: file.clone(),
                reason: format!("certificate {} is not X.509: {e}", i + 1),
            });
        }
    }
    Ok(certs)
}

fn ca_store(file: &ConfigFile) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates("ca", file)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsSetupError::BadCa {
            file: file.clone(),
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

fn private_key(file: &ConfigFile) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let data = read_pem("key", file, true)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::NoKey { file: file.clone() },
        e => TlsSetupError::BadPem {
            what: "key",
            file: file.clone(),
            reason: e.to_string(),
        },
    })
}

/// A check's TLS client: cheap to clone, shared by every backend of a service.
#[derive(Clone)]
pub struct TlsClient {
    settings: Tls,
    config: Arc<ClientConfig>,
    key: Option<Arc<CertifiedKey>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One connection's view of the client certificate exchange.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Set when the server asks for a client certificate.
    asked: Arc<AtomicBool>,
    /// A client certificate is configured.
    has_cert: bool,
    /// `ca` is set (else the system store is used).
    own_ca: bool,
}

impl Attempt {
    /// Did the server ask for a client certificate?
    pub fn asked_for_cert(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}

impl TlsClient {
    pub fn settings(&self) -> &Tls {
        &self.settings
    }

    /// The name to send (SNI) and verify: `sni`, else `host` (an IP address is verified
    /// against the certificate's IP addresses, and not sent).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.settings.sni.as_deref().unwrap_or(host);
        ServerName::try_from(name.to_owned())
            .map_err(|_| format!("{name:?} is not a valid TLS server name"))
    }

    /// A connector for one connection, and what it will learn about client certificates.
    pub fn connector(&self) -> (tokio_rustls::TlsConnector, Attempt) {
        let asked = Arc::new(AtomicBool::new(false));
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = Arc::new(ClientCertRequest {
            key: self.key.clone(),
            asked: asked.clone(),
        });
        let attempt = Attempt {
            asked,
            has_cert: self.key.is_some(),
            own_ca: self.settings.ca.is_some(),
        };
        (tokio_rustls::TlsConnector::from(Arc::new(config)), attempt)
    }
}

/// Offers the configured client certificate (if any) and records that the server asked.
#[derive(Debug)]
struct ClientCertRequest {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for ClientCertRequest {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// `insecure = true`: any certificate is accepted; the handshake's signatures are still
/// checked against the presented key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO where a PEM file should be is refused as no regular file; opening it used
    /// to block until a writer came, hanging start or a reload.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let path = std::env::temp_dir().join(format!("fo-tls-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let file = ConfigFile {
            path: path.clone(),
            line: 1,
            col: 1,
        };
        let got = read_pem("CA", &file, false);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(got, Err(TlsSetupError::NotFile { .. })), "{got:?}");
    }
}
