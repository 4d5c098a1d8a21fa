//! An in-memory Kubernetes API server behind kube's `Client` (a tower
//! service): list, watch (replayed from a resourceVersion, then live),
//! get, create, replace, JSON merge and server-side apply patches (of the
//! object and of `/status`), delete with finalizers, generations,
//! resourceVersion conflicts, and a log of every write.

#![allow(clippy::disallowed_types, reason = "test double: one lock per request")]

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
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Key = (String, String, String); // (collection, namespace, name)

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<(u64, String, String, &'static str, Value)>,
    watchers: Vec<(String, Option<String>, mpsc::UnboundedSender<Bytes>)>,
    writes: Vec<String>,
    calls: Vec<Call>,
    uid: u64,
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
    Full(Option<Bytes>),
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

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<FakeBody> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// `/api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]]` or `/apis/G/V/…`.
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (base, rest) = match *segments.first()? {
        "api" => (segments[..2].join("/"), &segments[2..]),
        "apis" => (segments[..3].join("/"), &segments[3..]),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Target {
        collection: format!("{base}/{}", rest.first()?),
        namespace,
        name: rest.get(1).map(|s| (*s).to_owned()),
        sub: rest.get(2).map(|s| (*s).to_owned()),
    })
}

/// The collection path of an object, from its apiVersion and kind.
pub fn collection_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let base = if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    };
    let kind = object["kind"].as_str().unwrap_or_default();
    let plural = match kind {
        "EndpointSlice" => "endpointslices".to_owned(),
        other => format!("{}s", other.to_lowercase()),
    };
    format!("{base}/{plural}")
}

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

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
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

    fn store(&mut self, key: &Key, mut object: Value, kind: &'static str) -> Value {
        self.bump(&mut object);
        self.objects.insert(key.clone(), object.clone());
        self.emit(&key.0, &key.1, kind, &object);
        object
    }

    /// After a change: an object marked for deletion without finalizers goes.
    fn settle(&mut self, key: &Key) {
        let Some(object) = self.objects.get(key) else {
            return;
        };
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers {
            let mut object = self.objects.remove(key).unwrap_or(Value::Null);
            self.bump(&mut object);
            self.emit(&key.0, &key.1, "DELETED", &object);
        }
    }

    fn create(
        &mut self,
        collection: &str,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, (StatusCode, String)> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                "metadata.name is required".into(),
            ));
        }
        let key = (collection.to_owned(), namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err((StatusCode::CONFLICT, format!("{name} already exists")));
        }
        self.uid += 1;
        if !namespace.is_empty() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        object["metadata"]["uid"] = json!(format!("uid-{}", self.uid));
        object["metadata"]["generation"] = json!(1);
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Ok(self.store(&key, object, "ADDED"))
    }

    /// Replaces or patches an object; `status` writes touch only `.status`.
    fn update(
        &mut self,
        key: &Key,
        change: impl FnOnce(&mut Value),
        status: bool,
        expected_rv: Option<&str>,
    ) -> Result<Value, (StatusCode, String)> {
        let Some(current) = self.objects.get(key).cloned() else {
            return Err((StatusCode::NOT_FOUND, format!("{} not found", key.2)));
        };
        if let Some(rv) = expected_rv
            && current["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err((StatusCode::CONFLICT, "the object has been modified".into()));
        }
        let mut next = current.clone();
        change(&mut next);
        if status {
            let status = next["status"].clone();
            next = current.clone();
            next["status"] = status;
        } else {
            next["status"] = current["status"].clone();
            next["metadata"]["uid"] = current["metadata"]["uid"].clone();
            next["metadata"]["creationTimestamp"] =
                current["metadata"]["creationTimestamp"].clone();
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            next["metadata"]["generation"] = json!(if next["spec"] != current["spec"] {
                generation + 1
            } else {
                generation
            });
        }
        if next == current {
            return Ok(current);
        }
        let stored = self.store(key, next, "MODIFIED");
        self.settle(key);
        Ok(stored)
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
    /// metadata; status untouched).
    pub fn apply<T: serde::Serialize>(&self, object: &T) -> Value {
        let object = serde_json::to_value(object).unwrap();
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
        if state.objects.contains_key(&key) {
            let spec = object;
            state
                .update(
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
                    false,
                    None,
                )
                .unwrap()
        } else {
            state.create(&collection, &namespace, object).unwrap()
        }
    }

    /// Deletes as `kubectl delete` would (finalizers hold it).
    pub fn delete(&self, collection: &str, namespace: &str, name: &str) {
        let key = (collection.to_owned(), namespace.to_owned(), name.to_owned());
        let mut state = self.lock();
        let _ = state.update(
            &key,
            |o| o["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z"),
            false,
            None,
        );
        state.settle(&key);
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
            return failure(StatusCode::NOT_FOUND, "NotFound", path);
        };
        let mut state = self.lock();
        if method != Method::GET {
            state.writes.push(format!("{method} {path}"));
        }
        let watching = matches!(query_param(query, "watch"), Some("true" | "1"));
        let verb = match (method.clone(), &target.name) {
            (Method::GET, None) if watching => "watch",
            (Method::GET, None) => "list",
            (Method::GET, Some(_)) => "get",
            (Method::POST, _) => "create",
            (Method::PUT, _) => "update",
            (Method::PATCH, _) => "patch",
            (Method::DELETE, _) => "delete",
            _ => "unknown",
        };
        let mut parts = target.collection.split('/');
        let group = match parts.next() {
            Some("apis") => parts.next().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let resource = target.collection.rsplit('/').next().unwrap_or_default();
        let resource = match &target.sub {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        state.calls.push(Call {
            verb: verb.to_owned(),
            group,
            resource,
            namespace: target.namespace.clone().unwrap_or_default(),
        });
        let namespace = target.namespace.clone().unwrap_or_default();
        let result = match (method.clone(), &target.name) {
            (Method::GET, None)
                if query_param(query, "watch") == Some("true")
                    || query_param(query, "watch") == Some("1") =>
            {
                let since: u64 = query_param(query, "resourceVersion")
                    .and_then(|rv| rv.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = mpsc::unbounded_channel();
                for (rv, collection, ns, kind, object) in &state.log {
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
                state
                    .watchers
                    .push((target.collection.clone(), target.namespace.clone(), tx));
                let mut response = Response::new(FakeBody::Stream(rx));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return response;
            }
            (Method::GET, None) => {
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((c, ns, _), _)| {
                        *c == target.collection && target.namespace.as_ref().is_none_or(|t| t == ns)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                Ok(json!({"apiVersion": "v1", "kind": "List",
                          "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}))
            }
            (Method::GET, Some(name)) => state
                .objects
                .get(&(target.collection.clone(), namespace, name.clone()))
                .cloned()
                .ok_or((StatusCode::NOT_FOUND, format!("{name} not found"))),
            (Method::POST, None) => match serde_json::from_slice::<Value>(body) {
                Ok(object) => state.create(&target.collection, &namespace, object),
                Err(err) => Err((StatusCode::BAD_REQUEST, err.to_string())),
            },
            (Method::PUT, Some(name)) => match serde_json::from_slice::<Value>(body) {
                Ok(object) => {
                    let key = (target.collection.clone(), namespace, name.clone());
                    let rv = object["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    let status = target.sub.as_deref() == Some("status");
                    state.update(&key, |o| *o = object, status, rv.as_deref())
                }
                Err(err) => Err((StatusCode::BAD_REQUEST, err.to_string())),
            },
            (Method::PATCH, Some(name)) => match serde_json::from_slice::<Value>(body) {
                Ok(mut patch) => {
                    let key = (target.collection.clone(), namespace, name.clone());
                    let rv = patch["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    if content_type.contains("apply-patch")
                        && let Some(p) = patch.as_object_mut()
                    {
                        p.remove("apiVersion");
                        p.remove("kind");
                    }
                    let status = target.sub.as_deref() == Some("status");
                    state.update(&key, |o| merge(o, &patch), status, rv.as_deref())
                }
                Err(err) => Err((StatusCode::BAD_REQUEST, err.to_string())),
            },
            (Method::DELETE, Some(name)) => {
                let key = (target.collection.clone(), namespace, name.clone());
                let result = state.update(
                    &key,
                    |o| o["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z"),
                    false,
                    None,
                );
                state.settle(&key);
                result
            }
            _ => Err((StatusCode::METHOD_NOT_ALLOWED, format!("{method} {path}"))),
        };
        match result {
            Ok(value) => respond(StatusCode::OK, &value),
            Err((code, message)) => {
                let reason = match code {
                    StatusCode::NOT_FOUND => "NotFound",
                    StatusCode::CONFLICT => "Conflict",
                    _ => "BadRequest",
                };
                failure(code, reason, &message)
            }
        }
    }
}

impl tower_service::Service<Request<kube::client::Body>> for FakeApi {
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
