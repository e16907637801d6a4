//! What the operator set by hand and the agent must not forget when it restarts:
//! routers taken out with `demote` (until `resume` or `promote`) and backends taken
//! out with `backend drain` (until `backend enable`). Kept in `[node] state_file` as
//! JSON, replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory), so a crash leaves the old or the new state, never a torn one.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fo_config::Config;
use serde::{Deserialize, Serialize};
use tracing::error;

use super::Operator;

/// Format version written into the file.
const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorState {
    pub version: u32,
    /// Routers demoted by the operator.
    pub demoted: BTreeSet<String>,
    /// (service, backend) pairs drained by the operator.
    pub drained: BTreeSet<Drained>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drained {
    pub service: String,
    pub backend: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OperatorStateError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}:{column}: {message} (fix or remove the file; it holds the operator's demotes and drains)"
    )]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: format version {found}, this agent reads {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl OperatorState {
    /// The state in `path`; empty if the file does not exist (first start).
    pub fn load(path: &Path) -> Result<Self, OperatorStateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(OperatorStateError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let state: OperatorState =
            serde_json::from_str(&text).map_err(|e| OperatorStateError::Parse {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        if state.version != VERSION {
            return Err(OperatorStateError::Version {
                path: path.to_owned(),
                found: state.version,
            });
        }
        Ok(state)
    }

    pub fn empty() -> Self {
        OperatorState {
            version: VERSION,
            ..Default::default()
        }
    }

    /// Replace `path` with this state, atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), OperatorStateError> {
        let err = |source| OperatorStateError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".tmp");
        let tmp = dir.join(name);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| err(e.into()))?;
        text.push('\n');
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(err)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }

    /// Split into what `config` has (applied) and what it does not have (a router,
    /// service or backend removed, maybe for a while: kept in the file, not applied).
    pub fn split_known(&self, config: &Config) -> (Self, Self) {
        let (mut known, mut unknown) = (Self::empty(), Self::empty());
        for r in &self.demoted {
            let side = if config.router(r).is_some() {
                &mut known
            } else {
                &mut unknown
            };
            side.demoted.insert(r.clone());
        }
        for d in &self.drained {
            let side = if config
                .service(&d.service)
                .is_some_and(|s| s.backend(&d.backend).is_some())
            {
                &mut known
            } else {
                &mut unknown
            };
            side.drained.insert(d.clone());
        }
        (known, unknown)
    }

    /// One line per entry, for the log.
    pub fn describe(&self) -> Vec<String> {
        self.demoted
            .iter()
            .map(|r| format!("demote of router {r}"))
            .chain(
                self.drained
                    .iter()
                    .map(|d| format!("drain of backend {} of {}", d.backend, d.service)),
            )
            .collect()
    }

    /// Both states' entries.
    pub fn union(&self, other: &Self) -> Self {
        OperatorState {
            version: VERSION,
            demoted: self.demoted.union(&other.demoted).cloned().collect(),
            drained: self.drained.union(&other.drained).cloned().collect(),
        }
    }

    /// The drains as the data plane code takes them.
    pub fn drains(&self) -> BTreeSet<(String, String)> {
        self.drained
            .iter()
            .map(|d| (d.service.clone(), d.backend.clone()))
            .collect()
    }
}

impl Operator {
    /// Save the demotes and drains to `state_file`. Returns what to add to
    /// the operator's reply: nothing, or a warning that a restart would forget it.
    pub(super) fn save(&self) -> String {
        let state = OperatorState {
            demoted: self.demoted.clone(),
            drained: self
                .drains
                .iter()
                .map(|(service, backend)| Drained {
                    service: service.clone(),
                    backend: backend.clone(),
                })
                .collect(),
            ..OperatorState::empty()
        }
        .union(&self.unknown);
        match state.save(&self.state_file) {
            Ok(()) => String::new(),
            Err(e) => {
                let why = crate::dataplane::error_chain(&e);
                error!(error = %why, "operator state not saved: a restart would forget it");
                format!(" (WARNING, not saved: {why}; a restart of the agent would forget it)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::TempDir;

    fn config() -> Config {
        Config::parse(
            r#"[node]
interface = "eth0"

[[router]]
name = "wazuh"
vrid = 51
vips = ["192.0.2.100"]

[[service]]
name = "ingest"
vip = "192.0.2.100"
port = 1514
backends = [{ name = "b1", address = "192.0.2.21" }, { name = "b2", address = "192.0.2.22" }]
"#,
        )
        .expect("config")
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_saved_one_reads_back() {
        let dir = TempDir::new("opstate-roundtrip");
        let path = dir.path().join("sub/state.json");
        assert_eq!(
            OperatorState::load(&path).expect("load"),
            OperatorState::empty()
        );

        let mut s = OperatorState::empty();
        s.demoted.insert("wazuh".into());
        s.drained.insert(Drained {
            service: "ingest".into(),
            backend: "b2".into(),
        });
        s.save(&path).expect("save (creates the directory)");
        assert_eq!(OperatorState::load(&path).expect("load"), s);
        assert!(
            !dir.path().join("sub/state.json.tmp").exists(),
            "the temporary file is renamed into place"
        );
        s.demoted.clear();
        s.save(&path).expect("save over");
        assert_eq!(OperatorState::load(&path).expect("load"), s);
    }

    #[test]
    fn a_broken_file_is_refused_with_line_and_column() {
        let dir = TempDir::new("opstate-broken");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\n  \"version\": 1,\n  \"demoted\": [wazuh]\n}\n").expect("write");
        let e = OperatorState::load(&path).expect_err("refused").to_string();
        assert!(e.contains("state.json:3:"), "{e}");

        std::fs::write(&path, r#"{"version": 7, "demoted": [], "drained": []}"#).expect("write");
        let e = OperatorState::load(&path).expect_err("refused").to_string();
        assert!(e.contains("format version 7"), "{e}");
    }

    #[test]
    fn entries_the_config_no_longer_has_are_kept_apart() {
        let mut s = OperatorState::empty();
        s.demoted.extend(["wazuh".to_string(), "gone".to_string()]);
        for (service, backend) in [("ingest", "b1"), ("ingest", "b9"), ("old", "b1")] {
            s.drained.insert(Drained {
                service: service.into(),
                backend: backend.into(),
            });
        }
        let (known, unknown) = s.split_known(&config());
        assert_eq!(known.demoted, BTreeSet::from(["wazuh".to_string()]));
        assert_eq!(
            known.drains(),
            BTreeSet::from([("ingest".to_string(), "b1".to_string())])
        );
        assert_eq!(
            unknown.describe(),
            [
                "demote of router gone",
                "drain of backend b9 of ingest",
                "drain of backend b1 of old"
            ]
        );
        assert_eq!(known.union(&unknown), s, "nothing is lost");
    }
}
