//! skiff-runtime: the low-level container.
//!
//! Owns namespaces, cgroups (v1 and v2 behind one type), the root filesystem (overlay
//! mounted inside the container's own mount namespace, pivot_root, /proc /dev /sys,
//! masked paths), capabilities, rlimits, users, and entering a running container.
//! Input is a [`spec::ContainerSpec`]. It knows nothing of images, state files,
//! networks or Kubernetes, and uses no async runtime: callers that fork must be
//! single-threaded.

pub mod cgroups;
pub mod devices_bpf;
pub mod linux;
pub mod sealed;
pub mod seccomp;
pub mod spec;
pub mod sys;

pub use linux::{create, exec, Created, ExecTarget, Started, Stdio};
pub use spec::ContainerSpec;

/// Why a process could not be started: docker's exit codes (127 not found,
/// 126 not executable) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFailure {
    pub code: i32,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroups: {0}")]
    Cgroup(String),
    #[error("{0}")]
    Sys(String),
    #[error("{}", .0.message)]
    Exec(ExecFailure),
    #[error("{0}")]
    Invalid(String),
}
