//! People in Redis: users (`vf:user:{u}`), the email index
//! (`vf:email:{digest}`), the SaaS record of each tenant (`vf:tenant:{t}`:
//! who created it, when, its lifecycle state), memberships
//! (`vf:tenant:{t}:users`, mirrored in `vf:user:{u}:tenants` for listing),
//! plus sessions, invitations, email verification and the audit log in the
//! submodules.
//!
//! Every multi-key step touches one hash slot (a Lua script on the tenant's
//! or the user's keys), so single node, Sentinel and Cluster behave alike.
//! The tenant side of a membership is the authority (the last-owner rule is
//! checked there, atomically); the user side follows it.

pub mod audit;
pub mod invitations;
pub mod sessions;
pub mod verification;

use std::collections::HashMap;

use fred::prelude::{Client, Expiration, HashesInterface, KeysInterface, LuaInterface, SetOptions};
use serde::Serialize;
use veloflux_crds::keys;
use veloflux_crds::tenant::TenantRole;

use crate::error::ApiError;

/// One person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Random id.
    pub id: String,
    /// Normalised email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string; none for people who sign in elsewhere.
    pub password_hash: Option<String>,
    /// Whether the email address is confirmed.
    pub email_verified: bool,
    /// May act on every tenant.
    pub platform_admin: bool,
    /// Creation time (Unix ms).
    pub created_ms: u64,
}

/// Lifecycle of a tenant's SaaS record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TenantState {
    /// Serving.
    Active,
    /// Suspended by a platform admin.
    Suspended,
    /// Deleted: routing is gone; people, audit and billing records stay.
    Deleted,
}

impl TenantState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "suspended" => Self::Suspended,
            "deleted" => Self::Deleted,
            _ => Self::Active,
        }
    }
}

/// The SaaS record of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// Tenant id.
    pub id: String,
    /// User id of whoever created it.
    pub created_by: String,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Lifecycle state.
    pub state: TenantState,
}

/// Why a membership change is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipError {
    /// The person is not a member.
    NotMember,
    /// It would leave the tenant without an owner.
    LastOwner,
}

/// Normalises an email address for lookups: trimmed, lowercased.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// Whether `email` looks like an address: one `@`, something on each side,
/// a dot in the domain, no spaces or control characters, at most 254 bytes.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !domain.contains('@')
        && email
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '{' && c != '}')
}

// Set a role on the tenant side, refusing to leave no owner.
// KEYS[1] tenant users hash. ARGV[1] user, ARGV[2] new role or "" to remove.
// Returns 1 done, 0 not a member, -1 last owner.
const SET_ROLE: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
if current == 'owner' and ARGV[2] ~= 'owner' then
  local owners = 0
  local all = redis.call('HVALS', KEYS[1])
  for i = 1, #all do if all[i] == 'owner' then owners = owners + 1 end end
  if owners <= 1 then return -1 end
end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1";

// Create a tenant record only if none exists. KEYS[1] record.
const CREATE_RECORD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'created_by', ARGV[1], 'created_ms', ARGV[2], 'state', 'active')
return 1";

/// The people store.
#[derive(Clone)]
pub struct People {
    client: Client,
}

impl People {
    /// The store in `client`'s Redis.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The Redis client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a person; `None` if the email address is taken.
    pub async fn create_user(
        &self,
        email: &str,
        name: &str,
        password_hash: Option<&str>,
        email_verified: bool,
    ) -> Result<Option<User>, ApiError> {
        let email = normalise_email(email);
        let id = crate::auth::random_id();
        let claimed: Option<String> = self
            .client
            .set(
                keys::email(&crate::auth::digest(&email)),
                id.as_str(),
                None::<Expiration>,
                Some(SetOptions::NX),
                false,
            )
            .await?;
        if claimed.is_none() {
            return Ok(None);
        }
        let user = User {
            id,
            email,
            name: name.to_owned(),
            password_hash: password_hash.map(str::to_owned),
            email_verified,
            platform_admin: false,
            created_ms: crate::auth::now_ms(),
        };
        let mut fields = vec![
            ("email", user.email.clone()),
            ("name", user.name.clone()),
            ("verified", u8::from(email_verified).to_string()),
            ("created_ms", user.created_ms.to_string()),
        ];
        if let Some(hash) = &user.password_hash {
            fields.push(("password", hash.clone()));
        }
        let written: Result<(), _> = self.client.hset(keys::user(&user.id), fields).await;
        if let Err(error) = written {
            self.release_email(&user.email).await;
            return Err(error.into());
        }
        Ok(Some(user))
    }

    async fn release_email(&self, email: &str) {
        let released: Result<i64, _> = self
            .client
            .del(keys::email(&crate::auth::digest(email)))
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "Email index entry not released");
        }
    }

    /// Removes a person created moments ago (undoing a sign-up that failed
    /// later on), email index entry included.
    pub async fn delete_user(&self, user: &User) -> Result<(), ApiError> {
        let _: i64 = self
            .client
            .del(vec![keys::user(&user.id), keys::user_tenants(&user.id)])
            .await?;
        self.release_email(&user.email).await;
        Ok(())
    }

    /// The person `id`.
    pub async fn user(&self, id: &str) -> Result<Option<User>, ApiError> {
        if !keys::is_valid_id(id) {
            return Ok(None);
        }
        let fields: HashMap<String, String> = self.client.hgetall(keys::user(id)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
        Ok(Some(User {
            id: id.to_owned(),
            email: get("email"),
            name: get("name"),
            password_hash: fields.get("password").cloned(),
            email_verified: get("verified") == "1",
            platform_admin: get("platform_admin") == "1",
            created_ms: get("created_ms").parse().unwrap_or(0),
        }))
    }

    /// The person with `email`.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>, ApiError> {
        let email = normalise_email(email);
        let id: Option<String> = self
            .client
            .get(keys::email(&crate::auth::digest(&email)))
            .await?;
        match id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    /// Marks the person's email address as confirmed.
    pub async fn set_verified(&self, id: &str) -> Result<(), ApiError> {
        let _: i64 = self.client.hset(keys::user(id), ("verified", "1")).await?;
        Ok(())
    }

    /// Grants or revokes the platform-admin flag.
    pub async fn set_platform_admin(&self, id: &str, admin: bool) -> Result<(), ApiError> {
        let _: i64 = self
            .client
            .hset(
                keys::user(id),
                ("platform_admin", if admin { "1" } else { "0" }),
            )
            .await?;
        Ok(())
    }

    /// Creates the SaaS record of `tenant`; false if it exists (a tenant id
    /// is never reused, even after deletion).
    pub async fn create_tenant_record(
        &self,
        tenant: &str,
        created_by: &str,
    ) -> Result<bool, ApiError> {
        let created: i64 = self
            .client
            .eval(
                CREATE_RECORD,
                vec![keys::tenant(tenant)],
                vec![created_by.to_owned(), crate::auth::now_ms().to_string()],
            )
            .await?;
        Ok(created == 1)
    }

    /// Removes a tenant record created moments ago (undoing a failed sign-up).
    pub async fn delete_tenant_record(&self, tenant: &str) -> Result<(), ApiError> {
        let _: i64 = self
            .client
            .del(vec![keys::tenant(tenant), keys::tenant_users(tenant)])
            .await?;
        Ok(())
    }

    /// The SaaS record of `tenant`.
    pub async fn tenant_record(&self, tenant: &str) -> Result<Option<TenantRecord>, ApiError> {
        let fields: HashMap<String, String> = self.client.hgetall(keys::tenant(tenant)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
        Ok(Some(TenantRecord {
            id: tenant.to_owned(),
            created_by: get("created_by"),
            created_ms: get("created_ms").parse().unwrap_or(0),
            state: TenantState::parse(&get("state")),
        }))
    }

    /// Sets the lifecycle state of `tenant`.
    pub async fn set_tenant_state(&self, tenant: &str, state: TenantState) -> Result<(), ApiError> {
        let _: i64 = self
            .client
            .hset(keys::tenant(tenant), ("state", state.as_str()))
            .await?;
        Ok(())
    }

    /// Adds `user` to `tenant` with `role` (or changes nothing if already a
    /// member); true if added.
    pub async fn add_member(
        &self,
        tenant: &str,
        user: &str,
        role: TenantRole,
    ) -> Result<bool, ApiError> {
        let added: bool = self
            .client
            .hsetnx(keys::tenant_users(tenant), user, role.as_str())
            .await?;
        if added {
            let _: i64 = self
                .client
                .hset(keys::user_tenants(user), (tenant, role.as_str()))
                .await?;
        }
        Ok(added)
    }

    /// Changes the role of `user` in `tenant` (`None` removes them), never
    /// leaving the tenant without an owner.
    pub async fn set_role(
        &self,
        tenant: &str,
        user: &str,
        role: Option<TenantRole>,
    ) -> Result<Result<(), MembershipError>, ApiError> {
        let done: i64 = self
            .client
            .eval(
                SET_ROLE,
                vec![keys::tenant_users(tenant)],
                vec![
                    user.to_owned(),
                    role.map_or("", TenantRole::as_str).to_owned(),
                ],
            )
            .await?;
        match done {
            1 => {
                match role {
                    Some(role) => {
                        let _: i64 = self
                            .client
                            .hset(keys::user_tenants(user), (tenant, role.as_str()))
                            .await?;
                    }
                    None => {
                        let _: i64 = self.client.hdel(keys::user_tenants(user), tenant).await?;
                    }
                }
                Ok(Ok(()))
            }
            -1 => Ok(Err(MembershipError::LastOwner)),
            _ => Ok(Err(MembershipError::NotMember)),
        }
    }

    /// The members of `tenant` and their roles.
    pub async fn members(&self, tenant: &str) -> Result<Vec<(String, TenantRole)>, ApiError> {
        let fields: HashMap<String, String> =
            self.client.hgetall(keys::tenant_users(tenant)).await?;
        let mut members: Vec<(String, TenantRole)> = fields
            .into_iter()
            .filter_map(|(user, role)| Some((user, TenantRole::parse(&role)?)))
            .collect();
        members.sort();
        Ok(members)
    }

    /// The role of `user` in `tenant`, if a member (the authority).
    pub async fn role(&self, tenant: &str, user: &str) -> Result<Option<TenantRole>, ApiError> {
        let role: Option<String> = self.client.hget(keys::tenant_users(tenant), user).await?;
        Ok(role.as_deref().and_then(TenantRole::parse))
    }

    /// The tenants `user` belongs to, with the role in each, by tenant id.
    pub async fn memberships(&self, user: &str) -> Result<Vec<(String, TenantRole)>, ApiError> {
        let fields: HashMap<String, String> = self.client.hgetall(keys::user_tenants(user)).await?;
        let mut memberships: Vec<(String, TenantRole)> = fields
            .into_iter()
            .filter_map(|(tenant, role)| Some((tenant, TenantRole::parse(&role)?)))
            .collect();
        memberships.sort();
        Ok(memberships)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_are_told_from_implausible_ones() {
        for good in ["a@b.co", "first.last+tag@sub.example.com"] {
            assert!(is_plausible_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a@b.co.", "a b@c.co", "a@b@c.co", "{x}@b.co",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }
}
