use super::*;
use crate::api::status::*;

#[test]
fn nat_and_sync_health_are_exported() {
    let mut status = Status::default();
    status.nat_connections.insert("established".into(), 200);
    status.sync = Some(crate::sync::SyncStatus {
        current: true,
        peers: vec![crate::sync::PeerStatus {
            address: "192.0.2.3".parse().unwrap(),
            state: "in_sync".into(),
            last_heard_seconds: Some(0.05),
            received_messages: 80,
            installed: 200,
            removed: 0,
            gaps: 1,
            lag_ms: Some(4.0),
            max_lag_ms: 6.0,
            incomplete_snapshots: 1,
            last_snapshot: Some(crate::sync::SnapshotFigures {
                connections: 200,
                datagrams: 7,
                seconds: 0.25,
                asks: 2,
                stale_removed: 0,
            }),
            ready: None,
        }],
        sent_messages: 70,
        refused: 3,
        refused_by: [("replay".to_string(), 2), ("auth".to_string(), 1)]
            .into_iter()
            .collect(),
        ..Default::default()
    });
    let text = render(&status);
    for needle in [
        "fo_nat_connections{state=\"established\"} 200",
        "fo_sync_current 1",
        "fo_sync_peer_up{peer=\"192.0.2.3\"} 1",
        "fo_sync_lag_seconds{peer=\"192.0.2.3\"} 0.004",
        "fo_sync_gaps_total{peer=\"192.0.2.3\"} 1",
        "fo_sync_messages_total{direction=\"in\",peer=\"192.0.2.3\"} 80",
        "fo_sync_messages_total{direction=\"out\"} 70",
        "fo_sync_refused_total{reason=\"replay\"} 2",
        "fo_sync_refused_total{reason=\"auth\"} 1",
        "fo_sync_snapshot_seconds{peer=\"192.0.2.3\"} 0.25",
        "fo_sync_snapshots_incomplete_total{peer=\"192.0.2.3\"} 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(
        !render(&Status::default()).contains("fo_sync_"),
        "no sync metrics without sync"
    );
}

#[test]
fn contract_names_are_exported() {
    let mut status = Status::default();
    status.routers.push(RouterStatus {
        name: "wazuh".into(),
        ownership: "vrrp".into(),
        state: "master".into(),
        dual_master: 3,
        effective_priority: Some(150),
        adverts_sent: 7,
        transitions_total: [("master".to_string(), 1)].into(),
        dropped: [("ttl".to_string(), 2)].into(),
        transitions: vec![TransitionRecord {
            takeover_seconds: Some(0.31),
            ..Default::default()
        }],
        fence: Some(FenceStatus {
            fenced: true,
            witness: Reach {
                address: "192.0.2.254".parse().unwrap(),
                reachable: false,
                last_reply_seconds_ago: Some(0.4),
            },
            peers: vec![Reach {
                address: "192.0.2.3".parse().unwrap(),
                reachable: false,
                last_reply_seconds_ago: None,
            }],
            fences_total: 1,
        }),
        ..Default::default()
    });
    status
        .node
        .control_refused
        .insert("not_root_or_group".into(), 2);
    status.routers.push(RouterStatus {
        name: "ingest".into(),
        ownership: "bgp".into(),
        state: "master".into(),
        vips: vec!["192.0.2.200".parse().unwrap()],
        bgp: Some(crate::bgp::BgpStatus {
            daemon_up: true,
            route_up: true,
            announced: true,
            sessions: vec![crate::bgp::SessionStatus {
                name: "up1".into(),
                info: "Established".into(),
                up: true,
            }],
            bfd: vec![crate::bgp::BfdStatus {
                peer: "10.0.0.1".into(),
                state: "Down".into(),
                up: false,
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    status.services.push(events_service(1, false, 5, 500));
    status.checks.push(CheckStatus {
        name: "docker".into(),
        up: false,
        detail: None,
    });
    status.xdp.insert("tx".into(), 9);
    status.vrrp_unrouted_drops.insert("vrid".into(), 4);
    let text = render(&status);
    for needle in [
        "fo_vrrp_state{router=\"wazuh\"} 2",
        "fo_vrrp_transitions_total{router=\"wazuh\",to=\"master\"} 1",
        "fo_vrrp_priority{router=\"wazuh\"} 150",
        "fo_failover_seconds{router=\"wazuh\"} 0.31",
        "fo_vrrp_adverts_total{router=\"wazuh\",direction=\"out\"} 7",
        "fo_vrrp_dropped_total{router=\"wazuh\",reason=\"ttl\"} 2",
        "fo_vrrp_dropped_total{router=\"\",reason=\"vrid\"} 4",
        "fo_vrrp_dual_master_total{router=\"wazuh\"} 3",
        "fo_backend_up{service=\"events\",backend=\"b1\"} 1",
        "fo_backend_packets_total{service=\"events\",backend=\"b1\"} 5",
        "fo_backend_bytes_total{service=\"events\",backend=\"b1\"} 500",
        "fo_xdp_actions_total{action=\"tx\"} 9",
        "fo_check_up{check=\"docker\"} 0",
        "fo_service_fail_open{service=\"events\"} 0",
        "fo_witness_up{router=\"wazuh\"} 0",
        "fo_peer_up{router=\"wazuh\",peer=\"192.0.2.3\"} 0",
        "fo_fenced{router=\"wazuh\"} 1",
        "fo_fences_total{router=\"wazuh\"} 1",
        "fo_control_refused_total{reason=\"not_root_or_group\"} 2",
        "fo_bgp_announced{router=\"ingest\",vip=\"192.0.2.200\"} 1",
        "fo_bgp_daemon_up{router=\"ingest\"} 1",
        "fo_bgp_session_up{router=\"ingest\",session=\"up1\"} 1",
        "fo_bgp_bfd_up{router=\"ingest\",peer=\"10.0.0.1\"} 0",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
}

#[test]
fn operations_are_exported() {
    let mut status = Status::default();
    status.node.config_loaded_at = 1_700_000_000.5;
    status.node.reloads = ReloadStatus {
        succeeded: 3,
        failed: 1,
        last_succeeded: false,
        last_failure_at: Some(1_700_000_100.0),
        last_error: Some("bad".into()),
    };
    status.routers.push(RouterStatus {
        name: "wazuh".into(),
        ownership: "vrrp".into(),
        advert_interval_seconds: Some(0.1),
        takeovers: Some(Histogram {
            bounds: vec![0.01, 0.1],
            counts: vec![2, 1, 1],
            count: 4,
            sum: 3.5,
        }),
        hooks: [(
            "master".to_string(),
            crate::hooks::HookStats {
                runs: 5,
                failures: 2,
                timeouts: 1,
            },
        )]
        .into(),
        hooks_coalesced: 4,
        ..Default::default()
    });
    status.services.push(events_service(0, true, 0, 0));
    status.tables.insert(
        "flow".into(),
        TableFill {
            entries: 1200,
            capacity: 65536,
            counted_at: 0.0,
            walk_seconds: 0.002,
            walks: 1,
        },
    );
    status.node.connections.insert(
        "metrics".into(),
        crate::api::conns::ConnStats {
            open: 2,
            limit: 64,
            closed: [("evicted".to_string(), 7)].into(),
        },
    );
    let text = render(&status);
    for needle in [
        "fo_table_walks_total{table=\"flow\"} 1",
        "fo_api_connections{listener=\"metrics\"} 2",
        "fo_api_connections_limit{listener=\"metrics\"} 64",
        "fo_api_connections_closed_total{listener=\"metrics\",reason=\"evicted\"} 7",
        &format!(
            "fo_build_info{{version=\"{}\",abi=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            fo_common::ABI_VERSION
        ),
        "fo_config_reloads_total{result=\"success\"} 3",
        "fo_config_reloads_total{result=\"failure\"} 1",
        "fo_config_last_reload_successful 0",
        "fo_config_last_reload_success_timestamp_seconds 1700000000.5",
        "fo_config_last_reload_failure_timestamp_seconds 1700000100.0",
        "fo_router_info{router=\"wazuh\",ownership=\"vrrp\"} 1",
        "fo_vrrp_advert_interval_seconds{router=\"wazuh\"} 0.1",
        "fo_takeover_seconds_sum{router=\"wazuh\"} 3.5",
        "fo_takeover_seconds_count{router=\"wazuh\"} 4",
        "fo_takeover_seconds_bucket{le=\"0.01\",router=\"wazuh\"} 2",
        "fo_takeover_seconds_bucket{le=\"0.1\",router=\"wazuh\"} 3",
        "fo_takeover_seconds_bucket{le=\"+Inf\",router=\"wazuh\"} 4",
        "fo_hook_runs_total{router=\"wazuh\",hook=\"master\"} 5",
        "fo_hook_failures_total{router=\"wazuh\",hook=\"master\"} 2",
        "fo_hook_timeouts_total{router=\"wazuh\",hook=\"master\"} 1",
        "fo_hook_coalesced_total{router=\"wazuh\"} 4",
        "fo_backend_up{service=\"events\",backend=\"b1\"} 0",
        "fo_backend_healthy{service=\"events\",backend=\"b1\"} 1",
        "fo_backend_drained{service=\"events\",backend=\"b1\"} 1",
        "fo_table_entries{table=\"flow\"} 1200",
        "fo_table_capacity{table=\"flow\"} 65536",
        "fo_table_walk_seconds{table=\"flow\"} 0.002",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
    assert!(
        !render(&Status::default()).contains("fo_config_last_reload_failure_timestamp_seconds"),
        "no failure time before a refused reload"
    );
}

/// Service `events` (tcp/1514 on 192.0.2.1, DSR) with its one backend `b1`, healthy.
fn events_service(effective_weight: u32, drained: bool, packets: u64, bytes: u64) -> ServiceStatus {
    ServiceStatus {
        name: "events".into(),
        vip: "192.0.2.1".parse().unwrap(),
        port: 1514,
        protocol: "tcp".into(),
        mode: "dsr".into(),
        fail_open: false,
        backends: vec![BackendStatus {
            name: "b1".into(),
            address: "192.0.2.21".parse().unwrap(),
            port: 1514,
            weight: 1,
            effective_weight,
            healthy: Some(true),
            detail: None,
            drained,
            resolved: true,
            next_hop: None,
            packets,
            bytes,
        }],
    }
}
