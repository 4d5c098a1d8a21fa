//! What the API server would say about a VeloFlux object before storing it:
//! the generated CRD's structural schema (unknown `spec` fields, JSON Schema)
//! then its CEL rules, with every problem reported at once and named by a
//! kubectl-style field path (`spec.domains[0]`). `metadata.name` is checked
//! as the API server checks every object's name.
//!
//! The four kinds' validators are compiled once per process, from the same
//! [`crdgen::definitions`] that `make crds` writes, so a check here and the
//! cluster's admission agree. Like the API server, null values of fields that
//! are not `nullable` are pruned before validation, and unknown fields are
//! pruned everywhere; those in `spec` are reported (as `kubectl` does with
//! strict field validation), those elsewhere dropped silently.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};
use serde_json::{Map, Value};

use crate::crdgen;

/// One problem with an object, as the API server would report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    /// The field, kubectl-style: `spec.domains[0]`, `spec`, `kind`.
    pub field: String,
    /// What is wrong with it (`Required value`, a CEL rule's message, …).
    pub message: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Problems the API server would report for `object` (a whole VeloFlux
/// object as JSON: apiVersion, kind, metadata, spec): the generated CRD's
/// JSON Schema, then its CEL rules. Empty when valid. An unknown kind is one
/// problem on field `kind`.
pub fn validate(object: &Value) -> Vec<FieldProblem> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some(kind_validator) = validators().get(kind) else {
        return vec![FieldProblem {
            field: "kind".to_owned(),
            message: format!("Unsupported value: {}: not a VeloFlux kind", object["kind"]),
        }];
    };
    kind_validator.validate(object)
}

/// The compiled checks of one kind.
struct KindValidator {
    /// The CRD's `openAPIV3Schema`, as the API server holds it (for pruning).
    schema: Value,
    /// The same schema with `nullable` spelled in JSON Schema terms.
    json_schema: jsonschema::Validator,
    /// The CEL rules (`x-kubernetes-validations`).
    cel: CompiledSchema,
}

/// Every VeloFlux kind's validator, by kind, compiled on first use.
fn validators() -> &'static BTreeMap<String, KindValidator> {
    static VALIDATORS: OnceLock<BTreeMap<String, KindValidator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        crdgen::definitions()
            .iter()
            .filter_map(|crd| {
                let schema = crdgen::schema(crd)?;
                let json_schema = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .build(&with_json_schema_nulls(schema.clone()))
                    // A generated schema that does not compile is caught by
                    // this module's tests; at run time the kind is then
                    // reported as unknown rather than passed unchecked.
                    .ok()?;
                let cel = compile_schema(&schema);
                Some((
                    crd.spec.names.kind.clone(),
                    KindValidator {
                        schema,
                        json_schema,
                        cel,
                    },
                ))
            })
            .collect()
    })
}

impl KindValidator {
    fn validate(&self, object: &Value) -> Vec<FieldProblem> {
        let mut problems: Vec<FieldProblem> =
            name_problem(&object["metadata"]).into_iter().collect();
        let pruned = prune(&self.schema, object, &mut Path::default(), &mut problems);
        problems.extend(
            self.json_schema
                .iter_errors(&pruned)
                .map(|error| schema_problem(&error, &pruned)),
        );
        if let Err(errors) = validate_compiled(&self.cel, &pruned, None) {
            problems.extend(errors.into_vec().into_iter().map(|error| FieldProblem {
                field: normalise_cel_path(&error.field_path),
                message: cel_message(&error.field_path, &pruned, &error.message),
            }));
        }
        problems
    }
}

/// The API server's check of `metadata.name`: present (or a `generateName`
/// to make one from) and a lowercase RFC 1123 subdomain.
fn name_problem(metadata: &Value) -> Option<FieldProblem> {
    let field = "metadata.name".to_owned();
    let Some(name) = metadata["name"].as_str().filter(|n| !n.is_empty()) else {
        return metadata["generateName"].is_null().then(|| FieldProblem {
            field,
            message: "Required value: name or generateName is required".to_owned(),
        });
    };
    let labels_ok = name.split('.').all(|label| {
        let bytes = label.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    });
    (name.len() > 253 || !labels_ok).then(|| FieldProblem {
        field,
        message: format!(
            "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ),
    })
}

/// A field path being walked, with whether it lies under `spec`.
#[derive(Default)]
struct Path {
    text: String,
}

impl Path {
    fn in_spec(&self) -> bool {
        self.text == "spec" || self.text.starts_with("spec.") || self.text.starts_with("spec[")
    }

    fn with_child<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.text.len();
        push_child(&mut self.text, name);
        let result = f(self);
        self.text.truncate(len);
        result
    }

    fn with_index<T>(&mut self, index: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.text.len();
        let _ = write!(self.text, "[{index}]");
        let result = f(self);
        self.text.truncate(len);
        result
    }
}

fn push_child(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

/// `object` as the API server would store it under `schema`: unknown fields
/// and nulls of non-nullable fields dropped. Unknown fields under `spec` are
/// recorded as problems.
fn prune(
    schema: &Value,
    value: &Value,
    path: &mut Path,
    problems: &mut Vec<FieldProblem>,
) -> Value {
    match value {
        Value::Object(fields) => {
            if schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) {
                return value.clone();
            }
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut kept = Map::new();
            for (name, field) in fields {
                let known = properties.and_then(|p| p.get(name)).or(additional);
                let Some(field_schema) = known else {
                    // The root's apiVersion, kind and metadata are the API
                    // server's own, not the CRD schema's.
                    if path.text.is_empty()
                        && matches!(name.as_str(), "apiVersion" | "kind" | "metadata")
                    {
                        kept.insert(name.clone(), field.clone());
                    } else if properties.is_some() || additional.is_some() {
                        path.with_child(name, |path| {
                            if path.in_spec() {
                                problems.push(FieldProblem {
                                    field: path.text.clone(),
                                    message: "unknown field".to_owned(),
                                });
                            }
                        });
                    } else {
                        kept.insert(name.clone(), field.clone());
                    }
                    continue;
                };
                if field.is_null() && field_schema["nullable"] != Value::Bool(true) {
                    continue;
                }
                let pruned =
                    path.with_child(name, |path| prune(field_schema, field, path, problems));
                kept.insert(name.clone(), pruned);
            }
            Value::Object(kept)
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        path.with_index(i, |path| prune(item_schema, item, path, problems))
                    })
                    .collect(),
            ),
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

/// `schema` with OpenAPI's `nullable: true` spelled as JSON Schema does: a
/// `null` type (and enum member) besides the declared one.
fn with_json_schema_nulls(mut schema: Value) -> Value {
    fn walk(schema: &mut Value) {
        match schema {
            Value::Object(fields) => {
                if fields.get("nullable") == Some(&Value::Bool(true)) {
                    if let Some(Value::String(kind)) = fields.get("type") {
                        let kind = Value::String(kind.clone());
                        fields.insert("type".to_owned(), Value::Array(vec![kind, "null".into()]));
                    }
                    if let Some(Value::Array(options)) = fields.get_mut("enum")
                        && !options.contains(&Value::Null)
                    {
                        options.push(Value::Null);
                    }
                }
                // `default` and `x-kubernetes-*` values are data, not schemas.
                for (key, value) in fields.iter_mut() {
                    if key != "default" && key != "enum" && !key.starts_with("x-kubernetes-") {
                        walk(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// A JSON Schema error in the API server's words.
fn schema_problem(error: &jsonschema::ValidationError<'_>, object: &Value) -> FieldProblem {
    let mut field = field_path(error.instance_path().segments(), object);
    let instance = error.instance();
    let message = match error.kind() {
        ValidationErrorKind::Required { property } => {
            push_child(&mut field, property.as_str().unwrap_or_default());
            "Required value".to_owned()
        }
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|o| {
                    o.iter()
                        .filter(|v| !v.is_null())
                        .map(Value::to_string)
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "Unsupported value: {instance}: supported values: {}",
                supported.join(", ")
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("Invalid value: {instance}: {field} in body should match '{pattern}'")
        }
        ValidationErrorKind::MinItems { limit } => format!(
            "Invalid value: {}: {field} in body should have at least {limit} items",
            instance.as_array().map_or(0, Vec::len)
        ),
        ValidationErrorKind::MaxItems { limit } => format!(
            "Too many: {}: must have at most {limit} items",
            instance.as_array().map_or(0, Vec::len)
        ),
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "Invalid value: {instance}: {field} in body should be at least {limit} chars long"
            )
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("Too long: may not be more than {limit} bytes")
        }
        ValidationErrorKind::Minimum { limit } => format!(
            "Invalid value: {instance}: {field} in body should be greater than or equal to {limit}"
        ),
        ValidationErrorKind::Maximum { limit } => format!(
            "Invalid value: {instance}: {field} in body should be less than or equal to {limit}"
        ),
        ValidationErrorKind::Type {
            kind: TypeKind::Single(expected),
        } => {
            let actual = json_type(instance);
            format!(
                "Invalid value: \"{actual}\": {field} in body must be of type {expected}: \"{actual}\""
            )
        }
        _ => format!("Invalid value: {instance}: {error}"),
    };
    FieldProblem { field, message }
}

/// The JSON type name of `value`, as the API server names it.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON pointer's segments as a kubectl-style field path: `/spec/domains/0`
/// is `spec.domains[0]`. A numeric segment is an index only where `object`
/// holds an array (a map key may be all digits).
fn field_path<'a>(segments: impl Iterator<Item = LocationSegment<'a>>, object: &Value) -> String {
    let mut path = String::new();
    let mut current = Some(object);
    for segment in segments {
        match segment {
            LocationSegment::Index(index) if current.is_some_and(Value::is_array) => {
                let _ = write!(path, "[{index}]");
                current = current.and_then(|v| v.get(index));
            }
            LocationSegment::Index(index) => {
                let key = index.to_string();
                push_child(&mut path, &key);
                current = current.and_then(|v| v.get(&key));
            }
            LocationSegment::Property(name) => {
                push_child(&mut path, &name);
                current = current.and_then(|v| v.get(name.as_ref()));
            }
        }
    }
    path
}

/// A CEL error's field path, kubectl-style: kube's validator gives
/// `spec.backends[0]` (or `.spec.x` for a rule's own `fieldPath`); a leading
/// dot is dropped.
fn normalise_cel_path(path: &str) -> String {
    path.strip_prefix('.').unwrap_or(path).to_owned()
}

/// A CEL rule's failure in the API server's words: `Invalid value:
/// "object": <rule message>`.
fn cel_message(field_path: &str, object: &Value, message: &str) -> String {
    let mut current = Some(object);
    for part in normalise_cel_path(field_path)
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        current = current.and_then(|v| v.get(name));
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index = index.trim_end_matches(']').parse::<usize>().ok();
            current = current.and_then(|v| index.and_then(|i| v.get(i)));
        }
    }
    format!(
        "Invalid value: \"{}\": {message}",
        current.map_or("object", json_type)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tenant(spec: Value) -> Value {
        let mut object = json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Tenant",
               "metadata": {"name": "acme"}});
        object["spec"] = spec;
        object
    }

    fn route(spec: Value) -> Value {
        let mut object = json!({"apiVersion": "veloflux.io/v1alpha1", "kind": "Route",
               "metadata": {"name": "web", "namespace": "acme"}});
        object["spec"] = spec;
        object
    }

    #[test]
    fn every_kind_has_a_validator() {
        let kinds: Vec<&str> = validators().keys().map(String::as_str).collect();
        assert_eq!(kinds, ["DedicatedInstance", "Plan", "Route", "Tenant"]);
    }

    #[test]
    fn a_valid_tenant_has_no_problems() {
        let problems = validate(&tenant(
            json!({"planRef": "pro", "domains": ["acme.com", "*.acme.com"]}),
        ));
        assert_eq!(problems, []);
    }

    #[test]
    fn a_bad_domain_is_reported_at_its_index() {
        let problems = validate(&tenant(
            json!({"planRef": "pro", "domains": ["acme.com", "Not A Host"]}),
        ));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "spec.domains[1]");
        assert!(
            problems[0]
                .message
                .starts_with("Invalid value: \"Not A Host\": spec.domains[1] in body should match"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_missing_required_field_is_named_by_its_own_path() {
        let problems = validate(&tenant(json!({"domains": []})));
        assert_eq!(
            problems,
            [FieldProblem {
                field: "spec.planRef".into(),
                message: "Required value".into()
            }]
        );
    }

    #[test]
    fn duplicate_route_backend_names_break_the_cel_rule() {
        let problems = validate(&route(json!({"tenantRef": "acme", "hosts": ["acme.com"],
            "backends": [{"name": "b", "address": "127.0.0.1:1"}, {"name": "b", "address": "127.0.0.1:2"}]})));
        assert_eq!(
            problems,
            [FieldProblem {
                field: "spec".into(),
                message: "Invalid value: \"object\": backend names must be unique".into()
            }]
        );
    }

    #[test]
    fn a_cel_rule_on_a_list_item_names_the_item() {
        let problems = validate(&route(json!({"tenantRef": "acme", "hosts": ["acme.com"],
            "backends": [{"name": "b"}]})));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "spec.backends[0]");
        assert!(
            problems[0]
                .message
                .ends_with("set exactly one of service and address")
        );
    }

    #[test]
    fn unknown_spec_fields_are_reported_at_any_depth() {
        let problems = validate(&route(
            json!({"tenantRef": "acme", "hosts": ["acme.com"], "colour": "blue",
            "backends": [{"name": "b", "address": "127.0.0.1:1", "wieght": 2}]}),
        ));
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["spec.backends[0].wieght", "spec.colour"]);
        assert!(problems.iter().all(|p| p.message == "unknown field"));
    }

    #[test]
    fn unknown_status_fields_are_pruned_silently() {
        let mut object = tenant(json!({"planRef": "pro"}));
        object["status"] = json!({"whatever": 1});
        assert_eq!(validate(&object), []);
    }

    #[test]
    fn nulls_pass_where_nullable_and_are_pruned_elsewhere() {
        let object = tenant(
            json!({"planRef": "pro", "displayName": null, "domains": null, "billing": null}),
        );
        assert_eq!(validate(&object), []);
    }

    #[test]
    fn an_unsupported_enum_value_lists_the_supported_ones() {
        let problems = validate(&route(
            json!({"tenantRef": "acme", "hosts": ["acme.com"], "algorithm": "random",
            "backends": [{"name": "b", "address": "127.0.0.1:1"}]}),
        ));
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "spec.algorithm");
        assert!(
            problems[0]
                .message
                .starts_with("Unsupported value: \"random\": supported values: \"roundRobin\""),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn a_name_must_be_a_lowercase_subdomain() {
        let mut object = tenant(json!({"planRef": "pro"}));
        object["metadata"]["name"] = json!("Acme Corp");
        let problems = validate(&object);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "metadata.name");
        assert!(
            problems[0]
                .message
                .starts_with("Invalid value: \"Acme Corp\": a lowercase RFC 1123 subdomain")
        );
        object["metadata"] = json!({});
        assert_eq!(
            validate(&object)[0].message,
            "Required value: name or generateName is required"
        );
        object["metadata"] = json!({"generateName": "acme-"});
        assert_eq!(validate(&object), []);
    }

    #[test]
    fn an_unknown_kind_is_one_problem_on_kind() {
        let problems =
            validate(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "kind");
    }

    #[test]
    fn json_pointers_become_kubectl_field_paths() {
        let object = json!({"spec": {"domains": ["a"], "roleMappings": {"7": "owner"}}});
        let location: jsonschema::paths::Location = "/spec/domains/0"
            .split('/')
            .skip(1)
            .map(|s| {
                s.parse::<usize>().map_or_else(
                    |_| LocationSegment::Property(s.into()),
                    LocationSegment::Index,
                )
            })
            .collect();
        assert_eq!(field_path(location.segments(), &object), "spec.domains[0]");
        let location: jsonschema::paths::Location = [
            LocationSegment::Property("spec".into()),
            LocationSegment::Property("roleMappings".into()),
            LocationSegment::Index(7),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            field_path(location.segments(), &object),
            "spec.roleMappings.7"
        );
    }
}
