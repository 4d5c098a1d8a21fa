//! The OpenAPI 3.1 document, generated from the endpoint table and the
//! body types' JSON Schemas (schemars, draft 2020-12, which is OpenAPI
//! 3.1's dialect). Checked in as `api/openapi.json`; a test fails when the
//! two differ (`make openapi` rewrites it).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::auth::access::Access;
use crate::http::endpoints::ENDPOINTS;

/// The document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let mut operation = Map::new();
        operation.insert("summary".into(), json!(endpoint.summary));
        let mut id = endpoint.method_name().to_ascii_lowercase();
        for part in endpoint.path.split(['/', '{', '}', '.', '-']) {
            if !part.is_empty() && part != "api" {
                id.push('_');
                id.push_str(part);
            }
        }
        operation.insert("operationId".into(), json!(id));
        operation.insert(
            "x-veloflux-access".into(),
            json!(endpoint.access.describe()),
        );
        if endpoint.access != Access::Public {
            operation.insert("security".into(), json!([{ "bearer": [] }]));
        }
        let parameters: Vec<Value> = endpoint
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(request) = endpoint.request {
            let schema = request(&mut generator);
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut responses = Map::new();
        let success = match endpoint.response {
            Some(response) => {
                let schema = response(&mut generator);
                json!({"description": "Success", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "Success"}),
        };
        responses.insert(endpoint.success.to_string(), success);
        let problem = json!({"description": "Problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
        responses.insert("default".into(), problem);
        operation.insert("responses".into(), Value::Object(responses));
        let item = paths
            .entry(endpoint.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(
                endpoint.method_name().to_ascii_lowercase(),
                Value::Object(operation),
            );
        }
    }
    let _ = generator.subschema_for::<crate::error::Problem>();
    let mut schemas = Map::new();
    for (name, schema) in generator.take_definitions(true) {
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "VeloFlux control plane API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tenants, routes, people and sessions of a VeloFlux platform. Errors are RFC 9457 problem documents.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}
