//! DaemonSets: one pod per eligible node (the pod template's node selector and
//! required node affinity match, its tolerations cover the node's NoSchedule and
//! NoExecute taints), placed by node affinity on `metadata.name` as the real
//! controller does; pods on nodes that stopped being eligible or are gone are
//! deleted; a changed template replaces pods node by node (RollingUpdate with
//! maxUnavailable 1).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

fn eligible(template_pod: &Pod, node: &Node) -> bool {
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

/// One pass over every DaemonSet.
pub async fn sync_daemonsets(client: &Client) -> Result<(), kube::Error> {
    let dss: Api<DaemonSet> = Api::all(client.clone());
    let nodes: Vec<Node> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let pods: Vec<Pod> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    for ds in dss.list(&ListParams::default()).await?.items {
        if ds.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &ds.spec else { continue };
        let mut template = serde_json::to_value(&spec.template).unwrap_or_default();
        let hash = crate::workloads::template_hash(&template);
        template["metadata"]["labels"]["controller-revision-hash"] = json!(hash);
        let template_pod: Pod = serde_json::from_value(json!({
            "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        }))
        .unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let owned: Vec<&Pod> = crate::controlled_by(&pods, &ns, &uid)
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let node_of = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default()
        };
        let (mut desired, mut current, mut ready, mut updated) = (0, 0, 0, 0);
        let mut replaced_one = false;
        for node in &nodes {
            let nname = node.metadata.name.clone().unwrap_or_default();
            let here: Vec<&&Pod> = owned.iter().filter(|p| node_of(p) == nname).collect();
            if !eligible(&template_pod, node) {
                for p in here {
                    let _ = api
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await;
                }
                continue;
            }
            desired += 1;
            let fresh = |p: &Pod| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("controller-revision-hash"))
                    == Some(&hash)
            };
            if let Some(p) = here.first() {
                current += 1;
                let is_ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    .unwrap_or(false);
                if is_ready {
                    ready += 1;
                }
                if fresh(p) {
                    updated += 1;
                } else if !replaced_one {
                    // One node at a time.
                    replaced_one = true;
                    let _ = api
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await;
                }
                for extra in here.iter().skip(1) {
                    let _ = api
                        .delete(
                            extra.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await;
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
                if let Err(e) = api.create(&PostParams::default(), &p).await {
                    tracing::warn!(daemonset = %name, error = %e, "creating pod");
                }
            }
        }
        let status = json!({"status": {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberReady": ready,
            "numberAvailable": ready,
            "updatedNumberScheduled": updated,
            "numberMisscheduled": 0,
            "observedGeneration": ds.metadata.generation,
        }});
        let dapi: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        let _ = dapi
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await;
    }
    Ok(())
}
