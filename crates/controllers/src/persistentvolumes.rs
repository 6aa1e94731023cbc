//! PersistentVolumes and their claims (the PV controller, with skiff's local-path
//! provisioner). A claim binds to the smallest Available volume that fits it (class,
//! access modes, capacity, volume mode, selector; for a class that waits for its first
//! consumer also the node the scheduler chose, `volume.kubernetes.io/selected-node`);
//! if none fits and its class's provisioner is `skiff.io/local-path`, a volume
//! `pvc-<claim uid>` is made on that node: a directory under the node's storage
//! directory (its agent publishes it as the node annotation `skiff.io/local-path-dir`),
//! pinned to the node by nodeAffinity. A volume whose claim is gone is Released, and
//! deleted if its reclaimPolicy is Delete and it was provisioned here (the node's agent
//! then removes its directory). Claims carry the `kubernetes.io/pvc-protection`
//! finalizer, lifted once no pod uses them; volumes the `kubernetes.io/pv-protection`
//! finalizer, lifted once they are not Bound.

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::Client;
use serde_json::{json, Value};
use skiff_informer::CachedPod;

pub const PROVISIONER: &str = "skiff.io/local-path";
/// The node annotation naming the directory its local volumes live in.
pub const STORAGE_DIR: &str = "skiff.io/local-path-dir";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn bytes(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> i128 {
    q.and_then(|q| skiff_meta::quantity::parse_milli(&q.0).ok())
        .unwrap_or(0)
}

fn claim_request(c: &PersistentVolumeClaim) -> i128 {
    bytes(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    )
}

fn volume_capacity(v: &PersistentVolume) -> i128 {
    bytes(
        v.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage")),
    )
}

fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether volume `v` can satisfy claim `c` (on `node`, when the claim waits for its
/// consumer's node).
pub fn fits(v: &PersistentVolume, c: &PersistentVolumeClaim, node: Option<&Node>) -> bool {
    let (Some(vs), Some(cs)) = (v.spec.as_ref(), c.spec.as_ref()) else {
        return false;
    };
    if v.metadata.deletion_timestamp.is_some() || matches!(phase(v), "Released" | "Failed") {
        return false;
    }
    if let Some(r) = &vs.claim_ref {
        let same = r.name == c.metadata.name
            && r.namespace == c.metadata.namespace
            && r.uid
                .as_ref()
                .is_none_or(|u| Some(u) == c.metadata.uid.as_ref());
        if !same {
            return false;
        }
    }
    let modes = vs.access_modes.clone().unwrap_or_default();
    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
    vs.storage_class_name.as_deref().unwrap_or("") == claim_class(c)
        && cs.access_modes.iter().flatten().all(|m| modes.contains(m))
        && volume_capacity(v) >= claim_request(c)
        && mode(&vs.volume_mode) == mode(&cs.volume_mode)
        && cs.selector.as_ref().is_none_or(|s| {
            skiff_scheduler::label_selector_matches(
                s,
                v.metadata.labels.as_ref().unwrap_or(&Default::default()),
            )
        })
        && node.is_none_or(|n| {
            vs.node_affinity
                .as_ref()
                .and_then(|a| a.required.as_ref())
                .is_none_or(|sel| {
                    sel.node_selector_terms
                        .iter()
                        .any(|t| skiff_scheduler::node_selector_term_matches(t, n))
                })
        })
}

/// The volume claim `c` should bind to: one reserved for it by its claimRef, else the
/// smallest that fits.
pub fn pick<'a>(
    vols: &'a [PersistentVolume],
    c: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let fitting: Vec<&PersistentVolume> = vols.iter().filter(|v| fits(v, c, node)).collect();
    fitting
        .iter()
        .find(|v| v.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()))
        .or_else(|| fitting.iter().min_by_key(|v| volume_capacity(v)))
        .copied()
}

/// The local volume provisioned for claim `c` of class `class` on `node`, whose
/// volumes live under `dir`.
pub fn provisioned(
    c: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    dir: &str,
) -> Value {
    let uid = c.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let spec = c.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": request.map(|q| q.0).unwrap_or_else(|| "0".into())},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": format!("{}/{name}", dir.trim_end_matches('/')), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.metadata.name,
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": c.metadata.namespace,
                         "name": c.metadata.name, "uid": uid, "resourceVersion": c.metadata.resource_version},
        },
    })
}

/// Names of claims (namespace, name) used by pods that have not finished.
fn claims_in_use(pods: &[CachedPod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .flat_map(|p| {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            skiff_scheduler::pod_claims(p)
                .into_iter()
                .map(move |c| (ns.clone(), c))
        })
        .collect()
}

/// One pass over every claim and volume.
pub async fn sync(client: &Client) -> Result<(), kube::Error> {
    let lp = ListParams::default();
    let claims_all: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let claims = claims_all.list(&lp).await?.items;
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    let mut vols = pv_api.list(&lp).await?.items;
    if claims.is_empty() && vols.is_empty() {
        return Ok(());
    }
    let classes = Api::<StorageClass>::all(client.clone())
        .list(&lp)
        .await?
        .items;
    let nodes = Api::<Node>::all(client.clone()).list(&lp).await?.items;
    let pods = Api::<CachedPod>::all(client.clone()).list(&lp).await?.items;
    let in_use = claims_in_use(&pods);
    let scheduling = skiff_scheduler::Volumes {
        claims: Vec::new(),
        volumes: Vec::new(),
        classes: classes.clone(),
    };
    for c in &claims {
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let finalizers = c.metadata.finalizers.clone().unwrap_or_default();
        if c.metadata.deletion_timestamp.is_some() {
            if finalizers.iter().any(|f| f == PROTECTION)
                && !in_use.contains(&(ns.clone(), name.clone()))
            {
                let rest: Vec<&String> = finalizers.iter().filter(|f| *f != PROTECTION).collect();
                api.patch(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
                )
                .await?;
            }
            continue;
        }
        if !finalizers.iter().any(|f| f == PROTECTION) {
            let mut all = finalizers.clone();
            all.push(PROTECTION.into());
            api.patch(
                &name,
                &crate::patch_params(),
                &Patch::Merge(json!({"metadata": {"finalizers": all}})),
            )
            .await?;
        }
        let spec = c.spec.clone().unwrap_or_default();
        let bound_phase = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if let Some(vname) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            if !bound_phase {
                if let Some(v) = vols
                    .iter()
                    .find(|v| v.metadata.name.as_deref() == Some(vname))
                {
                    bind(client, v, c).await?;
                }
            }
            continue;
        }
        let class_name = claim_class(c);
        let wffc = skiff_scheduler::waits_for_first_consumer(&scheduling, Some(class_name));
        let selected = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(skiff_scheduler::SELECTED_NODE))
            .cloned();
        if wffc && selected.is_none() {
            continue;
        }
        let node = selected
            .as_deref()
            .and_then(|s| nodes.iter().find(|n| n.metadata.name.as_deref() == Some(s)));
        if let Some(v) = pick(&vols, c, if wffc { node } else { None }) {
            let v = v.clone();
            bind(client, &v, c).await?;
            continue;
        }
        let Some(class) = classes
            .iter()
            .find(|k| k.metadata.name.as_deref() == Some(class_name))
        else {
            continue;
        };
        if class.provisioner != PROVISIONER {
            continue;
        }
        // Immediate binding: the first node that has a storage directory.
        let node = node.or_else(|| {
            nodes.iter().find(|n| {
                n.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(STORAGE_DIR))
            })
        });
        let Some(node) = node else { continue };
        let Some(dir) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STORAGE_DIR))
        else {
            continue;
        };
        let hostname = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/hostname"))
            .or(node.metadata.name.as_ref())
            .cloned()
            .unwrap_or_default();
        let pv: PersistentVolume = serde_json::from_value(provisioned(c, class, &hostname, dir))
            .map_err(kube::Error::SerdeError)?;
        let created = match pv_api.create(&crate::post_params(), &pv).await {
            Ok(v) => v,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e),
        };
        tracing::info!(volume = created.metadata.name.as_deref().unwrap_or(""),
            claim = %format!("{ns}/{name}"), node = %hostname, "provisioned local volume");
        let involved = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": name,
            "namespace": ns, "uid": c.metadata.uid});
        skiff_informer::event(
            client,
            involved,
            "Normal",
            "ProvisioningSucceeded",
            &format!(
                "Successfully provisioned volume {}",
                created.metadata.name.clone().unwrap_or_default()
            ),
            PROVISIONER,
            crate::FIELD_MANAGER,
        )
        .await;
        bind(client, &created, c).await?;
        vols.push(created);
    }
    // Volumes: Available when free, Released once their claim is gone; a volume
    // being deleted keeps its protection finalizer while it is bound.
    for v in &vols {
        let name = v.metadata.name.clone().unwrap_or_default();
        let finalizers = v.metadata.finalizers.clone().unwrap_or_default();
        let protected = finalizers.iter().any(|f| f == PV_PROTECTION);
        let claim_ref = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let claimed = claim_ref.is_some_and(|r| {
            claims.iter().any(|c| {
                c.metadata.name == r.name
                    && c.metadata.namespace == r.namespace
                    && r.uid
                        .as_ref()
                        .is_none_or(|u| Some(u) == c.metadata.uid.as_ref())
            })
        });
        if v.metadata.deletion_timestamp.is_some() {
            if protected && !(claimed && phase(v) == "Bound") {
                let rest: Vec<&String> =
                    finalizers.iter().filter(|f| *f != PV_PROTECTION).collect();
                pv_api
                    .patch(
                        &name,
                        &crate::patch_params(),
                        &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
                    )
                    .await?;
            }
            continue;
        }
        if !protected {
            let mut all = finalizers.clone();
            all.push(PV_PROTECTION.into());
            pv_api
                .patch(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({"metadata": {"finalizers": all}})),
                )
                .await?;
        }
        let want = match claim_ref {
            None => "Available",
            Some(r) => {
                if claimed {
                    continue;
                }
                if r.uid.is_none() {
                    // Reserved for a claim that does not exist yet.
                    "Available"
                } else {
                    "Released"
                }
            }
        };
        let ours = v
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .map(String::as_str)
            == Some(PROVISIONER);
        let delete = want == "Released"
            && ours
            && v.spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                == Some("Delete");
        if delete {
            match pv_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        } else if phase(v) != want {
            pv_api
                .patch_status(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({"status": {"phase": want}})),
                )
                .await?;
        }
    }
    Ok(())
}

/// Binds volume `v` and claim `c` to each other.
async fn bind(
    client: &Client,
    v: &PersistentVolume,
    c: &PersistentVolumeClaim,
) -> Result<(), kube::Error> {
    let vname = v.metadata.name.clone().unwrap_or_default();
    let ns = c.metadata.namespace.clone().unwrap_or_default();
    let cname = c.metadata.name.clone().unwrap_or_default();
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    let claim_ref = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
        "name": cname, "uid": c.metadata.uid, "resourceVersion": c.metadata.resource_version});
    let pp = crate::patch_params();
    pv_api
        .patch(
            &vname,
            &pp,
            &Patch::Merge(json!({"spec": {"claimRef": claim_ref}})),
        )
        .await?;
    pv_api
        .patch_status(
            &vname,
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await?;
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &cname,
        &pp,
        &Patch::Merge(json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                         "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"volumeName": vname},
        })),
    )
    .await?;
    let vs = v.spec.clone().unwrap_or_default();
    api.patch_status(
        &cname,
        &pp,
        &Patch::Merge(
            json!({"status": {"phase": "Bound", "accessModes": vs.access_modes,
                                        "capacity": vs.capacity}}),
        ),
    )
    .await?;
    tracing::info!(volume = %vname, claim = %format!("{ns}/{cname}"), "bound volume to claim");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(modes: &[&str], size: &str, class: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u-1"},
            "spec": {"accessModes": modes, "storageClassName": class,
                     "resources": {"requests": {"storage": size}}}
        }))
        .unwrap()
    }

    fn volume(name: &str, modes: &[&str], size: &str, class: &str, node: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": modes, "capacity": {"storage": size}, "storageClassName": class,
                     "hostPath": {"path": "/x"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}
        }))
        .unwrap()
    }

    fn node(name: &str) -> Node {
        skiff_testsupport::objects::node(name, json!({}), json!({}), json!({}))
    }

    #[test]
    fn claims_bind_to_the_smallest_fitting_volume() {
        let vols = vec![
            volume("big", &["ReadWriteOnce"], "10Gi", "manual", "n1"),
            volume("small", &["ReadWriteOnce"], "1Gi", "manual", "n1"),
            volume("tiny", &["ReadWriteOnce"], "100Mi", "manual", "n1"),
            volume("rox", &["ReadOnlyMany"], "1Gi", "manual", "n1"),
            volume("other", &["ReadWriteOnce"], "1Gi", "fast", "n1"),
        ];
        let c = claim(&["ReadWriteOnce"], "500Mi", "manual");
        assert_eq!(
            pick(&vols, &c, None).unwrap().metadata.name.as_deref(),
            Some("small")
        );
        assert!(pick(&vols, &claim(&["ReadWriteMany"], "1Gi", "manual"), None).is_none());
        assert!(pick(&vols, &claim(&["ReadWriteOnce"], "20Gi", "manual"), None).is_none());
        // On a node the volumes are not pinned to: none.
        assert!(pick(&vols, &c, Some(&node("n2"))).is_none());
        assert!(pick(&vols, &c, Some(&node("n1"))).is_some());
        // A volume claimed by another claim is not free.
        let mut taken = volume("small", &["ReadWriteOnce"], "1Gi", "manual", "n1");
        taken.spec.as_mut().unwrap().claim_ref = Some(
            serde_json::from_value(json!({"namespace": "default", "name": "other", "uid": "u-2"}))
                .unwrap(),
        );
        assert!(!fits(&taken, &c, None));
        taken.spec.as_mut().unwrap().claim_ref =
            Some(serde_json::from_value(json!({"namespace": "default", "name": "data"})).unwrap());
        assert!(fits(&taken, &c, None));
    }

    #[test]
    fn provisioned_volumes_live_on_the_selected_node() {
        let c = claim(&["ReadWriteOnce"], "1Gi", "local-path");
        let class: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "local-path"}, "provisioner": PROVISIONER, "reclaimPolicy": "Delete"
        }))
        .unwrap();
        let v: PersistentVolume =
            serde_json::from_value(provisioned(&c, &class, "n1", "/var/lib/skiff/storage/"))
                .unwrap();
        assert_eq!(v.metadata.name.as_deref(), Some("pvc-u-1"));
        let s = v.spec.clone().unwrap();
        assert_eq!(s.host_path.unwrap().path, "/var/lib/skiff/storage/pvc-u-1");
        assert_eq!(
            s.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert!(fits(&v, &c, Some(&node("n1"))));
        assert!(!fits(&v, &c, Some(&node("n2"))));
    }
}
