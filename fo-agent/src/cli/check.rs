use std::path::Path;
use std::process::ExitCode;

use fo_config::Config;

/// `fo-agent check --config FILE`: the config parses and validates, and `fo-agent
/// run` would start with it (no feature this build lacks, every hook and exec program
/// safe to run, every hook there).
pub fn main(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Problems of files the config names point at their line: `FILE:LINE:COL: ...`.
    let located = fo_agent::health::problems(&config);
    let problems = problems(&config);
    if problems.is_empty() && located.is_empty() {
        println!("{}: OK", path.display());
        return ExitCode::SUCCESS;
    }
    for p in &located {
        eprintln!("{}", p.in_file(path));
    }
    for p in &problems {
        eprintln!("{}: {p}", path.display());
    }
    let count = located.len() + problems.len();
    eprintln!(
        "{}: {count} problem{}",
        path.display(),
        if count == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// What keeps a valid config from running here, one line each: what `fo-agent run`
/// refuses (same wording as `agent::run`), and users and groups (`user`, `group`) this
/// machine does not have. (The TLS files of https checks and the hook and exec programs
/// are `fo_agent::health::problems`, with positions.)
fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(fo_agent::bgp::unsupported(config));
    if let Err(keys) = fo_agent::vrrp::keyfile::load_all(config) {
        out.extend(keys);
    }
    out.extend(fo_agent::health::run_as_problems(config));
    out
}
