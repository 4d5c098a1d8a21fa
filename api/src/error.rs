//! `ApiError`, the API's one error type, and its only mapping to an answer:
//! an RFC 9457 `application/problem+json` body with a status, a stable
//! problem type and, for bad input, every offending field. Internals (store
//! and directory errors) are logged here and never reach the client.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::directory::DirectoryError;

/// One offending field of a request.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct FieldError {
    /// Where, in the request body's terms (`domains[0]`, `spec.backends`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credentials: missing, malformed, expired, badly signed.
    #[error("authentication required")]
    Unauthenticated,
    /// Email and password do not match a person (the same answer for both).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh, invitation or verification token that is unknown, used
    /// or expired.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// Authenticated, but the role is too low for the call.
    #[error("this needs the {needed} role")]
    Forbidden {
        /// The least role the call needs.
        needed: &'static str,
    },
    /// The caller's email is not verified yet.
    #[error("confirm your email address first")]
    EmailNotVerified,
    /// The tenant is suspended: its routes cannot change.
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// Nothing there, or nothing the caller may know of.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The body is not JSON, or not of the expected shape.
    #[error("malformed request body: {0}")]
    Malformed(String),
    /// The path exists, but not with this method (the answer carries `Allow`).
    #[error("this path does not take this method; see the Allow header")]
    MethodNotAllowed,
    /// The request is well-formed but its values are not acceptable.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The request conflicts with the current state (a taken name, the last owner).
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// The field concerned, if one is.
        field: Option<String>,
    },
    /// A plan limit refuses the change.
    #[error("{detail}")]
    QuotaExceeded {
        /// The plan limit (`maxRoutes`, `maxBackendsPerRoute`, `maxDomains`).
        limit: &'static str,
        /// What was refused and why.
        detail: String,
    },
    /// The body is larger than allowed.
    #[error("request body too large (see --max-body-bytes)")]
    PayloadTooLarge,
    /// The body is not `application/json`.
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// Too many attempts; try again after this many seconds.
    #[error("too many attempts")]
    TooManyRequests {
        /// Seconds until an attempt may succeed.
        retry_after: u64,
    },
    /// The store or the directory is unreachable or failed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an impossible state.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A conflict without a field.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict {
            detail: detail.into(),
            field: None,
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    /// Status, problem type (the last part of its URI) and title.
    fn outward(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            Self::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "Invalid email or password",
            ),
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            Self::EmailNotVerified => (
                StatusCode::FORBIDDEN,
                "email-not-verified",
                "Email not verified",
            ),
            Self::TenantSuspended => (
                StatusCode::FORBIDDEN,
                "tenant-suspended",
                "Tenant suspended",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed", "Malformed request"),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Invalid(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "Invalid request",
            ),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::QuotaExceeded { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "quota-exceeded",
                "Plan limit reached",
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many attempts",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    /// Label for `veloflux_api_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        self.outward().1
    }
}

/// The problem document (RFC 9457) with VeloFlux's extension members.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// `https://veloflux.io/problems/<slug>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short, fixed summary of the problem type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// Every offending field, for bad input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The plan limit, for `quota-exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
}

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.outward();
        let retry = match &self {
            Self::TooManyRequests { retry_after } => Some(*retry_after),
            _ => None,
        };
        let detail = match &self {
            Self::Unavailable(inner) => {
                tracing::warn!(error = %inner, "Store or directory unavailable");
                "a backing service is unavailable; try again shortly".to_owned()
            }
            Self::Internal(inner) => {
                tracing::error!(error = %inner, "Internal error");
                "internal error".to_owned()
            }
            Self::Invalid(errors) if errors.len() == 1 && errors[0].field.is_empty() => {
                errors[0].message.clone()
            }
            Self::Invalid(errors) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            Self::Invalid(errors) => format!("{} fields are invalid", errors.len()),
            other => other.to_string(),
        };
        let mut errors = Vec::new();
        let mut limit = None;
        match self {
            Self::Invalid(list) => errors = list,
            Self::Conflict {
                field: Some(field),
                detail: message,
            } => errors.push(FieldError { field, message }),
            Self::QuotaExceeded { limit: l, .. } => limit = Some(l),
            _ => {}
        }
        let problem = Problem {
            type_: format!("https://veloflux.io/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            limit,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"veloflux\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(seconds) = retry {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                }
            }
            _ => {}
        }
        response
    }
}

impl From<DirectoryError> for ApiError {
    fn from(error: DirectoryError) -> Self {
        match error {
            DirectoryError::AlreadyExists { kind, name } => Self::Conflict {
                detail: format!("{kind} {name} already exists"),
                field: Some("name".into()),
            },
            DirectoryError::NotFound { kind, .. } => {
                Self::NotFound(if kind == "Tenant" { "tenant" } else { "route" })
            }
            DirectoryError::Conflict(what) => {
                Self::conflict(format!("{what} changed meanwhile; try again"))
            }
            DirectoryError::Invalid(message) => Self::invalid("spec", message),
            DirectoryError::Unavailable(message) => Self::Unavailable(message),
        }
    }
}

impl From<veloflux_store::StoreError> for ApiError {
    fn from(error: veloflux_store::StoreError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<fred::error::Error> for ApiError {
    fn from(error: fred::error::Error) -> Self {
        Self::Unavailable(format!("redis: {error}"))
    }
}
