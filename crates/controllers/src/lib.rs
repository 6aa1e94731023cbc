//! skiff-controllers: the control loops that make API objects true, shaped like
//! kube-controller-manager's and kube-scheduler's: shared informers (one watch per
//! resource kind, [`informer`]) feed the caches every controller reads and the work
//! queues of the controllers interested in a change (an owned object's change queues
//! its owner); each controller is a level-triggered reconcile of one object from the
//! caches, with expectations so a lagging cache never makes it create twice, and a
//! periodic resync as a safety net. None relies on having seen every event.
//!
//! The scheduler ([`scheduling`]); the workloads (Deployments, ReplicaSets, ReplicationControllers,
//! StatefulSets, Jobs, CronJobs, DaemonSets); and the cluster loop (garbage collection
//! with its orphan and foreground finalizers, namespace deletion, service accounts and
//! the root CA, endpoints, node lifecycle, persistent volumes and their claims).
//! Controller writes carry the field manager `kube-controller-manager`, the
//! scheduler's `kube-scheduler`, as in Kubernetes.

pub mod cluster;
pub mod cronjobs;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod informer;
pub mod namespaces;
pub mod nodeipam;
pub mod nodes;
pub mod persistentvolumes;
pub mod serviceaccounts;
pub mod statefulsets;

use informer::Informer;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PatchParams, PostParams};
use kube::runtime::watcher;

/// The field manager of controller writes, as kube-controller-manager's.
pub const FIELD_MANAGER: &str = "kube-controller-manager";

/// PostParams of a controller write.
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// PatchParams of a controller write.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// The shared informers: one watch per kind, read by every controller.
#[derive(Clone)]
pub struct Informers {
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub namespaces: Informer<Namespace>,
    pub replicasets: Informer<ReplicaSet>,
    pub replication_controllers: Informer<ReplicationController>,
    pub deployments: Informer<Deployment>,
    pub statefulsets: Informer<StatefulSet>,
    pub revisions: Informer<ControllerRevision>,
    pub daemonsets: Informer<DaemonSet>,
    pub jobs: Informer<Job>,
    pub cronjobs: Informer<CronJob>,
    pub claims: Informer<PersistentVolumeClaim>,
    pub volumes: Informer<PersistentVolume>,
    pub classes: Informer<StorageClass>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub endpoint_slices: Informer<EndpointSlice>,
    pub service_accounts: Informer<ServiceAccount>,
    pub config_maps: Informer<ConfigMap>,
    /// The nodes' Leases (namespace kube-node-lease).
    pub node_leases: Informer<Lease>,
    pub pdbs: Informer<PodDisruptionBudget>,
}

/// Copies of every object an informer holds.
pub fn cached<K: kube::Resource<DynamicType = ()> + Clone + 'static>(i: &Informer<K>) -> Vec<K> {
    i.state().iter().map(|o| (**o).clone()).collect()
}

impl Informers {
    /// Starts every watch; they run until `stop`.
    pub fn spawn(client: &kube::Client, stop: &tokio::sync::watch::Receiver<bool>) -> Informers {
        fn start<K>(client: &kube::Client, stop: &tokio::sync::watch::Receiver<bool>) -> Informer<K>
        where
            K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            Informer::spawn(
                Api::all(client.clone()),
                watcher::Config::default(),
                stop.clone(),
            )
        }
        fn start_ns<K>(
            client: &kube::Client,
            stop: &tokio::sync::watch::Receiver<bool>,
        ) -> Informer<K>
        where
            K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + Sync
                + 'static,
        {
            Informer::spawn(
                Api::all(client.clone()),
                watcher::Config::default(),
                stop.clone(),
            )
        }
        Informers {
            pods: start_ns(client, stop),
            nodes: start(client, stop),
            namespaces: start(client, stop),
            replicasets: start_ns(client, stop),
            replication_controllers: start_ns(client, stop),
            deployments: start_ns(client, stop),
            statefulsets: start_ns(client, stop),
            revisions: start_ns(client, stop),
            daemonsets: start_ns(client, stop),
            jobs: start_ns(client, stop),
            cronjobs: start_ns(client, stop),
            claims: start_ns(client, stop),
            volumes: start(client, stop),
            classes: start(client, stop),
            services: start_ns(client, stop),
            endpoints: start_ns(client, stop),
            endpoint_slices: start_ns(client, stop),
            service_accounts: start_ns(client, stop),
            config_maps: start_ns(client, stop),
            pdbs: start_ns(client, stop),
            node_leases: Informer::spawn(
                Api::namespaced(client.clone(), "kube-node-lease"),
                watcher::Config::default(),
                stop.clone(),
            ),
        }
    }

    /// Waits until every cache holds its first complete list.
    pub async fn synced(&self) {
        self.pods.synced().await;
        self.nodes.synced().await;
        self.namespaces.synced().await;
        self.replicasets.synced().await;
        self.replication_controllers.synced().await;
        self.deployments.synced().await;
        self.statefulsets.synced().await;
        self.revisions.synced().await;
        self.daemonsets.synced().await;
        self.jobs.synced().await;
        self.cronjobs.synced().await;
        self.claims.synced().await;
        self.volumes.synced().await;
        self.classes.synced().await;
        self.services.synced().await;
        self.endpoints.synced().await;
        self.endpoint_slices.synced().await;
        self.service_accounts.synced().await;
        self.config_maps.synced().await;
        self.node_leases.synced().await;
        self.pdbs.synced().await;
    }
}

/// Runs the scheduler, the workload controllers and the cluster loop over one set of
/// shared informers until `shutdown`.
pub async fn run(
    client: kube::Client,
    cluster: cluster::Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let informers = Informers::spawn(&client, &stop);
    let mut tasks = vec![tokio::spawn(scheduling::run(
        client.clone(),
        informers.clone(),
        stop.clone(),
    ))];
    tasks.extend(wiring::start(&client, &informers, &stop));
    tasks.push(tokio::spawn(cluster::run(
        client.clone(),
        cluster,
        informers.clone(),
        stop.clone(),
    )));
    shutdown.await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
}

/// Ticks every `period` until `shutdown` completes: `while t.tick().await { pass }`.
pub struct Ticker<S: std::future::Future<Output = ()>> {
    tick: tokio::time::Interval,
    shutdown: std::pin::Pin<Box<S>>,
}

impl<S: std::future::Future<Output = ()>> Ticker<S> {
    pub fn new(period: std::time::Duration, shutdown: S) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker {
            tick,
            shutdown: Box::pin(shutdown),
        }
    }

    /// Waits for the next tick: true, or false once shut down.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = &mut self.shutdown => false,
            _ = self.tick.tick() => true,
        }
    }
}

/// Records an Event about `involved` (an ObjectReference: apiVersion, kind, name,
/// namespace, uid) from `component`. Repeats of the same event (same object, type,
/// reason, message and source) are one Event whose `count` and `lastTimestamp` grow,
/// as client-go's event correlator aggregates them.
pub async fn event(
    client: &kube::Client,
    involved: serde_json::Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    use std::hash::{Hash, Hasher};
    let ns = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = involved["name"].as_str().unwrap_or("").to_string();
    // The aggregation key names the Event.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        involved["kind"].as_str(),
        involved["uid"].as_str(),
        ty,
        reason,
        message,
        component,
    )
        .hash(&mut h);
    let event_name = format!("{name}.{:016x}", h.finish());
    let now = now();
    let ev = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": event_name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": ty,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), &ns);
    let manager = if component == "default-scheduler" {
        scheduling::FIELD_MANAGER
    } else {
        FIELD_MANAGER
    };
    let pp = PostParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    };
    let Ok(e) = serde_json::from_value(ev) else {
        return;
    };
    match api.create(&pp, &e).await {
        Err(kube::Error::Api(err)) if err.code == 409 => {
            // Seen before: one more occurrence.
            if let Ok(old) = api.get(&event_name).await {
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": old.metadata.resource_version},
                    "count": old.count.unwrap_or(1) + 1,
                    "lastTimestamp": now,
                });
                let pp = PatchParams {
                    field_manager: Some(manager.into()),
                    ..Default::default()
                };
                let _ = api
                    .patch(&event_name, &pp, &kube::api::Patch::Merge(patch))
                    .await;
            }
        }
        _ => {}
    }
}

/// Records the `FailedCreate` Warning of a controller whose create was refused (by
/// admission, e.g. PodSecurity, or anything else), as kube-controller-manager's
/// controllers do: `message` is theirs, `err` the API server's message.
pub async fn failed_create(
    client: &kube::Client,
    involved: serde_json::Value,
    component: &str,
    message: impl FnOnce(&str) -> String,
    err: &kube::Error,
) {
    let text = match err {
        kube::Error::Api(e) => e.message.clone(),
        e => e.to_string(),
    };
    event(
        client,
        involved,
        "Warning",
        "FailedCreate",
        &message(&text),
        component,
    )
    .await;
}

/// A Go-style duration (`40s`, `5m`, `1m30s`, `500ms`, `2h`), as Kubernetes' flags take.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// Whether merging `patch` (a JSON merge patch) into `current` would change it: a
/// controller writes a status only when it differs from what the cache shows.
pub fn patch_changes<T: serde::Serialize>(current: &T, patch: &serde_json::Value) -> bool {
    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match patch {
            serde_json::Value::Object(p) => {
                if !target.is_object() {
                    *target = serde_json::json!({});
                }
                if let Some(t) = target.as_object_mut() {
                    for (k, v) in p {
                        if v.is_null() {
                            t.remove(k);
                        } else {
                            merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                        }
                    }
                }
            }
            other => *target = other.clone(),
        }
    }
    let before = serde_json::to_value(current).unwrap_or_default();
    let mut after = before.clone();
    merge(&mut after, patch);
    after != before
}

/// The current time as Kubernetes writes it (RFC 3339, seconds, `Z`).
pub use skiff_meta::time::now;

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// A controller reference to the owner `kind`/`name` (uid `uid`).
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true})
}

/// The metadata an object made from a template keeps of the template's: its labels,
/// annotations and finalizers only, as Kubernetes' controllers copy them (a name,
/// namespace, generateName or uid in a template is ignored).
pub fn template_metadata(template: &serde_json::Value) -> serde_json::Value {
    let mut meta = serde_json::json!({});
    if let Some(m) = template.get("metadata") {
        for k in ["labels", "annotations", "finalizers"] {
            if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
                meta[k] = v.clone();
            }
        }
    }
    meta
}

/// The generateName of the pods of the controller named `owner`: `<owner>-`, or the
/// bare name when the dash would make it too long a name (as getPodsPrefix).
pub fn pods_prefix(owner: &str) -> String {
    if owner.len() < 253 {
        format!("{owner}-")
    } else {
        owner.to_string()
    }
}

/// A new pod from a pod template (its spec, labels, annotations and finalizers),
/// named `<owner name>-<random>` whatever name the template has, in `ns`, controlled
/// by `owner` (an [`owner_ref`]).
pub fn pod_from_template(
    template: &serde_json::Value,
    ns: &str,
    owner: serde_json::Value,
) -> serde_json::Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template_metadata(template),
        "spec": template.get("spec").cloned().unwrap_or(serde_json::json!({})),
    });
    pod["metadata"]["generateName"] =
        serde_json::json!(pods_prefix(owner["name"].as_str().unwrap_or("pod")));
    pod["metadata"]["namespace"] = serde_json::json!(ns);
    pod["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    pod
}

/// Objects in namespace `ns` whose controlling owner has `uid`.
/// A pod template as the strategic merge patch that puts it back in place of the
/// live one (a ControllerRevision's data, as the DaemonSet and StatefulSet
/// controllers store it for `kubectl rollout undo`).
pub fn restoring(template: &serde_json::Value) -> serde_json::Value {
    let mut t = template.clone();
    t["$patch"] = serde_json::json!("replace");
    t
}

/// Makes `name` the newest ControllerRevision of an owner whose revisions are `revs`:
/// created (with `meta`'s labels, annotations and owner references, and `data`) as
/// revision max+1, or, when it exists but is not the newest (a rollback to it),
/// renumbered max+1, as the DaemonSet and StatefulSet controllers keep their history.
pub async fn ensure_revision(
    api: &kube::Api<k8s_openapi::api::apps::v1::ControllerRevision>,
    revs: &[&k8s_openapi::api::apps::v1::ControllerRevision],
    name: &str,
    meta: serde_json::Value,
    data: serde_json::Value,
) -> Result<(), kube::Error> {
    let max_rev = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    match revs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
    {
        None => {
            let mut metadata = meta;
            metadata["name"] = serde_json::json!(name);
            let cr = serde_json::json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": metadata, "data": data, "revision": max_rev + 1,
            });
            if let Ok(cr) = serde_json::from_value(cr) {
                match api.create(&post_params(), &cr).await {
                    // The cache has not shown it yet.
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    r => {
                        r?;
                    }
                }
            }
        }
        Some(r) if r.revision < max_rev => {
            api.patch(
                name,
                &patch_params(),
                &kube::api::Patch::Merge(serde_json::json!({"revision": max_rev + 1})),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Deletes the oldest of `revs` beyond `limit`, never those named in `keep`.
pub async fn trim_revisions(
    api: &kube::Api<k8s_openapi::api::apps::v1::ControllerRevision>,
    revs: &[&k8s_openapi::api::apps::v1::ControllerRevision],
    keep: &[&str],
    limit: usize,
) {
    let mut old: Vec<_> = revs
        .iter()
        .filter(|r| !keep.contains(&r.metadata.name.as_deref().unwrap_or("")))
        .collect();
    if old.len() > limit {
        old.sort_by_key(|r| r.revision);
        for r in old.iter().take(old.len() - limit) {
            let _ = api
                .delete(
                    r.metadata.name.as_deref().unwrap_or(""),
                    &kube::api::DeleteParams::background(),
                )
                .await;
        }
    }
}

pub fn controlled_by<'a, K: kube::Resource>(items: &'a [K], ns: &str, uid: &str) -> Vec<&'a K> {
    items
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}
pub mod daemonsets;
pub mod jobs;
pub mod pods;
pub mod scheduling;
pub mod wiring;
pub mod workloads;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_patch_that_changes_nothing_is_not_sent() {
        let cur = serde_json::json!({"replicas": 3, "readyReplicas": 2});
        assert!(!patch_changes(&cur, &serde_json::json!({"replicas": 3})));
        assert!(!patch_changes(&cur, &serde_json::json!({"gone": null})));
        assert!(patch_changes(
            &cur,
            &serde_json::json!({"readyReplicas": 3})
        ));
        assert!(patch_changes(
            &None::<i32>,
            &serde_json::json!({"replicas": 0})
        ));
    }

    #[test]
    fn pods_from_a_template_are_named_for_their_owner() {
        let template = serde_json::json!({
            "metadata": {"name": "fixed-name", "namespace": "elsewhere", "generateName": "x-",
                         "uid": "u", "labels": {"app": "a"}, "annotations": {"k": "v"},
                         "finalizers": ["f/f"]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let owner = owner_ref("apps/v1", "ReplicaSet", "web-abc", "uid1");
        let pod = pod_from_template(&template, "ns1", owner.clone());
        assert_eq!(
            pod["metadata"],
            serde_json::json!({"generateName": "web-abc-", "namespace": "ns1",
                "labels": {"app": "a"}, "annotations": {"k": "v"}, "finalizers": ["f/f"],
                "ownerReferences": [owner]})
        );
        assert_eq!(pod["spec"], template["spec"]);
        let long = "a".repeat(253);
        assert_eq!(pods_prefix(&long), long);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("4x").is_err());
    }
}
