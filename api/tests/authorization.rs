//! The authorization matrix, generated from the endpoint table: every
//! endpoint of `ENDPOINTS` is called with every kind of credential (the
//! tenant's owner, member and viewer, another tenant's owner, a platform
//! admin, no token, and six kinds of bad token) and must answer what its
//! declared `Access` implies. An endpoint added to the table without a
//! fixture here fails the test, so none can be forgotten.
//!
//! Each row runs on its own platform; every call that passes the access
//! layer gets a fresh tenant, so destructive endpoints (deleting the tenant,
//! removing a member, suspending) cannot spoil the next call. Calls that
//! pass must reach the handler and succeed with the table's status: a
//! refusal from the layer (401, 403, the "tenant not found" 404) can never
//! pass for a success.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use support::{MANY_PEOPLE, Platform, Reply, route_spec};
use veloflux_api::auth::access::Access;
use veloflux_api::auth::tokens::Claims;
use veloflux_api::http::endpoints::{ENDPOINTS, Endpoint};
use veloflux_crds::tenant::TenantRole;

const PASSWORD: &str = "correct horse battery staple";
const ISSUER: &str = "https://veloflux.local";
const AUDIENCE: &str = "veloflux-api";

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    OwnerOfA,
    MemberOfA,
    ViewerOfA,
    OwnerOfB,
    PlatformAdmin,
    NoToken,
    Expired,
    SignedByUnknownKey,
    AlgNone,
    HmacWithPublishedKey,
    PayloadEditedAfterSigning,
    WrongAudience,
}

const CREDENTIALS: [Credential; 12] = [
    Credential::OwnerOfA,
    Credential::MemberOfA,
    Credential::ViewerOfA,
    Credential::OwnerOfB,
    Credential::PlatformAdmin,
    Credential::NoToken,
    Credential::Expired,
    Credential::SignedByUnknownKey,
    Credential::AlgNone,
    Credential::HmacWithPublishedKey,
    Credential::PayloadEditedAfterSigning,
    Credential::WrongAudience,
];

impl Credential {
    /// A token the API issued and would accept.
    fn is_valid(self) -> bool {
        matches!(
            self,
            Self::OwnerOfA
                | Self::MemberOfA
                | Self::ViewerOfA
                | Self::OwnerOfB
                | Self::PlatformAdmin
        )
    }

    /// The role its token carries in tenant A.
    fn role_in_a(self) -> Option<TenantRole> {
        match self {
            Self::OwnerOfA => Some(TenantRole::Owner),
            Self::MemberOfA => Some(TenantRole::Member),
            Self::ViewerOfA => Some(TenantRole::Viewer),
            _ => None,
        }
    }
}

/// What the access layer must decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// The request reaches the handler.
    Passes,
    /// 401 `unauthenticated`.
    Unauthenticated,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not-found`, "tenant not found": another tenant's resources do
    /// not exist for the caller.
    TenantNotFound,
}

/// The rule, from the endpoint's declared access alone.
fn decision(access: Access, credential: Credential) -> Decision {
    match access {
        Access::Public => Decision::Passes,
        _ if !credential.is_valid() => Decision::Unauthenticated,
        Access::Session => Decision::Passes,
        Access::Tenant(needed) => match credential {
            Credential::PlatformAdmin => Decision::Passes,
            Credential::OwnerOfB => Decision::TenantNotFound,
            other => match other.role_in_a() {
                Some(role) if role.includes(needed) => Decision::Passes,
                Some(_) => Decision::Forbidden,
                None => unreachable!("{other:?} is a member of A"),
            },
        },
        Access::PlatformAdmin => match credential {
            Credential::PlatformAdmin => Decision::Passes,
            Credential::OwnerOfB => Decision::TenantNotFound,
            _ => Decision::Forbidden,
        },
    }
}

/// A person with a token.
#[derive(Clone, Debug)]
struct Person {
    email: String,
    id: String,
    token: String,
    tenant: String,
}

/// The people outside tenant A: B's owner (tenant `beta`) and a platform
/// admin who owns tenant C (`gamma`).
struct Outsiders {
    owner_of_b: Person,
    admin: Person,
}

/// Tenant A (`alpha<n>`) with its three people, a route and a pending invitation.
struct World {
    tenant: String,
    owner: Person,
    member: Person,
    viewer: Person,
    route: String,
    invitation: String,
}

/// One row's platform and what lives on it.
struct Row {
    platform: Platform,
    outsiders: Outsiders,
    /// The API's signing key and its id, for forging.
    key: (EncodingKey, String),
    /// The published public key bytes (JWKS `x`).
    public_key: Vec<u8>,
    next: AtomicU32,
}

impl Row {
    async fn start() -> Self {
        let platform = Platform::start_with(MANY_PEOPLE, None).await;
        let owner_of_b = owner(&platform, "beta").await;
        let mut admin = owner(&platform, "gamma").await;
        platform.grant_platform_admin(&admin.email).await;
        let signed_in = platform.login(&admin.email, PASSWORD, None).await;
        assert_eq!(signed_in.status, StatusCode::OK, "{:?}", signed_in.body);
        admin.token = signed_in.body["access_token"].as_str().unwrap().to_owned();
        let me = platform.get("/api/me", &admin.token).await;
        assert_eq!(me.body["platformAdmin"], true, "{:?}", me.body);

        let pem = std::fs::read_dir(&platform.keys)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "pem"))
            .unwrap();
        let kid = pem.file_stem().unwrap().to_str().unwrap().to_owned();
        let der = PrivatePkcs8KeyDer::from_pem_file(&pem).unwrap();
        let key = EncodingKey::from_ed_der(der.secret_pkcs8_der());
        let jwks = platform
            .call(Method::GET, "/.well-known/jwks.json", None, None)
            .await;
        assert_eq!(jwks.body["keys"][0]["kid"], kid.as_str());
        let public_key = URL_SAFE_NO_PAD
            .decode(jwks.body["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        assert_eq!(public_key.len(), 32);
        Self {
            platform,
            outsiders: Outsiders { owner_of_b, admin },
            key: (key, kid),
            public_key,
            next: AtomicU32::new(1),
        }
    }

    fn next(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh tenant A.
    async fn world(&self) -> World {
        let p = &self.platform;
        let tenant = format!("alpha{}", self.next());
        let owner = owner(p, &tenant).await;
        let member = invited(p, &owner, "member").await;
        let viewer = invited(p, &owner, "viewer").await;
        let route = "web".to_owned();
        let created = p
            .call(
                Method::POST,
                &format!("/api/tenants/{tenant}/routes"),
                Some(&owner.token),
                Some(json!({"name": route, "spec": route_spec(&format!("web.{tenant}.customers.example"), "127.0.0.1:9")})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let invited = p
            .call(
                Method::POST,
                &format!("/api/tenants/{tenant}/invitations"),
                Some(&owner.token),
                Some(json!({"email": format!("pending@{tenant}.example"), "role": "viewer"})),
            )
            .await;
        assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
        World {
            invitation: invited.body["id"].as_str().unwrap().to_owned(),
            tenant,
            owner,
            member,
            viewer,
            route,
        }
    }

    /// Claims that would pass every check of tenant A, and then some: A's
    /// owner, platform admin.
    fn strong_claims(&self, world: &World) -> Claims {
        let now = now();
        Claims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: world.owner.id.clone(),
            tenant_id: Some(world.tenant.clone()),
            role: Some(TenantRole::Owner),
            platform_admin: true,
            exp: now + 600,
            iat: now,
            jti: format!("forged-{}", self.next()),
        }
    }

    fn sign(&self, claims: &Claims, key: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key.1.clone());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// The bearer token of `credential` in `world`.
    fn token(&self, world: &World, credential: Credential) -> Option<String> {
        let strong = self.strong_claims(world);
        Some(match credential {
            Credential::OwnerOfA => world.owner.token.clone(),
            Credential::MemberOfA => world.member.token.clone(),
            Credential::ViewerOfA => world.viewer.token.clone(),
            Credential::OwnerOfB => self.outsiders.owner_of_b.token.clone(),
            Credential::PlatformAdmin => self.outsiders.admin.token.clone(),
            Credential::NoToken => return None,
            Credential::Expired => {
                let now = now();
                let claims = Claims {
                    exp: now - 3600,
                    iat: now - 4200,
                    ..strong
                };
                self.sign(&claims, &self.key.0)
            }
            Credential::SignedByUnknownKey => {
                let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(
                    &ring::rand::SystemRandom::new(),
                )
                .unwrap();
                self.sign(&strong, &EncodingKey::from_ed_der(pkcs8.as_ref()))
            }
            Credential::AlgNone => {
                let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
                let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&strong).unwrap());
                format!("{header}.{payload}.")
            }
            Credential::HmacWithPublishedKey => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(self.key.1.clone());
                jsonwebtoken::encode(
                    &header,
                    &strong,
                    &EncodingKey::from_secret(&self.public_key),
                )
                .unwrap()
            }
            Credential::PayloadEditedAfterSigning => {
                let parts: Vec<&str> = world.viewer.token.split('.').collect();
                assert_eq!(parts.len(), 3);
                let mut payload: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
                assert_eq!(payload["role"], "viewer");
                payload["role"] = json!("owner");
                payload["platform_admin"] = json!(true);
                let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
                format!("{}.{payload}.{}", parts[0], parts[2])
            }
            Credential::WrongAudience => {
                let claims = Claims {
                    aud: "another-api".to_owned(),
                    ..strong
                };
                self.sign(&claims, &self.key.0)
            }
        })
    }
}

fn now() -> u64 {
    veloflux_api::auth::now_ms() / 1000
}

/// Signs up and verifies the owner of `tenant`.
async fn owner(platform: &Platform, tenant: &str) -> Person {
    let email = format!("owner@{tenant}.example");
    let token = platform
        .owner(
            &email,
            tenant,
            &[
                &format!("{tenant}.customers.example"),
                &format!("*.{tenant}.customers.example"),
            ],
        )
        .await;
    Person {
        id: platform.user_id(&token).await,
        email,
        token,
        tenant: tenant.to_owned(),
    }
}

/// A new person invited into `owner`'s tenant as `role`.
async fn invited(platform: &Platform, owner: &Person, role: &str) -> Person {
    let email = format!("{role}@{}.example", owner.tenant);
    let tokens = platform
        .member(&owner.token, &owner.tenant, &email, role)
        .await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    Person {
        id: platform.user_id(&token).await,
        email,
        token,
        tenant: owner.tenant.clone(),
    }
}

/// One call of the matrix: what to send, and the handler's answer when the
/// access layer lets it through.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    status: StatusCode,
    problem: Option<&'static str>,
}

/// The endpoint's path with `world`'s values.
fn path(template: &str, world: &World) -> String {
    template
        .replace("{tenant}", &world.tenant)
        .replace("{user}", &world.viewer.id)
        .replace("{route}", &world.route)
        .replace("{invitation}", &world.invitation)
}

/// A call of `endpoint` by `credential` that succeeds once past the access
/// layer, preparing what it spends (a fresh sign-in, invitation or
/// verification token); `None` for an endpoint this test does not know.
async fn fixture(
    row: &Row,
    world: &World,
    endpoint: &Endpoint,
    credential: Credential,
) -> Option<Call> {
    let p = &row.platform;
    let tenant = &world.tenant;
    let success = StatusCode::from_u16(endpoint.success).unwrap();
    let mut status = success;
    let mut problem = None;
    let body = match (endpoint.method.as_str(), endpoint.path) {
        ("POST", "/api/signup") => {
            let n = row.next();
            Some(json!({
                "email": format!("new{n}@signup.example"),
                "password": PASSWORD,
                "name": "New",
                "tenant": {"id": format!("signup{n}"), "domains": [format!("signup{n}.customers.example")]},
            }))
        }
        ("POST", "/api/verify-email") => {
            let n = row.next();
            let email = format!("unverified{n}@signup.example");
            p.signup(
                &email,
                &format!("unverified{n}"),
                &[&format!("unverified{n}.customers.example")],
            )
            .await;
            Some(json!({"token": p.last_token(&email, "verify-email")}))
        }
        ("POST", "/api/sessions") => {
            Some(json!({"email": world.owner.email, "password": PASSWORD}))
        }
        ("POST", "/api/sessions/refresh" | "/api/sessions/logout") => {
            let signed_in = p.login(&world.owner.email, PASSWORD, None).await;
            assert_eq!(signed_in.status, StatusCode::OK, "{:?}", signed_in.body);
            Some(json!({"refresh_token": signed_in.body["refresh_token"]}))
        }
        ("POST", "/api/sessions/switch") => {
            let home = match credential {
                Credential::OwnerOfB => &row.outsiders.owner_of_b.tenant,
                Credential::PlatformAdmin => &row.outsiders.admin.tenant,
                _ => tenant,
            };
            Some(json!({"tenant": home}))
        }
        ("GET", "/api/me" | "/api/tenants") => None,
        ("POST", "/api/me/verification") => {
            // Everyone in the matrix has confirmed their address.
            status = StatusCode::CONFLICT;
            problem = Some("conflict");
            None
        }
        ("POST", "/api/invitations/accept") => {
            let email = format!("joiner{}@{tenant}.example", row.next());
            let invited = p
                .call(
                    Method::POST,
                    &format!("/api/tenants/{tenant}/invitations"),
                    Some(&world.owner.token),
                    Some(json!({"email": email, "role": "viewer"})),
                )
                .await;
            assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
            Some(
                json!({"token": p.last_token(&email, "invitation"), "name": "Joiner", "password": PASSWORD}),
            )
        }
        ("GET", "/api/tenants/{tenant}") => None,
        ("PATCH", "/api/tenants/{tenant}") => Some(json!({"displayName": "Renamed"})),
        ("DELETE", "/api/tenants/{tenant}") => None,
        ("POST", "/api/tenants/{tenant}/suspend" | "/api/tenants/{tenant}/resume") => None,
        ("GET", "/api/tenants/{tenant}/members") => None,
        ("PATCH", "/api/tenants/{tenant}/members/{user}") => Some(json!({"role": "member"})),
        ("DELETE", "/api/tenants/{tenant}/members/{user}") => None,
        ("GET", "/api/tenants/{tenant}/invitations") => None,
        ("POST", "/api/tenants/{tenant}/invitations") => Some(json!({
            "email": format!("invitee{}@{tenant}.example", row.next()),
            "role": "viewer",
        })),
        ("DELETE", "/api/tenants/{tenant}/invitations/{invitation}") => None,
        ("GET", "/api/tenants/{tenant}/routes") => None,
        ("POST", "/api/tenants/{tenant}/routes") => Some(json!({
            "name": "api",
            "spec": route_spec(&format!("api.{tenant}.customers.example"), "127.0.0.1:9"),
        })),
        ("GET" | "DELETE", "/api/tenants/{tenant}/routes/{route}") => None,
        ("PUT", "/api/tenants/{tenant}/routes/{route}") => Some(json!({
            "spec": route_spec(&format!("web.{tenant}.customers.example"), "127.0.0.1:10"),
        })),
        ("GET", "/api/tenants/{tenant}/usage" | "/api/tenants/{tenant}/audit") => None,
        ("GET", "/.well-known/jwks.json" | "/api/openapi.json") => None,
        _ => return None,
    };
    Some(Call {
        method: endpoint.method.clone(),
        path: path(endpoint.path, world),
        body,
        status,
        problem,
    })
}

/// What is wrong with `reply` for `decision` (nothing: `None`).
fn mismatch(reply: &Reply, decision: Decision, call: &Call) -> Option<String> {
    let content_type = reply
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (status, problem) = match decision {
        Decision::Passes => (call.status, call.problem),
        Decision::Unauthenticated => (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
        Decision::Forbidden => (StatusCode::FORBIDDEN, Some("forbidden")),
        Decision::TenantNotFound => (StatusCode::NOT_FOUND, Some("not-found")),
    };
    if reply.status != status {
        return Some(format!("answered {} (expected {status})", reply.status));
    }
    if let Some(problem) = problem {
        if reply.problem() != problem {
            return Some(format!(
                "problem {:?} (expected {problem:?})",
                reply.problem()
            ));
        }
        if content_type != "application/problem+json" {
            return Some(format!("content-type {content_type:?}"));
        }
    }
    if decision == Decision::TenantNotFound && reply.body["detail"] != "tenant not found" {
        return Some(format!("detail {:?}", reply.body["detail"]));
    }
    if reply.status == StatusCode::UNAUTHORIZED {
        let challenge = reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !challenge.starts_with("Bearer ") {
            return Some(format!("401 with WWW-Authenticate {challenge:?}"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_every_credential_as_its_declared_access_says() {
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut calls = 0;
    for endpoint in ENDPOINTS {
        let row = Row::start().await;
        let shared = row.world().await;
        for credential in CREDENTIALS {
            let decision = decision(endpoint.access, credential);
            // A call that passes on a tenant endpoint may change the tenant
            // (or delete it): it gets its own.
            let own;
            let world = if decision == Decision::Passes && endpoint.access != Access::Public {
                own = row.world().await;
                &own
            } else {
                &shared
            };
            let Some(call) = fixture(&row, world, endpoint, credential).await else {
                panic!(
                    "{} {} has no fixture in tests/authorization.rs: add one so its access is tested",
                    endpoint.method, endpoint.path
                );
            };
            let token = row.token(world, credential);
            let reply = row
                .platform
                .call(
                    call.method.clone(),
                    &call.path,
                    token.as_deref(),
                    call.body.clone(),
                )
                .await;
            calls += 1;
            if let Some(wrong) = mismatch(&reply, decision, &call) {
                failures.push(format!(
                    "{} {} as {credential:?} ({:?}, expected {decision:?}): {wrong}; {}",
                    endpoint.method,
                    endpoint.path,
                    endpoint.access,
                    String::from_utf8_lossy(&reply.raw)
                ));
            }
        }
        assert!(
            covered.insert((endpoint.method.as_str(), endpoint.path)),
            "{} {} is twice in the table",
            endpoint.method,
            endpoint.path
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(covered.len(), ENDPOINTS.len());
    assert_eq!(calls, ENDPOINTS.len() * CREDENTIALS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_fail_for_their_one_defect_alone() {
    // The forging above is only a test of the API if a token made the same
    // way without the defect is accepted.
    let row = Row::start().await;
    let world = row.world().await;
    let genuine = row.sign(&row.strong_claims(&world), &row.key.0);
    let me = row.platform.get("/api/me", &genuine).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["email"], world.owner.email.as_str());
    let tenant = row
        .platform
        .get(&format!("/api/tenants/{}", world.tenant), &genuine)
        .await;
    assert_eq!(tenant.status, StatusCode::OK, "{:?}", tenant.body);
    for credential in CREDENTIALS.into_iter().filter(|c| !c.is_valid()) {
        let token = row.token(&world, credential);
        let reply = row
            .platform
            .call(Method::GET, "/api/me", token.as_deref(), None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{credential:?}: {:?}",
            reply.body
        );
        assert_eq!(reply.problem(), "unauthenticated", "{credential:?}");
    }
}
