//! VolumeBinding: a pod's PersistentVolumeClaims must exist, an unbound claim must wait
//! for its first consumer (else the pod waits for the claim to be bound), and the node
//! must satisfy the node affinity of every PersistentVolume its claims are bound to.

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use skiff_informer::CachedPod;

use crate::nodes::NodeInfo;
use crate::Status;

/// The storage objects the VolumeBinding plugin reads.
#[derive(Debug, Clone, Default)]
pub struct Volumes {
    pub claims: Vec<PersistentVolumeClaim>,
    pub volumes: Vec<PersistentVolume>,
    pub classes: Vec<StorageClass>,
}

/// The annotation that tells the provisioner which node a claim waiting for its first
/// consumer is wanted on.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ERR_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The claim names of a pod's persistentVolumeClaim volumes.
pub fn pod_claims(pod: &CachedPod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// Whether a claim of class `class` is bound only once a pod uses it.
pub fn waits_for_first_consumer(vols: &Volumes, class: Option<&str>) -> bool {
    let Some(class) = class.filter(|c| !c.is_empty()) else {
        return false;
    };
    vols.classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class))
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer")
}

/// PreFilter's result: the node affinities the pod's bound volumes require, or why the
/// pod cannot be placed anywhere yet.
pub(crate) enum State {
    Required(Vec<NodeSelector>),
    Rejected(String),
}

impl State {
    pub(crate) fn new(pod: &CachedPod, vols: &Volumes) -> State {
        let ns = crate::nodes::pod_namespace(pod);
        let mut required = Vec::new();
        for name in pod_claims(pod) {
            let Some(claim) = vols.claims.iter().find(|c| {
                c.metadata.name.as_deref() == Some(name.as_str())
                    && c.metadata.namespace.as_deref().unwrap_or("default") == ns
            }) else {
                return State::Rejected(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return State::Rejected(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                ));
            }
            let spec = claim.spec.clone().unwrap_or_default();
            match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
                Some(pv) => {
                    let Some(pv) = vols
                        .volumes
                        .iter()
                        .find(|v| v.metadata.name.as_deref() == Some(pv))
                    else {
                        return State::Rejected(format!(
                            "pvc {name} bound to non-existent pv {pv}"
                        ));
                    };
                    if let Some(sel) = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_affinity.as_ref())
                        .and_then(|a| a.required.clone())
                    {
                        required.push(sel);
                    }
                }
                None => {
                    if !waits_for_first_consumer(vols, spec.storage_class_name.as_deref()) {
                        return State::Rejected(ERR_UNBOUND_IMMEDIATE.into());
                    }
                }
            }
        }
        State::Required(required)
    }

    pub(crate) fn filter(&self, ni: &NodeInfo) -> Option<Status> {
        match self {
            State::Required(sels) => sels
                .iter()
                .any(|sel| {
                    !sel.node_selector_terms
                        .iter()
                        .any(|t| crate::labels::node_selector_term_matches(t, &ni.node))
                })
                .then(|| Status::unresolvable(ERR_CONFLICT)),
            State::Rejected(why) => Some(Status::unresolvable(why.clone())),
        }
    }

    pub(crate) fn rejected(&self) -> Option<&str> {
        match self {
            State::Rejected(why) => Some(why),
            State::Required(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::Snapshot;
    use serde_json::json;

    fn claim_pod() -> CachedPod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}
        }))
    }

    fn vols(volume_name: Option<&str>, class: &str) -> Volumes {
        Volumes {
            claims: vec![serde_json::from_value(json!({
                "metadata": {"name": "data", "namespace": "default"},
                "spec": {"storageClassName": class, "volumeName": volume_name,
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }))
            .unwrap()],
            volumes: vec![serde_json::from_value(json!({
                "metadata": {"name": "pv1"},
                "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/x"},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}
            }))
            .unwrap()],
            classes: vec![serde_json::from_value(json!({
                "metadata": {"name": "local-path"}, "provisioner": "skiff.io/local-path",
                "volumeBindingMode": "WaitForFirstConsumer"
            }))
            .unwrap()],
        }
    }

    #[test]
    fn bound_claims_pin_the_pod_to_their_volume_node() {
        let snap = Snapshot {
            nodes: vec![
                node("n1", json!({}), small_alloc()),
                node("n2", json!({}), small_alloc()),
            ],
            ..Default::default()
        };
        let p = claim_pod();
        let v = vols(Some("pv1"), "local-path");
        assert_eq!(crate::schedule_with(&p, &snap, &v).unwrap(), "n2");
        // Unbound, waiting for its first consumer: any node.
        let v = vols(None, "local-path");
        assert!(crate::schedule_with(&p, &snap, &v).is_ok());
        // Unbound with immediate binding: wait.
        let v = vols(None, "manual");
        let e = crate::schedule_with(&p, &snap, &v).unwrap_err();
        assert!(e.message.contains(ERR_UNBOUND_IMMEDIATE), "{}", e.message);
        // The volume's node is gone.
        let only_n1 = Snapshot {
            nodes: vec![node("n1", json!({}), small_alloc())],
            ..Default::default()
        };
        let e = crate::schedule_with(&p, &only_n1, &vols(Some("pv1"), "local-path")).unwrap_err();
        assert!(
            e.message.starts_with(
                "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
            ),
            "{}",
            e.message
        );
        let e = crate::schedule_with(&p, &snap, &Volumes::default()).unwrap_err();
        assert!(
            e.message
                .contains("persistentvolumeclaim \"data\" not found"),
            "{}",
            e.message
        );
    }
}
