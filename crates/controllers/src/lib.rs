//! skiff-controllers: the control loops that make API objects true. Each is a
//! level-triggered reconcile pass over the current state; none relies on having
//! seen every event. Today: the scheduler's binding loop, Deployments, ReplicaSets, Jobs,
//! CronJobs, DaemonSets and background garbage collection. ( DaemonSet, StatefulSet, node
//! lifecycle and endpoints are the next ones.)

pub mod cronjobs;

/// A controller reference to the owner `kind`/`name` (uid `uid`).
pub fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true})
}

/// A new pod from a pod template, named `<owner name>-<random>`, in `ns`, controlled
/// by `owner` (an [`owner_ref`]).
pub fn pod_from_template(
    template: &serde_json::Value,
    ns: &str,
    owner: serde_json::Value,
) -> serde_json::Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or(serde_json::json!({})),
        "spec": template.get("spec").cloned().unwrap_or(serde_json::json!({})),
    });
    pod["metadata"]["generateName"] =
        serde_json::json!(format!("{}-", owner["name"].as_str().unwrap_or("pod")));
    pod["metadata"]["namespace"] = serde_json::json!(ns);
    pod["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    pod
}

/// Objects in namespace `ns` whose controlling owner has `uid`.
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
pub mod scheduling;
pub mod workloads;
