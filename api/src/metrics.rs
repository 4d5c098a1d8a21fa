//! The API's metrics, named once. Per-endpoint handles are made when the
//! router is built, so answering a request bumps atomics and takes no lock.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::endpoints::Endpoint;

/// Labels of the per-endpoint series: the route template, never a raw path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    method: &'static str,
    endpoint: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: &'static str,
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Handles of one endpoint.
struct EndpointHandles {
    by_class: [Counter; 5],
    latency: Histogram,
}

/// Every metric of the API.
pub struct Metrics {
    registry: Registry,
    /// By index in the endpoint table.
    endpoints: Vec<EndpointHandles>,
    sign_ins: Family<OutcomeLabels, Counter>,
    sign_ups: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    /// Registers every metric, with handles for each of `endpoints`.
    pub fn new(endpoints: &'static [Endpoint]) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Family::<EndpointLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ])
        });
        registry.register(
            "veloflux_api_requests",
            "API requests answered, by endpoint and status class",
            requests.clone(),
        );
        registry.register(
            "veloflux_api_request_duration_seconds",
            "Time to answer API requests, by endpoint",
            latency.clone(),
        );
        let sign_ins = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "veloflux_api_sign_ins",
            "Password sign-ins, by outcome (ok, refused, throttled)",
            sign_ins.clone(),
        );
        let sign_ups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "veloflux_api_sign_ups",
            "Sign-ups, by outcome (ok, refused)",
            sign_ups.clone(),
        );
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let method = e.method_name();
                EndpointHandles {
                    by_class: CLASSES.map(|class| {
                        requests
                            .get_or_create(&EndpointLabels {
                                method,
                                endpoint: e.path,
                                class,
                            })
                            .clone()
                    }),
                    latency: latency
                        .get_or_create(&LatencyLabels {
                            method,
                            endpoint: e.path,
                        })
                        .clone(),
                }
            })
            .collect();
        Arc::new(Self {
            registry,
            endpoints,
            sign_ins,
            sign_ups,
        })
    }

    /// Counts one answer of the endpoint at index `endpoint` of the table.
    pub fn observe(&self, endpoint: usize, status: http::StatusCode, took: Duration) {
        if let Some(handles) = self.endpoints.get(endpoint) {
            let class = usize::from((status.as_u16() / 100).clamp(1, 5) as u8) - 1;
            handles.by_class[class].inc();
            handles.latency.observe(took.as_secs_f64());
        }
    }

    /// Counts a password sign-in.
    pub fn sign_in(&self, outcome: &'static str) {
        self.sign_ins
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a sign-up.
    pub fn sign_up(&self, outcome: &'static str) {
        self.sign_ups
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
