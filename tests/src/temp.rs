//! Temporary directories for tests: a name unique to this process and call, under the
//! system's temporary directory.

use std::path::{Path, PathBuf};

use crate::netns::unique_tag;

/// Create `fo-{what}-{tag}` under the system's temporary directory, `tag` from
/// [`unique_tag`]; returns the tag (a lab names its namespaces and pins with it too)
/// and the directory. The caller removes it.
pub fn new_dir(what: &str) -> (String, PathBuf) {
    let tag = unique_tag();
    let dir = std::env::temp_dir().join(format!("fo-{what}-{tag}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    (tag, dir)
}

/// A directory from [`new_dir`], removed with everything in it on drop, also when the
/// test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        TempDir(new_dir(what).1)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
