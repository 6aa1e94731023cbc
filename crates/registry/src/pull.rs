//! `pull`: a manifest (through an index to this platform's entry), its config, and the
//! layers that are not stored yet, several at a time, each streamed to a scratch file
//! while its digest is checked, then unpacked into the store.

use crate::client::{read_limited, status_error, Options, Registry};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Fetched, Platform};
use crate::progress::{LayerStatus, Progress};
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::Method;
use sha2::{Digest, Sha256};
use skiff_image::{parse_reference, Image, ImageConfig, ImageStore, LayerSource, Reference};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Layers downloaded at once.
const PARALLEL: usize = 3;
/// Attempts at a blob when the registry fails in a way retrying can help.
const ATTEMPTS: u32 = 3;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The digest of the manifest (or index) the reference resolved to.
    pub digest: String,
    /// Whether the name already pointed at this image.
    pub up_to_date: bool,
    /// The normalized reference pulled.
    pub reference: Reference,
}

pub(crate) fn repo_scope(path: &str, actions: &str) -> String {
    format!("repository:{path}:{actions}")
}

fn sha256_hex(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// The short form docker shows a layer by (12 hex digits of its digest).
pub fn short_digest(d: &str) -> String {
    d.strip_prefix("sha256:")
        .unwrap_or(d)
        .chars()
        .take(12)
        .collect()
}

/// Fetches the manifest `reference` (a tag or digest) in `path`; returns its bytes,
/// content type and digest (checked when `reference` is a digest).
pub(crate) async fn fetch_manifest(
    reg: &Registry,
    path: &str,
    reference: &str,
) -> Result<(Vec<u8>, String, String)> {
    let scopes = [repo_scope(path, "pull")];
    let headers = [(ACCEPT, HeaderValue::from_static(manifest::ACCEPT))];
    let url = format!("/v2/{path}/manifests/{reference}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = async {
            let resp = reg
                .send(Method::GET, &url, &headers, Bytes::new(), &scopes)
                .await?;
            if !resp.status().is_success() {
                return Err(status_error(resp).await);
            }
            let ct = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = read_limited(resp, 4 << 20).await?;
            Ok((body, ct))
        }
        .await;
        match res {
            Ok((body, ct)) => {
                let digest = sha256_hex(&body);
                if skiff_image::is_digest(reference) && digest != reference {
                    return Err(Error::DigestMismatch {
                        want: reference.to_string(),
                        got: digest,
                    });
                }
                return Ok((body, ct, digest));
            }
            Err(e) if e.is_transient() && attempt < ATTEMPTS => backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(500 << attempt.min(4))).await;
}

/// A small blob (a config) read whole and checked against its digest.
async fn fetch_small_blob(reg: &Registry, path: &str, d: &Descriptor) -> Result<Vec<u8>> {
    let scopes = [repo_scope(path, "pull")];
    let url = format!("/v2/{path}/blobs/{}", d.digest);
    let resp = reg
        .send(Method::GET, &url, &[], Bytes::new(), &scopes)
        .await?;
    if !resp.status().is_success() {
        return Err(status_error(resp).await);
    }
    let body = read_limited(resp, 64 << 20).await?;
    let got = sha256_hex(&body);
    if got != d.digest {
        return Err(Error::DigestMismatch {
            want: d.digest.clone(),
            got,
        });
    }
    Ok(body)
}

/// Streams the blob `d` into `dest`, hashing as it goes; the file is removed unless the
/// digest matches.
async fn download_blob(
    reg: &Registry,
    path: &str,
    d: &Descriptor,
    dest: &PathBuf,
    progress: &dyn Progress,
    id: &str,
) -> Result<()> {
    let scopes = [repo_scope(path, "pull")];
    let url = format!("/v2/{path}/blobs/{}", d.digest);
    let res = async {
        let resp = reg
            .send(Method::GET, &url, &[], Bytes::new(), &scopes)
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let mut f = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        let mut hasher = Sha256::new();
        let mut body = resp.into_body();
        let mut got: u64 = 0;
        let mut last_report = 0u64;
        while let Some(frame) = crate::client::next_frame(&mut body).await? {
            let frame = frame.map_err(|e| Error::Unreachable {
                url: format!("{}{url}", reg.base()),
                reason: format!("reading the blob: {e}"),
            })?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                got += data.len() as u64;
                if d.size > 0 && got > d.size {
                    return Err(Error::DigestMismatch {
                        want: d.digest.clone(),
                        got: format!("more than the {} bytes the manifest says", d.size),
                    });
                }
                f.write_all(&data)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
                if got - last_report >= 256 * 1024 {
                    last_report = got;
                    progress.layer(
                        id,
                        LayerStatus::Downloading {
                            current: got,
                            total: d.size,
                        },
                    );
                }
            }
        }
        f.flush()
            .await
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
        progress.layer(id, LayerStatus::Verifying);
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if digest != d.digest {
            return Err(Error::DigestMismatch {
                want: d.digest.clone(),
                got: digest,
            });
        }
        Ok(())
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    res
}

/// Pulls `reference` into `store`.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let r = parse_reference(reference)?;
    let shown = skiff_image::familiar_name(&r.to_string());
    let repo = skiff_image::familiar_name(&r.repository());
    pull_reference(store, r, opts, progress)
        .await
        .map_err(|e| match e {
            // docker's words for a repository the registry will not show us.
            Error::Status {
                status: status @ (401 | 403),
                codes,
                reason,
            } => Error::Status {
                status,
                codes,
                reason: format!(
                    "pull access denied for {repo}, repository does not exist or may require 'skiff login': {reason}"
                ),
            },
            Error::Status {
                status,
                codes,
                reason,
            } => Error::Status {
                status,
                codes,
                reason: format!("pull {shown}: {reason}"),
            },
            e @ (Error::DigestMismatch { .. } | Error::Transport(_)) => {
                Error::Invalid(format!("pull {shown}: {e}"))
            }
            e => e,
        })
}

/// What a registry says of an image without pulling it (`GET /distribution/{name}/json`,
/// `docker manifest inspect`'s first step): the manifest's descriptor and the platforms
/// it serves.
#[derive(Debug, Clone)]
pub struct Distribution {
    pub descriptor: manifest::Descriptor,
    pub platforms: Vec<Platform>,
}

/// Looks `reference` up at its registry (its mirrors first, as a pull): the top
/// manifest's media type, digest and size, and the platforms of an index's images (of a
/// single image, its config's).
pub async fn distribution(reference: &str, opts: &Options) -> Result<Distribution> {
    let r = parse_reference(reference)?;
    let tag_or_digest = tag_or_digest(&r);
    let (reg, path, (body, ct, digest)) = resolve(&r, &tag_or_digest, opts).await?;
    let platforms = match manifest::parse(&ct, &body)? {
        Fetched::Index(idx) => idx
            .manifests
            .iter()
            .filter_map(|d| d.platform.clone())
            .filter(|p| p.os != "unknown" && !p.os.is_empty())
            .collect(),
        Fetched::Image(m) => {
            let config = fetch_small_blob(&reg, &path, &m.config).await?;
            let p: Platform = serde_json::from_slice(&config).map_err(|e| {
                Error::Invalid(format!("the image's config is not valid JSON: {e}"))
            })?;
            vec![p]
        }
    };
    Ok(Distribution {
        descriptor: manifest::Descriptor {
            media_type: ct,
            digest,
            size: body.len() as u64,
            ..Default::default()
        },
        platforms,
    })
}

/// What a reference asks the registry for: its digest, else its tag, else `latest`.
fn tag_or_digest(r: &Reference) -> String {
    r.digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into())
}

/// Finds the manifest `tag_or_digest` of `r` at the first endpoint that has it: the
/// registry's mirrors in order, then the registry itself (unless disabled). Returns the
/// connection, the repository path there (after a mirror's rewrites) and the manifest.
async fn resolve(
    r: &Reference,
    tag_or_digest: &str,
    opts: &Options,
) -> Result<(Registry, String, (Vec<u8>, String, String))> {
    let shown = skiff_image::familiar_name(&r.to_string());
    let endpoints = opts
        .registries
        .endpoints(&r.domain, opts.disable_default_endpoint)?;
    let count = endpoints.len();
    let mut last = None;
    for (i, ep) in endpoints.into_iter().enumerate() {
        let path = if ep.mirror {
            opts.registries.rewrite(&r.domain, &r.path)
        } else {
            r.path.clone()
        };
        let res = async {
            let reg = Registry::connect_endpoint(&r.domain, &ep, opts, None).await?;
            let m = fetch_manifest(&reg, &path, tag_or_digest).await?;
            Ok::<_, Error>((reg, m))
        }
        .await;
        match res {
            Ok((reg, m)) => return Ok((reg, path, m)),
            Err(e) => {
                if i + 1 < count {
                    // containerd's rule: any failure at a mirror moves on to the next.
                    tracing::info!(image = %shown, endpoint = %ep.host, error = %e, "pull from a mirror failed; trying the next endpoint");
                }
                last = Some(match e {
                    e if e.has_code("MANIFEST_UNKNOWN") || e.status() == Some(404) => {
                        Error::NotFound(format!("manifest for {shown} not found: {e}"))
                    }
                    e => e,
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Invalid(format!("no endpoint to pull {shown} from"))))
}

async fn pull_reference(
    store: &ImageStore,
    r: Reference,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Pulled> {
    let want = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let shown = skiff_image::familiar_name(&r.to_string());
    let tag_or_digest = tag_or_digest(&r);
    let (reg, path, (body, ct, top_digest)) = resolve(&r, &tag_or_digest, opts).await?;
    progress.pulling_from(&tag_or_digest, &r.path);
    let r_path = path;
    let mut doc = manifest::parse(&ct, &body)?;
    let mut hops = 0;
    let image_manifest = loop {
        match doc {
            Fetched::Image(m) => break *m,
            Fetched::Index(idx) => {
                hops += 1;
                if hops > 2 {
                    return Err(Error::Invalid("image index nesting too deep".into()));
                }
                let entry = manifest::choose(&idx, &want)?;
                let (b, ct, _) = fetch_manifest(&reg, &r_path, &entry.digest).await?;
                doc = manifest::parse(&ct, &b)?;
            }
        }
    };
    if let Some(l) = image_manifest
        .layers
        .iter()
        .find(|l| manifest::is_foreign(l))
    {
        return Err(Error::Invalid(format!(
            "image {shown} has a foreign layer {} (served from {}), which is not supported: foreign layers are only for Windows images",
            l.digest,
            l.urls.first().map(String::as_str).unwrap_or("elsewhere")
        )));
    }
    for l in &image_manifest.layers {
        // Every layer's type is one the store unpacks (gzip, zstd or plain tar).
        manifest::layer_compression(&l.media_type)?;
    }
    let config_bytes = fetch_small_blob(&reg, &r_path, &image_manifest.config).await?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
        Error::Invalid(format!(
            "invalid image config {}: {e}",
            image_manifest.config.digest
        ))
    })?;
    let diff_ids = config.rootfs.diff_ids.clone();
    if diff_ids.len() != image_manifest.layers.len() {
        return Err(Error::Invalid(format!(
            "image {shown}: the manifest lists {} layers but the config {}",
            image_manifest.layers.len(),
            diff_ids.len()
        )));
    }
    if opts.platform.is_some() && (config.os != want.os || config.architecture != want.architecture)
    {
        return Err(Error::Invalid(format!(
            "image {shown} is for {}/{}, not {want}",
            config.os, config.architecture
        )));
    }

    // Blobs written from here on are not garbage until the image is registered.
    let _gc = store.gc_shared()?;
    let reg = Arc::new(reg);
    let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    let mut seen = std::collections::BTreeSet::new();
    let repository = r.repository();
    for (layer, diff_id) in image_manifest.layers.iter().zip(&diff_ids) {
        let id = short_digest(&layer.digest);
        if store.has_layer(diff_id) {
            progress.layer(&id, LayerStatus::AlreadyExists);
            continue;
        }
        if !seen.insert(diff_id.clone()) {
            continue;
        }
        progress.layer(&id, LayerStatus::Waiting);
        let (reg, sem, store, progress) =
            (reg.clone(), sem.clone(), store.clone(), progress.clone());
        let (layer, diff_id, path, repository) = (
            layer.clone(),
            diff_id.clone(),
            r_path.clone(),
            repository.clone(),
        );
        tasks.spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .map_err(|_| Error::Invalid("pull cancelled".into()))?;
            let tmp = store
                .tmp_dir()
                .join(format!("pull-{}-{}", short_digest(&layer.digest), std::process::id()));
            let mut attempt = 0;
            loop {
                attempt += 1;
                progress.layer(&id, LayerStatus::Downloading { current: 0, total: layer.size });
                match download_blob(&reg, &path, &layer, &tmp, progress.as_ref(), &id).await {
                    Ok(()) => break,
                    Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                        tracing::debug!(layer = %layer.digest, error = %e, "retrying layer download");
                        backoff(attempt).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            progress.layer(&id, LayerStatus::DownloadComplete);
            progress.layer(&id, LayerStatus::Extracting);
            let (s2, t2, want) = (store.clone(), tmp.clone(), diff_id.clone());
            let stored = tokio::task::spawn_blocking(move || {
                let res = std::fs::File::open(&t2)
                    .map_err(|e| Error::io(format!("opening {}", t2.display()), e))
                    .and_then(|f| {
                        s2.store_layer_checked(std::io::BufReader::new(f), Some(&want))
                            .map_err(Error::from)
                    });
                let _ = std::fs::remove_file(&t2);
                res
            })
            .await
            .map_err(|e| Error::Invalid(format!("unpacking layer: {e}")))?;
            stored?;
            store.add_layer_source(
                &diff_id,
                LayerSource {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    media_type: layer.media_type.clone(),
                    repository,
                },
            )?;
            progress.layer(&id, LayerStatus::PullComplete);
            Ok::<(), Error>(())
        });
    }
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        let res = res
            .map_err(|e| Error::Invalid(format!("layer download failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = res {
            if first_err.is_none() {
                first_err = Some(e);
                // One layer failing fails the pull: stop the others now.
                tasks.abort_all();
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Sources of layers that were already stored (their compressed form in this repository).
    for (layer, diff_id) in image_manifest.layers.iter().zip(&diff_ids) {
        if !store
            .layer_sources(diff_id)
            .iter()
            .any(|s| s.digest == layer.digest && s.repository == repository)
        {
            let _ = store.add_layer_source(
                diff_id,
                LayerSource {
                    digest: layer.digest.clone(),
                    size: layer.size,
                    media_type: layer.media_type.clone(),
                    repository: repository.clone(),
                },
            );
        }
    }
    let name = r.tag.as_ref().map(|_| {
        Reference {
            digest: None,
            ..r.clone()
        }
        .to_string()
    });
    let before = name
        .as_ref()
        .and_then(|n| store.resolve(n).ok())
        .map(|i| i.id);
    let names: Vec<String> = name.into_iter().collect();
    let image = store.register_image(&config_bytes, None, false, &names)?;
    store.add_repo_digest(&image.id, &repository, &top_digest)?;
    let image = store.resolve(&image.id)?;
    let up_to_date = before.as_deref() == Some(image.id.as_str());
    Ok(Pulled {
        image,
        digest: top_digest,
        up_to_date,
        reference: r,
    })
}
