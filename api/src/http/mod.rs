//! The HTTP surface: the router built from the endpoint table, the JSON
//! body extractor, the OpenAPI document, and what wraps every request
//! (body limit, CORS when allowed, problem answers for unknown paths).

pub mod body;
pub mod endpoints;
pub mod openapi;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::auth::access::authorize;
use crate::error::ApiError;

/// The API router: every endpoint of [`endpoints::ENDPOINTS`] behind the
/// authorization layer.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    let governor = crate::auth::throttle::local_layer(
        state.settings.throttle_per_address,
        state.settings.trust_forwarded_for,
    );
    for (index, endpoint) in endpoints::ENDPOINTS.iter().enumerate() {
        let mut route = (endpoint.handler)().route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), index),
            authorize,
        ));
        if endpoint.throttled
            && let Some(layer) = &governor
        {
            route = route.layer(layer.clone());
        }
        router = router.route(endpoint.path, route);
    }
    let mut router = router
        .fallback(|| async { ApiError::NotFound("endpoint").into_response() })
        // axum adds the path's `Allow` header to this answer.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed.into_response() })
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes));
    if !state.settings.cors_allow_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .settings
            .cors_allow_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    router.with_state(state)
}
