//! Cluster-wide rate limits: a GCRA bucket per tenant (or per tenant and
//! client key) in Redis, handed out to proxies in small leases so a proxy
//! asks Redis once per lease, not once per request.
//!
//! A bucket allows `burst` requests at once and refills one every
//! `interval` (60 s / requests per minute). Its state is one number, the
//! theoretical arrival time (TAT, µs, Redis clock), under
//! `vf:rl:{tenant}:…`. `lease` takes up to `want` tokens; `release` gives
//! unused ones back. Both are one single-key script, so they work unchanged
//! on a Cluster; the time is Redis's own (`TIME`), so proxy clocks do not
//! matter.

use fred::prelude::{Client, LuaInterface};

use crate::connect::StoreError;

/// Takes up to ARGV[3] tokens from the bucket (interval ARGV[1] µs,
/// capacity ARGV[2]). Returns {granted, remaining, retry_after_us, full_in_us}.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = math.floor((now + capacity * interval - tat) / interval)
if room < 0 then room = 0 end
local granted = math.min(want, room)
if granted > 0 then
  tat = tat + granted * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local retry = 0
if granted == 0 then
  retry = tat + interval - (now + capacity * interval)
end
return {tostring(granted), tostring(room - granted), string.format('%.0f', retry), string.format('%.0f', tat - now)}
";

/// Gives ARGV[2] unused tokens back (interval ARGV[1] µs).
const RELEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
tat = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return 1
";

/// What a lease got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Tokens granted (0: over the limit).
    pub granted: u64,
    /// Tokens still available in the bucket after the grant.
    pub remaining: u64,
    /// With nothing granted: microseconds until one token is available.
    pub retry_after_us: u64,
    /// Microseconds until the bucket is full again.
    pub full_in_us: u64,
}

/// Takes up to `want` tokens from the bucket at `key`.
pub async fn lease(
    client: &Client,
    key: &str,
    interval_us: u64,
    capacity: u64,
    want: u64,
) -> Result<Lease, StoreError> {
    let reply: Vec<String> = client
        .eval(
            LEASE,
            vec![key],
            vec![
                interval_us.to_string(),
                capacity.to_string(),
                want.to_string(),
            ],
        )
        .await?;
    let number = |i: usize| -> Result<u64, StoreError> {
        reply
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v.max(0.0) as u64)
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_owned(),
                reason: format!("rate limit script returned {reply:?}"),
            })
    };
    Ok(Lease {
        granted: number(0)?,
        remaining: number(1)?,
        retry_after_us: number(2)?,
        full_in_us: number(3)?,
    })
}

/// Gives `unused` tokens back to the bucket at `key`.
pub async fn release(
    client: &Client,
    key: &str,
    interval_us: u64,
    unused: u64,
) -> Result<(), StoreError> {
    let _: i64 = client
        .eval(
            RELEASE,
            vec![key],
            vec![interval_us.to_string(), unused.to_string()],
        )
        .await?;
    Ok(())
}
