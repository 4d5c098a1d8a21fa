//! The compiled routing of one tenant: host entries with their candidate
//! rules in precedence order, routes with their balancers, and the lookup a
//! request makes. Built from a [`TenantConfig`] on the control path; the
//! request path borrows from it and allocates nothing.
//!
//! Precedence within a host (as Gateway API orders it): exact path, then the
//! longest prefix, then rules with a method match, then rules with more
//! header matches, then the older route, then rule order.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::{COOKIE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use prometheus_client::metrics::counter::Counter;
use veloflux_crds::TenantConfig;
use veloflux_crds::config::{HealthCheckConfig, RouteConfig};
use veloflux_crds::route::{HashSource, HttpMethod, PathMatchType};

use crate::admin::metrics::{Metrics, RouteMetrics, TenantLabelSet};
use crate::backends::balancer::{Balancer, Tried, hash_of};
use crate::backends::endpoint::{EndpointRegistry, EndpointState, InvalidAddress};

/// Why a tenant's config could not be compiled (its last good one stays).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An endpoint address is unusable.
    #[error("route {route}: {source}")]
    Address {
        /// Route id.
        route: String,
        /// Cause.
        #[source]
        source: InvalidAddress,
    },
    /// A certificate or key is unusable.
    #[error("certificate {source_name}: {source}")]
    Certificate {
        /// `namespace/name` of the Secret.
        source_name: String,
        /// Cause.
        #[source]
        source: crate::http::tls::CertError,
    },
    /// A header name or value of a rule is unusable.
    #[error("route {route}: invalid header match {name:?}")]
    Header {
        /// Route id.
        route: String,
        /// Header name.
        name: String,
    },
}

/// What compiling needs from the proxy.
#[derive(Clone, Copy, Debug)]
pub struct BuildContext<'a> {
    /// Shared endpoint states.
    pub endpoints: &'a EndpointRegistry,
    /// Rate limiters.
    pub limits: &'a crate::limits::ratelimit::LimitRegistry,
    /// Usage totals.
    pub usage: &'a crate::limits::usage::UsageRegistry,
    /// Metric families.
    pub metrics: &'a Metrics,
}

/// What consistent hashing keys on, prepared.
#[derive(Debug)]
pub enum HashKey {
    /// A header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
    /// The client's IP.
    ClientIp,
}

/// One compiled rule: its endpoints and how to pick among them.
#[derive(Debug)]
pub struct RuleRuntime {
    /// Endpoints that take new requests (draining ones are left out).
    pub endpoints: Box<[Arc<EndpointState>]>,
    /// Draining endpoints, kept so their state stays shared while in-flight requests finish.
    pub draining: Box<[Arc<EndpointState>]>,
    /// The picker.
    pub balancer: Balancer,
}

/// One compiled route.
#[derive(Debug)]
pub struct RouteRuntime {
    /// `namespace/name`.
    pub id: Arc<str>,
    /// Rules, as configured.
    pub rules: Box<[RuleRuntime]>,
    /// Consistent-hash key.
    pub hash_key: Option<HashKey>,
    /// Time from request to response headers.
    pub request_timeout: Duration,
    /// Further attempts after a connect failure, for idempotent requests.
    pub retry_attempts: u32,
    /// Retries may add at most this percentage.
    pub retry_budget_percent: u32,
    /// Largest request body.
    pub max_request_body_bytes: Option<u64>,
    /// Redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
    /// Active health check of the route's endpoints.
    pub health_check: Option<HealthCheckConfig>,
    /// Longest time to open an upstream connection.
    pub connect_timeout: Duration,
    /// How long an idle upstream connection is kept for reuse.
    pub idle_timeout: Duration,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// The route's own (tighter) rate limit.
    pub rate_limit: Option<Arc<crate::limits::ratelimit::Limiter>>,
    active: AtomicU64,
    active_retries: AtomicU64,
}

/// Fewest concurrent retries a route may have, however quiet it is.
const MIN_CONCURRENT_RETRIES: u64 = 3;

/// A request in flight on a route; releases its share of the retry budget on drop.
#[derive(Debug)]
pub struct ActiveRequest {
    route: Arc<RouteRuntime>,
    retrying: bool,
}

impl ActiveRequest {
    /// Takes a retry from the budget if one is left: concurrent retries may
    /// be `budget%` of the route's active requests, and at least
    /// [`MIN_CONCURRENT_RETRIES`] (as Envoy's retry budgets work).
    pub fn take_retry(&mut self) -> bool {
        if self.retrying {
            return true;
        }
        let r = &self.route;
        let active = r.active.load(Ordering::Relaxed);
        let allowed =
            (active * u64::from(r.retry_budget_percent) / 100).max(MIN_CONCURRENT_RETRIES);
        if r.active_retries.fetch_add(1, Ordering::Relaxed) < allowed {
            self.retrying = true;
            true
        } else {
            r.active_retries.fetch_sub(1, Ordering::Relaxed);
            false
        }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.route.active.fetch_sub(1, Ordering::Relaxed);
        if self.retrying {
            self.route.active_retries.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl RouteRuntime {
    /// Counts a request as active until the guard drops (the retry budget's base).
    pub fn begin_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest {
            route: Arc::clone(self),
            retrying: false,
        }
    }

    /// The hash of the request's key for consistent hashing.
    pub fn hash_key(&self, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
        match self.hash_key.as_ref()? {
            HashKey::Header(name) => headers.get(name).map(|v| hash_of(v.as_bytes())),
            HashKey::Cookie(name) => cookie(headers, name).map(hash_of),
            HashKey::ClientIp => Some(hash_of(&client_ip)),
        }
    }

    /// Picks an endpoint of rule `rule`.
    pub fn pick(
        &self,
        rule: usize,
        key: Option<u64>,
        tried: Tried,
    ) -> Option<(usize, &Arc<EndpointState>)> {
        let rule = self.rules.get(rule)?;
        let i = rule.balancer.pick(&rule.endpoints, key, tried)?;
        Some((i, &rule.endpoints[i]))
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get_all(COOKIE).iter().find_map(|value| {
        value.as_bytes().split(|&b| b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (k == name.as_bytes()).then(|| &v[1..])
        })
    })
}

/// How a candidate matches the path.
#[derive(Clone, Debug)]
enum PathMatcher {
    Exact(Box<str>),
    /// Segment-wise prefix, stored without a trailing slash (`/` becomes empty).
    Prefix(Box<str>),
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == &**p,
            Self::Prefix(p) => {
                path.starts_with(&**p)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
        }
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            Self::Exact(p) => (0, usize::MAX - p.len()),
            Self::Prefix(p) => (1, usize::MAX - p.len()),
        }
    }
}

/// One rule of one route, as a host sees it.
#[derive(Debug)]
struct Candidate {
    route: Arc<RouteRuntime>,
    rule: usize,
    path: PathMatcher,
    methods: u16,
    headers: Box<[(HeaderName, HeaderValue)]>,
}

fn method_bit(method: &Method) -> u16 {
    let m = match *method {
        Method::GET => HttpMethod::GET,
        Method::HEAD => HttpMethod::HEAD,
        Method::POST => HttpMethod::POST,
        Method::PUT => HttpMethod::PUT,
        Method::DELETE => HttpMethod::DELETE,
        Method::PATCH => HttpMethod::PATCH,
        Method::OPTIONS => HttpMethod::OPTIONS,
        Method::CONNECT => HttpMethod::CONNECT,
        Method::TRACE => HttpMethod::TRACE,
        _ => return 0,
    };
    1 << (m as u16)
}

/// Everything one host of one tenant routes to.
#[derive(Debug)]
pub struct HostEntry {
    /// Tenant id.
    pub tenant: Arc<str>,
    /// Tenant label for metrics.
    pub tenant_label: Arc<str>,
    /// Whether the tenant is suspended (403).
    pub suspended: bool,
    /// Counter of requests that matched the host but no rule.
    pub no_rule: Counter,
    /// Counter of requests refused because the tenant is suspended.
    pub suspended_hits: Counter,
    /// Certificate presented for this host over TLS.
    pub certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    /// The plan's tenant-wide rate limit.
    pub rate_limit: Option<Arc<crate::limits::ratelimit::Limiter>>,
    /// The tenant's usage totals.
    pub usage: Arc<crate::limits::usage::TenantUsage>,
    candidates: Box<[Candidate]>,
}

impl HostEntry {
    /// The route and rule a request goes to.
    pub fn find(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<(&Arc<RouteRuntime>, usize)> {
        let bit = method_bit(method);
        self.candidates
            .iter()
            .find(|c| {
                (c.methods == 0 || c.methods & bit != 0)
                    && c.path.matches(path)
                    && c.headers
                        .iter()
                        .all(|(n, v)| headers.get_all(n).iter().any(|x| x == v))
            })
            .map(|c| (&c.route, c.rule))
    }
}

/// One tenant, compiled.
#[derive(Debug)]
pub struct TenantRuntime {
    /// Tenant id.
    pub id: Arc<str>,
    /// Tenant label for metrics (the id, or `other` past the label cap).
    pub label: Arc<str>,
    /// The config it was built from.
    pub config: Arc<TenantConfig>,
    /// Hosts and their entries.
    pub hosts: Box<[(Arc<str>, Arc<HostEntry>)]>,
    /// Routes, oldest first.
    pub routes: Box<[Arc<RouteRuntime>]>,
}

/// Compiles one tenant's config.
pub fn build_tenant(
    config: Arc<TenantConfig>,
    ctx: BuildContext<'_>,
) -> Result<TenantRuntime, BuildError> {
    let labels = ctx.metrics.labels(&config);
    build_tenant_labeled(config, &labels, ctx)
}

/// Compiles one tenant's config with its metric labels already chosen.
pub fn build_tenant_labeled(
    config: Arc<TenantConfig>,
    labels: &TenantLabelSet,
    ctx: BuildContext<'_>,
) -> Result<TenantRuntime, BuildError> {
    let tenant: Arc<str> = config.tenant.as_str().into();
    let tenant_label: Arc<str> = labels.tenant.as_str().into();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (route, route_label) in config.routes.iter().zip(&labels.routes) {
        let metrics = ctx.metrics.route(&tenant_label, route_label);
        routes.push(Arc::new(build_route(
            route,
            &config,
            &tenant_label,
            metrics,
            ctx,
        )?));
    }
    let mut by_host: HashMap<&str, Vec<Candidate>> = HashMap::new();
    for (route, runtime) in config.routes.iter().zip(&routes) {
        for (rule_index, rule) in route.rules.iter().enumerate() {
            let path = match &rule.path {
                None => PathMatcher::Prefix("".into()),
                Some(p) if p.type_ == PathMatchType::Exact => {
                    PathMatcher::Exact(p.value.as_str().into())
                }
                Some(p) => PathMatcher::Prefix(p.value.trim_end_matches('/').into()),
            };
            let methods = rule.methods.iter().fold(0u16, |m, x| m | 1 << (*x as u16));
            let mut headers = Vec::with_capacity(rule.headers.len());
            for h in &rule.headers {
                let bad = || BuildError::Header {
                    route: route.id.clone(),
                    name: h.name.clone(),
                };
                let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
                let value = HeaderValue::from_str(&h.value).map_err(|_| bad())?;
                headers.push((name, value));
            }
            let headers: Box<[_]> = headers.into();
            for host in &route.hosts {
                by_host.entry(host).or_default().push(Candidate {
                    route: Arc::clone(runtime),
                    rule: rule_index,
                    path: path.clone(),
                    methods,
                    headers: headers.clone(),
                });
            }
        }
    }
    let mut certificates: HashMap<&str, Arc<rustls::sign::CertifiedKey>> = HashMap::new();
    for cert in &config.certificates {
        let key =
            crate::http::tls::certified_key(&cert.cert_pem, &cert.key_pem).map_err(|source| {
                BuildError::Certificate {
                    source_name: cert.source.clone(),
                    source,
                }
            })?;
        for host in &cert.hosts {
            certificates
                .entry(host.as_str())
                .or_insert_with(|| Arc::clone(&key));
        }
    }
    let route_order: HashMap<*const RouteRuntime, usize> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (Arc::as_ptr(r), i))
        .collect();
    let no_rule = ctx
        .metrics
        .local_response(&tenant_label, "no_matching_rule");
    let suspended_hits = ctx
        .metrics
        .local_response(&tenant_label, "tenant_suspended");
    let plan_limit = veloflux_crds::config::RateLimitConfig {
        requests_per_minute: config.plan.requests_per_minute,
        burst: config.plan.burst,
        key: veloflux_crds::route::RateLimitKey::Tenant,
        header: None,
    };
    let usage = ctx.usage.tenant(&config.tenant);
    let tenant_limit = (ctx.limits.enabled() && config.plan.requests_per_minute > 0).then(|| {
        ctx.limits.limiter(
            &config.tenant,
            "t",
            &plan_limit,
            config.plan.rate_limit_failure_mode,
            ctx.metrics,
            &tenant_label,
        )
    });
    let mut hosts: Vec<(Arc<str>, Arc<HostEntry>)> = by_host
        .into_iter()
        .map(|(host, mut candidates)| {
            candidates.sort_by_key(|c| {
                (
                    c.path.rank(),
                    c.methods == 0,
                    usize::MAX - c.headers.len(),
                    route_order
                        .get(&Arc::as_ptr(&c.route))
                        .copied()
                        .unwrap_or(usize::MAX),
                    c.rule,
                )
            });
            let entry = HostEntry {
                tenant: Arc::clone(&tenant),
                tenant_label: Arc::clone(&tenant_label),
                suspended: config.suspended,
                no_rule: no_rule.clone(),
                suspended_hits: suspended_hits.clone(),
                certificate: certificates.get(host).cloned(),
                rate_limit: tenant_limit.clone(),
                usage: Arc::clone(&usage),
                candidates: candidates.into(),
            };
            (Arc::<str>::from(host), Arc::new(entry))
        })
        .collect();
    hosts.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(TenantRuntime {
        id: tenant,
        label: tenant_label,
        config,
        hosts: hosts.into(),
        routes: routes.into(),
    })
}

fn build_route(
    route: &RouteConfig,
    tenant: &TenantConfig,
    tenant_label: &str,
    metrics: RouteMetrics,
    ctx: BuildContext<'_>,
) -> Result<RouteRuntime, BuildError> {
    let mut rules = Vec::with_capacity(route.rules.len());
    for rule in &route.rules {
        let mut endpoints = Vec::new();
        let mut weights = Vec::new();
        let mut draining = Vec::new();
        for &b in &rule.backends {
            let Some(backend) = route.backends.get(b as usize) else {
                continue;
            };
            for ep in &backend.endpoints {
                let state =
                    ctx.endpoints
                        .get(&ep.address)
                        .map_err(|source| BuildError::Address {
                            route: route.id.clone(),
                            source,
                        })?;
                if ep.draining {
                    draining.push(state);
                } else if !endpoints
                    .iter()
                    .any(|e: &Arc<EndpointState>| Arc::ptr_eq(e, &state))
                {
                    endpoints.push(state);
                    weights.push(backend.weight);
                }
            }
        }
        let balancer = Balancer::new(route.algorithm, &weights, &endpoints);
        rules.push(RuleRuntime {
            endpoints: endpoints.into(),
            draining: draining.into(),
            balancer,
        });
    }
    let hash_key = route.hash_on.as_ref().and_then(|h| match h.source {
        HashSource::ClientIp => Some(HashKey::ClientIp),
        HashSource::Header => h
            .name
            .as_ref()
            .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .map(HashKey::Header),
        HashSource::Cookie => h.name.as_deref().map(|n| HashKey::Cookie(n.into())),
    });
    Ok(RouteRuntime {
        id: route.id.as_str().into(),
        rules: rules.into(),
        hash_key,
        request_timeout: Duration::from_millis(route.timeouts.request_ms),
        retry_attempts: route.retries.attempts,
        retry_budget_percent: route.retries.budget_percent,
        max_request_body_bytes: route.max_request_body_bytes,
        https_redirect: route.tls.as_ref().is_some_and(|t| t.https_redirect),
        health_check: route.health_check.clone(),
        connect_timeout: Duration::from_millis(route.timeouts.connect_ms),
        idle_timeout: Duration::from_millis(route.timeouts.idle_ms),
        metrics,
        rate_limit: route
            .rate_limit
            .as_ref()
            .filter(|_| ctx.limits.enabled())
            .map(|limit| {
                ctx.limits.limiter(
                    &tenant.tenant,
                    &format!("r:{}", route.id),
                    limit,
                    tenant.plan.rate_limit_failure_mode,
                    ctx.metrics,
                    tenant_label,
                )
            }),
        active: AtomicU64::new(0),
        active_retries: AtomicU64::new(0),
    })
}
