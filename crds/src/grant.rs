//! `ReferenceGrant` (gateway.networking.k8s.io/v1beta1): how a namespace lets
//! Routes in other namespaces use its Services. VeloFlux reads the Gateway API
//! kind as it is, so clusters that already use it need nothing new; VeloFlux
//! does not install its CRD.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of VeloFlux's own kinds, as a grant's `from.group` names it.
pub const VELOFLUX_GROUP: &str = "veloflux.io";

/// Lets objects in other namespaces refer to objects in this grant's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1beta1",
    kind = "ReferenceGrant",
    namespaced,
    derive = "PartialEq"
)]
pub struct ReferenceGrantSpec {
    /// Who may refer: group, kind and namespace of the referring objects.
    pub from: Vec<ReferenceGrantFrom>,
    /// What may be referred to in this namespace: group, kind and optionally a name.
    pub to: Vec<ReferenceGrantTo>,
}

/// A referring party.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ReferenceGrantFrom {
    /// API group of the referring kind (`veloflux.io` for Routes).
    pub group: String,
    /// Referring kind (`Route`).
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// A referable target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ReferenceGrantTo {
    /// API group of the target kind (empty for the core group, as Services are).
    #[serde(default)]
    pub group: String,
    /// Target kind (`Service`).
    pub kind: String,
    /// Target name; unset grants every object of the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ReferenceGrant {
    /// Whether this grant lets a VeloFlux Route in `from_namespace` use the
    /// Service `service` of the grant's own namespace.
    pub fn permits_route_to_service(&self, from_namespace: &str, service: &str) -> bool {
        let from_ok = self.spec.from.iter().any(|f| {
            f.group == VELOFLUX_GROUP && f.kind == "Route" && f.namespace == from_namespace
        });
        let to_ok = self.spec.to.iter().any(|t| {
            t.group.is_empty()
                && t.kind == "Service"
                && t.name.as_deref().is_none_or(|n| n == service)
        });
        from_ok && to_ok
    }
}
