//! Node lifecycle: a node whose Lease (in kube-node-lease) has not been renewed within
//! the grace period gets its conditions set to Unknown (NodeStatusUnknown) and the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints; a node reporting
//! Ready=False gets the `node.kubernetes.io/not-ready` ones; a node reporting
//! MemoryPressure, DiskPressure or PIDPressure gets the matching NoSchedule taint; a
//! healthy node loses them. Pods on a node with a NoExecute taint are deleted once their toleration for
//! it runs out (at once without one), so their controllers replace them.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use std::collections::HashMap;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The NoSchedule taints of the pressure conditions.
const PRESSURE: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];

/// What the monitor remembers between passes: when it first saw each node (a node
/// that never renewed a lease is unreachable a grace period after that).
#[derive(Default)]
pub struct NodeMonitor {
    first_seen: HashMap<String, i64>,
}

/// The node-condition taints a node should have: `unreachable` if its status is stale,
/// `not-ready` if it says it is not ready, none otherwise.
pub fn wanted_taint(stale: bool, ready_status: Option<&str>) -> Option<&'static str> {
    if stale || ready_status == Some("Unknown") {
        Some(UNREACHABLE)
    } else if ready_status == Some("False") {
        Some(NOT_READY)
    } else {
        None
    }
}

/// When (seconds since the epoch) the pod must go because of `taints`, if at all:
/// at once for an untolerated NoExecute taint, else when the shortest
/// tolerationSeconds of a matching toleration runs out.
pub fn eviction_time(pod: &CachedPod, taints: &[Taint]) -> Option<i64> {
    let tolerations = skiff_scheduler::pod_tolerations(pod);
    let mut when: Option<i64> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = t.time_added.as_ref().map(|x| x.0.as_second()).unwrap_or(0);
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|tol| skiff_scheduler::toleration_tolerates(tol, t))
            .collect();
        let at = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|tol| tol.toleration_seconds.is_none()) {
            None
        } else {
            matching
                .iter()
                .filter_map(|tol| tol.toleration_seconds)
                .min()
                .map(|s| added + s.max(0))
        };
        if let Some(at) = at {
            when = Some(when.map_or(at, |w| w.min(at)));
        }
    }
    when
}

impl NodeMonitor {
    /// One pass over every node (kube's node monitor, every 5 s): its Lease read by
    /// key, the pods of a NoExecute-tainted node by the pods' node index.
    pub async fn sync(
        &mut self,
        client: &Client,
        inf: &skiff_informer::Informers,
        grace: std::time::Duration,
    ) -> Result<(), kube::Error> {
        let nodes = inf.nodes.state();
        let now = chrono::Utc::now().timestamp();
        let api: Api<Node> = Api::all(client.clone());
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        let names: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        self.first_seen.retain(|n, _| names.contains(n.as_str()));
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let seen = *self.first_seen.entry(name.clone()).or_insert(now);
            let lease: Option<std::sync::Arc<Lease>> = inf.node_leases.get(&skiff_informer::Key {
                namespace: "kube-node-lease".into(),
                name: name.clone(),
            });
            let renewed = lease
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            let stale = now - renewed.max(seen) > grace.as_secs() as i64;
            let conditions = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let ready = conditions.iter().find(|c| c.type_ == "Ready");
            if stale && ready.is_none_or(|c| c.status != "Unknown") {
                let stamp = crate::now();
                let types: Vec<String> = if conditions.is_empty() {
                    vec!["Ready".into()]
                } else {
                    conditions.iter().map(|c| c.type_.clone()).collect()
                };
                let updated: Vec<serde_json::Value> = types
                    .iter()
                    .map(|t| {
                        let old = conditions.iter().find(|c| &c.type_ == t);
                        json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                               "message": "Kubelet stopped posting node status.",
                               "lastHeartbeatTime": old.and_then(|c| c.last_heartbeat_time.clone()),
                               "lastTransitionTime": stamp})
                    })
                    .collect();
                api.patch_status(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({"status": {"conditions": updated}})),
                )
                .await?;
                tracing::info!(node = %name, "node stopped posting status: conditions Unknown");
            }
            let ready_status = if stale {
                Some("Unknown")
            } else {
                ready.map(|c| c.status.as_str())
            };
            let want = wanted_taint(stale, ready_status);
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let pressure: Vec<&str> = PRESSURE
                .iter()
                .filter(|(ty, _)| {
                    !stale
                        && conditions
                            .iter()
                            .any(|c| &c.type_ == ty && c.status == "True")
                })
                .map(|(_, key)| *key)
                .collect();
            let mut next: Vec<Taint> = taints
                .iter()
                .filter(|t| {
                    !((t.key == UNREACHABLE || t.key == NOT_READY) && Some(t.key.as_str()) != want)
                        && (!PRESSURE.iter().any(|(_, k)| *k == t.key)
                            || pressure.contains(&t.key.as_str()))
                })
                .cloned()
                .collect();
            for key in pressure {
                if !next
                    .iter()
                    .any(|t| t.key == key && t.effect == "NoSchedule")
                {
                    next.push(
                        serde_json::from_value(json!({"key": key, "effect": "NoSchedule"}))
                            .map_err(kube::Error::SerdeError)?,
                    );
                }
            }
            if let Some(key) = want {
                for effect in ["NoSchedule", "NoExecute"] {
                    if !next.iter().any(|t| t.key == key && t.effect == effect) {
                        next.push(
                            serde_json::from_value(json!({"key": key, "effect": effect,
                                "timeAdded": if effect == "NoExecute" { json!(crate::now()) } else { json!(null) }}))
                            .map_err(kube::Error::SerdeError)?,
                        );
                    }
                }
            }
            if next != taints {
                api.patch(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({"spec": {"taints": if next.is_empty() { json!(null) } else { json!(next) }}})),
                )
                .await?;
                let shown = |ts: &[Taint]| {
                    ts.iter()
                        .map(|t| format!("{}:{}", t.key, t.effect))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                tracing::info!(node = %name, from = %shown(&taints), to = %shown(&next), "node taints changed");
            }
            if next.iter().any(|t| t.effect == "NoExecute") {
                tainted.insert(name, next);
            }
        }
        if tainted.is_empty() {
            return Ok(());
        }
        // Taint-based eviction: the pods of the tainted nodes.
        for (node, taints) in &tainted {
            for pod in inf.pods.indexed(node) {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if eviction_time(&pod, taints).is_some_and(|at| at <= now) {
                    let pods: Api<Pod> = Api::namespaced(
                        client.clone(),
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                    );
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if pods.delete(&name, &DeleteParams::default()).await.is_ok() {
                        tracing::info!(node = %node, pod = %format!("{}/{name}", pod.metadata.namespace.as_deref().unwrap_or("")),
                        "evicted pod (untolerated NoExecute taint)");
                        let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": name,
                        "namespace": pod.metadata.namespace, "uid": pod.metadata.uid});
                        skiff_informer::event(
                            client,
                            involved,
                            "Normal",
                            "TaintManagerEviction",
                            &format!(
                                "Marking for deletion Pod {}/{name}",
                                pod.metadata.namespace.as_deref().unwrap_or("")
                            ),
                            "taint-eviction-controller",
                            crate::FIELD_MANAGER,
                        )
                        .await;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, added: i64) -> Taint {
        serde_json::from_value(json!({"key": key, "effect": "NoExecute",
            "timeAdded": chrono::DateTime::from_timestamp(added, 0).unwrap().to_rfc3339()}))
        .unwrap()
    }

    #[test]
    fn taints_follow_health() {
        assert_eq!(wanted_taint(true, Some("True")), Some(UNREACHABLE));
        assert_eq!(wanted_taint(false, Some("False")), Some(NOT_READY));
        assert_eq!(wanted_taint(false, Some("True")), None);
    }

    #[test]
    fn tolerations_delay_eviction() {
        let t = [taint(UNREACHABLE, 1000)];
        let pod = |tol: serde_json::Value| -> CachedPod {
            serde_json::from_value(json!({"spec": {"containers": [], "tolerations": tol}})).unwrap()
        };
        assert_eq!(eviction_time(&pod(json!([])), &t), Some(1000));
        let p = pod(
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]),
        );
        assert_eq!(eviction_time(&p, &t), Some(1005));
        let p = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_time(&p, &t), None);
        let p = pod(json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_time(&p, &t), Some(1000));
    }
}
