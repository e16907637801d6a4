//! Control requests: status, reload, the operator's promote/demote/resume and
//! backend drain/enable.

use tracing::info;

use super::{Agent, status, tables};
use crate::api::control::{Request, Response};
use crate::vrrp::Control;

/// How long an operator's promote/demote/resume waits for the router's answer.
const ADMIN_ANSWER: std::time::Duration = std::time::Duration::from_secs(3);

impl Agent {
    /// The status as of now; the returned future adds, off the agent's loop, the NAT
    /// connection counts (when NAT services exist) and the flow table's fill (services
    /// with a flow table: DSR and tunnel), each from a count shared with every other
    /// request and at most a second old (`tables`).
    pub(super) fn status_answer(
        &self,
    ) -> impl std::future::Future<Output = Response> + Send + 'static {
        let mut st = status::assemble(self);
        let node = &self.config.node;
        let nat_dir = self
            .config
            .services
            .iter()
            .any(|s| s.mode == fo_config::ForwardMode::Nat)
            .then(|| node.bpf_dir.clone());
        let flow_dir = self
            .config
            .services
            .iter()
            .any(|s| s.mode != fo_config::ForwardMode::Nat)
            .then(|| node.bpf_dir.clone());
        let (flow_size, nat_size) = (node.flow_table_size, node.nat_table_size);
        let nat_count = self.api.nat_count.clone();
        let flow_count = self.api.flow_count.clone();
        async move {
            if let Some(dir) = nat_dir
                && let Some(c) = nat_count.get(move || status::nat_connections(&dir)).await
            {
                // `nat`: NAT_FWD (TCP) against nat_table_size; `nat_udp`: the UDP
                // flows' table; `nat_embryonic`: the LRU of connections still in their
                // handshake (a quarter of nat_table_size each).
                let quarter = crate::dataplane::new_connection_entries(nat_size);
                for (table, entries, capacity) in [
                    ("nat", c.value.connections, nat_size),
                    ("nat_udp", c.value.udp, quarter),
                    ("nat_embryonic", c.value.embryonic, quarter),
                ] {
                    st.tables.insert(
                        table.into(),
                        status::table_fill(entries, &c, capacity, nat_count.walks()),
                    );
                }
                st.nat_connections = c.value.by_state;
            }
            if let Some(dir) = flow_dir
                && let Some(c) = flow_count.get(tables::walk_flows(dir)).await
            {
                st.tables.insert(
                    "flow".into(),
                    status::table_fill(c.value, &c, flow_size, flow_count.walks()),
                );
            }
            Response::Status {
                status: Box::new(st),
            }
        }
    }

    pub(super) async fn handle_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status => self.status_answer().await,
            Request::Reload => match self.reload_counted("control socket").await {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error {
                    message: format!("reload refused, the running config stays: {message}"),
                },
            },
            Request::Promote { router } => self.admin(&router, Control::Promote, "promoted").await,
            Request::Demote {
                router,
                force: false,
            } => self.admin(&router, Control::Demote, "demoted").await,
            Request::Demote {
                router,
                force: true,
            } => self.admin(&router, Control::DemoteNow, "demoted").await,
            Request::Resume { router } => self.admin(&router, Control::Resume, "resumed").await,
            Request::Drain { service, backend } => self.drain(service, backend, true),
            Request::Enable { service, backend } => self.drain(service, backend, false),
            // The event loop starts a drill beside itself (`drill`): awaited here, it
            // would wait on requests this loop could not read.
            Request::Drill { .. } => Response::Error {
                message: "a drill is started by the event loop, not as a request".into(),
            },
        }
    }

    async fn admin(&mut self, router: &str, control: Control, verb: &str) -> Response {
        let Some(r) = self.config.router(router) else {
            return Response::Error {
                message: format!("no router named {router:?}"),
            };
        };
        let kind = r.ownership_kind();
        if kind == fo_config::OwnershipKind::Bgp {
            let changed = match control {
                Control::Demote | Control::DemoteNow => {
                    self.operator.demoted.insert(router.to_string())
                }
                Control::Resume => self.operator.demoted.remove(router),
                _ => {
                    return Response::Error {
                        message: format!(
                            "router {router} is announced over BGP by every healthy node: there is no mastership to take (use demote/resume to withdraw/announce here)"
                        ),
                    };
                }
            };
            info!(router, "operator: {verb}");
            self.apply_ownership_inputs().await;
            let what = if self.operator.demoted.contains(router) {
                "its VIPs are withdrawn from BGP until resume"
            } else {
                "its VIPs are announced over BGP while its gates pass"
            };
            let already = if changed { "" } else { " (it already was)" };
            let saved = if changed {
                self.operator.save()
            } else {
                String::new()
            };
            return Response::Ok {
                message: format!("router {router} {verb}{already}: {what}{saved}"),
            };
        }
        let Some(h) = self.routers.vrrp.router(router) else {
            return Response::Error {
                message: format!(
                    "router {router} has {kind:?} ownership: there is no election to change"
                ),
            };
        };
        let demote = matches!(control, Control::Demote | Control::DemoteNow);
        let handing_over = control == Control::Demote;
        let was_master = h.status().state == fo_vrrp::State::Master;
        // The router answers between its events; one may hold it up to an advert
        // interval (sync-then-claim). Never hold the event loop longer than this.
        match tokio::time::timeout(ADMIN_ANSWER, h.admin(control)).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                return Response::Error {
                    message: format!("router {router} not {verb}: {why}"),
                };
            }
            Err(_) => {
                return Response::Error {
                    message: format!(
                        "router {router} did not answer within {} s; the request may still take effect: check `fo-agent status`",
                        ADMIN_ANSWER.as_secs()
                    ),
                };
            }
        }
        info!(router, "operator: {verb}");
        // A promote ends a demote as resume does.
        let changed = if demote {
            self.operator.demoted.insert(router.to_string())
        } else {
            self.operator.demoted.remove(router)
        };
        let saved = if changed {
            self.operator.save()
        } else {
            String::new()
        };
        // Make before break: a Master hands over and serves until the peer is heard.
        let handover = if handing_over && was_master {
            ": handing over, still master until the peer's advert is heard (status shows the handover)"
        } else {
            ""
        };
        Response::Ok {
            message: format!("router {router} {verb}{handover}{saved}"),
        }
    }

    /// A demote whose handover nobody took is cancelled by its router, which stays
    /// Master (the status keeps the failure until the next operator command). Forget it
    /// in the saved state too, or a restart would release what is still served.
    pub(super) fn forget_failed_demotes(&mut self) {
        let failed: Vec<String> = self
            .operator
            .demoted
            .iter()
            .filter(|name| {
                self.routers.vrrp.router(name).is_some_and(|h| {
                    let s = h.status();
                    s.admin != fo_vrrp::Admin::Demoted && s.handover.is_some()
                })
            })
            .cloned()
            .collect();
        for router in &failed {
            self.operator.demoted.remove(router);
            info!(router, "operator: demote cancelled, no peer took over");
        }
        if !failed.is_empty() {
            // A failure to save is logged by `save`.
            let _ = self.operator.save();
        }
    }

    fn drain(&mut self, service: String, backend: String, drain: bool) -> Response {
        let Some(s) = self.config.service(&service) else {
            return Response::Error {
                message: format!("no service named {service:?}"),
            };
        };
        if s.backend(&backend).is_none() {
            let names: Vec<_> = s.backends().iter().map(|b| b.name.clone()).collect();
            return Response::Error {
                message: format!(
                    "service {service} has no backend {backend:?} (backends: {})",
                    names.join(", ")
                ),
            };
        }
        let key = (service.clone(), backend.clone());
        let changed = if drain {
            self.operator.drains.insert(key)
        } else {
            self.operator.drains.remove(&key)
        };
        info!(
            service,
            backend,
            drain,
            "operator: backend {}",
            if drain { "drained" } else { "enabled" }
        );
        // Saved before the maps are written: the drain holds from now on (the next
        // write of the services applies it if this one fails).
        let saved = if changed {
            self.operator.save()
        } else {
            String::new()
        };
        if let Err(e) = self.apply_services() {
            return Response::Error {
                message: format!("{e:#}{saved}"),
            };
        }
        let verb = if drain {
            "drained: existing flows stay, new flows go elsewhere"
        } else {
            "enabled"
        };
        let already = if changed { "" } else { " (it already was)" };
        Response::Ok {
            message: format!("backend {backend} of {service} {verb}{already}{saved}"),
        }
    }
}
