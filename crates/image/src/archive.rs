//! `save` and `load`: image archives that are both an OCI image layout and a docker-save
//! archive (as docker 25+ writes them); loading also accepts the old docker-save layout
//! (`<id>/layer.tar`, `<id>.json`, `manifest.json`), pure OCI layouts and gzip'd archives.

use crate::error::{ImageError, IoContext, Result};
use crate::layer;
use crate::reference::{familiar_name, parse_reference, split_repo_tag, Reference};
use crate::store::{maybe_gunzip, normalize_name, Image, ImageStore, MEDIA_MANIFEST};
use crate::ImageConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF: &str = "org.opencontainers.image.ref.name";

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn tar_err(e: std::io::Error) -> ImageError {
    ImageError::io("writing image archive", e)
}

fn header(size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

impl ImageStore {
    /// Writes one tar holding the images: an OCI image layout (`oci-layout`, `index.json`
    /// with name annotations, `blobs/sha256/...`) that is also a docker-save archive
    /// (`manifest.json` with Config/RepoTags/Layers, `repositories`).
    pub fn save(&self, references: &[&str], out: impl Write) -> Result<()> {
        // (image, names to record) in the order given, merged per image.
        let mut images: Vec<(Image, Vec<String>)> = Vec::new();
        for r in references {
            let img = self.resolve(r)?;
            let name = parse_reference(r)
                .ok()
                .map(|p| Reference { digest: None, ..p }.to_string())
                .filter(|n| img.names.contains(n));
            match images.iter_mut().find(|(i, _)| i.id == img.id) {
                Some((_, names)) => names.extend(name),
                None => images.push((img, name.into_iter().collect())),
            }
        }
        let mut b = tar::Builder::new(out);
        for d in ["blobs/", "blobs/sha256/"] {
            b.append_data(&mut header(0, true), d, std::io::empty())
                .map_err(tar_err)?;
        }
        let mut written = std::collections::BTreeSet::new();
        let mut add_blob = |b: &mut tar::Builder<_>, digest: &str| -> Result<String> {
            let path = self.blob_path(digest)?;
            let name = format!("blobs/sha256/{}", &digest[7..]);
            if written.insert(digest.to_string()) {
                let f = fs::File::open(&path).ctx("opening blob", &path)?;
                let size = f.metadata().ctx("stat", &path)?.len();
                b.append_data(&mut header(size, false), &name, f)
                    .map_err(tar_err)?;
            }
            Ok(name)
        };
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (img, names) in &images {
            let mut layers = Vec::new();
            for d in img.diff_ids() {
                layers.push(add_blob(&mut b, d)?);
            }
            let config = add_blob(&mut b, &img.id)?;
            add_blob(&mut b, &img.manifest_digest)?;
            let msize = fs::metadata(self.blob_path(&img.manifest_digest)?)
                .ctx("stat", &self.blob_path(&img.manifest_digest)?)?
                .len();
            let desc = |annotations: Option<serde_json::Value>| {
                let mut d = serde_json::json!({
                    "mediaType": MEDIA_MANIFEST,
                    "digest": img.manifest_digest,
                    "size": msize,
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if names.is_empty() {
                index.push(desc(None));
            }
            let mut tags = Vec::new();
            for n in names {
                let tag = parse_reference(n)
                    .ok()
                    .and_then(|r| r.tag)
                    .unwrap_or_default();
                index.push(desc(Some(
                    serde_json::json!({ANNOTATION_NAME: n, ANNOTATION_REF: tag}),
                )));
                let fam = familiar_name(n);
                let (repo, t) = split_repo_tag(&fam);
                if let Some(top) = img.diff_ids().last() {
                    repositories
                        .entry(repo)
                        .or_default()
                        .insert(t, top.get(7..).unwrap_or_default().to_string());
                }
                tags.push(fam);
            }
            docker_manifest.push(serde_json::json!({
                "Config": config,
                "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(tags) },
                "Layers": layers,
            }));
        }
        let files = [
            (
                "index.json",
                serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index}),
            ),
            ("manifest.json", serde_json::Value::Array(docker_manifest)),
            (
                "oci-layout",
                serde_json::json!({"imageLayoutVersion": "1.0.0"}),
            ),
        ];
        for (name, v) in files {
            let data = serde_json::to_vec(&v)
                .map_err(|e| ImageError::json("serializing archive index", e))?;
            b.append_data(&mut header(data.len() as u64, false), name, &data[..])
                .map_err(tar_err)?;
        }
        if !repositories.is_empty() {
            let data = serde_json::to_vec(&repositories)
                .map_err(|e| ImageError::json("serializing repositories", e))?;
            b.append_data(
                &mut header(data.len() as u64, false),
                "repositories",
                &data[..],
            )
            .map_err(tar_err)?;
        }
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(tar_err)?;
        Ok(())
    }

    /// Loads an image archive (OCI layout or docker-save, old or new, maybe gzip'd).
    /// Returns the loaded names (`busybox:latest`), or ids for images without a name.
    pub fn load(&self, input: impl Read) -> Result<Vec<String>> {
        let _gc = self.gc_shared()?;
        let tmp = self.scratch_dir("load")?;
        let result = self.load_from(input, &tmp);
        let _ = layer::remove_any(&tmp);
        result
    }

    fn load_from(&self, input: impl Read, tmp: &Path) -> Result<Vec<String>> {
        let mut a = tar::Archive::new(maybe_gunzip(input)?);
        a.set_preserve_permissions(false);
        a.unpack(tmp)
            .map_err(|e| ImageError::Invalid(format!("reading image archive: {e}")))?;
        let mut loaded = Vec::new();
        if tmp.join("manifest.json").is_file() {
            let p = tmp.join("manifest.json");
            let data = fs::read(&p).ctx("reading", &p)?;
            let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&data)
                .map_err(|e| ImageError::json("parsing manifest.json of the archive", e))?;
            for e in entries {
                let config = fs::read(inside(tmp, &e.config)?)
                    .ctx_msg(|| format!("reading {} from the archive", e.config))?;
                let layers: Vec<PathBuf> = e
                    .layers
                    .iter()
                    .map(|l| inside(tmp, l))
                    .collect::<Result<_>>()?;
                let names = e.repo_tags.unwrap_or_default();
                loaded.extend(self.load_archived_image(&config, &layers, &names)?);
            }
        } else if tmp.join("index.json").is_file() {
            let p = tmp.join("index.json");
            let data = fs::read(&p).ctx("reading", &p)?;
            let index: Index = serde_json::from_slice(&data)
                .map_err(|e| ImageError::json("parsing index.json of the archive", e))?;
            for d in index.manifests {
                let mut names = Vec::new();
                if let Some(n) = d.annotations.get(ANNOTATION_NAME) {
                    names.push(n.clone());
                } else if let Some(n) = d.annotations.get(ANNOTATION_REF) {
                    // A full reference, not just a tag.
                    if n.contains('/') || n.contains(':') {
                        names.push(n.clone());
                    }
                }
                let manifest = self.pick_manifest(tmp, d)?;
                let config = fs::read(blob_in(tmp, &manifest.config.digest)?).ctx_msg(|| {
                    format!("reading config {} from the archive", manifest.config.digest)
                })?;
                let layers: Vec<PathBuf> = manifest
                    .layers
                    .iter()
                    .map(|l| blob_in(tmp, &l.digest))
                    .collect::<Result<_>>()?;
                let _ = manifest.media_type;
                loaded.extend(self.load_archived_image(&config, &layers, &names)?);
            }
        } else {
            return Err(ImageError::Invalid(
                "not an image archive: neither manifest.json nor index.json found".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        loaded.retain(|n| seen.insert(n.clone()));
        Ok(loaded)
    }

    /// Follows an index descriptor down to the manifest for this platform.
    fn pick_manifest(&self, tmp: &Path, d: Descriptor) -> Result<Manifest> {
        let mut d = d;
        for _ in 0..4 {
            let p = blob_in(tmp, &d.digest)?;
            let data = fs::read(&p).ctx_msg(|| format!("reading {} from the archive", d.digest))?;
            if d.media_type == MEDIA_INDEX || d.media_type == DOCKER_LIST {
                let idx: Index = serde_json::from_slice(&data)
                    .map_err(|e| ImageError::json(format!("parsing index {}", d.digest), e))?;
                let arch = crate::config::host_arch();
                let next = idx
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| p.architecture == arch && p.os == "linux")
                    })
                    .or_else(|| idx.manifests.first())
                    .cloned()
                    .ok_or_else(|| {
                        ImageError::Invalid(format!("index {} lists no manifest", d.digest))
                    })?;
                d = next;
                continue;
            }
            return serde_json::from_slice(&data)
                .map_err(|e| ImageError::json(format!("parsing manifest {}", d.digest), e));
        }
        Err(ImageError::Invalid("image index nesting too deep".into()))
    }

    fn load_archived_image(
        &self,
        config: &[u8],
        layers: &[PathBuf],
        names: &[String],
    ) -> Result<Vec<String>> {
        let parsed: ImageConfig = serde_json::from_slice(config)
            .map_err(|e| ImageError::json("parsing image config from the archive", e))?;
        if parsed.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::Invalid(format!(
                "image config lists {} layers but the archive has {}",
                parsed.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        for (i, (path, want)) in layers.iter().zip(&parsed.rootfs.diff_ids).enumerate() {
            let f = fs::File::open(path).ctx("opening layer", path)?;
            let got = self.store_layer(std::io::BufReader::new(f))?.diff_id;
            if &got != want {
                return Err(ImageError::Invalid(format!(
                    "layer {} has content digest {got} but the image config says {want}",
                    i + 1
                )));
            }
        }
        let normalized: Vec<String> = names
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<_>>()?;
        let img = self.register_image(config, None, false, &normalized)?;
        Ok(if normalized.is_empty() {
            vec![img.id]
        } else {
            normalized.iter().map(|n| familiar_name(n)).collect()
        })
    }
}

/// `rel` inside the unpacked archive, refusing absolute paths and `..`.
fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ImageError::Invalid(format!(
            "archive path {rel:?} leaves the archive"
        )));
    }
    Ok(root.join(p))
}

fn blob_in(root: &Path, digest: &str) -> Result<PathBuf> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| ImageError::Invalid(format!("invalid digest {digest:?}")))?;
    if alg.is_empty()
        || hex.is_empty()
        || !hex.bytes().all(|c| c.is_ascii_hexdigit())
        || !alg.bytes().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(ImageError::Invalid(format!("invalid digest {digest:?}")));
    }
    Ok(root.join("blobs").join(alg).join(hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{busybox_tar, store_with_busybox};
    use std::io::Write;

    fn fresh() -> (tempfile::TempDir, ImageStore) {
        let t = tempfile::tempdir().unwrap();
        let s = ImageStore::open(&t.path().join("images")).unwrap();
        (t, s)
    }

    fn entry_names(data: &[u8]) -> Vec<String> {
        tar::Archive::new(data)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn save_load_round_trip() {
        let (_t, s, img) = store_with_busybox();
        s.tag("busybox", "me/bb:v1").unwrap();
        let mut data = Vec::new();
        s.save(&["busybox", "me/bb:v1"], &mut data).unwrap();
        let names = entry_names(&data);
        for want in ["oci-layout", "index.json", "manifest.json", "repositories"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_entry(&data, "manifest.json")).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["busybox:latest", "me/bb:v1"])
        );
        assert_eq!(
            manifest[0]["Config"],
            format!("blobs/sha256/{}", &img.id[7..])
        );
        let index: serde_json::Value =
            serde_json::from_slice(&read_entry(&data, "index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"][ANNOTATION_NAME],
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            index["manifests"][0]["annotations"][ANNOTATION_REF],
            "latest"
        );

        let (_t2, s2) = fresh();
        let loaded = s2.load(&data[..]).unwrap();
        assert_eq!(loaded, vec!["busybox:latest", "me/bb:v1"]);
        let back = s2.resolve("me/bb:v1").unwrap();
        assert_eq!(back.id, img.id);
        assert!(s2.layer_dirs(&back)[0].join("bin/busybox").is_file());
        assert_eq!(fs::read_dir(s2.dir().join("tmp")).unwrap().count(), 0);

        // the same archive as pure OCI layout (no manifest.json), gzip'd
        let mut b = tar::Builder::new(Vec::new());
        let mut a = tar::Archive::new(&data[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_path_buf();
            if p == Path::new("manifest.json") {
                continue;
            }
            let mut h = e.header().clone();
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).unwrap();
            b.append_data(&mut h, p, &buf[..]).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b.into_inner().unwrap()).unwrap();
        let (_t3, s3) = fresh();
        let loaded = s3.load(&gz.finish().unwrap()[..]).unwrap();
        assert_eq!(loaded, vec!["busybox:latest", "me/bb:v1"]);
        assert_eq!(s3.resolve("busybox").unwrap().id, img.id);

        // saving by id records no name
        let mut data = Vec::new();
        s.save(&[&img.id], &mut data).unwrap();
        let (_t4, s4) = fresh();
        assert_eq!(s4.load(&data[..]).unwrap(), vec![img.id.clone()]);
    }

    fn read_entry(data: &[u8], name: &str) -> Vec<u8> {
        let mut a = tar::Archive::new(data);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap() == Path::new(name) {
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                return v;
            }
        }
        panic!("{name} not in archive")
    }

    #[test]
    fn loads_old_docker_save_layout_with_gzip_layer() {
        let layer = busybox_tar();
        let diff_id = crate::store::sha256_digest(&layer);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz_layer = gz.finish().unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "/bin/sh -c #(nop) ADD file:x in / "}],
            "container_config": {"Hostname": "x"},
        }))
        .unwrap();
        let id_hex = crate::store::sha256_digest(&config)[7..].to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |p: &str, d: &[u8]| {
            b.append_data(&mut header(d.len() as u64, false), p, d)
                .unwrap();
        };
        add("abc123/VERSION", b"1.0");
        add("abc123/layer.tar", &gz_layer);
        add(&format!("{id_hex}.json"), &config);
        let manifest = serde_json::json!([{
            "Config": format!("{id_hex}.json"),
            "RepoTags": ["old:1"],
            "Layers": ["abc123/layer.tar"],
        }]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        add("repositories", br#"{"old":{"1":"abc123"}}"#);
        let data = b.into_inner().unwrap();
        let (_t, s) = fresh();
        assert_eq!(s.load(&data[..]).unwrap(), vec!["old:1"]);
        let img = s.resolve("old:1").unwrap();
        assert_eq!(img.id, format!("sha256:{id_hex}"));
        assert_eq!(img.diff_ids(), &[diff_id]);
        assert_eq!(img.config.config.cmd, Some(vec!["sh".to_string()]));
        assert!(s.layer_dirs(&img)[0].join("etc/passwd").is_file());
        // the unknown field survives in the stored config (id unchanged)
        assert_eq!(s.read_blob(&img.id).unwrap(), config);
        let h = s.history("old:1").unwrap();
        assert_eq!(h.len(), 1);
        assert!(h[0].size > 0);
    }

    #[test]
    fn rejects_bad_archives() {
        let (_t, s) = fresh();
        let b = tar::Builder::new(Vec::new()).into_inner().unwrap();
        assert!(s
            .load(&b[..])
            .unwrap_err()
            .to_string()
            .contains("not an image archive"));
        let mut b = tar::Builder::new(Vec::new());
        let m = br#"[{"Config":"../x.json","RepoTags":null,"Layers":[]}]"#;
        b.append_data(&mut header(m.len() as u64, false), "manifest.json", &m[..])
            .unwrap();
        let data = b.into_inner().unwrap();
        assert!(s
            .load(&data[..])
            .unwrap_err()
            .to_string()
            .contains("leaves the archive"));
    }
}
