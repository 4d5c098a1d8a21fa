//! Tenants: the caller's list, one tenant with its conditions and usage
//! against its plan, display name and domain changes, deletion, and
//! suspension by platform admins.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use veloflux_crds::tenant::TenantRole;
use veloflux_crds::{Condition, Tenant};

use crate::app::AppState;
use crate::auth::access::{Caller, TenantScope};
use crate::error::ApiError;
use crate::http::body::JsonBody;
use crate::people::TenantState;

/// One of the caller's tenants.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummary {
    /// Tenant id.
    pub id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The caller's role.
    pub role: TenantRole,
    /// Lifecycle state.
    pub state: TenantState,
}

/// The caller's tenants.
#[derive(Serialize, JsonSchema)]
pub struct TenantList {
    /// Tenants, by id.
    pub tenants: Vec<TenantSummary>,
}

/// Configuration usage against the plan.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigUsage {
    /// Routes the tenant has.
    pub routes: u32,
    /// The plan's route limit.
    pub max_routes: u32,
    /// Domains the tenant lists.
    pub domains: u32,
    /// The plan's domain limit.
    pub max_domains: u32,
    /// Backends one route may list.
    pub max_backends_per_route: u32,
}

/// A tenant.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// Tenant id.
    pub id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Plan.
    pub plan: String,
    /// Domains it claims.
    pub domains: Vec<String>,
    /// Namespaces its routes live in.
    pub namespaces: Vec<String>,
    /// Whether it is suspended.
    pub suspended: bool,
    /// Lifecycle state.
    pub state: TenantState,
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Status conditions (`Accepted`, `Ready`), as the operator or the
    /// standalone proxy's resolve reports them.
    pub conditions: Vec<Condition>,
    /// Usage against the plan's limits; absent if the plan is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ConfigUsage>,
}

/// A change to a tenant: only the fields given change.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantPatch {
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New domains (the whole list).
    #[serde(default)]
    pub domains: Option<Vec<String>>,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The view of `tenant`.
pub async fn view(app: &AppState, tenant: &Tenant) -> Result<TenantView, ApiError> {
    let id = tenant.metadata.name.clone().unwrap_or_default();
    let record = app.people.tenant_record(&id).await?;
    let plan = app.directory.plan(&tenant.spec.plan_ref).await?;
    let usage = match plan {
        Some(plan) => Some(ConfigUsage {
            routes: count(app.directory.routes(tenant).await?.len()),
            max_routes: plan.spec.limits.max_routes,
            domains: count(tenant.spec.domains.len()),
            max_domains: plan.spec.limits.max_domains,
            max_backends_per_route: plan.spec.limits.max_backends_per_route,
        }),
        None => None,
    };
    let state = match record.as_ref().map(|r| r.state) {
        Some(state) => state,
        None if tenant.spec.suspended => TenantState::Suspended,
        None => TenantState::Active,
    };
    Ok(TenantView {
        id,
        display_name: tenant.spec.display_name.clone(),
        plan: tenant.spec.plan_ref.clone(),
        domains: tenant.spec.domains.clone(),
        namespaces: tenant.spec.namespaces.clone(),
        suspended: tenant.spec.suspended,
        state,
        created_at: tenant
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| record.map(|r| super::rfc3339(r.created_ms))),
        conditions: tenant
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        usage,
    })
}

/// `GET /api/tenants`.
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<TenantList>, ApiError> {
    let mut tenants = Vec::new();
    for (id, role) in app.people.memberships(&caller.user).await? {
        let Some(record) = app.people.tenant_record(&id).await? else {
            continue;
        };
        if record.state == TenantState::Deleted {
            continue;
        }
        let display_name = app
            .directory
            .tenant(&id)
            .await?
            .and_then(|t| t.spec.display_name);
        tenants.push(TenantSummary {
            id,
            display_name,
            role,
            state: record.state,
        });
    }
    Ok(axum::Json(TenantList { tenants }))
}

/// `GET /api/tenants/{tenant}`.
pub async fn get(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<TenantView>, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    Ok(axum::Json(view(&app, &tenant).await?))
}

/// `PATCH /api/tenants/{tenant}`.
pub async fn update(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    JsonBody(patch): JsonBody<TenantPatch>,
) -> Result<axum::Json<TenantView>, ApiError> {
    let mut tenant = super::live_tenant(&app, &scope.tenant).await?;
    if let Some(name) = patch.display_name {
        tenant.spec.display_name = Some(name);
    }
    if let Some(domains) = &patch.domains {
        tenant.spec.domains.clone_from(domains);
    }
    let object = serde_json::to_value(&tenant).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut problems = super::schema_problems(
        &object,
        &[
            ("spec.domains", "domains"),
            ("spec.displayName", "displayName"),
        ],
    );
    if problems.is_empty()
        && let Some(domains) = &patch.domains
    {
        problems.extend(super::domain_problems(&app, &scope.tenant, domains, "domains").await?);
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    if let Some(domains) = &patch.domains
        && let Some(plan) = app.directory.plan(&tenant.spec.plan_ref).await?
        && domains.len() > plan.spec.limits.max_domains as usize
    {
        return Err(ApiError::QuotaExceeded {
            limit: "maxDomains",
            detail: format!(
                "the {} plan allows {} domains",
                tenant.spec.plan_ref, plan.spec.limits.max_domains
            ),
        });
    }
    let updated = app
        .directory
        .update_tenant(&scope.tenant, &tenant.spec)
        .await?;
    Ok(axum::Json(view(&app, &updated).await?))
}

/// `DELETE /api/tenants/{tenant}`: the Tenant and its Routes go (so its
/// routing does); people, memberships, the audit log and billing records
/// stay, and the id is never reused.
pub async fn remove(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<StatusCode, ApiError> {
    super::live_tenant(&app, &scope.tenant).await?;
    app.directory.delete_tenant(&scope.tenant).await?;
    if app.people.tenant_record(&scope.tenant).await?.is_some() {
        app.people
            .set_tenant_state(&scope.tenant, TenantState::Deleted)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn set_suspended(
    app: &AppState,
    tenant: &str,
    suspended: bool,
) -> Result<axum::Json<TenantView>, ApiError> {
    let mut object = super::live_tenant(app, tenant).await?;
    object.spec.suspended = suspended;
    let updated = app.directory.update_tenant(tenant, &object.spec).await?;
    if app.people.tenant_record(tenant).await?.is_some() {
        let state = if suspended {
            TenantState::Suspended
        } else {
            TenantState::Active
        };
        app.people.set_tenant_state(tenant, state).await?;
    }
    Ok(axum::Json(view(app, &updated).await?))
}

/// `POST /api/tenants/{tenant}/suspend`.
pub async fn suspend(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<TenantView>, ApiError> {
    set_suspended(&app, &scope.tenant, true).await
}

/// `POST /api/tenants/{tenant}/resume`.
pub async fn resume(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<TenantView>, ApiError> {
    set_suspended(&app, &scope.tenant, false).await
}
