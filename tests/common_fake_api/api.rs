//! A small stateful fake of the Kubernetes API server, to run the real controller (or any
//! kube-rs client) against over plain HTTP.
//!
//! For the resources in [`RESOURCES`] it does what the real API server does:
//! - GET, LIST (whole, or paged with `limit`/`continue`), WATCH (`watch=true`: newline-delimited
//!   JSON events after `resourceVersion`, BOOKMARKs when `allowWatchBookmarks=true`, a 410
//!   `ERROR` event for a version older than the kept history, closed after `timeoutSeconds`);
//!   `labelSelector` with `k=v`, `k!=v`, `k`, `!k` terms; metadata-only answers
//!   (`PartialObjectMetadata[List]`) when the `Accept` header asks for them;
//! - POST (409 `AlreadyExists`), PUT (409 `Conflict` on a stale `resourceVersion`), DELETE, and
//!   PATCH as JSON merge, strategic merge (as a merge: enough for Leases and Events) and
//!   server-side apply, on an object or its `status` subresource: writes to one leave the other
//!   alone, and only labels and annotations of metadata are writable;
//! - server-side apply with field ownership: the fields a manager applied and leaves out of its
//!   next apply are removed, and an apply without `force=true` that changes a field another
//!   manager owns fails with 409 `Conflict` (managers are told apart by name only);
//! - `uid`, `creationTimestamp`, a monotonic `resourceVersion` that moves only when an object
//!   changes, and `generation`, bumped when anything but metadata and status changes;
//! - the discovery documents (`/version`, `/api`, `/apis`, resource lists), and a `NotFound`
//!   Status for anything else, including a resource marked missing (a CRD not installed);
//!   CustomResourceDefinitions are stored and `Established` at once, but serve nothing.
//!
//! Every request is recorded (writes with their body). Tests change state directly
//! ([`FakeApi::create`], [`FakeApi::patch`], [`FakeApi::delete`]), which watches see like any
//! other change, and can hold LISTs or delay applies to stage races. Not modelled:
//! authentication, admission, validation, finalizers, field selectors, JSON patch, list merge
//! keys (lists are atomic).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

/// A resource the fake serves: group (`""` for core), version, plural, kind, whether it is
/// namespaced, and whether `status` is a subresource.
pub struct Resource(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
);

/// The resources served.
pub const RESOURCES: &[Resource] = &[
    Resource("", "v1", "namespaces", "Namespace", false, true),
    Resource("", "v1", "nodes", "Node", false, true),
    Resource("", "v1", "pods", "Pod", true, true),
    Resource("", "v1", "secrets", "Secret", true, false),
    Resource(
        "sharehygiene.io",
        "v1alpha1",
        "handlepolicies",
        "HandlePolicy",
        true,
        true,
    ),
    Resource("events.k8s.io", "v1", "events", "Event", true, false),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", true, false),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
    ),
];

impl Resource {
    fn api_version(&self) -> String {
        group_version(self.0, self.1)
    }

    /// `plural.group`, as error messages name a resource.
    fn qualified(&self) -> String {
        match self.0 {
            "" => self.2.to_owned(),
            group => format!("{}.{group}", self.2),
        }
    }
}

fn group_version(group: &str, version: &str) -> String {
    match group {
        "" => version.to_owned(),
        group => format!("{group}/{version}"),
    }
}

/// How many changes a watch can resume from; older versions get 410 Expired.
const HISTORY: usize = 50_000;
const APPLY: &str = "application/apply-patch+yaml";

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub content_type: Option<String>,
    /// `fieldManager` of a write (`unknown` when absent); `None` for reads.
    pub field_manager: Option<String>,
    /// The body of a write, parsed; `Null` for reads.
    pub body: Value,
    /// Since the fake started.
    pub at: Duration,
}

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (at, method, path, query) =
            (self.at.as_secs_f64(), &self.method, &self.path, &self.query);
        write!(f, "{at:>8.3}s {method} {path}?{query} -> {}", self.status)
    }
}

/// One change, as watches see it.
struct Change {
    rv: u64,
    plural: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// A field of an object: the keys from the root.
type Path = Vec<String>;
/// Plural, namespace (empty when cluster-scoped), name.
type Key = (&'static str, String, String);

/// An object, and which manager owns each of its fields (server-side apply).
struct Stored(Value, BTreeMap<Path, String>);

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Stored>,
    history: VecDeque<Arc<Change>>,
    requests: Vec<Recorded>,
    missing: HashSet<String>,
    apply_delay: Option<(String, Duration)>,
    get_delay: Option<(String, Duration)>,
}

struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
    started: Instant,
    bookmark_every: Duration,
    held: watch::Sender<HashSet<String>>,
    apply_turn: tokio::sync::Mutex<()>,
}

/// A running fake API server; it stops when dropped (printing its last requests when dropped
/// by a failing test).
pub struct FakeApi {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
        if std::thread::panicking() {
            let all = self.requests();
            let last: Vec<String> = all.iter().rev().take(60).map(|r| r.to_string()).collect();
            let lines: Vec<&str> = last.iter().rev().map(String::as_str).collect();
            eprintln!(
                "--- fake API: {} requests, the last ---\n{}",
                all.len(),
                lines.join("\n")
            );
        }
    }
}

/// An error, answered as a Kubernetes `Status`: code, reason, message.
type ApiError = (u16, &'static str, String);

fn fail<T>(code: u16, reason: &'static str, message: impl Into<String>) -> Result<T, ApiError> {
    Err((code, reason, message.into()))
}

fn status_of((code, reason, message): &ApiError) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code, "details": {} })
}

fn unknown<T>() -> Result<T, ApiError> {
    fail(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// What a request path names.
struct Target {
    resource: &'static Resource,
    namespace: String,
    name: Option<String>,
    status: bool,
}

impl Target {
    fn new(plural: &str, namespace: Option<&str>, name: &str, status: bool) -> Self {
        let resource = RESOURCES.iter().find(|r| r.2 == plural).expect("served");
        let (namespace, name) = (namespace.unwrap_or_default().into(), Some(name.into()));
        Target {
            resource,
            namespace,
            name,
            status,
        }
    }

    fn key(&self) -> Result<Key, ApiError> {
        match &self.name {
            Some(name) => Ok((self.resource.2, self.namespace.clone(), name.clone())),
            None => fail(405, "MethodNotAllowed", "a name is needed"),
        }
    }

    fn not_found<T>(&self) -> Result<T, ApiError> {
        let (what, name) = (
            self.resource.qualified(),
            self.name.clone().unwrap_or_default(),
        );
        fail(404, "NotFound", format!("{what} \"{name}\" not found"))
    }

    /// Whether a write to this target may change `path`: the status alone (status subresource),
    /// all but the status (a resource with a status subresource), or all; of metadata, only
    /// labels and annotations.
    fn writable(&self, path: &[String]) -> bool {
        let top = path.first().map_or("", String::as_str);
        let in_region = match (self.status, self.resource.5) {
            (true, _) => top == "status",
            (false, true) => top != "status",
            (false, false) => true,
        };
        let second = path.get(1).map_or("", String::as_str);
        let meta_ok = matches!(second, "labels" | "annotations");
        in_region && !matches!(top, "apiVersion" | "kind") && (top != "metadata" || meta_ok)
    }
}

impl FakeApi {
    /// Starts on a loopback port; watches that allow them get a BOOKMARK every 5 s.
    pub async fn start() -> Self {
        Self::start_with(Duration::from_secs(5)).await
    }

    /// Starts on a loopback port; watches that allow them get a BOOKMARK every `bookmark_every`.
    pub async fn start_with(bookmark_every: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                rv: 1,
                ..State::default()
            }),
            changes: broadcast::channel(16_384).0,
            started: Instant::now(),
            bookmark_every,
            held: watch::channel(HashSet::new()).0,
            apply_turn: tokio::sync::Mutex::new(()),
        });
        let server = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = server.clone();
                let svc = service_fn(move |req| {
                    let inner = inner.clone();
                    async move { Ok::<_, Infallible>(inner.serve(req).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        Self { inner, addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig whose current context is this fake (plain HTTP, no credentials).
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let server = self.url();
        let config = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             users:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
        );
        std::fs::write(path, config).expect("write the kubeconfig");
    }

    /// Makes a resource (by plural) answer 404 everywhere, as when its CRD is not installed.
    pub fn set_missing(&self, plural: &str, missing: bool) {
        let mut st = self.inner.state.lock().unwrap();
        match missing {
            true => st.missing.insert(plural.to_owned()),
            false => st.missing.remove(plural),
        };
    }

    /// Makes LISTs of a resource wait (`true`) until released (`false`).
    pub fn hold_lists(&self, plural: &str, hold: bool) {
        self.inner.held.send_modify(|held| {
            match hold {
                true => held.insert(plural.to_owned()),
                false => held.remove(plural),
            };
        });
    }

    /// Delays every server-side apply to a resource by `delay` before it takes effect, one at a
    /// time: an apply that arrives while another waits takes effect `delay` after that one.
    pub fn delay_applies(&self, plural: &str, delay: Duration) {
        self.inner.state.lock().unwrap().apply_delay = Some((plural.to_owned(), delay));
    }

    /// Delays every GET of one named object of a resource by `delay`, each on its own (reads
    /// that arrive together are answered together), so that whatever waits on them overlaps.
    pub fn delay_gets(&self, plural: &str, delay: Duration) {
        self.inner.state.lock().unwrap().get_delay = Some((plural.to_owned(), delay));
    }

    /// Creates an object (its resource from `apiVersion` and `kind`); returns it as stored.
    pub fn create(&self, object: Value) -> Value {
        let (av, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
        let mut served = RESOURCES.iter();
        let found = served.find(|r| Some(r.api_version().as_str()) == av && Some(r.3) == kind);
        let r = found.unwrap_or_else(|| panic!("not a served resource: {av:?} {kind:?}"));
        let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let created = self.inner.create(r, ns.to_owned(), object, "test");
        created.expect("create")
    }

    /// The stored object, if any.
    pub fn get(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = Target::new(plural, namespace, name, false).key().ok()?;
        let st = self.inner.state.lock().unwrap();
        st.objects.get(&key).map(|s| s.0.clone())
    }

    /// Every stored object of a resource, in (namespace, name) order.
    pub fn list(&self, plural: &str) -> Vec<Value> {
        let st = self.inner.state.lock().unwrap();
        let of = st.objects.iter().filter(|((p, _, _), _)| *p == plural);
        of.map(|(_, s)| s.0.clone()).collect()
    }

    /// A JSON merge patch of an object (`status: false`) or its status, as field manager `test`.
    pub fn patch(&self, plural: &str, ns: Option<&str>, name: &str, status: bool, patch: Value) {
        let t = Target::new(plural, ns, name, status);
        let patched = self.inner.write(&t, Write::Merge, patch, "test");
        patched.expect("patch");
    }

    /// Deletes an object; whether it existed.
    pub fn delete(&self, plural: &str, ns: Option<&str>, name: &str) -> bool {
        let t = Target::new(plural, ns, name, false);
        self.inner.delete(&t).is_ok()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    /// How many requests answered so far match `f`.
    pub fn count(&self, f: impl Fn(&Recorded) -> bool) -> usize {
        let st = self.inner.state.lock().unwrap();
        st.requests.iter().filter(|r| f(r)).count()
    }

    /// The server-side applies to `handlepolicies/{name}/status` so far, in order.
    pub fn status_applies(&self, name: &str) -> Vec<Recorded> {
        let suffix = format!("/handlepolicies/{name}/status");
        let mut all = self.requests();
        all.retain(|r| r.path.ends_with(&suffix) && r.content_type.as_deref() == Some(APPLY));
        all
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.state.lock().unwrap().rv
    }
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pairs = q.split('&').filter(|kv| !kv.is_empty());
    let pairs = pairs.map(|kv| kv.split_once('=').unwrap_or((kv, "")));
    pairs.map(|(k, v)| (decode(k), decode(v))).collect()
}

/// Whether `labels` match a selector of `k=v`, `k==v`, `k!=v`, `k` and `!k` terms.
fn selects(selector: &str, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
    let mut terms = selector.split(',').map(str::trim).filter(|t| !t.is_empty());
    terms.all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            label(k) == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(term).is_some()
        }
    })
}

/// A selector term the real API server refuses for an empty key (`=v`, `!=v`, `!`); the
/// fake checks no more of the syntax than that.
fn unparsable_term(selector: &str) -> Option<&str> {
    let mut terms = selector.split(',').map(str::trim).filter(|t| !t.is_empty());
    terms.find(|term| {
        let key = term.split(['=', '!']).find(|k| !k.trim().is_empty());
        key.is_none() || term.starts_with('=') || term.starts_with("!=")
    })
}

/// The object, or its metadata as a `PartialObjectMetadata`.
fn shaped(object: &Value, metadata: bool) -> Value {
    if metadata {
        as_metadata(object)
    } else {
        object.clone()
    }
}

fn as_metadata(object: &Value) -> Value {
    let metadata = &object["metadata"];
    json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata })
}

// Fields: the leaves of an object are its scalars, arrays and empty objects.

fn leaves(v: &Value, prefix: &mut Path, out: &mut Vec<(Path, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push((prefix.clone(), v.clone())),
    }
}

fn leaves_of(v: &Value) -> Vec<(Path, Value)> {
    let mut out = Vec::new();
    leaves(v, &mut Vec::new(), &mut out);
    out
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for k in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = &mut cur[k.as_str()];
    }
    *cur = value;
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if let Some(Value::Object(m)) = parents.iter().try_fold(&mut *v, |v, k| v.get_mut(k)) {
        m.remove(last);
    }
}

/// Everything but metadata and status: what `generation` counts the changes of.
fn spec_of(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// How a write treats the fields it leaves out.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    /// JSON merge patch: they stay.
    Merge,
    /// Server-side apply: those this manager applied before go.
    Apply { force: bool },
    /// PUT: they all go.
    Replace,
}

type Answer = Result<Value, ApiError>;

impl Inner {
    /// Stores an object with the next resourceVersion, and tells the watches.
    fn commit(&self, st: &mut State, key: Key, stored: Stored, kind: &'static str) -> Value {
        let Stored(mut object, mut owners) = stored;
        st.rv += 1;
        object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let (rv, plural, namespace, copy) = (st.rv, key.0, key.1.clone(), object.clone());
        let change = Arc::new(Change {
            rv,
            plural,
            namespace,
            kind,
            object: copy,
        });
        st.history.push_back(change.clone());
        if st.history.len() > HISTORY {
            st.history.pop_front();
        }
        let _ = self.changes.send(change);
        owners.retain(|p, _| get_path(&object, p).is_some());
        match kind {
            "DELETED" => st.objects.remove(&key),
            _ => st.objects.insert(key, Stored(object.clone(), owners)),
        };
        object
    }

    fn create(&self, r: &'static Resource, ns: String, mut object: Value, by: &str) -> Answer {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let name = name.to_owned();
        let ns = if r.4 { ns } else { String::new() };
        if name.is_empty() || (r.4 && ns.is_empty()) {
            return fail(422, "Invalid", "metadata.name and .namespace are required");
        }
        let mut st = self.state.lock().unwrap();
        let key = (r.2, ns.clone(), name.clone());
        if st.objects.contains_key(&key) {
            let message = format!("{} \"{name}\" already exists", r.qualified());
            return fail(409, "AlreadyExists", message);
        }
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
        let now = now.to_string();
        let uid = uuid::Uuid::new_v4().to_string();
        let meta = &mut object["metadata"];
        (meta["uid"], meta["creationTimestamp"], meta["generation"]) =
            (json!(uid), json!(now), json!(1));
        if r.4 {
            meta["namespace"] = json!(ns);
        }
        (object["apiVersion"], object["kind"]) = (json!(r.api_version()), json!(r.3));
        if r.3 == "CustomResourceDefinition" {
            // Established at once (the fake serves only the resources it knows, though).
            object["status"]["conditions"] = json!([{ "type": "Established", "status": "True" }]);
        }
        let fields = leaves_of(&object).into_iter().map(|(p, _)| p);
        let owned = fields.filter(|p| !matches!(p[0].as_str(), "apiVersion" | "kind" | "metadata"));
        let owners = owned.map(|p| (p, by.to_owned())).collect();
        Ok(self.commit(&mut st, key, Stored(object, owners), "ADDED"))
    }

    /// A PATCH or PUT by manager `by`: writes the writable leaves of `body`, drops the fields
    /// `how` drops, and bumps `generation` when the spec changed.
    fn write(&self, t: &Target, how: Write, body: Value, by: &str) -> Answer {
        let key = t.key()?;
        let apply = matches!(how, Write::Apply { .. });
        if apply && (body["apiVersion"].as_str().is_none() || body["kind"].as_str().is_none()) {
            let message = "apiVersion and kind must be set in an apply patch";
            return fail(400, "BadRequest", message);
        }
        let mut st = self.state.lock().unwrap();
        let Some(Stored(old, owners)) = st.objects.get(&key) else {
            if apply && !t.status {
                drop(st);
                let mut object = body;
                object["metadata"]["name"] = json!(key.2);
                return self.create(t.resource, key.1, object, by);
            }
            return t.not_found();
        };
        let (old, mut owners) = (old.clone(), owners.clone());
        let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().map(str::to_owned);
        if how == Write::Replace && rv(&body).is_some_and(|r| Some(r) != rv(&old)) {
            let message = format!("the object {key:?} has been modified");
            return fail(409, "Conflict", message);
        }
        let mut written = leaves_of(&body);
        written.retain(|(p, _)| t.writable(p));
        if how == (Write::Apply { force: false }) {
            let mut conflicts = Vec::new();
            for (p, v) in &written {
                if owners.get(p).is_some_and(|m| m != by) && get_path(&old, p) != Some(v) {
                    conflicts.push(format!("conflict with \"{}\": .{}", owners[p], p.join(".")));
                }
            }
            if !conflicts.is_empty() {
                let (n, all) = (conflicts.len(), conflicts.join(", "));
                let message = format!("Apply failed with {n} conflict(s): {all}");
                return fail(409, "Conflict", message);
            }
        }
        let dropped: Vec<Path> = match how {
            Write::Merge => Vec::new(),
            Write::Apply { .. } => {
                let mine = owners.iter().filter(|o| o.1 == by);
                mine.map(|o| o.0.clone()).collect()
            }
            Write::Replace => leaves_of(&old).into_iter().map(|(p, _)| p).collect(),
        };
        let mut new = old.clone();
        let left_out = |p: &&Path| t.writable(p) && !written.iter().any(|w| w.0 == **p);
        for p in dropped.iter().filter(left_out) {
            remove_path(&mut new, p);
            owners.remove(p);
        }
        for (p, v) in written {
            owners.retain(|o, _| !(o.starts_with(&p) || p.starts_with(o)));
            // A merge of `{}` into an existing object changes nothing.
            let noop = how == Write::Merge && v == json!({}) && get_path(&new, &p).is_some();
            if v.is_null() {
                remove_path(&mut new, &p);
            } else if !noop {
                set_path(&mut new, &p, v);
                owners.insert(p, by.to_owned());
            }
        }
        if spec_of(&old) != spec_of(&new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if new == old {
            st.objects.insert(key, Stored(new.clone(), owners));
            return Ok(new);
        }
        Ok(self.commit(&mut st, key, Stored(new, owners), "MODIFIED"))
    }

    fn delete(&self, t: &Target) -> Answer {
        let key = t.key()?;
        let mut st = self.state.lock().unwrap();
        let Some(Stored(object, _)) = st.objects.get(&key) else {
            return t.not_found();
        };
        let gone = Stored(object.clone(), BTreeMap::new());
        Ok(self.commit(&mut st, key, gone, "DELETED"))
    }

    fn get(&self, t: &Target, metadata: bool) -> Answer {
        let st = self.state.lock().unwrap();
        let Some(Stored(object, _)) = st.objects.get(&t.key()?) else {
            return t.not_found();
        };
        Ok(shaped(object, metadata))
    }

    fn list(&self, t: &Target, q: &BTreeMap<String, String>, metadata: bool) -> Answer {
        let st = self.state.lock().unwrap();
        // A continue token is `RV:NAMESPACE/NAME`, the last item served.
        let token = q.get("continue").filter(|c| !c.is_empty());
        let (list_rv, after) = match token.map(|c| c.split_once(':')) {
            Some(Some((rv, after))) => (rv.to_owned(), Some(after.to_owned())),
            Some(None) => return fail(400, "BadRequest", "invalid continue token"),
            None => (st.rv.to_string(), None),
        };
        let limit = q.get("limit").and_then(|l| l.parse().ok());
        let limit = limit.filter(|l: &usize| *l > 0);
        let selector = q.get("labelSelector").map_or("", String::as_str);
        if let Some(term) = unparsable_term(selector) {
            let message = format!("unable to parse requirement: {term:?}: a label key is empty");
            return fail(400, "BadRequest", &message);
        }
        let (mut items, mut last, mut remaining) = (Vec::new(), String::new(), 0);
        for ((plural, ns, name), Stored(object, _)) in &st.objects {
            let here = format!("{ns}/{name}");
            if *plural != t.resource.2
                || (!t.namespace.is_empty() && *ns != t.namespace)
                || after.as_ref().is_some_and(|a| here <= *a)
                || !selects(selector, &object["metadata"]["labels"])
            {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
            } else {
                items.push(shaped(object, metadata));
                last = here;
            }
        }
        let mut meta = json!({ "resourceVersion": list_rv });
        if remaining > 0 {
            meta["continue"] = json!(format!("{list_rv}:{last}"));
            meta["remainingItemCount"] = json!(remaining);
        }
        let (av, kind) = match metadata {
            true => (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadataList".to_owned(),
            ),
            false => (t.resource.api_version(), format!("{}List", t.resource.3)),
        };
        Ok(json!({ "apiVersion": av, "kind": kind, "metadata": meta, "items": items }))
    }

    /// A watch: the changes after `resourceVersion` (ADDED for every object when it is absent
    /// or 0), then live changes, as newline-delimited JSON.
    fn watch(&self, t: &Target, q: &BTreeMap<String, String>, metadata: bool) -> Response<Body> {
        let (plural, ns) = (t.resource.2, t.namespace.clone());
        let selector = q.get("labelSelector").cloned().unwrap_or_default();
        let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
        let number = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok());
        let timeout = Duration::from_secs(number("timeoutSeconds").unwrap_or(1800));
        let from = number("resourceVersion").unwrap_or(0);
        let (bm_av, bm_kind) = match metadata {
            true => ("meta.k8s.io/v1".to_owned(), "PartialObjectMetadata"),
            false => (t.resource.api_version(), t.resource.3),
        };
        let matches = move |p: &str, namespace: &str, object: &Value| {
            p == plural
                && (ns.is_empty() || ns == namespace)
                && selects(&selector, &object["metadata"]["labels"])
        };
        let event = |kind: &str, object: Value| {
            Bytes::from(format!("{}\n", json!({ "type": kind, "object": object })))
        };
        let line = move |c: &Change| event(c.kind, shaped(&c.object, metadata));
        // The backlog and the subscription are taken under one lock: no change falls between.
        let (backlog, mut live, mut seen) = {
            let st = self.state.lock().unwrap();
            let live = self.changes.subscribe();
            let oldest = st.history.front().map_or(st.rv, |c| c.rv);
            let backlog: Vec<Bytes> = if from == 0 {
                let now = st
                    .objects
                    .iter()
                    .filter(|((p, n, _), s)| matches(p, n, &s.0));
                now.map(|(_, s)| event("ADDED", shaped(&s.0, metadata)))
                    .collect()
            } else if from + 1 < oldest {
                let message = format!("too old resource version: {from} ({oldest})");
                vec![event("ERROR", status_of(&(410, "Expired", message)))]
            } else {
                let after = st.history.iter().filter(|c| c.rv > from);
                let after = after.filter(|c| matches(c.plural, &c.namespace, &c.object));
                after.map(|c| line(c)).collect()
            };
            (backlog, live, st.rv)
        };
        let (mut tx, rx) = futures::channel::mpsc::channel::<Bytes>(256);
        let every = self.bookmark_every;
        tokio::spawn(async move {
            for b in backlog {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                let out = tokio::select! {
                    _ = &mut deadline => return,
                    _ = tick.tick(), if bookmarks => {
                        let meta = json!({ "resourceVersion": seen.to_string() });
                        let object = json!({ "apiVersion": bm_av, "kind": bm_kind, "metadata": meta });
                        event("BOOKMARK", object)
                    }
                    change = live.recv() => match change {
                        Ok(c) => {
                            seen = c.rv;
                            if !matches(c.plural, &c.namespace, &c.object) {
                                continue;
                            }
                            line(&c)
                        }
                        Err(_) => return, // lagged behind or closed: the client watches again
                    },
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        });
        let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let response = Response::builder().header(header::CONTENT_TYPE, "application/json");
        response
            .body(BodyExt::boxed(body))
            .expect("a valid response")
    }

    /// `/api/v1/...` or `/apis/GROUP/VERSION/...`: `[namespaces/NS/]PLURAL[/NAME[/status]]`.
    fn route(&self, path: &str) -> Result<Target, ApiError> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return unknown(),
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => ((*ns).to_owned(), rest),
            _ => (String::new(), rest),
        };
        let (plural, name, sub) = match rest {
            [p] => (*p, None, None),
            [p, n] => (*p, Some((*n).to_owned()), None),
            [p, n, s] => (*p, Some((*n).to_owned()), Some(*s)),
            _ => return unknown(),
        };
        let missing = self.state.lock().unwrap().missing.contains(plural);
        let is = |r: &&Resource| (r.0, r.1, r.2) == (group, version, plural) && !missing;
        let Some(resource) = RESOURCES.iter().find(is) else {
            return unknown();
        };
        let bad_sub = sub.is_some_and(|s| s != "status" || !resource.5);
        if (!namespace.is_empty() && !resource.4) || bad_sub {
            return unknown();
        }
        let status = sub.is_some();
        Ok(Target {
            resource,
            namespace,
            name,
            status,
        })
    }

    /// The discovery documents, for the resources served.
    fn discovery(&self, path: &str) -> Option<Value> {
        let missing = self.state.lock().unwrap().missing.clone();
        let served = RESOURCES.iter().filter(|r| !missing.contains(r.2));
        let served: Vec<&Resource> = served.collect();
        let resources = |group: &str, version: &str| {
            let mut out = Vec::new();
            for r in served.iter().filter(|r| (r.0, r.1) == (group, version)) {
                let (kind, namespaced) = (r.3, r.4);
                let verbs = [
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ];
                out.push(
                    json!({ "name": r.2, "kind": kind, "namespaced": namespaced, "verbs": verbs }),
                );
                if r.5 {
                    let (name, verbs) = (format!("{}/status", r.2), ["get", "patch", "update"]);
                    out.push(json!({ "name": name, "kind": kind, "namespaced": namespaced, "verbs": verbs }));
                }
            }
            let gv = group_version(group, version);
            let list = json!({ "kind": "APIResourceList", "groupVersion": gv, "resources": out });
            (!out.is_empty()).then_some(list)
        };
        let group = |r: &&Resource| {
            let gv = json!({ "groupVersion": r.api_version(), "version": r.1 });
            json!({ "name": r.0, "versions": [gv], "preferredVersion": gv })
        };
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["version"] => Some(json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0" })),
            ["api"] => Some(json!({ "kind": "APIVersions", "versions": ["v1"] })),
            ["apis"] => {
                let mut groups: Vec<Value> = served
                    .iter()
                    .filter(|r| !r.0.is_empty())
                    .map(group)
                    .collect();
                groups.dedup();
                Some(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
            }
            ["api", v] => resources("", v),
            ["apis", g, v] => resources(g, v),
            _ => None,
        }
    }

    /// Test hooks: a delayed apply waits its turn, a delayed GET its time, a held LIST its
    /// release.
    async fn hooks(&self, r: &Recorded, target: Option<&Target>, watch: bool) {
        let plural = target.map_or("", |t| t.resource.2);
        let apply = r.content_type.as_deref() == Some(APPLY);
        let named_get = r.method == Method::GET && target.is_some_and(|t| t.name.is_some());
        let (apply_delay, get_delay) = {
            let st = self.state.lock().unwrap();
            let delay = |d: &Option<(String, Duration)>, when: bool| match d {
                Some((p, delay)) if p == plural && when => Some(*delay),
                _ => None,
            };
            (
                delay(&st.apply_delay, apply),
                delay(&st.get_delay, named_get && !watch),
            )
        };
        if let Some(delay) = apply_delay {
            let _turn = self.apply_turn.lock().await;
            tokio::time::sleep(delay).await;
        }
        if let Some(delay) = get_delay {
            tokio::time::sleep(delay).await;
        }
        if r.method == Method::GET && target.is_some_and(|t| t.name.is_none()) && !watch {
            let mut held = self.held.subscribe();
            let _ = held.wait_for(|held| !held.contains(plural)).await;
        }
    }

    async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes());
        let text = String::from_utf8(bytes.unwrap_or_default().to_vec()).unwrap_or_default();
        let parsed = serde_json::from_str(&text).or_else(|_| serde_saphyr::from_str(&text));
        let header = |h: header::HeaderName| parts.headers.get(h)?.to_str().ok();
        let metadata =
            header(header::ACCEPT).is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let write = parts.method != Method::GET;
        let mut r = Recorded {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            status: 200,
            content_type: header(header::CONTENT_TYPE).map(str::to_owned),
            field_manager: None,
            body: if write {
                parsed.unwrap_or_default()
            } else {
                Value::Null
            },
            at: Duration::ZERO,
        };
        let q = parse_query(&r.query);
        let by = q.get("fieldManager").map_or("unknown", String::as_str);
        r.field_manager = write.then(|| by.to_owned());
        let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let target = self.route(&r.path);
        self.hooks(&r, target.as_ref().ok(), watch).await;

        let discovered = if write { None } else { self.discovery(&r.path) };
        let body = r.body.clone();
        let (created, ok) = (|v| (201, v), |v| (200, v));
        let result = match (discovered, target) {
            (Some(doc), _) => Ok((200, doc)),
            (None, Err(e)) => Err(e),
            (None, Ok(t)) => match (&r.method, t.name.is_some()) {
                (&Method::GET, false) if watch => {
                    let response = self.watch(&t, &q, metadata);
                    self.record(r);
                    return response;
                }
                (&Method::GET, false) => self.list(&t, &q, metadata).map(ok),
                (&Method::GET, true) => self.get(&t, metadata).map(ok),
                (&Method::POST, false) => {
                    let created_as = self.create(t.resource, t.namespace.clone(), body, by);
                    created_as.map(created)
                }
                (&Method::PUT, true) => self.write(&t, Write::Replace, body, by).map(ok),
                (&Method::PATCH, true) => {
                    let force = q.get("force").is_some_and(|f| f == "true");
                    let how = match r.content_type.as_deref().unwrap_or("") {
                        APPLY => Ok(Write::Apply { force }),
                        "application/merge-patch+json" => Ok(Write::Merge),
                        "application/strategic-merge-patch+json" => Ok(Write::Merge),
                        other => fail(415, "UnsupportedMediaType", format!("patch type {other}")),
                    };
                    how.and_then(|how| self.write(&t, how, body, by)).map(ok)
                }
                (&Method::DELETE, true) => self.delete(&t).map(ok),
                (method, _) => fail(405, "MethodNotAllowed", format!("{method} not allowed")),
            },
        };
        let (status, answer) = result.unwrap_or_else(|e| (e.0, status_of(&e)));
        r.status = status;
        self.record(r);
        let response = Response::builder().status(status);
        let response = response.header(header::CONTENT_TYPE, "application/json");
        let body = Full::new(Bytes::from(answer.to_string())).boxed();
        response.body(body).expect("a valid response")
    }

    fn record(&self, mut r: Recorded) {
        r.at = self.started.elapsed();
        self.state.lock().unwrap().requests.push(r);
    }
}

type Body = BoxBody<Bytes, Infallible>;
