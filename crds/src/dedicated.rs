//! The namespaced `DedicatedInstance` kind: a proxy Deployment of a tenant's
//! own, scaled by hand (`kubectl scale`), by its HPA or by `autoscaling`.
#![allow(
    clippy::duplicated_attributes,
    reason = "kube printcolumn(...) entries repeat the same keys by design"
)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A proxy Deployment serving only one tenant.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "veloflux.io",
    version = "v1alpha1",
    kind = "DedicatedInstance",
    doc = "A proxy Deployment that serves only one tenant, with its own replicas and autoscaling.",
    namespaced,
    status = "DedicatedInstanceStatus",
    shortname = "vfdi",
    category = "veloflux",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantRef"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        priority = 1
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DedicatedInstanceSpec {
    /// Name of the Tenant served (its plan must include `dedicatedInstances`).
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub tenant_ref: String,
    /// Desired proxy replicas when autoscaling is off; written by `kubectl scale`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Horizontal autoscaling bounds and targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory for each proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Proxy version (image tag); unset follows the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: Option<String>,
    /// How a proxy pod drains when it is replaced or scaled down.
    #[serde(default)]
    pub drain: Drain,
}

fn default_replicas() -> i32 {
    2
}

/// Autoscaling of a dedicated instance.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("has(self.targetCpuUtilizationPercentage) || has(self.targetMemoryUtilizationPercentage)").message("set a CPU or memory target"))]
pub struct Autoscaling {
    /// Fewest replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilization to hold, in percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Average memory utilization to hold, in percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization_percentage: Option<i32>,
}

/// Container resources as Kubernetes quantities (`500m`, `256Mi`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Guaranteed resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
    /// Resource caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
}

/// CPU and memory quantities.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    /// CPU, for example `500m` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, for example `256Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

/// Drain behaviour of dedicated proxy pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    /// Seconds a stopping pod keeps serving in-flight requests.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 0, max = 3600))]
    pub timeout_seconds: u32,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            timeout_seconds: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> u32 {
    30
}

/// Observed state of a DedicatedInstance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DedicatedInstanceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Proxy pods that exist (read by the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// Proxy pods ready to serve.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the proxy pods, for the scale subresource and HPAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Namespace holding the instance's Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Standard conditions: `Accepted`, `Ready`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
