//! What a request to the fake names: the collection, namespace, object and
//! subresource of its path, and the query parameters it reads (`watch`,
//! `resourceVersion`, `labelSelector`, `fieldSelector`, `limit`, `continue`).

use serde_json::Value;

/// `/api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]]` or `/apis/G/V/…`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `api/v1/namespaces`, `apis/veloflux.io/v1alpha1/routes`.
    pub collection: String,
    /// The namespace of a namespaced request.
    pub namespace: Option<String>,
    /// The object, for requests on one object.
    pub name: Option<String>,
    /// `status`, for the status subresource.
    pub sub: Option<String>,
}

impl Target {
    /// The API group: `""` for the core group.
    pub fn group(&self) -> &str {
        group_of(&self.collection)
    }

    /// The resource (plural) without group or version: `tenants`.
    pub fn resource(&self) -> &str {
        resource_of(&self.collection)
    }
}

/// The API group of a collection path: `""` for the core group.
pub(crate) fn group_of(collection: &str) -> &str {
    match collection.split('/').collect::<Vec<_>>().as_slice() {
        ["apis", group, ..] => group,
        _ => "",
    }
}

/// The resource (plural) of a collection path: `tenants`.
pub(crate) fn resource_of(collection: &str) -> &str {
    collection.rsplit('/').next().unwrap_or_default()
}

/// Subresources of a core Namespace: `/api/v1/namespaces/NAME/status` is the
/// Namespace's own, not a namespaced collection called `status`.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The target of a request path; `None` for paths outside the API.
pub(crate) fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (base, rest) = match *segments.first()? {
        "api" if segments.len() >= 3 => (segments[..2].join("/"), &segments[2..]),
        "apis" if segments.len() >= 4 => (segments[..3].join("/"), &segments[3..]),
        _ => return None,
    };
    let namespace_subresource = base == "api/v1"
        && rest.len() == 3
        && rest[0] == "namespaces"
        && NAMESPACE_SUBRESOURCES.contains(&rest[2]);
    let (namespace, rest) =
        if rest.first() == Some(&"namespaces") && rest.len() >= 3 && !namespace_subresource {
            (Some(rest[1].to_owned()), &rest[2..])
        } else {
            (None, rest)
        };
    if rest.len() > 3 {
        return None;
    }
    Some(Target {
        collection: format!("{base}/{}", rest.first()?),
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        sub: rest.get(2).map(|s| (*s).to_owned()),
    })
}

/// The decoded value of query parameter `name`, if present.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// `application/x-www-form-urlencoded` decoding: `%XX` and `+`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match text
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One requirement of a label or field selector.
#[derive(Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed selector: every requirement must hold. Set-based forms (`in`,
/// `notin`) are not understood and match nothing, so a test using them fails
/// loudly instead of passing on a list that was never filtered.
#[derive(Debug, Default)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
    unsupported: bool,
}

impl Selector {
    /// Parses `a=b,c!=d,e,!f` (`==` as `=`).
    pub fn parse(text: &str) -> Self {
        let mut selector = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::Absent(key.trim().to_owned())
            } else if part.contains(' ') || part.contains('(') {
                selector.unsupported = true;
                continue;
            } else {
                Requirement::Exists(part.to_owned())
            };
            selector.requirements.push(requirement);
        }
        selector
    }

    /// Whether the values `lookup` gives satisfy every requirement.
    fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        !self.unsupported
            && self.requirements.iter().all(|r| match r {
                Requirement::Equals(k, v) => lookup(k) == Some(v.as_str()),
                Requirement::NotEquals(k, v) => lookup(k) != Some(v.as_str()),
                Requirement::Exists(k) => lookup(k).is_some(),
                Requirement::Absent(k) => lookup(k).is_none(),
            })
    }

    /// Whether `object`'s labels satisfy the selector.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches_with(|key| labels.get(key).and_then(Value::as_str))
    }

    /// Whether `object`'s fields satisfy the selector (`metadata.name`,
    /// `metadata.namespace`, or any dotted path to a string).
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches_with(|path| {
            path.split('.')
                .try_fold(object, |value, key| value.get(key))
                .and_then(Value::as_str)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_namespaced_path_names_its_namespace() {
        let target = parse_path("/apis/veloflux.io/v1alpha1/namespaces/acme/routes/web/status");
        assert_eq!(
            target,
            Some(Target {
                collection: "apis/veloflux.io/v1alpha1/routes".into(),
                namespace: Some("acme".into()),
                name: Some("web".into()),
                sub: Some("status".into()),
            })
        );
    }

    #[test]
    fn a_namespace_is_a_cluster_scoped_object() {
        let target = parse_path("/api/v1/namespaces/acme").unwrap();
        assert_eq!(target.collection, "api/v1/namespaces");
        assert_eq!(target.namespace, None);
        assert_eq!(target.name.as_deref(), Some("acme"));
        let status = parse_path("/api/v1/namespaces/acme/status").unwrap();
        assert_eq!(status.collection, "api/v1/namespaces");
        assert_eq!(status.name.as_deref(), Some("acme"));
        assert_eq!(status.sub.as_deref(), Some("status"));
        let secrets = parse_path("/api/v1/namespaces/acme/secrets").unwrap();
        assert_eq!(secrets.collection, "api/v1/secrets");
        assert_eq!(secrets.namespace.as_deref(), Some("acme"));
        assert_eq!(secrets.name, None);
    }

    #[test]
    fn groups_and_resources_come_from_the_collection() {
        let tenants = parse_path("/apis/veloflux.io/v1alpha1/tenants").unwrap();
        assert_eq!(
            (tenants.group(), tenants.resource()),
            ("veloflux.io", "tenants")
        );
        let namespaces = parse_path("/api/v1/namespaces").unwrap();
        assert_eq!(
            (namespaces.group(), namespaces.resource()),
            ("", "namespaces")
        );
    }

    #[test]
    fn query_values_are_decoded() {
        let query = "limit=1&labelSelector=veloflux.io%2Ftenant%3Dacme%2Cteam+a";
        assert_eq!(
            query_param(query, "labelSelector").as_deref(),
            Some("veloflux.io/tenant=acme,team a")
        );
        assert_eq!(query_param(query, "limit").as_deref(), Some("1"));
        assert_eq!(query_param("a=%zz%", "a").as_deref(), Some("%zz%"));
    }

    #[test]
    fn selectors_match_equality_inequality_and_existence() {
        let object = json!({"metadata": {"name": "web", "labels": {"tier": "edge", "team": "a"}}});
        assert!(Selector::parse("tier=edge,team==a").matches_labels(&object));
        assert!(!Selector::parse("tier=edge,team!=a").matches_labels(&object));
        assert!(Selector::parse("tier,!owner").matches_labels(&object));
        assert!(!Selector::parse("owner").matches_labels(&object));
        assert!(!Selector::parse("tier in (edge)").matches_labels(&object));
        assert!(Selector::parse("metadata.name=web").matches_fields(&object));
    }
}
