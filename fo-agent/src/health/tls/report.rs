//! What a check reports about TLS: [`TlsFailure`], why a handshake failed, worded for
//! `fo-agent status` (rustls' errors and alerts turned into the names operators look
//! up), and [`expiring`], the presented certificate that expires first.

use std::fmt;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, CertificateError};
use x509_cert::der::Decode as _;

use super::Attempt;

/// Why a TLS connection failed, as `fo-agent status` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The chain does not lead to a trusted CA.
    UnknownIssuer {
        own_ca: bool,
    },
    Expired {
        not_after: Option<String>,
    },
    NotYetValid {
        not_before: Option<String>,
    },
    /// The certificate does not name the server name (`sni`, or the host).
    WrongName {
        expected: String,
        presented: Vec<String>,
    },
    /// The server asked for a client certificate, none is configured, and it refused.
    ClientCertRequired,
    /// The server refused the client certificate that was sent.
    ClientCertRefused {
        alert: String,
    },
    /// The server ended the handshake with an alert.
    Alert {
        alert: String,
    },
    /// Anything else rustls reports about the certificate or the handshake.
    Other {
        reason: String,
    },
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer { own_ca: true } => f.write_str(
                "certificate not trusted: unknown issuer (no CA in `ca` signed it: wrong CA?)",
            ),
            Self::UnknownIssuer { own_ca: false } => f.write_str(
                "certificate not trusted: unknown issuer (no CA of the system store signed it: set `ca` to the CA that did)",
            ),
            Self::Expired { not_after: Some(t) } => write!(f, "certificate expired on {t}"),
            Self::Expired { not_after: None } => f.write_str("certificate expired"),
            Self::NotYetValid {
                not_before: Some(t),
            } => write!(f, "certificate not valid before {t} (check the clocks)"),
            Self::NotYetValid { not_before: None } => {
                f.write_str("certificate not valid yet (check the clocks)")
            }
            Self::WrongName {
                expected,
                presented,
            } if presented.is_empty() => {
                write!(
                    f,
                    "certificate is not valid for {expected:?} (it names none): wrong `sni`?"
                )
            }
            Self::WrongName {
                expected,
                presented,
            } => write!(
                f,
                "certificate is not valid for {expected:?} (it names {}): wrong `sni`?",
                presented.join(", ")
            ),
            Self::ClientCertRequired => f.write_str(
                "the server requires a client certificate and none is configured (set `cert` and `key`)",
            ),
            Self::ClientCertRefused { alert } => {
                write!(f, "the server refused the client certificate (alert {alert})")
            }
            Self::Alert { alert } => write!(f, "the server ended the connection with alert {alert}"),
            Self::Other { reason } => f.write_str(reason),
        }
    }
}

impl TlsFailure {
    /// Word a rustls error of a connection made with `attempt`.
    pub fn of(e: &rustls::Error, attempt: &Attempt) -> Self {
        use rustls::Error as E;
        let client_cert_alert = |a: &AlertDescription| {
            matches!(
                a,
                AlertDescription::CertificateRequired
                    | AlertDescription::BadCertificate
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::UnknownCA
                    | AlertDescription::AccessDenied
                    | AlertDescription::HandshakeFailure
            )
        };
        match e {
            E::InvalidCertificate(c) => certificate_failure(c, attempt),
            E::AlertReceived(a) if attempt.asked_for_cert() && !attempt.has_cert => {
                if client_cert_alert(a) {
                    Self::ClientCertRequired
                } else {
                    Self::Alert {
                        alert: alert_name(a),
                    }
                }
            }
            E::AlertReceived(AlertDescription::CertificateRequired) if !attempt.has_cert => {
                Self::ClientCertRequired
            }
            E::AlertReceived(a) if attempt.asked_for_cert() && client_cert_alert(a) => {
                Self::ClientCertRefused {
                    alert: alert_name(a),
                }
            }
            E::AlertReceived(a) => Self::Alert {
                alert: alert_name(a),
            },
            e => Self::Other {
                reason: e.to_string(),
            },
        }
    }
}

fn certificate_failure(c: &CertificateError, attempt: &Attempt) -> TlsFailure {
    match c {
        CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer {
            own_ca: attempt.own_ca,
        },
        CertificateError::Expired => TlsFailure::Expired { not_after: None },
        CertificateError::ExpiredContext { not_after, .. } => TlsFailure::Expired {
            not_after: Some(date(Duration::from_secs(not_after.as_secs()))),
        },
        CertificateError::NotValidYet => TlsFailure::NotYetValid { not_before: None },
        CertificateError::NotValidYetContext { not_before, .. } => TlsFailure::NotYetValid {
            not_before: Some(date(Duration::from_secs(not_before.as_secs()))),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => TlsFailure::WrongName {
            expected: server_name_text(expected),
            presented: presented.iter().map(|n| presented_name(n)).collect(),
        },
        CertificateError::NotValidForName => TlsFailure::WrongName {
            expected: "the server name".into(),
            presented: Vec::new(),
        },
        CertificateError::Other(other) => {
            match other.0.downcast_ref::<webpki::Error>() {
                Some(webpki::Error::CaUsedAsEndEntity) => TlsFailure::Other {
                    reason: "the server presents a CA certificate as its own (self-signed?): give it a certificate signed by a CA, or set insecure = true".into(),
                },
                Some(webpki::Error::UnsupportedCertVersion) => TlsFailure::Other {
                    reason: "the server's certificate is X.509 version 1 (no extensions, no names): issue a version 3 certificate".into(),
                },
                Some(e) => TlsFailure::Other {
                    reason: format!("invalid certificate: {e:?}"),
                },
                None => TlsFailure::Other {
                    reason: format!("invalid certificate: {other}"),
                },
            }
        }
        other => TlsFailure::Other {
            reason: format!("invalid certificate: {other:?}"),
        },
    }
}

/// rustls lists the names a certificate presents as `DnsName("a.example")` and
/// `IpAddress(192.0.2.1)`: keep the names.
fn presented_name(n: &str) -> String {
    n.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| {
            n.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(n)
        .to_owned()
}

fn server_name_text(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// `HandshakeFailure` -> `handshake_failure` (the RFC's names).
fn alert_name(a: &AlertDescription) -> String {
    let debug = format!("{a:?}");
    let mut out = String::with_capacity(debug.len() + 4);
    let mut previous_upper = true;
    for ch in debug.chars() {
        let upper = ch.is_ascii_uppercase();
        if upper && !previous_upper {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
        previous_upper = upper;
    }
    out
}

/// RFC 3339 UTC time of a Unix time.
fn date(since_epoch: Duration) -> String {
    x509_cert::der::DateTime::from_unix_duration(since_epoch).map_or_else(
        |_| format!("{}s after 1970", since_epoch.as_secs()),
        |d| d.to_string(),
    )
}

/// A presented certificate that expires within `min_cert_validity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// Its subject (RFC 4514), e.g. `CN=api.example.org`.
    pub subject: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Time left until it expires (zero once expired).
    pub left: Duration,
}

/// The certificate among `presented` that expires first, if it expires before
/// `now + within`. A certificate that cannot be read counts as a failure.
pub fn expiring(
    presented: &[CertificateDer<'_>],
    within: Duration,
    now: SystemTime,
) -> Result<Option<Expiring>, String> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut first: Option<(Duration, String)> = None;
    for (i, der) in presented.iter().enumerate() {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("cannot read certificate {} the server sent: {e}", i + 1))?;
        let tbs = cert.tbs_certificate();
        let not_after = tbs.validity().not_after.to_unix_duration();
        if first.as_ref().is_none_or(|(t, _)| not_after < *t) {
            first = Some((not_after, tbs.subject().to_string()));
        }
    }
    Ok(first.and_then(|(not_after, subject)| {
        (not_after < now.saturating_add(within)).then(|| Expiring {
            subject,
            not_after: date(not_after),
            left: not_after.saturating_sub(now),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_follow_the_rfc() {
        assert_eq!(
            alert_name(&AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(&AlertDescription::CertificateRequired),
            "certificate_required"
        );
        assert_eq!(alert_name(&AlertDescription::UnknownCA), "unknown_ca");
    }

    #[test]
    fn presented_names_are_plain() {
        assert_eq!(presented_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(presented_name("IpAddress(192.0.2.1)"), "192.0.2.1");
        assert_eq!(presented_name("URI(x)"), "URI(x)");
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(
            date(Duration::from_secs(1_735_689_600)),
            "2025-01-01T00:00:00Z"
        );
    }
}
