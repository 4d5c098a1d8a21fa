//! People of a tenant through the API: invitations (single use, expiring,
//! not spent by a wrong password, a second membership for an existing
//! person), who may invite and see invitations, the last-owner rule, role
//! changes that apply from the next token, removal ending the tenant's
//! sessions, and the audit log of all of it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{
    PASSWORD, Platform, Reply, jwt_parts, problem, refresh, refresh_token, route_spec, token,
};

const ACME: &[&str] = &["acme.customers.example", "*.acme.customers.example"];
const GLOBEX: &[&str] = &["globex.customers.example"];

fn forbidden(role: &str) -> Value {
    problem(
        403,
        "forbidden",
        "Not allowed",
        &format!("this needs the {role} role"),
    )
}

fn not_found(what: &str) -> Value {
    problem(404, "not-found", "Not found", &format!("{what} not found"))
}

fn spent_invitation() -> Value {
    problem(
        401,
        "invalid-token",
        "Invalid token",
        "unknown, used or expired invitation",
    )
}

fn last_owner() -> Value {
    problem(
        409,
        "conflict",
        "Conflict",
        "the tenant's last owner cannot be removed or demoted; make someone else owner first",
    )
}

async fn invite(platform: &Platform, owner: &str, tenant: &str, email: &str, role: &str) -> Reply {
    platform
        .call(
            Method::POST,
            &format!("/api/tenants/{tenant}/invitations"),
            Some(owner),
            Some(json!({"email": email, "role": role})),
        )
        .await
}

async fn accept(platform: &Platform, body: Value) -> Reply {
    platform
        .call(Method::POST, "/api/invitations/accept", None, Some(body))
        .await
}

async fn pending(platform: &Platform, owner: &str, tenant: &str) -> Vec<Value> {
    let reply = platform
        .get(&format!("/api/tenants/{tenant}/invitations"), owner)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["invitations"].as_array().unwrap().clone()
}

async fn me(platform: &Platform, token: &str) -> Value {
    let reply = platform.get("/api/me", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

async fn user_id(platform: &Platform, token: &str) -> String {
    me(platform, token).await["id"].as_str().unwrap().to_owned()
}

async fn set_role(platform: &Platform, owner: &str, tenant: &str, user: &str, role: &str) -> Reply {
    platform
        .call(
            Method::PATCH,
            &format!("/api/tenants/{tenant}/members/{user}"),
            Some(owner),
            Some(json!({"role": role})),
        )
        .await
}

async fn remove(platform: &Platform, owner: &str, tenant: &str, user: &str) -> Reply {
    platform
        .call(
            Method::DELETE,
            &format!("/api/tenants/{tenant}/members/{user}"),
            Some(owner),
            None,
        )
        .await
}

/// The members as `email=role`, by email.
async fn members(platform: &Platform, token: &str, tenant: &str) -> Vec<String> {
    let reply = platform
        .get(&format!("/api/tenants/{tenant}/members"), token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let mut members: Vec<String> = reply.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["email"].as_str().unwrap(),
                m["role"].as_str().unwrap()
            )
        })
        .collect();
    members.sort();
    members
}

async fn create_route(platform: &Platform, token: &str, name: &str) -> Reply {
    platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(token),
            Some(json!({
                "name": name,
                "spec": route_spec(&format!("{name}.acme.customers.example"), "127.0.0.1:9"),
            })),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_joins_with_the_invited_role_and_the_invitation_is_single_use() {
    let platform = Platform::start().await;
    let owner = platform.owner("ana@acme.example", "acme", ACME).await;
    let owner_id = user_id(&platform, &owner).await;

    let before = veloflux_api::auth::now_ms();
    let invited = invite(&platform, &owner, "acme", "Bo@Acme.Example", "member").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let id = invited.body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let expires = invited.body["expiresMs"].as_u64().unwrap();
    let week = 168 * 3600 * 1000;
    assert!(
        expires >= before + week && expires <= veloflux_api::auth::now_ms() + week,
        "{expires}"
    );
    assert_eq!(
        invited.body,
        json!({"id": id, "tenant": "acme", "email": "bo@acme.example", "role": "member",
               "invitedBy": owner_id, "expiresMs": expires})
    );
    assert_eq!(
        pending(&platform, &owner, "acme").await,
        vec![invited.body.clone()]
    );

    // The token went to the invited address only; it names the tenant.
    let invitation = platform.last_token("bo@acme.example", "invitation");
    assert!(invitation.starts_with("vfi_acme."), "{invitation}");
    assert!(
        platform
            .messages("ana@acme.example", "invitation")
            .is_empty()
    );

    let joined = accept(
        &platform,
        json!({"token": invitation, "name": "Bo", "password": PASSWORD}),
    )
    .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(joined.body["tenant_id"], "acme");
    assert_eq!(joined.body["role"], "member");
    assert_eq!(joined.body["token_type"], "Bearer");
    let member = token(&joined.body);
    let (_, claims) = jwt_parts(&member);
    assert_eq!(claims["tenant_id"], "acme");
    assert_eq!(claims["role"], "member");
    let profile = me(&platform, &member).await;
    assert_eq!(claims["sub"], profile["id"]);
    assert_eq!(profile["email"], "bo@acme.example");
    assert_eq!(profile["name"], "Bo");
    assert_eq!(
        profile["emailVerified"], true,
        "the invitation reached the address"
    );
    assert_eq!(profile["currentTenant"], "acme");
    assert_eq!(
        profile["tenants"],
        json!([{"tenant": "acme", "role": "member"}])
    );
    assert!(pending(&platform, &owner, "acme").await.is_empty());
    assert_eq!(
        members(&platform, &owner, "acme").await,
        ["ana@acme.example=owner", "bo@acme.example=member"]
    );

    // Spent: neither a new account nor the same person can use it again.
    let again = accept(
        &platform,
        json!({"token": invitation, "name": "Bo", "password": PASSWORD}),
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.body, spent_invitation());
    let forged = accept(
        &platform,
        json!({"token": "vfi_acme.not-a-token", "name": "Mallory", "password": PASSWORD}),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.raw, again.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_invitation_is_refused_and_creates_no_account() {
    let platform = Platform::start_with(&["--invitation-ttl", "1s"], None).await;
    let owner = platform.owner("ana@acme.example", "acme", ACME).await;
    let invited = invite(&platform, &owner, "acme", "bo@acme.example", "viewer").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let invitation = platform.last_token("bo@acme.example", "invitation");

    // Waits it out: pending lists only invitations that have not expired.
    assert!(
        veloflux_store::testing::eventually(Duration::from_secs(10), async || pending(
            &platform, &owner, "acme"
        )
        .await
        .is_empty())
        .await,
        "the invitation did not expire within 10 s"
    );
    let late = accept(
        &platform,
        json!({"token": invitation, "name": "Bo", "password": PASSWORD}),
    )
    .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(late.body, spent_invitation());
    let login = platform.login("bo@acme.example", PASSWORD, None).await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{:?}", login.body);
    assert_eq!(
        members(&platform, &owner, "acme").await,
        ["ana@acme.example=owner"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_does_not_spend_an_invitation_and_an_existing_person_gains_a_second_membership()
 {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let cy = platform.owner("cy@globex.example", "globex", GLOBEX).await;
    let invited = invite(&platform, &ana, "acme", "cy@globex.example", "viewer").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let invitation = platform.last_token("cy@globex.example", "invitation");

    // An existing person proves it is them; a wrong or missing password does
    // not, and leaves the invitation as it was.
    for body in [
        json!({"token": invitation, "password": "not the password at all"}),
        json!({"token": invitation, "name": "Cy", "password": "another new password"}),
        json!({"token": invitation}),
    ] {
        let refused = accept(&platform, body).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.body,
            problem(
                401,
                "invalid-credentials",
                "Invalid email or password",
                "invalid email or password"
            )
        );
    }
    assert_eq!(
        pending(&platform, &ana, "acme").await,
        vec![invited.body.clone()]
    );

    let joined = accept(
        &platform,
        json!({"token": invitation, "password": PASSWORD}),
    )
    .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    assert_eq!(joined.body["tenant_id"], "acme");
    assert_eq!(joined.body["role"], "viewer");
    let in_acme = token(&joined.body);
    let profile = me(&platform, &in_acme).await;
    assert_eq!(
        profile["id"],
        user_id(&platform, &cy).await,
        "the same person"
    );
    assert_eq!(profile["currentTenant"], "acme");
    assert_eq!(
        profile["tenants"],
        json!([{"tenant": "acme", "role": "viewer"}, {"tenant": "globex", "role": "owner"}])
    );

    // Each token acts in one tenant; switching gives one for the other.
    assert_eq!(
        platform.get("/api/tenants/acme", &in_acme).await.status,
        StatusCode::OK
    );
    let cross = platform.get("/api/tenants/globex", &in_acme).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    let switched = platform
        .call(
            Method::POST,
            "/api/sessions/switch",
            Some(&in_acme),
            Some(json!({"tenant": "globex"})),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{:?}", switched.body);
    assert_eq!(switched.body["tenant_id"], "globex");
    assert_eq!(switched.body["role"], "owner");
    let in_globex = token(&switched.body);
    let (_, claims) = jwt_parts(&in_globex);
    assert_eq!(
        (&claims["tenant_id"], &claims["role"]),
        (&json!("globex"), &json!("owner"))
    );
    let globex = platform.get("/api/tenants/globex", &in_globex).await;
    assert_eq!(globex.status, StatusCode::OK, "{:?}", globex.body);
    // Its refresh token keeps it in that tenant.
    let refreshed = refresh(&platform, &refresh_token(&switched.body)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["tenant_id"], "globex");
    let elsewhere = platform
        .call(
            Method::POST,
            "/api/sessions/switch",
            Some(&in_acme),
            Some(json!({"tenant": "initech"})),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere.body, not_found("tenant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_tenants_owners_invite_see_and_revoke_invitations() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let bo = token(
        &platform
            .member(&ana, "acme", "bo@acme.example", "member")
            .await,
    );
    let vi = token(
        &platform
            .member(&ana, "acme", "vi@acme.example", "viewer")
            .await,
    );
    let cy = platform.owner("cy@globex.example", "globex", GLOBEX).await;

    for low in [&bo, &vi] {
        let refused = invite(&platform, low, "acme", "dee@acme.example", "viewer").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.body, forbidden("owner"));
        let listed = platform.get("/api/tenants/acme/invitations", low).await;
        assert_eq!(listed.status, StatusCode::FORBIDDEN);
        assert_eq!(listed.body, forbidden("owner"));
    }
    assert!(
        platform
            .messages("dee@acme.example", "invitation")
            .is_empty()
    );

    let invited = invite(&platform, &ana, "acme", "dee@acme.example", "viewer").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let id = invited.body["id"].as_str().unwrap().to_owned();
    let invitation = platform.last_token("dee@acme.example", "invitation");

    // Another tenant's owner learns nothing of acme's invitations.
    let listed = platform.get("/api/tenants/acme/invitations", &cy).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    assert_eq!(listed.body, not_found("tenant"));
    for path in [
        format!("/api/tenants/acme/invitations/{id}"),
        format!("/api/tenants/globex/invitations/{id}"),
    ] {
        let revoked = platform.call(Method::DELETE, &path, Some(&cy), None).await;
        assert_eq!(revoked.status, StatusCode::NOT_FOUND, "{path}");
    }
    let invitations_elsewhere = platform
        .call(
            Method::GET,
            "/api/tenants/acme/invitations",
            Some(&cy),
            None,
        )
        .await;
    assert_eq!(invitations_elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(
        pending(&platform, &ana, "acme").await,
        vec![invited.body.clone()]
    );
    assert!(pending(&platform, &cy, "globex").await.is_empty());

    // The owner revokes it: gone from the list, and its token is dead.
    let path = format!("/api/tenants/acme/invitations/{id}");
    let revoked = platform.call(Method::DELETE, &path, Some(&ana), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    assert!(pending(&platform, &ana, "acme").await.is_empty());
    let late = accept(
        &platform,
        json!({"token": invitation, "name": "Dee", "password": PASSWORD}),
    )
    .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert_eq!(late.body, spent_invitation());
    let again = platform.call(Method::DELETE, &path, Some(&ana), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, not_found("invitation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_owner_can_be_neither_demoted_nor_removed() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let ana_id = user_id(&platform, &ana).await;
    let bo_tokens = platform
        .member(&ana, "acme", "bo@acme.example", "member")
        .await;
    let bo_id = user_id(&platform, &token(&bo_tokens)).await;

    for role in ["member", "viewer"] {
        let demoted = set_role(&platform, &ana, "acme", &ana_id, role).await;
        assert_eq!(demoted.status, StatusCode::CONFLICT);
        assert_eq!(demoted.body, last_owner());
    }
    let removed = remove(&platform, &ana, "acme", &ana_id).await;
    assert_eq!(removed.status, StatusCode::CONFLICT);
    assert_eq!(removed.body, last_owner());
    // Staying owner is no change of the rule.
    let kept = set_role(&platform, &ana, "acme", &ana_id, "owner").await;
    assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
    assert_eq!(
        members(&platform, &ana, "acme").await,
        ["ana@acme.example=owner", "bo@acme.example=member"]
    );

    // With a second owner, the first can be demoted and then removed.
    let promoted = set_role(&platform, &ana, "acme", &bo_id, "owner").await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    assert_eq!(
        promoted.body,
        json!({"user": bo_id, "email": "bo@acme.example", "name": "bo@acme.example", "role": "owner"})
    );
    let demoted = set_role(&platform, &ana, "acme", &ana_id, "member").await;
    assert_eq!(demoted.status, StatusCode::OK, "{:?}", demoted.body);
    assert_eq!(demoted.body["role"], "member");
    let bo_owner = refresh(&platform, &refresh_token(&bo_tokens)).await;
    assert_eq!(bo_owner.status, StatusCode::OK, "{:?}", bo_owner.body);
    assert_eq!(bo_owner.body["role"], "owner");
    let bo = token(&bo_owner.body);
    let removed = remove(&platform, &bo, "acme", &ana_id).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    assert_eq!(
        members(&platform, &bo, "acme").await,
        ["bo@acme.example=owner"]
    );

    // Now bo is the last owner.
    let demoted = set_role(&platform, &bo, "acme", &bo_id, "viewer").await;
    assert_eq!(demoted.status, StatusCode::CONFLICT);
    assert_eq!(demoted.body, last_owner());
    let gone = set_role(&platform, &bo, "acme", &ana_id, "owner").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body, not_found("member"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_takes_effect_with_the_next_token() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let bo_tokens = platform
        .member(&ana, "acme", "bo@acme.example", "member")
        .await;
    let bo_member = token(&bo_tokens);
    let bo_id = user_id(&platform, &bo_member).await;

    let demoted = set_role(&platform, &ana, "acme", &bo_id, "viewer").await;
    assert_eq!(demoted.status, StatusCode::OK, "{:?}", demoted.body);
    assert_eq!(
        members(&platform, &ana, "acme").await,
        ["ana@acme.example=owner", "bo@acme.example=viewer"]
    );

    // The access token in hand still says member until it expires.
    let created = create_route(&platform, &bo_member, "shop").await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);

    let refreshed = refresh(&platform, &refresh_token(&bo_tokens)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["role"], "viewer");
    let bo_viewer = token(&refreshed.body);
    let (_, claims) = jwt_parts(&bo_viewer);
    assert_eq!(claims["role"], "viewer");
    let refused = create_route(&platform, &bo_viewer, "blog").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body, forbidden("member"));
    let listed = platform.get("/api/tenants/acme/routes", &bo_viewer).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let names: Vec<&str> = listed.body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop"]);
    assert_eq!(
        me(&platform, &bo_viewer).await["tenants"],
        json!([{"tenant": "acme", "role": "viewer"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_loses_every_session_for_the_tenant_and_keeps_the_others() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let bolt = platform
        .signup("bo@bolt.example", "bolt", &["bolt.customers.example"])
        .await;
    let invited = invite(&platform, &ana, "acme", "bo@bolt.example", "member").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    let joined = accept(
        &platform,
        json!({"token": platform.last_token("bo@bolt.example", "invitation"), "password": PASSWORD}),
    )
    .await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    let login = platform
        .login("bo@bolt.example", PASSWORD, Some("acme"))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    assert_eq!(login.body["tenant_id"], "acme");
    let bo_id = user_id(&platform, &token(&joined.body)).await;
    let family = |tokens: &Value| {
        let refresh = refresh_token(tokens);
        let rest = refresh.strip_prefix("vfr_").unwrap();
        rest.split_once('.').unwrap().0.to_owned()
    };
    let sessions_key = veloflux_crds::keys::user_sessions(&bo_id);
    let mut families = vec![family(&bolt), family(&joined.body), family(&login.body)];
    families.sort();
    assert_eq!(
        set_members(&platform, &sessions_key).await,
        families,
        "three sign-ins, three families"
    );

    let removed = remove(&platform, &ana, "acme", &bo_id).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);

    for tokens in [&joined.body, &login.body] {
        let refused = refresh(&platform, &refresh_token(tokens)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.body,
            problem(
                401,
                "invalid-token",
                "Invalid token",
                "unknown or expired refresh token"
            )
        );
        let key = veloflux_crds::keys::session(&family(tokens));
        assert_eq!(platform.redis_cmd(&["EXISTS", &key]).await, ":0\r\n");
    }
    assert_eq!(set_members(&platform, &sessions_key).await, [family(&bolt)]);
    // The session in the person's own tenant goes on.
    let still = refresh(&platform, &refresh_token(&bolt)).await;
    assert_eq!(still.status, StatusCode::OK, "{:?}", still.body);
    assert_eq!(still.body["tenant_id"], "bolt");
    assert_eq!(
        me(&platform, &token(&still.body)).await["tenants"],
        json!([{"tenant": "bolt", "role": "owner"}])
    );
    let back = platform
        .login("bo@bolt.example", PASSWORD, Some("acme"))
        .await;
    assert_eq!(back.status, StatusCode::NOT_FOUND);
    assert_eq!(back.body, not_found("tenant"));
    assert_eq!(
        members(&platform, &ana, "acme").await,
        ["ana@acme.example=owner"]
    );
}

/// The members of a Redis set, sorted.
async fn set_members(platform: &Platform, key: &str) -> Vec<String> {
    let raw = platform.redis_cmd(&["SMEMBERS", key]).await;
    let mut members: Vec<String> = raw
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.starts_with(['*', '$']))
        .map(str::to_owned)
        .collect();
    members.sort();
    members
}

/// One audit entry as `actor action target outcome`.
fn entry_line(entry: &Value) -> String {
    format!(
        "{} {} {} {}",
        entry["actor"].as_str().unwrap(),
        entry["action"].as_str().unwrap(),
        entry["target"].as_str().unwrap(),
        entry["outcome"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_mutating_calls_newest_first_for_owners_only() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let ana_id = user_id(&platform, &ana).await;
    let bo = token(
        &platform
            .member(&ana, "acme", "bo@acme.example", "member")
            .await,
    );
    let bo_id = user_id(&platform, &bo).await;
    let vi = token(
        &platform
            .member(&ana, "acme", "vi@acme.example", "viewer")
            .await,
    );
    let vi_id = user_id(&platform, &vi).await;
    let cy = platform.owner("cy@globex.example", "globex", GLOBEX).await;
    let cy_id = user_id(&platform, &cy).await;

    // A refusal is recorded too; a reader's GET is not a mutation.
    let refused = invite(&platform, &bo, "acme", "dee@acme.example", "viewer").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let read = platform.get("/api/tenants/acme/audit", &vi).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.body, forbidden("owner"));
    let read = platform.get("/api/tenants/acme/audit", &bo).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(
        set_role(&platform, &ana, "acme", &bo_id, "viewer")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        remove(&platform, &ana, "acme", &bo_id).await.status,
        StatusCode::NO_CONTENT
    );
    let bogus = "0".repeat(64);
    let uninvite = platform
        .call(
            Method::DELETE,
            &format!("/api/tenants/acme/invitations/{bogus}"),
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(uninvite.status, StatusCode::NOT_FOUND);
    // Another tenant's owner: refused as not found, and nothing of it lands
    // in acme's log (nor is acme's log theirs to read).
    assert_eq!(
        remove(&platform, &cy, "acme", &vi_id).await.status,
        StatusCode::NOT_FOUND
    );
    let foreign = platform.get("/api/tenants/acme/audit", &cy).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(foreign.body, not_found("tenant"));

    let page = platform.get("/api/tenants/acme/audit", &ana).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert!(page.body.get("next").is_none(), "{:?}", page.body);
    let entries = page.body["entries"].as_array().unwrap().clone();
    let members_path = "/api/tenants/acme/members";
    let invitations_path = "/api/tenants/acme/invitations";
    assert_eq!(
        entries.iter().map(entry_line).collect::<Vec<_>>(),
        [
            format!("{ana_id} member.uninvite {invitations_path}/{bogus} refused:404"),
            format!("{ana_id} member.remove {members_path}/{bo_id} ok"),
            format!("{ana_id} member.role {members_path}/{bo_id} ok"),
            format!("{bo_id} member.invite {invitations_path} refused:403"),
            format!("{vi_id} member.join member/{vi_id} ok"),
            format!("{ana_id} member.invite {invitations_path} ok"),
            format!("{bo_id} member.join member/{bo_id} ok"),
            format!("{ana_id} member.invite {invitations_path} ok"),
            format!("{ana_id} tenant.create tenant/acme ok"),
        ]
    );
    for pair in entries.windows(2) {
        assert!(
            pair[0]["atMs"].as_u64().unwrap() >= pair[1]["atMs"].as_u64().unwrap(),
            "{pair:?}"
        );
        assert_ne!(pair[0]["id"], pair[1]["id"]);
    }
    let foreign_log = platform.get("/api/tenants/globex/audit", &cy).await;
    assert_eq!(
        foreign_log.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(entry_line)
            .collect::<Vec<_>>(),
        [format!("{cy_id} tenant.create tenant/globex ok")]
    );

    // Pages of four, older ones through `before`, until there is no `next`.
    let mut paged = Vec::new();
    let mut before: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let path = match &before {
            Some(id) => format!("/api/tenants/acme/audit?limit=4&before={id}"),
            None => "/api/tenants/acme/audit?limit=4".to_owned(),
        };
        let page = platform.get(&path, &ana).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        let batch = page.body["entries"].as_array().unwrap();
        sizes.push(batch.len());
        paged.extend(batch.iter().cloned());
        match page.body["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), batch.last().unwrap()["id"].as_str());
                before = Some(next.to_owned());
            }
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [4, 4, 1]);
    assert_eq!(paged, entries);

    for (query, field, message) in [
        ("limit=0", "limit", "must be 1 to 500"),
        ("limit=501", "limit", "must be 1 to 500"),
        (
            "before=yesterday",
            "before",
            "must be an entry id (`<ms>-<n>`)",
        ),
    ] {
        let bad = platform
            .get(&format!("/api/tenants/acme/audit?{query}"), &ana)
            .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(bad.fields(), [field], "{query}");
        assert_eq!(bad.body["errors"][0]["message"], message, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_into_a_deleted_tenant_is_refused() {
    let platform = Platform::start().await;
    let ana = platform.owner("ana@acme.example", "acme", ACME).await;
    let cy = platform.owner("cy@globex.example", "globex", GLOBEX).await;
    for email in ["bo@acme.example", "cy@globex.example"] {
        let invited = invite(&platform, &ana, "acme", email, "member").await;
        assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
    }
    let deleted = platform
        .call(Method::DELETE, "/api/tenants/acme", Some(&ana), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);

    let new_person = accept(
        &platform,
        json!({"token": platform.last_token("bo@acme.example", "invitation"),
               "name": "Bo", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        new_person.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        new_person.body
    );
    assert_eq!(new_person.body, spent_invitation());
    let login = platform.login("bo@acme.example", PASSWORD, None).await;
    assert_eq!(
        login.status,
        StatusCode::UNAUTHORIZED,
        "no account was made"
    );

    let existing = accept(
        &platform,
        json!({"token": platform.last_token("cy@globex.example", "invitation"),
               "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        existing.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        existing.body
    );
    assert_eq!(existing.body, spent_invitation());
    assert_eq!(
        me(&platform, &cy).await["tenants"],
        json!([{"tenant": "globex", "role": "owner"}])
    );
}
