//! Bad input answers a clear problem (RFC 9457, `application/problem+json`,
//! the problem type, the offending field) and leaves nothing behind: no
//! user, email index, tenant record or manifest file from a refused
//! sign-up, no Route file from a refused route.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::{MANY_PEOPLE, Platform, Reply, route_spec};

const PASSWORD: &str = "correct horse battery staple";

/// Everything a refused request must not have changed.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    files: Vec<String>,
    emails: Vec<String>,
    tenants: Vec<String>,
    users: Vec<String>,
}

async fn footprint(platform: &Platform) -> Footprint {
    Footprint {
        files: platform.manifest_files(),
        emails: platform.redis_keys("vf:email:*").await,
        tenants: platform.redis_keys("vf:tenant:*").await,
        users: platform.redis_keys("vf:user:*").await,
    }
}

/// `reply` is a problem document of `status` and type `slug`.
#[track_caller]
fn assert_problem(reply: &Reply, status: StatusCode, slug: &str) {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.raw)
    );
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        reply.body["type"],
        format!("https://veloflux.io/problems/{slug}"),
        "{:?}",
        reply.body
    );
    assert_eq!(reply.body["status"], status.as_u16(), "{:?}", reply.body);
    assert!(reply.body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(reply.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
}

/// `reply` is a 422 `invalid` naming exactly `field`, with a message containing `words`.
#[track_caller]
fn assert_invalid(reply: &Reply, field: &str, words: &str) {
    assert_problem(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_field(reply, field, words);
}

/// The problem names `field` (and only it) with a message containing `words`.
#[track_caller]
fn assert_field(reply: &Reply, field: &str, words: &str) {
    assert_eq!(reply.fields(), vec![field], "{:?}", reply.body);
    let message = reply.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(words),
        "{field}: {message:?} does not say {words:?}"
    );
}

fn signup_body(email: &str, tenant: &str, domains: &[&str]) -> Value {
    json!({
        "email": email,
        "password": PASSWORD,
        "name": "Someone",
        "tenant": {"id": tenant, "domains": domains},
    })
}

/// A sign-up with `body` as JSON.
async fn signup(platform: &Platform, body: Value) -> Reply {
    platform
        .call(Method::POST, "/api/signup", None, Some(body))
        .await
}

/// A request with raw bytes and headers.
async fn raw(
    platform: &Platform,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    platform
        .http
        .raw(method, &format!("{}{path}", platform.base), headers, body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_that_is_not_json_of_the_right_shape_is_refused_and_creates_nothing() {
    let platform = Platform::start_with(MANY_PEOPLE, None).await;
    let before = footprint(&platform).await;
    let json_type = [("content-type", "application/json")];

    let truncated = raw(
        &platform,
        Method::POST,
        "/api/signup",
        &json_type,
        br#"{"email": "a@acme.example", "password": "#.to_vec(),
    )
    .await;
    assert_problem(&truncated, StatusCode::BAD_REQUEST, "malformed");
    let mut trailing = serde_json::to_vec(&signup_body(
        "a@acme.example",
        "acme",
        &["acme.customers.example"],
    ))
    .unwrap();
    trailing.extend_from_slice(b" {}");
    let trailing = raw(&platform, Method::POST, "/api/signup", &json_type, trailing).await;
    assert_problem(&trailing, StatusCode::BAD_REQUEST, "malformed");

    let mut body = signup_body("a@acme.example", "acme", &["acme.customers.example"]);
    body["admin"] = json!(true);
    let unknown = signup(&platform, body).await;
    assert_invalid(&unknown, "admin", "unknown field `admin`");
    let mut body = signup_body("a@acme.example", "acme", &["acme.customers.example"]);
    body["tenant"]["plan"] = json!("enterprise");
    let unknown = signup(&platform, body).await;
    assert_invalid(&unknown, "tenant.plan", "unknown field `plan`");
    let wrong_type = signup(
        &platform,
        json!({"email": "a@acme.example", "password": PASSWORD, "name": "A", "tenant": {"id": 7}}),
    )
    .await;
    assert_invalid(&wrong_type, "tenant.id", "invalid type");
    let missing = signup(
        &platform,
        json!({"email": "a@acme.example", "password": PASSWORD, "tenant": {"id": "acme"}}),
    )
    .await;
    assert_invalid(&missing, "name", "missing field `name`");
    assert_eq!(missing.body["detail"], "name: missing field `name`");
    let missing = signup(
        &platform,
        json!({"email": "a@acme.example", "password": PASSWORD, "name": "A", "tenant": {}}),
    )
    .await;
    assert_invalid(&missing, "tenant.id", "missing field `id`");

    let body = serde_json::to_vec(&signup_body(
        "a@acme.example",
        "acme",
        &["acme.customers.example"],
    ))
    .unwrap();
    let text = raw(
        &platform,
        Method::POST,
        "/api/signup",
        &[("content-type", "text/plain")],
        body.clone(),
    )
    .await;
    assert_problem(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let untyped = raw(&platform, Method::POST, "/api/signup", &[], body.clone()).await;
    assert_problem(
        &untyped,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );
    let problem_json = raw(
        &platform,
        Method::POST,
        "/api/signup",
        &[("content-type", "application/problem+json; charset=utf-8")],
        b"{".to_vec(),
    )
    .await;
    assert_problem(&problem_json, StatusCode::BAD_REQUEST, "malformed");

    // 64 KiB by default: a body past it is refused before it is parsed.
    let mut huge = signup_body("a@acme.example", "acme", &["acme.customers.example"]);
    huge["name"] = json!("x".repeat(70 * 1024));
    let huge = raw(
        &platform,
        Method::POST,
        "/api/signup",
        &json_type,
        serde_json::to_vec(&huge).unwrap(),
    )
    .await;
    assert_problem(&huge, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");

    assert_eq!(footprint(&platform).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_follows_max_body_bytes() {
    let flags: Vec<&str> = MANY_PEOPLE
        .iter()
        .copied()
        .chain(["--max-body-bytes", "2048"])
        .collect();
    let platform = Platform::start_with(&flags, None).await;
    let before = footprint(&platform).await;
    let mut body = signup_body("a@acme.example", "acme", &["acme.customers.example"]);
    body["name"] = json!("x".repeat(3000));
    let refused = signup(&platform, body).await;
    assert_problem(&refused, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    assert_eq!(footprint(&platform).await, before);
    // Under the limit the body is read, and judged on its content.
    let mut body = signup_body("a@acme.example", "acme", &["acme.customers.example"]);
    body["name"] = json!("x".repeat(1500));
    let judged = signup(&platform, body).await;
    assert_invalid(&judged, "name", "1 to 128 characters");
    assert_eq!(footprint(&platform).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_with_bad_values_names_each_field_and_creates_nothing() {
    let platform = Platform::start_with(MANY_PEOPLE, None).await;
    platform
        .signup(
            "owner@acme.example",
            "acme",
            &["acme.customers.example", "*.acme.customers.example"],
        )
        .await;
    let before = footprint(&platform).await;

    let pattern = signup(
        &platform,
        signup_body("a@globex.example", "globex", &["Not A Domain!"]),
    )
    .await;
    assert_problem(&pattern, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_field(
        &pattern,
        "tenant.domains[0]",
        "Invalid value: \"Not A Domain!\": tenant.domains[0] in body should match '^",
    );
    let outside = signup(
        &platform,
        signup_body(
            "a@globex.example",
            "globex",
            &["globex.customers.example", "globex.example"],
        ),
    )
    .await;
    assert_invalid(
        &outside,
        "tenant.domains[1]",
        "must be a name under *.customers.example",
    );
    let parent = signup(
        &platform,
        signup_body("a@globex.example", "globex", &["*.customers.example"]),
    )
    .await;
    assert_invalid(
        &parent,
        "tenant.domains[0]",
        "must be a name under *.customers.example",
    );
    let twice = signup(
        &platform,
        signup_body(
            "a@globex.example",
            "globex",
            &["globex.customers.example", "globex.customers.example"],
        ),
    )
    .await;
    assert_invalid(&twice, "tenant.domains[1]", "listed twice");
    // `shop.acme.customers.example` lies under acme's wildcard.
    let claimed = signup(
        &platform,
        signup_body(
            "a@globex.example",
            "globex",
            &["globex.customers.example", "shop.acme.customers.example"],
        ),
    )
    .await;
    assert_invalid(
        &claimed,
        "tenant.domains[1]",
        "already claimed by another tenant",
    );
    let too_many = signup(
        &platform,
        signup_body(
            "a@globex.example",
            "globex",
            &[
                "a.globex.customers.example",
                "b.globex.customers.example",
                "c.globex.customers.example",
                "d.globex.customers.example",
            ],
        ),
    )
    .await;
    assert_problem(
        &too_many,
        StatusCode::UNPROCESSABLE_ENTITY,
        "quota-exceeded",
    );
    assert_eq!(too_many.body["limit"], "maxDomains");

    for id in ["Globex", "globex_corp", "g", "globex-", "9globex"] {
        let reply = signup(
            &platform,
            signup_body("a@globex.example", id, &["globex.customers.example"]),
        )
        .await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(reply.fields(), vec!["tenant.id"], "{id}: {:?}", reply.body);
    }
    let mut short = signup_body("a@globex.example", "globex", &["globex.customers.example"]);
    short["password"] = json!("short");
    let short = signup(&platform, short).await;
    assert_invalid(&short, "password", "12");
    for email in [
        "not-an-email",
        "a@b",
        "a b@globex.example",
        "@globex.example",
    ] {
        let reply = signup(
            &platform,
            signup_body(email, "globex", &["globex.customers.example"]),
        )
        .await;
        assert_invalid(&reply, "email", "must be an email address");
    }
    // Every problem at once.
    let mut everything = signup_body("nope", "Globex", &["globex.example"]);
    everything["password"] = json!("short");
    let everything = signup(&platform, everything).await;
    assert_problem(&everything, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let fields = everything.fields();
    for field in ["email", "password", "tenant.id"] {
        assert!(
            fields.contains(&field.to_owned()),
            "{field}: {:?}",
            everything.body
        );
    }

    assert_eq!(footprint(&platform).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sign_up_with_a_taken_email_or_tenant_id_is_a_conflict_that_leaves_nothing() {
    let platform = Platform::start_with(MANY_PEOPLE, None).await;
    platform
        .signup("owner@acme.example", "acme", &["acme.customers.example"])
        .await;
    let before = footprint(&platform).await;
    let people = before.users.iter().filter(|k| k.ends_with('}')).count();
    assert_eq!(people, 1, "{before:?}");

    let same_email = signup(
        &platform,
        signup_body(
            "Owner@ACME.example",
            "globex",
            &["globex.customers.example"],
        ),
    )
    .await;
    assert_problem(&same_email, StatusCode::CONFLICT, "conflict");
    assert_field(&same_email, "email", "exists");
    assert_eq!(footprint(&platform).await, before);

    let same_tenant = signup(
        &platform,
        signup_body("other@acme.example", "acme", &["acme2.customers.example"]),
    )
    .await;
    assert_problem(&same_tenant, StatusCode::CONFLICT, "conflict");
    assert_field(&same_tenant, "tenant.id", "taken");
    assert_eq!(footprint(&platform).await, before);

    // Neither refusal spent the names: the person can still sign in, and
    // the other address can still sign up with a free tenant id.
    let login = platform.login("owner@acme.example", PASSWORD, None).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    platform
        .signup(
            "other@acme.example",
            "globex",
            &["globex.customers.example"],
        )
        .await;
}

/// A verified owner of `acme` (claiming `*.acme.customers.example`) and a
/// second tenant `globex`; the owner's token.
async fn two_tenants(platform: &Platform) -> String {
    let token = platform
        .owner(
            "owner@acme.example",
            "acme",
            &["acme.customers.example", "*.acme.customers.example"],
        )
        .await;
    platform
        .owner(
            "owner@globex.example",
            "globex",
            &["globex.customers.example"],
        )
        .await;
    token
}

async fn create_route(platform: &Platform, token: &str, body: Value) -> Reply {
    platform
        .call(
            Method::POST,
            "/api/tenants/acme/routes",
            Some(token),
            Some(body),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_the_cluster_would_refuse_is_refused_with_the_crds_words_and_not_written() {
    let platform = Platform::start_with(MANY_PEOPLE, None).await;
    let token = two_tenants(&platform).await;
    let before = footprint(&platform).await;
    let good = route_spec("shop.acme.customers.example", "127.0.0.1:9");

    let malformed = raw(
        &platform,
        Method::POST,
        "/api/tenants/acme/routes",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {token}")),
        ],
        b"{\"name\": \"shop\", \"spec\": [".to_vec(),
    )
    .await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "malformed");

    let unknown = create_route(
        &platform,
        &token,
        json!({"name": "shop", "spec": good, "replicas": 3}),
    )
    .await;
    assert_invalid(&unknown, "replicas", "unknown field `replicas`");
    let mut spec = good.clone();
    spec["foo"] = json!(1);
    let unknown = create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_problem(&unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(unknown.fields(), vec!["spec.foo"], "{:?}", unknown.body);

    let name = create_route(&platform, &token, json!({"name": "Shop!", "spec": good})).await;
    assert_invalid(&name, "name", "DNS name");

    let spec = json!({
        "hosts": ["shop.acme.customers.example"],
        "backends": [
            {"name": "web", "address": "127.0.0.1:9"},
            {"name": "web", "address": "127.0.0.1:10"},
        ],
    });
    let duplicate = create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_invalid(&duplicate, "spec", "backend names must be unique");

    let spec = json!({
        "hosts": ["shop.acme.customers.example"],
        "rules": [{"path": {"value": "/api"}, "backends": ["api"]}],
        "backends": [{"name": "web", "address": "127.0.0.1:9"}],
    });
    let unknown_backend =
        create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_invalid(
        &unknown_backend,
        "spec",
        "every backend a rule names must be listed in backends",
    );

    let spec = json!({
        "hosts": ["shop.acme.customers.example"],
        "backends": [{"name": "web", "address": "127.0.0.1:9", "service": {"name": "web", "port": 80}}],
    });
    let both = create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_invalid(
        &both,
        "spec.backends[0]",
        "set exactly one of service and address",
    );

    let outside = create_route(
        &platform,
        &token,
        json!({"name": "shop", "spec": route_spec("shop.globex.customers.example", "127.0.0.1:9")}),
    )
    .await;
    assert_invalid(&outside, "spec", "HostNotAllowed");

    let mut spec = good.clone();
    spec["tenantRef"] = json!("globex");
    let foreign = create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_invalid(&foreign, "spec.tenantRef", "must be \"acme\"");

    let namespace = create_route(
        &platform,
        &token,
        json!({"name": "shop", "namespace": "globex", "spec": good}),
    )
    .await;
    assert_invalid(&namespace, "namespace", "tenant's namespaces");

    let not_object = create_route(&platform, &token, json!({"name": "shop", "spec": [1]})).await;
    assert_invalid(&not_object, "spec", "object");

    let text = raw(
        &platform,
        Method::POST,
        "/api/tenants/acme/routes",
        &[
            ("content-type", "text/yaml"),
            ("authorization", &format!("Bearer {token}")),
        ],
        b"name: shop".to_vec(),
    )
    .await;
    assert_problem(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    );

    assert_eq!(footprint(&platform).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_past_the_plans_quotas_are_refused_with_the_limit_named() {
    let platform = Platform::start_with(MANY_PEOPLE, None).await;
    let token = two_tenants(&platform).await;

    let spec = json!({
        "hosts": ["shop.acme.customers.example"],
        "backends": [
            {"name": "a", "address": "127.0.0.1:9"},
            {"name": "b", "address": "127.0.0.1:10"},
            {"name": "c", "address": "127.0.0.1:11"},
        ],
    });
    let before = footprint(&platform).await;
    let backends = create_route(&platform, &token, json!({"name": "shop", "spec": spec})).await;
    assert_problem(
        &backends,
        StatusCode::UNPROCESSABLE_ENTITY,
        "quota-exceeded",
    );
    assert_eq!(backends.body["limit"], "maxBackendsPerRoute");
    assert_eq!(footprint(&platform).await, before);

    for name in ["one", "two"] {
        let created = create_route(
            &platform,
            &token,
            json!({"name": name, "spec": route_spec(&format!("{name}.acme.customers.example"), "127.0.0.1:9")}),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    }
    let before = footprint(&platform).await;
    let third = create_route(
        &platform,
        &token,
        json!({"name": "three", "spec": route_spec("three.acme.customers.example", "127.0.0.1:9")}),
    )
    .await;
    assert_problem(&third, StatusCode::UNPROCESSABLE_ENTITY, "quota-exceeded");
    assert_eq!(third.body["limit"], "maxRoutes");
    assert!(
        third.body["detail"]
            .as_str()
            .unwrap()
            .contains("allows 2 routes"),
        "{:?}",
        third.body
    );
    // Replacing a route's spec is not a new route: within the quota.
    let replaced = platform
        .call(
            Method::PUT,
            "/api/tenants/acme/routes/two",
            Some(&token),
            Some(json!({"spec": route_spec("two.acme.customers.example", "127.0.0.1:10")})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    let same_name = create_route(
        &platform,
        &token,
        json!({"name": "one", "spec": route_spec("one.acme.customers.example", "127.0.0.1:9")}),
    )
    .await;
    assert_problem(&same_name, StatusCode::CONFLICT, "conflict");
    assert_field(&same_name, "name", "already exists");
    assert_eq!(footprint(&platform).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_answer_problems() {
    let platform = Platform::start().await;
    for path in ["/api/nothing-here", "/api/tenants/acme/widgets", "/"] {
        let reply = platform.call(Method::GET, path, None, None).await;
        assert_problem(&reply, StatusCode::NOT_FOUND, "not-found");
    }
    for (method, path, allowed) in [
        (Method::GET, "/api/signup", &["POST"][..]),
        (Method::DELETE, "/api/me", &["GET"][..]),
        (
            Method::PUT,
            "/api/tenants/acme",
            &["GET", "PATCH", "DELETE"][..],
        ),
        (Method::POST, "/.well-known/jwks.json", &["GET"][..]),
    ] {
        // No token: the method is refused before anyone is asked for one.
        let reply = platform.call(method.clone(), path, None, None).await;
        assert_problem(&reply, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
        let allow: Vec<&str> = reply
            .headers
            .get(header::ALLOW)
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .split(',')
            .map(str::trim)
            .filter(|m| *m != "HEAD")
            .collect();
        assert_eq!(allow, allowed, "{method} {path}");
    }
}
