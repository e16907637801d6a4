//! Numeric timer values and a few rules, asserted directly so that a unit mix-up
//! (seconds vs centiseconds) cannot hide behind a regenerated golden file.

use super::router::address_greater;
use super::*;
use crate::types::{AdverInterval, Centisecs, Priority, Seconds};
use std::net::IpAddr;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address parses")
}

fn cs(n: u16) -> AdverInterval {
    AdverInterval::Centisecs(Centisecs(n))
}

fn secs(n: u8) -> AdverInterval {
    AdverInterval::Seconds(Seconds(n))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn at(n: u64) -> Time {
    Time::from_epoch(ms(n))
}

fn router(priority: u8, interval: AdverInterval) -> Router {
    Router::new(Config {
        priority: Priority(priority),
        advert_interval: interval,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: ip("10.0.0.1"),
        fence_timeout: None,
        sync_then_claim: false,
        drain_grace: Duration::from_secs(2),
    })
    .expect("valid config")
}

/// A router of `priority` advertising every 10 cs, Master since its Master_Down_Timer
/// fired at 400 ms.
fn master_at_400(priority: u8) -> Router {
    let mut r = router(priority, cs(10));
    r.handle(at(0), Event::Startup);
    r.handle(at(400), fired(Timer::MasterDown));
    assert_eq!(r.state(), State::Master);
    r
}

fn fired(which: Timer) -> Event {
    Event::TimerFired { which }
}

/// An advertisement from `from` at `priority`, carrying `interval`.
fn advert(from: &str, priority: u8, interval: AdverInterval) -> Event {
    Event::AdvertReceived {
        from: ip(from),
        priority: Priority(priority),
        interval,
    }
}

#[test]
fn v3_skew_and_master_down_in_centiseconds() {
    // (256 - 100) * 100 / 256 = 15600 / 256 = 60.9 -> 60 cs; down = 300 + 60 cs.
    assert_eq!(skew_time(Priority(100), cs(100)), ms(600));
    assert_eq!(master_down_interval(Priority(100), cs(100)), ms(3600));
    // (256 - 200) * 100 / 256 = 21.8 -> 21 cs.
    assert_eq!(skew_time(Priority(200), cs(100)), ms(210));
    assert_eq!(master_down_interval(Priority(200), cs(100)), ms(3210));
    // Owner: 100 / 256 -> 0 cs.
    assert_eq!(skew_time(Priority(255), cs(100)), Duration::ZERO);
    assert_eq!(master_down_interval(Priority(255), cs(100)), ms(3000));
    // Priority 1: 255 * 100 / 256 = 99.6 -> 99 cs.
    assert_eq!(skew_time(Priority(1), cs(100)), ms(990));
    // 10 cs (the contract's "100ms"): (156 * 10) / 256 = 6.09 -> 6 cs; down = 30 + 6 cs.
    assert_eq!(skew_time(Priority(100), cs(10)), ms(60));
    assert_eq!(master_down_interval(Priority(100), cs(10)), ms(360));
    // 50 cs: 156 * 50 / 256 = 30.47 -> 30 cs; down = 150 + 30 cs.
    assert_eq!(master_down_interval(Priority(100), cs(50)), ms(1800));
    // 1 cs: 3 cs + 0.
    assert_eq!(master_down_interval(Priority(100), cs(1)), ms(30));
    // Largest field value, 40.95 s: skew = 156 * 4095 / 256 = 2495.4 -> 2495 cs.
    assert_eq!(
        master_down_interval(Priority(100), cs(4095)),
        ms(3 * 40_950 + 24_950)
    );
}

#[test]
fn v2_skew_is_a_fraction_of_a_second_independent_of_the_interval() {
    // (256 - 100) / 256 s = 0.609375 s exactly, whatever the interval.
    for interval in [secs(1), secs(5)] {
        assert_eq!(
            skew_time(Priority(100), interval),
            us(609_375),
            "{interval:?}"
        );
    }
    assert_eq!(master_down_interval(Priority(100), secs(1)), us(3_609_375));
    // (256 - 150) / 256 s = 0.4140625 s, truncated to whole microseconds.
    assert_eq!(master_down_interval(Priority(150), secs(3)), us(9_414_062));
}

#[test]
fn startup_arms_master_down_with_the_computed_interval() {
    let mut r = router(100, cs(100));
    let actions = r.handle(at(0), Event::Startup);
    assert_eq!(
        actions,
        vec![
            Action::Transition {
                from: State::Initialize,
                to: State::Backup,
                reason: Reason::Startup
            },
            Action::SetOwnership { owned: false },
            Action::ArmTimer {
                which: Timer::MasterDown,
                after: ms(3600)
            },
            Action::RunHook {
                state: State::Backup
            },
        ]
    );
    assert_eq!(r.deadline(Timer::MasterDown), Some(at(3600)));
    assert_eq!(r.next_deadline(), Some((Timer::MasterDown, at(3600))));
}

#[test]
fn backup_adopts_the_masters_v3_interval() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    let actions = r.handle(at(500), advert("10.0.0.2", 200, cs(50)));
    assert_eq!(
        actions,
        vec![Action::ArmTimer {
            which: Timer::MasterDown,
            after: ms(1800)
        }]
    );
    assert_eq!(r.master_adver_interval(), cs(50));
    assert_eq!(r.deadline(Timer::MasterDown), Some(at(2300)));
}

#[test]
fn priority_zero_arms_skew_time() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    let actions = r.handle(
        at(1000),
        Event::AdvertReceived {
            from: ip("10.0.0.2"),
            priority: Priority::STOP,
            interval: cs(100),
        },
    );
    assert_eq!(
        actions,
        vec![Action::ArmTimer {
            which: Timer::MasterDown,
            after: ms(600)
        }]
    );
}

#[test]
fn stale_or_early_timer_events_are_ignored() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    assert_eq!(
        r.handle(at(3599), fired(Timer::MasterDown)),
        vec![],
        "fired 1 ms early"
    );
    assert_eq!(r.handle(at(3600), fired(Timer::Adver)), vec![], "not armed");
    assert_eq!(r.state(), State::Backup);
    let actions = r.handle(at(3600), fired(Timer::MasterDown));
    assert_eq!(r.state(), State::Master, "actions: {actions:?}");
    assert_eq!(
        r.handle(at(3600), fired(Timer::MasterDown)),
        vec![],
        "a second delivery of the same expiry"
    );
}

#[test]
fn own_looped_back_advert_is_ignored() {
    let mut r = router(255, cs(100));
    r.handle(at(0), Event::Startup);
    assert_eq!(r.state(), State::Master);
    let actions = r.handle(at(10), advert("10.0.0.1", 255, cs(100)));
    assert_eq!(actions, vec![]);
}

#[test]
fn priority_changes_are_clamped() {
    // The effective priority after tracking asks for `effective`.
    let track = |r: &mut Router, effective: u8| {
        r.handle(
            at(0),
            Event::PriorityChanged {
                effective: Priority(effective),
            },
        );
        r.priority()
    };
    let mut r = router(100, cs(100));
    assert_eq!(track(&mut r, 0), Priority(1));
    assert_eq!(
        track(&mut r, 255),
        Priority(254),
        "only an owner may reach 255"
    );
    let mut owner = router(255, cs(100));
    assert_eq!(track(&mut owner, 255), Priority(255));
}

#[test]
fn promote_advertises_254_and_resume_restores() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    let actions = r.handle(at(10), Event::AdminPromote);
    assert_eq!(r.state(), State::Master);
    assert!(
        actions.contains(&Action::SendAdvert {
            priority: Priority(254)
        }),
        "promote must advertise 254, got {actions:?}"
    );
    let actions = r.handle(at(20), Event::AdminResume);
    assert_eq!(
        actions,
        vec![Action::SendAdvert {
            priority: Priority(100)
        }]
    );
}

/// Regression (chaos run, seed 1): a stalled Backup took over, announced the VIP, then
/// yielded to the Master's advert; the Master never announced again, so the clients kept
/// sending to the old Backup for tens of seconds. The Master that hears a lower Master
/// answers with an advert and re-announces its addresses.
#[test]
fn master_hearing_a_lower_master_announces_its_addresses_again() {
    let mut r = master_at_400(150);
    let lower = advert("10.0.0.2", 100, cs(10));
    let actions = r.handle(at(450), lower.clone());
    let dual = Action::DualMaster {
        peer: ip("10.0.0.2"),
        priority: Priority(100),
        stays: true,
    };
    assert_eq!(
        actions,
        vec![
            Action::SendAdvert {
                priority: Priority(150)
            },
            Action::SendGratuitous,
            dual.clone()
        ]
    );
    assert_eq!(r.state(), State::Master);
    // Once per interval: a second one before the Adver_Timer fires gets nothing (but is
    // still reported).
    assert_eq!(r.handle(at(460), lower), vec![dual]);
}

/// Regression (chaos run, seed 1): a partitioned Master's advert reached the Backup that
/// had taken over before the Backup's reached it; the Backup yielded silently and the
/// Master never knew the hosts had followed the Backup. Yielding sends one last advert.
#[test]
fn master_yielding_to_a_higher_one_sends_a_last_advert_first() {
    let mut r = master_at_400(100);
    let actions = r.handle(at(450), advert("10.0.0.2", 150, cs(10)));
    assert_eq!(r.state(), State::Backup);
    assert_eq!(
        actions.first(),
        Some(&Action::SendAdvert {
            priority: Priority(100)
        }),
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::SendAdvert { .. }))
            .count(),
        1
    );
}

#[test]
fn equal_priority_compares_addresses_as_unsigned_integers() {
    assert!(address_greater(ip("10.0.0.2"), ip("10.0.0.1")));
    assert!(address_greater(ip("192.168.1.1"), ip("10.255.255.255")));
    assert!(!address_greater(ip("10.0.0.1"), ip("10.0.0.1")));
    assert!(address_greater(ip("fe80::2"), ip("fe80::1")));
    assert!(!address_greater(ip("fe80::2"), ip("10.0.0.1")));
}

#[test]
fn invalid_configs_are_refused() {
    let base = Config {
        priority: Priority(100),
        advert_interval: cs(100),
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: ip("10.0.0.1"),
        fence_timeout: None,
        sync_then_claim: false,
        drain_grace: Duration::from_secs(2),
    };
    assert_eq!(
        Router::new(Config {
            priority: Priority(0),
            ..base.clone()
        })
        .err(),
        Some(ConfigError::ZeroPriority)
    );
    assert!(matches!(
        Router::new(Config {
            advert_interval: cs(0),
            ..base
        }),
        Err(ConfigError::Interval { .. })
    ));
}

#[test]
fn an_adopted_interval_does_not_outlive_our_mastership() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    r.handle(at(500), advert("10.0.0.2", 200, cs(50)));
    r.handle(at(2300), fired(Timer::MasterDown));
    assert_eq!(r.state(), State::Master);
    // A forced demote releases at once (a plain one would hand over first).
    r.handle(at(3000), Event::AdminDemoteNow);
    let actions = r.handle(at(4000), Event::AdminResume);
    assert_eq!(
        actions,
        vec![Action::ArmTimer {
            which: Timer::MasterDown,
            after: ms(3600)
        }],
        "after being Master, Master_Down_Interval must use our own 100 cs again"
    );
}

#[test]
fn names_match_the_json_and_the_status_words() {
    let reasons = [
        Reason::Startup,
        Reason::Shutdown,
        Reason::MasterDown,
        Reason::Preempted,
        Reason::PreemptDelay,
        Reason::Fault,
        Reason::FaultCleared,
        Reason::AdminPromote,
        Reason::AdminDemote,
        Reason::Resumed,
    ];
    for r in reasons {
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            format!("\"{}\"", r.as_str()),
            "Reason::as_str must be the serde name"
        );
    }
    let states = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ];
    let shown: Vec<&str> = states.iter().map(|s| s.status_name()).collect();
    assert_eq!(shown, ["init", "backup", "master", "fault"]);
}

#[test]
fn fault_sources_show_the_labels_status_has_always_shown() {
    let shown: Vec<String> = [
        FaultSource::Link,
        FaultSource::Dataplane,
        FaultSource::Gate("db".into()),
        FaultSource::Fenced,
        FaultSource::External,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        shown,
        [
            "link",
            "dataplane",
            "gate:db",
            "fenced: peer and witness unreachable",
            "fault"
        ]
    );
    assert_eq!(
        serde_json::to_string(&FaultSource::Gate("db".into())).unwrap(),
        r#"{"gate":"db"}"#
    );
}

#[test]
fn a_weight_0_track_shows_as_track_and_its_check() {
    let track = FaultSource::Track("db".into());
    assert_eq!(track.to_string(), "track:db");
    assert_eq!(serde_json::to_string(&track).unwrap(), r#"{"track":"db"}"#);
}

/// Fencing's clock (was the agent's `fence::Gate` test, now that the rule is the FSM's): one
/// `fence_timeout` of grace from the start, cut off once neither peer nor witness answered
/// for the timeout, and an older answer reported late does not reopen it.
#[test]
fn fencing_grace_timeout_and_late_news() {
    let mut r = Router::new(Config {
        fence_timeout: Some(ms(200)),
        ..router(100, cs(1)).config().clone()
    })
    .expect("valid config");
    r.handle(at(0), Event::Startup);
    assert_eq!(r.state(), State::Backup);
    // Master_Down fires at 30 ms; delivered later, it is judged at the time it is handled.
    let claims = |r: &Router, when: u64| {
        let mut r = r.clone();
        let out = r.handle(at(when), fired(Timer::MasterDown));
        let refused = out.iter().any(|a| matches!(a, Action::ClaimRefused { .. }));
        assert_eq!(refused, r.state() == State::Fault, "at {when} ms: {out:?}");
        r.state() == State::Master
    };
    assert!(claims(&r, 199), "grace at start");
    assert!(!claims(&r, 200), "cut off after the timeout");
    r.handle(at(200), Event::PeerAlive { at: at(300) });
    assert!(claims(&r, 450));
    r.handle(at(450), Event::PeerAlive { at: at(100) });
    assert!(!claims(&r, 500), "older news do not reopen it");
}

#[test]
fn a_router_is_not_ready_while_faulted_or_its_table_is_behind() {
    let mut r = router(100, cs(100));
    r.handle(at(0), Event::Startup);
    assert_eq!(r.not_ready(), None, "a healthy Backup is ready");
    let gate = FaultSource::Gate("db".into());
    r.handle(
        at(10),
        Event::Fault {
            source: gate.clone(),
            failing: true,
        },
    );
    assert_eq!(r.not_ready(), Some(NotReady::Faulted(vec![gate.clone()])));
    assert_eq!(
        r.not_ready().unwrap().to_string(),
        "not ready: failing gate:db"
    );
    r.handle(
        at(20),
        Event::Fault {
            source: gate,
            failing: false,
        },
    );
    assert_eq!(r.not_ready(), None);

    let mut nat = Router::new(Config {
        sync_then_claim: true,
        ..r.config().clone()
    })
    .unwrap();
    nat.handle(at(0), Event::Startup);
    assert_eq!(
        nat.not_ready(),
        Some(NotReady::SyncPending),
        "pending from start"
    );
    nat.handle(at(10), Event::SyncPending { pending: false });
    assert_eq!(nat.not_ready(), None);
    nat.handle(at(20), Event::SyncPending { pending: true });
    assert_eq!(nat.not_ready(), Some(NotReady::SyncPending));
}

#[test]
fn a_handover_serves_until_the_new_master_is_heard_then_drains() {
    let mut r = master_at_400(100);
    r.handle(at(500), Event::AdminDemote);
    assert!(r.handing_over());
    assert_eq!(r.state(), State::Master, "still serving while handing over");
    let actions = r.handle(at(900), advert("10.0.0.2", 50, cs(100)));
    assert_eq!(r.state(), State::Backup);
    assert!(r.draining() && !r.handing_over());
    assert!(actions.contains(&Action::Drain { grace: ms(2000) }));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetOwnership { .. })),
        "no release before the grace: {actions:?}"
    );
    assert_eq!(
        r.handle(at(2900), fired(Timer::Drain)),
        vec![Action::SetOwnership { owned: false }]
    );
    assert!(!r.draining());
}

#[test]
fn a_handover_nobody_takes_ends_the_demote() {
    let mut r = master_at_400(100);
    r.handle(at(500), Event::AdminDemote);
    assert_eq!(r.admin(), Admin::Demoted);
    let bound = r.master_down_interval();
    let actions = r.handle(at(500) + bound, fired(Timer::Handover));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::HandoverFailed { .. })),
        "{actions:?}"
    );
    assert_eq!(r.state(), State::Master, "never broken");
    assert_eq!(
        r.admin(),
        Admin::None,
        "the demote did not happen, so it ends"
    );
}

#[test]
fn a_forced_demote_releases_at_once() {
    let mut r = master_at_400(100);
    let actions = r.handle(at(500), Event::AdminDemoteNow);
    assert_eq!(r.state(), State::Backup);
    assert_eq!(r.admin(), Admin::Demoted);
    assert!(!r.handing_over() && !r.draining());
    assert!(actions.contains(&Action::SetOwnership { owned: false }));
    assert!(actions.contains(&Action::SendAdvert {
        priority: Priority::STOP
    }));
}
