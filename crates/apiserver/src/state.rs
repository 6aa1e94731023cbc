//! What every request handler shares.

use std::sync::Arc;

use crate::registry::Registry;

/// What every request handler shares.
pub struct State {
    pub registry: Registry,
    /// `host:port` clients reach the server at (for `/api`).
    pub server_address: String,
    /// Becomes true when the server shuts down (ends watches).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Bearer-token authentication (static, join, bootstrap and ServiceAccount tokens).
    pub auth: crate::authn::Authenticator,
    /// Signs approved CertificateSigningRequests.
    pub signer: crate::csr::Signer,
    /// The client TLS towards node agents (pods' log/exec/attach/portforward).
    pub kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    /// The cluster CA (served at `/cacerts`, as k3s does, for joining agents to check
    /// against the hash in their token).
    pub ca_cert_pem: String,
    /// The cluster's network settings, served to nodes at `/v1-skiff/config`.
    pub network: skiff_meta::netconf::ClusterNetwork,
}
