//! The pod worker: runs one Pod on this node (its volumes, its sandbox with the
//! infra process, pod IP on the node bridge and managed /etc files, its init
//! containers in order, then its app containers, all in a pod-level cgroup), starts
//! its ephemeral containers, refreshes its volumes, and tears it all down again.
//! The sync loop (`kubelet::sync`) drives it and hands down a [`Context`]: the
//! runtime, the node's settings, the object lookup, the Events recorder and where
//! init containers' progress goes. From here a pod goes only further down: its spec
//! to [`crate::podspec`], its containers to the runtime interface ([`crate::cri`]).

use crate::cri::{
    ContainerFilter, ContainerState, Mount, PodSandbox, PodSandboxConfig, PodSandboxState, Runtime,
    RuntimeError, RuntimeService,
};
use crate::dnsconfig;
use crate::events::PodEvents;
use crate::lookup::{LookupError, ObjectLookup};
use crate::podspec::{self, ContainerKind, Placement, PodRuntimeInfo, SpecError};
use crate::volumes::{self, FileProjection, HostPathError, MissingKey};
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a pod (or one of its containers) could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("init container {name} failed with exit code {code}")]
    InitFailed { name: String, code: i32 },
    /// The image is missing (policy Never) or could not be pulled.
    #[error(transparent)]
    Image(#[from] crate::pull::PullError),
    /// A volume cannot be set up yet (a claim that is not bound): retried shortly,
    /// without the start back-off.
    #[error("Unable to attach or mount volumes: unmounted volumes=[{volume}]: {error}")]
    VolumeNotReady { volume: String, error: LookupError },
    /// The pod's directory could not be made.
    #[error("pod dir: {0}")]
    PodDir(std::io::Error),
    /// What runs of the pod could not be recorded in its directory.
    #[error("recording the pod: {0}")]
    Record(std::io::Error),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    /// A file of the pod's (its managed /etc files, a subPath, its volumes' removal).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Volume `volume`'s files could not be written.
    #[error("volume {volume}: {error}")]
    VolumeFiles {
        volume: String,
        error: std::io::Error,
    },
    #[error("volume {volume} of mount {mount_path} is not defined")]
    UndefinedVolume { volume: String, mount_path: String },
    #[error("invalid subPath {0}")]
    InvalidSubPath(String),
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    /// The node's resolver file could not be read.
    #[error(transparent)]
    ResolvConf(#[from] dnsconfig::ResolvConfError),
    #[error(transparent)]
    MissingKey(#[from] MissingKey),
    /// The ConfigMap or Secret (`kind` in lower case) a volume shows is missing.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {kind} \"{name}\" not found")]
    VolumeSourceNotFound {
        volume: String,
        kind: &'static str,
        name: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : failed to fetch token for service account \"{account}\"")]
    NoToken { volume: String, account: String },
    #[error("volume {volume}: persistent volume {pv} is neither hostPath nor local")]
    UnsupportedPersistentVolume { volume: String, pv: String },
    /// An item of a downwardAPI volume that is not a fieldRef.
    #[error("downwardAPI volume {0}: only fieldRef items are supported yet")]
    UnsupportedDownwardApiItem(String),
    /// A downwardAPI item of a projected volume that is not a fieldRef.
    #[error("projected volume {0}: only fieldRef downwardAPI items are supported yet")]
    UnsupportedProjectedItem(String),
    #[error("volume {0}: this volume type is not supported by the node agent yet")]
    UnsupportedVolume(String),
    #[error("no ephemeral container {0}")]
    NoEphemeralContainer(String),
    #[error("ephemeral container {name}: {error}")]
    EphemeralContainer {
        name: String,
        error: serde_json::Error,
    },
    #[error("target container {target} of ephemeral container {name} is not running")]
    TargetNotRunning { target: String, name: String },
}

/// Why a lifecycle hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// An httpGet hook's port is neither a number nor a named port of the container.
    #[error("unknown port {0}")]
    UnknownPort(String),
    #[error("invalid host {0}")]
    InvalidHost(String),
    #[error("the hook has no handler (exec, httpGet or sleep)")]
    NoHandler,
    /// The hook ran and failed: why.
    #[error("{0}")]
    Failed(String),
}

/// What the pod worker needs from the agent around it, handed down by the sync loop
/// with each pod it starts.
pub struct Context<'a> {
    /// The runtime the pod's sandbox and containers run on.
    pub runtime: &'a dyn Runtime,
    pub node: &'a NodeSettings,
    /// The objects the pod refers to.
    pub lookup: &'a dyn ObjectLookup,
    /// Where the pod's Events go.
    pub events: &'a dyn PodEvents,
    /// Pulls images, shared by the node's pods.
    pub puller: &'a crate::pull::ImagePuller,
    /// Told the statuses of the pod's init containers (`initContainerStatuses` as the
    /// API shows them) as each starts and ends, before the start goes on.
    pub init_progress: &'a dyn Fn(&Pod, Vec<serde_json::Value>),
}

/// The node-level settings pods are run with.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// This node's address (status.hostIP).
    pub node_ip: String,
    pub node_name: String,
    /// The cluster's DNS domain (`--cluster-domain`), for pods' search domains and
    /// /etc/hosts.
    pub cluster_domain: String,
    /// The cluster DNS addresses pods are given (`--cluster-dns`; empty: none).
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The node's resolver file (`--resolv-conf`; None when set empty), read at each
    /// pod start as the kubelet does.
    pub resolv_conf: Option<PathBuf>,
    /// Where pod directories live (`<dir>/<pod uid>/volumes/...`).
    pub pods_dir: PathBuf,
    /// Where local persistent volumes live (`<dir>/<pv name>`).
    pub storage_dir: PathBuf,
    /// Container logs are rotated at this size (containerLogMaxSize, 10Mi; 0: never)…
    pub container_log_max_size: u64,
    /// …keeping this many files (containerLogMaxFiles, 5).
    pub container_log_max_files: u32,
    /// The cgroup every pod's cgroup is made in (`<--cgroup-root>/kubepods`; see
    /// [`pods_cgroup`]): pod `<uid>` is `<pods_cgroup>/pod<uid>`, its containers
    /// beneath that.
    pub pods_cgroup: String,
    /// How containers restart: the first delay, doubling up to the longest
    /// (Kubernetes: 10 s to 300 s).
    pub restarts: (Duration, Duration),
}

/// Kubernetes' container restart back-off: 10 s, doubling, at most 5 minutes.
pub const DEFAULT_RESTARTS: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(300));

/// The kubelet's default `--cgroup-root` for a node agent: one per node name, so
/// several agents on one host (each its own node) never share a pod cgroup parent
/// nor count each other's pods.
pub fn default_cgroup_root(node_name: &str) -> String {
    format!("skiff-{node_name}")
}

/// The parent of pod cgroups under a `--cgroup-root`, as the kubelet lays them out
/// (`<root>/kubepods/pod<uid>`).
pub fn pods_cgroup(cgroup_root: &str) -> String {
    let root = cgroup_root.trim_end_matches('/');
    if root.is_empty() {
        "/kubepods".into()
    } else {
        format!("{root}/kubepods")
    }
}

/// A pod started on this node (kept as `running.json` in the pod's directory, so a
/// restarted agent re-adopts it instead of starting it again).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunningPod {
    pub uid: String,
    pub sandbox: PodSandbox,
    pub ip: Option<std::net::Ipv4Addr>,
    /// App container name → engine container id.
    pub containers: BTreeMap<String, String>,
    pub dir: PathBuf,
    /// The cgroup the pod's containers are children of (`<pods_cgroup>/pod<uid>`).
    #[serde(default)]
    pub cgroup: String,
    /// Ephemeral container name → engine container id (`kubectl debug`); they run
    /// once and are never restarted.
    #[serde(default)]
    pub ephemeral: BTreeMap<String, String>,
    /// Init container name → engine container id (kept, exited, for their status
    /// and logs).
    #[serde(default)]
    pub init: BTreeMap<String, String>,
}

impl RunningPod {
    /// The pod's cgroup (pods recorded before it was kept ran under `kubepods`).
    pub fn cgroup(&self) -> String {
        if self.cgroup.is_empty() {
            format!("kubepods/pod{}", self.uid)
        } else {
            self.cgroup.clone()
        }
    }
}

fn pod_uid(pod: &Pod) -> Result<String, PodError> {
    pod.metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or(PodError::Spec(SpecError::NoUid))
}

/// An id in the engine's form (64 hex chars) derived from the pod uid.
fn sandbox_id(uid: &str) -> String {
    let hex: String = uid.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    format!("{:0<64}", hex.to_ascii_lowercase())
        .chars()
        .take(64)
        .collect()
}

/// Start `pod`: volumes, sandbox, init containers (each to success, in order), app
/// containers. Anything that fails midway is torn down again.
pub fn start_pod(cx: &Context, pod: &Pod) -> Result<RunningPod, PodError> {
    let (rt, node) = (cx.runtime, cx.node);
    let uid = pod_uid(pod)?;
    let spec = pod.spec.as_ref().ok_or(PodError::Spec(SpecError::NoSpec))?;
    // Claims must be bound before anything is set up.
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.persistent_volume_claim {
            if rt.simulated() {
                bound_volume(v, c, &namespace_of(pod), cx.lookup)?;
            } else {
                claim_path(v, c, &namespace_of(pod), cx.lookup)?;
            }
        }
    }
    let dir = node.pods_dir.join(&uid);
    std::fs::create_dir_all(&dir).map_err(PodError::PodDir)?;
    let hostname = podspec::pod_hostname(pod);
    let sandbox = rt.run_pod_sandbox(&PodSandboxConfig {
        id: sandbox_id(&uid),
        hostname,
        host_network: spec.host_network.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        share_pid: spec.share_process_namespace.unwrap_or(false),
        cgroup_parent: format!("{}/pod{uid}", node.pods_cgroup),
    })?;
    let ip = sandbox.ip;
    let mut running = RunningPod {
        uid: uid.clone(),
        sandbox,
        ip,
        containers: BTreeMap::new(),
        dir: dir.clone(),
        cgroup: format!("{}/pod{uid}", node.pods_cgroup),
        ephemeral: BTreeMap::new(),
        init: BTreeMap::new(),
    };
    match start_containers(cx, pod, &mut running) {
        Ok(()) => {
            record(&running)?;
            Ok(running)
        }
        Err(e) => {
            let _ = stop_pod(rt, &running, Duration::from_secs(0), None);
            Err(e)
        }
    }
}

/// Keeps what runs of the pod in its directory (`running.json`), for a restarted agent.
fn record(running: &RunningPod) -> Result<(), PodError> {
    let json = serde_json::to_vec(running)?;
    std::fs::write(running.dir.join("running.json"), json).map_err(PodError::Record)
}

fn runtime_info(node: &NodeSettings, running: &RunningPod) -> PodRuntimeInfo {
    PodRuntimeInfo {
        pod_ip: running
            .ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| node.node_ip.clone()),
        host_ip: node.node_ip.clone(),
        ..Default::default()
    }
}

/// Starts ephemeral container `name` of a running pod (`kubectl debug`): in the
/// pod's sandbox, with the PID namespace of its `targetContainerName` when it has
/// one, never restarted.
pub fn start_ephemeral(
    cx: &Context,
    pod: &Pod,
    name: &str,
    running: &mut RunningPod,
) -> Result<(), PodError> {
    let rt = cx.runtime;
    let ec = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .ok_or_else(|| PodError::NoEphemeralContainer(name.to_string()))?;
    // The same fields as a container, less what validation forbids.
    let c: Container = serde_json::to_value(ec)
        .and_then(serde_json::from_value)
        .map_err(|error| PodError::EphemeralContainer {
            name: name.to_string(),
            error,
        })?;
    let target =
        match ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            Some(t) => Some(running.containers.get(t).cloned().ok_or_else(|| {
                PodError::TargetNotRunning {
                    target: t.to_string(),
                    name: name.to_string(),
                }
            })?),
            None => None,
        };
    let info = runtime_info(cx.node, running);
    let vols = prepare_volumes(pod, &running.dir, cx.lookup, &info, cx.runtime.simulated())?;
    let id = create_container(
        cx,
        pod,
        &c,
        &info,
        &vols,
        running,
        ContainerKind::Ephemeral,
        target,
    )?;
    created_event(cx.events, pod, name);
    running.ephemeral.insert(name.to_string(), id.clone());
    record(running)?;
    match rt.start_container(&id) {
        Ok(()) => {
            started_event(cx.events, pod, name);
            Ok(())
        }
        Err(RuntimeError::StartFailed { message, .. }) => {
            cx.events.event(
                pod,
                Some(name),
                true,
                "Failed",
                &format!("Error: failed to start container \"{name}\": {message}"),
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn start_containers(cx: &Context, pod: &Pod, running: &mut RunningPod) -> Result<(), PodError> {
    let (rt, node) = (cx.runtime, cx.node);
    let spec = pod.spec.as_ref().ok_or(PodError::Spec(SpecError::NoSpec))?;
    let info = runtime_info(node, running);
    let vols = prepare_volumes(pod, &running.dir, cx.lookup, &info, cx.runtime.simulated())?;
    // Managed files: /etc/hosts (kubelet's format with hostAliases), hostname.
    let etc = running.dir.join("etc");
    std::fs::create_dir_all(&etc)?;
    let hosts = podspec::hosts_file(pod, &info.pod_ip, &node.cluster_domain);
    std::fs::write(etc.join("hosts"), hosts)?;
    let hostname = podspec::pod_hostname(pod);
    std::fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
    std::fs::write(etc.join("resolv.conf"), resolv_conf(cx, pod)?)?;

    let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
    // What each init container is doing, reported as it changes.
    let mut states: Vec<serde_json::Value> = inits
        .iter()
        .map(|_| serde_json::json!({"waiting": {"reason": "PodInitializing"}}))
        .collect();
    let report = |states: &[serde_json::Value], ids: &[String]| {
        let statuses = inits
            .iter()
            .zip(states)
            .enumerate()
            .map(|(i, (c, st))| {
                let mut v = serde_json::json!({
                    "name": c.name, "image": c.image, "imageID": "",
                    "ready": st.pointer("/terminated/exitCode") == Some(&serde_json::json!(0)),
                    "started": st.get("running").is_some(),
                    "restartCount": 0, "state": st, "lastState": {},
                });
                if let Some(id) = ids.get(i) {
                    v["containerID"] = serde_json::json!(format!("skiff://{id}"));
                }
                v
            })
            .collect();
        (cx.init_progress)(pod, statuses);
    };
    let mut ids: Vec<String> = Vec::new();
    for (i, c) in inits.iter().enumerate() {
        let id = create_container(cx, pod, c, &info, &vols, running, ContainerKind::Init, None)?;
        running.init.insert(c.name.clone(), id.clone());
        ids.push(id.clone());
        created_event(cx.events, pod, &c.name);
        let code = match rt.start_container(&id) {
            Ok(()) => {
                started_event(cx.events, pod, &c.name);
                let started = rt.container_status(&id).ok().and_then(|s| s.started_at);
                states[i] = serde_json::json!({"running": {"startedAt": started}});
                report(&states, &ids);
                wait_for_exit(rt, &id)
            }
            Err(RuntimeError::StartFailed { code, .. }) => code,
            Err(e) => return Err(e.into()),
        };
        let st = rt.container_status(&id).ok();
        states[i] = serde_json::json!({"terminated": {
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": st.as_ref().and_then(|s| s.started_at.clone()),
            "finishedAt": st.as_ref().and_then(|s| s.finished_at.clone()),
            "containerID": format!("skiff://{id}"),
        }});
        if code != 0 {
            report(&states, &ids);
            return Err(PodError::InitFailed {
                name: c.name.clone(),
                code,
            });
        }
    }
    for c in &spec.containers {
        let id = create_container(cx, pod, c, &info, &vols, running, ContainerKind::App, None)?;
        created_event(cx.events, pod, &c.name);
        match rt.start_container(&id) {
            Ok(()) => {}
            Err(RuntimeError::StartFailed { code, message }) => {
                cx.events.event(
                    pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    &format!("Error: failed to start container \"{}\": {message}", c.name),
                );
                return Err(RuntimeError::StartFailed { code, message }.into());
            }
            Err(e) => return Err(e.into()),
        }
        started_event(cx.events, pod, &c.name);
        // postStart runs right after the start; its failure kills the container,
        // which then restarts by the pod's policy (as in Kubernetes).
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if let Err(why) = run_hook(rt, h, c, &id, running.ip, Duration::from_secs(30)) {
                cx.events.event(
                    pod,
                    Some(&c.name),
                    true,
                    "FailedPostStartHook",
                    &format!("PostStartHook failed: {why}"),
                );
                if let Err(e) = rt.kill_container(&id) {
                    tracing::warn!(container = %id, error = %e, "killing the container after its failed postStart hook");
                }
            }
        }
        running.containers.insert(c.name.clone(), id);
    }
    Ok(())
}

/// The pod's resolv.conf, formed as the kubelet forms it (its Warnings recorded).
fn resolv_conf(cx: &Context, pod: &Pod) -> Result<String, PodError> {
    let node = cx.node;
    let dns = dnsconfig::NodeDns {
        cluster_dns: node.cluster_dns.clone(),
        cluster_domain: node.cluster_domain.clone(),
        host: dnsconfig::read_resolv_conf(node.resolv_conf.as_deref())?,
    };
    let (cfg, warnings) = dnsconfig::pod_dns(pod, &dns);
    for (reason, message) in warnings {
        cx.events.event(pod, None, true, reason, &message);
    }
    Ok(dnsconfig::render(&cfg))
}

/// Waits for a started container to exit (the kubelet watches ContainerStatus);
/// 255 when it vanished.
fn wait_for_exit(rt: &dyn RuntimeService, id: &str) -> i32 {
    loop {
        match rt.container_status(id) {
            Ok(st) if st.state == ContainerState::Exited => return st.exit_code,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return 255,
        }
    }
}

fn created_event(events: &dyn PodEvents, pod: &Pod, name: &str) {
    events.event(
        pod,
        Some(name),
        false,
        "Created",
        &format!("Created container: {name}"),
    );
}

fn started_event(events: &dyn PodEvents, pod: &Pod, name: &str) {
    events.event(
        pod,
        Some(name),
        false,
        "Started",
        &format!("Started container {name}"),
    );
}

/// Runs a lifecycle hook (exec in the container, or an HTTP GET to the pod); the
/// error says why it failed.
pub fn run_hook(
    rt: &dyn RuntimeService,
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
    c: &Container,
    id: &str,
    pod_ip: Option<std::net::Ipv4Addr>,
    timeout: Duration,
) -> Result<(), HookError> {
    use crate::probe::{self, ProbeResult};
    let r = if let Some(e) = &h.exec {
        let cmd = e.command.clone().unwrap_or_default();
        probe::exec(rt, id, &cmd, timeout)
    } else if let Some(g) = &h.http_get {
        let port = crate::prober::resolve_port(&g.port, c)
            .ok_or_else(|| HookError::UnknownPort(format!("{:?}", g.port)))?;
        let host: std::net::IpAddr = match g.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h
                .parse()
                .map_err(|_| HookError::InvalidHost(h.to_string()))?,
            None => pod_ip
                .map(std::net::IpAddr::V4)
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        };
        if rt.simulated() {
            return Ok(());
        }
        let headers: Vec<(String, String)> = g
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        probe::http_get(
            std::net::SocketAddr::new(host, port),
            g.path.as_deref().unwrap_or("/"),
            "",
            &headers,
            timeout,
        )
    } else if let Some(s) = &h.sleep {
        std::thread::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout));
        ProbeResult::Success
    } else {
        return Err(HookError::NoHandler);
    };
    match r {
        ProbeResult::Success => Ok(()),
        ProbeResult::Failure(m) => Err(HookError::Failed(m)),
    }
}

#[allow(clippy::too_many_arguments)]
fn create_container(
    cx: &Context,
    pod: &Pod,
    c: &Container,
    rt: &PodRuntimeInfo,
    vols: &BTreeMap<String, PathBuf>,
    running: &RunningPod,
    kind: ContainerKind,
    target: Option<String>,
) -> Result<String, PodError> {
    let image_ref = c
        .image
        .clone()
        .ok_or_else(|| SpecError::NoImage(c.name.clone()))?;
    let (runtime, node, lookup) = (cx.runtime, cx.node, cx.lookup);
    let image = crate::pull::ensure_image(
        &crate::pull::PullContext {
            runtime,
            puller: cx.puller,
            lookup,
            events: cx.events,
        },
        pod,
        c,
        &image_ref,
        &podspec::pull_policy(c),
    )?;
    let env = podspec::resolve_env(pod, c, lookup, rt)?;
    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let src = vols.get(&m.name).ok_or_else(|| PodError::UndefinedVolume {
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
        })?;
        let src = match &m.sub_path {
            Some(sp) if !sp.is_empty() => {
                if sp.starts_with('/') || sp.split('/').any(|x| x == "..") {
                    return Err(PodError::InvalidSubPath(sp.clone()));
                }
                let p = src.join(sp);
                if !p.exists() {
                    std::fs::create_dir_all(&p)?;
                }
                p
            }
            _ => src.clone(),
        };
        mounts.push(Mount {
            host_path: src,
            container_path: m.mount_path.clone(),
            readonly: m.read_only.unwrap_or(false),
        });
    }
    let config = podspec::container_config(
        pod,
        c,
        &image,
        env,
        mounts,
        &Placement {
            sandbox: &running.sandbox,
            pod_uid: &running.uid,
            cgroup_parent: running.cgroup(),
            etc_dir: &running.dir.join("etc"),
            kind,
            target,
            restarts: node.restarts,
            log_max_size: node.container_log_max_size,
            log_max_files: node.container_log_max_files,
        },
    )?;
    Ok(runtime.create_container(&running.sandbox, &config)?)
}

/// Materialize the pod's volumes under its directory; name → host path. On a
/// `simulated` runtime (a hollow node) nothing outside the pod's directory is touched:
/// hostPath and claim volumes are plain directories in it, memory emptyDirs no tmpfs.
pub fn prepare_volumes(
    pod: &Pod,
    dir: &Path,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
    simulated: bool,
) -> Result<BTreeMap<String, PathBuf>, PodError> {
    let ns = namespace_of(pod);
    let mut out = BTreeMap::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let p = volume_path(pod, &v, dir, &ns, lookup, rt, simulated)?;
        out.insert(v.name.clone(), p);
    }
    Ok(out)
}

fn namespace_of(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

/// The PersistentVolume a claim volume's claim is bound to.
fn bound_volume(
    v: &Volume,
    c: &k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource,
    ns: &str,
    lookup: &dyn ObjectLookup,
) -> Result<k8s_openapi::api::core::v1::PersistentVolume, PodError> {
    lookup
        .persistent_volume(ns, &c.claim_name)
        .map_err(|error| PodError::VolumeNotReady {
            volume: v.name.clone(),
            error,
        })
}

/// The node directory of a persistentVolumeClaim volume: its bound volume's hostPath
/// or local path (made if missing, as the local-path provisioner does).
fn claim_path(
    v: &Volume,
    c: &k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource,
    ns: &str,
    lookup: &dyn ObjectLookup,
) -> Result<PathBuf, PodError> {
    let pv = bound_volume(v, c, ns, lookup)?;
    let spec = pv.spec.unwrap_or_default();
    let (path, kind) = match (&spec.host_path, &spec.local) {
        (Some(h), _) => (h.path.clone(), h.type_.clone().unwrap_or_default()),
        (None, Some(l)) => (l.path.clone(), "Directory".into()),
        _ => {
            return Err(PodError::UnsupportedPersistentVolume {
                volume: v.name.clone(),
                pv: pv.metadata.name.unwrap_or_default(),
            })
        }
    };
    let p = PathBuf::from(path);
    let kind = if kind.is_empty() {
        "DirectoryOrCreate"
    } else {
        &kind
    };
    let fresh = !p.exists();
    volumes::check_host_path(&p, kind)?;
    if fresh && p.is_dir() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777));
    }
    Ok(p)
}

fn volume_path(
    pod: &Pod,
    v: &Volume,
    dir: &Path,
    ns: &str,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
    simulated: bool,
) -> Result<PathBuf, PodError> {
    let verr = |error: std::io::Error| PodError::VolumeFiles {
        volume: v.name.clone(),
        error,
    };
    let target = |plugin: &str| dir.join("volumes").join(plugin).join(&v.name);
    // A hollow node's stand-in for a directory of the host.
    let stand_in = |plugin: &str| {
        let t = target(plugin);
        std::fs::create_dir_all(&t).map_err(verr)?;
        Ok::<_, PodError>(t)
    };
    if let Some(e) = &v.empty_dir {
        let memory = e.medium.as_deref() == Some("Memory") && !simulated;
        let limit = e
            .size_limit
            .as_ref()
            .map(|q| podspec::parse_quantity_milli(&q.0).map(|m| (m / 1000) as u64))
            .transpose()?;
        return volumes::empty_dir(dir, &v.name, memory, limit).map_err(verr);
    }
    if v.host_path.is_some() && simulated {
        return stand_in("hollow~host-path");
    }
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        volumes::check_host_path(&p, h.type_.as_deref().unwrap_or(""))?;
        return Ok(p);
    }
    if let Some(c) = &v.persistent_volume_claim {
        if simulated {
            // Still bound first, as on any node.
            bound_volume(v, c, ns, lookup)?;
            return stand_in("hollow~claim");
        }
        return claim_path(v, c, ns, lookup);
    }
    // configMap and secret volumes: the object's keys (or the listed items) as files.
    let keys = |kind: &'static str,
                name: &str,
                data: Option<BTreeMap<String, String>>,
                optional: Option<bool>,
                items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>,
                default_mode: Option<i32>,
                plugin: &str|
     -> Result<PathBuf, PodError> {
        let data = match (data, optional) {
            (Some(d), _) => d,
            (None, Some(true)) => BTreeMap::new(),
            (None, _) => {
                return Err(PodError::VolumeSourceNotFound {
                    volume: v.name.clone(),
                    kind,
                    name: name.to_string(),
                })
            }
        };
        let bytes = data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        let items: Option<Vec<(String, String, Option<i32>)>> = items.as_ref().map(|i| {
            i.iter()
                .map(|k| (k.key.clone(), k.path.clone(), k.mode))
                .collect()
        });
        let payload = volumes::project(&bytes, items.as_deref(), default_mode)?;
        let t = target(plugin);
        volumes::write_atomic(&t, &payload).map_err(verr)?;
        Ok(t)
    };
    if let Some(cm) = &v.config_map {
        return keys(
            "configmap",
            &cm.name,
            lookup.config_map(ns, &cm.name),
            cm.optional,
            &cm.items,
            cm.default_mode,
            "kubernetes.io~configmap",
        );
    }
    if let Some(sec) = &v.secret {
        let name = sec.secret_name.clone().unwrap_or_default();
        return keys(
            "secret",
            &name,
            lookup.secret(ns, &name),
            sec.optional,
            &sec.items,
            sec.default_mode,
            "kubernetes.io~secret",
        );
    }
    if let Some(d) = &v.downward_api {
        let mut payload = BTreeMap::new();
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        for item in d.items.iter().flatten() {
            let value = match (&item.field_ref, &item.resource_field_ref) {
                (Some(f), _) => podspec::field_ref_value(pod, &f.field_path, rt)?,
                _ => return Err(PodError::UnsupportedDownwardApiItem(v.name.clone())),
            };
            payload.insert(
                item.path.clone(),
                FileProjection {
                    data: value.into_bytes(),
                    mode: item.mode.map(|m| m as u32).unwrap_or(mode),
                },
            );
        }
        let t = target("kubernetes.io~downward-api");
        volumes::write_atomic(&t, &payload).map_err(verr)?;
        return Ok(t);
    }
    if let Some(proj) = &v.projected {
        let t = target("kubernetes.io~projected");
        let payload = projected_payload(pod, v, proj, ns, lookup, rt, &t)?;
        volumes::write_atomic(&t, &payload).map_err(verr)?;
        return Ok(t);
    }
    Err(PodError::UnsupportedVolume(v.name.clone()))
}

/// The files of a projected volume: its configMap, secret, downwardAPI (fieldRef) and
/// serviceAccountToken sources.
fn projected_payload(
    pod: &Pod,
    v: &Volume,
    proj: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    ns: &str,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
    current: &Path,
) -> Result<BTreeMap<String, FileProjection>, PodError> {
    let mode = proj.default_mode.unwrap_or(0o644);
    let missing = |kind: &'static str, name: String| PodError::VolumeSourceNotFound {
        volume: v.name.clone(),
        kind,
        name,
    };
    let mut payload = BTreeMap::new();
    for src in proj.sources.iter().flatten() {
        let (data, items, optional, what, name) = if let Some(cm) = &src.config_map {
            let name = cm.name.clone();
            (
                lookup.config_map(ns, &name),
                &cm.items,
                cm.optional,
                "configmap",
                name,
            )
        } else if let Some(sec) = &src.secret {
            let name = sec.name.clone();
            (
                lookup.secret(ns, &name),
                &sec.items,
                sec.optional,
                "secret",
                name,
            )
        } else {
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    let Some(f) = &item.field_ref else {
                        return Err(PodError::UnsupportedProjectedItem(v.name.clone()));
                    };
                    let value = podspec::field_ref_value(pod, &f.field_path, rt)?;
                    let m = item.mode.unwrap_or(mode) as u32;
                    payload.insert(
                        item.path.clone(),
                        FileProjection {
                            data: value.into_bytes(),
                            mode: m,
                        },
                    );
                }
            }
            if let Some(t) = &src.service_account_token {
                let account = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.service_account_name.clone())
                    .unwrap_or_else(|| "default".into());
                let pod_ref = (
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.uid.as_deref().unwrap_or(""),
                );
                let now = chrono::Utc::now().timestamp();
                let kept = std::fs::read_to_string(current.join(&t.path))
                    .ok()
                    .filter(|tok| token_fresh(tok, now));
                let token = kept
                    .or_else(|| {
                        lookup.service_account_token(
                            ns,
                            &account,
                            pod_ref,
                            t.audience.as_deref(),
                            t.expiration_seconds.unwrap_or(3600),
                        )
                    })
                    .ok_or_else(|| PodError::NoToken {
                        volume: v.name.clone(),
                        account: account.clone(),
                    })?;
                payload.insert(
                    t.path.clone(),
                    FileProjection {
                        data: token.into_bytes(),
                        mode: mode as u32,
                    },
                );
            }
            continue;
        };
        let data = match (data, optional) {
            (Some(d), _) => d,
            (None, Some(true)) => BTreeMap::new(),
            (None, _) => return Err(missing(what, name)),
        };
        let bytes = data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        let items: Option<Vec<(String, String, Option<i32>)>> = items.as_ref().map(|i| {
            i.iter()
                .map(|k| (k.key.clone(), k.path.clone(), k.mode))
                .collect()
        });
        payload.extend(volumes::project(&bytes, items.as_deref(), Some(mode))?);
    }
    Ok(payload)
}

/// Whether a projected ServiceAccount token (a JWT) is still good to keep: the
/// kubelet asks for a new one once 80% of its lifetime (`iat` to `exp`) has passed.
pub fn token_fresh(token: &str, now: i64) -> bool {
    use base64::Engine as _;
    let Some(claims) = token.split('.').nth(1) else {
        return false;
    };
    let Ok(raw) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims.trim_end_matches('='))
    else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) else {
        return false;
    };
    match (v["iat"].as_i64(), v["exp"].as_i64()) {
        (Some(iat), Some(exp)) if exp > iat => now < iat + (exp - iat) * 8 / 10,
        _ => false,
    }
}

/// Rewrites a running pod's configMap, secret, downwardAPI and projected volumes from
/// the current objects and pod metadata (each through the atomic writer, so only a
/// change swaps `..data`). Mounts with a subPath keep what they were started with.
pub fn refresh_volumes(
    pod: &Pod,
    dir: &Path,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
) -> Result<(), PodError> {
    let ns = namespace_of(pod);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some()
        {
            // Only the kinds written to the pod's directory: never the host's.
            volume_path(pod, v, dir, &ns, lookup, rt, false)?;
        }
    }
    Ok(())
}

/// Stop a pod: each app container with the grace period (SIGTERM, then SIGKILL),
/// the sandbox, the volumes (not persistent ones), the address.
pub fn stop_pod(
    rt: &dyn Runtime,
    running: &RunningPod,
    grace: Duration,
    pod: Option<&Pod>,
) -> Result<(), PodError> {
    let mine = rt.list_containers(&ContainerFilter {
        label_selector: [("io.kubernetes.pod.uid".to_string(), running.uid.clone())]
            .into_iter()
            .collect(),
    })?;
    // preStop hooks run first, side by side, inside the grace period; the stop
    // signal follows with what is left of it.
    let deadline = std::time::Instant::now() + grace;
    if let Some(spec) = pod.and_then(|p| p.spec.as_ref()) {
        std::thread::scope(|s| {
            for c in &spec.containers {
                let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
                    continue;
                };
                let Some(id) = running.containers.get(&c.name) else {
                    continue;
                };
                let active = mine.iter().any(|x| &x.id == id && x.state.is_active());
                if active {
                    s.spawn(move || {
                        if let Err(why) = run_hook(rt, h, c, id, running.ip, grace) {
                            tracing::info!(container = %c.name, "preStop hook failed: {why}");
                        }
                    });
                }
            }
        });
    }
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    for c in mine {
        if c.state.is_active() {
            rt.stop_container(&c.id, Duration::from_secs(left.as_secs()))?;
        }
        rt.remove_container(&c.id)?;
    }
    rt.stop_pod_sandbox(&running.sandbox)?;
    // The pod-level cgroup the containers were children of.
    rt.remove_pod_cgroup(&running.cgroup());
    volumes::remove_pod_volumes(&running.dir)?;
    let _ = std::fs::remove_dir_all(&running.dir);
    Ok(())
}

/// The pods a previous run of the agent left running (their sandbox still alive);
/// the directories of pods whose sandbox died are cleaned up.
pub fn adopt(rt: &dyn Runtime, node: &NodeSettings) -> BTreeMap<String, RunningPod> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(&node.pods_dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(bytes) = std::fs::read(e.path().join("running.json")) else {
            continue;
        };
        let Ok(rp) = serde_json::from_slice::<RunningPod>(&bytes) else {
            continue;
        };
        if rt.pod_sandbox_status(&rp.sandbox) == PodSandboxState::Ready {
            out.insert(rp.uid.clone(), rp);
        } else {
            let _ = stop_pod(rt, &rp, Duration::from_secs(0), None);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Objects;
    impl ObjectLookup for Objects {
        fn config_map(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "kube-root-ca.crt").then(|| {
                [("ca.crt".to_string(), "PEM".to_string())]
                    .into_iter()
                    .collect()
            })
        }
        fn secret(&self, _ns: &str, _name: &str) -> Option<BTreeMap<String, String>> {
            None
        }
        fn service_account_token(
            &self,
            ns: &str,
            account: &str,
            pod: (&str, &str),
            _audience: Option<&str>,
            expiration_seconds: i64,
        ) -> Option<String> {
            Some(format!("{ns}/{account}/{}/{expiration_seconds}", pod.0))
        }
    }

    #[test]
    fn projected_service_account_volume() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "u1"},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "c"}],
                "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]}
        }))
        .expect("pod");
        let v = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()[0]
            .clone();
        let proj = v.projected.clone().expect("projected");
        let files = projected_payload(
            &pod,
            &v,
            &proj,
            "team",
            &Objects,
            &PodRuntimeInfo::default(),
            Path::new("/nonexistent"),
        )
        .expect("payload");
        assert_eq!(files["token"].data, b"team/builder/web/3607");
        assert_eq!(files["ca.crt"].data, b"PEM");
        assert_eq!(files["namespace"].data, b"team");
        assert_eq!(files["token"].mode, 0o644);
        let missing: Pod = serde_json::from_value(json!({
            "metadata": {"name": "x", "namespace": "team"},
            "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "nope"}}]}}]}
        }))
        .expect("pod");
        let v = missing
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()[0]
            .clone();
        let proj = v.projected.clone().expect("projected");
        assert!(projected_payload(
            &missing,
            &v,
            &proj,
            "team",
            &Objects,
            &PodRuntimeInfo::default(),
            Path::new("/nonexistent"),
        )
        .is_err());
    }

    #[test]
    fn tokens_are_renewed_after_80_percent_of_their_lifetime() {
        use base64::Engine as _;
        let jwt = |iat: i64, exp: i64| {
            let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(json!({"iat": iat, "exp": exp}).to_string());
            format!("e30.{claims}.sig")
        };
        assert!(token_fresh(&jwt(1000, 4600), 1000));
        assert!(token_fresh(&jwt(1000, 4600), 3879));
        assert!(!token_fresh(&jwt(1000, 4600), 3880));
        assert!(!token_fresh("not-a-jwt", 0));
    }

    #[test]
    fn volumes_follow_their_objects_and_the_pods_labels() {
        struct Changing(std::sync::Mutex<String>);
        impl ObjectLookup for Changing {
            fn config_map(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
                let v = self.0.lock().unwrap().clone();
                Some([("k".to_string(), v)].into_iter().collect())
            }
            fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
                None
            }
        }
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "cm", "configMap": {"name": "x"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "scratch", "emptyDir": {}}]}
        }))
        .unwrap();
        let t = tempfile::tempdir().unwrap();
        let objects = Changing(std::sync::Mutex::new("one".into()));
        let rt = PodRuntimeInfo::default();
        let vols = prepare_volumes(&pod, t.path(), &objects, &rt, false).unwrap();
        let read = |v: &str, f: &str| std::fs::read_to_string(vols[v].join(f)).unwrap();
        assert_eq!(read("cm", "k"), "one");
        std::fs::write(vols["scratch"].join("keep"), "x").unwrap();
        *objects.0.lock().unwrap() = "two".into();
        pod.metadata.labels = Some([("a".to_string(), "2".to_string())].into_iter().collect());
        refresh_volumes(&pod, t.path(), &objects, &rt).unwrap();
        assert_eq!(read("cm", "k"), "two");
        assert_eq!(read("info", "labels"), "a=\"2\"");
        assert_eq!(read("scratch", "keep"), "x");
    }
}
