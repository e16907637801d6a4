//! Every example config shipped in deploy/examples must stay valid.

#[test]
fn every_shipped_example_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = fo_config::Config::load(&path) {
                panic!("{} is not a valid config:\n{e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the shipped examples in {}, found {seen}",
        dir.display()
    );
}

/// The starting config the Debian package installs as /etc/fo/fo.toml.
#[test]
fn the_packaged_starting_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/fo.toml");
    let config = fo_config::Config::load(&path)
        .unwrap_or_else(|e| panic!("{} is not a valid config:\n{e}", path.display()));
    assert_eq!(config.node.control_group.as_deref(), Some("fo"));
}
