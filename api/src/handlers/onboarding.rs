//! Self-service onboarding: sign-up (a person and their tenant on the
//! default plan, in one step that leaves nothing half-created) and email
//! verification.

use axum::Extension;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::api::ObjectMeta;
use schemars::JsonSchema;
use serde::Deserialize;
use veloflux_crds::tenant::TenantRole;
use veloflux_crds::{Tenant, TenantSpec};

use crate::app::AppState;
use crate::auth::access::{AuditNote, Caller};
use crate::auth::password;
use crate::error::{ApiError, FieldError};
use crate::handlers::sessions::{issue, throttle_address};
use crate::http::body::JsonBody;
use crate::notify::Message;
use crate::people::{User, is_plausible_email, normalise_email, verification};

/// The new tenant of a sign-up.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewTenant {
    /// Tenant id: lowercase letters, digits and `-`, 2 to 40 characters; also
    /// its namespace's name. Never reused.
    pub id: String,
    /// Name shown in the console.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Domains to claim, under the platform's self-service parent domains.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Sign-up.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// Email address (the sign-in name; must be confirmed before routes can be created).
    pub email: String,
    /// Password, at least 12 characters.
    pub password: String,
    /// The person's name.
    pub name: String,
    /// The tenant to create.
    pub tenant: NewTenant,
}

/// An email-verification token.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The token from the message (`vfv_…`).
    pub token: String,
}

/// Whether `id` is usable as a self-service tenant id (it names a namespace too).
fn tenant_id_problem(id: &str) -> Option<&'static str> {
    let b = id.as_bytes();
    if b.len() < 2 || b.len() > 40 {
        Some("must be 2 to 40 characters")
    } else if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        || !b[0].is_ascii_lowercase()
        || b[b.len() - 1] == b'-'
    {
        Some(
            "must be lowercase letters, digits and '-', starting with a letter and not ending with '-'",
        )
    } else {
        None
    }
}

/// The Tenant object a sign-up creates.
fn tenant_object(app: &AppState, body: &SignupRequest, email: &str) -> Tenant {
    let mut tenant = Tenant::new(
        &body.tenant.id,
        TenantSpec {
            plan_ref: app.settings.default_plan.clone(),
            display_name: body.tenant.display_name.clone(),
            domains: body.tenant.domains.clone(),
            namespaces: vec![format!(
                "{}{}",
                app.settings.tenant_namespace_prefix, body.tenant.id
            )],
            owners: vec![email.to_owned()],
            oidc: None,
            billing: None,
            suspended: false,
        },
    );
    tenant.metadata = ObjectMeta {
        name: Some(body.tenant.id.clone()),
        labels: Some(
            [(
                "app.kubernetes.io/managed-by".to_owned(),
                "veloflux-api".to_owned(),
            )]
            .into(),
        ),
        ..ObjectMeta::default()
    };
    tenant
}

/// Every problem of a sign-up's body, at once.
async fn problems(
    app: &AppState,
    body: &SignupRequest,
    tenant: &Tenant,
) -> Result<Vec<FieldError>, ApiError> {
    let mut problems = Vec::new();
    if !is_plausible_email(&body.email) {
        problems.push(FieldError::new("email", "must be an email address"));
    }
    if let Some(problem) = password::check_new(&body.password) {
        problems.push(FieldError::new("password", problem));
    }
    if body.name.trim().is_empty() || body.name.len() > 128 {
        problems.push(FieldError::new("name", "must be 1 to 128 characters"));
    }
    if let Some(problem) = tenant_id_problem(&body.tenant.id) {
        problems.push(FieldError::new("tenant.id", problem));
    }
    let object = serde_json::to_value(tenant).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The schema judges the Tenant the sign-up would write; its problems are
    // told in the request's terms, and only for fields the checks above have
    // not already explained (the schema's pattern for the owner, or for the
    // name and namespace made of the id, says the same less plainly).
    let schema = super::schema_problems(
        &object,
        &[
            ("spec.domains", "tenant.domains"),
            ("spec.displayName", "tenant.displayName"),
            ("spec.owners[0]", "email"),
            ("spec.namespaces[0]", "tenant.id"),
            ("metadata.name", "tenant.id"),
        ],
    );
    for problem in schema {
        if !problems.iter().any(|p| p.field == problem.field) {
            problems.push(problem);
        }
    }
    if problems.is_empty() {
        problems.extend(
            super::domain_problems(app, &body.tenant.id, &body.tenant.domains, "tenant.domains")
                .await?,
        );
    }
    Ok(problems)
}

/// `POST /api/signup`.
pub async fn signup(State(app): State<AppState>, request: Request) -> Response {
    match signup_inner(&app, request).await {
        Ok((tokens, note)) => {
            app.metrics.sign_up("ok");
            let mut response = (StatusCode::CREATED, axum::Json(tokens)).into_response();
            response.extensions_mut().insert(note);
            response
        }
        Err(error) => {
            app.metrics.sign_up("refused");
            error.into_response()
        }
    }
}

async fn signup_inner(
    app: &AppState,
    request: Request,
) -> Result<(super::sessions::TokenResponse, AuditNote), ApiError> {
    let request = throttle_address(app, request).await?;
    let JsonBody(body) = JsonBody::<SignupRequest>::from_request(request, &()).await?;
    let email = normalise_email(&body.email);
    let tenant = tenant_object(app, &body, &email);
    let problems = problems(app, &body, &tenant).await?;
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let plan = app.directory.plan(&app.settings.default_plan).await?;
    let Some(plan) = plan else {
        return Err(ApiError::Unavailable(format!(
            "default plan {:?} does not exist",
            app.settings.default_plan
        )));
    };
    if body.tenant.domains.len() > plan.spec.limits.max_domains as usize {
        return Err(ApiError::QuotaExceeded {
            limit: "maxDomains",
            detail: format!(
                "the {} plan allows {} domains; {} were asked for",
                app.settings.default_plan,
                plan.spec.limits.max_domains,
                body.tenant.domains.len()
            ),
        });
    }
    let taken = || ApiError::Conflict {
        detail: format!("tenant id {:?} is taken", body.tenant.id),
        field: Some("tenant.id".into()),
    };
    if app.directory.tenant(&body.tenant.id).await?.is_some()
        || app.people.tenant_record(&body.tenant.id).await?.is_some()
    {
        return Err(taken());
    }
    let hash = app.passwords.hash(body.password.clone()).await?;
    let Some(user) = app
        .people
        .create_user(&email, body.name.trim(), Some(&hash), false)
        .await?
    else {
        return Err(ApiError::Conflict {
            detail: "an account with this email address exists; sign in instead".into(),
            field: Some("email".into()),
        });
    };
    // From here on, a failure undoes what was created before it.
    if !app
        .people
        .create_tenant_record(&body.tenant.id, &user.id)
        .await?
    {
        app.people.delete_user(&user).await?;
        return Err(taken());
    }
    let created = async {
        app.people
            .add_member(&body.tenant.id, &user.id, TenantRole::Owner)
            .await?;
        app.directory.create_tenant(&tenant).await?;
        Ok::<(), ApiError>(())
    }
    .await;
    if let Err(error) = created {
        undo(app, &user, &body.tenant.id).await;
        return Err(error);
    }
    send_verification(app, &user).await;
    let tokens = issue(app, &user, Some((&body.tenant.id, TenantRole::Owner))).await?;
    Ok((
        tokens,
        AuditNote {
            tenant: body.tenant.id.clone(),
            actor: Some(user.id.clone()),
            target: format!("tenant/{}", body.tenant.id),
        },
    ))
}

async fn undo(app: &AppState, user: &User, tenant: &str) {
    let undone = async {
        app.people.delete_tenant_record(tenant).await?;
        app.people.delete_user(user).await?;
        Ok::<(), ApiError>(())
    }
    .await;
    if let Err(error) = undone {
        tracing::error!(tenant, %error, "Failed sign-up not fully undone");
    }
}

/// Sends `user` a verification message; a failed delivery is logged (the
/// person can ask again).
pub async fn send_verification(app: &AppState, user: &User) {
    let token = match verification::issue(&app.redis, &user.id, app.settings.verification_ttl).await
    {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(user = user.id, %error, "Verification token not stored");
            return;
        }
    };
    let link = format!(
        "{}/verify-email?token={token}",
        app.settings.public_url.trim_end_matches('/')
    );
    let message = Message {
        to: user.email.clone(),
        kind: "verify-email",
        subject: "Confirm your email address for VeloFlux".into(),
        body: format!(
            "Hello {},\n\nconfirm your email address: {link}\n",
            user.name
        ),
        link,
        token,
    };
    if let Err(error) = app.notifier.send(&message) {
        tracing::warn!(user = user.id, %error, "Verification message not delivered");
    }
}

/// `POST /api/verify-email`.
pub async fn verify_email(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<VerifyRequest>,
) -> Result<StatusCode, ApiError> {
    let user = verification::consume(&app.redis, &body.token)
        .await?
        .ok_or(ApiError::InvalidToken(
            "unknown, used or expired verification token",
        ))?;
    app.people.set_verified(&user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/me/verification`.
pub async fn resend_verification(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let user = app
        .people
        .user(&caller.user)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if user.email_verified {
        return Err(ApiError::conflict("the email address is already confirmed"));
    }
    send_verification(&app, &user).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::tenant_id_problem;

    #[test]
    fn tenant_ids_are_namespace_safe() {
        assert_eq!(tenant_id_problem("acme"), None);
        assert_eq!(tenant_id_problem("acme-2"), None);
        for bad in [
            "a",
            "Acme",
            "1acme",
            "acme-",
            "ac.me",
            "ac_me",
            &"a".repeat(41),
        ] {
            assert!(tenant_id_problem(bad).is_some(), "{bad}");
        }
    }
}
