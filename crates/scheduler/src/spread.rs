//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints filter,
//! `ScheduleAnyway` constraints score (fewer matching pods in the domain scores higher).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use skiff_informer::CachedPod;

use crate::labels::{label_selector_matches, pod_matches_node_selector_and_affinity};
use crate::nodes::{pod_labels, pod_namespace, NodeInfo};
use crate::taints::{find_untolerated_taint, pod_tolerations};
use crate::Status;

pub(crate) const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub(crate) const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Option<LabelSelector>,
    min_domains: Option<i64>,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

fn constraints(pod: &CachedPod, when: &str) -> Vec<Constraint> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let labels = pod_labels(pod);
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            // matchLabelKeys: the pod's own values for those keys join the selector.
            let mut selector = c.label_selector.clone();
            if let Some(sel) = selector.as_mut() {
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = labels.get(key) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: key.clone(),
                                operator: "In".to_string(),
                                values: Some(vec![v.clone()]),
                            },
                        );
                    }
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.map(i64::from),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Pods on the node in the incoming pod's namespace that the selector matches. An absent
/// or empty selector counts nothing, as kube-scheduler does.
fn count_matching(ni: &NodeInfo, c: &Constraint, namespace: &str) -> i64 {
    let Some(sel) = c.selector.as_ref().filter(|s| !selector_is_empty(s)) else {
        return 0;
    };
    let n = ni
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| pod_namespace(p) == namespace)
        .filter(|p| label_selector_matches(sel, pod_labels(p)))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn has_all_keys(ni: &NodeInfo, cs: &[Constraint]) -> bool {
    cs.iter().all(|c| ni.labels.contains_key(&c.topology_key))
}

fn included(pod: &CachedPod, ni: &NodeInfo, c: &Constraint) -> bool {
    if c.honor_node_affinity && !pod_matches_node_selector_and_affinity(pod, &ni.node) {
        return false;
    }
    if c.honor_node_taints {
        let taints = ni
            .node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[]);
        if find_untolerated_taint(taints, pod_tolerations(pod), &["NoSchedule", "NoExecute"])
            .is_some()
        {
            return false;
        }
    }
    true
}

/// The PreFilter state for DoNotSchedule constraints.
pub(crate) struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: topology value → matching pods.
    counts: Vec<BTreeMap<String, i64>>,
}

impl FilterState {
    pub(crate) fn new(pod: &CachedPod, nodes: &[NodeInfo]) -> FilterState {
        let cs = constraints(pod, "DoNotSchedule");
        let mut counts = vec![BTreeMap::new(); cs.len()];
        let ns = pod_namespace(pod);
        for ni in nodes {
            if !has_all_keys(ni, &cs) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                if !included(pod, ni, c) {
                    continue;
                }
                let Some(value) = ni.labels.get(&c.topology_key) else {
                    continue;
                };
                *counts[i].entry(value.clone()).or_insert(0) += count_matching(ni, c, ns);
            }
        }
        FilterState {
            constraints: cs,
            counts,
        }
    }

    pub(crate) fn filter(&self, pod: &CachedPod, ni: &NodeInfo) -> Option<Status> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = ni.labels.get(&c.topology_key) else {
                return Some(Status::unresolvable(ERR_MISSING_LABEL));
            };
            let domains = &self.counts[i];
            let mut min = domains
                .values()
                .copied()
                .min()
                .unwrap_or(i64::from(i32::MAX));
            if c.min_domains.is_some_and(|m| (domains.len() as i64) < m) {
                min = 0;
            }
            let self_match = c
                .selector
                .as_ref()
                .is_some_and(|s| label_selector_matches(s, pod_labels(pod)));
            let matching = domains.get(value).copied().unwrap_or(0);
            let skew = matching + i64::from(self_match) - min;
            if skew > c.max_skew {
                return Some(Status::unschedulable(ERR_CONSTRAINTS));
            }
        }
        None
    }
}

/// The PodTopologySpread score of each feasible node for ScheduleAnyway constraints,
/// normalized so the least crowded domain scores 100.
pub(crate) fn score(pod: &CachedPod, nodes: &[NodeInfo], feasible: &[usize]) -> Vec<i64> {
    let cs = constraints(pod, "ScheduleAnyway");
    if cs.is_empty() || feasible.is_empty() {
        return vec![0; feasible.len()];
    }
    let ns = pod_namespace(pod);
    // PreScore: the domains of the feasible nodes, then pod counts from every node.
    let mut ignored = vec![false; feasible.len()];
    let mut pair_counts: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); cs.len()];
    for (j, &i) in feasible.iter().enumerate() {
        let ni = &nodes[i];
        if !has_all_keys(ni, &cs) {
            ignored[j] = true;
            continue;
        }
        for (k, c) in cs.iter().enumerate() {
            if c.topology_key == HOSTNAME {
                continue;
            }
            if let Some(v) = ni.labels.get(&c.topology_key) {
                pair_counts[k].entry(v.clone()).or_insert(0);
            }
        }
    }
    let considered = ignored.iter().filter(|x| !**x).count();
    let weights: Vec<f64> = cs
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let size = if c.topology_key == HOSTNAME {
                considered
            } else {
                pair_counts[k].len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    for ni in nodes {
        if !has_all_keys(ni, &cs) {
            continue;
        }
        for (k, c) in cs.iter().enumerate() {
            if !included(pod, ni, c) {
                continue;
            }
            let Some(v) = ni.labels.get(&c.topology_key) else {
                continue;
            };
            if let Some(n) = pair_counts[k].get_mut(v) {
                *n += count_matching(ni, c, ns);
            }
        }
    }
    // Score: matching pods in the node's domains, weighted; fewer is better.
    let raw: Vec<i64> = feasible
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            if ignored[j] {
                return 0;
            }
            let ni = &nodes[i];
            let mut s = 0.0;
            for (k, c) in cs.iter().enumerate() {
                let Some(v) = ni.labels.get(&c.topology_key) else {
                    continue;
                };
                let cnt = if c.topology_key == HOSTNAME {
                    count_matching(ni, c, ns)
                } else {
                    pair_counts[k].get(v).copied().unwrap_or(0)
                };
                s += cnt as f64 * weights[k] + (c.max_skew - 1) as f64;
            }
            s.round() as i64
        })
        .collect();
    // NormalizeScore.
    let considered_scores = raw
        .iter()
        .zip(&ignored)
        .filter(|(_, ig)| !**ig)
        .map(|(s, _)| *s);
    let min = considered_scores.clone().min().unwrap_or(0);
    let max = considered_scores.max().unwrap_or(0);
    raw.iter()
        .zip(&ignored)
        .map(|(&s, &ig)| {
            if ig {
                0
            } else if max == 0 {
                100
            } else {
                100 * (max + min - s) / max
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::build;
    use crate::testutil::*;
    use crate::Snapshot;
    use serde_json::{json, Value};

    fn zoned() -> Vec<k8s_openapi::api::core::v1::Node> {
        vec![
            node("a1", json!({"zone": "a"}), small_alloc()),
            node("a2", json!({"zone": "a"}), small_alloc()),
            node("b1", json!({"zone": "b"}), small_alloc()),
        ]
    }

    fn spread_pod(name: &str, constraints: Value) -> CachedPod {
        pod(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "topologySpreadConstraints": constraints}
        }))
    }

    fn web(name: &str, node_name: &str) -> CachedPod {
        bound_pod(
            name,
            node_name,
            json!({"app": "web"}),
            json!({"containers": [{"name": "c"}]}),
        )
    }

    fn filter_all(p: &CachedPod, snap: &Snapshot) -> Vec<Option<Status>> {
        let nodes = build(p, snap);
        let s = FilterState::new(p, &nodes);
        nodes.iter().map(|ni| s.filter(p, ni)).collect()
    }

    #[test]
    fn do_not_schedule_max_skew() {
        let p = spread_pod(
            "web-3",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        // zone a has 1, zone b has 0: only zone b keeps skew <= 1.
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1")],
            ..Default::default()
        };
        let bad = Some(Status::unschedulable(ERR_CONSTRAINTS));
        assert_eq!(filter_all(&p, &snap), vec![bad.clone(), bad.clone(), None]);
        // Balanced: anything goes.
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), web("w2", "b1")],
            ..Default::default()
        };
        assert_eq!(filter_all(&p, &snap), vec![None, None, None]);
        // Pods of another app or namespace do not count.
        let mut other_ns = web("w3", "b1");
        other_ns.metadata.namespace = Some("other".into());
        let other_app = bound_pod(
            "db",
            "b1",
            json!({"app": "db"}),
            json!({"containers": [{"name": "c"}]}),
        );
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), other_ns, other_app],
            ..Default::default()
        };
        assert_eq!(filter_all(&p, &snap), vec![bad.clone(), bad, None]);
    }

    #[test]
    fn missing_topology_label_is_unresolvable() {
        let p = spread_pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let mut nodes = zoned();
        nodes.push(node("bare", json!({}), small_alloc()));
        let snap = Snapshot {
            nodes,
            ..Default::default()
        };
        assert_eq!(
            filter_all(&p, &snap),
            vec![
                None,
                None,
                None,
                Some(Status::unresolvable(ERR_MISSING_LABEL))
            ]
        );
    }

    #[test]
    fn min_domains_treats_global_minimum_as_zero() {
        let p = spread_pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "minDomains": 3, "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), web("w2", "b1")],
            ..Default::default()
        };
        let bad = Some(Status::unschedulable(ERR_CONSTRAINTS));
        assert_eq!(filter_all(&p, &snap), vec![bad.clone(), bad.clone(), bad]);
    }

    #[test]
    fn node_affinity_policy_limits_domains() {
        // The pod may only go to zone a; zone b's emptiness does not count against it.
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c"}], "nodeSelector": {"zone": "a"},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}}]}
        }));
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1")],
            ..Default::default()
        };
        assert_eq!(filter_all(&p, &snap), vec![None, None, None]);
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "v2"}},
            "spec": {"containers": [{"name": "c"}],
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["pod-template-hash"]}]}
        }));
        // Old-revision pods (no v2 hash) do not count.
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), web("w2", "a2")],
            ..Default::default()
        };
        assert_eq!(filter_all(&p, &snap), vec![None, None, None]);
    }

    fn score_all(p: &CachedPod, snap: &Snapshot) -> Vec<i64> {
        let nodes = build(p, snap);
        let feasible: Vec<usize> = (0..nodes.len()).collect();
        score(p, &nodes, &feasible)
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let p = spread_pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), web("w2", "a2")],
            ..Default::default()
        };
        // zone a: 2 pods * ln(4) = 2.77 -> 3; zone b: 0. Normalized: a = 100*(3+0-3)/3 = 0, b = 100.
        assert_eq!(score_all(&p, &snap), vec![0, 0, 100]);
        let host = spread_pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        let snap = Snapshot {
            nodes: zoned(),
            pods: vec![web("w1", "a1"), web("w2", "a1"), web("w3", "a2")],
            ..Default::default()
        };
        // ln(5) = 1.609: a1 = round(3.22) = 3, a2 = 2, b1 = 0 -> 100*(3-s)/3.
        assert_eq!(score_all(&host, &snap), vec![0, 33, 100]);
        // No pods: all 100.
        let snap = Snapshot {
            nodes: zoned(),
            ..Default::default()
        };
        assert_eq!(score_all(&host, &snap), vec![100, 100, 100]);
        // DoNotSchedule constraints do not score.
        let hard = spread_pod(
            "web",
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]),
        );
        assert_eq!(score_all(&hard, &snap), vec![0, 0, 0]);
    }
}
