//! What a removed container leaves behind: its address on its networks, its
//! anonymous volumes and its directory. Shared by `rm` and by a monitor removing
//! its container (`--rm`).

use crate::{volumes, Container};
use std::fs;
use std::path::Path;

/// Remove everything a container left on disk (its directory and anonymous volumes).
pub fn remove_files(root: &Path, c: &Container) {
    crate::network::release_ip(root, &c.record.id);
    for v in &c.record.anonymous_volumes {
        if let Err(e) = volumes::remove(root, v) {
            tracing::warn!(container = %c.record.id, volume = %v, error = %e, "removing an anonymous volume");
        }
    }
    crate::events::container(root, c, "destroy", &[]);
    if let Err(e) = fs::remove_dir_all(&c.dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(container = %c.record.id, error = %e, "removing the container's directory");
        }
    }
}
