//! The state directory (`--state-dir`): the last good config of every
//! tenant, one JSON file each, so a proxy that starts while Redis is
//! unreachable serves what it served before.
//!
//! Files are written by a background task that coalesces bursts of changes
//! (the request path and the watcher never wait on the disk), each through a
//! temporary file and a rename, so a crash never leaves half a document.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use veloflux_crds::TenantConfig;
use veloflux_crds::keys::is_valid_id;

use crate::sources::folder::TenantChange;

/// The folder of saved tenant configs.
#[derive(Debug, Clone)]
pub struct StateDir {
    tenants: PathBuf,
}

impl StateDir {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let tenants = dir.join("tenants");
        std::fs::create_dir_all(&tenants)?;
        Ok(Self { tenants })
    }

    fn file(&self, tenant: &str) -> PathBuf {
        self.tenants.join(format!("{tenant}.json"))
    }

    /// Ids of the tenants with a saved file.
    pub fn tenants(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.tenants)? {
            let path = entry?.path();
            if let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|id| is_valid_id(id))
            {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    /// Every saved config; unreadable files are logged and skipped.
    pub fn load(&self) -> io::Result<Vec<TenantConfig>> {
        let mut configs = Vec::new();
        for entry in std::fs::read_dir(&self.tenants)? {
            let path = entry?.path();
            let Some(tenant) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let decoded = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| TenantConfig::from_json(&text).map_err(|e| e.to_string()))
                .and_then(|config| {
                    if config.tenant == tenant {
                        Ok(config)
                    } else {
                        Err(format!("the file holds tenant `{}`", config.tenant))
                    }
                });
            match decoded {
                Ok(config) => configs.push(config),
                Err(reason) => {
                    warn!(file = %path.display(), reason, "Saved tenant config skipped");
                }
            }
        }
        configs.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(configs)
    }

    /// Writes or removes one tenant's file.
    pub fn save(&self, tenant: &str, config: Option<&TenantConfig>) -> io::Result<()> {
        if !is_valid_id(tenant) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{tenant}` is not a tenant id"),
            ));
        }
        let path = self.file(tenant);
        match config {
            None => match std::fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            },
            Some(config) => {
                let text = config.to_json().map_err(io::Error::other)?;
                let temporary = self.tenants.join(format!(".{tenant}.json.tmp"));
                let mut file = std::fs::File::create(&temporary)?;
                std::io::Write::write_all(&mut file, text.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&temporary, &path)?;
                // Make the rename itself durable.
                std::fs::File::open(&self.tenants)?.sync_all()
            }
        }
    }

    /// Starts the background writer; send it every applied change.
    pub fn spawn_writer(self) -> mpsc::UnboundedSender<TenantChange> {
        let (tx, mut rx) = mpsc::unbounded_channel::<TenantChange>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch: HashMap<String, Option<Arc<TenantConfig>>> = HashMap::new();
                batch.insert(first.0, first.1);
                while let Ok((tenant, config)) = rx.try_recv() {
                    batch.insert(tenant, config);
                }
                let dir = self.clone();
                let written = batch.len();
                let result = tokio::task::spawn_blocking(move || {
                    for (tenant, config) in &batch {
                        if let Err(err) = dir.save(tenant, config.as_deref()) {
                            warn!(tenant_id = %tenant, error = %err, "Could not save the tenant config to the state directory");
                        }
                    }
                })
                .await;
                if result.is_err() {
                    warn!("State directory writer stopped");
                    return;
                }
                debug!(tenants = written, "State directory updated");
            }
        });
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tenant: &str) -> TenantConfig {
        let text = format!(
            r#"{{"schemaVersion":1,"tenant":"{tenant}","revision":4,"suspended":false,
            "plan":{{"name":"p","requestsPerMinute":60,"burst":10,"waf":"off","rateLimitFailureMode":"failOpen",
            "requestsPerMonth":null,"bandwidthBytesPerMonth":null,"overagePolicy":"log"}},
            "domains":[],"routes":[],"certificates":[]}}"#
        );
        TenantConfig::from_json(&text).unwrap()
    }

    #[test]
    fn saved_configs_load_back_and_bad_files_are_skipped() {
        let dir = std::env::temp_dir().join(format!("veloflux-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).unwrap();
        state.save("acme", Some(&config("acme"))).unwrap();
        state.save("globex", Some(&config("globex"))).unwrap();
        state.save("initech", Some(&config("initech"))).unwrap();
        state.save("initech", None).unwrap();
        state.save("initech", None).unwrap();
        std::fs::write(dir.join("tenants/broken.json"), "{").unwrap();
        std::fs::write(
            dir.join("tenants/liar.json"),
            config("acme").to_json().unwrap(),
        )
        .unwrap();
        let loaded: Vec<String> = state
            .load()
            .unwrap()
            .into_iter()
            .map(|c| c.tenant)
            .collect();
        assert_eq!(loaded, ["acme", "globex"]);
        assert!(state.save("../escape", None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
