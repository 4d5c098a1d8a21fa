//! JSON request bodies: `application/json` only, size-limited, unknown
//! fields refused, and every failure a problem naming where it is
//! (`malformed` for bytes that are not JSON, `invalid` with the field path
//! for JSON of the wrong shape).

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::header;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// Parses `bytes` as `T`, with the field path of a mismatch.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            return ApiError::Malformed(inner.to_string());
        }
        let path = error.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        // serde's message ends with the position; the field says where.
        let message = inner.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        // A missing field is reported at the object that lacks it; name the
        // field itself.
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            field = if field.is_empty() {
                missing.to_owned()
            } else {
                format!("{field}.{missing}")
            };
        }
        ApiError::Invalid(vec![FieldError::new(field, message)])
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::Malformed(e.to_string()))?;
    Ok(value)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&request) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::Malformed(rejection.body_text())
                }
            })?;
        parse(&bytes).map(JsonBody)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::parse;
    use crate::error::{ApiError, FieldError};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only parsed")]
    struct Inner {
        id: String,
    }

    fn fields(result: Result<Outer, ApiError>) -> Vec<FieldError> {
        match result {
            Err(ApiError::Invalid(fields)) => fields,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn a_missing_field_is_named_where_it_is_missing() {
        let top = fields(parse(br#"{"inner": {"id": "a"}}"#));
        assert_eq!(top, vec![FieldError::new("name", "missing field `name`")]);
        let nested = fields(parse(br#"{"name": "a", "inner": {}}"#));
        assert_eq!(
            nested,
            vec![FieldError::new("inner.id", "missing field `id`")]
        );
    }

    #[test]
    fn an_unknown_field_or_a_wrong_type_is_named() {
        let unknown = fields(parse(br#"{"name": "a", "inner": {"id": "a", "x": 1}}"#));
        assert_eq!(unknown[0].field, "inner.x");
        assert!(unknown[0].message.starts_with("unknown field `x`"));
        let wrong = fields(parse(br#"{"name": 7, "inner": {"id": "a"}}"#));
        assert_eq!(wrong[0].field, "name");
        assert!(!wrong[0].message.contains("line"), "{:?}", wrong[0]);
    }

    #[test]
    fn bytes_that_are_not_one_json_value_are_malformed() {
        for bytes in [
            &br#"{"name": "#[..],
            br#"{"name": "a", "inner": {"id": "a"}} {}"#,
            b"\xff",
        ] {
            assert!(
                matches!(parse::<Outer>(bytes), Err(ApiError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
