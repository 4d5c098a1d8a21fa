//! The endpoints' handlers, one module per resource. Roles are already
//! checked when a handler runs (see `auth::access`); handlers validate
//! input, do the work and answer.

pub mod audit;
pub mod meta;
pub mod onboarding;
pub mod people;
pub mod routes;
pub mod sessions;
pub mod tenants;
pub mod usage;

use veloflux_crds::Tenant;

use crate::app::AppState;
use crate::error::{ApiError, FieldError};
use crate::people::TenantState;

/// The Tenant object of `tenant`, unless it is gone (deleted tenants answer
/// 404 everywhere, as tenants that never existed do).
pub async fn live_tenant(app: &AppState, tenant: &str) -> Result<Tenant, ApiError> {
    if let Some(record) = app.people.tenant_record(tenant).await?
        && record.state == TenantState::Deleted
    {
        return Err(ApiError::NotFound("tenant"));
    }
    app.directory
        .tenant(tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))
}

/// RFC 3339 of a Unix-ms time.
pub fn rfc3339(ms: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(0))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Field problems of a whole object as the API server would report them,
/// with each field renamed from the object's terms to the request's
/// (`rename`: the first matching prefix is replaced), in the field and
/// where the server's message names it (`spec.domains[0] in body should
/// match …`).
pub fn schema_problems(object: &serde_json::Value, rename: &[(&str, &str)]) -> Vec<FieldError> {
    veloflux_crds::validation::validate(object)
        .into_iter()
        .map(|p| {
            let mut field = p.field;
            let mut message = p.message;
            for (from, to) in rename {
                if let Some(rest) = field.strip_prefix(from) {
                    let renamed = format!("{to}{rest}");
                    message = message.replace(&field, &renamed);
                    field = renamed;
                    break;
                }
            }
            FieldError::new(field, message)
        })
        .collect()
}

/// Whether `domain` (a name or `*.` wildcard) lies strictly under `parent`.
fn is_under(domain: &str, parent: &str) -> bool {
    let name = domain.strip_prefix("*.").unwrap_or(domain);
    name.len() > parent.len() + 1
        && name.ends_with(parent)
        && name.as_bytes()[name.len() - parent.len() - 1] == b'.'
}

/// Problems with self-service domain claims of `tenant`: within the
/// platform's parent domains, listed once, and not overlapping any other
/// tenant's domains.
pub async fn domain_problems(
    app: &AppState,
    tenant: &str,
    domains: &[String],
    field: &str,
) -> Result<Vec<FieldError>, ApiError> {
    let mut problems = Vec::new();
    let parents = &app.settings.allowed_parent_domains;
    for (i, domain) in domains.iter().enumerate() {
        if !parents.iter().any(|p| is_under(domain, p)) {
            let message = if parents.is_empty() {
                "this platform opens no domains to self-service; ask a platform admin".to_owned()
            } else {
                let names: Vec<String> = parents.iter().map(|p| format!("*.{p}")).collect();
                format!("must be a name under {}", names.join(", "))
            };
            problems.push(FieldError::new(format!("{field}[{i}]"), message));
        }
        if domains[..i].contains(domain) {
            problems.push(FieldError::new(format!("{field}[{i}]"), "listed twice"));
        }
    }
    if !problems.is_empty() {
        return Ok(problems);
    }
    let others = app.directory.tenants().await?;
    for (i, domain) in domains.iter().enumerate() {
        let taken = others.iter().any(|other| {
            other.metadata.name.as_deref() != Some(tenant)
                && other
                    .spec
                    .domains
                    .iter()
                    .any(|d| veloflux_crds::host::overlaps(d, domain))
        });
        if taken {
            problems.push(FieldError::new(
                format!("{field}[{i}]"),
                "already claimed by another tenant",
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::{is_under, schema_problems};

    #[test]
    fn schema_problems_speak_of_the_request_in_field_and_message() {
        let tenant = serde_json::json!({
            "apiVersion": "veloflux.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"planRef": "free", "domains": ["Not A Domain"], "namespaces": ["acme"]},
        });
        let problems = schema_problems(&tenant, &[("spec.domains", "tenant.domains")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "tenant.domains[0]");
        assert!(
            problems[0]
                .message
                .contains("tenant.domains[0] in body should match"),
            "{}",
            problems[0].message
        );
        assert!(
            !problems[0].message.contains("spec."),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn self_service_domains_must_lie_strictly_under_a_parent() {
        assert!(is_under("acme.customers.example", "customers.example"));
        assert!(is_under("*.acme.customers.example", "customers.example"));
        assert!(is_under("a.b.customers.example", "customers.example"));
        assert!(!is_under("customers.example", "customers.example"));
        assert!(!is_under("*.customers.example", "customers.example"));
        assert!(!is_under("evilcustomers.example", "customers.example"));
        assert!(!is_under("acme.example", "customers.example"));
    }
}
