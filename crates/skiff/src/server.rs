//! `skiff server`: the Kubernetes-compatible control plane on the embedded store
//! (or etcd), with k3s's flag names. The node agent is a later piece: until it
//! exists, `--disable-agent` is required and its absence is a clear error.

use anyhow::{anyhow, Result};
use clap::Args;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ServerFlags {
    /// Directory of the server's state (store, certificates, token).
    #[arg(
        long = "data-dir",
        short = 'd',
        default_value = "/var/lib/skiff/server"
    )]
    pub data_dir: PathBuf,
    /// HTTPS port of the API (0: pick a free one and write it into the kubeconfig).
    #[arg(long = "https-listen-port", default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Write the admin kubeconfig here too.
    #[arg(long = "write-kubeconfig", short = 'o')]
    pub write_kubeconfig: Option<PathBuf>,
    /// Datastore: absent for the embedded store, or etcd endpoints `http://host:2379[,...]`.
    #[arg(long = "datastore-endpoint")]
    pub datastore_endpoint: Option<String>,
    /// The join secret for agents (bare, or in k3s's `K10<ca hash>::server:<secret>` form).
    #[arg(long, short = 't', env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// Run only the control plane.
    #[arg(long = "disable-agent")]
    pub disable_agent: bool,
    /// Extra names or addresses for the serving certificate.
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// The address other nodes reach the API at.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// Static bearer tokens: `token,user,uid,"group1,group2"` per line.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
}

/// Run the server until SIGINT or SIGTERM.
pub fn run(f: ServerFlags) -> Result<i32> {
    if !f.disable_agent {
        return Err(anyhow!(
            "the node agent is not built yet, so this server cannot run pods: start it with --disable-agent to run the control plane alone"
        ));
    }
    let config = skiff_apiserver::ServerConfig {
        data_dir: f.data_dir,
        bind_address: f.bind_address,
        https_listen_port: f.https_listen_port,
        write_kubeconfig: f.write_kubeconfig,
        token: f.token,
        datastore_endpoint: f.datastore_endpoint,
        tls_san: f.tls_san,
        advertise_address: f.advertise_address,
        token_auth_file: f.token_auth_file,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting the server runtime: {e}"))?;
    rt.block_on(async move {
        let server = skiff_apiserver::start(config).await?;
        eprintln!(
            "skiff server: API on port {}; admin kubeconfig at {}; join token {}",
            server.port,
            server.kubeconfig_path.display(),
            server.token
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        server.shutdown().await;
        Ok::<i32, anyhow::Error>(0)
    })
}
