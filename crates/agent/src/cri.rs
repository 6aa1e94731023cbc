//! The runtime interface between the node agent and a container engine, shaped after
//! the CRI (k8s.io/cri-api `pkg/apis/runtime/v1/api.proto`): a [`RuntimeService`] for
//! pod sandboxes, containers, exec and attach, and an [`ImageService`] for images and
//! the image filesystem, with the CRI's names for the calls the agent makes. The
//! kubelet code reaches the engine only through these traits, so another engine could
//! stand behind them; [`EngineRuntime`] puts skiff's own engine there.
//!
//! Calls block (the engine works with files, locks and helper processes): run them
//! from `spawn_blocking` in async code.
//!
//! Where skiff differs from the CRI it says so: the engine's per-container monitor
//! restarts containers by the pod's policy with the kubelet's back-off (so a container
//! config carries its restart policy and `restart_count` is the runtime's), and Exec
//! and Attach answer with a local endpoint the agent's streaming server relays rather
//! than the URL of a streaming server of the runtime's own.

use serde::{Deserialize, Serialize};
use skiff_engine::reexec::Helper;
use skiff_engine::EngineError;
pub use skiff_registry::Credentials;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such container, sandbox or image.
    #[error(transparent)]
    NotFound(EngineError),
    /// StartContainer: the container's process could not be started.
    #[error("{message}")]
    StartFailed { code: i32, message: String },
    /// The engine behind the interface failed.
    #[error(transparent)]
    Engine(EngineError),
    /// The exec helper of an ExecSync could not be started.
    #[error("starting exec: {0}")]
    ExecStart(std::io::Error),
    /// The exec helper of an ExecSync could not be waited for.
    #[error(transparent)]
    ExecWait(std::io::Error),
    /// PullImage failed (the registry's reason; never a credential).
    #[error(transparent)]
    Pull(skiff_registry::Error),
}

impl From<EngineError> for RuntimeError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Start { code, message } => RuntimeError::StartFailed { code, message },
            EngineError::NoSuchContainer(_) => RuntimeError::NotFound(e),
            e => RuntimeError::Engine(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// PodSandboxConfig: what the sandbox of one pod holds.
#[derive(Debug, Clone, Default)]
pub struct PodSandboxConfig {
    /// The sandbox's id (derived from the pod's uid by the agent).
    pub id: String,
    pub hostname: String,
    /// NamespaceOption.network == NODE (hostNetwork): no pod network.
    pub host_network: bool,
    /// NamespaceOption.ipc == NODE.
    pub host_ipc: bool,
    /// NamespaceOption.pid == POD (shareProcessNamespace).
    pub share_pid: bool,
    /// LinuxPodSandboxConfig.cgroup_parent: the pod's cgroup, where the infra
    /// process gets a group of its own.
    pub cgroup_parent: String,
}

/// A running pod sandbox, as the agent records it (`running.json`) to find it again
/// after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodSandbox {
    pub id: String,
    /// The infra process holding the pod's namespaces.
    pub pid: i32,
    /// Its start time (clock ticks since boot), telling it from a later process with
    /// the same pid.
    pub start_time: u64,
    /// PodSandboxNetworkStatus.ip.
    pub ip: Option<Ipv4Addr>,
    pub share_pid: bool,
    /// The infra process's cgroup (in the pod's), removed with the sandbox.
    #[serde(default)]
    pub cgroup: Option<skiff_runtime::cgroups::Cgroup>,
}

/// PodSandboxState.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSandboxState {
    Ready,
    NotReady,
}

/// NamespaceMode: whose namespace a container uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// The pod sandbox's.
    #[default]
    Pod,
    /// Its own (pid without shareProcessNamespace).
    Container,
    /// The node's (hostNetwork, hostIPC, hostPID).
    Node,
    /// Another container's (`target_id`): an ephemeral container's view of the
    /// processes of the container it debugs.
    Target,
}

/// NamespaceOption.
#[derive(Debug, Clone, Default)]
pub struct NamespaceOption {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// The container whose namespace a `Target` mode means.
    pub target_id: Option<String>,
}

/// Mount: a host path at a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub readonly: bool,
}

/// LinuxContainerResources (the parts the agent sets).
#[derive(Debug, Clone, Default)]
pub struct LinuxContainerResources {
    pub memory_limit_in_bytes: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
}

/// How the runtime restarts a container that exits (a skiff extension: see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Never,
    Always,
    OnFailure,
}

/// ContainerConfig.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// ContainerMetadata.name.
    pub name: String,
    /// ImageSpec.image: the image's id, from ImageStatus.
    pub image: String,
    /// The whole command line (the agent resolves the image's entrypoint and cmd).
    pub command: Vec<String>,
    /// `KEY=value`.
    pub envs: Vec<String>,
    pub working_dir: Option<String>,
    /// LinuxContainerSecurityContext.run_as_user/run_as_group as `uid[:gid]` or a name.
    pub user: Option<String>,
    pub mounts: Vec<Mount>,
    /// The node's managed `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` (container
    /// path → host file), bind-mounted in place of the image's.
    pub etc_files: BTreeMap<String, PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub namespace_options: NamespaceOption,
    pub resources: LinuxContainerResources,
    pub privileged: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub readonly_rootfs: bool,
    /// LinuxContainerSecurityContext.no_new_privs (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
    /// LinuxContainerConfig's cgroup parent (`<pods_cgroup>/pod<uid>`).
    pub cgroup_parent: String,
    pub tty: bool,
    pub stdin: bool,
    pub restart_policy: RestartPolicy,
    /// The restart back-off: first delay and longest delay.
    pub restart_backoff: (Duration, Duration),
    /// The log is rotated at this size (0: never), keeping this many files.
    pub log_max_size: u64,
    pub log_max_files: u32,
}

/// ContainerState, with the states skiff's monitor adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    /// Exited and waiting out its restart back-off (CrashLoopBackOff).
    Restarting,
    Exited,
}

impl ContainerState {
    pub fn is_active(self) -> bool {
        matches!(self, ContainerState::Running | ContainerState::Restarting)
    }
}

/// ContainerStatus.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    pub state: ContainerState,
    /// RFC 3339.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: i32,
    /// `OOMKilled`, `Completed` or `Error` once exited.
    pub reason: String,
    /// The image's id (`sha256:…`).
    pub image_id: String,
    /// The CRI's image ref, the pod's `imageID`: the repo digest the image was pulled
    /// by (`docker.io/library/nginx@sha256:…`), else its id.
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub log_path: PathBuf,
    pub restart_count: u32,
    pub tty: bool,
    /// The container's main process while it runs (the verbose `info` of containerd).
    pub pid: i32,
    /// How the previous run ended, once restarted.
    pub last: Option<LastTermination>,
}

/// A previous run's end (the kubelet's lastState.terminated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastTermination {
    pub exit_code: i32,
    /// `OOMKilled`, `Completed` or `Error`.
    pub reason: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

fn log_entry(e: skiff_engine::logs::Entry) -> LogEntry {
    LogEntry {
        time: e.time,
        log: e.log,
    }
}

fn reason_name(r: Option<&skiff_engine::state::ExitReason>) -> &'static str {
    use skiff_engine::state::ExitReason;
    match r {
        Some(ExitReason::OOMKilled) => "OOMKilled",
        Some(ExitReason::Completed) => "Completed",
        _ => "Error",
    }
}

/// ContainerFilter: containers whose labels include all of these.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub label_selector: BTreeMap<String, String>,
}

/// ContainerStats (the parts eviction ranks pods by).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// MemoryUsage.working_set_bytes: usage less the inactive page cache.
    pub memory_working_set_bytes: u64,
    /// FilesystemUsage.used_bytes of the writable layer.
    pub writable_layer_bytes: u64,
    /// The container's processes (its cgroup's pids.current).
    pub processes: u64,
    /// Its log files (the kubelet counts them in the pod's ephemeral storage).
    pub log_bytes: u64,
}

/// One entry of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// RFC 3339 with nanoseconds.
    pub time: String,
    /// The line, with its newline.
    pub log: String,
}

/// ExecSyncResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyncResponse {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    /// The command did not finish within the timeout (and was killed).
    pub timed_out: bool,
}

/// ExecRequest.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    /// The terminal's first size (columns, rows), with `tty`.
    pub size: Option<(u16, u16)>,
}

/// Exec's answer: a local command whose stdio is the exec session's (with skiff's
/// engine, an exec helper started from the sealed view of the binary).
#[derive(Debug, Clone)]
pub struct ExecCommand {
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    /// With a terminal: the descriptor (in the command) where it reads "COLS ROWS"
    /// lines that resize it.
    pub resize_fd: Option<i32>,
}

/// Where an exec helper with a terminal reads its resize lines.
const EXEC_RESIZE_FD: i32 = 3;

/// Attach's answer: a unix socket carrying the container's stdio (docker's stdcopy
/// framing without a terminal). `path` is valid while this value lives.
#[derive(Debug)]
pub struct AttachSocket {
    pub path: PathBuf,
    /// Keeps `path` (through /proc/self/fd) valid.
    pub keep: Option<std::fs::File>,
}

/// The CRI's RuntimeService, as the agent uses it.
pub trait RuntimeService: Send + Sync {
    /// RunPodSandbox: the infra process, its namespaces and (without host network)
    /// the pod's address on the node's pod network.
    fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox>;
    /// StopPodSandbox: stops the infra process and releases the pod's address.
    fn stop_pod_sandbox(&self, sandbox: &PodSandbox) -> Result<()>;
    /// PodSandboxStatus.
    fn pod_sandbox_status(&self, sandbox: &PodSandbox) -> PodSandboxState;
    /// CreateContainer in a sandbox; returns the container's id.
    fn create_container(&self, sandbox: &PodSandbox, config: &ContainerConfig) -> Result<String>;
    /// StartContainer.
    fn start_container(&self, id: &str) -> Result<()>;
    /// StopContainer: the stop signal, then SIGKILL after `timeout`; no restart.
    fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Kill the container's process so that its restart policy restarts it (a failed
    /// liveness probe or postStart hook), unlike StopContainer.
    fn kill_container(&self, id: &str) -> Result<()>;
    /// Remove the node's pod cgroup parent (and the cgroup root above it) where no
    /// pod is left in it (best effort; the agent's shutdown).
    fn remove_pods_cgroup(&self, pods_cgroup: &str);
    /// Remove a stopped pod's cgroup (`<pods_cgroup>/pod<uid>`), once its containers'
    /// groups are gone.
    fn remove_pod_cgroup(&self, cgroup: &str);
    /// RemoveContainer (stopping it first if it still runs).
    fn remove_container(&self, id: &str) -> Result<()>;
    fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>>;
    /// ContainerStats.
    fn container_stats(&self, id: &str) -> Result<ContainerStats>;
    /// The container's log (its previous run's with `previous`: None when it has
    /// none), as ReopenContainerLog's files hold it.
    fn read_log(&self, id: &str, previous: bool) -> Result<Option<Vec<LogEntry>>>;
    /// `each` gets every entry appended to the container's log from now on, until it
    /// returns false or the container no longer runs.
    fn follow_log(&self, id: &str, each: &mut dyn FnMut(&LogEntry) -> bool);
    /// ExecSync: runs `cmd` in the container to completion or `timeout`.
    fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecSyncResponse>;
    /// Exec: where an interactive exec session runs.
    fn exec(&self, req: &ExecRequest) -> Result<ExecCommand>;
    /// Attach: where the container's own stdio is reached.
    fn attach(&self, id: &str) -> Result<AttachSocket>;
    /// Nothing runs behind this runtime (a hollow node, [`crate::hollow`]): its pod
    /// addresses are never routed, so probes and hooks over the network pass without
    /// a packet, and nothing of the host (its paths, ports, mounts) is touched for a pod.
    fn simulated(&self) -> bool {
        false
    }
}

/// Image (the parts the agent reads).
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub id: String,
    /// RFC 3339.
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    /// Normalized names (`docker.io/library/nginx:1.27`).
    pub repo_tags: Vec<String>,
    /// `repository@sha256:…` of the manifests it was pulled by.
    pub repo_digests: Vec<String>,
    /// Unpacked size in bytes.
    pub size: u64,
}

/// What a pull did (PullImageResponse, with what the kubelet's Pulled event tells).
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The image's id.
    pub id: String,
    /// The repo digest pulled (the CRI's image ref).
    pub image_ref: String,
    /// Unpacked size in bytes.
    pub size: u64,
}

/// ImageFsInfoResponse: the filesystems of images and of containers' writable layers
/// (the kubelet's imagefs and nodefs signals read their usage).
#[derive(Debug, Clone)]
pub struct ImageFsInfo {
    pub image_filesystem: PathBuf,
    pub container_filesystem: PathBuf,
}

/// The CRI's ImageService, as the agent uses it.
pub trait ImageService: Send + Sync {
    /// ImageStatus: the image a reference names, if present.
    fn image_status(&self, image: &str) -> Result<Option<Image>>;
    /// PullImage: fetches `image` from its registry (or a mirror) with `auth`, or the
    /// node's own credentials when None.
    fn pull_image(&self, image: &str, auth: Option<&Credentials>) -> Result<PulledImage>;
    fn list_images(&self) -> Result<Vec<Image>>;
    fn remove_image(&self, id: &str) -> Result<()>;
    fn image_fs_info(&self) -> ImageFsInfo;
}

/// Both services, as one runtime endpoint serves them.
pub trait Runtime: RuntimeService + ImageService {}
impl<T: RuntimeService + ImageService> Runtime for T {}

/// The shared handle the agent's tasks hold.
pub type SharedRuntime = Arc<dyn Runtime>;

/// skiff's engine behind the CRI: sandboxes are the engine's infra processes on the
/// node's pod bridge, containers the engine's (labelled with the pod's identity).
pub struct EngineRuntime {
    pub engine: Arc<skiff_engine::Engine>,
    /// The node's pod network.
    pub bridge: skiff_engine::network::BridgeConfig,
    /// How images are pulled: mirrors, TLS, the node's own credentials.
    pub registry: skiff_registry::Options,
    /// Image id → its CRI image ref (repo digest), as statuses ask for it often.
    image_refs: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl EngineRuntime {
    pub fn new(
        engine: Arc<skiff_engine::Engine>,
        bridge: skiff_engine::network::BridgeConfig,
        registry: skiff_registry::Options,
    ) -> EngineRuntime {
        EngineRuntime {
            engine,
            bridge,
            registry,
            image_refs: Default::default(),
        }
    }

    fn engine_sandbox(s: &PodSandbox) -> skiff_engine::sandbox::Sandbox {
        skiff_engine::sandbox::Sandbox {
            id: s.id.clone(),
            pid: s.pid,
            start_time: s.start_time,
            ip: s.ip,
            share_pid: s.share_pid,
            cgroup: s.cgroup.clone(),
        }
    }

    /// The CRI's image ref for image `id`: its first repo digest, else the id.
    fn image_ref_of(&self, id: &str) -> String {
        if let Some(r) = self.image_refs.lock().ok().and_then(|m| m.get(id).cloned()) {
            return r;
        }
        let r = self
            .engine
            .images
            .resolve(id)
            .ok()
            .and_then(|i| i.repo_digests.first().cloned())
            .unwrap_or_else(|| id.to_string());
        if let Ok(mut m) = self.image_refs.lock() {
            if m.len() > 4096 {
                m.clear();
            }
            m.insert(id.to_string(), r.clone());
        }
        r
    }

    fn status_of(&self, c: &skiff_engine::Container) -> ContainerStatus {
        use skiff_engine::Status;
        let s = &c.state;
        let state = match s.status {
            Status::Running | Status::Paused => ContainerState::Running,
            Status::Restarting => ContainerState::Restarting,
            Status::Created => ContainerState::Created,
            Status::Exited | Status::Dead | Status::Removing => ContainerState::Exited,
        };
        ContainerStatus {
            id: c.record.id.clone(),
            state,
            created_at: c.record.created.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            exit_code: s.exit_code,
            reason: reason_name(s.exit_reason.as_ref()).into(),
            image_id: c.record.image_id.clone(),
            image_ref: self.image_ref_of(&c.record.image_id),
            labels: c.record.labels.clone(),
            log_path: c.log_path(),
            restart_count: s.restart_count,
            tty: c.record.tty,
            pid: s.pid,
            last: s.last_run.as_ref().map(|l| LastTermination {
                exit_code: l.exit_code,
                reason: reason_name(Some(&l.exit_reason)).into(),
                started_at: l.started_at.clone(),
                finished_at: l.finished_at.clone(),
            }),
        }
    }
}

impl RuntimeService for EngineRuntime {
    fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox> {
        use skiff_engine::network;
        let root = &self.engine.root;
        let ip = if config.host_network {
            None
        } else {
            Some(network::allocate_ip(root, &self.bridge, &config.id)?)
        };
        let spec = skiff_engine::sandbox::SandboxSpec {
            id: config.id.clone(),
            hostname: config.hostname.clone(),
            host_network: config.host_network,
            host_ipc: config.host_ipc,
            share_pid: config.share_pid,
            cgroup_parent: (!config.cgroup_parent.is_empty()).then(|| config.cgroup_parent.clone()),
            network: ip.map(|ip| skiff_engine::sandbox::SandboxNet {
                bridge: self.bridge.clone(),
                ip,
            }),
        };
        match self.engine.run_sandbox(&spec) {
            Ok(s) => Ok(PodSandbox {
                id: s.id,
                pid: s.pid,
                start_time: s.start_time,
                ip: s.ip,
                share_pid: s.share_pid,
                cgroup: s.cgroup,
            }),
            Err(e) => {
                network::release_ip(root, &config.id);
                Err(e.into())
            }
        }
    }

    fn stop_pod_sandbox(&self, sandbox: &PodSandbox) -> Result<()> {
        Ok(self.engine.stop_sandbox(&Self::engine_sandbox(sandbox))?)
    }

    fn pod_sandbox_status(&self, sandbox: &PodSandbox) -> PodSandboxState {
        if Self::engine_sandbox(sandbox).alive() {
            PodSandboxState::Ready
        } else {
            PodSandboxState::NotReady
        }
    }

    fn create_container(&self, sandbox: &PodSandbox, c: &ContainerConfig) -> Result<String> {
        let sb = Self::engine_sandbox(sandbox);
        let nso = &c.namespace_options;
        let ns = |mode: NamespaceMode, kind: &str| match mode {
            NamespaceMode::Node => Some("host".to_string()),
            NamespaceMode::Pod => Some(sb.ns(kind)),
            NamespaceMode::Container => None,
            NamespaceMode::Target => nso.target_id.as_ref().map(|t| format!("container:{t}")),
        };
        let opts = skiff_engine::CreateOptions {
            image: c.image.clone(),
            entrypoint: Some(String::new()),
            args: c.command.clone(),
            env: c.envs.clone(),
            workdir: c.working_dir.clone(),
            user: c.user.clone(),
            volumes: c
                .mounts
                .iter()
                .map(|m| {
                    format!(
                        "{}:{}{}",
                        m.host_path.display(),
                        m.container_path,
                        if m.readonly { ":ro" } else { "" }
                    )
                })
                .collect(),
            network: ns(nso.network, "net"),
            ipc: ns(nso.ipc, "ipc"),
            // The pod's hostname lives in the sandbox's UTS namespace (the node's with
            // host networking).
            uts: ns(nso.network, "uts"),
            pid: ns(nso.pid, "pid"),
            limits: skiff_engine::Limits {
                memory: c.resources.memory_limit_in_bytes.map(|m| m.to_string()),
                cpu_period: c.resources.cpu_period,
                cpu_quota: c.resources.cpu_quota,
                cpu_shares: c.resources.cpu_shares,
                ..Default::default()
            },
            privileged: c.privileged,
            cap_add: c.add_capabilities.clone(),
            cap_drop: c.drop_capabilities.clone(),
            read_only: c.readonly_rootfs,
            security_opt: if c.no_new_privs {
                vec!["no-new-privileges".into()]
            } else {
                Vec::new()
            },
            tty: c.tty,
            interactive: c.stdin,
            cgroup_parent: Some(c.cgroup_parent.clone()),
            restart: match c.restart_policy {
                RestartPolicy::Always => Some("always".into()),
                RestartPolicy::OnFailure => Some("on-failure".into()),
                RestartPolicy::Never => None,
            },
            extra_labels: c.labels.clone(),
            managed_files: c
                .etc_files
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string_lossy().to_string()))
                .collect(),
            pod_runs: Some(skiff_engine::state::PodRuns {
                backoff_initial_ms: c.restart_backoff.0.as_millis() as u64,
                backoff_max_ms: c.restart_backoff.1.as_millis() as u64,
            }),
            log_max_size: c.log_max_size,
            log_max_files: c.log_max_files,
            ..Default::default()
        };
        Ok(self.engine.create(&opts)?.record.id)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        use skiff_engine::ops::Report;
        let (_s, first) = self.engine.start(id, None)?;
        match first {
            Report::Failed(code, message) => Err(RuntimeError::StartFailed { code, message }),
            _ => Ok(()),
        }
    }

    fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        Ok(self.engine.stop(id, Some(timeout.as_secs() as i64))?)
    }

    fn kill_container(&self, id: &str) -> Result<()> {
        Ok(self.engine.crash(id)?)
    }

    fn remove_pods_cgroup(&self, pods_cgroup: &str) {
        skiff_engine::cgroups::remove_pods_cgroup(pods_cgroup)
    }

    fn remove_pod_cgroup(&self, cgroup: &str) {
        skiff_engine::cgroups::remove_pod_cgroup(cgroup)
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        self.engine.remove(id, true, true)?;
        Ok(())
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        Ok(self.status_of(&self.engine.get(id)?))
    }

    fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .engine
            .list()?
            .iter()
            .filter(|c| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| c.record.labels.get(k) == Some(v))
            })
            .map(|c| self.status_of(c))
            .collect())
    }

    fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let u = self.engine.usage(id)?;
        Ok(ContainerStats {
            memory_working_set_bytes: u.memory_working_set_bytes,
            writable_layer_bytes: u.writable_layer_bytes,
            log_bytes: u.log_bytes,
            processes: u.processes,
        })
    }

    fn read_log(&self, id: &str, previous: bool) -> Result<Option<Vec<LogEntry>>> {
        let c = self.engine.get(id)?;
        let path = if previous {
            skiff_engine::logs::previous_path(&c.log_path())
        } else {
            c.log_path()
        };
        if previous && !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            skiff_engine::logs::read_entries(&path)
                .into_iter()
                .map(log_entry)
                .collect(),
        ))
    }

    fn follow_log(&self, id: &str, each: &mut dyn FnMut(&LogEntry) -> bool) {
        let Ok(mut c) = self.engine.get(id) else {
            return;
        };
        let path = c.log_path();
        skiff_engine::logs::follow(&mut c, &path, |e| each(&log_entry(e.clone())));
    }

    fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecSyncResponse> {
        use std::io::Read;
        // The engine's exec wants a single-threaded caller: it runs in an exec helper.
        let helper = Helper::Exec {
            id: id.to_string(),
            stdin: false,
            resize_fd: None,
            opts: skiff_engine::exec::ExecOptions {
                cmd: cmd.to_vec(),
                ..Default::default()
            },
        };
        let mut child = helper
            .command(&self.engine.exe, &self.engine.root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(RuntimeError::ExecStart)?;
        let start = std::time::Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                    if let Some(mut o) = child.stdout.take() {
                        let _ = o.read_to_end(&mut stdout);
                    }
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_end(&mut stderr);
                    }
                    return Ok(ExecSyncResponse {
                        stdout,
                        stderr,
                        exit_code: st.code().unwrap_or(255),
                        timed_out: false,
                    });
                }
                Ok(None) if start.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(ExecSyncResponse {
                        stdout: Vec::new(),
                        stderr: Vec::new(),
                        exit_code: 137,
                        timed_out: true,
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(RuntimeError::ExecWait(e)),
            }
        }
    }

    fn exec(&self, req: &ExecRequest) -> Result<ExecCommand> {
        let resize_fd = req.tty.then_some(EXEC_RESIZE_FD);
        let helper = Helper::Exec {
            id: req.container_id.clone(),
            stdin: req.stdin,
            resize_fd,
            opts: skiff_engine::exec::ExecOptions {
                cmd: req.cmd.clone(),
                tty: req.tty,
                console_size: req.size,
                ..Default::default()
            },
        };
        Ok(ExecCommand {
            program: self.engine.exe.clone(),
            args: helper.args(&self.engine.root),
            resize_fd,
        })
    }

    fn attach(&self, id: &str) -> Result<AttachSocket> {
        let c = self.engine.get(id)?;
        let (keep, path) = skiff_engine::monitor::attach_path(&c.dir)?;
        Ok(AttachSocket {
            path,
            keep: Some(keep),
        })
    }
}

impl ImageService for EngineRuntime {
    fn image_status(&self, image: &str) -> Result<Option<Image>> {
        match self.engine.images.resolve(image) {
            Ok(i) => {
                let c = &i.config.config;
                Ok(Some(Image {
                    id: i.id.clone(),
                    created: i.config.created.clone(),
                    entrypoint: c.entrypoint.clone().unwrap_or_default(),
                    cmd: c.cmd.clone().unwrap_or_default(),
                    env: c.env.clone(),
                    user: c.user.clone(),
                    repo_tags: i.names.clone(),
                    repo_digests: i.repo_digests.clone(),
                    size: i.size,
                }))
            }
            Err(_) => Ok(None),
        }
    }

    fn pull_image(&self, image: &str, auth: Option<&Credentials>) -> Result<PulledImage> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RuntimeError::ExecStart)?;
        let mut opts = self.registry.clone();
        if let Some(c) = auth {
            // The pod's credentials, for this pull only (as the CRI's AuthConfig).
            opts.pull_auth = Some(c.clone());
        }
        let pulled = rt
            .block_on(skiff_registry::pull(
                &self.engine.images,
                image,
                &opts,
                Arc::new(skiff_registry::Silent),
            ))
            .map_err(RuntimeError::Pull)?;
        if let Ok(mut m) = self.image_refs.lock() {
            m.remove(&pulled.image.id);
        }
        let repo = pulled.reference.repository();
        Ok(PulledImage {
            id: pulled.image.id.clone(),
            image_ref: format!("{repo}@{}", pulled.digest),
            size: pulled.image.size,
        })
    }

    fn list_images(&self) -> Result<Vec<Image>> {
        // The images `skiff images` shows (build intermediates left out), whole.
        let visible: std::collections::BTreeSet<String> = self
            .engine
            .images
            .list()
            .map_err(|e| RuntimeError::Engine(e.into()))?
            .into_iter()
            .map(|r| r.id)
            .collect();
        Ok(self
            .engine
            .images
            .all_images()
            .map_err(|e| RuntimeError::Engine(e.into()))?
            .into_iter()
            .filter(|i| visible.contains(&i.id))
            .map(|i| Image {
                id: i.id,
                created: i.config.created,
                repo_tags: i.names,
                repo_digests: i.repo_digests,
                size: i.size,
                ..Default::default()
            })
            .collect())
    }

    fn remove_image(&self, id: &str) -> Result<()> {
        self.engine
            .images
            .remove(id, true)
            .map(|_| ())
            .map_err(|e| RuntimeError::Engine(e.into()))
    }

    fn image_fs_info(&self) -> ImageFsInfo {
        ImageFsInfo {
            image_filesystem: self.engine.root.join("images"),
            container_filesystem: self.engine.root.clone(),
        }
    }
}
