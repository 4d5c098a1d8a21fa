//! Routes of a tenant: listed and read with their conditions, created,
//! replaced and deleted as `Route` objects. A change is checked the way the
//! cluster would check it (the CRD's schema and CEL rules, by field), then
//! against the plan (`maxRoutes`, `maxBackendsPerRoute`, and `resolve`'s
//! admission of the route for this tenant: hosts within its domains,
//! features in its plan), before anything is written.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kube::api::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use veloflux_crds::resolve::Inputs;
use veloflux_crds::{Condition, ConditionStatus, ConditionType, Route, RouteSpec, Tenant};

use crate::app::AppState;
use crate::auth::access::{Caller, TenantScope};
use crate::error::{ApiError, FieldError};
use crate::http::body::JsonBody;

/// A route.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The spec, as in the `Route` object.
    pub spec: RouteSpec,
    /// `Accepted`, `ResolvedRefs`, `Programmed`, `Ready`.
    pub conditions: Vec<Condition>,
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// The routes.
#[derive(Serialize, JsonSchema)]
pub struct RouteList {
    /// Routes, oldest first (the order quotas admit them in).
    pub routes: Vec<RouteView>,
}

/// A route to create.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCreate {
    /// Name (a DNS name: lowercase letters, digits, `-`, `.`).
    pub name: String,
    /// Namespace (default: the tenant's first).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Route's spec; `tenantRef` may be left out (it is the tenant).
    #[schemars(with = "RouteSpec")]
    pub spec: Value,
}

/// A route's new spec.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteUpdate {
    /// The Route's spec; `tenantRef` may be left out (it is the tenant).
    #[schemars(with = "RouteSpec")]
    pub spec: Value,
}

/// The view of `route`.
pub fn view(route: &Route) -> RouteView {
    RouteView {
        name: route.metadata.name.clone().unwrap_or_default(),
        namespace: route.metadata.namespace.clone().unwrap_or_default(),
        spec: route.spec.clone(),
        conditions: route
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        created_at: route
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
    }
}

/// `GET /api/tenants/{tenant}/routes`.
pub async fn list(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<RouteList>, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    let routes = app.directory.routes(&tenant).await?;
    Ok(axum::Json(RouteList {
        routes: routes.iter().map(view).collect(),
    }))
}

/// The route `name` of `tenant`, wherever in its namespaces it lives.
async fn find(app: &AppState, tenant: &Tenant, name: &str) -> Result<Route, ApiError> {
    app.directory
        .routes(tenant)
        .await?
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .ok_or(ApiError::NotFound("route"))
}

/// `GET /api/tenants/{tenant}/routes/{route}`.
pub async fn get(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    Path((_, name)): Path<(String, String)>,
) -> Result<axum::Json<RouteView>, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    Ok(axum::Json(view(&find(&app, &tenant, &name).await?)))
}

/// Checks a route change of `caller` in `tenant` and returns the spec to
/// write. `existing` are the tenant's routes other than this one.
async fn checked_spec(
    app: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    namespace: &str,
    name: &str,
    mut spec: Value,
    existing: &[Route],
) -> Result<RouteSpec, ApiError> {
    let user = app
        .people
        .user(&caller.user)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if !user.email_verified && !user.platform_admin {
        return Err(ApiError::EmailNotVerified);
    }
    if tenant.spec.suspended {
        return Err(ApiError::TenantSuspended);
    }
    let tenant_id = tenant.metadata.name.clone().unwrap_or_default();
    let Some(fields) = spec.as_object_mut() else {
        return Err(ApiError::invalid("spec", "must be an object"));
    };
    match fields.get("tenantRef") {
        None => {
            fields.insert("tenantRef".into(), Value::String(tenant_id.clone()));
        }
        Some(Value::String(t)) if *t == tenant_id => {}
        Some(_) => {
            return Err(ApiError::invalid(
                "spec.tenantRef",
                format!("must be {tenant_id:?} (or left out)"),
            ));
        }
    }
    let object = serde_json::json!({
        "apiVersion": "veloflux.io/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    let problems = super::schema_problems(&object, &[]);
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let spec: RouteSpec =
        crate::http::body::parse(&serde_json::to_vec(&object["spec"]).unwrap_or_default())
            .map_err(|e| match e {
                ApiError::Invalid(list) => ApiError::Invalid(
                    list.into_iter()
                        .map(|f| FieldError::new(format!("spec.{}", f.field), f.message))
                        .collect(),
                ),
                other => other,
            })?;
    let problems: Vec<FieldError> = veloflux_crds::resolve::validate_route(&spec)
        .into_iter()
        .map(|p| FieldError::new("spec", p))
        .collect();
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    let plan = app
        .directory
        .plan(&tenant.spec.plan_ref)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "the tenant's plan {:?} does not exist",
                tenant.spec.plan_ref
            ))
        })?;
    let limits = &plan.spec.limits;
    if existing.len() >= limits.max_routes as usize {
        return Err(ApiError::QuotaExceeded {
            limit: "maxRoutes",
            detail: format!(
                "the {} plan allows {} routes and the tenant has {}",
                tenant.spec.plan_ref,
                limits.max_routes,
                existing.len()
            ),
        });
    }
    if spec.backends.len() > limits.max_backends_per_route as usize {
        return Err(ApiError::QuotaExceeded {
            limit: "maxBackendsPerRoute",
            detail: format!(
                "the {} plan allows {} backends per route; this route lists {}",
                tenant.spec.plan_ref,
                limits.max_backends_per_route,
                spec.backends.len()
            ),
        });
    }
    // Admission exactly as the operator and the standalone proxy decide it,
    // for this tenant alone (another tenant's younger claim cannot matter
    // here; an older one shows as HostConflict in the route's status).
    let mut candidate = Route::new(name, spec.clone());
    candidate.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        ..ObjectMeta::default()
    };
    let mut routes = existing.to_vec();
    routes.push(candidate);
    let plans = [plan];
    let tenants = [tenant.clone()];
    let resolution = veloflux_crds::resolve(Inputs {
        plans: &plans,
        tenants: &tenants,
        routes: &routes,
        dedicated: &[],
        grants: &[],
        services: None,
        secrets: None,
    });
    let key = veloflux_crds::resolve::ObjectKey::new(namespace, name);
    if let Some(accepted) = resolution
        .routes
        .get(&key)
        .and_then(|o| o.condition(ConditionType::Accepted))
        && accepted.status != ConditionStatus::True
    {
        return Err(ApiError::invalid(
            "spec",
            format!("{}: {}", accepted.reason.as_str(), accepted.message),
        ));
    }
    Ok(spec)
}

/// `POST /api/tenants/{tenant}/routes`.
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(scope): Extension<TenantScope>,
    JsonBody(body): JsonBody<RouteCreate>,
) -> Result<(StatusCode, axum::Json<RouteView>), ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    if !veloflux_crds::keys::is_valid_id(&body.name) {
        return Err(ApiError::invalid(
            "name",
            "must be a DNS name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    let namespace = match &body.namespace {
        Some(ns) if tenant.spec.namespaces.contains(ns) => ns.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "namespace",
                format!(
                    "must be one of the tenant's namespaces: {}",
                    tenant.spec.namespaces.join(", ")
                ),
            ));
        }
        None => tenant
            .spec
            .namespaces
            .first()
            .cloned()
            .ok_or_else(|| ApiError::conflict("the tenant lists no namespace for routes"))?,
    };
    let existing = app.directory.routes(&tenant).await?;
    if existing
        .iter()
        .any(|r| r.metadata.name.as_deref() == Some(&body.name))
    {
        return Err(ApiError::Conflict {
            detail: format!("route {} already exists", body.name),
            field: Some("name".into()),
        });
    }
    let spec = checked_spec(
        &app, &caller, &tenant, &namespace, &body.name, body.spec, &existing,
    )
    .await?;
    let mut route = Route::new(&body.name, spec);
    route.metadata.namespace = Some(namespace);
    route.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "veloflux-api".to_owned(),
            ),
            ("veloflux.io/tenant".to_owned(), scope.tenant.clone()),
        ]
        .into(),
    );
    let created = app.directory.create_route(&route).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&created))))
}

/// `PUT /api/tenants/{tenant}/routes/{route}`.
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(scope): Extension<TenantScope>,
    Path((_, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<RouteUpdate>,
) -> Result<axum::Json<RouteView>, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    let mut routes = app.directory.routes(&tenant).await?;
    let index = routes
        .iter()
        .position(|r| r.metadata.name.as_deref() == Some(&name))
        .ok_or(ApiError::NotFound("route"))?;
    let current = routes.remove(index);
    let namespace = current.metadata.namespace.clone().unwrap_or_default();
    let spec = checked_spec(
        &app, &caller, &tenant, &namespace, &name, body.spec, &routes,
    )
    .await?;
    let updated = app.directory.update_route(&namespace, &name, &spec).await?;
    Ok(axum::Json(view(&updated)))
}

/// `DELETE /api/tenants/{tenant}/routes/{route}`.
pub async fn remove(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    Path((_, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    let route = find(&app, &tenant, &name).await?;
    let namespace = route.metadata.namespace.unwrap_or_default();
    app.directory.delete_route(&namespace, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
