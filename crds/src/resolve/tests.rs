#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::TenantConfig;
use crate::plan::WafLevel;

/// Owned inputs for one test.
type World = crate::manifest::Manifests;

fn acme_world() -> World {
    World {
        plans: vec![Plan::test("pro")],
        tenants: vec![Tenant::test("acme", "pro").with_domains(&["acme.com", "*.acme.com"])],
        ..World::default()
    }
}

fn route_outcome<'a>(r: &'a Resolution, ns: &str, name: &str) -> &'a Outcome {
    r.routes
        .get(&ObjectKey::new(ns, name))
        .expect("route outcome")
}

fn accepted_reason(r: &Resolution, ns: &str, name: &str) -> Reason {
    route_outcome(r, ns, name)
        .reason(ConditionType::Accepted)
        .expect("Accepted condition")
}

fn served_hosts(config: &TenantConfig) -> Vec<&str> {
    config.hosts().map(|(h, _)| h).collect()
}

#[test]
fn accepted_route_compiles_into_its_tenants_config() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com").with_generation(7));
    let r = w.resolve();
    let outcome = route_outcome(&r, "acme", "web");
    assert!(outcome.is_true(ConditionType::Accepted));
    assert!(outcome.is_true(ConditionType::ResolvedRefs));
    assert!(outcome.is_true(ConditionType::Ready));
    assert_eq!(outcome.generation, Some(7));
    let config = &r.configs["acme"];
    assert_eq!(config.schema_version, crate::config::SCHEMA_VERSION);
    assert_eq!(config.revision, 0);
    assert_eq!(config.plan.name, "pro");
    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.id, "acme/web");
    assert_eq!(route.generation, 7);
    assert_eq!(route.hosts, vec!["www.acme.com"]);
    assert_eq!(
        route.rules.len(),
        1,
        "a route without rules gets one catch-all rule"
    );
    assert_eq!(route.rules[0].backends, vec![0]);
    assert_eq!(route.backends[0].endpoints[0].address, "127.0.0.1:8080");
    assert!(!route.backends[0].endpoints[0].draining);
}

#[test]
fn route_in_foreign_namespace_is_not_allowed() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("intruder", "web", "acme", "www.acme.com"));
    let r = w.resolve();
    assert_eq!(
        accepted_reason(&r, "intruder", "web"),
        Reason::NamespaceNotAllowed
    );
    let ready = route_outcome(&r, "intruder", "web")
        .condition(ConditionType::Ready)
        .unwrap();
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, Reason::NamespaceNotAllowed);
    assert!(r.configs["acme"].routes.is_empty());
}

#[test]
fn route_naming_a_missing_tenant_is_reported() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "nobody", "www.acme.com"));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "web"), Reason::TenantNotFound);
    let refs = route_outcome(&r, "acme", "web")
        .condition(ConditionType::ResolvedRefs)
        .unwrap();
    assert_eq!(refs.status, ConditionStatus::Unknown);
}

#[test]
fn tenant_on_a_missing_plan_gets_plan_not_found_and_no_config() {
    let mut w = acme_world();
    w.tenants
        .push(Tenant::test("globex", "gold").with_domains(&["globex.com"]));
    w.routes
        .push(Route::test("globex", "web", "globex", "globex.com"));
    let r = w.resolve();
    let tenant = &r.tenants["globex"];
    assert_eq!(
        tenant.outcome.reason(ConditionType::Accepted),
        Some(Reason::PlanNotFound)
    );
    assert_eq!(
        tenant.outcome.reason(ConditionType::Ready),
        Some(Reason::PlanNotFound)
    );
    assert!(tenant.usage.is_none());
    assert!(!r.configs.contains_key("globex"));
    assert_eq!(accepted_reason(&r, "globex", "web"), Reason::PlanNotFound);
}

#[test]
fn invalid_plan_is_reported_and_its_tenants_are_not_served() {
    let mut w = acme_world();
    w.plans[0].spec.limits.burst = w.plans[0].spec.limits.requests_per_minute + 1;
    let r = w.resolve();
    let plan = &r.plans["pro"].outcome;
    assert_eq!(plan.reason(ConditionType::Accepted), Some(Reason::Invalid));
    assert!(
        plan.condition(ConditionType::Accepted)
            .unwrap()
            .message
            .contains("burst")
    );
    assert_eq!(
        r.tenants["acme"].outcome.reason(ConditionType::Accepted),
        Some(Reason::Invalid)
    );
    assert!(r.configs.is_empty());
}

#[test]
fn routes_beyond_max_routes_are_refused_oldest_first() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_routes(2);
    // Listed youngest first: order of the input must not matter.
    w.routes
        .push(Route::test("acme", "c", "acme", "c.acme.com").created(30));
    w.routes
        .push(Route::test("acme", "a", "acme", "a.acme.com").created(10));
    w.routes
        .push(Route::test("acme", "b", "acme", "b.acme.com").created(20));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "a"), Reason::Accepted);
    assert_eq!(accepted_reason(&r, "acme", "b"), Reason::Accepted);
    assert_eq!(accepted_reason(&r, "acme", "c"), Reason::QuotaExceeded);
    let ids: Vec<&str> = r.configs["acme"]
        .routes
        .iter()
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(ids, vec!["acme/a", "acme/b"]);
    assert_eq!(r.tenants["acme"].usage.as_ref().unwrap().routes, 2);
}

#[test]
fn plan_upgrade_readmits_routes_over_the_old_quota() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_routes(1);
    w.routes
        .push(Route::test("acme", "a", "acme", "a.acme.com").created(10));
    w.routes
        .push(Route::test("acme", "b", "acme", "b.acme.com").created(20));
    assert_eq!(
        accepted_reason(&w.resolve(), "acme", "b"),
        Reason::QuotaExceeded
    );
    w.plans[0] = Plan::test("pro").with_max_routes(5);
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "b"), Reason::Accepted);
    assert_eq!(r.configs["acme"].routes.len(), 2);
}

#[test]
fn refused_routes_do_not_use_up_the_quota() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_routes(1);
    w.routes
        .push(Route::test("acme", "bad", "acme", "evil.example").created(10));
    w.routes
        .push(Route::test("acme", "good", "acme", "a.acme.com").created(20));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "bad"), Reason::HostNotAllowed);
    assert_eq!(accepted_reason(&r, "acme", "good"), Reason::Accepted);
}

#[test]
fn route_with_more_backends_than_the_plan_allows_exceeds_quota() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_backends(2);
    w.routes
        .push(Route::test("acme", "wide", "acme", "a.acme.com").with_static_backends(3));
    w.routes
        .push(Route::test("acme", "ok", "acme", "b.acme.com").with_static_backends(2));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "wide"), Reason::QuotaExceeded);
    let msg = &route_outcome(&r, "acme", "wide")
        .condition(ConditionType::Accepted)
        .unwrap()
        .message;
    assert!(msg.contains("3 backends"), "{msg}");
    assert_eq!(accepted_reason(&r, "acme", "ok"), Reason::Accepted);
}

#[test]
fn domains_beyond_max_domains_are_not_granted_in_listed_order() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_domains(1);
    w.tenants[0] = Tenant::test("acme", "pro").with_domains(&["acme.com", "acme.org"]);
    w.routes
        .push(Route::test("acme", "org", "acme", "acme.org"));
    let r = w.resolve();
    let tenant = &r.tenants["acme"];
    assert_eq!(tenant.domains, vec!["acme.com"]);
    assert_eq!(
        tenant.outcome.reason(ConditionType::Accepted),
        Some(Reason::QuotaExceeded)
    );
    assert_eq!(tenant.usage.as_ref().unwrap().domains, 1);
    assert_eq!(accepted_reason(&r, "acme", "org"), Reason::HostNotAllowed);
    assert_eq!(r.configs["acme"].domains, vec!["acme.com"]);
}

#[test]
fn host_outside_the_tenants_domains_is_not_allowed() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "acme", "acme.net"));
    w.routes
        .push(Route::test("acme", "deep", "acme", "a.b.acme.com"));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "web"), Reason::HostNotAllowed);
    assert_eq!(
        accepted_reason(&r, "acme", "deep"),
        Reason::HostNotAllowed,
        "a wildcard covers one label"
    );
}

#[test]
fn wildcard_domain_covers_hosts_one_label_below() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "api", "acme", "api.acme.com"));
    w.routes
        .push(Route::test("acme", "any", "acme", "*.acme.com"));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "api"), Reason::Accepted);
    assert_eq!(accepted_reason(&r, "acme", "any"), Reason::Accepted);
}

#[test]
fn two_tenants_claiming_one_domain_the_older_wins() {
    let mut w = acme_world();
    w.tenants[0] = w.tenants[0].clone().created(100);
    // Listed first but younger.
    w.tenants.insert(
        0,
        Tenant::test("squatter", "pro")
            .with_domains(&["acme.com", "squat.io"])
            .created(200),
    );
    w.routes
        .push(Route::test("squatter", "steal", "squatter", "acme.com"));
    w.routes
        .push(Route::test("acme", "home", "acme", "acme.com"));
    let r = w.resolve();
    let squatter = &r.tenants["squatter"];
    assert_eq!(
        squatter.outcome.reason(ConditionType::Accepted),
        Some(Reason::HostConflict)
    );
    assert_eq!(
        squatter.domains,
        vec!["squat.io"],
        "its other domains are still granted"
    );
    assert_eq!(
        accepted_reason(&r, "squatter", "steal"),
        Reason::HostConflict
    );
    let msg = &route_outcome(&r, "squatter", "steal")
        .condition(ConditionType::Accepted)
        .unwrap()
        .message;
    assert!(
        !msg.contains("acme\""),
        "the message must not name the other tenant: {msg}"
    );
    assert_eq!(accepted_reason(&r, "acme", "home"), Reason::Accepted);
    assert_eq!(served_hosts(&r.configs["acme"]), vec!["acme.com"]);
    assert!(served_hosts(&r.configs["squatter"]).is_empty());
}

#[test]
fn wildcard_domain_conflicts_with_a_name_directly_below_it() {
    let mut w = acme_world();
    w.tenants[0] = w.tenants[0].clone().created(100);
    w.tenants.push(
        Tenant::test("late", "pro")
            .with_domains(&["api.acme.com", "x.y.acme.com"])
            .created(200),
    );
    let r = w.resolve();
    let late = &r.tenants["late"];
    assert_eq!(
        late.outcome.reason(ConditionType::Accepted),
        Some(Reason::HostConflict)
    );
    assert_eq!(
        late.domains,
        vec!["x.y.acme.com"],
        "two labels below is outside *.acme.com"
    );
}

#[test]
fn tenants_created_at_the_same_time_are_ordered_by_name() {
    let w = World {
        plans: vec![Plan::test("pro")],
        tenants: vec![
            Tenant::test("zeta", "pro")
                .with_domains(&["shared.io"])
                .created(5),
            Tenant::test("alpha", "pro")
                .with_domains(&["shared.io"])
                .created(5),
        ],
        ..World::default()
    };
    let r = w.resolve();
    assert_eq!(r.tenants["alpha"].domains, vec!["shared.io"]);
    assert!(r.tenants["zeta"].domains.is_empty());
}

#[test]
fn service_in_another_namespace_without_a_grant_is_not_permitted() {
    let mut w = acme_world();
    w.services.insert(
        ServiceKey {
            namespace: "shared".into(),
            name: "db".into(),
            port: 80,
        },
        vec![Endpoint {
            address: "10.0.0.9:8080".into(),
            serving: true,
            terminating: false,
        }],
    );
    w.routes.push(
        Route::test("acme", "web", "acme", "www.acme.com").with_service(Some("shared"), "db", 80),
    );
    let r = w.resolve();
    let outcome = route_outcome(&r, "acme", "web");
    assert!(outcome.is_true(ConditionType::Accepted));
    assert_eq!(
        outcome.reason(ConditionType::ResolvedRefs),
        Some(Reason::RefNotPermitted)
    );
    assert_eq!(
        outcome.reason(ConditionType::Ready),
        Some(Reason::RefNotPermitted)
    );
    let backend = &r.configs["acme"].routes[0].backends[0];
    assert!(
        backend.endpoints.is_empty(),
        "no endpoint of an ungranted Service is served"
    );
}

#[test]
fn reference_grant_permits_a_cross_namespace_service() {
    let mut w = acme_world();
    w.services.insert(
        ServiceKey {
            namespace: "shared".into(),
            name: "db".into(),
            port: 80,
        },
        vec![Endpoint {
            address: "10.0.0.9:8080".into(),
            serving: true,
            terminating: false,
        }],
    );
    w.grants
        .push(ReferenceGrant::test("shared", "acme", Some("db")));
    w.routes.push(
        Route::test("acme", "web", "acme", "www.acme.com").with_service(Some("shared"), "db", 80),
    );
    let r = w.resolve();
    assert!(route_outcome(&r, "acme", "web").is_true(ConditionType::ResolvedRefs));
    let backend = &r.configs["acme"].routes[0].backends[0];
    assert_eq!(backend.service.as_deref(), Some("shared/db:80"));
    assert_eq!(backend.endpoints[0].address, "10.0.0.9:8080");
}

#[test]
fn reference_grant_is_limited_to_its_namespace_and_service() {
    let mut w = acme_world();
    for svc in ["db", "cache"] {
        w.services.insert(
            ServiceKey {
                namespace: "shared".into(),
                name: svc.into(),
                port: 80,
            },
            vec![Endpoint {
                address: "10.0.0.9:8080".into(),
                serving: true,
                terminating: false,
            }],
        );
    }
    w.grants
        .push(ReferenceGrant::test("shared", "acme", Some("db")));
    // A grant in the wrong namespace does not count.
    w.grants.push(ReferenceGrant::test("acme", "acme", None));
    w.routes.push(
        Route::test("acme", "web", "acme", "www.acme.com").with_service(
            Some("shared"),
            "cache",
            80,
        ),
    );
    let r = w.resolve();
    assert_eq!(
        route_outcome(&r, "acme", "web").reason(ConditionType::ResolvedRefs),
        Some(Reason::RefNotPermitted)
    );
}

#[test]
fn missing_service_is_backend_not_found() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com").with_service(None, "ghost", 80));
    let r = w.resolve();
    let refs = route_outcome(&r, "acme", "web")
        .condition(ConditionType::ResolvedRefs)
        .unwrap();
    assert_eq!(refs.reason, Reason::BackendNotFound);
    assert!(refs.message.contains("acme/ghost"), "{}", refs.message);
    assert_eq!(
        r.configs["acme"].routes.len(),
        1,
        "the route is still served (503 without endpoints)"
    );
}

#[test]
fn terminating_endpoints_drain_and_unready_ones_are_left_out() {
    let mut w = acme_world();
    w.services.insert(
        ServiceKey {
            namespace: "acme".into(),
            name: "web".into(),
            port: 80,
        },
        vec![
            Endpoint {
                address: "10.0.0.3:8080".into(),
                serving: false,
                terminating: false,
            },
            Endpoint {
                address: "10.0.0.2:8080".into(),
                serving: true,
                terminating: true,
            },
            Endpoint {
                address: "10.0.0.1:8080".into(),
                serving: true,
                terminating: false,
            },
        ],
    );
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com").with_service(None, "web", 80));
    let r = w.resolve();
    let eps = &r.configs["acme"].routes[0].backends[0].endpoints;
    let got: Vec<(&str, bool)> = eps
        .iter()
        .map(|e| (e.address.as_str(), e.draining))
        .collect();
    assert_eq!(got, vec![("10.0.0.1:8080", false), ("10.0.0.2:8080", true)]);
}

#[test]
fn backend_marked_drain_drains_every_endpoint() {
    let mut w = acme_world();
    let mut route = Route::test("acme", "web", "acme", "www.acme.com");
    route.spec.backends[0].drain = true;
    w.routes.push(route);
    let r = w.resolve();
    assert!(r.configs["acme"].routes[0].backends[0].endpoints[0].draining);
}

fn pem_secret() -> TlsSecret {
    TlsSecret {
        cert_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        key_pem: Some("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into()),
    }
}

#[test]
fn tls_secret_resolves_to_a_certificate_for_the_routes_hosts() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_custom_tls();
    w.secrets
        .insert(ObjectKey::new("acme", "acme-tls"), pem_secret());
    w.routes
        .push(Route::test("acme", "a", "acme", "a.acme.com").with_tls("acme-tls"));
    w.routes
        .push(Route::test("acme", "b", "acme", "b.acme.com").with_tls("acme-tls"));
    let r = w.resolve();
    let config = &r.configs["acme"];
    assert_eq!(config.certificates.len(), 1, "one certificate per Secret");
    assert_eq!(
        config.certificates[0].hosts,
        vec!["a.acme.com", "b.acme.com"]
    );
    assert_eq!(config.certificates[0].source, "acme/acme-tls");
    assert_eq!(config.routes[0].tls.as_ref().unwrap().certificate, Some(0));
    assert!(
        !format!("{:?}", config.certificates[0]).contains("PRIVATE KEY"),
        "keys stay out of logs"
    );
}

#[test]
fn missing_or_incomplete_tls_secret_is_secret_not_found() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_custom_tls();
    w.secrets.insert(
        ObjectKey::new("acme", "half"),
        TlsSecret {
            cert_pem: pem_secret().cert_pem,
            key_pem: None,
        },
    );
    w.routes
        .push(Route::test("acme", "a", "acme", "a.acme.com").with_tls("nope"));
    w.routes
        .push(Route::test("acme", "b", "acme", "b.acme.com").with_tls("half"));
    let r = w.resolve();
    for name in ["a", "b"] {
        let o = route_outcome(&r, "acme", name);
        assert!(o.is_true(ConditionType::Accepted));
        assert_eq!(
            o.reason(ConditionType::ResolvedRefs),
            Some(Reason::SecretNotFound),
            "{name}"
        );
    }
    assert!(r.configs["acme"].certificates.is_empty());
}

#[test]
fn tls_on_a_plan_without_custom_tls_is_not_in_plan() {
    let mut w = acme_world();
    w.secrets
        .insert(ObjectKey::new("acme", "acme-tls"), pem_secret());
    w.routes
        .push(Route::test("acme", "a", "acme", "a.acme.com").with_tls("acme-tls"));
    let r = w.resolve();
    assert_eq!(accepted_reason(&r, "acme", "a"), Reason::FeatureNotInPlan);
}

#[test]
fn route_rate_limit_can_only_tighten_the_plan() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_rate(600, 60);
    w.routes
        .push(Route::test("acme", "loose", "acme", "a.acme.com").with_rate_limit(10_000, 500));
    w.routes
        .push(Route::test("acme", "tight", "acme", "b.acme.com").with_rate_limit(60, 5));
    let r = w.resolve();
    let loose = route_outcome(&r, "acme", "loose")
        .condition(ConditionType::Accepted)
        .unwrap();
    assert_eq!(loose.status, ConditionStatus::True);
    assert_eq!(loose.reason, Reason::PlanLimitApplied);
    assert!(loose.message.contains("10000/min"), "{}", loose.message);
    let routes = &r.configs["acme"].routes;
    let limit = |i: usize| routes[i].rate_limit.clone().unwrap();
    assert_eq!((limit(0).requests_per_minute, limit(0).burst), (600, 60));
    assert_eq!((limit(1).requests_per_minute, limit(1).burst), (60, 5));
    assert_eq!(accepted_reason(&r, "acme", "tight"), Reason::Accepted);
}

#[test]
fn route_waf_level_can_only_be_stricter_than_the_plan() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_waf(WafLevel::Standard);
    w.routes
        .push(Route::test("acme", "lax", "acme", "a.acme.com").with_waf(WafLevel::Off));
    w.routes
        .push(Route::test("acme", "strict", "acme", "b.acme.com").with_waf(WafLevel::Strict));
    w.routes
        .push(Route::test("acme", "plain", "acme", "c.acme.com"));
    let r = w.resolve();
    let waf = |id: &str| {
        r.configs["acme"]
            .routes
            .iter()
            .find(|x| x.id == id)
            .unwrap()
            .waf
    };
    assert_eq!(waf("acme/lax"), WafLevel::Standard);
    assert_eq!(waf("acme/strict"), WafLevel::Strict);
    assert_eq!(waf("acme/plain"), WafLevel::Standard);
    assert_eq!(accepted_reason(&r, "acme", "lax"), Reason::PlanLimitApplied);
    assert_eq!(accepted_reason(&r, "acme", "strict"), Reason::Accepted);
}

#[test]
fn invalid_route_reports_every_problem_at_once() {
    let mut w = acme_world();
    let mut route = Route::test("acme", "bad", "acme", "Bad_Host");
    route.spec.algorithm = Algorithm::ConsistentHash;
    route.spec.backends.push(route.spec.backends[0].clone());
    route.spec.rules.push(crate::route::RouteRule {
        backends: vec!["ghost".into()],
        ..Default::default()
    });
    route.spec.health_check = Some(crate::route::HealthCheck {
        path: "/healthz".into(),
        interval: "soon".into(),
        timeout: "1s".into(),
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        expected_statuses: vec!["2xx".into(), "700".into()],
    });
    w.routes.push(route);
    let r = w.resolve();
    let c = route_outcome(&r, "acme", "bad")
        .condition(ConditionType::Accepted)
        .unwrap();
    assert_eq!(c.reason, Reason::Invalid);
    for needle in ["Bad_Host", "hashOn", "used twice", "ghost", "soon", "700"] {
        assert!(
            c.message.contains(needle),
            "missing {needle:?} in {}",
            c.message
        );
    }
    assert!(r.configs["acme"].routes.is_empty());
}

#[test]
fn suspended_tenant_is_compiled_as_suspended_and_not_ready() {
    let mut w = acme_world();
    w.tenants[0] = w.tenants[0].clone().suspended();
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com"));
    let r = w.resolve();
    assert!(r.configs["acme"].suspended);
    assert_eq!(
        r.tenants["acme"].outcome.reason(ConditionType::Ready),
        Some(Reason::Suspended)
    );
    let route = route_outcome(&r, "acme", "web");
    assert!(route.is_true(ConditionType::Accepted));
    assert_eq!(route.reason(ConditionType::Ready), Some(Reason::Suspended));
}

#[test]
fn dedicated_instance_needs_the_plan_feature_and_a_tenant_namespace() {
    let mut w = acme_world();
    w.dedicated
        .push(DedicatedInstance::test("acme", "edge", "acme"));
    w.dedicated
        .push(DedicatedInstance::test("elsewhere", "edge", "acme"));
    w.dedicated
        .push(DedicatedInstance::test("acme", "orphan", "nobody"));
    let r = w.resolve();
    let reason =
        |ns: &str, n: &str| r.dedicated[&ObjectKey::new(ns, n)].reason(ConditionType::Accepted);
    assert_eq!(reason("acme", "edge"), Some(Reason::FeatureNotInPlan));
    assert_eq!(
        reason("elsewhere", "edge"),
        Some(Reason::NamespaceNotAllowed)
    );
    assert_eq!(reason("acme", "orphan"), Some(Reason::TenantNotFound));

    w.plans[0] = Plan::test("pro").with_dedicated_instances();
    let r = w.resolve();
    assert!(r.dedicated[&ObjectKey::new("acme", "edge")].is_true(ConditionType::Ready));
}

#[test]
fn plan_outcome_counts_its_tenants() {
    let mut w = acme_world();
    w.tenants.push(Tenant::test("globex", "pro"));
    let r = w.resolve();
    assert_eq!(r.plans["pro"].tenants, 2);
    assert!(r.plans["pro"].outcome.is_true(ConditionType::Ready));
}

#[test]
fn compiled_config_is_stable_json_that_round_trips() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com").with_rate_limit(60, 5));
    let config = w.resolve().configs["acme"].clone();
    let text = config.to_json().unwrap();
    assert_eq!(
        text,
        w.resolve().configs["acme"].to_json().unwrap(),
        "same input, same bytes"
    );
    assert_eq!(TenantConfig::from_json(&text).unwrap(), config);
}

#[test]
fn config_with_a_newer_schema_version_is_refused() {
    let mut w = acme_world();
    w.routes
        .push(Route::test("acme", "web", "acme", "www.acme.com"));
    let mut config = w.resolve().configs["acme"].clone();
    config.schema_version = crate::config::SCHEMA_VERSION + 1;
    let err = TenantConfig::from_json(&config.to_json().unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            crate::config::ConfigDecodeError::UnsupportedSchema { .. }
        ),
        "{err}"
    );
    assert!(matches!(
        TenantConfig::from_json("{\"schemaVersion\":1}"),
        Err(crate::config::ConfigDecodeError::Malformed(_))
    ));
}

#[test]
fn status_ranges_parse_from_codes_classes_and_ranges() {
    assert_eq!(
        parse_status_range("204"),
        Some(StatusRange { from: 204, to: 204 })
    );
    assert_eq!(
        parse_status_range("2xx"),
        Some(StatusRange { from: 200, to: 299 })
    );
    assert_eq!(
        parse_status_range("200-399"),
        Some(StatusRange { from: 200, to: 399 })
    );
    for bad in ["99", "600", "6xx", "300-200", "abc"] {
        assert_eq!(parse_status_range(bad), None, "{bad}");
    }
}

#[test]
fn a_broken_plan_never_hands_a_tenants_domains_to_a_younger_tenant() {
    let mut w = acme_world();
    w.tenants[0] = w.tenants[0].clone().created(100);
    w.tenants.push(
        Tenant::test("late", "pro")
            .with_domains(&["acme.com"])
            .created(200),
    );
    w.tenants[0].spec.plan_ref = "deleted".into();
    let r = w.resolve();
    assert_eq!(
        r.tenants["acme"].domains,
        vec!["acme.com", "*.acme.com"],
        "claims survive a missing plan"
    );
    assert_eq!(
        r.tenants["late"].outcome.reason(ConditionType::Accepted),
        Some(Reason::HostConflict)
    );
    assert!(r.tenants["late"].domains.is_empty());
}

#[test]
fn static_address_backends_need_the_plan_feature() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").without_static_backends();
    w.services.insert(
        ServiceKey {
            namespace: "acme".into(),
            name: "web".into(),
            port: 80,
        },
        vec![Endpoint {
            address: "10.0.0.1:8080".into(),
            serving: true,
            terminating: false,
        }],
    );
    w.routes
        .push(Route::test("acme", "static", "acme", "a.acme.com"));
    w.routes
        .push(Route::test("acme", "svc", "acme", "b.acme.com").with_service(None, "web", 80));
    let r = w.resolve();
    assert_eq!(
        accepted_reason(&r, "acme", "static"),
        Reason::FeatureNotInPlan
    );
    assert_eq!(accepted_reason(&r, "acme", "svc"), Reason::Accepted);
}

#[test]
fn long_problem_lists_are_capped_to_fit_a_condition_message() {
    let mut w = acme_world();
    w.plans[0] = Plan::test("pro").with_max_domains(1);
    let domains: Vec<String> = (0..2000)
        .map(|i| format!("d{i}-{}.example.com", "x".repeat(40)))
        .collect();
    w.tenants[0].spec.domains = domains;
    let r = w.resolve();
    let c = r.tenants["acme"]
        .outcome
        .condition(ConditionType::Accepted)
        .unwrap()
        .clone();
    assert_eq!(c.reason, Reason::QuotaExceeded);
    assert!(
        c.message.len() <= MAX_MESSAGE_LEN,
        "{} bytes",
        c.message.len()
    );
    assert!(c.message.contains("and 1989 more"), "{}", c.message);
}

#[test]
fn duplicate_objects_resolve_the_same_whatever_their_order() {
    let mut w = acme_world();
    let a = Route::test("acme", "web", "acme", "a.acme.com");
    let b = Route::test("acme", "web", "acme", "b.acme.com");
    w.routes = vec![a.clone(), b.clone()];
    let first = w.resolve();
    w.routes = vec![b, a];
    assert_eq!(first, w.resolve());
    assert_eq!(first.configs["acme"].routes.len(), 1);
}

#[test]
fn paths_with_whitespace_queries_or_fragments_are_invalid() {
    for bad in ["/a b", "/a?x=1", "/a#top", "/a\r\nX: y", "relative"] {
        let mut w = acme_world();
        let mut route = Route::test("acme", "web", "acme", "a.acme.com");
        route.spec.rules.push(crate::route::RouteRule {
            path: Some(crate::route::PathMatch {
                type_: crate::route::PathMatchType::Prefix,
                value: bad.into(),
            }),
            ..Default::default()
        });
        w.routes.push(route);
        assert_eq!(
            accepted_reason(&w.resolve(), "acme", "web"),
            Reason::Invalid,
            "{bad:?}"
        );
    }
}
