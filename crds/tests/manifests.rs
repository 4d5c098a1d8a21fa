//! Reading manifest folders: what is kept, what is skipped, and the errors a
//! broken file gets (file, document and reason named; nothing half-loaded).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use veloflux_crds::manifest::{ManifestError, Manifests};
use veloflux_crds::resolve::ObjectKey;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vf-manifests-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.0.join(name), text).unwrap();
        self
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PLAN: &str = "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata:\n  name: p\nspec:\n  limits: {requestsPerMinute: 10, maxRoutes: 1, maxBackendsPerRoute: 1, maxDomains: 1}\n";

#[test]
fn folder_loads_kinds_secrets_and_grants_and_skips_foreign_kinds() {
    let dir = TempDir::new("ok");
    dir.write("a.yaml", PLAN).write(
        "b.yml",
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: acme}\ntype: kubernetes.io/tls\n\
         stringData: {tls.crt: CERT, tls.key: KEY}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: b64, namespace: acme}\ntype: kubernetes.io/tls\ndata: {tls.crt: Q0VSVA==}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: acme}\nstringData: {password: hunter2}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: shared}\n\
         spec: {from: [{group: veloflux.io, kind: Route, namespace: acme}], to: [{group: '', kind: Service}]}\n---\n\
         apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: tenants}\n---\n",
    )
    .write(
        "c.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {name: r}\n\
         spec: {tenantRef: t, hosts: [a.com], backends: [{name: b, address: '127.0.0.1:1'}]}\n",
    )
    .write("notes.txt", "not a manifest");
    let m = Manifests::load_dir(dir.path()).unwrap();
    assert_eq!(m.plans.len(), 1);
    assert_eq!(
        m.routes[0].metadata.namespace.as_deref(),
        Some("default"),
        "namespace defaults as kubectl does"
    );
    assert_eq!(m.grants.len(), 1);
    let tls = &m.secrets[&ObjectKey::new("acme", "tls")];
    assert_eq!(
        (tls.cert_pem.as_deref(), tls.key_pem.as_deref()),
        (Some("CERT"), Some("KEY"))
    );
    let b64 = &m.secrets[&ObjectKey::new("acme", "b64")];
    assert_eq!(
        b64.cert_pem.as_deref(),
        Some("CERT"),
        "data is base64-decoded"
    );
    assert!(
        !m.secrets.contains_key(&ObjectKey::new("acme", "creds")),
        "only kubernetes.io/tls Secrets are read"
    );
    assert_eq!(m.skipped, vec!["Secret creds", "Application tenants"]);
}

#[test]
fn invalid_document_names_the_file_the_document_and_the_reason() {
    let dir = TempDir::new("invalid");
    dir.write(
        "routes.yaml",
        &format!("{PLAN}---\napiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec: {{tenantRef: t}}\n"),
    );
    let err = Manifests::load_dir(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ManifestError::Invalid { index: 2, .. }),
        "{text}"
    );
    assert!(
        text.contains("routes.yaml") && text.contains("Route r") && text.contains("hosts"),
        "{text}"
    );
    // The reason points into the file: the Route's `spec` starts on line 11.
    assert!(text.contains("at line 11 column"), "{text}");
}

#[test]
fn malformed_yaml_is_an_error_naming_the_file() {
    let dir = TempDir::new("yaml");
    dir.write("broken.yaml", "kind: [unclosed\n");
    let err = Manifests::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ManifestError::Yaml { .. }), "{err}");
    assert!(err.to_string().contains("broken.yaml"));
}

#[test]
fn an_object_defined_twice_is_refused() {
    let dir = TempDir::new("dup");
    dir.write("a.yaml", PLAN).write("b.yaml", PLAN);
    let err = Manifests::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ManifestError::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains("Plan p"), "{err}");
}

#[test]
fn unknown_veloflux_kind_and_missing_name_are_refused() {
    let dir = TempDir::new("kind");
    dir.write(
        "a.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Gateway\nmetadata: {name: g}\n",
    );
    let err = Manifests::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("unknown VeloFlux kind"), "{err}");

    let dir = TempDir::new("noname");
    dir.write(
        "a.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata: {}\nspec: {}\n",
    );
    let err = Manifests::load_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("metadata.name is required"),
        "{err}"
    );
}

#[test]
fn missing_folder_is_an_io_error() {
    let err = Manifests::load_dir(Path::new("/nonexistent/veloflux")).unwrap_err();
    assert!(matches!(err, ManifestError::Io { .. }), "{err}");
}

#[test]
fn absorb_is_all_or_nothing_and_take_returns_what_it_removes() {
    let dir = TempDir::new("absorb");
    dir.write("a.yaml", PLAN).write(
        "b.yaml",
        &format!("{PLAN}---\napiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {{name: t}}\nspec: {{planRef: p}}\n"),
    );
    let mut a = Manifests::default();
    a.add_yaml(Path::new("a.yaml"), PLAN).unwrap();
    let mut combined = Manifests::default();
    let keys = combined.absorb(Path::new("a.yaml"), a.clone()).unwrap();
    assert_eq!(keys.len(), 1);
    let mut b = Manifests::default();
    b.add_yaml(
        Path::new("b.yaml"),
        &std::fs::read_to_string(dir.path().join("b.yaml")).unwrap(),
    )
    .unwrap();
    let err = combined.absorb(Path::new("b.yaml"), b).unwrap_err();
    assert!(matches!(err, ManifestError::Duplicate { .. }), "{err}");
    assert!(
        combined.tenants.is_empty(),
        "nothing of a refused file is kept"
    );
    let taken = combined.take(&keys);
    assert_eq!(taken.plans.len(), 1);
    assert!(combined.plans.is_empty() && combined.keys().is_empty());
    assert!(
        combined.absorb(Path::new("a.yaml"), taken).is_ok(),
        "taken objects can come back"
    );
}
