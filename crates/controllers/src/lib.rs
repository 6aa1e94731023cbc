//! skiff-controllers: the control loops that make API objects true, shaped like
//! kube-controller-manager's: shared informers (one watch per resource kind,
//! `skiff-informer`) feed the caches every controller reads and the work
//! queues of the controllers interested in a change (an owned object's change queues
//! its owner); each controller is a level-triggered reconcile of one object from the
//! caches, with expectations so a lagging cache never makes it create twice, and a
//! periodic resync as a safety net. None relies on having seen every event.
//!
//! The workloads (Deployments, ReplicaSets, ReplicationControllers,
//! StatefulSets, Jobs, CronJobs, DaemonSets); and the cluster loop (garbage collection
//! with its orphan and foreground finalizers, namespace deletion, service accounts and
//! the root CA, endpoints, node lifecycle, persistent volumes and their claims).
//! Controller writes carry the field manager `kube-controller-manager`, as in
//! Kubernetes. The scheduler's loop is `skiff_scheduler::scheduling`'s.

pub mod cluster;
pub mod cronjobs;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod leader;
pub mod namespaces;
pub mod nodedns;
pub mod nodeipam;
pub mod nodes;
pub mod persistentvolumes;
pub mod serviceaccounts;
pub mod servicelb;
pub mod statefulsets;

use kube::api::{PatchParams, PostParams};
use skiff_informer::Informers;

/// The field manager of controller writes, as kube-controller-manager's.
pub const FIELD_MANAGER: &str = "kube-controller-manager";

/// PostParams of a controller write.
pub fn post_params() -> PostParams {
    skiff_informer::post_params(FIELD_MANAGER)
}

/// PatchParams of a controller write.
pub fn patch_params() -> PatchParams {
    skiff_informer::patch_params(FIELD_MANAGER)
}

/// Runs the workload controllers and the cluster loop over the shared informers
/// (which the caller starts, and shares with the scheduler) until `stop`.
pub async fn run(
    client: kube::Client,
    cluster: cluster::Settings,
    informers: Informers,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tasks = wiring::start(&client, &informers, &stop);
    tasks.push(serviceaccounts::spawn(
        &client,
        &informers,
        cluster.ca_pem.clone(),
        &stop,
    ));
    tasks.push(endpoints::spawn(&client, &informers, &stop));
    tasks.push(tokio::spawn(cluster::run(client, cluster, informers, stop)));
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
    skiff_informer::event(
        client,
        involved,
        "Warning",
        "FailedCreate",
        &message(&text),
        component,
        FIELD_MANAGER,
    )
    .await;
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
pub fn pod_ready(p: &skiff_informer::CachedPod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// Whether a node is Ready (its Ready condition True).
pub fn node_ready(n: &k8s_openapi::api::core::v1::Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
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
pub mod wiring;
pub mod workloads;

#[cfg(test)]
mod tests {
    use super::*;

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
}
