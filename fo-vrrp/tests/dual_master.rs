//! Both masters at once, resolved by the RFC 5798 §6.4.3 rules within one advertisement
//! interval: two state machines are started apart (a partition: each becomes Master), then
//! the link heals and their adverts reach each other (1 ms latency). Timers run at their
//! deadlines, as in the agent. The expected survivor: the higher priority, or on a tie the
//! higher primary address.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use fo_vrrp::fsm::{Action, Config, Event, Router, State, Time, Timer};
use fo_vrrp::{AdverInterval, Centisecs, Priority};

const INTERVAL: Duration = Duration::from_millis(100);
const LATENCY: Duration = Duration::from_millis(1);

struct Node {
    router: Router,
    address: IpAddr,
}

/// Runs both routers until `until`; adverts are delivered only from `heal` on. Returns the
/// first instant from which exactly one Master remained for the rest of the run.
fn run(nodes: &mut [Node; 2], heal: Time, until: Time) -> Option<Time> {
    let interval = AdverInterval::Centisecs(Centisecs(10));
    // (deliver at, to node, from address, priority)
    let mut wire: VecDeque<(Time, usize, IpAddr, Priority)> = VecDeque::new();
    let mut now = Time::ZERO;
    let mut settled: Option<Time> = None;
    let step = Duration::from_millis(1);
    for n in nodes.iter_mut() {
        let actions = n.router.handle(now, Event::Startup);
        assert!(!actions.is_empty());
    }
    while now <= until {
        for (i, n) in nodes.iter_mut().enumerate() {
            // Timers due now.
            while let Some((which, at)) = n.router.next_deadline() {
                if at > now {
                    break;
                }
                let actions = n.router.handle(now, Event::TimerFired { which });
                send(n, &actions, now, i, heal, &mut wire);
            }
        }
        while wire.front().is_some_and(|&(at, ..)| at <= now) {
            let (_, to, from, priority) = wire.pop_front().expect("non-empty");
            let actions = nodes[to].router.handle(
                now,
                Event::AdvertReceived {
                    from,
                    priority,
                    interval,
                },
            );
            send(&nodes[to], &actions, now, to, heal, &mut wire);
        }
        let masters = nodes
            .iter()
            .filter(|n| n.router.state() == State::Master)
            .count();
        match (masters, settled) {
            (1, None) => settled = Some(now),
            (1, Some(_)) => {}
            _ => settled = None,
        }
        now = now + step;
    }
    settled
}

fn send(
    node: &Node,
    actions: &[Action],
    now: Time,
    me: usize,
    heal: Time,
    wire: &mut VecDeque<(Time, usize, IpAddr, Priority)>,
) {
    for a in actions {
        if let Action::SendAdvert { priority } = a
            && now >= heal
        {
            wire.push_back((now + LATENCY, 1 - me, node.address, *priority));
        }
    }
}

fn node(priority: u8, address: &str) -> Node {
    let address: IpAddr = address.parse().expect("address");
    Node {
        router: Router::new(Config {
            priority: Priority(priority),
            advert_interval: AdverInterval::Centisecs(Centisecs(10)),
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address: address,
            fence_timeout: None,
            sync_then_claim: false,
            drain_grace: Duration::from_secs(2),
        })
        .expect("valid config"),
        address,
    }
}

#[track_caller]
fn resolves(a: (u8, &str), b: (u8, &str), winner: usize) {
    let mut nodes = [node(a.0, a.1), node(b.0, b.1)];
    // Partitioned for 2 s: both become Master (Master_Down_Interval is under 0.4 s).
    let heal = Time::from_epoch(Duration::from_secs(2));
    let until = Time::from_epoch(Duration::from_secs(4));
    let settled = run(&mut nodes, heal, until);
    let states: Vec<State> = nodes.iter().map(|n| n.router.state()).collect();
    assert_eq!(
        states[winner],
        State::Master,
        "{a:?} vs {b:?}: expected node {winner} to stay master, states {states:?}"
    );
    assert_eq!(
        states[1 - winner],
        State::Backup,
        "{a:?} vs {b:?}: {states:?}"
    );
    let settled = settled.expect("one master at the end");
    let took = settled.since_epoch() - heal.since_epoch();
    assert!(
        took <= INTERVAL,
        "{a:?} vs {b:?}: both masters for {took:?} after the link healed, more than one interval ({INTERVAL:?})"
    );
    // The loser's Master_Down_Timer keeps being reset by the winner's adverts.
    assert!(
        nodes[1 - winner]
            .router
            .deadline(Timer::MasterDown)
            .is_some()
    );
}

#[test]
fn higher_priority_wins_within_one_interval() {
    resolves((200, "10.0.0.1"), (100, "10.0.0.2"), 0);
    resolves((100, "10.0.0.1"), (200, "10.0.0.2"), 1);
}

#[test]
fn equal_priority_goes_to_the_higher_address_within_one_interval() {
    resolves((150, "10.0.0.1"), (150, "10.0.0.2"), 1);
    resolves((150, "fe80::9"), (150, "fe80::1"), 0);
}

#[test]
fn the_owner_wins_over_a_promoted_peer() {
    resolves((255, "10.0.0.1"), (254, "10.0.0.2"), 0);
}
