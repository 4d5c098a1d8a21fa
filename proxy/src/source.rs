//! The manifest-folder config source (`--manifests DIR`): the same YAML you
//! would `kubectl apply`, resolved with the operator's `resolve`, watched for
//! changes by polling file stamps (no platform file-watch API needed).
//!
//! Each file is parsed on its own. A file that fails to parse or type-check
//! is reported (file, document, reason) and its last good documents stay in
//! use, so one broken edit never takes routes down. Only tenants whose
//! compiled config changed are reported as changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};
use veloflux_crds::manifest::{ManifestError, Manifests, manifest_files};
use veloflux_crds::resolve::ObjectKey;
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

#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    /// The objects this file contributes to the combined set.
    keys: Vec<(&'static str, ObjectKey)>,
    /// Why the file's current content is not in use.
    error: Option<String>,
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
    /// Every file's last good objects, together.
    combined: Manifests,
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
                .map(|(_, _, objects)| objects.as_ref().map_or(0, Manifests::len))
                .sum(),
        );
        for (path, stamp, objects) in parsed {
            let keys = self.combined.absorb(&path, objects?)?;
            self.files.insert(
                path,
                FileState {
                    stamp,
                    keys,
                    error: None,
                },
            );
        }
        let merged = started.elapsed();
        let changes = self.diff();
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
    /// `None` when no file changed.
    pub fn poll(&mut self) -> Result<Option<Vec<TenantChange>>, SourceError> {
        let paths = self.paths()?;
        let mut changed = false;
        self.new_errors = 0;
        // Files that disappeared take their objects with them.
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| paths.binary_search(p).is_err())
            .cloned()
            .collect();
        for path in gone {
            if let Some(file) = self.files.remove(&path) {
                drop(self.combined.take(&file.keys));
                changed = true;
            }
        }
        for path in paths {
            let Some(stamp) = stamp(&path) else { continue };
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            changed = true;
            let old_keys = self
                .files
                .get(&path)
                .map(|f| f.keys.clone())
                .unwrap_or_default();
            // The stamp kept is the one of the text read, so a write racing
            // this read is seen by the next poll.
            let (stamp, parsed) = match read_file(&path) {
                Ok((stamp, text)) => (stamp, parse_text(&path, &text)),
                Err(err) => (stamp, Err(err)),
            };
            let state = match parsed {
                Ok(objects) => {
                    let old = self.combined.take(&old_keys);
                    match self.combined.absorb(&path, objects) {
                        Ok(keys) => FileState {
                            stamp,
                            keys,
                            error: None,
                        },
                        Err(err) => {
                            // Conflicts with another file: put the last good version back.
                            let keys = self.combined.absorb(&path, old).unwrap_or_default();
                            warn!(file = %path.display(), error = %err, "Manifest conflicts with another file; keeping its last good version");
                            self.new_errors += 1;
                            FileState {
                                stamp,
                                keys,
                                error: Some(err.to_string()),
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
                        error: Some(err.to_string()),
                    }
                }
            };
            self.files.insert(path, state);
        }
        if !changed {
            return Ok(None);
        }
        let mut problems: Vec<(&PathBuf, &String)> = self
            .files
            .iter()
            .filter_map(|(path, f)| f.error.as_ref().map(|e| (path, e)))
            .collect();
        problems.sort_unstable();
        self.problems = problems.into_iter().map(|(_, e)| e.clone()).collect();
        Ok(Some(self.diff()))
    }

    fn paths(&self) -> Result<Vec<PathBuf>, SourceError> {
        manifest_files(&self.dir).map_err(|source| SourceError::Folder {
            path: self.dir.clone(),
            source,
        })
    }

    /// Resolves and returns the tenants whose compiled config differs.
    fn diff(&mut self) -> Vec<TenantChange> {
        let resolution = self.combined.resolve();
        for (key, outcome) in &resolution.routes {
            for c in &outcome.conditions {
                if c.status != ConditionStatus::True && c.type_ != ConditionType::Ready {
                    warn!(route = %key, condition = c.type_.as_str(), reason = c.reason.as_str(), message = %c.message, "Route not fully accepted");
                }
            }
        }
        for (name, outcome) in &resolution.tenants {
            if let Some(c) = outcome
                .outcome
                .condition(ConditionType::Accepted)
                .filter(|c| c.status != ConditionStatus::True)
            {
                warn!(tenant = %name, reason = c.reason.as_str(), message = %c.message, "Tenant not fully accepted");
            }
        }
        let mut changes = Vec::new();
        let mut next: BTreeMap<String, Arc<TenantConfig>> = BTreeMap::new();
        for (tenant, mut config) in resolution.configs {
            let old = self.current.get(&tenant);
            // resolve leaves the revision at 0; compare content, not revisions.
            config.revision = old.map_or(0, |o| o.revision);
            match old {
                Some(old) if **old == config => {
                    next.insert(tenant, Arc::clone(old));
                }
                old => {
                    config.revision = old.map_or(1, |o| o.revision + 1);
                    let config = Arc::new(config);
                    changes.push((tenant.clone(), Some(Arc::clone(&config))));
                    next.insert(tenant, config);
                }
            }
        }
        for tenant in self.current.keys() {
            if !next.contains_key(tenant) {
                changes.push((tenant.clone(), None));
            }
        }
        if !changes.is_empty() {
            info!(dir = %self.dir.display(), tenants_changed = changes.len(), "Manifests changed");
        }
        self.current = next;
        changes
    }
}

type Parsed = (PathBuf, Stamp, Result<Manifests, ManifestError>);

/// Reads and parses `paths` on every core, 32 files at a time. Results come
/// back in the order of `paths`; a parser that panicked loses nothing
/// silently: its files are reported.
fn parse_all(paths: &[PathBuf]) -> Vec<Parsed> {
    let parsed = crate::parallel::map(paths, 32, |p| {
        let (stamp, objects) = match read_file(p) {
            Ok((stamp, text)) => (stamp, parse_text(p, &text)),
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

/// Parses and type-checks one file's text on its own.
fn parse_text(path: &Path, text: &str) -> Result<Manifests, ManifestError> {
    let mut objects = Manifests::default();
    objects.add_yaml(path, text)?;
    Ok(objects)
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
}
