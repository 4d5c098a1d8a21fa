//! Upstream endpoints and the state that outlives config reloads: requests
//! in flight, active health, passive ejection. One `EndpointState` per
//! address, shared by every route that names it, so a reload never resets
//! health or loses the in-flight count a draining endpoint is waited on by.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;

/// Consecutive failures (connect errors or 5xx) that eject an endpoint.
pub const PASSIVE_FAILURE_THRESHOLD: u32 = 5;
/// First ejection; each further ejection in a row doubles it, up to [`MAX_EJECTION`].
pub const BASE_EJECTION: Duration = Duration::from_secs(10);
/// Longest passive ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Live state of one upstream address.
#[derive(Debug)]
pub struct EndpointState {
    address: Box<str>,
    in_flight: AtomicU32,
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    ejections_in_row: AtomicU32,
    /// Milliseconds since `epoch` until which the endpoint is ejected.
    ejected_until_ms: AtomicU64,
    epoch: Instant,
    /// Idle keep-alive connections to this address.
    pool: crate::upstream::Pool,
}

impl EndpointState {
    fn new(address: &str, epoch: Instant) -> Self {
        Self {
            address: address.into(),
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections_in_row: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
            pool: crate::upstream::Pool::default(),
        }
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Idle keep-alive connections to this address.
    pub fn pool(&self) -> &crate::upstream::Pool {
        &self.pool
    }

    /// Requests currently in flight to this endpoint.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the active health check passes (true until a check says otherwise).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive ejection currently holds the endpoint out.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Healthy and not ejected: may take new requests.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// Sets the active health status; returns whether it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// A request succeeded: the failure streak ends.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if !self.is_ejected() && self.ejections_in_row.load(Ordering::Relaxed) != 0 {
            self.ejections_in_row.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed (connect error or 5xx); returns true when this
    /// failure ejected the endpoint.
    pub fn record_failure(&self) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < PASSIVE_FAILURE_THRESHOLD || self.is_ejected() {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let streak = self
            .ejections_in_row
            .fetch_add(1, Ordering::Relaxed)
            .min(16);
        let ejection = BASE_EJECTION.saturating_mul(1 << streak).min(MAX_EJECTION);
        let until = self.now_ms() + u64::try_from(ejection.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        true
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// Decrements the endpoint's in-flight count on drop.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands out one shared [`EndpointState`] per address. Used only when a
/// snapshot is built (control path), never per request.
#[derive(Debug)]
pub struct EndpointRegistry {
    epoch: Instant,
    #[allow(
        clippy::disallowed_types,
        reason = "control path only: taken while building a snapshot"
    )]
    states: std::sync::Mutex<HashMap<Box<str>, Weak<EndpointState>>>,
}

impl Default for EndpointRegistry {
    #[allow(clippy::disallowed_types, reason = "control path only")]
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            states: std::sync::Mutex::default(),
        }
    }
}

/// An address that is not a valid `host:port` authority.
#[derive(Debug, thiserror::Error)]
#[error("invalid upstream address {0:?}")]
pub struct InvalidAddress(pub String);

impl EndpointRegistry {
    /// The state for `address`, shared with every live user of the same address.
    pub fn get(&self, address: &str) -> Result<Arc<EndpointState>, InvalidAddress> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(state) = states.get(address).and_then(Weak::upgrade) {
            return Ok(state);
        }
        let authority: Authority = address
            .parse()
            .map_err(|_| InvalidAddress(address.to_owned()))?;
        if authority.port_u16().is_none() {
            return Err(InvalidAddress(address.to_owned()));
        }
        let state = Arc::new(EndpointState::new(address, self.epoch));
        states.insert(address.into(), Arc::downgrade(&state));
        if states.len() > 1024 && states.len().is_power_of_two() {
            states.retain(|_, weak| weak.strong_count() > 0);
        }
        Ok(state)
    }

    /// Closes idle upstream connections past their timeout, on every live
    /// endpoint, every second until the task is dropped (checkouts and
    /// check-ins expire them too; this reaches endpoints nobody calls).
    pub async fn sweep_pools_forever(&self) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let live: Vec<Arc<EndpointState>> = self
                .states
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .filter_map(Weak::upgrade)
                .collect();
            for state in live {
                state.pool().sweep();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_state_per_address_while_in_use() {
        let registry = EndpointRegistry::default();
        let a = registry.get("127.0.0.1:80").unwrap();
        let b = registry.get("127.0.0.1:80").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(registry.get("no-port").is_err());
    }

    #[test]
    fn in_flight_counts_follow_guards() {
        let registry = EndpointRegistry::default();
        let e = registry.get("127.0.0.1:80").unwrap();
        let g1 = e.begin();
        let g2 = e.begin();
        assert_eq!(e.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets_the_streak() {
        let registry = EndpointRegistry::default();
        let e = registry.get("127.0.0.1:80").unwrap();
        for _ in 0..PASSIVE_FAILURE_THRESHOLD - 1 {
            assert!(!e.record_failure());
        }
        e.record_success();
        for _ in 0..PASSIVE_FAILURE_THRESHOLD - 1 {
            assert!(!e.record_failure());
        }
        assert!(e.is_available());
        assert!(e.record_failure());
        assert!(e.is_ejected());
        assert!(!e.is_available());
    }
}
