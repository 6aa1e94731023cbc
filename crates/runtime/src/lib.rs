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

/// Errors of the runtime. Each message is one line that says everything once: a
/// system call's failure names what was being done and the OS error, and keeps that
/// error (errno) in [`Error::os_error`] rather than as a second link of the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroups: {0}")]
    Cgroup(String),
    #[error("{op}: {err}")]
    Sys { op: String, err: std::io::Error },
    #[error("{0}")]
    Protocol(String),
    #[error("{}", .0.message)]
    Exec(ExecFailure),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A failed system call: what was being done, and the OS error.
    pub fn sys(op: impl Into<String>, err: std::io::Error) -> Error {
        Error::Sys { op: op.into(), err }
    }

    /// The OS error number behind a failed system call, if that is what this is.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Error::Sys { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}
