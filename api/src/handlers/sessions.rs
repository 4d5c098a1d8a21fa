//! Sessions: password sign-in, refresh-token rotation, logout, switching
//! tenants, and `/api/me`.

use axum::Extension;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use veloflux_crds::tenant::TenantRole;

use crate::app::AppState;
use crate::auth::access::Caller;
use crate::auth::throttle::{Scope, client_address};
use crate::auth::tokens::Subject;
use crate::error::ApiError;
use crate::http::body::JsonBody;
use crate::people::sessions::Rotation;
use crate::people::{TenantState, User, normalise_email};

/// Sign-in.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
    /// Tenant to sign in to (default: the first of the person's tenants).
    #[serde(default)]
    pub tenant: Option<String>,
}

/// A refresh token.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token (`vfr_…`).
    pub refresh_token: String,
}

/// Tokens for another tenant.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// The tenant.
    pub tenant: String,
}

/// A session's tokens.
#[derive(Serialize, JsonSchema)]
pub struct TokenResponse {
    /// The access token (JWT), for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// The refresh token (single use: each refresh returns the next).
    pub refresh_token: String,
    /// The tenant the access token acts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The role in that tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<TenantRole>,
}

/// One membership.
#[derive(Serialize, JsonSchema)]
pub struct Membership {
    /// Tenant id.
    pub tenant: String,
    /// Role in it.
    pub role: TenantRole,
}

/// The caller.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    /// User id.
    pub id: String,
    /// Email address.
    pub email: String,
    /// Name.
    pub name: String,
    /// Whether the email address is confirmed.
    pub email_verified: bool,
    /// Platform admin.
    pub platform_admin: bool,
    /// The tenant the presented token acts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_tenant: Option<String>,
    /// Every tenant the person belongs to.
    pub tenants: Vec<Membership>,
}

/// Starts a session for `user` in `tenant` and returns its tokens.
pub async fn issue(
    app: &AppState,
    user: &User,
    tenant: Option<(&str, TenantRole)>,
) -> Result<TokenResponse, ApiError> {
    let refresh_token = app.sessions.start(&user.id, tenant.map(|t| t.0)).await?;
    access(app, user, tenant, refresh_token)
}

fn access(
    app: &AppState,
    user: &User,
    tenant: Option<(&str, TenantRole)>,
    refresh_token: String,
) -> Result<TokenResponse, ApiError> {
    let access_token = app
        .tokens
        .issue(&Subject {
            user: &user.id,
            tenant,
            platform_admin: user.platform_admin,
        })
        .map_err(|e| ApiError::Internal(format!("signing: {e}")))?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: app.tokens.ttl().as_secs(),
        refresh_token,
        tenant_id: tenant.map(|t| t.0.to_owned()),
        role: tenant.map(|t| t.1),
    })
}

/// The live tenants of `user` and the role in each.
async fn live_memberships(
    app: &AppState,
    user: &str,
) -> Result<Vec<(String, TenantRole)>, ApiError> {
    let mut live = Vec::new();
    for (tenant, role) in app.people.memberships(user).await? {
        let state = app.people.tenant_record(&tenant).await?.map(|r| r.state);
        if state.is_some_and(|s| s != TenantState::Deleted) {
            live.push((tenant, role));
        }
    }
    Ok(live)
}

/// Counts an attempt from `request`'s client address and returns the
/// request; refuses it past the address's limit.
pub async fn throttle_address(app: &AppState, request: Request) -> Result<Request, ApiError> {
    let address = client_address(&request, app.settings.trust_forwarded_for);
    if let Some(ip) = address {
        app.throttle.hit(Scope::Address, &ip.to_string()).await?;
    }
    Ok(request)
}

/// `POST /api/sessions`.
pub async fn login(State(app): State<AppState>, request: Request) -> Response {
    match login_inner(&app, request).await {
        Ok(tokens) => {
            app.metrics.sign_in("ok");
            axum::Json(tokens).into_response()
        }
        Err(error) => {
            app.metrics.sign_in(match error {
                ApiError::TooManyRequests { .. } => "throttled",
                _ => "refused",
            });
            error.into_response()
        }
    }
}

async fn login_inner(app: &AppState, request: Request) -> Result<TokenResponse, ApiError> {
    let request = throttle_address(app, request).await?;
    let JsonBody(body) = JsonBody::<LoginRequest>::from_request(request, &()).await?;
    let email = normalise_email(&body.email);
    app.throttle
        .hit(Scope::Account, &crate::auth::digest(&email))
        .await?;
    let user = app.people.user_by_email(&email).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matched = app.passwords.verify(body.password, hash).await?;
    let Some(user) = user.filter(|_| matched) else {
        return Err(ApiError::InvalidCredentials);
    };
    let memberships = live_memberships(app, &user.id).await?;
    let tenant = match &body.tenant {
        Some(wanted) => Some(
            memberships
                .iter()
                .find(|(t, _)| t == wanted)
                .ok_or(ApiError::NotFound("tenant"))?,
        ),
        None => memberships.first(),
    };
    issue(app, &user, tenant.map(|(t, r)| (t.as_str(), *r))).await
}

/// `POST /api/sessions/refresh`: the role comes from the membership now,
/// so a role change takes effect with the next refresh.
pub async fn refresh(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let (session, next) = match app.sessions.rotate(&body.refresh_token).await? {
        Rotation::Rotated(session, next) => (session, next),
        Rotation::Reused => {
            return Err(ApiError::InvalidToken(
                "refresh token already used: every token of this sign-in is revoked",
            ));
        }
        Rotation::Invalid => {
            return Err(ApiError::InvalidToken("unknown or expired refresh token"));
        }
    };
    let user = app
        .people
        .user(&session.user)
        .await?
        .ok_or(ApiError::InvalidToken("unknown or expired refresh token"))?;
    let tenant = if session.tenant.is_empty() {
        None
    } else {
        let role = app.people.role(&session.tenant, &user.id).await?;
        let live = app
            .people
            .tenant_record(&session.tenant)
            .await?
            .is_some_and(|r| r.state != TenantState::Deleted);
        match role.filter(|_| live) {
            Some(role) => Some((session.tenant.as_str(), role)),
            None => {
                app.sessions.revoke(&next).await?;
                return Err(ApiError::InvalidToken("no longer a member of this tenant"));
            }
        }
    };
    Ok(axum::Json(access(&app, &user, tenant, next)?))
}

/// `POST /api/sessions/logout`: revokes the family; unknown tokens are
/// answered alike.
pub async fn logout(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    app.sessions.revoke(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/sessions/switch`.
pub async fn switch(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<SwitchRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let user = app
        .people
        .user(&caller.user)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let memberships = live_memberships(&app, &user.id).await?;
    let (tenant, role) = memberships
        .iter()
        .find(|(t, _)| *t == body.tenant)
        .ok_or(ApiError::NotFound("tenant"))?;
    Ok(axum::Json(issue(&app, &user, Some((tenant, *role))).await?))
}

/// `GET /api/me`.
pub async fn me(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<MeResponse>, ApiError> {
    let user = app
        .people
        .user(&caller.user)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    let tenants = live_memberships(&app, &user.id)
        .await?
        .into_iter()
        .map(|(tenant, role)| Membership { tenant, role })
        .collect();
    Ok(axum::Json(MeResponse {
        id: user.id,
        email: user.email,
        name: user.name,
        email_verified: user.email_verified,
        platform_admin: user.platform_admin,
        current_tenant: caller.tenant,
        tenants,
    }))
}
