//! Per-node view of the snapshot (kube-scheduler's NodeInfo): the pods bound to the node
//! and what they request and use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use skiff_informer::CachedPod;

use crate::resources::{node_allocatable, pod_non_zero_requests, pod_requests, Resources};

/// A host port in use: (hostIP, protocol, port); hostIP "0.0.0.0" means every address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

pub(crate) struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Pods bound to this node that are neither Succeeded nor Failed.
    pub pods: Vec<Arc<CachedPod>>,
    /// Those of `pods` with pod affinity or anti-affinity of any kind (kube-scheduler's
    /// PodsWithAffinity), which the InterPodAffinity score reads for every incoming pod.
    pub with_affinity: Vec<Arc<CachedPod>>,
    /// Those of `pods` with required anti-affinity (PodsWithRequiredAntiAffinity), which the
    /// InterPodAffinity filter reads for every incoming pod.
    pub with_required_anti_affinity: Vec<Arc<CachedPod>>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub requested: Resources,
    /// Requests with the 100m / 200Mi defaults for containers without any.
    pub non_zero_requested: Resources,
    pub used_ports: Vec<HostPort>,
}

impl NodeInfo {
    pub(crate) fn new(node: Arc<Node>) -> NodeInfo {
        let (allocatable, allowed_pods) = node_allocatable(&node);
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node_labels(&node).clone(),
            node,
            pods: Vec::new(),
            with_affinity: Vec::new(),
            with_required_anti_affinity: Vec::new(),
            allocatable,
            allowed_pods,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: Vec::new(),
        }
    }

    /// Counts a pod bound here (kube-scheduler's NodeInfo.AddPod).
    pub(crate) fn add(&mut self, pod: Arc<CachedPod>) {
        self.requested.add(&pod_requests(&pod));
        self.non_zero_requested.add(&pod_non_zero_requests(&pod));
        self.used_ports.extend(pod_host_ports(&pod));
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        if affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some()) {
            self.with_affinity.push(pod.clone());
        }
        if anti
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty())
        {
            self.with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
    }
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

pub(crate) fn pod_namespace(pod: &CachedPod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub(crate) fn pod_labels(pod: &CachedPod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub(crate) fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

fn is_terminal(pod: &CachedPod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

pub(crate) fn same_pod(a: &CachedPod, b: &CachedPod) -> bool {
    if let (Some(x), Some(y)) = (a.metadata.uid.as_ref(), b.metadata.uid.as_ref()) {
        return x == y;
    }
    a.metadata.name.is_some()
        && a.metadata.name == b.metadata.name
        && pod_namespace(a) == pod_namespace(b)
}

/// The host ports a pod's containers ask for (hostPort > 0), normalized.
pub(crate) fn pod_host_ports(pod: &CachedPod) -> Vec<HostPort> {
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

/// The NodeInfo of every node from `nodes` and the bound, non-terminal ones of `pods`.
pub(crate) fn infos(
    nodes: impl IntoIterator<Item = Arc<Node>>,
    pods: impl IntoIterator<Item = Arc<CachedPod>>,
) -> (Vec<NodeInfo>, HashMap<String, usize>) {
    let infos: Vec<NodeInfo> = nodes.into_iter().map(NodeInfo::new).collect();
    let index: HashMap<String, usize> = infos
        .iter()
        .enumerate()
        .map(|(i, ni)| (ni.name.clone(), i))
        .collect();
    let mut infos = infos;
    for pod in pods {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        if is_terminal(&pod) {
            continue;
        }
        let Some(&i) = index.get(node_name) else {
            continue;
        };
        infos[i].add(pod);
    }
    (infos, index)
}

/// Builds the NodeInfo of every node, leaving out `incoming` itself should it already
/// appear among the pods.
pub(crate) fn build(incoming: &CachedPod, snap: &crate::Snapshot) -> Vec<NodeInfo> {
    infos(
        snap.nodes.iter().cloned().map(Arc::new),
        snap.pods
            .iter()
            .filter(|p| !same_pod(p, incoming))
            .cloned()
            .map(Arc::new),
    )
    .0
}

/// Namespace name → labels, for namespaceSelector.
pub(crate) fn namespace_labels<'n>(
    namespaces: impl IntoIterator<Item = &'n Namespace>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    namespaces
        .into_iter()
        .filter_map(|ns| {
            Some((
                ns.metadata.name.clone()?,
                ns.metadata.labels.clone().unwrap_or_default(),
            ))
        })
        .collect()
}
