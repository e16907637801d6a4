//! Logging to journald as systemd runs the agent: stderr is the journal's stream
//! (JOURNAL_STREAM names it) and the agent, started without `--log-format`, logs
//! natively. The test plays journald's socket, reads the datagrams (both field forms,
//! and the memfd a large entry comes in) and checks the priorities and the `FO_*`
//! fields of a real takeover, a refused reload (300 kB: it comes as a memfd), a failed
//! hook (its 300 kB line cut at 4 KiB, with a note) and a backend down.

use std::os::unix::fs::MetadataExt as _;
use std::process::Stdio;
use std::time::Duration;

use fo_tests::journal::{Entry, Journal};
use fo_tests::lone::Lone;
use fo_tests::netns::{ChildGuard, wait_for};

#[test]
fn the_journal_gets_priorities_and_fields() {
    fo_tests::require_root();
    // The master hook prints a 300 kB line (logged cut, with a note) and fails.
    let lab = Lone::new(
        "head -c 300000 /dev/zero | tr '\\0' x; echo; echo 'cannot start compose' >&2; exit 3",
        "",
    );
    let had_run_systemd = std::path::Path::new("/run/systemd").exists();
    let journal = Journal::new();
    // stderr is a file standing for systemd's stream; JOURNAL_STREAM names it.
    let stderr_path = lab.dir.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let meta = stderr.metadata().expect("stat");
    let wrap = |p: &std::path::Path| journal.wrap(p);
    let mut cmd = lab.agent_command(Some(&wrap));
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let child = cmd.spawn().expect("spawn the agent");
    let mut agent = ChildGuard {
        child: Some(child),
        what: "fo-agent".into(),
    };

    let mut entries: Vec<Entry> = Vec::new();
    let took_over = wait_for(Duration::from_secs(30), || {
        if let Some(st) = agent.exited() {
            panic!(
                "the agent exited ({st}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        entries.extend(journal.receive(Duration::from_millis(200), Duration::from_secs(1)));
        let hook_done = entries.iter().any(|e| e.message().contains("hook failed"));
        let down = entries.iter().any(|e| e.message() == "down");
        let master = entries
            .iter()
            .any(|e| e.get("FO_TO").as_deref() == Some("master"));
        (hook_done && down && master).then_some(())
    });
    assert!(
        took_over.is_some(),
        "no takeover, failed hook and backend down in the journal after 30 s:\n{}",
        dump(&entries)
    );

    // A refused reload: a config whose error is longer than a datagram may be (the
    // unknown key is quoted in it), so the entry goes as a memfd.
    std::fs::write(
        &lab.config,
        format!(
            "[node]\ninterface = \"eth0\"\n{} = 1\n",
            "k".repeat(300_000)
        ),
    )
    .expect("bad config");
    let (ok, text) = lab.ctl(&["reload"]);
    assert!(!ok, "a bad config must be refused: {text}");
    entries.extend(journal.receive(Duration::from_millis(300), Duration::from_secs(5)));
    let _ = agent.kill_and_collect();

    let find = |what: &str, f: &dyn Fn(&Entry) -> bool| -> Entry {
        entries
            .iter()
            .find(|e| f(e))
            .cloned()
            .unwrap_or_else(|| panic!("no journal entry for {what}:\n{}", dump(&entries)))
    };
    let takeover = find("the takeover", &|e| {
        e.message().starts_with("VRRP transition") && e.get("FO_TO").as_deref() == Some("master")
    });
    assert_eq!(
        takeover.priority(),
        Some(6),
        "a transition is info: {takeover:?}"
    );
    assert_eq!(takeover.get("FO_ROUTER").as_deref(), Some("wazuh"));
    assert_eq!(takeover.get("FO_FROM").as_deref(), Some("backup"));
    assert_eq!(takeover.get("FO_REASON").as_deref(), Some("master_down"));
    let ms: f64 = takeover
        .get("FO_TAKEOVER_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a takeover carries FO_TAKEOVER_MS: {takeover:?}"));
    assert!(ms >= 0.0, "{ms}");
    assert_eq!(
        takeover.get("SYSLOG_IDENTIFIER").as_deref(),
        Some("fo-agent")
    );

    let reload = find("the refused reload", &|e| {
        e.message().contains("reload refused")
    });
    assert_eq!(
        reload.priority(),
        Some(3),
        "a refused reload is err: {reload:?}"
    );
    assert_eq!(reload.get("FO_VIA").as_deref(), Some("control socket"));

    let hook = find("the failed hook", &|e| e.message() == "hook failed");
    assert_eq!(hook.priority(), Some(3), "a failed hook is err: {hook:?}");
    assert_eq!(hook.get("FO_ROUTER").as_deref(), Some("wazuh"));
    assert_eq!(hook.get("FO_HOOK").as_deref(), Some("master"));

    let down = find("the backend down", &|e| e.message() == "down");
    assert_eq!(
        down.priority(),
        Some(4),
        "a backend down is a warning: {down:?}"
    );
    assert!(
        down.get("FO_TARGET").is_some_and(|t| t.contains("events")),
        "{down:?}"
    );

    assert!(
        reload.message().len() >= 300_000 && reload.via_memfd,
        "a 300 kB entry cannot be a datagram: it comes as a memfd ({} bytes, memfd {})",
        reload.message().len(),
        reload.via_memfd
    );

    // The hook's 300 kB line is logged cut at 4 KiB, and a note says so.
    let long = find("the hook's long line", &|e| e.message().starts_with("xxxx"));
    assert_eq!(long.message().len(), 4096, "a hook's line is cut at 4 KiB");
    assert_eq!(long.get("FO_STREAM").as_deref(), Some("stdout"));
    let note = find("the truncation note", &|e| {
        e.message().starts_with("output truncated")
    });
    assert_eq!(note.priority(), Some(4), "the note is a warning: {note:?}");
    assert_eq!(note.get("FO_HOOK").as_deref(), Some("master"));

    let mut priorities: Vec<u8> = entries.iter().filter_map(Entry::priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    println!(
        "{} journal entries, priorities {priorities:?}, takeover {ms} ms, {} via memfd",
        entries.len(),
        entries.iter().filter(|e| e.via_memfd).count()
    );
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        stderr.trim().is_empty(),
        "under journald nothing is logged twice on stderr: {stderr}"
    );
    // The journal's private namespace leaves the host's /run as it found it.
    drop(agent);
    drop(journal);
    assert_eq!(
        std::path::Path::new("/run/systemd").exists(),
        had_run_systemd,
        "/run/systemd existed before the test: {had_run_systemd}"
    );
}

fn dump(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| {
            let fields: Vec<String> = e
                .fields
                .iter()
                .filter(|(n, _)| n.starts_with("FO_") || n == "PRIORITY")
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect();
            let m = e.message();
            format!("{} | {}", &m[..m.len().min(120)], fields.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
