//! Failed requests as the API server answers them: a `Status` object with
//! the HTTP code, the machine-readable reason (`NotFound`, `AlreadyExists`,
//! `Conflict`, `Invalid`, …), the message in the server's words and the
//! details (`name`, `group`, `kind`, and for `Invalid` the `causes`).

use http::StatusCode;
use serde_json::{Value, json};
use veloflux_crds::validation::FieldProblem;

/// One failed request.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: Value::Null,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details = json!({"name": name, "group": group, "kind": kind});
        self
    }

    /// `tenants.veloflux.io "acme" not found`.
    pub fn not_found(resource: &str, group: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// `tenants.veloflux.io "acme" already exists`.
    pub fn already_exists(resource: &str, group: &str, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(resource, group)),
        )
        .with_details(name, group, resource)
    }

    /// A write with a stale `resourceVersion`.
    pub fn conflict(resource: &str, group: &str, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(resource, group)
            ),
        )
        .with_details(name, group, resource)
    }

    /// `Tenant.veloflux.io "acme" is invalid: spec.domains[0]: …`, one
    /// cause per problem.
    pub fn invalid(kind: &str, group: &str, name: &str, problems: &[FieldProblem]) -> Self {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let listed = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes: Vec<Value> = problems
            .iter()
            .map(|p| json!({"reason": cause_reason(&p.message), "message": p.message, "field": p.field}))
            .collect();
        let mut failure = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{} \"{name}\" is invalid: {listed}", qualified(kind, group)),
        )
        .with_details(name, group, kind);
        failure.details["causes"] = Value::Array(causes);
        failure
    }

    /// A body that is not what the request needs.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message.into())
    }

    /// A method or path the fake does not serve.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            message.into(),
        )
    }

    /// A patch type the fake does not apply.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake API server does not apply {content_type} patches"),
        )
    }

    /// A path outside the API.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// The `Status` body.
    pub fn body(&self) -> Value {
        let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code.as_u16()});
        if !self.details.is_null() {
            body["details"] = self.details.clone();
        }
        body
    }
}

/// `resource.group`, or `resource` alone in the core group.
fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// The `reason` of a cause, from the words its message starts with.
fn cause_reason(message: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("unknown field", "FieldValueInvalid"),
    ]
    .into_iter()
    .find(|(start, _)| message.starts_with(start))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_object_lists_every_problem_in_the_message_and_the_causes() {
        let problems = [
            FieldProblem {
                field: "spec.domains[0]".into(),
                message: "Invalid value: \"Not A Host\"".into(),
            },
            FieldProblem {
                field: "spec.planRef".into(),
                message: "Required value".into(),
            },
        ];
        let failure = Failure::invalid("Tenant", "veloflux.io", "acme", &problems);
        assert_eq!(failure.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            failure.message,
            "Tenant.veloflux.io \"acme\" is invalid: [spec.domains[0]: Invalid value: \"Not A Host\", \
             spec.planRef: Required value]"
        );
        let body = failure.body();
        assert_eq!(body["reason"], "Invalid");
        assert_eq!(body["details"]["causes"][1]["field"], "spec.planRef");
        assert_eq!(body["details"]["causes"][1]["reason"], "FieldValueRequired");
    }

    #[test]
    fn a_core_resource_is_named_without_a_group() {
        let failure = Failure::not_found("namespaces", "", "acme");
        assert_eq!(failure.message, "namespaces \"acme\" not found");
    }
}
