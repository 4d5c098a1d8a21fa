//! The manifest-folder directory against real folders: the files it writes,
//! what it refuses, the status it reads back from `resolve`, and the real
//! standalone proxy serving what it writes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use veloflux_api::directory::folder::{FolderDirectory, route_file, tenant_file};
use veloflux_api::directory::{Directory, DirectoryError};
use veloflux_crds::{ConditionStatus, Manifests, Route, Tenant};

/// A fresh folder under the system's temporary folder, removed on drop.
struct TempFolder(PathBuf);

impl TempFolder {
    fn new(test: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "veloflux-api-folder-{test}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn directory(&self) -> FolderDirectory {
        FolderDirectory::open(self.0.clone()).unwrap()
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plan `pro` that allows static backends, as a person would write it.
const PLANS: &str = "\
apiVersion: veloflux.io/v1alpha1
kind: Plan
metadata:
  name: pro
spec:
  limits: {requestsPerMinute: 100000, burst: 1000, maxRoutes: 10, maxBackendsPerRoute: 4, maxDomains: 4}
  features: {staticBackends: true}
";

/// The quickstart's hand-written files: plans, two tenants, their routes
/// and Namespaces the proxy skips.
fn copy_quickstart(folder: &TempFolder) {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    for entry in std::fs::read_dir(quickstart).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), folder.path().join(entry.file_name())).unwrap();
    }
}

fn acme() -> Tenant {
    Tenant::test("acme", "pro").with_domains(&["acme.test", "*.acme.test"])
}

fn web_route(host: &str) -> Route {
    Route::test("acme", "web", "acme", host)
}

fn parse(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

fn condition(conditions: &[veloflux_crds::Condition], type_: &str) -> (ConditionStatus, String) {
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"));
    (c.status, c.reason.clone())
}

fn without_status<T: Clone>(object: &T, clear: impl Fn(&mut T)) -> T {
    let mut object = object.clone();
    clear(&mut object);
    object
}

#[tokio::test]
async fn a_created_tenant_is_written_to_its_own_file_and_reads_back_equal() {
    let folder = TempFolder::new("tenant-file");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();

    let created = directory.create_tenant(&acme()).await.unwrap();

    assert_eq!(folder.names(), ["plans.yaml", "tenant@acme.yaml"]);
    assert_eq!(tenant_file("acme"), "tenant@acme.yaml");
    let text = folder.read("tenant@acme.yaml");
    assert!(
        text.starts_with("# Managed by veloflux-api"),
        "header missing: {text}"
    );
    let yaml = parse(&text);
    assert_eq!(yaml["apiVersion"], "veloflux.io/v1alpha1");
    assert_eq!(yaml["kind"], "Tenant");
    assert_eq!(yaml["metadata"]["name"], "acme");
    let created_at = yaml["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(
        created_at.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && created_at.ends_with('Z'),
        "creationTimestamp {created_at:?} is not RFC 3339"
    );
    assert!(yaml["metadata"].get("generation").is_none());
    assert_eq!(yaml["spec"]["planRef"], "pro");
    assert_eq!(
        yaml["spec"]["domains"],
        serde_json::json!(["acme.test", "*.acme.test"])
    );
    assert!(yaml.get("status").is_none(), "status written: {text}");

    // What the proxy reads is what was written.
    let read = Manifests::load_dir(folder.path()).unwrap();
    assert_eq!(
        read.tenants,
        [without_status(&created, |t| t.status = None)]
    );
    assert_eq!(created.spec, acme().spec);

    let fetched = directory.tenant("acme").await.unwrap().unwrap();
    let status = fetched.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "Ready"),
        (ConditionStatus::True, "Ready".to_owned())
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation.is_none())
    );
    assert_eq!(status.usage.unwrap().max_domains, 4);
    assert_eq!(
        directory
            .tenants()
            .await
            .unwrap()
            .iter()
            .map(|t| t.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["acme"]
    );
    let plan = directory.plan("pro").await.unwrap().unwrap();
    assert_eq!(plan.status.unwrap().tenants, 1);
    assert!(directory.plan("gold").await.unwrap().is_none());
    assert!(directory.tenant("globex").await.unwrap().is_none());
}

#[tokio::test]
async fn a_created_route_is_written_to_a_file_named_by_namespace_and_name() {
    let folder = TempFolder::new("route-file");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();
    directory.create_tenant(&acme()).await.unwrap();

    let created = directory
        .create_route(&web_route("web.acme.test"))
        .await
        .unwrap();

    assert_eq!(route_file("acme", "web"), "route@acme@web.yaml");
    let yaml = parse(&folder.read("route@acme@web.yaml"));
    assert_eq!(yaml["kind"], "Route");
    assert_eq!(yaml["metadata"]["name"], "web");
    assert_eq!(yaml["metadata"]["namespace"], "acme");
    assert!(yaml["metadata"]["creationTimestamp"].is_string());
    assert_eq!(yaml["spec"]["tenantRef"], "acme");
    assert_eq!(yaml["spec"]["hosts"], serde_json::json!(["web.acme.test"]));
    assert_eq!(yaml["spec"]["backends"][0]["address"], "127.0.0.1:8080");
    assert!(yaml.get("status").is_none());

    let read = Manifests::load_dir(folder.path()).unwrap();
    assert_eq!(read.routes, [without_status(&created, |r| r.status = None)]);
    let conditions = created.status.unwrap().conditions;
    assert_eq!(
        condition(&conditions, "Accepted"),
        (ConditionStatus::True, "Accepted".to_owned())
    );
    assert_eq!(condition(&conditions, "Ready").0, ConditionStatus::True);
}

#[tokio::test]
async fn updates_replace_the_spec_and_keep_the_creation_time() {
    let folder = TempFolder::new("update");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();
    let tenant = directory.create_tenant(&acme()).await.unwrap();
    let route = directory
        .create_route(&web_route("web.acme.test"))
        .await
        .unwrap();

    let mut spec = tenant.spec.clone();
    spec.display_name = Some("ACME: \"Corp\" # 1".to_owned());
    spec.domains.push("acme.example".to_owned());
    let updated = directory.update_tenant("acme", &spec).await.unwrap();
    assert_eq!(updated.spec, spec);
    assert_eq!(
        updated.metadata.creation_timestamp,
        tenant.metadata.creation_timestamp
    );
    let mut route_spec = route.spec.clone();
    route_spec.hosts = vec!["api.acme.test".to_owned()];
    let updated_route = directory
        .update_route("acme", "web", &route_spec)
        .await
        .unwrap();
    assert_eq!(updated_route.spec.hosts, ["api.acme.test"]);

    let read = Manifests::load_dir(folder.path()).unwrap();
    assert_eq!(read.tenants[0].spec, spec);
    assert_eq!(read.routes[0].spec, route_spec);
    assert_eq!(
        directory.tenant("acme").await.unwrap().unwrap().spec,
        spec,
        "a read after the update sees it"
    );
    assert_eq!(
        folder.names(),
        ["plans.yaml", "route@acme@web.yaml", "tenant@acme.yaml"]
    );
}

#[tokio::test]
async fn deleting_a_tenant_removes_its_route_files_and_leaves_other_files() {
    let folder = TempFolder::new("delete");
    folder.write("plans.yaml", PLANS);
    // A hand-written route of acme: not the API's to delete.
    folder.write(
        "acme-extra.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {name: extra, namespace: acme}\n\
         spec: {tenantRef: acme, hosts: [extra.acme.test], backends: [{name: a, address: \"127.0.0.1:1\"}]}\n",
    );
    let directory = folder.directory();
    directory.create_tenant(&acme()).await.unwrap();
    let globex = Tenant::test("globex", "pro").with_domains(&["globex.test"]);
    directory.create_tenant(&globex).await.unwrap();
    directory
        .create_route(&web_route("web.acme.test"))
        .await
        .unwrap();
    directory
        .create_route(&Route::test("globex", "www", "globex", "globex.test"))
        .await
        .unwrap();

    directory.delete_tenant("acme").await.unwrap();

    assert_eq!(
        folder.names(),
        [
            "acme-extra.yaml",
            "plans.yaml",
            "route@globex@www.yaml",
            "tenant@globex.yaml"
        ]
    );
    assert!(directory.tenant("acme").await.unwrap().is_none());
    assert!(directory.route("acme", "web").await.unwrap().is_none());
    let orphan = directory.route("acme", "extra").await.unwrap().unwrap();
    assert_eq!(
        condition(&orphan.status.unwrap().conditions, "Accepted"),
        (ConditionStatus::False, "TenantNotFound".to_owned())
    );

    directory.delete_route("globex", "www").await.unwrap();
    assert!(directory.route("globex", "www").await.unwrap().is_none());
    assert!(matches!(
        directory.delete_route("globex", "www").await,
        Err(DirectoryError::NotFound { kind: "Route", .. })
    ));
    assert!(matches!(
        directory.delete_tenant("acme").await,
        Err(DirectoryError::NotFound { kind: "Tenant", .. })
    ));
}

#[tokio::test]
async fn names_taken_in_hand_written_multi_document_files_already_exist() {
    let folder = TempFolder::new("exists");
    copy_quickstart(&folder);
    let directory = folder.directory();

    let tenant = Tenant::test("acme", "pro").with_domains(&["acme.test"]);
    assert!(matches!(
        directory.create_tenant(&tenant).await,
        Err(DirectoryError::AlreadyExists { kind: "Tenant", name }) if name == "acme"
    ));
    let route = Route::test("acme", "shop", "acme", "shop.acme.localhost");
    assert!(matches!(
        directory.create_route(&route).await,
        Err(DirectoryError::AlreadyExists { kind: "Route", name }) if name == "acme/shop"
    ));
    // And against the API's own files.
    let initech = Tenant::test("initech", "pro").with_domains(&["initech.test"]);
    directory.create_tenant(&initech).await.unwrap();
    assert!(matches!(
        directory.create_tenant(&initech).await,
        Err(DirectoryError::AlreadyExists { kind: "Tenant", .. })
    ));
    let route = Route::test("initech", "web", "initech", "initech.test");
    directory.create_route(&route).await.unwrap();
    assert!(matches!(
        directory.create_route(&route).await,
        Err(DirectoryError::AlreadyExists { kind: "Route", .. })
    ));
    // The quickstart's files are as they were.
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    assert_eq!(
        folder.read("tenants.yaml"),
        std::fs::read_to_string(quickstart.join("tenants.yaml")).unwrap()
    );
}

#[tokio::test]
async fn objects_in_hand_written_files_are_not_changed_or_deleted() {
    let folder = TempFolder::new("hand-written");
    copy_quickstart(&folder);
    let directory = folder.directory();
    let acme = directory.tenant("acme").await.unwrap().unwrap();

    let refused = |result: Result<(), DirectoryError>, file: &str| match result {
        Err(DirectoryError::Invalid(message)) => assert!(
            message.contains(file) && message.contains("veloflux-api does not manage"),
            "unclear refusal: {message}"
        ),
        other => panic!("expected a refusal naming {file}, got {other:?}"),
    };
    refused(
        directory.update_tenant("acme", &acme.spec).await.map(drop),
        "tenants.yaml",
    );
    refused(directory.delete_tenant("acme").await, "tenants.yaml");
    let shop = directory.route("acme", "shop").await.unwrap().unwrap();
    refused(
        directory
            .update_route("acme", "shop", &shop.spec)
            .await
            .map(drop),
        "routes-acme.yaml",
    );
    refused(
        directory.delete_route("acme", "shop").await,
        "routes-acme.yaml",
    );
    match directory.update_tenant("acme", &acme.spec).await {
        Err(err) => assert_eq!(
            err.to_string(),
            "invalid: Tenant acme is defined in tenants.yaml, which veloflux-api does not manage"
        ),
        Ok(_) => panic!("update of a hand-written tenant accepted"),
    }

    assert!(matches!(
        directory.update_tenant("initech", &acme.spec).await,
        Err(DirectoryError::NotFound { kind: "Tenant", .. })
    ));
    assert!(matches!(
        directory.update_route("acme", "nope", &shop.spec).await,
        Err(DirectoryError::NotFound { kind: "Route", .. })
    ));
    // A file with the API's name that holds more than its one object is
    // not the API's either.
    folder.write(
        "tenant@initech.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {name: initech}\nspec: {planRef: pro}\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata: {name: initech}\n",
    );
    match directory.delete_tenant("initech").await {
        Err(DirectoryError::Invalid(message)) => {
            assert!(message.contains("together with other objects"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(folder.names().contains(&"tenant@initech.yaml".to_owned()));
}

#[tokio::test]
async fn route_status_comes_from_resolve() {
    let folder = TempFolder::new("status");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();
    directory.create_tenant(&acme()).await.unwrap();

    let outside = directory
        .create_route(&Route::test("acme", "outside", "acme", "www.globex.test"))
        .await
        .unwrap();
    let conditions = outside.status.unwrap().conditions;
    assert_eq!(
        condition(&conditions, "Accepted"),
        (ConditionStatus::False, "HostNotAllowed".to_owned())
    );
    assert_eq!(
        condition(&conditions, "Ready"),
        (ConditionStatus::False, "HostNotAllowed".to_owned())
    );
    directory
        .create_route(&web_route("web.acme.test"))
        .await
        .unwrap();
    let good = directory.route("acme", "web").await.unwrap().unwrap();
    assert_eq!(
        condition(&good.status.unwrap().conditions, "Accepted"),
        (ConditionStatus::True, "Accepted".to_owned())
    );
    // Read again, the refused route still is.
    let again = directory.route("acme", "outside").await.unwrap().unwrap();
    assert_eq!(
        condition(&again.status.unwrap().conditions, "Accepted").1,
        "HostNotAllowed"
    );
}

#[tokio::test]
async fn routes_of_a_tenant_are_those_in_its_namespaces_oldest_first() {
    let folder = TempFolder::new("routes");
    folder.write("plans.yaml", PLANS);
    // Without a creation time: older than anything the API creates.
    folder.write(
        "zz-hand.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {name: zeta, namespace: acme}\n\
         spec: {tenantRef: acme, hosts: [zeta.acme.test], backends: [{name: a, address: \"127.0.0.1:1\"}]}\n",
    );
    let directory = folder.directory();
    let tenant = directory
        .create_tenant(&acme().with_namespaces(&["acme", "acme-staging"]))
        .await
        .unwrap();
    let globex = Tenant::test("globex", "pro").with_domains(&["globex.test"]);
    directory.create_tenant(&globex).await.unwrap();
    for (namespace, name, tenant_ref) in [
        ("acme", "b", "acme"),
        ("acme-staging", "a", "acme"),
        ("acme", "a", "acme"),
        ("globex", "g", "globex"),
        ("globex", "stray", "acme"),
    ] {
        let route = Route::test(namespace, name, tenant_ref, "x.acme.test");
        directory.create_route(&route).await.unwrap();
    }

    let routes = directory.routes(&tenant).await.unwrap();
    let key = |r: &Route| {
        (
            r.metadata.creation_timestamp.clone(),
            r.metadata.namespace.clone().unwrap(),
            r.metadata.name.clone().unwrap(),
        )
    };
    let names: Vec<String> = routes
        .iter()
        .map(|r| {
            let (_, namespace, name) = key(r);
            format!("{namespace}/{name}")
        })
        .collect();
    // However many seconds the creations spanned: creation time, then
    // namespace, then name, as resolve orders them.
    assert_eq!(names[0], "acme/zeta");
    assert!(routes.is_sorted_by_key(key), "{names:?}");
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(
        expected,
        ["acme-staging/a", "acme/a", "acme/b", "acme/zeta"],
        "{names:?}"
    );
    assert!(!names.contains(&"globex/stray".to_owned()));
}

#[tokio::test]
async fn a_hand_edit_is_seen_once_the_last_read_is_older_than_the_freshness_window() {
    let folder = TempFolder::new("hand-edit");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();
    assert!(directory.tenant("acme").await.unwrap().is_none());
    folder.write(
        "tenants.yaml",
        "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {planRef: pro}\n",
    );
    tokio::time::sleep(Duration::from_millis(
        veloflux_api::directory::folder::FRESH_MS + 50,
    ))
    .await;
    assert_eq!(
        directory
            .tenant("acme")
            .await
            .unwrap()
            .unwrap()
            .spec
            .plan_ref,
        "pro"
    );
    std::fs::remove_file(folder.path().join("tenants.yaml")).unwrap();
    tokio::time::sleep(Duration::from_millis(
        veloflux_api::directory::folder::FRESH_MS + 50,
    ))
    .await;
    assert!(directory.tenant("acme").await.unwrap().is_none());
    // A broken hand-written file makes the folder unreadable, with its name.
    folder.write("broken.yaml", "kind: [\n");
    tokio::time::sleep(Duration::from_millis(
        veloflux_api::directory::folder::FRESH_MS + 50,
    ))
    .await;
    match directory.tenants().await {
        Err(DirectoryError::Unavailable(message)) => {
            assert!(message.contains("broken.yaml"), "{message}");
        }
        other => panic!("expected the folder to be unreadable, got {other:?}"),
    }
    directory.check().await.unwrap();
}

#[tokio::test]
async fn writes_leave_no_temporary_files_behind() {
    let folder = TempFolder::new("no-temp");
    folder.write("plans.yaml", PLANS);
    // A leftover of a write cut short is cleared when the folder is opened.
    folder.write(".tenant@old.yaml.tmp-1-0", "partial");
    let directory = folder.directory();
    for i in 0..5 {
        let name = format!("t{i}");
        let tenant = Tenant::test(&name, "pro").with_domains(&[&format!("t{i}.test")]);
        directory.create_tenant(&tenant).await.unwrap();
        directory.update_tenant(&name, &tenant.spec).await.unwrap();
        directory
            .create_route(&Route::test(&name, "web", &name, &format!("t{i}.test")))
            .await
            .unwrap();
    }
    directory.delete_tenant("t0").await.unwrap();
    let names = folder.names();
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".yaml") && !n.starts_with('.')),
        "{names:?}"
    );
    assert_eq!(names.len(), 1 + 4 * 2, "{names:?}");
}

#[tokio::test]
async fn names_that_are_not_kubernetes_names_are_refused() {
    let folder = TempFolder::new("names");
    folder.write("plans.yaml", PLANS);
    let directory = folder.directory();
    for name in ["../evil", "Acme", "", "a/b", "-acme", "acme@x"] {
        let tenant = Tenant::test(name, "pro");
        assert!(
            matches!(
                directory.create_tenant(&tenant).await,
                Err(DirectoryError::Invalid(_))
            ),
            "tenant name {name:?} accepted"
        );
    }
    let mut route = Route::test("acme", "web", "acme", "acme.test");
    route.metadata.namespace = None;
    assert!(matches!(
        directory.create_route(&route).await,
        Err(DirectoryError::Invalid(_))
    ));
    route.metadata.namespace = Some("a.b".to_owned());
    assert!(matches!(
        directory.create_route(&route).await,
        Err(DirectoryError::Invalid(_))
    ));
    assert_eq!(folder.names(), ["plans.yaml"]);
}

#[tokio::test]
async fn open_needs_an_existing_folder() {
    let missing = std::env::temp_dir().join(format!(
        "veloflux-api-folder-missing-{}",
        std::process::id()
    ));
    assert!(matches!(
        FolderDirectory::open(missing),
        Err(DirectoryError::Unavailable(_))
    ));
    let folder = TempFolder::new("open");
    folder.write("plans.yaml", PLANS);
    assert!(matches!(
        FolderDirectory::open(folder.path().join("plans.yaml")),
        Err(DirectoryError::Unavailable(_))
    ));
    let directory = folder.directory();
    assert_eq!(directory.kind(), "folder");
    assert_eq!(directory.path(), folder.path());
}

// --- The real standalone proxy over the folder. ---

/// How long the proxy may take to serve a change. It polls every 100 ms;
/// the margin is for a loaded machine.
const SERVED_WITHIN: Duration = Duration::from_secs(10);

/// The proxy binary of this build, built first if needed (cargo does
/// nothing when it is current, and a stale binary would test old code).
fn proxy_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // Tests run from <target>/<profile>/deps/; binaries live in <target>/<profile>/.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "veloflux-proxy",
                "--bin",
                "veloflux-proxy",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        assert!(
            build.status().unwrap().success(),
            "building veloflux-proxy failed"
        );
        let binary = profile_dir.join(format!("veloflux-proxy{}", std::env::consts::EXE_SUFFIX));
        assert!(binary.exists(), "{} missing", binary.display());
        binary
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The proxy process, stopped on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks until `done` holds for the answer, for at most `within`; the last
/// answer either way.
async fn answer_until(
    proxy: SocketAddr,
    host: &str,
    within: Duration,
    done: impl Fn(&(u16, String)) -> bool,
) -> (bool, Option<(u16, String)>) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let answer = support::proxy_get(proxy, host).await;
        if answer.as_ref().is_some_and(&done) {
            return (true, answer);
        }
        if tokio::time::Instant::now() >= deadline {
            return (false, answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_proxy_serves_a_tenant_created_through_the_directory() {
    const BODY: &str = "hello from the acme backend";
    let folder = TempFolder::new("proxy");
    folder.write("plans.yaml", PLANS);
    let backend = support::backend(BODY).await;
    let binary = proxy_binary();
    let (port, admin) = (free_port(), free_port());
    let mut proxy = Proxy(
        Command::new(binary)
            .arg("--manifests")
            .arg(folder.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args([
                "--poll-interval",
                "100ms",
                "--access-log",
                "false",
                "--log",
                "warn",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let proxy_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    const HOST: &str = "web.acme.test";

    // Serving, and the host unknown.
    let (up, answer) = answer_until(proxy_addr, HOST, Duration::from_secs(30), |(status, _)| {
        *status == 404
    })
    .await;
    assert!(
        up,
        "proxy not serving: {answer:?}, exit {:?}",
        proxy.0.try_wait()
    );

    let directory = folder.directory();
    directory.create_tenant(&acme()).await.unwrap();
    let mut route = web_route(HOST);
    route.spec.backends[0].address = Some(backend.to_string());
    let created = directory.create_route(&route).await.unwrap();
    assert_eq!(
        condition(&created.status.unwrap().conditions, "Ready").0,
        ConditionStatus::True
    );

    let started = tokio::time::Instant::now();
    let (served, answer) = answer_until(proxy_addr, HOST, SERVED_WITHIN, |(status, body)| {
        *status == 200 && body.contains(BODY)
    })
    .await;
    assert!(
        served,
        "the created route was not served within {SERVED_WITHIN:?}: {answer:?}"
    );
    eprintln!("served {:?} after the route was written", started.elapsed());

    directory.delete_route("acme", "web").await.unwrap();
    let (gone, answer) = answer_until(proxy_addr, HOST, SERVED_WITHIN, |(status, _)| {
        *status == 404
    })
    .await;
    assert!(gone, "the deleted route is still served: {answer:?}");
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy exited");
}
