//! The Redis contract: every key VeloFlux uses, spelled once, and the entry
//! appended to the config change stream.
//!
//! Every per-tenant key carries the tenant id as a Redis Cluster hash tag
//! (`{acme}`), so all of one tenant's keys live in one slot and multi-key
//! operations on them work in Cluster mode. Ids are Kubernetes object names
//! (lowercase alphanumerics, `-`, `.`), so they never contain braces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The capped stream of config changes proxies follow with `XREAD`.
///
/// The fleet-wide keys share the `{config}` hash tag, so the writer's
/// publish step (index + stream) and a proxy's heartbeat are single-slot
/// operations in Cluster mode.
pub const CONFIG_CHANGES_STREAM: &str = "vf:{config}:changes";
/// Set of tenant ids that have a published config document.
pub const CONFIG_INDEX: &str = "vf:{config}:index";
/// Marker written by the writer once the store holds every tenant; a store
/// without it was wiped (or never filled) and must be republished.
pub const CONFIG_EPOCH: &str = "vf:{config}:epoch";
/// Approximate cap on the change stream's length (`XADD MAXLEN ~`).
pub const CONFIG_CHANGES_MAXLEN: u64 = 100_000;
/// Counter of announced changes; each stream entry carries its value in the
/// [`CHANGE_SEQ_FIELD`] field, so a reader that sees a number skipped knows
/// it missed entries (trimmed, or Redis restarted).
pub const CONFIG_SEQ: &str = "vf:{config}:seq";
/// Stream entry field holding the [`CONFIG_SEQ`] value of the change.
pub const CHANGE_SEQ_FIELD: &str = "seq";
/// Sorted set of proxy ids, scored by their last heartbeat (Unix ms).
pub const PROXIES: &str = "vf:{config}:proxies";

/// Fields of a tenant's config hash ([`config`]).
pub mod config_field {
    /// Schema version of `doc` (readable without parsing it).
    pub const SCHEMA: &str = "schema";
    /// Revision of `doc`.
    pub const REVISION: &str = "rev";
    /// The [`crate::config::TenantConfig`] as JSON.
    pub const DOC: &str = "doc";
    /// Stream id of the entry that announced this revision; empty while the
    /// announcement is pending (written, not yet published).
    pub const PUBLISHED: &str = "pub";
}

/// `vf:{config}:proxy:{id}`: one proxy's acknowledgement (a hash with a TTL).
pub fn proxy(id: &str) -> String {
    format!("vf:{{config}}:proxy:{id}")
}

/// Whether `id` is usable as a proxy id: 1 to 253 of `A-Za-z0-9._-`.
pub fn is_valid_proxy_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// `vf:tenant:{id}`: the tenant's profile.
pub fn tenant(id: &str) -> String {
    format!("vf:tenant:{{{id}}}")
}

/// `vf:tenant:{id}:users`: the tenant's user ids and roles.
pub fn tenant_users(id: &str) -> String {
    format!("vf:tenant:{{{id}}}:users")
}

/// `vf:tenant:{id}:billing`: the tenant's billing state.
pub fn tenant_billing(id: &str) -> String {
    format!("vf:tenant:{{{id}}}:billing")
}

/// `vf:tenant:{id}:deployment`: the tenant's dedicated-instance state.
pub fn tenant_deployment(id: &str) -> String {
    format!("vf:tenant:{{{id}}}:deployment")
}

/// `vf:config:{id}`: a hash holding the tenant's compiled
/// [`crate::config::TenantConfig`] and its revision (see [`config_field`]).
pub fn config(id: &str) -> String {
    format!("vf:config:{{{id}}}")
}

/// `vf:rl:{tenant}:{scope}:{key}`: one rate-limit bucket (a GCRA arrival
/// time). `scope` is `t` (the plan's tenant-wide limit) or `r:<route>`;
/// `key` is empty or the client key (IP, header value, JWT subject).
pub fn rate_limit(tenant: &str, scope: &str, key: &str) -> String {
    format!("vf:rl:{{{tenant}}}:{scope}:{key}")
}

/// `vf:user:{id}`: one user.
pub fn user(id: &str) -> String {
    format!("vf:user:{{{id}}}")
}

/// `vf:user:{id}:tenants`: the tenants a user belongs to and the role in
/// each (the user-side copy of `vf:tenant:{t}:users`, for listing).
pub fn user_tenants(id: &str) -> String {
    format!("vf:user:{{{id}}}:tenants")
}

/// `vf:user:{id}:sessions`: the user's refresh-token families (a set), so
/// every session of a person can be ended at once.
pub fn user_sessions(id: &str) -> String {
    format!("vf:user:{{{id}}}:sessions")
}

/// `vf:email:{digest}`: the user id owning an email address. `digest` is
/// the hex SHA-256 of the normalised address, so no address can break out
/// of the hash tag.
pub fn email(digest: &str) -> String {
    format!("vf:email:{{{digest}}}")
}

/// `vf:session:{family}`: one refresh-token family (a sign-in and its
/// rotations): user, tenant, the current token's digest, the digests
/// already used, expiry.
pub fn session(family: &str) -> String {
    format!("vf:session:{{{family}}}")
}

/// `vf:verify:{digest}`: a pending email verification (user id), by the
/// digest of its token; expires with the token.
pub fn email_verification(digest: &str) -> String {
    format!("vf:verify:{{{digest}}}")
}

/// `vf:tenant:{t}:invite:<digest>`: one pending invitation (email, role,
/// inviter), by the digest of its token; expires with the token.
pub fn tenant_invitation(tenant: &str, digest: &str) -> String {
    format!("vf:tenant:{{{tenant}}}:invite:{digest}")
}

/// `vf:tenant:{t}:invites`: the tenant's pending invitations (a sorted set
/// of token digests by expiry, Unix ms).
pub fn tenant_invitations(tenant: &str) -> String {
    format!("vf:tenant:{{{tenant}}}:invites")
}

/// `vf:tenant:{t}:audit`: the tenant's audit log, a capped stream.
pub fn tenant_audit(tenant: &str) -> String {
    format!("vf:tenant:{{{tenant}}}:audit")
}

/// Approximate cap on a tenant's audit stream (`XADD MAXLEN ~`).
pub const TENANT_AUDIT_MAXLEN: u64 = 10_000;

/// `vf:throttle:{scope:key}:<window>`: attempts counted for one client
/// address or account in one window, shared by every API replica. `key`
/// is an address or an email digest, never a raw email.
pub fn throttle(scope: &str, key: &str, window: u64) -> String {
    format!("vf:throttle:{{{scope}:{key}}}:{window}")
}

/// Whether `id` is usable as a tenant or user id inside a key: a non-empty
/// Kubernetes object name, which cannot break out of its hash tag.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 253
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && id.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && id.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, mod 16384), as
/// the Cluster specification defines it.
pub fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16_xmodem(tagged) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// What happened to a tenant's config.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// The document was created or replaced.
    Upsert,
    /// The document was removed.
    Delete,
}

impl ChangeOp {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Delete => "delete",
        }
    }
}

/// One entry of [`CONFIG_CHANGES_STREAM`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChangeEntry {
    /// Tenant id.
    pub tenant: String,
    /// Revision of the document after the change.
    pub revision: u64,
    /// Kind of change.
    pub op: ChangeOp,
}

/// Why a stream entry could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChangeEntryError {
    /// A field is absent.
    #[error("change entry lacks field `{0}`")]
    Missing(&'static str),
    /// A field has an unusable value.
    #[error("change entry field `{field}` has invalid value `{value}`")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: String,
    },
}

impl ChangeEntry {
    /// The stream fields, in a fixed order: `tenant`, `rev`, `op`.
    pub fn to_fields(&self) -> [(&'static str, String); 3] {
        [
            ("tenant", self.tenant.clone()),
            ("rev", self.revision.to_string()),
            ("op", self.op.as_str().to_owned()),
        ]
    }

    /// Reads an entry from its stream fields.
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<Self, ChangeEntryError> {
        let get = |name: &'static str| fields.get(name).ok_or(ChangeEntryError::Missing(name));
        let tenant = get("tenant")?;
        if !is_valid_id(tenant) {
            return Err(ChangeEntryError::Invalid {
                field: "tenant",
                value: tenant.clone(),
            });
        }
        let rev = get("rev")?;
        let revision = rev.parse().map_err(|_| ChangeEntryError::Invalid {
            field: "rev",
            value: rev.clone(),
        })?;
        let op = match get("op")?.as_str() {
            "upsert" => ChangeOp::Upsert,
            "delete" => ChangeOp::Delete,
            other => {
                return Err(ChangeEntryError::Invalid {
                    field: "op",
                    value: other.to_owned(),
                });
            }
        };
        Ok(Self {
            tenant: tenant.clone(),
            revision,
            op,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_seed_names_with_the_tenant_as_hash_tag() {
        assert_eq!(tenant("acme"), "vf:tenant:{acme}");
        assert_eq!(tenant_users("acme"), "vf:tenant:{acme}:users");
        assert_eq!(tenant_billing("acme"), "vf:tenant:{acme}:billing");
        assert_eq!(tenant_deployment("acme"), "vf:tenant:{acme}:deployment");
        assert_eq!(config("acme"), "vf:config:{acme}");
        assert_eq!(user("u-1"), "vf:user:{u-1}");
    }

    #[test]
    fn keys_of_one_user_share_a_cluster_slot() {
        let slot = cluster_slot(&user("u-1"));
        for key in [user_tenants("u-1"), user_sessions("u-1")] {
            assert_eq!(cluster_slot(&key), slot, "{key}");
        }
    }

    #[test]
    fn all_keys_of_one_tenant_share_a_cluster_slot() {
        for id in ["acme", "globex", "a.b-c", "t0"] {
            let slot = cluster_slot(&config(id));
            for key in [
                tenant(id),
                tenant_users(id),
                tenant_billing(id),
                tenant_deployment(id),
                rate_limit(id, "r:acme/web", "10.0.0.1"),
                tenant_invitation(id, "ab12"),
                tenant_invitations(id),
                tenant_audit(id),
            ] {
                assert_eq!(cluster_slot(&key), slot, "{key}");
            }
        }
    }

    #[test]
    fn fleet_keys_share_one_cluster_slot() {
        let slot = cluster_slot(CONFIG_CHANGES_STREAM);
        for key in [
            CONFIG_INDEX,
            CONFIG_EPOCH,
            CONFIG_SEQ,
            PROXIES,
            &proxy("proxy-0"),
        ] {
            assert_eq!(cluster_slot(key), slot, "{key}");
        }
        assert_eq!(proxy("p-1"), "vf:{config}:proxy:p-1");
        assert!(is_valid_proxy_id("veloflux-proxy-7d9f_0.a"));
        for bad in ["", "a b", "a:b", "a{b", "a}b"] {
            assert!(!is_valid_proxy_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn cluster_slot_matches_the_redis_specification() {
        // Reference values from the Redis Cluster specification and CLUSTER KEYSLOT.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("{user1000}.followers")
        );
        // An empty tag hashes the whole key; only the first `{...}` counts.
        assert_eq!(
            cluster_slot("foo{}{bar}"),
            crc16_xmodem(b"foo{}{bar}") % 16384
        );
        assert_eq!(cluster_slot("foo{{bar}}zap"), crc16_xmodem(b"{bar") % 16384);
        assert_eq!(cluster_slot("foo{bar}{zap}"), crc16_xmodem(b"bar") % 16384);
        assert_ne!(cluster_slot("foo{}{bar}"), cluster_slot("bar"));
    }

    #[test]
    fn ids_that_could_break_a_hash_tag_are_invalid() {
        assert!(is_valid_id("acme"));
        assert!(is_valid_id("acme-2.eu"));
        for bad in ["", "a}b", "{a", "Acme", "-a", "a-", "a b", "a:b"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn change_entries_round_trip_through_stream_fields() {
        let entry = ChangeEntry {
            tenant: "acme".into(),
            revision: 42,
            op: ChangeOp::Delete,
        };
        let fields: BTreeMap<String, String> = entry
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(ChangeEntry::from_fields(&fields), Ok(entry));
    }

    #[test]
    fn malformed_change_entries_are_refused_with_the_field_named() {
        let mut fields = BTreeMap::new();
        fields.insert("tenant".to_owned(), "acme".to_owned());
        assert_eq!(
            ChangeEntry::from_fields(&fields),
            Err(ChangeEntryError::Missing("rev"))
        );
        fields.insert("rev".to_owned(), "x".to_owned());
        fields.insert("op".to_owned(), "upsert".to_owned());
        assert!(matches!(
            ChangeEntry::from_fields(&fields),
            Err(ChangeEntryError::Invalid { field: "rev", .. })
        ));
        fields.insert("rev".to_owned(), "3".to_owned());
        fields.insert("op".to_owned(), "patch".to_owned());
        assert!(matches!(
            ChangeEntry::from_fields(&fields),
            Err(ChangeEntryError::Invalid { field: "op", .. })
        ));
    }
}
