//! Joining a cluster as k3s agents do: the token `K10<sha256 of the CA>::server:<secret>`
//! pins the server's CA (fetched from `/cacerts` and checked against the hash); the
//! secret authenticates the agent as a bootstrapper, which asks for its node client
//! certificate (`CN=system:node:<name>`, `O=system:nodes`) through the
//! CertificateSigningRequest API; the server approves and signs it for bootstrap
//! tokens. The key and certificate are kept in the agent's data dir and reused.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid token: {0}")]
    Token(String),
    #[error("the server's CA does not match the token: the token pins {want}, the server at {server} serves {got}")]
    CaMismatch {
        server: String,
        want: String,
        got: String,
    },
    #[error("reaching the server at {server}: {message}")]
    Server { server: String, message: String },
    #[error("the node certificate request {name} was {state}: {message}")]
    Refused {
        name: String,
        state: String,
        message: String,
    },
    /// A file of the node's identity could not be read or written.
    #[error("{what}: {err}")]
    Io {
        /// What was being done, naming the file or directory.
        what: String,
        /// The error of the call.
        err: std::io::Error,
    },
    /// The kubeconfig, API client or a certificate could not be made.
    #[error("{what}: {message}")]
    Setup {
        /// What was being made.
        what: String,
        /// Why it failed.
        message: String,
    },
}

impl JoinError {
    fn setup(what: impl Into<String>) -> impl FnOnce(String) -> JoinError {
        let what = what.into();
        move |message| JoinError::Setup { what, message }
    }
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The CA hash the token pins (None for a bare secret).
    pub ca_hash: Option<String>,
    pub secret: String,
}

/// Parses `K10<hash>::server:<secret>` (or a bare secret).
pub fn parse_token(t: &str) -> Result<Token, JoinError> {
    let t = t.trim();
    if t.is_empty() {
        return Err(JoinError::Token("empty".into()));
    }
    match t.strip_prefix("K10") {
        Some(rest) => {
            let (hash, creds) = rest
                .split_once("::")
                .ok_or_else(|| JoinError::Token("expected K10<hash>::server:<secret>".into()))?;
            let secret = creds
                .split_once(':')
                .map(|(_, s)| s)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| JoinError::Token("expected K10<hash>::server:<secret>".into()))?;
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(JoinError::Token(
                    "the CA hash must be 64 hex characters".into(),
                ));
            }
            Ok(Token {
                ca_hash: Some(hash.to_ascii_lowercase()),
                secret: secret.to_string(),
            })
        }
        None => Ok(Token {
            ca_hash: None,
            secret: t.to_string(),
        }),
    }
}

/// The files an agent keeps in its data dir.
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub kubeconfig: PathBuf,
}

fn kubeconfig_text(server: &str, ca: &str, cert: &str, key: &str, user: &str) -> String {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: default\n  context:\n    cluster: default\n    user: {user}\ncurrent-context: default\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(ca),
        b(cert),
        b(key)
    )
}

async fn client_for(kubeconfig: &Path) -> Result<Client, JoinError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| {
        JoinError::setup(format!("reading {}", kubeconfig.display()))(e.to_string())
    })?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| JoinError::setup("the API client's configuration")(e.to_string()))?;
    Client::try_from(cfg).map_err(|e| JoinError::setup("the API client")(e.to_string()))
}

/// Fetches the server's CA and checks it against the token.
pub async fn fetch_ca(server: &str, token: &Token) -> Result<String, JoinError> {
    let unreachable = |m: String| JoinError::Server {
        server: server.to_string(),
        message: m,
    };
    let mut cfg = kube::Config::new(server.parse().map_err(|e| unreachable(format!("{e}")))?);
    // Not trusted yet: the hash in the token decides.
    cfg.accept_invalid_certs = true;
    let client = Client::try_from(cfg).map_err(|e| unreachable(e.to_string()))?;
    let req = http::Request::get("/cacerts")
        .body(Vec::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let pem = client
        .request_text(req)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let got = hex::encode(Sha256::digest(pem.as_bytes()));
    match &token.ca_hash {
        Some(want) if *want != got => Err(JoinError::CaMismatch {
            server: server.to_string(),
            want: want.clone(),
            got,
        }),
        Some(_) => Ok(pem),
        None => {
            tracing::warn!(
                "the token has no CA hash: trusting the CA the server sent ({got}); use the K10… token `skiff server` prints to pin it"
            );
            Ok(pem)
        }
    }
}

/// The path joined agents read the cluster's network settings from (as k3s agents
/// read `/v1-k3s/config`).
pub const CONFIG_PATH: &str = "/v1-skiff/config";

/// The cluster's network settings (service range, cluster DNS and domain, …), from
/// the server at `GET /v1-skiff/config`, asked as the joined node.
pub async fn cluster_network(
    client: &Client,
    server: &str,
) -> Result<skiff_meta::netconf::ClusterNetwork, JoinError> {
    let req = http::Request::get(CONFIG_PATH)
        .body(Vec::new())
        .map_err(|e| JoinError::setup("the cluster configuration request")(e.to_string()))?;
    client.request(req).await.map_err(|e| JoinError::Server {
        server: server.to_string(),
        message: format!("reading the cluster's network settings ({CONFIG_PATH}): {e}"),
    })
}

/// Joins (or re-uses a previous join): returns the agent's identity and a client
/// authenticated as `system:node:<node>`.
pub async fn join(
    server: &str,
    token: &str,
    node: &str,
    data_dir: &Path,
) -> Result<(Identity, Client), JoinError> {
    let io = |what: &str, err: std::io::Error| JoinError::Io {
        what: what.to_string(),
        err,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| io("creating the data dir", e))?;
    let kubeconfig = data_dir.join("kubelet.kubeconfig");
    let files = (
        data_dir.join("server-ca.crt"),
        data_dir.join("client-kubelet.crt"),
        data_dir.join("client-kubelet.key"),
    );
    let token = parse_token(token)?;
    let ca_pem = fetch_ca(server, &token).await?;
    // A previous join for the same CA and node is reused.
    if let (Ok(ca), Ok(cert), Ok(key)) = (
        std::fs::read_to_string(&files.0),
        std::fs::read_to_string(&files.1),
        std::fs::read_to_string(&files.2),
    ) {
        if ca == ca_pem && cert_names_node(&cert, node) {
            std::fs::write(
                &kubeconfig,
                kubeconfig_text(server, &ca, &cert, &key, &format!("system:node:{node}")),
            )
            .map_err(|e| io("writing the kubeconfig", e))?;
            let client = client_for(&kubeconfig).await?;
            return Ok((
                Identity {
                    ca_pem,
                    cert_pem: cert,
                    key_pem: key,
                    kubeconfig,
                },
                client,
            ));
        }
    }
    // Bootstrap: the token's secret as a bearer token, the CA pinned.
    let mut cfg = kube::Config::new(server.parse().map_err(|e| JoinError::Server {
        server: server.into(),
        message: format!("{e}"),
    })?);
    cfg.root_cert = Some(vec![pem_to_der(&ca_pem)?]);
    cfg.auth_info.token = Some(token.secret.clone().into());
    let bootstrap = Client::try_from(cfg)
        .map_err(|e| JoinError::setup("the bootstrap API client")(e.to_string()))?;
    let (key, csr_pem, digest) = node_request(node, rcgen::CertificateParams::default())?;
    let name = format!("node-csr-{node}-{digest}");
    let csrs: Api<CertificateSigningRequest> = Api::all(bootstrap);
    let cert_pem = request_certificate(
        &csrs,
        server,
        &name,
        &csr_pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "client auth"],
    )
    .await?;
    let key_pem = key.serialize_pem();
    std::fs::write(&files.0, &ca_pem).map_err(|e| io("writing the CA", e))?;
    std::fs::write(&files.1, &cert_pem).map_err(|e| io("writing the certificate", e))?;
    write_private(&files.2, &key_pem).map_err(|e| io("writing the key", e))?;
    std::fs::write(
        &kubeconfig,
        kubeconfig_text(
            server,
            &ca_pem,
            &cert_pem,
            &key_pem,
            &format!("system:node:{node}"),
        ),
    )
    .map_err(|e| io("writing the kubeconfig", e))?;
    let client = client_for(&kubeconfig).await?;
    Ok((
        Identity {
            ca_pem,
            cert_pem,
            key_pem,
            kubeconfig,
        },
        client,
    ))
}

/// A new key and a PEM certificate request for `system:node:<node>` in `system:nodes`
/// (with `params`' names), and a short digest of the request to name it by.
fn node_request(
    node: &str,
    mut params: rcgen::CertificateParams,
) -> Result<(rcgen::KeyPair, String, String), JoinError> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| JoinError::setup("the node's key")(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| JoinError::setup("building the certificate request")(e.to_string()))?;
    let digest = hex::encode(Sha256::digest(csr_pem.as_bytes()))[..8].to_string();
    Ok((key, csr_pem, digest))
}

/// Creates CertificateSigningRequest `name` for `csr_pem` with `signer` and `usages`,
/// and waits (up to 60 s) for its certificate.
async fn request_certificate(
    csrs: &Api<CertificateSigningRequest>,
    server: &str,
    name: &str,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
) -> Result<String, JoinError> {
    let obj: CertificateSigningRequest = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64_of(csr_pem.as_bytes()),
            "signerName": signer,
            "usages": usages,
        }
    }))
    .map_err(|e| JoinError::setup(format!("the certificate request {name}"))(e.to_string()))?;
    csrs.create(
        &PostParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..Default::default()
        },
        &obj,
    )
    .await
    .map_err(|e| JoinError::Server {
        server: server.into(),
        message: format!("creating the node certificate request: {e}"),
    })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let csr = csrs.get(name).await.map_err(|e| JoinError::Server {
            server: server.into(),
            message: format!("reading the node certificate request: {e}"),
        })?;
        let status = csr.status.unwrap_or_default();
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(JoinError::Refused {
                name: name.into(),
                state: c.type_.to_ascii_lowercase(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(String::from_utf8_lossy(&cert.0).into_owned());
        }
        if std::time::Instant::now() > deadline {
            return Err(JoinError::Refused {
                name: name.into(),
                state: "not signed within 60 s".into(),
                message: "approve it with `kubectl certificate approve`".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The node's serving certificate (for its streaming endpoint), signed by the cluster
/// CA through a `kubernetes.io/kubelet-serving` CertificateSigningRequest, kept in
/// `dir` and reused while it is the CA's, names this node and address, and has more
/// than a day left. Returns (certificate PEM, key PEM).
pub async fn serving_certificate(
    client: &Client,
    server: &str,
    ca_pem: &str,
    node: &str,
    node_ip: &str,
    dir: &Path,
) -> Result<(String, String), JoinError> {
    let io = |what: &str, err: std::io::Error| JoinError::Io {
        what: what.to_string(),
        err,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating the certificate dir", e))?;
    let (cert_file, key_file) = (
        dir.join("serving-kubelet.crt"),
        dir.join("serving-kubelet.key"),
    );
    if let (Ok(cert), Ok(key)) = (
        std::fs::read_to_string(&cert_file),
        std::fs::read_to_string(&key_file),
    ) {
        if serving_cert_fits(&cert, ca_pem, node, node_ip) {
            return Ok((cert, key));
        }
    }
    let mut params = rcgen::CertificateParams::new(vec![node.to_string()])
        .map_err(|e| JoinError::setup("serving certificate names")(e.to_string()))?;
    if let Ok(ip) = node_ip.parse::<std::net::IpAddr>() {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
    }
    let (key, csr_pem, digest) = node_request(node, params)?;
    let name = format!("csr-serving-{node}-{digest}");
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let cert = request_certificate(
        &csrs,
        server,
        &name,
        &csr_pem,
        "kubernetes.io/kubelet-serving",
        &["digital signature", "key encipherment", "server auth"],
    )
    .await?;
    let key_pem = key.serialize_pem();
    std::fs::write(&cert_file, &cert).map_err(|e| io("writing the serving certificate", e))?;
    write_private(&key_file, &key_pem).map_err(|e| io("writing the serving key", e))?;
    Ok((cert, key_pem))
}

/// Whether a kept serving certificate is still good: issued by the CA of `ca_pem`,
/// for this node's name and address, valid for more than a day.
fn serving_cert_fits(cert: &str, ca_pem: &str, node: &str, node_ip: &str) -> bool {
    use x509_parser::prelude::*;
    let (Ok((_, c)), Ok((_, ca))) = (
        x509_parser::pem::parse_x509_pem(cert.as_bytes()),
        x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()),
    ) else {
        return false;
    };
    let (Ok(c), Ok(ca)) = (c.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    if c.verify_signature(Some(ca.public_key())).is_err() {
        return false;
    }
    let left = c.validity().time_to_expiration();
    if left.is_none_or(|d| d.whole_seconds() < 86400) {
        return false;
    }
    let ip: Option<std::net::IpAddr> = node_ip.parse().ok();
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return false;
    };
    let names = &san.value.general_names;
    let has_name = names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName(d) if *d == node));
    let has_ip = ip.is_none_or(|ip| {
        names.iter().any(|n| match (n, ip) {
            (GeneralName::IPAddress(b), std::net::IpAddr::V4(v4)) => *b == v4.octets(),
            (GeneralName::IPAddress(b), std::net::IpAddr::V6(v6)) => *b == v6.octets(),
            _ => false,
        })
    });
    has_name && has_ip
}

fn write_private(p: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(text.as_bytes())
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, JoinError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| JoinError::setup("the server's CA")(e.to_string()))
}

/// Whether a certificate is this node's (its CN is `system:node:<node>`).
fn cert_names_node(pem: &str, node: &str) -> bool {
    use rustls::pki_types::pem::PemObject;
    let Ok(der) = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let fresh = cert.validity().time_to_expiration().is_some();
    fresh
        && cert
            .subject()
            .iter_common_name()
            .any(|c| c.as_str() == Ok(&format!("system:node:{node}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_k3s_prints_them() {
        let h = "a".repeat(64);
        let t = parse_token(&format!("K10{h}::server:s3cret")).unwrap();
        assert_eq!(t.ca_hash.as_deref(), Some(h.as_str()));
        assert_eq!(t.secret, "s3cret");
        assert_eq!(parse_token("plain").unwrap().ca_hash, None);
        assert!(parse_token("K10abc::server:x").is_err());
        assert!(parse_token(&format!("K10{h}::server:")).is_err());
        assert!(parse_token("").is_err());
    }
}
