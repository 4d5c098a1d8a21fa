//! Access tokens: short-lived JWTs signed with Ed25519 (`alg: EdDSA`), with
//! `iss`, `aud`, `sub`, `tenant_id`, `role`, `exp`, `iat`, `jti`. Only
//! EdDSA with a key id the folder knows verifies: `alg: none`, HMAC with a
//! published key, an edited payload, a wrong audience or issuer, an expired
//! token all fail alike.
//!
//! Verified tokens are remembered (by their exact text, with the key set
//! they were checked against) until they expire, so a client's repeated
//! calls cost a hash lookup instead of an Ed25519 verification (~48 µs,
//! docs/BENCHMARKS.md). Only tokens that verified are remembered, a hit
//! needs the very same signature, and a change of the key set (a key
//! removed) forgets them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use veloflux_crds::tenant::TenantRole;

use crate::auth::keys::SigningKeys;

/// The claims of a VeloFlux access token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The person's user id.
    pub sub: String,
    /// The tenant the token acts in; absent for a person with no tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The person's role in that tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<TenantRole>,
    /// Platform admins may act on every tenant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_admin: bool,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Token id.
    pub jti: String,
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct Tokens {
    keys: Arc<SigningKeys>,
    issuer: String,
    audience: String,
    ttl: Duration,
    validation: Arc<Validation>,
    verified: Arc<Verified>,
}

const SHARDS: usize = 16;
const SHARD_CAPACITY: usize = 4096;

/// One shard: token text → its claims and the key-set generation.
#[allow(
    clippy::disallowed_types,
    reason = "one of 16 shards; held for one map operation, never across an await"
)]
type Shard = std::sync::Mutex<HashMap<Box<str>, (Arc<Claims>, u64)>>;

/// Tokens that verified, sharded by hash so concurrent requests rarely
/// share a lock; a full shard is emptied (the next calls verify again).
struct Verified {
    hasher: foldhash::fast::RandomState,
    shards: [Shard; SHARDS],
}

impl Verified {
    fn new() -> Self {
        Self {
            hasher: foldhash::fast::RandomState::default(),
            shards: std::array::from_fn(|_| Shard::new(HashMap::new())),
        }
    }

    fn shard(&self, token: &str) -> &Shard {
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, token);
        &self.shards[usize::try_from(hash % SHARDS as u64).unwrap_or(0)]
    }

    fn get(&self, token: &str, generation: u64, now: u64) -> Option<Arc<Claims>> {
        let shard = self.shard(token).lock().ok()?;
        let (claims, seen) = shard.get(token)?;
        (*seen == generation && claims.exp > now).then(|| Arc::clone(claims))
    }

    fn put(&self, token: &str, generation: u64, claims: Arc<Claims>) {
        if let Ok(mut shard) = self.shard(token).lock() {
            if shard.len() >= SHARD_CAPACITY {
                shard.clear();
            }
            shard.insert(token.into(), (claims, generation));
        }
    }
}

/// What a token is for.
pub struct Subject<'a> {
    /// User id.
    pub user: &'a str,
    /// Tenant and role, if the token acts in a tenant.
    pub tenant: Option<(&'a str, TenantRole)>,
    /// Whether the person is a platform admin.
    pub platform_admin: bool,
}

impl Tokens {
    /// Tokens signed by `keys` for `issuer` and `audience`, living `ttl`.
    pub fn new(keys: Arc<SigningKeys>, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            validation: Arc::new(validation),
            verified: Arc::new(Verified::new()),
        }
    }

    /// Lifetime of the tokens issued.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<SigningKeys> {
        &self.keys
    }

    /// A signed token for `subject`.
    pub fn issue(&self, subject: &Subject<'_>) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::auth::now_ms() / 1000;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user.to_owned(),
            tenant_id: subject.tenant.map(|(t, _)| t.to_owned()),
            role: subject.tenant.map(|(_, r)| r),
            platform_admin: subject.platform_admin,
            exp: now + self.ttl.as_secs(),
            iat: now,
            jti: crate::auth::random_id(),
        };
        let keys = self.keys.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.signing_kid().to_owned());
        jsonwebtoken::encode(&header, &claims, keys.signing_key())
    }

    /// The claims of `token`, if it is one of ours and valid now.
    pub fn verify(&self, token: &str) -> Option<Arc<Claims>> {
        let keys = self.keys.current();
        let now = crate::auth::now_ms() / 1000;
        if let Some(claims) = self.verified.get(token, keys.generation(), now) {
            return Some(claims);
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let key = keys.verifying_key(header.kid.as_deref()?)?;
        let claims = Arc::new(
            jsonwebtoken::decode::<Claims>(token, key, &self.validation)
                .ok()?
                .claims,
        );
        self.verified
            .put(token, keys.generation(), Arc::clone(&claims));
        Some(claims)
    }
}
