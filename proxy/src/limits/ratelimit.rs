//! Rate limits: the plan's tenant-wide limit and a route's tighter one,
//! enforced across the fleet through Redis without a round trip per
//! request.
//!
//! Each bucket (a limit, and a client key when the limit is per client) is a
//! GCRA of `burst` capacity refilling at `requestsPerMinute`. A proxy holds
//! a small lease of tokens taken from the shared bucket in Redis
//! (`veloflux_store::ratelimit`): requests spend leased tokens with one
//! atomic decrement; when the lease runs low another is fetched in the
//! background; unused tokens go back when the bucket is idle. A denied lease
//! marks the bucket "over" until a token is due, so a tenant over its limit
//! is answered locally without asking Redis again. Every bucket also runs a
//! local GCRA with the same numbers, which guards the proxy on its own.
//!
//! Redis calls on this path time out after `--ratelimit-timeout` (50 ms by
//! default). While Redis is unreachable, a plan in `failOpen` mode is
//! limited by each proxy's local bucket only; one in `failClosed` mode is
//! refused (429) until Redis answers again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fred::prelude::{Client, ClientLike};
use http::header::{AUTHORIZATION, HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use veloflux_crds::config::RateLimitConfig;
use veloflux_crds::plan::FailureMode;
use veloflux_crds::route::RateLimitKey;

use crate::admin::metrics::Metrics;

/// How long an unused lease is kept before its tokens go back.
const LEASE_IDLE: Duration = Duration::from_secs(1);
/// How long an idle per-client bucket is kept in memory.
const BUCKET_IDLE: Duration = Duration::from_secs(120);
/// Shards of a per-client limiter's bucket map.
const SHARDS: usize = 16;

/// The shared store for limits (the fleet's Redis).
#[derive(Debug)]
pub struct SharedLimits {
    client: Client,
    timeout: Duration,
    up: AtomicBool,
    /// Consecutive failed calls; the store counts as down after three.
    failures: std::sync::atomic::AtomicU32,
    calls: Counter,
    store_up: prometheus_client::metrics::gauge::Gauge,
}

impl SharedLimits {
    /// Limits shared through `client` (connected or connecting), each call
    /// bounded by `timeout`.
    pub fn new(client: Client, timeout: Duration, metrics: &Metrics) -> Self {
        metrics.ratelimit.store_up.set(1);
        Self {
            client,
            timeout,
            up: AtomicBool::new(true),
            failures: std::sync::atomic::AtomicU32::new(0),
            calls: metrics.ratelimit.redis_calls.clone(),
            store_up: metrics.ratelimit.store_up.clone(),
        }
    }

    fn set_up(&self, up: bool) {
        // One slow call is not an outage: three in a row are.
        if up {
            self.failures.store(0, Ordering::Release);
        } else if self.failures.fetch_add(1, Ordering::AcqRel) + 1 < 3 {
            return;
        }
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.store_up.set(i64::from(up));
            if up {
                info!("Rate-limit store reachable again; shared limits resume");
            } else {
                warn!("Rate-limit store unreachable; each plan's failure mode applies");
            }
        }
    }
}

/// Whether a request may go on, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed.
    pub allowed: bool,
    /// Bucket capacity (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests available now (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Seconds until the bucket is full (`RateLimit-Reset`).
    pub reset: u64,
    /// Seconds to wait before retrying, when refused (`Retry-After`).
    pub retry_after: u64,
    /// `limit` as a header value, prepared once per limiter.
    limit_value: HeaderValue,
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl Decision {
    /// A decision; `limit`'s header value is prepared here (a limiter
    /// prepares it once, when it is built).
    pub fn new(allowed: bool, limit: u64, remaining: u64, reset: u64, retry_after: u64) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            reset,
            retry_after,
            limit_value: constant(limit),
        }
    }

    /// Writes `RateLimit-Limit` / `-Remaining` / `-Reset`, and `Retry-After`
    /// on a refusal, into a response's headers.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, self.limit_value.clone());
        headers.insert(RATELIMIT_REMAINING, decimal(self.remaining));
        headers.insert(RATELIMIT_RESET, decimal(self.reset));
        if !self.allowed {
            headers.insert(RETRY_AFTER, decimal(self.retry_after));
        }
    }
}

/// Numbers below this come from a table of static header values.
const SMALL: usize = 1024;

/// `0..SMALL` as static header values: built once, from one string of their
/// digits made static for the life of the process.
static SMALL_VALUES: std::sync::LazyLock<Vec<HeaderValue>> = std::sync::LazyLock::new(|| {
    let mut digits = String::new();
    let mut ends = Vec::with_capacity(SMALL);
    for n in 0..SMALL {
        digits.push_str(&n.to_string());
        ends.push(digits.len());
    }
    let digits: &'static str = Box::leak(digits.into_boxed_str());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let value = HeaderValue::from_static(&digits[start..end]);
            start = end;
            value
        })
        .collect()
});

/// `n`'s static header value, when `n` is below [`SMALL`].
fn small(n: u64) -> Option<&'static HeaderValue> {
    usize::try_from(n).ok().and_then(|i| SMALL_VALUES.get(i))
}

/// `n` as a header value kept for long and cloned often: static when small,
/// otherwise with a buffer of its own (clones share it).
fn constant(n: u64) -> HeaderValue {
    small(n).cloned().unwrap_or_else(|| HeaderValue::from(n))
}

/// Bytes of the per-thread slab that larger decimal header values are cut
/// from.
const SLAB: usize = 16 * 1024;

thread_local! {
    static DIGITS: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// `n` as a header value, without an allocation of its own: small numbers
/// from the static table, larger ones cut from a per-thread slab shared by
/// reference count (one allocation per slab of a few thousand values).
fn decimal(n: u64) -> HeaderValue {
    if let Some(value) = small(n) {
        return value.clone();
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &buf[at..];
    let bytes = DIGITS.with_borrow_mut(|slab| {
        if slab.capacity() < digits.len() {
            *slab = BytesMut::with_capacity(SLAB);
        }
        slab.extend_from_slice(digits);
        slab.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[derive(Debug, Default)]
struct Bucket {
    /// Leased tokens not spent yet.
    tokens: AtomicI64,
    /// Tokens left in the shared bucket at the last lease.
    shared_remaining: AtomicI64,
    /// Refused by the shared bucket until then (ms since `origin`).
    over_until_ms: AtomicU64,
    /// Local GCRA arrival time (µs since `origin`).
    local_tat_us: AtomicU64,
    fetching: AtomicBool,
    fetched: Notify,
    /// Requests waiting for a lease: the next one asks for at least as many.
    waiting: AtomicU64,
    /// Last lease or use (ms since `origin`).
    touched_ms: AtomicU64,
    leased_ms: AtomicU64,
}

/// One shard of a per-client limiter's buckets.
#[allow(
    clippy::disallowed_types,
    reason = "sharded per limiter (16 ways), held for a map lookup only"
)]
type Shard = std::sync::Mutex<HashMap<Box<str>, Arc<Bucket>>>;

#[derive(Debug)]
enum KeyKind {
    Tenant,
    ClientIp,
    Header(HeaderName),
    JwtSubject,
}

/// One limit (a plan's or a route's) of one tenant.
#[derive(Debug)]
pub struct Limiter {
    /// Redis key prefix: `vf:rl:{tenant}:{scope}:`.
    prefix: String,
    config: RateLimitConfig,
    fail_closed: bool,
    interval_us: u64,
    capacity: u64,
    /// `capacity` as a header value.
    limit_value: HeaderValue,
    lease_size: i64,
    key: KeyKind,
    single: Arc<Bucket>,
    keyed: Box<[Shard]>,
    shared: Option<Arc<SharedLimits>>,
    origin: Instant,
    allowed: Counter,
    limited: Counter,
    failed_open: Counter,
    failed_closed: Counter,
}

impl Limiter {
    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn decision(&self, allowed: bool, remaining: u64, retry_after_us: u64) -> Decision {
        let missing = self.capacity.saturating_sub(remaining);
        Decision {
            allowed,
            limit: self.capacity,
            remaining,
            reset: (missing * self.interval_us).div_ceil(1_000_000),
            retry_after: retry_after_us.div_ceil(1_000_000).max(u64::from(!allowed)),
            limit_value: self.limit_value.clone(),
        }
    }

    /// The local GCRA: remaining tokens, or the µs until one is due.
    fn local(&self, bucket: &Bucket, now: u64) -> Result<u64, u64> {
        let span = self.capacity * self.interval_us;
        let mut tat = bucket.local_tat_us.load(Ordering::Acquire);
        loop {
            let next = tat.max(now) + self.interval_us;
            if next > now + span {
                return Err(next - now - span);
            }
            match bucket.local_tat_us.compare_exchange_weak(
                tat,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((now + span - next) / self.interval_us),
                Err(current) => tat = current,
            }
        }
    }

    fn bucket_key(&self, headers: &HeaderMap, client: IpAddr) -> Option<String> {
        match &self.key {
            KeyKind::Tenant => None,
            KeyKind::ClientIp => Some(client.to_string()),
            KeyKind::Header(name) => Some(
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(String::new, |v| v.chars().take(128).collect()),
            ),
            KeyKind::JwtSubject => Some(jwt_subject(headers).unwrap_or_default()),
        }
    }

    fn bucket(&self, key: Option<&str>) -> Arc<Bucket> {
        let Some(key) = key.filter(|_| !self.keyed.is_empty()) else {
            return Arc::clone(&self.single);
        };
        let shard = crate::backends::balancer::hash_of(&key) as usize % self.keyed.len();
        let mut map = self.keyed[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(key.into()).or_default())
    }

    /// Decides one request.
    pub async fn check(self: &Arc<Self>, headers: &HeaderMap, client: IpAddr) -> Decision {
        let key = self.bucket_key(headers, client);
        let bucket = self.bucket(key.as_deref());
        let now = self.now_us();
        bucket.touched_ms.store(now / 1000, Ordering::Relaxed);
        let local = match self.local(&bucket, now) {
            Ok(remaining) => remaining,
            Err(retry) => {
                self.limited.inc();
                return self.decision(false, 0, retry);
            }
        };
        let Some(shared) = &self.shared else {
            self.allowed.inc();
            return self.decision(true, local, 0);
        };
        let mut now_ms = now / 1000;
        for attempt in 0..3 {
            if !shared.up.load(Ordering::Acquire) {
                return self.degraded(local);
            }
            let over = bucket.over_until_ms.load(Ordering::Acquire);
            if attempt > 0 {
                // Time passed waiting for the lease.
                now_ms = self.now_us() / 1000;
            }
            if over > now_ms {
                self.limited.inc();
                return self.decision(false, 0, (over - now_ms) * 1000);
            }
            let before = bucket.tokens.fetch_sub(1, Ordering::AcqRel);
            if before > 0 {
                let left = before - 1;
                if left <= self.lease_size / 2 && !bucket.fetching.swap(true, Ordering::AcqRel) {
                    let (limiter, bucket, key) =
                        (Arc::clone(self), Arc::clone(&bucket), key.clone());
                    tokio::spawn(async move { limiter.refill(&bucket, key.as_deref()).await });
                }
                let shared_left = bucket.shared_remaining.load(Ordering::Acquire).max(0);
                self.allowed.inc();
                let remaining =
                    u64::try_from(left).unwrap_or(0) + u64::try_from(shared_left).unwrap_or(0);
                return self.decision(true, remaining.min(local), 0);
            }
            bucket.tokens.fetch_add(1, Ordering::AcqRel);
            let notified = bucket.fetched.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            bucket.waiting.fetch_add(1, Ordering::AcqRel);
            if bucket.fetching.swap(true, Ordering::AcqRel) {
                let _ = tokio::time::timeout(shared.timeout, notified).await;
            } else {
                // A task of its own: the lease completes (and clears
                // `fetching`) even if this request is dropped meanwhile.
                let (limiter, owned, key) = (Arc::clone(self), Arc::clone(&bucket), key.clone());
                let _ =
                    tokio::spawn(async move { limiter.refill(&owned, key.as_deref()).await }).await;
            }
            bucket.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        // No token after three tries: refused if the shared bucket said so,
        // otherwise the store is failing and the plan's failure mode decides.
        let over = bucket.over_until_ms.load(Ordering::Acquire);
        let now_ms = self.now_us() / 1000;
        if over > now_ms {
            self.limited.inc();
            self.decision(false, 0, (over - now_ms) * 1000)
        } else {
            self.degraded(local)
        }
    }

    /// The plan's failure mode while the shared store is unreachable.
    fn degraded(&self, local: u64) -> Decision {
        if self.fail_closed {
            self.failed_closed.inc();
            self.decision(false, 0, 1_000_000)
        } else {
            self.failed_open.inc();
            self.decision(true, local, 0)
        }
    }

    /// Takes a lease from the shared bucket; wakes whoever waits for it.
    async fn refill(&self, bucket: &Bucket, key: Option<&str>) {
        if let Some(shared) = &self.shared {
            shared.calls.inc();
            let redis_key = format!("{}{}", self.prefix, key.unwrap_or(""));
            let leased = tokio::time::timeout(
                shared.timeout,
                veloflux_store::ratelimit::lease(
                    &shared.client,
                    &redis_key,
                    self.interval_us,
                    self.capacity,
                    u64::try_from(self.lease_size)
                        .unwrap_or(1)
                        .max(bucket.waiting.load(Ordering::Acquire))
                        .min(self.capacity),
                ),
            )
            .await;
            match leased {
                Ok(Ok(lease)) => {
                    shared.set_up(true);
                    let now_ms = self.now_us() / 1000;
                    bucket
                        .tokens
                        .fetch_add(i64::try_from(lease.granted).unwrap_or(0), Ordering::AcqRel);
                    bucket.shared_remaining.store(
                        i64::try_from(lease.remaining).unwrap_or(0),
                        Ordering::Release,
                    );
                    let over = if lease.granted == 0 {
                        now_ms + lease.retry_after_us.div_ceil(1000).max(1)
                    } else {
                        0
                    };
                    bucket.over_until_ms.store(over, Ordering::Release);
                    bucket.leased_ms.store(now_ms, Ordering::Relaxed);
                }
                Ok(Err(err)) => {
                    warn!(error = %err, "Rate-limit lease failed");
                    shared.set_up(false);
                }
                Err(_) => shared.set_up(false),
            }
        }
        bucket.fetching.store(false, Ordering::Release);
        bucket.fetched.notify_waiters();
    }

    /// Returns idle leases and forgets idle client buckets.
    async fn sweep(&self) {
        let now_ms = self.now_us() / 1000;
        let mut idle: Vec<(Option<Box<str>>, Arc<Bucket>)> = Vec::new();
        if self.single.tokens.load(Ordering::Acquire) > 0 {
            idle.push((None, Arc::clone(&self.single)));
        }
        for shard in &self.keyed {
            let mut map = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|key, bucket| {
                let touched = bucket.touched_ms.load(Ordering::Relaxed);
                if bucket.tokens.load(Ordering::Acquire) > 0 {
                    idle.push((Some(key.clone()), Arc::clone(bucket)));
                }
                now_ms.saturating_sub(touched)
                    < u64::try_from(BUCKET_IDLE.as_millis()).unwrap_or(u64::MAX)
            });
        }
        let Some(shared) = &self.shared else {
            return;
        };
        for (key, bucket) in idle {
            let leased = bucket.leased_ms.load(Ordering::Relaxed);
            let touched = bucket.touched_ms.load(Ordering::Relaxed);
            let quiet = now_ms.saturating_sub(leased.max(touched));
            if quiet < u64::try_from(LEASE_IDLE.as_millis()).unwrap_or(u64::MAX)
                || bucket.fetching.load(Ordering::Acquire)
            {
                continue;
            }
            let unused = bucket.tokens.swap(0, Ordering::AcqRel);
            if unused <= 0 {
                bucket.tokens.fetch_add(unused, Ordering::AcqRel);
                continue;
            }
            shared.calls.inc();
            let redis_key = format!("{}{}", self.prefix, key.as_deref().unwrap_or(""));
            let released = tokio::time::timeout(
                shared.timeout,
                veloflux_store::ratelimit::release(
                    &shared.client,
                    &redis_key,
                    self.interval_us,
                    u64::try_from(unused).unwrap_or(0),
                ),
            )
            .await;
            if !matches!(released, Ok(Ok(()))) {
                // The return may or may not have reached Redis: dropping the
                // tokens can only under-admit, never admit twice.
                debug!(
                    unused,
                    "Unused rate-limit tokens dropped: the return did not complete"
                );
            }
        }
    }
}

/// The `sub` claim of a bearer JWT (not verified: it only picks a bucket).
fn jwt_subject(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let token = headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("sub")?
        .as_str()
        .map(|s| s.chars().take(128).collect())
}

/// Every limiter, shared across reloads so buckets survive config changes
/// that leave the limit as it was.
#[derive(Debug, Default)]
pub struct LimitRegistry {
    shared: std::sync::OnceLock<Arc<SharedLimits>>,
    disabled: AtomicBool,
    #[allow(
        clippy::disallowed_types,
        reason = "control path: taken when a tenant is compiled and by the sweeper"
    )]
    limiters: std::sync::Mutex<HashMap<String, Weak<Limiter>>>,
}

impl LimitRegistry {
    /// Stops enforcing limits in tenants compiled from now on (diagnosis).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
    }

    /// Whether limits are enforced.
    pub fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Acquire)
    }

    /// Shares every limit through Redis from now on.
    pub fn share(&self, shared: SharedLimits) {
        let _ = self.shared.set(Arc::new(shared));
    }

    /// The limiter for `scope` (`t` for the plan, `r:<route>` for a route)
    /// of `tenant`; the existing one when its limit is unchanged.
    pub fn limiter(
        &self,
        tenant: &str,
        scope: &str,
        config: &RateLimitConfig,
        mode: FailureMode,
        metrics: &Metrics,
        tenant_label: &str,
    ) -> Arc<Limiter> {
        let prefix = veloflux_crds::keys::rate_limit(tenant, scope, "");
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fail_closed = mode == FailureMode::FailClosed;
        if let Some(existing) = limiters.get(&prefix).and_then(Weak::upgrade)
            && existing.config == *config
            && existing.fail_closed == fail_closed
        {
            return existing;
        }
        let rpm = u64::from(config.requests_per_minute.max(1));
        let interval_us = (60_000_000 / rpm).max(1);
        let capacity = u64::from(config.burst.max(1));
        let per_second = 1_000_000 / interval_us;
        // About 50 ms of the limit per lease: few Redis calls at high rates,
        // little held back across the fleet at low ones.
        let lease_size = i64::try_from((per_second / 20).clamp(1, 1024).min(capacity)).unwrap_or(1);
        let key = match config.key {
            RateLimitKey::Tenant => KeyKind::Tenant,
            RateLimitKey::ClientIp => KeyKind::ClientIp,
            RateLimitKey::JwtSubject => KeyKind::JwtSubject,
            RateLimitKey::Header => config
                .header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .map_or(KeyKind::Tenant, KeyKind::Header),
        };
        let counters = metrics.ratelimit_counters(tenant_label);
        // Per-client buckets only for limits keyed by client: a tenant-wide
        // limit (one per tenant) would carry 16 empty maps.
        let keyed = if matches!(key, KeyKind::Tenant) {
            Box::default()
        } else {
            (0..SHARDS).map(|_| Shard::default()).collect()
        };
        let limiter = Arc::new(Limiter {
            prefix: prefix.clone(),
            config: config.clone(),
            fail_closed,
            interval_us,
            capacity,
            limit_value: constant(capacity),
            lease_size,
            key,
            single: Arc::default(),
            keyed,
            shared: self.shared.get().cloned(),
            origin: Instant::now(),
            allowed: counters[0].clone(),
            limited: counters[1].clone(),
            failed_open: counters[2].clone(),
            failed_closed: counters[3].clone(),
        });
        limiters.insert(prefix, Arc::downgrade(&limiter));
        limiter
    }

    /// Returns idle leases, forgets idle buckets and probes an unreachable
    /// store, every second, until the task is dropped.
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let live: Vec<Arc<Limiter>> = {
                let mut limiters = self
                    .limiters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                limiters.retain(|_, l| l.strong_count() > 0);
                limiters.values().filter_map(Weak::upgrade).collect()
            };
            if let Some(shared) = self.shared.get()
                && !shared.up.load(Ordering::Acquire)
            {
                let ping =
                    tokio::time::timeout(shared.timeout, shared.client.ping::<String>(None)).await;
                if matches!(ping, Ok(Ok(_))) {
                    shared.set_up(true);
                }
            }
            for limiter in live {
                limiter.sweep().await;
            }
        }
    }
}
