//! The manifest-folder config source (`--manifests DIR`): the same YAML you
//! would `kubectl apply`, resolved with the operator's `resolve`, watched for
//! changes by polling file stamps (no platform file-watch API needed).
//!
//! Each file is parsed on its own. A file that fails to parse or type-check
//! is reported (file, document, reason) and its last good documents stay in
//! use, so one broken edit never takes routes down. Only tenants whose
//! compiled config changed are reported as changed.
//!
//! Routes are the bulk of a large folder, and they are not kept once
//! resolved: only Plans, Tenants, grants and Secrets stay in memory, with
//! each file's object keys and the tenants its routes name. A change
//! re-resolves only the tenants it can affect, re-reading the other files
//! that hold their routes:
//!
//! - a changed Route: the tenants it named before and names now;
//! - a changed Plan or Tenant: the tenants whose plan, granted domains or
//!   spec differ (domain claims are cross-tenant, so a younger tenant can
//!   gain a domain an older one released);
//! - a changed ReferenceGrant or Secret: every tenant.
//!
//! A tenant with routes in a file that is currently invalid keeps its last
//! good config until that file is fixed or removed (its last good routes are
//! not held), and the file is listed as the reason.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};
use veloflux_crds::manifest::{ManifestError, Manifests, manifest_files};
use veloflux_crds::resolve::{Inputs, ObjectKey, Resolution};
use veloflux_crds::route::Route;
use veloflux_crds::{ConditionStatus, ConditionType, TenantConfig};

/// A tenant whose config changed: the new config, or `None` when it is gone.
pub type TenantChange = (String, Option<Arc<TenantConfig>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    /// For a file that could not be read: never equal to a real file's.
    const UNKNOWN: Stamp = Stamp {
        modified: None,
        len: u64::MAX,
    };

    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
        }
    }
}

#[derive(Debug, Clone)]
struct FileState {
    stamp: Stamp,
    /// The objects other than Routes this file contributes to the combined set.
    keys: Vec<(&'static str, ObjectKey)>,
    /// Its Routes' keys, hashed (see [`route_key`]).
    routes: Box<[u128]>,
    /// The tenants this file's routes name, sorted and distinct: the tenants
    /// whose routes must be re-read from it.
    route_tenants: Vec<Box<str>>,
    /// Why the file's current content is not in use.
    error: Option<String>,
    /// The error is a conflict with another file: read again after others change.
    conflict: bool,
}

/// Why a folder could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The folder is unreadable.
    #[error("cannot read manifest folder {path}: {source}")]
    Folder {
        /// Folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is invalid (on the first load, when there is no last good version).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The folder and what was last read from it.
#[derive(Debug)]
pub struct ManifestSource {
    dir: PathBuf,
    files: HashMap<PathBuf, FileState>,
    /// Every file's last good objects together, except Routes (see the
    /// module docs).
    combined: Manifests,
    /// Every held Route's hashed key, to refuse a Route defined twice.
    route_keys: HashSet<u128>,
    /// Whether what is kept was copied together since the last load.
    compacted: bool,
    current: BTreeMap<String, Arc<TenantConfig>>,
    /// Current problems (files not in use and why), for `/readyz`.
    pub problems: Vec<String>,
    /// Problems first seen by the last poll, for the error counter.
    pub new_errors: usize,
}

impl ManifestSource {
    /// A source over `dir`, nothing read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: HashMap::new(),
            combined: Manifests::default(),
            route_keys: HashSet::new(),
            compacted: true,
            current: BTreeMap::new(),
            problems: Vec::new(),
            new_errors: 0,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configs currently served from this folder.
    pub fn configs(&self) -> &BTreeMap<String, Arc<TenantConfig>> {
        &self.current
    }

    /// The first load: any invalid file is an error (nothing to fall back to).
    /// Files are read and parsed on all cores; objects are added in file order.
    pub fn load(&mut self) -> Result<Vec<TenantChange>, SourceError> {
        let started = Instant::now();
        let paths = self.paths()?;
        let listed = started.elapsed();
        let parsed = parse_all(&paths);
        let read = started.elapsed();
        self.files.reserve(parsed.len());
        self.combined.reserve(
            parsed
                .iter()
                .map(|(_, _, file)| file.as_ref().map_or(0, |f| f.objects.len()))
                .sum(),
        );
        self.route_keys.reserve(
            parsed
                .iter()
                .map(|(_, _, file)| file.as_ref().map_or(0, |f| f.route_keys.len()))
                .sum(),
        );
        let mut all_routes = Vec::new();
        for (path, stamp, file) in parsed {
            let file = file?;
            self.check_routes(&path, &file, &[])?;
            let keys = self.combined.absorb(&path, file.objects)?;
            self.route_keys.extend(file.route_keys.iter().copied());
            self.files.insert(
                path,
                FileState {
                    stamp,
                    keys,
                    routes: file.route_keys,
                    route_tenants: file.route_tenants,
                    error: None,
                    conflict: false,
                },
            );
            all_routes.extend(file.routes);
        }
        let merged = started.elapsed();
        let resolution = veloflux_crds::resolve::resolve(Inputs {
            routes: &all_routes,
            ..self.combined.inputs()
        });
        // Resolved: routes are read again only when a change needs them.
        drop(all_routes);
        self.compacted = false;
        let changes = self.apply(resolution, None);
        let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
        info!(
            dir = %self.dir.display(),
            files = self.files.len(),
            tenants = changes.len(),
            list_ms = ms(listed),
            read_parse_ms = ms(read - listed),
            merge_ms = ms(merged - read),
            resolve_ms = ms(started.elapsed() - merged),
            "Manifest folder loaded"
        );
        Ok(changes)
    }

    /// Re-reads changed files; returns the tenants whose config changed, or
    /// `None` when no file changed. Files refused for a conflict with
    /// another file are read again at the end of a poll in which something
    /// changed.
    pub fn poll(&mut self) -> Result<Option<Vec<TenantChange>>, SourceError> {
        if !self.compacted {
            self.compact();
        }
        let paths = self.paths()?;
        self.new_errors = 0;
        let mut work = Work::default();
        // Files that disappeared take their objects with them.
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| paths.binary_search(p).is_err())
            .cloned()
            .collect();
        for path in gone {
            let Some(file) = self.files.remove(&path) else {
                continue;
            };
            self.note_change(&mut work, &file.keys, None);
            work.tenants.extend(file.route_tenants);
            drop(self.combined.take(&file.keys));
            for key in &file.routes {
                self.route_keys.remove(key);
            }
        }
        let mut changed: Vec<(PathBuf, Stamp)> = Vec::new();
        for path in paths {
            let Some(stamp) = stamp(&path) else { continue };
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            changed.push((path, stamp));
        }
        let known_conflicts: HashSet<PathBuf> = self
            .files
            .iter()
            .filter(|(_, file)| file.conflict)
            .map(|(path, _)| path.clone())
            .collect();
        for (path, stamp) in changed {
            self.read_changed(&mut work, path, stamp, false);
        }
        // A file refused for redefining another file's object is read again
        // once the others are in whenever something changed: the other
        // definition may be gone (an object moved between files in one edit).
        if work.changed {
            let mut retry: Vec<(PathBuf, Stamp)> = self
                .files
                .iter()
                .filter(|(_, file)| file.conflict)
                .map(|(path, file)| (path.clone(), file.stamp.clone()))
                .collect();
            retry.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (path, stamp) in retry {
                let report = !known_conflicts.contains(&path);
                self.read_changed(&mut work, path, stamp, report);
            }
        }
        if !work.changed {
            return Ok(None);
        }
        let mut problems: Vec<(&PathBuf, &String)> = self
            .files
            .iter()
            .filter_map(|(path, f)| f.error.as_ref().map(|e| (path, e)))
            .collect();
        problems.sort_unstable();
        self.problems = problems.into_iter().map(|(_, e)| e.clone()).collect();
        Ok(Some(self.reresolve(work)))
    }

    /// Reads a changed file and swaps its objects in, or keeps its last good
    /// version and records why. A conflict with another file is logged and
    /// counted only when `report_conflict` (the poll reads such files again
    /// once the others are in, and reports what remains then).
    fn read_changed(
        &mut self,
        work: &mut Work,
        path: PathBuf,
        stamp: Stamp,
        report_conflict: bool,
    ) {
        work.changed = true;
        let (old_keys, old_routes, old_tenants) = self
            .files
            .remove(&path)
            .map(|f| (f.keys, f.routes, f.route_tenants))
            .unwrap_or_default();
        // The stamp kept is the one of the text read, so a write racing
        // this read is seen by the next poll.
        let (stamp, parsed) = match read_file(&path) {
            Ok((stamp, text)) => (stamp, parse_file(&path, &text)),
            Err(err) => (stamp, Err(err)),
        };
        let state = match parsed {
            Ok(file) => {
                // A route another file defines refuses the file before
                // anything held changes; another duplicate shows when the
                // objects are swapped in, and the last good ones go back.
                let swapped = match self.check_routes(&path, &file, &old_routes) {
                    Err(err) => Err((old_keys, err)),
                    Ok(()) => {
                        self.note_change(work, &old_keys, Some(&file.objects));
                        let old = self.combined.take(&old_keys);
                        self.combined.absorb(&path, file.objects).map_err(|err| {
                            let keys = self.combined.absorb(&path, old).unwrap_or_default();
                            (keys, err)
                        })
                    }
                };
                match swapped {
                    Ok(keys) => {
                        for key in &old_routes {
                            self.route_keys.remove(key);
                        }
                        self.route_keys.extend(file.route_keys.iter().copied());
                        work.tenants.extend(old_tenants);
                        work.tenants.extend(file.route_tenants.iter().cloned());
                        work.routes.extend(file.routes);
                        work.parsed.insert(path.clone());
                        FileState {
                            stamp,
                            keys,
                            routes: file.route_keys,
                            route_tenants: file.route_tenants,
                            error: None,
                            conflict: false,
                        }
                    }
                    Err((keys, err)) => {
                        if report_conflict {
                            warn!(file = %path.display(), error = %err, "Manifest conflicts with another file; keeping its last good version");
                            self.new_errors += 1;
                        }
                        FileState {
                            stamp,
                            keys,
                            routes: old_routes,
                            route_tenants: old_tenants,
                            error: Some(err.to_string()),
                            conflict: true,
                        }
                    }
                }
            }
            Err(err) => {
                warn!(file = %path.display(), error = %err, "Invalid manifest file; keeping its last good version");
                self.new_errors += 1;
                FileState {
                    stamp,
                    keys: old_keys,
                    routes: old_routes,
                    route_tenants: old_tenants,
                    error: Some(err.to_string()),
                    conflict: false,
                }
            }
        };
        self.files.insert(path, state);
    }

    /// Refuses a file whose routes another file already defines. `own` are
    /// the route keys the file held before.
    fn check_routes(
        &self,
        path: &Path,
        file: &FileObjects,
        own: &[u128],
    ) -> Result<(), ManifestError> {
        let mut own = own.to_vec();
        own.sort_unstable();
        let taken = file
            .route_keys
            .iter()
            .position(|key| self.route_keys.contains(key) && own.binary_search(key).is_err());
        match taken {
            None => Ok(()),
            Some(i) => Err(ManifestError::Duplicate {
                path: path.to_path_buf(),
                kind: "Route".to_owned(),
                name: ObjectKey::of(&file.routes[i].metadata).to_string(),
            }),
        }
    }

    /// Copies what the source keeps after a load. It was allocated among the
    /// parsers' short-lived objects, a few live objects per page; copied
    /// together, those pages can go back. Done by the first poll, off the
    /// path to serving.
    fn compact(&mut self) {
        self.combined = self.combined.clone();
        self.files = self
            .files
            .iter()
            .map(|(path, file)| (path.clone(), file.clone()))
            .collect();
        self.compacted = true;
    }

    fn paths(&self) -> Result<Vec<PathBuf>, SourceError> {
        manifest_files(&self.dir).map_err(|source| SourceError::Folder {
            path: self.dir.clone(),
            source,
        })
    }

    /// Records what a file's change can affect, before `combined` changes:
    /// `old` are the keys it held, `new` what it holds now (`None` when gone).
    /// Objects that come back equal affect nothing.
    fn note_change(
        &self,
        work: &mut Work,
        old: &[(&'static str, ObjectKey)],
        new: Option<&Manifests>,
    ) {
        work.changed = true;
        let empty = Manifests::default();
        let new = new.unwrap_or(&empty);
        let old_of = |kind: &'static str| {
            old.iter()
                .filter(move |(k, _)| *k == kind)
                .map(|(_, key)| key)
        };
        // Domain claims are granted oldest first, within plan quotas, so a
        // change to which domains a tenant asks for, its age or its plan can
        // move domains between tenants.
        let (tenants, added) = paired(
            old_of("Tenant"),
            &self.combined.tenants,
            &new.tenants,
            |t| (&t.metadata.name, &t.metadata.namespace),
        );
        let mut claims_may_move = added;
        for (before, after) in tenants {
            match (before, after) {
                (Some(b), Some(a)) if b == a => {}
                (Some(b), Some(a))
                    if b.spec.domains == a.spec.domains
                        && b.spec.plan_ref == a.spec.plan_ref
                        && b.metadata.creation_timestamp == a.metadata.creation_timestamp =>
                {
                    work.tenants
                        .insert(b.metadata.name.as_deref().unwrap_or("").into());
                }
                _ => claims_may_move = true,
            }
        }
        let (plans, added) = paired(old_of("Plan"), &self.combined.plans, &new.plans, |p| {
            (&p.metadata.name, &p.metadata.namespace)
        });
        claims_may_move |= added || plans.iter().any(|(b, a)| b != a);
        if claims_may_move && work.before.is_none() {
            work.before = Some(self.fingerprints());
        }
        // Backend references and certificates: any tenant's routes.
        let (grants, added) = paired(
            old_of("ReferenceGrant"),
            &self.combined.grants,
            &new.grants,
            |g| (&g.metadata.name, &g.metadata.namespace),
        );
        work.all |= added || grants.iter().any(|(b, a)| b != a);
        let mut seen_new = 0;
        for key in old_of("Secret") {
            let after = new.secrets.get(key);
            seen_new += usize::from(after.is_some());
            work.all |= self.combined.secrets.get(key) != after;
        }
        work.all |= seen_new != new.secrets.len();
    }

    /// What each tenant's routes are resolved against, apart from the
    /// routes themselves: its spec, its plan, and what a resolve without any
    /// route grants it. Tenants whose fingerprint changes are re-resolved.
    fn fingerprints(&self) -> HashMap<Box<str>, u64> {
        let resolution = veloflux_crds::resolve::resolve(Inputs {
            routes: &[],
            ..self.combined.inputs()
        });
        let mut plans: HashMap<&str, Vec<_>> = HashMap::new();
        for plan in &self.combined.plans {
            let name = plan.metadata.name.as_deref().unwrap_or("");
            plans.entry(name).or_default().push(&plan.spec);
        }
        self.combined
            .tenants
            .iter()
            .map(|tenant| {
                let name = tenant.metadata.name.as_deref().unwrap_or("");
                let mut hasher = HashWriter(std::hash::DefaultHasher::new());
                let _ = std::fmt::Write::write_fmt(
                    &mut hasher,
                    format_args!(
                        "{:?}",
                        (
                            &tenant.spec,
                            plans.get(tenant.spec.plan_ref.as_str()),
                            resolution.tenants.get(name),
                            resolution.configs.get(name),
                        )
                    ),
                );
                (name.into(), hasher.0.finish())
            })
            .collect()
    }

    /// Re-resolves the tenants a poll's changes can affect.
    fn reresolve(&mut self, mut work: Work) -> Vec<TenantChange> {
        if let Some(before) = work.before.take() {
            let after = self.fingerprints();
            for (tenant, hash) in &after {
                if before.get(tenant) != Some(hash) {
                    work.tenants.insert(tenant.clone());
                }
            }
            work.tenants
                .extend(before.into_keys().filter(|t| !after.contains_key(t)));
        }
        let mut wanted = if work.all {
            self.combined
                .tenants
                .iter()
                .map(|t| t.metadata.name.as_deref().unwrap_or("").into())
                .chain(self.current.keys().map(|t| t.as_str().into()))
                .collect()
        } else {
            work.tenants
        };
        // A tenant with routes in an invalid file keeps its last good config.
        for (path, file) in &self.files {
            if file.error.is_none() {
                continue;
            }
            for tenant in &file.route_tenants {
                if wanted.remove(tenant) {
                    warn!(tenant_id = %tenant, file = %path.display(), "Tenant keeps its last good config until this file is valid again");
                }
            }
        }
        // Their routes: from the files read by this poll, and read again from the others.
        let others: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(path, file)| {
                !work.parsed.contains(*path)
                    && file.route_tenants.iter().any(|t| wanted.contains(t))
            })
            .map(|(path, _)| path.clone())
            .collect();
        let mut routes = work.routes;
        for (path, stamp, objects) in parse_all(&others) {
            let Some(file) = self.files.get_mut(&path) else {
                continue;
            };
            match objects {
                Ok(read) if stamp == file.stamp => routes.extend(read.routes),
                _ => {
                    // Changed since it was read, or unreadable now: its
                    // tenants keep their config, and the stamp is forgotten
                    // so the next poll reads the file as changed and
                    // re-resolves them.
                    file.stamp = Stamp::UNKNOWN;
                    for tenant in &file.route_tenants {
                        wanted.remove(tenant);
                    }
                }
            }
        }
        routes.retain(|r| wanted.contains(r.spec.tenant_ref.as_str()));
        if wanted.is_empty() {
            return Vec::new();
        }
        let resolution = veloflux_crds::resolve::resolve(Inputs {
            routes: &routes,
            ..self.combined.inputs()
        });
        drop(routes);
        self.apply(resolution, Some(&wanted))
    }

    /// Takes the configs of `wanted` tenants (all with `None`) from a
    /// resolution and returns those whose compiled config differs.
    fn apply(
        &mut self,
        resolution: Resolution,
        wanted: Option<&BTreeSet<Box<str>>>,
    ) -> Vec<TenantChange> {
        let in_scope = |tenant: &str| wanted.is_none_or(|w| w.contains(tenant));
        for (key, outcome) in &resolution.routes {
            for c in &outcome.conditions {
                if c.status != ConditionStatus::True && c.type_ != ConditionType::Ready {
                    warn!(route = %key, condition = c.type_.as_str(), reason = c.reason.as_str(), message = %c.message, "Route not fully accepted");
                }
            }
        }
        for (name, outcome) in &resolution.tenants {
            if !in_scope(name) {
                continue;
            }
            if let Some(c) = outcome
                .outcome
                .condition(ConditionType::Accepted)
                .filter(|c| c.status != ConditionStatus::True)
            {
                warn!(tenant = %name, reason = c.reason.as_str(), message = %c.message, "Tenant not fully accepted");
            }
        }
        let mut changes = Vec::new();
        let mut configs = resolution.configs;
        configs.retain(|tenant, _| in_scope(tenant));
        let removed: Vec<String> = self
            .current
            .keys()
            .filter(|t| in_scope(t) && !configs.contains_key(*t))
            .cloned()
            .collect();
        for (tenant, mut config) in configs {
            let old = self.current.get(&tenant);
            // resolve leaves the revision at 0; compare content, not revisions.
            config.revision = old.map_or(0, |o| o.revision);
            if old.is_some_and(|old| **old == config) {
                continue;
            }
            config.revision = old.map_or(1, |o| o.revision + 1);
            let config = Arc::new(config);
            changes.push((tenant.clone(), Some(Arc::clone(&config))));
            self.current.insert(tenant, config);
        }
        for tenant in removed {
            self.current.remove(&tenant);
            changes.push((tenant, None));
        }
        if !changes.is_empty() {
            info!(dir = %self.dir.display(), tenants_changed = changes.len(), "Manifests changed");
        }
        changes
    }
}

/// What one poll changed, gathered before re-resolving.
#[derive(Default)]
struct Work {
    /// Whether any file changed.
    changed: bool,
    /// Tenants to re-resolve.
    tenants: BTreeSet<Box<str>>,
    /// Every tenant is to be re-resolved.
    all: bool,
    /// Tenant fingerprints before the first Plan or Tenant change.
    before: Option<HashMap<Box<str>, u64>>,
    /// Routes of the files read by this poll.
    routes: Vec<Route>,
    /// Files read by this poll (their routes are in `routes`).
    parsed: std::collections::HashSet<PathBuf>,
}

/// One object as a file held it and as it holds it now.
type BeforeAfter<'a, T> = (Option<&'a T>, Option<&'a T>);

/// Pairs the objects of one kind a file held (`keys`, looked up in `held`)
/// with what it holds now (`now`), by key; the flag says whether `now` has
/// objects under keys the file did not hold.
fn paired<'a, T>(
    keys: impl Iterator<Item = &'a ObjectKey>,
    held: &'a [T],
    now: &'a [T],
    id: impl Fn(&T) -> (&Option<String>, &Option<String>),
) -> (Vec<BeforeAfter<'a, T>>, bool) {
    let of = |x: &'a T| {
        let (name, namespace) = id(x);
        (
            name.as_deref().unwrap_or(""),
            namespace.as_deref().unwrap_or(""),
        )
    };
    let keys: Vec<&ObjectKey> = keys.collect();
    // A file with many objects of the kind: index them rather than search
    // the held objects once per key.
    let index = |items: &'a [T]| -> HashMap<(&'a str, &'a str), &'a T> {
        if keys.len() > 16 {
            items.iter().map(|x| (of(x), x)).collect()
        } else {
            HashMap::new()
        }
    };
    let (held_index, now_index) = (index(held), index(now));
    let find = |items: &'a [T], indexed: &HashMap<(&'a str, &'a str), &'a T>, key: &ObjectKey| {
        if keys.len() > 16 {
            indexed
                .get(&(key.name.as_str(), key.namespace.as_str()))
                .copied()
        } else {
            items
                .iter()
                .find(|x| of(x) == (key.name.as_str(), key.namespace.as_str()))
        }
    };
    let pairs: Vec<_> = keys
        .iter()
        .map(|key| (find(held, &held_index, key), find(now, &now_index, key)))
        .collect();
    let kept = pairs.iter().filter(|(_, after)| after.is_some()).count();
    (pairs, kept != now.len())
}

/// Feeds formatted text into a hasher, without building the string.
struct HashWriter(std::hash::DefaultHasher);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        s.hash(&mut self.0);
        Ok(())
    }
}

/// A Route's `namespace/name`, hashed to 128 bits: what a duplicate check
/// needs, in 16 bytes instead of two strings, for 100,000s of routes. Two
/// SipHash passes with different prefixes; a false duplicate would need a
/// 128-bit collision.
fn route_key(route: &Route) -> u128 {
    let namespace = route.metadata.namespace.as_deref().unwrap_or("");
    let name = route.metadata.name.as_deref().unwrap_or("");
    let half = |salt: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        (salt, namespace, name).hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The distinct tenants `routes` name, sorted.
fn route_tenants(routes: &[Route]) -> Vec<Box<str>> {
    let mut tenants: Vec<Box<str>> = routes
        .iter()
        .map(|r| r.spec.tenant_ref.as_str().into())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    tenants
}

/// One file's objects as parsed, its routes apart.
struct FileObjects {
    /// Everything but the routes.
    objects: Manifests,
    routes: Vec<Route>,
    /// `routes`' keys, hashed, in the same order.
    route_keys: Box<[u128]>,
    /// The tenants `routes` name.
    route_tenants: Vec<Box<str>>,
}

type Parsed = (PathBuf, Stamp, Result<FileObjects, ManifestError>);

/// Reads and parses `paths` on every core, 32 files at a time. Results come
/// back in the order of `paths`; a parser that panicked loses nothing
/// silently: its files are reported.
fn parse_all(paths: &[PathBuf]) -> Vec<Parsed> {
    let parsed = crate::parallel::map(paths, 32, |p| {
        let (stamp, objects) = match read_file(p) {
            Ok((stamp, text)) => (stamp, parse_file(p, &text)),
            Err(err) => (Stamp::UNKNOWN, Err(err)),
        };
        (p.clone(), stamp, objects)
    });
    parsed
        .results
        .into_iter()
        .zip(paths)
        .map(|(slot, p)| {
            slot.unwrap_or_else(|| {
                let message = "parser failed on this file".to_owned();
                (
                    p.clone(),
                    Stamp::UNKNOWN,
                    Err(ManifestError::Yaml {
                        path: p.clone(),
                        message,
                    }),
                )
            })
        })
        .collect()
}

/// One file's text, with the stamp of what was read: one open, one `fstat`.
fn read_file(path: &Path) -> Result<(Stamp, String), ManifestError> {
    use std::io::Read as _;
    let io = |source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mut text = String::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_string(&mut text).map_err(io)?;
    Ok((Stamp::of(&meta), text))
}

/// Parses and type-checks one file's text on its own, and sets its routes
/// apart (on the parsing thread, so a start does this on every core).
fn parse_file(path: &Path, text: &str) -> Result<FileObjects, ManifestError> {
    let mut objects = Manifests::default();
    objects.add_yaml(path, text)?;
    let routes = objects.take_routes();
    Ok(FileObjects {
        route_keys: routes.iter().map(route_key).collect(),
        route_tenants: route_tenants(&routes),
        objects,
        routes,
    })
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest folder that stamps each write with a later modification
    /// time, so a rewrite of the same length is always seen.
    struct Folder {
        dir: PathBuf,
        clock: SystemTime,
    }

    impl Folder {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("veloflux-source-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self {
                dir,
                clock: SystemTime::now() - Duration::from_secs(3600),
            }
        }

        fn write(&mut self, file: &str, text: &str) {
            let path = self.dir.join(file);
            std::fs::write(&path, text).unwrap();
            self.clock += Duration::from_secs(1);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(self.clock)
                .unwrap();
        }

        fn remove(&self, file: &str) {
            std::fs::remove_file(self.dir.join(file)).unwrap();
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn plan(name: &str, rpm: u32) -> String {
        format!(
            "apiVersion: veloflux.io/v1alpha1\nkind: Plan\nmetadata: {{name: {name}}}\nspec:\n  limits: {{requestsPerMinute: {rpm}, burst: 10, maxRoutes: 3, maxBackendsPerRoute: 4, maxDomains: 2}}\n  features: {{staticBackends: true, customTls: true}}\n"
        )
    }

    fn tenant(name: &str, plan: &str, minute: u32, domains: &[&str]) -> String {
        format!(
            "apiVersion: veloflux.io/v1alpha1\nkind: Tenant\nmetadata: {{name: {name}, creationTimestamp: \"2026-01-01T00:{minute:02}:00Z\"}}\nspec: {{planRef: {plan}, domains: [{}], namespaces: [{name}]}}\n",
            domains
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn route(tenant: &str, name: &str, host: &str, port: u16) -> String {
        format!(
            "apiVersion: veloflux.io/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: {tenant}}}\nspec:\n  tenantRef: {tenant}\n  hosts: [\"{host}\"]\n  backends:\n    - {{name: a, address: \"127.0.0.1:{port}\"}}\n"
        )
    }

    fn docs(parts: &[String]) -> String {
        parts.join("---\n")
    }

    /// What a fresh resolve of the whole folder gives, revisions aside.
    fn resolved(dir: &Path) -> BTreeMap<String, TenantConfig> {
        Manifests::load_dir(dir).unwrap().resolve().configs
    }

    fn served(source: &ManifestSource) -> BTreeMap<String, TenantConfig> {
        source
            .configs()
            .iter()
            .map(|(t, c)| {
                let mut c = (**c).clone();
                c.revision = 0;
                (t.clone(), c)
            })
            .collect()
    }

    fn changed(changes: &[TenantChange]) -> Vec<&str> {
        changes.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[test]
    fn a_route_change_reresolves_only_its_tenant() {
        let mut f = Folder::new("route");
        f.write("plans.yaml", &plan("pro", 600));
        for (i, t) in ["a", "b", "c"].iter().enumerate() {
            let host = format!("www.{t}.example");
            f.write(
                &format!("{t}.yaml"),
                &docs(&[
                    tenant(t, "pro", i as u32, &[&format!("*.{t}.example")]),
                    route(t, "web", &host, 20000 + i as u16),
                ]),
            );
        }
        let mut source = ManifestSource::new(&f.dir);
        assert_eq!(source.load().unwrap().len(), 3);
        // Routes are not held once resolved.
        assert!(source.combined.routes.is_empty());
        f.write(
            "b.yaml",
            &docs(&[
                tenant("b", "pro", 1, &["*.b.example"]),
                route("b", "web", "www.b.example", 20099),
            ]),
        );
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["b"]);
        assert_eq!(served(&source), resolved(&f.dir));
        assert_eq!(source.configs()["b"].revision, 2);
        assert_eq!(source.configs()["a"].revision, 1);
        assert!(source.poll().unwrap().is_none());
    }

    #[test]
    fn a_released_domain_reaches_the_younger_tenant_that_asked_for_it() {
        let mut f = Folder::new("claims");
        f.write("plans.yaml", &plan("pro", 600));
        f.write("old.yaml", &tenant("old", "pro", 1, &["*.shared.example"]));
        // The younger tenant asks for a name under the older one's wildcard.
        f.write(
            "young.yaml",
            &docs(&[
                tenant("young", "pro", 2, &["api.shared.example"]),
                route("young", "api", "api.shared.example", 20001),
            ]),
        );
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        assert!(source.configs()["young"].domains.is_empty());
        assert!(source.configs()["young"].routes.is_empty());
        // The older tenant lets the wildcard go; the younger one's file is untouched.
        f.write("old.yaml", &tenant("old", "pro", 1, &["old.example"]));
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["old", "young"]);
        assert_eq!(source.configs()["young"].domains, ["api.shared.example"]);
        assert_eq!(source.configs()["young"].routes.len(), 1);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn suspending_a_tenant_reresolves_only_it() {
        let mut f = Folder::new("suspend");
        f.write("plans.yaml", &plan("pro", 600));
        f.write(
            "tenants.yaml",
            &docs(&[
                tenant("a", "pro", 1, &["a.example"]),
                route("a", "web", "a.example", 20001),
                tenant("b", "pro", 2, &["b.example"]),
                route("b", "web", "b.example", 20002),
            ]),
        );
        f.write("c.yaml", &tenant("c", "pro", 3, &["c.example"]));
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        f.write(
            "c.yaml",
            &tenant("c", "pro", 3, &["c.example"]).replace("spec: {", "spec: {suspended: true, "),
        );
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["c"]);
        assert!(source.configs()["c"].suspended);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn in_a_file_of_many_tenants_only_the_edited_ones_change() {
        let mut f = Folder::new("many");
        f.write("plans.yaml", &plan("pro", 600));
        let text = |suspended: usize, domain: usize| {
            let parts: Vec<String> = (0..20)
                .flat_map(|i| {
                    let t = format!("t{i}");
                    let own = format!("*.{t}.example");
                    let extra = format!("x{i}.shared.example");
                    let domains: Vec<&str> = if i == domain {
                        vec![&own, &extra]
                    } else {
                        vec![&own]
                    };
                    let mut tenant = tenant(&t, "pro", i as u32, &domains);
                    if i == suspended {
                        tenant = tenant.replace("spec: {", "spec: {suspended: true, ");
                    }
                    let host = format!("www.{t}.example");
                    [tenant, route(&t, "web", &host, 20000 + i as u16)]
                })
                .collect();
            docs(&parts)
        };
        f.write("tenants.yaml", &text(99, 99));
        let mut source = ManifestSource::new(&f.dir);
        assert_eq!(source.load().unwrap().len(), 20);
        f.write("tenants.yaml", &text(3, 99));
        assert_eq!(changed(&source.poll().unwrap().unwrap()), ["t3"]);
        f.write("tenants.yaml", &text(3, 7));
        assert_eq!(changed(&source.poll().unwrap().unwrap()), ["t7"]);
        assert_eq!(source.configs()["t7"].domains.len(), 2);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn a_plan_change_reaches_the_tenants_on_it_and_no_other() {
        let mut f = Folder::new("plan");
        f.write("plans.yaml", &docs(&[plan("pro", 600), plan("free", 60)]));
        f.write(
            "tenants.yaml",
            &docs(&[
                tenant("p", "pro", 1, &["p.example"]),
                route("p", "web", "p.example", 20001),
                tenant("q", "free", 2, &["q.example"]),
                route("q", "web", "q.example", 20002),
            ]),
        );
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        f.write("plans.yaml", &docs(&[plan("pro", 1200), plan("free", 60)]));
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["p"]);
        assert_eq!(source.configs()["p"].plan.requests_per_minute, 1200);
        assert_eq!(source.configs()["p"].routes.len(), 1);
        assert_eq!(served(&source), resolved(&f.dir));
        // A plan that goes away takes its tenants' configs with it.
        f.write("plans.yaml", &plan("pro", 1200));
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changes, vec![("q".to_owned(), None)]);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn a_route_moved_between_files_in_one_edit_is_taken_whatever_their_order() {
        let mut f = Folder::new("moved");
        f.write("plans.yaml", &plan("pro", 600));
        f.write("a.yaml", &tenant("t", "pro", 1, &["*.t.example"]));
        f.write("b.yaml", &route("t", "web", "old.t.example", 20001));
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        // `a.yaml` is read first, while `b.yaml` still holds the route.
        f.write(
            "a.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["*.t.example"]),
                route("t", "web", "new.t.example", 20002),
            ]),
        );
        f.write("b.yaml", "# moved to a.yaml\n");
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["t"]);
        assert!(source.problems.is_empty(), "{:?}", source.problems);
        assert_eq!(source.new_errors, 0);
        assert_eq!(source.configs()["t"].routes[0].hosts, ["new.t.example"]);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn a_file_changed_while_it_is_read_again_is_taken_up_by_the_next_poll() {
        let mut f = Folder::new("reread");
        f.write("plans.yaml", &plan("pro", 600));
        f.write("t.yaml", &tenant("t", "pro", 1, &["*.t.example"]));
        f.write("routes.yaml", &route("t", "web", "www.t.example", 20001));
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        // A re-resolve of `t` that finds its routes file different from what
        // the poll saw (written between the two reads).
        f.write("routes.yaml", &route("t", "web", "www.t.example", 20002));
        let work = Work {
            changed: true,
            tenants: BTreeSet::from(["t".into()]),
            ..Work::default()
        };
        assert_eq!(source.reresolve(work), Vec::new());
        // The next poll reads the file as changed and re-resolves `t`.
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["t"]);
        assert_eq!(served(&source), resolved(&f.dir));
    }

    #[test]
    fn a_tenant_with_routes_in_an_invalid_file_keeps_its_config_until_it_is_fixed() {
        let mut f = Folder::new("frozen");
        f.write("plans.yaml", &plan("pro", 600));
        f.write(
            "t.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["*.t.example"]),
                route("t", "one", "one.t.example", 20001),
            ]),
        );
        f.write("two.yaml", &route("t", "two", "two.t.example", 20002));
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        let before = source.configs()["t"].clone();
        assert_eq!(before.routes.len(), 2);

        f.write("two.yaml", "kind: Route\nspec: [\n");
        assert_eq!(source.poll().unwrap().unwrap(), Vec::new());
        assert_eq!(source.problems.len(), 1);
        assert!(
            source.problems[0].contains("two.yaml"),
            "{:?}",
            source.problems
        );
        // A valid change to the tenant's other file waits for the broken one.
        f.write(
            "t.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["*.t.example"]),
                route("t", "one", "one.t.example", 20011),
            ]),
        );
        assert_eq!(source.poll().unwrap().unwrap(), Vec::new());
        assert_eq!(source.configs()["t"], before);

        f.write("two.yaml", &route("t", "two", "two.t.example", 20012));
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["t"]);
        assert!(source.problems.is_empty());
        assert_eq!(served(&source), resolved(&f.dir));
        let ports: Vec<&str> = source.configs()["t"]
            .routes
            .iter()
            .map(|r| r.backends[0].endpoints[0].address.as_str())
            .collect();
        assert_eq!(ports, ["127.0.0.1:20011", "127.0.0.1:20012"]);
    }

    #[test]
    fn a_route_defined_in_two_files_is_refused_and_the_first_keeps_serving() {
        let mut f = Folder::new("duplicate");
        f.write("plans.yaml", &plan("pro", 600));
        f.write(
            "a.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["*.t.example"]),
                route("t", "web", "www.t.example", 20001),
            ]),
        );
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        f.write("b.yaml", &route("t", "web", "other.t.example", 20002));
        assert_eq!(source.poll().unwrap().unwrap(), Vec::new());
        assert_eq!(source.new_errors, 1);
        assert_eq!(source.problems.len(), 1);
        assert!(
            source.problems[0].contains("Route t/web is defined twice"),
            "{:?}",
            source.problems
        );
        assert_eq!(source.configs()["t"].routes[0].hosts, ["www.t.example"]);
        // Rewriting the first file keeps its own route.
        f.write(
            "a.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["*.t.example"]),
                route("t", "web", "api.t.example", 20001),
            ]),
        );
        assert_eq!(changed(&source.poll().unwrap().unwrap()), ["t"]);
        assert_eq!(source.configs()["t"].routes[0].hosts, ["api.t.example"]);
        // The refused file was read again and still conflicts: not a new error.
        assert_eq!(source.new_errors, 0);
        assert_eq!(source.problems.len(), 1);
        // Once the first file lets the route go, the second one's is taken.
        f.write("a.yaml", &tenant("t", "pro", 1, &["*.t.example"]));
        f.write("b.yaml", &route("t", "web", "other.t.example", 20003));
        assert_eq!(changed(&source.poll().unwrap().unwrap()), ["t"]);
        assert_eq!(source.configs()["t"].routes[0].hosts, ["other.t.example"]);
        assert!(source.problems.is_empty(), "{:?}", source.problems);
        assert_eq!(served(&source), resolved(&f.dir));
        // A folder that starts with a duplicate does not load.
        f.write("c.yaml", &route("t", "web", "third.t.example", 20004));
        let err = ManifestSource::new(&f.dir).load().unwrap_err();
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn a_secret_change_reaches_the_tenant_whose_route_uses_it() {
        let secret = |body: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: t}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: \"-----BEGIN CERTIFICATE-----\\n{body}\"\n  tls.key: \"-----BEGIN PRIVATE KEY-----\\nkey\"\n"
            )
        };
        let mut f = Folder::new("secret");
        f.write("plans.yaml", &plan("pro", 600));
        f.write(
            "t.yaml",
            &docs(&[
                tenant("t", "pro", 1, &["t.example"]),
                route("t", "web", "t.example", 20001) + "  tls: {secretRef: {name: tls}}\n",
            ]),
        );
        f.write("secret.yaml", &secret("one"));
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        assert!(
            source.configs()["t"].certificates[0]
                .cert_pem
                .ends_with("one")
        );
        f.write("secret.yaml", &secret("two"));
        let changes = source.poll().unwrap().unwrap();
        assert_eq!(changed(&changes), ["t"]);
        assert!(
            source.configs()["t"].certificates[0]
                .cert_pem
                .ends_with("two")
        );
        assert_eq!(served(&source), resolved(&f.dir));
    }

    /// Many edits of every kind, each checked against a fresh resolve of
    /// the whole folder.
    #[test]
    fn every_poll_serves_what_a_fresh_resolve_gives() {
        let mut f = Folder::new("sequence");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let tenants = ["a", "b", "c", "d", "e", "f"];
        f.write("plans.yaml", &docs(&[plan("pro", 600), plan("free", 60)]));
        for (i, t) in tenants.iter().enumerate() {
            f.write(
                &format!("{t}.yaml"),
                &tenant(t, "pro", i as u32, &[&format!("*.{t}.example")]),
            );
        }
        // Route files, each holding routes of one or two tenants.
        let route_file = |next: &mut dyn FnMut(u64) -> u64, n: usize| {
            let mut parts = Vec::new();
            for r in 0..1 + next(3) {
                let t = tenants[next(tenants.len() as u64) as usize];
                // Hosts sometimes under another tenant's domains.
                let d = tenants[next(tenants.len() as u64) as usize];
                parts.push(route(
                    t,
                    &format!("r{n}-{r}"),
                    &format!("h{}.{d}.example", next(4)),
                    20000 + next(50) as u16,
                ));
            }
            docs(&parts)
        };
        for n in 0..8 {
            let text = route_file(&mut next, n);
            f.write(&format!("routes-{n}.yaml"), &text);
        }
        let mut source = ManifestSource::new(&f.dir);
        source.load().unwrap();
        assert_eq!(served(&source), resolved(&f.dir));
        let mut present = [true; 8];
        for step in 0..60 {
            match next(6) {
                0 | 1 => {
                    let n = next(8) as usize;
                    let text = route_file(&mut next, n);
                    f.write(&format!("routes-{n}.yaml"), &text);
                    present[n] = true;
                }
                2 => {
                    let n = next(8) as usize;
                    if present[n] {
                        f.remove(&format!("routes-{n}.yaml"));
                        present[n] = false;
                    }
                }
                3 => {
                    let i = next(tenants.len() as u64) as usize;
                    let t = tenants[i];
                    let other = tenants[next(tenants.len() as u64) as usize];
                    let domains = [
                        format!("*.{t}.example"),
                        format!("h{}.{other}.example", next(4)),
                    ];
                    let picked: Vec<&str> = domains[..1 + next(2) as usize]
                        .iter()
                        .map(String::as_str)
                        .collect();
                    let plan = if next(2) == 0 { "pro" } else { "free" };
                    let mut text = tenant(t, plan, i as u32, &picked);
                    // Fields that claim no domain: only this tenant changes.
                    match next(3) {
                        0 => text = text.replace("spec: {", "spec: {suspended: true, "),
                        1 => text = text.replace(&format!("namespaces: [{t}]"), "namespaces: [x]"),
                        _ => {}
                    }
                    f.write(&format!("{t}.yaml"), &text);
                }
                4 => {
                    f.write(
                        "plans.yaml",
                        &docs(&[plan("pro", 600 + next(3) as u32), plan("free", 60)]),
                    );
                }
                _ => {
                    let t = tenants[next(tenants.len() as u64) as usize];
                    f.remove(&format!("{t}.yaml"));
                    assert!(source.poll().unwrap().is_some());
                    assert_eq!(served(&source), resolved(&f.dir), "step {step}");
                    let i = tenants.iter().position(|x| *x == t).unwrap_or(0);
                    f.write(
                        &format!("{t}.yaml"),
                        &tenant(t, "pro", i as u32, &[&format!("*.{t}.example")]),
                    );
                }
            }
            source.poll().unwrap();
            assert_eq!(served(&source), resolved(&f.dir), "step {step}");
        }
    }
}
