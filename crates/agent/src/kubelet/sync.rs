//! The sync loop's pass: start the pods bound here that do not run, stop those gone
//! or deleted (each through the pod worker, [`crate::pod`]), back off failed starts,
//! publish hostPorts, refresh volumes and evict under pressure.

use super::status::{patch_waiting, pending_ephemeral, report_init_progress, report_status};
use super::{node_pods_selector, patch_params, AgentError, EphemeralFailure, Kubelet};
use crate::cri::Runtime;
use crate::eviction::{self, Candidate, Signal, Usage};
use crate::hostports;
use crate::pod::{self, PodError, RunningPod};
use crate::podspec::PodRuntimeInfo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Kubelet {
    /// Runs `work` with the pod worker's context: this agent's runtime, node
    /// settings, object lookup and Events recorder, init progress reported to the API.
    /// Called from a blocking thread.
    fn with_pod_worker<T>(&self, work: impl FnOnce(&pod::Context) -> T) -> T {
        let progress = |p: &Pod, statuses| report_init_progress(self, p, statuses);
        work(&pod::Context {
            runtime: &*self.runtime,
            node: &self.cfg.node,
            lookup: &self.lookup,
            events: &self.recorder,
            puller: &self.puller,
            init_progress: &progress,
        })
    }
}

/// Brings the configMap, secret, downwardAPI and projected volumes of every running
/// pod up to date with the API.
pub(super) async fn refresh_volumes(k: &Arc<Kubelet>) {
    let snapshot = k.running.lock().await.clone();
    let pods = k.pods();
    let node_ip = k.cfg.node.node_ip.clone();
    let k = k.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (uid, rp) in &snapshot {
            let Some(p) = pods.get(uid) else { continue };
            if p.metadata.deletion_timestamp.is_some() || k.stopping(uid) || !rp.dir.exists() {
                continue;
            }
            let rt = PodRuntimeInfo {
                pod_ip: rp
                    .ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| node_ip.clone()),
                host_ip: node_ip.clone(),
                ..Default::default()
            };
            if let Err(e) = pod::refresh_volumes(p, &rp.dir, &k.lookup, &rt) {
                tracing::debug!(pod = %uid, error = %e, "refreshing volumes");
            }
        }
    })
    .await;
}

/// Publishes a running pod's hostPorts unless they already are (also for pods a
/// previous run of the agent started); failures become Warning events.
pub(super) async fn publish_host_ports(k: &Kubelet, p: &Pod, rp: &RunningPod) {
    // A hollow node's pods take no port of the host.
    if k.host_ports.is_open(&rp.uid) || k.runtime.simulated() {
        return;
    }
    let ports = hostports::mappings(p);
    let Some(ip) = rp.ip else { return };
    if ports.is_empty() {
        return;
    }
    for why in k.host_ports.open(&rp.uid, ip, &ports).await {
        k.recorder
            .record(p, None, true, "FailedHostPort", &why)
            .await;
    }
}

/// What a running pod uses, from its containers' stats (working set, writable layers,
/// processes) and its logs and local volumes; None when a container's stats cannot be
/// read.
pub(super) fn pod_usage(rt: &dyn Runtime, rp: &RunningPod) -> Option<Usage> {
    let mut u = Usage {
        disk: skiff_engine::files::dir_bytes(&rp.dir),
        ..Default::default()
    };
    for id in rp.containers.values() {
        let st = rt.container_stats(id).ok()?;
        u.memory += st.memory_working_set_bytes;
        u.disk += st.writable_layer_bytes;
        u.processes += st.processes;
        u.disk += st.log_bytes;
    }
    Some(u)
}

/// Under pressure, evicts one pod as the kubelet ranks them (see [`eviction`]):
/// usage of the starved resource above requests, priority, usage above requests;
/// system-critical pods (priority ≥ 2,000,000,000) are left alone.
pub(super) async fn evict_one(k: &Kubelet, signal: Signal) {
    let pods = k.pods();
    let mut map = k.running.lock().await;
    let eligible: Vec<(String, Pod, RunningPod)> = map
        .iter()
        .filter_map(|(uid, rp)| pods.get(uid).map(|p| (uid.clone(), p.clone(), rp.clone())))
        .filter(|(_, p, _)| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < 2_000_000_000)
        .collect();
    let rt = k.runtime.clone();
    let ranked = tokio::task::spawn_blocking(move || {
        let mut candidates: Vec<Candidate> = eligible
            .iter()
            .map(|(uid, p, rp)| Candidate::new(uid, p, pod_usage(&*rt, rp)))
            .collect();
        eviction::rank(&mut candidates, signal);
        candidates
    })
    .await
    .unwrap_or_default();
    let victim = ranked
        .first()
        .and_then(|c| pods.get(&c.uid).map(|p| (c.uid.clone(), p.clone())));
    let Some((uid, pod)) = victim else { return };
    let Some(rp) = map.remove(&uid) else { return };
    drop(map);
    if let Ok(mut s) = k.evicted.lock() {
        s.insert(uid.clone());
    }
    k.host_ports.close(&uid);
    let message = format!("The node was low on resource: {}. ", signal.resource());
    tracing::info!(pod = %uid, resource = signal.resource(), "evicting pod");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
    let _ = api
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(
                json!({"status": {"phase": "Failed", "reason": "Evicted", "message": message}}),
            ),
        )
        .await;
    k.recorder
        .record(&pod, None, true, "Evicted", &message)
        .await;
    let e = k.runtime.clone();
    let _ = tokio::task::spawn_blocking(move || {
        pod::stop_pod(&*e, &rp, Duration::from_secs(0), Some(&pod))
    })
    .await;
}

/// One level-triggered pass over the pods bound to this node: `pods` (the watch's
/// cache), or, with None, the pods listed from the API right now.
pub async fn sync_pods(k: &Arc<Kubelet>, pods: Option<Vec<Pod>>) -> Result<(), AgentError> {
    let client = &k.client;
    let items = match pods {
        Some(p) => p,
        None => {
            let api: Api<Pod> = Api::all(client.clone());
            // From the server's cache (resourceVersion "0"), as client-go's reflector
            // lists: a safety net needs no quorum read, and under load a consistent
            // read of one node's pods would fall back to reading every pod.
            let lp = ListParams::default()
                .fields(&node_pods_selector(&k.cfg))
                .match_any();
            api.list(&lp).await?.items
        }
    };
    let mut wanted = BTreeMap::new();
    for p in items {
        if let Some(uid) = p.metadata.uid.clone() {
            wanted.insert(uid, p);
        }
    }
    if let Ok(mut m) = k.pods.lock() {
        *m = wanted.clone();
    }
    if let Ok(mut m) = k.start_failures.lock() {
        m.retain(|uid, _| wanted.contains_key(uid));
    }
    if let Ok(mut s) = k.evicted.lock() {
        s.retain(|uid| wanted.contains_key(uid));
    }
    let mut map = k.running.lock().await;
    // Gone from the API, or being deleted: stop, then finish the deletion.
    let uids: Vec<String> = map.keys().cloned().collect();
    for uid in uids {
        let pod = wanted.get(&uid);
        let deleting = pod
            .map(|p| p.metadata.deletion_timestamp.is_some())
            .unwrap_or(true);
        if !deleting {
            continue;
        }
        let Some(rp) = map.remove(&uid) else { continue };
        k.host_ports.close(&uid);
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64;
        // Stopping honours the grace period: do it beside the loop, not in it.
        let (e, client) = (k.runtime.clone(), client.clone());
        let pod = pod.cloned();
        if let Ok(mut s) = k.stopping.lock() {
            s.insert(uid.clone());
        }
        let k = k.clone();
        tokio::spawn(async move {
            if let Some(p) = &pod {
                for c in rp.containers.keys() {
                    k.recorder
                        .record(
                            p,
                            Some(c),
                            false,
                            "Killing",
                            &format!("Stopping container {c}"),
                        )
                        .await;
                }
            }
            tracing::info!(pod = %uid, grace_seconds = grace, "stopping pod");
            let spec_pod = pod.clone();
            let r = tokio::task::spawn_blocking(move || {
                pod::stop_pod(&*e, &rp, Duration::from_secs(grace), spec_pod.as_ref())
            })
            .await;
            if let Ok(Err(e)) = r {
                tracing::warn!(pod = %uid, error = %e, "stopping pod");
            }
            if let Some(p) = pod {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client, &ns);
                let _ = api
                    .delete(
                        &p.metadata.name.clone().unwrap_or_default(),
                        &DeleteParams::default().grace_period(0),
                    )
                    .await;
            }
            if let Ok(mut s) = k.stopping.lock() {
                s.remove(&uid);
            }
        });
    }
    k.host_ports.retain(&|uid| map.contains_key(uid));
    if let Ok(mut m) = k.ephemeral_failures.lock() {
        m.retain(|(uid, _), _| wanted.contains_key(uid));
    }
    let mut to_start: Vec<Pod> = Vec::new();
    let mut to_debug: Vec<(Pod, Vec<String>)> = Vec::new();
    for (uid, p) in &wanted {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if k.stopping(uid) || k.evicted(uid) {
            continue;
        }
        if p.metadata.deletion_timestamp.is_some() {
            if !map.contains_key(uid) {
                let _ = api
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
            }
            continue;
        }
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if !map.contains_key(uid) {
            if phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            if backing_off(k, &api, p, uid).await {
                continue;
            }
            to_start.push(p.clone());
            continue;
        }
        if let Some(rp) = map.get(uid) {
            publish_host_ports(k, p, rp).await;
            let debug = pending_ephemeral(k, p, rp);
            if debug.is_empty() {
                report_status(k, &api, p, rp).await;
            } else {
                to_debug.push((p.clone(), debug));
            }
        }
    }
    // Ephemeral containers added to running pods (`kubectl debug`).
    for (p, names) in to_debug {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let Some(mut rp) = map.remove(&uid) else {
            continue;
        };
        let (worker, pod) = (k.clone(), p.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut failures = Vec::new();
            worker.with_pod_worker(|cx| {
                for name in names {
                    if let Err(err) = pod::start_ephemeral(cx, &pod, &name, &mut rp) {
                        failures.push((name, err));
                    }
                }
            });
            (rp, failures)
        })
        .await;
        let Ok((rp, failures)) = r else {
            tracing::warn!(pod = %uid, "starting ephemeral containers panicked");
            continue;
        };
        for (name, err) in failures {
            let reason = start_failure_reason(&err);
            tracing::info!(pod = %uid, container = %name, error = %err, "starting an ephemeral container failed");
            if let Ok(mut m) = k.ephemeral_failures.lock() {
                m.insert(
                    (uid.clone(), name),
                    EphemeralFailure {
                        reason: reason.into(),
                        message: err.to_string(),
                        next: Instant::now() + k.cfg.start_backoff.0,
                    },
                );
            }
        }
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            &p.metadata.namespace.clone().unwrap_or_default(),
        );
        report_status(k, &api, &p, &rp).await;
        map.insert(uid, rp);
    }
    // New pods start side by side (each is mostly waiting on the kernel).
    let starts = to_start.into_iter().map(|p| {
        let (worker, pod) = (k.clone(), p.clone());
        async move {
            let r = tokio::task::spawn_blocking(move || {
                worker.with_pod_worker(|cx| pod::start_pod(cx, &pod))
            })
            .await;
            (p, r)
        }
    });
    for (p, r) in futures::future::join_all(starts).await {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match r? {
            Ok(rp) => {
                tracing::info!(pod = %format!("{ns}/{name}"), %uid, "pod started");
                if let Ok(mut m) = k.start_failures.lock() {
                    m.remove(&uid);
                }
                publish_host_ports(k, &p, &rp).await;
                report_status(k, &api, &p, &rp).await;
                map.insert(uid, rp);
            }
            Err(err @ PodError::VolumeNotReady { .. }) => {
                let why = err.to_string();
                let first = k
                    .start_failures
                    .lock()
                    .map(|mut m| {
                        let f = m.entry(uid.clone()).or_insert_with(StartFailure::new);
                        f.next = Instant::now() + VOLUME_RETRY;
                        let first = f.reason != "FailedMount" || f.message != why;
                        f.reason = "FailedMount".into();
                        f.message = why.clone();
                        first
                    })
                    .unwrap_or(false);
                if first {
                    k.recorder.record(&p, None, true, "FailedMount", &why).await;
                    patch_waiting(
                        &api,
                        &name,
                        &p,
                        "ContainerCreating",
                        "",
                        &k.cfg.node.node_ip,
                    )
                    .await;
                }
            }
            Err(err) => {
                let reason = start_failure_reason(&err);
                let count = k
                    .start_failures
                    .lock()
                    .map(|mut m| {
                        let f = m.entry(uid.clone()).or_insert_with(StartFailure::new);
                        f.count += 1;
                        let (first, max) = k.cfg.start_backoff;
                        let delay = (first * 2u32.saturating_pow(f.count - 1)).min(max);
                        f.next = Instant::now() + delay;
                        f.reason = reason.to_string();
                        f.message = err.to_string();
                        f.backing_off = false;
                        f.count
                    })
                    .unwrap_or(1);
                tracing::debug!(pod = %name, attempt = count, error = %err, "starting the pod failed");
                if let PodError::InitFailed { .. } = &err {
                    // Its statuses are reported; with restartPolicy Never the pod fails.
                    let never =
                        p.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("Never");
                    if never {
                        let _ = api
                            .patch_status(
                                &name,
                                &patch_params(),
                                &Patch::Merge(json!({"status": {"phase": "Failed"}})),
                            )
                            .await;
                    }
                    continue;
                }
                patch_waiting(
                    &api,
                    &name,
                    &p,
                    reason,
                    &err.to_string(),
                    &k.cfg.node.node_ip,
                )
                .await;
            }
        }
    }
    Ok(())
}

/// The waiting reason the kubelet shows for a container that could not be started.
pub(super) fn start_failure_reason(err: &PodError) -> &'static str {
    match err {
        PodError::Spec(e) if e.config_missing() => "CreateContainerConfigError",
        PodError::Image(crate::pull::PullError::NeverPull(_)) => "ErrImageNeverPull",
        PodError::Image(crate::pull::PullError::Failed { .. }) => "ErrImagePull",
        _ => "CreateContainerError",
    }
}

/// Why a pod could not be started, and when to try again (the kubelet's back-off:
/// 10 s doubling up to 5 minutes).
pub(super) struct StartFailure {
    count: u32,
    next: Instant,
    reason: String,
    message: String,
    /// The waiting reason already shows the back-off (ImagePullBackOff).
    backing_off: bool,
}

impl StartFailure {
    /// No failure counted yet, due now.
    fn new() -> StartFailure {
        StartFailure {
            count: 0,
            next: Instant::now(),
            reason: String::new(),
            message: String::new(),
            backing_off: false,
        }
    }
}

/// The kubelet's back-off of pods that could not start: 10 s doubling up to 5 minutes.
pub const DEFAULT_START_BACKOFF: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(300));
/// How soon a pod whose volumes were not ready is tried again.
pub(super) const VOLUME_RETRY: Duration = Duration::from_secs(1);

/// Whether a pod waits out its start back-off; the first time an image pull is
/// being backed off, its status says ImagePullBackOff and a BackOff event is recorded.
pub(super) async fn backing_off(k: &Kubelet, api: &Api<Pod>, p: &Pod, uid: &str) -> bool {
    let (wait, announce) = match k.start_failures.lock() {
        Ok(mut m) => match m.get_mut(uid) {
            Some(f) if Instant::now() < f.next => {
                let announce =
                    (f.reason == "ErrImagePull" && !f.backing_off).then(|| f.message.clone());
                f.backing_off = true;
                (true, announce)
            }
            _ => (false, None),
        },
        Err(_) => (false, None),
    };
    if let Some(message) = announce {
        let name = p.metadata.name.clone().unwrap_or_default();
        patch_waiting(
            api,
            &name,
            p,
            "ImagePullBackOff",
            &message,
            &k.cfg.node.node_ip,
        )
        .await;
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            let img = c.image.clone().unwrap_or_default();
            let message = format!("Back-off pulling image \"{img}\"");
            k.recorder
                .record(p, Some(&c.name), false, "BackOff", &message)
                .await;
            k.recorder
                .record(p, Some(&c.name), true, "Failed", "Error: ImagePullBackOff")
                .await;
        }
    }
    wait
}
