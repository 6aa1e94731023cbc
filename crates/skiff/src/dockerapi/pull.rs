//! `POST /images/create?fromImage&tag&platform`: a pull from a registry, reported as
//! docker's JSON progress stream (`{"status", "id", "progressDetail", "progress"}`
//! lines, then `Digest:` and `Status:`; a failure part-way is an `errorDetail` line,
//! as dockerd's). The registry, mirrors, certificates and stored credentials are the
//! CLI's (`skiff pull`); the client's `X-Registry-Auth` is used for this pull only.

use super::{Answer, ApiError, Req};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use skiff_registry::{LayerStatus, Progress};
use tokio::sync::mpsc::Sender;

/// Progress lines a slow client may leave unread before more are dropped (the
/// `Downloading` ones first: they are only ever sent when there is room).
const BACKLOG: usize = 1024;

pub(super) struct JsonProgress(Sender<Bytes>);

impl JsonProgress {
    pub(super) fn new(tx: Sender<Bytes>) -> JsonProgress {
        JsonProgress(tx)
    }

    fn send(&self, v: Value) {
        // Called from the pull's tasks: never block them on the client.
        let _ = self.0.try_send(Bytes::from(format!("{v}\r\n")));
    }
}

impl Progress for JsonProgress {
    fn pulling_from(&self, tag_or_digest: &str, path: &str) {
        self.send(json!({ "status": format!("Pulling from {path}"), "id": tag_or_digest }));
    }

    fn layer(&self, id: &str, status: LayerStatus) {
        match status {
            LayerStatus::Downloading { current, total } => {
                if self.0.capacity() < BACKLOG / 2 {
                    return;
                }
                self.send(json!({
                    "status": "Downloading",
                    "progressDetail": { "current": current, "total": total },
                    "id": id,
                }))
            }
            s => self.send(json!({ "status": s.text(), "progressDetail": {}, "id": id })),
        }
    }
}

/// The credentials of an `X-Registry-Auth` header (base64url JSON with `username`
/// and `password`; an empty object is none).
pub(super) fn registry_auth(
    header: Option<&str>,
) -> Result<Option<skiff_registry::Credentials>, ApiError> {
    use base64::Engine as _;
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: String| ApiError::bad(format!("invalid X-Registry-Auth header: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(h)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
        .map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (username, password) = (field("username"), field("password"));
    if username.is_empty() && password.is_empty() {
        if !field("identitytoken").is_empty() || !field("registrytoken").is_empty() {
            return Err(ApiError(
                StatusCode::NOT_IMPLEMENTED,
                "registry identity tokens are not supported by skiff yet; log in with a password"
                    .into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(skiff_registry::Credentials { username, password }))
}

/// `POST /images/create`.
pub(super) fn create(req: &Req) -> Answer {
    // (fromSrc=- is an import: routed to transfer::import)
    match req.query.get("fromSrc").map(String::as_str) {
        None | Some("") => {}
        Some(_) => {
            return Err(ApiError(
                StatusCode::NOT_IMPLEMENTED,
                "importing from a URL (fromSrc=URL) is not supported by skiff yet; send the \
                 tar in the body (fromSrc=-)"
                    .into(),
            ))
        }
    }
    if req
        .query
        .get("changes")
        .is_some_and(|s| !s.is_empty() && s != "[]")
    {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "changes are not built yet for /images/create in skiff's Docker API".into(),
        ));
    }
    let from = req
        .query
        .get("fromImage")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("fromImage is required"))?;
    // docker's rule: a tag or digest given apart joins the name.
    let reference = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    skiff_image::parse_reference(&reference)
        .map_err(|e| ApiError::bad(format!("invalid reference format: {e}")))?;
    let platform = req.query.get("platform").filter(|p| !p.is_empty()).cloned();
    let mut opts = crate::commands::images::registry_options(platform)?;
    opts.pull_auth = registry_auth(req.registry_auth.as_deref())?;
    let e = req.engine()?;
    super::streamed_with(BACKLOG, "application/json", "docker-api-pull", move |tx| {
        let lines = match pull_streaming(&e.images, &reference, &opts, &tx) {
            None => return,
            Some(Ok(p)) => {
                e.image_event("pull", &p.reference.to_string());
                let shown = skiff_image::familiar_name(&p.reference.to_string());
                let status = if p.up_to_date {
                    format!("Status: Image is up to date for {shown}")
                } else {
                    format!("Status: Downloaded newer image for {shown}")
                };
                vec![
                    Bytes::from(format!(
                        "{}\r\n",
                        json!({ "status": format!("Digest: {}", p.digest) })
                    )),
                    Bytes::from(format!("{}\r\n", json!({ "status": status }))),
                ]
            }
            Some(Err(err)) => vec![error_line(&err)],
        };
        for l in lines {
            if tx.blocking_send(l).is_err() {
                return;
            }
        }
    })
}

/// Pulls `reference` into `images` on the calling thread, its progress sent to `tx` as
/// docker's JSON lines; None when the client left part-way (the pull is stopped and
/// what is half done is not kept).
pub(super) fn pull_streaming(
    images: &skiff_image::ImageStore,
    reference: &str,
    opts: &skiff_registry::Options,
    tx: &Sender<Bytes>,
) -> Option<Result<skiff_registry::Pulled, String>> {
    let progress = std::sync::Arc::new(JsonProgress(tx.clone()));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return Some(Err(format!("starting the pull: {err}"))),
    };
    rt.block_on(async {
        tokio::select! {
            r = skiff_registry::pull(images, reference, opts, progress) => {
                Some(r.map_err(|e| e.to_string()))
            }
            _ = tx.closed() => None,
        }
    })
}

/// `GET /distribution/{name}/json`: what the registry says of the image, without
/// pulling it: `{"Descriptor": {mediaType, digest, size}, "Platforms": [...]}`. The
/// client's `X-Registry-Auth` is used for this lookup.
pub(super) fn distribution(req: &Req, name: &str) -> Answer {
    skiff_image::parse_reference(name)
        .map_err(|e| ApiError::bad(format!("invalid reference format: {e}")))?;
    let mut opts = crate::commands::images::registry_options(None)?;
    opts.pull_auth = registry_auth(req.registry_auth.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the lookup: {e}"))?;
    match rt.block_on(skiff_registry::distribution(name, &opts)) {
        Ok(d) => super::ok(json!({
            "Descriptor": {
                "mediaType": d.descriptor.media_type,
                "digest": d.descriptor.digest,
                "size": d.descriptor.size,
            },
            "Platforms": d.platforms,
        })),
        Err(e @ skiff_registry::Error::NotFound(_)) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            Err(ApiError(StatusCode::UNAUTHORIZED, e.to_string()))
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub(super) fn error_line(message: &str) -> Bytes {
    Bytes::from(format!(
        "{}\r\n",
        json!({ "errorDetail": { "message": message }, "error": message })
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn registry_auth_headers() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        let c = registry_auth(Some(&enc(
            r#"{"username":"u","password":"p+/=","serveraddress":"r"}"#,
        )))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p+/="));
        assert!(registry_auth(Some(&enc("{}"))).unwrap().is_none());
        assert!(registry_auth(None).unwrap().is_none());
        assert_eq!(
            registry_auth(Some("%%%")).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            registry_auth(Some(&enc(r#"{"identitytoken":"t"}"#)))
                .unwrap_err()
                .0,
            StatusCode::NOT_IMPLEMENTED
        );
    }
}
