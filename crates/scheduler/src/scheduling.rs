//! The scheduler's loop, as kube-scheduler's, over the shared informers (`skiff-informer`): pods without a node come from a watch
//! of `spec.nodeName=` (its scheduling queue); the cluster they are placed in is the
//! shared informers' nodes, pods, namespaces and storage objects. Each pass places the
//! waiting pods with `skiff-scheduler`'s filter and score plugins, in creation order,
//! assuming each decision at once (so the next pod sees it) and posting the Bindings
//! together. A bound pod stays *assumed* until the pod cache shows it bound, so a
//! lagging cache never double-counts or re-binds it.
//!
//! A pod that fits nowhere gets `PodScheduled=False` (reason Unschedulable) and a
//! FailedScheduling event, once per distinct reason; it is tried again whenever a node,
//! a bound pod, a namespace or a storage object changes (any of which may make room),
//! and every few seconds besides. Every write carries the field manager `kube-scheduler`.

use crate::{pod_claims, waits_for_first_consumer, Cluster, Volumes};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use skiff_informer::{stopped, Informers, UNBOUND};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// kube-scheduler's field manager.
pub const FIELD_MANAGER: &str = "kube-scheduler";
/// How long a binding is assumed before the pod cache must show it.
const ASSUME_TTL: Duration = Duration::from_secs(30);
/// The most pods one pass places.
const PODS_PER_PASS: usize = 1000;
/// How many Bindings (and Scheduled events) a pass has in flight at once.
const BINDS_IN_FLIGHT: usize = 64;
/// How often unschedulable pods are tried again even if nothing was seen to change.
const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(5);

fn patch_params() -> kube::api::PatchParams {
    skiff_informer::patch_params(FIELD_MANAGER)
}

fn post_params() -> kube::api::PostParams {
    skiff_informer::post_params(FIELD_MANAGER)
}

fn node_name(p: &CachedPod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn uid(p: &CachedPod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

/// Whether this scheduler should place `p` now.
fn wants_scheduling(p: &CachedPod) -> bool {
    let Some(spec) = &p.spec else { return false };
    node_name(p).is_empty()
        && p.metadata.deletion_timestamp.is_none()
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == "default-scheduler"
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
}

/// The scheduler's memory between passes.
struct Scheduler {
    client: Client,
    informers: Informers,
    /// Pods bound by this scheduler that the pod cache does not show bound yet.
    assumed: HashMap<String, (String, Instant)>,
    /// Pods that fit nowhere, with the cluster epoch they were last tried at.
    unschedulable: HashMap<String, u64>,
    /// Where the next pod's filtering starts among the nodes (nextStartNodeIndex).
    next_start: usize,
}

impl Scheduler {
    /// One pass over the waiting pods.
    /// Places at most [`PODS_PER_PASS`] pods; returns whether more are waiting.
    async fn pass(&mut self, epoch: u64, retry_all: bool) -> bool {
        let started = std::time::Instant::now();
        let inf = &self.informers;
        // The queue: the pods informer's index of unbound pods says cheaply whether
        // any waits; the pass then reads the whole cache once, so that the queue and the
        // bound pods come from one view.
        if !inf
            .pods
            .indexed(UNBOUND)
            .iter()
            .any(|p| wants_scheduling(p))
        {
            self.unschedulable.clear();
            return false;
        }
        let pods = inf.pods.state();
        let waiting: Vec<&Arc<CachedPod>> =
            pods.iter().filter(|p| node_name(p).is_empty()).collect();
        let waiting_uids: HashSet<&str> = waiting.iter().map(|p| uid(p)).collect();
        // An assumed pod is forgotten once the cache shows it bound (or gone).
        self.assumed
            .retain(|u, (_, at)| at.elapsed() < ASSUME_TTL && waiting_uids.contains(u.as_str()));
        self.unschedulable
            .retain(|u, _| waiting_uids.contains(u.as_str()));
        let mut queue: Vec<Arc<CachedPod>> = waiting
            .iter()
            .filter(|p| wants_scheduling(p) && !self.assumed.contains_key(uid(p)))
            .filter(|p| retry_all || self.unschedulable.get(uid(p)).is_none_or(|e| *e < epoch))
            .map(|p| Arc::clone(p))
            .collect();
        if queue.is_empty() {
            return false;
        }
        queue.sort_by(|a, b| {
            let t = |p: &CachedPod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        // A bounded pass: its pods are bound and logged before the next ones are looked
        // at, so a pass lost with a leadership term loses little.
        let more = queue.len() > PODS_PER_PASS;
        queue.truncate(PODS_PER_PASS);
        let namespaces = inf.namespaces.state();
        let mut cluster = Cluster::new(
            inf.nodes.state(),
            pods.iter().cloned(),
            namespaces.iter().map(|n| &**n),
            self.next_start,
        );
        // Bindings not yet in the pod cache count where they were sent.
        for p in &waiting {
            if let Some((node, _)) = self.assumed.get(uid(p)) {
                cluster.assume(p, node);
            }
        }
        let mut vols: Option<Volumes> = None;
        let mut bindings = Vec::new();
        let mut unplaced = Vec::new();
        for p in queue {
            let claims = pod_claims(&p);
            if !claims.is_empty() && vols.is_none() {
                vols = Some(self.volumes());
            }
            let decision = cluster.schedule(&p, vols.as_ref().filter(|_| !claims.is_empty()));
            match decision {
                Ok(node) => {
                    cluster.assume(&p, &node);
                    self.assumed
                        .insert(uid(&p).to_string(), (node.clone(), Instant::now()));
                    self.unschedulable.remove(uid(&p));
                    bindings.push((p, node, claims));
                }
                Err(u) => {
                    self.unschedulable.insert(uid(&p).to_string(), epoch);
                    unplaced.push((p, u.message));
                }
            }
        }
        self.next_start = cluster.next_start();
        let decided_ms = started.elapsed().as_secs_f64() * 1000.0;
        // A few Bindings in flight at a time reuse their connections; thousands at
        // once would each open one and crowd out every other client of the server.
        let in_flight = tokio::sync::Semaphore::new(BINDS_IN_FLIGHT);
        let this = &*self;
        let binds = futures::future::join_all(bindings.iter().map(|(p, node, claims)| {
            let (in_flight, vols) = (&in_flight, vols.as_ref());
            async move {
                let _permit = in_flight.acquire().await;
                this.bind(p, node, claims, vols).await
            }
        }));
        // Pods that fit nowhere are told so beside the Bindings, not one by one before.
        let told = futures::future::join_all(unplaced.iter().map(|(p, message)| {
            let in_flight = &in_flight;
            async move {
                let _permit = in_flight.acquire().await;
                this.unschedulable_pod(p, message).await
            }
        }));
        let (results, _) = futures::future::join(binds, told).await;
        let bound = results.iter().filter(|r| r.is_ok()).count();
        if !bindings.is_empty() {
            tracing::info!(
                bound,
                waiting = waiting.len(),
                decided_ms,
                took_ms = started.elapsed().as_secs_f64() * 1000.0,
                "scheduling pass"
            );
        }
        let mut scheduled = Vec::new();
        for ((p, node, _), r) in bindings.iter().zip(results) {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            let name = p.metadata.name.as_deref().unwrap_or("");
            match r {
                Ok(()) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node = %node, "bound pod to node");
                    scheduled.push((
                        Arc::clone(p),
                        format!("Successfully assigned {ns}/{name} to {node}"),
                    ));
                }
                Err(e) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node = %node, error = %e, "binding failed");
                    self.assumed.remove(uid(p));
                }
            }
        }
        // The Scheduled events, a few at a time, after the pass.
        let client = self.client.clone();
        tokio::spawn(async move {
            futures::stream::iter(scheduled)
                .for_each_concurrent(BINDS_IN_FLIGHT, |(p, msg)| {
                    let client = client.clone();
                    async move { event(&client, &p, "Normal", "Scheduled", &msg).await }
                })
                .await;
        });
        // Straight on only while passes make progress (a failing server gets a pause).
        more && bound > 0
    }

    /// The storage objects VolumeBinding reads.
    fn volumes(&self) -> Volumes {
        let inf = &self.informers;
        Volumes {
            claims: inf.claims.state().iter().map(|c| (**c).clone()).collect(),
            volumes: inf.volumes.state().iter().map(|v| (**v).clone()).collect(),
            classes: inf.classes.state().iter().map(|c| (**c).clone()).collect(),
        }
    }

    async fn bind(
        &self,
        p: &CachedPod,
        node: &str,
        claims: &[String],
        vols: Option<&Volumes>,
    ) -> Result<(), kube::Error> {
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let name = p.metadata.name.as_deref().unwrap_or("");
        if let Some(v) = vols.filter(|_| !claims.is_empty()) {
            select_node(&self.client, v, ns, claims, node).await?;
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
                name,
                &post_params(),
                serde_json::to_vec(&binding).unwrap_or_default(),
            )
            .map_err(kube::Error::BuildRequest)?;
        self.client.request::<serde_json::Value>(r).await?;
        Ok(())
    }

    /// Records that `p` fits nowhere, unless its condition already says so.
    async fn unschedulable_pod(&self, p: &CachedPod, message: &str) {
        let same = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref() == Some(message)
            });
        if same {
            return;
        }
        let ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let name = p.metadata.name.as_deref().unwrap_or("");
        tracing::info!(pod = %format!("{ns}/{name}"), reason = %message, "unschedulable");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let _ = api
            .patch_status(name, &patch_params(), &Patch::Merge(json!({"status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": message, "lastProbeTime": null,
                                "lastTransitionTime": skiff_meta::time::now()}],
            }})))
            .await;
        event(&self.client, p, "Warning", "FailedScheduling", message).await;
    }
}

/// Tells the provisioner which node the pod's unbound claims that wait for their
/// first consumer are wanted on (`volume.kubernetes.io/selected-node`).
async fn select_node(
    client: &Client,
    vols: &Volumes,
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
            .and_then(|a| a.get(crate::SELECTED_NODE));
        if unbound
            && selected.is_none()
            && waits_for_first_consumer(vols, spec.storage_class_name.as_deref())
        {
            api.patch(
                c.metadata.name.as_deref().unwrap_or(""),
                &patch_params(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    crate::SELECTED_NODE: node}}})),
            )
            .await?;
        }
    }
    Ok(())
}

async fn event(client: &Client, pod: &CachedPod, ty: &str, reason: &str, message: &str) {
    let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name,
        "namespace": pod.metadata.namespace.as_deref().unwrap_or("default"), "uid": pod.metadata.uid});
    skiff_informer::event(
        client,
        involved,
        ty,
        reason,
        message,
        "default-scheduler",
        FIELD_MANAGER,
    )
    .await;
}

/// Runs the scheduler until `stop`: a pass whenever a pod is waiting, and for pods that
/// fit nowhere whenever the cluster changes.
pub async fn run(client: Client, informers: Informers, stop: watch::Receiver<bool>) {
    let kick = Arc::new(Notify::new());
    // Bumped by every change that may let an unschedulable pod fit.
    let epoch = Arc::new(AtomicU64::new(1));
    let changed = {
        let (kick, epoch) = (kick.clone(), epoch.clone());
        move || {
            epoch.fetch_add(1, Ordering::SeqCst);
            kick.notify_one();
        }
    };
    {
        let changed = changed.clone();
        informers.nodes.on_change(move |_| changed());
    }
    {
        let changed = changed.clone();
        let kick = kick.clone();
        // A new or changed unbound pod is work; a bound one may change where others fit.
        informers.pods.on_change(move |p| {
            if node_name(p).is_empty() {
                kick.notify_one()
            } else {
                changed()
            }
        });
    }
    {
        let changed = changed.clone();
        informers.namespaces.on_change(move |_| changed());
    }
    {
        let changed = changed.clone();
        informers.claims.on_change(move |_| changed());
    }
    {
        let changed = changed.clone();
        informers.volumes.on_change(move |_| changed());
    }
    informers.classes.on_change(move |_| changed());
    informers.synced().await;
    let mut s = Scheduler {
        client,
        informers,
        assumed: HashMap::new(),
        unschedulable: HashMap::new(),
        next_start: 0,
    };
    let stop = stopped(stop);
    tokio::pin!(stop);
    let mut last_retry = Instant::now();
    loop {
        let retry_all = last_retry.elapsed() >= RETRY_UNSCHEDULABLE;
        if retry_all {
            last_retry = Instant::now();
        }
        if s.pass(epoch.load(Ordering::SeqCst), retry_all).await {
            continue;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = kick.notified() => {}
            _ = tokio::time::sleep(RETRY_UNSCHEDULABLE) => {}
        }
    }
}
