//! The operator's side: writing tenant configs, announcing each change, and
//! republishing everything when Redis comes back empty.
//!
//! One tenant's write is three single-slot steps: a compare-and-set of the
//! document on the tenant's slot (so two writers cannot interleave), the
//! announcement (index + stream entry) on the fleet slot, and a mark on the
//! document recording the announcing entry's id. A writer that dies between
//! the first two leaves the mark empty; the next write of the same tenant
//! sees it and announces again, so no change is ever silently unannounced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::HashesInterface;
use fred::prelude::{Client, Expiration, KeysInterface, LuaInterface, SetOptions, SetsInterface};
use tracing::{info, warn};
use veloflux_crds::TenantConfig;
use veloflux_crds::keys::{
    self, CHANGE_SEQ_FIELD, CONFIG_CHANGES_MAXLEN, CONFIG_CHANGES_STREAM, CONFIG_EPOCH,
    CONFIG_INDEX, CONFIG_SEQ, ChangeEntry, ChangeOp, config_field,
};

use crate::connect::StoreError;
use crate::stream_id::StreamId;

/// Replaces the document only if its revision is still the one read.
const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], '')
return 1
";

/// Updates the index, numbers the change and appends the stream entry;
/// returns the entry id.
const ANNOUNCE: &str = r"
if ARGV[2] == 'delete' then
  redis.call('SREM', KEYS[1], ARGV[3])
else
  redis.call('SADD', KEYS[1], ARGV[3])
end
local seq = redis.call('INCR', KEYS[3])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', ARGV[4], seq, unpack(ARGV, 5))
";

/// Records the announcing entry, if the document is still that revision.
const MARK_ANNOUNCED: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  return 1
end
return 0
";

/// Compare-and-set rounds before a write gives up with [`StoreError::Conflict`]
/// (each round, one of the racing writers wins).
const MAX_ATTEMPTS: usize = 16;

/// What a [`Writer::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The revision now stored.
    pub revision: u64,
    /// The stream entry that announced this revision.
    pub announced: StreamId,
    /// Whether the document was written (false: it was already up to date).
    pub written: bool,
}

/// What a [`Writer::ensure_epoch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochCheck {
    /// The marker is there: the store is as the writer left it.
    Present(String),
    /// The marker was missing; every known tenant was written again and a
    /// new marker set.
    Republished {
        /// The new marker.
        epoch: String,
        /// Tenants written.
        tenants: usize,
    },
}

/// What [`Writer::sync_all`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents written.
    pub written: usize,
    /// Documents already up to date.
    pub unchanged: usize,
    /// Tenants removed because they are no longer wanted.
    pub deleted: usize,
}

#[derive(Debug, Default)]
struct Known {
    /// The last config put for each live tenant (what a republish writes).
    desired: HashMap<String, Arc<TenantConfig>>,
    /// Highest revision this writer assigned per tenant, so revisions keep
    /// rising even when Redis loses the documents.
    floors: HashMap<String, u64>,
}

/// Writes tenant configs. Cheap to clone; clones share what they know.
#[derive(Clone, Debug)]
pub struct Writer {
    client: Client,
    #[allow(
        clippy::disallowed_types,
        reason = "control path: held for map updates only, never across an await"
    )]
    known: Arc<std::sync::Mutex<Known>>,
}

impl Writer {
    /// A writer over a connected (or connecting) client.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Arc::default(),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn with_known<R>(&self, f: impl FnOnce(&mut Known) -> R) -> R {
        let mut guard = match self.known.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Writes `config` (its `revision` is ignored: the writer assigns the next
    /// one when the content changed) and announces it. Writing a config equal
    /// to the stored one writes nothing.
    pub async fn put(&self, config: &TenantConfig) -> Result<PutOutcome, StoreError> {
        let tenant = config.tenant.as_str();
        if !keys::is_valid_id(tenant) {
            return Err(StoreError::Corrupt {
                key: tenant.to_owned(),
                reason: "not a valid tenant id".into(),
            });
        }
        let key = keys::config(tenant);
        for _ in 0..MAX_ATTEMPTS {
            let stored: Vec<Option<String>> = self
                .client
                .hmget(
                    &key,
                    vec![
                        config_field::REVISION,
                        config_field::DOC,
                        config_field::PUBLISHED,
                    ],
                )
                .await?;
            let [stored_rev, stored_doc, announced] = <[Option<String>; 3]>::try_from(stored)
                .map_err(|_| StoreError::Corrupt {
                    key: key.clone(),
                    reason: "HMGET returned the wrong number of fields".into(),
                })?;
            let stored_rev_text = stored_rev.unwrap_or_else(|| "0".to_owned());
            let stored_rev: u64 = stored_rev_text.parse().map_err(|_| StoreError::Corrupt {
                key: key.clone(),
                reason: format!("revision `{stored_rev_text}` is not a number"),
            })?;
            let mut candidate = config.clone();
            candidate.revision = stored_rev;
            if stored_doc.as_deref() == Some(candidate.to_json()?.as_str()) {
                self.with_known(|k| {
                    k.desired.insert(tenant.to_owned(), Arc::new(candidate));
                    let floor = k.floors.entry(tenant.to_owned()).or_default();
                    *floor = (*floor).max(stored_rev);
                });
                let announced = match announced.filter(|id| !id.is_empty()) {
                    Some(id) => id.parse().map_err(|_| StoreError::Corrupt {
                        key: key.clone(),
                        reason: format!("announcement id `{id}` is not a stream id"),
                    })?,
                    None => self.announce_put(&key, tenant, stored_rev).await?,
                };
                return Ok(PutOutcome {
                    revision: stored_rev,
                    announced,
                    written: false,
                });
            }
            let floor = self.with_known(|k| k.floors.get(tenant).copied().unwrap_or(0));
            let revision = stored_rev.max(floor) + 1;
            candidate.revision = revision;
            let doc = candidate.to_json()?;
            let swapped: i64 = self
                .client
                .eval(
                    COMPARE_AND_SET,
                    vec![key.as_str()],
                    vec![
                        config_field::REVISION.to_owned(),
                        stored_rev_text,
                        config_field::SCHEMA.to_owned(),
                        candidate.schema_version.to_string(),
                        config_field::REVISION.to_owned(),
                        revision.to_string(),
                        config_field::DOC.to_owned(),
                        doc,
                        config_field::PUBLISHED.to_owned(),
                    ],
                )
                .await?;
            if swapped == 0 {
                continue;
            }
            self.with_known(|k| {
                k.floors.insert(tenant.to_owned(), revision);
                k.desired.insert(tenant.to_owned(), Arc::new(candidate));
            });
            let announced = self.announce_put(&key, tenant, revision).await?;
            return Ok(PutOutcome {
                revision,
                announced,
                written: true,
            });
        }
        Err(StoreError::Conflict(tenant.to_owned()))
    }

    async fn announce_put(
        &self,
        key: &str,
        tenant: &str,
        revision: u64,
    ) -> Result<StreamId, StoreError> {
        let id = self.announce(tenant, revision, ChangeOp::Upsert).await?;
        let _: i64 = self
            .client
            .eval(
                MARK_ANNOUNCED,
                vec![key],
                vec![
                    config_field::REVISION.to_owned(),
                    revision.to_string(),
                    config_field::PUBLISHED.to_owned(),
                    id.to_string(),
                ],
            )
            .await?;
        Ok(id)
    }

    async fn announce(
        &self,
        tenant: &str,
        revision: u64,
        op: ChangeOp,
    ) -> Result<StreamId, StoreError> {
        let entry = ChangeEntry {
            tenant: tenant.to_owned(),
            revision,
            op,
        };
        let mut args = vec![
            CONFIG_CHANGES_MAXLEN.to_string(),
            op.as_str().to_owned(),
            tenant.to_owned(),
            CHANGE_SEQ_FIELD.to_owned(),
        ];
        for (field, value) in entry.to_fields() {
            args.push(field.to_owned());
            args.push(value);
        }
        let id: String = self
            .client
            .eval(
                ANNOUNCE,
                vec![CONFIG_INDEX, CONFIG_CHANGES_STREAM, CONFIG_SEQ],
                args,
            )
            .await?;
        id.parse().map_err(|_| StoreError::Corrupt {
            key: CONFIG_CHANGES_STREAM.to_owned(),
            reason: format!("XADD returned `{id}`"),
        })
    }

    /// Removes a tenant's routing and announces it. Returns the announcing
    /// entry, or `None` when there was nothing to remove.
    pub async fn delete(&self, tenant: &str) -> Result<Option<StreamId>, StoreError> {
        let key = keys::config(tenant);
        let stored_rev: Option<u64> = self.client.hget(&key, config_field::REVISION).await?;
        let indexed: bool = self.client.sismember(CONFIG_INDEX, tenant).await?;
        let floor = self.with_known(|k| {
            k.desired.remove(tenant);
            k.floors.get(tenant).copied().unwrap_or(0)
        });
        let mut announced = None;
        if indexed {
            let revision = stored_rev.unwrap_or(0).max(floor) + 1;
            self.with_known(|k| k.floors.insert(tenant.to_owned(), revision));
            announced = Some(self.announce(tenant, revision, ChangeOp::Delete).await?);
        }
        if stored_rev.is_some() {
            let _: i64 = self.client.del(&key).await?;
        }
        Ok(announced)
    }

    /// The epoch marker, if set.
    pub async fn epoch(&self) -> Result<Option<String>, StoreError> {
        Ok(self.client.get(CONFIG_EPOCH).await?)
    }

    /// Checks the epoch marker. When it is missing (Redis restarted empty,
    /// or was never filled) every tenant this writer knows is written again,
    /// then a new marker is set, so proxies only ever see a complete store
    /// behind a marker.
    pub async fn ensure_epoch(&self) -> Result<EpochCheck, StoreError> {
        if let Some(epoch) = self.epoch().await? {
            return Ok(EpochCheck::Present(epoch));
        }
        let mut desired: Vec<Arc<TenantConfig>> =
            self.with_known(|k| k.desired.values().cloned().collect());
        desired.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        for config in &desired {
            self.put(config).await?;
        }
        let epoch = new_epoch();
        let set: Option<String> = self
            .client
            .set(
                CONFIG_EPOCH,
                epoch.as_str(),
                None::<Expiration>,
                Some(SetOptions::NX),
                false,
            )
            .await?;
        match set {
            // Another writer set it first: theirs stands.
            None => Ok(EpochCheck::Present(self.epoch().await?.unwrap_or(epoch))),
            Some(_) => Ok(EpochCheck::Republished {
                epoch,
                tenants: desired.len(),
            }),
        }
    }

    /// Makes the store hold exactly `configs`: writes each (unchanged ones
    /// write nothing), removes indexed tenants not among them, and sets the
    /// epoch marker if it is missing.
    pub async fn sync_all(
        &self,
        configs: impl IntoIterator<Item = &TenantConfig>,
    ) -> Result<SyncReport, StoreError> {
        let mut report = SyncReport::default();
        let mut wanted = BTreeSet::new();
        for config in configs {
            wanted.insert(config.tenant.clone());
            if self.put(config).await?.written {
                report.written += 1;
            } else {
                report.unchanged += 1;
            }
        }
        let indexed: Vec<String> = self.client.smembers(CONFIG_INDEX).await?;
        for tenant in indexed.iter().filter(|t| !wanted.contains(*t)) {
            self.delete(tenant).await?;
            report.deleted += 1;
        }
        self.ensure_epoch().await?;
        Ok(report)
    }

    /// Checks the epoch marker every `every` and republishes when it is
    /// gone; runs until the task is dropped.
    pub async fn guard_epoch(self, every: Duration) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.ensure_epoch().await {
                Ok(EpochCheck::Present(_)) => {}
                Ok(EpochCheck::Republished { epoch, tenants }) => {
                    info!(
                        epoch,
                        tenants, "Config store had no epoch marker; republished every tenant"
                    );
                }
                Err(err) => warn!(error = %err, "Could not check the config store's epoch marker"),
            }
        }
    }
}

/// A fresh epoch marker: the time and a per-process random part.
fn new_epoch() -> String {
    use std::hash::BuildHasher as _;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let random = std::collections::hash_map::RandomState::new().hash_one(now);
    format!("{}-{random:016x}", now.as_millis())
}
