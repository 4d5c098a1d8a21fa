//! Usage metering: requests, bytes in and bytes out per tenant, counted
//! with atomics on the request path and flushed to Redis (fleet mode) in
//! per-minute buckets and a monthly rollup (`veloflux_store::usage`).
//!
//! The flusher turns the running totals into per-minute and per-month
//! amounts for this process and writes them as absolute values, so a write
//! that fails is simply written again at the next flush (and at shutdown):
//! nothing is counted twice or lost while the process lives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::prelude::Client;
use tracing::warn;
use veloflux_store::usage::{self, Counts};

/// Longest one tenant's usage write may take (Redis down: retried later).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// One tenant's running totals since the process started.
#[derive(Debug, Default)]
pub struct TenantUsage {
    /// Requests answered for the tenant (refusals included).
    pub requests: AtomicU64,
    /// Request body bytes received.
    pub bytes_in: Arc<AtomicU64>,
    /// Response body bytes sent.
    pub bytes_out: Arc<AtomicU64>,
}

impl TenantUsage {
    fn totals(&self) -> Counts {
        [
            self.requests.load(Ordering::Relaxed),
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        ]
    }
}

/// Every tenant's usage, kept across reloads.
#[derive(Debug, Default)]
pub struct UsageRegistry {
    #[allow(
        clippy::disallowed_types,
        reason = "control path: taken when a tenant is compiled and by the flusher"
    )]
    tenants: std::sync::Mutex<HashMap<String, Arc<TenantUsage>>>,
}

impl UsageRegistry {
    /// The usage of `tenant` (created on first use).
    pub fn tenant(&self, tenant: &str) -> Arc<TenantUsage> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(tenants.entry(tenant.to_owned()).or_default())
    }

    fn snapshot(&self) -> Vec<(String, Counts)> {
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants
            .iter()
            .map(|(id, usage)| (id.clone(), usage.totals()))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Flushed {
    /// Totals at the last flush.
    last: Counts,
    /// This process's amounts per minute / month, written until they are
    /// closed (an earlier minute or month) and written successfully.
    minutes: BTreeMap<u64, Counts>,
    months: BTreeMap<u32, Counts>,
}

/// Writes usage to Redis.
#[derive(Debug)]
pub struct Flusher {
    client: Client,
    incarnation: String,
    registry: Arc<UsageRegistry>,
    state: HashMap<String, Flushed>,
}

fn add(into: &mut Counts, delta: &Counts) {
    for i in 0..3 {
        into[i] += delta[i];
    }
}

impl Flusher {
    /// A flusher for `registry`, writing as `proxy_id` in this process.
    pub fn new(client: Client, proxy_id: &str, registry: Arc<UsageRegistry>) -> Self {
        Self {
            client,
            incarnation: format!("{proxy_id}@{}", veloflux_store::acks::now_ms()),
            registry,
            state: HashMap::new(),
        }
    }

    /// Attributes what was counted since the last flush to the current
    /// minute and month, and writes every open amount.
    pub async fn flush(&mut self) {
        let minute = veloflux_store::acks::now_ms() / 60_000;
        let month = usage::month_of(minute);
        for (tenant, totals) in self.registry.snapshot() {
            let state = self.state.entry(tenant).or_default();
            let delta = [
                totals[0] - state.last[0],
                totals[1] - state.last[1],
                totals[2] - state.last[2],
            ];
            if delta != [0; 3] {
                state.last = totals;
                add(state.minutes.entry(minute).or_default(), &delta);
                add(state.months.entry(month).or_default(), &delta);
            }
        }
        for (tenant, state) in &mut self.state {
            if state.minutes.is_empty() {
                continue;
            }
            let write = usage::write(
                &self.client,
                tenant,
                &self.incarnation,
                &state.minutes,
                &state.months,
            );
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    // Closed minutes and months are final once written.
                    state.minutes.retain(|m, _| *m >= minute);
                    state.months.retain(|m, _| *m >= month);
                }
                Ok(Err(err)) => {
                    warn!(tenant_id = %tenant, error = %err, "Usage not written; retried at the next flush");
                }
                // Redis is not answering: the rest waits for the next flush too.
                Err(_) => {
                    warn!(tenant_id = %tenant, "Usage write timed out; retried at the next flush");
                    break;
                }
            }
        }
    }

    /// Flushes every `every` until the task is dropped.
    pub async fn run(mut self, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            self.flush().await;
            if stopping {
                return;
            }
        }
    }
}
