//! This node's Node object: registration, conditions (pressure) and Lease, the pod
//! CIDR the controllers give it, and the directories of its released local volumes.

use super::{patch_params, post_params, AgentError, Kubelet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::api::{Api, ListParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_meta::time::now;
use std::path::Path;
use std::time::Duration;

pub(super) fn meminfo_total() -> u64 {
    skiff_runtime::sys::meminfo("MemTotal:").unwrap_or(0)
}

pub(super) fn disk_total(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

/// The node annotation naming the directory of this node's local volumes (read by
/// the local-path provisioner).
pub const STORAGE_DIR_ANNOTATION: &str = "skiff.io/local-path-dir";

/// The label of a hollow node's Node (`skiff agent --hollow`): its pods run nowhere
/// and their addresses are never routed.
pub const HOLLOW_LABEL: &str = "node.skiff.io/hollow";

/// The Node object this agent registers.
pub fn node_object(k: &Kubelet, root: &Path) -> serde_json::Value {
    let cfg = &k.cfg;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = meminfo_total();
    let disk = disk_total(root);
    let kernel = skiff_runtime::sys::kernel_release();
    let os_image = skiff_runtime::sys::os_pretty_name();
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
    if k.runtime.simulated() {
        labels[HOLLOW_LABEL] = json!("true");
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
            "images": images(&*k.runtime),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        }
    })
}

/// The kubelet's `status.images`: the largest 50 images (`--node-status-max-images`),
/// each with up to 5 names, repo digests first, and its size.
pub(super) fn images(rt: &dyn crate::cri::Runtime) -> serde_json::Value {
    let mut list = rt.list_images().unwrap_or_default();
    list.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.id.cmp(&b.id)));
    let out: Vec<serde_json::Value> = list
        .into_iter()
        .take(50)
        .map(|i| {
            let names: Vec<String> = i
                .repo_digests
                .into_iter()
                .chain(i.repo_tags)
                .take(5)
                .collect();
            json!({"names": names, "sizeBytes": i.size})
        })
        .collect();
    json!(out)
}

pub(super) fn conditions(k: &Kubelet) -> serde_json::Value {
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
    }))?;
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
            return Err(AgentError::NoPodCidr(node.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Register (or refresh) the Node.
pub async fn register_node(k: &Kubelet, root: &Path) -> Result<(), AgentError> {
    let cfg = &k.cfg;
    let nodes: Api<Node> = Api::all(k.client.clone());
    let obj = node_object(k, root);
    let node: Node = serde_json::from_value(obj.clone())?;
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

/// Create or renew the node's Lease in kube-node-lease: one write a renewal (the
/// Lease is made when the patch finds none).
pub async fn renew_lease(k: &Kubelet) -> Result<(), AgentError> {
    let cfg = &k.cfg;
    let leases: Api<Lease> = Api::namespaced(k.client.clone(), "kube-node-lease");
    let name = &cfg.node.node_name;
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": cfg.lease_duration.as_secs(),
        "renewTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    match leases
        .patch(name, &patch_params(), &Patch::Merge(json!({"spec": spec})))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let l: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": spec,
            }))?;
            match leases.create(&post_params(), &l).await {
                Ok(_) => Ok(()),
                // Made in between: the next renewal patches it.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// How often the node's status is written when nothing in it changed (the kubelet's
/// nodeStatusReportFrequency): between, the Lease alone says the node is alive.
pub const STATUS_REPORT_EVERY: Duration = Duration::from_secs(300);

/// The node's conditions and images as they are now, written to its Node when they
/// differ from what the Node says (read from the API server's cache, as the kubelet
/// reads it) or when [`STATUS_REPORT_EVERY`] has passed since `last`. A condition
/// whose status did not change keeps its lastTransitionTime.
pub(super) async fn report_status(
    k: &Kubelet,
    images: serde_json::Value,
    last: &mut Option<std::time::Instant>,
) {
    let nodes: Api<Node> = Api::all(k.client.clone());
    let name = &k.cfg.node.node_name;
    let current = nodes
        .get_with(name, &kube::api::GetParams::any())
        .await
        .ok()
        .and_then(|n| serde_json::to_value(n.status).ok())
        .unwrap_or_default();
    let mut conds = conditions(k);
    let old = current["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let key = |c: &serde_json::Value| {
        ["type", "status", "reason", "message"].map(|f| c[f].as_str().unwrap_or("").to_string())
    };
    let mut same = old.len() == conds.as_array().map_or(0, |c| c.len());
    for c in conds.as_array_mut().into_iter().flatten() {
        let prev = old.iter().find(|o| o["type"] == c["type"]);
        match prev {
            Some(o) if o["status"] == c["status"] => {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                same &= key(o) == key(c);
            }
            _ => same = false,
        }
    }
    // A Node with no images serializes them as null.
    let empty = |v: &serde_json::Value| v.is_null() || v.as_array().is_some_and(|a| a.is_empty());
    let same_images = current["images"] == images || (empty(&current["images"]) && empty(&images));
    let same = same && same_images;
    if same && last.is_some_and(|t| t.elapsed() < STATUS_REPORT_EVERY) {
        return;
    }
    match nodes
        .patch_status(
            name,
            &patch_params(),
            &Patch::Merge(json!({"status": {"conditions": conds, "images": images}})),
        )
        .await
    {
        Ok(_) => *last = Some(std::time::Instant::now()),
        Err(e) => tracing::warn!(error = %e, "reporting the node's status"),
    }
}

/// Removes the directories of this node's local volumes whose PersistentVolume is
/// gone (deleted by its reclaim policy). The directories are read before the volumes
/// are listed, so a volume made in between is never mistaken for a deleted one.
pub async fn remove_released_storage(client: &Client, dir: &Path) {
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
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
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
