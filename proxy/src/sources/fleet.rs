//! The fleet config source (`--redis URL`): load every tenant from Redis,
//! then follow the change stream, applying each change to its tenant only.
//!
//! What can go wrong, and what the proxy does:
//! - Redis down or unreachable: keep serving the last good config, report
//!   it (`/readyz`, `veloflux_config_store_connected`), retry with backoff.
//! - Entries missed (stream trimmed past the proxy, Redis restarted, a
//!   revision skipped): reload everything and diff, so only tenants that
//!   really changed are rebuilt.
//! - Redis back empty (no epoch marker): remove nothing; apply what the
//!   writer republishes, and reload in full once the new marker appears.
//! - A document with a newer schema (a rolling upgrade): refuse that tenant
//!   only, keep its last good config, log and count it.
//! - Started while Redis is down: serve the state directory's copy.
//!
//! After each applied batch (and on a heartbeat) the proxy publishes its
//! acknowledgement: the stream position it has applied and what it refused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};
use veloflux_crds::keys::ChangeOp;
use veloflux_store::acks::{self, ProxyAck};
use veloflux_store::reader::{Changes, Cursor, Fetched, Reader};
use veloflux_store::{RedisOptions, StoreError};

use crate::admin::endpoints::{Admin, SourceStatus};
use crate::admin::metrics::{ResyncLabels, SourceLabels};
use crate::routing::reload::{ApplyReport, Reloader};
use crate::sources::folder::TenantChange;
use crate::sources::state::StateDir;

/// Source label of this source's metrics and logs.
const SOURCE: &str = "redis";
/// Longest wait in one stream read (also paces the heartbeat check).
const BLOCK: Duration = Duration::from_millis(500);
/// Most entries read at once.
const BATCH: u64 = 1024;
/// Acknowledgements are coalesced to at most one per this interval.
const ACK_EVERY: Duration = Duration::from_millis(50);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// How the proxy uses the store.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Where Redis is.
    pub redis: RedisOptions,
    /// This proxy's id in acknowledgements.
    pub proxy_id: String,
    /// How long start waits for Redis before serving the state directory.
    pub connect_timeout: Duration,
    /// How often the epoch is checked and the acknowledgement refreshed
    /// (it expires after five intervals).
    pub heartbeat: Duration,
    /// Where the last good config is kept.
    pub state_dir: Option<PathBuf>,
}

/// The running source.
#[derive(Debug)]
pub struct Fleet {
    reader: Reader,
    options: FleetOptions,
    reloader: Arc<Reloader>,
    admin: Arc<Admin>,
    saver: Option<UnboundedSender<TenantChange>>,
    state: Option<StateDir>,
    errors: Counter,
    /// The epoch the served config belongs to.
    epoch: Option<String>,
    cursor: Cursor,
    /// Highest revision seen per tenant (applied, refused or deleted).
    seen: HashMap<String, u64>,
    /// Tenants whose latest document is refused, with its revision.
    refused: BTreeMap<String, u64>,
    connected: bool,
    /// A full reload is due, and why.
    resync: Option<&'static str>,
    last_heartbeat: Instant,
    last_ack: Instant,
    ack_due: bool,
    /// The current source status detail and problems.
    detail: String,
}

impl Fleet {
    /// Connects and serves the store's config; when Redis does not answer
    /// within the connect timeout, serves the state directory's copy (if
    /// any) and keeps trying in [`Fleet::run`].
    pub async fn start(
        options: FleetOptions,
        reloader: Arc<Reloader>,
        admin: Arc<Admin>,
    ) -> anyhow::Result<Self> {
        let reader = Reader::new(&options.redis, BLOCK)?;
        let state = match &options.state_dir {
            Some(dir) => Some(
                StateDir::open(dir)
                    .map_err(|e| anyhow::anyhow!("state directory {}: {e}", dir.display()))?,
            ),
            None => None,
        };
        let errors = reloader
            .metrics
            .config_errors
            .get_or_create(&SourceLabels { source: SOURCE })
            .clone();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let mut fleet = Self {
            reader,
            saver: state.clone().map(StateDir::spawn_writer),
            state: state.clone(),
            options,
            reloader,
            admin,
            errors,
            epoch: None,
            cursor: Cursor::default(),
            seen: HashMap::new(),
            refused: BTreeMap::new(),
            connected: false,
            resync: Some("start"),
            last_heartbeat: long_ago,
            last_ack: long_ago,
            ack_due: true,
            detail: String::new(),
        };
        let reached = fleet
            .reader
            .connect(&fleet.options.redis, fleet.options.connect_timeout)
            .await;
        let synced = match reached {
            Ok(()) => fleet.full_sync("start").await,
            Err(err) => Err(err),
        };
        match synced {
            Ok(()) => {
                fleet.resync = None;
                fleet.heartbeat().await;
            }
            Err(err) => {
                fleet.disconnected(&err);
                let saved = match &state {
                    Some(state) => state.load().unwrap_or_else(|e| {
                        warn!(error = %e, "State directory unreadable");
                        Vec::new()
                    }),
                    None => Vec::new(),
                };
                let count = saved.len();
                let changes: Vec<TenantChange> = saved
                    .into_iter()
                    .map(|c| (c.tenant.clone(), Some(Arc::new(c))))
                    .collect();
                if state.is_some() {
                    let report = fleet.reloader.apply(changes, "state-dir");
                    warn!(
                        tenants = report.applied.len(),
                        error = %err,
                        "Config store unreachable at start; serving the state directory's copy"
                    );
                    fleet.detail = format!(
                        "Redis unreachable ({err}); serving {count} tenants from the state directory"
                    );
                    fleet.set_status(count > 0);
                } else {
                    warn!(error = %err, "Config store unreachable at start and no state directory; serving nothing until it answers");
                }
            }
        }
        Ok(fleet)
    }

    /// Follows the store until `stop` turns true; then withdraws this
    /// proxy's acknowledgement and closes the connections.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        tokio::select! {
            () = self.follow_forever() => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
        let quit = async {
            if let Err(err) = acks::withdraw(self.reader.client(), &self.options.proxy_id).await {
                warn!(error = %err, "Could not withdraw the acknowledgement; it expires with its TTL");
            }
            self.reader.quit().await;
        };
        let _ = tokio::time::timeout(self.options.redis.command_timeout, quit).await;
    }

    async fn follow_forever(&mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            if let Some(reason) = self.resync {
                match self.full_sync(reason).await {
                    Ok(()) => {
                        self.resync = None;
                        backoff = MIN_BACKOFF;
                    }
                    Err(err) => {
                        self.disconnected(&err);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let step = match self.reader.changes(self.cursor, BATCH).await {
                Ok(changes) => {
                    self.reconnected();
                    self.follow(changes).await
                }
                Err(err) => Err(err),
            };
            match step {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(err) => {
                    self.disconnected(&err);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if self.last_heartbeat.elapsed() >= self.options.heartbeat
                || (self.ack_due && self.last_ack.elapsed() >= ACK_EVERY)
            {
                self.heartbeat().await;
            }
        }
    }

    /// Reloads every tenant and applies the difference with what is served.
    async fn full_sync(&mut self, reason: &'static str) -> Result<(), StoreError> {
        let started = Instant::now();
        let sync = self.reader.full_sync().await?;
        self.reconnected();
        self.reloader
            .metrics
            .store
            .resyncs
            .get_or_create(&ResyncLabels { reason })
            .inc();
        let snapshot = self.reloader.store.load();
        let mut listed = HashSet::with_capacity(sync.tenants.len());
        let mut changes: Vec<TenantChange> = Vec::new();
        for (tenant, fetched) in sync.tenants {
            // A document deleted after the index was read is not listed
            // (unless the store is unmarked, when nothing is removed anyway).
            if !matches!(fetched, Fetched::Missing) {
                listed.insert(tenant.clone());
            }
            match fetched {
                Fetched::Config(config) => {
                    self.seen.insert(tenant.clone(), config.revision);
                    self.refused.remove(&tenant);
                    let served = snapshot.tenant(&tenant).map(|t| &*t.config);
                    if served != Some(&*config) {
                        changes.push((tenant, Some(Arc::new(*config))));
                    }
                }
                Fetched::Refused { revision, reason } => self.refuse(tenant, revision, &reason),
                Fetched::Missing => {}
            }
        }
        let unlisted: Vec<String> = snapshot
            .tenants()
            .filter(|t| !listed.contains(&*t.id))
            .map(|t| t.id.to_string())
            .collect();
        if sync.epoch.is_some() {
            for tenant in unlisted {
                self.seen.remove(&tenant);
                self.refused.remove(&tenant);
                changes.push((tenant, None));
            }
            // Saved copies of tenants the store no longer lists go too, so a
            // later start without Redis cannot bring them back.
            if let (Some(state), Some(saver)) = (&self.state, &self.saver) {
                for tenant in state.tenants().unwrap_or_default() {
                    if !listed.contains(&tenant) {
                        let _ = saver.send((tenant, None));
                    }
                }
            }
        } else {
            if !unlisted.is_empty() {
                warn!(
                    kept = unlisted.len(),
                    "Config store has no epoch marker (restarted empty?); keeping every served tenant until the writer republishes"
                );
            }
            // Nothing served yet (a start): the saved copies of tenants the
            // unmarked store does not list are the best there is.
            if snapshot.tenant_count() == 0
                && let Some(state) = &self.state
            {
                for config in state.load().unwrap_or_default() {
                    if !listed.contains(&config.tenant) {
                        changes.push((config.tenant.clone(), Some(Arc::new(config))));
                    }
                }
            }
        }
        let changed = changes.len();
        // A full sync can compile every tenant: off the serving threads.
        let reloader = Arc::clone(&self.reloader);
        let report =
            match tokio::task::spawn_blocking(move || reloader.apply(changes, SOURCE)).await {
                Ok(report) => report,
                Err(err) => match err.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // The runtime is shutting down.
                    Err(_) => return Ok(()),
                },
            };
        self.absorb(report);
        self.epoch = sync.epoch;
        self.cursor = sync.cursor;
        self.reloader
            .metrics
            .store
            .epoch_present
            .set(i64::from(self.epoch.is_some()));
        self.detail = if self.epoch.is_some() {
            "following the change stream".into()
        } else {
            "the store has no epoch marker; waiting for the writer to republish".into()
        };
        self.ack_due = true;
        let serving = self.reloader.store.load().tenant_count() > 0;
        self.set_status(self.epoch.is_some() || serving);
        info!(
            reason,
            tenants = listed.len(),
            changed,
            epoch = self.epoch.as_deref().unwrap_or(""),
            cursor = %self.cursor.id,
            took_ms = started.elapsed().as_millis() as u64,
            "Config store loaded in full"
        );
        Ok(())
    }

    /// Applies one read's changes; asks for a full reload when entries were missed.
    async fn follow(&mut self, changes: Changes) -> Result<(), StoreError> {
        if changes.gap {
            warn!(cursor = %self.cursor.id, "Change stream skipped entries (trimmed or restarted); reloading in full");
            self.resync = Some("gap");
            return Ok(());
        }
        if changes.entries.is_empty() {
            return Ok(());
        }
        // The last change per tenant; revisions are checked as they go by.
        let mut batch_seen: HashMap<&str, u64> = HashMap::new();
        let mut latest: HashMap<&str, (ChangeOp, u64)> = HashMap::new();
        let mut oldest_ms = u64::MAX;
        for change in &changes.entries {
            let entry = match &change.entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.errors.inc();
                    warn!(id = %change.id, error = %err, "Unreadable change entry skipped");
                    continue;
                }
            };
            oldest_ms = oldest_ms.min(change.id.ms);
            let known = batch_seen
                .get(entry.tenant.as_str())
                .or_else(|| self.seen.get(&entry.tenant))
                .copied();
            if let Some(known) = known
                && entry.revision > known + 1
            {
                warn!(tenant_id = %entry.tenant, known, announced = entry.revision, "Revision skipped; reloading in full");
                self.resync = Some("revision_jump");
                return Ok(());
            }
            // Already applied (a replay), or a delete older than what is served.
            let stale = match entry.op {
                ChangeOp::Upsert => known.is_some_and(|k| entry.revision <= k),
                ChangeOp::Delete => known.is_some_and(|k| entry.revision < k),
            };
            if stale {
                continue;
            }
            batch_seen.insert(&entry.tenant, entry.revision);
            latest.insert(&entry.tenant, (entry.op, entry.revision));
        }
        let upserts: Vec<String> = latest
            .iter()
            .filter(|(_, (op, _))| *op == ChangeOp::Upsert)
            .map(|(t, _)| (*t).to_owned())
            .collect();
        let fetched = self.reader.fetch(&upserts).await?;
        let mut updates: Vec<TenantChange> = Vec::with_capacity(latest.len());
        for (tenant, fetched) in fetched {
            match fetched {
                Fetched::Config(config) => {
                    self.seen.insert(tenant.clone(), config.revision);
                    self.refused.remove(&tenant);
                    updates.push((tenant, Some(Arc::new(*config))));
                }
                Fetched::Refused { revision, reason } => self.refuse(tenant, revision, &reason),
                Fetched::Missing => {
                    // Deleted since it was announced: its delete follows.
                    if let Some((_, revision)) = latest.get(tenant.as_str()) {
                        self.seen.insert(tenant.clone(), *revision);
                    }
                }
            }
        }
        for (tenant, (op, _)) in &latest {
            if *op == ChangeOp::Delete {
                // Forget it: a tenant created again later starts afresh.
                self.seen.remove(*tenant);
                self.refused.remove(*tenant);
                updates.push(((*tenant).to_owned(), None));
            }
        }
        let report = self.reloader.apply(updates, SOURCE);
        let applied = !report.applied.is_empty();
        self.absorb(report);
        if applied && oldest_ms != u64::MAX {
            let now = acks::now_ms();
            for change in &changes.entries {
                let lag = now.saturating_sub(change.id.ms);
                self.reloader
                    .metrics
                    .store
                    .propagation
                    .observe(lag as f64 / 1000.0);
            }
        }
        self.cursor = changes.cursor(self.cursor);
        self.ack_due = true;
        self.set_status(true);
        Ok(())
    }

    fn refuse(&mut self, tenant: String, revision: u64, reason: &str) {
        self.errors.inc();
        error!(tenant_id = %tenant, revision, reason, "Tenant config refused; keeping the last good one");
        self.seen.insert(tenant.clone(), revision);
        self.refused.insert(tenant, revision);
    }

    /// Records compile refusals, persists what was applied, updates gauges.
    fn absorb(&mut self, report: ApplyReport) {
        for (tenant, revision, _) in report.refused {
            self.seen.insert(tenant.clone(), revision);
            self.refused.insert(tenant, revision);
        }
        if let Some(saver) = &self.saver {
            for change in report.applied {
                let _ = saver.send(change);
            }
        }
        self.reloader
            .metrics
            .store
            .refused_tenants
            .set(i64::try_from(self.refused.len()).unwrap_or(i64::MAX));
    }

    /// Checks the epoch marker and publishes the acknowledgement.
    async fn heartbeat(&mut self) {
        self.last_heartbeat = Instant::now();
        match self.reader.epoch().await {
            Ok(epoch) => {
                self.reconnected();
                if epoch != self.epoch {
                    if epoch.is_some() {
                        info!(
                            epoch = epoch.as_deref().unwrap_or(""),
                            "Config store epoch changed; reloading in full"
                        );
                        self.resync = Some("epoch");
                    } else if self.epoch.is_some() {
                        warn!(
                            "Config store lost its epoch marker (restarted empty?); keeping every served tenant until the writer republishes"
                        );
                        self.epoch = None;
                        self.reloader.metrics.store.epoch_present.set(0);
                        self.detail =
                            "the store has no epoch marker; waiting for the writer to republish"
                                .into();
                        self.set_status(true);
                    }
                }
            }
            Err(err) => {
                self.disconnected(&err);
                return;
            }
        }
        let ack = ProxyAck {
            id: self.options.proxy_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            epoch: self.epoch.clone(),
            applied: self.cursor.id,
            tenants: self.reloader.store.load().tenant_count() as u64,
            refused: self.refused.clone(),
            at_ms: acks::now_ms(),
        };
        match acks::publish(self.reader.client(), &ack, self.options.heartbeat * 5).await {
            Ok(()) => {
                self.last_ack = Instant::now();
                self.ack_due = false;
            }
            Err(err) => warn!(error = %err, "Could not publish the acknowledgement"),
        }
    }

    fn reconnected(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.reloader.metrics.store.connected.set(1);
        info!(redis = %self.options.redis.redacted_url(), "Config store reachable");
        // Check the epoch and acknowledge promptly.
        self.last_heartbeat = Instant::now()
            .checked_sub(self.options.heartbeat)
            .unwrap_or_else(Instant::now);
        if self.resync.is_none() {
            self.detail = "following the change stream".into();
        }
        self.set_status(self.admin.source.load().loaded || self.resync.is_none());
    }

    fn disconnected(&mut self, err: &StoreError) {
        self.reloader.metrics.store.connected.set(0);
        if self.connected || self.detail.is_empty() {
            error!(error = %err, "Config store failing; serving the last good config");
        }
        self.connected = false;
        self.detail = format!("Redis failing ({err}); serving the last good config");
        self.set_status(self.admin.source.load().loaded);
    }

    fn set_status(&self, loaded: bool) {
        let problems = self
            .refused
            .iter()
            .map(|(tenant, revision)| {
                format!(
                    "tenant {tenant}: revision {revision} refused; serving the last good config"
                )
            })
            .collect();
        self.admin.source.store(Arc::new(SourceStatus {
            kind: SOURCE,
            location: self.options.redis.redacted_url(),
            loaded,
            connected: self.connected,
            problems,
            detail: self.detail.clone(),
            epoch: self.epoch.clone(),
            applied: Some(self.cursor.id.to_string()),
        }));
    }
}

/// The default proxy id: `HOSTNAME` (a pod's name) and the process id.
pub fn default_proxy_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    let host = if host.is_empty() {
        "veloflux-proxy".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}
