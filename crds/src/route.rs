//! The namespaced `Route` kind: hosts and path rules of one tenant, the
//! backends they reach and how traffic is spread, checked and limited.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube printcolumn(...) entries repeat the same keys by design"
)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::plan::WafLevel;

/// Routing for some hosts of one tenant.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "veloflux.io",
    version = "v1alpha1",
    kind = "Route",
    doc = "Routing for hosts of one tenant: path rules, backends, load balancing, health checks, limits and TLS.",
    namespaced,
    status = "RouteStatus",
    shortname = "vfr",
    category = "veloflux",
    derive = "PartialEq",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef"),
    printcolumn(name = "Hosts", type_ = "string", json_path = ".spec.hosts"),
    printcolumn(
        name = "Algorithm",
        type_ = "string",
        json_path = ".spec.algorithm",
        priority = 1
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Programmed",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Programmed\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.backends.all(b, self.backends.exists_one(x, x.name == b.name))").message("backend names must be unique"))]
#[x_kube(validation = Rule::new("!has(self.rules) || self.rules.all(r, !has(r.backends) || r.backends.all(n, self.backends.exists(b, b.name == n)))").message("every backend a rule names must be listed in backends"))]
#[x_kube(validation = Rule::new("self.algorithm != 'consistentHash' || has(self.hashOn)").message("hashOn is required with algorithm consistentHash"))]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Name of the Tenant this Route belongs to. The Route's namespace must be
    /// one the Tenant lists, and its hosts must fall within the Tenant's domains.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub tenant_ref: String,
    /// Hosts served by this Route: exact names or one-label wildcards (`*.acme.com`).
    #[schemars(
        length(min = 1, max = 64),
        inner(
            length(min = 1, max = 253),
            pattern(r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub hosts: Vec<String>,
    /// Request matches and the backends each sends to. Without rules, every
    /// request for the hosts goes to all backends. Within a host the longest
    /// path wins; exact paths beat prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<RouteRule>,
    /// Upstream servers: Kubernetes Services (resolved to endpoints) or static addresses.
    #[schemars(length(min = 1, max = 64))]
    pub backends: Vec<Backend>,
    /// How requests are spread over a rule's healthy backends.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// What `consistentHash` hashes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
    /// Active HTTP health check of every backend endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Connect, request and idle timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    /// Retries of idempotent requests on connect failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// A rate limit for this Route. It can only tighten the plan's: a looser
    /// value is replaced by the plan's (reason PlanLimitApplied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RouteRateLimit>,
    /// WAF level for this Route. It can only be stricter than the plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<RouteWaf>,
    /// TLS for the Route's hosts (plan feature `customTls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// Largest request body accepted, in bytes; larger requests get 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1099511627776u64))]
    pub max_request_body_bytes: Option<u64>,
}

/// One rule: which requests it matches and the backends they go to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// Path to match; unset matches every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// HTTP methods to match; empty matches every method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9))]
    pub methods: Vec<HttpMethod>,
    /// Request headers that must all be present with these exact values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderMatch>,
    /// Names of backends (from `spec.backends`) this rule sends to; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub backends: Vec<String>,
}

/// A path match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathMatch {
    /// `Exact` matches the path only; `Prefix` matches it and everything below it, segment-wise.
    #[serde(rename = "type", default)]
    pub type_: PathMatchType,
    /// The path, starting with `/`.
    #[schemars(length(min = 1, max = 1024), pattern(r"^/[^\s?#]*$"))]
    pub value: String,
}

/// Kind of path match.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PathMatchType {
    /// The path equals the value.
    Exact,
    /// The path is the value or lies below it (`/api` matches `/api` and `/api/x`, not `/apix`).
    #[default]
    Prefix,
}

/// An HTTP method.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[allow(clippy::upper_case_acronyms, missing_docs)]
pub enum HttpMethod {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    PATCH,
    OPTIONS,
    CONNECT,
    TRACE,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GET => "GET",
            Self::HEAD => "HEAD",
            Self::POST => "POST",
            Self::PUT => "PUT",
            Self::DELETE => "DELETE",
            Self::PATCH => "PATCH",
            Self::OPTIONS => "OPTIONS",
            Self::CONNECT => "CONNECT",
            Self::TRACE => "TRACE",
        }
    }
}

/// An exact header match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"))]
    pub name: String,
    /// Exact header value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// An upstream of a Route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.service) != has(self.address)").message("set exactly one of service and address"))]
pub struct Backend {
    /// Name of the backend within the Route, used by rules.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A Kubernetes Service, resolved to its ready endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceBackend>,
    /// A static `host:port` address (IP or DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 3, max = 261),
        pattern(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
    )]
    pub address: Option<String>,
    /// Relative share of traffic for `weighted`; 0 sends nothing.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: u32,
    /// Stop sending new requests to this backend while in-flight ones finish.
    #[serde(default)]
    pub drain: bool,
}

fn default_weight() -> u32 {
    1
}

/// A Kubernetes Service and port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBackend {
    /// Name of the Service.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Namespace of the Service; defaults to the Route's. Another namespace
    /// must grant access with a ReferenceGrant (reason RefNotPermitted otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: Option<String>,
    /// Service port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// Load-balancing algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Algorithm {
    /// Each healthy endpoint in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin by backend weight.
    Weighted,
    /// The endpoint with the fewest requests in flight.
    LeastConn,
    /// A consistent hash of `hashOn`, so a client sticks to one endpoint.
    ConsistentHash,
}

impl Algorithm {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "roundRobin",
            Self::Weighted => "weighted",
            Self::LeastConn => "leastConn",
            Self::ConsistentHash => "consistentHash",
        }
    }
}

/// What consistent hashing keys on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source == 'clientIp' || has(self.name)").message("name is required for header and cookie"))]
pub struct HashOn {
    /// `header`, `cookie` or `clientIp`.
    pub source: HashSource,
    /// Header or cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
}

/// Source of the consistent-hash key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HashSource {
    /// A request header.
    Header,
    /// A cookie.
    Cookie,
    /// The client's IP address.
    ClientIp,
}

/// Active HTTP health check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Path requested with GET.
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 1024), pattern(r"^/[^\s#]*$"))]
    pub path: String,
    /// Time between checks, as a duration such as `10s` or `500ms`.
    #[serde(default = "default_health_interval")]
    #[schemars(pattern(r"^([0-9]{1,6}(ms|s|m|h))+$"))]
    pub interval: String,
    /// Time a check may take before it counts as failed.
    #[serde(default = "default_health_timeout")]
    #[schemars(pattern(r"^([0-9]{1,6}(ms|s|m|h))+$"))]
    pub timeout: String,
    /// Consecutive passes that make an unhealthy endpoint healthy.
    #[serde(default = "default_healthy_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: u32,
    /// Statuses that count as passing: `200`, `2xx` or a range `200-399`. Default `200-399`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(pattern(r"^([1-5][0-9][0-9]|[1-5]xx|[1-5][0-9][0-9]-[1-5][0-9][0-9])$"))
    )]
    pub expected_statuses: Vec<String>,
}

fn default_health_path() -> String {
    "/".to_owned()
}
fn default_health_interval() -> String {
    "10s".to_owned()
}
fn default_health_timeout() -> String {
    "2s".to_owned()
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// Timeouts, each a duration such as `5s` or `250ms`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Time to open a connection to a backend (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]{1,6}(ms|s|m|h))+$"))]
    pub connect: Option<String>,
    /// Time from the request to the response headers (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]{1,6}(ms|s|m|h))+$"))]
    pub request: Option<String>,
    /// Time an upstream connection may sit idle in the pool (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]{1,6}(ms|s|m|h))+$"))]
    pub idle: Option<String>,
}

/// Retries of idempotent requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Further attempts, each on another endpoint, after a connect failure.
    #[serde(default = "default_retry_attempts")]
    #[schemars(range(min = 0, max = 5))]
    pub attempts: u32,
    /// Retries may add at most this percentage to the requests sent.
    #[serde(default = "default_retry_budget")]
    #[schemars(range(min = 0, max = 100))]
    pub budget_percent: u32,
}

fn default_retry_attempts() -> u32 {
    1
}
fn default_retry_budget() -> u32 {
    20
}

/// A per-route rate limit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.key != 'header' || has(self.header)").message("header is required when key is header"))]
pub struct RouteRateLimit {
    /// Requests per minute.
    #[schemars(range(min = 1, max = 100000000))]
    pub requests_per_minute: u32,
    /// Requests that may arrive at once above the steady rate.
    #[serde(default)]
    #[schemars(range(max = 100000000))]
    pub burst: u32,
    /// What is counted separately: the whole tenant, each client IP, each
    /// value of a header (an API key), or each JWT subject.
    #[serde(default)]
    pub key: RateLimitKey,
    /// Header whose value is the key, with `key: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub header: Option<String>,
}

/// What a rate limit counts separately.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    /// One bucket for the whole tenant.
    #[default]
    Tenant,
    /// One bucket per client IP.
    ClientIp,
    /// One bucket per value of a header.
    Header,
    /// One bucket per JWT `sub` claim.
    JwtSubject,
}

/// WAF settings of a Route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteWaf {
    /// OWASP CRS level; a level below the plan's is raised to the plan's.
    pub level: WafLevel,
}

/// TLS for a Route's hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A `kubernetes.io/tls` Secret in the Route's namespace (`tls.crt`, `tls.key`).
    pub secret_ref: LocalObjectRef,
    /// Answer plain-HTTP requests for these hosts with a redirect to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Observed state of a Route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Accepted`, `ResolvedRefs`, `Programmed`, `Ready`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
