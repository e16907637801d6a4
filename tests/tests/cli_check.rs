//! `fo-agent check`: a valid config that `fo-agent run` would still refuse, or that
//! names a hook it cannot execute, or a hook or exec program that a user other than root
//! could change, fails the check with the file, the router or service and the reason. Run as root: `user = ` on checks and hooks is accepted only
//! by a process that holds CAP_SETUID and CAP_SETGID.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use fo_tests::temp::TempDir;

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
    fo_tests::outcome(&out)
}

/// Write `name` in `dir`: a config whose master hook is `master` (its TOML value, `{}`
/// standing for a new executable hook's path) run as `hook_user`, and whose service
/// check runs `/bin/true` as nobody in `group`. Returns its path.
fn users_config(
    dir: &TempDir,
    name: &str,
    (master, hook_user): (&str, &str),
    group: &str,
) -> PathBuf {
    let h = hook(dir.path(), "master.sh", 0o755);
    let master = master.replace("{}", &h.display().to_string());
    let path = dir.path().join(name);
    let text = config(
        &format!("hooks = {{ master = {master}, user = \"{hook_user}\" }}"),
        &format!(
            "check = {{ kind = \"exec\", command = [\"/bin/true\"], user = \"nobody\", group = \"{group}\" }}"
        ),
    );
    std::fs::write(&path, text).expect("write");
    path
}

/// Write `text` to `name` in `dir` and check it: the file's path and the check's
/// outcome.
fn check_text(dir: &TempDir, name: &str, text: &str) -> (PathBuf, bool, String) {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    let (ok, said) = check(&path);
    (path, ok, said)
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
    let dir = TempDir::new("cli-check");
    let h = hook(&dir.0, "master.sh", 0o755);
    let (_, ok, text) = check_text(
        &dir,
        "ok.toml",
        &config(&format!("hooks = {{ master = \"{}\" }}", h.display()), ""),
    );
    assert!(ok, "expected OK, got: {text}");
    assert!(
        text.contains("ok.toml: OK"),
        "expected 'ok.toml: OK': {text}"
    );
}

#[test]
fn a_hook_that_is_not_executable_fails() {
    let dir = TempDir::new("cli-check");
    let good = hook(&dir.0, "master.sh", 0o755);
    let bad = hook(&dir.0, "backup.sh", 0o644);
    let missing = dir.0.join("fault.sh");
    let (path, ok, text) = check_text(
        &dir,
        "hooks.toml",
        &config(
            &format!(
                "hooks = {{ master = \"{}\", backup = \"{}\", fault = \"{}\" }}",
                good.display(),
                bad.display(),
                missing.display()
            ),
            "",
        ),
    );
    assert!(!ok, "a non-executable hook must fail the check: {text}");
    // Each at the line and column of its path in the config.
    let line = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .nth(7)
        .expect("hooks line")
        .to_owned();
    let col = |p: &Path| line.find(&format!("\"{}", p.display())).expect("column") + 1;
    assert!(
        text.contains(&format!(
            "hooks.toml:8:{}: router edge: backup hook {}: not executable",
            col(&bad),
            bad.display()
        )),
        "expected the file, line:column, router, hook and 'not executable': {text}"
    );
    assert!(
        text.contains(&format!(
            "hooks.toml:8:{}: router edge: fault hook {} does not exist",
            col(&missing),
            missing.display()
        )),
        "expected the missing fault hook to be reported: {text}"
    );
    assert!(
        !text.contains("master hook"),
        "the executable master hook is fine: {text}"
    );
}

#[test]
fn nat_is_checked_with_positions() {
    let dir = TempDir::new("cli-check");
    let (_, ok, text) = check_text(
        &dir,
        "nat.toml",
        &config("snat = [\"192.0.2.101\"]", "mode = \"nat\""),
    );
    assert!(
        ok,
        "a NAT service with a SNAT address passes the check: {text}"
    );
    let (_, ok, text) = check_text(&dir, "nosnat.toml", &config("", "mode = \"nat\""));
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
fn frr_fails_as_run_refuses_it() {
    let dir = TempDir::new("cli-check");
    let (path, ok, text) = check_text(
        &dir,
        "bgp.toml",
        r#"[node]
interface = "eth0"

[[router]]
name = "ingest"
ownership = "bgp"
vips = ["192.0.2.200"]
bgp = { daemon = "bird", control = "/run/bird/bird.ctl" }
"#,
    );
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
}

/// The TLS files of https checks: each one `fo-agent run` could not use is reported at
/// the line and column of its name. (`run` starts with such a check down and logs the
/// same words: health_https.rs.)
#[test]
fn unusable_tls_files_fail_with_their_line_and_column() {
    let dir = TempDir::new("cli-check");
    let pki = fo_tests::pki::Pki::new("127.0.0.1");
    let d = dir.0.display();
    std::fs::write(dir.0.join("notpem.txt"), "just some text\n").expect("write");
    let copy = |from: &str, to: &str, mode: u32| {
        let p = dir.0.join(to);
        std::fs::copy(pki.path(from), &p).expect("copy");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    };
    let group_readable = copy("client.key", "group.key", 0o640);
    // Group-readable by a group other than root or ssl-cert.
    std::os::unix::fs::chown(&group_readable, None, Some(65534)).expect("chgrp nogroup");
    let cert_as_key = copy("client.pem", "cert-as-key.key", 0o600);
    // As Wazuh ships its CA: in a directory of the indexer's user, mode 0500 (root
    // under the packaged unit, without CAP_DAC_READ_SEARCH, cannot even reach it).
    let theirs_dir = dir.0.join("indexer-certs");
    std::fs::create_dir(&theirs_dir).expect("mkdir");
    let theirs = theirs_dir.join("root-ca.pem");
    std::fs::copy(pki.path("ca.pem"), &theirs).expect("copy");
    std::os::unix::fs::chown(&theirs_dir, Some(65534), Some(65534)).expect("chown");
    std::fs::set_permissions(&theirs_dir, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let theirs = theirs.display().to_string();
    let client = pki.file("client.pem");
    let https = |name: &str, keys: &str| {
        format!("[[check]]\nname = \"{name}\"\nkind = \"https\"\naddress = \"127.0.0.1\"\n{keys}\n")
    };
    let text = format!(
        "{}{}{}{}{}{}{}",
        config(
            "",
            &format!("check = {{ kind = \"https\", ca = \"{d}/notpem.txt\" }}")
        ),
        https("missing", &format!("ca = \"{d}/missing.pem\"")),
        https(
            "loose",
            &format!("cert = \"{client}\"\nkey = \"{group_readable}\"")
        ),
        https(
            "not-a-key",
            &format!("cert = \"{client}\"\nkey = \"{cert_as_key}\"")
        ),
        https(
            "mismatch",
            &format!("cert = \"{client}\"\nkey = \"{}\"", pki.file("server.key"))
        ),
        https(
            "good",
            &format!(
                "ca = \"{}\"\ncert = \"{client}\"\nkey = \"{}\"",
                pki.file("ca.pem"),
                pki.file("client.key")
            )
        ),
        https("theirs", &format!("ca = \"{theirs}\"")),
    );
    let (path, ok, out) = check_text(&dir, "tls.toml", &text);
    assert!(!ok, "unusable TLS files must fail the check: {out}");
    let p = path.display();
    let expected = [
        format!(
            "{p}:14:32: service syslog: ca {d}/notpem.txt: no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)"
        ),
        format!(
            "{p}:20:6: check missing: ca {d}/missing.pem: cannot read it: No such file or directory (os error 2)"
        ),
        format!(
            "{p}:26:7: check loose: key {group_readable}: mode 0640 lets group nogroup (gid 65534) read the private key; run `chmod 600 {group_readable}` (or `chgrp ssl-cert {group_readable}`)"
        ),
        format!(
            "{p}:32:7: check not-a-key: key {cert_as_key}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
        ),
        format!(
            "{p}:38:7: check mismatch: cert {client} with key {}: the key does not belong to the certificate",
            pki.file("server.key")
        ),
        format!(
            "{p}:50:6: check theirs: ca {theirs}: directory {d}/indexer-certs: owned by uid 65534, who could replace what it holds; give fo its own copy where only root can change it: `install -o root -g root -m 0644 {theirs} /etc/fo/`"
        ),
        format!("{p}: 6 problems"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, expected, "fo-agent check output for:\n{text}");

    // Fixed (the key 0600, the right files), the same checks pass.
    let fixed = text
        .replace(
            &format!("ca = \"{d}/notpem.txt\""),
            &format!("ca = \"{}\"", pki.file("ca.pem")),
        )
        .replace(&format!("{d}/missing.pem"), &pki.file("ca.pem"))
        .replace(&group_readable, &pki.file("client.key"))
        .replace(&cert_as_key, &pki.file("client.key"))
        .replace(&pki.file("server.key"), &pki.file("client.key"))
        .replace(&theirs, &pki.file("ca.pem"));
    std::fs::write(&path, &fixed).expect("write");
    let (ok, out) = check(&path);
    assert!(ok, "usable TLS files must pass the check: {out}\n{fixed}");
}

/// `https = true` never ran: it is refused with the kind to write instead.
#[test]
fn the_old_https_key_points_to_kind_https() {
    let dir = TempDir::new("cli-check");
    let (path, ok, text) = check_text(
        &dir,
        "https.toml",
        &config(
            "",
            "check = { kind = \"http\", path = \"/\", https = true, expect_status = 200 }",
        ),
    );
    assert!(!ok, "https = true must fail the check: {text}");
    let line = format!(
        "{}:14:46: `https` is not a check key: write kind = \"https\" for a check over TLS",
        path.display()
    );
    assert!(text.contains(&line), "expected {line:?} in: {text}");
}

#[test]
fn users_that_do_not_exist_fail_as_run_refuses_them() {
    let dir = TempDir::new("cli-check");
    let hook_keys = (r#"["{}", "MASTER"]"#, "fo-no-such-hook-user");
    let path = users_config(&dir, "users.toml", hook_keys, "fo-no-such-group");
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

/// Running a check or hook as another user needs CAP_SETUID and CAP_SETGID, which the
/// packaged unit's bounding set leaves out: `check` and `run` say so instead of every
/// such check failing at its first run. (Dropped here with setpriv, as root.)
#[test]
fn users_need_cap_setuid_and_cap_setgid() {
    let dir = TempDir::new("cli-check");
    let path = users_config(&dir, "caps.toml", (r#""{}""#, "nobody"), "nogroup");
    let without = |sub: &str| {
        let out = Command::new("setpriv")
            .args(["--inh-caps=-all", "--ambient-caps=-all"])
            .arg("--bounding-set=-setuid,-setgid")
            .arg("--")
            .arg(fo_tests::agent_bin())
            .args([sub, "--config", path.to_str().expect("utf-8")])
            .output()
            .expect("run setpriv (util-linux)");
        fo_tests::outcome(&out)
    };
    let (ok, text) = without("check");
    assert!(
        !ok,
        "without CAP_SETUID/CAP_SETGID the check must fail: {text}"
    );
    let line = "caps.toml: service syslog check, router edge hooks set `user`, but this process lacks CAP_SETGID and CAP_SETUID";
    assert!(text.contains(line), "expected {line:?} in: {text}");
    let (ok, run) = without("run");
    assert!(!ok, "fo-agent run must refuse it: {run}");
    assert!(
        run.contains("lacks CAP_SETGID and CAP_SETUID"),
        "run must give the reason: {run}"
    );
    let (ok, text) = check(&path);
    assert!(ok, "with every capability the same config passes: {text}");
}

/// Hooks and exec checks run as root: a program that a user other than root could
/// change (it, a directory above it, a link on the way or what the link leads to) fails
/// `check` and `run` at the line and column where the config names it; a bare name is
/// judged where PATH finds it. Fixed, the same config passes. (keepalived's
/// enable_script_security, always on.)
#[test]
fn programs_others_could_change_fail_check_and_run_at_their_position() {
    let dir = TempDir::new("cli-check");
    let mkdir = |name: &str, mode: u32| {
        let d = dir.0.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).expect("chmod");
        d
    };
    let open = mkdir("open", 0o777);
    let theirs = mkdir("theirs", 0o755);
    std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown nobody");
    let bin = mkdir("bin", 0o777);
    let good = mkdir("good", 0o755);
    let master = hook(&open, "master.sh", 0o755);
    let app = hook(&theirs, "app-ok", 0o755);
    hook(&bin, "fo-test-probe", 0o755);
    // A link in a good directory to a script in the world-writable one.
    let backup = good.join("backup.sh");
    std::os::unix::fs::symlink(hook(&open, "backup-real.sh", 0o755), &backup).expect("symlink");
    let text = format!(
        "{}\n[[check]]\nname = \"app\"\nkind = \"exec\"\ncommand = [\"{}\", \"-q\"]\n\n[[check]]\nname = \"probe\"\nkind = \"exec\"\ncommand = [\"fo-test-probe\"]\n",
        config(
            &format!(
                "hooks = {{ master = \"{}\", backup = [\"{}\", \"x\"] }}",
                master.display(),
                backup.display()
            ),
            "",
        ),
        app.display()
    );
    let path = dir.0.join("unsafe.toml");
    std::fs::write(&path, &text).expect("write");
    let search = format!("{}:/usr/bin:/bin", bin.display());
    let with_path = |sub: &str| {
        let out = Command::new(fo_tests::agent_bin())
            .args([sub, "--config", path.to_str().expect("utf-8")])
            .env("PATH", &search)
            .output()
            .expect("run fo-agent");
        fo_tests::outcome(&out)
    };
    let (ok, out) = with_path("check");
    assert!(
        !ok,
        "programs others could change must fail the check: {out}"
    );
    let at = |needle: &str| {
        let (i, l) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .expect("line");
        format!(
            "{}:{}:{}",
            path.display(),
            i + 1,
            l.find(needle).expect("col") + 1
        )
    };
    let p = |d: &Path| d.display().to_string();
    let tail = "a user other than root could change what fo runs as root";
    let expected = [
        format!(
            "{}: router edge: master hook {}: directory {} is writable by others (mode 0777): {tail}",
            at(&format!("\"{}", p(&master))),
            p(&master),
            p(&open)
        ),
        format!(
            "{}: router edge: backup hook {}: directory {} is writable by others (mode 0777): {tail}",
            at(&format!("[\"{}", p(&backup))),
            p(&backup),
            p(&open)
        ),
        format!(
            "{}: check app: command {}: directory {} is owned by uid 65534 (nobody), not root: {tail}",
            at(&format!("\"{}", p(&app))),
            p(&app),
            p(&theirs)
        ),
        format!(
            "{}: check probe: command {}/fo-test-probe: directory {} is writable by others (mode 0777): {tail}",
            at("\"fo-test-probe"),
            p(&bin),
            p(&bin)
        ),
    ];
    for line in &expected {
        assert!(
            out.lines().any(|l| l.starts_with(line.as_str())),
            "expected a line starting {line:?} in:\n{out}"
        );
    }
    assert!(
        out.trim_end().ends_with("unsafe.toml: 4 problems"),
        "four problems: {out}"
    );
    let (ok, run) = with_path("run");
    assert!(!ok, "fo-agent run must refuse the config: {run}");
    for line in &expected {
        assert!(
            run.contains(line.as_str()),
            "run must say {line:?} too; it said {run}"
        );
    }

    // Fixed: root's directories, writable by root only (and a sticky directory is
    // fine, as /tmp is).
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    std::os::unix::fs::chown(&theirs, Some(0), None).expect("chown root");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (ok, out) = with_path("check");
    assert!(ok, "fixed, the config passes: {out}");

    // A program owned by the user it runs as is that user's business.
    std::os::unix::fs::chown(&app, Some(65534), None).expect("chown nobody");
    let (ok, out) = with_path("check");
    assert!(
        !ok && out.contains("is owned by uid 65534 (nobody), not root"),
        "nobody's program run as root: {out}"
    );
    let as_nobody = text.replace("\"-q\"]", "\"-q\"]\nuser = \"nobody\"");
    std::fs::write(&path, &as_nobody).expect("write");
    let (ok, out) = with_path("check");
    assert!(ok, "nobody's program run as nobody passes: {out}");
}

#[test]
fn check_says_where_a_tunnel_service_sends_from() {
    let dir = TempDir::new("tcp-check");
    let path = dir.path().join("fo.toml");
    std::fs::write(&path, config("", "mode = \"tunnel\"")).expect("write");
    let (ok, out) = agent(&["check", "--config", path.to_str().expect("utf-8")]);
    assert!(ok, "{out}");
    assert!(
        out.contains("OK")
            && out.contains("note: service syslog: tunnel (IPIP), outer source = this node's address toward each backend, fixed")
            && out.contains("mtu of the next hop's interface"),
        "the note must say the source is fixed and where the MTU comes from:\n{out}"
    );
    std::fs::write(
        &path,
        config(
            "",
            "mode = \"tunnel\"\nencap = \"gue\"\ntunnel_source = \"10.9.0.0/24\"\nmtu = 1400",
        ),
    )
    .expect("write");
    let (ok, out) = agent(&["check", "--config", path.to_str().expect("utf-8")]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tunnel (gue), outer source varied per flow over 10.9.0.0/24, mtu 1400"),
        "{out}"
    );
}
