//! Per-node view of the snapshot (kube-scheduler's NodeInfo): the pods bound to the node
//! and what they request and use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{node_allocatable, pod_non_zero_requests, pod_requests, Resources};

/// A host port in use: (hostIP, protocol, port); hostIP "0.0.0.0" means every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

pub(crate) struct NodeInfo<'a> {
    pub node: &'a Node,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Pods bound to this node that are neither Succeeded nor Failed.
    pub pods: Vec<&'a Pod>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    /// Requests with the 100m / 200Mi defaults for containers without any.
    pub non_zero_requested: Resources,
    pub used_ports: Vec<HostPort>,
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

pub(crate) fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(crate) fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

pub(crate) fn same_pod(a: &Pod, b: &Pod) -> bool {
    if let (Some(x), Some(y)) = (a.metadata.uid.as_ref(), b.metadata.uid.as_ref()) {
        return x == y;
    }
    a.metadata.name.is_some()
        && a.metadata.name == b.metadata.name
        && pod_namespace(a) == pod_namespace(b)
}

/// The host ports a pod's containers ask for (hostPort > 0), normalized.
pub(crate) fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(port) = p.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let ip = p
                .host_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .unwrap_or("0.0.0.0")
                .to_string();
            let protocol = p
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP")
                .to_string();
            out.push(HostPort { ip, protocol, port });
        }
    }
    out
}

/// Builds the NodeInfo of every node, leaving out `incoming` itself should it already
/// appear among the pods.
pub(crate) fn build<'a>(incoming: &Pod, snap: &'a crate::Snapshot) -> Vec<NodeInfo<'a>> {
    let mut infos: Vec<NodeInfo<'a>> = snap
        .nodes
        .iter()
        .map(|node| {
            let (allocatable, allowed_pods) = node_allocatable(node);
            NodeInfo {
                node,
                name: node.metadata.name.as_deref().unwrap_or(""),
                labels: node_labels(node),
                pods: Vec::new(),
                allocatable,
                allowed_pods,
                requested: Resources::default(),
                non_zero_requested: Resources::default(),
                used_ports: Vec::new(),
            }
        })
        .collect();
    let index: BTreeMap<&str, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, ni)| (ni.name, i))
        .collect();
    for pod in &snap.pods {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if is_terminal(pod) || same_pod(pod, incoming) {
            continue;
        }
        let Some(&i) = index.get(node_name) else {
            continue;
        };
        let ni = &mut infos[i];
        ni.pods.push(pod);
        ni.requested.add(&pod_requests(pod));
        ni.non_zero_requested.add(&pod_non_zero_requests(pod));
        ni.used_ports.extend(pod_host_ports(pod));
    }
    infos
}

/// Namespace name → labels, for namespaceSelector.
pub(crate) fn namespace_labels(
    snap: &crate::Snapshot,
) -> BTreeMap<String, BTreeMap<String, String>> {
    snap.namespaces
        .iter()
        .filter_map(|ns| {
            Some((
                ns.metadata.name.clone()?,
                ns.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect()
}
