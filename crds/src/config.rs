//! The compiled per-tenant configuration: the one document the operator (or
//! the standalone proxy) produces with [`crate::resolve::resolve`], stores
//! under `vf:config:{tenant}`, and the proxies load.
//!
//! Invariants of a document produced by `resolve`: every route host lies
//! within the tenant's granted domains, no two tenants' documents share a
//! host, rule backend indices are in range, and durations are milliseconds.
//! Field order is fixed and every collection is ordered, so the JSON text of
//! two equal documents is byte-identical (the writer relies on that to skip
//! unchanged writes).

use serde::{Deserialize, Serialize};

use crate::plan::{FailureMode, OveragePolicy, WafLevel};
use crate::route::{Algorithm, HashOn, HeaderMatch, HttpMethod, PathMatch, RateLimitKey};

/// The schema version this build writes and fully understands. A proxy
/// refuses documents with a newer version and keeps the tenant's last good one.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a proxy needs to serve one tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantConfig {
    /// Version of this document's shape.
    pub schema_version: u32,
    /// Tenant id (the Tenant object's name).
    pub tenant: String,
    /// Monotonic revision, assigned by the writer when the content changes (0 before that).
    pub revision: u64,
    /// A suspended tenant's hosts answer 403.
    pub suspended: bool,
    /// The limits of the tenant's plan.
    pub plan: PlanConfig,
    /// Domains granted to the tenant, in the order it lists them.
    pub domains: Vec<String>,
    /// Admitted routes, oldest first (earlier routes win ties between equal matches).
    pub routes: Vec<RouteConfig>,
    /// Certificates for the tenant's TLS hosts.
    pub certificates: Vec<CertificateConfig>,
}

impl TenantConfig {
    /// Stable JSON text of the document.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses a document, refusing schema versions newer than this build's.
    pub fn from_json(text: &str) -> Result<Self, ConfigDecodeError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            schema_version: u32,
        }
        let probe: Probe = serde_json::from_str(text).map_err(ConfigDecodeError::Malformed)?;
        if probe.schema_version > SCHEMA_VERSION {
            return Err(ConfigDecodeError::UnsupportedSchema {
                found: probe.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        let mut config: Self = serde_json::from_str(text).map_err(ConfigDecodeError::Malformed)?;
        config.shrink_to_fit();
        Ok(config)
    }

    /// Drops spare capacity in every list. A parser grows lists by doubling
    /// (a one-element list holds room for four), and a proxy keeps one
    /// config per tenant for as long as it serves it: at 100,000 routes the
    /// spare room was several hundred bytes per route.
    pub fn shrink_to_fit(&mut self) {
        self.domains.shrink_to_fit();
        self.routes.shrink_to_fit();
        for route in &mut self.routes {
            route.hosts.shrink_to_fit();
            route.rules.shrink_to_fit();
            for rule in &mut route.rules {
                rule.methods.shrink_to_fit();
                rule.headers.shrink_to_fit();
                rule.backends.shrink_to_fit();
            }
            route.backends.shrink_to_fit();
            for backend in &mut route.backends {
                backend.endpoints.shrink_to_fit();
            }
            if let Some(check) = &mut route.health_check {
                check.expected_statuses.shrink_to_fit();
            }
        }
        self.certificates.shrink_to_fit();
        for certificate in &mut self.certificates {
            certificate.hosts.shrink_to_fit();
        }
    }

    /// Every host of every route, with the route's index.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.hosts.iter().map(move |h| (h.as_str(), i)))
    }
}

/// Why a stored document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDecodeError {
    /// The text is not a valid document.
    #[error("malformed tenant config: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The document was written by a newer build.
    #[error("tenant config schema version {found} is newer than the supported {supported}")]
    UnsupportedSchema {
        /// Version in the document.
        found: u32,
        /// Newest version this build understands.
        supported: u32,
    },
}

/// Plan limits as they apply to one tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanConfig {
    /// Plan name.
    pub name: String,
    /// Tenant-wide requests per minute.
    pub requests_per_minute: u32,
    /// Tenant-wide burst.
    pub burst: u32,
    /// Plan WAF level (routes may be stricter).
    pub waf: WafLevel,
    /// Rate-limit behaviour while the shared store is unreachable.
    pub rate_limit_failure_mode: FailureMode,
    /// Monthly request quota.
    pub requests_per_month: Option<u64>,
    /// Monthly response-bandwidth quota in bytes.
    pub bandwidth_bytes_per_month: Option<u64>,
    /// What happens past the monthly quota.
    pub overage_policy: OveragePolicy,
}

/// One admitted Route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteConfig {
    /// `namespace/name`, the route label in metrics and logs.
    pub id: String,
    /// Namespace of the Route object.
    pub namespace: String,
    /// Name of the Route object.
    pub name: String,
    /// `metadata.generation` compiled.
    pub generation: i64,
    /// Hosts served, lowercase.
    pub hosts: Vec<String>,
    /// Rules in declared order; a route without rules gets one catch-all rule.
    pub rules: Vec<RuleConfig>,
    /// Backends in declared order.
    pub backends: Vec<BackendConfig>,
    /// Load-balancing algorithm.
    pub algorithm: Algorithm,
    /// Consistent-hash key, with `consistentHash`.
    pub hash_on: Option<HashOn>,
    /// Active health check.
    pub health_check: Option<HealthCheckConfig>,
    /// Timeouts.
    pub timeouts: TimeoutsConfig,
    /// Retries.
    pub retries: RetriesConfig,
    /// Effective per-route limit (already no looser than the plan's).
    pub rate_limit: Option<RateLimitConfig>,
    /// Effective WAF level (the stricter of route and plan).
    pub waf: WafLevel,
    /// TLS for this route's hosts.
    pub tls: Option<RouteTlsConfig>,
    /// Largest request body accepted, in bytes.
    pub max_request_body_bytes: Option<u64>,
}

/// One compiled rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// Path match; `None` matches every path.
    pub path: Option<PathMatch>,
    /// Methods matched; empty matches all.
    pub methods: Vec<HttpMethod>,
    /// Headers that must match exactly (names lowercase).
    pub headers: Vec<HeaderMatch>,
    /// Indices into the route's `backends`.
    pub backends: Vec<u32>,
}

/// One backend with its resolved endpoints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfig {
    /// Backend name within the route.
    pub name: String,
    /// `namespace/name:port` of the Service it came from, for Service backends.
    pub service: Option<String>,
    /// Weight for `weighted`.
    pub weight: u32,
    /// Endpoints, sorted by address.
    pub endpoints: Vec<EndpointConfig>,
}

/// One upstream address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConfig {
    /// `ip:port`, `[ipv6]:port` or `dns-name:port`.
    pub address: String,
    /// Draining endpoints get no new requests; in-flight ones finish.
    pub draining: bool,
}

/// Health check with durations in milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// Path requested with GET.
    pub path: String,
    /// Milliseconds between checks.
    pub interval_ms: u64,
    /// Milliseconds a check may take.
    pub timeout_ms: u64,
    /// Passes to become healthy.
    pub healthy_threshold: u32,
    /// Failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Inclusive status ranges that pass.
    pub expected_statuses: Vec<StatusRange>,
}

/// An inclusive range of HTTP statuses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StatusRange {
    /// Lowest status.
    pub from: u16,
    /// Highest status.
    pub to: u16,
}

impl StatusRange {
    /// Whether `status` lies within the range.
    pub fn contains(self, status: u16) -> bool {
        (self.from..=self.to).contains(&status)
    }
}

/// Timeouts in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsConfig {
    /// Connect timeout.
    pub connect_ms: u64,
    /// Request-to-response-headers timeout.
    pub request_ms: u64,
    /// Idle upstream connection timeout.
    pub idle_ms: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            request_ms: 60_000,
            idle_ms: 90_000,
        }
    }
}

/// Retry policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetriesConfig {
    /// Further attempts after a connect failure, for idempotent requests.
    pub attempts: u32,
    /// Retries may add at most this percentage to requests.
    pub budget_percent: u32,
}

impl Default for RetriesConfig {
    fn default() -> Self {
        Self {
            attempts: 1,
            budget_percent: 20,
        }
    }
}

/// An effective rate limit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitConfig {
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Burst.
    pub burst: u32,
    /// What is counted separately.
    pub key: RateLimitKey,
    /// Header name, with `key: header`.
    pub header: Option<String>,
}

/// TLS of a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteTlsConfig {
    /// Index into the tenant's `certificates`; `None` when the Secret is missing.
    pub certificate: Option<u32>,
    /// Redirect plain HTTP to HTTPS.
    pub https_redirect: bool,
}

/// A certificate and key, PEM-encoded, and the hosts it serves.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateConfig {
    /// `namespace/name` of the Secret it came from.
    pub source: String,
    /// Hosts (SNI names) it is presented for.
    pub hosts: Vec<String>,
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertificateConfig {
    // The private key never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateConfig")
            .field("source", &self.source)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}
