//! DaemonSets: one pod per eligible node (the pod template's node selector and
//! required node affinity match, its tolerations cover the node's NoSchedule and
//! NoExecute taints), placed by node affinity on `metadata.name` as the real
//! controller does; pods on nodes that stopped being eligible or are gone are
//! deleted; a changed template replaces pods node by node (RollingUpdate with
//! maxUnavailable 1).

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use skiff_informer::{Expectations, Informer, Key, Requeue, EXPECTATIONS_RECHECK};

fn eligible(template_pod: &CachedPod, node: &Node) -> bool {
    if !skiff_scheduler::pod_matches_node_selector_and_affinity(template_pod, node) {
        return false;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    skiff_scheduler::find_untolerated_taint(
        &taints,
        skiff_scheduler::pod_tolerations(template_pod),
        &["NoSchedule", "NoExecute"],
    )
    .is_none()
}

/// The node a DaemonSet pod is for: where it is bound, or, while it is still
/// pending, the node its `metadata.name` affinity names (Kubernetes'
/// `GetTargetNodeName`), so a pod waiting on a node that is not ready yet is not
/// created again.
fn target_node(p: &CachedPod) -> String {
    if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return n;
    }
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .and_then(|r| {
            r.node_selector_terms.iter().find_map(|t| {
                t.match_fields.iter().flatten().find_map(|f| {
                    (f.key == "metadata.name" && f.operator == "In")
                        .then(|| f.values.as_ref().and_then(|v| v.first().cloned()))
                        .flatten()
                })
            })
        })
        .unwrap_or_default()
}

/// The DaemonSet controller: a DaemonSet is reconciled when it or one of its pods
/// changes, and every DaemonSet when a node does.
pub struct DaemonSets {
    pub client: Client,
    pub daemonsets: Informer<DaemonSet>,
    pub nodes: Informer<Node>,
    pub pods: Informer<CachedPod>,
    pub revisions: Informer<ControllerRevision>,
    pub expectations: Expectations<CachedPod>,
}

impl DaemonSets {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let client = &self.client;
        let Some(ds) = self.daemonsets.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if !self.expectations.satisfied(&key) {
            return Ok(Some(EXPECTATIONS_RECHECK));
        }
        let mut nodes: Vec<std::sync::Arc<Node>> = self.nodes.state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &ds.spec else {
            return Ok(None);
        };
        let mut template = serde_json::to_value(&spec.template).unwrap_or_default();
        let hash = crate::pods::template_hash(&template);
        template["metadata"]["labels"]["controller-revision-hash"] = json!(hash);
        let template_pod: CachedPod = serde_json::from_value(json!({
            "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        }))
        .unwrap_or_default();
        // The template's ControllerRevision (`kubectl rollout history|undo`): its data
        // is the patch that puts this template back, as the real controller stores it.
        let rev_name = format!("{name}-{hash}");
        let owned_revs = self.revisions.controlled_by(&ns, &uid);
        let revs: Vec<&ControllerRevision> = owned_revs.iter().map(|r| r.as_ref()).collect();
        let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
        let restore = crate::restoring(&serde_json::to_value(&spec.template).unwrap_or_default());
        crate::ensure_revision(
            &rev_api,
            &revs,
            &rev_name,
            json!({
                "labels": template["metadata"]["labels"].clone(),
                "annotations": ds.metadata.annotations.clone().unwrap_or_default(),
                "ownerReferences": [crate::owner_ref("apps/v1", "DaemonSet", &name, &uid)],
            }),
            json!({"spec": {"template": restore}}),
        )
        .await?;
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            == Some("OnDelete");
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let owned_pods = self.pods.controlled_by(&ns, &uid);
        let owned: Vec<&CachedPod> = owned_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let node_of = target_node;
        let (mut desired, mut current, mut ready, mut updated) = (0, 0, 0, 0);
        let mut replaced_one = false;
        for node in &nodes {
            let nname = node.metadata.name.clone().unwrap_or_default();
            let here: Vec<&&CachedPod> = owned.iter().filter(|p| node_of(p) == nname).collect();
            if !eligible(&template_pod, node) {
                for p in here {
                    if let Ok(r) = api
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await
                    {
                        tracing::info!(owner = %format!("DaemonSet/{ns}/{name}"), node = %nname,
                            pod = p.metadata.name.as_deref().unwrap_or(""), "deleted pod (node not eligible)");
                        self.expectations.deleted(&key, p, r.left().as_ref());
                    }
                }
                continue;
            }
            desired += 1;
            let fresh = |p: &CachedPod| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("controller-revision-hash"))
                    == Some(&hash)
            };
            if let Some(p) = here.first() {
                current += 1;
                if crate::pod_ready(p) {
                    ready += 1;
                }
                if fresh(p) {
                    updated += 1;
                } else if !replaced_one && !on_delete {
                    // One node at a time.
                    replaced_one = true;
                    if let Ok(r) = api
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await
                    {
                        tracing::info!(owner = %format!("DaemonSet/{ns}/{name}"), node = %nname,
                            pod = p.metadata.name.as_deref().unwrap_or(""), "rollout: deleted out-of-date pod");
                        self.expectations.deleted(&key, p, r.left().as_ref());
                    }
                }
                for extra in here.iter().skip(1) {
                    if let Ok(r) = api
                        .delete(
                            extra.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await
                    {
                        tracing::info!(owner = %format!("DaemonSet/{ns}/{name}"), node = %nname,
                            pod = extra.metadata.name.as_deref().unwrap_or(""), "deleted extra pod");
                        self.expectations.deleted(&key, extra, r.left().as_ref());
                    }
                }
                continue;
            }
            let mut pod = crate::pod_from_template(
                &template,
                &ns,
                crate::owner_ref("apps/v1", "DaemonSet", &name, &uid),
            );
            pod["spec"]["affinity"]["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [nname]}]}]});
            // DaemonSet pods tolerate the node conditions, as Kubernetes adds.
            let mut tol = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
                "node.kubernetes.io/disk-pressure",
                "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/pid-pressure",
                "node.kubernetes.io/unschedulable",
            ] {
                tol.push(json!({"key": key, "operator": "Exists"}));
            }
            pod["spec"]["tolerations"] = json!(tol);
            if let Ok(p) = serde_json::from_value::<Pod>(pod) {
                match api.create(&crate::post_params(), &p).await {
                    Ok(p) => {
                        tracing::info!(owner = %format!("DaemonSet/{ns}/{name}"), node = %nname,
                            pod = p.metadata.name.as_deref().unwrap_or(""), "created pod");
                        self.expectations.wrote(&key, &p)
                    }
                    Err(e) => {
                        tracing::warn!(daemonset = %name, error = %e, "creating pod");
                        let involved = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "name": name, "namespace": ns, "uid": uid});
                        crate::failed_create(
                            client,
                            involved,
                            "daemonset-controller",
                            |m| format!("Error creating: {m}"),
                            &e,
                        )
                        .await;
                    }
                }
            }
        }
        // History beyond revisionHistoryLimit goes, except what pods still run.
        let mut keep: Vec<String> = owned
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get("controller-revision-hash"))
            .map(|h| format!("{name}-{h}"))
            .collect();
        keep.push(rev_name.clone());
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        crate::trim_revisions(&rev_api, &revs, &keep, limit).await;
        let status = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": updated,
            "numberMisscheduled": 0,
            "observedGeneration": ds.metadata.generation,
        });
        if crate::patch_changes(&ds.status, &status) {
            let dapi: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
            dapi.patch_status(
                &name,
                &crate::patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_pod_belongs_to_the_node_its_affinity_names() {
        let pending: CachedPod = serde_json::from_value(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]}}}}}),
        )
        .unwrap();
        assert_eq!(target_node(&pending), "n1");
        let bound: CachedPod =
            serde_json::from_value(json!({"spec": {"containers": [], "nodeName": "n2"}})).unwrap();
        assert_eq!(target_node(&bound), "n2");
        assert_eq!(target_node(&CachedPod::default()), "");
    }
}
