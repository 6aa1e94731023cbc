//! Pod volumes on the node: the kubelet's atomic writer for configMap, secret,
//! downwardAPI and projected volumes (files published through a `..data` symlink
//! swapped in one rename, so readers never see a half-updated set), emptyDir
//! (optionally tmpfs-backed) and hostPath with its type checks.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a hostPath volume cannot be used as its type says.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    /// The path is not what the volume's type wants (`what`: "a directory", …).
    #[error("hostPath type check failed: {} is not {what}", path.display())]
    NotA { path: PathBuf, what: &'static str },
    /// A FileOrCreate path's parent directory is missing.
    #[error("hostPath type check failed: {} does not exist", .0.display())]
    ParentMissing(PathBuf),
    /// A DirectoryOrCreate path could not be made.
    #[error("creating {}: {err}", path.display())]
    Create { path: PathBuf, err: io::Error },
    /// A created path's permissions could not be set, or a FileOrCreate file made.
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("unknown hostPath type {0}")]
    UnknownType(String),
}

/// A key a configMap or secret volume lists in its `items` is not in the object.
#[derive(Debug, thiserror::Error)]
#[error("configuration key {0} not found")]
pub struct MissingKey(pub String);

const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a payload: content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

fn valid_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && !path.is_absolute()
        && !p.starts_with("..")
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Publish `payload` (relative path → file) in `dir` atomically: a new timestamped
/// directory is written in full, `..data` is repointed at it with one rename, the
/// user-visible top-level names are symlinks through `..data`, and the previous
/// generation and names no longer in the payload are removed. Returns whether
/// anything changed.
pub fn write_atomic(dir: &Path, payload: &BTreeMap<String, FileProjection>) -> io::Result<bool> {
    for p in payload.keys() {
        if !valid_relative(p) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path in volume payload: {p}"),
            ));
        }
    }
    fs::create_dir_all(dir)?;
    let current = fs::read_link(dir.join(DATA_DIR)).ok();
    if let Some(cur) = &current {
        if same_payload(&dir.join(cur), payload) {
            return Ok(false);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = format!("..{}_{:09}", now.as_secs(), now.subsec_nanos());
    let gen = dir.join(&ts);
    fs::create_dir(&gen)?;
    for (rel, f) in payload {
        let p = gen.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&p, &f.data)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(f.mode))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp)?;
    fs::rename(&tmp, dir.join(DATA_DIR))?;
    // User-visible names: the first component of every path, through ..data.
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(|s| s.to_string()))
        .collect();
    for t in &tops {
        let link = dir.join(t);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(t), &link)?;
        }
    }
    // Old names and the old generation go.
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("..") {
            if name != DATA_DIR && name != ts {
                let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
            }
            continue;
        }
        if !tops.contains(&name) {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(true)
}

fn same_payload(gen: &Path, payload: &BTreeMap<String, FileProjection>) -> bool {
    let mut found = 0;
    for (rel, f) in payload {
        match (fs::read(gen.join(rel)), fs::metadata(gen.join(rel))) {
            (Ok(d), Ok(m)) if d == f.data && m.permissions().mode() & 0o7777 == f.mode => {
                found += 1
            }
            _ => return false,
        }
    }
    count_files(gen) == found
}

fn count_files(d: &Path) -> usize {
    fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Select and map keys as a configMap/secret volume's `items` and `defaultMode` do.
pub fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[(String, String, Option<i32>)]>,
    default_mode: Option<i32>,
) -> Result<BTreeMap<String, FileProjection>, MissingKey> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut out = BTreeMap::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode,
                    },
                );
            }
        }
        Some(items) => {
            for (key, path, m) in items {
                let v = data.get(key).ok_or_else(|| MissingKey(key.clone()))?;
                out.insert(
                    path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: m.map(|m| m as u32).unwrap_or(mode),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Check (and for the *OrCreate types, create) a hostPath volume as its type says.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), HostPathError> {
    let md = fs::metadata(path);
    let fail = |what: &'static str| {
        Err(HostPathError::NotA {
            path: path.to_path_buf(),
            what,
        })
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match md {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("a directory"),
            Err(_) => {
                fs::create_dir_all(path).map_err(|err| HostPathError::Create {
                    path: path.to_path_buf(),
                    err,
                })?;
                Ok(fs::set_permissions(
                    path,
                    fs::Permissions::from_mode(0o755),
                )?)
            }
        },
        "Directory" => match md {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "FileOrCreate" => match md {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("a file"),
            Err(_) => {
                if let Some(p) = path.parent() {
                    if !p.exists() {
                        return Err(HostPathError::ParentMissing(p.to_path_buf()));
                    }
                }
                fs::File::create(path)?;
                Ok(fs::set_permissions(
                    path,
                    fs::Permissions::from_mode(0o644),
                )?)
            }
        },
        "File" => match md {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match md {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match md {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match md {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(HostPathError::UnknownType(other.to_string())),
    }
}

/// An emptyDir: a directory under the pod's dir, or a tmpfs for `medium: Memory`
/// (limited by `sizeLimit` when given). Returns its path.
pub fn empty_dir(
    pod_dir: &Path,
    name: &str,
    memory: bool,
    size_limit: Option<u64>,
) -> io::Result<PathBuf> {
    let p = pod_dir.join("volumes/kubernetes.io~empty-dir").join(name);
    fs::create_dir_all(&p)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o777))?;
    if memory && !is_mountpoint(&p) {
        let data = match size_limit {
            Some(s) => format!("mode=1777,size={s}"),
            None => "mode=1777".to_string(),
        };
        skiff_runtime::sys::mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&data),
        )?;
    }
    Ok(p)
}

/// Whether `p` is a mount point (its device differs from its parent's).
pub fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(p), p.parent().map(fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Remove a pod's volume directories, unmounting tmpfs emptyDirs first.
pub fn remove_pod_volumes(pod_dir: &Path) -> io::Result<()> {
    let ed = pod_dir.join("volumes/kubernetes.io~empty-dir");
    if let Ok(rd) = fs::read_dir(&ed) {
        for e in rd.flatten() {
            if is_mountpoint(&e.path()) {
                skiff_runtime::sys::umount_detach(&e.path())?;
            }
        }
    }
    match fs::remove_dir_all(pod_dir.join("volumes")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(kv: &[(&str, &str)]) -> BTreeMap<String, FileProjection> {
        kv.iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_generations() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("cm");
        assert!(write_atomic(&d, &payload(&[("a", "1"), ("conf/b.ini", "x=1")])).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(d.join("conf/b.ini")).unwrap(), "x=1");
        assert!(fs::symlink_metadata(d.join("a"))
            .unwrap()
            .file_type()
            .is_symlink());
        let gen1 = fs::read_link(d.join("..data")).unwrap();
        // Unchanged payload: nothing happens.
        assert!(!write_atomic(&d, &payload(&[("a", "1"), ("conf/b.ini", "x=1")])).unwrap());
        // An update swaps ..data, drops removed keys and the old generation.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(write_atomic(&d, &payload(&[("a", "2")])).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "2");
        assert!(!d.join("conf").exists());
        assert!(!d.join(&gen1).exists());
        let names: Vec<String> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}"); // a, ..data, ..<ts>
        assert!(write_atomic(&d, &payload(&[("../escape", "x")])).is_err());
    }

    #[test]
    fn items_and_modes() {
        let mut data = BTreeMap::new();
        data.insert("user".to_string(), b"admin".to_vec());
        data.insert("pass".to_string(), b"x".to_vec());
        let items = vec![(
            "user".to_string(),
            "creds/username".to_string(),
            Some(0o400),
        )];
        let p = project(&data, Some(&items), Some(0o600)).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["creds/username"].mode, 0o400);
        let all = project(&data, None, Some(0o600)).unwrap();
        assert_eq!(all["pass"].mode, 0o600);
        let bad = vec![("nope".to_string(), "x".to_string(), None)];
        assert!(project(&data, Some(&bad), None).is_err());
    }

    #[test]
    fn host_path_types() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("made");
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        check_host_path(&d, "Directory").unwrap();
        assert_eq!(
            check_host_path(&d, "File").unwrap_err().to_string(),
            format!("hostPath type check failed: {} is not a file", d.display())
        );
        let f = t.path().join("f");
        check_host_path(&f, "FileOrCreate").unwrap();
        check_host_path(&f, "File").unwrap();
        check_host_path(Path::new("/dev/null"), "CharDevice").unwrap();
        assert!(check_host_path(&f, "Socket").is_err());
        assert_eq!(
            check_host_path(&f, "Bogus").unwrap_err().to_string(),
            "unknown hostPath type Bogus"
        );
    }

    #[test]
    fn memory_empty_dir_is_tmpfs() {
        let t = tempfile::tempdir().unwrap();
        let p = empty_dir(t.path(), "cache", true, Some(1 << 20)).unwrap();
        assert!(is_mountpoint(&p));
        remove_pod_volumes(t.path()).unwrap();
        assert!(!p.exists());
        let p = empty_dir(t.path(), "disk", false, None).unwrap();
        assert!(!is_mountpoint(&p) && p.is_dir());
    }
}
