//! The agent's HTTPS endpoint (the kubelet's port 10250): container logs, exec,
//! attach and port-forward for the API server to proxy to.
//!
//! Paths as the kubelet serves them: `/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}?command=…`, `/attach/{ns}/{pod}/{container}`,
//! `/portForward/{ns}/{pod}`, `/healthz`. exec and attach speak WebSocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`; GET) and SPDY/3.1 (POST);
//! port-forward speaks SPDY/3.1 and SPDY tunnelled in a WebSocket.
//!
//! Clients must present a certificate signed by the cluster CA for a user in
//! `system:masters` or named `kube-apiserver-kubelet-client` (the API server's
//! kubelet client identity).

pub mod portforward;
pub mod remote;
pub mod spdy;
pub mod ws;

use crate::cri::{
    ContainerFilter, ContainerStatus, LogEntry, PodSandboxState, Runtime, SharedRuntime,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// What the streaming server needs.
pub struct Config {
    pub runtime: SharedRuntime,
    /// Where pods' `running.json` records are (the node's pods dir).
    pub pods_dir: PathBuf,
    /// PEM of the CA whose client certificates are accepted (the cluster CA).
    pub client_ca_pem: String,
    /// The node's serving certificate and key (PEM), signed by the cluster CA.
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
}

/// Why the node's TLS configuration could not be made: which part, and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{part}: {message}")]
pub struct TlsError {
    /// The serving certificate or key, the client CA or verifier, the protocol versions.
    pub part: &'static str,
    /// rustls' reason.
    pub message: String,
}

fn tls_err(part: &'static str) -> impl Fn(String) -> TlsError {
    move |message| TlsError { part, message }
}

/// The TLS configuration: a serving certificate for the node, client certificates
/// required and verified against the cluster CA.
pub fn tls_config(cfg: &Config) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cfg.serving_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err("serving certificate")(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cfg.client_ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| tls_err("client CA")(e.to_string()))?)
            .map_err(|e| tls_err("client CA")(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_err("client verifier")(e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(cfg.serving_key_pem.as_bytes())
        .map_err(|e| tls_err("serving key")(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions")(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_err("serving certificate")(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Serves until `stop` completes.
pub async fn serve(listener: TcpListener, cfg: Arc<Config>, stop: impl Future<Output = ()>) {
    let tls = match tls_config(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "node agent: streaming server TLS");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let allowed = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| client_allowed(c));
            let svc = hyper::service::service_fn(move |req| {
                let cfg = cfg.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(if allowed {
                        handle(cfg, req).await
                    } else {
                        text(
                            StatusCode::FORBIDDEN,
                            "Forbidden: this client may not use the node's API",
                        )
                    })
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .http1_only()
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn client_allowed(der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let s = cert.subject();
    s.iter_organization()
        .any(|o| o.as_str() == Ok("system:masters"))
        || s.iter_common_name()
            .any(|c| c.as_str() == Ok("kube-apiserver-kubelet-client"))
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn text(code: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(full(msg.to_string()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter()
        .any(|(n, v)| n == k && matches!(v.as_str(), "1" | "true" | "True"))
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn handle(cfg: Arc<Config>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["containerLogs", ns, pod, container] => logs(&cfg, &req, ns, pod, container).await,
        ["exec", ns, pod, container] | ["attach", ns, pod, container] => {
            let attach = segs[0] == "attach";
            remote_command(&cfg, req, ns, pod, container, attach).await
        }
        ["portForward", ns, pod] => port_forward(&cfg, req, ns, pod).await,
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The engine container of a pod's container (the running one when several exist).
fn find_container(rt: &dyn Runtime, ns: &str, pod: &str, name: &str) -> Option<ContainerStatus> {
    let mut found = rt
        .list_containers(&ContainerFilter {
            label_selector: [
                ("io.kubernetes.pod.namespace", ns),
                ("io.kubernetes.pod.name", pod),
                ("io.kubernetes.container.name", name),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        })
        .ok()?;
    found.sort_by_key(|c| (c.state.is_active(), c.created_at.clone()));
    found.pop()
}

fn container_missing(ns: &str, pod: &str, name: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        &format!("container \"{name}\" in pod \"{pod}\" (namespace \"{ns}\") is not available on this node"),
    )
}

async fn logs(
    cfg: &Config,
    req: &Request<Incoming>,
    ns: &str,
    pod: &str,
    name: &str,
) -> Response<Body> {
    let q = query(req);
    let Some(c) = find_container(&*cfg.runtime, ns, pod, name) else {
        // The kubelet's answer for a container that has not run yet.
        return text(
            StatusCode::BAD_REQUEST,
            &format!(
                "container \"{name}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let previous = flag(&q, "previous");
    let since = match (param(&q, "sinceSeconds"), param(&q, "sinceTime")) {
        (Some(s), _) => match s.parse::<i64>() {
            Ok(n) => Some(chrono::Utc::now() - chrono::Duration::seconds(n)),
            Err(_) => return text(StatusCode::BAD_REQUEST, "sinceSeconds must be an integer"),
        },
        (None, Some(t)) => match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&chrono::Utc)),
            Err(_) => return text(StatusCode::BAD_REQUEST, "sinceTime must be RFC 3339"),
        },
        _ => None,
    };
    let tail = param(&q, "tailLines").and_then(|t| t.parse::<i64>().ok());
    let limit = param(&q, "limitBytes").and_then(|t| t.parse::<u64>().ok());
    let filter = LogFilter {
        since,
        timestamps: flag(&q, "timestamps"),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let follow = flag(&q, "follow") && !previous;
    let rt = cfg.runtime.clone();
    let entries = match tokio::task::spawn_blocking({
        let (rt, id) = (rt.clone(), c.id.clone());
        move || rt.read_log(&id, previous)
    })
    .await
    {
        Ok(Ok(Some(entries))) => entries,
        Ok(Ok(None)) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("previous terminated container \"{name}\" in pod \"{pod}\" not found"),
            )
        }
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    tokio::task::spawn_blocking(move || {
        stream_log(rt, c.id, entries, filter, tail, limit, follow, tx)
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(full("")))
}

struct LogFilter {
    since: Option<chrono::DateTime<chrono::Utc>>,
    timestamps: bool,
}

impl LogFilter {
    fn render(&self, e: &LogEntry) -> Option<Vec<u8>> {
        if let Some(s) = self.since {
            let t = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?;
            if t < s {
                return None;
            }
        }
        let mut v = Vec::with_capacity(e.log.len() + 32);
        if self.timestamps {
            v.extend_from_slice(e.time.as_bytes());
            v.push(b' ');
        }
        v.extend_from_slice(e.log.as_bytes());
        Some(v)
    }
}

/// Sends a log's `entries` (filtered, tailed, limited) and, with `follow`, what is
/// appended until the container stops or the client goes away.
#[allow(clippy::too_many_arguments)]
fn stream_log(
    rt: SharedRuntime,
    id: String,
    entries: Vec<LogEntry>,
    filter: LogFilter,
    tail: Option<i64>,
    limit: Option<u64>,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut budget = limit.unwrap_or(u64::MAX);
    let mut send = |mut b: Vec<u8>| -> bool {
        if budget == 0 {
            return false;
        }
        if (b.len() as u64) > budget {
            b.truncate(budget as usize);
        }
        budget -= b.len() as u64;
        tx.blocking_send(Bytes::from(b)).is_ok() && budget > 0
    };
    let rendered: Vec<Vec<u8>> = entries.iter().filter_map(|e| filter.render(e)).collect();
    let skip = match tail {
        Some(t) if t >= 0 => rendered.len().saturating_sub(t as usize),
        _ => 0,
    };
    for r in rendered.into_iter().skip(skip) {
        if !send(r) {
            return;
        }
    }
    if follow {
        rt.follow_log(&id, &mut |e| match filter.render(e) {
            Some(b) => send(b) && !tx.is_closed(),
            None => !tx.is_closed(),
        });
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    header(req, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

fn is_spdy(req: &Request<Incoming>) -> bool {
    header(req, "upgrade").is_some_and(|u| u.to_ascii_lowercase().starts_with("spdy/3.1"))
}

/// The 101 answer to a WebSocket handshake choosing `protocol`.
fn websocket_accept(req: &Request<Incoming>, protocol: &str) -> Response<Body> {
    let key = header(req, "sec-websocket-key").unwrap_or("");
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Accept", accept);
    let resp = if protocol.is_empty() {
        resp
    } else {
        resp.header("Sec-WebSocket-Protocol", protocol)
    };
    resp.body(full(""))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// The 101 answer to a SPDY upgrade with the negotiated stream protocol.
fn spdy_accept(version: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Connection", "Upgrade")
        .header("Upgrade", "SPDY/3.1")
        .header("X-Stream-Protocol-Version", version)
        .body(full(""))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// Picks the first of `ours` among the client's `X-Stream-Protocol-Version` headers.
fn spdy_version(req: &Request<Incoming>, ours: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    ours.iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

const SPDY_CHANNEL_VERSIONS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

async fn remote_command(
    cfg: &Config,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    name: &str,
    attach: bool,
) -> Response<Body> {
    let q = query(&req);
    let Some(c) = find_container(&*cfg.runtime, ns, pod, name) else {
        return container_missing(ns, pod, name);
    };
    if !c.state.is_active() {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("container {name} is not running"),
        );
    }
    let want = remote::Want {
        stdin: flag(&q, "stdin") || flag(&q, "input"),
        stdout: flag(&q, "stdout") || flag(&q, "output"),
        stderr: flag(&q, "stderr") || flag(&q, "error"),
        tty: flag(&q, "tty"),
    };
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if !attach && command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    if attach && want.tty && !c.tty {
        // kubelet refuses a terminal the container does not have.
        return text(
            StatusCode::BAD_REQUEST,
            &format!("tty is not supported for container {name}: the container was not started with tty: true"),
        );
    }
    let runtime = cfg.runtime.clone();
    let id = c.id.clone();
    let container_tty = c.tty;
    let stdin_once = c
        .labels
        .get(crate::podspec::STDIN_ONCE_LABEL)
        .is_some_and(|v| v == "true");
    let run = move |io: remote::Io| async move {
        if attach {
            remote::attach(&*runtime, &id, container_tty, stdin_once, io).await
        } else {
            remote::exec(&*runtime, &id, &command, want.tty, io).await
        }
    };
    let run_spdy = run.clone();
    upgrade(
        req,
        ws::CHANNEL_PROTOCOLS,
        SPDY_CHANNEL_VERSIONS,
        move |sock, proto| async move {
            let (io, task) = ws::channels_io(sock, proto, want.stdin, want.tty);
            run(io).await;
            let _ = task.await;
        },
        move |conn, version| async move {
            if let Some(io) = remote::spdy_io(conn, version, want).await {
                run_spdy(io).await;
            }
        },
    )
}

/// Answers an upgrade request: a WebSocket (GET) with one of `ws_protocols`, or
/// SPDY/3.1 (POST) with one of `spdy_versions` in `X-Stream-Protocol-Version`; the
/// upgraded connection then goes to `on_ws` or `on_spdy` with what was negotiated.
fn upgrade<W, WF, S, SF>(
    mut req: Request<Incoming>,
    ws_protocols: &'static [&'static str],
    spdy_versions: &'static [&'static str],
    on_ws: W,
    on_spdy: S,
) -> Response<Body>
where
    W: FnOnce(ws::Ws, &'static str) -> WF + Send + 'static,
    WF: Future<Output = ()> + Send,
    S: FnOnce(TokioIo<hyper::upgrade::Upgraded>, &'static str) -> SF + Send + 'static,
    SF: Future<Output = ()> + Send,
{
    if is_websocket(&req) {
        let offered = header(&req, "sec-websocket-protocol").unwrap_or("");
        // A client offering no subprotocol gets binary channels, as the kubelet's.
        let proto = if offered.trim().is_empty() {
            Some(ws::NO_PROTOCOL)
        } else {
            ws::negotiate(offered, ws_protocols)
        };
        let Some(proto) = proto else {
            return text(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unsupported WebSocket subprotocols {offered:?}; this endpoint speaks {}",
                    ws_protocols.join(", ")
                ),
            );
        };
        let resp = websocket_accept(&req, proto);
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                on_ws(ws::accept(up).await, proto).await;
            }
        });
        return resp;
    }
    if is_spdy(&req) {
        let Some(version) = spdy_version(&req, spdy_versions) else {
            return text(
                StatusCode::FORBIDDEN,
                "unable to upgrade: no common stream protocol version",
            );
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                on_spdy(TokioIo::new(up), version).await;
            }
        });
        return spdy_accept(version);
    }
    text(
        StatusCode::BAD_REQUEST,
        &format!(
            "Upgrade request required: use a WebSocket ({}) or SPDY/3.1",
            ws_protocols.join(", ")
        ),
    )
}

async fn port_forward(cfg: &Config, req: Request<Incoming>, ns: &str, pod: &str) -> Response<Body> {
    let Some(pid) = sandbox_pid(cfg, ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod \"{pod}\" (namespace \"{ns}\") is not running on this node"),
        );
    };
    let label = format!("{pod}_{ns}");
    let ws_label = label.clone();
    // Plain WebSocket clients name their ports in the query (`port`, as the API server
    // passes them on; `ports` as clients send them to the API server).
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if k != "port" && k != "ports" {
            continue;
        }
        for p in v.split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("unable to parse \"{p}\" as a port: invalid port"),
                    )
                }
            }
        }
    }
    let tunnel = is_websocket(&req)
        && header(&req, "sec-websocket-protocol")
            .is_some_and(|o| ws::negotiate(o, &[ws::PORTFORWARD_TUNNEL]).is_some());
    if is_websocket(&req) && !tunnel && ports.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "query parameter \"port\" is required",
        );
    }
    upgrade(
        req,
        ws::PORTFORWARD_ALL,
        &["portforward.k8s.io"],
        move |sock, proto| async move {
            if proto == ws::PORTFORWARD_TUNNEL {
                portforward::serve(ws::Tunnel::new(sock), pid, ws_label).await
            } else {
                portforward::serve_channels(sock, proto, ports, pid, ws_label).await
            }
        },
        move |conn, _| portforward::serve(conn, pid, label),
    )
}

/// The infra process of a pod running on this node.
fn sandbox_pid(cfg: &Config, ns: &str, pod: &str) -> Option<i32> {
    let uids: std::collections::BTreeSet<String> = cfg
        .runtime
        .list_containers(&ContainerFilter {
            label_selector: [
                ("io.kubernetes.pod.namespace".to_string(), ns.to_string()),
                ("io.kubernetes.pod.name".to_string(), pod.to_string()),
            ]
            .into_iter()
            .collect(),
        })
        .ok()?
        .into_iter()
        .filter_map(|c| c.labels.get("io.kubernetes.pod.uid").cloned())
        .collect();
    uids.iter().find_map(|uid| {
        let running: crate::pod::RunningPod = serde_json::from_slice(
            &std::fs::read(cfg.pods_dir.join(uid).join("running.json")).ok()?,
        )
        .ok()?;
        (cfg.runtime.pod_sandbox_status(&running.sandbox) == PodSandboxState::Ready)
            .then_some(running.sandbox.pid)
    })
}
