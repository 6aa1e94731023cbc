//! What pulls and pushes report as they go, for the CLI to print.

/// The state of one layer, in docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerStatus {
    /// Pull: queued (`Pulling fs layer`).
    Waiting,
    /// Pull: bytes received of `total` (0 when unknown).
    Downloading {
        current: u64,
        total: u64,
    },
    /// Pull: all bytes in, digest being checked.
    Verifying,
    DownloadComplete,
    Extracting,
    PullComplete,
    /// Pull: the layer was stored already.
    AlreadyExists,
    /// Push: about to be checked.
    Preparing,
    /// Push: bytes sent of `total`.
    Pushing {
        current: u64,
        total: u64,
    },
    Pushed,
    /// Push: the registry has the blob.
    LayerAlreadyExists,
    /// Push: mounted from another repository of the registry.
    MountedFrom(String),
}

impl LayerStatus {
    /// docker's text for the status (without a progress bar).
    pub fn text(&self) -> String {
        match self {
            LayerStatus::Waiting => "Pulling fs layer".into(),
            LayerStatus::Downloading { .. } => "Downloading".into(),
            LayerStatus::Verifying => "Verifying Checksum".into(),
            LayerStatus::DownloadComplete => "Download complete".into(),
            LayerStatus::Extracting => "Extracting".into(),
            LayerStatus::PullComplete => "Pull complete".into(),
            LayerStatus::AlreadyExists => "Already exists".into(),
            LayerStatus::Preparing => "Preparing".into(),
            LayerStatus::Pushing { .. } => "Pushing".into(),
            LayerStatus::Pushed => "Pushed".into(),
            LayerStatus::LayerAlreadyExists => "Layer already exists".into(),
            LayerStatus::MountedFrom(r) => format!("Mounted from {r}"),
        }
    }
}

/// Receives progress; called from several tasks at once.
pub trait Progress: Send + Sync {
    /// The manifest was found: `latest: Pulling from library/busybox`.
    fn pulling_from(&self, _tag_or_digest: &str, _path: &str) {}
    /// A layer (by its short digest) changed state.
    fn layer(&self, _id: &str, _status: LayerStatus) {}
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {}
