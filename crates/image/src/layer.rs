//! Layers: unpacking OCI layer tars into overlay snapshots (whiteouts become overlayfs
//! whiteouts), turning an overlay upper dir back into an OCI layer tar, and a read-only
//! merged view over a stack of snapshots (for the builder).

use crate::error::{ImageError, IoContext, Result};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| ImageError::Invalid(format!("path contains a NUL byte: {}", p.display())))
}

/// Reads an extended attribute without following symlinks; `None` if absent.
pub(crate) fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = cpath(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let r = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Sets an extended attribute without following symlinks.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let p = cpath(path)?;
    let n =
        CString::new(name).map_err(|_| ImageError::Invalid(format!("bad xattr name {name}")))?;
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(ImageError::io(
            format!("setting xattr {name} on {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether `meta` is an overlayfs whiteout (character device 0/0).
pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether the directory at `path` is marked opaque for overlayfs.
pub(crate) fn is_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|x| get_xattr(path, x).is_some_and(|v| v == b"y"))
}

fn mknod(
    path: &Path,
    kind: nix::sys::stat::SFlag,
    mode: u32,
    major: u64,
    minor: u64,
) -> Result<()> {
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(mode as libc::mode_t),
        dev,
    )
    .map_err(|e| ImageError::io(format!("mknod {}", path.display()), e.into()))
}

/// Makes an overlayfs whiteout at `path`.
pub(crate) fn make_whiteout(path: &Path) -> Result<()> {
    mknod(path, nix::sys::stat::SFlag::S_IFCHR, 0, 0, 0)
}

/// Removes whatever is at `path` (file, symlink or directory tree); absent is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx("removing", path),
        Ok(_) => fs::remove_file(path).ctx("removing", path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io(format!("stat {}", path.display()), e)),
    }
}

/// The relative, `..`-free form of an archive path; `None` for entries to skip.
fn sanitize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Creates `dest/rel`'s parent and checks it did not escape `dest` through a symlink.
fn safe_parent(dest: &Path, canon_dest: &Path, rel: &Path) -> Result<PathBuf> {
    let parent = match rel.parent() {
        Some(p) => dest.join(p),
        None => dest.to_path_buf(),
    };
    fs::create_dir_all(&parent).ctx("creating", &parent)?;
    let canon = fs::canonicalize(&parent).ctx("resolving", &parent)?;
    if !canon.starts_with(canon_dest) {
        return Err(ImageError::Invalid(format!(
            "layer entry {} escapes the layer root",
            rel.display()
        )));
    }
    Ok(parent)
}

fn set_mtime(path: &Path, mtime: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    if let Ok(f) = fs::File::open(path) {
        let _ = f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t));
    }
}

/// Unpacks an (uncompressed) OCI layer tar into `dest`, converting OCI whiteouts into
/// overlayfs form. Returns the sum of the regular files' sizes.
pub(crate) fn unpack_layer(reader: impl Read, dest: &Path) -> Result<u64> {
    fs::create_dir_all(dest).ctx("creating", dest)?;
    let canon_dest = fs::canonicalize(dest).ctx("resolving", dest)?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    // xattrs are applied below, filtered (never trusted.* from a layer).
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut size = 0u64;
    let mut dir_times = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| ImageError::io("reading layer archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io("reading layer archive entry", e))?;
        let raw = entry
            .path()
            .map_err(|e| ImageError::io("reading layer entry path", e))?
            .into_owned();
        let Some(rel) = sanitize(&raw) else { continue };
        let name = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644);
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        if name == OPAQUE_MARKER {
            let parent = safe_parent(dest, &canon_dest, &rel)?;
            set_xattr(&parent, OPAQUE_XATTRS[0], b"y")?;
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = safe_parent(dest, &canon_dest, &rel)?;
            let p = parent.join(target);
            remove_any(&p)?;
            make_whiteout(&p)?;
            continue;
        }
        let target = dest.join(&rel);
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            safe_parent(dest, &canon_dest, &rel)?;
            remove_any(&target)?;
            use nix::sys::stat::SFlag;
            let (flag, major, minor) = if kind.is_fifo() {
                (SFlag::S_IFIFO, 0, 0)
            } else {
                let f = if kind.is_character_special() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                (
                    f,
                    header.device_major().ok().flatten().unwrap_or(0) as u64,
                    header.device_minor().ok().flatten().unwrap_or(0) as u64,
                )
            };
            mknod(&target, flag, mode & 0o7777, major, minor)?;
            nix::unistd::chown(
                &target,
                Some(nix::unistd::Uid::from_raw(uid as u32)),
                Some(nix::unistd::Gid::from_raw(gid as u32)),
            )
            .map_err(|e| ImageError::io(format!("chown {}", target.display()), e.into()))?;
            // The node keeps the image's mode exactly (mknod applies the umask).
            set_mode(&target, mode & 0o7777)?;
            continue;
        }
        if kind.is_dir() {
            dir_times.push((target.clone(), mtime));
        } else if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&target).ctx("removing", &target)?;
        }
        if kind.is_file() || kind == tar::EntryType::Continuous {
            size += entry.size();
        }
        let xattrs = entry_xattrs(&mut entry);
        entry
            .unpack_in(dest)
            .map_err(|e| ImageError::io(format!("unpacking {}", rel.display()), e))?;
        for (name, value) in xattrs {
            if let Err(e) = set_xattr(&target, &name, &value) {
                tracing::warn!(path = %target.display(), xattr = %name, error = %e, "could not restore xattr");
            }
        }
    }
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime);
    }
    Ok(size)
}

/// The extended attributes a layer may carry (as docker: file capabilities only).
const LAYER_XATTRS: [&str; 1] = ["security.capability"];

fn entry_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(|e| e.ok())
        .filter_map(|e| {
            let key = e.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            LAYER_XATTRS
                .contains(&key.as_str())
                .then(|| (key, e.value_bytes().to_vec()))
        })
        .collect()
}

/// One PAX extended header record: `<len> <key>=<value>\n`, len counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Writes a PAX header carrying `full`'s layer xattrs, if it has any.
fn append_xattrs<W: Write>(b: &mut tar::Builder<W>, full: &Path) -> std::io::Result<()> {
    let mut data = Vec::new();
    for name in LAYER_XATTRS {
        if let Some(v) = get_xattr(full, name) {
            data.extend(pax_record(&format!("SCHILY.xattr.{name}"), &v));
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeader")?;
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..])
}

/// Writes the directory tree `dir` (an overlayfs upper dir or a plain directory) as an
/// OCI layer tar: whiteout devices become `.wh.NAME`, opaque dirs get `.wh..wh..opq`.
pub(crate) fn write_layer_tar(dir: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    append_tree(&mut builder, dir, Path::new(""), &mut links)?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| ImageError::io("finishing layer tar", e))?;
    Ok(())
}

fn sorted_children(dir: &Path) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .ctx("reading directory", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx("reading directory", dir)?;
    names.sort();
    Ok(names)
}

fn base_header(meta: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
    h
}

fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let dir = root.join(rel);
    for name in sorted_children(&dir)? {
        let full = dir.join(&name);
        let r = rel.join(&name);
        let meta = fs::symlink_metadata(&full).ctx("stat", &full)?;
        let ft = meta.file_type();
        let err = |e| ImageError::io(format!("adding {} to layer", r.display()), e);
        if is_whiteout(&meta) {
            let mut wh_name = OsString::from(WHITEOUT_PREFIX);
            wh_name.push(&name);
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o600);
            h.set_mtime(meta.mtime().max(0) as u64);
            b.append_data(&mut h, rel.join(wh_name), std::io::empty())
                .map_err(err)?;
        } else if ft.is_dir() {
            let mut h = base_header(&meta);
            b.append_data(&mut h, &r, std::io::empty()).map_err(err)?;
            if is_opaque(&full) {
                let mut h = tar::Header::new_gnu();
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_700_000_000);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o600);
                h.set_mtime(meta.mtime().max(0) as u64);
                b.append_data(&mut h, r.join(OPAQUE_MARKER), std::io::empty())
                    .map_err(err)?;
            }
            append_tree(b, root, &r, links)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    let mut h = base_header(&meta);
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &r, first).map_err(err)?;
                    continue;
                }
                links.insert(key, r.clone());
            }
            let f = fs::File::open(&full).ctx("opening", &full)?;
            let mut h = base_header(&meta);
            append_xattrs(b, &full).map_err(err)?;
            b.append_data(&mut h, &r, f).map_err(err)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).ctx("reading link", &full)?;
            let mut h = base_header(&meta);
            h.set_size(0);
            b.append_link(&mut h, &r, target).map_err(err)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let mut h = base_header(&meta);
            h.set_size(0);
            let rdev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(err)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(err)?;
            b.append_data(&mut h, &r, std::io::empty()).map_err(err)?;
        } else {
            tracing::debug!(path = %full.display(), "skipping socket in layer");
        }
    }
    Ok(())
}

/// A read-only, userspace view of a stack of overlay snapshots (top layer first),
/// honoring whiteouts and opaque directories.
pub(crate) struct MergedView {
    top_first: Vec<PathBuf>,
}

/// A path in the merged view: its real paths, topmost first (several only for dirs).
pub(crate) type MergedNode = Vec<PathBuf>;

impl MergedView {
    /// `bottom_first` are snapshot `fs` dirs as [`crate::ImageStore::layer_dirs`] returns them.
    pub(crate) fn new(bottom_first: &[PathBuf]) -> Self {
        MergedView {
            top_first: bottom_first.iter().rev().cloned().collect(),
        }
    }

    /// Resolves `rel` (no symlink following); `None` if it does not exist.
    pub(crate) fn lookup(&self, rel: &Path) -> Option<MergedNode> {
        let mut cands: Vec<PathBuf> = self.top_first.clone();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            let mut next = Vec::new();
            for c in &cands {
                let p = c.join(name);
                let Ok(m) = fs::symlink_metadata(&p) else {
                    continue;
                };
                if is_whiteout(&m) {
                    break;
                }
                if m.is_dir() {
                    let opaque = is_opaque(&p);
                    next.push(p);
                    if opaque {
                        break;
                    }
                } else {
                    if next.is_empty() {
                        next.push(p);
                    }
                    break;
                }
            }
            if next.is_empty() {
                return None;
            }
            let is_dir = fs::symlink_metadata(&next[0]).is_ok_and(|m| m.is_dir());
            cands = next;
            if !is_dir {
                cands.truncate(1);
            }
        }
        if cands.is_empty() {
            return None;
        }
        Some(cands)
    }

    /// Resolves symlinks in `rel` inside this view (never outside it): every directory
    /// component, and the last one too with `follow_last`. Missing parts stay as given.
    pub(crate) fn resolve_path(&self, rel: &Path, follow_last: bool) -> PathBuf {
        resolve_scoped(rel, follow_last, |cand| {
            let node = self.lookup(cand)?;
            let m = fs::symlink_metadata(&node[0]).ok()?;
            if m.file_type().is_symlink() {
                fs::read_link(&node[0]).ok()
            } else {
                None
            }
        })
    }

    /// The children of a directory node, by name.
    pub(crate) fn children(node: &[PathBuf]) -> BTreeMap<OsString, MergedNode> {
        let mut out: BTreeMap<OsString, (MergedNode, bool)> = BTreeMap::new();
        for dir in node {
            let Ok(rd) = fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                let p = e.path();
                let Ok(m) = fs::symlink_metadata(&p) else {
                    continue;
                };
                let slot = out.entry(name).or_insert_with(|| (Vec::new(), false));
                if slot.1 {
                    continue;
                }
                if is_whiteout(&m) {
                    slot.1 = true;
                } else if m.is_dir() {
                    if !slot.0.is_empty()
                        && !fs::symlink_metadata(&slot.0[0]).is_ok_and(|m| m.is_dir())
                    {
                        slot.1 = true;
                        continue;
                    }
                    let opaque = is_opaque(&p);
                    slot.0.push(p);
                    slot.1 = opaque;
                } else {
                    if slot.0.is_empty() {
                        slot.0.push(p);
                    }
                    slot.1 = true;
                }
            }
        }
        out.into_iter()
            .filter(|(_, (n, _))| !n.is_empty())
            .map(|(k, (n, _))| (k, n))
            .collect()
    }

    /// Reads a regular file of the merged view.
    pub(crate) fn read_file(&self, rel: &Path) -> Option<Vec<u8>> {
        let node = self.lookup(rel)?;
        fs::read(&node[0]).ok()
    }
}

/// Resolves symlinks in the relative path `rel` within a root, as a chroot would:
/// `link_target(p)` returns the target if the (already resolved) relative `p` is a
/// symlink. Absolute targets restart at the root; `..` never leaves it.
pub(crate) fn resolve_scoped(
    rel: &Path,
    follow_last: bool,
    link_target: impl Fn(&Path) -> Option<PathBuf>,
) -> PathBuf {
    use std::collections::VecDeque;
    let mut parts: VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = parts.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let cand = resolved.join(&c);
        if (!parts.is_empty() || follow_last) && hops < 40 {
            if let Some(target) = link_target(&cand) {
                hops += 1;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for t in target.components().rev().filter_map(|c| match c {
                    Component::Normal(p) => Some(p.to_os_string()),
                    Component::ParentDir => Some(OsString::from("..")),
                    _ => None,
                }) {
                    parts.push_front(t);
                }
                continue;
            }
        }
        resolved = cand;
    }
    resolved
}

/// Sets `path`'s permission bits exactly, with no umask (used where a full metadata
/// copy is not wanted, and after mknod); `path` is not a symlink.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777)).ctx("chmod", path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            if p.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
            } else {
                h.set_mode(0o644);
            }
            h.set_size(data.len() as u64);
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_convert_both_ways() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("fs");
        let data = tar_of(&[
            ("etc/", b""),
            ("etc/.wh.passwd", b""),
            ("var/", b""),
            ("var/.wh..wh..opq", b""),
            ("var/new", b"hello"),
        ]);
        let size = unpack_layer(&data[..], &dest).unwrap();
        assert_eq!(size, 5);
        let wh = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        assert!(!dest.join("etc/.wh.passwd").exists());
        assert!(is_opaque(&dest.join("var")));
        assert!(!dest.join("var/.wh..wh..opq").exists());
        assert_eq!(fs::read(dest.join("var/new")).unwrap(), b"hello");

        let mut out = Vec::new();
        write_layer_tar(&dest, &mut out).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "etc",
                "etc/.wh.passwd",
                "var",
                "var/.wh..wh..opq",
                "var/new"
            ]
        );
    }

    #[test]
    fn file_capabilities_survive_and_trusted_xattrs_do_not() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let f = src.join("ping");
        fs::write(&f, "x").unwrap();
        // vfs_cap_data v2, effective, permitted = CAP_NET_RAW
        let mut cap = Vec::new();
        for v in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            cap.extend(v.to_le_bytes());
        }
        if set_xattr(&f, "security.capability", &cap).is_err() {
            eprintln!("cannot set file capabilities here, skipping");
            return;
        }
        set_xattr(&f, "trusted.overlay.origin", b"zz").unwrap();
        let mut out = Vec::new();
        write_layer_tar(&src, &mut out).unwrap();
        let dest = t.path().join("dest");
        unpack_layer(&out[..], &dest).unwrap();
        assert_eq!(
            get_xattr(&dest.join("ping"), "security.capability"),
            Some(cap)
        );
        assert_eq!(
            get_xattr(&dest.join("ping"), "trusted.overlay.origin"),
            None
        );
        assert_eq!(fs::read(dest.join("ping")).unwrap(), b"x");
        assert_eq!(pax_record("k", b"v"), b"6 k=v\n");
        assert_eq!(pax_record(&"k".repeat(5), b"v"), b"11 kkkkk=v\n");
    }

    #[test]
    fn rejects_traversal() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("fs");
        fs::create_dir_all(&dest).unwrap();
        std::os::unix::fs::symlink("/tmp", dest.join("evil")).unwrap();
        let data = tar_of(&[("evil/.wh.x", b"")]);
        assert!(unpack_layer(&data[..], &dest).is_err());
    }

    #[test]
    fn merged_view_honors_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let l1 = t.path().join("l1");
        let l2 = t.path().join("l2");
        fs::create_dir_all(l1.join("a")).unwrap();
        fs::create_dir_all(l1.join("o")).unwrap();
        fs::write(l1.join("a/x"), "1").unwrap();
        fs::write(l1.join("a/y"), "1").unwrap();
        fs::write(l1.join("o/old"), "1").unwrap();
        fs::create_dir_all(l2.join("a")).unwrap();
        fs::create_dir_all(l2.join("o")).unwrap();
        make_whiteout(&l2.join("a/x")).unwrap();
        fs::write(l2.join("a/z"), "2").unwrap();
        set_xattr(&l2.join("o"), OPAQUE_XATTRS[0], b"y").unwrap();
        fs::write(l2.join("o/new"), "2").unwrap();
        let v = MergedView::new(&[l1, l2.clone()]);
        assert!(v.lookup(Path::new("a/x")).is_none());
        assert!(v.lookup(Path::new("a/y")).is_some());
        assert!(v.lookup(Path::new("o/old")).is_none());
        let a = v.lookup(Path::new("a")).unwrap();
        let names: Vec<_> = MergedView::children(&a).into_keys().collect();
        assert_eq!(names, vec![OsString::from("y"), OsString::from("z")]);
        let o = v.lookup(Path::new("o")).unwrap();
        assert_eq!(MergedView::children(&o).len(), 1);
        // symlinks resolve inside the view, absolute ones from its root
        std::os::unix::fs::symlink("/a", l2.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../a", l2.join("a/up")).unwrap();
        assert_eq!(
            v.resolve_path(Path::new("abs/y"), false),
            PathBuf::from("a/y")
        );
        assert_eq!(
            v.resolve_path(Path::new("a/up/z"), true),
            PathBuf::from("a/z")
        );
        assert_eq!(
            v.resolve_path(Path::new("abs"), false),
            PathBuf::from("abs")
        );
        assert_eq!(
            v.resolve_path(Path::new("abs/new/x"), true),
            PathBuf::from("a/new/x")
        );
    }
}
