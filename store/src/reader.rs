//! The proxy's side: load every tenant, then follow the change stream.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fred::prelude::{
    Client, ClientLike, HashesInterface, KeysInterface, LuaInterface, StreamsInterface, Value,
};
use veloflux_crds::TenantConfig;
use veloflux_crds::config::SCHEMA_VERSION;
use veloflux_crds::keys::{
    self, CHANGE_SEQ_FIELD, CONFIG_CHANGES_STREAM, CONFIG_EPOCH, CONFIG_INDEX, ChangeEntry,
    ChangeEntryError, config_field,
};

use crate::connect::{RedisOptions, StoreError, wait_connected};
use crate::stream_id::StreamId;

/// Reads the epoch, the stream's last entry (id and change number) and the
/// index at one moment: `[epoch, id, seq, member…]`, empty strings for
/// what is absent.
const SNAPSHOT: &str = r"
local epoch = redis.call('GET', KEYS[1]) or ''
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id, seq = '', ''
if #last > 0 then
  id = last[1][1]
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == ARGV[1] then seq = fields[i + 1] end
  end
end
local out = {epoch, id, seq}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  out[#out + 1] = member
end
return out
";

/// A stream entry as Redis returns it: id and fields.
type RawEntry = (String, HashMap<String, String>);

/// Tenants fetched per pipelined round trip.
const FETCH_CHUNK: usize = 512;

/// One tenant's stored document, as this build can use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// A usable config.
    Config(Box<TenantConfig>),
    /// A document this build must not serve; the tenant keeps its last good config.
    Refused {
        /// Revision of the refused document.
        revision: u64,
        /// Why.
        reason: String,
    },
    /// No document (deleted since it was announced).
    Missing,
}

/// Everything in the store at one moment.
#[derive(Debug, Clone)]
pub struct FullSync {
    /// The epoch marker, if set.
    pub epoch: Option<String>,
    /// The stream's last entry before the documents were read: following
    /// from here replays anything written during the read.
    pub cursor: Cursor,
    /// Every indexed tenant's document.
    pub tenants: Vec<(String, Fetched)>,
}

/// A position in the change stream: the last entry read and its number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Id of the last entry read (`0-0`: none).
    pub id: StreamId,
    /// Its change number (0: none, or unknown).
    pub seq: u64,
}

/// One announced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its stream entry.
    pub id: StreamId,
    /// Its change number, if the entry carries a valid one.
    pub seq: Option<u64>,
    /// The change, or why the entry is unreadable.
    pub entry: Result<ChangeEntry, ChangeEntryError>,
}

/// One `XREAD` worth of changes.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Entries in stream order.
    pub entries: Vec<Change>,
    /// A change number was skipped (entries trimmed unread, or the store
    /// restarted and numbers began again): only a full sync can catch up.
    pub gap: bool,
}

impl Changes {
    /// Where reading continues after these entries.
    pub fn cursor(&self, from: Cursor) -> Cursor {
        self.entries.last().map_or(from, |last| Cursor {
            id: last.id,
            seq: last.seq.unwrap_or(0),
        })
    }
}

/// Reads the store. Holds two connections: one for commands, one for the
/// blocking stream read.
#[derive(Clone, Debug)]
pub struct Reader {
    client: Client,
    stream: Client,
    block: Duration,
}

impl Reader {
    /// A reader for `options`; waits at most `block` in each stream read.
    pub fn new(options: &RedisOptions, block: Duration) -> Result<Self, StoreError> {
        Ok(Self {
            client: options.client()?,
            stream: options.blocking_client(block)?,
            block,
        })
    }

    /// Starts both connections (call once) and waits up to `within` for
    /// them. On timeout they keep reconnecting in the background.
    pub async fn connect(
        &self,
        options: &RedisOptions,
        within: Duration,
    ) -> Result<(), StoreError> {
        for client in [&self.client, &self.stream] {
            let _task = client.connect();
        }
        wait_connected(&self.client, options, within).await?;
        wait_connected(&self.stream, options, within).await
    }

    /// Closes both connections.
    pub async fn quit(&self) {
        for client in [&self.client, &self.stream] {
            let _ = client.quit().await;
        }
    }

    /// The command client (for heartbeats).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Both clients (to start and stop them).
    pub fn clients(&self) -> [&Client; 2] {
        [&self.client, &self.stream]
    }

    /// The epoch marker, if set.
    pub async fn epoch(&self) -> Result<Option<String>, StoreError> {
        Ok(self.client.get(CONFIG_EPOCH).await?)
    }

    /// The stream's last entry (`0-0` when it is empty or absent).
    pub async fn tail(&self) -> Result<Cursor, StoreError> {
        let last: Vec<RawEntry> = self
            .client
            .xrevrange(CONFIG_CHANGES_STREAM, "+", "-", Some(1))
            .await?;
        match last.first() {
            None => Ok(Cursor::default()),
            Some((id, fields)) => Ok(Cursor {
                id: parse_id(id)?,
                seq: seq_of(fields).unwrap_or(0),
            }),
        }
    }

    /// The epoch, the stream tail, and every indexed tenant's document.
    ///
    /// The epoch, tail and index are read in one script (one slot), so they
    /// describe one moment; the epoch is read again after the documents,
    /// and a store that changed epoch meanwhile is reported as an error (the
    /// caller retries) rather than returned half old, half new.
    pub async fn full_sync(&self) -> Result<FullSync, StoreError> {
        let reply: Vec<String> = self
            .client
            .eval(
                SNAPSHOT,
                vec![CONFIG_EPOCH, CONFIG_CHANGES_STREAM, CONFIG_INDEX],
                vec![CHANGE_SEQ_FIELD],
            )
            .await?;
        let mut reply = reply.into_iter();
        let epoch = reply.next().filter(|e| !e.is_empty());
        let id = reply.next().unwrap_or_default();
        let seq = reply.next().unwrap_or_default();
        let cursor = if id.is_empty() {
            Cursor::default()
        } else {
            Cursor {
                id: parse_id(&id)?,
                seq: seq.parse().unwrap_or(0),
            }
        };
        let mut ids: Vec<String> = reply.collect();
        ids.sort_unstable();
        let tenants = self.fetch(&ids).await?;
        let after = self.epoch().await?;
        if after != epoch {
            return Err(StoreError::Corrupt {
                key: CONFIG_EPOCH.to_owned(),
                reason: "the epoch changed during a full load; loading again".into(),
            });
        }
        Ok(FullSync {
            epoch,
            cursor,
            tenants,
        })
    }

    /// Fetches the documents of `tenants`, pipelined.
    pub async fn fetch(&self, tenants: &[String]) -> Result<Vec<(String, Fetched)>, StoreError> {
        let mut out = Vec::with_capacity(tenants.len());
        for chunk in tenants.chunks(FETCH_CHUNK) {
            let pipeline = self.client.pipeline();
            for tenant in chunk {
                let () = pipeline
                    .hmget(
                        keys::config(tenant),
                        vec![
                            config_field::SCHEMA,
                            config_field::REVISION,
                            config_field::DOC,
                        ],
                    )
                    .await?;
            }
            let replies: Vec<Vec<Option<String>>> = pipeline.all().await?;
            for (tenant, reply) in chunk.iter().zip(replies) {
                out.push((tenant.clone(), decode(tenant, reply)));
            }
        }
        Ok(out)
    }

    /// Waits up to the block time for entries after `after` (at most
    /// `max`), and tells whether any were missed.
    pub async fn changes(&self, after: Cursor, max: u64) -> Result<Changes, StoreError> {
        let block = u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = self
            .stream
            .xread(
                Some(max),
                Some(block),
                CONFIG_CHANGES_STREAM,
                after.id.to_string(),
            )
            .await?;
        let reply: HashMap<String, Vec<RawEntry>> = if reply.is_null() {
            HashMap::new()
        } else {
            reply.into_xread_response()?
        };
        let mut changes = Changes::default();
        let mut previous = (after.seq != 0).then_some(after.seq);
        for entries in reply.into_values() {
            for (id, fields) in entries {
                let seq = seq_of(&fields);
                changes.gap |= match (previous, seq) {
                    (Some(p), Some(s)) => s != p + 1,
                    (None, Some(_)) => false,
                    (_, None) => true,
                };
                previous = seq;
                let fields: BTreeMap<String, String> = fields.into_iter().collect();
                changes.entries.push(Change {
                    id: parse_id(&id)?,
                    seq,
                    entry: ChangeEntry::from_fields(&fields),
                });
            }
        }
        Ok(changes)
    }
}

fn seq_of(fields: &HashMap<String, String>) -> Option<u64> {
    fields.get(CHANGE_SEQ_FIELD).and_then(|s| s.parse().ok())
}

fn parse_id(id: &str) -> Result<StreamId, StoreError> {
    id.parse().map_err(|_| StoreError::Corrupt {
        key: CONFIG_CHANGES_STREAM.to_owned(),
        reason: format!("`{id}` is not a stream id"),
    })
}

/// Turns `[schema, rev, doc]` into what this build can use.
fn decode(tenant: &str, reply: Vec<Option<String>>) -> Fetched {
    let mut fields = reply.into_iter();
    let (schema, revision, doc) = (
        fields.next().flatten(),
        fields.next().flatten(),
        fields.next().flatten(),
    );
    let Some(doc) = doc else {
        return Fetched::Missing;
    };
    let revision = revision.and_then(|r| r.parse().ok()).unwrap_or(0);
    let refused = |reason: String| Fetched::Refused { revision, reason };
    match schema.as_deref().map(str::parse::<u32>) {
        Some(Ok(schema)) if schema > SCHEMA_VERSION => {
            return refused(format!(
                "schema version {schema} is newer than the supported {SCHEMA_VERSION}"
            ));
        }
        Some(Ok(_)) => {}
        _ => return refused("the document has no valid schema version".into()),
    }
    match TenantConfig::from_json(&doc) {
        Ok(config) if config.tenant != tenant => {
            refused(format!("the document names tenant `{}`", config.tenant))
        }
        Ok(config) if config.revision != revision => refused(format!(
            "the document's revision {} differs from the stored {revision}",
            config.revision
        )),
        Ok(config) => Fetched::Config(Box::new(config)),
        Err(err) => refused(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tenant: &str, revision: u64) -> TenantConfig {
        let backend = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
        let mut config = crate::testing::tenant_config(tenant, &["a.test"], backend).unwrap();
        config.revision = revision;
        config
    }

    #[test]
    fn documents_this_build_cannot_serve_are_refused_with_a_reason() {
        let doc = sample("acme", 3).to_json().unwrap();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            decode("acme", vec![some("1"), some("3"), Some(doc.clone())]),
            Fetched::Config(Box::new(sample("acme", 3)))
        );
        assert_eq!(decode("acme", vec![None, None, None]), Fetched::Missing);
        let reason = |f: Fetched| match f {
            Fetched::Refused { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(decode("acme", vec![some("2"), some("3"), some("{}")])).contains("newer"));
        assert!(
            reason(decode(
                "other",
                vec![some("1"), some("3"), Some(doc.clone())]
            ))
            .contains("names tenant")
        );
        assert!(reason(decode("acme", vec![some("1"), some("4"), Some(doc)])).contains("revision"));
        assert!(
            reason(decode("acme", vec![some("1"), some("1"), some("{")])).contains("malformed")
        );
        assert!(reason(decode("acme", vec![None, some("1"), some("{}")])).contains("schema"));
    }
}
