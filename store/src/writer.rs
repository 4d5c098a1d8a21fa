//! The operator's side: writing tenant configs, announcing each change, and
//! republishing everything when Redis comes back empty.
//!
//! One tenant's write is three single-slot steps: a compare-and-set of the
//! document on the tenant's slot (so two writers cannot interleave), the
//! announcement (index + stream entry) on the fleet slot, and a mark on the
//! document recording the announcing entry's id. A writer that dies between
//! the first two leaves the mark empty; the next write of the same tenant
//! sees it and announces again, so no change is ever silently unannounced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{
    Client, Expiration, HashesInterface, KeysInterface, LuaInterface, SetOptions, SetsInterface,
};
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
/// returns the entry id and the change number.
const ANNOUNCE: &str = r"
if ARGV[2] == 'delete' then
  redis.call('SREM', KEYS[1], ARGV[3])
else
  redis.call('SADD', KEYS[1], ARGV[3])
end
local seq = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', ARGV[4], seq, unpack(ARGV, 5))
return {id, tostring(seq)}
";

/// Removes the document, leaving its revision (raised) as a tombstone, if
/// the revision is still the one read.
const TOMBSTONE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if current ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[4], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
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
    /// The marker is missing but the writer does not know every tenant yet
    /// (no `sync_all` finished): nothing was set.
    Incomplete,
    /// The marker was missing (or the store lost writes); every known
    /// tenant was written and announced again and a new marker set.
    Republished {
        /// The new marker.
        epoch: String,
        /// Tenants written.
        tenants: usize,
    },
}

/// What [`Writer::sync_all`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents written.
    pub written: usize,
    /// Documents already up to date.
    pub unchanged: usize,
    /// Tenants removed because they are no longer wanted.
    pub deleted: usize,
    /// Every wanted tenant's revision and announcing entry.
    pub outcomes: BTreeMap<String, PutOutcome>,
}

#[derive(Debug, Default)]
struct Known {
    /// The last config put for each live tenant (what a republish writes).
    desired: HashMap<String, Arc<TenantConfig>>,
    /// Highest revision this writer assigned per tenant, so revisions keep
    /// rising even when Redis loses the documents.
    floors: HashMap<String, u64>,
    /// `desired` holds every wanted tenant (a `sync_all` finished): only
    /// then may a republish set the epoch marker.
    complete: bool,
    /// Highest change number this writer announced.
    last_seq: u64,
    /// An announcement got a change number at or below `last_seq`: the
    /// store lost writes (a failover to a lagging replica). The next epoch
    /// check republishes everything behind a new marker.
    rolled_back: bool,
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
        self.put_inner(config, false).await
    }

    /// `put`, announcing even an unchanged, already announced document
    /// (a republish: the index or stream may be what was lost).
    async fn put_inner(
        &self,
        config: &TenantConfig,
        always_announce: bool,
    ) -> Result<PutOutcome, StoreError> {
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
                self.remember(tenant, stored_rev, candidate);
                let announced = match announced.filter(|id| !id.is_empty() && !always_announce) {
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
            self.remember(tenant, revision, candidate);
            let announced = self.announce_put(&key, tenant, revision).await?;
            return Ok(PutOutcome {
                revision,
                announced,
                written: true,
            });
        }
        Err(StoreError::Conflict(tenant.to_owned()))
    }

    /// Records `config` as wanted at `revision`, unless a concurrent put
    /// already recorded a later one.
    fn remember(&self, tenant: &str, revision: u64, config: TenantConfig) {
        self.with_known(|k| {
            let floor = k.floors.entry(tenant.to_owned()).or_default();
            if revision >= *floor {
                *floor = revision;
                k.desired.insert(tenant.to_owned(), Arc::new(config));
            }
        });
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
        let reply: Vec<String> = self
            .client
            .eval(
                ANNOUNCE,
                vec![CONFIG_INDEX, CONFIG_CHANGES_STREAM, CONFIG_SEQ],
                args,
            )
            .await?;
        let corrupt = || StoreError::Corrupt {
            key: CONFIG_CHANGES_STREAM.to_owned(),
            reason: format!("announcement returned {reply:?}"),
        };
        let (Some(id), Some(seq)) = (reply.first(), reply.get(1)) else {
            return Err(corrupt());
        };
        let id: StreamId = id.parse().map_err(|_| corrupt())?;
        let seq: u64 = seq.parse().map_err(|_| corrupt())?;
        let rolled_back = self.with_known(|k| {
            let back = seq <= k.last_seq;
            k.last_seq = k.last_seq.max(seq);
            k.rolled_back |= back;
            back
        });
        if rolled_back {
            warn!(
                seq,
                "Config store's change number went backwards (failover to a lagging replica?); everything is republished at the next epoch check"
            );
        }
        Ok(id)
    }

    /// Removes a tenant's routing and announces it. Returns the announcing
    /// entry, or `None` when there was nothing to remove.
    ///
    /// The document goes; its revision stays behind as a tombstone, so a
    /// tenant created again later continues from a higher revision even if
    /// this writer restarted in between.
    pub async fn delete(&self, tenant: &str) -> Result<Option<StreamId>, StoreError> {
        let key = keys::config(tenant);
        let indexed: bool = self.client.sismember(CONFIG_INDEX, tenant).await?;
        let floor = self.with_known(|k| {
            k.desired.remove(tenant);
            k.floors.get(tenant).copied().unwrap_or(0)
        });
        for _ in 0..MAX_ATTEMPTS {
            let stored: Vec<Option<String>> = self
                .client
                .hmget(&key, vec![config_field::REVISION, config_field::DOC])
                .await?;
            let stored_rev_text = stored.first().cloned().flatten();
            let has_doc = stored.get(1).is_some_and(Option::is_some);
            if !has_doc && !indexed {
                return Ok(None);
            }
            let stored_rev: u64 = stored_rev_text
                .as_deref()
                .map_or(Ok(0), str::parse)
                .map_err(|_| StoreError::Corrupt {
                    key: key.clone(),
                    reason: "revision is not a number".into(),
                })?;
            let revision = stored_rev.max(floor) + 1;
            let swapped: i64 = self
                .client
                .eval(
                    TOMBSTONE,
                    vec![key.as_str()],
                    vec![
                        config_field::REVISION.to_owned(),
                        stored_rev_text.unwrap_or_else(|| "0".to_owned()),
                        revision.to_string(),
                        config_field::DOC.to_owned(),
                        config_field::SCHEMA.to_owned(),
                        config_field::PUBLISHED.to_owned(),
                    ],
                )
                .await?;
            if swapped == 0 {
                continue;
            }
            self.with_known(|k| {
                let floor = k.floors.entry(tenant.to_owned()).or_default();
                *floor = (*floor).max(revision);
            });
            return Ok(Some(
                self.announce(tenant, revision, ChangeOp::Delete).await?,
            ));
        }
        Err(StoreError::Conflict(tenant.to_owned()))
    }

    /// The config the store holds for `tenant` (what proxies serve), if any.
    pub async fn stored(&self, tenant: &str) -> Result<Option<TenantConfig>, StoreError> {
        let doc: Option<String> = self
            .client
            .hget(keys::config(tenant), config_field::DOC)
            .await?;
        Ok(doc.and_then(|doc| TenantConfig::from_json(&doc).ok()))
    }

    /// The epoch marker, if set.
    pub async fn epoch(&self) -> Result<Option<String>, StoreError> {
        Ok(self.client.get(CONFIG_EPOCH).await?)
    }

    /// Checks the epoch marker. When it is missing (Redis restarted empty,
    /// or was never filled), or the store lost writes (its change number
    /// went backwards), every tenant this writer knows is written and
    /// announced again, then a new marker is set, so proxies only ever see
    /// a complete store behind a marker. Until a [`Writer::sync_all`] has
    /// told the writer every wanted tenant, a missing marker is left
    /// missing ([`EpochCheck::Incomplete`]).
    pub async fn ensure_epoch(&self) -> Result<EpochCheck, StoreError> {
        let (complete, rolled_back) = self.with_known(|k| (k.complete, k.rolled_back));
        let current = self.epoch().await?;
        if let Some(epoch) = &current
            && !rolled_back
        {
            return Ok(EpochCheck::Present(epoch.clone()));
        }
        if !complete {
            return Ok(EpochCheck::Incomplete);
        }
        let tenants = self.republish().await?;
        let epoch = new_epoch();
        let options = if rolled_back {
            None
        } else {
            Some(SetOptions::NX)
        };
        let set: Option<String> = self
            .client
            .set(
                CONFIG_EPOCH,
                epoch.as_str(),
                None::<Expiration>,
                options,
                false,
            )
            .await?;
        self.with_known(|k| k.rolled_back = false);
        match set {
            // Another writer set it first: theirs stands.
            None => Ok(EpochCheck::Present(self.epoch().await?.unwrap_or(epoch))),
            Some(_) => Ok(EpochCheck::Republished { epoch, tenants }),
        }
    }

    /// Writes and announces every wanted tenant again; returns how many.
    async fn republish(&self) -> Result<usize, StoreError> {
        let mut desired: Vec<Arc<TenantConfig>> =
            self.with_known(|k| k.desired.values().cloned().collect());
        desired.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let mut count = 0;
        for config in &desired {
            // A tenant deleted meanwhile stays deleted.
            if self.with_known(|k| k.desired.contains_key(&config.tenant)) {
                self.put_inner(config, true).await?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Checks that every wanted tenant's document and index entry are in
    /// the store (a Cluster shard can restart empty on its own) and writes
    /// back what is missing. Returns the tenants repaired.
    pub async fn repair(&self) -> Result<usize, StoreError> {
        let mut desired: Vec<Arc<TenantConfig>> =
            self.with_known(|k| k.desired.values().cloned().collect());
        desired.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let indexed: BTreeSet<String> = self
            .client
            .smembers::<Vec<String>, _>(CONFIG_INDEX)
            .await?
            .into_iter()
            .collect();
        let mut repaired = 0;
        for chunk in desired.chunks(512) {
            let pipeline = self.client.pipeline();
            for config in chunk {
                let () = pipeline
                    .hexists(keys::config(&config.tenant), config_field::DOC)
                    .await?;
            }
            let present: Vec<bool> = pipeline.all().await?;
            for (config, present) in chunk.iter().zip(present) {
                if !present || !indexed.contains(&config.tenant) {
                    self.put_inner(config, true).await?;
                    repaired += 1;
                }
            }
        }
        Ok(repaired)
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
            let outcome = self.put(config).await?;
            if outcome.written {
                report.written += 1;
            } else {
                report.unchanged += 1;
            }
            report.outcomes.insert(config.tenant.clone(), outcome);
        }
        let indexed: Vec<String> = self.client.smembers(CONFIG_INDEX).await?;
        for tenant in indexed.iter().filter(|t| !wanted.contains(*t)) {
            self.delete(tenant).await?;
            report.deleted += 1;
        }
        self.with_known(|k| k.complete = true);
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
                Ok(EpochCheck::Present(_)) => match self.repair().await {
                    Ok(0) => {}
                    Ok(repaired) => {
                        warn!(
                            repaired,
                            "Tenant configs missing from the config store were written back"
                        );
                    }
                    Err(err) => {
                        warn!(error = %err, "Could not check the config store for lost documents");
                    }
                },
                Ok(EpochCheck::Incomplete) => {}
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
