//! Tenants and Routes as YAML files in the folder the standalone proxy
//! watches (`veloflux-proxy --manifests DIR`): the proxy takes what is
//! written here as if a person had saved the file.
//!
//! This module owns the folder's layout for the objects the API writes: one
//! object per file, `tenant@<name>.yaml` for a Tenant and
//! `route@<namespace>@<name>.yaml` for a Route (`@` is never part of a
//! Kubernetes name, so two objects never share a file). Every other
//! `*.yaml` / `*.yml` file (plans, the quickstart's multi-document files,
//! objects people wrote by hand) is read but never written: changing or
//! deleting an object defined there is refused with the file's name.
//!
//! Invariants:
//!
//! - A write is atomic. The text goes to a temporary file in the same folder
//!   whose name does not end in `.yaml` (so the proxy never reads it), is
//!   synced, renamed over the target, and the folder is synced: a reader sees
//!   the old file or the new one, never part of one. Each written file gets a
//!   modification time later than the one it replaces, so a poll comparing
//!   (length, modification time), as the proxy's does, sees every rewrite.
//! - What is written reads back, with the proxy's reader, equal to the typed
//!   object: each text is read back before it is written, and refused if it
//!   differs. `status` is never written.
//! - Writes are serialised by one process-wide lock and checked against the
//!   folder as read under that lock. One veloflux-api process writes a
//!   folder: nothing locks across processes, so two API processes on one
//!   folder could both create the same name.
//! - Reads take the whole folder with the proxy's reader (the same files,
//!   parsed and checked for duplicates as [`Manifests::load_dir`] does) and
//!   resolve it with the proxy's `resolve`, so a status read here is what the
//!   proxy serves. The parsed folder is kept and reused while every file's
//!   (name, length, modification time) stays the same.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{Timestamp, Unit};
use serde::Serialize;
use veloflux_crds::manifest::{Manifests, manifest_files};
use veloflux_crds::resolve::{ObjectKey, Outcome, Resolution};
use veloflux_crds::{
    Condition, Plan, PlanStatus, Route, RouteSpec, RouteStatus, Tenant, TenantSpec, TenantStatus,
};

use super::{DirResult, Directory, DirectoryError};

const TENANT: &str = "Tenant";
const ROUTE: &str = "Route";

/// First line of every file the API writes.
const HEADER: &str = "# Managed by veloflux-api: change this object through the API; \
                      edits made here are replaced by its next change.\n";

/// Serialises every write of this process (see the module invariants).
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often a read starts over when a file vanishes between the listing
/// and its reading (a concurrent delete or rename).
const READ_ATTEMPTS: usize = 3;

/// The file a Tenant the API writes lives in: `tenant@<name>.yaml`.
pub fn tenant_file(name: &str) -> String {
    format!("tenant@{name}.yaml")
}

/// The file a Route the API writes lives in: `route@<namespace>@<name>.yaml`.
pub fn route_file(namespace: &str, name: &str) -> String {
    format!("route@{namespace}@{name}.yaml")
}

/// The manifest-folder directory: Tenants and Routes as YAML files in the
/// folder the standalone proxy serves.
pub struct FolderDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// The folder as last read.
    cache: ArcSwapOption<Folder>,
    /// When the cached read's stamps were last confirmed (ms after `epoch`).
    confirmed_ms: AtomicU64,
    epoch: tokio::time::Instant,
    /// Numbers this process's temporary files.
    temp_seq: AtomicU64,
}

/// One file's identity as a poll sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    name: OsString,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path, meta: &std::fs::Metadata) -> Self {
        Self {
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// Where an object was read from.
#[derive(Clone, Debug)]
struct Origin {
    /// The file's name within the folder.
    file: String,
    /// The file holds this object and nothing else.
    alone: bool,
}

/// The folder as read at one moment: its objects, where each came from,
/// and what `resolve` makes of them.
struct Folder {
    stamps: Vec<Stamp>,
    manifests: Manifests,
    origins: HashMap<(&'static str, ObjectKey), Origin>,
    resolution: Resolution,
}

impl FolderDirectory {
    /// The directory over `dir`, which must exist and be writable.
    /// Temporary files a write cut short left behind are removed.
    pub fn open(dir: PathBuf) -> Result<Self, DirectoryError> {
        let meta = std::fs::metadata(&dir).map_err(|e| io_error(&dir, &e))?;
        if !meta.is_dir() {
            return Err(DirectoryError::Unavailable(format!(
                "{} is not a folder",
                dir.display()
            )));
        }
        // Permission bits do not say whether this process may write (root,
        // ACLs, read-only mounts): try.
        let probe = dir.join(format!(".veloflux-api-probe-{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .map_err(|e| {
                DirectoryError::Unavailable(format!("{} is not writable: {e}", dir.display()))
            })?;
        std::fs::remove_file(&probe).map_err(|e| io_error(&probe, &e))?;
        remove_leftovers(&dir);
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                cache: ArcSwapOption::empty(),
                confirmed_ms: AtomicU64::new(0),
                epoch: tokio::time::Instant::now(),
                temp_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The folder as it is now (cached while no file changed). A read
    /// confirmed within [`FRESH_MS`] is taken as it is, without a `stat` of
    /// every file: under load, reads cost no file-system calls and no
    /// blocking-pool hand-off, and an edit by hand is seen within
    /// [`FRESH_MS`]. This API's own writes drop the cache, so they are seen
    /// by the very next read.
    async fn folder(&self) -> DirResult<Arc<Folder>> {
        if let Some(cached) = self.inner.cache.load_full()
            && self.inner.elapsed_ms() < self.inner.confirmed_ms.load(Ordering::Acquire) + FRESH_MS
        {
            return Ok(cached);
        }
        self.folder_now().await
    }

    /// The folder as it is now, confirmed by a `stat` of every file: what
    /// writes decide on (whether a name is taken, whose file an object is).
    async fn folder_now(&self) -> DirResult<Arc<Folder>> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.folder()).await
    }

    /// Writes `text` to `file`, atomically.
    async fn write(&self, file: String, text: String) -> DirResult<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.write_file(&file, &text)).await
    }

    /// Removes `files`.
    async fn remove(&self, files: Vec<String>) -> DirResult<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.remove_files(&files)).await
    }

    /// The Tenant `name` as the folder holds it now, with its status; the
    /// object just written, without status, if the folder cannot be read.
    async fn tenant_after_write(&self, written: Tenant) -> Tenant {
        let name = written.metadata.name.clone().unwrap_or_default();
        match self.folder().await {
            Ok(folder) => match folder.tenant(&name) {
                Some(tenant) => folder.tenant_with_status(tenant, &now()),
                None => written,
            },
            Err(err) => {
                tracing::warn!(
                    tenant = %name,
                    error = %err,
                    "Tenant written; the folder could not be read back"
                );
                written
            }
        }
    }

    /// The Route as the folder holds it now, with its status; the object
    /// just written, without status, if the folder cannot be read.
    async fn route_after_write(&self, written: Route) -> Route {
        let key = ObjectKey::of(&written.metadata);
        match self.folder().await {
            Ok(folder) => match folder.route(&key.namespace, &key.name) {
                Some(route) => folder.route_with_status(route, &now()),
                None => written,
            },
            Err(err) => {
                tracing::warn!(
                    route = %key,
                    error = %err,
                    "Route written; the folder could not be read back"
                );
                written
            }
        }
    }
}

/// How long a confirmed read of the folder is taken as current, in ms.
pub const FRESH_MS: u64 = 200;

impl Inner {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The folder as it is now: the cached read when every file's stamp is
    /// unchanged, else a fresh read.
    fn folder(&self) -> DirResult<Arc<Folder>> {
        let checked = self.elapsed_ms();
        let stamps = stamps(&self.dir)?;
        if let Some(cached) = self.cache.load_full()
            && cached.stamps == stamps
        {
            self.confirmed_ms.store(checked, Ordering::Release);
            return Ok(cached);
        }
        // Two reads racing past a change both parse; either result is
        // the folder as it is now.
        let folder = Arc::new(read_folder(&self.dir)?);
        self.cache.store(Some(Arc::clone(&folder)));
        self.confirmed_ms.store(checked, Ordering::Release);
        Ok(folder)
    }

    fn forget(&self) {
        self.cache.store(None);
    }

    /// Writes `text` to `file` in the folder: temporary file, sync, rename,
    /// sync of the folder. The temporary file is removed on failure.
    fn write_file(&self, file: &str, text: &str) -> DirResult<()> {
        let target = self.dir.join(file);
        let n = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .dir
            .join(format!(".{file}.tmp-{}-{n}", std::process::id()));
        let result = (|| {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            out.write_all(text.as_bytes())?;
            out.set_modified(modified_after(&target))?;
            out.sync_all()?;
            drop(out);
            std::fs::rename(&temp, &target)
        })();
        self.forget();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&target, &err));
        }
        sync_dir(&self.dir)
    }

    /// Removes `files` from the folder (one already gone is no error), then
    /// syncs the folder.
    fn remove_files(&self, files: &[String]) -> DirResult<()> {
        self.forget();
        for file in files {
            let path = self.dir.join(file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error(&path, &err)),
            }
        }
        sync_dir(&self.dir)
    }
}

impl Folder {
    fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.manifests
            .tenants
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(name))
    }

    fn route(&self, namespace: &str, name: &str) -> Option<&Route> {
        self.manifests.routes.iter().find(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && r.metadata.name.as_deref() == Some(name)
        })
    }

    fn plan(&self, name: &str) -> Option<&Plan> {
        self.manifests
            .plans
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
    }

    fn origin(&self, kind: &'static str, meta: &ObjectMeta) -> Option<&Origin> {
        self.origins.get(&(kind, ObjectKey::of(meta)))
    }

    /// Whether the object was written by the API: alone in the file its
    /// kind and name give.
    fn is_managed(&self, kind: &'static str, meta: &ObjectMeta, file: &str) -> bool {
        self.origin(kind, meta)
            .is_some_and(|o| o.alone && o.file == file)
    }

    /// Refuses a change to an object the API did not write.
    fn managed(&self, kind: &'static str, meta: &ObjectMeta, file: &str) -> DirResult<()> {
        if self.is_managed(kind, meta, file) {
            return Ok(());
        }
        let name = ObjectKey::of(meta);
        Err(DirectoryError::Invalid(match self.origin(kind, meta) {
            Some(origin) if origin.file == file => format!(
                "{kind} {name} is defined in {file} together with other objects, \
                 which veloflux-api does not manage"
            ),
            Some(origin) => format!(
                "{kind} {name} is defined in {}, which veloflux-api does not manage",
                origin.file
            ),
            None => format!("{kind} {name} was not read from a file"),
        }))
    }

    /// Refuses to create `file` when a file of that name exists already:
    /// it holds something other than the object about to be written.
    fn refuse_existing(&self, file: &str) -> DirResult<()> {
        if self.stamps.iter().any(|s| s.name == file) {
            return Err(DirectoryError::Invalid(format!(
                "{file} exists and holds other objects; veloflux-api will not replace it"
            )));
        }
        Ok(())
    }

    fn tenant_with_status(&self, tenant: &Tenant, now: &str) -> Tenant {
        let outcome = tenant
            .metadata
            .name
            .as_deref()
            .and_then(|name| self.resolution.tenants.get(name));
        Tenant {
            status: Some(TenantStatus {
                observed_generation: None,
                usage: outcome.and_then(|o| o.usage.clone()),
                conditions: conditions(outcome.map(|o| &o.outcome), now),
            }),
            ..tenant.clone()
        }
    }

    fn route_with_status(&self, route: &Route, now: &str) -> Route {
        let outcome = self.resolution.routes.get(&ObjectKey::of(&route.metadata));
        Route {
            status: Some(RouteStatus {
                observed_generation: None,
                conditions: conditions(outcome, now),
            }),
            ..route.clone()
        }
    }

    fn plan_with_status(&self, plan: &Plan, now: &str) -> Plan {
        let outcome = plan
            .metadata
            .name
            .as_deref()
            .and_then(|name| self.resolution.plans.get(name));
        Plan {
            status: Some(PlanStatus {
                observed_generation: None,
                tenants: outcome.map_or(0, |o| o.tenants),
                conditions: conditions(outcome.map(|o| &o.outcome), now),
            }),
            ..plan.clone()
        }
    }

    /// Routes of the tenant `name` in `namespaces`, oldest first (creation
    /// time, objects without one first, then namespace, then name).
    fn routes_of(&self, name: &str, namespaces: &[String]) -> Vec<&Route> {
        let mut routes: Vec<&Route> = self
            .manifests
            .routes
            .iter()
            .filter(|r| {
                r.spec.tenant_ref == name
                    && r.metadata
                        .namespace
                        .as_deref()
                        .is_some_and(|ns| namespaces.iter().any(|n| n == ns))
            })
            .collect();
        routes.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        routes
    }
}

/// The order `resolve` processes objects in.
fn age_key(meta: &ObjectMeta) -> (Option<&Time>, &str, &str) {
    (
        meta.creation_timestamp.as_ref(),
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// The status conditions of an outcome. A folder keeps no status, so every
/// condition reads as having changed now, and no generation is observed.
fn conditions(outcome: Option<&Outcome>, now: &str) -> Vec<Condition> {
    outcome
        .map(|o| {
            o.conditions
                .iter()
                .map(|c| c.to_condition(now, None))
                .collect()
        })
        .unwrap_or_default()
}

/// Now, to the second, as Kubernetes writes times.
fn now_timestamp() -> Timestamp {
    let now = Timestamp::now();
    now.round(Unit::Second).unwrap_or(now)
}

fn now() -> String {
    now_timestamp().to_string()
}

/// The metadata the API writes for a new object: name, namespace, labels
/// and annotations as given, created now; nothing a server would own.
fn new_metadata(given: &ObjectMeta, namespace: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name: given.name.clone(),
        namespace,
        labels: given.labels.clone(),
        annotations: given.annotations.clone(),
        creation_timestamp: Some(Time(now_timestamp())),
        ..ObjectMeta::default()
    }
}

/// `object` as the text of its file, checked to read back equal with the
/// proxy's reader.
fn render<T: Serialize + PartialEq>(
    object: &T,
    file: &str,
    read_back: impl Fn(&Manifests) -> &[T],
) -> DirResult<String> {
    let body = serde_saphyr::to_string(object)
        .map_err(|e| DirectoryError::Unavailable(format!("{file}: writing YAML: {e}")))?;
    let text = format!("{HEADER}{body}");
    let mut back = Manifests::default();
    let faithful = back.add_yaml(Path::new(file), &text).is_ok()
        && back.len() == 1
        && read_back(&back) == std::slice::from_ref(object);
    if !faithful {
        return Err(DirectoryError::Invalid(format!(
            "{file}: the object does not read back as written"
        )));
    }
    Ok(text)
}

/// Whether `value` is a DNS-1123 name (`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`,
/// dots allowed too for a subdomain) of at most `max` bytes. Names go into
/// file names, so this also keeps every path inside the folder.
fn is_dns_name(value: &str, max: usize, dots: bool) -> bool {
    let bytes = value.as_bytes();
    let inner =
        |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || (dots && *b == b'.');
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(inner)
        && edge(bytes.first())
        && edge(bytes.last())
}

fn check_name(kind: &str, field: &str, value: &str, max: usize, dots: bool) -> DirResult<()> {
    if is_dns_name(value, max, dots) {
        return Ok(());
    }
    Err(DirectoryError::Invalid(format!(
        "{kind} {field} {value:?} must be 1 to {max} lowercase letters, digits{} or '-', \
         starting and ending with a letter or digit",
        if dots { ", '.'" } else { "" }
    )))
}

/// The stamp of every manifest file now, in name order.
fn stamps(dir: &Path) -> DirResult<Vec<Stamp>> {
    let files = manifest_files(dir).map_err(|e| io_error(dir, &e))?;
    Ok(files
        .iter()
        .map(|path| match std::fs::metadata(path) {
            Ok(meta) => Stamp::of(path, &meta),
            // Gone since the listing: a stamp no read ever has.
            Err(_) => Stamp {
                name: path.file_name().map(OsString::from).unwrap_or_default(),
                len: u64::MAX,
                modified: None,
            },
        })
        .collect())
}

/// Reads and resolves the whole folder, starting over when a file vanishes
/// while it is read.
fn read_folder(dir: &Path) -> DirResult<Folder> {
    for _ in 1..READ_ATTEMPTS {
        if let Some(folder) = try_read_folder(dir)? {
            return Ok(folder);
        }
    }
    try_read_folder(dir)?.ok_or_else(|| {
        DirectoryError::Unavailable(format!(
            "{}: files kept vanishing while the folder was read",
            dir.display()
        ))
    })
}

/// One read of the folder; `None` when a listed file vanished before it was
/// read. Each file's stamp is taken from the file opened, so the stamps
/// kept describe the texts parsed.
fn try_read_folder(dir: &Path) -> DirResult<Option<Folder>> {
    let paths = manifest_files(dir).map_err(|e| io_error(dir, &e))?;
    let mut manifests = Manifests::default();
    manifests.reserve(paths.len());
    let mut stamps = Vec::with_capacity(paths.len());
    let mut origins = HashMap::new();
    for path in paths {
        let (stamp, text) = match read_file(&path) {
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(&path, &err)),
        };
        let mut objects = Manifests::default();
        objects
            .add_yaml(&path, &text)
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        let alone = objects.len() == 1 && objects.skipped.is_empty();
        let file = stamp.name.to_string_lossy().into_owned();
        let keys = manifests
            .absorb(&path, objects)
            .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
        for key in keys {
            origins.insert(
                key,
                Origin {
                    file: file.clone(),
                    alone,
                },
            );
        }
        stamps.push(stamp);
    }
    let resolution = manifests.resolve();
    Ok(Some(Folder {
        stamps,
        manifests,
        origins,
        resolution,
    }))
}

/// One file's text, with the stamp of the file opened.
fn read_file(path: &Path) -> std::io::Result<(Stamp, String)> {
    use std::io::Read as _;
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let mut text = String::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_string(&mut text)?;
    Ok((Stamp::of(path, &meta), text))
}

/// A modification time for a new version of `target`: now, or just after
/// the current version's when that is not earlier (a clock step back, or
/// two writes within the file system's time granularity), so a poll that
/// compares stamps never takes the new file for the old.
fn modified_after(target: &Path) -> SystemTime {
    let now = SystemTime::now();
    match std::fs::metadata(target).and_then(|m| m.modified()) {
        Ok(before) if before >= now => before + Duration::from_micros(1),
        _ => now,
    }
}

/// Makes the folder's entries (a rename, a removal) durable.
fn sync_dir(dir: &Path) -> DirResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, &e))
}

/// Removes temporary files of writes this API never finished: they start
/// with `.tenant@` or `.route@` and carry `.yaml.tmp-` (the one writer of
/// the folder is this process, so none is in use).
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(".tenant@") || name.starts_with(".route@"))
            && name.contains(".yaml.tmp-")
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn io_error(path: &Path, err: &std::io::Error) -> DirectoryError {
    DirectoryError::Unavailable(format!("{}: {err}", path.display()))
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> DirResult<T> + Send + 'static,
) -> DirResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("folder task failed: {e}")))?
}

fn not_found(kind: &'static str, name: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::NotFound {
        kind,
        name: name.to_string(),
    }
}

impl Directory for FolderDirectory {
    fn kind(&self) -> &'static str {
        "folder"
    }

    fn check(&self) -> BoxFuture<'_, DirResult<()>> {
        let dir = self.inner.dir.clone();
        Box::pin(blocking(move || {
            std::fs::read_dir(&dir)
                .map(drop)
                .map_err(|e| io_error(&dir, &e))
        }))
    }

    fn plan<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Plan>>> {
        Box::pin(async move {
            let folder = self.folder().await?;
            Ok(folder
                .plan(name)
                .map(|plan| folder.plan_with_status(plan, &now())))
        })
    }

    fn tenants(&self) -> BoxFuture<'_, DirResult<Vec<Tenant>>> {
        Box::pin(async move {
            let folder = self.folder().await?;
            let now = now();
            let mut tenants: Vec<Tenant> = folder
                .manifests
                .tenants
                .iter()
                .map(|t| folder.tenant_with_status(t, &now))
                .collect();
            tenants.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            Ok(tenants)
        })
    }

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<Option<Tenant>>> {
        Box::pin(async move {
            let folder = self.folder().await?;
            Ok(folder
                .tenant(name)
                .map(|t| folder.tenant_with_status(t, &now())))
        })
    }

    fn create_tenant<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Tenant>> {
        Box::pin(async move {
            let name = tenant.metadata.name.as_deref().unwrap_or_default();
            check_name(TENANT, "name", name, 253, true)?;
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            if folder.tenant(name).is_some() {
                return Err(DirectoryError::AlreadyExists {
                    kind: TENANT,
                    name: name.to_owned(),
                });
            }
            let file = tenant_file(name);
            folder.refuse_existing(&file)?;
            let written = Tenant {
                metadata: new_metadata(&tenant.metadata, None),
                spec: tenant.spec.clone(),
                status: None,
            };
            let text = render(&written, &file, |m| &m.tenants)?;
            self.write(file, text).await?;
            Ok(self.tenant_after_write(written).await)
        })
    }

    fn update_tenant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a TenantSpec,
    ) -> BoxFuture<'a, DirResult<Tenant>> {
        Box::pin(async move {
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            let current = folder.tenant(name).ok_or_else(|| not_found(TENANT, name))?;
            let file = tenant_file(name);
            folder.managed(TENANT, &current.metadata, &file)?;
            let written = Tenant {
                metadata: current.metadata.clone(),
                spec: spec.clone(),
                status: None,
            };
            let text = render(&written, &file, |m| &m.tenants)?;
            self.write(file, text).await?;
            Ok(self.tenant_after_write(written).await)
        })
    }

    fn delete_tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, DirResult<()>> {
        Box::pin(async move {
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            let tenant = folder.tenant(name).ok_or_else(|| not_found(TENANT, name))?;
            let file = tenant_file(name);
            folder.managed(TENANT, &tenant.metadata, &file)?;
            // The tenant first: once it is gone its routes are not served,
            // whatever happens to the removals after it.
            let mut files = vec![file];
            for route in folder.routes_of(name, &tenant.spec.namespaces) {
                let key = ObjectKey::of(&route.metadata);
                let route_file = route_file(&key.namespace, &key.name);
                if folder.is_managed(ROUTE, &route.metadata, &route_file) {
                    files.push(route_file);
                }
            }
            self.remove(files).await
        })
    }

    fn routes<'a>(&'a self, tenant: &'a Tenant) -> BoxFuture<'a, DirResult<Vec<Route>>> {
        Box::pin(async move {
            let name = tenant.metadata.name.as_deref().unwrap_or_default();
            let folder = self.folder().await?;
            let now = now();
            Ok(folder
                .routes_of(name, &tenant.spec.namespaces)
                .into_iter()
                .map(|r| folder.route_with_status(r, &now))
                .collect())
        })
    }

    fn route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<Option<Route>>> {
        Box::pin(async move {
            let folder = self.folder().await?;
            Ok(folder
                .route(namespace, name)
                .map(|r| folder.route_with_status(r, &now())))
        })
    }

    fn create_route<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, DirResult<Route>> {
        Box::pin(async move {
            let name = route.metadata.name.as_deref().unwrap_or_default();
            let namespace = route.metadata.namespace.as_deref().unwrap_or_default();
            check_name(ROUTE, "namespace", namespace, 63, false)?;
            check_name(ROUTE, "name", name, 253, true)?;
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            if folder.route(namespace, name).is_some() {
                return Err(DirectoryError::AlreadyExists {
                    kind: ROUTE,
                    name: ObjectKey::new(namespace, name).to_string(),
                });
            }
            let file = route_file(namespace, name);
            folder.refuse_existing(&file)?;
            let written = Route {
                metadata: new_metadata(&route.metadata, Some(namespace.to_owned())),
                spec: route.spec.clone(),
                status: None,
            };
            let text = render(&written, &file, |m| &m.routes)?;
            self.write(file, text).await?;
            Ok(self.route_after_write(written).await)
        })
    }

    fn update_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: &'a RouteSpec,
    ) -> BoxFuture<'a, DirResult<Route>> {
        Box::pin(async move {
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            let current = folder
                .route(namespace, name)
                .ok_or_else(|| not_found(ROUTE, ObjectKey::new(namespace, name)))?;
            let file = route_file(namespace, name);
            folder.managed(ROUTE, &current.metadata, &file)?;
            let written = Route {
                metadata: current.metadata.clone(),
                spec: spec.clone(),
                status: None,
            };
            let text = render(&written, &file, |m| &m.routes)?;
            self.write(file, text).await?;
            Ok(self.route_after_write(written).await)
        })
    }

    fn delete_route<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, DirResult<()>> {
        Box::pin(async move {
            let _writing = WRITES.lock().await;
            let folder = self.folder_now().await?;
            let current = folder
                .route(namespace, name)
                .ok_or_else(|| not_found(ROUTE, ObjectKey::new(namespace, name)))?;
            let file = route_file(namespace, name);
            folder.managed(ROUTE, &current.metadata, &file)?;
            self.remove(vec![file]).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "veloflux-api-folder-unit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    const TENANT_YAML: &str = "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {name: acme}\nspec: {planRef: pro}\n";

    #[test]
    fn an_unchanged_folder_is_parsed_once_and_a_changed_one_again() {
        let dir = temp_dir("cache");
        std::fs::write(dir.0.join("tenants.yaml"), TENANT_YAML).unwrap();
        let directory = FolderDirectory::open(dir.0.clone()).unwrap();
        let inner = &directory.inner;

        let first = inner.folder().unwrap();
        let second = inner.folder().unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "parsed again without a change"
        );

        // A write of the same length right after: its later modification
        // time alone tells the new file from the old.
        let same_length = TENANT_YAML.replace("pro", "max");
        inner.write_file("tenants.yaml", &same_length).unwrap();
        let third = inner.folder().unwrap();
        assert!(!Arc::ptr_eq(&second, &third));
        assert_eq!(third.manifests.tenants[0].spec.plan_ref, "max");
        assert!(third.stamps[0].modified > second.stamps[0].modified);
    }

    #[test]
    fn dns_names_are_checked_for_every_character_and_both_ends() {
        assert!(is_dns_name("acme", 63, false));
        assert!(is_dns_name("a-1.b", 253, true));
        assert!(!is_dns_name("a.b", 63, false));
        assert!(!is_dns_name("a-", 63, false));
        assert!(!is_dns_name(".a", 253, true));
        assert!(!is_dns_name(&"a".repeat(64), 63, false));
        assert!(!is_dns_name("a@b", 253, true));
    }
}
