//! Load balancing over one rule's endpoints: round robin, smooth weighted
//! round robin, least connections and consistent hashing. Every pick is
//! lock-free (one atomic add, or a scan of in-flight counters) and skips
//! endpoints that are unhealthy, ejected, or already tried by this request.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use veloflux_crds::route::Algorithm;

use crate::backends::endpoint::EndpointState;

/// Most entries in a weighted schedule; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 4096;
/// Points per endpoint on the consistent-hash ring.
const RING_POINTS: usize = 160;

/// Endpoints a request has already tried (at most 64 endpoints are tracked).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried(u64);

impl Tried {
    /// Marks endpoint `i` as tried.
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }
    fn contains(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
}

/// The picking strategy of one rule, built with its endpoint list.
#[derive(Debug)]
pub enum Balancer {
    /// Each endpoint in turn, following `schedule` (plain or weighted).
    Schedule {
        /// Endpoint indices in visiting order.
        schedule: Box<[u16]>,
        /// Position of the next pick.
        next: AtomicUsize,
    },
    /// Fewest requests in flight; ties rotate.
    LeastConn {
        /// Rotates the starting point among ties.
        next: AtomicUsize,
    },
    /// Ring of `(point, endpoint)` sorted by point.
    ConsistentHash {
        /// The ring.
        ring: Box<[(u64, u16)]>,
    },
}

impl Balancer {
    /// Builds the balancer for endpoints with these weights.
    pub fn new(algorithm: Algorithm, weights: &[u32], endpoints: &[Arc<EndpointState>]) -> Self {
        match algorithm {
            Algorithm::RoundRobin => Self::Schedule {
                schedule: (0..weights.len())
                    .filter_map(|i| u16::try_from(i).ok())
                    .collect(),
                next: AtomicUsize::new(0),
            },
            Algorithm::Weighted => Self::Schedule {
                schedule: smooth_weighted_schedule(weights),
                next: AtomicUsize::new(0),
            },
            Algorithm::LeastConn => Self::LeastConn {
                next: AtomicUsize::new(0),
            },
            Algorithm::ConsistentHash => {
                let mut ring = Vec::with_capacity(endpoints.len() * RING_POINTS);
                for (i, e) in endpoints.iter().enumerate() {
                    let Ok(i) = u16::try_from(i) else { break };
                    for point in 0..RING_POINTS {
                        ring.push((hash_of(&(e.address(), point)), i));
                    }
                }
                ring.sort_unstable();
                Self::ConsistentHash {
                    ring: ring.into_boxed_slice(),
                }
            }
        }
    }

    /// Picks an available endpoint not yet tried; `key` is the request's hash
    /// key for consistent hashing.
    pub fn pick(
        &self,
        endpoints: &[Arc<EndpointState>],
        key: Option<u64>,
        tried: Tried,
    ) -> Option<usize> {
        let usable =
            |i: usize| !tried.contains(i) && endpoints.get(i).is_some_and(|e| e.is_available());
        match self {
            Self::Schedule { schedule, next } => {
                let len = schedule.len();
                if len == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|k| usize::from(schedule[(start + k) % len]))
                    .find(|&i| usable(i))
            }
            Self::LeastConn { next } => {
                let n = endpoints.len();
                if n == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(u32, usize)> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if usable(i) {
                        let load = endpoints[i].in_flight();
                        if best.is_none_or(|(b, _)| load < b) {
                            best = Some((load, i));
                        }
                    }
                }
                best.map(|(_, i)| i)
            }
            Self::ConsistentHash { ring } => {
                if ring.is_empty() {
                    return None;
                }
                let key = key.unwrap_or(0);
                let start = ring.partition_point(|&(point, _)| point < key);
                (0..ring.len())
                    .map(|k| usize::from(ring[(start + k) % ring.len()].1))
                    .find(|&i| usable(i))
            }
        }
    }
}

/// A stable 64-bit hash (SipHash with fixed keys): the same key maps to the
/// same endpoint on every proxy of the fleet.
pub fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    #[allow(
        deprecated,
        reason = "SipHasher is the std hasher with fixed, fleet-wide keys"
    )]
    let mut hasher = std::hash::SipHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Smooth weighted round robin (as nginx does it), unrolled into a schedule
/// so picking is one atomic add. Weights are divided by their GCD and
/// scaled so the schedule stays at most [`MAX_SCHEDULE`] long.
fn smooth_weighted_schedule(weights: &[u32]) -> Box<[u16]> {
    let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
    if g == 0 {
        return Box::new([]);
    }
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        for x in &mut w {
            if *x > 0 {
                *x = (*x * MAX_SCHEDULE / total).max(1);
            }
        }
    }
    let total: i64 = w.iter().map(|&x| i64::try_from(x).unwrap_or(0)).sum();
    let mut current = vec![0i64; w.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, weight) in w.iter().enumerate() {
            current[i] += i64::try_from(*weight).unwrap_or(0);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        if let Ok(b) = u16::try_from(best) {
            schedule.push(b);
        }
    }
    schedule.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::endpoint::EndpointRegistry;

    fn endpoints(n: u16) -> Vec<Arc<EndpointState>> {
        let registry = EndpointRegistry::default();
        (0..n)
            .map(|i| registry.get(&format!("127.0.0.1:{}", 1000 + i)).unwrap())
            .collect()
    }

    fn counts(b: &Balancer, eps: &[Arc<EndpointState>], n: usize) -> Vec<usize> {
        let mut c = vec![0; eps.len()];
        for _ in 0..n {
            c[b.pick(eps, None, Tried::default()).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_visits_each_endpoint_in_turn() {
        let eps = endpoints(3);
        let b = Balancer::new(Algorithm::RoundRobin, &[1, 1, 1], &eps);
        let picks: Vec<usize> = (0..6)
            .map(|_| b.pick(&eps, None, Tried::default()).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_follows_the_weights_smoothly() {
        let eps = endpoints(3);
        let b = Balancer::new(Algorithm::Weighted, &[5, 1, 1], &eps);
        assert_eq!(counts(&b, &eps, 700), vec![500, 100, 100]);
        // Smooth: nginx's sequence for 5,1,1 never sends the light ones back to back.
        let Balancer::Schedule { schedule, .. } = &b else {
            panic!()
        };
        assert_eq!(&schedule[..], &[0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weight_gets_nothing_and_huge_weights_are_scaled() {
        let eps = endpoints(2);
        let b = Balancer::new(Algorithm::Weighted, &[0, 3], &eps);
        assert_eq!(counts(&b, &eps, 10), vec![0, 10]);
        let big = smooth_weighted_schedule(&[1000, 999]);
        assert!(big.len() as u64 <= MAX_SCHEDULE);
    }

    #[test]
    fn unavailable_and_tried_endpoints_are_skipped() {
        let eps = endpoints(3);
        let b = Balancer::new(Algorithm::RoundRobin, &[1, 1, 1], &eps);
        eps[1].set_healthy(false);
        let mut tried = Tried::default();
        tried.insert(0);
        for _ in 0..5 {
            assert_eq!(b.pick(&eps, None, tried), Some(2));
        }
        eps[2].set_healthy(false);
        assert_eq!(b.pick(&eps, None, tried), None);
    }

    #[test]
    fn least_conn_prefers_the_endpoint_with_fewest_in_flight() {
        let eps = endpoints(3);
        let b = Balancer::new(Algorithm::LeastConn, &[1, 1, 1], &eps);
        let _busy = [eps[0].begin(), eps[0].begin(), eps[2].begin()];
        for _ in 0..10 {
            assert_eq!(b.pick(&eps, None, Tried::default()), Some(1));
        }
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_little_when_an_endpoint_leaves() {
        let eps = endpoints(4);
        let b = Balancer::new(Algorithm::ConsistentHash, &[1; 4], &eps);
        let keys: Vec<u64> = (0..1000).map(|k| hash_of(&format!("user-{k}"))).collect();
        let first: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&eps, Some(k), Tried::default()).unwrap())
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|&k| b.pick(&eps, Some(k), Tried::default()).unwrap())
            .collect();
        assert_eq!(first, again);
        let mut spread = [0; 4];
        for &i in &first {
            spread[i] += 1;
        }
        assert!(spread.iter().all(|&c| c > 150), "{spread:?}");
        eps[3].set_healthy(false);
        let moved = keys
            .iter()
            .zip(&first)
            .filter(|&(&k, &was)| was != 3 && b.pick(&eps, Some(k), Tried::default()) != Some(was))
            .count();
        assert_eq!(moved, 0, "keys of the remaining endpoints stay put");
    }
}
