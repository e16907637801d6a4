//! `fo-agent import` golden tests: each directory of `fo-import/tests/golden/` holds a
//! keepalived.conf (its includes beside it), maybe an haproxy.cfg and an `interface`
//! file (the `--interface` argument), and the expected `expected.toml` (stdout),
//! `expected.report` (stderr) and `expected.exit` (exit status).
//!
//! For each case, first the real programs judge the input, so no case invents syntax:
//! Debian's keepalived (`keepalived -t -f`, in a namespace that has the interfaces the
//! configs name) must accept it, or reject it where the import must fail too (exit 1);
//! Debian's HAProxy (`haproxy -c -f`) must accept the haproxy.cfg. Then the real
//! `fo-agent import` runs in the case's directory (so the paths it prints are the
//! case's own), its output is compared with the expected files, and `fo-agent check`
//! must accept the config it printed.
//!
//! Regenerate the expected files on purpose: `UPDATE_GOLDEN=1 cargo test -p fo-tests
//! --test import_golden`, then read the diff.
//!
//! A second test checks that the inputs, together, use every directive issue 16 names.

use std::path::{Path, PathBuf};
use std::process::Command;

use fo_tests::netns::{Netns, unique_tag};

fn cases() -> Vec<PathBuf> {
    let dir = fo_tests::workspace_root().join("fo-import/tests/golden");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("keepalived.conf").exists())
        .collect();
    out.sort();
    assert!(
        out.len() >= 10,
        "expected the golden cases in {}",
        dir.display()
    );
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A namespace with the interfaces the inputs name (keepalived -t refuses unknown ones).
fn lab() -> Netns {
    let ns = Netns::new("import");
    for i in ["eth0", "eth1"] {
        ns.sh(&format!(
            "ip link add {i} type veth peer name {i}p && ip link set {i} up"
        ));
    }
    ns
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("spawn");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn golden_imports() {
    fo_tests::require_root();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let ns = lab();
    let tmp = std::env::temp_dir().join(format!("fo-import-golden-{}", unique_tag()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let mut failures = Vec::new();
    for case in cases() {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expected_exit: Option<i32> = std::fs::read_to_string(case.join("expected.exit"))
            .ok()
            .and_then(|s| s.trim().parse().ok());

        // 1. The real keepalived judges the input.
        let mut k = ns.command("keepalived");
        k.args(["-t", "-f", "keepalived.conf"]).current_dir(&case);
        let k = run(k);
        let must_fail = expected_exit == Some(1);
        if must_fail {
            assert_ne!(
                k.code, 0,
                "{name}: the import must fail on this input, but keepalived -t accepts it"
            );
        } else {
            assert_eq!(
                k.code, 0,
                "{name}: keepalived -t -f keepalived.conf refuses the input (so it is no valid test input):\n{}{}",
                k.stdout, k.stderr
            );
        }
        // 2. The real HAProxy judges haproxy.cfg.
        let haproxy = case.join("haproxy.cfg").exists();
        if haproxy {
            let mut h = Command::new("haproxy");
            h.args(["-c", "-f", "haproxy.cfg"]).current_dir(&case);
            let h = run(h);
            assert_eq!(
                h.code, 0,
                "{name}: haproxy -c refuses haproxy.cfg:\n{}{}",
                h.stdout, h.stderr
            );
        }
        // 3. fo-agent import.
        let mut cmd = Command::new(fo_tests::agent_bin());
        cmd.args(["import", "--keepalived", "keepalived.conf"])
            .current_dir(&case);
        if haproxy {
            cmd.args(["--haproxy", "haproxy.cfg"]);
        }
        if let Ok(i) = std::fs::read_to_string(case.join("interface")) {
            cmd.args(["--interface", i.trim()]);
        }
        let out = run(cmd);
        if update {
            std::fs::write(case.join("expected.toml"), &out.stdout).expect("write");
            std::fs::write(case.join("expected.report"), &out.stderr).expect("write");
            std::fs::write(case.join("expected.exit"), format!("{}\n", out.code)).expect("write");
        } else {
            let want_toml = read(&case.join("expected.toml"));
            let want_report = read(&case.join("expected.report"));
            if out.stdout != want_toml {
                failures.push(format!("{name}: stdout differs from expected.toml:\n--- expected\n{want_toml}\n--- seen\n{}", out.stdout));
            }
            if out.stderr != want_report {
                failures.push(format!("{name}: stderr differs from expected.report:\n--- expected\n{want_report}\n--- seen\n{}", out.stderr));
            }
            if Some(out.code) != expected_exit {
                failures.push(format!(
                    "{name}: exit {} (expected {expected_exit:?})",
                    out.code
                ));
            }
        }
        // 4. What it printed passes fo-agent check.
        if out.code != 1 {
            let path = tmp.join(format!("{name}.toml"));
            std::fs::write(&path, &out.stdout).expect("write");
            let c = run({
                let mut c = Command::new(fo_tests::agent_bin());
                c.arg("check").arg("--config").arg(&path);
                c
            });
            if c.code != 0 {
                failures.push(format!(
                    "{name}: fo-agent check refuses the translation:\n{}{}",
                    c.stdout, c.stderr
                ));
            }
        } else {
            assert!(
                out.stdout.is_empty(),
                "{name}: a failed import printed a config"
            );
            assert!(
                out.stderr.starts_with("keepalived.conf:"),
                "{name}: a parse error names FILE:LINE:COL, saw {:?}",
                out.stderr
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every directive issue 16 lists appears in some golden input.
#[test]
fn golden_inputs_cover_every_listed_directive() {
    let mut text = String::new();
    for case in cases() {
        for entry in walk(&case) {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("expected.") {
                continue;
            }
            text.push_str(&read(&entry));
            text.push('\n');
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    let listed = [
        // global_defs
        "global_defs",
        "router_id",
        "enable_script_security",
        "script_user",
        "vrrp_version",
        "vrrp_garp_master_repeat",
        "vrrp_garp_interval",
        "vrrp_garp_master_refresh",
        "vrrp_garp_master_delay",
        // vrrp_script
        "vrrp_script",
        "script",
        "interval",
        "timeout",
        "weight",
        "rise",
        "fall",
        "user",
        // vrrp_instance
        "vrrp_instance",
        "state",
        "interface",
        "virtual_router_id",
        "priority",
        "advert_int",
        "nopreempt",
        "preempt_delay",
        "virtual_ipaddress",
        "dev",
        "label",
        "virtual_ipaddress_excluded",
        "unicast_src_ip",
        "unicast_peer",
        "authentication",
        "PASS",
        "AH",
        "auth_pass",
        "track_script",
        "track_interface",
        "track_file",
        "notify_master",
        "notify_backup",
        "notify_fault",
        "notify_stop",
        "notify",
        "version",
        "vrrp_sync_group",
        // LVS
        "virtual_server",
        "lb_kind",
        "DR",
        "NAT",
        "lb_algo",
        "persistence_timeout",
        "real_server",
        "TCP_CHECK",
        "HTTP_GET",
        "SSL_GET",
        "MISC_CHECK",
        "include",
        // HAProxy
        "frontend",
        "backend",
        "listen",
        "bind",
        "server",
        "check",
        "inter",
        "disabled",
        "backup",
        "source",
        "roundrobin",
        "leastconn",
        "http",
    ];
    let missing: Vec<&str> = listed.iter().copied().filter(|w| !has(w)).collect();
    assert!(missing.is_empty(), "no golden input uses {missing:?}");
    assert!(
        text.contains("/24 dev eth0 label"),
        "the dev/label/prefix form of a VIP"
    );
    assert!(text.contains("include conf.d/*"), "an include with a glob");
    assert!(text.contains("balance source"), "balance source");
    assert!(text.contains("mode http"), "an HTTP-mode frontend");
    for w in ["weight 0", "weight -", "weight 2"] {
        assert!(text.contains(w), "a track weight like {w:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
