//! A pod's status as the kubelet reports it, from the runtime's state and the probes'
//! verdicts, and its writes to the API.

use super::{patch_params, Kubelet};
use crate::cri::{ContainerState, ContainerStatus};
use crate::pod::RunningPod;
use crate::podspec;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch};
use serde_json::json;
use skiff_meta::time::now;
use std::collections::BTreeMap;

/// The container statuses and phase of a running pod, from the runtime's state.
pub fn pod_status(k: &Kubelet, pod: &Pod, running: &RunningPod) -> serde_json::Value {
    let runtime = &*k.runtime;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut statuses = Vec::new();
    let (mut all_done, mut any_failed, mut all_ready) = (true, false, true);
    for c in &spec.containers {
        let st = running
            .containers
            .get(&c.name)
            .and_then(|id| runtime.container_status(id).ok());
        let (state, ready, started, restarts, id, image_id) = match &st {
            Some(s) => {
                let state = container_state(s, &c.name, pod);
                let verdict = k.verdicts.lock().ok().and_then(|v| v.get(&s.id).cloned());
                let running = s.state == ContainerState::Running;
                let running_now = running
                    && match &verdict {
                        Some(v) => v.ready,
                        None => c.readiness_probe.is_none() && c.startup_probe.is_none(),
                    };
                // Started: running, past its startup probe if it has one.
                let started = running
                    && match &verdict {
                        Some(v) => v.started,
                        None => c.startup_probe.is_none(),
                    };
                // A container made but not yet running is waiting, not done (the
                // kubelet's phase counts it as waiting).
                if s.state.is_active() || s.state == ContainerState::Created {
                    all_done = false;
                } else if s.exit_code != 0 {
                    any_failed = true;
                }
                (
                    state,
                    running_now,
                    started,
                    s.restart_count,
                    format!("skiff://{}", s.id),
                    s.image_ref.clone(),
                )
            }
            None => {
                all_done = false;
                (
                    json!({"waiting": {"reason": "ContainerCreating"}}),
                    false,
                    false,
                    0,
                    String::new(),
                    String::new(),
                )
            }
        };
        all_ready &= ready;
        // How the previous run ended, as the kubelet keeps it (empty before a restart).
        let last_state = match st.as_ref().and_then(|s| s.last.as_ref().map(|l| (s, l))) {
            Some((s, l)) => json!({"terminated": {
                "exitCode": l.exit_code,
                "reason": l.reason,
                "startedAt": l.started_at,
                "finishedAt": l.finished_at,
                "containerID": format!("skiff://{}", s.id),
            }}),
            None => json!({}),
        };
        statuses.push(json!({
            "name": c.name,
            "image": c.image,
            "imageID": image_id,
            "containerID": id,
            "ready": ready,
            "started": started,
            "restartCount": restarts,
            "state": state,
            "lastState": last_state,
        }));
    }
    // Init containers: run to completion before the app containers started.
    let mut init = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = running
            .init
            .get(&c.name)
            .and_then(|id| runtime.container_status(id).ok())
        else {
            continue;
        };
        init.push(json!({
            "name": c.name,
            "image": c.image,
            "imageID": s.image_ref,
            "containerID": format!("skiff://{}", s.id),
            "ready": s.state == ContainerState::Exited && s.exit_code == 0,
            "started": false,
            "restartCount": 0,
            "state": container_state(&s, &c.name, pod),
            "lastState": {},
        }));
    }
    // Ephemeral containers: started once, never ready, never restarted.
    let mut ephemeral = Vec::new();
    for c in spec.ephemeral_containers.iter().flatten() {
        let st = running
            .ephemeral
            .get(&c.name)
            .and_then(|id| runtime.container_status(id).ok());
        let (state, id, image_id) = match &st {
            Some(s) => (
                container_state(s, &c.name, pod),
                format!("skiff://{}", s.id),
                s.image_ref.clone(),
            ),
            None => {
                let failed = k.ephemeral_failures.lock().ok().and_then(|m| {
                    m.get(&(running.uid.clone(), c.name.clone()))
                        .map(|f| (f.reason.clone(), f.message.clone()))
                });
                let waiting = match failed {
                    Some((reason, message)) => json!({"reason": reason, "message": message}),
                    None => json!({"reason": "ContainerCreating"}),
                };
                (json!({ "waiting": waiting }), String::new(), String::new())
            }
        };
        let mut status = json!({
            "name": c.name,
            "image": c.image,
            "imageID": image_id,
            "ready": false,
            "restartCount": 0,
            "state": state,
        });
        if !id.is_empty() {
            status["containerID"] = json!(id);
        }
        ephemeral.push(status);
    }
    let phase = if all_done {
        if policy == "Always" || any_failed {
            if any_failed {
                "Failed"
            } else {
                "Succeeded"
            }
        } else {
            "Succeeded"
        }
    } else {
        "Running"
    };
    let t = now();
    let cond = |ty: &str, ok: bool| json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": t, "lastProbeTime": null});
    let pod_ip = running.ip.map(|i| i.to_string());
    json!({
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", true),
            cond("Initialized", true),
            cond("Ready", all_ready && phase == "Running"),
            cond("ContainersReady", all_ready && phase == "Running"),
            cond("PodScheduled", true),
        ],
        "podIP": pod_ip,
        "podIPs": pod_ip.as_ref().map(|ip| vec![json!({"ip": ip})]),
        "startTime": pod.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| serde_json::to_value(t).unwrap_or_default()).unwrap_or(json!(t)),
        "qosClass": podspec::qos_class(pod),
        "containerStatuses": statuses,
        "initContainerStatuses": if init.is_empty() { serde_json::Value::Null } else { json!(init) },
        "ephemeralContainerStatuses": if ephemeral.is_empty() { serde_json::Value::Null } else { json!(ephemeral) },
    })
}

/// The status of a pod whose init containers are running (or one of them failed):
/// Pending, not Initialized, app containers waiting in PodInitializing.
pub(super) fn initializing_status(pod: &Pod, init: Vec<serde_json::Value>) -> serde_json::Value {
    let t = now();
    let pending: Vec<String> = init
        .iter()
        .filter(|s| s.pointer("/state/terminated/exitCode") != Some(&json!(0)))
        .filter_map(|s| s.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect();
    let apps: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": false,
                "started": false, "restartCount": 0, "lastState": {},
                "state": {"waiting": {"reason": "PodInitializing"}},
            })
        })
        .collect();
    let apps_names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.as_str())
        .collect();
    let not = |ty: &str, reason: &str, message: String| {
        json!({"type": ty, "status": "False", "reason": reason, "message": message,
               "lastTransitionTime": t, "lastProbeTime": null})
    };
    json!({
        "phase": "Pending",
        "qosClass": podspec::qos_class(pod),
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": t, "lastProbeTime": null},
            not("Initialized", "ContainersNotInitialized", format!("containers with incomplete status: [{}]", pending.join(" "))),
            not("Ready", "ContainersNotReady", format!("containers with unready status: [{}]", apps_names.join(" "))),
            not("ContainersReady", "ContainersNotReady", format!("containers with unready status: [{}]", apps_names.join(" "))),
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t, "lastProbeTime": null},
        ],
        "initContainerStatuses": init,
        "containerStatuses": apps,
    })
}

/// Reports the statuses of a starting pod's init containers (`initContainerStatuses`
/// as the API shows them), from the pod worker's blocking thread: written before
/// its start goes on.
pub(super) fn report_init_progress(k: &Kubelet, pod: &Pod, statuses: Vec<serde_json::Value>) {
    let api: Api<Pod> = Api::namespaced(
        k.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = initializing_status(pod, statuses);
    let _ = k.handle.block_on(async move {
        api.patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
    });
}

/// A container's state as the pod status shows it.
pub(super) fn container_state(s: &ContainerStatus, name: &str, pod: &Pod) -> serde_json::Value {
    match s.state {
        ContainerState::Running => json!({"running": {"startedAt": s.started_at}}),
        ContainerState::Restarting => json!({"waiting": {
            "reason": "CrashLoopBackOff",
            "message": format!("back-off restarting failed container {name} in pod {}", pod.metadata.name.clone().unwrap_or_default()),
        }}),
        ContainerState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
        ContainerState::Exited => json!({"terminated": {
            "exitCode": s.exit_code,
            "reason": s.reason,
            "startedAt": s.started_at,
            "finishedAt": s.finished_at,
            "containerID": format!("skiff://{}", s.id),
        }}),
    }
}

/// Ephemeral containers that could not be started: why, and when to try again.
pub(super) struct EphemeralFailure {
    pub(super) reason: String,
    pub(super) message: String,
    pub(super) next: std::time::Instant,
}

/// The ephemeral containers of a running pod still to be started (not started yet,
/// not waiting out a failed start).
pub(super) fn pending_ephemeral(k: &Kubelet, p: &Pod, rp: &RunningPod) -> Vec<String> {
    let now = std::time::Instant::now();
    p.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .filter(|c| !rp.ephemeral.contains_key(&c.name))
        .filter(|c| {
            k.ephemeral_failures.lock().is_ok_and(|m| {
                m.get(&(rp.uid.clone(), c.name.clone()))
                    .is_none_or(|f| f.next <= now)
            })
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Reports every container of a pod that could not start as waiting for `reason`.
pub(super) async fn patch_waiting(
    api: &Api<Pod>,
    name: &str,
    p: &Pod,
    reason: &str,
    message: &str,
    node_ip: &str,
) {
    let waiting: Vec<serde_json::Value> = p
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = api
        .patch_status(
            name,
            &patch_params(),
            &Patch::Merge(json!({"status": {
                "phase": "Pending", "qosClass": podspec::qos_class(p), "containerStatuses": waiting,
                "hostIP": node_ip,
            }})),
        )
        .await;
}

/// Writes a running pod's status, unless it is what was last written; containers
/// that just entered CrashLoopBackOff get a BackOff event.
pub(super) async fn report_status(k: &Kubelet, api: &Api<Pod>, p: &Pod, rp: &RunningPod) {
    let mut status = pod_status(k, p, rp);
    let node_ip = &k.cfg.node.node_ip;
    status["hostIP"] = json!(node_ip);
    status["hostIPs"] = json!([{ "ip": node_ip }]);
    // Compare without the timestamps that change on every computation.
    let mut key = status.clone();
    if let Some(c) = key.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for x in c {
            x.as_object_mut().map(|o| o.remove("lastTransitionTime"));
        }
    }
    if let Some(o) = key.as_object_mut() {
        o.remove("startTime");
    }
    let unchanged = k
        .reported
        .lock()
        .map(|m| m.get(&rp.uid) == Some(&key))
        .unwrap_or(false);
    if unchanged {
        return;
    }
    // Containers that just entered CrashLoopBackOff get the kubelet's BackOff event.
    let crashing = |v: &serde_json::Value| -> Vec<String> {
        v["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["state"]["waiting"]["reason"] == "CrashLoopBackOff")
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect()
    };
    let previous = k.reported.lock().ok().and_then(|m| m.get(&rp.uid).cloned());
    let before = previous.as_ref().map(crashing).unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let restarts = |v: &serde_json::Value| -> BTreeMap<String, u64> {
        v["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["restartCount"].as_u64()?)))
            .collect()
    };
    let restarted_before = previous.as_ref().map(restarts).unwrap_or_default();
    for (c, n) in restarts(&key) {
        if restarted_before.get(&c).is_some_and(|&was| n > was) {
            tracing::info!(pod = %format!("{ns}/{name}"), container = %c, restarts = n, "container restarted");
        }
    }
    for c in crashing(&key).into_iter().filter(|c| !before.contains(c)) {
        let msg = format!(
            "Back-off restarting failed container {c} in pod {name}_{ns}({})",
            rp.uid
        );
        k.recorder.record(p, Some(&c), true, "BackOff", &msg).await;
    }
    if api
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .is_ok()
    {
        if let Ok(mut m) = k.reported.lock() {
            m.insert(rp.uid.clone(), key);
        }
    }
}
