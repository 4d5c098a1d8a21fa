//! Cluster objects `resolve` needs beyond the VeloFlux kinds, in its terms:
//! Service ports → endpoint addresses (from EndpointSlices, with serving and
//! terminating state), and `kubernetes.io/tls` Secrets → PEM.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use veloflux_crds::resolve::{Endpoint, ObjectKey, ServiceKey, TlsSecret};

/// Label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Endpoints of every Service port, from the Services and their slices.
///
/// A slice port matches a Service port by name (an unnamed single port
/// matches the unnamed slice port); its number is the target port the
/// endpoints listen on. Endpoints not ready but terminating are kept, marked
/// terminating, so the proxies drain them rather than cut them.
pub fn service_endpoints(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> BTreeMap<ServiceKey, Vec<Endpoint>> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let (Some(ns), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            continue;
        };
        by_service.entry((ns, service)).or_default().push(slice);
    }
    let mut out = BTreeMap::new();
    for service in services {
        let (Some(ns), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let slices = by_service
            .get(&(ns, name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in ports {
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.as_deref().unwrap_or("");
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for slice in slices {
                let target = slice.ports.as_ref().and_then(|ports| {
                    ports
                        .iter()
                        .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                        .and_then(|p| p.port)
                });
                let Some(target) = target.and_then(|t| u16::try_from(t).ok()) else {
                    continue;
                };
                for endpoint in slice.endpoints.iter().flatten() {
                    let conditions = endpoint.conditions.as_ref();
                    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
                    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
                    for ip in &endpoint.addresses {
                        let address = if ip.contains(':') {
                            format!("[{ip}]:{target}")
                        } else {
                            format!("{ip}:{target}")
                        };
                        endpoints.push(Endpoint {
                            address,
                            serving,
                            terminating,
                        });
                    }
                }
            }
            endpoints.sort();
            endpoints.dedup_by(|a, b| a.address == b.address);
            out.insert(
                ServiceKey {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    port: number,
                },
                endpoints,
            );
        }
    }
    out
}

/// The certificate and key of every `kubernetes.io/tls` Secret.
pub fn tls_secrets(secrets: &[Arc<Secret>]) -> BTreeMap<ObjectKey, TlsSecret> {
    secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some("kubernetes.io/tls"))
        .map(|secret| {
            let field = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
            };
            (
                ObjectKey::of(&secret.metadata),
                TlsSecret {
                    cert_pem: field("tls.crt"),
                    key_pem: field("tls.key"),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "acme"},
                "spec": {"ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "admin", "port": 9000}
                ]}
            }))
            .unwrap(),
        )
    }

    fn slice(name: &str, endpoints: &serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "acme",
                             "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9000}],
                "endpoints": endpoints
            }))
            .unwrap(),
        )
    }

    #[test]
    fn service_ports_map_to_target_ports_with_terminating_endpoints_kept() {
        let slices = [
            slice(
                "web-1",
                &json!([
                    {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.2"],
                     "conditions": {"ready": false, "serving": true, "terminating": true}},
                ]),
            ),
            slice(
                "web-2",
                &json!([{"addresses": ["10.0.0.3"],
                        "conditions": {"ready": false, "serving": false}}]),
            ),
        ];
        let map = service_endpoints(&[service()], &slices);
        let http = &map[&ServiceKey {
            namespace: "acme".into(),
            name: "web".into(),
            port: 80,
        }];
        let got: Vec<(&str, bool, bool)> = http
            .iter()
            .map(|e| (e.address.as_str(), e.serving, e.terminating))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:8080", true, false),
                ("10.0.0.2:8080", true, true),
                ("10.0.0.3:8080", false, false)
            ]
        );
        let admin = &map[&ServiceKey {
            namespace: "acme".into(),
            name: "web".into(),
            port: 9000,
        }];
        assert_eq!(admin.len(), 3);
    }

    #[test]
    fn only_tls_secrets_are_read() {
        let tls: Arc<Secret> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "cert", "namespace": "acme"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}
            }))
            .unwrap(),
        );
        let opaque: Arc<Secret> = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "other", "namespace": "acme"},
                "type": "Opaque", "data": {"tls.crt": "Y2VydA=="}
            }))
            .unwrap(),
        );
        let map = tls_secrets(&[tls, opaque]);
        assert_eq!(map.len(), 1);
        let secret = &map[&ObjectKey::new("acme", "cert")];
        assert_eq!(secret.cert_pem.as_deref(), Some("cert"));
        assert_eq!(secret.key_pem.as_deref(), Some("key"));
    }
}
