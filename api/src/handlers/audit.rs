//! The tenant's audit log, for owners.

use axum::Extension;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::access::TenantScope;
use crate::error::ApiError;
use crate::people::audit::AuditPage;

/// Paging.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Entries older than this stream id.
    #[serde(default)]
    pub before: Option<String>,
    /// Entries per page (1 to 500, default 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

fn is_stream_id(id: &str) -> bool {
    let mut parts = id.splitn(2, '-');
    let ms = parts.next().unwrap_or_default();
    let seq = parts.next().unwrap_or("0");
    !ms.is_empty()
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !seq.is_empty()
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// `GET /api/tenants/{tenant}/audit`.
pub async fn page(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    if let Some(before) = &query.before
        && !is_stream_id(before)
    {
        return Err(ApiError::invalid(
            "before",
            "must be an entry id (`<ms>-<n>`)",
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    Ok(axum::Json(
        app.people
            .audit_page(&scope.tenant, query.before.as_deref(), limit)
            .await?,
    ))
}
