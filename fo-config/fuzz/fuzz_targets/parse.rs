//! `Config::parse` on arbitrary UTF-8: never panics, and every error it reports
//! points inside the text (1-based line and column) and fits on one line.
//!
//! Run: `cd fo-config/fuzz && cargo +nightly fuzz run parse corpus/parse`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match fo_config::Config::parse(text) {
        Ok(config) => {
            // A valid config parses to the same value every time.
            assert_eq!(fo_config::Config::parse(text).ok(), Some(config));
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error without problems");
            let lines = text.split('\n').count();
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "line {} outside 1..={lines}", e.line);
                let width = text.split('\n').nth(e.line - 1).map_or(0, |l| l.chars().count());
                assert!(e.col >= 1 && e.col <= width + 1, "column {} outside 1..={}", e.col, width + 1);
                assert!(!e.message.contains('\n'), "multi-line message {:?}", e.message);
            }
            assert_eq!(errors.to_string().lines().count(), errors.len());
        }
    }
});
