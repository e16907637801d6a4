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
        for n in notes(&config) {
            println!("{}: note: {n}", path.display());
        }
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

/// What a valid config does that an operator may not expect, one line each.
pub fn notes(config: &Config) -> Vec<String> {
    config
        .services
        .iter()
        .filter_map(|s| {
            let t = s.tunnel?;
            let mtu = match t.mtu {
                Some(m) => format!("mtu {m}"),
                None => "mtu of the next hop's interface".to_string(),
            };
            Some(match (t.source, t.encap) {
                (Some(p), _) => format!(
                    "service {}: tunnel ({}), outer source varied per flow over {p}, {mtu}",
                    s.name,
                    t.encap.as_str()
                ),
                (None, fo_config::Encap::Gue) => format!(
                    "service {}: tunnel (GUE to port {}), outer source = this node's address toward each backend, fixed; flows spread by the UDP source port; {mtu}",
                    s.name, t.gue_port
                ),
                (None, fo_config::Encap::Ipip) => format!(
                    "service {}: tunnel (IPIP), outer source = this node's address toward each backend, fixed: the backends' receive-side scaling sees one source (set tunnel_source = \"PREFIX\" or encap = \"gue\" to spread flows); {mtu}",
                    s.name
                ),
            })
        })
        .collect()
}
