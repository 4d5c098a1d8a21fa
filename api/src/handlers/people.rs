//! People of a tenant: members and roles, invitations and accepting them.
//! The last owner can be neither removed nor demoted; a removed person's
//! sessions for the tenant end at once, and a changed role applies from
//! the person's next token.

use axum::Extension;
use axum::extract::{FromRequest as _, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use veloflux_crds::tenant::TenantRole;

use crate::app::AppState;
use crate::auth::access::{AuditNote, Caller, TenantScope};
use crate::auth::password;
use crate::error::{ApiError, FieldError};
use crate::handlers::sessions::{TokenResponse, issue, throttle_address};
use crate::http::body::JsonBody;
use crate::notify::Message;
use crate::people::invitations::{self, Invitation};
use crate::people::{MembershipError, is_plausible_email, normalise_email};

/// A member.
#[derive(Serialize, JsonSchema)]
pub struct Member {
    /// User id.
    pub user: String,
    /// Email address.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: TenantRole,
}

/// The members.
#[derive(Serialize, JsonSchema)]
pub struct MemberList {
    /// Members, by user id.
    pub members: Vec<Member>,
}

/// A new role.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `owner`, `member` or `viewer`.
    pub role: TenantRole,
}

/// An invitation to make.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Address to invite.
    pub email: String,
    /// Role on acceptance.
    pub role: TenantRole,
}

/// Pending invitations.
#[derive(Serialize, JsonSchema)]
pub struct InvitationList {
    /// Invitations, soonest to expire first.
    pub invitations: Vec<Invitation>,
}

/// Accepting an invitation. A new address signs up with `name` and
/// `password`; an existing person proves it is them with their password or
/// a bearer token of theirs.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The token from the invitation (`vfi_…`).
    pub token: String,
    /// Name, for a new account.
    #[serde(default)]
    pub name: Option<String>,
    /// Password: a new account's, or the existing account's.
    #[serde(default)]
    pub password: Option<String>,
}

/// `GET /api/tenants/{tenant}/members`.
pub async fn members(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<MemberList>, ApiError> {
    super::live_tenant(&app, &scope.tenant).await?;
    let mut members = Vec::new();
    for (user, role) in app.people.members(&scope.tenant).await? {
        if let Some(person) = app.people.user(&user).await? {
            members.push(Member {
                user,
                email: person.email,
                name: person.name,
                role,
            });
        }
    }
    Ok(axum::Json(MemberList { members }))
}

fn membership_error(error: MembershipError) -> ApiError {
    match error {
        MembershipError::NotMember => ApiError::NotFound("member"),
        MembershipError::LastOwner => ApiError::conflict(
            "the tenant's last owner cannot be removed or demoted; make someone else owner first",
        ),
    }
}

/// `PATCH /api/tenants/{tenant}/members/{user}`.
pub async fn change_role(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    Path((_, user)): Path<(String, String)>,
    JsonBody(change): JsonBody<RoleChange>,
) -> Result<axum::Json<Member>, ApiError> {
    super::live_tenant(&app, &scope.tenant).await?;
    app.people
        .set_role(&scope.tenant, &user, Some(change.role))
        .await?
        .map_err(membership_error)?;
    let person = app
        .people
        .user(&user)
        .await?
        .ok_or(ApiError::NotFound("member"))?;
    Ok(axum::Json(Member {
        user,
        email: person.email,
        name: person.name,
        role: change.role,
    }))
}

/// `DELETE /api/tenants/{tenant}/members/{user}`.
pub async fn remove(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    Path((_, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    super::live_tenant(&app, &scope.tenant).await?;
    app.people
        .set_role(&scope.tenant, &user, None)
        .await?
        .map_err(membership_error)?;
    app.sessions.revoke_user(&user, Some(&scope.tenant)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/tenants/{tenant}/invitations`.
pub async fn invitations(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<InvitationList>, ApiError> {
    super::live_tenant(&app, &scope.tenant).await?;
    Ok(axum::Json(InvitationList {
        invitations: invitations::pending(&app.redis, &scope.tenant).await?,
    }))
}

/// `POST /api/tenants/{tenant}/invitations`.
pub async fn invite(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(scope): Extension<TenantScope>,
    JsonBody(body): JsonBody<InviteRequest>,
) -> Result<(StatusCode, axum::Json<Invitation>), ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    if !is_plausible_email(&body.email) {
        return Err(ApiError::invalid("email", "must be an email address"));
    }
    let email = normalise_email(&body.email);
    if let Some(existing) = app.people.user_by_email(&email).await?
        && app
            .people
            .role(&scope.tenant, &existing.id)
            .await?
            .is_some()
    {
        return Err(ApiError::Conflict {
            detail: "this person is already a member".into(),
            field: Some("email".into()),
        });
    }
    let (invitation, token) = invitations::create(
        &app.redis,
        &scope.tenant,
        &email,
        body.role,
        &caller.user,
        app.settings.invitation_ttl,
    )
    .await?;
    let link = format!(
        "{}/invitations/accept?token={token}",
        app.settings.public_url.trim_end_matches('/')
    );
    let name = tenant.spec.display_name.as_deref().unwrap_or(&scope.tenant);
    let message = Message {
        to: email,
        kind: "invitation",
        subject: format!("You are invited to {name} on VeloFlux"),
        body: format!(
            "You are invited to join {name} as {}: {link}\n",
            body.role.as_str()
        ),
        link,
        token,
    };
    if let Err(error) = app.notifier.send(&message) {
        tracing::warn!(tenant = scope.tenant, %error, "Invitation not delivered");
    }
    Ok((StatusCode::CREATED, axum::Json(invitation)))
}

/// `DELETE /api/tenants/{tenant}/invitations/{invitation}`.
pub async fn revoke_invitation(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if invitations::revoke(&app.redis, &scope.tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("invitation"))
    }
}

/// `POST /api/invitations/accept`.
pub async fn accept(State(app): State<AppState>, request: Request) -> Response {
    match accept_inner(&app, request).await {
        Ok((tokens, note)) => {
            let mut response = axum::Json(tokens).into_response();
            response.extensions_mut().insert(note);
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn accept_inner(
    app: &AppState,
    request: Request,
) -> Result<(TokenResponse, AuditNote), ApiError> {
    let request = throttle_address(app, request).await?;
    let (parts, body) = request.into_parts();
    let bearer_caller = crate::auth::access::caller(app, &parts);
    let JsonBody(body) =
        JsonBody::<AcceptRequest>::from_request(Request::from_parts(parts, body), &()).await?;
    let gone = || ApiError::InvalidToken("unknown, used or expired invitation");
    // Read first, take last: a wrong password must not spend the invitation,
    // and two accepts racing still take it once.
    let invitation = invitations::peek(&app.redis, &body.token)
        .await?
        .ok_or_else(gone)?;
    // A deleted tenant takes no one in: its invitations die with it.
    match super::live_tenant(app, &invitation.tenant).await {
        Ok(_) => {}
        Err(ApiError::NotFound(_)) => return Err(gone()),
        Err(error) => return Err(error),
    }
    let user = match app.people.user_by_email(&invitation.email).await? {
        Some(user) => {
            let by_token = bearer_caller.is_some_and(|c| c.user == user.id);
            let by_password = match &body.password {
                Some(password) if !by_token => {
                    app.passwords
                        .verify(password.clone(), user.password_hash.clone())
                        .await?
                }
                _ => false,
            };
            if !by_token && !by_password {
                return Err(ApiError::InvalidCredentials);
            }
            user
        }
        None => {
            let mut problems = Vec::new();
            let name = body.name.as_deref().map(str::trim).unwrap_or_default();
            if name.is_empty() || name.len() > 128 {
                problems.push(FieldError::new("name", "must be 1 to 128 characters"));
            }
            match body.password.as_deref() {
                None => problems.push(FieldError::new("password", "required for a new account")),
                Some(password) => {
                    if let Some(problem) = password::check_new(password) {
                        problems.push(FieldError::new("password", problem));
                    }
                }
            }
            if !problems.is_empty() {
                return Err(ApiError::Invalid(problems));
            }
            let hash = app
                .passwords
                .hash(body.password.clone().unwrap_or_default())
                .await?;
            // The invitation reached this address: it is verified.
            app.people
                .create_user(&invitation.email, name, Some(&hash), true)
                .await?
                .ok_or_else(|| {
                    ApiError::conflict(
                        "an account with this address was just created; sign in and accept again",
                    )
                })?
        }
    };
    if app
        .people
        .role(&invitation.tenant, &user.id)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict("already a member of this tenant"));
    }
    if invitations::take(&app.redis, &body.token).await?.is_none() {
        return Err(gone());
    }
    if !app
        .people
        .add_member(&invitation.tenant, &user.id, invitation.role)
        .await?
    {
        return Err(ApiError::conflict("already a member of this tenant"));
    }
    if !user.email_verified {
        app.people.set_verified(&user.id).await?;
    }
    let tokens = issue(app, &user, Some((&invitation.tenant, invitation.role))).await?;
    Ok((
        tokens,
        AuditNote {
            tenant: invitation.tenant.clone(),
            actor: Some(user.id.clone()),
            target: format!("member/{}", user.id),
        },
    ))
}
