//! The routing snapshot every request reads: an immutable value behind
//! `ArcSwap`, replaced whole on every change, so a request finishes on the
//! snapshot it started with. Hosts and tenants live in fixed shards, each an
//! `Arc<HashMap>`; a change to one tenant copies only the shards its hosts
//! fall in, so applying it costs O(tenant's hosts + hosts / SHARDS), not
//! O(all tenants).
//!
//! Invariant (checked in debug builds after each change): every host entry
//! belongs to a tenant present in the snapshot, and lists that tenant's id.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::routing::router::{HostEntry, TenantRuntime};

/// Number of shards of each map.
const SHARDS: usize = 512;

/// Keys are configured names; the hash only spreads them (a client's host
/// can slow only its own lookup), so it is the fast one, randomly seeded.
type Shard<K, V> = Arc<HashMap<K, V, foldhash::fast::RandomState>>;

/// FNV-1a over the key's bytes: cheap, stable shard selection.
fn shard_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// An immutable routing table.
#[derive(Debug, Clone)]
pub struct Snapshot {
    hosts: Box<[Shard<Arc<str>, Arc<HostEntry>>]>,
    tenants: Box<[Shard<Arc<str>, Arc<TenantRuntime>>]>,
    tenant_count: usize,
    host_count: usize,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            hosts: (0..SHARDS).map(|_| Arc::default()).collect(),
            tenants: (0..SHARDS).map(|_| Arc::default()).collect(),
            tenant_count: 0,
            host_count: 0,
        }
    }
}

/// Most bytes of a host name (RFC 1035).
const MAX_HOST: usize = 253;

/// A host as the request names it, lowercased, without port or trailing dot,
/// in a stack buffer. `None` for an unusable host.
pub fn normalize_host<'b>(raw: &str, buf: &'b mut [u8; MAX_HOST + 2]) -> Option<&'b str> {
    let name = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port — IP literals route nowhere but may be logged.
        &rest[..rest.find(']')?]
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                raw
            }
        })
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST {
        return None;
    }
    let out = &mut buf[..name.len()];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_' || b == b':') {
            return None;
        }
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

impl Snapshot {
    /// The entry serving `host` (already normalised): the exact name, else
    /// the one-label wildcard above it.
    pub fn host(&self, host: &str) -> Option<&Arc<HostEntry>> {
        if let Some(entry) = self.hosts[shard_of(host)].get(host) {
            return Some(entry);
        }
        let (_, parent) = host.split_once('.')?;
        let mut buf = [0u8; MAX_HOST + 2];
        let len = parent.len() + 2;
        let wild = buf.get_mut(..len)?;
        wild[..2].copy_from_slice(b"*.");
        wild[2..].copy_from_slice(parent.as_bytes());
        let wild = std::str::from_utf8(wild).ok()?;
        self.hosts[shard_of(wild)].get(wild)
    }

    /// A tenant by id.
    pub fn tenant(&self, id: &str) -> Option<&Arc<TenantRuntime>> {
        self.tenants[shard_of(id)].get(id)
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantRuntime>> {
        self.tenants.iter().flat_map(|s| s.values())
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenant_count
    }

    /// Number of hosts served.
    pub fn host_count(&self) -> usize {
        self.host_count
    }

    /// A copy with several tenants replaced or removed. Each shard is copied
    /// at most once, however many of the changes touch it.
    #[must_use]
    pub fn with_tenants<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Option<Arc<TenantRuntime>>)>,
    ) -> Self {
        let mut next = self.clone();
        for (id, tenant) in changes {
            next.replace(id, tenant);
        }
        #[cfg(debug_assertions)]
        next.check_invariants();
        next
    }

    fn replace(&mut self, id: &str, tenant: Option<Arc<TenantRuntime>>) {
        // Remove the old tenant's hosts (only those still pointing at it).
        if let Some(old) = self.tenant(id).cloned() {
            for (host, _) in old.hosts.iter() {
                let shard = Arc::make_mut(&mut self.hosts[shard_of(host)]);
                if shard.get(&**host).is_some_and(|e| &*e.tenant == id) {
                    shard.remove(&**host);
                    self.host_count -= 1;
                }
            }
            Arc::make_mut(&mut self.tenants[shard_of(id)]).remove(id);
            self.tenant_count -= 1;
        }
        if let Some(tenant) = tenant {
            for (host, entry) in tenant.hosts.iter() {
                let shard = Arc::make_mut(&mut self.hosts[shard_of(host)]);
                if shard.insert(Arc::clone(host), Arc::clone(entry)).is_none() {
                    self.host_count += 1;
                }
            }
            Arc::make_mut(&mut self.tenants[shard_of(id)]).insert(Arc::clone(&tenant.id), tenant);
            self.tenant_count += 1;
        }
    }

    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        if self.host_count > 10_000 {
            return; // keep debug builds usable at benchmark scale
        }
        let hosts: usize = self.hosts.iter().map(|s| s.len()).sum();
        debug_assert_eq!(hosts, self.host_count);
        for shard in self.hosts.iter() {
            for (host, entry) in shard.iter() {
                let tenant = self.tenant(&entry.tenant);
                debug_assert!(
                    tenant.is_some(),
                    "host {host} points at missing tenant {}",
                    entry.tenant
                );
            }
        }
    }
}

/// The current snapshot and its single writer.
#[derive(Debug, Default)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    #[allow(
        clippy::disallowed_types,
        reason = "serialises writers on the control path; readers never take it"
    )]
    writer: std::sync::Mutex<()>,
}

impl Store {
    /// The snapshot to serve one request from.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces (or with `None` removes) one tenant.
    pub fn set_tenant(&self, id: &str, tenant: Option<Arc<TenantRuntime>>) {
        self.set_tenants([(id, tenant)]);
    }

    /// Replaces or removes several tenants in one swap.
    pub fn set_tenants<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Option<Arc<TenantRuntime>>)>,
    ) {
        let _guard = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = self.current.load().with_tenants(changes);
        self.current.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_without_allocating() {
        let mut buf = [0u8; MAX_HOST + 2];
        assert_eq!(
            normalize_host("Shop.ACME.localhost:8080", &mut buf),
            Some("shop.acme.localhost")
        );
        assert_eq!(normalize_host("acme.com.", &mut buf), Some("acme.com"));
        assert_eq!(normalize_host("[::1]:80", &mut buf), Some("::1"));
        assert_eq!(normalize_host("", &mut buf), None);
        assert_eq!(normalize_host("bad host", &mut buf), None);
        assert_eq!(normalize_host(&"a".repeat(300), &mut buf), None);
    }
}
