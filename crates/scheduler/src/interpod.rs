//! InterPodAffinity: required pod affinity / anti-affinity of the incoming pod, required
//! anti-affinity of existing pods against it (filter), and preferred terms (score).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_informer::CachedPod;

use crate::labels::{label_selector_matches, optional_selector_matches};
use crate::nodes::{pod_labels, pod_namespace, NodeInfo};
use crate::Status;

pub(crate) const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub(crate) const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub(crate) const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// kube-scheduler's default hardPodAffinityWeight.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type NsLabels = BTreeMap<String, BTreeMap<String, String>>;
type TopologyPair = (String, String);

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A PodAffinityTerm with its namespaces resolved relative to the pod that owns it.
#[derive(Debug, Clone)]
struct Term {
    namespaces: BTreeSet<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    topology_key: String,
}

impl Term {
    fn new(owner: &CachedPod, t: &PodAffinityTerm) -> Term {
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(pod_namespace(owner).to_string());
        }
        Term {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector: t.label_selector.clone(),
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether `pod` is selected by this term (its namespace, then its labels).
    fn matches(&self, pod: &CachedPod, ns_labels: &NsLabels) -> bool {
        let ns = pod_namespace(pod);
        let ns_ok = self.namespaces.contains(ns)
            || self.namespace_selector.as_ref().is_some_and(|sel| {
                label_selector_matches(sel, ns_labels.get(ns).unwrap_or(&NO_LABELS))
            });
        ns_ok && optional_selector_matches(self.selector.as_ref(), pod_labels(pod))
    }
}

#[derive(Default)]
struct PodTerms {
    required_affinity: Vec<Term>,
    required_anti_affinity: Vec<Term>,
    preferred_affinity: Vec<(i64, Term)>,
    preferred_anti_affinity: Vec<(i64, Term)>,
}

fn weighted(owner: &CachedPod, terms: Option<&Vec<WeightedPodAffinityTerm>>) -> Vec<(i64, Term)> {
    terms
        .into_iter()
        .flatten()
        .map(|w| (i64::from(w.weight), Term::new(owner, &w.pod_affinity_term)))
        .collect()
}

fn pod_terms(pod: &CachedPod) -> PodTerms {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return PodTerms::default();
    };
    let aff = affinity.pod_affinity.as_ref();
    let anti = affinity.pod_anti_affinity.as_ref();
    let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
        terms
            .into_iter()
            .flatten()
            .map(|t| Term::new(pod, t))
            .collect()
    };
    PodTerms {
        required_affinity: required(aff.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        required_anti_affinity: required(anti.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        preferred_affinity: weighted(
            pod,
            aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
        preferred_anti_affinity: weighted(
            pod,
            anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
    }
}

/// The PreFilter state: counts of matching pods per topology pair.
pub(crate) struct State {
    terms: PodTerms,
    pod_matches_own_affinity: bool,
    affinity_counts: BTreeMap<TopologyPair, i64>,
    anti_affinity_counts: BTreeMap<TopologyPair, i64>,
    existing_anti_affinity_counts: BTreeMap<TopologyPair, i64>,
}

fn bump(counts: &mut BTreeMap<TopologyPair, i64>, ni: &NodeInfo, key: &str) {
    if let Some(v) = ni.labels.get(key) {
        *counts.entry((key.to_string(), v.clone())).or_insert(0) += 1;
    }
}

impl State {
    pub(crate) fn new(pod: &CachedPod, nodes: &[NodeInfo], ns_labels: &NsLabels) -> State {
        let terms = pod_terms(pod);
        let mut s = State {
            pod_matches_own_affinity: terms
                .required_affinity
                .iter()
                .all(|t| t.matches(pod, ns_labels)),
            terms,
            affinity_counts: BTreeMap::new(),
            anti_affinity_counts: BTreeMap::new(),
            existing_anti_affinity_counts: BTreeMap::new(),
        };
        let own_terms =
            !s.terms.required_affinity.is_empty() || !s.terms.required_anti_affinity.is_empty();
        for ni in nodes {
            // Existing pods' required anti-affinity against the incoming pod.
            for existing in &ni.with_required_anti_affinity {
                for t in pod_terms(existing).required_anti_affinity {
                    if t.matches(pod, ns_labels) {
                        bump(&mut s.existing_anti_affinity_counts, ni, &t.topology_key);
                    }
                }
            }
            if !own_terms {
                continue;
            }
            for existing in &ni.pods {
                let affinity = &s.terms.required_affinity;
                if !affinity.is_empty() && affinity.iter().all(|t| t.matches(existing, ns_labels)) {
                    for t in affinity {
                        bump(&mut s.affinity_counts, ni, &t.topology_key);
                    }
                }
                for t in &s.terms.required_anti_affinity {
                    if t.matches(existing, ns_labels) {
                        bump(&mut s.anti_affinity_counts, ni, &t.topology_key);
                    }
                }
            }
        }
        s
    }

    pub(crate) fn filter(&self, ni: &NodeInfo) -> Option<Status> {
        if !self.satisfies_affinity(ni) {
            return Some(Status::unresolvable(ERR_AFFINITY));
        }
        for t in &self.terms.required_anti_affinity {
            if let Some(v) = ni.labels.get(&t.topology_key) {
                let pair = (t.topology_key.clone(), v.clone());
                if self.anti_affinity_counts.get(&pair).copied().unwrap_or(0) > 0 {
                    return Some(Status::unschedulable(ERR_ANTI_AFFINITY));
                }
            }
        }
        for (k, v) in &ni.labels {
            let pair = (k.clone(), v.clone());
            if self
                .existing_anti_affinity_counts
                .get(&pair)
                .copied()
                .unwrap_or(0)
                > 0
            {
                return Some(Status::unschedulable(ERR_EXISTING_ANTI_AFFINITY));
            }
        }
        None
    }

    fn satisfies_affinity(&self, ni: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &self.terms.required_affinity {
            let Some(v) = ni.labels.get(&t.topology_key) else {
                // All topology labels must exist on the node.
                return false;
            };
            let pair = (t.topology_key.clone(), v.clone());
            if self.affinity_counts.get(&pair).copied().unwrap_or(0) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere that has the
        // topology labels, if no pod in the cluster matches yet.
        pods_exist || (self.affinity_counts.is_empty() && self.pod_matches_own_affinity)
    }
}

/// The InterPodAffinity score of each feasible node (normalized to 0–100 by min/max).
pub(crate) fn score(
    pod: &CachedPod,
    nodes: &[NodeInfo],
    feasible: &[usize],
    ns_labels: &NsLabels,
) -> Vec<i64> {
    let terms = pod_terms(pod);
    let mut topo: BTreeMap<TopologyPair, i64> = BTreeMap::new();
    let mut add = |term: &Term, weight: i64, target: &CachedPod, ni: &NodeInfo| {
        if term.matches(target, ns_labels) {
            if let Some(v) = ni.labels.get(&term.topology_key) {
                *topo
                    .entry((term.topology_key.clone(), v.clone()))
                    .or_insert(0) += weight;
            }
        }
    };
    // Without preferred terms of its own, only existing pods with affinity terms count
    // (kube-scheduler's PreScore reads PodsWithAffinity then).
    let own_terms =
        !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();
    for ni in nodes {
        let existing_pods = if own_terms {
            &ni.pods
        } else {
            &ni.with_affinity
        };
        for existing in existing_pods {
            for (w, t) in &terms.preferred_affinity {
                add(t, *w, existing, ni);
            }
            for (w, t) in &terms.preferred_anti_affinity {
                add(t, -*w, existing, ni);
            }
            let theirs = pod_terms(existing);
            if !ni.labels.is_empty() {
                for t in &theirs.required_affinity {
                    add(t, HARD_POD_AFFINITY_WEIGHT, pod, ni);
                }
            }
            for (w, t) in &theirs.preferred_affinity {
                add(t, *w, pod, ni);
            }
            for (w, t) in &theirs.preferred_anti_affinity {
                add(t, -*w, pod, ni);
            }
        }
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&i| {
            nodes[i]
                .labels
                .iter()
                .map(|(k, v)| topo.get(&(k.clone(), v.clone())).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let (Some(&min), Some(&max)) = (raw.iter().min(), raw.iter().max()) else {
        return raw;
    };
    let diff = max - min;
    raw.iter()
        .map(|&s| {
            if diff > 0 {
                (100.0 * ((s - min) as f64 / diff as f64)) as i64
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::{build, namespace_labels};
    use crate::testutil::*;
    use crate::Snapshot;
    use serde_json::{json, Value};

    fn cluster(pods: Vec<CachedPod>) -> Snapshot {
        Snapshot {
            nodes: vec![
                node(
                    "n1",
                    json!({"topology.kubernetes.io/zone": "a"}),
                    small_alloc(),
                ),
                node(
                    "n2",
                    json!({"topology.kubernetes.io/zone": "a"}),
                    small_alloc(),
                ),
                node(
                    "n3",
                    json!({"topology.kubernetes.io/zone": "b"}),
                    small_alloc(),
                ),
            ],
            pods,
            ..Default::default()
        }
    }

    fn with_affinity(name: &str, labels: Value, affinity: Value) -> CachedPod {
        pod(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c"}], "affinity": affinity}
        }))
    }

    fn filter_all(p: &CachedPod, snap: &Snapshot) -> Vec<Option<&'static str>> {
        let nodes = build(p, snap);
        let s = State::new(p, &nodes, &namespace_labels(&snap.namespaces));
        nodes
            .iter()
            .map(|ni| {
                s.filter(ni).map(|st| match st.reasons[0].as_str() {
                    ERR_AFFINITY => "affinity",
                    ERR_ANTI_AFFINITY => "anti",
                    ERR_EXISTING_ANTI_AFFINITY => "existing",
                    _ => "other",
                })
            })
            .collect()
    }

    fn web(name: &str, node_name: &str) -> CachedPod {
        bound_pod(
            name,
            node_name,
            json!({"app": "web"}),
            json!({"containers": [{"name": "c"}]}),
        )
    }

    #[test]
    fn anti_affinity_by_hostname() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}});
        let p = with_affinity("web-3", json!({"app": "web"}), anti);
        let snap = cluster(vec![web("web-1", "n1")]);
        assert_eq!(filter_all(&p, &snap), vec![Some("anti"), None, None]);
        // Another namespace does not count.
        let mut other = web("web-x", "n2");
        other.metadata.namespace = Some("other".into());
        let snap = cluster(vec![web("web-1", "n1"), other]);
        assert_eq!(filter_all(&p, &snap), vec![Some("anti"), None, None]);
    }

    #[test]
    fn anti_affinity_by_zone_and_namespaces() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone",
             "namespaces": ["other"]}
        ]}});
        let p = with_affinity("p", json!({}), anti);
        let mut other = web("web-x", "n1");
        other.metadata.namespace = Some("other".into());
        let snap = cluster(vec![web("web-1", "n3"), other]);
        assert_eq!(
            filter_all(&p, &snap),
            vec![Some("anti"), Some("anti"), None]
        );
    }

    #[test]
    fn namespace_selector() {
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname",
             "namespaceSelector": {"matchLabels": {"team": "blue"}}}
        ]}});
        let p = with_affinity("p", json!({}), aff);
        let mut blue = web("web-b", "n2");
        blue.metadata.namespace = Some("blue-ns".into());
        let mut snap = cluster(vec![web("web-1", "n1"), blue]);
        snap.namespaces = vec![serde_json::from_value(
            json!({"metadata": {"name": "blue-ns", "labels": {"team": "blue"}}}),
        )
        .unwrap()];
        assert_eq!(
            filter_all(&p, &snap),
            vec![Some("affinity"), None, Some("affinity")]
        );
    }

    #[test]
    fn affinity_requires_matching_pods_in_topology() {
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
             "topologyKey": "topology.kubernetes.io/zone"}
        ]}});
        let p = with_affinity("cache", json!({"app": "cache"}), aff.clone());
        let snap = cluster(vec![web("web-1", "n3")]);
        assert_eq!(
            filter_all(&p, &snap),
            vec![Some("affinity"), Some("affinity"), None]
        );
        // Nothing matches anywhere and the pod does not match itself: nowhere.
        let snap = cluster(vec![]);
        assert_eq!(
            filter_all(&p, &snap),
            vec![Some("affinity"), Some("affinity"), Some("affinity")]
        );
        // The first pod of a self-affine group may go anywhere.
        let first = with_affinity("web-0", json!({"app": "web"}), aff);
        assert_eq!(filter_all(&first, &snap), vec![None, None, None]);
        // A node without the topology label never satisfies affinity.
        let mut snap = cluster(vec![web("web-1", "n3")]);
        snap.nodes.push(node("bare", json!({}), small_alloc()));
        assert_eq!(
            filter_all(&first, &snap),
            vec![Some("affinity"), Some("affinity"), None, Some("affinity")]
        );
    }

    #[test]
    fn existing_pods_anti_affinity() {
        let mut lonely = web("lonely", "n1");
        lonely.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(json!({
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}
            ]}
        })).unwrap());
        let snap = cluster(vec![lonely]);
        let db = simple_pod("db", json!({"app": "db"}));
        assert_eq!(
            filter_all(&db, &snap),
            vec![Some("existing"), Some("existing"), None]
        );
        let other = simple_pod("x", json!({"app": "x"}));
        assert_eq!(filter_all(&other, &snap), vec![None, None, None]);
    }

    fn score_all(p: &CachedPod, snap: &Snapshot) -> Vec<i64> {
        let nodes = build(p, snap);
        let feasible: Vec<usize> = (0..nodes.len()).collect();
        score(p, &nodes, &feasible, &namespace_labels(&snap.namespaces))
    }

    #[test]
    fn preferred_terms_score() {
        let pref = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}}
            ]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}
            ]}
        });
        let p = with_affinity("cache", json!({}), pref);
        // web on n1 (zone a): n1 = 100 - 50, n2 = 100, n3 = 0.
        let snap = cluster(vec![web("web-1", "n1")]);
        assert_eq!(score_all(&p, &snap), vec![50, 100, 0]);
        // No existing pods: everything scores 0.
        assert_eq!(score_all(&p, &cluster(vec![])), vec![0, 0, 0]);
    }

    #[test]
    fn existing_pods_terms_score() {
        let mut sticky = web("sticky", "n3");
        sticky.spec.as_mut().unwrap().affinity = Some(serde_json::from_value(json!({
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}
        })).unwrap());
        let db = simple_pod("db", json!({"app": "db"}));
        assert_eq!(score_all(&db, &cluster(vec![sticky])), vec![0, 0, 100]);
    }
}
