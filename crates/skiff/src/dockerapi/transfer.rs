//! Images in and out as streams: `POST /images/{name}/push` (docker's JSON progress,
//! `X-Registry-Auth` for this push), `GET /images/{name}/get` and `GET /images/get`
//! (`docker save`: one tar, an OCI layout that is also a docker-save archive), `POST
//! /images/load` (`docker load`, the body spooled to disk) and `POST
//! /images/create?fromSrc=-` (`docker import` of a root filesystem tar).

use super::pull::{error_line, registry_auth, JsonProgress};
use super::{Answer, ApiError, Req};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;
use std::io::Write;
use tokio::sync::mpsc::Sender;

fn line(v: serde_json::Value) -> Bytes {
    Bytes::from(format!("{v}\r\n"))
}

/// `POST /images/{name}/push?tag`.
pub(super) fn push(req: &Req, name: &str) -> Answer {
    let reference = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let parsed = skiff_image::parse_reference(&reference)
        .map_err(|e| ApiError::bad(format!("invalid reference format: {e}")))?;
    let e = req.engine()?;
    // docker answers 404 before any progress for an image it does not have.
    let local = if parsed.tag.is_some() || name.contains(':') {
        reference.clone()
    } else {
        format!("{reference}:latest")
    };
    if e.images.resolve(&local).is_err() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "An image does not exist locally with the tag: {}",
                skiff_image::familiar_name(&parsed.repository())
            ),
        ));
    }
    let mut opts = crate::commands::images::registry_options(None)?;
    opts.pull_auth = registry_auth(req.registry_auth.as_deref())?;
    super::streamed_with(1024, "application/json", "docker-api-push", move |tx| {
        let _ = tx.blocking_send(line(json!({
            "status": format!("The push refers to repository [{}]", parsed.repository())
        })));
        let progress = std::sync::Arc::new(JsonProgress::new(tx.clone()));
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(err) => {
                let _ = tx.blocking_send(error_line(&format!("starting the push: {err}")));
                return;
            }
        };
        let push_opts = skiff_registry::PushOptions::default();
        let pushed = rt.block_on(async {
            tokio::select! {
                r = skiff_registry::push(
                    &e.images,
                    &local,
                    &opts,
                    &push_opts,
                    progress,
                ) => Some(r),
                _ = tx.closed() => None,
            }
        });
        let lines = match pushed {
            None => return,
            Some(Ok(p)) => {
                e.image_event("push", &local);
                vec![
                    line(json!({
                        "status": format!("{}: digest: {} size: {}", p.tag, p.digest, p.size)
                    })),
                    line(json!({
                        "progressDetail": {},
                        "aux": { "Tag": p.tag, "Digest": p.digest, "Size": p.size },
                    })),
                ]
            }
            Some(Err(err)) => vec![error_line(&err.to_string())],
        };
        for l in lines {
            if tx.blocking_send(l).is_err() {
                return;
            }
        }
    })
}

/// Bytes written to the client in pieces (a `Write` for the image store's save).
struct ToClient {
    tx: Sender<Bytes>,
    buf: Vec<u8>,
}

impl ToClient {
    const PIECE: usize = 64 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl Write for ToClient {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::PIECE {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /images/{name}/get` (one image) and `GET /images/get?names=…` (several).
pub(super) fn save(req: &Req, name: Option<&str>) -> Answer {
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => req.all("names"),
    };
    if names.is_empty() {
        return Err(ApiError::bad("no images to save (names=)"));
    }
    let e = req.engine()?;
    for n in &names {
        e.images.resolve(n).map_err(|err| ApiError::from(&err))?;
    }
    super::streamed_with(16, "application/x-tar", "docker-api-save", move |tx| {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut out = ToClient {
            tx,
            buf: Vec::with_capacity(ToClient::PIECE),
        };
        // A failure part-way (the client left, or the store) ends the stream short,
        // which the client sees as a truncated tar.
        match e.images.save(&refs, &mut out) {
            Ok(()) => {
                let _ = out.flush();
                for r in &refs {
                    e.image_event("save", r);
                }
            }
            Err(err) => tracing::debug!(error = %err, "docker API: save"),
        }
    })
}

/// `POST /images/load?quiet`: the names loaded, as dockerd reports them with or
/// without `quiet` (which only silences progress, which this load has none of).
pub(super) fn load(req: &Req) -> Answer {
    req.flag("quiet")?;
    let upload = req.take_upload()?;
    let e = req.engine()?;
    let loaded = e
        .images
        .load(std::io::BufReader::new(upload))
        .map_err(|err| ApiError::from(&err))?;
    let mut body = String::new();
    for n in loaded {
        e.image_event("load", &n);
        let text = if n.starts_with("sha256:") {
            format!("Loaded image ID: {n}\n")
        } else {
            format!("Loaded image: {}\n", skiff_image::familiar_name(&n))
        };
        body.push_str(&format!("{}\r\n", json!({ "stream": text })));
    }
    let mut r = hyper::Response::new(super::full(body));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `POST /images/create?fromSrc=-&repo&tag&message&changes`: the body is a root
/// filesystem tar, made an image of one layer.
pub(super) fn import(req: &Req) -> Answer {
    let reference = match (
        req.query.get("repo").filter(|r| !r.is_empty()),
        req.query.get("tag").filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.clone()),
        (None, _) => None,
    };
    if let Some(r) = &reference {
        skiff_image::parse_reference(r)
            .map_err(|e| ApiError::bad(format!("invalid reference format: {e}")))?;
    }
    let mut config = skiff_image::ContainerConfig::default();
    let changes = req.all("changes");
    let changes: Vec<&str> = changes.iter().map(String::as_str).collect();
    skiff_image::apply_changes(&mut config, &changes).map_err(|err| ApiError::from(&err))?;
    let upload = req.take_upload()?;
    let e = req.engine()?;
    let img = e
        .images
        .import_rootfs_with(
            std::io::BufReader::new(upload),
            reference.as_deref(),
            config,
            req.query
                .get("message")
                .filter(|m| !m.is_empty())
                .map(String::as_str),
        )
        .map_err(|err| ApiError::from(&err))?;
    e.image_event("import", &img.id);
    let mut r = hyper::Response::new(super::full(format!("{}\r\n", json!({ "status": img.id }))));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
