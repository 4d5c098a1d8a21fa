//! The manifest-folder config source (`--manifests DIR`): the same YAML you
//! would `kubectl apply`, resolved with the operator's `resolve`, watched for
//! changes by polling file stamps (no platform file-watch API needed).
//!
//! Each file is parsed on its own. A file that fails to parse or type-check
//! is reported (file, document, reason) and its last good documents stay in
//! use, so one broken edit never takes routes down. Only tenants whose
//! compiled config changed are reported as changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use tracing::{info, warn};
use veloflux_crds::manifest::{ManifestError, Manifests};
use veloflux_crds::{ConditionStatus, ConditionType, TenantConfig};

/// A tenant whose config changed: the new config, or `None` when it is gone.
pub type TenantChange = (String, Option<Arc<TenantConfig>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    /// Last good documents of the file.
    docs: Vec<Value>,
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
    files: BTreeMap<PathBuf, FileState>,
    current: BTreeMap<String, Arc<TenantConfig>>,
    /// Problems of the last poll, for `/readyz`.
    pub problems: Vec<String>,
}

impl ManifestSource {
    /// A source over `dir`, nothing read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            files: BTreeMap::new(),
            current: BTreeMap::new(),
            problems: Vec::new(),
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
    pub fn load(&mut self) -> Result<(Vec<TenantChange>, Manifests), SourceError> {
        let manifests = Manifests::load_dir(&self.dir)?;
        for path in manifest_files(&self.dir).map_err(|source| SourceError::Folder {
            path: self.dir.clone(),
            source,
        })? {
            let stamp = stamp(&path).unwrap_or(Stamp {
                modified: None,
                len: 0,
            });
            let docs = parse_file(&path)?;
            self.files.insert(path, FileState { stamp, docs });
        }
        let changes = self.diff(&manifests);
        Ok((changes, manifests))
    }

    /// Re-reads changed files; returns the tenants whose config changed, or
    /// `None` when no file changed.
    pub fn poll(&mut self) -> Result<Option<Vec<TenantChange>>, SourceError> {
        let paths = manifest_files(&self.dir).map_err(|source| SourceError::Folder {
            path: self.dir.clone(),
            source,
        })?;
        let mut changed =
            paths.len() != self.files.len() || paths.iter().any(|p| !self.files.contains_key(p));
        let mut problems = Vec::new();
        let mut next: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        for path in paths {
            let Some(stamp) = stamp(&path) else { continue };
            let old = self.files.remove(&path);
            let old = match old {
                Some(o) if o.stamp == stamp => {
                    next.insert(path, o);
                    continue;
                }
                other => other,
            };
            changed = true;
            match parse_file(&path) {
                Ok(docs) => {
                    next.insert(path, FileState { stamp, docs });
                }
                Err(err) => {
                    warn!(file = %path.display(), error = %err, "Invalid manifest file; keeping its last good version");
                    problems.push(err.to_string());
                    // Keep the last good documents (none for a new file) but
                    // remember the stamp, so the error is reported once.
                    let docs = old.map(|o| o.docs).unwrap_or_default();
                    next.insert(path, FileState { stamp, docs });
                }
            }
        }
        if !changed {
            return Ok(None);
        }
        self.files = next;
        let mut manifests = Manifests::default();
        for (path, file) in &self.files {
            for (i, doc) in file.docs.iter().enumerate() {
                if let Err(err) = manifests.add_document(path, i + 1, doc.clone()) {
                    warn!(error = %err, "Manifests conflict; keeping the last good configuration");
                    problems.push(err.to_string());
                    self.problems = problems;
                    return Ok(Some(Vec::new()));
                }
            }
        }
        self.problems = problems;
        Ok(Some(self.diff(&manifests)))
    }

    /// Resolves and returns the tenants whose compiled config differs.
    fn diff(&mut self, manifests: &Manifests) -> Vec<TenantChange> {
        let resolution = manifests.resolve();
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

/// Parses and type-checks one file.
fn parse_file(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let docs = veloflux_crds::manifest::documents(path, &text)?;
    let mut scratch = Manifests::default();
    for (i, doc) in docs.iter().enumerate() {
        scratch.add_document(path, i + 1, doc.clone())?;
    }
    Ok(docs)
}

fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}
