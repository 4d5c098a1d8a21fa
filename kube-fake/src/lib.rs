//! An in-memory Kubernetes API server behind kube's `Client` (a tower
//! service), shared by the operator's and the API's tests.
//!
//! It serves list (label and field selectors, `limit`/`continue`), watch
//! (replayed from a resourceVersion, then live), get, create, replace, JSON
//! merge and server-side apply patches (of the object and of `/status`) and
//! delete, each write also as a dry run (`?dryRun=All`), with the API
//! server's rules where tests lean on them:
//!
//! - a create of a taken name is `409 AlreadyExists`; a write carrying a
//!   stale `resourceVersion` is `409 Conflict`; a missing object `404
//!   NotFound`, each as a `Status` with the server's message and details;
//! - `metadata.generation` moves only when `spec` changes; a write of the
//!   object keeps its `status`, a write of `/status` changes nothing else;
//!   `uid`, `creationTimestamp` and `deletionTimestamp` are the server's;
//! - `veloflux.io` objects are checked on every create, update and patch by
//!   [`veloflux_crds::validation::validate`] (the CRD schemas and CEL rules):
//!   a failure is `422 Invalid` listing the problems and their causes;
//! - a delete of an object with finalizers sets its `deletionTimestamp`; the
//!   object goes when the last finalizer does;
//! - core Namespaces are cluster-scoped objects (`/api/v1/namespaces/NAME`)
//!   and are `Active` from creation.
//!
//! Not modelled: RBAC refusals (requests are recorded as [`Call`]s for tests
//! to compare with the manifests), admission webhooks, defaulting and
//! pruning of stored objects, namespace existence for namespaced writes, and
//! cascading deletion.

#![allow(clippy::disallowed_types, reason = "test double: one lock per request")]

mod failure;
mod request;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::failure::Failure;
use crate::request::{Selector, Target, group_of, parse_path, query_param, resource_of};

/// `(collection, namespace, name)`; the namespace is empty for
/// cluster-scoped objects.
type Key = (String, String, String);

/// The collection of core Namespaces.
const NAMESPACES: &str = "api/v1/namespaces";

/// The fake's clock starts at 2026-01-01T00:00:00Z and moves one second per
/// create or delete, so creation order is also timestamp order.
const EPOCH_SECONDS: i64 = 1_767_225_600;

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<(u64, String, String, &'static str, Value)>,
    watchers: Vec<(String, Option<String>, mpsc::UnboundedSender<Bytes>)>,
    writes: Vec<String>,
    calls: Vec<Call>,
    uid: u64,
    clock: i64,
}

/// One API request in RBAC terms.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` or `delete`.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace, empty for cluster-wide requests.
    pub namespace: String,
}

/// The fake API server. Clones share state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// A response body: whole, or a watch stream.
pub enum FakeBody {
    /// A whole body, taken on the first poll.
    Full(Option<Bytes>),
    /// Watch events, one JSON line each, until the server drops the sender.
    Stream(mpsc::UnboundedReceiver<Bytes>),
}

impl http_body::Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            FakeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<FakeBody> {
    let mut response = Response::new(FakeBody::Full(Some(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The collection path of an object, from its apiVersion and kind.
pub fn collection_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let base = if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    };
    let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
    let consonant_y =
        kind.ends_with('y') && !kind[..kind.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    let plural = if kind.ends_with("ss") {
        format!("{kind}es")
    } else if kind.ends_with('s') {
        // `Endpoints` is its own plural.
        kind
    } else if consonant_y {
        format!("{}ies", &kind[..kind.len() - 1])
    } else {
        format!("{kind}s")
    };
    format!("{base}/{plural}")
}

/// A JSON merge patch (RFC 7386): `null` removes a field.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The object: spec and metadata; `status` is kept.
    Main,
    /// The `/status` subresource: only `status`.
    Status,
}

impl Part {
    fn of(target: &Target) -> Self {
        if target.sub.as_deref() == Some("status") {
            Self::Status
        } else {
            Self::Main
        }
    }
}

/// Whether the object has finalizers.
fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// Sets `object[field]` to `value`, or removes it when `value` is null.
fn set_or_remove(object: &mut Value, field: &str, value: Value) {
    if value.is_null() {
        if let Some(fields) = object.as_object_mut() {
            fields.remove(field);
        }
    } else {
        object[field] = value;
    }
}

/// Whether `name` is a DNS-1123 label (a Namespace's name).
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

impl State {
    fn emit(&mut self, collection: &str, namespace: &str, kind: &'static str, object: &Value) {
        self.log.push((
            self.rv,
            collection.to_owned(),
            namespace.to_owned(),
            kind,
            object.clone(),
        ));
        let line = Bytes::from(format!("{}\n", json!({"type": kind, "object": object})));
        self.watchers.retain(|(c, ns, tx)| {
            if c != collection || ns.as_deref().is_some_and(|ns| ns != namespace) {
                return !tx.is_closed();
            }
            tx.send(line.clone()).is_ok()
        });
    }

    fn bump(&mut self, object: &mut Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    /// The next instant of the fake's clock, RFC 3339.
    fn tick(&mut self) -> String {
        self.clock += 1;
        Timestamp::from_second(EPOCH_SECONDS + self.clock)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    fn store(&mut self, key: &Key, mut object: Value, kind: &'static str) -> Value {
        self.bump(&mut object);
        self.objects.insert(key.clone(), object.clone());
        self.emit(&key.0, &key.1, kind, &object);
        object
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.bump(&mut object);
        self.emit(&key.0, &key.1, "DELETED", &object);
        Some(object)
    }

    /// After a change: an object marked for deletion without finalizers goes.
    fn settle(&mut self, key: &Key) {
        if self.objects.get(key).is_some_and(|object| {
            !object["metadata"]["deletionTimestamp"].is_null() && !has_finalizers(object)
        }) {
            self.remove(key);
        }
    }

    /// The checks the API server makes before storing `object` in
    /// `collection`: the CRD schema and CEL rules for VeloFlux kinds, a
    /// DNS label for Namespace names.
    fn admit(collection: &str, object: &Value) -> Result<(), Failure> {
        let group = group_of(collection);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let problems = if group == veloflux_crds::GROUP {
            veloflux_crds::validation::validate(object)
        } else if collection == NAMESPACES && !is_dns_label(name) {
            vec![veloflux_crds::validation::FieldProblem {
                field: "metadata.name".into(),
                message: format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower \
                     case alphanumeric characters or '-', and must start and end with an \
                     alphanumeric character"
                ),
            }]
        } else {
            Vec::new()
        };
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid(kind, group, name, &problems))
        }
    }

    /// Creates `object`; `keep_status` keeps a given `status` (for seeding
    /// from tests), which a real create of a kind with a status subresource
    /// drops.
    fn create(
        &mut self,
        collection: &str,
        namespace: &str,
        mut object: Value,
        keep_status: bool,
    ) -> Result<Value, Failure> {
        let group = group_of(collection).to_owned();
        let resource = resource_of(collection).to_owned();
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            name = format!("{prefix}{:05x}", self.uid + 1);
            object["metadata"]["name"] = json!(name);
        }
        if name.is_empty() {
            return Err(Failure::invalid(
                object["kind"].as_str().unwrap_or_default(),
                &group,
                "",
                &[veloflux_crds::validation::FieldProblem {
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
        let key = (collection.to_owned(), namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(Failure::already_exists(&resource, &group, &name));
        }
        if !keep_status && group == veloflux_crds::GROUP {
            set_or_remove(&mut object, "status", Value::Null);
        }
        if !namespace.is_empty() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        if collection == NAMESPACES {
            object["status"] = json!({"phase": "Active"});
        }
        Self::admit(collection, &object)?;
        self.uid += 1;
        object["metadata"]["uid"] = json!(format!("uid-{}", self.uid));
        object["metadata"]["generation"] = json!(1);
        let now = self.tick();
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!(now);
        }
        Ok(self.store(&key, object, "ADDED"))
    }

    /// Replaces or patches an object: `change` edits a copy of it, and the
    /// server's rules decide what of the edit is kept.
    fn update(
        &mut self,
        key: &Key,
        change: impl FnOnce(&mut Value),
        part: Part,
        expected_rv: Option<&str>,
    ) -> Result<Value, Failure> {
        let (collection, _, name) = key;
        let (group, resource) = (group_of(collection), resource_of(collection));
        let Some(current) = self.objects.get(key).cloned() else {
            return Err(Failure::not_found(resource, group, name));
        };
        if let Some(rv) = expected_rv
            && current["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(Failure::conflict(resource, group, name));
        }
        let mut next = current.clone();
        change(&mut next);
        match part {
            Part::Status => {
                let status = next["status"].clone();
                next = current.clone();
                set_or_remove(&mut next, "status", status);
            }
            Part::Main => {
                set_or_remove(&mut next, "status", current["status"].clone());
                for field in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "resourceVersion",
                ] {
                    set_or_remove(
                        &mut next["metadata"],
                        field,
                        current["metadata"][field].clone(),
                    );
                }
                let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
                next["metadata"]["generation"] = json!(if next["spec"] == current["spec"] {
                    generation
                } else {
                    generation + 1
                });
            }
        }
        if next == current {
            return Ok(current);
        }
        Self::admit(collection, &next)?;
        let stored = self.store(key, next, "MODIFIED");
        self.settle(key);
        Ok(stored)
    }

    /// Deletes an object: one with finalizers is marked and stays until the
    /// last finalizer goes.
    fn delete(&mut self, key: &Key) -> Result<Value, Failure> {
        let (collection, _, name) = key;
        let Some(current) = self.objects.get(key).cloned() else {
            return Err(Failure::not_found(
                resource_of(collection),
                group_of(collection),
                name,
            ));
        };
        if !has_finalizers(&current) {
            return Ok(self.remove(key).unwrap_or(current));
        }
        if !current["metadata"]["deletionTimestamp"].is_null() {
            return Ok(current);
        }
        let mut next = current;
        next["metadata"]["deletionTimestamp"] = json!(self.tick());
        Ok(self.store(key, next, "MODIFIED"))
    }

    fn list(&self, target: &Target, query: &str) -> Value {
        let labels = query_param(query, "labelSelector").map(|s| Selector::parse(&s));
        let fields = query_param(query, "fieldSelector").map(|s| Selector::parse(&s));
        let matching: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((c, ns, _), object)| {
                *c == target.collection
                    && target.namespace.as_ref().is_none_or(|t| t == ns)
                    && labels.as_ref().is_none_or(|s| s.matches_labels(object))
                    && fields.as_ref().is_none_or(|s| s.matches_fields(object))
            })
            .map(|(_, object)| object)
            .collect();
        let start: usize = query_param(query, "continue")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let limit = query_param(query, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let items: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| (*o).clone())
            .collect();
        let mut metadata = json!({"resourceVersion": self.rv.to_string()});
        let next = start.saturating_add(items.len());
        if next < matching.len() {
            metadata["continue"] = json!(next.to_string());
            metadata["remainingItemCount"] = json!(matching.len() - next);
        }
        json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": items})
    }

    /// Runs `write` as `?dryRun=All` does: answered in full, nothing kept,
    /// nobody told.
    fn dry_run<T>(&mut self, write: impl FnOnce(&mut Self) -> T) -> T {
        let objects = self.objects.clone();
        let (rv, uid, clock, logged) = (self.rv, self.uid, self.clock, self.log.len());
        let watchers = std::mem::take(&mut self.watchers);
        let result = write(self);
        self.objects = objects;
        (self.rv, self.uid, self.clock) = (rv, uid, clock);
        self.log.truncate(logged);
        self.watchers = watchers;
        result
    }

    fn watch(&mut self, target: &Target, query: &str) -> Response<FakeBody> {
        let since: u64 = query_param(query, "resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        for (rv, collection, ns, kind, object) in &self.log {
            if *rv > since
                && *collection == target.collection
                && target.namespace.as_ref().is_none_or(|t| t == ns)
            {
                let _ = tx.send(Bytes::from(format!(
                    "{}\n",
                    json!({"type": kind, "object": object})
                )));
            }
        }
        self.watchers
            .push((target.collection.clone(), target.namespace.clone(), tx));
        let mut response = Response::new(FakeBody::Stream(rx));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl FakeApi {
    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates or updates an object as `kubectl apply` would (spec and
    /// metadata; status untouched on update, kept as given on creation so
    /// tests can seed it). The object is checked as the API server would.
    ///
    /// # Panics
    ///
    /// When the object does not serialise or the API server would refuse
    /// it: a test fixture the cluster would reject is a broken test.
    pub fn apply<T: serde::Serialize>(&self, object: &T) -> Value {
        let object = serde_json::to_value(object)
            .unwrap_or_else(|err| panic!("the object does not serialise: {err}"));
        let collection = collection_of(&object);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (collection.clone(), namespace.clone(), name);
        let mut state = self.lock();
        let result = if state.objects.contains_key(&key) {
            let spec = object;
            state.update(
                &key,
                |o| {
                    o["spec"] = spec["spec"].clone();
                    for field in ["labels", "annotations"] {
                        if !spec["metadata"][field].is_null() {
                            o["metadata"][field] = spec["metadata"][field].clone();
                        }
                    }
                    for field in ["data", "type", "endpoints", "ports", "addressType"] {
                        if !spec[field].is_null() {
                            o[field] = spec[field].clone();
                        }
                    }
                },
                Part::Main,
                None,
            )
        } else {
            state.create(&collection, &namespace, object, true)
        };
        result.unwrap_or_else(|failure| panic!("apply refused: {}", failure.message))
    }

    /// Deletes as `kubectl delete` would (finalizers hold it). A missing
    /// object is no error.
    pub fn delete(&self, collection: &str, namespace: &str, name: &str) {
        let key = (collection.to_owned(), namespace.to_owned(), name.to_owned());
        let _ = self.lock().delete(&key);
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(collection.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of a collection.
    pub fn list(&self, collection: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((c, _, _), _)| c == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every request so far, in RBAC terms.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Every write so far (`METHOD path`).
    pub fn writes(&self) -> Vec<String> {
        self.lock().writes.clone()
    }

    fn handle(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> Response<FakeBody> {
        let Some(target) = parse_path(path) else {
            let failure = Failure::no_route(path);
            return respond(failure.code, &failure.body());
        };
        let mut state = self.lock();
        if method != Method::GET {
            state.writes.push(format!("{method} {path}"));
        }
        let watching = matches!(query_param(query, "watch").as_deref(), Some("true" | "1"));
        let verb = match (method, &target.name) {
            (&Method::GET, None) if watching => "watch",
            (&Method::GET, None) => "list",
            (&Method::GET, Some(_)) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, _) => "delete",
            _ => "unknown",
        };
        let resource = match &target.sub {
            Some(sub) => format!("{}/{sub}", target.resource()),
            None => target.resource().to_owned(),
        };
        state.calls.push(Call {
            verb: verb.to_owned(),
            group: target.group().to_owned(),
            resource,
            namespace: target.namespace.clone().unwrap_or_default(),
        });
        if watching && method == Method::GET && target.name.is_none() {
            return state.watch(&target, query);
        }
        let request = Incoming {
            method,
            target: &target,
            path,
            query,
            content_type,
            body,
        };
        let result = if method != Method::GET && query_param(query, "dryRun").is_some() {
            state.dry_run(|state| request.serve(state))
        } else {
            request.serve(&mut state)
        };
        match result {
            Ok(value) => respond(StatusCode::OK, &value),
            Err(failure) => respond(failure.code, &failure.body()),
        }
    }
}

/// One request, as [`FakeApi`] serves it once its path is parsed.
struct Incoming<'a> {
    method: &'a Method,
    target: &'a Target,
    path: &'a str,
    query: &'a str,
    content_type: &'a str,
    body: &'a [u8],
}

impl Incoming<'_> {
    /// Serves every request but a watch.
    fn serve(&self, state: &mut State) -> Result<Value, Failure> {
        let target = self.target;
        let namespace = target.namespace.clone().unwrap_or_default();
        let key = |name: &str| {
            (
                target.collection.clone(),
                namespace.clone(),
                name.to_owned(),
            )
        };
        match (self.method, &target.name) {
            (&Method::GET, None) => Ok(state.list(target, self.query)),
            (&Method::GET, Some(name)) => state
                .objects
                .get(&key(name))
                .cloned()
                .ok_or_else(|| Failure::not_found(target.resource(), target.group(), name)),
            (&Method::POST, None) => match serde_json::from_slice::<Value>(self.body) {
                Ok(object) => state.create(&target.collection, &namespace, object, false),
                Err(err) => Err(Failure::bad_request(err.to_string())),
            },
            (&Method::PUT, Some(name)) => match serde_json::from_slice::<Value>(self.body) {
                Ok(object) => {
                    let rv = object["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    state.update(&key(name), |o| *o = object, Part::of(target), rv.as_deref())
                }
                Err(err) => Err(Failure::bad_request(err.to_string())),
            },
            (&Method::PATCH, Some(name)) => self.patch(state, &key(name)),
            (&Method::DELETE, Some(name)) => state.delete(&key(name)),
            (method, _) => Err(Failure::method_not_allowed(format!(
                "{method} {}",
                self.path
            ))),
        }
    }

    /// A merge or server-side apply patch; an apply of a missing object
    /// creates it.
    fn patch(&self, state: &mut State, key: &Key) -> Result<Value, Failure> {
        let (target, content_type) = (self.target, self.content_type);
        let apply = content_type.contains("apply-patch");
        if !apply && !content_type.contains("merge-patch") {
            return Err(Failure::unsupported_media_type(content_type));
        }
        let mut patch = serde_json::from_slice::<Value>(self.body)
            .map_err(|err| Failure::bad_request(err.to_string()))?;
        if apply && !state.objects.contains_key(key) && Part::of(target) == Part::Main {
            return state.create(&key.0, &key.1, patch, false);
        }
        let rv = patch["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        if apply && let Some(p) = patch.as_object_mut() {
            p.remove("apiVersion");
            p.remove("kind");
        }
        state.update(key, |o| merge(o, &patch), Part::of(target), rv.as_deref())
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok(api.handle(
                &parts.method,
                parts.uri.path(),
                parts.uri.query().unwrap_or_default(),
                &content_type,
                &body,
            ))
        })
    }
}
