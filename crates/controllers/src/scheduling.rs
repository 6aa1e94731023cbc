//! The scheduler's loop: pods without a node are placed with `skiff-scheduler`'s
//! filter and score plugins and bound through `pods/binding`; a pod that fits
//! nowhere gets `PodScheduled=False` (reason Unschedulable) and a FailedScheduling
//! event, and is retried on the next pass (the cluster may have changed).

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::time::Duration;

/// One pass: schedule every pending pod of `schedulerName` default-scheduler.
pub async fn schedule_pending(client: &Client) -> Result<usize, kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let nss: Api<Namespace> = Api::all(client.clone());
    let all = pods.list(&ListParams::default()).await?.items;
    let mut snap = skiff_scheduler::Snapshot {
        nodes: nodes.list(&ListParams::default()).await?.items,
        pods: all.clone(),
        namespaces: nss.list(&ListParams::default()).await?.items,
    };
    let mut bound = 0;
    let mut vols: Option<skiff_scheduler::Volumes> = None;
    for p in all {
        let spec = match &p.spec {
            Some(s) => s,
            None => continue,
        };
        if spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
            || p.metadata.deletion_timestamp.is_some()
            || spec
                .scheduler_name
                .as_deref()
                .unwrap_or("default-scheduler")
                != "default-scheduler"
            || spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty())
        {
            continue;
        }
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let claims = skiff_scheduler::pod_claims(&p);
        if !claims.is_empty() && vols.is_none() {
            vols = Some(volumes(client).await?);
        }
        let decision = match &vols {
            Some(v) if !claims.is_empty() => skiff_scheduler::schedule_with(&p, &snap, v),
            _ => skiff_scheduler::schedule(&p, &snap),
        };
        match decision {
            Ok(node) => {
                if let Some(v) = &vols {
                    select_node(client, v, &ns, &claims, &node).await?;
                }
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                });
                let req = kube::core::Request::new(format!("/api/v1/namespaces/{ns}/pods"));
                let r = req
                    .create_subresource(
                        "binding",
                        name.as_str(),
                        &PostParams::default(),
                        serde_json::to_vec(&binding).unwrap_or_default(),
                    )
                    .map_err(kube::Error::BuildRequest)?;
                match client.request::<serde_json::Value>(r).await {
                    Ok(_) => {
                        snap.assume(&p, &node);
                        bound += 1;
                        event(
                            client,
                            &p,
                            "Normal",
                            "Scheduled",
                            &format!("Successfully assigned {ns}/{name} to {node}"),
                        )
                        .await;
                    }
                    Err(e) => tracing::warn!(pod = %name, error = %e, "binding"),
                }
            }
            Err(u) => {
                let _ = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": u.message, "lastProbeTime": null,
                                        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}],
                    }})))
                    .await;
                event(client, &p, "Warning", "FailedScheduling", &u.message).await;
            }
        }
    }
    Ok(bound)
}

/// The storage objects VolumeBinding reads.
async fn volumes(client: &Client) -> Result<skiff_scheduler::Volumes, kube::Error> {
    let lp = ListParams::default();
    Ok(skiff_scheduler::Volumes {
        claims: Api::<PersistentVolumeClaim>::all(client.clone())
            .list(&lp)
            .await?
            .items,
        volumes: Api::<PersistentVolume>::all(client.clone())
            .list(&lp)
            .await?
            .items,
        classes: Api::<StorageClass>::all(client.clone())
            .list(&lp)
            .await?
            .items,
    })
}

/// Tells the provisioner which node the pod's unbound claims that wait for their
/// first consumer are wanted on (`volume.kubernetes.io/selected-node`).
async fn select_node(
    client: &Client,
    vols: &skiff_scheduler::Volumes,
    ns: &str,
    claims: &[String],
    node: &str,
) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for c in vols.claims.iter().filter(|c| {
        c.metadata.namespace.as_deref() == Some(ns)
            && c.metadata.name.as_ref().is_some_and(|n| claims.contains(n))
    }) {
        let spec = c.spec.clone().unwrap_or_default();
        let unbound = spec.volume_name.as_deref().unwrap_or("").is_empty();
        let selected = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::persistentvolumes::SELECTED_NODE));
        if unbound
            && selected.is_none()
            && skiff_scheduler::waits_for_first_consumer(vols, spec.storage_class_name.as_deref())
        {
            api.patch(
                c.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    crate::persistentvolumes::SELECTED_NODE: node}}})),
            )
            .await?;
        }
    }
    Ok(())
}

async fn event(client: &Client, pod: &Pod, ty: &str, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name,
        "namespace": pod.metadata.namespace.as_deref().unwrap_or("default"), "uid": pod.metadata.uid});
    crate::event(client, involved, ty, reason, message, "default-scheduler").await;
}

/// Run passes every `period` until `shutdown`.
pub async fn run(
    client: Client,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = crate::Ticker::new(period, shutdown);
    while ticker.tick().await {
        if let Err(e) = schedule_pending(&client).await {
            tracing::warn!(error = %e, "scheduling pass");
        }
    }
}
