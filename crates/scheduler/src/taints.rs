//! Taint and toleration matching, shared with the node lifecycle controller.

use k8s_openapi::api::core::v1::{Taint, Toleration};
use skiff_informer::CachedPod;

/// The taint the NodeUnschedulable plugin checks tolerations against.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Whether one toleration tolerates a taint (`v1.Toleration.ToleratesTaint`): the effect
/// matches or is empty, the key matches or is empty, and the operator is `Exists` or
/// `Equal` (the default) with an equal value.
pub fn toleration_tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| toleration_tolerates(t, taint))
}

/// The pod's tolerations (empty when it has none).
pub fn pod_tolerations(pod: &CachedPod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerates(tolerations, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(v: serde_json::Value) -> Taint {
        serde_json::from_value(v).unwrap()
    }
    fn tols(v: serde_json::Value) -> Vec<Toleration> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching() {
        let t = taint(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
        assert!(!tolerates(&[], &t));
        assert!(tolerates(
            &tols(
                json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])
            ),
            &t
        ));
        assert!(tolerates(
            &tols(json!([{"key": "dedicated", "value": "gpu"}])),
            &t
        ));
        assert!(!tolerates(
            &tols(json!([{"key": "dedicated", "value": "cpu"}])),
            &t
        ));
        assert!(tolerates(
            &tols(json!([{"key": "dedicated", "operator": "Exists"}])),
            &t
        ));
        assert!(!tolerates(
            &tols(json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}])),
            &t
        ));
        assert!(tolerates(&tols(json!([{"operator": "Exists"}])), &t));
        assert!(!tolerates(
            &tols(json!([{"key": "other", "operator": "Exists"}])),
            &t
        ));
        assert!(!tolerates(
            &tols(json!([{"key": "dedicated", "operator": "Bogus"}])),
            &t
        ));
        let no_value =
            taint(json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}));
        assert!(tolerates(
            &tols(json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Equal"}])),
            &no_value
        ));
    }

    #[test]
    fn finds_first_untolerated_taint_of_given_effects() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "a", "value": "1", "effect": "NoSchedule"},
            {"key": "b", "value": "2", "effect": "NoExecute"}
        ]))
        .unwrap();
        let hard = ["NoSchedule", "NoExecute"];
        assert_eq!(
            find_untolerated_taint(&taints, &[], &hard).map(|t| t.key.as_str()),
            Some("a")
        );
        let t = tols(json!([{"key": "a", "operator": "Exists"}]));
        assert_eq!(
            find_untolerated_taint(&taints, &t, &hard).map(|t| t.key.as_str()),
            Some("b")
        );
        let t =
            tols(json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]));
        assert!(find_untolerated_taint(&taints, &t, &hard).is_none());
    }
}
