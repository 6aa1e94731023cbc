//! Score plugins of the default profile, normalized to 0–100 and weighted:
//! TaintToleration ×3, NodeAffinity ×2, PodTopologySpread ×2, InterPodAffinity ×2,
//! NodeResourcesFit (LeastAllocated) ×1, NodeResourcesBalancedAllocation ×1.
//! (ImageLocality, weight 1, is not implemented.)

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use skiff_informer::CachedPod;

use crate::labels::node_selector_term_matches;
use crate::nodes::NodeInfo;
use crate::resources::{pod_non_zero_requests, pod_requests};
use crate::taints::{pod_tolerations, tolerates};
use crate::{interpod, spread, NodeScore};

const MAX_NODE_SCORE: i64 = 100;

pub(crate) const PLUGINS: [(&str, i64); 6] = [
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesFit", 1),
    ("NodeResourcesBalancedAllocation", 1),
];

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// NodeResourcesFit with the LeastAllocated strategy over cpu and memory (weight 1 each),
/// using the non-zero requests (100m / 200Mi for containers without any).
pub(crate) fn least_allocated(pod: &CachedPod, ni: &NodeInfo) -> i64 {
    let req = pod_non_zero_requests(pod);
    let pairs = [
        (
            ni.non_zero_requested
                .milli_cpu
                .saturating_add(req.milli_cpu),
            ni.allocatable.milli_cpu,
        ),
        (
            ni.non_zero_requested.memory.saturating_add(req.memory),
            ni.allocatable.memory,
        ),
    ];
    let (mut score, mut weights) = (0, 0);
    for (requested, alloc) in pairs {
        if alloc == 0 {
            continue;
        }
        score += least_requested(requested, alloc);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        score / weights
    }
}

/// NodeResourcesBalancedAllocation: 100 × (1 − standard deviation of the cpu and memory
/// fractions requested). Skipped (0 everywhere) for a pod that requests nothing.
pub(crate) fn balanced_allocation(pod: &CachedPod, ni: &NodeInfo) -> i64 {
    let req = pod_requests(pod);
    if req.milli_cpu == 0 && req.memory == 0 {
        return 0;
    }
    let pairs = [
        (
            ni.requested.milli_cpu.saturating_add(req.milli_cpu),
            ni.allocatable.milli_cpu,
        ),
        (
            ni.requested.memory.saturating_add(req.memory),
            ni.allocatable.memory,
        ),
    ];
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, alloc)| *alloc != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions[..] {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// TaintToleration (raw): the number of PreferNoSchedule taints not tolerated.
pub(crate) fn intolerable_taints(pod: &CachedPod, ni: &NodeInfo) -> i64 {
    let tolerations: Vec<Toleration> = pod_tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .cloned()
        .collect();
    let taints = ni
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerates(&tolerations, t))
        .count() as i64
}

/// NodeAffinity (raw): the sum of the weights of the preferred terms the node matches.
pub(crate) fn preferred_node_affinity(pod: &CachedPod, ni: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| node_selector_term_matches(&t.preference, &ni.node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// framework.DefaultNormalizeScore.
fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    for s in scores.iter_mut() {
        if max == 0 {
            if reverse {
                *s = MAX_NODE_SCORE;
            }
            continue;
        }
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Scores every feasible node; keys are node names.
pub(crate) fn score(
    pod: &CachedPod,
    nodes: &[NodeInfo],
    feasible: &[usize],
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, NodeScore> {
    let per = |f: fn(&CachedPod, &NodeInfo) -> i64| -> Vec<i64> {
        feasible.iter().map(|&i| f(pod, &nodes[i])).collect()
    };
    let mut taint = per(intolerable_taints);
    default_normalize(&mut taint, true);
    let mut affinity = per(preferred_node_affinity);
    default_normalize(&mut affinity, false);
    let columns: [Vec<i64>; 6] = [
        taint,
        affinity,
        spread::score(pod, nodes, feasible),
        interpod::score(pod, nodes, feasible, ns_labels),
        per(least_allocated),
        per(balanced_allocation),
    ];
    let mut out = BTreeMap::new();
    for (j, &i) in feasible.iter().enumerate() {
        let mut plugins = BTreeMap::new();
        let mut total = 0;
        for (k, (name, weight)) in PLUGINS.iter().enumerate() {
            let s = columns[k].get(j).copied().unwrap_or(0);
            plugins.insert(*name, s);
            total += s * weight;
        }
        out.insert(nodes[i].name.to_string(), NodeScore { total, plugins });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::build;
    use crate::testutil::*;
    use crate::Snapshot;
    use serde_json::json;

    fn requesting(cpu: &str, mem: &str) -> CachedPod {
        pod(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }

    #[test]
    fn least_allocated_scores_free_capacity() {
        let snap = Snapshot {
            nodes: vec![
                node(
                    "empty",
                    json!({}),
                    json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
                ),
                node(
                    "busy",
                    json!({}),
                    json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
                ),
            ],
            pods: vec![bound_pod(
                "x",
                "busy",
                json!({}),
                json!({"containers": [
                    {"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}
                ]}),
            )],
            ..Default::default()
        };
        let p = requesting("1", "2Gi");
        let nodes = build(&p, &snap);
        // empty: cpu (4-1)/4 = 75, mem (8-2)/8 = 75. busy: cpu 25, mem 25.
        assert_eq!(least_allocated(&p, &nodes[0]), 75);
        assert_eq!(least_allocated(&p, &nodes[1]), 25);
        // A pod without requests counts as 100m / 200Mi: (4000-100)*100/4000 = 97,
        // (8192-200)*100/8192 = 97.
        let bare = simple_pod("bare", json!({}));
        assert_eq!(least_allocated(&bare, &nodes[0]), 97);
        // Over capacity scores 0.
        assert_eq!(least_allocated(&requesting("8", "16Gi"), &nodes[0]), 0);
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let snap = Snapshot {
            nodes: vec![node(
                "n",
                json!({}),
                json!({"cpu": "4", "memory": "4Gi", "pods": "110"}),
            )],
            ..Default::default()
        };
        let p = requesting("1", "1Gi");
        let nodes = build(&p, &snap);
        assert_eq!(balanced_allocation(&p, &nodes[0]), 100);
        // cpu 3/4 = 0.75, memory 1/4 = 0.25: std 0.25 -> 75.
        assert_eq!(balanced_allocation(&requesting("3", "1Gi"), &nodes[0]), 75);
        assert_eq!(
            balanced_allocation(&simple_pod("bare", json!({})), &nodes[0]),
            0
        );
    }

    #[test]
    fn prefer_no_schedule_taints_count_against() {
        let snap = Snapshot {
            nodes: vec![
                tainted("clean", json!([])),
                tainted(
                    "spot",
                    json!([{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]),
                ),
                tainted(
                    "two",
                    json!([
                        {"key": "spot", "value": "true", "effect": "PreferNoSchedule"},
                        {"key": "old", "effect": "PreferNoSchedule"}
                    ]),
                ),
            ],
            ..Default::default()
        };
        let p = simple_pod("p", json!({}));
        let nodes = build(&p, &snap);
        let feasible = [0, 1, 2];
        let s = score(&p, &nodes, &feasible, &BTreeMap::new());
        assert_eq!(s["clean"].plugins["TaintToleration"], 100);
        assert_eq!(s["spot"].plugins["TaintToleration"], 50);
        assert_eq!(s["two"].plugins["TaintToleration"], 0);
        let tolerant = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        let s = score(&tolerant, &nodes, &feasible, &BTreeMap::new());
        assert_eq!(s["spot"].plugins["TaintToleration"], 100);
        assert_eq!(s["two"].plugins["TaintToleration"], 0);
        // A NoSchedule-only toleration does not help with PreferNoSchedule.
        let wrong = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let s = score(&wrong, &nodes, &feasible, &BTreeMap::new());
        assert_eq!(s["spot"].plugins["TaintToleration"], 50);
    }

    #[test]
    fn preferred_node_affinity_weights() {
        let snap = Snapshot {
            nodes: vec![
                node(
                    "ssd-a",
                    json!({"disktype": "ssd", "zone": "a"}),
                    small_alloc(),
                ),
                node(
                    "ssd-b",
                    json!({"disktype": "ssd", "zone": "b"}),
                    small_alloc(),
                ),
                node(
                    "hdd-a",
                    json!({"disktype": "hdd", "zone": "a"}),
                    small_alloc(),
                ),
            ],
            ..Default::default()
        };
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}
            ]}}}}),
        );
        let nodes = build(&p, &snap);
        let s = score(&p, &nodes, &[0, 1, 2], &BTreeMap::new());
        assert_eq!(s["ssd-a"].plugins["NodeAffinity"], 100);
        assert_eq!(s["ssd-b"].plugins["NodeAffinity"], 80);
        assert_eq!(s["hdd-a"].plugins["NodeAffinity"], 20);
        assert!(s["ssd-a"].total > s["ssd-b"].total);
        // No preferences: all 0.
        let s = score(
            &simple_pod("q", json!({})),
            &nodes,
            &[0, 1, 2],
            &BTreeMap::new(),
        );
        assert!(s.values().all(|n| n.plugins["NodeAffinity"] == 0));
    }
}
