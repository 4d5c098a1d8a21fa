//! Active health checks: one checker task per distinct endpoint address,
//! however many routes share it. Each route with a `healthCheck` registers
//! its endpoints; an address checked by several routes uses the check of the
//! first route in (tenant, route) order, so the choice is deterministic.
//! Registration follows tenant changes one tenant at a time.
//!
//! An endpoint starts healthy, turns unhealthy after `unhealthyThreshold`
//! consecutive failed checks and healthy again after `healthyThreshold`
//! passes. When no route checks it any more it is marked healthy, so a
//! removed check never strands an endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use veloflux_crds::config::HealthCheckConfig;

use crate::backends::endpoint::EndpointState;
use crate::http::body::RequestBody;
use crate::routing::router::TenantRuntime;

type CheckClient = Client<HttpConnector, RequestBody>;

#[derive(Debug)]
struct Checked {
    endpoint: Arc<EndpointState>,
    /// `(tenant, route)` → its check.
    users: BTreeMap<(Arc<str>, Arc<str>), HealthCheckConfig>,
    running: Option<(HealthCheckConfig, JoinHandle<()>)>,
}

/// The set of running checkers.
#[derive(Debug)]
pub struct HealthChecker {
    #[allow(
        clippy::disallowed_types,
        reason = "control path only: taken on tenant changes"
    )]
    checked: std::sync::Mutex<HashMap<Box<str>, Checked>>,
    client: CheckClient,
}

impl Default for HealthChecker {
    #[allow(clippy::disallowed_types, reason = "control path only")]
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            checked: std::sync::Mutex::default(),
            client,
        }
    }
}

impl HealthChecker {
    /// Follows one tenant's change from `old` to `new`.
    pub fn update_tenant(&self, old: Option<&TenantRuntime>, new: Option<&TenantRuntime>) {
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut touched: Vec<Box<str>> = Vec::new();
        if let Some(old) = old {
            for (route, _, endpoint) in checks(old) {
                if let Some(c) = checked.get_mut(endpoint.address()) {
                    c.users
                        .remove(&(Arc::clone(&old.id), Arc::clone(&route.id)));
                    touched.push(endpoint.address().into());
                }
            }
        }
        if let Some(new) = new {
            for (route, cfg, endpoint) in checks(new) {
                let c = checked
                    .entry(endpoint.address().into())
                    .or_insert_with(|| Checked {
                        endpoint: Arc::clone(endpoint),
                        users: BTreeMap::new(),
                        running: None,
                    });
                c.endpoint = Arc::clone(endpoint);
                c.users
                    .insert((Arc::clone(&new.id), Arc::clone(&route.id)), cfg.clone());
                touched.push(endpoint.address().into());
            }
        }
        touched.sort();
        touched.dedup();
        for address in touched {
            let Some(c) = checked.get_mut(&address) else {
                continue;
            };
            let wanted = c.users.values().next().cloned();
            match (&c.running, wanted) {
                (Some((running, _)), Some(wanted)) if *running == wanted => {}
                (_, Some(wanted)) => {
                    if let Some((_, task)) = c.running.take() {
                        task.abort();
                    }
                    let task = tokio::spawn(check_loop(
                        Arc::clone(&c.endpoint),
                        wanted.clone(),
                        self.client.clone(),
                    ));
                    c.running = Some((wanted, task));
                }
                (_, None) => {
                    if let Some((_, task)) = c.running.take() {
                        task.abort();
                    }
                    c.endpoint.set_healthy(true);
                    checked.remove(&address);
                }
            }
        }
    }

    /// Number of running checkers.
    pub fn running(&self) -> usize {
        let checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        checked.values().filter(|c| c.running.is_some()).count()
    }
}

/// Every (route, check, endpoint) of a tenant that has a health check.
fn checks(
    tenant: &TenantRuntime,
) -> impl Iterator<
    Item = (
        &Arc<crate::routing::router::RouteRuntime>,
        &HealthCheckConfig,
        &Arc<EndpointState>,
    ),
> {
    tenant
        .routes
        .iter()
        .filter_map(|r| r.health_check.as_ref().map(|c| (r, c)))
        .flat_map(|(route, cfg)| {
            route
                .rules
                .iter()
                .flat_map(|rule| rule.endpoints.iter().chain(rule.draining.iter()))
                .map(move |e| (route, cfg, e))
        })
}

async fn check_loop(endpoint: Arc<EndpointState>, cfg: HealthCheckConfig, client: CheckClient) {
    let uri: Uri = match format!("http://{}{}", endpoint.address(), cfg.path).parse() {
        Ok(uri) => uri,
        Err(err) => {
            warn!(upstream = endpoint.address(), path = %cfg.path, error = %err, "Health check URI is invalid; not checking");
            return;
        }
    };
    let interval = Duration::from_millis(cfg.interval_ms.max(50));
    let timeout = Duration::from_millis(cfg.timeout_ms.max(10));
    let (mut passes, mut failures) = (0u32, 0u32);
    loop {
        let mut req = Request::new(RequestBody::Empty);
        *req.uri_mut() = uri.clone();
        req.headers_mut().insert(
            header::USER_AGENT,
            header::HeaderValue::from_static("veloflux-health-check"),
        );
        let passed = match tokio::time::timeout(timeout, client.request(req)).await {
            Ok(Ok(resp)) => cfg
                .expected_statuses
                .iter()
                .any(|r| r.contains(resp.status().as_u16())),
            _ => false,
        };
        if passed {
            passes += 1;
            failures = 0;
            if !endpoint.is_healthy()
                && passes >= cfg.healthy_threshold
                && endpoint.set_healthy(true)
            {
                info!(upstream = endpoint.address(), "Upstream is healthy again");
            }
        } else {
            failures += 1;
            passes = 0;
            if endpoint.is_healthy()
                && failures >= cfg.unhealthy_threshold
                && endpoint.set_healthy(false)
            {
                warn!(
                    upstream = endpoint.address(),
                    failures, "Upstream failed its health checks"
                );
            }
        }
        tokio::time::sleep(interval).await;
    }
}
