//! Sign-in throttling across API replicas: two real `veloflux-api`
//! processes on one Redis count attempts together, per account and per
//! client address, and each process's local bucket sheds a flood on its own
//! before any shared counting.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::{HttpClient, PLAN_YAML, Reply, fresh_throttle_window, metric, temp_dir};
use veloflux_store::testing::{RedisServer, free_port};

const PASSWORD: &str = "correct horse battery staple";
const WRONG: &str = "not the right password";

/// Folders two replicas share: manifests (with the plan) and signing keys.
struct Shared {
    manifests: PathBuf,
    keys: PathBuf,
}

impl Shared {
    fn new() -> Self {
        let manifests = temp_dir("throttle-manifests");
        std::fs::write(manifests.join("plans.yaml"), PLAN_YAML).unwrap();
        let keys = temp_dir("throttle-keys");
        veloflux_api::auth::keys::generate(&keys).unwrap();
        Self { manifests, keys }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.manifests);
        let _ = std::fs::remove_dir_all(&self.keys);
    }
}

/// One `veloflux-api` process, killed on drop.
struct Replica {
    child: Child,
    base: String,
    admin: String,
    log: PathBuf,
    http: HttpClient,
}

impl Replica {
    /// Starts the binary on free ports and waits (at most 30 s) for `/readyz`.
    async fn start(redis: &RedisServer, shared: &Shared, extra: &[&str]) -> Self {
        let (api, admin) = (free_port().unwrap(), free_port().unwrap());
        let log = temp_dir("throttle-log").join("stderr.log");
        let mut args: Vec<String> = vec![
            "--redis".into(),
            redis.url(),
            "--manifests".into(),
            shared.manifests.to_str().unwrap().into(),
            "--signing-keys".into(),
            shared.keys.to_str().unwrap().into(),
            "--listen".into(),
            format!("127.0.0.1:{api}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin}"),
            "--allowed-parent-domain".into(),
            "customers.example".into(),
            "--log".into(),
            "warn".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let child = Command::new(env!("CARGO_BIN_EXE_veloflux-api"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut replica = Self {
            child,
            base: format!("http://127.0.0.1:{api}"),
            admin: format!("http://127.0.0.1:{admin}"),
            log,
            http: HttpClient::default(),
        };
        replica.wait_ready().await;
        replica
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.admin);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "veloflux-api exited with {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let ready = tokio::time::timeout(Duration::from_secs(2), async {
                let connector = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<http_body_util::Full<bytes::Bytes>>();
                connector.get(url.parse().unwrap()).await.ok()
            })
            .await
            .ok()
            .flatten();
            if ready.is_some_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "veloflux-api not ready within 30 s: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, path: &str, body: &Value) -> Reply {
        self.http
            .raw(
                Method::POST,
                &format!("{}{path}", self.base),
                &[("content-type", "application/json")],
                serde_json::to_vec(body).unwrap(),
            )
            .await
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(
            "/api/sessions",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    async fn sign_ins(&self, outcome: &str) -> f64 {
        metric(
            &self.http,
            &self.admin,
            &format!("veloflux_api_sign_ins_total{{outcome=\"{outcome}\"}}"),
        )
        .await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn assert_throttled(reply: &Reply, context: &str) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{context}: {:?}",
        reply.body
    );
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{context}"
    );
    let retry: u64 = reply.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{context}: Retry-After {retry}");
    assert_eq!(
        reply.body,
        json!({
            "type": "https://veloflux.io/problems/too-many-requests",
            "title": "Too many attempts",
            "status": 429,
            "detail": "too many attempts",
        }),
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_account_limit_holds_across_two_api_processes_sharing_redis() {
    let redis = RedisServer::start().await.unwrap();
    let shared = Shared::new();
    let flags = [
        "--throttle-per-address",
        "1000",
        "--throttle-per-account",
        "4",
    ];
    let a = Replica::start(&redis, &shared, &flags).await;
    let b = Replica::start(&redis, &shared, &flags).await;

    let signup = a
        .call(
            "/api/signup",
            &json!({"email": "ana@acme.example", "password": PASSWORD, "name": "Ana",
                    "tenant": {"id": "acme"}}),
        )
        .await;
    assert_eq!(signup.status, StatusCode::CREATED, "{:?}", signup.body);
    // One store, one key folder: a session started on one replica refreshes
    // on the other.
    let refreshed = b
        .call(
            "/api/sessions/refresh",
            &json!({"refresh_token": signup.body["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);

    fresh_throttle_window(Duration::from_secs(25)).await;
    for (attempt, replica) in [&a, &b, &a, &b].into_iter().enumerate() {
        let refused = replica.login("ana@acme.example", WRONG).await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "attempt {}: {:?}",
            attempt + 1,
            refused.body
        );
    }
    // The fifth attempt overall is refused whichever replica gets it, and so
    // is every one after it in the window, the right password included.
    assert_throttled(&a.login("ana@acme.example", WRONG).await, "5th, on a");
    assert_throttled(&b.login("ana@acme.example", WRONG).await, "6th, on b");
    assert_throttled(
        &b.login("ana@acme.example", PASSWORD).await,
        "right password, on b",
    );
    assert_eq!(a.sign_ins("throttled").await, 1.0);
    assert_eq!(b.sign_ins("throttled").await, 2.0);
    assert_eq!(
        a.sign_ins("refused").await + b.sign_ins("refused").await,
        4.0
    );
    // Other accounts are not held back.
    let other = a.login("bo@acme.example", WRONG).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
}

/// The shared per-address counters, by key.
async fn address_counters(redis: &RedisServer) -> Vec<String> {
    let raw = redis
        .command(&["KEYS", "vf:throttle:{addr:*"])
        .await
        .unwrap();
    let mut lines = raw.split("\r\n");
    let mut keys = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            keys.push(lines.next().unwrap().to_owned());
        }
    }
    keys
}

async fn clear_address_counters(redis: &RedisServer) {
    for key in address_counters(redis).await {
        redis.command(&["DEL", &key]).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_is_shared_and_each_process_sheds_floods_on_its_own() {
    let redis = RedisServer::start().await.unwrap();
    let shared = Shared::new();
    let flags = [
        "--throttle-per-address",
        "5",
        "--throttle-per-account",
        "1000",
    ];
    let a = Replica::start(&redis, &shared, &flags).await;
    let b = Replica::start(&redis, &shared, &flags).await;

    // Five attempts from this address between the two (a's bucket takes
    // three, b's two: neither bucket is empty), then the shared counter says
    // no, on either.
    fresh_throttle_window(Duration::from_secs(25)).await;
    for (attempt, replica) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let refused = replica
            .login(&format!("person{attempt}@acme.example"), WRONG)
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "attempt {}",
            attempt + 1
        );
    }
    assert_throttled(&b.login("late@acme.example", WRONG).await, "6th, on b");
    assert_throttled(&a.login("later@acme.example", WRONG).await, "7th, on a");
    // Refused by the shared counter: the handler ran and counted it.
    assert_eq!(a.sign_ins("throttled").await, 1.0);
    assert_eq!(b.sign_ins("throttled").await, 1.0);

    // a's local bucket (five at once, one more every 12 s) has given four.
    // With the shared counter cleared before each attempt, only that bucket
    // can refuse: its 429 comes before any handler or shared counting.
    let mut shed = None;
    for attempt in 0..10 {
        clear_address_counters(&redis).await;
        let reply = a.login("flood@acme.example", WRONG).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            shed = Some((attempt, reply));
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    }
    let (attempt, reply) = shed.expect("a's bucket refuses within ten attempts");
    assert!(attempt >= 1, "a's bucket had room for one more");
    assert_throttled(&reply, "a's local bucket");
    assert!(
        address_counters(&redis).await.is_empty(),
        "the refused attempt never reached the shared counter"
    );
    assert_eq!(a.sign_ins("throttled").await, 1.0, "nor the handler");
    // b's bucket is its own: b still answers.
    let answered = b.login("flood@acme.example", WRONG).await;
    assert_eq!(
        answered.status,
        StatusCode::UNAUTHORIZED,
        "{:?}",
        answered.body
    );
}
