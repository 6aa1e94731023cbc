//! Error type of the image crate.

use std::path::Path;

/// Everything that can go wrong in the image store and the builder.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image matches the reference (message is docker's).
    #[error("No such image: {0}")]
    NotFound(String),
    /// An id prefix matched more than one image.
    #[error("ambiguous image reference {0}: it matches more than one image id")]
    Ambiguous(String),
    /// A reference that docker's grammar rejects.
    #[error("invalid reference format: {reference}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A file-system operation failed; `context` says which and on what path. The OS
    /// error is part of the message and kept in `err` (not repeated as a source).
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    /// A JSON document could not be read or written.
    #[error("{context}: {err}")]
    Json {
        context: String,
        err: serde_json::Error,
    },
    /// Content (an archive, a manifest, a layer) that is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A Dockerfile syntax or semantic error, with file and line.
    #[error("{file}:{line}: {message}")]
    Dockerfile {
        file: String,
        line: usize,
        message: String,
    },
    /// A build step failed.
    #[error("{0}")]
    Build(String),
    /// A RUN step failed in the runner.
    #[error("{message}")]
    Step {
        message: String,
        exit_code: Option<i32>,
    },
    /// A feature this crate does not implement (yet).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// The operation conflicts with the store's state.
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Result alias of this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            err: source,
        }
    }
    pub(crate) fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json {
            context: context.into(),
            err: source,
        }
    }
}

/// Adds a context message to io results.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T>;
    fn ctx_msg(self, msg: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|e| ImageError::io(format!("{what} {}", path.display()), e))
    }
    fn ctx_msg(self, msg: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| ImageError::io(msg(), e))
    }
}
