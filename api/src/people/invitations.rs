//! Invitations: an owner invites an email address with a role; the token
//! (`vfi_<tenant>.<secret>`, sent through the notifier) is single-use and
//! expires. It is stored as its digest under the tenant's keys, so taking
//! it is one atomic step in the tenant's slot.

use std::collections::HashMap;
use std::time::Duration;

use fred::prelude::{Client, LuaInterface, SortedSetsInterface};
use serde::Serialize;
use veloflux_crds::keys;
use veloflux_crds::tenant::TenantRole;

use crate::error::ApiError;

/// Prefix of invitation tokens.
pub const PREFIX: &str = "vfi_";

/// A pending invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// Id (the token's digest, which reveals nothing of the token).
    pub id: String,
    /// Tenant invited into.
    pub tenant: String,
    /// Invited address.
    pub email: String,
    /// Role on acceptance.
    pub role: TenantRole,
    /// Who invited (user id).
    pub invited_by: String,
    /// Expiry (Unix ms).
    pub expires_ms: u64,
}

// KEYS[1] invitation, KEYS[2] index. ARGV: email, role, inviter, expires, ttl ms, id.
const CREATE: &str = r"
redis.call('HSET', KEYS[1], 'email', ARGV[1], 'role', ARGV[2], 'invited_by', ARGV[3], 'expires_ms', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[7])
return 1";

// Take an invitation once. KEYS[1] invitation, KEYS[2] index, ARGV[1] id.
const TAKE: &str = r"
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return fields";

fn split(token: &str) -> Option<(&str, &str)> {
    let (tenant, secret) = token.strip_prefix(PREFIX)?.split_once('.')?;
    (keys::is_valid_id(tenant) && !secret.is_empty()).then_some((tenant, secret))
}

fn from_fields(tenant: &str, id: &str, fields: &HashMap<String, String>) -> Option<Invitation> {
    Some(Invitation {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        email: fields.get("email")?.clone(),
        role: TenantRole::parse(fields.get("role")?)?,
        invited_by: fields.get("invited_by").cloned().unwrap_or_default(),
        expires_ms: fields.get("expires_ms")?.parse().ok()?,
    })
}

/// Creates an invitation; returns it and its token.
pub async fn create(
    client: &Client,
    tenant: &str,
    email: &str,
    role: TenantRole,
    invited_by: &str,
    ttl: Duration,
) -> Result<(Invitation, String), ApiError> {
    let secret = crate::auth::random_secret();
    let id = crate::auth::digest(&secret);
    let now = crate::auth::now_ms();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2);
    let invitation = Invitation {
        id: id.clone(),
        tenant: tenant.to_owned(),
        email: email.to_owned(),
        role,
        invited_by: invited_by.to_owned(),
        expires_ms: now + ttl_ms,
    };
    let _: i64 = client
        .eval(
            CREATE,
            vec![
                keys::tenant_invitation(tenant, &id),
                keys::tenant_invitations(tenant),
            ],
            vec![
                email.to_owned(),
                role.as_str().to_owned(),
                invited_by.to_owned(),
                invitation.expires_ms.to_string(),
                ttl_ms.to_string(),
                id,
                now.to_string(),
            ],
        )
        .await?;
    Ok((invitation, format!("{PREFIX}{tenant}.{secret}")))
}

/// Takes the invitation of `token`, once; `None` if unknown, used or expired.
pub async fn take(client: &Client, token: &str) -> Result<Option<Invitation>, ApiError> {
    let Some((tenant, secret)) = split(token) else {
        return Ok(None);
    };
    let id = crate::auth::digest(secret);
    let fields: HashMap<String, String> = client
        .eval(
            TAKE,
            vec![
                keys::tenant_invitation(tenant, &id),
                keys::tenant_invitations(tenant),
            ],
            vec![id.clone()],
        )
        .await?;
    Ok(from_fields(tenant, &id, &fields).filter(|i| i.expires_ms > crate::auth::now_ms()))
}

/// The invitation of `token`, without taking it.
pub async fn peek(client: &Client, token: &str) -> Result<Option<Invitation>, ApiError> {
    let Some((tenant, secret)) = split(token) else {
        return Ok(None);
    };
    let id = crate::auth::digest(secret);
    let fields: HashMap<String, String> =
        fred::prelude::HashesInterface::hgetall(client, keys::tenant_invitation(tenant, &id))
            .await?;
    Ok(from_fields(tenant, &id, &fields).filter(|i| i.expires_ms > crate::auth::now_ms()))
}

/// The pending invitations of `tenant`, soonest to expire first.
pub async fn pending(client: &Client, tenant: &str) -> Result<Vec<Invitation>, ApiError> {
    let now = crate::auth::now_ms();
    let ids: Vec<String> = client
        .zrangebyscore(
            keys::tenant_invitations(tenant),
            now as f64,
            "+inf",
            false,
            None,
        )
        .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let fields: HashMap<String, String> =
            fred::prelude::HashesInterface::hgetall(client, keys::tenant_invitation(tenant, &id))
                .await?;
        if let Some(invitation) = from_fields(tenant, &id, &fields) {
            out.push(invitation);
        }
    }
    Ok(out)
}

/// Revokes the invitation `id` of `tenant`; false if there was none.
pub async fn revoke(client: &Client, tenant: &str, id: &str) -> Result<bool, ApiError> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let fields: HashMap<String, String> = client
        .eval(
            TAKE,
            vec![
                keys::tenant_invitation(tenant, id),
                keys::tenant_invitations(tenant),
            ],
            vec![id.to_owned()],
        )
        .await?;
    Ok(!fields.is_empty())
}
