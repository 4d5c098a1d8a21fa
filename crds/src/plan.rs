//! The cluster-scoped `Plan` kind: what a tenant on it may use (limits,
//! WAF level, features), what happens past its monthly quota, and its price.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube printcolumn(...) entries repeat the same keys by design"
)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A service plan: the limits, features and price every tenant on it gets.
/// Changing a plan re-resolves every tenant on it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "veloflux.io",
    version = "v1alpha1",
    kind = "Plan",
    doc = "A service plan: limits, WAF level, features, overage policy and price shared by the tenants on it.",
    status = "PlanStatus",
    shortname = "vfplan",
    category = "veloflux",
    derive = "PartialEq",
    printcolumn(
        name = "RPM",
        type_ = "integer",
        json_path = ".spec.limits.requestsPerMinute"
    ),
    printcolumn(
        name = "Routes",
        type_ = "integer",
        json_path = ".spec.limits.maxRoutes"
    ),
    printcolumn(name = "WAF", type_ = "string", json_path = ".spec.waf.level"),
    printcolumn(name = "Tenants", type_ = "integer", json_path = ".status.tenants"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PlanSpec {
    /// Name shown to users in the console and on invoices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,
    /// Traffic and configuration limits of the plan.
    pub limits: PlanLimits,
    /// Web application firewall applied to every route of tenants on this plan.
    #[serde(default)]
    pub waf: PlanWaf,
    /// Optional features the plan includes.
    #[serde(default)]
    pub features: PlanFeatures,
    /// What happens when a tenant passes its monthly request or bandwidth quota.
    #[serde(default)]
    pub overage_policy: OveragePolicy,
    /// Prices and payment-provider identifiers of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<PlanBilling>,
}

/// Traffic and configuration limits of a plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.burst <= self.requestsPerMinute").message("burst must not exceed requestsPerMinute"))]
pub struct PlanLimits {
    /// Requests per minute allowed for the whole tenant, across the proxy fleet.
    #[schemars(range(min = 1, max = 100000000))]
    pub requests_per_minute: u32,
    /// Requests that may arrive at once above the steady rate.
    #[serde(default)]
    #[schemars(range(max = 100000000))]
    pub burst: u32,
    /// Most Routes a tenant may have; the oldest are admitted first.
    #[schemars(range(min = 0, max = 100000))]
    pub max_routes: u32,
    /// Most backends a single Route may list.
    #[schemars(range(min = 1, max = 1000))]
    pub max_backends_per_route: u32,
    /// Most domains a tenant may list; the first listed are admitted first.
    #[schemars(range(min = 0, max = 10000))]
    pub max_domains: u32,
    /// Requests per calendar month before the overage policy applies (unset: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_month: Option<u64>,
    /// Response bandwidth per calendar month, in GiB, before the overage policy applies (unset: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub bandwidth_gib_per_month: Option<u64>,
    /// What proxies do with rate limits when the shared store is unreachable:
    /// `failOpen` keeps serving under local limits only, `failClosed` answers 429.
    #[serde(default)]
    pub rate_limit_failure_mode: FailureMode,
}

/// Behaviour of cluster-wide rate limits while the shared store is unreachable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Keep serving, limited by each proxy's local limiter only.
    #[default]
    FailOpen,
    /// Refuse requests with 429 until the shared store is back.
    FailClosed,
}

/// Web application firewall settings of a plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanWaf {
    /// OWASP Core Rule Set level: `off`, `basic` (paranoia 1), `standard` (paranoia 2) or `strict` (paranoia 3).
    #[serde(default)]
    pub level: WafLevel,
}

/// OWASP Core Rule Set level. Ordered from most permissive to strictest.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum WafLevel {
    /// No WAF.
    #[default]
    Off,
    /// CRS paranoia level 1.
    Basic,
    /// CRS paranoia level 2.
    Standard,
    /// CRS paranoia level 3.
    Strict,
}

impl WafLevel {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Basic => "basic",
            Self::Standard => "standard",
            Self::Strict => "strict",
        }
    }

    /// The CRS paranoia level, `None` when off.
    pub fn paranoia_level(self) -> Option<u8> {
        match self {
            Self::Off => None,
            Self::Basic => Some(1),
            Self::Standard => Some(2),
            Self::Strict => Some(3),
        }
    }
}

/// Optional features of a plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanFeatures {
    /// Tenants may run DedicatedInstances (their own proxy Deployment).
    #[serde(default)]
    pub dedicated_instances: bool,
    /// Routes may terminate TLS with the tenant's own certificates.
    #[serde(default)]
    pub custom_tls: bool,
    /// Tenants may sign in through their own OIDC provider.
    #[serde(default)]
    pub oidc: bool,
    /// Routes may name static `host:port` backends. A static address is not
    /// confined to the tenant's namespaces the way Service backends are, so
    /// grant this only to trusted tenants (or for the standalone proxy).
    #[serde(default)]
    pub static_backends: bool,
}

/// What happens when a tenant passes its monthly quota.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OveragePolicy {
    /// Log and count the overage; keep serving.
    #[default]
    Log,
    /// Serve at a reduced rate.
    Throttle,
    /// Keep serving, but accept no new Routes until the next period.
    BlockNewConfig,
    /// Keep serving and raise an event for the tenant's owners.
    Notify,
}

/// Price and payment-provider identifiers of a plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanBilling {
    /// Monthly price as a decimal string, for example `29.00`.
    #[schemars(pattern(r"^[0-9]{1,9}(\.[0-9]{1,2})?$"))]
    pub price: String,
    /// ISO 4217 currency code, for example `USD` or `BRL`.
    #[schemars(pattern(r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Stripe Price id used for subscriptions to this plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_price_id: Option<String>,
    /// Efí (Gerencianet) plan id used for PIX and boleto subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_plan_id: Option<String>,
}

/// Observed state of a Plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of tenants on this plan.
    #[serde(default)]
    pub tenants: u32,
    /// Standard conditions: `Ready`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
