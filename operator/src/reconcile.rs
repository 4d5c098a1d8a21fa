//! The reconcile pass: everything the operator watches → `resolve` → the
//! config store and every object's status.
//!
//! Routing semantics are global (domains are claimed oldest tenant first,
//! quotas admit the oldest routes first), so one pass resolves the whole
//! world and then writes only what changed: a tenant config whose compiled
//! content differs from what was last written, a status whose conditions
//! differ from the object's current ones. A pass over an unchanged world
//! writes nothing to Redis or to the API server. A change to any watched
//! object (Plan, Tenant, Route, ReferenceGrant, Service, EndpointSlice,
//! Secret) triggers a pass; passes are debounced, and a failing write is
//! retried by the next pass with backoff.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use veloflux_crds::resolve::{
    ConditionOutcome, Endpoint, ObjectKey, Outcome, ServiceKey, TlsSecret, resolve,
};
use veloflux_crds::{
    Condition, ConditionStatus, ConditionType, DedicatedInstance, Inputs, Plan, Reason,
    ReferenceGrant, Route, Tenant, TenantConfig,
};
use veloflux_store::acks::{self, Fleet};
use veloflux_store::writer::{PutOutcome, Writer};

use crate::inputs::{service_endpoints, tls_secrets};
use crate::metrics::Metrics;
use crate::status;

/// Field manager of every status the operator writes.
pub const MANAGER: &str = "veloflux-operator";
/// Finalizer that removes a tenant's routing before the Tenant goes.
pub const FINALIZER: &str = "veloflux.io/tenant-cleanup";

/// The reflector stores of everything the operator watches.
#[derive(Clone)]
pub struct Stores {
    /// Plans.
    pub plans: Store<Plan>,
    /// Tenants.
    pub tenants: Store<Tenant>,
    /// Routes.
    pub routes: Store<Route>,
    /// Dedicated instances.
    pub dedicated: Store<DedicatedInstance>,
    /// ReferenceGrants.
    pub grants: Store<ReferenceGrant>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// `kubernetes.io/tls` Secrets.
    pub secrets: Store<Secret>,
}

/// One consistent-enough copy of the world for a pass.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Plans.
    pub plans: Vec<Plan>,
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Dedicated instances.
    pub dedicated: Vec<DedicatedInstance>,
    /// ReferenceGrants.
    pub grants: Vec<ReferenceGrant>,
    /// Endpoints per Service port.
    pub services: BTreeMap<ServiceKey, Vec<Endpoint>>,
    /// TLS Secrets.
    pub secrets: BTreeMap<ObjectKey, TlsSecret>,
}

fn owned<K: Clone>(items: Vec<Arc<K>>) -> Vec<K> {
    items.into_iter().map(|k| (*k).clone()).collect()
}

impl Stores {
    /// Copies every store.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            plans: owned(self.plans.state()),
            tenants: owned(self.tenants.state()),
            routes: owned(self.routes.state()),
            dedicated: owned(self.dedicated.state()),
            grants: owned(self.grants.state()),
            services: service_endpoints(&self.services.state(), &self.slices.state()),
            secrets: tls_secrets(&self.secrets.state()),
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Tenant configs written to the store.
    pub configs_written: usize,
    /// Tenant configs removed from the store.
    pub configs_deleted: usize,
    /// Status subresources written.
    pub statuses_written: usize,
    /// Finalizers added or removed.
    pub finalizers: usize,
    /// A change is written but not yet served by every proxy: pass again soon.
    pub waiting_for_proxies: bool,
    /// Writes that failed (retried by the next pass).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
struct Written {
    /// The config as compiled (revision 0), to compare the next pass against.
    config: TenantConfig,
    outcome: PutOutcome,
}

/// Runs passes; remembers what it wrote.
pub struct Reconciler {
    client: Client,
    writer: Writer,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    written: HashMap<String, Written>,
    synced: bool,
    /// Month usage per tenant: when read, the month, the counts.
    usage: HashMap<String, (Instant, u32, veloflux_store::usage::Counts)>,
    /// How long a usage reading is reused.
    usage_every: std::time::Duration,
    /// Tenants already reported over quota, per month.
    notified: HashSet<(String, u32)>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("written", &self.written.len())
            .field("synced", &self.synced)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    /// A reconciler writing through `client` and `writer`.
    pub fn new(client: Client, writer: Writer, recorder: Recorder, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            writer,
            recorder,
            metrics,
            written: HashMap::new(),
            synced: false,
            usage: HashMap::new(),
            usage_every: std::time::Duration::from_secs(30),
            notified: HashSet::new(),
        }
    }

    /// Reuse a tenant's month usage reading for `every` (default 30 s).
    pub fn with_usage_every(mut self, every: std::time::Duration) -> Self {
        self.usage_every = every;
        self
    }

    /// Resolves `world` and writes what changed.
    pub async fn pass(&mut self, world: &Snapshot) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport::default();

        // Tenants being deleted: their routing goes first, then the finalizer.
        let mut live_tenants = Vec::with_capacity(world.tenants.len());
        for tenant in &world.tenants {
            let name = tenant.name_any();
            let has_finalizer = tenant.finalizers().iter().any(|f| f == FINALIZER);
            if tenant.meta().deletion_timestamp.is_some() {
                if has_finalizer {
                    self.finalize(tenant, &name, &mut report).await;
                }
                continue;
            }
            if !has_finalizer {
                self.add_finalizer(tenant, &name, &mut report).await;
            }
            live_tenants.push(tenant.clone());
        }

        let mut resolution = resolve(Inputs {
            plans: &world.plans,
            tenants: &live_tenants,
            routes: &world.routes,
            dedicated: &world.dedicated,
            grants: &world.grants,
            services: Some(&world.services),
            secrets: Some(&world.secrets),
        });

        self.enforce_quotas(&mut resolution, &world.tenants, &mut report)
            .await;
        self.write_configs(&resolution.configs, &mut report).await;

        let fleet = match acks::read_fleet(self.writer.client()).await {
            Ok(fleet) => Some(fleet),
            Err(err) => {
                report
                    .errors
                    .push(format!("reading acknowledgements: {err}"));
                None
            }
        };

        let now = status::now();
        for plan in &world.plans {
            let Some(out) = resolution.plans.get(&plan.name_any()) else {
                continue;
            };
            let current = plan.status.as_ref().map(|s| s.conditions.as_slice());
            let extra = json!({"tenants": out.tenants});
            let api = Api::<Plan>::all(self.client.clone());
            self.write_status(
                api,
                plan,
                &out.outcome.conditions,
                out.outcome.generation,
                current,
                extra,
                &now,
                &mut report,
            )
            .await;
        }
        for tenant in &live_tenants {
            let Some(out) = resolution.tenants.get(&tenant.name_any()) else {
                continue;
            };
            let current = tenant.status.as_ref().map(|s| s.conditions.as_slice());
            let extra = json!({"usage": out.usage});
            let api = Api::<Tenant>::all(self.client.clone());
            self.write_status(
                api,
                tenant,
                &out.outcome.conditions,
                out.outcome.generation,
                current,
                extra,
                &now,
                &mut report,
            )
            .await;
        }
        for route in &world.routes {
            let key = ObjectKey::of(route.meta());
            let Some(out) = resolution.routes.get(&key) else {
                continue;
            };
            let outcomes = self.with_programmed(route, out, fleet.as_ref(), &mut report);
            let current = route.status.as_ref().map(|s| s.conditions.as_slice());
            let api = Api::<Route>::namespaced(self.client.clone(), &key.namespace);
            self.write_status(
                api,
                route,
                &outcomes,
                out.generation,
                current,
                json!({}),
                &now,
                &mut report,
            )
            .await;
        }
        for instance in &world.dedicated {
            let key = ObjectKey::of(instance.meta());
            let Some(out) = resolution.dedicated.get(&key) else {
                continue;
            };
            let current = instance.status.as_ref().map(|s| s.conditions.as_slice());
            let api = Api::<DedicatedInstance>::namespaced(self.client.clone(), &key.namespace);
            self.write_status(
                api,
                instance,
                &out.conditions,
                out.generation,
                current,
                json!({}),
                &now,
                &mut report,
            )
            .await;
        }

        self.metrics.observe_pass(started.elapsed(), &report);
        if report.configs_written + report.configs_deleted + report.statuses_written > 0
            || !report.errors.is_empty()
        {
            info!(
                configs_written = report.configs_written,
                configs_deleted = report.configs_deleted,
                statuses_written = report.statuses_written,
                errors = report.errors.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "Reconcile pass"
            );
        }
        for error in &report.errors {
            warn!(error, "Reconcile write failed; retried by the next pass");
        }
        report
    }

    async fn write_configs(
        &mut self,
        configs: &BTreeMap<String, TenantConfig>,
        report: &mut PassReport,
    ) {
        if !self.synced {
            match self.writer.sync_all(configs.values()).await {
                Ok(sync) => {
                    report.configs_written += sync.written;
                    report.configs_deleted += sync.deleted;
                    for (tenant, outcome) in sync.outcomes {
                        if let Some(config) = configs.get(&tenant) {
                            self.written.insert(
                                tenant,
                                Written {
                                    config: config.clone(),
                                    outcome,
                                },
                            );
                        }
                    }
                    self.synced = true;
                }
                Err(err) => report
                    .errors
                    .push(format!("initial sync of the config store: {err}")),
            }
            return;
        }
        for (tenant, config) in configs {
            if self
                .written
                .get(tenant)
                .is_some_and(|w| &w.config == config)
            {
                continue;
            }
            match self.writer.put(config).await {
                Ok(outcome) => {
                    if outcome.written {
                        report.configs_written += 1;
                        debug!(tenant_id = %tenant, revision = outcome.revision, "Tenant config written");
                    }
                    self.written.insert(
                        tenant.clone(),
                        Written {
                            config: config.clone(),
                            outcome,
                        },
                    );
                }
                Err(err) => report
                    .errors
                    .push(format!("writing tenant {tenant}: {err}")),
            }
        }
        let gone: Vec<String> = self
            .written
            .keys()
            .filter(|t| !configs.contains_key(*t))
            .cloned()
            .collect();
        for tenant in gone {
            match self.writer.delete(&tenant).await {
                Ok(_) => {
                    report.configs_deleted += 1;
                    self.written.remove(&tenant);
                }
                Err(err) => report
                    .errors
                    .push(format!("removing tenant {tenant}: {err}")),
            }
        }
    }

    /// Applies each plan's overage policy to tenants past their monthly
    /// quota (usage read from the store at most every `usage_every`).
    async fn enforce_quotas(
        &mut self,
        resolution: &mut veloflux_crds::Resolution,
        tenants: &[Tenant],
        report: &mut PassReport,
    ) {
        let minute = acks::now_ms() / 60_000;
        let month = veloflux_store::usage::month_of(minute);
        let mut over = 0;
        // Tenants whose quota state is unknown this pass keep what was last
        // written rather than losing a throttle or a block.
        let mut hold: Vec<String> = Vec::new();
        let veloflux_crds::Resolution {
            configs, routes, ..
        } = resolution;
        for (tenant, config) in configs.iter_mut() {
            if config.plan.requests_per_month.is_none()
                && config.plan.bandwidth_bytes_per_month.is_none()
            {
                continue;
            }
            let fresh = self
                .usage
                .get(tenant)
                .is_some_and(|(at, m, _)| *m == month && at.elapsed() < self.usage_every);
            if !fresh {
                match veloflux_store::usage::read_month(self.writer.client(), tenant, month).await {
                    Ok(used) => {
                        self.usage
                            .insert(tenant.clone(), (Instant::now(), month, used));
                    }
                    Err(err) => {
                        // Keep enforcing on the last reading of this month.
                        report
                            .errors
                            .push(format!("reading usage of tenant {tenant}: {err}"));
                        if self.usage.get(tenant).is_none_or(|(_, m, _)| *m != month) {
                            hold.push(tenant.clone());
                            continue;
                        }
                    }
                }
            }
            let used = self.usage.get(tenant).map_or([0; 3], |(_, _, u)| *u);
            let Some(why) = crate::quota::overage(config, used) else {
                continue;
            };
            over += 1;
            let served: Option<HashSet<String>> = match self.written.get(tenant) {
                Some(w) => Some(w.config.routes.iter().map(|r| r.id.clone()).collect()),
                None => match self.writer.stored(tenant).await {
                    Ok(stored) => stored.map(|c| c.routes.iter().map(|r| r.id.clone()).collect()),
                    Err(err) => {
                        report
                            .errors
                            .push(format!("reading tenant {tenant}: {err}"));
                        hold.push(tenant.clone());
                        continue;
                    }
                },
            };
            let effect = crate::quota::apply(config, served.as_ref(), routes, &why);
            if self.notified.insert((tenant.clone(), month)) {
                warn!(tenant_id = %tenant, policy = ?config.plan.overage_policy, effect = ?effect, "{why}");
                if effect == crate::quota::Effect::Notify
                    && let Some(object) = tenants.iter().find(|t| t.name_any() == *tenant)
                {
                    let event = Event {
                        type_: EventType::Warning,
                        reason: Reason::QuotaExceeded.as_str().to_owned(),
                        note: Some(why.clone()),
                        action: "MeterUsage".into(),
                        secondary: None,
                    };
                    if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
                        report
                            .errors
                            .push(format!("quota event for tenant {tenant}: {err}"));
                        self.notified.remove(&(tenant.clone(), month));
                    }
                }
            }
        }
        for tenant in hold {
            if let (Some(config), Some(written)) =
                (configs.get_mut(&tenant), self.written.get(&tenant))
            {
                *config = written.config.clone();
            }
        }
        self.metrics.tenants_over_quota.set(over);
    }

    /// The route's conditions with `Programmed` (from the proxies'
    /// acknowledgements) before `Ready`, and `Ready` held at `False` until
    /// the proxies serve the route's revision.
    fn with_programmed(
        &self,
        route: &Route,
        out: &Outcome,
        fleet: Option<&Fleet>,
        report: &mut PassReport,
    ) -> Vec<ConditionOutcome> {
        let accepted = out.is_true(ConditionType::Accepted);
        let tenant = &route.spec.tenant_ref;
        let programmed = match (accepted, self.written.get(tenant), fleet) {
            (false, _, _) => ConditionOutcome {
                type_: ConditionType::Programmed,
                status: ConditionStatus::False,
                reason: Reason::Pending,
                message: "the route is not accepted".into(),
            },
            (true, None, _) | (true, _, None) => {
                report.waiting_for_proxies = true;
                ConditionOutcome {
                    type_: ConditionType::Programmed,
                    status: ConditionStatus::Unknown,
                    reason: Reason::Pending,
                    message: "the tenant's config is not in the store yet".into(),
                }
            }
            (true, Some(written), Some(fleet)) => {
                let rollout =
                    fleet.rollout(tenant, written.outcome.revision, written.outcome.announced);
                let revision = written.outcome.revision;
                if rollout.total() == 0 {
                    report.waiting_for_proxies = true;
                    ConditionOutcome {
                        type_: ConditionType::Programmed,
                        status: ConditionStatus::False,
                        reason: Reason::NoProxies,
                        message: format!(
                            "revision {revision} is written; no proxy has acknowledged the config store"
                        ),
                    }
                } else if rollout.complete() {
                    ConditionOutcome {
                        type_: ConditionType::Programmed,
                        status: ConditionStatus::True,
                        reason: Reason::Programmed,
                        message: format!(
                            "revision {revision} served by {n} of {n} proxies",
                            n = rollout.total()
                        ),
                    }
                } else {
                    report.waiting_for_proxies = true;
                    let mut waiting = rollout.lagging.clone();
                    waiting.extend(rollout.refused.iter().map(|p| format!("{p} (refused)")));
                    ConditionOutcome {
                        type_: ConditionType::Programmed,
                        status: ConditionStatus::False,
                        reason: Reason::Pending,
                        message: format!(
                            "revision {revision} served by {} of {} proxies; waiting for {}",
                            rollout.serving.len(),
                            rollout.total(),
                            waiting.join(", ")
                        ),
                    }
                }
            }
        };
        let mut conditions: Vec<ConditionOutcome> = Vec::with_capacity(out.conditions.len() + 1);
        for condition in &out.conditions {
            if condition.type_ == ConditionType::Ready {
                conditions.push(programmed.clone());
                let mut ready = condition.clone();
                if ready.status == ConditionStatus::True
                    && programmed.status != ConditionStatus::True
                {
                    ready.status = ConditionStatus::False;
                    ready.reason = Reason::Pending;
                    ready.message = format!("waiting for the proxies: {}", programmed.message);
                }
                conditions.push(ready);
            } else {
                conditions.push(condition.clone());
            }
        }
        conditions
    }

    /// Writes an object's status when it differs from `outcomes` (with
    /// `observedGeneration` and the kind's `extra` fields), and records an
    /// Event per condition transition.
    #[allow(clippy::too_many_arguments)]
    async fn write_status<K>(
        &self,
        api: Api<K>,
        object: &K,
        outcomes: &[ConditionOutcome],
        generation: Option<i64>,
        current_conditions: Option<&[Condition]>,
        extra: Value,
        now: &str,
        report: &mut PassReport,
    ) where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let current_conditions = current_conditions.unwrap_or_default();
        let conditions = status::conditions(outcomes, generation, current_conditions, now);
        let mut desired = extra;
        desired["observedGeneration"] = json!(generation);
        desired["conditions"] = json!(conditions);
        let current = serde_json::to_value(object)
            .ok()
            .and_then(|v| v.get("status").cloned())
            .unwrap_or(Value::Null);
        if same_status(&current, &desired) {
            return;
        }
        let kind = K::kind(&());
        let name = object.name_any();
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": kind,
            "status": desired,
        });
        match api
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                report.statuses_written += 1;
                self.metrics.status_written(&kind);
            }
            Err(err) => {
                self.metrics.error(&kind);
                report
                    .errors
                    .push(format!("status of {kind} {name}: {err}"));
                return;
            }
        }
        for condition in status::transitions(current_conditions, &conditions) {
            let event = Event {
                type_: if status::is_warning(condition) {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: condition.reason.clone(),
                note: Some(format!(
                    "{} is {}: {}",
                    condition.type_,
                    condition.status.as_str(),
                    if condition.message.is_empty() {
                        condition.reason.as_str()
                    } else {
                        condition.message.as_str()
                    }
                )),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
                debug!(error = %err, "Event not recorded");
            }
        }
    }

    async fn add_finalizer(&self, tenant: &Tenant, name: &str, report: &mut PassReport) {
        let mut finalizers = tenant.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": tenant.resource_version(),
        }});
        let api: Api<Tenant> = Api::all(self.client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => report.finalizers += 1,
            Err(err) => report
                .errors
                .push(format!("finalizer on tenant {name}: {err}")),
        }
    }

    /// Removes the tenant's routing from the store, then its finalizer.
    /// Users and billing records stay.
    async fn finalize(&mut self, tenant: &Tenant, name: &str, report: &mut PassReport) {
        if let Err(err) = self.writer.delete(name).await {
            report.errors.push(format!("removing tenant {name}: {err}"));
            return;
        }
        if self.written.remove(name).is_some() {
            report.configs_deleted += 1;
        }
        let finalizers: Vec<&String> = tenant
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": tenant.resource_version(),
        }});
        let api: Api<Tenant> = Api::all(self.client.clone());
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                report.finalizers += 1;
                info!(tenant_id = %name, "Tenant routing removed; finalizer released");
            }
            Err(err) => report
                .errors
                .push(format!("finalizer on tenant {name}: {err}")),
        }
    }

    /// Tenants whose config is in the store, with their last put.
    pub fn written(&self) -> HashSet<&str> {
        self.written.keys().map(String::as_str).collect()
    }
}

/// Whether the object's status already says what `desired` says (fields
/// `desired` sets; a `null` counts as absent).
fn same_status(current: &Value, desired: &Value) -> bool {
    let Some(desired) = desired.as_object() else {
        return false;
    };
    desired.iter().all(|(key, want)| {
        let have = current.get(key).unwrap_or(&Value::Null);
        have == want
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_compare_on_the_fields_the_operator_owns() {
        let current = json!({"observedGeneration": 2, "conditions": [], "replicas": 3});
        assert!(same_status(
            &current,
            &json!({"observedGeneration": 2, "conditions": []})
        ));
        assert!(!same_status(
            &current,
            &json!({"observedGeneration": 3, "conditions": []})
        ));
        assert!(same_status(&json!({}), &json!({"usage": null})));
        assert!(!same_status(
            &Value::Null,
            &json!({"observedGeneration": 1})
        ));
    }
}
