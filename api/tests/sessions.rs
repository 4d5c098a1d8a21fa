//! Sessions through the API: password sign-in, refresh-token rotation with
//! reuse detection, logout, refresh tokens kept only as digests, one answer
//! for unknown addresses and wrong passwords, the per-account throttle, the
//! platform-admin flag set from the command line, and signing-key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::{
    PASSWORD, Platform, fresh_throttle_window, jwt_parts, metric, problem, refresh, refresh_token,
    token,
};
use veloflux_store::testing::eventually;

const WRONG: &str = "not the right password";

fn invalid_refresh(detail: &str) -> Value {
    problem(401, "invalid-token", "Invalid token", detail)
}

/// `(family, secret)` of a refresh token `vfr_<family>.<secret>`.
fn split(refresh: &str) -> (String, String) {
    let (family, secret) = refresh
        .strip_prefix("vfr_")
        .unwrap()
        .split_once('.')
        .unwrap();
    (family.to_owned(), secret.to_owned())
}

async fn sign_ins(platform: &Platform, outcome: &str) -> f64 {
    metric(
        &platform.http,
        &platform.admin,
        &format!("veloflux_api_sign_ins_total{{outcome=\"{outcome}\"}}"),
    )
    .await
}

/// The bulk strings of a raw RESP reply.
fn resp_strings(raw: &str) -> Vec<String> {
    let mut lines = raw.split("\r\n");
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if let Some(len) = line.strip_prefix('$')
            && len != "-1"
        {
            out.push(lines.next().unwrap().to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_the_right_password_gives_tokens_that_work() {
    let platform = Platform::start().await;
    platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;

    // Addresses are compared normalised.
    let login = platform.login(" Ana@ACME.example ", PASSWORD, None).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    let body = &login.body;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["role"], "owner");
    let (family, secret) = split(&refresh_token(body));
    assert_eq!(family.len(), 32);
    assert!(!secret.is_empty());
    let (header, claims) = jwt_parts(&token(body));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["iss"], "https://veloflux.local");
    assert_eq!(claims["aud"], "veloflux-api");
    assert_eq!(claims["tenant_id"], "acme");
    assert_eq!(claims["role"], "owner");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    assert!(claims.get("platform_admin").is_none());
    let me = platform.get("/api/me", &token(body)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["email"], "ana@acme.example");
    assert_eq!(me.body["id"], claims["sub"]);
    assert_eq!(sign_ins(&platform, "ok").await, 1.0);

    let wrong = platform.login("ana@acme.example", WRONG, None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body,
        problem(
            401,
            "invalid-credentials",
            "Invalid email or password",
            "invalid email or password"
        )
    );
    let unknown_tenant = platform
        .login("ana@acme.example", PASSWORD, Some("globex"))
        .await;
    assert_eq!(unknown_tenant.status, StatusCode::NOT_FOUND);
    let no_token = platform.call(Method::GET, "/api/me", None, None).await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        no_token.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"veloflux\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refresh_rotates_and_a_replayed_token_revokes_the_whole_family() {
    let platform = Platform::start().await;
    platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    let first = platform.login("ana@acme.example", PASSWORD, None).await;
    let other = platform.login("ana@acme.example", PASSWORD, None).await;
    let r0 = refresh_token(&first.body);

    let second = refresh(&platform, &r0).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let r1 = refresh_token(&second.body);
    assert_ne!(r1, r0);
    assert_eq!(split(&r1).0, split(&r0).0, "one family");
    assert_ne!(token(&second.body), token(&first.body));
    assert_eq!(second.body["tenant_id"], "acme");
    assert_eq!(second.body["role"], "owner");
    let me = platform.get("/api/me", &token(&second.body)).await;
    assert_eq!(me.status, StatusCode::OK);

    let third = refresh(&platform, &r1).await;
    assert_eq!(third.status, StatusCode::OK, "{:?}", third.body);
    let r2 = refresh_token(&third.body);
    assert!(r2 != r1 && r2 != r0);

    // r1 again: someone holds a copy. Everything of this sign-in ends.
    let replayed = refresh(&platform, &r1).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        replayed.body,
        invalid_refresh("refresh token already used: every token of this sign-in is revoked")
    );
    for revoked in [&r2, &r0, &r1] {
        let refused = refresh(&platform, revoked).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.body,
            invalid_refresh("unknown or expired refresh token")
        );
    }
    // Another sign-in of the same person is not touched.
    let elsewhere = refresh(&platform, &refresh_token(&other.body)).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{:?}", elsewhere.body);

    for garbage in ["", "vfr_", "vfr_short.secret", "not-a-token"] {
        let refused = refresh(&platform, garbage).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{garbage:?}");
        assert_eq!(
            refused.body,
            invalid_refresh("unknown or expired refresh token")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_session() {
    let platform = Platform::start().await;
    platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    let login = platform.login("ana@acme.example", PASSWORD, None).await;
    let rotated = refresh(&platform, &refresh_token(&login.body)).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let current = refresh_token(&rotated.body);

    let platform = &platform;
    let logout = |refresh_token: String| async move {
        platform
            .call(
                Method::POST,
                "/api/sessions/logout",
                None,
                Some(json!({"refresh_token": refresh_token})),
            )
            .await
    };
    let out = logout(current.clone()).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{:?}", out.body);
    let after = refresh(platform, &current).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        after.body,
        invalid_refresh("unknown or expired refresh token")
    );
    let (family, _) = split(&current);
    let key = veloflux_crds::keys::session(&family);
    assert_eq!(platform.redis_cmd(&["EXISTS", &key]).await, ":0\r\n");
    // Unknown and already-ended sessions are answered alike.
    assert_eq!(logout(current).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        logout("vfr_nothing.here".to_owned()).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_are_stored_only_as_digests() {
    let platform = Platform::start().await;
    let signup = platform
        .signup("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    let mut issued = vec![refresh_token(&signup)];
    let login = platform.login("ana@acme.example", PASSWORD, None).await;
    issued.push(refresh_token(&login.body));
    for _ in 0..2 {
        let next = refresh(&platform, issued.last().unwrap()).await;
        assert_eq!(next.status, StatusCode::OK, "{:?}", next.body);
        issued.push(refresh_token(&next.body));
    }

    let keys = resp_strings(&platform.redis_cmd(&["KEYS", "vf:session:*"]).await);
    let families: BTreeSet<String> = issued.iter().map(|t| split(t).0).collect();
    assert_eq!(
        keys.iter().cloned().collect::<BTreeSet<_>>(),
        families
            .iter()
            .map(|f| veloflux_crds::keys::session(f))
            .collect::<BTreeSet<_>>()
    );
    let mut stored = String::new();
    for key in &keys {
        stored.push_str(&platform.redis_cmd(&["HGETALL", key]).await);
    }
    for refresh in &issued {
        let (_, secret) = split(refresh);
        assert!(!stored.contains(&secret), "{secret} is stored as it is");
        assert!(
            stored.contains(&veloflux_api::auth::digest(&secret)),
            "the digest of {secret} is stored"
        );
    }
    // The current token of the rotated family is the last one issued.
    let (family, secret) = split(issued.last().unwrap());
    let current = platform
        .redis_cmd(&["HGET", &veloflux_crds::keys::session(&family), "current"])
        .await;
    assert_eq!(
        resp_strings(&current),
        [veloflux_api::auth::digest(&secret)]
    );
    // Nor does any other key hold a secret.
    let mut everything = String::new();
    for key in resp_strings(&platform.redis_cmd(&["KEYS", "*"]).await) {
        let kind = platform.redis_cmd(&["TYPE", &key]).await;
        let dump = match kind.trim() {
            "+hash" => platform.redis_cmd(&["HGETALL", &key]).await,
            "+set" => platform.redis_cmd(&["SMEMBERS", &key]).await,
            "+string" => platform.redis_cmd(&["GET", &key]).await,
            _ => String::new(),
        };
        everything.push_str(&key);
        everything.push_str(&dump);
    }
    for refresh in &issued {
        assert!(!everything.contains(&split(refresh).1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_email_and_a_wrong_password_get_the_same_answer() {
    let platform = Platform::start().await;
    platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    assert_eq!(sign_ins(&platform, "refused").await, 0.0);

    let wrong = platform.login("ana@acme.example", WRONG, None).await;
    let unknown = platform.login("nobody@acme.example", WRONG, None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.raw, wrong.raw, "byte for byte");
    for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
        assert_eq!(unknown.headers.get(&name), wrong.headers.get(&name));
    }
    // Both went through a password verification and were refused alike
    // (the unknown address against a dummy hash).
    assert_eq!(sign_ins(&platform, "refused").await, 2.0);
    assert_eq!(sign_ins(&platform, "ok").await, 0.0);
    assert_eq!(sign_ins(&platform, "throttled").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_throttled_per_account_whether_or_not_it_exists() {
    let platform = Platform::start_with(&["--throttle-per-account", "3"], None).await;
    platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    fresh_throttle_window(Duration::from_secs(25)).await;

    let mut answers = Vec::new();
    for email in ["ana@acme.example", "nobody@acme.example"] {
        for attempt in 1..=3 {
            let refused = platform.login(email, WRONG, None).await;
            assert_eq!(
                refused.status,
                StatusCode::UNAUTHORIZED,
                "{email} attempt {attempt}"
            );
        }
        let throttled = platform.login(email, WRONG, None).await;
        assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert_eq!(
            throttled.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let retry: u64 = throttled.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After: {retry}");
        assert_eq!(
            throttled.body,
            problem(
                429,
                "too-many-requests",
                "Too many attempts",
                "too many attempts"
            )
        );
        answers.push(throttled.raw);
    }
    assert_eq!(answers[0], answers[1], "the same answer, known or not");

    // Even the right password waits for the window; other accounts do not.
    let right = platform.login("ana@acme.example", PASSWORD, None).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    let other = platform.login("someone@acme.example", WRONG, None).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_ins(&platform, "throttled").await, 3.0);
    assert_eq!(sign_ins(&platform, "refused").await, 7.0);
}

/// Runs the real binary with `args`: (success, stdout, stderr).
async fn veloflux_api(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_veloflux-api"))
            .args(&args)
            .env_remove("VELOFLUX_LOG")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn platform_admin(platform: &Platform, action: &str, email: &str) -> (bool, String, String) {
    // The store's flags come before the subcommand (they are the serving
    // command's flags).
    veloflux_api(vec![
        "--redis".into(),
        platform.redis.url(),
        "--signing-keys".into(),
        platform.keys.to_str().unwrap().into(),
        "--log".into(),
        "warn".into(),
        "platform-admin".into(),
        action.into(),
        email.into(),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_granted_from_the_command_line_acts_on_every_tenant() {
    let platform = Platform::start().await;
    let before = platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    let globex_owner = platform
        .owner("cy@globex.example", "globex", &["globex.customers.example"])
        .await;
    assert_eq!(
        platform.get("/api/tenants/globex", &before).await.status,
        StatusCode::NOT_FOUND
    );

    let (ok, stdout, stderr) = platform_admin(&platform, "grant", "ana@acme.example").await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "ana@acme.example is now a platform admin (from their next token on)\n"
    );
    // From the next token on: the one in hand still acts in acme only.
    assert_eq!(
        platform.get("/api/tenants/globex", &before).await.status,
        StatusCode::NOT_FOUND
    );
    let login = platform.login("ana@acme.example", PASSWORD, None).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    let admin = token(&login.body);
    let (_, claims) = jwt_parts(&admin);
    assert_eq!(claims["platform_admin"], true);
    assert_eq!(claims["tenant_id"], "acme");
    let me = platform.get("/api/me", &admin).await;
    assert_eq!(me.body["platformAdmin"], true);

    let globex = platform.get("/api/tenants/globex", &admin).await;
    assert_eq!(globex.status, StatusCode::OK, "{:?}", globex.body);
    assert_eq!(globex.body["id"], "globex");
    let members = platform.get("/api/tenants/globex/members", &admin).await;
    assert_eq!(members.status, StatusCode::OK);
    assert_eq!(members.body["members"][0]["email"], "cy@globex.example");
    let audit = platform.get("/api/tenants/globex/audit", &admin).await;
    assert_eq!(audit.status, StatusCode::OK);
    let suspended = platform
        .call(
            Method::POST,
            "/api/tenants/globex/suspend",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(suspended.status, StatusCode::OK, "{:?}", suspended.body);
    assert_eq!(suspended.body["state"], "suspended");
    // Suspension is the platform's; globex's own owner cannot lift it.
    let resumed = platform
        .call(
            Method::POST,
            "/api/tenants/globex/resume",
            Some(&globex_owner),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::FORBIDDEN);
    assert_eq!(
        resumed.body,
        problem(
            403,
            "forbidden",
            "Not allowed",
            "this needs the platform admin role"
        )
    );
    let resumed = platform
        .call(
            Method::POST,
            "/api/tenants/globex/resume",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{:?}", resumed.body);
    assert_eq!(resumed.body["state"], "active");

    let (ok, stdout, stderr) = platform_admin(&platform, "revoke", "ana@acme.example").await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "ana@acme.example is no longer a platform admin (from their next token on)\n"
    );
    let login = platform.login("ana@acme.example", PASSWORD, None).await;
    let plain = token(&login.body);
    assert!(jwt_parts(&plain).1.get("platform_admin").is_none());
    assert_eq!(
        platform.get("/api/tenants/globex", &plain).await.status,
        StatusCode::NOT_FOUND
    );

    let (ok, _, stderr) = platform_admin(&platform, "grant", "nobody@acme.example").await;
    assert!(!ok);
    assert!(
        stderr.contains("no person with email nobody@acme.example"),
        "{stderr}"
    );
}

async fn jwks_kids(platform: &Platform) -> Vec<String> {
    let reply = platform
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_signing_key_signs_new_tokens_while_old_ones_still_verify() {
    let platform = Platform::start_with(&["--signing-keys-poll", "200ms"], None).await;
    let old = platform
        .owner("ana@acme.example", "acme", &["acme.customers.example"])
        .await;
    let first = jwks_kids(&platform).await;
    assert_eq!(first.len(), 1);
    assert_eq!(jwt_parts(&old).0["kid"], first[0].as_str());

    let path = veloflux_api::auth::keys::generate(&platform.keys).unwrap();
    let new_kid = path.file_stem().unwrap().to_str().unwrap().to_owned();
    assert!(new_kid > first[0], "the new key sorts last");
    assert!(
        eventually(Duration::from_secs(10), async || jwks_kids(&platform)
            .await
            .len()
            == 2)
        .await,
        "the new key was not read within 10 s"
    );
    assert_eq!(
        jwks_kids(&platform).await,
        [first[0].clone(), new_kid.clone()]
    );
    let jwks = platform
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    for key in jwks.body["keys"].as_array().unwrap() {
        assert_eq!(
            (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("EdDSA"),
                &json!("sig")
            )
        );
    }

    assert_eq!(
        platform.get("/api/me", &old).await.status,
        StatusCode::OK,
        "a token signed before still verifies"
    );
    let login = platform.login("ana@acme.example", PASSWORD, None).await;
    let new = token(&login.body);
    assert_eq!(jwt_parts(&new).0["kid"], new_kid.as_str());
    assert_eq!(platform.get("/api/me", &new).await.status, StatusCode::OK);

    // Once the old key is removed, its tokens stop verifying.
    std::fs::remove_file(platform.keys.join(format!("{}.pem", first[0]))).unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || jwks_kids(&platform)
            .await
            .len()
            == 1)
        .await,
        "the removal was not read within 10 s"
    );
    let refused = platform.get("/api/me", &old).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.body,
        problem(
            401,
            "unauthenticated",
            "Authentication required",
            "authentication required"
        )
    );
    assert_eq!(platform.get("/api/me", &new).await.status, StatusCode::OK);
}
