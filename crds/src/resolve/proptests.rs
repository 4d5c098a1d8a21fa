//! Property tests of `resolve`: its result does not depend on input order,
//! no tenant serves a host outside its domains or another tenant's host, and
//! no route reaches a Service in a namespace that did not grant it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::route::{Backend, ServiceBackend};

const DOMAINS: &[&str] = &[
    "a.com", "*.a.com", "x.a.com", "b.com", "*.b.com", "y.b.com", "c.com",
];
const HOSTS: &[&str] = &[
    "a.com", "x.a.com", "z.a.com", "*.a.com", "b.com", "y.b.com", "q.b.com", "c.com", "d.com",
];
const NAMESPACES: &[&str] = &["n0", "n1", "n2", "n3"];
const PLANS: &[&str] = &["small", "large", "missing"];

type World = crate::manifest::Manifests;

/// The same world with every list in another order.
fn shuffled(world: &World, seed: u64) -> World {
    let mut w = world.clone();
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    fn shuffle<T>(v: &mut [T], next: &mut impl FnMut() -> u64) {
        for i in (1..v.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
    shuffle(&mut w.plans, &mut next);
    shuffle(&mut w.tenants, &mut next);
    shuffle(&mut w.routes, &mut next);
    shuffle(&mut w.grants, &mut next);
    w
}

fn pick<'a>(pool: &'a [&'a str], picks: &[usize]) -> Vec<&'a str> {
    let mut out: Vec<&str> = picks.iter().map(|i| pool[i % pool.len()]).collect();
    out.dedup();
    out
}

fn tenant_strategy(index: usize) -> impl Strategy<Value = Tenant> {
    (
        0..PLANS.len(),
        prop::collection::vec(0..DOMAINS.len(), 0..4),
        prop::collection::vec(0..NAMESPACES.len(), 1..3),
        0i64..3,
    )
        .prop_map(move |(plan, domains, namespaces, created)| {
            Tenant::test(&format!("t{index}"), PLANS[plan])
                .with_domains(&pick(DOMAINS, &domains))
                .with_namespaces(&pick(NAMESPACES, &namespaces))
                .created(created)
        })
}

fn backend_strategy(index: usize) -> impl Strategy<Value = Backend> {
    (
        any::<bool>(),
        0usize..2,
        prop::option::of(0..NAMESPACES.len()),
    )
        .prop_map(move |(service, svc, ns)| Backend {
            name: format!("b{index}"),
            service: service.then(|| ServiceBackend {
                name: format!("s{svc}"),
                namespace: ns.map(|n| NAMESPACES[n].to_owned()),
                port: 80,
            }),
            address: (!service).then(|| format!("127.0.0.1:{}", 9000 + index)),
            weight: 1,
            drain: false,
        })
}

fn route_strategy(index: usize) -> impl Strategy<Value = Route> {
    (
        0..NAMESPACES.len(),
        0usize..5,
        prop::collection::vec(0..HOSTS.len(), 1..3),
        prop::collection::vec(0usize..3, 1..4),
        0i64..3,
    )
        .prop_flat_map(move |(ns, tenant, hosts, backends, created)| {
            let backends: Vec<_> = (0..backends.len()).map(backend_strategy).collect();
            (Just((ns, tenant, hosts, created)), backends)
        })
        .prop_map(move |((ns, tenant, hosts, created), backends)| {
            let mut route = Route::test(
                NAMESPACES[ns],
                &format!("r{index}"),
                &format!("t{tenant}"),
                "a.com",
            )
            .with_hosts(&pick(HOSTS, &hosts))
            .created(created);
            route.spec.backends = backends;
            route
        })
}

fn grant_strategy() -> impl Strategy<Value = ReferenceGrant> {
    (
        0..NAMESPACES.len(),
        0..NAMESPACES.len(),
        prop::option::of(0usize..2),
    )
        .prop_map(|(ns, from, svc)| {
            let svc = svc.map(|s| format!("s{s}"));
            let mut grant = ReferenceGrant::test(NAMESPACES[ns], NAMESPACES[from], svc.as_deref());
            grant.metadata.name = Some(format!("g-{from}-{}", svc.as_deref().unwrap_or("all")));
            grant
        })
}

fn world_strategy() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(any::<bool>(), 1..6),
        prop::collection::vec(any::<bool>(), 0..12),
        prop::collection::vec(grant_strategy(), 0..3),
    )
        .prop_flat_map(|(tenants, routes, grants)| {
            let tenants: Vec<_> = (0..tenants.len()).map(tenant_strategy).collect();
            let routes: Vec<_> = (0..routes.len()).map(route_strategy).collect();
            (tenants, routes, Just(grants))
        })
        .prop_map(|(tenants, routes, grants)| {
            let mut services = BTreeMap::new();
            for ns in NAMESPACES {
                for svc in ["s0", "s1"] {
                    services.insert(
                        ServiceKey {
                            namespace: (*ns).to_owned(),
                            name: svc.to_owned(),
                            port: 80,
                        },
                        vec![Endpoint {
                            address: format!("10.0.0.1:{}", svc.len()),
                            serving: true,
                            terminating: false,
                        }],
                    );
                }
            }
            World {
                plans: vec![
                    Plan::test("small")
                        .with_max_routes(2)
                        .with_max_domains(2)
                        .with_max_backends(2),
                    Plan::test("large")
                        .with_max_routes(50)
                        .with_max_domains(10)
                        .with_max_backends(10),
                ],
                tenants,
                routes,
                grants,
                services,
                ..World::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn resolution_is_independent_of_input_order(world in world_strategy(), seed in any::<u64>()) {
        prop_assert_eq!(world.resolve(), shuffled(&world, seed).resolve());
    }

    #[test]
    fn no_tenant_serves_a_host_outside_its_domains_or_another_tenants_host(world in world_strategy()) {
        let r = world.resolve();
        let mut owner_of_host: BTreeMap<&str, &str> = BTreeMap::new();
        for (tenant, config) in &r.configs {
            let spec_domains = &world.tenants.iter().find(|t| t.metadata.name.as_deref() == Some(tenant)).unwrap().spec.domains;
            for (h, _) in config.hosts() {
                prop_assert!(config.domains.iter().any(|d| host::covers(d, h)), "{} serves {} outside its granted domains", tenant, h);
                prop_assert!(spec_domains.iter().any(|d| host::covers(d, h)), "{} serves {} outside its spec domains", tenant, h);
                if let Some(other) = owner_of_host.insert(h, tenant) {
                    prop_assert_eq!(other, tenant.as_str(), "host {} served by two tenants", h);
                }
                for (other, outcome) in &r.tenants {
                    if other != tenant {
                        prop_assert!(!outcome.domains.iter().any(|d| host::overlaps(d, h)), "{} serves {} inside {}'s domains", tenant, h, other);
                    }
                }
            }
        }
        // Granted domains of different tenants never overlap.
        let granted: Vec<(&String, &String)> = r.tenants.iter().flat_map(|(t, o)| o.domains.iter().map(move |d| (t, d))).collect();
        for (t1, d1) in &granted {
            for (t2, d2) in &granted {
                prop_assert!(t1 == t2 || !host::overlaps(d1, d2), "{}:{} overlaps {}:{}", t1, d1, t2, d2);
            }
        }
    }

    #[test]
    fn no_route_reaches_a_service_in_a_namespace_that_did_not_grant_it(world in world_strategy()) {
        let r = world.resolve();
        for config in r.configs.values() {
            for route in &config.routes {
                // Judge from the Route as written, not from labels resolve produced.
                let spec = world
                    .routes
                    .iter()
                    .find(|x| x.metadata.namespace.as_deref() == Some(route.namespace.as_str())
                        && x.metadata.name.as_deref() == Some(route.name.as_str()))
                    .unwrap();
                prop_assert_eq!(spec.spec.backends.len(), route.backends.len());
                for (written, compiled) in spec.spec.backends.iter().zip(&route.backends) {
                    let Some(svc) = &written.service else {
                        let address = written.address.clone().unwrap();
                        prop_assert_eq!(compiled.endpoints.iter().map(|e| e.address.clone()).collect::<Vec<_>>(), vec![address]);
                        continue;
                    };
                    let namespace = svc.namespace.as_deref().unwrap_or(&route.namespace);
                    let granted = namespace == route.namespace
                        || world.grants.iter().any(|g| {
                            g.metadata.namespace.as_deref() == Some(namespace)
                                && g.permits_route_to_service(&route.namespace, &svc.name)
                        });
                    let expected: Vec<String> = if granted {
                        let key = ServiceKey { namespace: namespace.to_owned(), name: svc.name.clone(), port: svc.port };
                        world.services[&key].iter().map(|e| e.address.clone()).collect()
                    } else {
                        Vec::new()
                    };
                    let got: Vec<String> = compiled.endpoints.iter().map(|e| e.address.clone()).collect();
                    prop_assert_eq!(got, expected, "{} backend {} (Service {}/{})", route.id, written.name, namespace, svc.name);
                }
            }
        }
    }

    #[test]
    fn every_route_gets_an_outcome_and_only_accepted_routes_are_served(world in world_strategy()) {
        let r = world.resolve();
        prop_assert_eq!(r.routes.len(), world.routes.len());
        let served: usize = r.configs.values().map(|c| c.routes.len()).sum();
        let accepted = r.routes.values().filter(|o| o.is_true(ConditionType::Accepted)).count();
        prop_assert_eq!(served, accepted);
        for (tenant, outcome) in &r.tenants {
            if let (Some(usage), Some(config)) = (&outcome.usage, r.configs.get(tenant)) {
                prop_assert!(usage.routes <= usage.max_routes);
                prop_assert!(usage.domains <= usage.max_domains);
                prop_assert_eq!(usage.routes as usize, config.routes.len());
            }
        }
    }
}

/// The generated worlds exercise the rules the properties are about.
#[test]
fn generated_worlds_hit_conflicts_quotas_and_refused_refs() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let world = world_strategy().new_tree(&mut runner).unwrap().current();
        let r = world.resolve();
        for outcome in r
            .routes
            .values()
            .chain(r.tenants.values().map(|t| &t.outcome))
        {
            for c in &outcome.conditions {
                seen.insert(c.reason);
            }
        }
    }
    for reason in [
        Reason::Accepted,
        Reason::HostConflict,
        Reason::HostNotAllowed,
        Reason::QuotaExceeded,
        Reason::NamespaceNotAllowed,
        Reason::PlanNotFound,
        Reason::TenantNotFound,
        Reason::RefNotPermitted,
    ] {
        assert!(seen.contains(&reason), "generator never produced {reason}");
    }
}
