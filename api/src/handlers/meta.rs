//! Documents: the JWKS that verifies access tokens and the OpenAPI document.

use std::sync::OnceLock;

use axum::extract::State;
use axum::response::IntoResponse;
use http::header;

use crate::app::AppState;

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(app): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        app.tokens.keys().current().jwks(),
    )
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec_pretty(&crate::http::openapi::document()).unwrap_or_default()
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.as_slice(),
    )
}
