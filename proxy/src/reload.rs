//! Applying tenant changes: compile each changed tenant, swap it into the
//! snapshot, follow it with the health checkers, and count it. A tenant that
//! fails to compile keeps its last good routing.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tracing::{error, info};

use crate::endpoint::EndpointRegistry;
use crate::health::HealthChecker;
use crate::metrics::{Metrics, SourceLabels};
use crate::router::{BuildContext, ClientCache, build_tenant};
use crate::snapshot::Store;
use crate::source::TenantChange;

/// Everything needed to apply changes.
#[derive(Debug)]
pub struct Reloader {
    /// The routing being served.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Shared endpoint states.
    pub endpoints: EndpointRegistry,
    /// Upstream clients.
    pub clients: ClientCache,
    /// Health checkers.
    pub health: HealthChecker,
}

impl Reloader {
    /// A reloader for `store`.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            endpoints: EndpointRegistry::default(),
            clients: ClientCache::default(),
            health: HealthChecker::default(),
        }
    }

    /// Applies changes from `source`; returns how many were applied.
    pub fn apply(&self, changes: Vec<TenantChange>, source: &'static str) -> usize {
        let labels = SourceLabels { source };
        let updates: Counter = self.metrics.config_updates.get_or_create(&labels).clone();
        let errors: Counter = self.metrics.config_errors.get_or_create(&labels).clone();
        let mut applied = 0;
        for (tenant, config) in changes {
            let started = Instant::now();
            let old = self.store.load().tenant(&tenant).cloned();
            let new = match config {
                None => None,
                Some(config) => {
                    let revision = config.revision;
                    let ctx = BuildContext {
                        endpoints: &self.endpoints,
                        metrics: &self.metrics,
                        clients: &self.clients,
                    };
                    match build_tenant(config, ctx) {
                        Ok(runtime) => Some(Arc::new(runtime)),
                        Err(err) => {
                            errors.inc();
                            error!(tenant_id = %tenant, revision, error = %err, "Tenant config refused; keeping the last good one");
                            continue;
                        }
                    }
                }
            };
            self.store.set_tenant(&tenant, new.clone());
            self.health.update_tenant(old.as_deref(), new.as_deref());
            let elapsed = started.elapsed();
            self.metrics.reload_seconds.observe(elapsed.as_secs_f64());
            updates.inc();
            applied += 1;
            info!(
                tenant_id = %tenant,
                revision = new.as_ref().map_or(0, |t| t.config.revision),
                removed = new.is_none(),
                apply_us = elapsed.as_micros() as u64,
                "Tenant config applied"
            );
        }
        applied
    }
}
