//! StatefulSets: pods with stable names `<set>-<ordinal>`, hostname and subdomain
//! (`serviceName`); with `OrderedReady` (the default) ordinal N is created only once
//! N-1 is Running and Ready and scale-down removes the highest first, one at a time;
//! with `Parallel` all at once. Each template is recorded as a ControllerRevision
//! (`<set>-<hash>`, labelled on its pods as `controller-revision-hash`); RollingUpdate
//! replaces pods from the highest ordinal down to `partition`, one at a time. Each
//! volumeClaimTemplate gives every ordinal a PVC `<template>-<set>-<ordinal>`, owned by
//! the set or the pod only as persistentVolumeClaimRetentionPolicy asks.

use crate::pods::template_hash;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use skiff_informer::{Expectations, Informer, Key, Requeue, EXPECTATIONS_RECHECK};

/// The ordinal of pod `pod` of set `set`, if it is one of its names.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(p: &CachedPod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && crate::pod_ready(p)
}

fn finished(p: &CachedPod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn revision_label(p: &CachedPod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get("controller-revision-hash")
        .map(String::as_str)
}

/// What to do next with a set's pods, from which ordinals exist and how they are.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<i32>,
    pub delete: Vec<i32>,
}

/// One step of the ordering rules. `pods[i]` is `None` for a missing ordinal, else
/// `(running and ready, terminating, up to date)`; ordinals at or beyond `replicas`
/// are condemned. `partition`: ordinals below it are not updated.
pub fn plan(
    pods: &[Option<(bool, bool, bool)>],
    replicas: i32,
    parallel: bool,
    rolling: bool,
    partition: i32,
) -> Plan {
    let mut p = Plan {
        create: vec![],
        delete: vec![],
    };
    let replicas = replicas.max(0) as usize;
    // Create the missing ones, in order unless parallel.
    for (i, pod) in pods.iter().enumerate().take(replicas) {
        match pod {
            None => {
                p.create.push(i as i32);
                if !parallel {
                    return p;
                }
            }
            Some((ready, _, _)) if !ready && !parallel => return p,
            _ => {}
        }
    }
    for i in pods.len()..replicas {
        p.create.push(i as i32);
        if !parallel {
            return p;
        }
    }
    // Scale down from the highest ordinal.
    let condemned: Vec<usize> = (replicas..pods.len())
        .rev()
        .filter(|i| pods[*i].is_some())
        .collect();
    if !condemned.is_empty() {
        if parallel {
            p.delete = condemned
                .iter()
                .filter(|i| pods[**i].is_some_and(|(_, terminating, _)| !terminating))
                .map(|i| *i as i32)
                .collect();
        } else {
            let all_healthy = pods
                .iter()
                .take(replicas)
                .all(|x| x.is_some_and(|(ready, _, _)| ready));
            let top = condemned[0];
            if all_healthy && pods[top].is_some_and(|(_, terminating, _)| !terminating) {
                p.delete.push(top as i32);
            }
        }
        return p;
    }
    if !p.create.is_empty() || !rolling {
        return p;
    }
    // Rolling update: one at a time, highest first, once every pod is healthy.
    if pods
        .iter()
        .take(replicas)
        .any(|x| !x.is_some_and(|(ready, _, _)| ready))
    {
        return p;
    }
    if let Some(i) = (partition.max(0) as usize..replicas)
        .rev()
        .find(|i| pods[*i].is_some_and(|(_, _, fresh)| !fresh))
    {
        p.delete.push(i as i32);
    }
    p
}

/// The StatefulSet controller: a set is reconciled when it, one of its pods or one of
/// its ControllerRevisions changes.
pub struct StatefulSets {
    pub client: Client,
    pub statefulsets: Informer<StatefulSet>,
    pub pods: Informer<CachedPod>,
    pub revisions: Informer<ControllerRevision>,
    pub expectations: Expectations<CachedPod>,
}

impl StatefulSets {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let Some(set) = self.statefulsets.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if !self.expectations.satisfied(&key) {
            return Ok(Some(EXPECTATIONS_RECHECK));
        }
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let ns = key.namespace.clone();
        let pods: Vec<CachedPod> = self
            .pods
            .controlled_by(&ns, &uid)
            .iter()
            .map(|p| (**p).clone())
            .collect();
        let revs: Vec<ControllerRevision> = self
            .revisions
            .controlled_by(&ns, &uid)
            .iter()
            .map(|r| (**r).clone())
            .collect();
        sync_one(&self.client, &set, &pods, &revs, &self.expectations, &key).await?;
        Ok(None)
    }
}

async fn sync_one(
    client: &Client,
    set: &StatefulSet,
    all_pods: &[CachedPod],
    all_revs: &[ControllerRevision],
    expectations: &Expectations<CachedPod>,
    key: &Key,
) -> Result<(), kube::Error> {
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let name = set.metadata.name.clone().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = &set.spec else {
        return Ok(());
    };
    let owner = crate::owner_ref("apps/v1", "StatefulSet", &name, &uid);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    // The template's ControllerRevision.
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let update_rev = format!("{name}-{}", template_hash(&template));
    let revs: Vec<&ControllerRevision> = crate::controlled_by(all_revs, &ns, &uid);
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut labels = spec.selector.match_labels.clone().unwrap_or_default();
    labels.insert(
        "controller.kubernetes.io/hash".into(),
        template_hash(&template),
    );
    crate::ensure_revision(
        &rev_api,
        &revs,
        &update_rev,
        json!({"labels": labels, "ownerReferences": [owner.clone()]}),
        // The patch that puts this template back, as the real controller stores it
        // (`kubectl rollout undo` applies it).
        json!({"spec": {"template": crate::restoring(&template)}}),
    )
    .await?;
    let status = set.status.clone().unwrap_or_default();
    let current_rev = status
        .current_revision
        .clone()
        .unwrap_or(update_rev.clone());
    let current_template = revs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(current_rev.as_str()))
        .and_then(|r| r.data.as_ref())
        .and_then(|d| d.0.pointer("/spec/template").cloned())
        .map(|mut t| {
            if let Some(m) = t.as_object_mut() {
                m.remove("$patch");
            }
            t
        })
        .unwrap_or(template.clone());
    // The pods, by ordinal.
    let owned: Vec<&CachedPod> = crate::controlled_by(all_pods, &ns, &uid);
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut by_ordinal: Vec<Option<&CachedPod>> = Vec::new();
    for p in &owned {
        let Some(i) = p
            .metadata
            .name
            .as_deref()
            .and_then(|n| ordinal_of(&name, n))
        else {
            continue;
        };
        if finished(p) && p.metadata.deletion_timestamp.is_none() {
            // A failed or finished pod is replaced.
            let r = api
                .delete(
                    p.metadata.name.as_deref().unwrap_or(""),
                    &DeleteParams::default(),
                )
                .await?;
            tracing::info!(owner = %format!("StatefulSet/{ns}/{name}"),
                pod = p.metadata.name.as_deref().unwrap_or(""), "deleted finished pod (to replace it)");
            expectations.deleted(key, p, r.left().as_ref());
            continue;
        }
        let i = i as usize;
        if by_ordinal.len() <= i {
            by_ordinal.resize(i + 1, None);
        }
        by_ordinal[i] = Some(p);
    }
    let states: Vec<Option<(bool, bool, bool)>> = by_ordinal
        .iter()
        .map(|p| {
            p.map(|p| {
                (
                    running_and_ready(p),
                    p.metadata.deletion_timestamp.is_some(),
                    revision_label(p) == Some(update_rev.as_str()),
                )
            })
        })
        .collect();
    let step = plan(&states, replicas, parallel, rolling, partition);
    let retention = spec.persistent_volume_claim_retention_policy.as_ref();
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    for i in step.create {
        let pod_name = format!("{name}-{i}");
        let (tmpl, rev) = if i < partition && current_rev != update_rev {
            (&current_template, &current_rev)
        } else {
            (&template, &update_rev)
        };
        let mut pod = crate::pod_from_template(tmpl, &ns, owner.clone());
        if let Some(meta) = pod["metadata"].as_object_mut() {
            meta.remove("generateName");
        }
        pod["metadata"]["name"] = json!(pod_name);
        pod["metadata"]["labels"]["controller-revision-hash"] = json!(rev);
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(i.to_string());
        pod["spec"]["hostname"] = json!(pod_name);
        if let Some(svc) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
            pod["spec"]["subdomain"] = json!(svc);
        }
        let mut volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for claim in spec.volume_claim_templates.iter().flatten() {
            let tname = claim.metadata.name.clone().unwrap_or_default();
            let claim_name = format!("{tname}-{name}-{i}");
            volumes.retain(|v| v["name"] != json!(tname));
            volumes
                .push(json!({"name": tname, "persistentVolumeClaim": {"claimName": claim_name}}));
            if pvc_api.get_opt(&claim_name).await?.is_none() {
                let mut pvc = serde_json::to_value(claim).unwrap_or_default();
                pvc["apiVersion"] = json!("v1");
                pvc["kind"] = json!("PersistentVolumeClaim");
                pvc["metadata"]["name"] = json!(claim_name);
                pvc["metadata"]["namespace"] = json!(ns);
                for (k, v) in spec.selector.match_labels.iter().flatten() {
                    pvc["metadata"]["labels"][k] = json!(v);
                }
                if retention.and_then(|r| r.when_deleted.as_deref()) == Some("Delete") {
                    pvc["metadata"]["ownerReferences"] = json!([owner.clone()]);
                }
                if let Some(o) = pvc.as_object_mut() {
                    o.remove("status");
                }
                if let Ok(pvc) = serde_json::from_value::<PersistentVolumeClaim>(pvc) {
                    pvc_api.create(&crate::post_params(), &pvc).await?;
                    tracing::info!(owner = %format!("StatefulSet/{ns}/{name}"), claim = %claim_name, "created claim");
                }
            }
        }
        if !volumes.is_empty() {
            pod["spec"]["volumes"] = json!(volumes);
        }
        if let Ok(p) = serde_json::from_value::<Pod>(pod) {
            match api.create(&crate::post_params(), &p).await {
                Ok(p) => {
                    tracing::info!(owner = %format!("StatefulSet/{ns}/{name}"), pod = %pod_name, "created pod");
                    expectations.wrote(key, &p)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    let involved = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "name": name, "namespace": ns, "uid": uid});
                    let pod_name = p.metadata.name.clone().unwrap_or_default();
                    crate::failed_create(
                        client,
                        involved,
                        "statefulset-controller",
                        |m| {
                            format!("create Pod {pod_name} in StatefulSet {name} failed error: {m}")
                        },
                        &e,
                    )
                    .await;
                    return Err(e);
                }
            }
        }
    }
    for i in step.delete {
        let pod_name = format!("{name}-{i}");
        // A scaled-away ordinal's claims go with its pod if the policy says so.
        if i >= replicas && retention.and_then(|r| r.when_scaled.as_deref()) == Some("Delete") {
            if let Some(p) = by_ordinal[i as usize] {
                let pod_owner = json!([{"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                    "uid": p.metadata.uid, "blockOwnerDeletion": true}]);
                for claim in spec.volume_claim_templates.iter().flatten() {
                    let claim_name = format!(
                        "{}-{name}-{i}",
                        claim.metadata.name.as_deref().unwrap_or("")
                    );
                    let _ = pvc_api
                        .patch(
                            &claim_name,
                            &crate::patch_params(),
                            &Patch::Merge(json!({"metadata": {"ownerReferences": pod_owner}})),
                        )
                        .await;
                }
            }
        }
        let r = api.delete(&pod_name, &DeleteParams::default()).await?;
        tracing::info!(owner = %format!("StatefulSet/{ns}/{name}"), pod = %pod_name, "deleted pod");
        if let Some(p) = by_ordinal.get(i as usize).copied().flatten() {
            expectations.deleted(key, p, r.left().as_ref());
        }
    }
    // Status.
    let live: Vec<&CachedPod> = by_ordinal.iter().flatten().copied().collect();
    let ready = live.iter().filter(|p| running_and_ready(p)).count() as i32;
    let updated = live
        .iter()
        .filter(|p| revision_label(p) == Some(update_rev.as_str()))
        .count() as i32;
    let mut current_rev = current_rev;
    if updated == replicas && live.len() as i32 == replicas {
        current_rev = update_rev.clone();
    }
    let current = live
        .iter()
        .filter(|p| revision_label(p) == Some(current_rev.as_str()))
        .count() as i32;
    let st = json!({"status": {
        "observedGeneration": set.metadata.generation,
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": update_rev,
        "collisionCount": 0,
    }});
    if crate::patch_changes(&set.status, &st["status"]) {
        Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .patch_status(&name, &crate::patch_params(), &Patch::Merge(st))
            .await?;
    }
    // Old revisions beyond revisionHistoryLimit.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    crate::trim_revisions(&rev_api, &revs, &[&current_rev, &update_rev], limit).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Option<(bool, bool, bool)> = Some((true, false, true));
    const STARTING: Option<(bool, bool, bool)> = Some((false, false, true));
    const OLD: Option<(bool, bool, bool)> = Some((true, false, false));

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("web", "web-3"), Some(3));
        assert_eq!(ordinal_of("web", "webx-3"), None);
        assert_eq!(ordinal_of("web", "web-a"), None);
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let p = plan(&[], 3, false, true, 0);
        assert_eq!(p.create, vec![0]);
        assert_eq!(
            plan(&[STARTING], 3, false, true, 0).create,
            Vec::<i32>::new()
        );
        assert_eq!(plan(&[READY], 3, false, true, 0).create, vec![1]);
        assert_eq!(
            plan(&[READY, None, READY], 3, false, true, 0).create,
            vec![1]
        );
        assert_eq!(plan(&[], 3, true, true, 0).create, vec![0, 1, 2]);
    }

    #[test]
    fn scale_down_from_the_highest() {
        let p = plan(&[READY, READY, READY], 1, false, true, 0);
        assert_eq!(p.delete, vec![2]);
        let terminating = Some((true, true, true));
        assert!(plan(&[READY, READY, terminating], 1, false, true, 0)
            .delete
            .is_empty());
        assert_eq!(
            plan(&[READY, READY, READY], 1, true, true, 0).delete,
            vec![2, 1]
        );
    }

    #[test]
    fn rolling_update_from_the_highest_down_to_the_partition() {
        assert_eq!(plan(&[OLD, OLD, OLD], 3, false, true, 0).delete, vec![2]);
        assert_eq!(plan(&[OLD, OLD, READY], 3, false, true, 0).delete, vec![1]);
        assert!(plan(&[OLD, OLD, STARTING], 3, false, true, 0)
            .delete
            .is_empty());
        assert!(plan(&[OLD, OLD, READY], 3, false, true, 2)
            .delete
            .is_empty());
        assert!(plan(&[OLD, OLD, OLD], 3, false, false, 0).delete.is_empty());
    }
}
