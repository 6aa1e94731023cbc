//! skiff-engine: containers as users see them.
//!
//! Owns create/start/stop/rm, the per-container monitor process (logs, exit codes,
//! restart policy), volumes, the persistent state (plain files + flock, shared by
//! concurrent CLIs and the node agent), and networks. It builds on `skiff-image` for
//! root filesystems and `skiff-runtime` for processes; it knows nothing of Kubernetes.
//! The CLI is a thin layer over this library; the node agent calls it in-process.

pub mod archive;
pub mod build;
pub mod cgroups;
pub mod cleanup;
pub mod create;
pub mod dns;
pub mod events;
pub mod exec;
pub mod files;
pub mod helpers;
pub mod logs;
pub mod monitor;
pub mod names;
pub mod network;
pub mod ops;
pub mod persist;
pub mod proxy;
pub mod reexec;
pub mod relay;
pub mod sandbox;
pub mod state;
pub mod volumes;

use skiff_image::ImageStore;
use std::path::{Path, PathBuf};

pub use create::{CreateOptions, Limits};
pub use state::{Container, Record, State, Status};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("Multiple containers match prefix {0}; use more characters")]
    Ambiguous(String),
    #[error("Conflict. {0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A file-system or system call failed: what was being done, and the OS error,
    /// said once (the error, with its errno, is kept in `err`, not as a source).
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    #[error("corrupt state: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Image(#[from] skiff_image::ImageError),
    #[error(transparent)]
    Runtime(#[from] skiff_runtime::Error),
    /// The container's command could not be started (exit code 126/127 as docker).
    #[error("{message}")]
    Start { code: i32, message: String },
    #[error("{0}")]
    NotRunning(String),
    /// An image a container uses (docker's "conflict: unable to …" wording).
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Unsupported(String),
}

impl EngineError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            err: source,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The engine rooted at one directory (`--root`, default /var/lib/skiff).
pub struct Engine {
    pub root: PathBuf,
    pub images: ImageStore,
    /// The skiff binary, re-executed for monitors (under `cargo test` the current
    /// executable is the test binary, so callers pass it explicitly; a sealed skiff
    /// passes `/proc/self/exe`, see [`skiff_runtime::sealed::helper_exe`]).
    pub exe: PathBuf,
    /// The bridge network's parameters, used when the root's network is first
    /// created (afterwards the persisted ones win).
    pub bridge: network::BridgeConfig,
}

impl Engine {
    /// Open (creating if needed) the engine root, then reconcile stale state left by
    /// monitors that died.
    pub fn open(root: &Path, exe: &Path) -> Result<Engine> {
        for d in ["containers", "volumes", "images"] {
            std::fs::create_dir_all(root.join(d))
                .map_err(|e| EngineError::io(format!("creating {}", root.join(d).display()), e))?;
        }
        let images = ImageStore::open(&root.join("images"))?;
        let e = Engine {
            root: root.to_path_buf(),
            images,
            exe: exe.to_path_buf(),
            bridge: network::BridgeConfig::default(),
        };
        e.reconcile()?;
        Ok(e)
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }
}
