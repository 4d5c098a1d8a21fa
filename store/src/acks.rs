//! Acknowledgements: each proxy publishes, with a short TTL, what it serves,
//! so the operator can tell when a change is live on the whole fleet and
//! which proxies lag.
//!
//! The record is a compact watermark rather than a revision per tenant: the
//! stream id up to which every announced change is applied, the epoch it
//! synced with, and the few tenants whose latest document it refused (and
//! so serves an older revision of). A change announced by entry `E` for
//! tenant `T` at revision `R` is live on proxy `P` when `P`'s epoch is the
//! store's, `P.applied >= E`, and `P` did not refuse `T` at `R` or later.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{Client, KeysInterface, LuaInterface, SortedSetsInterface};
use serde::{Deserialize, Serialize};
use veloflux_crds::keys::{self, CONFIG_EPOCH, PROXIES};

use crate::connect::StoreError;
use crate::stream_id::StreamId;

/// Writes the record with its TTL, scores the proxy in the fleet set, and
/// forgets proxies silent for an hour.
const PUBLISH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
return 1
";

/// Deletes the record and the fleet-set entry.
const WITHDRAW: &str = r"
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
";

/// One proxy's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyAck {
    /// Proxy id (pod name or host name).
    pub id: String,
    /// Proxy build version.
    pub version: String,
    /// The epoch marker of the store it synced with.
    pub epoch: Option<String>,
    /// Every change announced up to this stream entry is applied.
    #[serde(with = "as_text")]
    pub applied: StreamId,
    /// Tenants served.
    pub tenants: u64,
    /// Tenants whose latest document it refused, with that document's
    /// revision; they keep serving an older one.
    pub refused: BTreeMap<String, u64>,
    /// When the record was written (Unix ms, the proxy's clock).
    pub at_ms: u64,
}

mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::stream_id::StreamId;

    pub fn serialize<S: Serializer>(id: &StreamId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StreamId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Publishes `ack`; it expires after `ttl` unless published again.
pub async fn publish(client: &Client, ack: &ProxyAck, ttl: Duration) -> Result<(), StoreError> {
    if !keys::is_valid_proxy_id(&ack.id) {
        return Err(StoreError::Corrupt {
            key: PROXIES.to_owned(),
            reason: format!("`{}` is not a valid proxy id", ack.id),
        });
    }
    let now = now_ms();
    let _: i64 = client
        .eval(
            PUBLISH,
            vec![keys::proxy(&ack.id), PROXIES.to_owned()],
            vec![
                serde_json::to_string(ack)?,
                ttl.as_millis().max(1).to_string(),
                now.to_string(),
                ack.id.clone(),
                now.saturating_sub(3_600_000).to_string(),
            ],
        )
        .await?;
    Ok(())
}

/// Removes a stopping proxy's record at once, rather than at its TTL.
pub async fn withdraw(client: &Client, id: &str) -> Result<(), StoreError> {
    let _: i64 = client
        .eval(
            WITHDRAW,
            vec![keys::proxy(id), PROXIES.to_owned()],
            vec![id.to_owned()],
        )
        .await?;
    Ok(())
}

/// The live proxies and the store's epoch, read together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fleet {
    /// The store's epoch marker.
    pub epoch: Option<String>,
    /// Every proxy whose record has not expired, by id.
    pub proxies: Vec<ProxyAck>,
}

/// Where one change stands on the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollout {
    /// Proxies serving it.
    pub serving: Vec<String>,
    /// Proxies that have not applied it yet.
    pub lagging: Vec<String>,
    /// Proxies that refused it (they serve an older revision).
    pub refused: Vec<String>,
}

impl Rollout {
    /// Whether every live proxy serves it (and there is at least one).
    pub fn complete(&self) -> bool {
        !self.serving.is_empty() && self.lagging.is_empty() && self.refused.is_empty()
    }

    /// Live proxies counted.
    pub fn total(&self) -> usize {
        self.serving.len() + self.lagging.len() + self.refused.len()
    }
}

/// Reads every live proxy's record.
pub async fn read_fleet(client: &Client) -> Result<Fleet, StoreError> {
    let epoch: Option<String> = client.get(CONFIG_EPOCH).await?;
    let ids: Vec<String> = client
        .zrange(PROXIES, 0, -1, None, false, None, false)
        .await?;
    let mut proxies = Vec::with_capacity(ids.len());
    if !ids.is_empty() {
        let records: Vec<Option<String>> = client
            .mget(ids.iter().map(|id| keys::proxy(id)).collect::<Vec<_>>())
            .await?;
        for (id, record) in ids.iter().zip(records) {
            let Some(record) = record else { continue };
            let ack: ProxyAck = serde_json::from_str(&record).map_err(|e| StoreError::Corrupt {
                key: keys::proxy(id),
                reason: e.to_string(),
            })?;
            proxies.push(ack);
        }
    }
    Ok(Fleet { epoch, proxies })
}

impl Fleet {
    /// Where the change of `tenant` to `revision`, announced by `announced`, stands.
    pub fn rollout(&self, tenant: &str, revision: u64, announced: StreamId) -> Rollout {
        let mut rollout = Rollout::default();
        for proxy in &self.proxies {
            let list = if proxy.epoch.is_none()
                || proxy.epoch != self.epoch
                || proxy.applied < announced
            {
                &mut rollout.lagging
            } else if proxy.refused.get(tenant).is_some_and(|r| *r >= revision) {
                &mut rollout.refused
            } else {
                &mut rollout.serving
            };
            list.push(proxy.id.clone());
        }
        rollout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: &str, epoch: &str, applied: u64, refused: &[(&str, u64)]) -> ProxyAck {
        ProxyAck {
            id: id.into(),
            version: "0.1.0".into(),
            epoch: Some(epoch.into()),
            applied: StreamId {
                ms: applied,
                seq: 0,
            },
            tenants: 2,
            refused: refused.iter().map(|(t, r)| ((*t).to_owned(), *r)).collect(),
            at_ms: 0,
        }
    }

    #[test]
    fn a_change_is_live_only_where_applied_in_the_current_epoch_and_not_refused() {
        let fleet = Fleet {
            epoch: Some("e2".into()),
            proxies: vec![
                ack("a", "e2", 10, &[]),
                ack("b", "e2", 9, &[]),
                ack("c", "e1", 99, &[]),
                ack("d", "e2", 10, &[("acme", 7)]),
                ack("e", "e2", 10, &[("acme", 6)]),
            ],
        };
        let at = StreamId { ms: 10, seq: 0 };
        let rollout = fleet.rollout("acme", 7, at);
        assert_eq!(rollout.serving, ["a", "e"]);
        assert_eq!(rollout.lagging, ["b", "c"]);
        assert_eq!(rollout.refused, ["d"]);
        assert_eq!(rollout.total(), 5);
        assert!(!rollout.complete());
        assert_eq!(
            fleet
                .rollout("globex", 1, StreamId { ms: 9, seq: 0 })
                .serving,
            ["a", "b", "d", "e"]
        );
        assert!(!Fleet::default().rollout("acme", 1, at).complete());
    }

    #[test]
    fn records_round_trip_as_json_with_text_ids() {
        let record = ack("p-1", "e", 5, &[("acme", 3)]);
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains(r#""applied":"5-0""#), "{text}");
        assert_eq!(serde_json::from_str::<ProxyAck>(&text).unwrap(), record);
    }
}
