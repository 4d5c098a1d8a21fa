//! A whole API for a test: a real `redis-server` on a free port, a manifest
//! folder with a plan (or a given directory), a signing-key folder, an
//! outbox the API delivers messages into, and the API serving on loopback;
//! plus a small HTTP client and sign-up helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser as _;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use veloflux_api::app::Running;
use veloflux_api::config::Config;
use veloflux_api::directory::Directory;
use veloflux_store::testing::RedisServer;

/// The plan sign-ups land on in tests.
pub const PLAN_YAML: &str = "apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata:
  name: free
spec:
  limits:
    requestsPerMinute: 6000
    burst: 1000
    maxRoutes: 2
    maxBackendsPerRoute: 2
    maxDomains: 3
  features:
    staticBackends: true
";

/// A fresh folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vf-api-{name}-{}-{}",
        std::process::id(),
        veloflux_api::auth::random_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

impl Reply {
    /// The problem type's slug (`invalid`, `not-found`, …).
    pub fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or_default()
    }

    /// The fields named by a problem.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A small HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl HttpClient {
    /// Sends a request with a raw body.
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("answer within 30 s")
            .expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }
}

/// A running API and what it runs on.
pub struct Platform {
    pub redis: RedisServer,
    pub manifests: PathBuf,
    pub keys: PathBuf,
    pub outbox: PathBuf,
    pub running: Option<Running>,
    pub base: String,
    pub admin: String,
    pub http: HttpClient,
    pub args: Vec<String>,
}

impl Platform {
    /// An API on a manifest folder holding [`PLAN_YAML`].
    pub async fn start() -> Self {
        Self::start_with(&[], None).await
    }

    /// With extra flags, and optionally another directory than the folder.
    pub async fn start_with(extra: &[&str], directory: Option<Arc<dyn Directory>>) -> Self {
        let redis = RedisServer::start().await.expect("redis-server starts");
        let manifests = temp_dir("manifests");
        std::fs::write(manifests.join("plans.yaml"), PLAN_YAML).unwrap();
        let keys = temp_dir("keys");
        veloflux_api::auth::keys::generate(&keys).unwrap();
        let outbox = temp_dir("outbox");
        let mut args: Vec<String> = [
            "veloflux-api",
            "--redis",
            &redis.url(),
            "--manifests",
            manifests.to_str().unwrap(),
            "--signing-keys",
            keys.to_str().unwrap(),
            "--outbox",
            outbox.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--allowed-parent-domain",
            "customers.example",
            "--log",
            "warn",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let config = Config::try_parse_from(&args).expect("test flags parse");
        config.validate().expect("test flags are valid");
        let running = match directory {
            Some(directory) => veloflux_api::app::start_with(&config, directory).await,
            None => veloflux_api::app::start(&config).await,
        }
        .expect("API starts");
        let base = format!("http://{}", running.api);
        let admin = format!("http://{}", running.admin);
        Self {
            redis,
            manifests,
            keys,
            outbox,
            running: Some(running),
            base,
            admin,
            http: HttpClient::default(),
            args,
        }
    }

    /// Stops the API (Redis and the folders stay until drop).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// A JSON call; `token` as a bearer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        let bytes = match &body {
            Some(body) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(body).unwrap()
            }
            None => Vec::new(),
        };
        self.http
            .raw(method, &format!("{}{path}", self.base), &headers, bytes)
            .await
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Every message delivered to `to` of `kind`, oldest first.
    pub fn messages(&self, to: &str, kind: &str) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.outbox)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice::<Value>(&std::fs::read(p).unwrap()).unwrap())
            .filter(|m| m["to"] == to && m["kind"] == kind)
            .collect()
    }

    /// The token of the last message to `to` of `kind`.
    pub fn last_token(&self, to: &str, kind: &str) -> String {
        let messages = self.messages(to, kind);
        let last = messages
            .last()
            .unwrap_or_else(|| panic!("no {kind} message to {to}"));
        last["token"].as_str().unwrap().to_owned()
    }

    /// Signs up `email` with tenant `tenant` claiming `domains`; returns the
    /// token response (asserting 201).
    pub async fn signup(&self, email: &str, tenant: &str, domains: &[&str]) -> Value {
        let reply = self
            .call(
                Method::POST,
                "/api/signup",
                None,
                Some(json!({
                    "email": email,
                    "password": "correct horse battery staple",
                    "name": format!("Owner of {tenant}"),
                    "tenant": {"id": tenant, "displayName": tenant.to_uppercase(), "domains": domains},
                })),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "sign-up of {email}: {:?}",
            reply.body
        );
        reply.body
    }

    /// Confirms `email` with the token the outbox received.
    pub async fn verify(&self, email: &str) {
        let token = self.last_token(email, "verify-email");
        let reply = self
            .call(
                Method::POST,
                "/api/verify-email",
                None,
                Some(json!({"token": token})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    }

    /// Signs up and verifies; returns the access token.
    pub async fn owner(&self, email: &str, tenant: &str, domains: &[&str]) -> String {
        let tokens = self.signup(email, tenant, domains).await;
        self.verify(email).await;
        tokens["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs in; returns the token response.
    pub async fn login(&self, email: &str, password: &str, tenant: Option<&str>) -> Reply {
        let mut body = json!({"email": email, "password": password});
        if let Some(tenant) = tenant {
            body["tenant"] = json!(tenant);
        }
        self.call(Method::POST, "/api/sessions", None, Some(body))
            .await
    }

    /// Invites `email` into `tenant` as `role` and accepts as a new person;
    /// returns the new member's token response.
    pub async fn member(&self, owner_token: &str, tenant: &str, email: &str, role: &str) -> Value {
        let reply = self
            .call(
                Method::POST,
                &format!("/api/tenants/{tenant}/invitations"),
                Some(owner_token),
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        let token = self.last_token(email, "invitation");
        let reply = self
            .call(
                Method::POST,
                "/api/invitations/accept",
                None,
                Some(json!({"token": token, "name": email, "password": "correct horse battery staple"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    /// Grants `email` the platform-admin flag, as `veloflux-api
    /// platform-admin grant EMAIL` does; it shows in their next sign-in.
    pub async fn grant_platform_admin(&self, email: &str) {
        let client = veloflux_store::testing::connected(&self.redis.url())
            .await
            .unwrap();
        let people = veloflux_api::people::People::new(client);
        let user = people.user_by_email(email).await.unwrap().unwrap();
        people.set_platform_admin(&user.id, true).await.unwrap();
    }

    /// The user id behind an access token (`/api/me`).
    pub async fn user_id(&self, token: &str) -> String {
        let me = self.get("/api/me", token).await;
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        me.body["id"].as_str().unwrap().to_owned()
    }

    /// Keys of the store matching `pattern`, sorted (from the RESP array
    /// `KEYS` answers: the lines that are not `*n` or `$len` headers).
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.redis_cmd(&["KEYS", pattern]).await;
        assert!(reply.starts_with('*'), "KEYS {pattern}: {reply}");
        let mut keys: Vec<String> = reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    /// A plain Redis command's output (redis-cli).
    pub async fn redis_cmd(&self, args: &[&str]) -> String {
        self.redis.command(args).await.unwrap()
    }

    /// The manifest folder's files, by name.
    pub fn manifest_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.manifests)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for dir in [&self.manifests, &self.keys, &self.outbox] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A static route spec to `backend`.
pub fn route_spec(host: &str, backend: &str) -> Value {
    json!({
        "hosts": [host],
        "backends": [{"name": "web", "address": backend}],
    })
}

/// Flags for tests that make many people: the cheapest argon2id the API
/// accepts, throttles out of the way, tokens that outlive a slow run.
pub const MANY_PEOPLE: &[&str] = &[
    "--argon2-memory-kib",
    "8192",
    "--argon2-iterations",
    "1",
    "--throttle-per-address",
    "100000",
    "--throttle-per-account",
    "100000",
    "--access-token-ttl",
    "1h",
];

/// Compares `actual` with the checked-in file at `path` (relative to the
/// workspace root); with `VELOFLUX_BLESS=1` rewrites the file instead.
pub fn golden(path: &str, actual: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    if std::env::var("VELOFLUX_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        expected == actual,
        "{path} is not what the code generates; run `make openapi` (VELOFLUX_BLESS=1) and review the diff"
    );
}

/// The folder `path` exists and holds `name`.
pub fn has_file(dir: &Path, name: &str) -> bool {
    dir.join(name).is_file()
}

/// The value of the sample `series` (`name{labels}` exactly as exposed) on
/// the admin endpoint at `admin`; 0 while it has not been exposed yet.
pub async fn metric(http: &HttpClient, admin: &str, series: &str) -> f64 {
    let reply = http
        .raw(Method::GET, &format!("{admin}/metrics"), &[], Vec::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&reply.raw).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// The decoded header and claims of a JWT (no signature check).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::Engine as _;
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("three parts");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    (decode(), decode())
}

/// Waits, if needed, until at least `needed` remains of the current
/// throttle window (fixed windows of `auth::throttle::WINDOW`, counted from
/// the Unix epoch), so a test's attempts all land in one window.
pub async fn fresh_throttle_window(needed: Duration) {
    let window = veloflux_api::auth::throttle::WINDOW.as_millis() as u64;
    assert!(needed.as_millis() < u128::from(window) / 2);
    let now = veloflux_api::auth::now_ms();
    let left = window - now % window;
    if u128::from(left) < needed.as_millis() {
        tokio::time::sleep(Duration::from_millis(left + 50)).await;
    }
}

/// The password every test person has.
pub const PASSWORD: &str = "correct horse battery staple";

/// The exact problem document the API answers with.
pub fn problem(status: u16, slug: &str, title: &str, detail: &str) -> Value {
    json!({
        "type": format!("https://veloflux.io/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
    })
}

/// A loopback HTTP/1.1 backend answering every request 200 with `body`.
pub async fn backend(body: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_| async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(body.as_bytes()),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// `GET /` for `host` through a proxy: status and body, `None` when the
/// proxy does not answer (yet).
pub async fn proxy_get(proxy: std::net::SocketAddr, host: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(proxy).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let status = response.split(' ').nth(1)?.parse().ok()?;
        Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// The access token of a token response.
pub fn token(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The refresh token of a token response.
pub fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

/// `POST /api/sessions/refresh` with `refresh_token`.
pub async fn refresh(platform: &Platform, refresh_token: &str) -> Reply {
    platform
        .call(
            Method::POST,
            "/api/sessions/refresh",
            None,
            Some(json!({"refresh_token": refresh_token})),
        )
        .await
}
