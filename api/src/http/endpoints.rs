//! Every endpoint of the API, in one table: method, path, who may call it,
//! what it is audited as, its request and response shapes. The router, the
//! authorization layer, the OpenAPI document, the docs' endpoint table and
//! the authorization-matrix test are all generated from this table, so an
//! endpoint cannot exist without a declared role.

use axum::routing::{MethodRouter, delete, get, patch, post, put};
use http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use veloflux_crds::tenant::TenantRole::{Member, Owner, Viewer};

use crate::app::AppState;
use crate::auth::access::Access::{self, PlatformAdmin, Public, Session, Tenant};
use crate::handlers::{audit, meta, onboarding, people, routes, sessions, tenants, usage};

/// A JSON Schema of a body type, for the OpenAPI document.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One endpoint.
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path template, axum syntax (`/api/tenants/{tenant}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// One line for the docs.
    pub summary: &'static str,
    /// The audit action of a mutating call (`route.create`).
    pub audit: Option<&'static str>,
    /// Sign-in style endpoint: throttled per address (and per account).
    pub throttled: bool,
    /// Request body.
    pub request: Option<SchemaFn>,
    /// Response body of success.
    pub response: Option<SchemaFn>,
    /// Status of success.
    pub success: u16,
    /// The handler.
    pub handler: fn() -> MethodRouter<AppState>,
}

impl Endpoint {
    /// The method as a static string (metric label).
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        }
    }
}

macro_rules! endpoint {
    ($method:ident $path:literal, $access:expr, $summary:literal, audit: $audit:expr, throttled: $throttled:expr,
     request: $req:expr, response: $resp:expr, success: $success:literal, $route:ident($handler:path)) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            access: $access,
            summary: $summary,
            audit: $audit,
            throttled: $throttled,
            request: $req,
            response: $resp,
            success: $success,
            handler: || $route($handler),
        }
    };
}

/// The table.
pub static ENDPOINTS: &[Endpoint] = &[
    // Onboarding and sessions.
    endpoint!(POST "/api/signup", Public, "Sign up: create a person and their tenant on the default plan",
        audit: Some("tenant.create"), throttled: true,
        request: Some(schema::<onboarding::SignupRequest>), response: Some(schema::<sessions::TokenResponse>),
        success: 201, post(onboarding::signup)),
    endpoint!(POST "/api/verify-email", Public, "Confirm an email address with the token sent to it",
        audit: None, throttled: true,
        request: Some(schema::<onboarding::VerifyRequest>), response: None, success: 204, post(onboarding::verify_email)),
    endpoint!(POST "/api/sessions", Public, "Sign in with email and password",
        audit: None, throttled: true,
        request: Some(schema::<sessions::LoginRequest>), response: Some(schema::<sessions::TokenResponse>),
        success: 200, post(sessions::login)),
    endpoint!(POST "/api/sessions/refresh", Public, "Exchange a refresh token for new tokens (the old one is spent)",
        audit: None, throttled: true,
        request: Some(schema::<sessions::RefreshRequest>), response: Some(schema::<sessions::TokenResponse>),
        success: 200, post(sessions::refresh)),
    endpoint!(POST "/api/sessions/logout", Public, "End a session: revoke its refresh token family",
        audit: None, throttled: false,
        request: Some(schema::<sessions::RefreshRequest>), response: None, success: 204, post(sessions::logout)),
    endpoint!(POST "/api/sessions/switch", Session, "Get tokens for another tenant the caller belongs to",
        audit: None, throttled: false,
        request: Some(schema::<sessions::SwitchRequest>), response: Some(schema::<sessions::TokenResponse>),
        success: 200, post(sessions::switch)),
    endpoint!(GET "/api/me", Session, "The caller, their tenants and roles",
        audit: None, throttled: false, request: None, response: Some(schema::<sessions::MeResponse>),
        success: 200, get(sessions::me)),
    endpoint!(POST "/api/me/verification", Session, "Send the email-verification message again",
        audit: None, throttled: true, request: None, response: None, success: 204, post(onboarding::resend_verification)),
    endpoint!(POST "/api/invitations/accept", Public, "Accept an invitation (signing up if the address is new)",
        audit: Some("member.join"), throttled: true,
        request: Some(schema::<people::AcceptRequest>), response: Some(schema::<sessions::TokenResponse>),
        success: 200, post(people::accept)),
    // Tenants.
    endpoint!(GET "/api/tenants", Session, "The tenants the caller belongs to",
        audit: None, throttled: false, request: None, response: Some(schema::<tenants::TenantList>),
        success: 200, get(tenants::list)),
    endpoint!(GET "/api/tenants/{tenant}", Tenant(Viewer), "A tenant: plan, domains, status conditions, usage against the plan",
        audit: None, throttled: false, request: None, response: Some(schema::<tenants::TenantView>),
        success: 200, get(tenants::get)),
    endpoint!(PATCH "/api/tenants/{tenant}", Tenant(Owner), "Change a tenant's display name or domains",
        audit: Some("tenant.update"), throttled: false,
        request: Some(schema::<tenants::TenantPatch>), response: Some(schema::<tenants::TenantView>),
        success: 200, patch(tenants::update)),
    endpoint!(DELETE "/api/tenants/{tenant}", Tenant(Owner), "Delete a tenant: its routing goes; people, audit and billing records stay",
        audit: Some("tenant.delete"), throttled: false, request: None, response: None, success: 204, delete(tenants::remove)),
    endpoint!(POST "/api/tenants/{tenant}/suspend", PlatformAdmin, "Suspend a tenant (its hosts answer 403)",
        audit: Some("tenant.suspend"), throttled: false, request: None, response: Some(schema::<tenants::TenantView>),
        success: 200, post(tenants::suspend)),
    endpoint!(POST "/api/tenants/{tenant}/resume", PlatformAdmin, "Resume a suspended tenant",
        audit: Some("tenant.resume"), throttled: false, request: None, response: Some(schema::<tenants::TenantView>),
        success: 200, post(tenants::resume)),
    // People.
    endpoint!(GET "/api/tenants/{tenant}/members", Tenant(Viewer), "The tenant's members and their roles",
        audit: None, throttled: false, request: None, response: Some(schema::<people::MemberList>),
        success: 200, get(people::members)),
    endpoint!(PATCH "/api/tenants/{tenant}/members/{user}", Tenant(Owner), "Change a member's role (never the last owner's)",
        audit: Some("member.role"), throttled: false,
        request: Some(schema::<people::RoleChange>), response: Some(schema::<people::Member>),
        success: 200, patch(people::change_role)),
    endpoint!(DELETE "/api/tenants/{tenant}/members/{user}", Tenant(Owner), "Remove a member (never the last owner)",
        audit: Some("member.remove"), throttled: false, request: None, response: None, success: 204, delete(people::remove)),
    endpoint!(GET "/api/tenants/{tenant}/invitations", Tenant(Owner), "Pending invitations",
        audit: None, throttled: false, request: None, response: Some(schema::<people::InvitationList>),
        success: 200, get(people::invitations)),
    endpoint!(POST "/api/tenants/{tenant}/invitations", Tenant(Owner), "Invite an email address with a role",
        audit: Some("member.invite"), throttled: false,
        request: Some(schema::<people::InviteRequest>), response: Some(schema::<crate::people::invitations::Invitation>),
        success: 201, post(people::invite)),
    endpoint!(DELETE "/api/tenants/{tenant}/invitations/{invitation}", Tenant(Owner), "Revoke a pending invitation",
        audit: Some("member.uninvite"), throttled: false, request: None, response: None, success: 204, delete(people::revoke_invitation)),
    // Routes.
    endpoint!(GET "/api/tenants/{tenant}/routes", Tenant(Viewer), "The tenant's routes with their conditions",
        audit: None, throttled: false, request: None, response: Some(schema::<routes::RouteList>),
        success: 200, get(routes::list)),
    endpoint!(POST "/api/tenants/{tenant}/routes", Tenant(Member), "Create a route within the plan's quotas",
        audit: Some("route.create"), throttled: false,
        request: Some(schema::<routes::RouteCreate>), response: Some(schema::<routes::RouteView>),
        success: 201, post(routes::create)),
    endpoint!(GET "/api/tenants/{tenant}/routes/{route}", Tenant(Viewer), "A route with its Accepted / ResolvedRefs / Programmed conditions",
        audit: None, throttled: false, request: None, response: Some(schema::<routes::RouteView>),
        success: 200, get(routes::get)),
    endpoint!(PUT "/api/tenants/{tenant}/routes/{route}", Tenant(Member), "Replace a route's spec",
        audit: Some("route.update"), throttled: false,
        request: Some(schema::<routes::RouteUpdate>), response: Some(schema::<routes::RouteView>),
        success: 200, put(routes::update)),
    endpoint!(DELETE "/api/tenants/{tenant}/routes/{route}", Tenant(Member), "Delete a route",
        audit: Some("route.delete"), throttled: false, request: None, response: None, success: 204, delete(routes::remove)),
    // Usage and audit.
    endpoint!(GET "/api/tenants/{tenant}/usage", Tenant(Viewer), "This month's requests and bytes against the plan's quotas",
        audit: None, throttled: false, request: None, response: Some(schema::<usage::UsageView>),
        success: 200, get(usage::current)),
    endpoint!(GET "/api/tenants/{tenant}/audit", Tenant(Owner), "The tenant's audit log, newest first (`?before=<id>&limit=`)",
        audit: None, throttled: false, request: None, response: Some(schema::<crate::people::audit::AuditPage>),
        success: 200, get(audit::page)),
    // Documents.
    endpoint!(GET "/.well-known/jwks.json", Public, "Public keys that verify access tokens",
        audit: None, throttled: false, request: None, response: None, success: 200, get(meta::jwks)),
    endpoint!(GET "/api/openapi.json", Public, "This API's OpenAPI 3.1 document",
        audit: None, throttled: false, request: None, response: None, success: 200, get(meta::openapi)),
];

/// The endpoint table as Markdown (method, path, least role, summary): the
/// table of `docs/API.md`, between its `endpoints:begin` / `endpoints:end`
/// markers (a test keeps the two equal).
pub fn markdown_table() -> String {
    use std::fmt::Write as _;
    let mut table = String::from("| Method | Path | Least role | Summary |\n|---|---|---|---|\n");
    for endpoint in ENDPOINTS {
        // Writing into a String cannot fail.
        let _ = writeln!(
            table,
            "| `{}` | `{}` | {} | {} |",
            endpoint.method_name(),
            endpoint.path,
            endpoint.access.describe(),
            endpoint.summary.replace('|', "\\|"),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::{ENDPOINTS, markdown_table};

    #[test]
    fn the_markdown_table_has_a_row_per_endpoint_naming_its_least_role() {
        let table = markdown_table();
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), ENDPOINTS.len());
        assert!(rows.contains(
            &"| `DELETE` | `/api/tenants/{tenant}` | owner | Delete a tenant: its routing goes; people, audit and billing records stay |"
        ));
        assert!(rows.iter().all(|r| r.matches(" | ").count() == 3));
    }

    #[test]
    fn every_endpoint_is_listed_once() {
        for (i, a) in ENDPOINTS.iter().enumerate() {
            for b in &ENDPOINTS[i + 1..] {
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{} {} is listed twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
