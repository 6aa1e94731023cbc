//! Persistent container records: plain JSON files under `<root>/containers/<id>/`,
//! guarded by `flock`, so several skiff processes (CLIs, monitors, the node agent)
//! share them safely (see [`crate::persist`]).

use crate::persist::{read_json, write_json, Lock};
use crate::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// A process of the container exists (or is about to again).
    pub fn is_active(&self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// How a finished container's main process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ExitReason {
    Completed,
    Error,
    OOMKilled,
}

/// The mutable part of a container: `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub monitor_pid: i32,
    /// The monitor's start time (field 22 of `/proc/<pid>/stat`) to detect pid reuse.
    pub monitor_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub restart_count: u32,
    /// Set by stop/kill so the monitor does not apply the restart policy.
    pub manually_stopped: bool,
    pub cgroup: Option<skiff_runtime::cgroups::Cgroup>,
    pub exit_reason: Option<ExitReason>,
    /// Host ports this container holds (for conflict checks and `port`).
    #[serde(default)]
    pub ip_address: String,
    /// Published ports as bound (random host ports resolved).
    #[serde(default)]
    pub ports: Vec<crate::network::PortBinding>,
    /// How the run before the current one ended, once the container has been restarted
    /// (a pod container's `lastState`).
    #[serde(default)]
    pub last_run: Option<LastRun>,
}

/// A finished run of a restarted container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastRun {
    pub exit_code: i32,
    pub exit_reason: ExitReason,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One network interface of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetAttachment {
    pub network: String,
    pub network_id: String,
    pub bridge: crate::network::BridgeConfig,
    pub ip: std::net::Ipv4Addr,
    pub ifname: String,
    pub default_route: bool,
    pub aliases: Vec<String>,
}

/// The network plan the starter hands the monitor: `net.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetPlan {
    pub attachments: Vec<NetAttachment>,
    pub ports: Vec<crate::network::PortBinding>,
    /// Serve the embedded DNS at 127.0.0.11 inside the container.
    pub dns: bool,
}

impl NetPlan {
    pub fn primary_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.attachments.first().map(|a| a.ip)
    }
}

/// A mount as `inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "Mode")]
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    #[serde(rename = "Propagation")]
    pub propagation: String,
}

/// The immutable description of a container: `config.json`. Field names follow
/// docker's inspect output where one exists.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image reference as the user gave it.
    pub image: String,
    /// `"sha256:<hex>"`.
    pub image_id: String,
    pub path: String,
    pub args: Vec<String>,
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub exposed_ports: Vec<String>,
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
    pub mounts: Vec<MountPoint>,
    pub host: HostConfig,
    pub ports: Vec<crate::network::PortBinding>,
    /// Anonymous volumes created for this container (removed by `rm -v`).
    pub anonymous_volumes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: u32,
}

/// Kubelet-style restarts: every run starts from a fresh writable layer; the last
/// run's log is kept apart (`logs::previous_path`, for `kubectl logs --previous`);
/// the first restart is immediate, later ones wait a back-off doubling from
/// `backoff_initial_ms` up to `backoff_max_ms` (Kubernetes: 10 s and 300 s), which
/// resets once a run lasted twice the maximum.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodRuns {
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub readonly_rootfs: bool,
    pub tmpfs: BTreeMap<String, String>,
    pub ulimits: Vec<skiff_runtime::spec::Rlimit>,
    pub extra_hosts: Vec<String>,
    pub init: bool,
    pub uts_mode: String,
    pub pid_mode: String,
    pub ipc_mode: String,
    pub volumes_from: Vec<String>,
    pub links: Vec<String>,
    pub cgroup_parent: String,
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub resources: skiff_runtime::cgroups::Resources,
    pub nano_cpus: i64,
    pub oom_score_adj: Option<i32>,
    /// The terminal's first size (columns, rows), when the API's client gave one.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    pub group_add: Vec<String>,
    /// Skip the init layer and bind these managed files instead (node agent).
    #[serde(default)]
    pub managed_files: BTreeMap<String, String>,
    /// Networks joined with `network connect` besides `network_mode`.
    #[serde(default)]
    pub extra_networks: Vec<String>,
    /// Disconnected from `network_mode`'s network while not running (docker-compose
    /// disconnects and reconnects a new container to set its aliases): not joined at
    /// start until connected again.
    #[serde(default)]
    pub primary_detached: bool,
    /// Restarts as the kubelet does them (the node agent's containers), instead of
    /// docker's.
    #[serde(default)]
    pub pod_runs: Option<PodRuns>,
    /// Once the log reaches this many bytes it is rotated (`<log>.1`, `<log>.2`, …;
    /// json-file's max-size, the kubelet's containerLogMaxSize); 0: never.
    #[serde(default)]
    pub log_max_size: u64,
    /// How many log files are kept, the current one included (max-file,
    /// containerLogMaxFiles).
    #[serde(default)]
    pub log_max_files: u32,
    /// `--network-alias` names on user-defined networks.
    #[serde(default)]
    pub network_aliases: Vec<String>,
}

/// One container on disk.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
    pub state: State,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.record.id[..12]
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.record.id))
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> Result<Lock> {
        Lock::exclusive(&self.dir.join("lock"))
    }
    /// Re-read state.json.
    pub fn reload(&mut self) -> Result<()> {
        self.state = read_json(&self.state_path())?;
        Ok(())
    }
    /// Read-modify-write of the state under the container's lock.
    pub fn update_state(&mut self, f: impl FnOnce(&mut State)) -> Result<()> {
        let _l = self.lock()?;
        let mut st: State = read_json(&self.state_path())?;
        f(&mut st);
        write_json(&self.state_path(), &st)?;
        self.state = st;
        Ok(())
    }
}

/// Start time of a process (jiffies since boot), to tell a pid apart from a reuse.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    // A zombie (or dead) process is gone for our purposes.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// A path to `dir/name` short enough for a unix socket address (sun_path holds
/// 108 bytes; engine roots can be deep): through `/proc/self/fd` of an open
/// handle on `dir`, which the caller keeps while it uses the path.
pub fn short_socket_path(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let f =
        File::open(dir).map_err(|e| EngineError::io(format!("opening {}", dir.display()), e))?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", f.as_raw_fd()));
    Ok((f, p))
}

/// The zero time docker prints for a container that never ran.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
