//! The admin listener, on its own port: `/healthz` (the process is up),
//! `/readyz` (config loaded, with the source's state), `/metrics`
//! (Prometheus text), and `/config` (what is served: tenants, revisions,
//! routes, endpoints with health and in-flight counts).

use std::convert::Infallible;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::metrics::Metrics;
use crate::routing::snapshot::Store;

/// The config source's state, as `/readyz` reports it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    /// `manifests` or `redis`.
    pub kind: &'static str,
    /// Where the config comes from.
    pub location: String,
    /// Whether a complete config has been loaded.
    pub loaded: bool,
    /// Whether the source is reachable now.
    pub connected: bool,
    /// Problems of the last read (invalid files, refused tenants…).
    pub problems: Vec<String>,
    /// What the source is doing, in words.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The store's epoch marker the proxy synced with (Redis source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Every change announced up to this stream entry is applied (Redis source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
}

/// What the admin endpoints read.
#[derive(Debug)]
pub struct Admin {
    /// The routing being served.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The source's state.
    pub source: ArcSwap<SourceStatus>,
}

impl Admin {
    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                let source = self.source.load();
                let snapshot = self.store.load();
                let ready = source.loaded;
                let body = json!({
                    "ready": ready,
                    "source": &**source,
                    "tenants": snapshot.tenant_count(),
                    "hosts": snapshot.host_count(),
                });
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(status, &body)
            }
            "/metrics" => match self.metrics.encode() {
                Ok(text) => {
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    r
                }
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics encoding failed\n",
                ),
            },
            "/config" => json_response(StatusCode::OK, &self.dump()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The served configuration, without TLS keys.
    pub fn dump(&self) -> serde_json::Value {
        let snapshot = self.store.load();
        let mut tenants: Vec<_> = snapshot.tenants().collect();
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        let tenants: Vec<_> = tenants
            .iter()
            .map(|t| {
                let routes: Vec<_> = t
                    .routes
                    .iter()
                    .zip(&t.config.routes)
                    .map(|(rt, rc)| {
                        let rules: Vec<_> = rt
                            .rules
                            .iter()
                            .map(|rule| {
                                let eps: Vec<_> = rule
                                    .endpoints
                                    .iter()
                                    .map(|e| json!({"address": e.address(), "healthy": e.is_healthy(), "ejected": e.is_ejected(), "inFlight": e.in_flight(), "draining": false}))
                                    .chain(rule.draining.iter().map(|e| json!({"address": e.address(), "healthy": e.is_healthy(), "ejected": e.is_ejected(), "inFlight": e.in_flight(), "draining": true})))
                                    .collect();
                                json!({"endpoints": eps})
                            })
                            .collect();
                        json!({"id": &*rt.id, "hosts": rc.hosts, "algorithm": rc.algorithm.as_str(), "rules": rules})
                    })
                    .collect();
                json!({
                    "tenant": &*t.id,
                    "revision": t.config.revision,
                    "schemaVersion": t.config.schema_version,
                    "suspended": t.config.suspended,
                    "plan": t.config.plan.name,
                    "routes": routes,
                })
            })
            .collect();
        json!({ "tenants": tenants })
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn run(listener: TcpListener, admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admin = Arc::clone(&admin);
                let builder = Arc::clone(&builder);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let response = admin.respond(&req);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Per-scrape series read from the snapshot: config revision per tenant and
/// health / in-flight per endpoint of each route.
#[derive(Debug)]
pub struct SnapshotCollector {
    /// The routing being served.
    pub store: Arc<Store>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct EndpointLabels {
    tenant: String,
    route: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TenantOnly {
    tenant: String,
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.store.load();
        let mut tenants: Vec<_> = snapshot.tenants().collect();
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "veloflux_config_revision",
                "Config revision served, by tenant",
                None,
                gauge.metric_type(),
            )?;
            let mut seen = std::collections::HashSet::new();
            for t in &tenants {
                if !seen.insert(&*t.label) {
                    continue; // folded tenants share `other`; report it once
                }
                let labels = TenantOnly {
                    tenant: t.label.to_string(),
                };
                ConstGauge::new(i64::try_from(t.config.revision).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "veloflux_upstream_healthy",
                "1 when the endpoint passes health checks and is not ejected",
                0u8,
            ),
            (
                "veloflux_upstream_in_flight",
                "Requests in flight to the endpoint",
                1u8,
            ),
        ] {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            let mut seen = std::collections::HashSet::new();
            for t in &tenants {
                for route in t.routes.iter() {
                    for rule in route.rules.iter() {
                        for e in rule.endpoints.iter().chain(rule.draining.iter()) {
                            let labels = EndpointLabels {
                                tenant: t.label.to_string(),
                                route: route.id.to_string(),
                                endpoint: e.address().to_owned(),
                            };
                            if !seen.insert(labels.clone()) {
                                continue;
                            }
                            let v = if value == 0 {
                                i64::from(e.is_available())
                            } else {
                                i64::from(e.in_flight())
                            };
                            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
