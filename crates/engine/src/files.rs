//! `commit` and `cp`: a container's filesystem as data.

use crate::state::Status;
use crate::{Container, Engine, EngineError, Result};
use skiff_runtime::sys;
use std::path::{Path, PathBuf};

/// Options of `skiff commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub author: Option<String>,
    pub message: Option<String>,
    pub pause: bool,
    /// Dockerfile instructions applied to the image's config (`--change`: CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR).
    pub changes: Vec<String>,
}

impl Engine {
    /// Make the container's writable layer a new image layer on top of its image.
    /// Volumes are bind mounts, so their data is not in the layer.
    pub fn commit(
        &self,
        reference: &str,
        repo: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<skiff_image::Image> {
        let c = self.get(reference)?;
        let base = self.images.resolve(&c.record.image_id)?;
        let r = &c.record;
        let mut cfg = base.config.config.clone();
        cfg.env = r.env.clone();
        cfg.cmd = r.cmd.clone();
        cfg.entrypoint = r.entrypoint.clone();
        cfg.working_dir = r.working_dir.clone();
        cfg.user = r.user.clone();
        cfg.labels = r.labels.clone();
        let changes: Vec<&str> = opts.changes.iter().map(String::as_str).collect();
        skiff_image::apply_changes(&mut cfg, &changes)?;
        let freeze = opts.pause && c.state.status == Status::Running;
        let cg = c.state.cgroup.clone();
        if freeze {
            if let Some(g) = &cg {
                g.freeze(true)?;
            }
        }
        let result = self.images.commit(
            Some(&base),
            &c.dir.join("upper"),
            skiff_image::CommitOptions {
                config: cfg,
                author: opts.author.clone(),
                comment: opts.message.clone(),
                created_by: Some(format!("{} {}", r.path, r.args.join(" "))),
            },
            repo,
        );
        if freeze {
            if let Some(g) = &cg {
                let _ = g.freeze(false);
            }
        }
        Ok(result?)
    }

    /// `docker diff`: what the container changed in its filesystem, from its writable
    /// layer (read here without following links), sorted by path. A whiteout is a
    /// deletion; an entry the image's layers also have is a change, else an addition
    /// (docker's kinds: 0 changed, 1 added, 2 deleted).
    pub fn changes(&self, reference: &str) -> Result<Vec<(String, u8)>> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let c = self.get(reference)?;
        let image = self.images.resolve(&c.record.image_id)?;
        let mut lowers = self.images.layer_dirs(&image);
        if c.record.host.managed_files.is_empty() {
            lowers.push(c.dir.join("init"));
        }
        let in_lower = |rel: &Path| {
            lowers
                .iter()
                .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
        };
        let upper = c.dir.join("upper");
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let Ok(dir) = std::fs::read_dir(upper.join(&rel)) else {
                continue;
            };
            for entry in dir.flatten() {
                let rel = rel.join(entry.file_name());
                let Ok(md) = entry.metadata() else { continue };
                let shown = format!("/{}", rel.display());
                if md.file_type().is_char_device() && md.rdev() == 0 {
                    out.push((shown, 2));
                    continue;
                }
                out.push((shown, if in_lower(&rel) { 0 } else { 1 }));
                if md.is_dir() {
                    stack.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The container's root filesystem, made visible to this process: the live root
    /// of a running container (`/proc/PID/root`), or, for a stopped one, its overlay
    /// mounted in a mount namespace this process unshares for itself. Only for a
    /// single-threaded process that does nothing else afterwards (the archive helper).
    pub fn enter_rootfs(&self, c: &Container) -> Result<PathBuf> {
        if c.state.status.is_active() && c.state.pid > 0 {
            return Ok(PathBuf::from(format!("/proc/{}/root", c.state.pid)));
        }
        let image = self.images.resolve(&c.record.image_id)?;
        let mut bottom_first = self.images.layer_dirs(&image);
        if c.record.host.managed_files.is_empty() {
            bottom_first.push(c.dir.join("init"));
        }
        let (lowers, base) = self.overlay_lowers(&bottom_first);
        let merged = c.dir.join("merged");
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            EngineError::Invalid(format!("mounting the container's root ({what}): {e}"))
        };
        sys::unshare(libc::CLONE_NEWNS).map_err(|e| failed("unshare", &e))?;
        sys::mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_SLAVE,
            None,
        )
        .map_err(|e| failed("mount", &e))?;
        std::env::set_current_dir(&base).map_err(|e| failed("chdir", &e))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lowers
                .iter()
                .map(|p| p.to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            c.dir.join("upper").display(),
            c.dir.join("work").display()
        );
        sys::mount(Some("overlay"), &merged, Some("overlay"), 0, Some(&data))
            .map_err(|e| failed("overlay", &e))?;
        Ok(merged)
    }
}

/// Why a `docker cp` copy failed; the messages are docker's.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source path does not exist.
    #[error("Could not find the file {} in the source", .0.display())]
    SourceMissing(PathBuf),
    /// The source path has no last component to name the copy by (`/`, `..`).
    #[error("invalid source path {}", .0.display())]
    SourceName(PathBuf),
    /// The destination's directory does not exist.
    #[error("no such directory: {0}")]
    NoDirectory(String),
    /// A filesystem call failed on `path`.
    #[error("{op} {}: {err}", path.display())]
    Io {
        /// What was being done (`creating`, `copying to`, …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error of the call.
        err: std::io::Error,
    },
}

impl CopyError {
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> CopyError + 'a {
        move |err| CopyError::Io {
            op,
            path: path.to_path_buf(),
            err,
        }
    }
}

/// Bytes of the regular files under `dir` (not following links, staying on its
/// filesystem).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != top.dev() {
                continue;
            }
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}
