//! Label selectors (pods, namespaces) and node selector terms (node affinity).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_informer::CachedPod;

pub use skiff_meta::selector::typed_label_selector_matches as label_selector_matches;

/// `metav1.LabelSelectorAsSelector` semantics for an optional selector: absent selects
/// nothing, present-but-empty selects everything.
pub(crate) fn optional_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|s| label_selector_matches(s, labels))
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(v))) = (bound.parse::<i64>(), value.map(|v| v.parse::<i64>()))
            else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node satisfies one NodeSelectorTerm (its matchExpressions on labels and
/// matchFields on `metadata.name`, all ANDed). An empty term matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    for req in exprs {
        if !requirement_matches(req, labels.get(&req.key)) {
            return false;
        }
    }
    for req in fields {
        // Only metadata.name is a supported field, with In and NotIn.
        if req.key != "metadata.name" || !matches!(req.operator.as_str(), "In" | "NotIn") {
            return false;
        }
        if !requirement_matches(req, node.metadata.name.as_ref()) {
            return false;
        }
    }
    true
}

/// The NodeAffinity filter: the pod's `spec.nodeSelector` and its required node affinity
/// (terms ORed) both hold on the node. The DaemonSet controller uses the same check.
pub fn pod_matches_node_selector_and_affinity(pod: &CachedPod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(selector) = spec.node_selector.as_ref() {
        let empty = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(ns) => ns
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node)),
    }
}

/// NodeAffinity's PreFilter: when every required term names nodes with a `matchFields`
/// `metadata.name In [...]` requirement, only those nodes need to be evaluated. Returns
/// `None` when any node may match, or the set of node names (empty when the terms
/// contradict each other).
pub fn required_node_names(pod: &CachedPod) -> Option<BTreeSet<String>> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut names: Option<BTreeSet<String>> = None;
    for t in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in t.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let set: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
        }
        // A term without a node name requirement lets every node through (terms are ORed).
        let term_names = term_names?;
        names.get_or_insert_with(BTreeSet::new).extend(term_names);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    fn labels(v: serde_json::Value) -> BTreeMap<String, String> {
        serde_json::from_value(v).unwrap()
    }

    fn selector(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(label_selector_matches(&selector(json!({})), &l));
        assert!(label_selector_matches(
            &selector(json!({"matchLabels": {"app": "web"}})),
            &l
        ));
        assert!(!label_selector_matches(
            &selector(json!({"matchLabels": {"app": "db"}})),
            &l
        ));
        let expr = |op: &str, vals: serde_json::Value| {
            selector(json!({"matchExpressions": [{"key": "tier", "operator": op, "values": vals}]}))
        };
        assert!(label_selector_matches(
            &expr("In", json!(["front", "back"])),
            &l
        ));
        assert!(!label_selector_matches(&expr("In", json!(["back"])), &l));
        assert!(label_selector_matches(&expr("NotIn", json!(["back"])), &l));
        assert!(!label_selector_matches(
            &expr("NotIn", json!(["front"])),
            &l
        ));
        assert!(label_selector_matches(&expr("Exists", json!(null)), &l));
        assert!(!label_selector_matches(
            &expr("DoesNotExist", json!(null)),
            &l
        ));
        assert!(!label_selector_matches(&expr("Bogus", json!(null)), &l));
        let absent = selector(
            json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}),
        );
        assert!(label_selector_matches(&absent, &l));
        assert!(!optional_selector_matches(None, &l));
    }

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_selector_term_operators() {
        let n = node(
            "worker-1",
            json!({"disktype": "ssd", "gpus": "4", "kubernetes.io/hostname": "worker-1"}),
            json!({}),
        );
        let e = |key: &str, op: &str, vals: serde_json::Value| {
            term(json!({"matchExpressions": [{"key": key, "operator": op, "values": vals}]}))
        };
        assert!(node_selector_term_matches(
            &e("disktype", "In", json!(["ssd", "nvme"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("disktype", "In", json!(["hdd"])),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("disktype", "NotIn", json!(["hdd"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("disktype", "NotIn", json!(["ssd"])),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("zone", "NotIn", json!(["a"])),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("disktype", "Exists", json!(null)),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("zone", "Exists", json!(null)),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("zone", "DoesNotExist", json!(null)),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("disktype", "DoesNotExist", json!(null)),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("gpus", "Gt", json!(["2"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("gpus", "Gt", json!(["4"])),
            &n
        ));
        assert!(node_selector_term_matches(
            &e("gpus", "Lt", json!(["5"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("gpus", "Lt", json!(["4"])),
            &n
        ));
        // Non-integer label or bound, missing label, or several values: no match.
        assert!(!node_selector_term_matches(
            &e("disktype", "Gt", json!(["1"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("gpus", "Gt", json!(["x"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("zone", "Lt", json!(["1"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &e("gpus", "Gt", json!(["1", "2"])),
            &n
        ));
        // Empty term matches nothing.
        assert!(!node_selector_term_matches(&term(json!({})), &n));
        // matchFields on metadata.name.
        let f = |op: &str, vals: serde_json::Value| {
            term(json!({"matchFields": [{"key": "metadata.name", "operator": op, "values": vals}]}))
        };
        assert!(node_selector_term_matches(
            &f("In", json!(["worker-1"])),
            &n
        ));
        assert!(!node_selector_term_matches(
            &f("In", json!(["worker-2"])),
            &n
        ));
        assert!(node_selector_term_matches(
            &f("NotIn", json!(["worker-2"])),
            &n
        ));
        assert!(!node_selector_term_matches(&f("Exists", json!(null)), &n));
        let other_field = term(
            json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]}),
        );
        assert!(!node_selector_term_matches(&other_field, &n));
        // Expressions and fields are ANDed.
        let both = term(json!({
            "matchExpressions": [{"key": "disktype", "operator": "In", "values": ["ssd"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["worker-2"]}]
        }));
        assert!(!node_selector_term_matches(&both, &n));
    }

    #[test]
    fn node_selector_and_required_terms() {
        let n = node("n1", json!({"disktype": "ssd", "zone": "a"}), json!({}));
        let p = |spec: serde_json::Value| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "c"}]);
            pod(json!({"metadata": {"name": "p"}, "spec": spec}))
        };
        assert!(pod_matches_node_selector_and_affinity(&p(json!({})), &n));
        assert!(pod_matches_node_selector_and_affinity(
            &p(json!({"nodeSelector": {"disktype": "ssd"}})),
            &n
        ));
        assert!(!pod_matches_node_selector_and_affinity(
            &p(json!({"nodeSelector": {"disktype": "hdd"}})),
            &n
        ));
        let terms = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
        ]}}}});
        assert!(pod_matches_node_selector_and_affinity(
            &p(terms.clone()),
            &n
        ));
        let mut both = terms;
        both["nodeSelector"] = json!({"disktype": "hdd"});
        assert!(!pod_matches_node_selector_and_affinity(&p(both), &n));
    }

    #[test]
    fn required_node_names_from_match_fields() {
        let p = |terms: serde_json::Value| {
            pod(
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
            )
        };
        let names = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        let field = |vals: serde_json::Value| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": vals}]});
        assert_eq!(required_node_names(&simple_pod("p", json!({}))), None);
        assert_eq!(
            required_node_names(&p(json!([field(json!(["a", "b"]))]))),
            names(&["a", "b"])
        );
        assert_eq!(
            required_node_names(&p(json!([field(json!(["a"])), field(json!(["c"]))]))),
            names(&["a", "c"])
        );
        let both = json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
            {"key": "metadata.name", "operator": "In", "values": ["c"]}
        ]});
        assert_eq!(required_node_names(&p(json!([both]))), names(&[]));
        let labels_only = json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]});
        assert_eq!(
            required_node_names(&p(json!([field(json!(["a"])), labels_only]))),
            None
        );
    }
}
