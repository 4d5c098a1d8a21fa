//! Reading manifests from YAML: the same multi-document files you would
//! `kubectl apply`, parsed into the typed objects `resolve` takes. Used by the
//! standalone proxy (`--manifests DIR`) and by tests.
//!
//! Recognised: VeloFlux kinds, Gateway API `ReferenceGrant`, and
//! `kubernetes.io/tls` Secrets. Other kinds (an Argo CD Application, a
//! Namespace) are skipped and listed. A malformed document is an error naming
//! the file and document; nothing of a failed load is kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::dedicated::DedicatedInstance;
use crate::grant::ReferenceGrant;
use crate::plan::Plan;
use crate::resolve::{Endpoint, Inputs, ObjectKey, ServiceKey, TlsSecret};
use crate::route::Route;
use crate::tenant::Tenant;

/// The only Secret type read: `tls.crt` and `tls.key`.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Namespace given to namespaced objects that name none, as `kubectl` does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{path}: invalid YAML: {message}")]
    Yaml {
        /// File.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A document is not a valid object of its kind.
    #[error("{path}: document {index} ({kind} {name}): {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Document number, from 1.
        index: usize,
        /// Kind of the document.
        kind: String,
        /// `namespace/name` or name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Two documents define the same object.
    #[error("{path}: {kind} {name} is defined twice")]
    Duplicate {
        /// File of the second definition.
        path: PathBuf,
        /// Kind.
        kind: String,
        /// `namespace/name` or name.
        name: String,
    },
}

/// A set of parsed manifests.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// Plans.
    pub plans: Vec<Plan>,
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Dedicated instances.
    pub dedicated: Vec<DedicatedInstance>,
    /// ReferenceGrants.
    pub grants: Vec<ReferenceGrant>,
    /// TLS Secrets.
    pub secrets: BTreeMap<ObjectKey, TlsSecret>,
    /// Service endpoints (empty without Kubernetes: Service backends then report BackendNotFound).
    pub services: BTreeMap<ServiceKey, Vec<Endpoint>>,
    /// `kind name` of documents that were skipped.
    pub skipped: Vec<String>,
    /// `(kind, key)` of every object added, to refuse duplicates in O(1).
    pub(crate) seen: std::collections::HashSet<(&'static str, ObjectKey)>,
}

impl Manifests {
    /// The inputs `resolve` takes, borrowed from these manifests.
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            plans: &self.plans,
            tenants: &self.tenants,
            routes: &self.routes,
            dedicated: &self.dedicated,
            grants: &self.grants,
            services: Some(&self.services),
            secrets: Some(&self.secrets),
        }
    }

    /// Resolves these manifests.
    pub fn resolve(&self) -> crate::resolve::Resolution {
        crate::resolve::resolve(self.inputs())
    }

    /// Reads every `*.yaml` / `*.yml` file directly in `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, ManifestError> {
        let io = |source| ManifestError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let files = manifest_files(dir).map_err(io)?;
        let mut manifests = Self::default();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
                path: path.clone(),
                source,
            })?;
            manifests.add_yaml(&path, &text)?;
        }
        Ok(manifests)
    }

    /// Adds every document of one YAML text. Documents are read straight
    /// into their kind's type, with no JSON tree in between.
    pub fn add_yaml(&mut self, path: &Path, text: &str) -> Result<(), ManifestError> {
        let docs = crate::yaml::documents(text).map_err(|e| ManifestError::Yaml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (i, doc) in docs.into_iter().enumerate() {
            self.add_object(path, i + 1, doc)?;
        }
        Ok(())
    }

    /// Adds one document, read into its kind's type.
    fn add_object(
        &mut self,
        path: &Path,
        index: usize,
        doc: crate::yaml::Document,
    ) -> Result<(), ManifestError> {
        let api_version = doc.field(&["apiVersion"]).unwrap_or("").to_owned();
        let kind = doc.field(&["kind"]).unwrap_or("").to_owned();
        let name = doc.field(&["metadata", "name"]).unwrap_or("").to_owned();
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            index,
            kind: kind.clone(),
            name: name.clone(),
            message,
        };
        if name.is_empty() && !kind.is_empty() {
            return Err(invalid("metadata.name is required".to_owned()));
        }
        match (api_version.as_str(), kind.as_str()) {
            ("veloflux.io/v1alpha1", "Plan") => {
                let plan: Plan = typed(doc, &invalid)?;
                self.check_unique(path, "Plan", &ObjectKey::of(&plan.metadata))?;
                self.plans.push(plan);
            }
            ("veloflux.io/v1alpha1", "Tenant") => {
                let tenant: Tenant = typed(doc, &invalid)?;
                self.check_unique(path, "Tenant", &ObjectKey::of(&tenant.metadata))?;
                self.tenants.push(tenant);
            }
            ("veloflux.io/v1alpha1", "Route") => {
                let mut route: Route = typed(doc, &invalid)?;
                route
                    .metadata
                    .namespace
                    .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
                self.check_unique(path, "Route", &ObjectKey::of(&route.metadata))?;
                self.routes.push(route);
            }
            ("veloflux.io/v1alpha1", "DedicatedInstance") => {
                let mut instance: DedicatedInstance = typed(doc, &invalid)?;
                instance
                    .metadata
                    .namespace
                    .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
                self.check_unique(
                    path,
                    "DedicatedInstance",
                    &ObjectKey::of(&instance.metadata),
                )?;
                self.dedicated.push(instance);
            }
            ("veloflux.io/v1alpha1", other) => {
                return Err(invalid(format!("unknown VeloFlux kind {other:?}")));
            }
            ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant") => {
                let mut grant: ReferenceGrant = typed(doc, &invalid)?;
                grant
                    .metadata
                    .namespace
                    .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
                self.check_unique(path, "ReferenceGrant", &ObjectKey::of(&grant.metadata))?;
                self.grants.push(grant);
            }
            ("v1", "Secret") => {
                let secret: Secret = typed(doc, &invalid)?;
                if secret.type_.as_deref() != Some(TLS_SECRET_TYPE) {
                    self.skipped.push(format!("{kind} {name}"));
                    return Ok(());
                }
                let key = ObjectKey::new(
                    secret
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                    name.clone(),
                );
                self.check_unique(path, "Secret", &key)?;
                self.secrets.insert(key, tls_secret(&secret));
            }
            _ => self.skipped.push(format!("{kind} {name}")),
        }
        Ok(())
    }

    /// The `(kind, key)` of every object held.
    pub fn keys(&self) -> Vec<(&'static str, ObjectKey)> {
        let mut keys: Vec<_> = self.seen.iter().cloned().collect();
        keys.sort();
        keys
    }

    /// Makes room for `objects` more objects' keys (a folder's start absorbs
    /// thousands of files one by one; the key set would otherwise be
    /// rehashed at every doubling).
    pub fn reserve(&mut self, objects: usize) {
        self.seen.reserve(objects);
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Moves every object of `other` in, all or nothing: if any of them is
    /// already present, nothing changes and the duplicate is reported.
    /// Returns the `(kind, key)` of the objects added.
    pub fn absorb(
        &mut self,
        path: &Path,
        other: Manifests,
    ) -> Result<Vec<(&'static str, ObjectKey)>, ManifestError> {
        if let Some((kind, key)) = other.seen.iter().find(|k| self.seen.contains(*k)) {
            return Err(ManifestError::Duplicate {
                path: path.to_path_buf(),
                kind: (*kind).to_owned(),
                name: key.to_string(),
            });
        }
        let keys = other.keys();
        self.seen.extend(other.seen);
        self.plans.extend(other.plans);
        self.tenants.extend(other.tenants);
        self.routes.extend(other.routes);
        self.dedicated.extend(other.dedicated);
        self.grants.extend(other.grants);
        self.secrets.extend(other.secrets);
        self.services.extend(other.services);
        Ok(keys)
    }

    /// Removes the Routes, with their keys, and returns them: for a holder
    /// that keeps routes apart from the other objects.
    pub fn take_routes(&mut self) -> Vec<Route> {
        self.seen.retain(|(kind, _)| *kind != "Route");
        std::mem::take(&mut self.routes)
    }

    /// Removes the objects `keys` names and returns them.
    pub fn take(&mut self, keys: &[(&'static str, ObjectKey)]) -> Manifests {
        fn split<T>(items: &mut Vec<T>, take: impl Fn(&T) -> bool) -> Vec<T> {
            let (out, keep): (Vec<T>, Vec<T>) =
                std::mem::take(items).into_iter().partition(|x| take(x));
            *items = keep;
            out
        }
        let wanted: std::collections::HashSet<&(&'static str, ObjectKey)> = keys.iter().collect();
        let is =
            |kind: &'static str,
             meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                wanted.contains(&(kind, ObjectKey::of(meta)))
            };
        let mut taken = Manifests {
            plans: split(&mut self.plans, |x| is("Plan", &x.metadata)),
            tenants: split(&mut self.tenants, |x| is("Tenant", &x.metadata)),
            routes: split(&mut self.routes, |x| is("Route", &x.metadata)),
            dedicated: split(&mut self.dedicated, |x| {
                is("DedicatedInstance", &x.metadata)
            }),
            grants: split(&mut self.grants, |x| is("ReferenceGrant", &x.metadata)),
            ..Manifests::default()
        };
        for (kind, key) in keys {
            if *kind == "Secret"
                && let Some(secret) = self.secrets.remove(key)
            {
                taken.secrets.insert(key.clone(), secret);
            }
            if self.seen.remove(&(*kind, key.clone())) {
                taken.seen.insert((*kind, key.clone()));
            }
        }
        taken
    }

    fn check_unique(
        &mut self,
        path: &Path,
        kind: &'static str,
        key: &ObjectKey,
    ) -> Result<(), ManifestError> {
        if self.seen.insert((kind, key.clone())) {
            return Ok(());
        }
        Err(ManifestError::Duplicate {
            path: path.to_path_buf(),
            kind: kind.to_owned(),
            name: key.to_string(),
        })
    }
}

fn typed<T: DeserializeOwned>(
    doc: crate::yaml::Document,
    invalid: &impl Fn(String) -> ManifestError,
) -> Result<T, ManifestError> {
    doc.deserialize().map_err(|e| invalid(e.to_string()))
}

/// The documents of one YAML text, empty documents left out.
pub fn documents(path: &Path, text: &str) -> Result<Vec<Value>, ManifestError> {
    crate::yaml::values(text).map_err(|e| ManifestError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `tls.crt` and `tls.key` of a Secret, from `stringData` or `data`.
pub fn tls_secret(secret: &Secret) -> TlsSecret {
    let field = |name: &str| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(name).cloned())
            .or_else(|| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(name))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
            })
    };
    TlsSecret {
        cert_pem: field("tls.crt"),
        key_pem: field("tls.key"),
    }
}

/// The `*.yaml` / `*.yml` files directly in `dir`, in name order.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    // The entry's type comes with the listing on most filesystems; only
    // symbolic links (a mounted ConfigMap's files) cost a `stat` each.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            Path::new(&name)
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml")
                && e.file_type()
                    .is_ok_and(|t| t.is_file() || (t.is_symlink() && e.path().is_file()))
        })
        .map(|e| e.path())
        .collect();
    // One folder: byte order of the names is the paths' order, and cheaper
    // to compare than component by component.
    files.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(files)
}
