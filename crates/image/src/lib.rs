//! skiff-image: the content-addressed image store under `<engine root>/images`.
//!
//! Owns: sha256 blobs (layer tars, configs, manifests) in OCI form, layers unpacked once
//! as overlayfs snapshots (`layers/<diff-id>/fs`, whiteouts in overlay form), image names
//! (`repositories.json`, flock-protected), commit of an overlay upper dir into a layer,
//! import of rootfs tarballs, save/load of OCI / docker-save archives, Dockerfile parsing
//! and the classic-builder style build with its cache.
//!
//! Layout under the directory given to [`ImageStore::open`] (`<root>/images`):
//! - `blobs/sha256/<hex>`: immutable blobs (uncompressed layer tars, configs, manifests),
//!   written to a temp file, fsync'd and renamed.
//! - `layers/<diff-id hex>/fs/`: a layer unpacked once (OCI whiteouts as overlayfs char
//!   0/0 devices and `trusted.overlay.opaque=y`), `layers/<hex>/size`: its unpacked size.
//! - `repositories.json`: names → manifest digest and image id → record (parent,
//!   intermediate); every read-modify-write under `flock(repositories.lock)`.
//! - `gc.lock`: held shared by writers (import, commit, load, build), exclusively by gc.
//! - `distribution/<diff-id hex>.json`: the registry blobs a layer is known as (for
//!   push to skip or mount them).
//! - `buildcache/<key>`: build cache entries (→ image id); `tmp/`: scratch dirs.
//!
//! Must not know about: containers, their state or runtimes. RUN steps of a build go
//! through the [`StepRunner`] trait, which the engine implements; whether an image is in
//! use by a container is the engine's business to check before calling
//! [`ImageStore::remove`].

mod archive;
mod build;
mod config;
mod distribution;
mod dockerfile;
mod error;
mod ignore;
mod layer;
pub mod lock;
mod reference;
mod store;
mod user;

pub use build::{
    apply_changes, build, unpack_context, BuildOptions, RunStep, StepError, StepRunner,
    DEFAULT_PATH,
};
pub use config::{host_arch, ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use distribution::LayerSource;
pub use dockerfile::{parse_dockerfile, Dockerfile, Heredoc, Instruction};
pub use error::{ImageError, Result};
pub use ignore::IgnoreMatcher;
pub use reference::{
    familiar_name, is_digest, normalize_reference, parse_reference, split_repo_tag, Reference,
};
pub use store::{
    short_id, CommitOptions, HistoryEntry, Image, ImageStore, ImageSummary, LayerInfo, RemoveEvent,
};
pub use user::{lookup_user, lookup_user_in_rootfs, UserIds};
