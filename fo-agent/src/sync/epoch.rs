//! This node's sync epoch: larger at every start, kept in a small file beside the
//! `state_file` (`<state_file>.sync-epoch`), so that peers, which accept epochs only
//! moving forward, take a restarted sender's datagrams as new.
//!
//! The next epoch is the larger of the stored one + 1 and the clock in milliseconds
//! since the Unix epoch: a lost file then costs nothing unless the clock also went
//! back past the last start. It is on disk (written to a temporary file, synced,
//! renamed, the directory synced) before the first datagram is sent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("reading the sync epoch file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the sync epoch file {path} holds {found:?}, not an epoch (remove it: the next epoch is then taken from the clock)"
    )]
    Parse { path: PathBuf, found: String },
    #[error("writing the sync epoch file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the epoch of an agent with `state_file` is kept.
pub fn path_for(state_file: &Path) -> PathBuf {
    let mut name = state_file.file_name().unwrap_or_default().to_owned();
    name.push(".sync-epoch");
    state_file.with_file_name(name)
}

/// The next epoch after the one stored in `stored` (`None`: no file), at
/// `now_unix_ms`.
pub fn next(stored: Option<u64>, now_unix_ms: u64) -> u64 {
    stored
        .map_or(0, |e| e.saturating_add(1))
        .max(now_unix_ms)
        .max(1)
}

/// Take this start's epoch: read `path`, store the next epoch there, return it.
pub fn advance(path: &Path, now_unix_ms: u64) -> Result<u64, EpochError> {
    let stored = match std::fs::read_to_string(path) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| EpochError::Parse {
            path: path.to_owned(),
            found: text.chars().take(40).collect(),
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(EpochError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let epoch = next(stored, now_unix_ms);
    write(path, epoch).map_err(|source| EpochError::Write {
        path: path.to_owned(),
        source,
    })?;
    Ok(epoch)
}

fn write(path: &Path, epoch: u64) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{epoch}")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_forward_even_when_the_clock_goes_back() {
        assert_eq!(next(None, 1_700_000_000_000), 1_700_000_000_000);
        assert_eq!(next(Some(5), 1_700_000_000_000), 1_700_000_000_000);
        assert_eq!(
            next(Some(1_700_000_000_000), 1_600_000_000_000),
            1_700_000_000_001,
            "clock stepped back: the stored epoch still wins"
        );
        assert_eq!(next(Some(41), 41), 42, "two starts in one millisecond");
        assert_eq!(
            next(None, 0),
            1,
            "never 0 (0 means \"not heard\" in an echo)"
        );
    }

    #[test]
    fn each_start_stores_a_larger_epoch() {
        let dir = std::env::temp_dir().join(format!("fo-sync-epoch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = path_for(&dir.join("state.json"));
        assert_eq!(path, dir.join("state.json.sync-epoch"));
        let first = advance(&path, 1000).expect("first start");
        assert_eq!(first, 1000);
        let second = advance(&path, 10).expect("second start");
        assert_eq!(second, 1001);
        assert_eq!(std::fs::read_to_string(&path).expect("file").trim(), "1001");
        std::fs::write(&path, "garbage").expect("write");
        let err = advance(&path, 10).expect_err("refused");
        assert!(err.to_string().contains("not an epoch (remove it"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
