//! `skiff server`: the Kubernetes-compatible control plane on the embedded store
//! (or etcd), with k3s's flag names, plus (unless `--disable-agent`) the scheduler's
//! loop and this node's agent in the same process, as k3s does.

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
    /// This node's name (default: the host name).
    #[arg(long = "node-name")]
    pub node_name: Option<String>,
    /// This node's address (default: the advertise or bind address, else 127.0.0.1).
    #[arg(long = "node-ip")]
    pub node_ip: Option<String>,
    /// The pods' address range; this node runs its pods in the first /24 of it.
    #[arg(long = "cluster-cidr", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The bridge pods attach to on this node.
    #[arg(long = "pod-bridge", default_value = "skiffpods0")]
    pub pod_bridge: String,
    /// Port of this node's streaming endpoint (logs, exec, attach, port-forward) on
    /// the node address; 0 picks a free one.
    #[arg(long = "kubelet-port", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How long a node's Lease may go unrenewed before the node is unreachable.
    #[arg(long = "node-monitor-grace-period", default_value = "40s",
          value_parser = skiff_controllers::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// How often the node agent's housekeeping runs (node pressure and eviction, image
    /// garbage collection, directories of deleted volumes).
    #[arg(long = "housekeeping-interval", default_value = "10s",
          value_parser = skiff_controllers::parse_duration)]
    pub housekeeping_interval: std::time::Duration,
    /// How often the node agent brings running pods' configMap, secret, downwardAPI and
    /// projected volumes up to date (the kubelet's --sync-frequency).
    #[arg(long = "sync-frequency", default_value = "1m",
          value_parser = skiff_controllers::parse_duration)]
    pub sync_frequency: std::time::Duration,
    /// Containers' logs are rotated once they reach this size (a quantity).
    #[arg(long = "container-log-max-size", default_value = "10Mi", value_parser = parse_bytes)]
    pub container_log_max_size: u64,
    /// How many log files are kept per container, the current one included.
    #[arg(long = "container-log-max-files", default_value_t = 5)]
    pub container_log_max_files: u32,
    /// Hard eviction thresholds: the node reports pressure below them.
    #[arg(long = "eviction-hard", default_value = skiff_agent::pressure::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
}

/// A quantity of bytes (`10Mi`, `100M`, `1024`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    skiff_agent::podspec::parse_quantity_milli(s)
        .map(|m| (m / 1000).max(0) as u64)
        .map_err(|e| e.to_string())
}

/// Run the server until SIGINT or SIGTERM. `engine` is the engine the in-process
/// node agent runs pods on (None with --disable-agent).
pub fn run(f: ServerFlags, engine: Option<skiff_engine::Engine>) -> Result<i32> {
    let agent = if f.disable_agent {
        None
    } else {
        Some(agent_config(&f, engine)?)
    };
    let kubelet_port = f.kubelet_port;
    let mut cluster = skiff_controllers::cluster::Settings {
        node_monitor_grace_period: f.node_monitor_grace_period,
        ..Default::default()
    };
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if let Some((mut cfg, engine)) = agent {
            let client = kube_client(&server.kubeconfig_path).await?;
            let engine = std::sync::Arc::new(engine);
            let listener = tokio::net::TcpListener::bind((cfg.node.node_ip.as_str(), kubelet_port))
                .await
                .map_err(|e| {
                    anyhow!(
                        "listening on {}:{} for the node agent: {e}",
                        cfg.node.node_ip,
                        kubelet_port
                    )
                })?;
            cfg.kubelet_port = listener.local_addr()?.port();
            let streaming = std::sync::Arc::new(skiff_agent::streaming::Config {
                engine: engine.clone(),
                pods_dir: cfg.node.pods_dir.clone(),
                client_ca_pem: server.ca_cert_pem.clone(),
                node_name: cfg.node.node_name.clone(),
                node_ip: cfg.node.node_ip.clone(),
            });
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(skiff_agent::streaming::serve(
                listener,
                streaming,
                async move {
                    let _ = rx.changed().await;
                },
            )));
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(skiff_controllers::scheduling::run(
                client.clone(),
                std::time::Duration::from_millis(100),
                async move {
                    let _ = rx.changed().await;
                },
            )));
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(skiff_controllers::workloads::run(
                client.clone(),
                std::time::Duration::from_millis(200),
                async move {
                    let _ = rx.changed().await;
                },
            )));
            cluster.ca_pem = Some(server.ca_cert_pem.clone());
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(skiff_controllers::cluster::run(
                client.clone(),
                cluster,
                async move {
                    let _ = rx.changed().await;
                },
            )));
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = skiff_agent::kubelet::run(client, engine, cfg, async move {
                    let _ = rx.changed().await;
                })
                .await
                {
                    eprintln!("skiff server: node agent: {e}");
                }
            }));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        server.shutdown().await;
        Ok::<i32, anyhow::Error>(0)
    })
}

async fn kube_client(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

fn agent_config(
    f: &ServerFlags,
    engine: Option<skiff_engine::Engine>,
) -> Result<(skiff_agent::kubelet::AgentConfig, skiff_engine::Engine)> {
    let engine = engine.ok_or_else(|| anyhow!("the node agent needs the engine root"))?;
    let node_name = match &f.node_name {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "skiff".into())
            .to_ascii_lowercase(),
    };
    let node_ip = f.node_ip.clone().unwrap_or_else(|| {
        f.advertise_address
            .map(|a| a.to_string())
            .or_else(|| (!f.bind_address.is_unspecified()).then(|| f.bind_address.to_string()))
            .unwrap_or_else(|| "127.0.0.1".into())
    });
    let (net, _) = skiff_engine::network::parse_cidr(&f.cluster_cidr)?;
    let pod_cidr = format!("{net}/24");
    let bridge = skiff_engine::network::BridgeConfig::with(
        Some(&f.pod_bridge),
        Some(&pod_cidr),
        Some(&format!("{}_pods", engine.bridge.table)),
    )?;
    let cfg = skiff_agent::kubelet::AgentConfig {
        node: skiff_agent::pod::NodeSettings {
            bridge,
            node_ip,
            node_name,
            cluster_domain: "cluster.local".into(),
            pods_dir: engine.root.join("pods"),
            storage_dir: engine.root.join("storage"),
            container_log_max_size: f.container_log_max_size,
            container_log_max_files: f.container_log_max_files,
            cgroup_root: "kubepods".into(),
        },
        pod_cidr,
        lease_duration: std::time::Duration::from_secs(40),
        sync_period: std::time::Duration::from_millis(100),
        kubelet_port: f.kubelet_port,
        housekeeping_period: f.housekeeping_interval,
        volume_resync_period: f.sync_frequency,
        eviction_hard: skiff_agent::pressure::parse(&f.eviction_hard).map_err(|e| anyhow!(e))?,
    };
    Ok((cfg, engine))
}
