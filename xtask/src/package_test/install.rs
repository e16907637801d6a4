//! The package installed into the root and checked there: its dependencies, the
//! binary, the group, every shipped config through `fo-agent check`, the man pages, the
//! completions, the unit; then removed (the conffile kept) and purged.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, ensure};

use super::chroot::Chroot;
use super::{CONF, UNIT, examples};
use crate::package;

pub(super) fn install_and_check(c: &Chroot, deb: &Path, report: &mut String) -> anyhow::Result<()> {
    let version = package::version()?;
    std::fs::copy(deb, c.path("/tmp/fo.deb")).context("copying the package into the root")?;
    // dpkg alone cannot configure it without its dependencies; apt then brings them.
    let (alone, _) = c.try_run("dpkg -i /tmp/fo.deb")?;
    c.run("DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq --no-install-recommends")?;
    let status = c.run("dpkg-query -W -f='${Status} ${Version}' fo")?;
    ensure!(
        status == format!("install ok installed {version}"),
        "dpkg says {status:?}"
    );
    writeln!(
        report,
        "install: dpkg -i {} its dependencies, apt-get -f install brought them: {status}",
        if alone { "found" } else { "lacked" }
    )?;

    let said = c.run("fo-agent --version")?;
    ensure!(
        said.trim() == format!("fo-agent {version}"),
        "fo-agent --version: {said:?}"
    );
    ensure!(
        c.run("getent group fo")?.starts_with("fo:"),
        "no group fo after install"
    );

    // Configs: the starting one, and every example, each file it names that `check`
    // reads provided first (the shipped hooks installed as the README says; PEMs, keys
    // and the hooks the package lacks made for the test).
    c.run(
        "install -d /etc/fo/hooks && install -m 0755 /usr/share/doc/fo/examples/hooks/*.sh /etc/fo/hooks/",
    )?;
    let said = c.run(&format!("fo-agent check --config {CONF}"))?;
    ensure!(said.trim().ends_with(": OK"), "check {CONF}: {said}");
    let mut checked = vec![CONF.to_owned()];
    let examples = c.path("/usr/share/doc/fo/examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    ensure!(
        !names.is_empty(),
        "no example configs in {}",
        examples.display()
    );
    let pki = examples::Pki::new(&c.path("/var/tmp/fo-pkgtest-pki"))?;
    // By path, as the first example that names it found it: a file made for an earlier
    // example is in the root for the later ones, and is not the package's.
    let mut provided = std::collections::BTreeMap::new();
    let mut not_read = std::collections::BTreeSet::new();
    for name in names {
        let text = std::fs::read_to_string(examples.join(&name))?;
        let needs = examples::prerequisites(&text).with_context(|| format!("example {name}"))?;
        not_read.extend(
            needs
                .iter()
                .filter(|(_, n)| **n == examples::Needs::NotRead)
                .map(|(p, _)| p.clone()),
        );
        for p in examples::provide(&c.dir, &needs, &pki)? {
            let made = format!("{} ({}: {})", p.path, p.needs.describe(), p.how);
            provided.entry(p.path).or_insert(made);
        }
        let said = c.run(&format!(
            "fo-agent check --config /usr/share/doc/fo/examples/{name}"
        ))?;
        ensure!(said.trim().ends_with(": OK"), "check {name}: {said}");
        checked.push(name);
    }
    writeln!(report, "fo-agent check OK: {}", checked.join(", "))?;
    writeln!(
        report,
        "  files the examples name: {}",
        provided.into_values().collect::<Vec<_>>().join(", ")
    )?;
    writeln!(
        report,
        "  named, not read by check: {}",
        not_read.into_iter().collect::<Vec<_>>().join(", ")
    )?;

    for (args, page) in [
        ("fo-agent", "man8/fo-agent.8.gz"),
        ("5 fo.toml", "man5/fo.toml.5.gz"),
    ] {
        let said = c.run(&format!("man -w {args}"))?;
        ensure!(
            said.trim() == format!("/usr/share/man/{page}"),
            "man -w {args}: {said:?}"
        );
    }
    writeln!(report, "man -w fo-agent, man -w 5 fo.toml: found")?;

    for f in [
        "/usr/share/bash-completion/completions/fo-agent",
        "/usr/share/zsh/vendor-completions/_fo-agent",
        "/usr/share/fish/vendor_completions.d/fo-agent.fish",
    ] {
        let len = std::fs::metadata(c.path(f)).map(|m| m.len()).unwrap_or(0);
        ensure!(len > 0, "completion {f} missing or empty");
    }
    let said = c.run(
        "bash -c '. /usr/share/bash-completion/completions/fo-agent && complete -p fo-agent'",
    )?;
    ensure!(
        said.contains("fo-agent"),
        "bash completion did not register: {said}"
    );
    writeln!(report, "completions: bash (loads), zsh, fish in place")?;

    let (ok, said) = c.try_run(&format!("systemd-analyze verify {UNIT}"))?;
    ensure!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}:\n{said}"
    );
    let (_, enabled) = c.try_run("systemctl is-enabled fo-agent.service")?;
    ensure!(
        enabled.trim() == "disabled",
        "after install the unit is {enabled:?}, not disabled"
    );
    writeln!(
        report,
        "unit: systemd-analyze verify clean; installed {}",
        enabled.trim()
    )?;

    // Remove keeps the conffile; purge removes it and the state directory.
    c.run("mkdir -p /var/lib/fo && echo '{}' > /var/lib/fo/state.json")?;
    c.run("dpkg -r fo")?;
    ensure!(c.path(CONF).exists(), "dpkg -r removed {CONF}");
    ensure!(
        !c.path("/usr/sbin/fo-agent").exists(),
        "dpkg -r left the binary"
    );
    let status = c.run("dpkg-query -W -f='${Status}' fo")?;
    ensure!(
        status == "deinstall ok config-files",
        "after remove: {status:?}"
    );
    c.run("dpkg -P fo")?;
    ensure!(!c.path(CONF).exists(), "dpkg -P left {CONF}");
    ensure!(!c.path("/var/lib/fo").exists(), "dpkg -P left /var/lib/fo");
    writeln!(
        report,
        "remove: {CONF} kept ({status}); purge: {CONF} and /var/lib/fo gone"
    )?;
    // The unit is needed once more, for the security figures.
    c.run("dpkg -i /tmp/fo.deb >/dev/null")?;
    Ok(())
}
