//! skiff-scheduler: kube-scheduler's decision for one pod over a cluster snapshot.
//!
//! This crate owns the scheduling *decision*: the filter plugins of kube-scheduler's
//! default profile (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit, PodTopologySpread, VolumeBinding, InterPodAffinity), its score plugins
//! (NodeResourcesFit LeastAllocated, NodeResourcesBalancedAllocation, TaintToleration,
//! NodeAffinity, InterPodAffinity, PodTopologySpread) with the default weights, and the
//! FailedScheduling message kube-scheduler writes when no node fits. It also exports the
//! helpers other components share: effective pod requests, label
//! selector matching and taint toleration.
//!
//! The decision is pure logic over a [`Snapshot`] (no I/O, no async, no time). The loop
//! around it, [`scheduling`], watches the pods waiting for a node through the shared
//! informers (`skiff-informer`), calls [`schedule`], posts the Bindings and records the
//! events; it is the only part that knows the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use skiff_informer::CachedPod;
use thiserror::Error;

mod interpod;
mod labels;
mod nodes;
mod resources;
pub mod scheduling;
mod scores;
mod simple_filters;
mod spread;
mod taints;
#[cfg(test)]
mod testutil;
mod volumes;

pub use labels::{
    label_selector_matches, node_selector_term_matches, pod_matches_node_selector_and_affinity,
    required_node_names,
};
pub use resources::{
    node_allocatable, pod_non_zero_requests, pod_requests, Resources, DEFAULT_MEMORY_REQUEST,
    DEFAULT_MILLI_CPU_REQUEST,
};
pub use taints::{
    find_untolerated_taint, pod_tolerations, tolerates, toleration_tolerates,
    UNSCHEDULABLE_TAINT_KEY,
};

pub use volumes::{pod_claims, waits_for_first_consumer, Volumes, SELECTED_NODE};

use nodes::NodeInfo;

/// The cluster as the scheduler sees it at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    /// All pods, bound (`spec.nodeName` set) or not. Succeeded and Failed pods are ignored.
    pub pods: Vec<CachedPod>,
    /// Namespaces, only needed for the labels that pod affinity `namespaceSelector`s match.
    pub namespaces: Vec<Namespace>,
}

impl Snapshot {
    /// Records a scheduling decision before the API confirms it, as kube-scheduler's cache
    /// "assumes" a pod: the pod (matched by uid, else namespace/name) is replaced by, or
    /// added as, a copy bound to `node_name`, so the next decision counts it.
    pub fn assume(&mut self, pod: &CachedPod, node_name: &str) {
        let mut bound = pod.clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node_name.to_string());
        self.pods.retain(|p| !nodes::same_pod(p, pod));
        self.pods.push(bound);
    }
}

/// Why a pod fits on no node.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct Unschedulable {
    /// kube-scheduler's FailedScheduling message, e.g. "0/3 nodes are available:
    /// 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.
    /// preemption: 0/3 nodes are available: 1 No preemption victims found for incoming
    /// pod, 2 Preemption is not helpful for scheduling."
    pub message: String,
    /// The filter reasons for each node, by node name.
    pub per_node: BTreeMap<String, Vec<String>>,
}

/// The weighted score of one feasible node, with each plugin's normalized (0–100) score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeScore {
    pub total: i64,
    pub plugins: BTreeMap<&'static str, i64>,
}

/// The outcome of running every filter plugin against every node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Names of nodes that passed every filter, in snapshot order.
    pub feasible: Vec<String>,
    /// Failure reasons of the nodes that did not.
    pub per_node: BTreeMap<String, Vec<String>>,
}

/// The result of one filter plugin on one node (None means the node passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub reasons: Vec<String>,
    /// UnschedulableAndUnresolvable: preemption on this node cannot help.
    pub unresolvable: bool,
}

impl Status {
    pub(crate) fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            reasons: vec![reason.into()],
            unresolvable: true,
        }
    }
    pub(crate) fn unschedulable(reason: impl Into<String>) -> Status {
        Status {
            reasons: vec![reason.into()],
            unresolvable: false,
        }
    }
}

type NsLabels = BTreeMap<String, BTreeMap<String, String>>;

/// Everything computed once per scheduling cycle (the PreFilter state).
struct Cycle<'a> {
    pod: &'a CachedPod,
    nodes: &'a [NodeInfo],
    requests: Resources,
    interpod: interpod::State,
    spread: spread::FilterState,
    volumes: volumes::State,
}

impl<'a> Cycle<'a> {
    fn new(
        pod: &'a CachedPod,
        nodes: &'a [NodeInfo],
        ns_labels: &'a NsLabels,
        vols: Option<&Volumes>,
    ) -> Cycle<'a> {
        let volumes = vols.map_or(volumes::State::Required(Vec::new()), |v| {
            volumes::State::new(pod, v)
        });
        let interpod = interpod::State::new(pod, nodes, ns_labels);
        let spread = spread::FilterState::new(pod, nodes);
        Cycle {
            pod,
            requests: pod_requests(pod),
            interpod,
            spread,
            volumes,
            nodes,
        }
    }

    /// The filter plugins in the default profile's order; the first failure wins.
    fn filter(&self, ni: &NodeInfo) -> Option<Status> {
        let pod = self.pod;
        simple_filters::node_unschedulable(pod, ni)
            .or_else(|| simple_filters::node_name(pod, ni))
            .or_else(|| simple_filters::taint_toleration(pod, ni))
            .or_else(|| simple_filters::node_affinity(pod, ni))
            .or_else(|| simple_filters::node_ports(pod, ni))
            .or_else(|| simple_filters::node_resources_fit(&self.requests, ni))
            .or_else(|| self.spread.filter(pod, ni))
            .or_else(|| self.volumes.filter(ni))
            .or_else(|| self.interpod.filter(ni))
    }

    /// Runs the filters over the nodes from index `start` on, wrapping around, and stops
    /// once `want` feasible nodes are found (kube-scheduler's findNodesThatPassFilters).
    fn run_filters(&self, start: usize, want: usize) -> Outcome {
        let mut out = Outcome::default();
        let n = self.nodes.len();
        let allowed = labels::required_node_names(self.pod);
        if let Some(why) = self.volumes.rejected() {
            // VolumeBinding's PreFilter rejects the pod outright.
            out.prefilter_msg = Some(why.to_string());
            for ni in self.nodes {
                out.failed
                    .insert(ni.name.clone(), Status::unresolvable(why));
            }
            out.processed = n;
            return out;
        }
        if allowed.as_ref().is_some_and(|names| names.is_empty()) {
            // NodeAffinity's PreFilter rejects the pod outright.
            out.prefilter_msg = Some(ERR_AFFINITY_CONFLICT.to_string());
            for ni in self.nodes {
                out.failed
                    .insert(ni.name.clone(), Status::unresolvable(ERR_AFFINITY_CONFLICT));
            }
            out.processed = n;
            return out;
        }
        for k in 0..n {
            let i = (start + k) % n;
            let ni = &self.nodes[i];
            let status = if allowed
                .as_ref()
                .is_some_and(|names| !names.contains(ni.name.as_str()))
            {
                // Left out by NodeAffinity's PreFilter result.
                Some(Status::unresolvable(ERR_NOT_IN_PREFILTER_RESULT))
            } else {
                self.filter(ni)
            };
            out.processed = k + 1;
            match status {
                None => {
                    out.feasible.push(i);
                    if out.feasible.len() >= want {
                        break;
                    }
                }
                Some(status) => {
                    out.failed.insert(ni.name.clone(), status);
                }
            }
        }
        out
    }
}

/// How many feasible nodes are enough to stop filtering (kube-scheduler's
/// numFeasibleNodesToFind with the adaptive percentageOfNodesToScore): every node up to
/// 100, then 50% less 1% per 125 nodes, at least 5% and at least 100 nodes.
pub fn feasible_nodes_to_find(num_nodes: usize) -> usize {
    const MIN_NODES: usize = 100;
    if num_nodes < MIN_NODES {
        return num_nodes;
    }
    let percentage = 50usize.saturating_sub(num_nodes / 125).max(5);
    (num_nodes * percentage / 100).max(MIN_NODES)
}

/// The scheduler's cache for one pass: each node's bound pods and what they use, kept up
/// to date as decisions are assumed, so a decision costs the nodes it looks at and not the
/// pods of the cluster.
pub struct Cluster {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    ns_labels: NsLabels,
    /// Where the next pod's filtering starts (kube-scheduler's nextStartNodeIndex).
    next_start: usize,
}

impl Cluster {
    /// The cluster of `nodes` with the bound, non-terminal ones of `pods`; `next_start` is
    /// where the previous pass left its round-robin over the nodes.
    pub fn new<'n>(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = Arc<CachedPod>>,
        namespaces: impl IntoIterator<Item = &'n Namespace>,
        next_start: usize,
    ) -> Cluster {
        let (nodes, index) = nodes::infos(nodes, pods);
        Cluster {
            nodes,
            index,
            ns_labels: nodes::namespace_labels(namespaces),
            next_start,
        }
    }

    /// Where the next pass should start its round-robin.
    pub fn next_start(&self) -> usize {
        self.next_start
    }

    /// Counts `pod` on `node_name` before the API confirms the binding, as kube-scheduler's
    /// cache "assumes" a pod.
    pub fn assume(&mut self, pod: &CachedPod, node_name: &str) {
        let Some(&i) = self.index.get(node_name) else {
            return;
        };
        let mut bound = pod.clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node_name.to_string());
        self.nodes[i].add(Arc::new(bound));
    }

    /// Picks the node for an unbound `pod`, looking at `vols` for its claims when given.
    pub fn schedule(
        &mut self,
        pod: &CachedPod,
        vols: Option<&Volumes>,
    ) -> Result<String, Unschedulable> {
        let n = self.nodes.len();
        let start = if n == 0 { 0 } else { self.next_start % n };
        let (result, processed) = decide(
            pod,
            &self.nodes,
            &self.ns_labels,
            vols,
            start,
            feasible_nodes_to_find(n),
        );
        if n > 0 {
            self.next_start = (start + processed) % n;
        }
        result
    }
}

const ERR_AFFINITY_CONFLICT: &str = "pod affinity terms conflict";
const ERR_NOT_IN_PREFILTER_RESULT: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

#[derive(Default)]
struct Outcome {
    /// Indexes into `Cycle::nodes`.
    feasible: Vec<usize>,
    /// How many nodes the filters looked at.
    processed: usize,
    failed: BTreeMap<String, Status>,
    /// Set when a PreFilter plugin rejected the pod for every node.
    prefilter_msg: Option<String>,
}

/// Runs every filter plugin against every node of the snapshot.
pub fn filter(pod: &CachedPod, snap: &Snapshot) -> Filtered {
    let nodes = nodes::build(pod, snap);
    let ns_labels = nodes::namespace_labels(&snap.namespaces);
    let cycle = Cycle::new(pod, &nodes, &ns_labels, None);
    let Outcome {
        feasible, failed, ..
    } = cycle.run_filters(0, nodes.len());
    Filtered {
        feasible: feasible.iter().map(|&i| nodes[i].name.clone()).collect(),
        per_node: failed.into_iter().map(|(k, s)| (k, s.reasons)).collect(),
    }
}

/// Scores the feasible nodes with the default profile's score plugins and weights.
pub fn score(pod: &CachedPod, snap: &Snapshot) -> BTreeMap<String, NodeScore> {
    let nodes = nodes::build(pod, snap);
    let ns_labels = nodes::namespace_labels(&snap.namespaces);
    let cycle = Cycle::new(pod, &nodes, &ns_labels, None);
    let feasible = cycle.run_filters(0, nodes.len()).feasible;
    scores::score(pod, &nodes, &feasible, &ns_labels)
}

/// Picks the node for `pod`: the feasible node with the highest weighted score, ties
/// broken by the smallest node name (kube-scheduler breaks ties at random).
pub fn schedule(pod: &CachedPod, snap: &Snapshot) -> Result<String, Unschedulable> {
    schedule_inner(pod, snap, None)
}

/// [`schedule`] for a pod whose PersistentVolumeClaims are looked up in `vols`
/// (VolumeBinding).
pub fn schedule_with(
    pod: &CachedPod,
    snap: &Snapshot,
    vols: &Volumes,
) -> Result<String, Unschedulable> {
    schedule_inner(pod, snap, Some(vols))
}

fn schedule_inner(
    pod: &CachedPod,
    snap: &Snapshot,
    vols: Option<&Volumes>,
) -> Result<String, Unschedulable> {
    let nodes = nodes::build(pod, snap);
    let ns_labels = nodes::namespace_labels(&snap.namespaces);
    let want = feasible_nodes_to_find(nodes.len());
    decide(pod, &nodes, &ns_labels, vols, 0, want).0
}

/// The scheduling cycle: filters from node `start` until `want` nodes fit, then scores
/// those. Returns the decision and how many nodes were filtered.
fn decide(
    pod: &CachedPod,
    nodes: &[NodeInfo],
    ns_labels: &NsLabels,
    vols: Option<&Volumes>,
    start: usize,
    want: usize,
) -> (Result<String, Unschedulable>, usize) {
    let cycle = Cycle::new(pod, nodes, ns_labels, vols);
    let outcome = cycle.run_filters(start, want);
    let processed = outcome.processed;
    let feasible = &outcome.feasible;
    if feasible.is_empty() {
        return (Err(unschedulable(pod, nodes.len(), outcome)), processed);
    }
    if let [only] = feasible[..] {
        return (Ok(nodes[only].name.clone()), processed);
    }
    let scored = scores::score(pod, nodes, feasible, ns_labels);
    // BTreeMap iterates by name, so keeping the first maximum breaks ties by name.
    let mut best: Option<(&String, i64)> = None;
    for (name, s) in &scored {
        if best.is_none_or(|(_, b)| s.total > b) {
            best = Some((name, s.total));
        }
    }
    match best {
        Some((name, _)) => (Ok(name.clone()), processed),
        None => (Err(unschedulable(pod, nodes.len(), outcome)), processed),
    }
}

/// "N reason, M reason" sorted as strings, as kube-scheduler's FitError does.
fn histogram<'s>(reasons: impl Iterator<Item = &'s str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_insert(0) += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

fn unschedulable(pod: &CachedPod, num_nodes: usize, outcome: Outcome) -> Unschedulable {
    let Outcome {
        failed,
        prefilter_msg,
        ..
    } = outcome;
    if num_nodes == 0 {
        return Unschedulable {
            message: "no nodes available to schedule pods".to_string(),
            per_node: BTreeMap::new(),
        };
    }
    let filter_msg = prefilter_msg.unwrap_or_else(|| {
        histogram(
            failed
                .values()
                .flat_map(|s| s.reasons.iter().map(String::as_str)),
        )
    });
    let mut message = format!("0/{num_nodes} nodes are available: {filter_msg}.");
    let never = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never");
    if never {
        message.push_str(" preemption: not eligible due to preemptionPolicy=Never.");
    } else {
        // DefaultPreemption's PostFilter: nodes that failed with an unresolvable status
        // cannot be helped; on the others there is no lower-priority pod to evict (skiff
        // does not preempt yet).
        let post = histogram(failed.values().map(|s| {
            if s.unresolvable {
                "Preemption is not helpful for scheduling"
            } else {
                "No preemption victims found for incoming pod"
            }
        }));
        message.push_str(&format!(
            " preemption: 0/{num_nodes} nodes are available: {post}."
        ));
    }
    Unschedulable {
        message,
        per_node: failed.into_iter().map(|(k, s)| (k, s.reasons)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::*;
    use serde_json::json;

    #[test]
    fn assume_binds_the_pod_in_the_snapshot() {
        let mut snap = Snapshot {
            nodes: vec![
                node("n1", json!({}), small_alloc()),
                node("n2", json!({}), small_alloc()),
            ],
            ..Default::default()
        };
        let p = pod(json!({"metadata": {"name": "big", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}}));
        snap.pods.push(p.clone());
        assert_eq!(schedule(&p, &snap), Ok("n1".to_string()));
        snap.assume(&p, "n1");
        assert_eq!(snap.pods.len(), 1);
        let q = pod(json!({"metadata": {"name": "big2", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}}));
        assert_eq!(schedule(&q, &snap), Ok("n2".to_string()));
        snap.assume(&q, "n2");
        assert_eq!(snap.pods.len(), 2);
        assert!(schedule(&simple_pod("small", json!({})), &snap).is_ok());
        let r = pod(json!({"metadata": {"name": "big3", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        assert!(schedule(&r, &snap).is_err());
    }

    #[test]
    fn feasible_nodes_to_find_follows_kube_scheduler() {
        assert_eq!(feasible_nodes_to_find(0), 0);
        assert_eq!(feasible_nodes_to_find(99), 99);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(200), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(20000), 1000);
    }

    #[test]
    fn the_cluster_filters_enough_nodes_round_robin_and_counts_assumed_pods() {
        let nodes: Vec<Arc<Node>> = (0..300)
            .map(|i| Arc::new(node(&format!("n{i:03}"), json!({}), small_alloc())))
            .collect();
        let mut cluster = Cluster::new(nodes, Vec::new(), &[], 0);
        let p = simple_pod("p", json!({}));
        let first = cluster.schedule(&p, None).unwrap();
        // 144 of the 300 nodes (48%) were enough; the next pod starts after them.
        assert_eq!(cluster.next_start(), 144);
        assert!(first.as_str() < "n144", "{first}");
        let second = cluster.schedule(&p, None).unwrap();
        assert_eq!(cluster.next_start(), 288);
        assert!(("n144".."n288").contains(&second.as_str()), "{second}");
        // Assumed pods are counted at once: two 1.5-CPU pods never share a 2-CPU node.
        let nodes: Vec<Arc<Node>> = ["a", "b"]
            .iter()
            .map(|n| Arc::new(node(n, json!({}), small_alloc())))
            .collect();
        let mut cluster = Cluster::new(nodes, Vec::new(), &[], 0);
        let big = pod(
            json!({"metadata": {"name": "big", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}}),
        );
        let a = cluster.schedule(&big, None).unwrap();
        cluster.assume(&big, &a);
        let b = cluster.schedule(&big, None).unwrap();
        assert_ne!(a, b);
        cluster.assume(&big, &b);
        let err = cluster.schedule(&big, None).unwrap_err();
        assert!(
            err.message
                .starts_with("0/2 nodes are available: 2 Insufficient cpu."),
            "{}",
            err.message
        );
    }

    #[test]
    fn histogram_sorts_as_strings() {
        let reasons = ["b", "a", "b"];
        assert_eq!(histogram(reasons.iter().copied()), "1 a, 2 b");
        let many: Vec<&str> = std::iter::repeat_n("x", 10).chain(["y", "y"]).collect();
        // kube-scheduler sorts "10 x" before "2 y".
        assert_eq!(histogram(many.into_iter()), "10 x, 2 y");
    }
}
