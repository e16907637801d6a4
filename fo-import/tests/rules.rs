//! keepalived's own rules that change what a directive means, applied by the import
//! as keepalived 2.2 applies them (inputs keepalived -t reports warnings for, so they
//! are not golden cases), and the report's exit-status classes.

use fo_import::{ImportError, Input, Kind, import_text};

fn import(ka: &str) -> fo_import::Output {
    import_text(&Input::default(), "k.conf", ka, None).unwrap_or_else(|e| panic!("{e}"))
}

fn config(ka: &str) -> fo_config::Config {
    fo_config::Config::parse(&import(ka).toml).expect("valid fo config")
}

fn instance(body: &str) -> String {
    format!(
        "vrrp_script chk {{\n script /bin/true\n weight 10\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {{\n  192.0.2.100\n }}\n{body}\n}}\n"
    )
}

/// A vrrp_script `q` running `script` and an instance tracking it, `more` (whole lines)
/// ending the instance.
fn tracking_q(script: &str, more: &str) -> String {
    format!(
        "vrrp_script q {{\n script {script}\n}}\nvrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {{\n  192.0.2.100\n }}\n track_script {{\n  q\n }}\n{more}}}\n"
    )
}

fn vrrp(c: &fo_config::Config) -> &fo_config::Vrrp {
    c.routers[0].vrrp().expect("vrrp")
}

#[test]
fn state_master_without_priority_is_the_owner_and_clears_nopreempt() {
    let c = config(&instance("state MASTER\n nopreempt\n preempt_delay 3"));
    let v = vrrp(&c);
    assert_eq!(v.priority, 255);
    assert!(v.preempt, "nopreempt is cleared with state MASTER");
    assert!(
        v.preempt_delay.is_zero(),
        "preempt_delay is cleared with state MASTER"
    );
    let c = config(&instance("state BACKUP\n nopreempt"));
    assert_eq!(vrrp(&c).priority, 100);
    assert!(!vrrp(&c).preempt);
}

#[test]
fn authentication_is_ignored_with_version_3_and_cut_to_8_characters() {
    let auth = "authentication {\n  auth_type PASS\n  auth_pass 0123456789\n }";
    let c = config(&instance(&format!("version 3\n {auth}")));
    assert_eq!(vrrp(&c).auth_pass, None);
    let c = config(&instance(&format!("version 2\n {auth}")));
    assert_eq!(vrrp(&c).auth_pass.as_deref(), Some("01234567"));
}

#[test]
fn weights_follow_keepalived() {
    // Script default weight 10; instance overrides; weight 0 (and none) = fault.
    let ka = "vrrp_script up { script /bin/true\n weight 10\n}\nvrrp_script plain { script /bin/true\n}\n\
              vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {\n 192.0.2.100\n }\n \
              track_script {\n  up\n  plain\n  up2 weight 5\n }\n}\n";
    let c = config(ka);
    let t: Vec<(&str, i16)> = vrrp(&c)
        .track
        .iter()
        .map(|t| (t.check.as_str(), t.weight))
        .collect();
    assert_eq!(t, [("up", 10), ("plain", 0)], "up2 is no script: ignored");
    let c = config(&instance(
        "priority 100\n track_script {\n  chk weight -254\n }",
    ));
    assert_eq!(
        vrrp(&c).track[0].weight,
        -253,
        "keepalived turns ±254 into ±253"
    );
}

#[test]
fn the_owner_and_sync_group_members_drop_weighted_scripts() {
    let c = config(&instance(
        "priority 255\n track_script {\n  chk\n  chk2 weight 0\n }",
    ));
    assert!(
        vrrp(&c).track.is_empty(),
        "weighted tracks of an owner are dropped"
    );
    let ka = format!(
        "vrrp_sync_group G {{\n group {{\n  VI_1\n }}\n}}\n{}",
        instance("priority 100\n track_script {\n  chk\n }")
    );
    let out = import(&ka);
    let c = fo_config::Config::parse(&out.toml).expect("valid");
    assert!(
        vrrp(&c).track.is_empty(),
        "a weighted track of a sync group member is dropped"
    );
    assert!(out.report.left_out(), "the sync group itself is reported");
    let ka = format!(
        "vrrp_sync_group G {{\n group {{\n  VI_1\n }}\n sync_group_tracking_weight\n}}\n{}",
        instance("priority 100\n track_script {\n  chk\n }")
    );
    assert_eq!(vrrp(&config(&ka)).track[0].weight, 10);
}

#[test]
fn scripts_count_only_after_their_definition() {
    let ka = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 192.0.2.100\n }\n track_script {\n  late\n }\n}\nvrrp_script late {\n script /bin/true\n}\n";
    let out = import(ka);
    let c = fo_config::Config::parse(&out.toml).expect("valid");
    assert!(
        vrrp(&c).track.is_empty(),
        "keepalived ignores a script defined later"
    );
    assert!(
        out.report
            .findings
            .iter()
            .any(|f| f.kind == Kind::Ignored && f.reason.contains("before this instance"))
    );
}

#[test]
fn exit_classes() {
    let clean = import(&instance("priority 100"));
    assert!(!clean.report.left_out(), "{}", clean.report_text());
    let left = import(&instance("priority 100\n use_vmac"));
    assert!(left.report.left_out());
    for (ka, expected) in [
        (
            "vrrp_instance VI_1 {\n interface eth0\n",
            "k.conf:1:20: '{' is never closed",
        ),
        (
            "vrrp_instance VI_1 {\n virtual_router_id 300\n interface eth0\n}\n",
            "k.conf:2:20: virtual_router_id must be an integer in 1..=255, got \"300\"",
        ),
    ] {
        match import_text(&Input::default(), "k.conf", ka, None) {
            Err(ImportError::Parse { rendered, .. }) => assert_eq!(rendered, expected),
            Err(other) => panic!("expected a parse error, saw {other}"),
            Ok(_) => panic!("expected a parse error for {ka:?}, the import succeeded"),
        }
    }
}

#[test]
fn scripts_and_notify_lines_are_split_like_keepalived() {
    let ka = tracking_q(
        r#""/bin/sh -c 'exit 0' \"a b\"""#,
        r#" notify "/usr/local/bin/notify 'vip one'" nobody nogroup
"#,
    );
    let c = config(&ka);
    match &c.checks[0].kind {
        fo_config::CheckKind::Exec { command, .. } => {
            assert_eq!(command, &["/bin/sh", "-c", "exit 0", "a b"]);
        }
        other => panic!("exec expected, saw {other:?}"),
    }
    let h = &c.routers[0].hooks;
    let n = h.notify.as_ref().expect("notify");
    assert_eq!(n.program.to_str(), Some("/usr/local/bin/notify"));
    assert_eq!(n.args, ["vip one"]);
    assert_eq!(
        h.run_as,
        Some(fo_config::RunAs {
            user: "nobody".into(),
            group: Some("nogroup".into())
        })
    );
}

/// Found by the fuzzer: names end up in the output's comments, which TOML forbids
/// control characters in.
#[test]
fn control_characters_in_names_stay_out_of_comments() {
    let ka = "vrrp_instance VI_\u{1}x {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n 192.0.2.100\n }\n}\n";
    let out = import(ka);
    assert!(
        out.toml.contains("# from k.conf:1 vrrp_instance VI_?x"),
        "{}",
        out.toml
    );
}

/// Found by the fuzzer: what fo refuses in a router (a VIP of another router, a
/// loopback VIP, a peer of the other family) is reported, not written.
#[test]
fn what_fo_refuses_is_left_out_and_reported() {
    let ka = "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n\
              vrrp_instance B {\n interface eth0\n virtual_router_id 2\n unicast_peer {\n 2001:db8::1\n 192.0.2.9\n }\n virtual_ipaddress {\n 192.0.2.1\n 127.0.0.1\n 192.0.2.2\n }\n}\n";
    let out = import(ka);
    let c = fo_config::Config::parse(&out.toml).expect("valid");
    assert_eq!(
        c.routers[1].vips,
        ["192.0.2.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        vrrp_of(&c, 1).peers,
        ["192.0.2.9".parse::<std::net::IpAddr>().unwrap()]
    );
    let text = out.report_text();
    for want in [
        "192.0.2.1 is already a VIP of router a",
        "127.0.0.1 is not a unicast address",
        "2001:db8::1: a peer must be",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

fn vrrp_of(c: &fo_config::Config, i: usize) -> &fo_config::Vrrp {
    c.routers[i].vrrp().expect("vrrp")
}

/// fo always applies keepalived's `enable_script_security`: with it, the directive
/// needs nothing (ignored, not "not translated"); without it, the report warns at the
/// first script that fo refuses scripts a user other than root could change.
#[test]
fn script_security_is_always_on_in_fo() {
    let with = import(&format!(
        "global_defs {{\n enable_script_security\n}}\n{}",
        instance("track_script {\n  chk\n }")
    ));
    let text = with.report_text();
    assert!(
        text.contains(
            "k.conf:2: ignored: global_defs > enable_script_security: fo always does this"
        ),
        "{text}"
    );
    assert!(!text.contains(": warning:"), "{text}");
    assert!(!with.report.left_out(), "{text}");

    let without = import(&instance("track_script {\n  chk\n }"));
    let text = without.report_text();
    assert!(
        text.contains("k.conf:1: warning: vrrp_script chk > script: keepalived ran this config's scripts without enable_script_security; fo always refuses"),
        "{text}"
    );
    assert!(
        !without.report.left_out(),
        "a warning leaves nothing out: {text}"
    );

    let no_scripts = import(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  192.0.2.100\n }\n}\n",
    );
    assert!(
        !no_scripts.report_text().contains("enable_script_security"),
        "no scripts, nothing to say: {}",
        no_scripts.report_text()
    );
}

/// Found by the fuzzer: a check's program named by a relative path with a slash, which
/// fo refuses; keepalived runs it from its working directory (/ under systemd), so it is
/// written from / and reported as approximated, in a vrrp_script and in a MISC_CHECK.
#[test]
fn relative_check_programs_are_written_from_the_root() {
    let ka = tracking_q(r#""usr/../bin/./true x""#, "")
        + r#"virtual_server 192.0.2.100 1514 {
 lb_kind DR
 protocol TCP
 real_server 192.0.2.21 1514 {
  MISC_CHECK {
   misc_path "sbin/chk"
  }
 }
}
"#;
    let out = import(&ka);
    let c = fo_config::Config::parse(&out.toml).unwrap_or_else(|e| panic!("{e}\n{}", out.toml));
    match &c.checks[0].kind {
        fo_config::CheckKind::Exec { command, .. } => assert_eq!(command, &["/bin/true", "x"]),
        other => panic!("exec expected, saw {other:?}"),
    }
    assert!(out.toml.contains(r#""/sbin/chk""#), "{}", out.toml);
    let approximated: Vec<_> = out
        .report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Approximated && f.reason.contains("relative path"))
        .collect();
    assert_eq!(approximated.len(), 2, "{}", out.report_text());
}
