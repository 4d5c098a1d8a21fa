//! Tenants and Routes as custom resources, through the Kubernetes API.

/// The Kubernetes directory.
pub struct KubeDirectory;
