//! The garbage collector, over every listable resource the API serves (found by
//! discovery), as kube-controller-manager's: a metadata-only watch of each resource
//! feeds a graph of objects by uid with their owners and dependents, kept as objects
//! change; a change queues the objects it may concern (the object itself, its
//! dependents when it goes or starts a foreground deletion, its owners waiting in the
//! foreground), and workers look at one object at a time in the graph:
//! - dependents whose owners are all gone are deleted (background); an owner's absence
//!   is confirmed by a live read first;
//! - an owner being deleted with the `orphan` finalizer has its dependents' references
//!   to it removed, then the finalizer;
//! - one with `foregroundDeletion` has its dependents deleted (foreground themselves),
//!   and loses the finalizer once no dependent that blocks owner deletion is left.
//!
//! No pass reads every object: the cost of a change is the objects it concerns.

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, Preconditions};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, ApiCapabilities, Discovery, Scope};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use skiff_informer::{Key, Queue};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The resources served, as discovery last found them.
pub struct Resources {
    pub list: Vec<(ApiResource, ApiCapabilities)>,
}

impl Resources {
    /// Every listable and deletable resource (events.k8s.io's view of Events left out:
    /// it is the core Events again).
    pub async fn discover(client: &Client) -> Result<Resources, kube::Error> {
        let d = Discovery::new(client.clone()).run().await?;
        let mut list = Vec::new();
        for g in d.groups() {
            if g.name() == "events.k8s.io" {
                continue;
            }
            for (ar, caps) in g.recommended_resources() {
                if caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE) {
                    list.push((ar, caps));
                }
            }
        }
        Ok(Resources { list })
    }

    /// The index of the resource of `api_version`/`kind`.
    pub fn index_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.list
            .iter()
            .position(|(ar, _)| ar.kind == kind && ar.group == group)
    }

    /// An Api for one object of resource `i` (namespaced or not).
    pub fn api(&self, client: &Client, i: usize, ns: Option<&str>) -> Api<DynamicObject> {
        let (ar, caps) = &self.list[i];
        match (&caps.scope, ns) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
            _ => Api::all_with(client.clone(), ar),
        }
    }
}

/// One object and the index of its resource in [`Resources::list`].
pub struct Item {
    pub res: usize,
    pub obj: DynamicObject,
}

impl Item {
    pub fn ns(&self) -> Option<&str> {
        self.obj.metadata.namespace.as_deref()
    }
    pub fn name(&self) -> &str {
        self.obj.metadata.name.as_deref().unwrap_or("")
    }
    pub fn uid(&self) -> &str {
        self.obj.metadata.uid.as_deref().unwrap_or("")
    }
    pub fn deleting(&self) -> bool {
        self.obj.metadata.deletion_timestamp.is_some()
    }
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.obj
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|x| x == f)
    }
}

/// Every object of every namespaced resource in namespace `ns`, metadata only.
pub async fn inventory_in(
    client: &Client,
    res: &Resources,
    ns: &str,
) -> Result<Vec<Item>, kube::Error> {
    let mut out = Vec::new();
    for (i, (ar, caps)) in res.list.iter().enumerate() {
        if caps.scope != Scope::Namespaced {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
        // Metadata only (PartialObjectMetadataList): finalizers and deletion are all the
        // namespace controller reads.
        for m in api.list_metadata(&ListParams::default()).await?.items {
            out.push(Item {
                res: i,
                obj: DynamicObject {
                    types: m.types,
                    metadata: m.metadata,
                    data: serde_json::Value::Null,
                },
            });
        }
    }
    Ok(out)
}

/// What a dependent's owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Alive,
    /// The owner is being deleted in the foreground.
    Waiting,
    /// No object has the owner's uid.
    Dangling,
}

/// What the collector does with a dependent, given the states of its owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    DeleteBackground,
    DeleteForeground,
}

/// The real collector's rule: a dependent with a live owner stays; one whose owners
/// are all gone or waiting is deleted, in the foreground if any owner waits.
pub fn verdict(owners: &[OwnerState]) -> Verdict {
    if owners.is_empty() || owners.contains(&OwnerState::Alive) {
        Verdict::Keep
    } else if owners.contains(&OwnerState::Waiting) {
        Verdict::DeleteForeground
    } else {
        Verdict::DeleteBackground
    }
}

/// A resource the collector watches.
pub struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    fn api(&self, client: &Client, ns: Option<&str>) -> Api<DynamicObject> {
        match (self.namespaced, ns) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &self.ar),
            _ => Api::all_with(client.clone(), &self.ar),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}/{}", self.ar.group, self.ar.version, self.ar.plural)
    }
}

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector keeps it: its identity, owners and deletion state.
#[derive(Clone)]
struct Obj {
    kind: Arc<Kind>,
    namespace: Option<String>,
    name: String,
    uid: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Obj {
    fn of(kind: Arc<Kind>, m: ObjectMeta) -> Option<Obj> {
        Some(Obj {
            kind,
            uid: m.uid.filter(|u| !u.is_empty())?,
            namespace: m.namespace,
            name: m.name.unwrap_or_default(),
            resource_version: m.resource_version,
            owners: m.owner_references.unwrap_or_default(),
            finalizers: m.finalizers.unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    fn waits_in_foreground(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        self.kind.api(client, self.namespace.as_deref())
    }
}

/// The objects by uid, and the dependents of each owner uid (kube's uidToNode).
#[derive(Default)]
struct Graph {
    objects: HashMap<String, Obj>,
    dependents: HashMap<String, HashSet<String>>,
    /// Namespaces being deleted.
    terminating: BTreeSet<String>,
}

impl Graph {
    fn unlink(&mut self, obj: &Obj) {
        for r in &obj.owners {
            if let Some(d) = self.dependents.get_mut(&r.uid) {
                d.remove(&obj.uid);
                if d.is_empty() {
                    self.dependents.remove(&r.uid);
                }
            }
        }
    }

    /// Owners of `obj` being deleted in the foreground: they may be waiting on it.
    fn waiting_owners(&self, obj: &Obj) -> Vec<String> {
        obj.owners
            .iter()
            .filter(|r| {
                self.objects
                    .get(&r.uid)
                    .is_some_and(Obj::waits_in_foreground)
            })
            .map(|r| r.uid.clone())
            .collect()
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records `obj` as it is now; returns the uids to look at.
    fn upsert(&mut self, obj: Obj) -> Vec<String> {
        let old = self.objects.remove(&obj.uid);
        let mut todo = Vec::new();
        if let Some(old) = &old {
            self.unlink(old);
            todo.extend(self.waiting_owners(old));
        }
        for r in &obj.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(obj.uid.clone());
        }
        if obj.kind.ar.kind == "Namespace" && obj.kind.ar.group.is_empty() {
            if obj.deleting {
                self.terminating.insert(obj.name.clone());
            } else {
                self.terminating.remove(&obj.name);
            }
        }
        if !obj.owners.is_empty()
            || (obj.deleting && (obj.has_finalizer(ORPHAN) || obj.has_finalizer(FOREGROUND)))
        {
            todo.push(obj.uid.clone());
        }
        // A foreground deletion that starts: its dependents are to go first.
        if obj.waits_in_foreground() && !old.as_ref().is_some_and(Obj::waits_in_foreground) {
            todo.extend(self.dependents_of(&obj.uid));
        }
        todo.extend(self.waiting_owners(&obj));
        self.objects.insert(obj.uid.clone(), obj);
        todo
    }

    /// Forgets a deleted object; returns the uids to look at: its dependents (their
    /// owner may be gone now) and its owners waiting for it.
    fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(obj) = self.objects.remove(uid) else {
            return Vec::new();
        };
        self.unlink(&obj);
        if obj.kind.ar.kind == "Namespace" && obj.kind.ar.group.is_empty() {
            self.terminating.remove(&obj.name);
        }
        let mut todo = self.dependents_of(uid);
        todo.extend(self.waiting_owners(&obj));
        todo
    }

    /// What to do about the object `uid`, read from the graph.
    fn plan(&self, uid: &str) -> Plan {
        let Some(obj) = self.objects.get(uid) else {
            return Plan::Nothing;
        };
        let dependents = || -> Vec<Obj> {
            self.dependents_of(uid)
                .iter()
                .filter_map(|d| self.objects.get(d).cloned())
                .collect()
        };
        if obj.deleting {
            if obj.has_finalizer(ORPHAN) {
                return Plan::Orphan(obj.clone(), dependents());
            }
            if obj.has_finalizer(FOREGROUND) {
                let blocking = dependents().iter().any(|d| {
                    d.owners
                        .iter()
                        .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
                });
                if !blocking {
                    return Plan::DropForeground(obj.clone());
                }
            }
            return Plan::Nothing;
        }
        if obj.owners.is_empty() {
            return Plan::Nothing;
        }
        let states: Vec<OwnerState> = obj
            .owners
            .iter()
            .map(|r| match self.objects.get(&r.uid) {
                Some(o) if o.waits_in_foreground() => OwnerState::Waiting,
                Some(_) => OwnerState::Alive,
                None => OwnerState::Dangling,
            })
            .collect();
        if verdict(&states) == Verdict::Keep {
            return Plan::Nothing;
        }
        Plan::Collect(obj.clone(), states)
    }
}

enum Plan {
    Nothing,
    /// An owner deleted with the orphan finalizer, and its dependents.
    Orphan(Obj, Vec<Obj>),
    /// An owner deleted in the foreground with no blocking dependent left.
    DropForeground(Obj),
    /// A dependent whose owners are gone or waiting, with their states.
    Collect(Obj, Vec<OwnerState>),
}

/// Removes finalizer `f` from the object.
async fn remove_finalizer(client: &Client, obj: &Obj, f: &str) -> Result<(), kube::Error> {
    let left: Vec<&String> = obj.finalizers.iter().filter(|x| *x != f).collect();
    let patch = json!({"metadata": {
        "finalizers": if left.is_empty() { json!(null) } else { json!(left) },
        "resourceVersion": obj.resource_version,
    }});
    ignore_gone(
        obj.api(client)
            .patch(&obj.name, &crate::patch_params(), &Patch::Merge(patch))
            .await,
    )
}

/// A write to an object that is gone meanwhile has nothing left to do.
fn ignore_gone<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A watched kind and its watch task.
type Watched = (Arc<Kind>, tokio::task::AbortHandle);

/// The garbage collector: the graph, its watches and its work queue.
#[derive(Clone)]
pub struct Collector {
    client: Client,
    graph: Arc<Mutex<Graph>>,
    queue: Arc<Queue>,
    /// The kinds watched, by group/version/plural, with their watch tasks.
    watches: Arc<Mutex<HashMap<String, Watched>>>,
    /// Kinds whose first list is in the graph.
    synced: Arc<Mutex<HashSet<String>>>,
    synced_changed: Arc<Notify>,
}

impl Collector {
    pub fn new(client: Client) -> Collector {
        Collector {
            client,
            graph: Arc::default(),
            queue: Queue::new(),
            watches: Arc::default(),
            synced: Arc::default(),
            synced_changed: Arc::default(),
        }
    }

    fn enqueue(&self, uids: Vec<String>) {
        for uid in uids {
            self.queue.add(Key {
                namespace: String::new(),
                name: uid,
            });
        }
    }

    /// Watches every resource of `res` that can be watched (and no other): new ones
    /// start, the objects of ones no longer served leave the graph.
    pub fn watch(&self, res: &Resources, stop: &watch::Receiver<bool>) {
        let wanted: HashMap<String, Arc<Kind>> = res
            .list
            .iter()
            .filter(|(_, caps)| caps.supports_operation(verbs::WATCH))
            .map(|(ar, caps)| {
                let k = Arc::new(Kind {
                    ar: ar.clone(),
                    namespaced: caps.scope == Scope::Namespaced,
                });
                (k.id(), k)
            })
            .collect();
        let Ok(mut watches) = self.watches.lock() else {
            return;
        };
        let gone: Vec<String> = watches
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some((_, task)) = watches.remove(&id) {
                task.abort();
            }
            self.forget_kind(&id, &HashSet::new());
        }
        for (id, kind) in wanted {
            if watches.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(self.clone().watch_kind(kind.clone(), stop.clone()));
            watches.insert(id, (kind, task.abort_handle()));
        }
    }

    /// Drops the objects of kind `id` that are not in `keep`.
    fn forget_kind(&self, id: &str, keep: &HashSet<String>) {
        let todo = {
            let Ok(mut g) = self.graph.lock() else { return };
            let stale: Vec<String> = g
                .objects
                .values()
                .filter(|o| o.kind.id() == id && !keep.contains(&o.uid))
                .map(|o| o.uid.clone())
                .collect();
            stale.iter().flat_map(|u| g.remove(u)).collect()
        };
        self.enqueue(todo);
    }

    async fn watch_kind(self, kind: Arc<Kind>, stop: watch::Receiver<bool>) {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &kind.ar);
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let stop = skiff_informer::stopped(stop);
        tokio::pin!(stop);
        let id = kind.id();
        // The uids a re-list brought: what it did not bring was deleted meanwhile.
        let mut listed: HashSet<String> = HashSet::new();
        loop {
            let ev = tokio::select! {
                _ = &mut stop => return,
                ev = stream.next() => ev,
            };
            let ev = match ev {
                None => return,
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    tracing::debug!(kind = %id, error = %e, "garbage collector watch");
                    continue;
                }
            };
            let todo = match ev {
                Event::Init => {
                    listed.clear();
                    Vec::new()
                }
                Event::InitApply(m) | Event::Apply(m) => {
                    let Some(obj) = Obj::of(kind.clone(), m.metadata) else {
                        continue;
                    };
                    listed.insert(obj.uid.clone());
                    self.graph
                        .lock()
                        .map(|mut g| g.upsert(obj))
                        .unwrap_or_default()
                }
                Event::Delete(m) => {
                    let uid = m.metadata.uid.unwrap_or_default();
                    self.graph
                        .lock()
                        .map(|mut g| g.remove(&uid))
                        .unwrap_or_default()
                }
                Event::InitDone => {
                    self.forget_kind(&id, &std::mem::take(&mut listed));
                    if let Ok(mut s) = self.synced.lock() {
                        s.insert(id.clone());
                    }
                    self.synced_changed.notify_waiters();
                    Vec::new()
                }
            };
            self.enqueue(todo);
        }
    }

    /// The watched kinds whose first list is not in the graph yet.
    fn unsynced(&self) -> Vec<String> {
        let synced = self.synced.lock().map(|s| s.clone()).unwrap_or_default();
        self.watches
            .lock()
            .map(|w| {
                w.keys()
                    .filter(|id| !synced.contains(*id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all_synced(&self) -> bool {
        self.unsynced().is_empty()
    }

    /// Namespaces being deleted, as the graph has them.
    pub fn terminating_namespaces(&self) -> Vec<String> {
        self.graph
            .lock()
            .map(|g| g.terminating.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs the workers until `stop`, once every watch has listed (or after 30 s).
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let wait = async {
            while !self.all_synced() {
                let changed = self.synced_changed.notified();
                if self.all_synced() {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(30), wait) => {}
            _ = skiff_informer::stopped(stop.clone()) => return,
        }
        let missing = self.unsynced();
        let watched = self.watches.lock().map(|w| w.len()).unwrap_or(0);
        if missing.is_empty() {
            tracing::info!(resources = watched, "garbage collector started");
        } else {
            tracing::warn!(resources = watched, unlisted = ?missing,
                "garbage collector started before every resource was listed");
        }
        let this = self.clone();
        skiff_informer::run_workers(
            "garbage-collector",
            self.queue.clone(),
            2,
            move |key| {
                let this = this.clone();
                async move { this.attempt(&key.name).await.map(|()| None) }
            },
            stop,
        )
        .await;
    }

    /// Looks at the object `uid` and does what the graph says it needs.
    async fn attempt(&self, uid: &str) -> Result<(), kube::Error> {
        let plan = self
            .graph
            .lock()
            .map(|g| g.plan(uid))
            .unwrap_or(Plan::Nothing);
        let client = &self.client;
        match plan {
            Plan::Nothing => Ok(()),
            Plan::Orphan(owner, dependents) => {
                for d in dependents {
                    let left: Vec<&OwnerReference> =
                        d.owners.iter().filter(|r| r.uid != owner.uid).collect();
                    let patch = json!({"metadata": {
                        "ownerReferences": if left.is_empty() { json!(null) } else { json!(left) },
                        "resourceVersion": d.resource_version,
                    }});
                    ignore_gone(
                        d.api(client)
                            .patch(&d.name, &crate::patch_params(), &Patch::Merge(patch))
                            .await,
                    )?;
                }
                remove_finalizer(client, &owner, ORPHAN).await
            }
            Plan::DropForeground(owner) => remove_finalizer(client, &owner, FOREGROUND).await,
            Plan::Collect(obj, mut states) => {
                // The graph may not have seen the dependent's latest change yet (an owner
                // deleted with `orphan` releases its dependents just before it goes): act
                // on its live state, as kube's attemptToDeleteItem does. Owners that
                // changed since: its watch event plans it again.
                let Some(live) = obj.api(client).get_opt(&obj.name).await? else {
                    return Ok(());
                };
                let live_owners = live.metadata.owner_references.unwrap_or_default();
                if live.metadata.uid.as_deref() != Some(obj.uid.as_str())
                    || live_owners.len() != obj.owners.len()
                    || live_owners
                        .iter()
                        .zip(&obj.owners)
                        .any(|(a, b)| a.uid != b.uid)
                {
                    return Ok(());
                }
                for (s, r) in states.iter_mut().zip(&obj.owners) {
                    if *s == OwnerState::Dangling
                        && !self.confirmed_gone(obj.namespace.as_deref(), r).await
                    {
                        *s = OwnerState::Alive;
                    }
                }
                let mut dp = match verdict(&states) {
                    Verdict::Keep => return Ok(()),
                    // A pod's own graceful deletion is its foreground.
                    Verdict::DeleteForeground if obj.kind.ar.kind != "Pod" => {
                        DeleteParams::foreground()
                    }
                    _ => DeleteParams::background(),
                };
                // Not if it changed since it was read.
                dp.preconditions = Some(Preconditions {
                    uid: Some(obj.uid.clone()),
                    resource_version: live.metadata.resource_version.clone(),
                });
                match obj.api(client).delete(&obj.name, &dp).await {
                    Ok(_) => {
                        tracing::info!(kind = %obj.kind.ar.kind, namespace = obj.namespace.as_deref().unwrap_or(""),
                            object = %obj.name, owners = ?states, "garbage collected");
                        Ok(())
                    }
                    // Gone, or another object by that name now.
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Whether the owner `r` points at is really gone (a live read, so an owner the
    /// graph has not seen yet is not mistaken for a missing one).
    async fn confirmed_gone(&self, ns: Option<&str>, r: &OwnerReference) -> bool {
        let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let kind = self.watches.lock().ok().and_then(|w| {
            w.values()
                .find(|(k, _)| k.ar.kind == r.kind && k.ar.group == group)
                .map(|(k, _)| k.clone())
        });
        let Some(kind) = kind else {
            return true;
        };
        match kind.api(&self.client, ns).get_opt(&r.name).await {
            Ok(Some(o)) => o.metadata.uid.as_deref() != Some(r.uid.as_str()),
            Ok(None) => true,
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    fn kind(k: &str) -> Arc<Kind> {
        Arc::new(Kind {
            ar: ApiResource {
                group: if k == "ReplicaSet" { "apps" } else { "" }.into(),
                version: "v1".into(),
                api_version: if k == "ReplicaSet" { "apps/v1" } else { "v1" }.into(),
                kind: k.into(),
                plural: format!("{}s", k.to_lowercase()),
            },
            namespaced: k != "Namespace",
        })
    }

    fn obj(
        k: &str,
        uid: &str,
        owners: &[(&str, bool)],
        finalizers: &[&str],
        deleting: bool,
    ) -> Obj {
        Obj {
            kind: kind(k),
            namespace: (k != "Namespace").then(|| "default".to_string()),
            name: uid.to_string(),
            uid: uid.to_string(),
            resource_version: Some("1".into()),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: o.to_string(),
                    uid: o.to_string(),
                    block_owner_deletion: Some(*block),
                    ..Default::default()
                })
                .collect(),
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn the_graph_queues_only_what_a_change_concerns() {
        let mut g = Graph::default();
        // An owner with no owners concerns nobody; its dependents concern themselves.
        assert!(g
            .upsert(obj("ReplicaSet", "rs", &[], &[], false))
            .is_empty());
        assert_eq!(
            g.upsert(obj("Pod", "p1", &[("rs", true)], &[], false)),
            ["p1"]
        );
        assert_eq!(
            g.upsert(obj("Pod", "p2", &[("rs", false)], &[], false)),
            ["p2"]
        );
        // Unrelated objects without owners concern nobody, however many.
        for i in 0..100 {
            assert!(g
                .upsert(obj("ConfigMap", &format!("cm{i}"), &[], &[], false))
                .is_empty());
        }
        assert!(matches!(g.plan("p1"), Plan::Nothing));
        // The owner starts a foreground deletion: its dependents are looked at, and wait.
        let todo = g.upsert(obj("ReplicaSet", "rs", &[], &[FOREGROUND], true));
        assert_eq!(sorted(todo), ["p1", "p2", "rs"]);
        match g.plan("p1") {
            Plan::Collect(o, states) => {
                assert_eq!(o.uid, "p1");
                assert_eq!(states, [OwnerState::Waiting]);
            }
            _ => panic!("p1 should be collected"),
        }
        // p1 blocks the owner; once it is gone, the owner is looked at and may go.
        assert!(matches!(g.plan("rs"), Plan::Nothing));
        assert_eq!(g.remove("p1"), ["rs"]);
        assert!(matches!(g.plan("rs"), Plan::DropForeground(_)));
        // The owner gone: its remaining dependent is looked at, and is dangling.
        assert_eq!(g.remove("rs"), ["p2"]);
        match g.plan("p2") {
            Plan::Collect(_, states) => assert_eq!(states, [OwnerState::Dangling]),
            _ => panic!("p2 should be collected"),
        }
        assert!(g.remove("p2").is_empty());
        assert!(g.dependents.is_empty(), "{:?}", g.dependents);
    }

    #[test]
    fn an_orphaning_owner_plans_its_dependents_release() {
        let mut g = Graph::default();
        g.upsert(obj("ReplicaSet", "rs", &[], &[], false));
        g.upsert(obj("Pod", "p1", &[("rs", true)], &[], false));
        assert_eq!(
            g.upsert(obj("ReplicaSet", "rs", &[], &[ORPHAN], true)),
            ["rs"]
        );
        match g.plan("rs") {
            Plan::Orphan(o, deps) => {
                assert_eq!(o.uid, "rs");
                assert_eq!(deps.len(), 1);
                assert_eq!(deps[0].uid, "p1");
            }
            _ => panic!("rs should orphan its pod"),
        }
        // The pod released: the owner may drop its finalizer, the pod stays.
        let todo = g.upsert(obj("Pod", "p1", &[], &[], false));
        assert!(todo.is_empty(), "{todo:?}");
        match g.plan("rs") {
            Plan::Orphan(_, deps) => assert!(deps.is_empty()),
            _ => panic!("rs still has its finalizer"),
        }
        assert!(matches!(g.plan("p1"), Plan::Nothing));
    }

    #[test]
    fn terminating_namespaces_are_tracked() {
        let mut g = Graph::default();
        let mut ns = obj("Namespace", "team", &[], &["kubernetes"], false);
        ns.name = "team".into();
        g.upsert(ns.clone());
        assert!(g.terminating.is_empty());
        ns.deleting = true;
        g.upsert(ns);
        assert_eq!(g.terminating.iter().collect::<Vec<_>>(), ["team"]);
        g.remove("team");
        assert!(g.terminating.is_empty());
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&[]), Verdict::Keep);
        assert_eq!(verdict(&[Alive, Dangling]), Verdict::Keep);
        assert_eq!(verdict(&[Dangling]), Verdict::DeleteBackground);
        assert_eq!(verdict(&[Dangling, Waiting]), Verdict::DeleteForeground);
        assert_eq!(verdict(&[Waiting, Alive]), Verdict::Keep);
    }
}
