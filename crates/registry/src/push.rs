//! `push`: each layer the registry does not have (checked with HEAD, mounted from another
//! repository of the same registry when the store knows one that holds it, otherwise
//! gzip-compressed and uploaded in one request or in chunks), the config, then a Docker
//! schema 2 manifest under the tag.

use crate::client::{status_error, Options, Registry};
use crate::error::{Error, Result};
use crate::manifest::{
    Descriptor, ImageManifest, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST,
};
use crate::progress::{LayerStatus, Progress};
use crate::pull::{repo_scope, short_digest};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use http::{Method, StatusCode};
use sha2::{Digest, Sha256};
use skiff_image::{parse_reference, ImageStore, LayerSource, Reference};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PARALLEL: usize = 3;
/// Blobs up to this size go up in one request; larger ones in chunks of this size.
pub const DEFAULT_CHUNK_SIZE: usize = 32 << 20;

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The tag pushed.
    pub tag: String,
    /// The manifest's digest and size.
    pub digest: String,
    pub size: usize,
}

/// Push options beyond the connection's.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Upload size limit of one request (see [`DEFAULT_CHUNK_SIZE`]).
    pub chunk_size: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

struct Target {
    reg: Registry,
    path: String,
    repository: String,
    chunk_size: usize,
}

impl Target {
    fn scopes(&self) -> Vec<String> {
        vec![repo_scope(&self.path, "pull,push")]
    }

    /// Whether the repository has the blob.
    async fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = format!("/v2/{}/blobs/{digest}", self.path);
        let resp = self
            .reg
            .send(Method::HEAD, &url, &[], Bytes::new(), &self.scopes())
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(resp).await),
        }
    }

    /// Starts an upload (or mounts `digest` from `from`); `Ok(None)` when mounted.
    async fn start_upload(&self, mount: Option<(&str, &str)>) -> Result<Option<String>> {
        let mut scopes = self.scopes();
        let url = match mount {
            Some((digest, from)) => {
                scopes.push(repo_scope(from, "pull"));
                format!(
                    "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
                    self.path
                )
            }
            None => format!("/v2/{}/blobs/uploads/", self.path),
        };
        let resp = self
            .reg
            .send(Method::POST, &url, &[], Bytes::new(), &scopes)
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        Error::Invalid("the registry started an upload without a Location".into())
                    })?;
                Ok(Some(
                    self.reg
                        .resolve_url(&format!("{}{url}", self.reg.base()), loc),
                ))
            }
            _ => Err(status_error(resp).await),
        }
    }

    fn with_digest(location: &str, digest: &str) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// Uploads `file` (whose digest is `digest`) to the session at `location`.
    async fn upload(
        &self,
        mut location: String,
        file: &Path,
        digest: &str,
        size: u64,
        progress: &dyn Progress,
        id: &str,
    ) -> Result<()> {
        let scopes = self.scopes();
        let octet = HeaderValue::from_static("application/octet-stream");
        let read_at = |offset: u64, len: usize| -> Result<Bytes> {
            use std::io::Seek;
            let mut f = std::fs::File::open(file)
                .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            let mut buf = vec![0u8; len];
            f.read_exact(&mut buf)
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            Ok(Bytes::from(buf))
        };
        if size as usize <= self.chunk_size {
            let body = read_at(0, size as usize)?;
            let resp = self
                .reg
                .send(
                    Method::PUT,
                    &Self::with_digest(&location, digest),
                    &[(CONTENT_TYPE, octet)],
                    body,
                    &scopes,
                )
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error(resp).await);
            }
            progress.layer(
                id,
                LayerStatus::Pushing {
                    current: size,
                    total: size,
                },
            );
            return Ok(());
        }
        let mut offset = 0u64;
        while offset < size {
            let len = (size - offset).min(self.chunk_size as u64) as usize;
            let body = read_at(offset, len)?;
            let range = HeaderValue::from_str(&format!("{}-{}", offset, offset + len as u64 - 1))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let resp = self
                .reg
                .send(
                    Method::PATCH,
                    &location,
                    &[(CONTENT_TYPE, octet.clone()), (CONTENT_RANGE, range)],
                    body,
                    &scopes,
                )
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error(resp).await);
            }
            if let Some(l) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                location = self.reg.resolve_url(&location, l);
            }
            offset += len as u64;
            progress.layer(
                id,
                LayerStatus::Pushing {
                    current: offset,
                    total: size,
                },
            );
        }
        let resp = self
            .reg
            .send(
                Method::PUT,
                &Self::with_digest(&location, digest),
                &[],
                Bytes::new(),
                &scopes,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp).await);
        }
        Ok(())
    }

    async fn upload_bytes(&self, data: &[u8], digest: &str, tmp_dir: &Path) -> Result<()> {
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let tmp = tmp_dir.join(format!(
            "push-{}-{}",
            short_digest(digest),
            std::process::id()
        ));
        std::fs::write(&tmp, data)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        let res = async {
            let loc = self
                .start_upload(None)
                .await?
                .ok_or_else(|| Error::Invalid("the registry did not start an upload".into()))?;
            self.upload(
                loc,
                &tmp,
                digest,
                data.len() as u64,
                &crate::progress::Silent,
                "",
            )
            .await
        }
        .await;
        let _ = std::fs::remove_file(&tmp);
        res
    }
}

/// The schema 2 media type of a layer blob known by `media_type` (a blob pulled from
/// an OCI image keeps its bytes; only the name of its type changes).
fn docker_layer_type(media_type: &str) -> &'static str {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.docker.image.rootfs.diff.tar"
        }
        _ => DOCKER_LAYER_GZIP,
    }
}

/// gzip-compresses a stored layer into `dest`; returns its digest and size.
fn compress_layer(src: &Path, dest: &Path) -> Result<(String, u64)> {
    struct HashW<W: Write> {
        inner: W,
        h: Sha256,
        n: u64,
    }
    impl<W: Write> Write for HashW<W> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(b)?;
            self.h.update(&b[..n]);
            self.n += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let res = (|| -> std::io::Result<(String, u64)> {
        let mut input = std::io::BufReader::new(std::fs::File::open(src)?);
        let out = std::io::BufWriter::new(std::fs::File::create(dest)?);
        let hw = HashW {
            inner: out,
            h: Sha256::new(),
            n: 0,
        };
        let mut gz = flate2::write::GzEncoder::new(hw, flate2::Compression::default());
        std::io::copy(&mut input, &mut gz)?;
        let mut hw = gz.finish()?;
        hw.flush()?;
        Ok((format!("sha256:{}", hex::encode(hw.h.finalize())), hw.n))
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(dest);
        Error::io(format!("compressing layer {}", src.display()), e)
    })
}

/// Pushes the image named `reference` to its registry.
pub async fn push(
    store: &ImageStore,
    reference: &str,
    opts: &Options,
    push_opts: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<Pushed> {
    let r = parse_reference(reference)?;
    if r.digest.is_some() {
        return Err(Error::Invalid(format!(
            "cannot push a digest reference: {reference}"
        )));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let name = Reference {
        digest: None,
        ..r.clone()
    }
    .to_string();
    let image = store.resolve(&name).map_err(|_| {
        Error::Invalid(format!(
            "An image does not exist locally with the tag: {}",
            skiff_image::familiar_name(&r.repository())
        ))
    })?;
    let reg = Registry::connect(&r.domain, opts, None).await?;
    let target = Arc::new(Target {
        reg,
        path: r.path.clone(),
        repository: r.repository(),
        chunk_size: push_opts.chunk_size.max(1),
    });
    let _gc = store.gc_shared()?;
    let diff_ids: Vec<String> = image.diff_ids().to_vec();
    // docker lists the top layer first
    for d in diff_ids.iter().rev() {
        progress.layer(&short_digest(d), LayerStatus::Preparing);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    let unique: Vec<String> = {
        let mut seen = std::collections::BTreeSet::new();
        diff_ids
            .iter()
            .filter(|d| seen.insert((*d).clone()))
            .cloned()
            .collect()
    };
    for diff_id in unique {
        let (t, sem, store, progress) =
            (target.clone(), sem.clone(), store.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .map_err(|_| Error::Invalid("push cancelled".into()))?;
            let id = short_digest(&diff_id);
            let host_prefix = format!("{}/", t.reg.host);
            let known: Vec<LayerSource> = store
                .layer_sources(&diff_id)
                .into_iter()
                .filter(|s| s.repository.starts_with(&host_prefix))
                // A schema 2 manifest has no zstd layer type: such blobs are not reused,
                // the layer is pushed gzip'd.
                .filter(|s| !s.media_type.ends_with("+zstd"))
                .collect();
            // 1. A blob this layer is known as, already in the repository or mountable.
            for s in &known {
                if t.has_blob(&s.digest).await? {
                    progress.layer(&id, LayerStatus::LayerAlreadyExists);
                    return Ok((diff_id, s.clone()));
                }
            }
            for s in &known {
                let from = &s.repository[host_prefix.len()..];
                if from == t.path {
                    continue;
                }
                match t.start_upload(Some((&s.digest, from))).await {
                    Ok(None) => {
                        progress.layer(&id, LayerStatus::MountedFrom(from.to_string()));
                        let src = LayerSource { repository: t.repository.clone(), ..s.clone() };
                        let _ = store.add_layer_source(&diff_id, src.clone());
                        return Ok((diff_id, src));
                    }
                    Ok(Some(_)) | Err(_) => {
                        tracing::debug!(layer = %s.digest, from, "cross-repository mount refused; uploading");
                    }
                }
            }
            // 2. Compress it and upload what the registry lacks.
            let blob = store.blob_path(&diff_id)?;
            let tmp: PathBuf = store
                .tmp_dir()
                .join(format!("push-{}-{}.gz", id, std::process::id()));
            let (b2, t2) = (blob.clone(), tmp.clone());
            let (digest, size) = tokio::task::spawn_blocking(move || compress_layer(&b2, &t2))
                .await
                .map_err(|e| Error::Invalid(format!("compressing layer: {e}")))??;
            let res = async {
                if t.has_blob(&digest).await? {
                    progress.layer(&id, LayerStatus::LayerAlreadyExists);
                    return Ok(());
                }
                let loc = t
                    .start_upload(None)
                    .await?
                    .ok_or_else(|| Error::Invalid("the registry did not start an upload".into()))?;
                t.upload(loc, &tmp, &digest, size, progress.as_ref(), &id).await?;
                progress.layer(&id, LayerStatus::Pushed);
                Ok::<(), Error>(())
            }
            .await;
            let _ = std::fs::remove_file(&tmp);
            res?;
            let src = LayerSource {
                digest,
                size,
                media_type: DOCKER_LAYER_GZIP.into(),
                repository: t.repository.clone(),
            };
            store.add_layer_source(&diff_id, src.clone())?;
            Ok::<_, Error>((diff_id, src))
        });
    }
    let mut blobs: BTreeMap<String, LayerSource> = BTreeMap::new();
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        match res
            .map_err(|e| Error::Invalid(format!("layer upload failed: {e}")))
            .and_then(|r| r)
        {
            Ok((d, s)) => {
                blobs.insert(d, s);
            }
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let config = store.config_bytes(&image.id)?;
    target
        .upload_bytes(&config, &image.id, &store.tmp_dir())
        .await?;
    let layers = diff_ids
        .iter()
        .map(|d| {
            let s = blobs
                .get(d)
                .ok_or_else(|| Error::Invalid(format!("layer {d} was not pushed")))?;
            Ok(Descriptor {
                media_type: docker_layer_type(&s.media_type).into(),
                digest: s.digest.clone(),
                size: s.size,
                urls: vec![],
                platform: None,
                annotations: BTreeMap::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST.into(),
        config: Descriptor {
            media_type: DOCKER_CONFIG.into(),
            digest: image.id.clone(),
            size: config.len() as u64,
            urls: vec![],
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers,
    };
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Invalid(format!("serializing the manifest: {e}")))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let url = format!("/v2/{}/manifests/{tag}", target.path);
    let resp = target
        .reg
        .send(
            Method::PUT,
            &url,
            &[(CONTENT_TYPE, HeaderValue::from_static(DOCKER_MANIFEST))],
            Bytes::from(body.clone()),
            &target.scopes(),
        )
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(status_error(resp).await);
    }
    store.add_repo_digest(&image.id, &target.repository, &digest)?;
    Ok(Pushed {
        tag,
        digest,
        size: body.len(),
    })
}
