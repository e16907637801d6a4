//! The keepalived.conf import on arbitrary UTF-8: never panics, never hangs (the
//! harness runs each input under libFuzzer's `-timeout`), every parse error points
//! inside the text (1-based line and column), and whatever it translates is a
//! config `fo_config::Config::parse` accepts (the import validates its own output
//! and reports `Invalid` otherwise: that is a bug here).
//!
//! Run: `cargo xtask fuzz keepalived-import` (or `cd fo-import/fuzz && cargo +nightly
//! fuzz run keepalived corpus/keepalived`).
#![no_main]

use fo_import::{ImportError, Input, import_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let input = Input {
        interface: Some("eth0".into()),
        check_files: false,
    };
    match import_text(&input, "k.conf", text, None) {
        Ok(out) => {
            assert!(fo_config::Config::parse(&out.toml).is_ok(), "the import printed an invalid config");
            let again = import_text(&input, "k.conf", text, None).expect("the same input imports again");
            assert_eq!(again.toml, out.toml, "the import is deterministic");
        }
        Err(ImportError::Parse { error, rendered }) => {
            let lines = text.split('\n').count();
            let (line, col) = (error.at.line, error.at.col);
            assert!(line >= 1 && line <= lines, "line {line} outside 1..={lines}");
            let width = text.split('\n').nth(line - 1).map_or(0, |l| l.chars().count());
            assert!(col >= 1 && col <= width + 1, "column {col} outside 1..={}", width + 1);
            assert!(!rendered.contains('\n'), "multi-line message {rendered:?}");
        }
        Err(ImportError::Invalid(m)) => panic!("{m}"),
        Err(ImportError::Input(_) | ImportError::Read { .. }) => {}
    }
});
