//! Prometheus metrics. Names are defined once here. Per-request series carry
//! `tenant` (and `route`) labels; their handles are resolved when a snapshot
//! is built, so the request path only bumps atomics. Label cardinality is
//! capped: past `max_tenants` distinct tenants, new tenants share the tenant
//! label `other`, and the number folded is itself exported.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Tenant label used once the cap is reached.
pub const OTHER_TENANT: &str = "other";

/// Labels of per-route request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Tenant id (or `other`).
    pub tenant: String,
    /// `namespace/name` of the route.
    pub route: String,
    /// Status class: `1xx` … `5xx`.
    pub class: &'static str,
}

/// Labels of per-tenant series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant id (or `other`).
    pub tenant: String,
}

/// Labels of config-source series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `manifests` or `redis`.
    pub source: &'static str,
}

/// Labels of full resyncs: what caused them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResyncLabels {
    /// `start`, `gap`, `epoch`, `revision_jump` or `reconnect`.
    pub reason: &'static str,
}

/// The fleet config store (`--redis`) as the proxy sees it.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// 1 while Redis answers.
    pub connected: Gauge,
    /// 1 while the store carries the writer's epoch marker.
    pub epoch_present: Gauge,
    /// Full resyncs, by reason.
    pub resyncs: Family<ResyncLabels, Counter>,
    /// Tenants whose latest document is refused (served at an older revision).
    pub refused_tenants: Gauge,
    /// Time from a change's announcement to this proxy serving it.
    pub propagation: Histogram,
}

/// Labels of rate-limit decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// Tenant label.
    pub tenant: String,
    /// `allowed`, `limited`, `failed_open` (store down, local limit only)
    /// or `failed_closed` (store down, refused).
    pub outcome: &'static str,
}

/// Rate limiting.
#[derive(Debug, Clone, Default)]
pub struct RateLimitMetrics {
    /// 1 while the shared rate-limit store answers.
    pub store_up: Gauge,
    /// Calls to the shared store (leases and returns).
    pub redis_calls: Counter,
    /// Decisions by tenant and outcome.
    pub decisions: Family<RateLimitLabels, Counter>,
}

/// Labels of local responses (no upstream): why the proxy answered itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Tenant id, `other`, or `none` when no tenant matched.
    pub tenant: String,
    /// Error code, as in the JSON body.
    pub code: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn reload_histogram() -> Histogram {
    Histogram::new([
        0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
    ])
}

/// Every metric of the proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<TenantLabels, Histogram, fn() -> Histogram>,
    bytes_in: Family<TenantLabels, Counter>,
    bytes_out: Family<TenantLabels, Counter>,
    local_responses: Family<ErrorLabels, Counter>,
    /// Time to build and swap in one tenant's change.
    pub reload_seconds: Histogram,
    /// Config updates applied, per source.
    pub config_updates: Family<SourceLabels, Counter>,
    /// Config loads refused (invalid file, newer schema…), per source.
    pub config_errors: Family<SourceLabels, Counter>,
    /// Tenants folded into `other`.
    pub folded_tenants: Gauge,
    /// Routes folded into `other`.
    pub folded_routes: Gauge,
    /// The fleet config store.
    pub store: StoreMetrics,
    /// Rate limiting.
    pub ratelimit: RateLimitMetrics,
    max_tenants: usize,
    max_routes: usize,
    #[allow(
        clippy::disallowed_types,
        reason = "control path only: taken when a route's handles are built"
    )]
    labeled_routes: std::sync::Mutex<Labeled>,
    #[allow(
        clippy::disallowed_types,
        reason = "control path only: taken when a tenant's handles are built"
    )]
    labeled: std::sync::Mutex<Labeled>,
}

/// Names given their own label, and (by hash) the names folded into
/// `other`, so the folded gauges count names, not rebuilds.
#[derive(Debug, Default)]
struct Labeled {
    own: HashSet<Arc<str>>,
    folded: HashSet<u64>,
}

impl Labeled {
    /// The label for `name` under `cap`, and the folded count when it folds.
    fn label(&mut self, name: &str, cap: usize) -> Result<String, usize> {
        if self.own.contains(name) {
            return Ok(name.to_owned());
        }
        if self.own.len() < cap {
            self.own.insert(name.into());
            return Ok(name.to_owned());
        }
        self.folded
            .insert(crate::backends::balancer::hash_of(&name));
        Err(self.folded.len())
    }
}

/// The label for `name` from `labeled` under `cap`: its own name, or
/// `other` past the cap, `folded` then counting the names folded.
#[allow(
    clippy::disallowed_types,
    reason = "control path only: taken when a tenant's or route's handles are built"
)]
fn label_in(labeled: &std::sync::Mutex<Labeled>, name: &str, cap: usize, folded: &Gauge) -> String {
    let label = labeled
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .label(name, cap);
    label.unwrap_or_else(|count| {
        folded.set(i64::try_from(count).unwrap_or(i64::MAX));
        OTHER_TENANT.to_owned()
    })
}

/// Handles of one route's series, ready for the request path.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    /// Request latency, seconds.
    pub latency: Histogram,
    /// Request bytes received.
    pub bytes_in: Counter,
    /// Response bytes sent.
    pub bytes_out: Counter,
}

impl RouteMetrics {
    /// Counts one response with this status.
    pub fn count_status(&self, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].inc();
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric labels one tenant's config gets: see [`Metrics::labels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLabelSet {
    /// The tenant's label.
    pub tenant: String,
    /// Each route's label, in config order.
    pub routes: Vec<String>,
}

impl Metrics {
    /// Registers every metric; `max_tenants` caps distinct tenant labels,
    /// `max_routes` distinct route labels.
    #[allow(clippy::disallowed_types, reason = "control path only")]
    pub fn new(max_tenants: usize, max_routes: usize) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<TenantLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let bytes_in = Family::<TenantLabels, Counter>::default();
        let bytes_out = Family::<TenantLabels, Counter>::default();
        let local_responses = Family::<ErrorLabels, Counter>::default();
        let reload_seconds = reload_histogram();
        let config_updates = Family::<SourceLabels, Counter>::default();
        let config_errors = Family::<SourceLabels, Counter>::default();
        let folded_tenants = Gauge::default();
        let folded_routes = Gauge::default();
        let store = StoreMetrics {
            connected: Gauge::default(),
            epoch_present: Gauge::default(),
            resyncs: Family::default(),
            refused_tenants: Gauge::default(),
            propagation: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
            ]),
        };
        let ratelimit = RateLimitMetrics::default();
        registry.register(
            "veloflux_ratelimit_store_up",
            "1 while the shared rate-limit store (Redis) answers",
            ratelimit.store_up.clone(),
        );
        registry.register(
            "veloflux_ratelimit_store_calls",
            "Rate-limit calls to Redis (leases and returns)",
            ratelimit.redis_calls.clone(),
        );
        registry.register(
            "veloflux_ratelimit_decisions",
            "Rate-limit decisions by tenant and outcome (failed_open / failed_closed: the store was down and the plan's failure mode applied)",
            ratelimit.decisions.clone(),
        );
        registry.register(
            "veloflux_config_store_connected",
            "1 while the Redis config store answers",
            store.connected.clone(),
        );
        registry.register(
            "veloflux_config_store_epoch_present",
            "1 while the config store carries the writer's epoch marker",
            store.epoch_present.clone(),
        );
        registry.register(
            "veloflux_config_store_resyncs",
            "Full reloads from the config store, by cause",
            store.resyncs.clone(),
        );
        registry.register(
            "veloflux_config_refused_tenants",
            "Tenants whose latest config is refused and served at an older revision",
            store.refused_tenants.clone(),
        );
        registry.register(
            "veloflux_config_propagation_seconds",
            "Time from a change's announcement in the store to this proxy serving it",
            store.propagation.clone(),
        );
        registry.register(
            "veloflux_requests",
            "Proxied requests by tenant, route and status class",
            requests.clone(),
        );
        registry.register(
            "veloflux_request_duration_seconds",
            "Request latency by tenant",
            latency.clone(),
        );
        registry.register(
            "veloflux_request_bytes",
            "Request body bytes received by tenant",
            bytes_in.clone(),
        );
        registry.register(
            "veloflux_response_bytes",
            "Response body bytes sent by tenant",
            bytes_out.clone(),
        );
        registry.register(
            "veloflux_local_responses",
            "Responses the proxy gave itself, by tenant and error code",
            local_responses.clone(),
        );
        registry.register(
            "veloflux_config_reload_duration_seconds",
            "Time to build and swap in one tenant's change",
            reload_seconds.clone(),
        );
        registry.register(
            "veloflux_config_updates",
            "Tenant config changes applied, by source",
            config_updates.clone(),
        );
        registry.register(
            "veloflux_config_errors",
            "Config loads refused (invalid input, unsupported schema), by source",
            config_errors.clone(),
        );
        registry.register(
            "veloflux_metrics_folded_tenants",
            "Tenants whose series are folded into tenant=\"other\" by the label cap",
            folded_tenants.clone(),
        );
        registry.register(
            "veloflux_metrics_folded_routes",
            "Routes whose series are folded into route=\"other\" by the label cap",
            folded_routes.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            local_responses,
            reload_seconds,
            config_updates,
            config_errors,
            folded_tenants,
            folded_routes,
            store,
            ratelimit,
            max_tenants,
            max_routes,
            labeled_routes: std::sync::Mutex::default(),
            labeled: std::sync::Mutex::default(),
        }
    }

    /// Adds a collector evaluated at every scrape (health, revisions).
    pub fn register_collector(
        &mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry.register_collector(collector);
    }

    /// Decision counters of one tenant label: allowed, limited, failed
    /// open, failed closed.
    pub fn ratelimit_counters(&self, tenant_label: &str) -> [Counter; 4] {
        ["allowed", "limited", "failed_open", "failed_closed"].map(|outcome| {
            self.ratelimit
                .decisions
                .get_or_create(&RateLimitLabels {
                    tenant: tenant_label.to_owned(),
                    outcome,
                })
                .clone()
        })
    }

    /// The label to use for `tenant`, applying the cap.
    pub fn tenant_label(&self, tenant: &str) -> String {
        label_in(
            &self.labeled,
            tenant,
            self.max_tenants,
            &self.folded_tenants,
        )
    }

    /// The label to use for `route` of a tenant labelled `tenant_label`:
    /// `other` for folded tenants and past the route cap.
    pub fn route_label(&self, tenant_label: &str, route: &str) -> String {
        if tenant_label == OTHER_TENANT {
            return OTHER_TENANT.to_owned();
        }
        label_in(
            &self.labeled_routes,
            route,
            self.max_routes,
            &self.folded_routes,
        )
    }

    /// The labels of a tenant and of each of its routes, in order. Labels
    /// are handed out first come, first served up to the caps, so a caller
    /// compiling tenants in parallel takes them in config order first.
    pub fn labels(&self, config: &veloflux_crds::TenantConfig) -> TenantLabelSet {
        let tenant = self.tenant_label(&config.tenant);
        let routes = config
            .routes
            .iter()
            .map(|r| self.route_label(&tenant, &r.id))
            .collect();
        TenantLabelSet { tenant, routes }
    }

    /// Handles for one route whose labels are already chosen (see
    /// [`Metrics::labels`]).
    pub fn route(&self, tenant_label: &str, route: &str) -> RouteMetrics {
        let labels = |class| RouteLabels {
            tenant: tenant_label.to_owned(),
            route: route.to_owned(),
            class,
        };
        let tenant = TenantLabels {
            tenant: tenant_label.to_owned(),
        };
        RouteMetrics {
            by_class: CLASSES.map(|c| self.requests.get_or_create(&labels(c)).clone()),
            latency: self.latency.get_or_create(&tenant).clone(),
            bytes_in: self.bytes_in.get_or_create(&tenant).clone(),
            bytes_out: self.bytes_out.get_or_create(&tenant).clone(),
        }
    }

    /// Handle counting local responses of `code` for a tenant label (`none` without a tenant).
    pub fn local_response(&self, tenant_label: &str, code: &'static str) -> Counter {
        self.local_responses
            .get_or_create(&ErrorLabels {
                tenant: tenant_label.to_owned(),
                code,
            })
            .clone()
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_cap_fold_into_other_and_are_counted() {
        let m = Metrics::new(2, 100);
        assert_eq!(m.tenant_label("a"), "a");
        assert_eq!(m.tenant_label("b"), "b");
        assert_eq!(m.tenant_label("a"), "a");
        assert_eq!(m.tenant_label("c"), OTHER_TENANT);
        assert_eq!(m.tenant_label("d"), OTHER_TENANT);
        // Rebuilding a folded tenant does not count it again.
        assert_eq!(m.tenant_label("c"), OTHER_TENANT);
        assert_eq!(m.tenant_label("a"), "a");
        assert_eq!(m.folded_tenants.get(), 2);
        let text = m.encode().unwrap();
        assert!(text.contains("veloflux_metrics_folded_tenants 2"), "{text}");
        // A folded tenant's routes fold too.
        assert_eq!(m.route_label(OTHER_TENANT, "c/web"), OTHER_TENANT);
    }

    #[test]
    fn routes_past_the_cap_fold_into_other() {
        let m = Metrics::new(10, 1);
        assert_eq!(m.route_label("a", "a/one"), "a/one");
        assert_eq!(m.route_label("a", "a/two"), OTHER_TENANT);
        assert_eq!(m.route_label("a", "a/two"), OTHER_TENANT);
        assert_eq!(m.folded_routes.get(), 1);
        assert_eq!(m.route_label("a", "a/three"), OTHER_TENANT);
        assert_eq!(m.folded_routes.get(), 2);
    }

    #[test]
    fn route_handles_count_by_status_class() {
        let m = Metrics::new(10, 100);
        let r = m.route("acme", "acme/web");
        r.count_status(200);
        r.count_status(204);
        r.count_status(503);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"veloflux_requests_total{tenant="acme",route="acme/web",class="2xx"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"veloflux_requests_total{tenant="acme",route="acme/web",class="5xx"} 1"#
            ),
            "{text}"
        );
    }
}
