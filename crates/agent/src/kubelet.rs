//! The node agent's loop against the API server: register the Node and keep its
//! Lease fresh, run the Pods bound to this node (level-triggered: every pass
//! compares the pods the API wants here with what runs, and closes the gap), report
//! their status, and finish their deletion.

use crate::cri::{ContainerState, Runtime, SharedRuntime};
use crate::pod::{self, NodeSettings, RunningPod};
use crate::podspec::{self, ObjectLookup};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeSettings,
    /// The node's pod CIDR (spec.podCIDR).
    pub pod_cidr: String,
    /// Lease duration; the lease is renewed every quarter of it (10 s of 40 s).
    pub lease_duration: Duration,
    /// How often pods are synced when nothing else wakes the loop.
    pub sync_period: Duration,
    /// The port of this node's streaming endpoint (logs, exec, attach, port-forward),
    /// reported in the Node's `status.daemonEndpoints`.
    pub kubelet_port: u16,
    /// The node runs the control plane too (`skiff server`): labelled
    /// `node-role.kubernetes.io/control-plane` (a joining agent may not set that).
    pub control_plane: bool,
    /// How often housekeeping runs (cAdvisor's housekeeping interval, 10 s): node
    /// pressure and eviction, image garbage collection, directories of deleted volumes.
    pub housekeeping_period: Duration,
    /// How often running pods' configMap, secret, downwardAPI and projected volumes are
    /// brought up to date (the kubelet's --sync-frequency, 1 minute).
    pub volume_resync_period: Duration,
    /// The hard eviction thresholds (`--eviction-hard`).
    pub eviction_hard: crate::pressure::Thresholds,
    /// When unused images are removed (`--image-gc-high-threshold`/`-low-threshold`).
    pub image_gc: crate::imagegc::Thresholds,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Runtime(#[from] crate::cri::RuntimeError),
    #[error("{0}")]
    Other(String),
}

/// The field manager of the agent's writes (the kubelet's own name in managedFields).
pub const FIELD_MANAGER: &str = "kubelet";

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

use skiff_meta::time::now;

fn meminfo_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|x| x.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        * 1024
}

fn disk_total(path: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

/// The node annotation naming the directory of this node's local volumes (read by
/// the local-path provisioner).
pub const STORAGE_DIR_ANNOTATION: &str = "skiff.io/local-path-dir";

/// The Node object this agent registers.
pub fn node_object(k: &Kubelet, cfg: &AgentConfig, root: &std::path::Path) -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = meminfo_total();
    let disk = disk_total(root);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", mem / 1024),
        "ephemeral-storage": format!("{}Ki", disk / 1024),
        "pods": "110",
    });
    let mut labels = json!({
        "kubernetes.io/hostname": cfg.node.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    });
    if cfg.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("true");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": cfg.node.node_name,
            "labels": labels,
            "annotations": {STORAGE_DIR_ANNOTATION: cfg.node.storage_dir.to_string_lossy()},
        },
        "spec": {"podCIDR": cfg.pod_cidr, "podCIDRs": [cfg.pod_cidr]},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": cfg.node.node_ip},
                {"type": "Hostname", "address": cfg.node.node_name},
            ],
            "nodeInfo": {
                "architecture": arch,
                "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
                "containerRuntimeVersion": format!("skiff://{}", env!("CARGO_PKG_VERSION")),
                "kernelVersion": kernel.trim(),
                "kubeProxyVersion": "v1.33.0",
                "kubeletVersion": "v1.33.0",
                "machineID": std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim(),
                "operatingSystem": "linux",
                "osImage": os_image,
                "systemUUID": "",
            },
            "conditions": conditions(k),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        }
    })
}

fn conditions(k: &Kubelet) -> serde_json::Value {
    let (mem, disk, pid) = k.pressure.lock().map(|p| *p).unwrap_or_default();
    let t = now();
    let c = |ty: &str, status: &str, reason: &str, msg: &str| {
        json!({"type": ty, "status": status, "reason": reason, "message": msg,
               "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    let flag = |on: bool| if on { "True" } else { "False" };
    json!([
        if mem {
            c(
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            c(
                "MemoryPressure",
                flag(mem),
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk {
            c(
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            c(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pid {
            c(
                "PIDPressure",
                "True",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            c(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Creates this node's Node (if it does not exist) and waits until the control plane
/// gives it a pod CIDR (`spec.podCIDR`), which it returns.
pub async fn await_pod_cidr(client: &Client, node: &str) -> Result<String, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let obj: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux"}},
    }))
    .map_err(|e| AgentError::Other(e.to_string()))?;
    match nodes.create(&post_params(), &obj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n = nodes.get(node).await?;
        if let Some(c) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
            return Ok(c);
        }
        if std::time::Instant::now() > deadline {
            return Err(AgentError::Other(format!(
                "node {node} got no pod CIDR from the control plane within 2 minutes (is its controller manager running?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Register (or refresh) the Node.
pub async fn register_node(
    k: &Kubelet,
    client: &Client,
    cfg: &AgentConfig,
    root: &std::path::Path,
) -> Result<(), AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let obj = node_object(k, cfg, root);
    let node: Node =
        serde_json::from_value(obj.clone()).map_err(|e| AgentError::Other(e.to_string()))?;
    match nodes.create(&post_params(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            nodes
                .patch(
                    &cfg.node.node_name,
                    &patch_params(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": obj["metadata"]["annotations"]}}),
                    ),
                )
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    nodes
        .patch(
            &cfg.node.node_name,
            &patch_params(),
            &Patch::Merge(json!({"metadata": {"labels": obj["metadata"]["labels"]}})),
        )
        .await?;
    nodes
        .patch_status(
            &cfg.node.node_name,
            &patch_params(),
            &Patch::Merge(json!({"status": obj["status"]})),
        )
        .await?;
    Ok(())
}

/// Create or renew the node's Lease in kube-node-lease.
pub async fn renew_lease(client: &Client, cfg: &AgentConfig) -> Result<(), AgentError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let name = &cfg.node.node_name;
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": cfg.lease_duration.as_secs(),
        "renewTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    match leases.get_opt(name).await? {
        Some(_) => {
            leases
                .patch(name, &patch_params(), &Patch::Merge(json!({"spec": spec})))
                .await?;
        }
        None => {
            let l: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": spec,
            }))
            .map_err(|e| AgentError::Other(e.to_string()))?;
            leases.create(&post_params(), &l).await?;
        }
    }
    Ok(())
}

/// ConfigMaps and Secrets read from the API, and events recorded to it (from a
/// blocking thread).
struct ApiLookup {
    client: Client,
    handle: tokio::runtime::Handle,
    node: String,
}

fn api_lookup(client: &Client, cfg: &AgentConfig) -> ApiLookup {
    ApiLookup {
        client: client.clone(),
        handle: tokio::runtime::Handle::current(),
        node: cfg.node.node_name.clone(),
    }
}

/// Brings the configMap, secret, downwardAPI and projected volumes of every running
/// pod up to date with the API.
async fn refresh_volumes(
    k: &Arc<Kubelet>,
    client: &Client,
    cfg: &AgentConfig,
    running: &Arc<Mutex<BTreeMap<String, RunningPod>>>,
) {
    let snapshot = running.lock().await.clone();
    let pods = k.pods.lock().map(|m| m.clone()).unwrap_or_default();
    let lookup = api_lookup(client, cfg);
    let node_ip = cfg.node.node_ip.clone();
    let k = k.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for (uid, rp) in &snapshot {
            let Some(p) = pods.get(uid) else { continue };
            if p.metadata.deletion_timestamp.is_some() || k.stopping(uid) || !rp.dir.exists() {
                continue;
            }
            let rt = podspec::PodRuntimeInfo {
                pod_ip: rp
                    .ip
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| node_ip.clone()),
                host_ip: node_ip.clone(),
                ..Default::default()
            };
            if let Err(e) = pod::refresh_volumes(p, &rp.dir, &lookup, &rt) {
                tracing::debug!(pod = %uid, error = %e, "refreshing volumes");
            }
        }
    })
    .await;
}

/// Records an Event about a pod (and one of its containers) as the kubelet does.
pub async fn pod_event(
    client: &Client,
    node: &str,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    let field_path = container.map(|c| {
        let spec = pod.spec.as_ref();
        let init = spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|ics| ics.iter().any(|i| i.name == c));
        let ephemeral = spec
            .and_then(|s| s.ephemeral_containers.as_ref())
            .is_some_and(|ecs| ecs.iter().any(|i| i.name == c));
        if init {
            format!("spec.initContainers{{{c}}}")
        } else if ephemeral {
            format!("spec.ephemeralContainers{{{c}}}")
        } else {
            format!("spec.containers{{{c}}}")
        }
    });
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", now.timestamp_nanos_opt().unwrap_or_default()), "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": ns,
                           "uid": pod.metadata.uid, "fieldPath": field_path},
        "reason": reason, "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet", "reportingInstance": node,
        "firstTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "lastTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "count": 1,
    });
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Ok(e) = serde_json::from_value(ev) {
        if let Err(err) = api.create(&post_params(), &e).await {
            tracing::debug!(error = %err, "recording an event");
        }
    }
}

impl ObjectLookup for ApiLookup {
    fn init_progress(&self, pod: &Pod, statuses: Vec<serde_json::Value>) {
        // In order, before the next step of the pod's start.
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = initializing_status(pod, statuses);
        let _ = self.handle.block_on(async move {
            api.patch_status(
                &name,
                &patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        });
    }

    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        Some(cm.data.unwrap_or_default())
    }
    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        let mut out: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).to_string()))
            .collect();
        out.extend(s.string_data.unwrap_or_default());
        Some(out)
    }
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        // Recorded beside the pod's start, not in its way.
        let (client, node, pod) = (self.client.clone(), self.node.clone(), pod.clone());
        let (container, reason, message) = (
            container.map(String::from),
            reason.to_string(),
            message.to_string(),
        );
        self.handle.spawn(async move {
            pod_event(
                &client,
                &node,
                &pod,
                container.as_deref(),
                warning,
                &reason,
                &message,
            )
            .await
        });
    }
    fn service_account_token(
        &self,
        ns: &str,
        account: &str,
        pod: (&str, &str),
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Option<String> {
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), ns);
        let req: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(json!({
                "spec": {
                    "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                    "expirationSeconds": expiration_seconds,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.0, "uid": pod.1},
                }
            }))
            .ok()?;
        let out = self
            .handle
            .block_on(api.create_token_request(account, &post_params(), &req))
            .ok()?;
        out.status.map(|s| s.token)
    }
    fn persistent_volume(
        &self,
        ns: &str,
        claim: &str,
    ) -> Result<k8s_openapi::api::core::v1::PersistentVolume, String> {
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), ns);
        let c = self
            .handle
            .block_on(claims.get_opt(claim))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let name = c
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| bound && !v.is_empty())
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client.clone());
        self.handle
            .block_on(pvs.get_opt(&name))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolume \"{name}\" not found"))
    }
}

/// Removes the directories of this node's local volumes whose PersistentVolume is
/// gone (deleted by its reclaim policy). The directories are read before the volumes
/// are listed, so a volume made in between is never mistaken for a deleted one.
pub async fn remove_released_storage(client: &Client, dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let found: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    if found.is_empty() {
        return;
    }
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let Ok(list) = pvs.list(&ListParams::default()).await else {
        return;
    };
    for name in found {
        if !list
            .items
            .iter()
            .any(|v| v.metadata.name.as_deref() == Some(name.as_str()))
        {
            tracing::info!(volume = %name, "removing the directory of a deleted volume");
            let _ = std::fs::remove_dir_all(dir.join(&name));
        }
    }
}

/// The container statuses and phase of a running pod, from the runtime's state.
pub fn pod_status(
    k: &Kubelet,
    runtime: &dyn Runtime,
    pod: &Pod,
    running: &RunningPod,
) -> serde_json::Value {
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
                if s.state.is_active() {
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
fn initializing_status(pod: &Pod, init: Vec<serde_json::Value>) -> serde_json::Value {
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

/// A container's state as the pod status shows it.
fn container_state(s: &crate::cri::ContainerStatus, name: &str, pod: &Pod) -> serde_json::Value {
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
struct EphemeralFailure {
    reason: String,
    message: String,
    next: std::time::Instant,
}

/// The ephemeral containers of a running pod still to be started (not started yet,
/// not waiting out a failed start).
fn pending_ephemeral(k: &Kubelet, p: &Pod, rp: &RunningPod) -> Vec<String> {
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

/// What the node agent keeps between its passes, shared by its tasks.
#[derive(Default)]
pub struct Kubelet {
    /// The node's (MemoryPressure, DiskPressure, PIDPressure), from the last
    /// housekeeping.
    pressure: std::sync::Mutex<(bool, bool, bool)>,
    /// Ephemeral containers that could not be started, by (pod uid, name).
    ephemeral_failures: std::sync::Mutex<BTreeMap<(String, String), EphemeralFailure>>,
    /// Probe state per container id.
    prober: crate::prober::Prober,
    /// The latest probe verdict per container id.
    verdicts: std::sync::Mutex<BTreeMap<String, crate::prober::Verdict>>,
    /// The pod objects last seen for this node, by uid (for the prober).
    pods: std::sync::Mutex<BTreeMap<String, Pod>>,
    /// The hostPorts this node publishes.
    host_ports: crate::hostports::HostPorts,
    /// Pods this node evicted (phase Failed, reason Evicted): never started or
    /// reported again while their object exists.
    evicted: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Pods whose containers are being stopped right now (their API object is
    /// deleted only once that is done).
    stopping: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Pods that failed to start: why, and when to try again.
    start_failures: std::sync::Mutex<BTreeMap<String, StartFailure>>,
    /// The last status reported per pod, so unchanged statuses are not written again.
    reported: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
}

impl Kubelet {
    fn evicted(&self, uid: &str) -> bool {
        self.evicted
            .lock()
            .map(|s| s.contains(uid))
            .unwrap_or(false)
    }

    fn stopping(&self, uid: &str) -> bool {
        self.stopping
            .lock()
            .map(|s| s.contains(uid))
            .unwrap_or(false)
    }
}

/// Run the agent until `shutdown` resolves.
pub async fn run(
    client: Client,
    runtime: SharedRuntime,
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let k = Arc::new(Kubelet::default());
    let fs = runtime.image_fs_info();
    register_node(&k, &client, &cfg, &fs.container_filesystem).await?;
    tracing::info!(node = %cfg.node.node_name, "node registered");
    renew_lease(&client, &cfg).await?;
    // Pods a previous run started keep running: adopt them.
    let (e, n) = (runtime.clone(), cfg.node.clone());
    let adopted = tokio::task::spawn_blocking(move || pod::adopt(&*e, &n))
        .await
        .map_err(|e| AgentError::Other(e.to_string()))?;
    let running: Arc<Mutex<BTreeMap<String, RunningPod>>> = Arc::new(Mutex::new(adopted));
    let mut lease_tick = tokio::time::interval(cfg.lease_duration / 4);
    let mut probe_tick = tokio::time::interval(Duration::from_millis(250));
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping_tick = tokio::time::interval(cfg.housekeeping_period);
    housekeeping_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resync_tick = tokio::time::interval(cfg.volume_resync_period);
    resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync_tick = tokio::time::interval(cfg.sync_period);
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    // The pods bound to this node, as a watch keeps them (re-listed when the watch
    // expires, 410 Gone); every change wakes the loop.
    let (pod_store, writer) = kube::runtime::reflector::store::<Pod>();
    let pod_changed = Arc::new(tokio::sync::Notify::new());
    // Nothing is synced from the cache before its first list is in: an empty cache
    // would stop every adopted pod.
    let listed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        let api: Api<Pod> = Api::all(client.clone());
        let wc = kube::runtime::watcher::Config::default().fields(&node_pods_selector(&cfg));
        let (changed, listed) = (pod_changed.clone(), listed.clone());
        tokio::spawn(async move {
            let stream =
                kube::runtime::reflector(writer, kube::runtime::watcher(api, wc).default_backoff());
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        if matches!(ev, kube::runtime::watcher::Event::InitDone) {
                            listed.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        changed.notify_one()
                    }
                    Err(e) => tracing::debug!(error = %e, "watching this node's pods"),
                }
            }
        })
    };
    let cached = || {
        listed
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| pod_store.state().iter().map(|p| (**p).clone()).collect())
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                watch.abort();
                // Pods keep running across restarts of the agent; with none left, the
                // node's pod cgroups go too.
                crate::pod::remove_pods_cgroup(&cfg.node.pods_cgroup);
                return Ok(());
            }
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&client, &cfg).await {
                    tracing::warn!(error = %e, "renewing the node lease");
                }
                let nodes: Api<Node> = Api::all(client.clone());
                let _ = nodes.patch_status(&cfg.node.node_name, &patch_params(),
                    &Patch::Merge(json!({"status": {"conditions": conditions(&k)}}))).await;
            }
            _ = probe_tick.tick() => {
                let snapshot = running.lock().await.clone();
                let e = runtime.clone();
                let events = tokio::task::spawn_blocking({
                    let k = k.clone();
                    move || probe_pass(&k, &*e, &snapshot)
                })
                    .await
                    .unwrap_or_default();
                let pods = k.pods.lock().map(|m| m.clone()).unwrap_or_default();
                for ev in events {
                    if let Some(p) = pods.get(&ev.uid) {
                        pod_event(&client, &cfg.node.node_name, p, Some(&ev.container), ev.warning, ev.reason, &ev.message).await;
                    }
                }
            }
            _ = housekeeping_tick.tick() => {
                remove_released_storage(&client, &cfg.node.storage_dir).await;
                let readings = crate::pressure::read(&fs.container_filesystem, &fs.image_filesystem);
                let now = crate::pressure::pressure(&readings, &cfg.eviction_hard);
                let changed = k.pressure.lock().map(|mut p| std::mem::replace(&mut *p, now) != now).unwrap_or(false);
                if changed {
                    let nodes: Api<Node> = Api::all(client.clone());
                    let _ = nodes.patch_status(&cfg.node.node_name, &patch_params(),
                        &Patch::Merge(json!({"status": {"conditions": conditions(&k)}}))).await;
                }
                let e = runtime.clone();
                let gc = cfg.image_gc;
                if let Ok(removed) = tokio::task::spawn_blocking(move || crate::imagegc::collect(&*e, gc)).await {
                    for id in removed {
                        tracing::info!(image = %id, "image garbage collection removed an unused image");
                    }
                }
                let signal = match now {
                    (true, _, _) => Some(crate::eviction::Signal::Memory),
                    (_, true, _) => Some(crate::eviction::Signal::Disk),
                    (_, _, true) => Some(crate::eviction::Signal::Pids),
                    _ => None,
                };
                if let Some(signal) = signal {
                    evict_one(&k, &client, &runtime, &cfg, &running, signal).await;
                }
            }
            _ = resync_tick.tick() => {
                refresh_volumes(&k, &client, &cfg, &running).await;
                // The safety net under the watch: a pass over the pods as the API
                // lists them now.
                if let Err(e) = sync_pods(&k, &client, &runtime, &cfg, &running, None).await {
                    tracing::warn!(error = %e, "syncing pods");
                }
            }
            // A pod bound here, changed or deleted starts a pass at once; the tick
            // catches up with the containers' own changes (exits, restarts) as the
            // kubelet's relist does.
            _ = pod_changed.notified() => {
                if let Some(pods) = cached() {
                    if let Err(e) = sync_pods(&k, &client, &runtime, &cfg, &running, Some(pods)).await {
                        tracing::warn!(error = %e, "syncing pods");
                    }
                }
            }
            _ = sync_tick.tick() => {
                if let Some(pods) = cached() {
                    if let Err(e) = sync_pods(&k, &client, &runtime, &cfg, &running, Some(pods)).await {
                        tracing::warn!(error = %e, "syncing pods");
                    }
                }
            }
        }
    }
}

/// An event a probe pass wants recorded.
pub struct ProbeEvent {
    pub uid: String,
    pub container: String,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Run due probes of every running container; restart those whose liveness or
/// startup probe failed (the monitor brings them back by the restart policy).
/// Returns the Unhealthy and Killing events to record.
pub fn probe_pass(
    k: &Kubelet,
    runtime: &dyn Runtime,
    running: &BTreeMap<String, RunningPod>,
) -> Vec<ProbeEvent> {
    let mut events = Vec::new();
    let pods = k.pods.lock().map(|m| m.clone()).unwrap_or_default();
    for (uid, rp) in running {
        let Some(pod) = pods.get(uid) else { continue };
        let Some(spec) = &pod.spec else { continue };
        for c in &spec.containers {
            let Some(id) = rp.containers.get(&c.name) else {
                continue;
            };
            if c.liveness_probe.is_none()
                && c.readiness_probe.is_none()
                && c.startup_probe.is_none()
            {
                continue;
            }
            let Ok(ct) = runtime.container_status(id) else {
                continue;
            };
            if ct.state != ContainerState::Running {
                k.prober.forget(id);
                if let Ok(mut v) = k.verdicts.lock() {
                    v.remove(id);
                }
                continue;
            }
            let since = ct
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let target = crate::prober::Target {
                runtime,
                container_id: id,
                pod_ip: rp.ip.map(std::net::IpAddr::V4),
                started_at: std::time::Instant::now()
                    .checked_sub(since)
                    .unwrap_or_else(std::time::Instant::now),
            };
            let verdict = k.prober.check(c, &target);
            for f in &verdict.failures {
                events.push(ProbeEvent {
                    uid: uid.clone(),
                    container: c.name.clone(),
                    warning: true,
                    reason: "Unhealthy",
                    message: f.clone(),
                });
            }
            if let Some(why) = &verdict.restart {
                tracing::info!(pod = %uid, container = %c.name, "{why}");
                events.push(ProbeEvent {
                    uid: uid.clone(),
                    container: c.name.clone(),
                    warning: false,
                    reason: "Killing",
                    message: why.clone(),
                });
                // Not StopContainer: that is a user's stop and disables the restart
                // policy; this restart is the policy's to carry out.
                if ct.pid > 0 {
                    unsafe { libc::kill(ct.pid, libc::SIGKILL) };
                }
                k.prober.forget(id);
            }
            if let Ok(mut v) = k.verdicts.lock() {
                let was = v.get(id).map(|old| (old.ready, old.started));
                if was.is_some_and(|w| w != (verdict.ready, verdict.started)) {
                    tracing::info!(pod = %uid, container = %c.name, ready = verdict.ready,
                        started = verdict.started, "probe result changed");
                }
                v.insert(id.clone(), verdict);
            }
        }
    }
    events
}

/// Publishes a running pod's hostPorts unless they already are (also for pods a
/// previous run of the agent started); failures become Warning events.
async fn publish_host_ports(
    k: &Kubelet,
    client: &Client,
    cfg: &AgentConfig,
    p: &Pod,
    rp: &RunningPod,
) {
    if k.host_ports.is_open(&rp.uid) {
        return;
    }
    let ports = crate::hostports::mappings(p);
    let Some(ip) = rp.ip else { return };
    if ports.is_empty() {
        return;
    }
    for why in k.host_ports.open(&rp.uid, ip, &ports).await {
        pod_event(
            client,
            &cfg.node.node_name,
            p,
            None,
            true,
            "FailedHostPort",
            &why,
        )
        .await;
    }
}

/// What a running pod uses, from its containers' stats (working set, writable layers,
/// processes) and its logs and local volumes; None when a container's stats cannot be
/// read.
fn pod_usage(rt: &dyn Runtime, rp: &RunningPod) -> Option<crate::eviction::Usage> {
    let mut u = crate::eviction::Usage {
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

/// Under pressure, evicts one pod as the kubelet ranks them (see [`crate::eviction`]):
/// usage of the starved resource above requests, priority, usage above requests;
/// system-critical pods (priority ≥ 2,000,000,000) are left alone.
async fn evict_one(
    k: &Kubelet,
    client: &Client,
    runtime: &SharedRuntime,
    cfg: &AgentConfig,
    running: &Arc<Mutex<BTreeMap<String, RunningPod>>>,
    signal: crate::eviction::Signal,
) {
    let pods = k.pods.lock().map(|m| m.clone()).unwrap_or_default();
    let mut map = running.lock().await;
    let eligible: Vec<(String, Pod, RunningPod)> = map
        .iter()
        .filter_map(|(uid, rp)| pods.get(uid).map(|p| (uid.clone(), p.clone(), rp.clone())))
        .filter(|(_, p, _)| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < 2_000_000_000)
        .collect();
    let rt = runtime.clone();
    let ranked = tokio::task::spawn_blocking(move || {
        let mut candidates: Vec<crate::eviction::Candidate> = eligible
            .iter()
            .map(|(uid, p, rp)| crate::eviction::Candidate::new(uid, p, pod_usage(&*rt, rp)))
            .collect();
        crate::eviction::rank(&mut candidates, signal);
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
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let _ = api
        .patch_status(
            &name,
            &patch_params(),
            &Patch::Merge(
                json!({"status": {"phase": "Failed", "reason": "Evicted", "message": message}}),
            ),
        )
        .await;
    pod_event(
        client,
        &cfg.node.node_name,
        &pod,
        None,
        true,
        "Evicted",
        &message,
    )
    .await;
    let e = runtime.clone();
    let _ = tokio::task::spawn_blocking(move || {
        pod::stop_pod(&*e, &rp, Duration::from_secs(0), Some(&pod))
    })
    .await;
}

/// The field selector of the pods bound to this node.
fn node_pods_selector(cfg: &AgentConfig) -> String {
    format!("spec.nodeName={}", cfg.node.node_name)
}

/// One level-triggered pass over the pods bound to this node: `pods` (the watch's
/// cache), or, with None, the pods listed from the API right now.
pub async fn sync_pods(
    k: &Arc<Kubelet>,
    client: &Client,
    runtime: &SharedRuntime,
    cfg: &AgentConfig,
    running: &Arc<Mutex<BTreeMap<String, RunningPod>>>,
    pods: Option<Vec<Pod>>,
) -> Result<(), AgentError> {
    let items = match pods {
        Some(p) => p,
        None => {
            let api: Api<Pod> = Api::all(client.clone());
            let lp = ListParams::default().fields(&node_pods_selector(cfg));
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
    let mut map = running.lock().await;
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
        let (e, client) = (runtime.clone(), client.clone());
        let pod = pod.cloned();
        if let Ok(mut s) = k.stopping.lock() {
            s.insert(uid.clone());
        }
        let node_name = cfg.node.node_name.clone();
        let k = k.clone();
        tokio::spawn(async move {
            if let Some(p) = &pod {
                for c in rp.containers.keys() {
                    pod_event(
                        &client,
                        &node_name,
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
            if backing_off(k, client, cfg, &api, p, uid).await {
                continue;
            }
            to_start.push(p.clone());
            continue;
        }
        if let Some(rp) = map.get(uid) {
            publish_host_ports(k, client, cfg, p, rp).await;
            let debug = pending_ephemeral(k, p, rp);
            if debug.is_empty() {
                report_status(k, client, &**runtime, cfg, &api, p, rp).await;
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
        let (e, n, lookup, pod) = (
            runtime.clone(),
            cfg.node.clone(),
            api_lookup(client, cfg),
            p.clone(),
        );
        let r = tokio::task::spawn_blocking(move || {
            let mut failures = Vec::new();
            for name in names {
                if let Err(err) = pod::start_ephemeral(&*e, &n, &pod, &name, &lookup, &mut rp) {
                    failures.push((name, err));
                }
            }
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
                        next: std::time::Instant::now() + START_BACKOFF,
                    },
                );
            }
        }
        let api: Api<Pod> = Api::namespaced(
            client.clone(),
            &p.metadata.namespace.clone().unwrap_or_default(),
        );
        report_status(k, client, &**runtime, cfg, &api, &p, &rp).await;
        map.insert(uid, rp);
    }
    // New pods start side by side (each is mostly waiting on the kernel).
    let starts = to_start.into_iter().map(|p| {
        let (e, n) = (runtime.clone(), cfg.node.clone());
        let lookup = api_lookup(client, cfg);
        let pod = p.clone();
        async move {
            let r =
                tokio::task::spawn_blocking(move || pod::start_pod(&*e, &n, &pod, &lookup)).await;
            (p, r)
        }
    });
    for (p, r) in futures::future::join_all(starts).await {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match r.map_err(|e| AgentError::Other(e.to_string()))? {
            Ok(rp) => {
                tracing::info!(pod = %format!("{ns}/{name}"), %uid, "pod started");
                if let Ok(mut m) = k.start_failures.lock() {
                    m.remove(&uid);
                }
                publish_host_ports(k, client, cfg, &p, &rp).await;
                report_status(k, client, &**runtime, cfg, &api, &p, &rp).await;
                map.insert(uid, rp);
            }
            Err(pod::PodError::VolumeNotReady(why)) => {
                let first = k
                    .start_failures
                    .lock()
                    .map(|mut m| {
                        let f = m.entry(uid.clone()).or_insert_with(|| StartFailure {
                            count: 0,
                            next: std::time::Instant::now(),
                            reason: String::new(),
                            message: String::new(),
                            backing_off: false,
                        });
                        f.next = std::time::Instant::now() + VOLUME_RETRY;
                        let first = f.reason != "FailedMount" || f.message != why;
                        f.reason = "FailedMount".into();
                        f.message = why.clone();
                        first
                    })
                    .unwrap_or(false);
                if first {
                    pod_event(
                        client,
                        &cfg.node.node_name,
                        &p,
                        None,
                        true,
                        "FailedMount",
                        &why,
                    )
                    .await;
                    patch_waiting(&api, &name, &p, "ContainerCreating", "", &cfg.node.node_ip)
                        .await;
                }
            }
            Err(err) => {
                let reason = start_failure_reason(&err);
                let count = k
                    .start_failures
                    .lock()
                    .map(|mut m| {
                        let f = m.entry(uid.clone()).or_insert_with(|| StartFailure {
                            count: 0,
                            next: std::time::Instant::now(),
                            reason: String::new(),
                            message: String::new(),
                            backing_off: false,
                        });
                        f.count += 1;
                        let delay = (START_BACKOFF * 2u32.saturating_pow(f.count - 1))
                            .min(START_BACKOFF_MAX);
                        f.next = std::time::Instant::now() + delay;
                        f.reason = reason.to_string();
                        f.message = err.to_string();
                        f.backing_off = false;
                        f.count
                    })
                    .unwrap_or(1);
                tracing::debug!(pod = %name, attempt = count, error = %err, "starting the pod failed");
                if let pod::PodError::InitFailed { .. } = &err {
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
                patch_waiting(&api, &name, &p, reason, &err.to_string(), &cfg.node.node_ip).await;
            }
        }
    }
    Ok(())
}

/// The waiting reason the kubelet shows for a container that could not be started.
fn start_failure_reason(err: &pod::PodError) -> &'static str {
    match err {
        pod::PodError::Spec(podspec::SpecError::ConfigMissing(_)) => "CreateContainerConfigError",
        pod::PodError::ImageNeverPull(_) => "ErrImageNeverPull",
        pod::PodError::ImagePull(_) => "ErrImagePull",
        _ => "CreateContainerError",
    }
}

/// Why a pod could not be started, and when to try again (the kubelet's back-off:
/// 10 s doubling up to 5 minutes).
struct StartFailure {
    count: u32,
    next: std::time::Instant,
    reason: String,
    message: String,
    /// The waiting reason already shows the back-off (ImagePullBackOff).
    backing_off: bool,
}

const START_BACKOFF: Duration = Duration::from_secs(10);
/// How soon a pod whose volumes were not ready is tried again.
const VOLUME_RETRY: Duration = Duration::from_secs(1);
const START_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Whether a pod waits out its start back-off; the first time an image pull is
/// being backed off, its status says ImagePullBackOff and a BackOff event is recorded.
async fn backing_off(
    k: &Kubelet,
    client: &Client,
    cfg: &AgentConfig,
    api: &Api<Pod>,
    p: &Pod,
    uid: &str,
) -> bool {
    let (wait, announce) = match k.start_failures.lock() {
        Ok(mut m) => match m.get_mut(uid) {
            Some(f) if std::time::Instant::now() < f.next => {
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
            &cfg.node.node_ip,
        )
        .await;
        for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
            let img = c.image.clone().unwrap_or_default();
            pod_event(
                client,
                &cfg.node.node_name,
                p,
                Some(&c.name),
                false,
                "BackOff",
                &format!("Back-off pulling image \"{img}\""),
            )
            .await;
        }
    }
    wait
}

/// Reports every container of a pod that could not start as waiting for `reason`.
async fn patch_waiting(
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

async fn report_status(
    k: &Kubelet,
    client: &Client,
    runtime: &dyn Runtime,
    cfg: &AgentConfig,
    api: &Api<Pod>,
    p: &Pod,
    rp: &RunningPod,
) {
    let mut status = pod_status(k, runtime, p, rp);
    status["hostIP"] = json!(cfg.node.node_ip);
    status["hostIPs"] = json!([{"ip": cfg.node.node_ip}]);
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
    let before = k
        .reported
        .lock()
        .ok()
        .and_then(|m| m.get(&rp.uid).map(crashing))
        .unwrap_or_default();
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    for c in crashing(&key).into_iter().filter(|c| !before.contains(c)) {
        let msg = format!(
            "Back-off restarting failed container {c} in pod {name}_{ns}({})",
            rp.uid
        );
        pod_event(
            client,
            &cfg.node.node_name,
            p,
            Some(&c),
            true,
            "BackOff",
            &msg,
        )
        .await;
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
