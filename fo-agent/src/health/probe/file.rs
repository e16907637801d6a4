//! The file probe: a file exists, or holds a text within its first [`READ_LIMIT`] bytes.

use std::path::Path;
use std::time::Duration;

use crate::health::http::find;

use super::{ProbeError, ProbeResult, READ_LIMIT, blocking};

/// Healthy when `path` exists and, if `contains` is set, its first
/// [`READ_LIMIT`] bytes contain that text.
pub async fn file(path: &Path, contains: Option<&str>, timeout: Duration) -> ProbeResult {
    let path = path.to_owned();
    let contains = contains.map(str::to_owned);
    blocking(timeout, format!("file {}", path.display()), move || {
        use std::io::Read as _;
        let err = |source| ProbeError::File {
            path: path.clone(),
            source,
        };
        let Some(expected) = contains else {
            std::fs::metadata(&path).map_err(err)?;
            return Ok(format!("{} exists", path.display()));
        };
        let f = std::fs::File::open(&path).map_err(err)?;
        let mut data = Vec::new();
        f.take(READ_LIMIT as u64)
            .read_to_end(&mut data)
            .map_err(err)?;
        if find(&data, expected.as_bytes()).is_some() {
            Ok(format!("{} contains {expected:?}", path.display()))
        } else {
            Err(ProbeError::FileContents {
                path,
                expected,
                limit: READ_LIMIT,
            })
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::{T, TempDir};

    #[tokio::test]
    async fn file_exists_and_contains() {
        let dir = TempDir::new("file");
        let path = dir.path().join("mounted");
        let r = file(&path, None, T).await;
        assert!(
            matches!(r, Err(ProbeError::File { .. })),
            "missing file, saw {r:?}"
        );
        std::fs::write(&path, "state=ready\n").expect("write");
        let r = file(&path, None, T).await;
        assert!(r.is_ok(), "existing file, saw {r:?}");
        let r = file(&path, Some("ready"), T).await;
        assert!(r.is_ok(), "contained text, saw {r:?}");
        let r = file(&path, Some("degraded"), T).await;
        assert!(
            matches!(r, Err(ProbeError::FileContents { .. })),
            "saw {r:?}"
        );
    }
}
