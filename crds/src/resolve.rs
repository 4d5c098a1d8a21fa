//! `resolve`: the pure, deterministic step from manifests (plans, tenants,
//! routes, grants, resolved Service endpoints and TLS Secrets) to one compiled
//! [`TenantConfig`] per tenant plus the conditions to report on every object.
//!
//! The operator and the standalone proxy both call it, so the same manifests
//! mean the same routing everywhere. Rules, applied oldest object first
//! (creation time, then namespace, then name):
//!
//! - A tenant whose plan is missing or invalid gets no config (`PlanNotFound`
//!   / `Invalid`) and claims no domains.
//! - Domains are granted in the order the tenant lists them, up to the plan's
//!   `maxDomains` (`QuotaExceeded`); a domain overlapping one an older tenant
//!   was granted is refused (`HostConflict`). Granted domains of different
//!   tenants therefore never overlap.
//! - A route is admitted only if its tenant exists and is on a valid plan, its
//!   namespace is one the tenant lists (`NamespaceNotAllowed`), every host is
//!   covered by a domain granted to its tenant (`HostConflict` when another
//!   tenant holds it, `HostNotAllowed` otherwise), it respects
//!   `maxBackendsPerRoute`, uses only features of its plan
//!   (`FeatureNotInPlan`), is well-formed (`Invalid`), and fits in `maxRoutes`
//!   counting admitted routes oldest first (`QuotaExceeded`).
//! - A backend naming a Service in another namespace needs a ReferenceGrant
//!   there (`RefNotPermitted`); a Service or Secret that does not exist is
//!   reported (`BackendNotFound`, `SecretNotFound`). Such a route is still
//!   served, without the missing parts (a backend with no endpoints answers 503).
//! - A route's rate limit and WAF level can only tighten the plan's; a looser
//!   value is replaced by the plan's and reported (`PlanLimitApplied`).
//!
//! Every problem of an object is reported at once, in one message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::condition::{Condition, ConditionStatus, ConditionType, Reason};
use crate::config::{
    BackendConfig, CertificateConfig, EndpointConfig, HealthCheckConfig, PlanConfig,
    RateLimitConfig, RetriesConfig, RouteConfig, RouteTlsConfig, RuleConfig, SCHEMA_VERSION,
    StatusRange, TenantConfig, TimeoutsConfig,
};
use crate::dedicated::DedicatedInstance;
use crate::duration::parse_millis;
use crate::grant::ReferenceGrant;
use crate::host;
use crate::plan::{Plan, PlanSpec};
use crate::route::{Algorithm, HashSource, HeaderMatch, RateLimitKey, Route, RouteSpec};
use crate::tenant::{Tenant, TenantUsage};

/// Namespace and name of an object (namespace empty for cluster-scoped kinds).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A namespaced key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object from its metadata.
    pub fn of(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A Service port: the key endpoints are resolved under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Service port number.
    pub port: u16,
}

/// One endpoint of a Service port, as its EndpointSlices report it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// `ip:port` (`[ipv6]:port`) of the endpoint, target port applied.
    pub address: String,
    /// The endpoint can take traffic (`conditions.serving`).
    pub serving: bool,
    /// The endpoint is shutting down (`conditions.terminating`).
    pub terminating: bool,
}

/// Certificate and key of a `kubernetes.io/tls` Secret, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSecret {
    /// `tls.crt`, if present.
    pub cert_pem: Option<String>,
    /// `tls.key`, if present.
    pub key_pem: Option<String>,
}

impl std::fmt::Debug for TlsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSecret")
            .field("has_cert", &self.cert_pem.is_some())
            .field("has_key", &self.key_pem.is_some())
            .finish()
    }
}

/// Everything `resolve` reads, borrowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// Plans.
    pub plans: &'a [Plan],
    /// Tenants.
    pub tenants: &'a [Tenant],
    /// Routes.
    pub routes: &'a [Route],
    /// Dedicated instances.
    pub dedicated: &'a [DedicatedInstance],
    /// ReferenceGrants.
    pub grants: &'a [ReferenceGrant],
    /// Endpoints of every known Service port.
    pub services: Option<&'a BTreeMap<ServiceKey, Vec<Endpoint>>>,
    /// TLS Secrets by namespace and name.
    pub secrets: Option<&'a BTreeMap<ObjectKey, TlsSecret>>,
}

/// One condition to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionOutcome {
    /// Condition type.
    pub type_: ConditionType,
    /// Its status.
    pub status: ConditionStatus,
    /// Why.
    pub reason: Reason,
    /// Details for people.
    pub message: String,
}

impl ConditionOutcome {
    /// This outcome as the status condition written on the object: the one
    /// place an outcome's type, status and reason take their wire form.
    /// `last_transition_time` (RFC 3339) and `observed_generation` are the
    /// caller's to choose: the operator keeps the current condition's time
    /// while its status holds; a folder, which keeps no status, reads now.
    pub fn to_condition(
        &self,
        last_transition_time: &str,
        observed_generation: Option<i64>,
    ) -> Condition {
        Condition {
            type_: self.type_.as_str().to_owned(),
            status: self.status,
            reason: self.reason.as_str().to_owned(),
            message: self.message.clone(),
            last_transition_time: last_transition_time.to_owned(),
            observed_generation,
        }
    }
}

/// The conditions to report on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `metadata.generation` the outcome was computed from.
    pub generation: Option<i64>,
    /// Conditions, `Ready` last.
    pub conditions: Vec<ConditionOutcome>,
}

impl Outcome {
    /// The condition of a type, if reported.
    pub fn condition(&self, type_: ConditionType) -> Option<&ConditionOutcome> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of a type is reported `True`.
    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// The reason of the condition of a type, if reported.
    pub fn reason(&self, type_: ConditionType) -> Option<Reason> {
        self.condition(type_).map(|c| c.reason)
    }
}

/// What resolve says about one Plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOutcome {
    /// Conditions.
    pub outcome: Outcome,
    /// Tenants on the plan.
    pub tenants: u32,
}

/// What resolve says about one Tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantOutcome {
    /// Conditions.
    pub outcome: Outcome,
    /// Usage against the plan, when the plan is known.
    pub usage: Option<TenantUsage>,
    /// Domains granted to the tenant.
    pub domains: Vec<String>,
}

/// The result of [`resolve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// One compiled config per tenant that is on a valid plan (revision 0).
    pub configs: BTreeMap<String, TenantConfig>,
    /// Outcome per Plan name.
    pub plans: BTreeMap<String, PlanOutcome>,
    /// Outcome per Tenant name.
    pub tenants: BTreeMap<String, TenantOutcome>,
    /// Outcome per Route.
    pub routes: BTreeMap<ObjectKey, Outcome>,
    /// Outcome per DedicatedInstance.
    pub dedicated: BTreeMap<ObjectKey, Outcome>,
}

/// Problems found on one object for one condition: the first reason wins,
/// every message is kept.
#[derive(Default)]
struct Problems(Vec<(Reason, String)>);

impl Problems {
    fn push(&mut self, reason: Reason, message: impl Into<String>) {
        self.0.push((reason, message.into()));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The condition: `True` with `ok` when there are no problems, else
    /// `False` with the first problem's reason and all messages.
    fn condition(&self, type_: ConditionType, ok: (Reason, &str)) -> ConditionOutcome {
        match self.0.first() {
            None => ConditionOutcome {
                type_,
                status: ConditionStatus::True,
                reason: ok.0,
                message: capped(ok.1.to_owned()),
            },
            Some((reason, _)) => ConditionOutcome {
                type_,
                status: ConditionStatus::False,
                reason: *reason,
                message: capped(
                    self.0
                        .iter()
                        .map(|(_, m)| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            },
        }
    }
}

/// Longest condition message written; the CRD allows 32768 and a status
/// carries several conditions.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// `message`, cut at [`MAX_MESSAGE_LEN`] on a character boundary.
fn capped(mut message: String) -> String {
    const MARK: &str = " … (truncated)";
    if message.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN - MARK.len();
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(MARK);
    }
    message
}

/// A list for a message: the first few items and how many more there are.
fn list(items: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut text = items
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// `Ready` as the summary of the other conditions: `True` when all are, else
/// `False` with the first failing condition's reason and message.
fn ready(conditions: &[ConditionOutcome], suspended: bool) -> ConditionOutcome {
    if let Some(failing) = conditions
        .iter()
        .find(|c| c.status != ConditionStatus::True)
    {
        return ConditionOutcome {
            type_: ConditionType::Ready,
            status: ConditionStatus::False,
            reason: failing.reason,
            message: failing.message.clone(),
        };
    }
    if suspended {
        return ConditionOutcome {
            type_: ConditionType::Ready,
            status: ConditionStatus::False,
            reason: Reason::Suspended,
            message: "the tenant is suspended; its hosts answer 403".to_owned(),
        };
    }
    ConditionOutcome {
        type_: ConditionType::Ready,
        status: ConditionStatus::True,
        reason: Reason::Ready,
        message: String::new(),
    }
}

fn with_ready(mut conditions: Vec<ConditionOutcome>, suspended: bool) -> Vec<ConditionOutcome> {
    let summary = ready(&conditions, suspended);
    conditions.push(summary);
    conditions
}

/// Oldest first: creation time (objects without one first), namespace, name.
fn age_key(meta: &ObjectMeta) -> (Option<&Time>, &str, &str) {
    (
        meta.creation_timestamp.as_ref(),
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// Sorted oldest first, one object per key. Names are unique in a cluster and
/// the manifest loader refuses duplicates; should a caller pass two objects
/// with one key anyway, the older wins, and between equally old ones the
/// smaller JSON text, so the choice never depends on input order.
fn oldest_first<T: serde::Serialize>(items: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Vec<&T> {
    fn name_of(m: &ObjectMeta) -> (&str, &str) {
        (
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    }
    let mut sorted: Vec<&T> = items.iter().collect();
    // Same key together, the one to keep first.
    sorted.sort_by(|a, b| {
        name_of(meta(a))
            .cmp(&name_of(meta(b)))
            .then_with(|| age_key(meta(a)).0.cmp(&age_key(meta(b)).0))
            .then_with(|| {
                let text = |x: &T| serde_json::to_string(x).unwrap_or_default();
                text(a).cmp(&text(b))
            })
    });
    sorted.dedup_by(|later, kept| name_of(meta(later)) == name_of(meta(kept)));
    sorted.sort_by(|a, b| age_key(meta(a)).cmp(&age_key(meta(b))));
    sorted
}

/// Problems with a plan's own spec.
pub fn validate_plan(spec: &PlanSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let limits = &spec.limits;
    if limits.requests_per_minute == 0 {
        problems.push("limits.requestsPerMinute must be at least 1".to_owned());
    }
    if limits.burst > limits.requests_per_minute {
        problems.push("limits.burst must not exceed limits.requestsPerMinute".to_owned());
    }
    if limits.max_backends_per_route == 0 {
        problems.push("limits.maxBackendsPerRoute must be at least 1".to_owned());
    }
    problems
}

/// Domains granted so far, indexed so each overlap check is O(1).
#[derive(Default)]
struct DomainClaims<'a> {
    /// Concrete name → owner.
    exact: HashMap<&'a str, &'a str>,
    /// Wildcard suffix (`acme.com` for `*.acme.com`) → owner.
    wildcard: HashMap<&'a str, &'a str>,
    /// Parent of a granted concrete name → owners of names directly below it.
    exact_below: HashMap<&'a str, BTreeSet<&'a str>>,
}

impl<'a> DomainClaims<'a> {
    /// Whether a tenant other than `tenant` holds a domain overlapping `domain`.
    fn conflicts(&self, tenant: &str, domain: &str) -> bool {
        let other = |owner: &&str| *owner != tenant;
        match host::wildcard_suffix(domain) {
            Some(suffix) => {
                self.wildcard.get(suffix).is_some_and(other)
                    || self
                        .exact_below
                        .get(suffix)
                        .is_some_and(|owners| owners.iter().any(other))
            }
            None => {
                self.exact.get(domain).is_some_and(other)
                    || host::parent(domain)
                        .and_then(|p| self.wildcard.get(p))
                        .is_some_and(other)
            }
        }
    }

    fn claim(&mut self, tenant: &'a str, domain: &'a str) {
        match host::wildcard_suffix(domain) {
            Some(suffix) => {
                self.wildcard.entry(suffix).or_insert(tenant);
            }
            None => {
                self.exact.entry(domain).or_insert(tenant);
                if let Some(parent) = host::parent(domain) {
                    self.exact_below.entry(parent).or_default().insert(tenant);
                }
            }
        }
    }
}

/// The state of one tenant while its routes are resolved.
struct TenantState<'a> {
    tenant: &'a Tenant,
    plan: Option<&'a Plan>,
    domains: Vec<&'a str>,
    admitted: u32,
    routes: Vec<RouteConfig>,
    certificates: Vec<CertificateConfig>,
}

/// Resolves manifests into compiled tenant configs and per-object outcomes.
/// Pure and deterministic: the result does not depend on the order of the inputs.
pub fn resolve(inputs: Inputs<'_>) -> Resolution {
    let mut resolution = Resolution::default();
    let empty_services = BTreeMap::new();
    let empty_secrets = BTreeMap::new();
    let services = inputs.services.unwrap_or(&empty_services);
    let secrets = inputs.secrets.unwrap_or(&empty_secrets);

    // Plans.
    let mut plans: BTreeMap<&str, (&Plan, bool)> = BTreeMap::new();
    for plan in oldest_first(inputs.plans, |p| &p.metadata) {
        let name = plan.metadata.name.as_deref().unwrap_or("");
        let problems = validate_plan(&plan.spec);
        let mut accepted = Problems::default();
        for p in &problems {
            accepted.push(Reason::Invalid, p.clone());
        }
        let conditions = with_ready(
            vec![accepted.condition(ConditionType::Accepted, (Reason::Accepted, ""))],
            false,
        );
        plans.insert(name, (plan, problems.is_empty()));
        resolution.plans.insert(
            name.to_owned(),
            PlanOutcome {
                outcome: Outcome {
                    generation: plan.metadata.generation,
                    conditions,
                },
                tenants: 0,
            },
        );
    }

    // Tenants, oldest first: plan, then domain claims.
    let mut claims = DomainClaims::default();
    let mut states: BTreeMap<&str, TenantState<'_>> = BTreeMap::new();
    let mut tenant_problems: BTreeMap<&str, Problems> = BTreeMap::new();
    for tenant in oldest_first(inputs.tenants, |t| &t.metadata) {
        let name = tenant.metadata.name.as_deref().unwrap_or("");
        let mut problems = Problems::default();
        let plan_ref = tenant.spec.plan_ref.as_str();
        let plan = match plans.get(plan_ref) {
            None => {
                problems.push(
                    Reason::PlanNotFound,
                    format!("plan {plan_ref:?} does not exist"),
                );
                None
            }
            Some((_, false)) => {
                problems.push(Reason::Invalid, format!("plan {plan_ref:?} is invalid"));
                None
            }
            Some((plan, true)) => {
                if let Some(p) = resolution.plans.get_mut(plan_ref) {
                    p.tenants += 1;
                }
                Some(*plan)
            }
        };
        // Domains are claimed even when the plan is missing or invalid, so a
        // bad plan edit never hands a tenant's domains to a younger tenant.
        // Without a plan there is no quota to apply.
        let max = plan.map_or(usize::MAX, |p| p.spec.limits.max_domains as usize);
        let mut granted: Vec<&str> = Vec::new();
        let mut over_quota = Vec::new();
        let mut conflicting = Vec::new();
        let mut invalid = Vec::new();
        for domain in &tenant.spec.domains {
            let domain = domain.as_str();
            if granted.contains(&domain) {
                continue;
            }
            if !host::is_valid_pattern(domain) {
                invalid.push(domain);
            } else if claims.conflicts(name, domain) {
                conflicting.push(domain);
            } else if granted.len() >= max {
                over_quota.push(domain);
            } else {
                claims.claim(name, domain);
                granted.push(domain);
            }
        }
        if !invalid.is_empty() {
            problems.push(
                Reason::Invalid,
                format!("invalid domains: {}", list(&invalid)),
            );
        }
        if !conflicting.is_empty() {
            problems.push(
                Reason::HostConflict,
                format!(
                    "domains already claimed by another tenant: {}",
                    list(&conflicting)
                ),
            );
        }
        if !over_quota.is_empty() {
            problems.push(
                Reason::QuotaExceeded,
                format!(
                    "plan {plan_ref:?} allows {max} domains; not granted: {}",
                    list(&over_quota)
                ),
            );
        }
        states.insert(
            name,
            TenantState {
                tenant,
                plan,
                domains: granted,
                admitted: 0,
                routes: Vec::new(),
                certificates: Vec::new(),
            },
        );
        tenant_problems.insert(name, problems);
    }

    // Routes, oldest first.
    for route in oldest_first(inputs.routes, |r| &r.metadata) {
        let key = ObjectKey::of(&route.metadata);
        let outcome = resolve_route(
            route,
            &key,
            &mut states,
            &claims,
            inputs.grants,
            services,
            secrets,
        );
        resolution.routes.insert(key, outcome);
    }

    // Dedicated instances.
    for instance in oldest_first(inputs.dedicated, |d| &d.metadata) {
        let key = ObjectKey::of(&instance.metadata);
        let mut problems = Problems::default();
        let tenant_ref = instance.spec.tenant_ref.as_str();
        match states.get(tenant_ref) {
            None => problems.push(
                Reason::TenantNotFound,
                format!("tenant {tenant_ref:?} does not exist"),
            ),
            Some(state) => {
                if !state.tenant.spec.namespaces.contains(&key.namespace) {
                    problems.push(
                        Reason::NamespaceNotAllowed,
                        format!(
                            "tenant {tenant_ref:?} does not list namespace {:?}",
                            key.namespace
                        ),
                    );
                }
                match state.plan {
                    None => problems.push(
                        Reason::PlanNotFound,
                        format!("tenant {tenant_ref:?} has no valid plan"),
                    ),
                    Some(plan) if !plan.spec.features.dedicated_instances => problems.push(
                        Reason::FeatureNotInPlan,
                        format!(
                            "plan {:?} does not include dedicated instances",
                            plan.metadata.name.as_deref().unwrap_or("")
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        if let Some(a) = &instance.spec.autoscaling
            && a.min_replicas > a.max_replicas
        {
            problems.push(
                Reason::Invalid,
                "autoscaling.minReplicas must not exceed maxReplicas",
            );
        }
        let conditions = with_ready(
            vec![problems.condition(ConditionType::Accepted, (Reason::Accepted, ""))],
            false,
        );
        resolution.dedicated.insert(
            key,
            Outcome {
                generation: instance.metadata.generation,
                conditions,
            },
        );
    }

    // Tenant outcomes and configs.
    for (name, state) in states {
        let problems = tenant_problems.remove(name).unwrap_or_default();
        let suspended = state.tenant.spec.suspended;
        let conditions = with_ready(
            vec![problems.condition(ConditionType::Accepted, (Reason::Accepted, ""))],
            suspended,
        );
        let usage = state.plan.map(|plan| TenantUsage {
            routes: state.admitted,
            max_routes: plan.spec.limits.max_routes,
            domains: u32::try_from(state.domains.len()).unwrap_or(u32::MAX),
            max_domains: plan.spec.limits.max_domains,
        });
        resolution.tenants.insert(
            name.to_owned(),
            TenantOutcome {
                outcome: Outcome {
                    generation: state.tenant.metadata.generation,
                    conditions,
                },
                usage,
                domains: state.domains.iter().map(|d| (*d).to_owned()).collect(),
            },
        );
        if let Some(plan) = state.plan {
            let mut config = TenantConfig {
                schema_version: SCHEMA_VERSION,
                tenant: name.to_owned(),
                revision: 0,
                suspended,
                plan: plan_config(plan),
                domains: state.domains.iter().map(|d| (*d).to_owned()).collect(),
                routes: state.routes,
                certificates: state.certificates,
            };
            config.shrink_to_fit();
            resolution.configs.insert(name.to_owned(), config);
        }
    }
    resolution
}

fn plan_config(plan: &Plan) -> PlanConfig {
    let limits = &plan.spec.limits;
    PlanConfig {
        name: plan.metadata.name.clone().unwrap_or_default(),
        requests_per_minute: limits.requests_per_minute,
        burst: limits.burst,
        waf: plan.spec.waf.level,
        rate_limit_failure_mode: limits.rate_limit_failure_mode,
        requests_per_month: limits.requests_per_month,
        bandwidth_bytes_per_month: limits
            .bandwidth_gib_per_month
            .map(|g| g.saturating_mul(1 << 30)),
        overage_policy: plan.spec.overage_policy,
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_route(
    route: &Route,
    key: &ObjectKey,
    states: &mut BTreeMap<&str, TenantState<'_>>,
    claims: &DomainClaims<'_>,
    grants: &[ReferenceGrant],
    services: &BTreeMap<ServiceKey, Vec<Endpoint>>,
    secrets: &BTreeMap<ObjectKey, TlsSecret>,
) -> Outcome {
    let spec = &route.spec;
    let generation = route.metadata.generation;
    let tenant_ref = spec.tenant_ref.as_str();
    let mut accepted = Problems::default();
    for problem in validate_route(spec) {
        accepted.push(Reason::Invalid, problem);
    }

    let Some(state) = states.get_mut(tenant_ref) else {
        accepted.push(
            Reason::TenantNotFound,
            format!("tenant {tenant_ref:?} does not exist"),
        );
        return not_accepted(generation, &accepted);
    };
    if !state.tenant.spec.namespaces.contains(&key.namespace) {
        accepted.push(
            Reason::NamespaceNotAllowed,
            format!(
                "tenant {tenant_ref:?} does not allow routes in namespace {:?}",
                key.namespace
            ),
        );
    }
    let Some(plan) = state.plan else {
        accepted.push(
            Reason::PlanNotFound,
            format!("tenant {tenant_ref:?} has no valid plan"),
        );
        return not_accepted(generation, &accepted);
    };
    let plan_name = plan.metadata.name.as_deref().unwrap_or("");
    let limits = &plan.spec.limits;

    for h in &spec.hosts {
        if !host::is_valid_pattern(h) {
            continue; // reported by validate_route
        }
        if state.domains.iter().any(|d| host::covers(d, h)) {
            continue;
        }
        let held_elsewhere = claims.conflicts(tenant_ref, h);
        if held_elsewhere {
            accepted.push(
                Reason::HostConflict,
                format!("host {h:?} is claimed by another tenant"),
            );
        } else {
            accepted.push(
                Reason::HostNotAllowed,
                format!("host {h:?} is not within the domains granted to tenant {tenant_ref:?}"),
            );
        }
    }
    if spec.backends.len() > limits.max_backends_per_route as usize {
        accepted.push(
            Reason::QuotaExceeded,
            format!(
                "route has {} backends; plan {plan_name:?} allows {} per route",
                spec.backends.len(),
                limits.max_backends_per_route
            ),
        );
    }
    if spec.backends.iter().any(|b| b.address.is_some()) && !plan.spec.features.static_backends {
        accepted.push(
            Reason::FeatureNotInPlan,
            format!("plan {plan_name:?} does not include static address backends; use a Service"),
        );
    }
    if spec.tls.is_some() && !plan.spec.features.custom_tls {
        accepted.push(
            Reason::FeatureNotInPlan,
            format!("plan {plan_name:?} does not include custom TLS"),
        );
    }
    if accepted.is_empty() && state.admitted >= limits.max_routes {
        accepted.push(
            Reason::QuotaExceeded,
            format!(
                "tenant {tenant_ref:?} already has {} routes, the most plan {plan_name:?} allows",
                limits.max_routes
            ),
        );
    }
    if !accepted.is_empty() {
        return not_accepted(generation, &accepted);
    }
    state.admitted += 1;

    // Admitted: tighten to the plan, resolve references, compile.
    let mut notes: Vec<String> = Vec::new();
    let rate_limit = spec.rate_limit.as_ref().map(|rl| {
        if rl.requests_per_minute > limits.requests_per_minute || rl.burst > limits.burst {
            notes.push(format!(
                "rateLimit {}/min burst {} is looser than plan {plan_name:?} ({}/min burst {}); the plan's bound applies",
                rl.requests_per_minute, rl.burst, limits.requests_per_minute, limits.burst
            ));
        }
        RateLimitConfig {
            requests_per_minute: rl.requests_per_minute.min(limits.requests_per_minute),
            burst: rl.burst.min(limits.burst),
            key: rl.key,
            header: match rl.key {
                RateLimitKey::Header => rl.header.as_ref().map(|h| h.to_ascii_lowercase()),
                _ => None,
            },
        }
    });
    let plan_waf = plan.spec.waf.level;
    let waf = match &spec.waf {
        Some(w) if w.level < plan_waf => {
            notes.push(format!(
                "waf level {} is below plan {plan_name:?}'s {}; the plan's level applies",
                w.level.as_str(),
                plan_waf.as_str()
            ));
            plan_waf
        }
        Some(w) => w.level,
        None => plan_waf,
    };

    let mut refs = Problems::default();
    let backends = spec
        .backends
        .iter()
        .map(|b| {
            let mut endpoints = Vec::new();
            let mut service_label = None;
            if let Some(svc) = &b.service {
                let namespace = svc.namespace.as_deref().unwrap_or(&key.namespace);
                service_label = Some(format!("{namespace}/{}:{}", svc.name, svc.port));
                let permitted = namespace == key.namespace
                    || grants.iter().any(|g| {
                        g.metadata.namespace.as_deref() == Some(namespace)
                            && g.permits_route_to_service(&key.namespace, &svc.name)
                    });
                if !permitted {
                    refs.push(
                        Reason::RefNotPermitted,
                        format!(
                            "backend {:?}: namespace {namespace:?} has no ReferenceGrant for Service {:?} to routes in {:?}",
                            b.name, svc.name, key.namespace
                        ),
                    );
                } else {
                    let skey = ServiceKey { namespace: namespace.to_owned(), name: svc.name.clone(), port: svc.port };
                    match services.get(&skey) {
                        None => refs.push(
                            Reason::BackendNotFound,
                            format!("backend {:?}: Service {namespace}/{} port {} not found", b.name, svc.name, svc.port),
                        ),
                        Some(eps) => {
                            endpoints = eps
                                .iter()
                                .filter(|e| e.serving || e.terminating)
                                .map(|e| EndpointConfig {
                                    address: e.address.clone(),
                                    draining: b.drain || e.terminating,
                                })
                                .collect();
                        }
                    }
                }
            } else if let Some(address) = &b.address {
                endpoints.push(EndpointConfig { address: address.clone(), draining: b.drain });
            }
            endpoints.sort();
            endpoints.dedup_by(|a, b| a.address == b.address);
            BackendConfig { name: b.name.clone(), service: service_label, weight: b.weight, endpoints }
        })
        .collect();

    let tls = spec.tls.as_ref().map(|t| {
        let secret_key = ObjectKey::new(key.namespace.clone(), t.secret_ref.name.clone());
        let certificate = match secrets.get(&secret_key) {
            Some(TlsSecret {
                cert_pem: Some(cert),
                key_pem: Some(pem_key),
            }) if looks_like_pem(cert) && looks_like_pem(pem_key) => {
                let source = secret_key.to_string();
                let index = match state.certificates.iter().position(|c| c.source == source) {
                    Some(i) => i,
                    None => {
                        state.certificates.push(CertificateConfig {
                            source,
                            hosts: Vec::new(),
                            cert_pem: cert.clone(),
                            key_pem: pem_key.clone(),
                        });
                        state.certificates.len() - 1
                    }
                };
                let cert_hosts = &mut state.certificates[index].hosts;
                cert_hosts.extend(spec.hosts.iter().cloned());
                cert_hosts.sort();
                cert_hosts.dedup();
                u32::try_from(index).ok()
            }
            Some(_) => {
                refs.push(
                    Reason::SecretNotFound,
                    format!("Secret {secret_key} lacks a PEM tls.crt or tls.key"),
                );
                None
            }
            None => {
                refs.push(
                    Reason::SecretNotFound,
                    format!("Secret {secret_key} not found"),
                );
                None
            }
        };
        RouteTlsConfig {
            certificate,
            https_redirect: t.https_redirect,
        }
    });

    state
        .routes
        .push(compile_route(route, key, backends, rate_limit, waf, tls));

    let accepted_condition = if notes.is_empty() {
        accepted.condition(ConditionType::Accepted, (Reason::Accepted, ""))
    } else {
        accepted.condition(
            ConditionType::Accepted,
            (Reason::PlanLimitApplied, &notes.join("; ")),
        )
    };
    let conditions = with_ready(
        vec![
            accepted_condition,
            refs.condition(ConditionType::ResolvedRefs, (Reason::ResolvedRefs, "")),
        ],
        state.tenant.spec.suspended,
    );
    Outcome {
        generation,
        conditions,
    }
}

fn not_accepted(generation: Option<i64>, accepted: &Problems) -> Outcome {
    let conditions = with_ready(
        vec![
            accepted.condition(ConditionType::Accepted, (Reason::Accepted, "")),
            ConditionOutcome {
                type_: ConditionType::ResolvedRefs,
                status: ConditionStatus::Unknown,
                reason: Reason::Pending,
                message: "references are resolved once the route is accepted".to_owned(),
            },
        ],
        false,
    );
    Outcome {
        generation,
        conditions,
    }
}

fn looks_like_pem(text: &str) -> bool {
    text.trim_start().starts_with("-----BEGIN ")
}

/// Problems with a route's own spec, beyond what the CRD schema enforces
/// (the standalone proxy reads manifests no API server has checked).
pub fn validate_route(spec: &RouteSpec) -> Vec<String> {
    let mut problems = Vec::new();
    if !crate::keys::is_valid_id(&spec.tenant_ref) {
        problems.push(format!(
            "tenantRef {:?} is not a valid name",
            spec.tenant_ref
        ));
    }
    if spec.hosts.is_empty() {
        problems.push("hosts must list at least one host".to_owned());
    }
    for (field, len, max) in [
        ("hosts", spec.hosts.len(), MAX_HOSTS),
        ("backends", spec.backends.len(), MAX_BACKENDS),
        ("rules", spec.rules.len(), MAX_RULES),
    ] {
        if len > max {
            problems.push(format!(
                "{field} lists {len} items; at most {max} are allowed"
            ));
        }
    }
    if let Some(r) = &spec.retries
        && (r.attempts > 5 || r.budget_percent > 100)
    {
        problems.push("retries.attempts must be 0-5 and retries.budgetPercent 0-100".to_owned());
    }
    for h in &spec.hosts {
        if !host::is_valid_pattern(h) {
            problems.push(format!(
                "host {h:?} is not a valid lowercase host name or *.wildcard"
            ));
        }
    }
    if spec.backends.is_empty() {
        problems.push("backends must list at least one backend".to_owned());
    }
    let mut names = BTreeSet::new();
    for b in &spec.backends {
        if !names.insert(b.name.as_str()) {
            problems.push(format!("backend name {:?} is used twice", b.name));
        }
        if b.weight > 1000 {
            problems.push(format!(
                "backend {:?}: weight {} exceeds 1000",
                b.name, b.weight
            ));
        }
        match (&b.service, &b.address) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(format!(
                    "backend {:?}: set exactly one of service and address",
                    b.name
                ));
            }
            (None, Some(address)) if !valid_address(address) => {
                problems.push(format!(
                    "backend {:?}: address {address:?} is not host:port",
                    b.name
                ));
            }
            _ => {}
        }
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        for name in &rule.backends {
            if !names.contains(name.as_str()) {
                problems.push(format!("rules[{i}] names unknown backend {name:?}"));
            }
        }
        if let Some(path) = &rule.path
            && !is_valid_path(&path.value, false)
        {
            problems.push(format!(
                "rules[{i}].path {:?} must start with / and hold no whitespace, control characters, ? or #",
                path.value
            ));
        }
        for header in &rule.headers {
            if header.name.is_empty() || !header.name.bytes().all(is_token_byte) {
                problems.push(format!(
                    "rules[{i}] header name {:?} is not a valid token",
                    header.name
                ));
            }
        }
    }
    if spec.algorithm == Algorithm::ConsistentHash {
        match &spec.hash_on {
            None => problems.push("hashOn is required with algorithm consistentHash".to_owned()),
            Some(h)
                if h.source != HashSource::ClientIp
                    && h.name.as_deref().is_none_or(str::is_empty) =>
            {
                problems.push("hashOn.name is required for header and cookie".to_owned());
            }
            Some(_) => {}
        }
    }
    if let Some(hc) = &spec.health_check {
        for (field, value) in [
            ("healthCheck.interval", &hc.interval),
            ("healthCheck.timeout", &hc.timeout),
        ] {
            if let Err(e) = parse_millis(value) {
                problems.push(format!("{field}: {e}"));
            }
        }
        if !is_valid_path(&hc.path, true) {
            problems.push(format!(
                "healthCheck.path {:?} must start with / and hold no whitespace, control characters or #",
                hc.path
            ));
        }
        if hc.healthy_threshold == 0 || hc.unhealthy_threshold == 0 {
            problems.push("healthCheck thresholds must be at least 1".to_owned());
        }
        for s in &hc.expected_statuses {
            if parse_status_range(s).is_none() {
                problems.push(format!(
                    "healthCheck.expectedStatuses: {s:?} is not 200, 2xx or 200-399"
                ));
            }
        }
    }
    if let Some(t) = &spec.timeouts {
        for (field, value) in [
            ("timeouts.connect", &t.connect),
            ("timeouts.request", &t.request),
            ("timeouts.idle", &t.idle),
        ] {
            if let Some(value) = value
                && let Err(e) = parse_millis(value)
            {
                problems.push(format!("{field}: {e}"));
            }
        }
    }
    if let Some(rl) = &spec.rate_limit {
        if rl.requests_per_minute == 0 {
            problems.push("rateLimit.requestsPerMinute must be at least 1".to_owned());
        }
        if rl.key == RateLimitKey::Header && rl.header.as_deref().is_none_or(str::is_empty) {
            problems.push("rateLimit.header is required when key is header".to_owned());
        }
    }
    problems
}

/// Most hosts, backends and rules a Route may list (as the CRD schema says).
const MAX_HOSTS: usize = 64;
const MAX_BACKENDS: usize = 64;
const MAX_RULES: usize = 64;

/// A request path as a rule or health check may name it: starts with `/`, at
/// most 1024 bytes, no whitespace or control characters, no fragment, and a
/// query only where `query_allowed` (health checks).
fn is_valid_path(path: &str, query_allowed: bool) -> bool {
    path.starts_with('/')
        && path.len() <= 1024
        && !path.chars().any(|c| {
            c.is_whitespace() || c.is_control() || c == '#' || (c == '?' && !query_allowed)
        })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn valid_address(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

/// Parses `200`, `2xx` or `200-399` into an inclusive range.
pub fn parse_status_range(text: &str) -> Option<StatusRange> {
    let status = |s: &str| s.parse::<u16>().ok().filter(|v| (100..=599).contains(v));
    if let Some(class) = text.strip_suffix("xx") {
        let c = class.parse::<u16>().ok().filter(|c| (1..=5).contains(c))?;
        return Some(StatusRange {
            from: c * 100,
            to: c * 100 + 99,
        });
    }
    if let Some((from, to)) = text.split_once('-') {
        let (from, to) = (status(from)?, status(to)?);
        return (from <= to).then_some(StatusRange { from, to });
    }
    status(text).map(|s| StatusRange { from: s, to: s })
}

fn compile_route(
    route: &Route,
    key: &ObjectKey,
    backends: Vec<BackendConfig>,
    rate_limit: Option<RateLimitConfig>,
    waf: crate::plan::WafLevel,
    tls: Option<RouteTlsConfig>,
) -> RouteConfig {
    let spec = &route.spec;
    let index_of = |name: &str| {
        spec.backends
            .iter()
            .position(|b| b.name == name)
            .and_then(|i| u32::try_from(i).ok())
    };
    let all: Vec<u32> = (0..spec.backends.len())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    let rules = if spec.rules.is_empty() {
        vec![RuleConfig {
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            backends: all,
        }]
    } else {
        spec.rules
            .iter()
            .map(|r| RuleConfig {
                path: r.path.clone(),
                methods: r.methods.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|h| HeaderMatch {
                        name: h.name.to_ascii_lowercase(),
                        value: h.value.clone(),
                    })
                    .collect(),
                backends: if r.backends.is_empty() {
                    all.clone()
                } else {
                    r.backends.iter().filter_map(|n| index_of(n)).collect()
                },
            })
            .collect()
    };
    let millis = |v: &Option<String>, default: u64| {
        v.as_deref()
            .and_then(|s| parse_millis(s).ok())
            .unwrap_or(default)
    };
    let defaults = TimeoutsConfig::default();
    let timeouts = spec.timeouts.as_ref().map_or(defaults, |t| TimeoutsConfig {
        connect_ms: millis(&t.connect, defaults.connect_ms),
        request_ms: millis(&t.request, defaults.request_ms),
        idle_ms: millis(&t.idle, defaults.idle_ms),
    });
    let health_check = spec.health_check.as_ref().map(|hc| HealthCheckConfig {
        path: hc.path.clone(),
        interval_ms: parse_millis(&hc.interval).unwrap_or(10_000),
        timeout_ms: parse_millis(&hc.timeout).unwrap_or(2_000),
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        expected_statuses: if hc.expected_statuses.is_empty() {
            vec![StatusRange { from: 200, to: 399 }]
        } else {
            hc.expected_statuses
                .iter()
                .filter_map(|s| parse_status_range(s))
                .collect()
        },
    });
    let retries = spec
        .retries
        .as_ref()
        .map_or_else(RetriesConfig::default, |r| RetriesConfig {
            attempts: r.attempts,
            budget_percent: r.budget_percent,
        });
    let mut hosts = spec.hosts.clone();
    hosts.sort();
    hosts.dedup();
    RouteConfig {
        id: key.to_string(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        generation: route.metadata.generation.unwrap_or(0),
        hosts,
        rules,
        backends,
        algorithm: spec.algorithm,
        hash_on: spec.hash_on.clone().map(|mut h| {
            h.name = h.name.map(|n| {
                if h.source == HashSource::Header {
                    n.to_ascii_lowercase()
                } else {
                    n
                }
            });
            h
        }),
        health_check,
        timeouts,
        retries,
        rate_limit,
        waf,
        tls,
        max_request_body_bytes: spec.max_request_body_bytes,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
