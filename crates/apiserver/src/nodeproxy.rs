//! Pods' streaming subresources (`log`, `exec`, `attach`, `portforward`) and the
//! `nodes/{name}/proxy` path, served by proxying to the node agent's HTTPS port (the
//! kubelet's 10250) as kube-apiserver does: the request goes to the node's address
//! from its status with the server's kubelet client certificate; an upgrade answered
//! with 101 (WebSocket or SPDY) becomes a byte pipe between the two connections, so
//! the protocols are spoken end to end by kubectl and the agent.
//!
//! Both ends verify each other against the cluster CA: the agent's serving certificate
//! comes from a kubelet-serving CertificateSigningRequest (as kube-apiserver with
//! `--kubelet-certificate-authority`, which k3s sets).

use crate::error::ApiError;
use crate::http::Body;
use crate::state::State;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiResult;

/// The TLS client the server uses towards node agents.
pub fn kubelet_client_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("kubelet client key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| format!("cluster CA: {e}"))?)
            .map_err(|e| format!("cluster CA: {e}"))?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("kubelet serving verifier: {e}"))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn pod_containers(pod: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = pod["spec"][list].as_array() {
            names.extend(
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from)),
            );
        }
    }
    names
}

/// `pods/{name}/log|exec|attach|portforward`.
pub async fn pod_subresource(
    state: &State,
    req: Request<Incoming>,
    ns: &str,
    name: &str,
    sub: &str,
) -> ApiResult<Response<Body>> {
    let pods = crate::resources::lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("no pods resource"))?;
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() && sub == "log" {
        // As kube-apiserver: no host yet, no log (an empty answer).
        return Response::builder()
            .status(200)
            .header("Content-Type", "text/plain")
            .body(crate::http::empty_body())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let containers = pod_containers(&pod);
        let app: Vec<String> = pod["spec"]["containers"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let container = match query
            .iter()
            .find(|(k, _)| k == "container")
            .map(|(_, v)| v.clone())
        {
            Some(c) if !c.is_empty() => {
                if !containers.contains(&c) {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {name}"
                    )));
                }
                c
            }
            _ if app.len() == 1 => app[0].clone(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    app.join(" ")
                )))
            }
        };
        let kind = match sub {
            "log" => "containerLogs",
            other => other,
        };
        format!("/{kind}/{ns}/{name}/{container}")
    };
    // PodPortForwardOptions' `ports` reach the kubelet as `port`, as kube-apiserver
    // passes them on.
    let query: Vec<(String, String)> = query
        .into_iter()
        .map(|(k, v)| match (sub, k.as_str()) {
            ("portforward", "ports") => ("port".to_string(), v),
            _ => (k, v),
        })
        .collect();
    let rest: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().filter(|(k, _)| k != "container"))
        .finish();
    let target = if rest.is_empty() {
        path
    } else {
        format!("{path}?{rest}")
    };
    to_node(state, req, node, &target).await
}

/// `nodes/{name}/proxy/{path}`.
pub async fn node_proxy(
    state: &State,
    req: Request<Incoming>,
    node: &str,
    rest: &str,
) -> ApiResult<Response<Body>> {
    let target = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    to_node(state, req, node, &target).await
}

async fn node_address(state: &State, node: &str) -> ApiResult<(String, u16)> {
    let nodes = crate::resources::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let n = state.registry.get(nodes, None, node).await?;
    let addrs = n["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pick = |t: &str| {
        addrs
            .iter()
            .find(|a| a["type"] == t)
            .and_then(|a| a["address"].as_str())
            .map(String::from)
    };
    let host = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))
        .ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("no preferred addresses found; known addresses: [] (node {node})"),
            )
        })?;
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0)
        .unwrap_or(10250) as u16;
    Ok((host, port))
}

/// Headers that travel to the node (hop-by-hop ones only where an upgrade needs them).
const FORWARDED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "accept",
    "content-type",
];

fn unavailable(node: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        502,
        "InternalError",
        format!("error trying to reach service: node {node}: {e}"),
    )
}

async fn to_node(
    state: &State,
    mut req: Request<Incoming>,
    node: &str,
    target: &str,
) -> ApiResult<Response<Body>> {
    let tls = state
        .kubelet_tls
        .clone()
        .ok_or_else(|| ApiError::internal("this server has no kubelet client certificate"))?;
    let (host, port) = node_address(state, node).await?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| unavailable(node, "dial timeout"))?
    .map_err(|e| unavailable(node, e))?;
    let server_name = ServerName::try_from(host.clone()).map_err(|e| unavailable(node, e))?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| unavailable(node, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unavailable(node, e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let upgrading = req.headers().contains_key("upgrade");
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(target)
        .header("Host", format!("{host}:{port}"));
    for (k, v) in req.headers() {
        if FORWARDED.contains(&k.as_str()) {
            out = out.header(k, v);
        }
    }
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let out = out
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| unavailable(node, e))?;
    let status = resp.status();
    if status == hyper::StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(unavailable(node, "the node switched protocols unasked"));
        };
        let mut answer = Response::builder().status(101);
        for (k, v) in resp.headers() {
            answer = answer.header(k, v);
        }
        let node_upgrade = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = tokio::join!(client_upgrade, node_upgrade) else {
                return;
            };
            let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
        return answer
            .body(crate::http::empty_body())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        let reason = match status.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            _ => "InternalError",
        };
        return Err(ApiError::new(status.as_u16(), reason, msg));
    }
    let mut answer = Response::builder().status(status);
    if let Some(ct) = resp.headers().get("content-type") {
        answer = answer.header("Content-Type", ct);
    }
    // Stream the body as it comes (`kubectl logs -f`); a broken node connection ends it.
    let stream = futures_util::stream::unfold(resp.into_body(), |mut b| async move {
        loop {
            match b.frame().await {
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => return Some((Ok::<_, std::convert::Infallible>(Frame::data(d)), b)),
                    Err(_) => continue,
                },
                _ => return None,
            }
        }
    });
    answer
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(|e| ApiError::internal(e.to_string()))
}
