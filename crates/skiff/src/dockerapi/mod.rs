//! `skiff system service`: the Docker Engine API (podman's `system service`), so the
//! real docker CLI, compose and the SDKs drive the engine through a unix socket (or a
//! loopback TCP port).
//!
//! Daemonless stays true: every request opens the engine as the CLI does (the same
//! root, state files and locks), so `skiff run` and a client of the socket see the same
//! containers, and containers keep running when the service stops. The service exits
//! after `--time` seconds without a connection (0: never).
//!
//! What is served (the README's "Served so far" has the details): `/_ping`, `/version`,
//! `/info`, `/auth`, `/distribution`, `/system/df`, `/events`, `/build`, `/commit`; containers: list, create,
//! start, inspect, logs, attach (hijacked), resize, top, stats, changes, export, update,
//! archive (GET/HEAD/PUT), rename, stop, kill, restart, pause, unpause, wait, remove,
//! prune; exec: create, start (hijacked or detached), inspect, resize; images: pull and
//! import (`/images/create`), list, inspect, history, tag, remove, prune, push, save
//! (`get`), load; networks: list, inspect, create, remove, connect, disconnect, prune;
//! volumes: list, inspect, create, remove, prune.
//! Any other endpoint answers 501 with a message naming it: it is not built yet, and
//! says so.

mod archive;
mod attach;
mod build;
mod containers;
mod create;
mod events;
mod exec;
mod objects;
mod pull;
mod stats;
mod system;
mod transfer;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The newest API version served (docker 28.2's).
pub const API_VERSION: &str = "1.50";
/// The oldest API version a client may ask for (docker's `MinAPIVersion`).
pub const MIN_API_VERSION: &str = "1.24";
/// Where the service listens by default.
pub const DEFAULT_SOCKET: &str = "/run/skiff/docker.sock";
/// The largest request body read (a container's create body): a bigger one is refused
/// with 413 before it is read whole.
const MAX_BODY: usize = 4 << 20;

/// An answer's body: whole, or written later (a wait's result).
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A whole body.
pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// An API error: docker's `{"message": …}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<skiff_engine::EngineError> for ApiError {
    fn from(e: skiff_engine::EngineError) -> Self {
        use skiff_engine::EngineError as E;
        let status = match &e {
            E::NoSuchContainer(_) => StatusCode::NOT_FOUND,
            E::Ambiguous(_) | E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::Conflict(_) | E::NotRunning(_) | E::InUse(_) => StatusCode::CONFLICT,
            E::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            E::Image(i) => return i.into(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<&skiff_image::ImageError> for ApiError {
    fn from(e: &skiff_image::ImageError) -> Self {
        use skiff_image::ImageError as E;
        let status = match e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Ambiguous(_) | E::InvalidReference { .. } | E::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<skiff_image::ImageError> for ApiError {
    fn from(e: skiff_image::ImageError) -> Self {
        (&e).into()
    }
}

impl From<crate::listing::FilterError> for ApiError {
    fn from(e: crate::listing::FilterError) -> Self {
        match e {
            crate::listing::FilterError::Invalid(m) => ApiError::bad(m),
            e @ (crate::listing::FilterError::NoSuchContainer(_)
            | crate::listing::FilterError::NoSuchImage(_)) => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

pub(crate) type Answer = std::result::Result<Response<Body>, ApiError>;

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// A 200 answer whose body a thread named `thread` writes as it goes: `produce` gets
/// the sender, whose sends fail (and `is_closed` turns true) once the client has gone,
/// which is when the thread should stop.
pub(crate) fn streamed(
    content_type: &'static str,
    thread: &str,
    produce: impl FnOnce(tokio::sync::mpsc::Sender<Bytes>) + Send + 'static,
) -> Answer {
    streamed_with(64, content_type, thread, produce)
}

/// [`streamed`], with room for `backlog` chunks the client has not read yet.
pub(crate) fn streamed_with(
    backlog: usize,
    content_type: &'static str,
    thread: &str,
    produce: impl FnOnce(tokio::sync::mpsc::Sender<Bytes>) + Send + 'static,
) -> Answer {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(backlog);
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || produce(tx))
        .map_err(anyhow::Error::from)?;
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    let mut r = Response::new(http_body_util::StreamBody::new(body).boxed());
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(r)
}

pub(crate) fn ok(v: Value) -> Answer {
    Ok(json_response(StatusCode::OK, &v))
}

pub(crate) fn no_content(status: StatusCode) -> Answer {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    Ok(r)
}

/// What the service keeps between requests: the engine root, the attach requests
/// waiting for their container to start, and the exec sessions.
pub(crate) struct Service {
    pub root: PathBuf,
    pub waiting: attach::Waiting,
    pub execs: exec::Execs,
    pub exits: containers::Exits,
}

impl Service {
    pub(crate) fn new(root: &Path) -> Service {
        Service {
            root: root.to_path_buf(),
            waiting: Default::default(),
            execs: Default::default(),
            exits: Default::default(),
        }
    }
}

/// One request as the handlers see it: the path without its version, the query, the
/// body (read whole, bounded), the engine root and the service's state.
pub(crate) struct Req {
    pub method: Method,
    /// Path segments after the version, percent-decoded.
    pub path: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Bytes,
    pub root: PathBuf,
    pub svc: Arc<Service>,
    /// The `X-Registry-Auth` header, if any (registry credentials for one call).
    pub registry_auth: Option<String>,
    /// The API version the client asked for in the path (the newest when it did not).
    pub version: (u32, u32),
    /// The connection, for an endpoint that hijacks it (`Upgrade: tcp`).
    pub upgrade: Mutex<Option<hyper::upgrade::OnUpgrade>>,
    /// Every query pair in order (a parameter may repeat: `t=a&t=b`).
    pub pairs: Vec<(String, String)>,
    /// The body of an endpoint that takes a stream (a build context, a tar to copy
    /// in, an image archive): spooled to an unnamed file, rewound.
    pub upload: Mutex<Option<std::fs::File>>,
}

impl Req {
    /// Every value of a repeatable query parameter, empty ones left out.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The spooled body of a streaming endpoint (once).
    pub fn take_upload(&self) -> std::result::Result<std::fs::File, ApiError> {
        self.upload
            .lock()
            .ok()
            .and_then(|mut u| u.take())
            .ok_or_else(|| ApiError::bad("the request body was already taken"))
    }

    /// The connection to hijack: 400 unless the client asked for an upgrade.
    pub fn hijack(&self) -> std::result::Result<hyper::upgrade::OnUpgrade, ApiError> {
        self.upgrade
            .lock()
            .ok()
            .and_then(|mut u| u.take())
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "/{} streams over a hijacked connection: send the request with \
                     \"Connection: Upgrade\" and \"Upgrade: tcp\"",
                    self.path.join("/")
                ))
            })
    }

    /// The body as a JSON object (an empty body is an empty object).
    pub fn json_body(&self, what: &str) -> std::result::Result<Value, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(json!({}));
        }
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad(format!("invalid JSON in the {what} body: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::bad(format!(
                "invalid {what} body: expected a JSON object"
            )));
        }
        Ok(v)
    }

    /// The engine, opened as a CLI verb opens it.
    pub fn engine(&self) -> std::result::Result<skiff_engine::Engine, ApiError> {
        Ok(crate::commands::engine(&self.root)?)
    }

    /// A time parameter (`since`, `until`: seconds since the epoch, with an optional
    /// fraction) in nanoseconds, if given (0 counts as not given, as docker's).
    pub fn epoch_ns(&self, name: &str) -> std::result::Result<Option<i128>, ApiError> {
        let Some(v) = self.query.get(name).filter(|s| !s.is_empty() && *s != "0") else {
            return Ok(None);
        };
        let bad = || {
            ApiError::bad(format!(
                "invalid value for {name}: {v:?} (seconds since the epoch)"
            ))
        };
        let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
        let secs: i128 = secs.parse().map_err(|_| bad())?;
        if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let nanos: i128 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
        Ok(Some(secs * 1_000_000_000 + nanos))
    }

    /// Refuses list filters where the endpoint does not apply them yet.
    pub fn no_filters(&self, what: &str) -> std::result::Result<(), ApiError> {
        if self.filters()?.is_empty() {
            return Ok(());
        }
        Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} list filters are not built yet in skiff's Docker API"),
        ))
    }

    /// A boolean query parameter as docker reads them (`1`, `true`, `True`: true;
    /// absent, `0`, `false`: false).
    pub fn flag(&self, name: &str) -> std::result::Result<bool, ApiError> {
        match self.query.get(name).map(|s| s.as_str()) {
            None | Some("") | Some("0") | Some("false") | Some("False") => Ok(false),
            Some("1") | Some("true") | Some("True") => Ok(true),
            Some(other) => Err(ApiError::bad(format!(
                "invalid value for {name}: {other:?} is not a boolean"
            ))),
        }
    }

    /// An integer query parameter, if given.
    pub fn int(&self, name: &str) -> std::result::Result<Option<i64>, ApiError> {
        match self.query.get(name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::bad(format!("invalid value for {name}: {s:?} is not an integer"))
            }),
        }
    }

    /// The `filters` parameter: docker's JSON map of filter name to values, in either
    /// of its two encodings (`{"label":{"a=b":true}}` or `{"label":["a=b"]}`).
    pub fn filters(&self) -> std::result::Result<Vec<(String, String)>, ApiError> {
        let Some(raw) = self.query.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(Vec::new());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad(format!("invalid filters {raw:?}: {e}")))?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad(format!(
                "invalid filters {raw:?}: not a JSON object"
            )));
        };
        let mut out = Vec::new();
        for (name, values) in m {
            match values {
                Value::Object(vals) => {
                    for (val, on) in vals {
                        if on == Value::Bool(true) {
                            out.push((name.clone(), val));
                        }
                    }
                }
                Value::Array(vals) => {
                    for val in vals {
                        let Value::String(val) = val else {
                            return Err(ApiError::bad(format!(
                                "invalid filter {name}: values must be strings"
                            )));
                        };
                        out.push((name.clone(), val));
                    }
                }
                _ => {
                    return Err(ApiError::bad(format!(
                        "invalid filter {name}: not a list or map of values"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Splits `/v1.43/containers/json` into the version asked for (if any) and the rest.
fn split_version(path: &str) -> std::result::Result<(Option<&str>, &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok((None, path));
    }
    let parsed = parse_version(version)
        .ok_or_else(|| ApiError::bad(format!("invalid API version {version:?} in the path")))?;
    if parsed > parse_version(API_VERSION).unwrap_or_default() {
        return Err(ApiError::bad(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if parsed < parse_version(MIN_API_VERSION).unwrap_or_default() {
        return Err(ApiError::bad(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok((Some(version), &rest[end..]))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    parse_pairs(q).into_iter().collect()
}

/// Whether the endpoint takes its body as a stream, spooled to a file rather than
/// read into memory (and so not held to [`MAX_BODY`]).
fn streams_body(method: &Method, path: &[String], pairs: &[(String, String)]) -> bool {
    let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
    match (method, p.as_slice()) {
        (&Method::POST, ["build"]) | (&Method::POST, ["images", "load"]) => true,
        (&Method::PUT, ["containers", _, "archive"]) => true,
        (&Method::POST, ["images", "create"]) => {
            pairs.iter().any(|(k, v)| k == "fromSrc" && v == "-")
        }
        _ => false,
    }
}

/// Writes a streamed request body to an unnamed file under the engine root and
/// rewinds it: bounded by the disk, not by memory.
async fn spool(root: &Path, mut body: Incoming) -> std::result::Result<std::fs::File, ApiError> {
    use http_body_util::BodyExt as _;
    use std::io::Seek as _;
    use tokio::io::AsyncWriteExt as _;
    let dir = root.join("tmp");
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} the request body: {e}"),
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| failed("storing", &e))?;
    let file = tempfile::tempfile_in(&dir).map_err(|e| failed("storing", &e))?;
    let mut out = tokio::fs::File::from_std(file);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .await
                .map_err(|e| failed("storing", &e))?;
        }
    }
    out.flush().await.map_err(|e| failed("storing", &e))?;
    let mut file = out.into_std().await;
    file.rewind().map_err(|e| failed("storing", &e))?;
    Ok(file)
}

/// Headers every answer carries, as dockerd's.
fn server_headers(r: &mut Response<Body>) {
    for (k, v) in [
        ("api-version", API_VERSION),
        ("docker-experimental", "false"),
        ("ostype", "linux"),
        (
            "server",
            concat!("skiff/", env!("CARGO_PKG_VERSION"), " (linux)"),
        ),
    ] {
        r.headers_mut()
            .insert(k, hyper::header::HeaderValue::from_static(v));
    }
}

async fn handle(svc: Arc<Service>, req: Request<Incoming>) -> Response<Body> {
    let mut r = match answer(svc, req).await {
        Ok(r) => r,
        Err(ApiError(status, message)) => {
            if status.is_server_error() {
                tracing::warn!(%status, %message, "docker API");
            }
            json_response(status, &json!({ "message": message }))
        }
    };
    server_headers(&mut r);
    r
}

async fn answer(svc: Arc<Service>, req: Request<Incoming>) -> Answer {
    let (mut parts, body) = req.into_parts();
    // Only a client that asked to upgrade gets its connection hijacked.
    let asked = parts
        .headers
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    let registry_auth = parts
        .headers
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .filter(|_| asked);
    let (version, path) = split_version(parts.uri.path())?;
    let version = version
        .and_then(parse_version)
        .or_else(|| parse_version(API_VERSION))
        .unwrap_or_default();
    let path: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let pairs = parse_pairs(parts.uri.query());
    let mut upload = None;
    let body = if streams_body(&parts.method, &path, &pairs) {
        upload = Some(spool(&svc.root, body).await?);
        Bytes::new()
    } else {
        read_body(&parts.headers, body).await?
    };
    let req = Req {
        method: parts.method,
        path,
        query: pairs.iter().cloned().collect(),
        pairs,
        body,
        root: svc.root.clone(),
        svc,
        registry_auth,
        version,
        upgrade: Mutex::new(upgrade),
        upload: Mutex::new(upload),
    };
    // The engine's calls block (files, locks, waiting for a container): off the
    // reactor.
    tokio::task::spawn_blocking(move || route(&req))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A request body read whole, refused with 413 past [`MAX_BODY`].
async fn read_body(
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> std::result::Result<Bytes, ApiError> {
    let too_big = || {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY} bytes"),
        )
    };
    // A declared length over the bound is refused before any of it is read.
    if headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(too_big());
    }
    Ok(http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_big()
            } else {
                ApiError::bad(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes())
}

fn route(req: &Req) -> Answer {
    let p: Vec<&str> = req.path.iter().map(|s| s.as_str()).collect();
    let m = &req.method;
    match (m, p.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => system::ping(m == Method::HEAD),
        (&Method::GET, ["version"]) => system::version(),
        (&Method::POST, ["auth"]) => system::auth(req),
        (&Method::GET, ["info"]) => system::info(&req.root),
        (&Method::GET, ["system", "df"]) => system::df(req),
        (&Method::GET, ["containers", "json"]) => containers::list(req),
        (&Method::POST, ["containers", "create"]) => create::create(req),
        (&Method::POST, ["containers", id, "start"]) => create::start(req, id),
        (&Method::GET, ["containers", id, "json"]) => containers::inspect(req, id),
        (&Method::GET, ["containers", id, "logs"]) => containers::logs(req, id),
        (&Method::POST, ["containers", id, "attach"]) => attach::attach(req, id),
        (&Method::GET, ["containers", id, "top"]) => stats::top(req, id),
        (&Method::GET, ["containers", id, "stats"]) => stats::stats(req, id),
        (&Method::POST, ["containers", id, "resize"]) => attach::resize(req, id),
        (&Method::POST, ["containers", id, "exec"]) => exec::create(req, id),
        (&Method::POST, ["exec", id, "start"]) => exec::start(req, id),
        (&Method::POST, ["exec", id, "resize"]) => exec::resize(req, id),
        (&Method::GET, ["exec", id, "json"]) => exec::inspect(req, id),
        (&Method::POST, ["containers", id, "rename"]) => containers::rename(req, id),
        (&Method::POST, ["containers", id, "update"]) => create::update(req, id),
        (&Method::POST, ["containers", id, "stop"]) => containers::stop(req, id),
        (&Method::POST, ["containers", id, "kill"]) => containers::kill(req, id),
        (&Method::POST, ["containers", id, "restart"]) => create::restart(req, id),
        (&Method::POST, ["containers", "prune"]) => containers::prune(req),
        (&Method::POST, ["images", "prune"]) => system::image_prune(req),
        (&Method::POST, ["images", "create"])
            if req.query.get("fromSrc").map(String::as_str) == Some("-") =>
        {
            transfer::import(req)
        }
        (&Method::POST, ["images", "create"]) => pull::create(req),
        (&Method::POST, ["build", "prune"]) => system::build_prune(req),
        (&Method::POST, ["build"]) => build::build(req),
        (&Method::POST, ["commit"]) => containers::commit(req),
        (&Method::GET, ["containers", id, "changes"]) => containers::changes(req, id),
        (&Method::GET, ["containers", id, "export"]) => archive::export(req, id),
        (&Method::GET, ["events"]) => events::events(req),
        (&Method::POST, ["images", "load"]) => transfer::load(req),
        (&Method::GET, ["images", "get"]) => transfer::save(req, None),
        (&Method::GET, ["images", rest @ .., "get"]) if !rest.is_empty() => {
            transfer::save(req, Some(&rest.join("/")))
        }
        (&Method::POST, ["images", rest @ .., "push"]) if !rest.is_empty() => {
            transfer::push(req, &rest.join("/"))
        }
        (&Method::GET | &Method::HEAD | &Method::PUT, ["containers", id, "archive"]) => {
            archive::archive(req, id)
        }
        (&Method::POST, ["networks", "prune"]) => objects::network_prune(req),
        (&Method::POST, ["containers", id, "pause"]) => containers::pause(req, id, true),
        (&Method::POST, ["containers", id, "unpause"]) => containers::pause(req, id, false),
        (&Method::POST, ["containers", id, "wait"]) => containers::wait(req, id),
        (&Method::DELETE, ["containers", id]) => containers::remove(req, id),
        (&Method::GET, ["networks"]) => objects::networks(req),
        (&Method::GET, ["networks", id]) => objects::network(req, id),
        (&Method::POST, ["networks", "create"]) => objects::network_create(req),
        (&Method::DELETE, ["networks", id]) => objects::network_remove(req, id),
        (&Method::POST, ["networks", id, "connect"]) => objects::network_connect(req, id, true),
        (&Method::POST, ["networks", id, "disconnect"]) => objects::network_connect(req, id, false),
        (&Method::POST, ["volumes", "create"]) => objects::volume_create(req),
        (&Method::POST, ["volumes", "prune"]) => objects::volume_prune(req),
        (&Method::DELETE, ["volumes", name]) => objects::volume_remove(req, name),
        (&Method::GET, ["volumes"]) => objects::volumes(req),
        (&Method::GET, ["volumes", name]) => objects::volume(req, name),
        (&Method::GET, ["plugins"]) => ok(json!([])),
        (&Method::GET, ["plugins", name, "json"]) => objects::plugin(name),
        (&Method::GET, ["images", "json"]) => system::images(req),
        (&Method::GET, ["distribution", rest @ .., "json"]) if !rest.is_empty() => {
            pull::distribution(req, &rest.join("/"))
        }
        (&Method::GET, ["images", rest @ .., "json"]) if !rest.is_empty() => {
            system::image_inspect(req, &rest.join("/"))
        }
        (&Method::GET, ["images", rest @ .., "history"]) if !rest.is_empty() => {
            system::image_history(req, &rest.join("/"))
        }
        (&Method::POST, ["images", rest @ .., "tag"]) if !rest.is_empty() => {
            system::image_tag(req, &rest.join("/"))
        }
        (&Method::DELETE, ["images", rest @ ..]) if !rest.is_empty() => {
            system::image_remove(req, &rest.join("/"))
        }
        _ => Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "skiff's Docker API does not serve {} /{} yet",
                req.method,
                req.path.join("/")
            ),
        )),
    }
}

/// Where the service listens.
pub(crate) enum Listen {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

/// Parses `unix:///path` or `tcp://127.0.0.1:PORT`.
pub(crate) fn parse_listen(s: &str) -> Result<Listen> {
    if let Some(p) = s.strip_prefix("unix://") {
        if !p.starts_with('/') {
            bail!("invalid address {s:?}: a unix socket path must be absolute (unix:///path)");
        }
        return Ok(Listen::Unix(PathBuf::from(p)));
    }
    if let Some(a) = s.strip_prefix("tcp://") {
        let addr: std::net::SocketAddr = a
            .parse()
            .map_err(|e| anyhow!("invalid address {s:?}: {e} (tcp://IP:PORT)"))?;
        if !addr.ip().is_loopback() {
            bail!(
                "refusing to serve the Docker API on {addr} without TLS client certificates: \
                 skiff serves plain TCP only on a loopback address (TLS is not built yet)"
            );
        }
        return Ok(Listen::Tcp(addr));
    }
    bail!("invalid address {s:?}: expected unix:///path or tcp://127.0.0.1:PORT")
}

/// A unix socket at `path`, mode 0660; a stale socket file nobody listens on is
/// replaced, a live one is an error.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another service is already listening on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(l)
}

/// Connections open now, and when the last one closed (or the service started).
struct Activity {
    open: AtomicUsize,
    since: Mutex<Instant>,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        (self.open.load(Ordering::SeqCst) == 0)
            .then(|| self.since.lock().map(|t| t.elapsed()).unwrap_or_default())
    }
}

/// A connection's byte stream (unix or TCP).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

fn serve_conn(stream: Box<dyn Io>, svc: Arc<Service>, activity: Arc<Activity>) {
    activity.open.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let svc = svc.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(svc, req).await) }
        });
        // A client that never finishes its headers is dropped (slowloris).
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await
        {
            tracing::debug!(error = %e, "docker API connection");
        }
        if let Ok(mut t) = activity.since.lock() {
            *t = Instant::now();
        }
        activity.open.fetch_sub(1, Ordering::SeqCst);
    });
}

/// Serves the API on `listen` until `idle` passes without a connection (None: until
/// killed) or SIGINT/SIGTERM.
pub(crate) fn serve(root: &Path, listen: Listen, idle: Option<Duration>) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let svc = Arc::new(Service::new(root));
    rt.block_on(async move {
        let activity = Arc::new(Activity {
            open: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        });
        enum L {
            Unix(tokio::net::UnixListener, PathBuf),
            Tcp(tokio::net::TcpListener),
        }
        let listener = match listen {
            Listen::Unix(p) => {
                let l = bind_unix(&p)?;
                eprintln!("serving the Docker API on unix://{}", p.display());
                L::Unix(l, p)
            }
            Listen::Tcp(a) => {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("listening on {a}"))?;
                eprintln!("serving the Docker API on tcp://{}", l.local_addr()?);
                L::Tcp(l)
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                c = async {
                    match &listener {
                        L::Unix(l, _) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Io>),
                        L::Tcp(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Io>),
                    }
                } => match c {
                    Ok(s) => serve_conn(s, svc.clone(), activity.clone()),
                    Err(e) => tracing::warn!(error = %e, "docker API: accept"),
                },
                _ = tick.tick() => {
                    if let (Some(limit), Some(idle_for)) = (idle, activity.idle_for()) {
                        if idle_for >= limit {
                            break;
                        }
                    }
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        if let L::Unix(_, p) = &listener {
            let _ = std::fs::remove_file(p);
        }
        Ok(0)
    })
}

#[cfg(test)]
impl Req {
    /// A GET with `query`, for unit tests of the parameter readers.
    pub(crate) fn with_query(query: HashMap<String, String>) -> Req {
        Req {
            method: Method::GET,
            path: vec![],
            query,
            body: Bytes::new(),
            root: PathBuf::new(),
            svc: Arc::new(Service::new(Path::new("/nonexistent"))),
            registry_auth: None,
            version: (1, 50),
            upgrade: Mutex::new(None),
            pairs: Vec::new(),
            upload: Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_the_path() {
        assert_eq!(split_version("/_ping").unwrap(), (None, "/_ping"));
        assert_eq!(
            split_version("/v1.43/containers/json").unwrap(),
            (Some("1.43"), "/containers/json")
        );
        assert_eq!(
            split_version("/v1.50/info").unwrap(),
            (Some("1.50"), "/info")
        );
        let too_new = split_version("/v1.51/info").unwrap_err();
        assert_eq!(too_new.0, StatusCode::BAD_REQUEST);
        assert!(too_new.1.contains("too new"), "{}", too_new.1);
        assert!(split_version("/v1.12/info")
            .unwrap_err()
            .1
            .contains("too old"));
        // A path that only starts with v is not a version.
        assert_eq!(split_version("/volumes").unwrap(), (None, "/volumes"));
    }

    #[test]
    fn filters_in_both_encodings() {
        let req = |f: &str| Req::with_query(parse_query(Some(&format!("filters={}", f))));
        let mut got =
            req("%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%2C%22status%22%3A%5B%22exited%22%5D%7D")
                .filters()
                .unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("label".to_string(), "a=b".to_string()),
                ("status".to_string(), "exited".to_string())
            ]
        );
        assert_eq!(
            req("%5B1%5D").filters().unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            req("nojson").filters().unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn listen_addresses() {
        assert!(matches!(
            parse_listen("unix:///run/x.sock"),
            Ok(Listen::Unix(_))
        ));
        assert!(matches!(
            parse_listen("tcp://127.0.0.1:2375"),
            Ok(Listen::Tcp(_))
        ));
        let open = parse_listen("tcp://0.0.0.0:2375")
            .err()
            .unwrap()
            .to_string();
        assert!(open.contains("without TLS"), "{open}");
        assert!(parse_listen("unix://relative.sock").is_err());
        assert!(parse_listen("http://x").is_err());
    }
}
