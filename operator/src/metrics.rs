//! The operator's metrics: passes, their duration, writes and errors by kind.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reconcile::PassReport;

/// Labels by kind (`Plan`, `Tenant`, `Route`, `DedicatedInstance`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind.
    pub kind: String,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    passes: Counter,
    pass_seconds: Histogram,
    configs_written: Counter,
    configs_deleted: Counter,
    statuses: Family<KindLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    /// Tenants past their monthly quota.
    pub tenants_over_quota: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let passes = Counter::default();
        let pass_seconds = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        let configs_written = Counter::default();
        let configs_deleted = Counter::default();
        let statuses = Family::<KindLabels, Counter>::default();
        let errors = Family::<KindLabels, Counter>::default();
        let leader = Gauge::default();
        let tenants_over_quota = Gauge::default();
        registry.register(
            "veloflux_operator_tenants_over_quota",
            "Tenants past their plan's monthly quota (the overage policy applies)",
            tenants_over_quota.clone(),
        );
        registry.register(
            "veloflux_operator_reconcile_passes",
            "Reconcile passes run",
            passes.clone(),
        );
        registry.register(
            "veloflux_operator_reconcile_duration_seconds",
            "Duration of one reconcile pass (resolve and writes)",
            pass_seconds.clone(),
        );
        registry.register(
            "veloflux_operator_configs_written",
            "Tenant configs written to the config store",
            configs_written.clone(),
        );
        registry.register(
            "veloflux_operator_configs_deleted",
            "Tenant configs removed from the config store",
            configs_deleted.clone(),
        );
        registry.register(
            "veloflux_operator_status_writes",
            "Status subresources written, by kind",
            statuses.clone(),
        );
        registry.register(
            "veloflux_operator_reconcile_errors",
            "Failed writes, by kind (`Store` for the config store)",
            errors.clone(),
        );
        registry.register(
            "veloflux_operator_leader",
            "1 while this replica leads",
            leader.clone(),
        );
        Self {
            registry,
            passes,
            pass_seconds,
            configs_written,
            configs_deleted,
            statuses,
            errors,
            leader,
            tenants_over_quota,
        }
    }

    /// Counts one pass.
    pub fn observe_pass(&self, took: Duration, report: &PassReport) {
        self.passes.inc();
        self.pass_seconds.observe(took.as_secs_f64());
        self.configs_written.inc_by(report.configs_written as u64);
        self.configs_deleted.inc_by(report.configs_deleted as u64);
    }

    /// Counts one status write of `kind`.
    pub fn status_written(&self, kind: &str) {
        self.statuses
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts one failed write of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
