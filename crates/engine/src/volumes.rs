//! Volumes: named and anonymous directories under `<root>/volumes/<name>/_data`,
//! with a small `meta.json` beside the data, as docker's local driver keeps them.

use crate::state::MountPoint;
use crate::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(skip)]
    pub anonymous: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    created_at: String,
    labels: BTreeMap<String, String>,
    anonymous: bool,
}

pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

fn valid_volume_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && n.len() >= 2
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
}

/// Parse `-v` as docker does: `/ctr` (anonymous), `name:/ctr[:opts]` (named),
/// `/host:/ctr[:opts]` (bind). Options: `ro`, `rw`, propagation, `z`/`Z` (ignored).
pub fn parse_volume_spec(spec: &str) -> Result<MountPoint> {
    let bad =
        |why: &str| EngineError::Invalid(format!("invalid volume specification: '{spec}': {why}"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => {
            if d.starts_with('/') {
                (*s, *d, "")
            } else {
                ("", *s, *d)
            }
        }
        [s, d, o] => (*s, *d, *o),
        _ => return Err(bad("too many colons")),
    };
    if !dst.starts_with('/') {
        return Err(bad(
            "invalid mount config: the container path must be absolute",
        ));
    }
    if dst == "/" {
        return Err(bad("invalid mount config: destination can't be '/'"));
    }
    let mut rw = true;
    let mut propagation = String::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => rw = false,
            "rw" => rw = true,
            "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                propagation = o.to_string()
            }
            _ => return Err(bad(&format!("invalid mode: {o}"))),
        }
    }
    let kind = if src.is_empty() {
        "volume"
    } else if src.starts_with('/') {
        "bind"
    } else {
        if !valid_volume_name(src) {
            return Err(bad(&format!(
                "\"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        "volume"
    };
    Ok(MountPoint {
        kind: kind.into(),
        name: if kind == "volume" {
            src.into()
        } else {
            String::new()
        },
        source: if kind == "bind" {
            src.into()
        } else {
            String::new()
        },
        destination: dst.trim_end_matches('/').to_string(),
        mode: opts.to_string(),
        rw,
        propagation: if kind == "bind" && propagation.is_empty() {
            "rprivate".into()
        } else {
            propagation
        },
    })
}

/// Create a volume (no-op if it exists, as docker).
pub fn create(
    root: &Path,
    name: &str,
    labels: BTreeMap<String, String>,
    anonymous: bool,
) -> Result<Volume> {
    if !valid_volume_name(name) {
        return Err(EngineError::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        )));
    }
    let dir = volumes_dir(root).join(name);
    if !dir.join("meta.json").exists() {
        fs::create_dir_all(dir.join("_data"))
            .map_err(|e| EngineError::io(format!("creating volume {name}"), e))?;
        let meta = Meta {
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            anonymous,
        };
        crate::persist::write_json(&dir.join("meta.json"), &meta)?;
        crate::events::record(
            root,
            "volume",
            "create",
            name,
            [("driver".to_string(), "local".to_string())].into(),
        );
    }
    inspect(root, name)
}

pub fn inspect(root: &Path, name: &str) -> Result<Volume> {
    // A name is one directory under the volumes: never a path out of it.
    if !valid_volume_name(name) {
        return Err(EngineError::Invalid(format!("get {name}: no such volume")));
    }
    let dir = volumes_dir(root).join(name);
    let meta: Meta = crate::persist::read_json(&dir.join("meta.json"))
        .map_err(|_| EngineError::Invalid(format!("get {name}: no such volume")))?;
    Ok(Volume {
        created_at: meta.created_at,
        driver: "local".into(),
        labels: meta.labels,
        mountpoint: dir.join("_data").to_string_lossy().to_string(),
        name: name.into(),
        options: BTreeMap::new(),
        scope: "local".into(),
        anonymous: meta.anonymous,
    })
}

pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(volumes_dir(root)) {
        Ok(r) => r,
        Err(_) => return Ok(out),
    };
    for e in rd.flatten() {
        if let Some(n) = e.file_name().to_str() {
            if let Ok(v) = inspect(root, n) {
                out.push(v);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Remove a volume's directory (the caller checks it is unused).
pub fn remove(root: &Path, name: &str) -> Result<()> {
    inspect(root, name)?;
    let dir = volumes_dir(root).join(name);
    fs::remove_dir_all(&dir).map_err(|e| EngineError::io(format!("removing volume {name}"), e))?;
    crate::events::record(
        root,
        "volume",
        "destroy",
        name,
        [("driver".to_string(), "local".to_string())].into(),
    );
    Ok(())
}

impl crate::Engine {
    /// The names of the volumes some container (of any state) mounts.
    pub fn volumes_in_use(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .list()?
            .iter()
            .flat_map(|c| c.record.mounts.iter())
            .filter(|m| m.kind == "volume")
            .map(|m| m.name.clone())
            .collect())
    }

    /// `volume rm`: refused while a running container uses it, and while any
    /// container does unless `force`.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        inspect(&self.root, name)?;
        let containers = self.list()?;
        if let Some(c) = containers.iter().find(|c| {
            c.record
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
        }) {
            if !force || c.state.status.is_active() {
                return Err(EngineError::InUse(format!(
                    "remove {name}: volume is in use - [{}]",
                    c.record.id
                )));
            }
        }
        remove(&self.root, name)
    }

    /// Removes volumes no container refers to (anonymous ones only unless `all`);
    /// their names and the bytes freed.
    pub fn prune_volumes(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let in_use = self.volumes_in_use()?;
        let mut removed = Vec::new();
        let mut freed = 0;
        for v in list(&self.root)? {
            if in_use.contains(&v.name) || (!all && !v.anonymous) {
                continue;
            }
            let size = crate::files::dir_bytes(Path::new(&v.mountpoint));
            if remove(&self.root, &v.name).is_ok() {
                freed += size;
                removed.push(v.name);
            }
        }
        Ok((removed, freed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_name_is_never_a_path() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(
            outside.join("meta.json"),
            r#"{"created_at":"2026-01-01T00:00:00Z","labels":{},"anonymous":false}"#,
        )
        .unwrap();
        std::fs::create_dir_all(volumes_dir(root.path())).unwrap();
        for name in [
            "../outside",
            "../../outside",
            "..",
            "/etc",
            "a/../../outside",
        ] {
            let err = inspect(root.path(), name).unwrap_err().to_string();
            assert!(err.contains("no such volume"), "{name}: {err}");
            assert!(remove(root.path(), name).is_err(), "{name}");
        }
        assert!(outside.join("meta.json").exists());
    }

    #[test]
    fn volume_specs() {
        let m = parse_volume_spec("/data").unwrap();
        assert_eq!((m.kind.as_str(), m.name.as_str()), ("volume", ""));
        let m = parse_volume_spec("cache:/var/cache:ro").unwrap();
        assert_eq!(
            (m.kind.as_str(), m.name.as_str(), m.rw),
            ("volume", "cache", false)
        );
        let m = parse_volume_spec("/srv/www:/usr/share/www").unwrap();
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("bind", "/srv/www"));
        assert!(parse_volume_spec("rel/path:/x").is_err());
        assert!(parse_volume_spec("a:b").is_err());
        assert!(parse_volume_spec("/a:/b:bogus").is_err());
    }

    #[test]
    fn create_list_remove() {
        let t = tempfile::tempdir().unwrap();
        create(t.path(), "v1", BTreeMap::new(), false).unwrap();
        assert!(data_dir(t.path(), "v1").is_dir());
        assert_eq!(list(t.path()).unwrap().len(), 1);
        remove(t.path(), "v1").unwrap();
        assert!(inspect(t.path(), "v1").is_err());
        assert!(create(t.path(), "bad/name", BTreeMap::new(), false).is_err());
    }
}
