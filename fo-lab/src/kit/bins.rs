//! Where the workspace's binaries are: beside the running test or tool, in the same
//! `target/<profile>/` (so `CARGO_TARGET_DIR` and the profile are respected).

use std::path::PathBuf;

/// `target/<profile>/` of the running executable (a test binary lives in
/// `target/<profile>/deps/`, a tool in `target/<profile>/`: both are handled).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the executable's directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("target/<profile>").to_owned()
    } else {
        dir.to_owned()
    }
}

/// The binary `name` of the same build as the running executable
/// (`target/<profile>/NAME`); it may not exist yet.
pub fn beside(name: &str) -> PathBuf {
    profile_dir().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_finds_the_profile_directory_above_deps() {
        // This test runs from target/<profile>/deps/.
        let dir = profile_dir();
        assert!(dir.join("deps").is_dir(), "{} has no deps/", dir.display());
        assert_eq!(beside("fo-agent"), dir.join("fo-agent"));
    }
}
