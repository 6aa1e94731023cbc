//! The watch cache (kube-apiserver's cacher): one store watch over every stored object
//! keeps an in-memory copy of each served resource, and lists and watches are answered
//! from it instead of the store.
//!
//! - The cache loads everything under `/registry/` at one revision, then follows a single
//!   store watch from the next one. Every change is decoded and serialized once, for all
//!   lists and watchers.
//! - It tracks the store revision it reflects ([`WatchCache::revision`]). A consistent
//!   read (a list with no resourceVersion) first asks the store for its current revision
//!   and waits until the cache has caught up with it, as kube-apiserver's
//!   consistent-list-from-cache does; `resourceVersion=N` waits for N.
//! - Each resource keeps a backlog of recent changes, so a watch from a recent
//!   resourceVersion starts without a store replay. What the cache cannot serve exactly
//!   (a watch from before its backlog, a continue token, an exact-revision list, any read
//!   while it is reloading) goes to the store, so no read is ever stale or short.
//! - A store watch error (compaction under the watch, a lost etcd connection) ends every
//!   cache-fed watch with that error (clients re-list) and the cache reloads.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use skiff_store::{Event, EventKind, RangeOptions, Revision, Store, WatchItem, WatchStream};
use tokio::sync::broadcast;

use crate::resource::Resource;
use crate::selectable::Selectable;

/// The store prefix every object lives under.
const ROOT: &str = "/registry/";
/// Most events kept per resource for watches that start a little in the past.
const BACKLOG_EVENTS: usize = 4096;
/// Batches a watcher may fall behind before it must re-list (410).
const CHANNEL_BATCHES: usize = 1024;

/// One change (or, in the object map, one current object), decoded and serialized once.
pub struct Prepared {
    /// The store key (`/registry/<group>/<plural>/[<ns>/]<name>`).
    pub key: String,
    pub rev: Revision,
    pub kind: EventKind,
    /// The object after a put, or its last state (with the deletion's resourceVersion)
    /// after a delete, decoded, while the one who made it needs it (a create's answer, a
    /// page read from the store). The cache keeps none: its changes and object map keep
    /// the JSON and what selectors read ([`Prepared::obj`] decodes again when asked). A
    /// decoded tree costs ten times its JSON or more (a pod: ~45 KB against ~4 KB).
    decoded: Option<Arc<Value>>,
    /// The object as JSON (a slice of `line`).
    pub obj_json: Bytes,
    /// The watch event line of this change as a watcher without selectors sees it:
    /// `{"type":"ADDED|MODIFIED|DELETED","object":…}\n`.
    pub line: Bytes,
    /// The object's labels and selectable fields.
    pub sel: Arc<Selectable>,
    /// The labels and fields of the state before a put, when there was one (selectors
    /// see transitions). Only changes carry it.
    pub prev: Option<Arc<Selectable>>,
}

impl Prepared {
    /// This change as the cache keeps it: without the decoded object.
    fn lean(&self) -> Prepared {
        Prepared {
            key: self.key.clone(),
            rev: self.rev,
            kind: self.kind,
            decoded: None,
            obj_json: self.obj_json.clone(),
            line: self.line.clone(),
            sel: self.sel.clone(),
            prev: self.prev.clone(),
        }
    }

    /// This change as the object map keeps it: its JSON and selectable fields, without
    /// the decoded object or the state before.
    fn current(&self) -> Prepared {
        Prepared {
            prev: None,
            ..self.lean()
        }
    }

    /// The object's `apiVersion`, `kind` and `metadata` only (what a metadata-only
    /// reader renders), decoded without building the rest.
    pub fn meta_obj(&self) -> Value {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "apiVersion", default)]
            api_version: Value,
            #[serde(default)]
            kind: Value,
            #[serde(default)]
            metadata: Value,
        }
        if let Some(o) = &self.decoded {
            return serde_json::json!({"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": o["metadata"]});
        }
        match serde_json::from_slice::<Head>(&self.obj_json) {
            Ok(h) => {
                serde_json::json!({"apiVersion": h.api_version, "kind": h.kind, "metadata": h.metadata})
            }
            Err(_) => self.value(),
        }
    }

    /// The object, decoded (again, for an entry of the object map).
    pub fn obj(&self) -> Arc<Value> {
        match &self.decoded {
            Some(o) => o.clone(),
            // The JSON was serialized from a Value by this server.
            None => Arc::new(serde_json::from_slice(&self.obj_json).unwrap_or_default()),
        }
    }

    /// The object, owned.
    pub fn value(&self) -> Value {
        match &self.decoded {
            Some(o) => (**o).clone(),
            None => serde_json::from_slice(&self.obj_json).unwrap_or_default(),
        }
    }
}

/// Decodes one store event for `res`; `None` for an undecodable object.
pub fn prepare(res: &Resource, ev: &Event) -> Option<Prepared> {
    prepare_after(res, ev, None)
}

/// [`prepare`], given the selectable fields of the object as the previous change left
/// it (`known`, with its revision) when the caller has them: a put's state before then
/// needs no decoding.
fn prepare_after(
    res: &Resource,
    ev: &Event,
    known: Option<(Revision, Arc<Selectable>)>,
) -> Option<Prepared> {
    let (obj, prev) = match ev.kind {
        EventKind::Put => (
            crate::storage::decode_as(res, &ev.kv).ok()?,
            ev.prev_kv.as_ref().and_then(|p| match known {
                Some((rev, sel)) if rev == p.mod_revision => Some(sel),
                _ => crate::storage::decode_as(res, p)
                    .ok()
                    .map(|o| Arc::new(Selectable::of(res, &o))),
            }),
        ),
        EventKind::Delete => {
            let mut prev = crate::storage::decode_as(res, ev.prev_kv.as_ref()?).ok()?;
            skiff_meta::object::set_rv(&mut prev, ev.revision());
            (prev, None)
        }
    };
    let (line, obj_json) = event_line(natural_type(ev.kind, prev.is_some()), &obj)?;
    Some(Prepared {
        key: String::from_utf8_lossy(&ev.kv.key).into_owned(),
        rev: ev.revision(),
        kind: ev.kind,
        obj_json,
        line,
        sel: Arc::new(Selectable::of(res, &obj)),
        decoded: None,
        prev,
    })
}

/// The watch event type of a change seen without selectors.
pub fn natural_type(kind: EventKind, had_prev: bool) -> &'static str {
    match (kind, had_prev) {
        (EventKind::Put, false) => "ADDED",
        (EventKind::Put, true) => "MODIFIED",
        (EventKind::Delete, _) => "DELETED",
    }
}

/// A watch event line for `obj` and the object's JSON within it.
fn event_line(ty: &str, obj: &Value) -> Option<(Bytes, Bytes)> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(ty.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    let start = line.len();
    serde_json::to_writer(&mut line, obj).ok()?;
    let end = line.len();
    line.extend_from_slice(b"}\n");
    // The cache keeps this line as long as the object lives: without the slack the
    // doubling growth left (up to half of it; a third on average).
    line.shrink_to_fit();
    let line = Bytes::from(line);
    Some((line.clone(), line.slice(start..end)))
}

/// A current object of `res` as a list item (and as the change that created it).
pub fn listed(res: &Resource, key: &[u8], rev: Revision, obj: Value) -> Prepared {
    let (line, obj_json) = event_line("ADDED", &obj).unwrap_or_default();
    Prepared {
        key: String::from_utf8_lossy(key).into_owned(),
        rev,
        kind: EventKind::Put,
        obj_json,
        line,
        sel: Arc::new(Selectable::of(res, &obj)),
        decoded: Some(Arc::new(obj)),
        prev: None,
    }
}

pub type Batch = Arc<Vec<Arc<Prepared>>>;

/// What a watcher receives.
#[derive(Clone)]
pub enum Msg {
    Batch(Batch),
    Error(skiff_store::Error),
}

/// Where a watch reads its changes from.
pub enum Source {
    /// Its own store watch (events prepared per watcher).
    Direct(&'static Resource, WatchStream),
    /// The cache: the backlog first, then live batches.
    Shared(VecDeque<Batch>, broadcast::Receiver<Msg>),
}

impl Source {
    /// The next batch of changes; `None` when the source has ended.
    pub async fn next(&mut self) -> Option<Result<Batch, skiff_store::Error>> {
        match self {
            Source::Direct(res, stream) => match stream.recv().await? {
                Ok(events) => Some(Ok(Arc::new(
                    events
                        .iter()
                        .filter_map(|e| prepare(res, e).map(Arc::new))
                        .collect(),
                ))),
                Err(e) => Some(Err(e)),
            },
            Source::Shared(backlog, rx) => {
                if let Some(b) = backlog.pop_front() {
                    return Some(Ok(b));
                }
                match rx.recv().await {
                    Ok(Msg::Batch(b)) => Some(Ok(b)),
                    Ok(Msg::Error(e)) => Some(Err(e)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Some(Err(skiff_store::Error::WatchLagged { missed }))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
        }
    }
}

/// The cached state of one served resource.
struct ResCache {
    /// Current objects by key.
    objects: BTreeMap<String, Arc<Prepared>>,
    /// For pods: the keys of the pods bound to each node ("" for none), so a list of one
    /// node's pods (a kubelet's, the node authorizer's, the scheduler's queue) costs
    /// those pods and not every pod (kube-apiserver's nodeName index).
    by_node: Option<HashMap<String, BTreeSet<String>>>,
    /// Recent batches, oldest first.
    backlog: VecDeque<Batch>,
    backlog_events: usize,
    /// Changes up to this revision are not (or no longer) in the backlog.
    evicted_upto: Revision,
    /// The revision of the last change applied (the load's revision before any): the
    /// objects are as they were at every revision since.
    changed_at: Revision,
    tx: broadcast::Sender<Msg>,
}

/// The node a pod is bound to ("" for none).
fn node_of(p: &Prepared) -> &str {
    p.sel.field("spec.nodeName")
}

/// Whether `res` is the pods resource (whose cache keeps the node index).
fn is_pods(res: &Resource) -> bool {
    res.group.is_empty() && res.plural == "pods"
}

impl ResCache {
    fn new(rev: Revision, res: &Resource) -> ResCache {
        ResCache {
            objects: BTreeMap::new(),
            by_node: is_pods(res).then(HashMap::new),
            backlog: VecDeque::new(),
            backlog_events: 0,
            evicted_upto: rev,
            changed_at: rev,
            tx: broadcast::channel(CHANNEL_BATCHES).0,
        }
    }

    /// Puts `entry` at its key, keeping the node index.
    fn put(&mut self, entry: Arc<Prepared>) {
        if let Some(index) = self.by_node.as_mut() {
            let node = node_of(&entry);
            if let Some(old) = self.objects.get(&entry.key) {
                let was = node_of(old);
                if was != node {
                    if let Some(keys) = index.get_mut(was) {
                        keys.remove(&entry.key);
                        if keys.is_empty() {
                            index.remove(was);
                        }
                    }
                }
            }
            index
                .entry(node.to_string())
                .or_default()
                .insert(entry.key.clone());
        }
        self.objects.insert(entry.key.clone(), entry);
    }

    fn remove(&mut self, key: &str) {
        let Some(old) = self.objects.remove(key) else {
            return;
        };
        if let Some(index) = self.by_node.as_mut() {
            let was = node_of(&old);
            if let Some(keys) = index.get_mut(was) {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(was);
                }
            }
        }
    }

    fn apply(&mut self, batch: Batch) {
        for p in batch.iter() {
            match p.kind {
                EventKind::Put => self.put(Arc::new(p.current())),
                EventKind::Delete => {
                    self.remove(&p.key);
                }
            }
        }
        if let Some(last) = batch.last() {
            self.changed_at = last.rev;
        }
        self.backlog_events += batch.len();
        self.backlog.push_back(batch.clone());
        while self.backlog_events > BACKLOG_EVENTS {
            let Some(old) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_events -= old.len();
            if let Some(last) = old.last() {
                self.evicted_upto = last.rev;
            }
        }
        let _ = self.tx.send(Msg::Batch(batch));
    }
}

struct State {
    /// Loaded and following the store.
    ready: bool,
    /// Every store change up to this revision is reflected.
    rev: Revision,
    caches: Vec<ResCache>,
}

struct Shared {
    state: Mutex<State>,
    /// The reflected revision, for readers waiting to be fresh (0 while not ready).
    applied: tokio::sync::watch::Sender<Revision>,
    /// The cache index (or indices: core and events.k8s.io Events share storage) of
    /// each storage prefix.
    by_prefix: HashMap<String, Vec<usize>>,
    /// The resource of each cache index.
    resources: Vec<&'static Resource>,
    /// Asks the store watch for a progress notification (etcd).
    progress: Mutex<Option<Arc<tokio::sync::Notify>>>,
    /// Creates this server is making, by store key: the store event of each is answered
    /// with the object the registry built instead of decoding the stored bytes again
    /// ([`WatchCache::creating`]).
    pending: Mutex<HashMap<String, Arc<PendingCreate>>>,
    /// The rest of recent paginated lists, for their next pages.
    snapshots: Mutex<VecDeque<ListSnapshot>>,
}

/// What follows a paginated list's first page, as it was at the list's revision: its next
/// pages are cut from it while the objects change (kube-apiserver serves continuations
/// from snapshots of its cache the same way, KEP-4568). Shared entries, not copies.
struct ListSnapshot {
    index: usize,
    prefix: String,
    rev: Revision,
    /// The objects under `prefix` with keys after this one, by key.
    after: String,
    items: Arc<Vec<Arc<Prepared>>>,
    taken: std::time::Instant,
}

/// At most this many list snapshots are kept...
const SNAPSHOTS: usize = 16;
/// ...each for this long (a client pages through a list in less; one that takes longer
/// reads its next pages from the store).
const SNAPSHOT_FOR: Duration = Duration::from_secs(60);

/// Pending creates older than this are dropped (their event never came: a reload).
const PENDING_FOR: Duration = Duration::from_secs(30);

/// A create on its way to the store. Whoever needs it first once it is written, the
/// registry for its answer or the cache for its store event, turns it into the one
/// [`Prepared`] both use.
pub struct PendingCreate {
    index: usize,
    res: &'static Resource,
    key: String,
    /// The bytes being stored: the store event matches only if its value is these.
    stored: Vec<u8>,
    obj: Mutex<Option<Value>>,
    done: std::sync::OnceLock<Arc<Prepared>>,
    since: std::time::Instant,
}

impl PendingCreate {
    /// The created object, written at `rev`.
    pub fn finish(&self, rev: Revision) -> Arc<Prepared> {
        self.done
            .get_or_init(|| {
                let mut obj = lock(&self.obj).take().unwrap_or_default();
                skiff_meta::object::set_rv(&mut obj, rev);
                Arc::new(listed(self.res, self.key.as_bytes(), rev, obj))
            })
            .clone()
    }
}

/// A reader waiting this long for the cache asks the store for progress...
const PROGRESS_AFTER: Duration = Duration::from_millis(10);
/// ...and again this often while it waits.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The server's watch cache. Cloning shares it.
#[derive(Clone)]
pub struct WatchCache {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `/registry/<group>/<plural>/` of a key.
fn storage_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ROOT)?;
    let group_end = rest.find('/')?;
    let plural_end = rest[group_end + 1..].find('/')?;
    Some(&key[..ROOT.len() + group_end + 1 + plural_end + 1])
}

/// A page of a list as the watch cache holds its items (each with its JSON), from the
/// cache or read from the store.
pub struct ItemPage {
    pub items: Vec<Arc<Prepared>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// Items of a list served from the cache.
pub struct CachedList {
    pub items: Vec<Arc<Prepared>>,
    /// The revision the list reflects.
    pub revision: Revision,
    /// More matching items follow the last one (the list was cut at its limit).
    pub more: bool,
}

impl WatchCache {
    /// Starts loading and following `store` for every stored one of `served` (those
    /// that can be listed); serves reads once loaded. Ends when `shutdown` changes or
    /// the store closes.
    pub fn start(
        store: Arc<dyn Store>,
        served: &'static [Resource],
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> WatchCache {
        let mut by_prefix: HashMap<String, Vec<usize>> = HashMap::new();
        let resources: Vec<&'static Resource> = served
            .iter()
            .filter(|r| r.verbs().contains(&"list"))
            .collect();
        for (i, res) in resources.iter().enumerate() {
            by_prefix
                .entry(crate::storage::prefix(res, None))
                .or_default()
                .push(i);
        }
        let caches = resources.iter().map(|r| ResCache::new(0, r)).collect();
        let cache = WatchCache {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ready: false,
                    rev: 0,
                    caches,
                }),
                applied: tokio::sync::watch::channel(0).0,
                by_prefix,
                resources,
                progress: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                snapshots: Mutex::new(VecDeque::new()),
            }),
        };
        tokio::spawn(cache.clone().run(store, shutdown));
        cache
    }

    /// Waits (up to `timeout`) until the cache reflects at least revision `rev`; false
    /// if it does not by then (or is reloading).
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> bool {
        let mut rx = self.shared.applied.subscribe();
        let fresh = |r: &Revision| *r > 0 && *r >= rev;
        if fresh(&rx.borrow_and_update()) {
            return true;
        }
        // Writes the cache's watch does not cover (other users of a shared etcd) move
        // the revision without events: after a moment without catching up, ask the
        // store for progress, as kube-apiserver does for consistent reads.
        let progress = lock(&self.shared.progress).clone();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ask_after = PROGRESS_AFTER;
        loop {
            let until = match &progress {
                Some(_) => deadline.min(tokio::time::Instant::now() + ask_after),
                None => deadline,
            };
            match tokio::time::timeout_at(until, rx.wait_for(fresh)).await {
                Ok(Ok(_)) => return true,
                Ok(Err(_)) => return false,
                Err(_) if tokio::time::Instant::now() >= deadline => return false,
                Err(_) => {
                    if let Some(p) = &progress {
                        p.notify_one();
                    }
                    ask_after = PROGRESS_EVERY;
                }
            }
        }
    }

    /// Every change up to `rev` has been delivered (a progress notification).
    fn progressed(&self, rev: Revision) {
        let mut s = lock(&self.shared.state);
        if s.ready && rev > s.rev {
            s.rev = rev;
            self.shared.applied.send_replace(rev);
        }
    }

    /// Tells the cache that this server is about to store `stored` (the stored form of
    /// `obj`, an object of `res` without a resourceVersion) at `key` as a create, so its
    /// store event needs no decoding. The registry calls [`PendingCreate::finish`] once
    /// the write succeeded, or [`WatchCache::create_failed`]. `obj` comes back for a
    /// resource the cache does not hold.
    pub fn creating(
        &self,
        res: &Resource,
        key: String,
        stored: Vec<u8>,
        obj: Value,
    ) -> Result<Arc<PendingCreate>, Value> {
        let Some(index) = self.index(res) else {
            return Err(obj);
        };
        let p = Arc::new(PendingCreate {
            index,
            res: self.shared.resources[index],
            key: key.clone(),
            stored,
            obj: Mutex::new(Some(obj)),
            done: std::sync::OnceLock::new(),
            since: std::time::Instant::now(),
        });
        lock(&self.shared.pending).insert(key, p.clone());
        Ok(p)
    }

    /// The create `p` was refused by the store.
    pub fn create_failed(&self, p: &Arc<PendingCreate>) {
        let mut m = lock(&self.shared.pending);
        if m.get(&p.key).is_some_and(|q| Arc::ptr_eq(p, q)) {
            m.remove(&p.key);
        }
    }

    fn index(&self, res: &Resource) -> Option<usize> {
        self.shared
            .by_prefix
            .get(&crate::storage::prefix(res, None))?
            .iter()
            .copied()
            .find(|&i| *self.shared.resources[i] == *res)
    }

    /// The objects of `res` under `prefix` that `keep` accepts, at most `limit` (0: all);
    /// `None` while the cache is reloading. With `node` (pods only: the selector asks
    /// for `spec.nodeName=<node>`), only that node's pods are looked at. With `from`
    /// (a list's revision and the last key it returned), the next page of that list:
    /// from the snapshot its first page left, or from the cache's objects if they are
    /// as they were at that revision (it has reached it and no object of `res` changed
    /// since); `None` when neither can answer.
    pub fn list(
        &self,
        res: &Resource,
        prefix: &str,
        node: Option<&str>,
        keep: impl Fn(&Selectable) -> bool,
        limit: usize,
        from: Option<(Revision, &str)>,
    ) -> Option<CachedList> {
        let i = self.index(res)?;
        if let Some((rev, after)) = from {
            if let Some(list) = self.snapshot_page(i, prefix, rev, after, &keep, limit) {
                return Some(list);
            }
        }
        let s = lock(&self.shared.state);
        if !s.ready {
            return None;
        }
        let c = &s.caches[i];
        let (revision, lower) = match from {
            None => (s.rev, Bound::Included(prefix)),
            Some((rev, _)) if s.rev < rev || c.changed_at > rev => return None,
            Some((rev, after)) if after >= prefix => (rev, Bound::Excluded(after)),
            Some((rev, _)) => (rev, Bound::Included(prefix)),
        };
        let range = (lower, Bound::Unbounded);
        let candidates: Box<dyn Iterator<Item = (&String, &Arc<Prepared>)>> =
            match (node, c.by_node.as_ref()) {
                (Some(node), Some(index)) => Box::new(
                    index
                        .get(node)
                        .into_iter()
                        .flat_map(move |keys| keys.range::<str, _>(range))
                        .filter_map(|k| c.objects.get_key_value(k)),
                ),
                _ => Box::new(c.objects.range::<str, _>(range)),
            };
        let mut items = Vec::new();
        let mut more = false;
        for (key, p) in candidates {
            if !key.starts_with(prefix) {
                break;
            }
            if !keep(&p.sel) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                more = true;
                break;
            }
            items.push(p.clone());
        }
        // The first page of a paginated list: what follows it is kept for its next pages.
        if more && from.is_none() && node.is_none() {
            let after = items.last().map(|p| p.key.clone()).unwrap_or_default();
            let rest: Vec<Arc<Prepared>> = c
                .objects
                .range::<str, _>((Bound::Excluded(after.as_str()), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, p)| p.clone())
                .collect();
            drop(s);
            let mut snaps = lock(&self.shared.snapshots);
            snaps.retain(|x| x.taken.elapsed() < SNAPSHOT_FOR);
            while snaps.len() >= SNAPSHOTS {
                snaps.pop_front();
            }
            snaps.push_back(ListSnapshot {
                index: i,
                prefix: prefix.to_string(),
                rev: revision,
                after,
                items: Arc::new(rest),
                taken: std::time::Instant::now(),
            });
        }
        Some(CachedList {
            items,
            revision,
            more,
        })
    }

    /// The page after key `after` of a list at `rev` under `prefix`, from its snapshot.
    fn snapshot_page(
        &self,
        index: usize,
        prefix: &str,
        rev: Revision,
        after: &str,
        keep: &impl Fn(&Selectable) -> bool,
        limit: usize,
    ) -> Option<CachedList> {
        let items = lock(&self.shared.snapshots)
            .iter()
            .rev()
            .find(|x| {
                x.index == index
                    && x.rev == rev
                    && x.prefix == prefix
                    && x.after.as_str() <= after
                    && x.taken.elapsed() < SNAPSHOT_FOR
            })?
            .items
            .clone();
        let start = items.partition_point(|p| p.key.as_str() <= after);
        let mut page = Vec::new();
        let mut more = false;
        for p in items[start..].iter().filter(|p| keep(&p.sel)) {
            if limit > 0 && page.len() == limit {
                more = true;
                break;
            }
            page.push(p.clone());
        }
        Some(CachedList {
            items: page,
            revision: rev,
            more,
        })
    }

    /// One object of `res` by storage key as the cache holds it now: `None` while the
    /// cache is reloading, `Some(None)` when it holds no such object.
    pub fn get(&self, res: &Resource, key: &str) -> Option<Option<Arc<Prepared>>> {
        let i = self.index(res)?;
        let s = lock(&self.shared.state);
        if !s.ready {
            return None;
        }
        Some(s.caches[i].objects.get(key).cloned())
    }

    /// A watch of `res` from its current state: the current objects under `prefix` (for
    /// the initial ADDED events), the revision they reflect, and the changes after it.
    pub fn snapshot(
        &self,
        res: &'static Resource,
        prefix: &str,
    ) -> Option<(Vec<Arc<Prepared>>, Revision, Source)> {
        let i = self.index(res)?;
        let s = lock(&self.shared.state);
        if !s.ready {
            return None;
        }
        let c = &s.caches[i];
        let items = c
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, p)| p.clone())
            .collect();
        Some((
            items,
            s.rev,
            Source::Shared(VecDeque::new(), c.tx.subscribe()),
        ))
    }

    /// The changes of `res` after revision `after`, when the cache still holds them all.
    pub fn changes_after(&self, res: &'static Resource, after: Revision) -> Option<Source> {
        let i = self.index(res)?;
        let s = lock(&self.shared.state);
        let c = &s.caches[i];
        if !s.ready || after < c.evicted_upto {
            return None;
        }
        let backlog = c
            .backlog
            .iter()
            .filter(|b| b.last().is_some_and(|e| e.rev > after))
            .cloned()
            .collect();
        Some(Source::Shared(backlog, c.tx.subscribe()))
    }

    async fn run(self, store: Arc<dyn Store>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut retry = Duration::from_millis(100);
        loop {
            let stream = tokio::select! {
                _ = shutdown.changed() => return,
                loaded = self.load(&store) => loaded,
            };
            let mut stream = match stream {
                Ok(s) => {
                    retry = Duration::from_millis(100);
                    s
                }
                Err(skiff_store::Error::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: loading failed; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let err = 'feed: loop {
                *lock(&self.shared.progress) = stream.progress_requester();
                let err = loop {
                    let next = tokio::select! {
                        _ = shutdown.changed() => return,
                        next = stream.recv_item() => next,
                    };
                    match next {
                        None => return,
                        Some(Ok(WatchItem::Events(events))) => self.apply(&events),
                        Some(Ok(WatchItem::Progress(rev))) => self.progressed(rev),
                        Some(Err(e)) => break e,
                    }
                };
                // Fallen behind under load: the cache takes up the store's history from
                // where it is, while the store still has it. Reloading instead would end
                // every watch it feeds, and every client would list again at once.
                if matches!(err, skiff_store::Error::WatchLagged { .. }) {
                    let from = lock(&self.shared.state).rev + 1;
                    match store.watch(ROOT.as_bytes(), from).await {
                        Ok(s) => {
                            tracing::warn!(error = %err, from, "watch cache: the store watch fell behind; resuming from the store's history");
                            stream = s;
                            continue 'feed;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, from, "watch cache: cannot resume from the store's history")
                        }
                    }
                }
                break 'feed err;
            };
            tracing::warn!(error = %err, "watch cache: store watch ended; reloading");
            self.unload(err);
        }
    }

    /// Loads every object and starts the store watch right after the loaded revision.
    async fn load(&self, store: &Arc<dyn Store>) -> Result<WatchStream, skiff_store::Error> {
        let page = store
            .range(ROOT.as_bytes(), RangeOptions::default())
            .await?;
        let stream = store.watch(ROOT.as_bytes(), page.revision + 1).await?;
        let rev = page.revision;
        let mut caches: Vec<ResCache> = self
            .shared
            .resources
            .iter()
            .map(|r| ResCache::new(rev, r))
            .collect();
        for kv in &page.kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let Some(idx) = storage_prefix(&key).and_then(|p| self.shared.by_prefix.get(p)) else {
                continue;
            };
            for &i in idx {
                let res = self.shared.resources[i];
                if let Ok(obj) = crate::storage::decode_as(res, kv) {
                    caches[i].put(Arc::new(
                        listed(res, &kv.key, kv.mod_revision, obj).current(),
                    ));
                }
            }
        }
        let mut s = lock(&self.shared.state);
        s.caches = caches;
        s.rev = rev;
        s.ready = true;
        self.shared.applied.send_replace(rev);
        Ok(stream)
    }

    fn apply(&self, events: &[Event]) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        // Decode outside the lock (creates this server made come decoded already).
        let mut per: Vec<(usize, Vec<Arc<Prepared>>)> = Vec::new();
        let mut pending = {
            let mut m = lock(&self.shared.pending);
            if m.is_empty() {
                HashMap::new()
            } else {
                std::mem::take(&mut *m)
            }
        };
        // The objects the updates change, as the cache holds them: each update's state
        // before is shared with its previous event rather than decoded again.
        let mut before: HashMap<(usize, String), (Revision, Arc<Selectable>)> = HashMap::new();
        {
            let s = lock(&self.shared.state);
            for ev in events
                .iter()
                .filter(|e| e.kind == EventKind::Put && e.prev_kv.is_some())
            {
                let key = String::from_utf8_lossy(&ev.kv.key);
                let Some(idx) = storage_prefix(&key).and_then(|p| self.shared.by_prefix.get(p))
                else {
                    continue;
                };
                for &i in idx {
                    if let Some(p) = s.caches.get(i).and_then(|c| c.objects.get(key.as_ref())) {
                        before.insert((i, key.to_string()), (p.rev, p.sel.clone()));
                    }
                }
            }
        }
        for ev in events {
            let key = String::from_utf8_lossy(&ev.kv.key);
            let Some(idx) = storage_prefix(&key).and_then(|p| self.shared.by_prefix.get(p)) else {
                continue;
            };
            let created = ev.kind == EventKind::Put && ev.prev_kv.is_none();
            let ours = if created && !pending.is_empty() {
                pending
                    .remove(key.as_ref())
                    .filter(|p| p.stored == ev.kv.value)
            } else {
                None
            };
            for &i in idx {
                let known = before.remove(&(i, key.to_string()));
                let p = match &ours {
                    // The registry keeps the decoded object for its answer; not the cache.
                    Some(p) if p.index == i => Arc::new(p.finish(ev.revision()).lean()),
                    _ => match prepare_after(self.shared.resources[i], ev, known) {
                        Some(p) => Arc::new(p),
                        None => continue,
                    },
                };
                // A later change of the same object in this batch comes after this one.
                if p.kind == EventKind::Put {
                    before.insert((i, key.to_string()), (p.rev, p.sel.clone()));
                }
                match per.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, v)) => v.push(p),
                    None => per.push((i, vec![p])),
                }
            }
        }
        let mut s = lock(&self.shared.state);
        for (i, batch) in per {
            s.caches[i].apply(Arc::new(batch));
        }
        s.rev = last;
        self.shared.applied.send_replace(last);
        drop(s);
        // Creates still on their way go back (unless long gone).
        pending.retain(|_, p| p.since.elapsed() < PENDING_FOR);
        if !pending.is_empty() {
            let mut m = lock(&self.shared.pending);
            for (k, p) in pending {
                m.entry(k).or_insert(p);
            }
        }
    }

    /// Ends every cache-fed watch with `err` and marks the cache as reloading.
    fn unload(&self, err: skiff_store::Error) {
        let mut s = lock(&self.shared.state);
        s.ready = false;
        self.shared.applied.send_replace(0);
        for c in &mut s.caches {
            let _ = c.tx.send(Msg::Error(err.clone()));
            c.objects.clear();
            if let Some(index) = c.by_node.as_mut() {
                index.clear();
            }
            c.backlog.clear();
            c.backlog_events = 0;
            c.tx = broadcast::channel(CHANNEL_BATCHES).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;

    fn cm(ns: &str, name: &str, v: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": {"v": v}}))
        .unwrap_or_default()
    }

    /// A fresh embedded store in a directory of its own (kept while the guard lives),
    /// and the ConfigMap resource.
    type Embedded = (tempfile::TempDir, Arc<dyn Store>, &'static Resource);

    fn embedded() -> Result<Embedded, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(skiff_store::EmbeddedStore::open(
            dir.path(),
            Default::default(),
        )?);
        let cms = lookup("", "v1", "configmaps").ok_or("configmaps")?;
        Ok((dir, store, cms))
    }

    fn names(items: &[Arc<Prepared>]) -> Vec<String> {
        items
            .iter()
            .map(|p| p.sel.field("metadata.name").to_string())
            .collect()
    }

    /// A create this server makes reaches the cache as the object the registry built (no
    /// decoding), identical to what decoding the stored bytes gives; a create whose stored
    /// bytes differ from what was announced is decoded; a refused one leaves nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_hand_their_object_to_the_cache() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, cms) = embedded()?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        let rev0 = store
            .create(b"/registry/core/configmaps/a/x", cm("a", "x", "0"))
            .await?;
        assert!(cache.wait_for(rev0, Duration::from_secs(5)).await);

        let key = "/registry/core/configmaps/a/one".to_string();
        let obj: Value = serde_json::from_slice(&cm("a", "one", "1"))?;
        let bytes = cm("a", "one", "1");
        let pending = cache
            .creating(cms, key.clone(), bytes.clone(), obj)
            .map_err(|_| "not held")?;
        let rev = store.create(key.as_bytes(), bytes).await?;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        let held = cache.get(cms, &key).ok_or("not ready")?.ok_or("missing")?;
        let answered = pending.finish(rev);
        // The same serialization; the entry keeps no decoded object, only its JSON.
        assert_eq!(held.line.as_ptr(), answered.line.as_ptr());
        assert!(held.decoded.is_none() && answered.decoded.is_some());
        let kv = store.get(key.as_bytes()).await?.ok_or("not stored")?;
        assert_eq!(*held.obj(), crate::storage::decode_as(cms, &kv)?);
        assert_eq!(held.obj()["metadata"]["resourceVersion"], rev.to_string());
        let line: Value = serde_json::from_slice(&held.line)?;
        assert_eq!(line["type"], "ADDED");
        assert_eq!(line["object"], *held.obj());

        // Announced one thing, stored another: the cache decodes what was stored.
        let key2 = "/registry/core/configmaps/a/two".to_string();
        let pending = cache
            .creating(
                cms,
                key2.clone(),
                cm("a", "two", "2"),
                serde_json::from_slice(&cm("a", "two", "2"))?,
            )
            .map_err(|_| "not held")?;
        let rev = store
            .create(key2.as_bytes(), cm("a", "two", "other"))
            .await?;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        let held = cache.get(cms, &key2).ok_or("not ready")?.ok_or("missing")?;
        assert_eq!(held.obj()["data"]["v"], "other");
        assert_ne!(held.line.as_ptr(), pending.finish(rev).line.as_ptr());

        // A refused create leaves no pending entry behind.
        let pending = cache
            .creating(cms, key.clone(), cm("a", "one", "9"), json!({}))
            .map_err(|_| "not held")?;
        assert!(store
            .create(key.as_bytes(), cm("a", "one", "9"))
            .await
            .is_err());
        cache.create_failed(&pending);
        assert!(lock(&cache.shared.pending).is_empty());
        // Resources the cache does not hold give the object back.
        let reviews =
            lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews").ok_or("reviews")?;
        assert!(cache
            .creating(reviews, "k".into(), Vec::new(), json!({"a": 1}))
            .is_err_and(|o| o["a"] == 1));
        Ok(())
    }

    /// A real embedded store under the cache: loads, follows, pages, serves watches from
    /// its backlog, and reloads after the store watch fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follows_the_store() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, cms) = embedded()?;
        let evs = lookup("events.k8s.io", "v1", "events").ok_or("events")?;
        let loaded = store
            .create(b"/registry/core/configmaps/a/one", cm("a", "one", "1"))
            .await?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        assert!(cache.wait_for(1, Duration::from_secs(5)).await);
        let all = |prefix: &str| {
            cache
                .list(cms, prefix, None, |_| true, 0, None)
                .ok_or("not ready")
        };
        assert_eq!(names(&all("/registry/core/configmaps/")?.items), ["one"]);

        // Writes after the load are followed, in every namespace and resource.
        store
            .create(b"/registry/core/configmaps/b/two", cm("b", "two", "2"))
            .await?;
        store
            .create(
                b"/registry/core/events/a/e1",
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e1", "namespace": "a"}, "reason": "Started"}))?,
            )
            .await?;
        let rev = store
            .update(
                b"/registry/core/configmaps/a/one",
                cm("a", "one", "1b"),
                None,
            )
            .await?;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        let list = all("/registry/core/configmaps/")?;
        assert_eq!(list.revision, rev);
        assert_eq!(names(&list.items), ["one", "two"]);
        assert_eq!(list.items[0].obj()["data"]["v"], "1b");
        assert_eq!(
            list.items[0].obj()["metadata"]["resourceVersion"],
            rev.to_string()
        );
        assert_eq!(names(&all("/registry/core/configmaps/b/")?.items), ["two"]);
        // events.k8s.io/v1 sees the core event converted.
        let ev = cache
            .list(evs, "/registry/core/events/", None, |_| true, 0, None)
            .ok_or("not ready")?;
        assert_eq!(ev.items[0].obj()["apiVersion"], "events.k8s.io/v1");
        // Limits and selectors.
        let first = cache
            .list(cms, "/registry/core/configmaps/", None, |_| true, 1, None)
            .ok_or("not ready")?;
        assert!(first.more);
        assert_eq!(names(&first.items), ["one"]);
        // The next page, at the first page's revision.
        let after = first.items[0].key.clone();
        let next = |at: Revision| {
            cache.list(
                cms,
                "/registry/core/configmaps/",
                None,
                |_| true,
                1,
                Some((at, after.as_str())),
            )
        };
        let second = next(first.revision).ok_or("not served from the cache")?;
        assert_eq!(names(&second.items), ["two"]);
        assert_eq!((second.revision, second.more), (first.revision, false));
        // Not for a revision before the last change of the resource, nor one not reached.
        assert!(next(loaded).is_none());
        assert!(next(first.revision + 100).is_none());
        let page = cache
            .list(
                cms,
                "/registry/core/configmaps/",
                None,
                |s| s.field("metadata.namespace") == "b",
                1,
                None,
            )
            .ok_or("not ready")?;
        assert!(!page.more);
        assert_eq!(names(&page.items), ["two"]);

        // A snapshot and the changes after it; a watch from a revision in the backlog.
        let (items, at, mut src) = cache
            .snapshot(cms, "/registry/core/configmaps/")
            .ok_or("not ready")?;
        assert_eq!((items.len(), at), (2, rev));
        let mut from_past = cache.changes_after(cms, loaded).ok_or("backlog")?;
        let (del, _) = store
            .delete(b"/registry/core/configmaps/b/two", None)
            .await?;
        let batch = src.next().await.ok_or("ended")??;
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].kind, batch[0].rev), (EventKind::Delete, del));
        assert_eq!(batch[0].obj()["metadata"]["name"], "two");
        let mut seen = Vec::new();
        while seen.last() != Some(&del) {
            let b = from_past.next().await.ok_or("ended")??;
            seen.extend(b.iter().map(|p| p.rev));
        }
        assert_eq!(seen.len(), 3, "two, one updated, two deleted: {seen:?}");
        assert!(cache.wait_for(del, Duration::from_secs(5)).await);
        assert_eq!(names(&all("/registry/core/configmaps/")?.items), ["one"]);
        // The first page's list still pages as it was at its revision, from the snapshot
        // its first page left: "two", deleted since, is its second page.
        let second = next(first.revision).ok_or("no snapshot")?;
        assert_eq!(names(&second.items), ["two"]);
        assert_eq!(second.revision, first.revision);
        // A list that had returned less (its last key before the snapshot's) does not
        // use the snapshot, and the objects changed since: the store answers.
        let before_one = "/registry/core/configmaps/a/";
        assert!(cache
            .list(
                cms,
                "/registry/core/configmaps/",
                None,
                |_| true,
                1,
                Some((first.revision, before_one))
            )
            .is_none());

        // A revision the store has not reached: not fresh.
        assert!(!cache.wait_for(del + 10, Duration::from_millis(100)).await);
        Ok(())
    }

    /// A client paging many lists cannot make the cache keep more than `SNAPSHOTS` of
    /// them: the oldest goes, and its next pages come from elsewhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_snapshots_are_bounded() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, cms) = embedded()?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        let mut last = 0;
        for name in ["a", "b", "c"] {
            last = store
                .create(
                    format!("/registry/core/configmaps/n/{name}").as_bytes(),
                    cm("n", name, "0"),
                )
                .await?;
        }
        assert!(cache.wait_for(last, Duration::from_secs(5)).await);
        let prefix = "/registry/core/configmaps/";
        for _ in 0..(SNAPSHOTS * 3) {
            let first = cache
                .list(cms, prefix, None, |_| true, 1, None)
                .ok_or("not ready")?;
            assert!(first.more);
        }
        assert_eq!(lock(&cache.shared.snapshots).len(), SNAPSHOTS);
        Ok(())
    }

    /// Past the backlog, a watch must read the store: the cache says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watches_from_before_the_backlog_go_to_the_store(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, cms) = embedded()?;
        let first = store
            .create(b"/registry/core/configmaps/a/c", cm("a", "c", "0"))
            .await?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        assert!(cache.wait_for(first, Duration::from_secs(5)).await);
        // Loaded at `first`: nothing before it is in the backlog.
        assert!(cache.changes_after(cms, first - 1).is_none());
        assert!(cache.changes_after(cms, first).is_some());
        let mut last = first;
        for i in 0..(BACKLOG_EVENTS + 10) {
            last = store
                .update(
                    b"/registry/core/configmaps/a/c",
                    cm("a", "c", &i.to_string()),
                    None,
                )
                .await?;
        }
        assert!(cache.wait_for(last, Duration::from_secs(20)).await);
        assert!(cache.changes_after(cms, first).is_none());
        assert!(cache.changes_after(cms, last - 100).is_some());
        Ok(())
    }

    #[test]
    fn storage_prefixes() {
        assert_eq!(
            storage_prefix("/registry/core/pods/default/web"),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            storage_prefix("/registry/core/nodes/n1"),
            Some("/registry/core/nodes/")
        );
        assert_eq!(storage_prefix("/registry/core"), None);
        assert_eq!(storage_prefix("/other/core/pods/x"), None);
    }

    /// An update's state before (what selectors read of it) is the previous change's,
    /// shared and not decoded again; the object map keeps no decoded object.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_updates_state_before_is_the_previous_object(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, cms) = embedded()?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        let key = b"/registry/core/configmaps/a/x";
        let labelled = |v: &str| {
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "x", "namespace": "a", "labels": {"v": v}}}))
            .unwrap_or_default()
        };
        let r0 = store.create(key, labelled("0")).await?;
        assert!(cache.wait_for(r0, Duration::from_secs(5)).await);
        let mut changes = cache.changes_after(cms, r0).ok_or("backlog")?;
        let created = cache
            .get(cms, "/registry/core/configmaps/a/x")
            .ok_or("not ready")?
            .ok_or("missing")?;
        assert!(created.decoded.is_none());
        let r1 = store.update(key, labelled("1"), Some(r0)).await?;
        let r2 = store.update(key, labelled("2"), Some(r1)).await?;
        let r3 = store.update(key, labelled("3"), Some(r2)).await?;
        assert!(cache.wait_for(r3, Duration::from_secs(5)).await);
        let mut seen: Vec<Arc<Prepared>> = Vec::new();
        while seen.len() < 3 {
            let batch = changes.next().await.ok_or("ended")??;
            seen.extend(batch.iter().cloned());
        }
        assert!(Arc::ptr_eq(
            seen[0].prev.as_ref().ok_or("prev")?,
            &created.sel
        ));
        for w in seen.windows(2) {
            let prev = w[1].prev.as_ref().ok_or("no state before")?;
            assert!(
                Arc::ptr_eq(prev, &w[0].sel),
                "decoded again at {}",
                w[1].rev
            );
        }
        assert_eq!(seen[2].prev.as_ref().ok_or("prev")?.label("v"), Some("2"));
        assert!(seen.iter().all(|p| p.decoded.is_none()));
        let held = cache
            .get(cms, "/registry/core/configmaps/a/x")
            .ok_or("not ready")?
            .ok_or("missing")?;
        assert!(Arc::ptr_eq(&held.sel, &seen[2].sel));
        assert!(held.decoded.is_none());
        assert_eq!(held.obj()["metadata"]["labels"]["v"], "3");
        Ok(())
    }

    /// The pods cache keeps its node index as pods are made, bound and deleted, and a
    /// list of one node's pods reads only those.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_nodes_pods_come_from_the_node_index() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, store, _) = embedded()?;
        let pods = lookup("", "v1", "pods").ok_or("pods")?;
        let pod = |name: &str, node: Option<&str>| {
            let mut p = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "a"}, "spec": {"containers": []}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            serde_json::to_vec(&p).unwrap_or_default()
        };
        let key = |name: &str| format!("/registry/core/pods/a/{name}");
        store
            .create(key("p1").as_bytes(), pod("p1", Some("n1")))
            .await?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        store
            .create(key("p2").as_bytes(), pod("p2", Some("n2")))
            .await?;
        let r3 = store.create(key("p3").as_bytes(), pod("p3", None)).await?;
        assert!(cache.wait_for(r3, Duration::from_secs(5)).await);
        let on = |node: &str, prefix: &str| -> Result<Vec<String>, Box<dyn std::error::Error>> {
            // `keep` accepts everything: only the index can leave pods out.
            Ok(names(
                &cache
                    .list(pods, prefix, Some(node), |_| true, 0, None)
                    .ok_or("not ready")?
                    .items,
            ))
        };
        assert_eq!(on("n1", "/registry/core/pods/")?, ["p1"]);
        assert_eq!(on("", "/registry/core/pods/a/")?, ["p3"]);
        assert!(on("n1", "/registry/core/pods/b/")?.is_empty());
        // Bound, then deleted: the index follows.
        let r = store
            .update(key("p3").as_bytes(), pod("p3", Some("n1")), None)
            .await?;
        assert!(cache.wait_for(r, Duration::from_secs(5)).await);
        assert_eq!(on("n1", "/registry/core/pods/")?, ["p1", "p3"]);
        assert!(on("", "/registry/core/pods/")?.is_empty());
        let (r, _) = store.delete(key("p1").as_bytes(), None).await?;
        assert!(cache.wait_for(r, Duration::from_secs(5)).await);
        assert_eq!(on("n1", "/registry/core/pods/")?, ["p3"]);
        assert_eq!(on("n2", "/registry/core/pods/")?, ["p2"]);
        Ok(())
    }

    /// A feed from the store that falls behind takes up the store's history where the
    /// cache is: the watches the cache feeds go on without an error, and nothing is
    /// missed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    // Holding the cache's state across the writes is the point: it stalls the feed.
    #[allow(clippy::await_holding_lock)]
    async fn a_lagging_feed_resumes_from_the_stores_history(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(skiff_store::EmbeddedStore::open(
            dir.path(),
            skiff_store::EmbeddedOptions {
                watch_buffer: 2,
                ..Default::default()
            },
        )?);
        let cms = lookup("", "v1", "configmaps").ok_or("configmaps")?;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let cache = WatchCache::start(store.clone(), crate::resources::RESOURCES, stop_rx);
        let r0 = store
            .create(b"/registry/core/configmaps/a/first", cm("a", "first", "0"))
            .await?;
        assert!(cache.wait_for(r0, Duration::from_secs(5)).await);
        let mut watch = cache.changes_after(cms, r0).ok_or("backlog")?;
        // The cache cannot apply while its state is held: the store's buffer of two
        // batches overflows with the writes below.
        let held = lock(&cache.shared.state);
        let mut last = r0;
        for i in 0..20 {
            let name = format!("c{i}");
            last = store
                .create(
                    format!("/registry/core/configmaps/a/{name}").as_bytes(),
                    cm("a", &name, "1"),
                )
                .await?;
        }
        drop(held);
        assert!(cache.wait_for(last, Duration::from_secs(5)).await);
        let mut seen = 0;
        while seen < 20 {
            let batch = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await?
                .ok_or("the watch ended")??;
            seen += batch.len();
        }
        assert_eq!(seen, 20);
        let all = cache
            .list(cms, "/registry/core/configmaps/a/", None, |_| true, 0, None)
            .ok_or("not ready")?;
        assert_eq!(all.items.len(), 21);
        Ok(())
    }
}
