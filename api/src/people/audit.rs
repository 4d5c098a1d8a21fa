//! The audit log: every mutating call (who, tenant, action, target,
//! outcome, time) appended to the tenant's capped Redis stream
//! `vf:tenant:{t}:audit`, newest read first.

use std::collections::HashMap;

use fred::prelude::StreamsInterface;
use fred::types::streams::XID;
use serde::Serialize;
use veloflux_crds::keys;

use crate::error::ApiError;

/// One audited call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// When (Unix ms).
    pub at_ms: u64,
    /// Who (user id).
    pub actor: String,
    /// What (`route.create`, `member.remove`, …).
    pub action: String,
    /// On what (the request path, or the object created).
    pub target: String,
    /// `ok`, or `refused:<status>`.
    pub outcome: String,
}

/// A page of the audit log.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Entries, newest first.
    pub entries: Vec<AuditEntryWithId>,
    /// Pass as `before` for the next (older) page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An entry with its stream id.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryWithId {
    /// Stream id (`<ms>-<n>`).
    pub id: String,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

impl super::People {
    /// Appends `entry` to `tenant`'s audit log.
    pub async fn audit(&self, tenant: &str, entry: &AuditEntry) -> Result<(), ApiError> {
        let _: String = self
            .client()
            .xadd(
                keys::tenant_audit(tenant),
                false,
                (
                    "MAXLEN",
                    "~",
                    i64::try_from(keys::TENANT_AUDIT_MAXLEN).unwrap_or(10_000),
                ),
                XID::Auto,
                vec![
                    ("at", entry.at_ms.to_string()),
                    ("actor", entry.actor.clone()),
                    ("action", entry.action.clone()),
                    ("target", entry.target.clone()),
                    ("outcome", entry.outcome.clone()),
                ],
            )
            .await?;
        Ok(())
    }

    /// Up to `limit` entries of `tenant`'s log older than `before` (a stream
    /// id), newest first.
    pub async fn audit_page(
        &self,
        tenant: &str,
        before: Option<&str>,
        limit: u64,
    ) -> Result<AuditPage, ApiError> {
        let end = before.map_or_else(|| "+".to_owned(), |id| format!("({id}"));
        let raw: Vec<(String, HashMap<String, String>)> = self
            .client()
            .xrevrange(keys::tenant_audit(tenant), end, "-", Some(limit + 1))
            .await?;
        let mut entries: Vec<AuditEntryWithId> = raw
            .into_iter()
            .map(|(id, fields)| {
                let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
                AuditEntryWithId {
                    id,
                    entry: AuditEntry {
                        at_ms: get("at").parse().unwrap_or(0),
                        actor: get("actor"),
                        action: get("action"),
                        target: get("target"),
                        outcome: get("outcome"),
                    },
                }
            })
            .collect();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = (entries.len() > limit).then(|| {
            entries.truncate(limit);
            entries.last().map(|e| e.id.clone())
        });
        Ok(AuditPage {
            entries,
            next: next.flatten(),
        })
    }
}
