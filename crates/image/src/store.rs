//! The content-addressed image store: blobs, layer snapshots, names, garbage collection.

use crate::config::{now_rfc3339, ContainerConfig, History, ImageConfig};
use crate::error::{ImageError, IoContext, Result};
use crate::layer;
use crate::reference::{familiar_name, is_digest, parse_reference, split_repo_tag};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `sha256:<hex of the config digest>`: docker's image id.
    pub id: String,
    /// `sha256:<hex>` of the OCI manifest.
    pub manifest_digest: String,
    /// The image config.
    pub config: ImageConfig,
    /// Normalized names (`docker.io/library/busybox:latest`) that point at this image.
    pub names: Vec<String>,
    /// `repository@sha256:…` of the manifests this image was pulled by or pushed as
    /// (normalized, docker's `RepoDigests`).
    pub repo_digests: Vec<String>,
    /// The image this one was built or committed on top of, if known.
    pub parent: Option<String>,
    /// Sum of the layers' unpacked sizes in bytes.
    pub size: u64,
}

impl Image {
    /// The first 12 hex digits of the id, as `docker images` shows it.
    pub fn short_id(&self) -> String {
        short_id(&self.id)
    }
    /// The layers' diff ids, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        &self.config.rootfs.diff_ids
    }

    /// The image in the shape `docker image inspect` prints (one array element).
    pub fn inspect_json(&self) -> serde_json::Value {
        let tags: Vec<String> = self
            .names
            .iter()
            .filter(|n| !n.contains('@'))
            .map(|n| familiar_name(n))
            .collect();
        let comment = self
            .config
            .history
            .last()
            .and_then(|h| h.comment.clone())
            .unwrap_or_default();
        serde_json::json!({
            "Id": self.id,
            "RepoTags": tags,
            "RepoDigests": self.repo_digests.iter().map(|d| familiar_name(d)).collect::<Vec<_>>(),
            "Parent": self.parent.clone().unwrap_or_default(),
            "Comment": comment,
            "Created": self.config.created.clone().unwrap_or_default(),
            "Author": self.config.author.clone().unwrap_or_default(),
            "Config": self.config.config,
            "Architecture": self.config.architecture,
            "Os": self.config.os,
            "Size": self.size,
            "RootFS": {"Type": "layers", "Layers": self.config.rootfs.diff_ids},
            "Metadata": {"ManifestDigest": self.manifest_digest},
        })
    }
}

/// `sha256:abcdef...` → `abcdef012345`.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// One row of `skiff images`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSummary {
    /// Familiar repository (`busybox`) or `<none>`.
    pub repository: String,
    /// Tag or `<none>`.
    pub tag: String,
    /// Full image id (`sha256:...`).
    pub id: String,
    /// The config's `created` (RFC 3339), if any.
    pub created: Option<String>,
    /// Unpacked size in bytes.
    pub size: u64,
}

/// One row of `skiff history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The image id for the top entry, `<missing>` for the others (as docker shows it).
    pub id: String,
    pub created: Option<String>,
    pub created_by: String,
    /// Size of the layer this entry made (0 for empty layers).
    pub size: u64,
    pub comment: String,
    pub empty_layer: bool,
}

/// What `remove` did, in order (docker's `Untagged:` / `Deleted:` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// A name was removed (familiar form).
    Untagged(String),
    /// An image was deleted (its id).
    Deleted(String),
}

/// Metadata of a `commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The container config the new image carries (Env, Cmd, ...).
    pub config: ContainerConfig,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// The history line; docker uses the container's command.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub manifest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A build step's intermediate image (hidden from `list`, kept for the build cache).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermediate: bool,
    /// Registry manifests this image is known by (`repository@sha256:…`, normalized).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Repositories {
    /// Normalized name → manifest digest.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// Image id → record.
    #[serde(default)]
    pub images: BTreeMap<String, ImageRecord>,
}

impl Repositories {
    fn id_of_manifest(&self, manifest: &str) -> Option<String> {
        self.images
            .iter()
            .find(|(_, r)| r.manifest == manifest)
            .map(|(id, _)| id.clone())
    }
    /// The image pulled or pushed as `repository@digest` (normalized).
    fn id_of_repo_digest(&self, repo_digest: &str) -> Option<String> {
        self.images
            .iter()
            .find(|(_, r)| r.repo_digests.iter().any(|d| d == repo_digest))
            .map(|(id, _)| id.clone())
    }
    fn names_of(&self, manifest: &str) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(_, m)| m.as_str() == manifest)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

use crate::lock::{FileLock, Mode};

fn lock_at(path: &Path, mode: Mode, wait: bool) -> Result<Option<FileLock>> {
    crate::lock::take(path, mode, wait)
        .map_err(|e| ImageError::io(format!("flock {}", path.display()), e))
}

/// A writer that hashes (sha256) and counts what goes through it.
pub(crate) struct HashWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Random hex for temp names.
pub(crate) fn rand_hex() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = ((t as u64) ^ u64::from(std::process::id())).to_le_bytes();
    }
    hex::encode(b)
}

fn digest_hex(d: &str) -> Result<&str> {
    if is_digest(d) {
        Ok(&d[7..])
    } else {
        Err(ImageError::Invalid(format!("invalid digest {d:?}")))
    }
}

/// A reader that may be gzip- or zstd-compressed (sniffed by magic bytes). zstd frames
/// are decoded with the library's default window limit (128 MiB), so a hostile layer
/// cannot make the decoder allocate more.
pub(crate) fn maybe_gunzip<'a>(r: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut br = std::io::BufReader::new(r);
    let head =
        std::io::BufRead::fill_buf(&mut br).map_err(|e| ImageError::io("reading input", e))?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.len() >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        let d = zstd::stream::read::Decoder::with_buffer(br)
            .map_err(|e| ImageError::io("starting the zstd decoder", e))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(br))
    }
}

/// A layer in the store.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
}

/// The content-addressed image store under `<engine root>/images`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["blobs/sha256", "layers", "tmp", "buildcache"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).ctx("creating", &p)?;
        }
        Ok(ImageStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scratch space; whatever is left there is removed by the next [`ImageStore::gc`].
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.dir.join("buildcache")
    }

    /// A fresh, empty scratch directory under `tmp/`.
    pub(crate) fn scratch_dir(&self, prefix: &str) -> Result<PathBuf> {
        let p = self.tmp_dir().join(format!("{prefix}-{}", rand_hex()));
        fs::create_dir_all(&p).ctx("creating", &p)?;
        Ok(p)
    }

    pub(crate) fn lock(&self) -> Result<FileLock> {
        lock_at(&self.dir.join("repositories.lock"), Mode::Exclusive, true)?
            .ok_or_else(|| ImageError::Conflict("could not lock repositories".into()))
    }

    /// Held (shared) by operations that write blobs before registering an image, so that
    /// garbage collection in another process does not delete them half-way.
    pub fn gc_shared(&self) -> Result<FileLock> {
        lock_at(&self.dir.join("gc.lock"), Mode::Shared, true)?
            .ok_or_else(|| ImageError::Conflict("could not lock gc".into()))
    }

    pub(crate) fn read_repos(&self) -> Result<Repositories> {
        let p = self.dir.join("repositories.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::json(format!("parsing {}", p.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Repositories::default()),
            Err(e) => Err(ImageError::io(format!("reading {}", p.display()), e)),
        }
    }

    fn write_repos(&self, repos: &Repositories) -> Result<()> {
        let data = serde_json::to_vec_pretty(repos)
            .map_err(|e| ImageError::json("serializing repositories", e))?;
        self.atomic_write(&self.dir.join("repositories.json"), &data)
    }

    /// Read-modify-write of `repositories.json` under the exclusive lock.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut Repositories) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut repos = self.read_repos()?;
        let out = f(&mut repos)?;
        self.write_repos(&repos)?;
        Ok(out)
    }

    pub(crate) fn atomic_write(&self, path: &Path, data: &[u8]) -> Result<()> {
        let tmp = path.with_file_name(format!(
            ".{}.{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            rand_hex()
        ));
        let mut f = fs::File::create(&tmp).ctx("creating", &tmp)?;
        f.write_all(data).ctx("writing", &tmp)?;
        f.sync_all().ctx("syncing", &tmp)?;
        fs::rename(&tmp, path).ctx("renaming into", path)?;
        Ok(())
    }

    /// The path of a blob by digest (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Writes a blob, returning its digest.
    pub(crate) fn write_blob(&self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            self.atomic_write(&path, data)?;
        }
        Ok(digest)
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        fs::read(&p).ctx("reading blob", &p)
    }

    /// Moves a finished temp file into the blob store under `hex`.
    fn install_blob_file(&self, tmp: &Path, hex: &str) -> Result<()> {
        let dst = self.dir.join("blobs/sha256").join(hex);
        if dst.exists() {
            fs::remove_file(tmp).ctx("removing", tmp)?;
        } else {
            fs::rename(tmp, &dst).ctx("renaming into", &dst)?;
        }
        Ok(())
    }

    /// Stores a layer tar (plain or gzip) as an uncompressed blob and unpacks its snapshot.
    pub fn store_layer(&self, input: impl Read) -> Result<LayerInfo> {
        self.store_layer_checked(input, None)
    }

    /// [`ImageStore::store_layer`], refusing (and keeping nothing of) a layer whose
    /// uncompressed digest is not `want`.
    pub fn store_layer_checked(&self, input: impl Read, want: Option<&str>) -> Result<LayerInfo> {
        let mut r = maybe_gunzip(input)?;
        let tmp = self.tmp_dir().join(format!("blob-{}", rand_hex()));
        let f = fs::File::create(&tmp).ctx("creating", &tmp)?;
        let mut w = HashWriter::new(std::io::BufWriter::new(f));
        let res = std::io::copy(&mut r, &mut w);
        let (bw, hex, _) = w.finish();
        let done = res
            .and_then(|_| bw.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all());
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::io("writing layer", e));
        }
        if let Some(want) = want.filter(|w| w.strip_prefix("sha256:") != Some(hex.as_str())) {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::Invalid(format!(
                "layer content has digest sha256:{hex} but the image config says {want}"
            )));
        }
        self.install_blob_file(&tmp, &hex)?;
        let diff_id = format!("sha256:{hex}");
        self.ensure_snapshot(&diff_id)?;
        Ok(LayerInfo { diff_id })
    }

    /// Turns a directory tree (overlay upper dir) into a stored layer.
    pub(crate) fn layer_from_dir(&self, dir: &Path) -> Result<LayerInfo> {
        let tmp = self.tmp_dir().join(format!("blob-{}", rand_hex()));
        let f = fs::File::create(&tmp).ctx("creating", &tmp)?;
        let mut w = HashWriter::new(std::io::BufWriter::new(f));
        let res = layer::write_layer_tar(dir, &mut w);
        let (bw, hex, _) = w.finish();
        let done = res.and_then(|_| {
            bw.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(|e| ImageError::io("writing layer", e))
        });
        if let Err(e) = done {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.install_blob_file(&tmp, &hex)?;
        let diff_id = format!("sha256:{hex}");
        self.ensure_snapshot(&diff_id)?;
        Ok(LayerInfo { diff_id })
    }

    pub(crate) fn layer_root(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.dir.join("layers").join(digest_hex(diff_id)?))
    }

    /// Unpacks the layer blob into `layers/<hex>/fs` unless already there.
    fn ensure_snapshot(&self, diff_id: &str) -> Result<()> {
        let root = self.layer_root(diff_id)?;
        if root.join("fs").is_dir() {
            return Ok(());
        }
        let tmp = self.tmp_dir().join(format!("layer-{}", rand_hex()));
        let result = (|| {
            let blob = self.blob_path(diff_id)?;
            let f = fs::File::open(&blob).ctx("opening layer blob", &blob)?;
            let size = layer::unpack_layer(BufReader::new(f), &tmp.join("fs"))?;
            fs::write(tmp.join("size"), size.to_string()).ctx("writing", &tmp.join("size"))?;
            match fs::rename(&tmp, &root) {
                Ok(()) => Ok(()),
                Err(_) if root.join("fs").is_dir() => {
                    // Another process unpacked the same layer first.
                    layer::remove_any(&tmp)
                }
                Err(e) => Err(ImageError::io(
                    format!("renaming into {}", root.display()),
                    e,
                )),
            }
        })();
        if result.is_err() {
            let _ = layer::remove_any(&tmp);
        }
        result
    }

    fn layer_size(&self, diff_id: &str) -> u64 {
        self.layer_root(diff_id)
            .ok()
            .and_then(|r| fs::read_to_string(r.join("size")).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The snapshot (`fs`) directories of `image`'s layers, bottom layer first.
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        self.layer_dirs_for(image.diff_ids())
    }

    pub(crate) fn layer_dirs_for(&self, diff_ids: &[String]) -> Vec<PathBuf> {
        diff_ids
            .iter()
            .filter_map(|d| self.layer_root(d).ok())
            .map(|r| r.join("fs"))
            .collect()
    }

    /// Writes config + manifest and registers the image (with `names`, normalized).
    pub(crate) fn create_image(
        &self,
        config: &ImageConfig,
        parent: Option<&str>,
        intermediate: bool,
        names: &[String],
    ) -> Result<Image> {
        let config_bytes =
            serde_json::to_vec(config).map_err(|e| ImageError::json("serializing config", e))?;
        self.register_image(&config_bytes, parent, intermediate, names)
    }

    /// Registers an image from its exact config bytes (their digest is the id); all its
    /// layers must already be stored.
    pub fn register_image(
        &self,
        config_bytes: &[u8],
        parent: Option<&str>,
        intermediate: bool,
        names: &[String],
    ) -> Result<Image> {
        let config: ImageConfig = serde_json::from_slice(config_bytes)
            .map_err(|e| ImageError::json("parsing image config", e))?;
        let config_digest = self.write_blob(config_bytes)?;
        let mut layers = Vec::new();
        for d in &config.rootfs.diff_ids {
            let p = self.blob_path(d)?;
            let size = fs::metadata(&p).ctx("missing layer blob", &p)?.len();
            layers.push(serde_json::json!({"mediaType": MEDIA_LAYER, "digest": d, "size": size}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_bytes.len()},
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::json("serializing manifest", e))?;
        let manifest_digest = self.write_blob(&manifest_bytes)?;
        let id = config_digest;
        self.update(|repos| {
            let rec = repos
                .images
                .entry(id.clone())
                .or_insert_with(|| ImageRecord {
                    manifest: manifest_digest.clone(),
                    parent: parent.map(str::to_string),
                    intermediate,
                    repo_digests: Vec::new(),
                });
            rec.manifest = manifest_digest.clone();
            if !intermediate {
                rec.intermediate = false;
            }
            for n in names {
                repos.refs.insert(n.clone(), manifest_digest.clone());
            }
            Ok(())
        })?;
        self.resolve(&id)
    }

    /// Marks an image as a top-level (listed) image and adds names to it.
    pub(crate) fn promote(&self, id: &str, names: &[String]) -> Result<()> {
        self.update(|repos| {
            let rec = repos
                .images
                .get_mut(id)
                .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
            rec.intermediate = false;
            let m = rec.manifest.clone();
            for n in names {
                repos.refs.insert(n.clone(), m.clone());
            }
            Ok(())
        })
    }

    fn load_image(&self, repos: &Repositories, id: &str) -> Result<Image> {
        let rec = repos
            .images
            .get(id)
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        let bytes = self.read_blob(id)?;
        let config: ImageConfig = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("parsing config of image {id}"), e))?;
        let size = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| self.layer_size(d))
            .sum();
        Ok(Image {
            id: id.to_string(),
            manifest_digest: rec.manifest.clone(),
            names: repos.names_of(&rec.manifest),
            repo_digests: rec.repo_digests.clone(),
            parent: rec.parent.clone(),
            config,
            size,
        })
    }

    fn find_id(&self, repos: &Repositories, reference: &str) -> Result<String> {
        let not_found = || {
            let shown = parse_reference(reference)
                .map(|r| familiar_name(&r.to_string()))
                .unwrap_or_else(|_| reference.to_string());
            ImageError::NotFound(shown)
        };
        let by_prefix = |hex: &str| -> Result<Option<String>> {
            if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Ok(None);
            }
            let hex = hex.to_ascii_lowercase();
            let m: Vec<&String> = repos
                .images
                .keys()
                .filter(|id| id.get(7..).is_some_and(|h| h.starts_with(&hex)))
                .collect();
            match m.len() {
                0 => Ok(None),
                1 => Ok(Some(m[0].clone())),
                _ => Err(ImageError::Ambiguous(reference.to_string())),
            }
        };
        if let Some(hex) = reference.strip_prefix("sha256:") {
            return by_prefix(hex)?.ok_or_else(not_found);
        }
        if let Ok(r) = parse_reference(reference) {
            if let Some(d) = &r.digest {
                let repo_digest = format!("{}@{d}", r.repository());
                if let Some(id) = repos
                    .id_of_repo_digest(&repo_digest)
                    .or_else(|| repos.id_of_manifest(d))
                {
                    return Ok(id);
                }
                if r.tag.is_none() {
                    return Err(not_found());
                }
            }
            let name = Reference { digest: None, ..r }.to_string();
            if let Some(m) = repos.refs.get(&name) {
                if let Some(id) = repos.id_of_manifest(m) {
                    return Ok(id);
                }
            }
        }
        by_prefix(reference)?.ok_or_else(not_found)
    }

    /// Finds an image by name (normalized), by `name@digest`, or by id / unique id prefix
    /// (with or without `sha256:`).
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let repos = self.read_repos()?;
        let id = self.find_id(&repos, reference)?;
        self.load_image(&repos, &id)
    }

    /// Whether `reference` names an image in the store.
    pub fn exists(&self, reference: &str) -> bool {
        self.resolve(reference).is_ok()
    }

    /// All images (including build intermediates) by id.
    pub fn all_images(&self) -> Result<Vec<Image>> {
        let repos = self.read_repos()?;
        repos
            .images
            .keys()
            .map(|id| self.load_image(&repos, id))
            .collect()
    }

    /// The rows of `skiff images`: one per name, plus `<none>` rows for dangling images;
    /// build intermediates and untagged parents of other images are left out (docker's
    /// `images` without `-a`; [`ImageStore::all_images`] has them all). Newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let repos = self.read_repos()?;
        let mut out = Vec::new();
        for (id, rec) in &repos.images {
            let has_children = repos
                .images
                .values()
                .any(|r| r.parent.as_deref() == Some(id.as_str()));
            if (rec.intermediate || has_children) && repos.names_of(&rec.manifest).is_empty() {
                continue;
            }
            let img = self.load_image(&repos, id)?;
            let row = |repository: String, tag: String| ImageSummary {
                repository,
                tag,
                id: img.id.clone(),
                created: img.config.created.clone(),
                size: img.size,
            };
            if img.names.is_empty() {
                // Pulled by digest: docker shows the repository with no tag.
                let repos_of: BTreeSet<String> = img
                    .repo_digests
                    .iter()
                    .filter_map(|d| d.split_once('@'))
                    .map(|(r, _)| familiar_name(r))
                    .collect();
                if repos_of.is_empty() {
                    out.push(row("<none>".into(), "<none>".into()));
                }
                for r in repos_of {
                    out.push(row(r, "<none>".into()));
                }
            }
            for n in &img.names {
                let (repo, tag) = split_repo_tag(&familiar_name(n));
                out.push(row(repo, tag));
            }
        }
        out.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then(a.repository.cmp(&b.repository))
                .then(a.tag.cmp(&b.tag))
        });
        Ok(out)
    }

    /// Gives the image `source` the name `target` (moving the name if another image had it).
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let r = parse_reference(target)?;
        if r.digest.is_some() {
            return Err(ImageError::InvalidReference {
                reference: target.to_string(),
                reason: "cannot tag with a digest".into(),
            });
        }
        let name = r.to_string();
        self.update(|repos| {
            let id = self.find_id(repos, source)?;
            let manifest = repos.images[&id].manifest.clone();
            if let Some(rec) = repos.images.get_mut(&id) {
                rec.intermediate = false;
            }
            repos.refs.insert(name, manifest);
            Ok(())
        })
    }

    /// Removes the name `reference` (only the name; the image stays even if nameless).
    /// Returns the normalized name removed.
    pub fn untag(&self, reference: &str) -> Result<String> {
        let r = parse_reference(reference)?;
        let name = Reference { digest: None, ..r }.to_string();
        self.update(|repos| {
            repos
                .refs
                .remove(&name)
                .map(|_| name.clone())
                .ok_or_else(|| ImageError::NotFound(familiar_name(&name)))
        })
    }

    /// docker rmi: by name, untags and deletes the image if no name is left; by id, deletes
    /// the image (with `force`, even if several names refer to it: they are all removed).
    /// Untagged intermediate parents are deleted too, then unreferenced blobs and layers.
    /// The engine must check that no container uses the image before calling this.
    pub fn remove(&self, reference: &str, force: bool) -> Result<Vec<RemoveEvent>> {
        let events = self.update(|repos| {
            let id = self.find_id(repos, reference)?;
            let manifest = repos.images[&id].manifest.clone();
            let names = repos.names_of(&manifest);
            let mut events = Vec::new();
            let by_name = parse_reference(reference)
                .ok()
                .map(|r| Reference { digest: None, ..r }.to_string())
                .filter(|n| names.contains(n));
            if let Some(n) = by_name {
                repos.refs.remove(&n);
                events.push(RemoveEvent::Untagged(familiar_name(&n)));
                if names.len() > 1 {
                    return Ok(events);
                }
            } else if repos.images.values().any(|r| r.parent.as_deref() == Some(&id)) {
                return Err(ImageError::Conflict(format!(
                    "unable to delete {} (cannot be forced) - image has dependent child images",
                    short_id(&id)
                )));
            } else if names.len() > 1 && !force {
                return Err(ImageError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    short_id(&id)
                )));
            } else {
                for n in names {
                    repos.refs.remove(&n);
                    events.push(RemoveEvent::Untagged(familiar_name(&n)));
                }
            }
            if repos.images.values().any(|r| r.parent.as_deref() == Some(&id)) {
                return Ok(events);
            }
            let mut cur = Some(id);
            while let Some(id) = cur.take() {
                let Some(rec) = repos.images.remove(&id) else { break };
                events.push(RemoveEvent::Deleted(id.clone()));
                if let Some(p) = rec.parent {
                    let has_children = repos.images.values().any(|r| r.parent.as_deref() == Some(&p));
                    let parent_free = repos.images.get(&p).is_some_and(|pr| {
                        pr.intermediate && repos.names_of(&pr.manifest).is_empty()
                    });
                    if parent_free && !has_children {
                        cur = Some(p);
                    }
                }
            }
            Ok(events)
        })?;
        self.gc()?;
        Ok(events)
    }

    /// Deletes the images whose ids are not in `keep` (the engine passes the images its
    /// containers use) and that no remaining image descends from, repeatedly (so the
    /// ancestors of kept images stay): without `all` only those without a name (docker's
    /// dangling images, build intermediates left over); with `all` every such image,
    /// its names untagged first (`docker image prune -a`).
    pub fn prune(&self, keep: &[String], all: bool) -> Result<Vec<RemoveEvent>> {
        let events = self.update(|repos| {
            let mut events = Vec::new();
            loop {
                let victims: Vec<String> = repos
                    .images
                    .iter()
                    .filter(|(id, r)| {
                        !keep.contains(id)
                            && (all || repos.names_of(&r.manifest).is_empty())
                            && !repos
                                .images
                                .values()
                                .any(|c| c.parent.as_deref() == Some(id.as_str()))
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if victims.is_empty() {
                    break;
                }
                for v in victims {
                    if let Some(rec) = repos.images.remove(&v) {
                        let mut names = repos.names_of(&rec.manifest);
                        names.sort();
                        for n in names {
                            repos.refs.remove(&n);
                            events.push(RemoveEvent::Untagged(familiar_name(&n)));
                        }
                    }
                    events.push(RemoveEvent::Deleted(v));
                }
            }
            Ok(events)
        })?;
        self.gc()?;
        Ok(events)
    }

    /// Deletes blobs, snapshots and cache entries no image refers to. Skipped (not an
    /// error) while another operation that is writing new content holds the gc lock.
    pub fn gc(&self) -> Result<()> {
        let Some(_gc) = lock_at(&self.dir.join("gc.lock"), Mode::Exclusive, false)? else {
            tracing::debug!("image gc skipped: content is being written");
            return Ok(());
        };
        let _lock = self.lock()?;
        let repos = self.read_repos()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for (id, rec) in &repos.images {
            blobs.insert(id.get(7..).unwrap_or("").to_string());
            blobs.insert(rec.manifest.get(7..).unwrap_or("").to_string());
            if let Ok(bytes) = self.read_blob(id) {
                if let Ok(c) = serde_json::from_slice::<ImageConfig>(&bytes) {
                    for d in c.rootfs.diff_ids {
                        let h = d.get(7..).unwrap_or("").to_string();
                        blobs.insert(h.clone());
                        layers.insert(h);
                    }
                }
            }
        }
        let sweep = |dir: PathBuf, keep: &BTreeSet<String>| -> Result<()> {
            for e in fs::read_dir(&dir).ctx("reading", &dir)?.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !keep.contains(&name) {
                    tracing::debug!(item = %name, dir = %dir.display(), "gc: removing");
                    layer::remove_any(&e.path())?;
                }
            }
            Ok(())
        };
        // No writer holds the gc lock: left-overs of crashed operations can go too.
        sweep(self.tmp_dir(), &BTreeSet::new())?;
        sweep(self.dir.join("blobs/sha256"), &blobs)?;
        sweep(self.dir.join("layers"), &layers)?;
        for e in fs::read_dir(self.cache_dir())
            .ctx("reading", &self.cache_dir())?
            .flatten()
        {
            let keep = fs::read_to_string(e.path())
                .map(|id| repos.images.contains_key(id.trim()))
                .unwrap_or(false);
            if !keep {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// `skiff import`: a plain rootfs tarball (maybe gzip) becomes a one-layer image.
    pub fn import_rootfs(&self, tar: impl Read, reference: Option<&str>) -> Result<Image> {
        self.import_rootfs_with(tar, reference, ContainerConfig::default(), None)
    }

    /// [`ImageStore::import_rootfs`] with a container config (from `--change`, see
    /// [`crate::apply_changes`]) and a history comment (`--message`).
    pub fn import_rootfs_with(
        &self,
        tar: impl Read,
        reference: Option<&str>,
        container_config: ContainerConfig,
        message: Option<&str>,
    ) -> Result<Image> {
        let names = match reference {
            Some(r) => vec![normalize_name(r)?],
            None => vec![],
        };
        let _gc = self.gc_shared()?;
        let layer = self.store_layer(tar)?;
        let now = now_rfc3339();
        let mut config = ImageConfig::scratch();
        config.created = Some(now.clone());
        config.rootfs.diff_ids = vec![layer.diff_id];
        config.config = container_config;
        config.history = vec![History {
            created: Some(now),
            comment: Some(message.unwrap_or("Imported from -").to_string()),
            ..Default::default()
        }];
        self.create_image(&config, None, false, &names)
    }

    /// Turns an overlayfs upper dir into a new layer on top of `base` (whiteout devices
    /// become `.wh.NAME`, opaque dirs `.wh..wh..opq`) and registers the new image.
    pub fn commit(
        &self,
        base: Option<&Image>,
        upper_dir: &Path,
        opts: CommitOptions,
        reference: Option<&str>,
    ) -> Result<Image> {
        let names = match reference {
            Some(r) => vec![normalize_name(r)?],
            None => vec![],
        };
        let _gc = self.gc_shared()?;
        let layer = self.layer_from_dir(upper_dir)?;
        let now = now_rfc3339();
        let mut config = base
            .map(|b| b.config.clone())
            .unwrap_or_else(ImageConfig::scratch);
        config.created = Some(now.clone());
        config.author = opts.author.clone();
        config.config = opts.config;
        config.rootfs.diff_ids.push(layer.diff_id);
        config.history.push(History {
            created: Some(now),
            created_by: opts.created_by,
            author: opts.author,
            comment: opts.comment,
            empty_layer: false,
        });
        self.create_image(&config, base.map(|b| b.id.as_str()), false, &names)
    }

    /// `skiff history`: the config's history, newest first, with layer sizes.
    pub fn history(&self, reference: &str) -> Result<Vec<HistoryEntry>> {
        let img = self.resolve(reference)?;
        let mut diff_ids = img.diff_ids().iter();
        let mut out: Vec<HistoryEntry> = img
            .config
            .history
            .iter()
            .map(|h| {
                let size = if h.empty_layer {
                    0
                } else {
                    diff_ids.next().map(|d| self.layer_size(d)).unwrap_or(0)
                };
                HistoryEntry {
                    id: "<missing>".into(),
                    created: h.created.clone(),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    size,
                    comment: h.comment.clone().unwrap_or_default(),
                    empty_layer: h.empty_layer,
                }
            })
            .collect();
        // Entries made by a local ancestor (a build step, a commit) show its id.
        let repos = self.read_repos()?;
        let mut cur = Some(img.id.clone());
        let mut hops = 0;
        while let Some(id) = cur.take() {
            hops += 1;
            let len = if id == img.id {
                img.config.history.len()
            } else {
                match self
                    .read_blob(&id)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ImageConfig>(&b).ok())
                {
                    Some(c) => c.history.len(),
                    None => break,
                }
            };
            if let Some(e) = len.checked_sub(1).and_then(|i| out.get_mut(i)) {
                e.id = id.clone();
            }
            if hops < 1000 {
                cur = repos.images.get(&id).and_then(|r| r.parent.clone());
            }
        }
        out.reverse();
        Ok(out)
    }
}

use crate::reference::Reference;

/// Normalizes a name for tagging: digests are not allowed.
pub(crate) fn normalize_name(r: &str) -> Result<String> {
    let parsed = parse_reference(r)?;
    if parsed.digest.is_some() {
        return Err(ImageError::InvalidReference {
            reference: r.to_string(),
            reason: "a name with a digest cannot be used as a tag".into(),
        });
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A busybox rootfs tarball (bin/busybox + a few applet links + etc files).
    pub(crate) fn busybox_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, p, std::io::empty()).unwrap();
        };
        for d in ["bin", "etc", "tmp", "var", "var/lib"] {
            dir(&mut b, d);
        }
        let bb = fs::read("/bin/busybox").unwrap_or_else(|_| b"#!fake busybox".to_vec());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_mode(0o755);
        h.set_size(bb.len() as u64);
        b.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
        for app in ["sh", "ls", "cat", "echo", "touch", "rm", "mkdir", "id"] {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, format!("bin/{app}"), "busybox")
                .unwrap();
        }
        for (p, c) in [
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\napps:x:1001:\n"),
            ("var/lib/keep", "k"),
            ("var/lib/gone", "g"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_mode(0o644);
            h.set_size(c.len() as u64);
            b.append_data(&mut h, p, c.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn store_with_busybox() -> (tempfile::TempDir, ImageStore, Image) {
        let t = tempfile::tempdir().unwrap();
        let s = ImageStore::open(&t.path().join("images")).unwrap();
        let img = s
            .import_rootfs(&busybox_tar()[..], Some("busybox"))
            .unwrap();
        (t, s, img)
    }

    #[test]
    fn import_resolve_list() {
        let (_t, s, img) = store_with_busybox();
        assert_eq!(img.names, vec!["docker.io/library/busybox:latest"]);
        let dirs = s.layer_dirs(&img);
        assert_eq!(dirs.len(), 1);
        assert!(dirs[0].join("bin/busybox").is_file());
        assert!(fs::symlink_metadata(dirs[0].join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(s.resolve("busybox:latest").unwrap().id, img.id);
        assert_eq!(s.resolve(&img.id).unwrap().id, img.id);
        assert_eq!(s.resolve(&img.id[7..15]).unwrap().id, img.id);
        assert_eq!(
            s.resolve(&format!("sha256:{}", &img.id[7..12])).unwrap().id,
            img.id
        );
        assert_eq!(
            s.resolve(&format!("busybox@{}", img.manifest_digest))
                .unwrap()
                .id,
            img.id
        );
        let e = s.resolve("nope").unwrap_err().to_string();
        assert_eq!(e, "No such image: nope:latest");
        let rows = s.list().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].repository.as_str(), rows[0].tag.as_str()),
            ("busybox", "latest")
        );
        assert!(rows[0].size > 0);
        // gzip import gives the same layer
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&busybox_tar()).unwrap();
        let img2 = s.import_rootfs(&gz.finish().unwrap()[..], None).unwrap();
        assert_eq!(img2.diff_ids(), img.diff_ids());
        assert_eq!(s.list().unwrap().len(), 2);
    }

    #[test]
    fn tag_untag_remove_gc() {
        let (_t, s, img) = store_with_busybox();
        s.tag("busybox", "me/app:1").unwrap();
        assert_eq!(s.resolve("me/app:1").unwrap().id, img.id);
        assert!(s
            .remove(&img.id[7..19], false)
            .unwrap_err()
            .to_string()
            .contains("must be forced"));
        assert_eq!(s.untag("me/app:1").unwrap(), "docker.io/me/app:1");
        assert!(s.resolve("me/app:1").is_err());
        let ev = s.remove("busybox", false).unwrap();
        assert_eq!(
            ev,
            vec![
                RemoveEvent::Untagged("busybox:latest".into()),
                RemoveEvent::Deleted(img.id.clone())
            ]
        );
        assert!(s.resolve(&img.id).is_err());
        assert_eq!(
            fs::read_dir(s.dir().join("blobs/sha256")).unwrap().count(),
            0
        );
        assert_eq!(fs::read_dir(s.dir().join("layers")).unwrap().count(), 0);
    }

    #[test]
    fn commit_upper_with_whiteout_and_opaque() {
        let (t, s, base) = store_with_busybox();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("var/lib")).unwrap();
        layer::make_whiteout(&upper.join("var/lib/gone")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        layer::set_xattr(&upper.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(upper.join("etc/hostname"), "x").unwrap();
        fs::write(upper.join("new"), "n").unwrap();
        let mut cfg = base.config.config.clone();
        cfg.cmd = Some(vec!["sh".into()]);
        let img = s
            .commit(
                Some(&base),
                &upper,
                CommitOptions {
                    config: cfg,
                    created_by: Some("sh".into()),
                    ..Default::default()
                },
                Some("committed:v1"),
            )
            .unwrap();
        assert_eq!(img.diff_ids().len(), 2);
        assert_eq!(img.parent.as_deref(), Some(base.id.as_str()));
        assert_eq!(img.config.config.cmd, Some(vec!["sh".to_string()]));
        let blob = s.read_blob(&img.diff_ids()[1]).unwrap();
        let mut names: Vec<String> = tar::Archive::new(&blob[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "etc",
                "etc/.wh..wh..opq",
                "etc/hostname",
                "new",
                "var",
                "var/lib",
                "var/lib/.wh.gone"
            ]
        );
        let dirs = s.layer_dirs(&img);
        let top = &dirs[1];
        let m = fs::symlink_metadata(top.join("var/lib/gone")).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0);
        assert!(layer::is_opaque(&top.join("etc")));
        let h = s.history("committed:v1").unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].id, img.id);
        assert_eq!(h[0].created_by, "sh");
        assert_eq!(h[1].comment, "Imported from -");
        // the base can't go while the child exists; removing the child keeps the base
        assert!(s
            .remove(&base.id, false)
            .unwrap_err()
            .to_string()
            .contains("child"));
        s.remove("committed:v1", false).unwrap();
        assert!(s.resolve("busybox").is_ok());
    }

    /// The snapshots are what the kernel's overlayfs expects: mount the committed image's
    /// layers read-only and look through them (skipped where mounting is not allowed).
    #[test]
    fn snapshots_mount_as_overlay() {
        let (t, s, base) = store_with_busybox();
        let upper = t.path().join("upper");
        fs::create_dir_all(upper.join("var/lib")).unwrap();
        layer::make_whiteout(&upper.join("var/lib/gone")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        layer::set_xattr(&upper.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
        fs::write(upper.join("etc/hostname"), "x").unwrap();
        let img = s
            .commit(Some(&base), &upper, CommitOptions::default(), None)
            .unwrap();
        let mut dirs = s.layer_dirs(&img);
        dirs.reverse();
        let lower: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let mnt = t.path().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let data = format!("lowerdir={}", lower.join(":"));
        if let Err(e) = nix::mount::mount(
            Some("overlay"),
            &mnt,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(data.as_str()),
        ) {
            eprintln!("overlay mount not possible here ({e}), skipping");
            return;
        }
        let seen = (
            mnt.join("bin/busybox").is_file(),
            mnt.join("var/lib/keep").exists(),
            mnt.join("var/lib/gone").exists(),
            mnt.join("etc/passwd").exists(),
            mnt.join("etc/hostname").exists(),
        );
        let _ = nix::mount::umount(&mnt);
        assert_eq!(seen, (true, true, false, false, true));
    }

    #[test]
    fn concurrent_tags_are_not_lost() {
        let (_t, s, _) = store_with_busybox();
        std::thread::scope(|sc| {
            for i in 0..6 {
                let s = s.clone();
                sc.spawn(move || {
                    for j in 0..8 {
                        s.tag("busybox", &format!("t{i}:v{j}")).unwrap();
                    }
                });
            }
        });
        assert_eq!(s.resolve("busybox").unwrap().names.len(), 49);
        let v = s.resolve("t3:v7").unwrap().inspect_json();
        assert!(v["RepoTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "busybox:latest"));
        assert_eq!(v["Os"], "linux");
    }

    #[test]
    fn prune_dangling_images() {
        let (_t, s, img) = store_with_busybox();
        let other = s
            .import_rootfs(
                &tar::Builder::new(Vec::new()).into_inner().unwrap()[..],
                None,
            )
            .unwrap();
        assert!(s
            .prune(std::slice::from_ref(&other.id), false)
            .unwrap()
            .is_empty());
        assert_eq!(
            s.prune(&[], false).unwrap(),
            vec![RemoveEvent::Deleted(other.id.clone())]
        );
        assert!(s.resolve(&img.id).is_ok());
        // With `all`, a named image goes too, untagged first; a kept one stays.
        let third = s
            .import_rootfs(
                &tar::Builder::new(Vec::new()).into_inner().unwrap()[..],
                Some("third:1"),
            )
            .unwrap();
        assert_eq!(
            s.prune(std::slice::from_ref(&img.id), true).unwrap(),
            vec![
                RemoveEvent::Untagged("third:1".into()),
                RemoveEvent::Deleted(third.id.clone())
            ]
        );
        assert!(s.resolve(&img.id).is_ok() && s.resolve("third:1").is_err());
    }
}
