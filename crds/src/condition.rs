//! Kubernetes-standard status conditions: the condition types and reasons
//! VeloFlux reports, each spelled once here, and the `Condition` shape every
//! kind's status carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One observation of an object's state, following the Kubernetes API
/// conventions for `status.conditions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, in CamelCase (for example `Ready` or `Accepted`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A machine-readable CamelCase reason for the condition's last transition.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// A human-readable message with details about the transition.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// The last time the condition's status changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// It is not known (yet) whether the condition holds.
    Unknown,
}

impl ConditionStatus {
    /// The wire form (`True`, `False`, `Unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// The condition types VeloFlux reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConditionType {
    /// The object is fully working: summary of the other conditions.
    Ready,
    /// The object was accepted: its tenant, plan, namespace, hosts and quota allow it.
    Accepted,
    /// Every reference the object makes (Services, Secrets) resolved.
    ResolvedRefs,
    /// The object's configuration is served by the proxy fleet.
    Programmed,
}

impl ConditionType {
    /// The CamelCase wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Programmed => "Programmed",
        }
    }
}

/// The reasons VeloFlux reports on conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Everything is in order.
    Accepted,
    /// Every reference resolved.
    ResolvedRefs,
    /// The object is ready.
    Ready,
    /// A route's rate limit or WAF level was looser than its plan and the plan's applies.
    PlanLimitApplied,
    /// The referenced Plan does not exist.
    PlanNotFound,
    /// The referenced Tenant does not exist.
    TenantNotFound,
    /// A plan quota (routes, backends per route, domains) is exhausted.
    QuotaExceeded,
    /// A host or domain is already claimed by an older tenant.
    HostConflict,
    /// A route host lies outside its tenant's domains.
    HostNotAllowed,
    /// The route's namespace is not one its tenant lists.
    NamespaceNotAllowed,
    /// A backend names a Service in another namespace that did not grant access.
    RefNotPermitted,
    /// A backend's Service (or its port) does not exist.
    BackendNotFound,
    /// A TLS Secret does not exist or lacks `tls.crt` / `tls.key`.
    SecretNotFound,
    /// The route uses a feature its tenant's plan does not include.
    FeatureNotInPlan,
    /// The tenant is suspended and not served.
    Suspended,
    /// The object's spec is invalid.
    Invalid,
    /// A dependency of the object is not ready.
    Pending,
    /// Every live proxy serves the route's current revision.
    Programmed,
    /// No proxy has acknowledged the store yet.
    NoProxies,
}

impl Reason {
    /// The CamelCase wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Ready => "Ready",
            Self::PlanLimitApplied => "PlanLimitApplied",
            Self::PlanNotFound => "PlanNotFound",
            Self::TenantNotFound => "TenantNotFound",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::HostConflict => "HostConflict",
            Self::HostNotAllowed => "HostNotAllowed",
            Self::NamespaceNotAllowed => "NamespaceNotAllowed",
            Self::RefNotPermitted => "RefNotPermitted",
            Self::BackendNotFound => "BackendNotFound",
            Self::SecretNotFound => "SecretNotFound",
            Self::FeatureNotInPlan => "FeatureNotInPlan",
            Self::Suspended => "Suspended",
            Self::Invalid => "Invalid",
            Self::Pending => "Pending",
            Self::Programmed => "Programmed",
            Self::NoProxies => "NoProxies",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
