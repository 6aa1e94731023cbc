//! Deployments and ReplicaSets, each a level-triggered reconcile of one object from the
//! shared caches (a ReplicaSet is queued when it or one of its pods changes, a
//! Deployment when it or one of its ReplicaSets does). [`crate::wiring`] starts them.
//!
//! Deployment: one ReplicaSet per pod template (named `<deployment>-<pod-template-hash>`,
//! the hash also labelled on its pods); the current one is scaled to `replicas`,
//! older ones scaled down as new pods become ready, never dropping below
//! `replicas - maxUnavailable` available nor above `replicas + maxSurge`;
//! `Recreate` scales the old ones to zero first. ReplicaSet (and ReplicationController,
//! the same controller over the older kind): create or delete pods until it controls
//! `replicas` of them. (Their garbage collection is [`crate::gc`]'s.)

use crate::owner_ref;
use crate::pods::template_hash;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use skiff_informer::{Expectations, Informer, Key, Requeue, EXPECTATIONS_RECHECK};
use std::collections::BTreeMap;
use std::time::Duration;

fn is_active(p: &CachedPod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// Percent-or-int fields like maxSurge, resolved against `replicas` (round up for
/// surge, down for unavailable, as Kubernetes does).
fn int_or_percent(
    v: Option<&serde_json::Value>,
    replicas: i32,
    default: &str,
    round_up: bool,
) -> i32 {
    let v = v.cloned().unwrap_or(json!(default));
    match v {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0) as i32,
        serde_json::Value::String(s) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
                Some(p) => {
                    let x = p * replicas as f64 / 100.0;
                    (if round_up { x.ceil() } else { x.floor() }) as i32
                }
                None => s.parse().unwrap_or(0),
            }
        }
        _ => 0,
    }
}

/// What the replica controller needs of the kind it runs: ReplicaSets (apps/v1) and
/// ReplicationControllers (v1, the original replica controller, with an
/// equality-based selector) share one controller.
pub trait ReplicaOwner:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const API_VERSION: &'static str;
    const KIND: &'static str;
    /// `spec.replicas` (1 when unset), or None without a spec.
    fn desired(&self) -> Option<i32>;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// `status`, as JSON (null when unset).
    fn status_json(&self) -> serde_json::Value;
}

impl ReplicaOwner for ReplicaSet {
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    fn desired(&self) -> Option<i32> {
        self.spec.as_ref().map(|s| s.replicas.unwrap_or(1))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

impl ReplicaOwner for ReplicationController {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    fn desired(&self) -> Option<i32> {
        self.spec.as_ref().map(|s| s.replicas.unwrap_or(1))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.status).unwrap_or_default()
    }
}

/// The replica controller's reconcile of one ReplicaSet or ReplicationController,
/// from the caches.
pub struct Replicas<K: ReplicaOwner> {
    pub client: Client,
    pub owners: Informer<K>,
    pub pods: Informer<CachedPod>,
    pub expectations: Expectations<CachedPod>,
}

/// The ReplicaSet controller.
pub type ReplicaSets = Replicas<ReplicaSet>;
/// The ReplicationController controller.
pub type ReplicationControllers = Replicas<ReplicationController>;

/// Pods created at once grow 1, 2, 4, ... (Kubernetes' slow start), so a template that
/// fails does not fail a thousand times.
const SLOW_START_INITIAL_BATCH: usize = 1;

impl<K: ReplicaOwner> Replicas<K> {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let Some(rs) = self.owners.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if rs.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = key.namespace.clone();
        let name = key.name.clone();
        let uid = rs.meta().uid.clone().unwrap_or_default();
        let Some(want) = rs.desired() else {
            return Ok(None);
        };
        let want = want.max(0);
        let owned_pods = self.pods.controlled_by(&ns, &uid);
        let owned: Vec<&CachedPod> = owned_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_active(p))
            .collect();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let have = owned.len() as i32;
        let mut remaining: Vec<&CachedPod> = owned.clone();
        // Until the cache shows this controller's last creations and deletions, it
        // cannot tell how many pods there are.
        let manage = self.expectations.satisfied(&key);
        if manage && have < want {
            let template = serde_json::to_value(rs.template()).unwrap_or_default();
            let pod = crate::pod_from_template(
                &template,
                &ns,
                owner_ref(K::API_VERSION, K::KIND, &name, &uid),
            );
            if let Ok(p) = serde_json::from_value::<Pod>(pod) {
                let mut left = (want - have) as usize;
                let mut batch = SLOW_START_INITIAL_BATCH;
                while left > 0 {
                    let n = batch.min(left);
                    let pp = crate::post_params();
                    let results =
                        futures::future::join_all((0..n).map(|_| api.create(&pp, &p))).await;
                    let mut failed = false;
                    for r in results {
                        match r {
                            Ok(created) => {
                                tracing::info!(owner = %format!("{}/{ns}/{name}", K::KIND),
                                    pod = created.metadata.name.as_deref().unwrap_or(""), "created pod");
                                self.expectations.wrote(&key, &created)
                            }
                            Err(e) => {
                                failed = true;
                                tracing::warn!(kind = K::KIND, name = %name, error = %e, "creating pod");
                                let involved = serde_json::json!({"apiVersion": K::API_VERSION, "kind": K::KIND,
                                    "name": name, "namespace": ns, "uid": uid});
                                let component = if K::KIND == "ReplicationController" {
                                    "replication-controller"
                                } else {
                                    "replicaset-controller"
                                };
                                crate::failed_create(
                                    &self.client,
                                    involved,
                                    component,
                                    |m| format!("Error creating: {m}"),
                                    &e,
                                )
                                .await;
                            }
                        }
                    }
                    if failed {
                        break;
                    }
                    left -= n;
                    batch *= 2;
                }
            }
        } else if manage && have > want {
            // Delete the least useful first: not ready before ready, newest first.
            let mut victims = owned.clone();
            victims.sort_by_key(|p| {
                (
                    crate::pod_ready(p),
                    std::cmp::Reverse(
                        p.metadata
                            .creation_timestamp
                            .clone()
                            .map(|t| t.0.to_string()),
                    ),
                )
            });
            for p in victims.into_iter().take((have - want) as usize) {
                let r = api
                    .delete(
                        &p.metadata.name.clone().unwrap_or_default(),
                        &DeleteParams::default(),
                    )
                    .await;
                if let Ok(r) = r {
                    tracing::info!(owner = %format!("{}/{ns}/{name}", K::KIND),
                        pod = p.metadata.name.as_deref().unwrap_or(""), replicas = want, "deleted pod (scaling down)");
                    self.expectations.deleted(&key, p, r.left().as_ref());
                }
                remaining.retain(|x| x.metadata.uid != p.metadata.uid);
            }
        }
        // Status as it stands after this pass's deletions, so a reader never counts
        // a pod being deleted as available.
        let ready = remaining.iter().filter(|p| crate::pod_ready(p)).count() as i32;
        let labeled = remaining
            .iter()
            .filter(|p| {
                rs.template()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.as_ref())
                    .map(|l| {
                        l.iter().all(|(k, v)| {
                            p.metadata.labels.as_ref().and_then(|pl| pl.get(k)) == Some(v)
                        })
                    })
                    .unwrap_or(true)
            })
            .count() as i32;
        let status = json!({
            "replicas": remaining.len() as i32,
            "fullyLabeledReplicas": labeled,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs.meta().generation,
        });
        if crate::patch_changes(&rs.status_json(), &status) {
            let rapi: Api<K> = Api::namespaced(self.client.clone(), &ns);
            rapi.patch_status(
                &name,
                &crate::patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        }
        Ok((!manage).then_some(EXPECTATIONS_RECHECK))
    }
}

/// The Deployment controller's reconcile of one Deployment, from the caches.
pub struct Deployments {
    pub client: Client,
    pub deployments: Informer<Deployment>,
    pub replicasets: Informer<ReplicaSet>,
    pub expectations: Expectations<ReplicaSet>,
}

impl Deployments {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let Some(d) = self.deployments.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        // Its ReplicaSets as this controller last wrote them, or wait.
        if !self.expectations.satisfied(&key) {
            return Ok(Some(EXPECTATIONS_RECHECK));
        }
        let client = &self.client;
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &d.spec else {
            return Ok(None);
        };
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let mut template = serde_json::to_value(&spec.template).unwrap_or_default();
        let hash = template_hash(&template);
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let owned_rs = self.replicasets.controlled_by(&ns, &uid);
        let owned: Vec<&ReplicaSet> = owned_rs.iter().map(|r| r.as_ref()).collect();
        let new_name = format!("{name}-{hash}");
        let current = owned
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(new_name.as_str()));
        let old: Vec<&&ReplicaSet> = owned
            .iter()
            .filter(|r| r.metadata.name.as_deref() != Some(new_name.as_str()))
            .collect();
        let old_active: i32 = old
            .iter()
            .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum();
        // A ReplicaSet never has more available pods than it is scaled to.
        let ready_of = |r: &ReplicaSet| {
            r.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                .min(r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        };
        let old_ready: i32 = old.iter().map(|r| ready_of(r)).sum();
        let strategy = spec.strategy.as_ref();
        let recreate = strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let max_surge = int_or_percent(
            ru.and_then(|r| r.max_surge.as_ref())
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .as_ref(),
            replicas,
            "25%",
            true,
        );
        let max_unavailable = int_or_percent(
            ru.and_then(|r| r.max_unavailable.as_ref())
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .as_ref(),
            replicas,
            "25%",
            false,
        );
        let (new_replicas_now, new_ready) = match current {
            Some(r) => (
                r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                ready_of(r),
            ),
            None => (0, 0),
        };
        // How many the new ReplicaSet may have now.
        let target_new = if recreate {
            if old_active > 0
                || old
                    .iter()
                    .any(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0) > 0)
            {
                0
            } else {
                replicas
            }
        } else {
            let surge_room =
                (replicas + max_surge.max(if max_unavailable == 0 { 1 } else { 0 })) - old_active;
            new_replicas_now.max(surge_room.min(replicas)).min(replicas)
        };
        let paused = spec.paused.unwrap_or(false);
        let max_revision = owned
            .iter()
            .map(|r| revision_of(&r.metadata))
            .max()
            .unwrap_or(0);
        let mut rs_annotations = copied_annotations(&d);
        rs_annotations.insert(DESIRED.into(), replicas.to_string());
        rs_annotations.insert(MAX.into(), (replicas + max_surge).to_string());
        let mut progressed = false;
        let mut created = false;
        let mut revision = current.map(|r| revision_of(&r.metadata));
        match current {
            None if paused => {}
            None => {
                revision = Some(max_revision + 1);
                rs_annotations.insert(REVISION.into(), (max_revision + 1).to_string());
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {
                        "name": new_name, "namespace": ns,
                        "labels": template["metadata"]["labels"].clone(),
                        "annotations": rs_annotations,
                        "ownerReferences": [owner_ref("apps/v1", "Deployment", &name, &uid)],
                    },
                    "spec": {
                        "replicas": target_new,
                        "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
                        "selector": {"matchLabels": {
                            "pod-template-hash": hash,
                        }},
                        "template": template,
                    }
                });
                let mut rs = rs;
                // The deployment's selector plus the hash.
                if let Some(ml) = spec.selector.match_labels.as_ref() {
                    for (k, v) in ml {
                        rs["spec"]["selector"]["matchLabels"][k] = json!(v);
                    }
                }
                if let Ok(r) = serde_json::from_value::<ReplicaSet>(rs) {
                    match rs_api.create(&crate::post_params(), &r).await {
                        Ok(r) => {
                            tracing::info!(deployment = %format!("{ns}/{name}"), replicaset = %new_name,
                                replicas = target_new, "rollout: created replicaset");
                            self.expectations.wrote(&key, &r);
                            created = true
                        }
                        Err(e) => {
                            tracing::warn!(deployment = %name, error = %e, "creating replicaset")
                        }
                    }
                }
            }
            Some(r) => {
                // A template rolled back to is this ReplicaSet's again: it becomes
                // the newest revision, remembering the ones it had.
                let mut patch = json!({});
                let rev = revision_of(&r.metadata);
                if rev < max_revision || rev == 0 {
                    let mut history: Vec<String> = r
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REVISION_HISTORY))
                        .map(|h| h.split(',').map(String::from).collect())
                        .unwrap_or_default();
                    if rev > 0 {
                        history.push(rev.to_string());
                    }
                    rs_annotations.insert(REVISION.into(), (max_revision + 1).to_string());
                    if !history.is_empty() {
                        rs_annotations.insert(REVISION_HISTORY.into(), history.join(","));
                    }
                    revision = Some(max_revision + 1);
                }
                let have = r.metadata.annotations.clone().unwrap_or_default();
                if rs_annotations.iter().any(|(k, v)| have.get(k) != Some(v)) {
                    patch["metadata"]["annotations"] = json!(rs_annotations);
                }
                let want = if paused {
                    if old_active == 0 {
                        replicas
                    } else {
                        new_replicas_now
                    }
                } else {
                    target_new
                };
                if new_replicas_now != want {
                    patch["spec"]["replicas"] = json!(want);
                    progressed = true;
                }
                if patch != json!({}) {
                    if let Ok(r) = rs_api
                        .patch(&new_name, &crate::patch_params(), &Patch::Merge(patch))
                        .await
                    {
                        if new_replicas_now != want {
                            tracing::info!(deployment = %format!("{ns}/{name}"), replicaset = %new_name,
                                from = new_replicas_now, to = want, "scaled new replicaset");
                        }
                        self.expectations.wrote(&key, &r);
                    }
                }
            }
        }
        // Scale old ReplicaSets down as far as availability allows.
        let min_available = replicas - max_unavailable;
        let mut can_remove = if recreate {
            i32::MAX
        } else {
            (new_ready + old_ready - min_available).max(0)
        };
        for r in old.iter().filter(|_| !paused) {
            let cur = r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if cur == 0 {
                continue;
            }
            let not_ready = cur - ready_of(r);
            let down = (can_remove + not_ready.max(0)).min(cur);
            if down > 0 {
                can_remove -= (down - not_ready.max(0)).max(0);
                progressed = true;
                let rn = r.metadata.name.clone().unwrap_or_default();
                if let Ok(r) = rs_api
                    .patch(
                        &rn,
                        &crate::patch_params(),
                        &Patch::Merge(json!({"spec": {"replicas": cur - down}})),
                    )
                    .await
                {
                    tracing::info!(deployment = %format!("{ns}/{name}"), replicaset = %rn,
                        from = cur, to = cur - down, "rollout: scaled old replicaset down");
                    self.expectations.wrote(&key, &r);
                }
            }
        }
        // Old ReplicaSets beyond revisionHistoryLimit go, oldest revision first.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&&ReplicaSet> = old
            .iter()
            .filter(|r| {
                r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0
                    && r.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
            })
            .copied()
            .collect();
        if idle.len() > limit {
            idle.sort_by_key(|r| revision_of(&r.metadata));
            for r in idle.iter().take(idle.len() - limit) {
                if let Ok(gone) = rs_api
                    .delete(
                        &r.metadata.name.clone().unwrap_or_default(),
                        &DeleteParams::background(),
                    )
                    .await
                {
                    tracing::info!(deployment = %format!("{ns}/{name}"),
                        replicaset = r.metadata.name.as_deref().unwrap_or(""), "deleted old replicaset (revision history limit)");
                    self.expectations.deleted(&key, r, gone.left().as_ref());
                }
            }
        }
        let dapi: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        if let Some(rev) = revision {
            let rev = rev.to_string();
            if d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                != Some(&rev)
            {
                let _ = dapi
                    .patch(
                        &name,
                        &crate::patch_params(),
                        &Patch::Merge(json!({"metadata": {"annotations": {REVISION: rev}}})),
                    )
                    .await;
            }
        }
        let total: i32 = owned
            .iter()
            .map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0))
            .sum();
        let ready: i32 = old_ready + new_ready;
        let updated = current
            .and_then(|r| r.status.as_ref().map(|s| s.replicas))
            .unwrap_or(0);
        let counts = [total, updated, ready];
        let prev = d.status.clone().unwrap_or_default();
        if [prev.replicas, prev.updated_replicas, prev.ready_replicas].map(|x| x.unwrap_or(0))
            != counts
        {
            progressed = true;
        }
        let progress_complete = updated == replicas && new_ready == replicas && old_active == 0;
        let progress = Progress {
            new_rs: new_name.clone(),
            paused,
            created,
            progressed,
            complete: progress_complete,
            available: ready >= min_available,
            deadline_seconds: spec.progress_deadline_seconds.unwrap_or(600) as i64,
        };
        let conditions = next_conditions(
            prev.conditions.as_deref().unwrap_or(&[]),
            &progress,
            chrono::Utc::now(),
        );
        let status = json!({
            "observedGeneration": d.metadata.generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (replicas - ready).max(0),
            "conditions": conditions,
        });
        if crate::patch_changes(&d.status, &status) {
            dapi.patch_status(
                &name,
                &crate::patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        }
        // The progress deadline is a matter of time.
        Ok((!progress_complete && !paused).then_some(PROGRESS_RECHECK))
    }
}

/// How often a Deployment still rolling out is looked at for its progress deadline.
const PROGRESS_RECHECK: Duration = Duration::from_secs(5);

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX: &str = "deployment.kubernetes.io/max-replicas";

/// The `deployment.kubernetes.io/revision` of an object (0 if none).
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Deployment's annotations its ReplicaSets carry too (`kubernetes.io/change-cause`
/// among them), as the real controller copies them.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "kubectl.kubernetes.io/last-applied-configuration"
                    | REVISION
                    | REVISION_HISTORY
                    | DESIRED
                    | MAX
                    | "deprecated.deployment.rollback.to"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a pass saw of a Deployment's rollout.
pub struct Progress {
    pub new_rs: String,
    pub paused: bool,
    /// The new ReplicaSet was created in this pass.
    pub created: bool,
    /// Something moved: a ReplicaSet scaled, or the counts changed.
    pub progressed: bool,
    /// Every replica is updated and available, no old one left.
    pub complete: bool,
    /// At least `replicas - maxUnavailable` are available.
    pub available: bool,
    pub deadline_seconds: i64,
}

/// The Available and Progressing conditions after a pass, from the previous ones:
/// times move only when the status (transition) or the progress (update) does.
pub fn next_conditions(
    prev: &[DeploymentCondition],
    p: &Progress,
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let find = |t: &str| prev.iter().find(|c| c.type_ == t);
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| stamp.clone())
    };
    let make = |t: &str, status: &str, reason: &str, message: String, update: bool| {
        let same_status = find(t).filter(|c| c.status == status);
        let same_reason = same_status.filter(|c| c.reason.as_deref() == Some(reason) && !update);
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": same_status.map_or_else(|| stamp.clone(), |c| time(&c.last_transition_time)),
               "lastUpdateTime": same_reason.map_or_else(|| stamp.clone(), |c| time(&c.last_update_time))})
    };
    let available = if p.available {
        make(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            false,
        )
    } else {
        make(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            false,
        )
    };
    let rs = &p.new_rs;
    let old = find("Progressing");
    let old_reason = old.and_then(|c| c.reason.as_deref());
    let progressing = if p.paused {
        make(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            false,
        )
    } else if old_reason == Some("DeploymentPaused") {
        make(
            "Progressing",
            "True",
            "DeploymentResumed",
            "Deployment is resumed".into(),
            true,
        )
    } else if p.complete {
        make(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
            false,
        )
    } else if p.created {
        make(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs}\""),
            true,
        )
    } else if p.progressed || old.is_none() || old_reason == Some("NewReplicaSetAvailable") {
        make(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
            true,
        )
    } else if old_reason == Some("ProgressDeadlineExceeded") {
        serde_json::to_value(old).unwrap_or_default()
    } else {
        let last = old
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(now.timestamp());
        if now.timestamp() - last > p.deadline_seconds {
            make(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs}\" has timed out progressing."),
                true,
            )
        } else {
            serde_json::to_value(old).unwrap_or_default()
        }
    };
    json!([available, progressing])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_percentages() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "nginx:1"}]}}));
        let b = template_hash(&json!({"spec": {"containers": [{"image": "nginx:2"}]}}));
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(int_or_percent(None, 4, "25%", true), 1);
        assert_eq!(int_or_percent(Some(&json!("50%")), 3, "25%", true), 2);
        assert_eq!(int_or_percent(Some(&json!("50%")), 3, "25%", false), 1);
        assert_eq!(int_or_percent(Some(&json!(2)), 3, "25%", false), 2);
    }

    #[test]
    fn progressing_and_available_conditions() {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut p = Progress {
            new_rs: "web-abc".into(),
            paused: false,
            created: true,
            progressed: true,
            complete: false,
            available: false,
            deadline_seconds: 10,
        };
        let parse = |v: serde_json::Value| -> Vec<DeploymentCondition> {
            serde_json::from_value(v).unwrap()
        };
        let c = parse(next_conditions(&[], &p, t0));
        assert_eq!(c[0].reason.as_deref(), Some("MinimumReplicasUnavailable"));
        assert_eq!(c[1].reason.as_deref(), Some("NewReplicaSetCreated"));
        // No progress for longer than the deadline.
        p.created = false;
        p.progressed = false;
        let c2 = parse(next_conditions(&c, &p, t0 + chrono::Duration::seconds(5)));
        assert_eq!(c2[1].reason.as_deref(), Some("NewReplicaSetCreated"));
        let c3 = parse(next_conditions(&c2, &p, t0 + chrono::Duration::seconds(11)));
        assert_eq!(c3[1].reason.as_deref(), Some("ProgressDeadlineExceeded"));
        assert_eq!(c3[1].status, "False");
        // Done: available, and the new ReplicaSet has progressed.
        p.complete = true;
        p.available = true;
        let c4 = parse(next_conditions(&c3, &p, t0 + chrono::Duration::seconds(12)));
        assert_eq!(c4[0].reason.as_deref(), Some("MinimumReplicasAvailable"));
        assert_eq!(c4[1].reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            c4[1].message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
        // Transition times stay while the status does.
        let c5 = parse(next_conditions(&c4, &p, t0 + chrono::Duration::seconds(30)));
        assert_eq!(c5[0].last_transition_time, c4[0].last_transition_time);
        assert_eq!(c5[1].last_update_time, c4[1].last_update_time);
        p.paused = true;
        let c6 = parse(next_conditions(&c5, &p, t0 + chrono::Duration::seconds(31)));
        assert_eq!(c6[1].reason.as_deref(), Some("DeploymentPaused"));
        p.paused = false;
        let c7 = parse(next_conditions(&c6, &p, t0 + chrono::Duration::seconds(32)));
        assert_eq!(c7[1].reason.as_deref(), Some("DeploymentResumed"));
    }
}
