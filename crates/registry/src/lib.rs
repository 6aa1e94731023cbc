//! skiff-registry: the OCI distribution (Docker Registry HTTP API v2) client.
//!
//! Owns: talking to registries (HTTPS with the system's roots and docker's
//! `certs.d/HOST:PORT/` files, plain HTTP for insecure and loopback registries), their
//! authentication (anonymous, `Basic`, the `Bearer` token flow) with credentials from a
//! docker `config.json` (`credentials`), manifests and indexes (`manifest`), `pull` into
//! the image store (blobs streamed and checked against their digests, several layers at
//! once, present layers skipped) and `push` from it (blobs the registry has skipped,
//! cross-repository mounts, monolithic or chunked uploads).
//!
//! Must not know about: containers, the engine, Kubernetes. Storage is the image
//! crate's (`skiff_image::ImageStore`); what to print is the caller's (`progress`).

mod client;
pub mod credentials;
mod error;
pub mod manifest;
pub mod mirrors;
mod progress;
mod pull;
mod push;
mod tls;

pub use client::{is_loopback, Options, Registry};
pub use credentials::{AuthFile, Credentials};
pub use error::{Error, Result};
pub use mirrors::{endpoint_host, Endpoint, RegistriesConfig};
pub use progress::{LayerStatus, Progress, Silent};
pub use pull::{distribution, pull, short_digest, Distribution, Pulled};
pub use push::{push, PushOptions, Pushed, DEFAULT_CHUNK_SIZE};

/// Verifies `creds` against the registry `server` (`localhost:5000`, `docker.io`).
pub async fn login(server: &str, opts: &Options, creds: Credentials) -> Result<()> {
    let reg = Registry::connect(server, opts, Some(creds)).await?;
    reg.check_login().await
}
