//! Who may call what, decided in one place. Every endpoint declares its
//! [`Access`] beside its path (see `http::endpoints`); [`authorize`] is the
//! layer every endpoint goes through: it verifies the bearer token, checks
//! the caller against the `{tenant}` in the path and the least role the
//! endpoint needs, hands the handler a [`Caller`], then records mutating
//! calls in the tenant's audit log and counts the answer. Handlers never
//! check roles themselves.
//!
//! Another tenant's resources answer 404, as nonexistent ones do, so a
//! token for tenant A learns nothing of tenant B. Platform admins (a flag
//! set from the command line, never by the API) act on every tenant.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use veloflux_crds::tenant::TenantRole;

use crate::app::AppState;
use crate::error::ApiError;
use crate::http::endpoints::Endpoint;
use crate::people::audit::AuditEntry;

/// What an endpoint requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-up, sign-in, refresh, JWKS, the OpenAPI document).
    Public,
    /// Any valid access token, whatever its tenant (`/api/me`).
    Session,
    /// A token for the `{tenant}` in the path with at least this role, or a
    /// platform admin.
    Tenant(TenantRole),
    /// A platform admin, on the `{tenant}` in the path.
    PlatformAdmin,
}

impl Access {
    /// How the docs and the OpenAPI document name it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Session => "signed in",
            Self::Tenant(TenantRole::Owner) => "owner",
            Self::Tenant(TenantRole::Member) => "member",
            Self::Tenant(TenantRole::Viewer) => "viewer",
            Self::PlatformAdmin => "platform admin",
        }
    }
}

/// The authenticated caller, as the handlers see it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// User id.
    pub user: String,
    /// The tenant the token acts in.
    pub tenant: Option<String>,
    /// The role in that tenant.
    pub role: Option<TenantRole>,
    /// Platform admin.
    pub platform_admin: bool,
}

impl Caller {
    /// The caller's effective role in `tenant`: its token's role there, or
    /// owner for a platform admin.
    pub fn role_in(&self, tenant: &str) -> Option<TenantRole> {
        if self.tenant.as_deref() == Some(tenant) {
            self.role
        } else if self.platform_admin {
            Some(TenantRole::Owner)
        } else {
            None
        }
    }
}

/// Handed to handlers of tenant endpoints: the tenant of the path, already
/// checked against the caller.
#[derive(Clone, Debug)]
pub struct TenantScope {
    /// Tenant id from the path.
    pub tenant: String,
    /// The caller's effective role in it.
    pub role: TenantRole,
}

/// What a handler tells the audit log about a call the path does not
/// describe (a sign-up names its new tenant only in the body).
#[derive(Clone, Debug)]
pub struct AuditNote {
    /// Tenant the call concerned.
    pub tenant: String,
    /// Actor, when the call created it (a sign-up's new person).
    pub actor: Option<String>,
    /// Target object.
    pub target: String,
}

/// The bearer token of a request, if it has one.
pub fn bearer(request: &http::request::Parts) -> Option<&str> {
    let value = request.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The caller of a request with a bearer token, if the token verifies.
pub fn caller(app: &AppState, parts: &http::request::Parts) -> Option<Caller> {
    let claims = app.tokens.verify(bearer(parts)?)?;
    Some(Caller {
        user: claims.sub.clone(),
        tenant: claims.tenant_id.clone(),
        role: claims.role,
        platform_admin: claims.platform_admin,
    })
}

fn path_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The verified caller (if any) and the outcome of the check.
async fn check(
    app: &AppState,
    endpoint: &Endpoint,
    request: Request,
) -> (
    Request,
    Option<Caller>,
    Result<Option<TenantScope>, ApiError>,
) {
    use axum::extract::FromRequestParts as _;
    if endpoint.access == Access::Public {
        return (request, None, Ok(None));
    }
    let (mut parts, body) = request.into_parts();
    let found = caller(app, &parts);
    let params: Vec<(String, String)> =
        match axum::extract::RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(params) => params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Err(_) => Vec::new(),
        };
    let request = Request::from_parts(parts, body);
    let Some(caller) = found else {
        return (request, None, Err(ApiError::Unauthenticated));
    };
    let scope = match endpoint.access {
        Access::Public | Access::Session => Ok(None),
        Access::Tenant(needed) => match path_param(&params, "tenant") {
            None => Err(ApiError::NotFound("tenant")),
            Some(tenant) => match caller.role_in(tenant) {
                None => Err(ApiError::NotFound("tenant")),
                Some(role) if !role.includes(needed) => Err(ApiError::Forbidden {
                    needed: needed.as_str(),
                }),
                Some(role) => Ok(Some(TenantScope {
                    tenant: tenant.to_owned(),
                    role,
                })),
            },
        },
        Access::PlatformAdmin => match path_param(&params, "tenant") {
            None => Err(ApiError::NotFound("tenant")),
            Some(tenant) if caller.platform_admin => Ok(Some(TenantScope {
                tenant: tenant.to_owned(),
                role: TenantRole::Owner,
            })),
            // Members learn that it is not theirs to do; others learn nothing.
            Some(tenant) if caller.tenant.as_deref() == Some(tenant) => Err(ApiError::Forbidden {
                needed: "platform admin",
            }),
            Some(_) => Err(ApiError::NotFound("tenant")),
        },
    };
    (request, Some(caller), scope)
}

/// The layer in front of every endpoint (see the module docs).
pub async fn authorize(
    State((app, index)): State<(AppState, usize)>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let mutating = request.method() != Method::GET && request.method() != Method::HEAD;
    let endpoint = &crate::http::endpoints::ENDPOINTS[index];
    // Only mutating calls are audited; reads allocate nothing for it.
    let audited = mutating && endpoint.audit.is_some();
    let target = audited.then(|| request.uri().path().to_owned());
    let (mut request, caller, checked) = check(&app, endpoint, request).await;
    // The tenant a refusal or an answer is audited in: the checked scope, or
    // for a role that is too low the caller's own tenant (never another's).
    let mut audit_tenant = match (&checked, &caller) {
        (Ok(Some(scope)), _) => Some(scope.tenant.clone()),
        (Err(ApiError::Forbidden { .. }), Some(caller)) => caller.tenant.clone(),
        _ => None,
    };
    let response = match checked {
        Ok(scope) => {
            if let Some(caller) = &caller {
                request.extensions_mut().insert(caller.clone());
            }
            if let Some(scope) = scope {
                request.extensions_mut().insert(scope);
            }
            next.run(request).await
        }
        Err(error) => error.into_response(),
    };
    let status = response.status();
    app.metrics.observe(index, status, started.elapsed());
    if let (Some(action), Some(mut target)) = (endpoint.audit, target) {
        let note = response.extensions().get::<AuditNote>().cloned();
        let mut actor = caller.map(|c| c.user);
        if let Some(note) = note {
            audit_tenant = Some(note.tenant);
            actor = note.actor.or(actor);
            target = note.target;
        }
        if let (Some(actor), Some(tenant)) = (actor, audit_tenant) {
            let entry = AuditEntry {
                at_ms: crate::auth::now_ms(),
                actor,
                action: action.to_owned(),
                target,
                outcome: outcome(status),
            };
            if let Err(error) = app.people.audit(&tenant, &entry).await {
                tracing::warn!(tenant, action, %error, "Audit entry not recorded");
            }
        }
    }
    response
}

fn outcome(status: http::StatusCode) -> String {
    if status.is_success() {
        "ok".to_owned()
    } else {
        format!("refused:{}", status.as_u16())
    }
}
