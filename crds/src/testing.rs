//! Test fixtures as builders: `Tenant::test("acme", "pro").with_domains(..)`.
//! Compiled for this crate's tests and, with the `testing` feature, for other
//! crates' tests.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::dedicated::{DedicatedInstance, DedicatedInstanceSpec, Drain};
use crate::grant::{ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo};
use crate::plan::{
    FailureMode, OveragePolicy, Plan, PlanFeatures, PlanLimits, PlanSpec, PlanWaf, WafLevel,
};
use crate::route::{
    Algorithm, Backend, LocalObjectRef, RateLimitKey, Route, RouteRateLimit, RouteSpec, RouteTls,
    RouteWaf, ServiceBackend,
};
use crate::tenant::{Tenant, TenantSpec};

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

/// A timestamp `seconds` after an arbitrary epoch, for ordering by age.
pub fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + seconds).unwrap())
}

impl Plan {
    /// A plan allowing 10 routes, 4 backends per route, 5 domains, 600 rpm,
    /// and static address backends.
    pub fn test(name: &str) -> Self {
        Plan {
            metadata: meta(None, name),
            spec: PlanSpec {
                display_name: None,
                limits: PlanLimits {
                    requests_per_minute: 600,
                    burst: 60,
                    max_routes: 10,
                    max_backends_per_route: 4,
                    max_domains: 5,
                    requests_per_month: None,
                    bandwidth_gib_per_month: None,
                    rate_limit_failure_mode: FailureMode::FailOpen,
                },
                waf: PlanWaf {
                    level: WafLevel::Off,
                },
                features: PlanFeatures {
                    static_backends: true,
                    ..PlanFeatures::default()
                },
                overage_policy: OveragePolicy::Log,
                billing: None,
            },
            status: None,
        }
    }
    pub fn with_max_routes(mut self, n: u32) -> Self {
        self.spec.limits.max_routes = n;
        self
    }
    pub fn with_max_domains(mut self, n: u32) -> Self {
        self.spec.limits.max_domains = n;
        self
    }
    pub fn with_max_backends(mut self, n: u32) -> Self {
        self.spec.limits.max_backends_per_route = n;
        self
    }
    pub fn with_rate(mut self, rpm: u32, burst: u32) -> Self {
        self.spec.limits.requests_per_minute = rpm;
        self.spec.limits.burst = burst;
        self
    }
    pub fn with_waf(mut self, level: WafLevel) -> Self {
        self.spec.waf.level = level;
        self
    }
    pub fn with_custom_tls(mut self) -> Self {
        self.spec.features.custom_tls = true;
        self
    }
    pub fn without_static_backends(mut self) -> Self {
        self.spec.features.static_backends = false;
        self
    }
    pub fn with_dedicated_instances(mut self) -> Self {
        self.spec.features.dedicated_instances = true;
        self
    }
}

impl Tenant {
    /// A tenant on `plan` with no domains and namespace `name`.
    pub fn test(name: &str, plan: &str) -> Self {
        Tenant {
            metadata: meta(None, name),
            spec: TenantSpec {
                plan_ref: plan.to_owned(),
                display_name: None,
                domains: Vec::new(),
                namespaces: vec![name.to_owned()],
                owners: Vec::new(),
                oidc: None,
                billing: None,
                suspended: false,
            },
            status: None,
        }
    }
    pub fn with_domains(mut self, domains: &[&str]) -> Self {
        self.spec.domains = domains.iter().map(|d| (*d).to_owned()).collect();
        self
    }
    pub fn with_namespaces(mut self, namespaces: &[&str]) -> Self {
        self.spec.namespaces = namespaces.iter().map(|d| (*d).to_owned()).collect();
        self
    }
    pub fn created(mut self, seconds: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(seconds));
        self
    }
    pub fn suspended(mut self) -> Self {
        self.spec.suspended = true;
        self
    }
}

impl Route {
    /// A route of `tenant` in `namespace` for `host`, with one static backend.
    pub fn test(namespace: &str, name: &str, tenant: &str, host: &str) -> Self {
        Route {
            metadata: meta(Some(namespace), name),
            spec: RouteSpec {
                tenant_ref: tenant.to_owned(),
                hosts: vec![host.to_owned()],
                rules: Vec::new(),
                backends: vec![Backend {
                    name: "web".to_owned(),
                    service: None,
                    address: Some("127.0.0.1:8080".to_owned()),
                    weight: 1,
                    drain: false,
                }],
                algorithm: Algorithm::RoundRobin,
                hash_on: None,
                health_check: None,
                timeouts: None,
                retries: None,
                rate_limit: None,
                waf: None,
                tls: None,
                max_request_body_bytes: None,
            },
            status: None,
        }
    }
    pub fn created(mut self, seconds: i64) -> Self {
        self.metadata.creation_timestamp = Some(at(seconds));
        self
    }
    pub fn with_generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }
    pub fn with_hosts(mut self, hosts: &[&str]) -> Self {
        self.spec.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }
    /// Replaces the backends with `n` static ones.
    pub fn with_static_backends(mut self, n: u16) -> Self {
        self.spec.backends = (0..n)
            .map(|i| Backend {
                name: format!("b{i}"),
                service: None,
                address: Some(format!("127.0.0.1:{}", 9000 + i)),
                weight: 1,
                drain: false,
            })
            .collect();
        self
    }
    /// Replaces the backends with one Service backend.
    pub fn with_service(mut self, namespace: Option<&str>, service: &str, port: u16) -> Self {
        self.spec.backends = vec![Backend {
            name: "svc".to_owned(),
            service: Some(ServiceBackend {
                name: service.to_owned(),
                namespace: namespace.map(str::to_owned),
                port,
            }),
            address: None,
            weight: 1,
            drain: false,
        }];
        self
    }
    pub fn with_tls(mut self, secret: &str) -> Self {
        self.spec.tls = Some(RouteTls {
            secret_ref: LocalObjectRef {
                name: secret.to_owned(),
            },
            https_redirect: false,
        });
        self
    }
    pub fn with_rate_limit(mut self, rpm: u32, burst: u32) -> Self {
        self.spec.rate_limit = Some(RouteRateLimit {
            requests_per_minute: rpm,
            burst,
            key: RateLimitKey::Tenant,
            header: None,
        });
        self
    }
    pub fn with_waf(mut self, level: WafLevel) -> Self {
        self.spec.waf = Some(RouteWaf { level });
        self
    }
}

impl DedicatedInstance {
    pub fn test(namespace: &str, name: &str, tenant: &str) -> Self {
        DedicatedInstance {
            metadata: meta(Some(namespace), name),
            spec: DedicatedInstanceSpec {
                tenant_ref: tenant.to_owned(),
                replicas: 2,
                autoscaling: None,
                resources: None,
                version: None,
                drain: Drain::default(),
            },
            status: None,
        }
    }
}

impl ReferenceGrant {
    /// A grant in `namespace` letting Routes in `from` use Service `service` (all when `None`).
    pub fn test(namespace: &str, from: &str, service: Option<&str>) -> Self {
        ReferenceGrant {
            metadata: meta(Some(namespace), &format!("allow-{from}")),
            spec: ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: crate::GROUP.to_owned(),
                    kind: "Route".to_owned(),
                    namespace: from.to_owned(),
                }],
                to: vec![ReferenceGrantTo {
                    group: String::new(),
                    kind: "Service".to_owned(),
                    name: service.map(str::to_owned),
                }],
            },
        }
    }
}
