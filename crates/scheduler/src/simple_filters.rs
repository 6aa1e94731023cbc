//! The per-node filter plugins that need no cluster-wide state: NodeUnschedulable,
//! NodeName, TaintToleration, NodeAffinity, NodePorts and NodeResourcesFit.

use k8s_openapi::api::core::v1::Taint;
use skiff_informer::CachedPod;

use crate::labels::pod_matches_node_selector_and_affinity;
use crate::nodes::{pod_host_ports, HostPort, NodeInfo};
use crate::resources::Resources;
use crate::taints::{find_untolerated_taint, pod_tolerations, tolerates, UNSCHEDULABLE_TAINT_KEY};
use crate::Status;

pub(crate) const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub(crate) const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub(crate) const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub(crate) const ERR_NODE_PORTS: &str =
    "node(s) didn't have free ports for the requested pod ports";

/// NodeUnschedulable: `spec.unschedulable` nodes, unless the pod tolerates the
/// node.kubernetes.io/unschedulable:NoSchedule taint.
pub(crate) fn node_unschedulable(pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
    let unschedulable = ni
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !unschedulable {
        return None;
    }
    let taint = Taint {
        key: UNSCHEDULABLE_TAINT_KEY.to_string(),
        effect: "NoSchedule".to_string(),
        ..Default::default()
    };
    if tolerates(pod_tolerations(pod), &taint) {
        return None;
    }
    Some(Status::unresolvable(ERR_UNSCHEDULABLE))
}

/// NodeName: a pod with `spec.nodeName` fits only that node.
pub(crate) fn node_name(pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(name) if !name.is_empty() && name != ni.name => {
            Some(Status::unresolvable(ERR_NODE_NAME))
        }
        _ => None,
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
pub(crate) fn taint_toleration(pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
    let taints = ni
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let taint = find_untolerated_taint(taints, pod_tolerations(pod), &["NoSchedule", "NoExecute"])?;
    Some(Status::unresolvable(format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )))
}

/// NodeAffinity: spec.nodeSelector and required node affinity.
pub(crate) fn node_affinity(pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
    if pod_matches_node_selector_and_affinity(pod, &ni.node) {
        None
    } else {
        Some(Status::unresolvable(ERR_NODE_AFFINITY))
    }
}

fn conflicts(used: &[HostPort], want: &HostPort) -> bool {
    used.iter().any(|u| {
        u.port == want.port
            && u.protocol == want.protocol
            && (want.ip == "0.0.0.0" || u.ip == "0.0.0.0" || u.ip == want.ip)
    })
}

/// NodePorts: a wanted hostPort must not be in use on the node with the same protocol
/// and an overlapping hostIP (0.0.0.0 overlaps every address).
pub(crate) fn node_ports(pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
    let wanted = pod_host_ports(pod);
    if wanted.iter().any(|w| conflicts(&ni.used_ports, w)) {
        Some(Status::unschedulable(ERR_NODE_PORTS))
    } else {
        None
    }
}

/// NodeResourcesFit: pod count, then cpu, memory, ephemeral-storage and extended
/// resources against allocatable minus what the node's pods request. A request larger
/// than the whole allocatable amount is unresolvable (preemption cannot help).
pub(crate) fn node_resources_fit(req: &Resources, ni: &NodeInfo) -> Option<Status> {
    let mut reasons = Vec::new();
    let mut unresolvable = false;
    if i64::try_from(ni.pods.len())
        .unwrap_or(i64::MAX)
        .saturating_add(1)
        > ni.allowed_pods
    {
        reasons.push("Too many pods".to_string());
    }
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc.saturating_sub(used) {
            reasons.push(format!("Insufficient {name}"));
            unresolvable |= want > alloc;
        }
    };
    check(
        "cpu",
        req.milli_cpu,
        ni.allocatable.milli_cpu,
        ni.requested.milli_cpu,
    );
    check(
        "memory",
        req.memory,
        ni.allocatable.memory,
        ni.requested.memory,
    );
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        ni.allocatable.ephemeral_storage,
        ni.requested.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        let alloc = ni.allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = ni.requested.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, alloc, used);
    }
    if reasons.is_empty() {
        None
    } else {
        Some(Status {
            reasons,
            unresolvable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::build;
    use crate::resources::pod_requests;
    use crate::testutil::*;
    use crate::Snapshot;
    use serde_json::json;

    fn run(
        f: impl Fn(&CachedPod, &NodeInfo) -> Option<Status>,
        p: &CachedPod,
        snap: &Snapshot,
    ) -> Vec<Option<Status>> {
        build(p, snap).iter().map(|ni| f(p, ni)).collect()
    }

    #[test]
    fn node_unschedulable_honours_the_toleration() {
        let mut n = node("cordoned", json!({}), small_alloc());
        n.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
        let snap = Snapshot {
            nodes: vec![n],
            ..Default::default()
        };
        let p = simple_pod("p", json!({}));
        assert_eq!(
            run(node_unschedulable, &p, &snap),
            vec![Some(Status::unresolvable(ERR_UNSCHEDULABLE))]
        );
        let tolerant = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "tolerations": [
                {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
            ]}
        }));
        assert_eq!(run(node_unschedulable, &tolerant, &snap), vec![None]);
    }

    #[test]
    fn node_name_must_match() {
        let snap = Snapshot {
            nodes: vec![
                node("a", json!({}), small_alloc()),
                node("b", json!({}), small_alloc()),
            ],
            ..Default::default()
        };
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "b", "containers": [{"name": "c"}]}}),
        );
        assert_eq!(
            run(node_name, &p, &snap),
            vec![Some(Status::unresolvable(ERR_NODE_NAME)), None]
        );
        assert_eq!(
            run(node_name, &simple_pod("q", json!({})), &snap),
            vec![None, None]
        );
    }

    #[test]
    fn taints_need_tolerations() {
        let snap = Snapshot {
            nodes: vec![
                tainted(
                    "gpu",
                    json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
                ),
                tainted(
                    "soft",
                    json!([{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]),
                ),
                tainted(
                    "evict",
                    json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
                ),
            ],
            ..Default::default()
        };
        let p = simple_pod("p", json!({}));
        assert_eq!(
            run(taint_toleration, &p, &snap),
            vec![
                Some(Status::unresolvable(
                    "node(s) had untolerated taint {dedicated: gpu}"
                )),
                None,
                Some(Status::unresolvable(
                    "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
                )),
            ]
        );
        let tolerant = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]}
        }));
        assert_eq!(
            run(taint_toleration, &tolerant, &snap),
            vec![None, None, None]
        );
        let everything = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "tolerations": [{"operator": "Exists"}]}
        }));
        assert_eq!(
            run(taint_toleration, &everything, &snap),
            vec![None, None, None]
        );
    }

    #[test]
    fn host_port_conflicts() {
        let used = |ip: Option<&str>, proto: Option<&str>| {
            let mut port = json!({"containerPort": 80, "hostPort": 8080});
            if let Some(ip) = ip {
                port["hostIP"] = json!(ip);
            }
            if let Some(proto) = proto {
                port["protocol"] = json!(proto);
            }
            bound_pod(
                "existing",
                "n1",
                json!({}),
                json!({
                    "containers": [{"name": "web", "ports": [port]}]
                }),
            )
        };
        let want = |ip: Option<&str>, proto: Option<&str>, host_port: i32| {
            let mut port = json!({"containerPort": 80, "hostPort": host_port});
            if let Some(ip) = ip {
                port["hostIP"] = json!(ip);
            }
            if let Some(proto) = proto {
                port["protocol"] = json!(proto);
            }
            pod(
                json!({"metadata": {"name": "new"}, "spec": {"containers": [{"name": "web", "ports": [port]}]}}),
            )
        };
        let cases = [
            (None, None, None, None, 8080, true),
            (None, None, None, None, 8081, false),
            (None, Some("UDP"), None, None, 8080, false),
            (None, Some("UDP"), None, Some("UDP"), 8080, true),
            (Some("10.0.0.1"), None, Some("10.0.0.2"), None, 8080, false),
            (Some("10.0.0.1"), None, Some("10.0.0.1"), None, 8080, true),
            (Some("10.0.0.1"), None, None, None, 8080, true),
            (None, None, Some("10.0.0.2"), None, 8080, true),
            (
                Some("0.0.0.0"),
                Some("TCP"),
                Some("127.0.0.1"),
                None,
                8080,
                true,
            ),
        ];
        for (uip, uproto, wip, wproto, port, conflict) in cases {
            let snap = Snapshot {
                nodes: vec![node("n1", json!({}), small_alloc())],
                pods: vec![used(uip, uproto)],
                ..Default::default()
            };
            let got = run(node_ports, &want(wip, wproto, port), &snap);
            let expect = conflict.then(|| Status::unschedulable(ERR_NODE_PORTS));
            assert_eq!(
                got,
                vec![expect],
                "{uip:?} {uproto:?} {wip:?} {wproto:?} {port}"
            );
        }
        // A pod without host ports never conflicts; a finished pod frees its port.
        let snap = Snapshot {
            nodes: vec![node("n1", json!({}), small_alloc())],
            pods: vec![used(None, None)],
            ..Default::default()
        };
        assert_eq!(
            run(node_ports, &simple_pod("p", json!({})), &snap),
            vec![None]
        );
        let mut done = used(None, None);
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        let snap = Snapshot {
            nodes: snap.nodes,
            pods: vec![done],
            ..Default::default()
        };
        assert_eq!(run(node_ports, &want(None, None, 8080), &snap), vec![None]);
    }

    #[test]
    fn resources_fit_against_allocatable_minus_bound_pods() {
        let snap = Snapshot {
            nodes: vec![node(
                "n1",
                json!({}),
                json!({"cpu": "2", "memory": "4Gi", "pods": "3", "ephemeral-storage": "10Gi"}),
            )],
            pods: vec![
                bound_pod(
                    "a",
                    "n1",
                    json!({}),
                    json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]}),
                ),
                // Finished pods do not count.
                {
                    let mut p = bound_pod(
                        "done",
                        "n1",
                        json!({}),
                        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}),
                    );
                    p.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
                    p
                },
            ],
            ..Default::default()
        };
        let fit = |p: &CachedPod, ni: &NodeInfo| node_resources_fit(&pod_requests(p), ni);
        let req = |r: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "new"}, "spec": {"containers": [{"name": "c", "resources": {"requests": r}}]}}),
            )
        };
        assert_eq!(
            run(fit, &req(json!({"cpu": "500m", "memory": "3Gi"})), &snap),
            vec![None]
        );
        assert_eq!(
            run(fit, &req(json!({"cpu": "501m"})), &snap),
            vec![Some(Status::unschedulable("Insufficient cpu"))]
        );
        assert_eq!(
            run(fit, &req(json!({"cpu": "600m", "memory": "3073Mi"})), &snap),
            vec![Some(Status {
                reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()],
                unresolvable: false
            })]
        );
        // Larger than the whole node: preemption cannot help.
        assert_eq!(
            run(fit, &req(json!({"cpu": "3"})), &snap),
            vec![Some(Status::unresolvable("Insufficient cpu"))]
        );
        assert_eq!(
            run(fit, &req(json!({"ephemeral-storage": "11Gi"})), &snap),
            vec![Some(Status::unresolvable("Insufficient ephemeral-storage"))]
        );
        assert_eq!(
            run(fit, &req(json!({"nvidia.com/gpu": "1"})), &snap),
            vec![Some(Status::unresolvable("Insufficient nvidia.com/gpu"))]
        );
        // Pods without requests always fit the resources.
        assert_eq!(run(fit, &simple_pod("p", json!({})), &snap), vec![None]);
        // Pod count.
        let mut full = snap.clone();
        full.pods.push(bound_pod(
            "b",
            "n1",
            json!({}),
            json!({"containers": [{"name": "c"}]}),
        ));
        full.pods.push(bound_pod(
            "c",
            "n1",
            json!({}),
            json!({"containers": [{"name": "c"}]}),
        ));
        assert_eq!(
            run(fit, &simple_pod("p", json!({})), &full),
            vec![Some(Status::unschedulable("Too many pods"))]
        );
    }

    #[test]
    fn node_affinity_filter() {
        let snap = Snapshot {
            nodes: vec![
                node("ssd", json!({"disktype": "ssd"}), small_alloc()),
                node("hdd", json!({"disktype": "hdd"}), small_alloc()),
            ],
            ..Default::default()
        };
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c"}]}}),
        );
        assert_eq!(
            run(node_affinity, &p, &snap),
            vec![None, Some(Status::unresolvable(ERR_NODE_AFFINITY))]
        );
    }
}
