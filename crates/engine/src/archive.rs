//! A container's files as tar streams (`docker cp`, the Docker API's
//! `/containers/{id}/archive`), done by a helper process ([`Helper::Archive`]) that
//! chroots into the container's root first: every path, link and `..` then resolves
//! inside the container, whatever the container did to its tree, and nothing the
//! stream holds can land outside it.
//!
//! The helper's stdout carries, for a read, one line of JSON (docker's path stat:
//! `name`, `size`, `mode` as Go's `os.FileMode`, `mtime`, `linkTarget`) and then the
//! tar stream; for a write it reads the tar from stdin. It exits [`NOT_FOUND`] when the
//! path is not there, [`INVALID`] for a request that cannot be met (extraction into a
//! non-directory, a directory over a file), 1 for anything else, with the message on
//! stderr.
//!
//! [`Helper::Archive`]: crate::reexec::Helper::Archive

pub use crate::reexec::ArchiveOp;
use crate::Engine;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Exit code: the path (or the container) does not exist (the API's 404).
pub const NOT_FOUND: i32 = 2;
/// Exit code: the request cannot be met as asked (the API's 400).
pub const INVALID: i32 = 3;

/// A failure with the helper's exit code.
#[derive(Debug)]
struct Failure(i32, String);

/// `path` as an absolute path in the container (relative ones start at `/`, as
/// dockerd's), `.` and `..` resolved lexically; a trailing `/.` is kept (it means
/// "the directory's content" to `docker cp`).
fn container_path(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    if path.ends_with("/.") || path == "." {
        out.push(".");
    }
    out
}

/// Go's `os.FileMode` of a file: the permission bits and Go's type flags.
fn go_file_mode(md: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::FileTypeExt;
    let mode = md.permissions().mode();
    let mut m = (mode & 0o777) as u64;
    let ft = md.file_type();
    if ft.is_dir() {
        m |= 1 << 31;
    } else if ft.is_symlink() {
        m |= 1 << 27;
    } else if ft.is_block_device() {
        m |= 1 << 26;
    } else if ft.is_char_device() {
        m |= (1 << 26) | (1 << 21);
    } else if ft.is_fifo() {
        m |= 1 << 25;
    } else if ft.is_socket() {
        m |= 1 << 24;
    }
    if mode & 0o4000 != 0 {
        m |= 1 << 23;
    }
    if mode & 0o2000 != 0 {
        m |= 1 << 22;
    }
    if mode & 0o1000 != 0 {
        m |= 1 << 20;
    }
    m
}

/// The name a path's entries carry in the stream: its base name (`.` for a
/// directory's content or the root).
fn entry_name(p: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().ends_with(b"/.") {
        return PathBuf::from(".");
    }
    p.file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A failed stat of `shown`: [`NOT_FOUND`] when it is not there.
fn stat_failure(shown: &str) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure(
                NOT_FOUND,
                format!("Could not find the file {shown} in container"),
            )
        } else {
            Failure(1, format!("stat {shown}: {e}"))
        }
    }
}

/// docker's path stat of `p` (its last link not followed) as one JSON line.
fn stat_line(p: &Path, shown: &str) -> Result<(std::fs::Metadata, String), Failure> {
    let md = std::fs::symlink_metadata(p).map_err(stat_failure(shown))?;
    let link_target = if md.file_type().is_symlink() {
        // The link resolved in the container (we are chrooted into it).
        std::fs::canonicalize(p)
            .map(|t| t.display().to_string())
            .or_else(|_| std::fs::read_link(p).map(|t| t.display().to_string()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(md.mtime(), md.mtime_nsec() as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let name = entry_name(p);
    let v = serde_json::json!({
        "name": name.display().to_string(),
        "size": md.size(),
        "mode": go_file_mode(&md),
        "mtime": mtime,
        "linkTarget": link_target,
    });
    Ok((md, v.to_string()))
}

fn get(path: &str, with_tar: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let p = container_path(path);
    let (md, line) = stat_line(&p, path)?;
    let io = |e: std::io::Error| Failure(1, format!("archiving {path}: {e}"));
    writeln!(out, "{line}").map_err(io)?;
    if !with_tar {
        return Ok(());
    }
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let name = entry_name(&p);
    if md.is_dir() {
        b.append_dir_all(&name, &p).map_err(io)?;
    } else {
        b.append_path_with_name(&p, &name).map_err(io)?;
    }
    b.into_inner().map_err(io)?.flush().map_err(io)
}

/// `docker export`: the stat line of `/`, then every entry of the root's own
/// filesystem, named without a leading `/`. What another filesystem has mounted over
/// it (volumes, `/proc`, `/dev`, the managed `/etc` files, a running container's
/// mounts) appears as the place it sits at, an empty directory or file, as docker's
/// export of the container's layers shows it; sockets are left out.
fn export(out: &mut dyn Write) -> Result<(), Failure> {
    let root = Path::new("/");
    let (md, line) = stat_line(root, "/")?;
    let io = |e: std::io::Error| Failure(1, format!("exporting the container: {e}"));
    writeln!(out, "{line}").map_err(io)?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    export_dir(&mut b, root, md.dev()).map_err(io)?;
    b.into_inner().map_err(io)?.flush().map_err(io)
}

fn export_dir(b: &mut tar::Builder<&mut dyn Write>, dir: &Path, dev: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let mut names = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Gone since the listing (a running container's files change).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let rel = path.strip_prefix("/").unwrap_or(&path);
        let ft = md.file_type();
        if ft.is_socket() {
            continue;
        }
        if md.dev() != dev {
            if !(ft.is_dir() || ft.is_file()) {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&md);
            h.set_size(0);
            b.append_data(&mut h, rel, std::io::empty())?;
            continue;
        }
        b.append_path_with_name(&path, rel)?;
        if ft.is_dir() {
            export_dir(b, &path, dev)?;
        }
    }
    Ok(())
}

fn put(
    path: &str,
    input: impl Read,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
) -> Result<(), Failure> {
    let dst = container_path(path);
    let md = std::fs::metadata(&dst).map_err(stat_failure(path))?;
    if !md.is_dir() {
        return Err(Failure(
            INVALID,
            "extraction point is not a directory".into(),
        ));
    }
    let mut input = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut input)
        .map_err(|e| Failure(1, format!("reading the archive: {e}")))?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(copy_uid_gid);
    ar.set_overwrite(true);
    let bad = |e: std::io::Error| Failure(INVALID, format!("invalid archive: {e}"));
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let rel = entry.path().map_err(bad)?.into_owned();
        let is_dir = entry.header().entry_type().is_dir();
        if no_overwrite_dir_non_dir {
            let target = dst.join(&rel);
            if let Ok(existing) = std::fs::symlink_metadata(&target) {
                let shown = target.display();
                if existing.is_dir() && !is_dir {
                    return Err(Failure(
                        INVALID,
                        format!("cannot overwrite directory \"{shown}\" with non-directory"),
                    ));
                }
                if !existing.is_dir() && is_dir {
                    return Err(Failure(
                        INVALID,
                        format!("cannot overwrite non-directory \"{shown}\" with directory"),
                    ));
                }
            }
        }
        entry
            .unpack_in(&dst)
            .map_err(|e| Failure(1, format!("extracting {}: {e}", rel.display())))?;
    }
    Ok(())
}

/// The archive helper's body: the container's root, chrooted into, then `op` on
/// `path`; never returns.
pub fn helper_main(root: &Path, id: &str, op: &ArchiveOp, path: &str) -> ! {
    let fail = |code: i32, message: String| -> ! {
        eprintln!("{message}");
        std::process::exit(code)
    };
    let engine = match Engine::open(root, Path::new("/proc/self/exe")) {
        Ok(e) => e,
        Err(e) => fail(1, e.to_string()),
    };
    let c = match engine.get(id) {
        Ok(c) => c,
        Err(e) => fail(NOT_FOUND, e.to_string()),
    };
    let croot = match engine.enter_rootfs(&c) {
        Ok(p) => p,
        Err(e) => fail(1, e.to_string()),
    };
    let run = || -> Result<(), Failure> {
        let chroot = |e: std::io::Error| Failure(1, format!("entering the container's root: {e}"));
        std::os::unix::fs::chroot(&croot).map_err(chroot)?;
        std::env::set_current_dir("/").map_err(chroot)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match op {
            ArchiveOp::Get => get(path, true, &mut out),
            ArchiveOp::Stat => get(path, false, &mut out),
            ArchiveOp::Export => export(&mut out),
            ArchiveOp::Put {
                no_overwrite_dir_non_dir,
                copy_uid_gid,
            } => put(
                path,
                std::io::stdin().lock(),
                *no_overwrite_dir_non_dir,
                *copy_uid_gid,
            ),
        }
    };
    match run() {
        Ok(()) => {
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
        Err(Failure(code, message)) => {
            let _ = std::io::stdout().flush();
            fail(code, message)
        }
    }
}

impl Engine {
    /// The archive helper for `op` on `path` in the container `id` (stdout and stderr
    /// piped; the caller sets stdin for a write).
    pub fn archive_command(&self, id: &str, op: ArchiveOp, path: &str) -> std::process::Command {
        let mut cmd = crate::reexec::Helper::Archive {
            id: id.to_string(),
            op,
            path: path.to_string(),
        }
        .command(&self.exe, &self.root);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }
}

/// docker's path stat as the helper reports it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PathStat {
    pub name: String,
    pub size: u64,
    /// Go's `os.FileMode`.
    pub mode: u64,
    #[serde(rename = "linkTarget", default)]
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & (1 << 31) != 0
    }
}

/// The host side of `docker cp CONTAINER:SRC DST`: `input` is the helper's tar of SRC
/// (its entries under `stat.name`), written to `dst` by docker's rules: into an
/// existing directory under its own name (its content for `SRC/.`), else as `dst`
/// (whose directory must exist). Owners are not kept, as the docker CLI's.
pub fn extract_to_host(
    input: impl Read,
    stat: &PathStat,
    dst: &Path,
    dst_text: &str,
) -> Result<(), crate::files::CopyError> {
    use crate::files::CopyError;
    let dst_md = std::fs::metadata(dst).ok();
    let contents_only = stat.name == ".";
    // (directory to extract into, the name the top entry gets there)
    let (into, rename): (PathBuf, Option<std::ffi::OsString>) = match &dst_md {
        Some(m) if m.is_dir() => (dst.to_path_buf(), None),
        Some(_) if stat.is_dir() => {
            return Err(CopyError::NoDirectory(format!(
                "cannot copy a directory to the file {dst_text}"
            )))
        }
        _ => {
            if dst_md.is_none() && dst_text.ends_with('/') {
                return Err(CopyError::NoDirectory(dst_text.to_string()));
            }
            let parent = match dst.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !parent.is_dir() {
                return Err(CopyError::NoDirectory(parent.display().to_string()));
            }
            let name = dst
                .file_name()
                .ok_or_else(|| CopyError::SourceName(dst.to_path_buf()))?
                .to_os_string();
            if contents_only {
                std::fs::create_dir_all(dst).map_err(CopyError::io("creating", dst))?;
                (dst.to_path_buf(), None)
            } else {
                (parent, Some(name))
            }
        }
    };
    // A copy to a new name is unpacked into a fresh directory beside it first, then
    // renamed: every entry goes through the tar reader's checks (nothing lands
    // outside the directory it is unpacked in, through links or `..`).
    let staging = match &rename {
        Some(_) => {
            Some(tempfile_dir(&into).map_err(CopyError::io("creating a directory in", &into))?)
        }
        None => None,
    };
    let unpack_at = staging.clone().unwrap_or_else(|| into.clone());
    let result = (|| {
        let mut ar = tar::Archive::new(input);
        ar.set_preserve_permissions(true);
        ar.set_preserve_mtime(true);
        ar.set_overwrite(true);
        let bad = CopyError::io("reading the archive for", dst);
        for entry in ar.entries().map_err(bad)? {
            let mut entry = entry.map_err(CopyError::io("reading the archive for", dst))?;
            let path = entry
                .path()
                .map_err(CopyError::io("reading the archive for", dst))?
                .into_owned();
            if !entry
                .unpack_in(&unpack_at)
                .map_err(CopyError::io("extracting into", &unpack_at))?
            {
                return Err(CopyError::SourceName(path));
            }
        }
        if let (Some(dir), Some(name)) = (&staging, &rename) {
            let from = dir.join(&stat.name);
            let to = into.join(name);
            std::fs::rename(&from, &to).map_err(CopyError::io("renaming to", &to))?;
        }
        Ok(())
    })();
    if let Some(dir) = staging {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// A new, empty directory in `parent` (for staging a copy).
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    for _ in 0..16 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(std::io::Error::other)?;
        let p = parent.join(format!(".skiff-cp-{}", hex::encode(b)));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no free name for a staging directory",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(container_path("etc/hosts"), PathBuf::from("/etc/hosts"));
        assert_eq!(container_path("/a/../../b"), PathBuf::from("/b"));
        assert_eq!(container_path("/dir/."), PathBuf::from("/dir/."));
        assert_eq!(container_path("/"), PathBuf::from("/"));
        assert_eq!(entry_name(&container_path("/dir/.")), PathBuf::from("."));
        assert_eq!(entry_name(&container_path("/a/b")), PathBuf::from("b"));
        assert_eq!(entry_name(Path::new("/")), PathBuf::from("."));
    }

    /// A tar of one entry.
    fn one_entry(kind: tar::EntryType, mode: u32, name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn stat_get_and_put_in_a_tree() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().to_str().unwrap().to_string();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        std::fs::write(d.path().join("dir/f"), "hi").unwrap();
        std::fs::write(d.path().join("file"), "x").unwrap();
        let mut out = Vec::new();
        get(&format!("{base}/dir"), true, &mut out).unwrap();
        let nl = out.iter().position(|&b| b == b'\n').unwrap();
        let stat: serde_json::Value = serde_json::from_slice(&out[..nl]).unwrap();
        assert_eq!(stat["name"], "dir");
        assert_eq!(stat["mode"].as_u64().unwrap() >> 31, 1);
        let mut names: Vec<String> = tar::Archive::new(&out[nl + 1..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["dir/", "dir/f"]);
        // A directory's content: entries under `.`.
        let mut out = Vec::new();
        get(&format!("{base}/dir/."), true, &mut out).unwrap();
        let nl = out.iter().position(|&b| b == b'\n').unwrap();
        let mut names: Vec<String> = tar::Archive::new(&out[nl + 1..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["./", "f"]);
        assert_eq!(
            get(&format!("{base}/nope"), false, &mut Vec::new())
                .err()
                .map(|f| f.0),
            Some(NOT_FOUND)
        );
        // Into the tree: a directory over the file `file` is refused.
        let t = one_entry(tar::EntryType::Directory, 0o755, "file", b"");
        let f = put(&base, &t[..], true, false).err().unwrap();
        assert_eq!(f.0, INVALID, "{}", f.1);
        assert_eq!(
            put(&format!("{base}/file"), &t[..], true, false)
                .err()
                .map(|f| f.0),
            Some(INVALID)
        );
        // The directory's content went back in, renamed.
        let t = one_entry(tar::EntryType::Regular, 0o600, "new/g", b"abc");
        put(&format!("{base}/dir"), &t[..], true, false).unwrap();
        assert_eq!(std::fs::read(d.path().join("dir/new/g")).unwrap(), b"abc");
    }
}
