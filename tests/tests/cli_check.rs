//! `fo-agent check`: a valid config that `fo-agent run` would still refuse, or that
//! names a hook it cannot execute, fails the check with the file, the router or
//! service and the reason. Needs no privileges.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use fo_tests::netns::unique_tag;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("fo-cli-check-{}", unique_tag()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid single-node config; `router_extra` goes into the router table,
/// `service_extra` into the service table.
fn config(router_extra: &str, service_extra: &str) -> String {
    format!(
        r#"[node]
interface = "eth0"

[[router]]
name = "edge"
vrid = 7
vips = ["192.0.2.100"]
{router_extra}

[[service]]
name = "syslog"
vip = "192.0.2.100"
port = 514
{service_extra}
backends = [{{ address = "192.0.2.21" }}]
"#
    )
}

/// `fo-agent ARGS`: (success, stdout+stderr).
fn agent(args: &[&str]) -> (bool, String) {
    let out = Command::new(fo_tests::agent_bin())
        .args(args)
        .output()
        .expect("run fo-agent");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn check(path: &Path) -> (bool, String) {
    agent(&["check", "--config", path.to_str().expect("utf-8")])
}

fn hook(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("write hook");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

#[test]
fn a_runnable_config_is_ok() {
    let dir = TempDir::new();
    let h = hook(&dir.0, "master.sh", 0o755);
    let path = dir.0.join("ok.toml");
    std::fs::write(
        &path,
        config(&format!("hooks = {{ master = \"{}\" }}", h.display()), ""),
    )
    .expect("write");
    let (ok, text) = check(&path);
    assert!(ok, "expected OK, got: {text}");
    assert!(
        text.contains("ok.toml: OK"),
        "expected 'ok.toml: OK': {text}"
    );
}

#[test]
fn a_hook_that_is_not_executable_fails() {
    let dir = TempDir::new();
    let good = hook(&dir.0, "master.sh", 0o755);
    let bad = hook(&dir.0, "backup.sh", 0o644);
    let missing = dir.0.join("fault.sh");
    let path = dir.0.join("hooks.toml");
    std::fs::write(
        &path,
        config(
            &format!(
                "hooks = {{ master = \"{}\", backup = \"{}\", fault = \"{}\" }}",
                good.display(),
                bad.display(),
                missing.display()
            ),
            "",
        ),
    )
    .expect("write");
    let (ok, text) = check(&path);
    assert!(!ok, "a non-executable hook must fail the check: {text}");
    assert!(
        text.contains("hooks.toml: router edge: backup hook")
            && text.contains("backup.sh: not executable"),
        "expected the file, router, hook and 'not executable': {text}"
    );
    assert!(
        text.contains("router edge: fault hook") && text.contains("fault.sh"),
        "expected the missing fault hook to be reported: {text}"
    );
    assert!(
        !text.contains("master hook"),
        "the executable master hook is fine: {text}"
    );
}

#[test]
fn nat_is_checked_with_positions() {
    let dir = TempDir::new();
    let path = dir.0.join("nat.toml");
    std::fs::write(&path, config("snat = [\"192.0.2.101\"]", "mode = \"nat\"")).expect("write");
    let (ok, text) = check(&path);
    assert!(
        ok,
        "a NAT service with a SNAT address passes the check: {text}"
    );
    let path = dir.0.join("nosnat.toml");
    std::fs::write(&path, config("", "mode = \"nat\"")).expect("write");
    let (ok, text) = check(&path);
    assert!(
        !ok,
        "mode = \"nat\" without snat must fail the check: {text}"
    );
    assert!(
        text.contains("nosnat.toml:14:8: mode = \"nat\" needs SNAT addresses"),
        "expected the missing snat at the mode's line:column: {text}"
    );
}

#[test]
fn frr_and_https_fail_as_run_refuses_them() {
    let dir = TempDir::new();
    let path = dir.0.join("bgp.toml");
    std::fs::write(
        &path,
        r#"[node]
interface = "eth0"

[[router]]
name = "ingest"
ownership = "bgp"
vips = ["192.0.2.200"]
bgp = { daemon = "bird", control = "/run/bird/bird.ctl" }
"#,
    )
    .expect("write");
    let (ok, text) = check(&path);
    assert!(
        ok,
        "ownership = \"bgp\" through BIRD must pass the check: {text}"
    );
    let frr = std::fs::read_to_string(&path)
        .expect("read")
        .replace("\"bird\"", "\"frr\"");
    std::fs::write(&path, frr).expect("write");
    let (ok, text) = check(&path);
    assert!(!ok, "daemon = \"frr\" must fail the check: {text}");
    let line = "router ingest: bgp daemon \"frr\" is not supported by this build: fo announces through BIRD 2's control socket; use daemon = \"bird\"";
    assert!(
        text.contains(&format!("bgp.toml: {line}")),
        "expected '{line}' with the file name: {text}"
    );
    let (ok, run) = agent(&["run", "--config", path.to_str().expect("utf-8")]);
    assert!(!ok, "fo-agent run must refuse frr: {run}");
    assert!(
        run.contains(line),
        "run and check must say the same: run said {run:?}, check said {text:?}"
    );

    let path = dir.0.join("https.toml");
    std::fs::write(
        &path,
        config(
            "",
            "check = { kind = \"http\", path = \"/\", https = true, expect_status = 200 }",
        ),
    )
    .expect("write");
    let (ok, text) = check(&path);
    assert!(!ok, "an https check must fail the check: {text}");
    assert!(
        text.contains("https.toml: service syslog: https checks are not supported"),
        "expected the service's https check reported with the file: {text}"
    );
}

#[test]
fn users_that_do_not_exist_fail_as_run_refuses_them() {
    let dir = TempDir::new();
    let h = hook(&dir.0, "master.sh", 0o755);
    let path = dir.0.join("users.toml");
    let text = config(
        &format!(
            "hooks = {{ master = [\"{}\", \"MASTER\"], user = \"fo-no-such-hook-user\" }}",
            h.display()
        ),
        "check = { kind = \"exec\", command = [\"/bin/true\"], user = \"nobody\", group = \"fo-no-such-group\" }",
    );
    std::fs::write(&path, text).expect("write");
    let (ok, text) = check(&path);
    assert!(!ok, "unknown users and groups must fail the check: {text}");
    for line in [
        "users.toml: service syslog check: group \"fo-no-such-group\" does not exist",
        "users.toml: router edge hooks: user \"fo-no-such-hook-user\" does not exist",
    ] {
        assert!(text.contains(line), "expected {line:?} in: {text}");
    }
    let (ok, run) = agent(&["run", "--config", path.to_str().expect("utf-8")]);
    assert!(!ok, "fo-agent run must refuse them: {run}");
    assert!(
        run.contains("group \"fo-no-such-group\" does not exist"),
        "run must give the reason: {run}"
    );
    let fixed = std::fs::read_to_string(&path)
        .expect("read")
        .replace("fo-no-such-group", "nogroup")
        .replace("fo-no-such-hook-user", "nobody");
    std::fs::write(&path, fixed).expect("write");
    let (ok, text) = check(&path);
    assert!(ok, "existing users pass: {text}");
}
