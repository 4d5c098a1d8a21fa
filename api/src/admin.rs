//! The admin listener: `/healthz` (the process runs), `/readyz` (Redis and
//! the directory answer; 503 with the reason otherwise) and `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use fred::prelude::ClientLike as _;
use http::{StatusCode, header};

use crate::app::AppState;

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let redis = match app.redis.ping::<String>(None).await {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("redis: {error}")),
    };
    let directory = app
        .directory
        .check()
        .await
        .map_err(|e| format!("{} directory: {e}", app.directory.kind()));
    let problems: Vec<String> = [redis, directory]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let body = serde_json::json!({
        "ready": problems.is_empty(),
        "directory": app.directory.kind(),
        "problems": problems,
    });
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
}
