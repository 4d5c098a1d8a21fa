//! Sign-in and sign-up throttling, in two layers: a local token bucket per
//! client address (tower-governor) that sheds floods before any work, and
//! fixed-window counters in Redis per client address and per account, which
//! hold across every API replica. Both answer 429 with `Retry-After`, the
//! same whether the account exists or not.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse as _;
use fred::prelude::{Client, LuaInterface};
use governor::middleware::NoOpMiddleware;
use http::Request;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use veloflux_crds::keys;

use crate::error::ApiError;

/// Length of a counting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The client's address: the peer, or with `trust_forwarded_for` the last
/// `X-Forwarded-For` hop (the one our own proxy appended).
pub fn client_address<T>(request: &Request<T>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(hop) = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|hop| hop.trim().parse().ok())
    {
        return Some(hop);
    }
    request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// Keys the local bucket by client address.
#[derive(Clone, Copy, Debug)]
pub struct ClientKey {
    /// See [`client_address`].
    pub trust_forwarded_for: bool,
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<IpAddr, GovernorError> {
        client_address(request, self.trust_forwarded_for).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// The local bucket: `per_minute` attempts per address, all at once at most.
pub fn local_layer(
    per_minute: u32,
    trust_forwarded_for: bool,
) -> Option<
    tower_governor::GovernorLayer<ClientKey, NoOpMiddleware<governor::clock::QuantaInstant>, Body>,
> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientKey {
            trust_forwarded_for,
        })
        .per_millisecond((60_000 / u64::from(per_minute.max(1))).max(1))
        .burst_size(per_minute.max(1))
        .finish()?;
    Some(
        tower_governor::GovernorLayer::new(config).error_handler(|error| match error {
            GovernorError::TooManyRequests { wait_time, .. } => ApiError::TooManyRequests {
                retry_after: wait_time,
            }
            .into_response(),
            _ => ApiError::Internal("no client address".into()).into_response(),
        }),
    )
}

/// What a Redis counter counts.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// One client address.
    Address,
    /// One account (by the digest of its email).
    Account,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Address => "addr",
            Self::Account => "acct",
        }
    }
}

// INCR and set the expiry on the window's first hit, atomically.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// The shared counters.
#[derive(Clone)]
pub struct Throttle {
    client: Client,
    per_address: u32,
    per_account: u32,
}

impl Throttle {
    /// Counters in `client`'s Redis with these limits per window.
    pub fn new(client: Client, per_address: u32, per_account: u32) -> Self {
        Self {
            client,
            per_address,
            per_account,
        }
    }

    /// Counts one attempt; refuses it past the scope's limit.
    pub async fn hit(&self, scope: Scope, key: &str) -> Result<(), ApiError> {
        let now = crate::auth::now_ms();
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(60_000);
        let window = now / window_ms;
        let limit = match scope {
            Scope::Address => self.per_address,
            Scope::Account => self.per_account,
        };
        let n: u64 = self
            .client
            .eval(
                HIT,
                vec![keys::throttle(scope.as_str(), key, window)],
                vec![(window_ms * 2).to_string()],
            )
            .await?;
        if n > u64::from(limit) {
            let retry_after = ((window + 1) * window_ms)
                .saturating_sub(now)
                .div_ceil(1000);
            return Err(ApiError::TooManyRequests { retry_after });
        }
        Ok(())
    }
}
