//! Shared informers, work queues and expectations: the machinery every controller
//! stands on, shaped like client-go's (and kube-rs's watcher → reflector → controller).
//!
//! - [`Informer`]: one watch of one resource kind (kube-rs's `watcher`, which re-lists
//!   after a 410 Gone and backs off on errors) feeding a cache that every controller
//!   reads instead of listing, indexed by namespace and by controlling owner (without
//!   managedFields, which no controller reads), and calling the handlers controllers
//!   register to turn a changed object into keys of their work queues. It also records
//!   the highest resourceVersion it has applied, so a controller can tell whether its
//!   own writes are in the cache yet.
//! - [`Queue`]: a deduplicating work queue of object keys: a key is never processed by
//!   two workers at once, a key added while being processed is processed again after,
//!   failures are retried with exponential back-off.
//! - [`Expectations`]: what a controller wrote and has not yet seen in the cache; while
//!   any is outstanding it does not create or delete again (Kubernetes'
//!   ControllerExpectations), so a lagging cache never makes it double-create.
//!
//! - [`Informers`]: the shared set, one informer per kind the controllers and the
//!   scheduler read, started once by the server.
//! - [`event`]: records an Event about an object, aggregated as client-go's recorder does.
//!
//! The controllers (`skiff-controllers`) and the scheduler's loop (`skiff-scheduler`)
//! both stand on this crate; it knows neither.

mod events;
mod informers;
mod pod;

pub use events::event;
pub use informers::{cached, pod_node, Informers, UNBOUND};
pub use pod::{CachedContainer, CachedPod, CachedPodSpec, CachedPodStatus, CachedVolume};

/// PostParams of a write by `field_manager`.
pub fn post_params(field_manager: &str) -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(field_manager.into()),
        ..Default::default()
    }
}

/// PatchParams of a write by `field_manager`.
pub fn patch_params(field_manager: &str) -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(field_manager.into()),
        ..Default::default()
    }
}

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// A controller's handle on a changed object: the object as the cache held it before
/// (None for a new one, and for a deletion), and as it is now (the last state, for a
/// deletion).
pub type Handler<K> = Arc<dyn Fn(Option<&K>, &K) + Send + Sync>;

/// The key of a namespaced (or, with an empty namespace, cluster-scoped) object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of<K: Resource>(obj: &K) -> Key {
        Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
        }
    }

    /// The key of the object's controlling owner, if it is of kind `kind`.
    pub fn controller_of<K: Resource>(obj: &K, kind: &str) -> Option<Key> {
        let r = obj
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))?;
        (r.kind == kind).then(|| Key {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: r.name.clone(),
        })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A future that completes once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What an informer holds: its objects by key, with the indexes kept as they change
/// (by namespace, and by the uid of the controlling owner), so that a controller's
/// read of one namespace or one owner's objects costs what it returns, not the size of
/// the cache.
struct Cache<K> {
    objects: HashMap<Key, Arc<K>>,
    by_namespace: HashMap<String, HashSet<String>>,
    by_controller: HashMap<String, HashSet<Key>>,
    /// The informer's own index, if it has one (pods: by node).
    index: Option<IndexFn<K>>,
    by_index: HashMap<String, HashSet<Key>>,
}

/// An informer's own index: the value an object is found under, if any.
pub type IndexFn<K> = fn(&K) -> Option<String>;

impl<K> Cache<K> {
    fn new(index: Option<IndexFn<K>>) -> Self {
        Cache {
            objects: HashMap::new(),
            by_namespace: HashMap::new(),
            by_controller: HashMap::new(),
            index,
            by_index: HashMap::new(),
        }
    }
}

fn unindex(map: &mut HashMap<String, HashSet<Key>>, value: &str, key: &Key) {
    if let Some(keys) = map.get_mut(value) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(value);
        }
    }
}

fn controller_uid<K: Resource>(o: &K) -> Option<&str> {
    o.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

impl<K: Resource> Cache<K> {
    /// Adds or replaces `obj`; the object it replaced.
    fn insert(&mut self, obj: Arc<K>) -> Option<Arc<K>> {
        let key = Key::of(obj.as_ref());
        let old = self.remove(&key);
        self.by_namespace
            .entry(key.namespace.clone())
            .or_default()
            .insert(key.name.clone());
        if let Some(uid) = controller_uid(obj.as_ref()) {
            self.by_controller
                .entry(uid.to_string())
                .or_default()
                .insert(key.clone());
        }
        if let Some(v) = self.index.and_then(|f| f(obj.as_ref())) {
            self.by_index.entry(v).or_default().insert(key.clone());
        }
        self.objects.insert(key, obj);
        old
    }

    /// Removes the object at `key`; what was there.
    fn remove(&mut self, key: &Key) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        if let Some(names) = self.by_namespace.get_mut(&key.namespace) {
            names.remove(&key.name);
            if names.is_empty() {
                self.by_namespace.remove(&key.namespace);
            }
        }
        if let Some(uid) = controller_uid(old.as_ref()) {
            unindex(&mut self.by_controller, uid, key);
        }
        if let Some(v) = self.index.and_then(|f| f(old.as_ref())) {
            unindex(&mut self.by_index, &v, key);
        }
        Some(old)
    }
}

/// What a cached object keeps: controllers never read managedFields, so the cache
/// does not hold them (kube-rs's reflector transforms, client-go's TransformFunc); a
/// pod is decoded as a [`CachedPod`], which holds only what the controllers and the
/// scheduler read.
fn trim<K: Resource + 'static>(mut o: K) -> K {
    o.meta_mut().managed_fields = None;
    if let Some(pod) = (&mut o as &mut dyn std::any::Any).downcast_mut::<CachedPod>() {
        pod.shrink();
    }
    o
}

/// One watch of one kind, its cache, and the handlers told of every change.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    cache: Arc<std::sync::RwLock<Cache<K>>>,
    handlers: Arc<Mutex<Vec<Handler<K>>>>,
    revision: watch::Receiver<u64>,
    synced: watch::Receiver<bool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            cache: self.cache.clone(),
            handlers: self.handlers.clone(),
            revision: self.revision.clone(),
            synced: self.synced.clone(),
        }
    }
}

fn revision_of<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` (with `config`'s selectors) until `stop`.
    pub fn spawn(api: Api<K>, config: watcher::Config, stop: watch::Receiver<bool>) -> Self {
        Self::spawn_indexed(api, config, stop, None)
    }

    /// [`Informer::spawn`], its cache also indexed by `index` ([`Informer::indexed`]).
    pub fn spawn_indexed(
        api: Api<K>,
        config: watcher::Config,
        stop: watch::Receiver<bool>,
        index: Option<IndexFn<K>>,
    ) -> Self {
        let cache = Arc::new(std::sync::RwLock::new(Cache::new(index)));
        let handlers: Arc<Mutex<Vec<Handler<K>>>> = Arc::default();
        let (rev_tx, revision) = watch::channel(0u64);
        let (synced_tx, synced) = watch::channel(false);
        let (h, writer) = (handlers.clone(), cache.clone());
        let kind = K::kind(&()).to_string();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let stop = stopped(stop);
            tokio::pin!(stop);
            // A re-list: what it brought so far (the cache takes it whole at its end).
            let mut listed: Vec<Arc<K>> = Vec::new();
            loop {
                let ev = tokio::select! {
                    _ = &mut stop => break,
                    ev = stream.next() => ev,
                };
                let ev = match ev {
                    None => break,
                    Some(Ok(ev)) => ev,
                    Some(Err(e)) => {
                        tracing::debug!(kind = %kind, error = %e, "watch");
                        continue;
                    }
                };
                let bump = |o: &K| {
                    let rv = revision_of(o);
                    rev_tx.send_if_modified(|r| {
                        let newer = rv > *r;
                        if newer {
                            *r = rv;
                        }
                        newer
                    });
                };
                // (before, now) of every object that changed.
                let changed: Vec<(Option<Arc<K>>, Arc<K>)> = match ev {
                    Event::Apply(o) => {
                        let o = Arc::new(trim(o));
                        let before = writer.write().ok().and_then(|mut c| c.insert(o.clone()));
                        bump(&o);
                        vec![(before, o)]
                    }
                    Event::Delete(o) => {
                        let o = Arc::new(trim(o));
                        if let Ok(mut c) = writer.write() {
                            c.remove(&Key::of(o.as_ref()));
                        }
                        bump(&o);
                        vec![(None, o)]
                    }
                    Event::Init => {
                        listed.clear();
                        Vec::new()
                    }
                    // What the re-list brings counts as seen only once the cache holds
                    // it (expectations read the revision, then the cache).
                    Event::InitApply(o) => {
                        listed.push(Arc::new(trim(o)));
                        Vec::new()
                    }
                    Event::InitDone => {
                        let mut fresh = Cache::new(index);
                        for o in &listed {
                            fresh.insert(o.clone());
                        }
                        // Everything listed may have changed; whatever is gone was
                        // deleted while the watch was down.
                        let mut before = match writer.write() {
                            Ok(mut c) => std::mem::replace(&mut *c, fresh),
                            Err(_) => Cache::new(index),
                        };
                        listed.iter().for_each(|o| bump(o));
                        synced_tx.send_replace(true);
                        let mut changed: Vec<(Option<Arc<K>>, Arc<K>)> =
                            std::mem::take(&mut listed)
                                .into_iter()
                                .map(|o| (before.objects.remove(&Key::of(o.as_ref())), o))
                                .collect();
                        changed.extend(before.objects.into_values().map(|o| (None, o)));
                        changed
                    }
                };
                if changed.is_empty() {
                    continue;
                }
                let handlers: Vec<Handler<K>> = h.lock().map(|h| h.clone()).unwrap_or_default();
                for (before, now) in &changed {
                    for f in &handlers {
                        f(before.as_deref(), now);
                    }
                }
            }
        });
        Informer {
            cache,
            handlers,
            revision,
            synced,
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Informer<K> {
    /// Calls `f` with every object that changes (added, modified, deleted) from now on.
    pub fn on_change(&self, f: impl Fn(&K) + Send + Sync + 'static) {
        self.on_update(move |_, now| f(now));
    }

    /// Calls `f` with the state before (if the cache held one; None for a deletion)
    /// and now of every object that changes from now on: a handler that files objects
    /// by their labels sees what they were filed under.
    pub fn on_update(&self, f: impl Fn(Option<&K>, &K) + Send + Sync + 'static) {
        if let Ok(mut h) = self.handlers.lock() {
            h.push(Arc::new(f));
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Cache<K>) -> T) -> T {
        match self.cache.read() {
            Ok(c) => f(&c),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Says (at debug) that a caller read the whole cache: what a bounded-work check
    /// counts.
    fn scanned(&self, objects: usize) {
        tracing::debug!(kind = %K::kind(&()), objects, "scanned the whole cache");
    }

    /// Every cached object.
    pub fn state(&self) -> Vec<Arc<K>> {
        let all: Vec<Arc<K>> = self.read(|c| c.objects.values().cloned().collect());
        self.scanned(all.len());
        all
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read(|c| c.objects.len())
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached objects `keep` selects (a pass over the whole cache: for the
    /// periodic passes, not for work per event).
    pub fn select(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        let (n, found) = self.read(|c| {
            let found: Vec<Arc<K>> = c.objects.values().filter(|o| keep(o)).cloned().collect();
            (c.objects.len(), found)
        });
        self.scanned(n);
        found
    }

    /// The cached objects of namespace `ns` (the cluster-scoped ones with "").
    pub fn in_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        self.read(|c| {
            c.by_namespace
                .get(ns)
                .into_iter()
                .flatten()
                .filter_map(|name| {
                    c.objects
                        .get(&Key {
                            namespace: ns.to_string(),
                            name: name.clone(),
                        })
                        .cloned()
                })
                .collect()
        })
    }

    /// The cached objects the informer's own index files under `value`.
    pub fn indexed(&self, value: &str) -> Vec<Arc<K>> {
        self.read(|c| {
            c.by_index
                .get(value)
                .into_iter()
                .flatten()
                .filter_map(|k| c.objects.get(k).cloned())
                .collect()
        })
    }

    /// The cached object at `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<K>> {
        self.read(|c| c.objects.get(key).cloned())
    }

    /// The cached objects of namespace `ns` controlled by the object with `uid`.
    pub fn controlled_by(&self, ns: &str, uid: &str) -> Vec<Arc<K>> {
        self.read(|c| {
            c.by_controller
                .get(uid)
                .into_iter()
                .flatten()
                .filter(|k| k.namespace == ns)
                .filter_map(|k| c.objects.get(k).cloned())
                .collect()
        })
    }

    /// Whether the cache has applied every change up to resourceVersion `rv`.
    pub fn has_seen(&self, rv: u64) -> bool {
        *self.revision.borrow() >= rv
    }

    /// Waits for the first complete list.
    pub async fn synced(&self) {
        let mut s = self.synced.clone();
        let _ = s.wait_for(|s| *s).await;
    }
}

/// One outstanding write.
#[derive(Debug, Clone)]
enum Expect {
    /// The cache must reach this resourceVersion (a create or an update).
    Seen(u64),
    /// The object with this uid must be gone from the cache, or terminating.
    Gone(Key, String),
}

/// How soon a controller waiting on its expectations looks again (the awaited events
/// queue it sooner).
pub const EXPECTATIONS_RECHECK: Duration = Duration::from_secs(1);

/// How long an expectation may stay unmet before it is dropped (a watch that lost the
/// event re-lists long before this).
const EXPECTATION_TTL: Duration = Duration::from_secs(60);

/// What a controller has written to objects of kind `K` and not yet seen in its
/// informer, per controller key.
pub struct Expectations<K: Resource<DynamicType = ()> + Clone + 'static> {
    informer: Informer<K>,
    pending: Mutex<HashMap<Key, Vec<(Expect, Instant)>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Expectations<K> {
    pub fn new(informer: Informer<K>) -> Self {
        Expectations {
            informer,
            pending: Mutex::default(),
        }
    }

    fn add(&self, key: &Key, e: Expect) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(key.clone()).or_default().push((e, Instant::now()));
        }
    }

    /// `key`'s controller created or updated `obj` (as the API returned it).
    pub fn wrote<O: Resource>(&self, key: &Key, obj: &O) {
        self.add(key, Expect::Seen(revision_of(obj)));
    }

    /// `key`'s controller deleted `deleted` (the object it read); `returned` is what the
    /// API answered (the object, when its deletion is graceful or waits on finalizers).
    pub fn deleted<R: Resource>(&self, key: &Key, deleted: &K, returned: Option<&R>) {
        match returned {
            Some(o) if o.meta().deletion_timestamp.is_some() => self.wrote(key, o),
            _ => self.add(
                key,
                Expect::Gone(
                    Key::of(deleted),
                    deleted.meta().uid.clone().unwrap_or_default(),
                ),
            ),
        }
    }

    /// Whether everything `key`'s controller wrote is in the cache (unmet expectations
    /// older than a minute are dropped).
    pub fn satisfied(&self, key: &Key) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return true;
        };
        let Some(list) = p.get_mut(key) else {
            return true;
        };
        list.retain(|(e, at)| {
            at.elapsed() < EXPECTATION_TTL
                && match e {
                    Expect::Seen(rv) => !self.informer.has_seen(*rv),
                    Expect::Gone(k, uid) => self.informer.get(k).is_some_and(|o| {
                        o.meta().uid.as_deref() == Some(uid.as_str())
                            && o.meta().deletion_timestamp.is_none()
                    }),
                }
        });
        if list.is_empty() {
            p.remove(key);
            true
        } else {
            false
        }
    }

    /// Forgets `key` (its object is gone).
    pub fn forget(&self, key: &Key) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(key);
        }
    }
}

#[derive(Default)]
struct QueueState {
    /// Its workers stopped (a lost leadership term): the informers' handlers that
    /// still feed it add nothing.
    closed: bool,
    queue: VecDeque<Key>,
    dirty: HashSet<Key>,
    processing: HashSet<Key>,
    failures: HashMap<Key, u32>,
}

/// A work queue of keys, as client-go's: deduplicated, one worker per key at a time.
#[derive(Default)]
pub struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

impl Queue {
    pub fn new() -> Arc<Queue> {
        Arc::new(Queue::default())
    }

    /// Adds `key` unless it is already waiting (or the queue's workers stopped).
    pub fn add(&self, key: Key) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.closed || !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: Key, delay: Duration) {
        let q = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = q.upgrade() {
                q.add(key);
            }
        });
    }

    async fn get(&self) -> Key {
        loop {
            if let Ok(mut s) = self.state.lock() {
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            self.notify.notified().await;
        }
    }

    fn done(&self, key: &Key) {
        let Ok(mut s) = self.state.lock() else { return };
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// The next back-off for a failing key: 100 ms doubling up to 30 s.
    fn failed(&self, key: &Key) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::from_secs(1);
        };
        let n = s.failures.entry(key.clone()).or_default();
        *n = (*n + 1).min(10);
        Duration::from_millis(100 << (*n - 1)).min(Duration::from_secs(30))
    }

    fn forget(&self, key: &Key) {
        if let Ok(mut s) = self.state.lock() {
            s.failures.remove(key);
        }
    }
}

/// What a reconcile asks for: nothing, or to be run again after a while.
pub type Requeue = Option<Duration>;

/// Runs `workers` workers over `queue` until `stop`, each taking a key and calling
/// `reconcile`; errors are retried with back-off, `Some(d)` runs the key again after `d`.
pub async fn run_workers<F, Fut>(
    name: &'static str,
    queue: Arc<Queue>,
    workers: usize,
    reconcile: F,
    stop: watch::Receiver<bool>,
) where
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, kube::Error>> + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (queue, reconcile, stop) = (queue.clone(), reconcile.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stop = stopped(stop);
            tokio::pin!(stop);
            loop {
                let key = tokio::select! {
                    _ = &mut stop => return,
                    k = queue.get() => k,
                };
                tracing::debug!(controller = name, key = %key, "reconcile");
                match reconcile(key.clone()).await {
                    Ok(after) => {
                        queue.forget(&key);
                        if let Some(d) = after {
                            queue.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        let d = queue.failed(&key);
                        tracing::warn!(controller = name, key = %key, error = %e, retry_in = ?d, "reconcile");
                        queue.add_after(key.clone(), d);
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    if let Ok(mut s) = queue.state.lock() {
        *s = QueueState {
            closed: true,
            ..Default::default()
        };
    }
}

/// Adds every object of `informer` to `queue` every `period` (the safety net under the
/// event-driven triggers), until `stop`.
pub async fn resync<K: Resource<DynamicType = ()> + Clone + 'static>(
    informer: Informer<K>,
    queue: Arc<Queue>,
    period: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stopped(stop);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                for o in informer.state() {
                    queue.add(Key::of(o.as_ref()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        Key {
            namespace: "ns".into(),
            name: n.into(),
        }
    }

    #[test]
    fn the_cache_keeps_its_indexes_as_objects_change() {
        let pod =
            |ns: &str, name: &str, owner: Option<&str>, node: Option<&str>| -> Arc<CachedPod> {
                let refs: Vec<serde_json::Value> = owner
                    .map(|u| {
                        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": u, "controller": true})
                    })
                    .into_iter()
                    .collect();
                Arc::new(
                    serde_json::from_value(serde_json::json!({
                        "metadata": {"namespace": ns, "name": name, "ownerReferences": refs,
                                     "managedFields": [{"manager": "x"}]},
                        "spec": {"containers": [], "nodeName": node},
                    }))
                    .unwrap(),
                )
            };
        let mut c: Cache<CachedPod> = Cache::new(Some(crate::informers::pod_node));
        c.insert(pod("a", "p1", Some("u1"), None));
        c.insert(pod("a", "p2", Some("u1"), Some("n1")));
        c.insert(pod("b", "p1", Some("u2"), Some("n1")));
        let names = |keys: Option<&HashSet<Key>>| {
            let mut v: Vec<String> = keys.into_iter().flatten().map(|k| k.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(c.by_controller.get("u1")), ["a/p1", "a/p2"]);
        assert_eq!(names(c.by_index.get("n1")), ["a/p2", "b/p1"]);
        assert_eq!(c.by_namespace["a"].len(), 2);
        // A change of owner and node moves the object between the index entries.
        c.insert(pod("a", "p2", Some("u3"), Some("n2")));
        assert_eq!(names(c.by_controller.get("u1")), ["a/p1"]);
        assert_eq!(names(c.by_controller.get("u3")), ["a/p2"]);
        assert_eq!(names(c.by_index.get("n1")), ["b/p1"]);
        c.remove(&Key::of(pod("b", "p1", None, None).as_ref()));
        assert!(!c.by_index.contains_key("n1"), "emptied entries go");
        assert!(!c.by_namespace.contains_key("b"));
        assert!(!c.by_controller.contains_key("u2"));
        assert_eq!(c.objects.len(), 2);
        assert!(trim((*pod("a", "x", None, None)).clone())
            .metadata
            .managed_fields
            .is_none());
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_again_after_processing_if_added_meanwhile() {
        let q = Queue::new();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        let a = q.get().await;
        assert_eq!(a, key("a"));
        // Added while processing: not handed out twice at once, but again after done.
        q.add(key("a"));
        assert_eq!(q.get().await, key("b"));
        assert!(q.state.lock().unwrap().queue.is_empty());
        q.done(&a);
        assert_eq!(q.get().await, key("a"));
        q.done(&key("a"));
        q.done(&key("b"));
        assert!(q.state.lock().unwrap().queue.is_empty());
    }

    #[test]
    fn back_off_doubles_up_to_a_limit() {
        let q = Queue::default();
        let k = key("a");
        assert_eq!(q.failed(&k), Duration::from_millis(100));
        assert_eq!(q.failed(&k), Duration::from_millis(200));
        for _ in 0..20 {
            q.failed(&k);
        }
        assert_eq!(q.failed(&k), Duration::from_secs(30));
        q.forget(&k);
        assert_eq!(q.failed(&k), Duration::from_millis(100));
    }
}
