//! Applying tenant changes: compile each changed tenant, swap it into the
//! snapshot, follow it with the health checkers, and count it. A tenant that
//! fails to compile keeps its last good routing.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tracing::{debug, error, info};
use veloflux_crds::TenantConfig;

use crate::admin::metrics::{Metrics, SourceLabels, TenantLabelSet};
use crate::backends::endpoint::EndpointRegistry;
use crate::backends::health::HealthChecker;
use crate::routing::router::{BuildContext, TenantRuntime, build_tenant_labeled};
use crate::routing::snapshot::Store;
use crate::sources::folder::TenantChange;

/// Changes compiled per batch: from two batches on, tenants compile on
/// every core (below that, threads cost more than they save).
const COMPILE_BATCH: usize = 256;

/// A change with its metric labels chosen: tenant id, and its config and
/// labels (`None` for a removal).
type Labeled = (String, Option<(Arc<TenantConfig>, TenantLabelSet)>);

/// Everything needed to apply changes.
#[derive(Debug)]
pub struct Reloader {
    /// The routing being served.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Shared endpoint states.
    pub endpoints: EndpointRegistry,
    /// Health checkers.
    pub health: HealthChecker,
    /// Rate limiters.
    pub limits: Arc<crate::limits::ratelimit::LimitRegistry>,
    /// Usage totals.
    pub usage: Arc<crate::limits::usage::UsageRegistry>,
}

impl Reloader {
    /// A reloader for `store`.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            endpoints: EndpointRegistry::default(),
            health: HealthChecker::default(),
            limits: Arc::default(),
            usage: Arc::default(),
        }
    }

    /// Applies changes from `source` in one snapshot swap. A tenant that
    /// fails to compile keeps its last good routing and is reported refused.
    pub fn apply(&self, changes: Vec<TenantChange>, source: &'static str) -> ApplyReport {
        let labels = SourceLabels { source };
        let updates: Counter = self.metrics.config_updates.get_or_create(&labels).clone();
        let errors: Counter = self.metrics.config_errors.get_or_create(&labels).clone();
        let started = Instant::now();
        let ctx = BuildContext {
            endpoints: &self.endpoints,
            limits: &self.limits,
            usage: &self.usage,
            metrics: &self.metrics,
        };
        // Labels are handed out in change order, then tenants compile on
        // every core when there are many (a start or a full resync).
        let labeled: Vec<Labeled> = changes
            .into_iter()
            .map(|(tenant, config)| {
                let labeled = config.map(|c| {
                    let labels = self.metrics.labels(&c);
                    (c, labels)
                });
                (tenant, labeled)
            })
            .collect();
        // Fewer changes than a batch compile on this thread alone.
        let compiled = crate::parallel::map(&labeled, COMPILE_BATCH, |(tenant, labeled)| {
            let runtime = labeled.as_ref().map(|(config, labels)| {
                build_tenant_labeled(Arc::clone(config), labels, ctx)
                    .map(Arc::new)
                    .map_err(|err| (config.revision, err))
            });
            (tenant.clone(), runtime)
        });
        if let Some(panic) = compiled.panic {
            std::panic::resume_unwind(panic);
        }
        let compiled = compiled.results.into_iter().flatten();
        let mut built: Vec<(String, Option<Arc<TenantRuntime>>)> =
            Vec::with_capacity(labeled.len());
        let mut report = ApplyReport::default();
        for (tenant, runtime) in compiled {
            match runtime {
                None => built.push((tenant, None)),
                Some(Ok(runtime)) => built.push((tenant, Some(runtime))),
                Some(Err((revision, err))) => {
                    errors.inc();
                    error!(tenant_id = %tenant, revision, error = %err, "Tenant config refused; keeping the last good one");
                    report.refused.push((tenant, revision, err.to_string()));
                }
            }
        }
        if built.is_empty() {
            return report;
        }
        let before = self.store.load();
        self.store
            .set_tenants(built.iter().map(|(id, rt)| (id.as_str(), rt.clone())));
        let elapsed = started.elapsed();
        for (tenant, new) in &built {
            self.health
                .update_tenant(before.tenant(tenant).map(|o| &**o), new.as_deref());
            debug!(
                tenant_id = %tenant,
                revision = new.as_ref().map_or(0, |t| t.config.revision),
                removed = new.is_none(),
                "Tenant config applied"
            );
        }
        let per_tenant = elapsed.as_secs_f64() / built.len() as f64;
        for _ in &built {
            self.metrics.reload_seconds.observe(per_tenant);
        }
        updates.inc_by(built.len() as u64);
        info!(
            source,
            tenants = built.len(),
            apply_us = elapsed.as_micros() as u64,
            "Config changes applied"
        );
        report.applied = built
            .into_iter()
            .map(|(id, runtime)| (id, runtime.map(|t| Arc::clone(&t.config))))
            .collect();
        report
    }
}

/// What one [`Reloader::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Changes now served (removals as `None`).
    pub applied: Vec<TenantChange>,
    /// Tenants whose new config failed to compile: id, revision, reason.
    pub refused: Vec<(String, u64, String)>,
}
