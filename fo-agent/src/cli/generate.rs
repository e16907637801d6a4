//! `fo-agent generate man|completions DIR`: the man pages and shell completions the
//! Debian package ships. Not part of the documented command line (see `main`).
//!
//! They are made by the binary itself, from the very clap definitions it parses its
//! command line with, so they cannot drift from it; `cargo xtask package` runs the
//! binary it packages (under qemu-user for arm64) rather than linking the product into
//! xtask, which must build on a bare machine.
//!
//! - `man`: fo-agent.8 (synopsis, commands, files, signals, exit status), one
//!   fo-agent-COMMAND.8 per subcommand with its options, and fo.toml.5, the reference of
//!   every config key (`fo_config::reference`).
//! - `completions`: fo-agent.bash, _fo-agent (zsh) and fo-agent.fish.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_mangen::roff::{Roff, bold, italic, roman};

/// `fo-agent generate WHAT DIR`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "fo-agent generate",
    about = "Write fo's man pages or shell completions into DIR"
)]
pub struct Generate {
    #[arg(value_enum)]
    what: What,
    dir: std::path::PathBuf,
}

impl Generate {
    pub fn run(self) -> ExitCode {
        main(self.what, &self.dir)
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum What {
    /// fo-agent.8, fo-agent-COMMAND.8, fo.toml.5.
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

fn main(what: What, dir: &Path) -> ExitCode {
    let result = std::fs::create_dir_all(dir).and_then(|()| match what {
        What::Man => man(dir),
        What::Completions => completions(dir),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fo-agent generate: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The command line as the pages and completions show it (no `help` subcommand).
fn command() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

const MANUAL: &str = "fo manual";

fn source() -> String {
    format!("fo {}", env!("CARGO_PKG_VERSION"))
}

fn man(dir: &Path) -> std::io::Result<()> {
    let cmd = command();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = clap_mangen::Man::new(sub.clone())
            .section("8")
            .manual(MANUAL)
            .source(source());
        let mut out = Vec::new();
        page.render(&mut out)?;
        see_also(&mut Roff::new(), &["fo-agent(8)", "fo.toml(5)"]).to_writer(&mut out)?;
        write(dir, &page.get_filename(), &out)?;
    }
    let mut out = Vec::new();
    agent_page(&cmd, &mut out)?;
    write(dir, "fo-agent.8", &out)?;
    let mut out = Vec::new();
    config_page(&mut out)?;
    write(dir, "fo.toml.5", &out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(dir.join(name))?;
    f.write_all(bytes)?;
    f.flush()
}

/// fo-agent(8): clap's sections, then what an operator of a daemon looks for.
fn agent_page(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual(MANUAL)
        .source(source());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    let mut r = Roff::new();
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "fo-agent elects a master per virtual router with VRRP (keepalived-compatible), \
         BGP or static ownership, and serves the routers' VIPs and load-balanced services \
         with an XDP program: it answers ARP and ND for the VIPs and spreads TCP and UDP \
         connections over backends by Maglev consistent hashing, with direct server \
         return or NAT. The program and its maps are pinned in bpffs, so a restart or \
         crash of the agent drops no packet; a lease in the maps stops a dead agent's \
         node from answering for the VIPs.",
    )]);
    r.control("PP", []);
    r.text([
        roman("The configuration is described in "),
        bold("fo.toml"),
        roman("(5). "),
        bold("fo-agent run"),
        roman(
            " is what the systemd unit fo-agent.service runs; the other commands validate a \
               config or talk to the running agent over its control socket.",
        ),
    ]);
    r.to_writer(out)?;
    page.render_options_section(out)?;
    page.render_subcommands_section(out)?;

    let mut r = Roff::new();
    r.control("SH", ["SIGNALS"]);
    tp(
        &mut r,
        "SIGHUP",
        "Reload the configuration, as fo-agent reload does. A config the agent cannot take is refused and logged; the running config stays.",
    );
    tp(
        &mut r,
        "SIGTERM, SIGINT",
        "Stop: masters send priority 0 and release their VIPs, BGP routers withdraw, then the agent exits. The data plane stays pinned.",
    );
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(
        "0 on success. 1 when a config is invalid (check lists every problem with its \
         line and column), when the agent refuses a request (for example a reload of a \
         config it cannot take: systemctl reload then fails too), or when the agent \
         cannot be reached.",
    )]);
    r.control("SH", ["ENVIRONMENT"]);
    tp(
        &mut r,
        "FO_LOG",
        "Log filter of fo-agent run, in tracing's EnvFilter syntax (default: info).",
    );
    r.control("SH", ["FILES"]);
    tp(&mut r, "/etc/fo/fo.toml", "The configuration (fo.toml(5)).");
    tp(
        &mut r,
        "/run/fo/control.sock",
        "The control socket (node.control_socket).",
    );
    tp(
        &mut r,
        "/var/lib/fo/state.json",
        "Demotes and drains kept across restarts (node.state_file).",
    );
    tp(
        &mut r,
        "/sys/fs/bpf/fo",
        "The pinned data plane (node.bpf_dir). Removing it detaches and unloads the XDP program.",
    );
    tp(
        &mut r,
        "/sys/fs/bpf/fo-decap/IF/",
        "On a tunnel-mode backend: fo-agent decap's pinned program and maps for interface IF (--detach removes them).",
    );
    tp(
        &mut r,
        "/usr/share/doc/fo/examples/",
        "Example configs and hooks.",
    );
    see_also(
        &mut r,
        &[
            "fo.toml(5)",
            "systemctl(1)",
            "journalctl(1)",
            "keepalived(8)",
        ],
    );
    r.to_writer(out)?;
    page.render_version_section(out)
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn tp(r: &mut Roff, tag: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(tag)]);
    r.text([roman(text)]);
}

fn see_also<'a>(r: &'a mut Roff, pages: &[&str]) -> &'a mut Roff {
    r.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, p) in pages.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        let (name, section) = p.split_once('(').unwrap_or((p, ")"));
        inlines.push(bold(name));
        inlines.push(roman(format!("({section}")));
    }
    r.text(inlines);
    r
}

/// fo.toml(5), from `fo_config::reference`.
fn config_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    let reference = fo_config::reference::reference();
    let mut r = Roff::new();
    r.control("TH", ["FO.TOML", "5", "", &source(), MANUAL]);
    r.control("SH", ["NAME"]);
    r.text([roman("fo.toml - configuration of fo-agent")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([bold("/etc/fo/fo.toml")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("The configuration of "),
        bold("fo-agent"),
        roman("(8), in TOML: one [node] table and any number of [[router]], [[service]] and \
               [[check]] tables. Unknown keys are errors. "),
        bold("fo-agent check --config FILE"),
        roman(" reports every problem with its line and column; "),
        bold("fo-agent reload"),
        roman(" (or systemctl reload fo-agent) applies a changed file, or refuses it and keeps the running config."),
    ]);
    r.control("PP", []);
    r.text([roman(
        "Durations are strings of numbers with units: ns, us, ms, s, m (minutes), h, \
         d (24 hours), e.g. \"100ms\", \"1.5s\", \"1m30s\", \"30d\". A number without a \
         unit is an error.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "Each key below gives its type, its default, what it accepts and an example, \
         written as it appears inside its table (a longer example is a whole file).",
    )]);
    for table in &reference.tables {
        r.control("SH", [table.title.as_str()]);
        r.text([roman(table.text.trim())]);
        for key in reference.keys_of(&table.name) {
            r.control("TP", []);
            r.text([bold(key.name())]);
            r.text([roman(key.text.trim())]);
            r.control("RS", []);
            for (label, value) in [
                ("Type: ", &key.ty),
                ("Default: ", &key.default),
                ("Accepted: ", &key.range),
            ] {
                r.control("br", []);
                r.text([italic(label), roman(value.trim())]);
            }
            if let Some(hint) = &key.retired {
                r.control("br", []);
                r.text([
                    italic("Refused: "),
                    roman(format!("fo-agent check names it and says: {}", hint.trim())),
                ]);
            }
            r.control("sp", []);
            r.control("nf", []);
            r.text([roman(key.example.trim())]);
            r.control("fi", []);
            r.control("RE", []);
        }
    }
    r.control("SH", ["EXAMPLE"]);
    r.text([roman(
        "A node of a VRRP pair with one DSR service; the other node has priority 100 and \
         this node as its peer:",
    )]);
    r.control("sp", []);
    r.control("RS", ["4"]);
    r.control("nf", []);
    r.text([roman(EXAMPLE.trim())]);
    r.control("fi", []);
    r.control("RE", []);
    r.control("PP", []);
    r.text([roman(
        "More, with checks, gates, hooks, BGP and NAT: /usr/share/doc/fo/examples/.",
    )]);
    r.control("SH", ["FILES"]);
    tp(
        &mut r,
        "/etc/fo/fo.toml",
        "The configuration fo-agent.service runs with.",
    );
    see_also(&mut r, &["fo-agent(8)", "keepalived.conf(5)"]);
    r.to_writer(out)
}

const EXAMPLE: &str = r#"
[node]
interface = "eth0"
control_group = "fo"
metrics = "127.0.0.1:9469"

[[router]]
name = "web"
vrid = 51
priority = 150
advert_interval = "100ms"
vips = ["192.0.2.10"]
peers = ["192.0.2.12"]
witness = { address = "192.0.2.1" }

[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "tcp", interval = "1s", timeout = "500ms" }
backends = [{ address = "192.0.2.21" }, { address = "192.0.2.22" }]
"#;

fn completions(dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    let mut cmd = command();
    for (shell, file) in [
        (Shell::Bash, "fo-agent.bash"),
        (Shell::Zsh, "_fo-agent"),
        (Shell::Fish, "fo-agent.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "fo-agent", &mut out);
        write(dir, file, &out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's example is a valid config.
    #[test]
    fn the_example_of_fo_toml_5_is_valid() {
        if let Err(e) = fo_config::Config::parse(EXAMPLE) {
            panic!("the example of fo.toml(5) is refused:\n{e}");
        }
    }

    /// Every key of the reference appears in the rendered fo.toml(5), under its table.
    #[test]
    fn fo_toml_5_names_every_key() {
        let mut out = Vec::new();
        config_page(&mut out).expect("render");
        let page = String::from_utf8(out).expect("utf-8");
        let reference = fo_config::reference::reference();
        for key in &reference.keys {
            let title = reference
                .tables
                .iter()
                .find(|t| t.name == key.table())
                .map(|t| t.title.as_str())
                .expect("table");
            let section = page
                .split(&format!(".SH {title}\n"))
                .nth(1)
                .and_then(|s| s.split("\n.SH ").next())
                .unwrap_or_else(|| panic!("no section {title} in fo.toml.5"));
            let tag = format!(".TP\n\\fB{}\\fR\n", key.name().replace('-', "\\-"));
            assert!(
                section.contains(&tag),
                "fo.toml.5 has no entry {tag:?} under {title}"
            );
        }
    }

    /// `generate` stays out of the pages and completions; every command is in them.
    #[test]
    fn completions_offer_every_command_but_generate() {
        let dir = std::env::temp_dir().join(format!("fo-generate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        completions(&dir).expect("completions");
        let bash = std::fs::read_to_string(dir.join("fo-agent.bash")).expect("bash");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            !bash.contains("generate"),
            "bash completion offers generate"
        );
        for sub in command().get_subcommands() {
            assert!(
                bash.contains(sub.get_name()),
                "bash completion lacks {}",
                sub.get_name()
            );
        }
    }
}
