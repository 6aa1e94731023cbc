//! The description of one container process: what the runtime is asked to build.
//!
//! This is a deliberately small, serde-friendly subset of the OCI runtime spec: the
//! fields skiff's engine and node agent set. It is plain data; `linux` turns it into
//! namespaces, mounts, cgroups and an exec.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How one namespace kind is obtained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NsMode {
    /// A fresh namespace of this kind.
    #[default]
    New,
    /// The host's (the runtime caller's) namespace.
    Host,
    /// Join the namespace at this path (e.g. `/proc/<pid>/ns/net`).
    Join(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Namespaces {
    pub pid: NsMode,
    pub net: NsMode,
    pub ipc: NsMode,
    pub uts: NsMode,
    pub cgroup: NsMode,
}

/// The root filesystem of the container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay mounted inside the container's own mount namespace (so it can never
    /// leak onto the host). `lower` is listed top layer first, as overlayfs wants it;
    /// relative entries are resolved against `lower_base` (keeps the option short).
    Overlay {
        lower: Vec<PathBuf>,
        lower_base: Option<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// An existing directory used as is.
    Dir(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    #[default]
    Private,
    Rprivate,
    Slave,
    Rslave,
    Shared,
    Rshared,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path for binds; ignored for tmpfs.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: PathBuf,
    pub readonly: bool,
    /// Extra filesystem data (tmpfs: `size=64m,mode=1777`).
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub propagation: Propagation,
    /// Fill an empty source directory from the image's content at `destination`
    /// before mounting (docker's volume copy-up).
    #[serde(default)]
    pub copy_up: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` etc. as docker names them without the prefix: `nofile`.
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Path inside the container.
    pub path: PathBuf,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The process that becomes the container's PID 1 (or an exec'd process).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// A user spec as docker takes it (`uid`, `uid:gid`, `name`, `name:group`),
    /// resolved against the container's /etc/passwd and /etc/group after pivot_root.
    pub user: String,
    pub additional_gids: Vec<u32>,
    /// Capability names without the `CAP_` prefix (`CHOWN`), or `ALL`.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub rlimits: Vec<Rlimit>,
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
    /// Install the default seccomp profile (docker's default; off for privileged
    /// containers and `seccomp=unconfined`).
    #[serde(default)]
    pub seccomp: bool,
    /// The terminal's size (columns, rows) when `terminal` is set, applied before the
    /// process starts so it never sees an unsized terminal.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
}

/// Everything the runtime needs to create a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    pub hostname: Option<String>,
    pub rootfs: Rootfs,
    pub readonly_rootfs: bool,
    pub mounts: Vec<Mount>,
    pub process: Process,
    pub namespaces: Namespaces,
    /// Paths masked with /dev/null (files) or an empty read-only tmpfs (dirs).
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub privileged: bool,
    pub devices: Vec<Device>,
    /// Mount /sys read-only (false only for privileged containers).
    pub sys_readonly: bool,
    pub sysctl: Vec<(String, String)>,
}

/// docker's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// runc's default masked paths.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

impl ContainerSpec {
    /// A spec with docker's defaults for everything but the rootfs and the process.
    pub fn new(id: &str, rootfs: Rootfs, process: Process) -> Self {
        ContainerSpec {
            id: id.to_string(),
            hostname: None,
            rootfs,
            readonly_rootfs: false,
            mounts: Vec::new(),
            process,
            namespaces: Namespaces::default(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            privileged: false,
            devices: Vec::new(),
            sys_readonly: true,
            sysctl: Vec::new(),
        }
    }
}

/// The capability names known to this kernel's ABI, index = capability number.
pub const CAPABILITY_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Parse a capability name (`NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`) to its number.
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITY_NAMES
        .iter()
        .position(|c| *c == bare)
        .map(|i| i as u32)
}

/// Apply docker's `--cap-add`/`--cap-drop` rules to a base set.
pub fn adjust_capabilities(
    base: &[&str],
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, String> {
    let norm = |s: &str| -> Result<String, String> {
        let u = s.to_ascii_uppercase();
        let bare = u.strip_prefix("CAP_").unwrap_or(&u).to_string();
        if bare == "ALL" || capability_number(&bare).is_some() {
            Ok(bare)
        } else {
            Err(format!("invalid capability: {s}"))
        }
    };
    let add: Vec<String> = add.iter().map(|s| norm(s)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|s| norm(s)).collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        base.iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|a| a == "ALL") {
        caps = CAPABILITY_NAMES.iter().map(|s| s.to_string()).collect();
    } else {
        for a in add {
            if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_parse() {
        assert_eq!(capability_number("CAP_NET_ADMIN"), Some(12));
        assert_eq!(capability_number("sys_admin"), Some(21));
        assert_eq!(capability_number("nope"), None);
    }

    #[test]
    fn cap_add_drop() {
        let c = adjust_capabilities(
            DEFAULT_CAPABILITIES,
            &["NET_ADMIN".into()],
            &["chown".into()],
        )
        .unwrap();
        assert!(c.contains(&"NET_ADMIN".to_string()));
        assert!(!c.contains(&"CHOWN".to_string()));
        let c =
            adjust_capabilities(DEFAULT_CAPABILITIES, &["KILL".into()], &["ALL".into()]).unwrap();
        assert_eq!(c, vec!["KILL".to_string()]);
        assert!(adjust_capabilities(DEFAULT_CAPABILITIES, &["BOGUS".into()], &[]).is_err());
    }
}
