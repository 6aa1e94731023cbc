//! The disruption controller: keeps each PodDisruptionBudget's status (expected pods,
//! desired and current healthy, disruptions allowed, the DisruptionAllowed condition)
//! from the pods its selector matches, as kube-controller-manager's does; the
//! eviction subresource spends disruptions against that status.
//!
//! With an integer `minAvailable` the expected count is the number of matching pods;
//! with a percentage or `maxUnavailable` it is the scale of the pods' controllers
//! (Deployment through its ReplicaSet, ReplicaSet, ReplicationController, StatefulSet), and a pod without one
//! of those makes the budget fail safe (no disruption allowed, condition reason
//! SyncFailed). Pods recorded in `disruptedPods` by an eviction count as unhealthy until
//! they are gone, or for two minutes.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use std::collections::{BTreeMap, HashSet};

/// How long an eviction's record waits for the pod's deletion to be seen.
const DELETION_TIMEOUT_SECS: i64 = 120;

/// Whether a `metav1.LabelSelector` selects `labels` (None selects nothing; an empty
/// selector everything, as policy/v1 has it).
fn selects(
    sel: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    sel.is_some_and(|sel| skiff_meta::selector::typed_label_selector_matches(sel, labels))
}

/// `value` of `of`: an integer as is, a percentage of `of` rounded up.
fn scaled(value: &IntOrString, of: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value {s:?}: must be an integer or a percentage")
                })?;
            Ok(((pct * of as i64 + 99) / 100) as i32)
        }
    }
}

/// The replicas the pod's controller wants, and that controller's uid (counted once).
fn controller_scale(inf: &skiff_informer::Informers, pod: &CachedPod) -> Option<(String, i32)> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))?;
    let key = skiff_informer::Key {
        namespace: ns.clone(),
        name: owner.name.clone(),
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let rs = inf.replicasets.get(&key)?;
            if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                return None;
            }
            // A Deployment's ReplicaSets count as the Deployment.
            if let Some(d) = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true) && r.kind == "Deployment")
            {
                let dep = inf.deployments.get(&skiff_informer::Key {
                    namespace: ns,
                    name: d.name.clone(),
                })?;
                let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                return Some((d.uid.clone(), replicas));
            }
            Some((
                owner.uid.clone(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ))
        }
        "ReplicationController" => {
            let rc = inf.replication_controllers.get(&key)?;
            (rc.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| {
                (
                    owner.uid.clone(),
                    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            })
        }
        "StatefulSet" => {
            let sts = inf.statefulsets.get(&key)?;
            (sts.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| {
                (
                    owner.uid.clone(),
                    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                )
            })
        }
        _ => None,
    }
}

/// (expected pods, desired healthy) for a budget over `pods`.
fn expectations(
    inf: &skiff_informer::Informers,
    pdb: &PodDisruptionBudget,
    pods: &[&CachedPod],
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let by_controllers = || -> Result<i32, String> {
        let mut seen = HashSet::new();
        let mut total = 0;
        for p in pods {
            let (uid, n) = controller_scale(inf, p).ok_or_else(|| {
                format!(
                    "found no controllers for pod {:?}",
                    p.metadata.name.as_deref().unwrap_or("")
                )
            })?;
            if seen.insert(uid) {
                total += n;
            }
        }
        Ok(total)
    };
    if let Some(max) = &spec.max_unavailable {
        let expected = by_controllers()?;
        let max = scaled(max, expected)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(min) => {
            let expected = by_controllers()?;
            Ok((expected, scaled(min, expected)?))
        }
        None => Ok((pods.len() as i32, 0)),
    }
}

/// One pass over every budget, each reading the pods of its own namespace.
pub async fn sync(client: &Client, inf: &skiff_informer::Informers) -> Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    for pdb in inf.pdbs.state() {
        let ns = pdb.metadata.namespace.clone().unwrap_or_default();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        if pdb.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let pods = inf.pods.in_namespace(&ns);
        let matching: Vec<&CachedPod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| {
                selects(
                    selector,
                    p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
            })
            .collect();
        let status = pdb.status.clone().unwrap_or_default();
        // Evictions not yet seen through: kept while the pod exists undeleted, for
        // two minutes at most.
        let mut disrupted = BTreeMap::new();
        for (pod, at) in status.disrupted_pods.iter().flatten() {
            let live = matching.iter().any(|p| {
                p.metadata.name.as_deref() == Some(pod) && p.metadata.deletion_timestamp.is_none()
            });
            if live && now - at.0.as_second() < DELETION_TIMEOUT_SECS {
                disrupted.insert(pod.clone(), serde_json::to_value(at).unwrap_or_default());
            }
        }
        let healthy = matching
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
            .filter(|p| crate::pod_ready(p))
            .count() as i32;
        let (expected, desired, allowed, reason, message) = match expectations(inf, &pdb, &matching)
        {
            Ok((expected, desired)) => {
                let allowed = if expected <= 0 {
                    0
                } else {
                    (healthy - desired).max(0)
                };
                let reason = if allowed > 0 {
                    "SufficientPods"
                } else {
                    "InsufficientPods"
                };
                (expected, desired, allowed, reason, String::new())
            }
            Err(e) => (
                status.expected_pods,
                status.desired_healthy,
                0,
                "SyncFailed",
                e,
            ),
        };
        let cond_status = if allowed > 0 { "True" } else { "False" };
        let previous = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionAllowed");
        let transition = match previous {
            Some(c) if c.status == cond_status => {
                serde_json::to_value(&c.last_transition_time).unwrap_or_default()
            }
            _ => json!(crate::now()),
        };
        let mut condition = json!({
            "type": "DisruptionAllowed", "status": cond_status, "reason": reason,
            "message": message, "lastTransitionTime": transition,
            "observedGeneration": pdb.metadata.generation,
        });
        if previous.is_some_and(|c| {
            c.status == cond_status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == pdb.metadata.generation
        }) {
            condition = serde_json::to_value(previous).unwrap_or(condition);
        }
        let disrupted_json: serde_json::Map<String, serde_json::Value> = disrupted
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        let new_status = json!({
            "observedGeneration": pdb.metadata.generation,
            "expectedPods": expected,
            "desiredHealthy": desired,
            "currentHealthy": healthy,
            "disruptionsAllowed": allowed,
            "disruptedPods": disrupted_json,
            "conditions": [condition],
        });
        let before = serde_json::to_value(&status).unwrap_or_default();
        let differs = [
            "observedGeneration",
            "expectedPods",
            "desiredHealthy",
            "currentHealthy",
            "disruptionsAllowed",
            "conditions",
        ]
        .iter()
        .any(|k| before.get(*k).cloned().unwrap_or(json!(0)) != new_status[*k])
            || before.get("disruptedPods").cloned().unwrap_or(json!({}))
                != new_status["disruptedPods"];
        if differs {
            let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
            // A whole-status replace with the resourceVersion the cache shows: an
            // eviction that spent a disruption meanwhile makes this a conflict, and the
            // next pass recomputes.
            let mut obj = (*pdb).clone();
            obj.status = serde_json::from_value(new_status).ok();
            match api.replace_status(&name, &crate::post_params(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("100%".into()), 3), Ok(3));
        assert_eq!(scaled(&IntOrString::Int(1), 3), Ok(1));
        assert!(scaled(&IntOrString::String("half".into()), 3).is_err());
    }

    #[test]
    fn selectors_of_budgets() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(!selects(None, &labels));
        assert!(selects(Some(&Default::default()), &labels));
        let sel = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
        )
        .unwrap();
        assert!(selects(Some(&sel), &labels));
        let sel = serde_json::from_value(json!({"matchLabels": {"app": "db"}})).unwrap();
        assert!(!selects(Some(&sel), &labels));
    }
}
