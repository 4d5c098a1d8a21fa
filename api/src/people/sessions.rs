//! Refresh tokens: opaque, rotating, stored as digests. A sign-in starts a
//! family (`vf:session:{family}`) bound to a person and a tenant; each
//! refresh replaces the family's current token with a new one and keeps
//! the old digest as used. Presenting a used token again means it was
//! copied: the whole family is revoked, the thief's copy and the owner's
//! alike. Logout revokes the family. A family lives as long as
//! `--refresh-token-ttl` from its sign-in; rotation does not extend it.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{Client, HashesInterface, KeysInterface, LuaInterface, SetsInterface};
use veloflux_crds::keys;

use crate::error::ApiError;

/// Prefix of refresh tokens (`vfr_<family>.<secret>`), so leaked ones are
/// recognisable by secret scanners.
pub const PREFIX: &str = "vfr_";

/// What a refresh token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Family id.
    pub family: String,
    /// User id.
    pub user: String,
    /// Tenant the family issues tokens for ("" for none).
    pub tenant: String,
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// It was current: here is the session and the next token.
    Rotated(Session, String),
    /// It had been used already: the family is revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

// KEYS[1] family. ARGV[1] presented digest, ARGV[2] next digest.
// Returns {1, user, tenant} rotated, {2, user} reuse (family deleted), {0}.
const ROTATE: &str = r"
local cur = redis.call('HGET', KEYS[1], 'current')
if not cur then return {0} end
if cur == ARGV[1] then
  redis.call('HSET', KEYS[1], 'current', ARGV[2], 'used:' .. ARGV[1], '1')
  return {1, redis.call('HGET', KEYS[1], 'user'), redis.call('HGET', KEYS[1], 'tenant')}
end
if redis.call('HEXISTS', KEYS[1], 'used:' .. ARGV[1]) == 1 then
  local user = redis.call('HGET', KEYS[1], 'user')
  redis.call('DEL', KEYS[1])
  return {2, user}
end
return {0}";

fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (family, secret) = rest.split_once('.')?;
    (keys::is_valid_id(family) && family.len() == 32 && !secret.is_empty())
        .then_some((family, secret))
}

/// The refresh-token store.
#[derive(Clone)]
pub struct Sessions {
    client: Client,
    ttl: Duration,
}

impl Sessions {
    /// Families in `client`'s Redis, living `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self { client, ttl }
    }

    /// Starts a family for `user` in `tenant`; returns its first token.
    pub async fn start(&self, user: &str, tenant: Option<&str>) -> Result<String, ApiError> {
        let family = crate::auth::random_id();
        let secret = crate::auth::random_secret();
        let key = keys::session(&family);
        let expires =
            crate::auth::now_ms() + u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX / 2);
        let _: i64 = self
            .client
            .hset(
                &key,
                vec![
                    ("user", user.to_owned()),
                    ("tenant", tenant.unwrap_or_default().to_owned()),
                    ("current", crate::auth::digest(&secret)),
                ],
            )
            .await?;
        let _: bool = self
            .client
            .pexpire_at(&key, i64::try_from(expires).unwrap_or(i64::MAX), None)
            .await?;
        let _: i64 = self
            .client
            .sadd(keys::user_sessions(user), family.as_str())
            .await?;
        Ok(format!("{PREFIX}{family}.{secret}"))
    }

    /// Rotates `token` (see [`Rotation`]).
    pub async fn rotate(&self, token: &str) -> Result<Rotation, ApiError> {
        let Some((family, secret)) = split(token) else {
            return Ok(Rotation::Invalid);
        };
        let next = crate::auth::random_secret();
        let result: Vec<fred::types::Value> = self
            .client
            .eval(
                ROTATE,
                vec![keys::session(family)],
                vec![crate::auth::digest(secret), crate::auth::digest(&next)],
            )
            .await?;
        let text = |i: usize| {
            result
                .get(i)
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        match result.first().and_then(fred::types::Value::as_i64) {
            Some(1) => Ok(Rotation::Rotated(
                Session {
                    family: family.to_owned(),
                    user: text(1),
                    tenant: text(2),
                },
                format!("{PREFIX}{family}.{next}"),
            )),
            Some(2) => {
                let user = text(1);
                let _: i64 = self.client.srem(keys::user_sessions(&user), family).await?;
                tracing::warn!(user, family, "Refresh token reused; session family revoked");
                Ok(Rotation::Reused)
            }
            _ => Ok(Rotation::Invalid),
        }
    }

    /// Revokes the family of `token`, if it is current or was used in it;
    /// false for unknown tokens.
    pub async fn revoke(&self, token: &str) -> Result<bool, ApiError> {
        let Some((family, secret)) = split(token) else {
            return Ok(false);
        };
        let key = keys::session(family);
        let fields: HashMap<String, String> = self.client.hgetall(&key).await?;
        let digest = crate::auth::digest(secret);
        let known = fields
            .get("current")
            .is_some_and(|c| crate::auth::constant_time_eq(c, &digest))
            || fields.contains_key(&format!("used:{digest}"));
        if !known {
            return Ok(false);
        }
        let _: i64 = self.client.del(&key).await?;
        if let Some(user) = fields.get("user") {
            let _: i64 = self.client.srem(keys::user_sessions(user), family).await?;
        }
        Ok(true)
    }

    /// Revokes every family of `user` bound to `tenant` (all, with `None`):
    /// after removal from a tenant no refresh yields a token for it.
    pub async fn revoke_user(&self, user: &str, tenant: Option<&str>) -> Result<(), ApiError> {
        let families: Vec<String> = self.client.smembers(keys::user_sessions(user)).await?;
        for family in families {
            let key = keys::session(&family);
            let bound: Option<String> = self.client.hget(&key, "tenant").await?;
            let stale = bound.is_none();
            if stale || tenant.is_none() || bound.as_deref() == tenant {
                let _: i64 = self.client.del(&key).await?;
                let _: i64 = self
                    .client
                    .srem(keys::user_sessions(user), family.as_str())
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_refresh_tokens_are_looked_up() {
        let family = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            split(&format!("vfr_{family}.s3cret")),
            Some((family, "s3cret"))
        );
        assert_eq!(split(&format!("{family}.s3cret")), None);
        assert_eq!(split("vfr_{x}.s"), None);
        assert_eq!(split(&format!("vfr_{family}.")), None);
        assert_eq!(split("vfr_short.s"), None);
    }
}
