//! The documents generated from the endpoint table: the OpenAPI document
//! served at `/api/openapi.json` and checked in as `api/openapi.json`, and
//! the endpoint table of `docs/API.md`. Both drift tests fail when the
//! checked-in files differ from what the code generates; `make openapi`
//! (`VELOFLUX_BLESS=1`) rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;

use http::{Method, StatusCode, header};
use serde_json::Value;
use support::{Platform, golden};
use veloflux_api::auth::access::Access;
use veloflux_api::http::endpoints::{ENDPOINTS, markdown_table};
use veloflux_api::http::openapi::document;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (method, path) of an OpenAPI document's `paths`.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: {method} is not an HTTP method"
            );
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

/// Every `$ref` in `value`, with where it is.
fn refs(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(target) = inner.as_str()
                {
                    found.push((at.to_owned(), target.to_owned()));
                }
                refs(inner, &format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                refs(inner, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// The JSON Pointer `pointer` (RFC 6901, `~1` and `~0` escapes) in `document`.
fn resolve<'a>(document: &'a Value, pointer: &str) -> Option<&'a Value> {
    let pointer = pointer.strip_prefix('#')?;
    let mut at = document;
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        at = match at {
            Value::Object(map) => map.get(&part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_openapi_3_1_with_exactly_the_tables_operations() {
    let platform = Platform::start().await;
    let reply = platform
        .call(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let served = reply.body;
    assert_eq!(served["openapi"], "3.1.0");
    assert!(served["info"]["title"].is_string());
    assert!(served["info"]["version"].is_string());
    let table: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method_name().to_owned(), e.path.to_owned()))
        .collect();
    assert_eq!(table.len(), ENDPOINTS.len());
    assert_eq!(operations(&served), table);
    assert_eq!(
        served,
        document(),
        "the served document is the generated one"
    );
}

#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    let mut text = serde_json::to_string_pretty(&document()).unwrap();
    text.push('\n');
    golden("api/openapi.json", &text);
}

#[test]
fn every_ref_in_the_document_resolves_within_it() {
    let document = document();
    let mut found = Vec::new();
    refs(&document, "#", &mut found);
    assert!(
        found
            .iter()
            .any(|(_, t)| t == "#/components/schemas/Problem"),
        "{found:?}"
    );
    for (at, target) in &found {
        assert!(
            target.starts_with("#/"),
            "{at}: {target} points outside the document"
        );
        assert!(
            resolve(&document, target).is_some_and(Value::is_object),
            "{at}: {target} does not resolve"
        );
    }
}

#[test]
fn every_operation_but_the_public_ones_requires_the_bearer_scheme() {
    let document = document();
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for endpoint in ENDPOINTS {
        let operation =
            &document["paths"][endpoint.path][endpoint.method_name().to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{} {}",
            endpoint.method,
            endpoint.path
        );
        let security = &operation["security"];
        if endpoint.access == Access::Public {
            assert!(
                security.is_null(),
                "{} {} is public",
                endpoint.method,
                endpoint.path
            );
        } else {
            assert_eq!(
                security,
                &serde_json::json!([{"bearer": []}]),
                "{} {}",
                endpoint.method,
                endpoint.path
            );
        }
        assert_eq!(
            operation["x-veloflux-access"],
            endpoint.access.describe(),
            "{} {}",
            endpoint.method,
            endpoint.path
        );
        assert!(
            operation["responses"][endpoint.success.to_string()].is_object(),
            "{} {}: no {} response",
            endpoint.method,
            endpoint.path,
            endpoint.success
        );
        let parameters: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|p| p.iter().map(|p| p["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        let in_path: BTreeSet<&str> = endpoint
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(parameters, in_path, "{} {}", endpoint.method, endpoint.path);
    }
    let ids: BTreeSet<&str> = ENDPOINTS
        .iter()
        .map(|e| {
            document["paths"][e.path][e.method_name().to_ascii_lowercase()]["operationId"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), ENDPOINTS.len(), "operation ids are unique");
}

const BEGIN: &str = "<!-- endpoints:begin -->\n";
const END: &str = "<!-- endpoints:end -->";

#[test]
fn the_api_docs_list_exactly_the_endpoint_table() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/API.md");
    let text = std::fs::read_to_string(&file).unwrap();
    let (head, rest) = text
        .split_once(BEGIN)
        .expect("docs/API.md has the <!-- endpoints:begin --> marker");
    let (_, tail) = rest
        .split_once(END)
        .expect("docs/API.md has the <!-- endpoints:end --> marker");
    let wanted = format!("{head}{BEGIN}\n{}\n{END}{tail}", markdown_table());
    golden("docs/API.md", &wanted);
}
