//! skiff-apiserver: the Kubernetes REST API of a skiff server.
//!
//! It owns: serving HTTPS (TLS with the cluster CA; client-certificate and bearer token
//! authentication: static tokens, the join token, bootstrap tokens and ServiceAccount
//! tokens, [`authn`]), authorization ([`authz`]: `system:masters`, the Node authorizer in
//! [`nodeauthz`], then [`rbac`] with the default policy reconciled at start; impersonation;
//! access reviews), the cluster's certificates, admin kubeconfig and join token ([`pki`]),
//! CertificateSigningRequest approval and signing ([`csr`]), discovery, legacy and
//! aggregated ([`discovery`]), OpenAPI v2/v3 with the kinds' schemas ([`openapi`]), one generic
//! resource store over [`skiff_store::Store`] ([`registry`]) driven by a table of resources
//! ([`resources`]) and per-kind strategies ([`kinds`], one file per kind, over the generic
//! steps of [`strategy`] and [`validation`]; [`typed`], [`quantity`]), admission as a chain handed to the registry ([`admit`]: the traits and the
//! narrow view of the cluster plugins read through; [`admission`], [`quota`] (also an
//! after-write hook), [`podsecurity`]; what admission
//! learns of and adds to a request, its user, warnings and audit annotations, in
//! [`requestctx`]), views of one stored resource through
//! several APIs ([`convert`]), the patch engines ([`patch`]), managed fields and
//! server-side apply ([`managed`]), label/field selectors
//! ([`skiff_meta::selector`]), protobuf request bodies ([`proto`]), server-side printing ([`table`]) and
//! watch streams ([`watch`], over the watch cache [`watchcache`]). [`handler`] routes
//! each request to its verb ([`verbs`]: get, list and watch; create; update; patch and
//! apply; delete and deletecollection) or subresource; the request plumbing below it is in [`http`], [`params`], [`user`], [`state`] and
//! [`httplog`] (the request log).
//!
//! It must not know about containers, nodes' runtimes, the scheduler or controllers: it
//! stores and serves objects; others act on them through the API.
//!
//! Start it from a binary:
//!
//! ```no_run
//! # async fn demo() -> Result<(), skiff_apiserver::Error> {
//! use skiff_apiserver::{ServerConfig, start};
//! let config = ServerConfig { https_listen_port: 0, ..ServerConfig::default() };
//! let server = start(config).await?;
//! println!("listening on {}; kubeconfig {}", server.port, server.kubeconfig_path.display());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! or `run(config, shutdown_future)`, which serves until the future completes.
//!
//! Request bodies may be JSON, YAML (`application/yaml`) or protobuf; server-side apply
//! takes `application/apply-patch+yaml`.
//!
//! Service cluster IPs and node ports are allocated as kube-apiserver 1.33 does it
//! ([`alloc`]: an IPAddress object per cluster IP, a node-port bitmap under
//! compare-and-swap, the repair pass at start and every few minutes), from the ranges
//! in [`ServerConfig::network`].
//!
//! ClusterRoles with an `aggregationRule` hold the union of the rules of the roles their
//! selectors pick, kept up to date as ClusterRoles change ([`rbac`], the work of
//! kube-controller-manager's clusterrole-aggregation controller); the default admin, edit
//! and view roles are built that way, as upstream.
//!
//! Not built yet (answered with clear errors, never pretended): anonymous requests beyond
//! the health and version endpoints (401), pods' eviction (501), a list cache (lists read
//! the store; watches share one store watch per resource through [`watchcache`]),
//! `application/apply-patch+cbor` bodies.
// The crate map above names its private modules, for readers of the code and of
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

mod admission;
pub use admission::Plugins as AdmissionPlugins;
mod admit;
mod alloc;
mod authn;
mod authz;
mod binding;
mod cells;
mod convert;
mod csr;
mod defaults;
mod discovery;
mod error;
mod eviction;
mod handler;
mod http;
mod httplog;
mod kinds;
mod managed;
mod masterleases;
mod migrate;
mod nodeauthz;
mod nodeproxy;
mod openapi;
mod options;
mod params;
mod patch;
mod pki;
mod podsecurity;
mod proto;
use skiff_meta::quantity;
mod quota;
mod rbac;
mod registry;
mod render;
mod requestctx;
mod resource;
pub mod resources;
mod review;
mod scale;
mod selectable;
mod sharedboot;
mod state;
mod storage;
mod strategy;
mod subresource;
mod table;
mod typed;
mod user;
mod validation;
mod verbs;
mod watch;
mod watchcache;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use skiff_store::{EmbeddedOptions, EmbeddedStore, Store};
use tokio::net::TcpListener;

pub use error::{Error, Result};
use user::User;

/// Configuration of `skiff server` (flags mirror k3s's).
#[derive(Clone)]
pub struct ServerConfig {
    /// `--data-dir`: store, certificates, token.
    pub data_dir: PathBuf,
    /// `--bind-address`.
    pub bind_address: IpAddr,
    /// `--https-listen-port`; 0 picks a free port.
    pub https_listen_port: u16,
    /// `--write-kubeconfig`: where to write the admin kubeconfig (also always written to
    /// `<data-dir>/cred/admin.kubeconfig`).
    pub write_kubeconfig: Option<PathBuf>,
    /// `--token`: the join secret (bare or in `K10…::server:<secret>` form).
    pub token: Option<String>,
    /// `--datastore-endpoint`: `None` for the embedded store; etcd is not built yet.
    pub datastore_endpoint: Option<String>,
    /// `--tls-san`: extra IP addresses or DNS names for the serving certificate.
    pub tls_san: Vec<String>,
    /// `--advertise-address`: the address other nodes and pods reach the API at (the
    /// `kubernetes` service's endpoint); default: `node_ip`, else the bind address,
    /// else the first non-loopback IPv4 address of the host.
    pub advertise_address: Option<IpAddr>,
    /// `--node-ip` of the server's own node: the `kubernetes` service's endpoint when
    /// no advertise address is given (as k3s).
    pub node_ip: Option<IpAddr>,
    /// `--token-auth-file`: static bearer tokens, `token,user,uid,"group1,group2"` per line.
    pub token_auth_file: Option<PathBuf>,
    /// The shortest ServiceAccount token lifetime accepted, in seconds (Kubernetes:
    /// 600). Shorter only for tests of token rotation.
    pub min_token_expiration_seconds: i64,
    /// `--admission-control-config-file`: an AdmissionConfiguration with the
    /// PodSecurity plugin's defaults and exemptions ([`podsecurity`]).
    pub admission_control_config_file: Option<PathBuf>,
    /// The optional admission plugins turned on (`--enable-admission-plugins`).
    pub admission_plugins: AdmissionPlugins,
    /// The cluster's network settings (`--cluster-cidr`, `--service-cidr`,
    /// `--cluster-dns`, `--cluster-domain`, `--service-node-port-range`).
    pub network: skiff_meta::netconf::ClusterNetwork,
    /// `--datastore-migrate`: copy the embedded store's objects into the (empty) etcd
    /// of `datastore_endpoint` before serving from it.
    pub datastore_migrate: bool,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("data_dir", &self.data_dir)
            .field("bind_address", &self.bind_address)
            .field("https_listen_port", &self.https_listen_port)
            .field("write_kubeconfig", &self.write_kubeconfig)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datastore_endpoint", &self.datastore_endpoint)
            .field("datastore_migrate", &self.datastore_migrate)
            .field("tls_san", &self.tls_san)
            .field("advertise_address", &self.advertise_address)
            .field("node_ip", &self.node_ip)
            .field("token_auth_file", &self.token_auth_file)
            .field(
                "min_token_expiration_seconds",
                &self.min_token_expiration_seconds,
            )
            .field(
                "admission_control_config_file",
                &self.admission_control_config_file,
            )
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("/var/lib/skiff/server"),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            https_listen_port: 6443,
            write_kubeconfig: None,
            token: None,
            datastore_endpoint: None,
            tls_san: Vec::new(),
            advertise_address: None,
            node_ip: None,
            token_auth_file: None,
            min_token_expiration_seconds: validation::DEFAULT_MIN_TOKEN_EXPIRATION,
            admission_control_config_file: None,
            admission_plugins: Default::default(),
            network: Default::default(),
            datastore_migrate: false,
        }
    }
}

/// A started server.
pub struct RunningServer {
    /// The port actually bound.
    pub port: u16,
    pub local_addr: SocketAddr,
    /// The admin kubeconfig written for this run (the `--write-kubeconfig` path if given).
    pub kubeconfig_path: PathBuf,
    /// The join token, `K10<ca hash>::server:<secret>`.
    pub token: String,
    /// The cluster CA certificate (PEM).
    pub ca_cert_pem: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// This server's record in the `kubernetes` endpoints, removed on shutdown.
    leases: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, ends open connections and watches, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.leases.await;
        let _ = self.task.await;
    }

    /// Waits until the server stops (it stops only through [`RunningServer::shutdown`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let server = start(config).await?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    let store = EmbeddedStore::open(config.data_dir.join("db"), EmbeddedOptions::default())?;
    Ok(Arc::new(store))
}

/// `--datastore-endpoint http://host:2379[,...]`: etcd v3 (k3s's flag and form).
async fn open_etcd(endpoint: &str) -> Result<Arc<dyn Store>> {
    let endpoints: Vec<String> = endpoint
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(Error::Config(format!(
                "--datastore-endpoint {endpoint}: only etcd endpoints (http://host:2379) are supported"
            )));
        }
    }
    // As k3s: a datastore not answering yet is waited for, with back-off, saying why.
    let mut delay = Duration::from_secs(1);
    loop {
        match skiff_store::EtcdStore::connect(&endpoints, None).await {
            Ok(store) => return Ok(Arc::new(store)),
            Err(e) => {
                tracing::warn!(
                    endpoint = %endpoint,
                    error = %e,
                    retry_in_s = delay.as_secs(),
                    "cannot reach the datastore; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Starts the server: certificates, store, bootstrap objects, kubeconfig, listener.
pub async fn start(config: ServerConfig) -> Result<RunningServer> {
    let pod_security = match &config.admission_control_config_file {
        Some(path) => podsecurity::load_admission_config(path)
            .map_err(|e| Error::Config(format!("--admission-control-config-file {e}")))?,
        None => podsecurity::Config::default(),
    };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::io(format!("creating {}", config.data_dir.display()), e))?;
    let mut sans = config.tls_san.clone();
    sans.push(config.bind_address.to_string());
    // In-cluster clients reach the API at the `kubernetes` Service's IP and name.
    sans.push(config.network.kubernetes_service_ip().to_string());
    sans.push(format!(
        "kubernetes.default.svc.{}",
        config.network.cluster_domain
    ));
    validation::set_min_token_expiration(config.min_token_expiration_seconds);
    let store = match &config.datastore_endpoint {
        Some(ep) => open_etcd(ep).await?,
        None => {
            let cfg = config.clone();
            tokio::task::spawn_blocking(move || open_store(&cfg))
                .await
                .map_err(|e| Error::Config(format!("opening the store: {e}")))??
        }
    };
    if config.datastore_migrate {
        if config.datastore_endpoint.is_none() {
            return Err(Error::Config(
                "--datastore-migrate needs --datastore-endpoint (the etcd to move to)".into(),
            ));
        }
        let db = config.data_dir.join("db");
        if !db.exists() {
            return Err(Error::Config(format!(
                "--datastore-migrate: no embedded store at {} to move",
                db.display()
            )));
        }
        let cfg = config.clone();
        let embedded = tokio::task::spawn_blocking(move || open_store(&cfg))
            .await
            .map_err(|e| Error::Config(format!("opening the embedded store: {e}")))??;
        let n = migrate::copy(&*embedded, &*store).await?;
        tracing::info!(objects = n, from = %db.display(), "moved the embedded store's objects to etcd");
    }
    let secret = pki::token_secret(&config.data_dir, config.token.as_deref())?;
    if config.datastore_endpoint.is_some() {
        // Servers sharing a datastore share the CA and the ServiceAccount key.
        sharedboot::sync(&*store, &config.data_dir.join("tls"), &secret).await?;
    }
    let pki = pki::Pki::load_or_generate(&config.data_dir, &sans)?;
    let token = pki::join_token(&config.data_dir, &pki, Some(&secret))?;
    let tls = tls_config(&pki)?;
    let tokens = match &config.token_auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            user::parse_token_file(&text)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        None => Default::default(),
    };
    let compactor =
        skiff_store::spawn_compactor(store.clone(), skiff_store::CompactionPolicy::default());
    let listener = TcpListener::bind(SocketAddr::new(
        config.bind_address,
        config.https_listen_port,
    ))
    .await
    .map_err(|e| {
        Error::io(
            format!(
                "binding {}:{}",
                config.bind_address, config.https_listen_port
            ),
            e,
        )
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let port = local_addr.port();
    let client_host = if config.bind_address.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.bind_address
    };
    let url_host = match client_host {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let auth = authn::Authenticator::load(&config.data_dir, tokens, &token)?;
    let signer = csr::Signer::new(&pki.ca_cert_pem, &pki.ca_key_pem()?)?;
    let registry = registry::Registry::new(store.clone())
        .with_root_ca(&pki.ca_cert_pem)
        .with_admission(Arc::new(admission::Chain::new(
            pod_security,
            config.admission_plugins,
        )))
        .with_after_write(Arc::new(quota::Refresh))
        .with_network(config.network.clone());
    bootstrap(&registry, &config.network, port).await?;
    // Before serving: what a crash or an older data dir left is repaired at once.
    let report = alloc::repair::run_once(
        &registry,
        registry.allocator(),
        &mut Default::default(),
        alloc::repair::Policy::AT_START,
    )
    .await
    .map_err(|e| Error::Config(format!("repairing the Service allocations: {e}")))?;
    if report != Default::default() {
        tracing::info!(?report, "repaired the Service allocations");
    }
    let advertise = advertised_address(&config, pki::host_addresses);
    // The `kubernetes` endpoints list every live server (one, on the embedded store).
    if config.datastore_endpoint.is_none() {
        masterleases::clear(&*store)
            .await
            .map_err(|e| Error::Config(format!("clearing old server records: {e}")))?;
    }
    masterleases::renew(&*store, advertise, port)
        .await
        .map_err(|e| Error::Config(format!("recording this server in the datastore: {e}")))?;
    masterleases::reconcile(&registry, &*store)
        .await
        .map_err(|e| Error::Config(format!("reconciling the kubernetes endpoints: {e}")))?;

    let kubeconfig = pki::admin_kubeconfig(&pki, &format!("https://{url_host}:{port}"));
    pki::write_kubeconfig(
        &config.data_dir.join("cred").join("admin.kubeconfig"),
        &kubeconfig,
    )?;
    let kubeconfig_path = match &config.write_kubeconfig {
        Some(p) => {
            pki::write_kubeconfig(p, &kubeconfig)?;
            p.clone()
        }
        None => config.data_dir.join("cred").join("admin.kubeconfig"),
    };
    tracing::debug!(%local_addr, kubeconfig = %kubeconfig_path.display(), "API server listening");
    tracing::debug!(token = %token, "join token (agents use it to join and to pin the CA)");

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // Lists and watches are served from the watch cache once it has loaded (reads fall
    // back to the store until then).
    let cache = watchcache::WatchCache::start(store.clone(), resources::RESOURCES, stop_rx.clone());
    if !cache.wait_for(1, Duration::from_secs(10)).await {
        tracing::warn!("the watch cache has not loaded yet; reads go to the store until it has");
    }
    let registry = registry.with_cache(cache);
    let state = Arc::new(state::State {
        registry,
        server_address: format!("{url_host}:{port}"),
        shutdown: stop_rx.clone(),
        auth,
        signer,
        ca_cert_pem: pki.ca_cert_pem.clone(),
        network: config.network.clone(),
        kubelet_tls: Some(
            nodeproxy::kubelet_client_tls(
                &pki.ca_cert_pem,
                &pki.admin_cert_pem,
                &pki.admin_key_pem,
            )
            .map_err(Error::Tls)?,
        ),
    });
    drop(store);
    tokio::spawn(quota_resync(state.registry.clone(), stop_rx.clone()));
    tokio::spawn(alloc::repair::run(
        state.registry.clone(),
        alloc::repair::INTERVAL,
        stop_rx.clone(),
    ));
    let leases = tokio::spawn(masterleases::run(
        state.registry.clone(),
        state.registry.store().clone(),
        advertise,
        port,
        stop_rx.clone(),
    ));
    let task = tokio::spawn(serve(listener, tls, state, stop_rx, compactor));
    Ok(RunningServer {
        port,
        local_addr,
        kubeconfig_path,
        token,
        ca_cert_pem: pki.ca_cert_pem.clone(),
        stop,
        task,
        leases,
    })
}

fn tls_config(pki: &pki::Pki) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    let ca = CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes())
        .map_err(|e| tls_err("parsing the CA", &e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| tls_err("adding the CA", &e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls_err("building the client verifier", &e))?;
    let serving = CertificateDer::from_pem_slice(pki.serving_cert_pem.as_bytes())
        .map_err(|e| tls_err("parsing the serving certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes())
        .map_err(|e| tls_err("parsing the serving key", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![serving, ca], key)
        .map_err(|e| tls_err("serving certificate", &e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The user named by a verified client certificate: CN is the user, O the groups.
fn user_from_cert(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(User {
        name,
        groups,
        ..Default::default()
    })
}

/// Recounts every quota's usage every [`quota::RESYNC`] until `stop`.
async fn quota_resync(reg: registry::Registry, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(quota::RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                if let Err(e) = quota::resync(&reg).await {
                    tracing::warn!(error = %e, "resource quota resync");
                }
            }
        }
    }
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<state::State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    compactor: tokio::task::JoinHandle<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                conns.spawn(async move {
                    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| user_from_cert(c));
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        let user = user.clone();
                        async move { Ok::<_, std::convert::Infallible>(handler::handle(state, user, Some(peer), req).await) }
                    });
                    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30));
                    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
    compactor.abort();
    let _ = compactor.await;
    // Watch tasks hold the store; they end on the stop signal. Wait for them so the store
    // is closed (and its file reusable) when shutdown returns.
    let store = state.registry.store().clone();
    drop(state);
    for _ in 0..200 {
        if Arc::strong_count(&store) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
}

/// The address the `kubernetes` service's endpoints name: `--advertise-address`, else
/// `--node-ip`, else the bind address unless it is unspecified, else the host's first
/// non-loopback IPv4 address (from `host_addresses`), else 127.0.0.1.
fn advertised_address(
    config: &ServerConfig,
    host_addresses: impl FnOnce() -> Vec<IpAddr>,
) -> IpAddr {
    config
        .advertise_address
        .or(config.node_ip)
        .or((!config.bind_address.is_unspecified()).then_some(config.bind_address))
        .or_else(|| {
            host_addresses()
                .into_iter()
                .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The ServiceCIDR `kubernetes`: `--service-cidr`, Ready (kube-apiserver's default
/// ServiceCIDR controller). A data dir made with another range has it changed to this
/// one (the allocator takes IPs from the flag's range).
async fn ensure_service_cidr(
    registry: &registry::Registry,
    network: &skiff_meta::netconf::ClusterNetwork,
) -> Result<()> {
    let res = resources::lookup("networking.k8s.io", "v1", "servicecidrs")
        .ok_or_else(|| Error::Config("servicecidrs not served".into()))?;
    let cidr = network.service_cidr.to_string();
    let err = |e: error::ApiError| Error::Config(format!("the kubernetes ServiceCIDR: {e}"));
    let current = match registry.get(res, None, "kubernetes").await {
        Ok(obj) => obj,
        Err(e) if e.code == 404 => registry
            .create(
                res,
                None,
                json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": [cidr]}}),
                false,
            )
            .await
            .or_else(|e| {
                if e.reason == "AlreadyExists" {
                    Ok(json!({}))
                } else {
                    Err(e)
                }
            })
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    };
    if current.pointer("/spec/cidrs") != Some(&json!([cidr])) && current.get("spec").is_some() {
        tracing::warn!(was = ?current.pointer("/spec/cidrs"), now = %cidr, "--service-cidr changed: replacing the kubernetes ServiceCIDR");
        registry
            .delete(res, None, "kubernetes", &Default::default())
            .await
            .map_err(err)?;
        registry
            .create(
                res,
                None,
                json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": [cidr]}}),
                false,
            )
            .await
            .map_err(err)?;
    }
    let ready = registry
        .get(res, None, "kubernetes")
        .await
        .map_err(err)?
        .pointer("/status/conditions/0/status")
        .and_then(|v| v.as_str())
        == Some("True");
    if !ready {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        admit::Objects::write_status(
            registry,
            res,
            None,
            "kubernetes",
            json!({"conditions": [{
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "",
                "message": "Kubernetes Service CIDR is ready",
            }]}),
        )
        .await
        .map_err(err)?;
    }
    Ok(())
}

/// Objects every cluster has: the default RBAC policy, the system namespaces (with their
/// `default` ServiceAccount and `kube-root-ca.crt`), the `kubernetes` service, the system
/// priority classes and the default storage class.
async fn bootstrap(
    registry: &registry::Registry,
    network: &skiff_meta::netconf::ClusterNetwork,
    port: u16,
) -> Result<()> {
    rbac::reconcile_bootstrap_policy(registry)
        .await
        .map_err(|e| Error::Config(format!("reconciling the default RBAC policy: {e}")))?;
    let nsres = resources::lookup("", "v1", "namespaces")
        .ok_or_else(|| Error::Config("namespaces not served".into()))?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        registry
            .ensure(nsres, None, json!({"metadata": {"name": ns}}))
            .await
            .map_err(|e| Error::Config(format!("creating namespace {ns}: {e}")))?;
    }
    // Every namespace (also those of an earlier run) has its default ServiceAccount.
    let all = registry
        .list(nsres, None, &registry::ListOptions::default())
        .await
        .map_err(|e| Error::Config(format!("listing namespaces: {e}")))?;
    for ns in all
        .items
        .iter()
        .filter_map(|n| n.pointer("/metadata/name").and_then(|v| v.as_str()))
    {
        admission::namespace_defaults(registry, ns)
            .await
            .map_err(|e| Error::Config(format!("populating namespace {ns}: {e}")))?;
    }
    ensure_service_cidr(registry, network).await?;
    // The `kubernetes` Service takes the first IP of the range, through the allocator.
    let svc = resources::lookup("", "v1", "services")
        .ok_or_else(|| Error::Config("services not served".into()))?;
    let ip = network.kubernetes_service_ip().to_string();
    registry
        .ensure(
            svc,
            Some("default"),
            json!({
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            }),
        )
        .await
        .map_err(|e| Error::Config(format!("creating the kubernetes service: {e}")))?;
    if let Ok(existing) = registry.get(svc, Some("default"), "kubernetes").await {
        let has = existing.pointer("/spec/clusterIP").and_then(|v| v.as_str());
        if has != Some(ip.as_str()) {
            tracing::warn!(
                cluster_ip = ?has,
                expected = %ip,
                "the kubernetes Service's cluster IP is not the first address of --service-cidr (the data dir was made with another range); delete the Service to have it re-created"
            );
        }
    }
    let pc = resources::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| Error::Config("priorityclasses not served".into()))?;
    for (name, value, what) in [
        ("system-node-critical", 2_000_001_000, "node"),
        ("system-cluster-critical", 2_000_000_000, "cluster"),
    ] {
        registry
            .ensure(
                pc,
                None,
                json!({
                    "metadata": {"name": name},
                    "value": value,
                    "globalDefault": false,
                    "description": format!("Used for system critical pods that must not be moved from their current {what}."),
                }),
            )
            .await
            .map_err(|e| Error::Config(format!("creating priority class {name}: {e}")))?;
    }
    // The default class; its provisioner (node-local directories) comes with the agent.
    let sc = resources::lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| Error::Config("storageclasses not served".into()))?;
    registry
        .ensure(
            sc,
            None,
            json!({
                "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "skiff.io/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            }),
        )
        .await
        .map_err(|e| Error::Config(format!("creating the default storage class: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_endpoints_follow_advertise_then_node_ip_then_bind() {
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let hosts = || vec![ip("127.0.0.1"), ip("192.0.2.7"), ip("198.51.100.1")];
        let mut c = ServerConfig {
            advertise_address: Some(ip("203.0.113.1")),
            node_ip: Some(ip("203.0.113.2")),
            bind_address: ip("203.0.113.3"),
            ..ServerConfig::default()
        };
        assert_eq!(advertised_address(&c, hosts), ip("203.0.113.1"));
        c.advertise_address = None;
        assert_eq!(advertised_address(&c, hosts), ip("203.0.113.2"));
        c.node_ip = None;
        assert_eq!(advertised_address(&c, hosts), ip("203.0.113.3"));
        c.bind_address = ip("0.0.0.0");
        assert_eq!(advertised_address(&c, hosts), ip("192.0.2.7"));
        assert_eq!(advertised_address(&c, Vec::new), ip("127.0.0.1"));
    }
}
