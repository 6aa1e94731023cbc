//! `commit` and `cp`: a container's filesystem as data.

use crate::state::Status;
use crate::{Container, Engine, EngineError, Result};
use skiff_runtime::linux::copy_tree;
use skiff_runtime::sys;
use std::path::{Path, PathBuf};

/// Options of `skiff commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub author: Option<String>,
    pub message: Option<String>,
    pub pause: bool,
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

    /// Run `f` with the container's root filesystem visible at the path it is given:
    /// the live root of a running container, or the overlay mounted in a private mount
    /// namespace of a child process for a stopped one. The caller must be
    /// single-threaded.
    pub fn with_rootfs(
        &self,
        c: &Container,
        f: impl FnOnce(&Path) -> std::result::Result<(), CopyError>,
    ) -> Result<()> {
        if c.state.status.is_active() && c.state.pid > 0 {
            let root = PathBuf::from(format!("/proc/{}/root", c.state.pid));
            return f(&root).map_err(|e| EngineError::Invalid(e.to_string()));
        }
        let image = self.images.resolve(&c.record.image_id)?;
        let mut bottom_first = self.images.layer_dirs(&image);
        if c.record.host.managed_files.is_empty() {
            bottom_first.push(c.dir.join("init"));
        }
        let (lowers, base) = self.overlay_lowers(&bottom_first);
        let merged = c.dir.join("merged");
        let (r, w) = sys::pipe().map_err(|e| EngineError::io("pipe", e))?;
        // SAFETY: only the CLI's `cp` and the archive helper come here, from
        // single-threaded processes; the child unshares its mount namespace, mounts the
        // stopped container's overlay, runs `f` and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(EngineError::io("fork", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            sys::close(r);
            let res = (|| -> std::result::Result<(), String> {
                sys::unshare(libc::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
                sys::mount(
                    None,
                    Path::new("/"),
                    None,
                    libc::MS_REC | libc::MS_SLAVE,
                    None,
                )
                .map_err(|e| e.to_string())?;
                std::env::set_current_dir(&base).map_err(|e| e.to_string())?;
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
                    .map_err(|e| e.to_string())?;
                f(&merged).map_err(|e| e.to_string())
            })();
            if let Err(m) = res {
                let _ = sys::write_all(w, m.as_bytes());
                // SAFETY: a forked child leaves without running the parent's exit
                // handlers or destructors.
                unsafe { libc::_exit(1) };
            }
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
        sys::close(w);
        let msg = sys::read_to_end(r).unwrap_or_default();
        sys::close(r);
        let mut st = 0;
        // SAFETY: waitpid(2) writes one int, which `st` is.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if !msg.is_empty() || !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
            return Err(EngineError::Invalid(
                String::from_utf8_lossy(&msg).to_string(),
            ));
        }
        Ok(())
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
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CopyError + 'a {
        move |err| CopyError::Io {
            op,
            path: path.to_path_buf(),
            err,
        }
    }
}

/// Copy `src` to `dst` with `docker cp` semantics: into an existing directory by
/// base name, otherwise as `dst`; `src/.` copies a directory's content.
pub fn copy_path(src: &Path, dst: &Path, dst_text: &str) -> std::result::Result<(), CopyError> {
    let md =
        std::fs::symlink_metadata(src).map_err(|_| CopyError::SourceMissing(src.to_path_buf()))?;
    let contents_only = src.ends_with(".") || src.to_string_lossy().ends_with("/.");
    let target = if dst.is_dir() && !contents_only {
        dst.join(
            src.file_name()
                .ok_or_else(|| CopyError::SourceName(src.to_path_buf()))?,
        )
    } else {
        if dst_text.ends_with('/') && !dst.exists() {
            return Err(CopyError::NoDirectory(dst_text.to_string()));
        }
        dst.to_path_buf()
    };
    if md.is_dir() {
        std::fs::create_dir_all(&target).map_err(CopyError::io("creating", &target))?;
        copy_tree(src, &target).map_err(CopyError::io("copying to", &target))
    } else if md.file_type().is_symlink() {
        let l = std::fs::read_link(src).map_err(CopyError::io("reading the link", src))?;
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(l, &target).map_err(CopyError::io("creating the link", &target))
    } else {
        if let Some(p) = target.parent() {
            if !p.exists() {
                return Err(CopyError::NoDirectory(p.display().to_string()));
            }
        }
        std::fs::copy(src, &target)
            .map(|_| ())
            .map_err(CopyError::io("copying to", &target))
    }
}

/// A path inside a container root: `root` joined with `path` resolved in the root.
pub fn in_root(root: &Path, path: &str) -> PathBuf {
    let p = skiff_runtime::linux::resolve_in_root(root, Path::new(path));
    if path.ends_with("/.") {
        p.join(".")
    } else {
        p
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
