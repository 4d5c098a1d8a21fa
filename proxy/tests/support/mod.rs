//! Real parts for the proxy's integration tests: HTTP backends on loopback
//! ports, manifest folders, a proxy started in-process, and a client.

#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use veloflux_proxy::app::{Running, start};
use veloflux_proxy::config::Config;
#[allow(
    unused_imports,
    reason = "each test file compiles this module; not all of them poll"
)]
pub use veloflux_store::testing::eventually;

/// How a test backend behaves, changeable while it runs.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Answer `/healthz` with 503 instead of 200.
    pub unhealthy: AtomicBool,
    /// Answer every other request with this status (0: 200).
    pub status: AtomicU64,
    /// Delay before answering, in milliseconds.
    pub delay_ms: AtomicU64,
}

/// A real HTTP server on a loopback port that answers with its own name.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub behaviour: Arc<Behaviour>,
    pub in_flight: Arc<AtomicUsize>,
    /// Connections accepted, and those still open.
    pub connections: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Self {
            name: name.to_owned(),
            addr,
            hits: Arc::default(),
            behaviour: Arc::default(),
            in_flight: Arc::default(),
            connections: Arc::default(),
            open: Arc::default(),
        };
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let b = b.clone();
                b.connections.fetch_add(1, Ordering::SeqCst);
                b.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let open = Arc::clone(&b.open);
                    let service = service_fn(move |req| handle(b.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        backend
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn handle(
    b: Backend,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/healthz" {
        let status = if b.behaviour.unhealthy.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        return Ok(reply(status, "health"));
    }
    b.hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().get(header::UPGRADE).is_some() {
        // Upgrade passthrough: switch protocols, then echo every byte back.
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        return Ok(resp);
    }
    b.in_flight.fetch_add(1, Ordering::SeqCst);
    let delay = b.behaviour.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let headers = format!(
        "{}|{}|{}|{}",
        req.headers()
            .get("x-forwarded-for")
            .map_or("", |v| v.to_str().unwrap_or("")),
        req.headers()
            .get("x-forwarded-proto")
            .map_or("", |v| v.to_str().unwrap_or("")),
        req.headers()
            .get("x-request-id")
            .map_or("", |v| v.to_str().unwrap_or("")),
        req.headers()
            .get("connection")
            .map_or("", |v| v.to_str().unwrap_or("")),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes().len())
        .unwrap_or(0);
    b.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = match b.behaviour.status.load(Ordering::SeqCst) {
        0 => 200,
        s => s as u16,
    };
    let mut resp = reply(status, &format!("{} {body} {headers}", b.name));
    resp.headers_mut()
        .insert("x-backend", header::HeaderValue::from_str(&b.name).unwrap());
    Ok(resp)
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp
}

/// A manifest folder in the temp dir, removed on drop.
#[derive(Debug)]
pub struct Folder(pub PathBuf);

impl Folder {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vf-proxy-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes a file atomically (write + rename), as editors and kubectl do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.0.join(name)).unwrap();
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plan and a tenant `acme` owning `*.test` names under `acme.test`.
pub fn plan_and_tenant() -> String {
    r#"
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata: {name: pro}
spec:
  limits: {requestsPerMinute: 100000000, burst: 1000000, maxRoutes: 100, maxBackendsPerRoute: 16, maxDomains: 10}
  features: {staticBackends: true, customTls: true}
---
apiVersion: veloflux.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  planRef: pro
  domains: [acme.test, "*.acme.test"]
  namespaces: [acme]
---
apiVersion: veloflux.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  planRef: pro
  domains: [globex.test]
  namespaces: [globex]
"#
    .to_owned()
}

/// A route of acme for `host` over `backends` with `extra` spec lines (indented two spaces).
pub fn route(
    name: &str,
    host: &str,
    backends: &[&Backend],
    algorithm: &str,
    extra: &str,
) -> String {
    let mut text = format!(
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: acme}}\nspec:\n  tenantRef: acme\n  hosts: [{host}]\n  algorithm: {algorithm}\n  backends:\n"
    );
    for b in backends {
        text.push_str(&format!(
            "    - {{name: {}, address: \"{}\"}}\n",
            b.name, b.addr
        ));
    }
    text.push_str(extra);
    text
}

pub fn config(dir: &Path) -> Config {
    Config {
        manifests: Some(dir.to_path_buf()),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: None,
        tls_cert: None,
        tls_key: None,
        redis: None,
        redis_ca: None,
        state_dir: None,
        proxy_id: None,
        redis_connect_timeout: Duration::from_secs(3),
        redis_timeout: Duration::from_secs(2),
        rate_limit: true,
        ratelimit_timeout: Duration::from_millis(50),
        usage_flush_interval: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(2),
        demo_backends: false,
        access_log: false,
        log: "warn".into(),
        shutdown_grace: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        metrics_max_tenants: 100,
        metrics_max_routes: 1000,
        worker_threads: None,
    }
}

/// A proxy following the Redis at `url` as `id`, heartbeating every 200 ms.
pub fn fleet_config(url: &str, id: &str) -> Config {
    let mut config = config(Path::new("unused"));
    config.manifests = None;
    config.redis = Some(url.to_owned());
    config.proxy_id = Some(id.to_owned());
    config.heartbeat_interval = Duration::from_millis(200);
    config
}

/// A proxy serving the test tenants and `routes_yaml` from a fresh folder
/// named after `tag`; the folder lives as long as the returned guard.
pub async fn proxy_with_routes(tag: &str, routes_yaml: &str) -> (Folder, Running) {
    let folder = Folder::new(tag);
    folder.write("00-tenants.yaml", &plan_and_tenant());
    folder.write("route.yaml", routes_yaml);
    let proxy = start_proxy(folder.path()).await;
    (folder, proxy)
}

pub async fn start_proxy(dir: &Path) -> Running {
    start(config(dir)).await.unwrap()
}

/// Resolves every name to 127.0.0.1, so requests can carry real host names
/// (and HTTP/2 `:authority`) while going to the proxy under test.
#[derive(Clone, Debug)]
pub struct Loopback;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Loopback {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        std::future::ready(Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter()))
    }
}

pub type HttpClient = Client<HttpConnector<Loopback>, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new_with_resolver(Loopback))
}

pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new_with_resolver(Loopback))
}

/// A response's status, headers and body text.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub version: http::Version,
}

pub async fn send(
    client: &HttpClient,
    proxy: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Got {
    let req = Request::builder()
        .method(method)
        .uri(format!(
            "http://{}:{}{path}",
            host.split(':').next().unwrap_or(host),
            proxy.port()
        ))
        .header(header::HOST, host)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body =
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Got {
        status,
        headers,
        body,
        version,
    }
}

pub async fn get(client: &HttpClient, proxy: SocketAddr, host: &str, path: &str) -> Got {
    send(client, proxy, host, "GET", path, b"").await
}

/// The backend name in a test backend's reply.
pub fn backend_of(got: &Got) -> &str {
    got.body.split(' ').next().unwrap_or("")
}
