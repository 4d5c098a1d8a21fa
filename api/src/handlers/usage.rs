//! Usage: this month's requests and bytes, summed from the proxies'
//! metering counters, against the plan's monthly quotas.

use axum::Extension;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Serialize;

use crate::app::AppState;
use crate::auth::access::TenantScope;
use crate::error::ApiError;

/// A month's usage.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// The month (`YYYY-MM`, UTC).
    pub month: String,
    /// Requests answered.
    pub requests: u64,
    /// Request bytes received.
    pub bytes_in: u64,
    /// Response bytes sent.
    pub bytes_out: u64,
    /// The plan's monthly request quota (absent: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_month: Option<u64>,
    /// The plan's monthly response bandwidth quota in GiB (absent: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_gib_per_month: Option<u64>,
    /// Share of the request quota used, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_used_percent: Option<f64>,
    /// Share of the bandwidth quota used, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_used_percent: Option<f64>,
}

/// `GET /api/tenants/{tenant}/usage`.
pub async fn current(
    State(app): State<AppState>,
    Extension(scope): Extension<TenantScope>,
) -> Result<axum::Json<UsageView>, ApiError> {
    let tenant = super::live_tenant(&app, &scope.tenant).await?;
    let minute = crate::auth::now_ms() / 60_000;
    let month = veloflux_store::usage::month_of(minute);
    let [requests, bytes_in, bytes_out] =
        veloflux_store::usage::read_month(&app.redis, &scope.tenant, month).await?;
    let plan = app.directory.plan(&tenant.spec.plan_ref).await?;
    let limits = plan.map(|p| p.spec.limits);
    let requests_per_month = limits.as_ref().and_then(|l| l.requests_per_month);
    let bandwidth_gib_per_month = limits.as_ref().and_then(|l| l.bandwidth_gib_per_month);
    #[allow(clippy::cast_precision_loss, reason = "a percentage for display")]
    let percent =
        |used: u64, quota: u64| (used as f64 * 100.0 / quota as f64 * 10.0).round() / 10.0;
    Ok(axum::Json(UsageView {
        month: format!("{}-{:02}", month / 100, month % 100),
        requests,
        bytes_in,
        bytes_out,
        requests_per_month,
        bandwidth_gib_per_month,
        requests_used_percent: requests_per_month.map(|q| percent(requests, q)),
        bandwidth_used_percent: bandwidth_gib_per_month.map(|q| percent(bytes_out, q << 30)),
    }))
}
