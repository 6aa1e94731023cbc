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
    /// With --datastore-endpoint: first copy the objects of this data dir's embedded
    /// store into that etcd, which must hold none (the embedded store is kept as is).
    #[arg(long = "datastore-migrate", requires = "datastore_endpoint")]
    pub datastore_migrate: bool,
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
    /// The Services' virtual address range; its first address is the `kubernetes`
    /// Service's.
    #[arg(long = "service-cidr", default_value = skiff_meta::netconf::DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    /// The cluster DNS Service's address (default: the tenth address of --service-cidr).
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Option<String>,
    /// The cluster's DNS domain.
    #[arg(long = "cluster-domain", default_value = skiff_meta::netconf::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The ports NodePort Services are given (`first-last`, or kube's `first+count`).
    #[arg(long = "service-node-port-range",
          default_value = skiff_meta::netconf::DEFAULT_NODE_PORT_RANGE)]
    pub service_node_port_range: String,
    /// The bridge pods attach to on this node.
    #[arg(long = "pod-bridge", default_value = "skiffpods0")]
    pub pod_bridge: String,
    /// Port of this node's streaming endpoint (logs, exec, attach, port-forward) on
    /// the node address; 0 picks a free one.
    #[arg(long = "kubelet-port", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How pods on different nodes reach each other: `vxlan`, `host-gw` or `none`.
    #[arg(long = "flannel-backend", default_value = skiff_meta::netconf::DEFAULT_FLANNEL_BACKEND)]
    pub flannel_backend: String,
    #[command(flatten)]
    pub node: crate::agent::NodeFlags,
    #[command(flatten)]
    pub net: crate::agent::NetFlags,
    /// Do not deploy a packaged component (k3s's flag; repeatable or comma-separated):
    /// `servicelb` (LoadBalancer Services stay pending), `coredns` (no cluster DNS);
    /// `traefik` and `metrics-server` are accepted as skiff ships neither.
    #[arg(long = "disable", value_delimiter = ',')]
    pub disable: Vec<String>,
    /// Stop this node's pods and remove every rule, route, device and bridge the node
    /// made (as `k3s-killall.sh`), then exit; the server's data stays.
    #[arg(long)]
    pub cleanup: bool,
    /// Run no controllers (scheduler, workload and cluster controllers).
    #[arg(long = "disable-controller-manager")]
    pub disable_controller_manager: bool,
    /// How long a node's Lease may go unrenewed before the node is unreachable.
    #[arg(long = "node-monitor-grace-period", default_value = "40s",
          value_parser = skiff_meta::time::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// The shortest ServiceAccount token lifetime accepted (Kubernetes: 10 minutes);
    /// for tests of token rotation only.
    #[arg(long = "service-account-min-token-expiration", default_value = "10m", hide = true,
          value_parser = skiff_meta::time::parse_duration)]
    pub min_token_expiration: std::time::Duration,
    /// kube-apiserver's `--admission-control-config-file`: an AdmissionConfiguration
    /// (the PodSecurity plugin's defaults and exemptions).
    #[arg(long = "admission-control-config-file")]
    pub admission_control_config_file: Option<PathBuf>,
    /// kube-apiserver's optional admission plugins to run, by name:
    /// DenyServiceExternalIPs, AlwaysPullImages (the default ones always run).
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Optional admission plugins to turn off again.
    #[arg(long = "disable-admission-plugins", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// k3s's pass-through of kube-apiserver flags, `name=value`; skiff takes
    /// `admission-control-config-file=FILE`, `enable-admission-plugins=A,B` and
    /// `disable-admission-plugins=A,B`, and refuses any other.
    #[arg(long = "kube-apiserver-arg")]
    pub kube_apiserver_arg: Vec<String>,
    #[command(flatten)]
    pub log: crate::logging::LogFlags,
}

/// The `--admission-control-config-file` and the optional plugins, given directly or as
/// k3s's `--kube-apiserver-arg=NAME=VALUE`.
fn admission_flags(
    f: &ServerFlags,
) -> Result<(Option<PathBuf>, skiff_apiserver::AdmissionPlugins)> {
    let mut file = f.admission_control_config_file.clone();
    let mut enable = f.enable_admission_plugins.clone();
    let mut disable = f.disable_admission_plugins.clone();
    let list = |v: &str| v.split(',').map(str::to_string).collect::<Vec<_>>();
    for arg in &f.kube_apiserver_arg {
        let (name, value) = arg
            .trim_start_matches('-')
            .split_once('=')
            .unwrap_or((arg, ""));
        match name {
            "admission-control-config-file" if !value.is_empty() => {
                if file.as_ref().is_some_and(|p| p.as_os_str() != value) {
                    return Err(anyhow!(
                        "--kube-apiserver-arg {arg}: --admission-control-config-file is already {}",
                        file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
                    ));
                }
                file = Some(PathBuf::from(value));
            }
            "enable-admission-plugins" => enable.extend(list(value)),
            "disable-admission-plugins" => disable.extend(list(value)),
            _ => {
                return Err(anyhow!(
                    "--kube-apiserver-arg {arg}: not supported (skiff takes admission-control-config-file=FILE, enable-admission-plugins=A,B and disable-admission-plugins=A,B)"
                ))
            }
        }
    }
    let plugins =
        skiff_apiserver::AdmissionPlugins::from_flags(&enable, &disable).map_err(|e| anyhow!(e))?;
    Ok((file, plugins))
}

/// The packaged components `--disable` turned off.
#[derive(Debug, Default, PartialEq, Eq)]
struct Disabled {
    servicelb: bool,
    coredns: bool,
}

impl Disabled {
    fn parse(names: &[String]) -> Result<Disabled> {
        let mut d = Disabled::default();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            match name {
                "servicelb" => d.servicelb = true,
                "coredns" => d.coredns = true,
                // Components of k3s that skiff does not ship: nothing to turn off.
                "traefik" | "metrics-server" => {}
                other => {
                    return Err(anyhow!(
                        "--disable {other}: unknown component (skiff can disable servicelb and coredns; traefik and metrics-server are not shipped)"
                    ))
                }
            }
        }
        Ok(d)
    }
}

/// Run the server until SIGINT or SIGTERM. `engine` is the engine the in-process
/// node agent runs pods on (None with --disable-agent).
pub fn run(f: ServerFlags, engine: Option<skiff_engine::Engine>) -> Result<i32> {
    if f.cleanup {
        let engine = engine.ok_or_else(|| anyhow!("--cleanup needs the engine root"))?;
        return crate::agent::cleanup(
            engine,
            f.node_name.clone(),
            &f.pod_bridge,
            f.node.cgroup_root.as_deref(),
            &f.net,
        );
    }
    // Logging first: reading the node's settings may warn.
    crate::logging::init_daemon(&f.log)?;
    // Nodes get /24s of the cluster CIDR: one too small for that is refused here
    // rather than leaving every joining node without a pod range.
    skiff_controllers::nodeipam::blocks(&f.cluster_cidr)
        .map_err(|e| anyhow!("--cluster-cidr: {e}"))?;
    let network = skiff_meta::netconf::ClusterNetwork::parse(
        &f.cluster_cidr,
        &f.service_cidr,
        f.cluster_dns.as_deref(),
        &f.cluster_domain,
        &f.service_node_port_range,
    )?
    .with_backend(&f.flannel_backend)?;
    let disabled = Disabled::parse(&f.disable)?;
    let network = skiff_meta::netconf::ClusterNetwork {
        dns: !disabled.coredns,
        ..network
    };
    let agent = if f.disable_agent {
        None
    } else {
        Some(agent_config(&f, engine, &network)?)
    };
    let (admission_control_config_file, admission_plugins) = admission_flags(&f)?;
    let node_ip_flag = f
        .node_ip
        .as_deref()
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|_| anyhow!("--node-ip {ip:?}: not an IP address"))
        })
        .transpose()?;
    let kubelet_port = f.kubelet_port;
    let leader_host = f.node_name.clone().unwrap_or_else(crate::agent::host_name);
    let controllers = !f.disable_controller_manager;
    let node_network = network.clone();
    let net_flags = f.net.clone();
    let mut cluster = skiff_controllers::cluster::Settings {
        node_monitor_grace_period: f.node_monitor_grace_period,
        cluster_cidr: Some(f.cluster_cidr.clone()),
        servicelb: !disabled.servicelb,
        cluster_dns: (!disabled.coredns).then_some(network.cluster_dns),
        ..Default::default()
    };
    // This node's own certificates, beside the server's.
    let agent_dir = f.data_dir.join("agent");
    let new_ca = !f.data_dir.join("tls").exists();
    let store = match &f.datastore_endpoint {
        Some(endpoints) => format!("etcd at {endpoints}"),
        None => format!("embedded in {}", f.data_dir.join("db").display()),
    };
    let node = agent.as_ref().map(|(cfg, _)| {
        (
            cfg.node.node_name.clone(),
            cfg.node.node_ip.clone(),
            cfg.pod_cidr.clone(),
        )
    });
    let config = skiff_apiserver::ServerConfig {
        data_dir: f.data_dir,
        bind_address: f.bind_address,
        https_listen_port: f.https_listen_port,
        write_kubeconfig: f.write_kubeconfig,
        token: f.token,
        datastore_endpoint: f.datastore_endpoint,
        datastore_migrate: f.datastore_migrate,
        tls_san: f.tls_san,
        advertise_address: f.advertise_address,
        node_ip: node_ip_flag,
        token_auth_file: f.token_auth_file,
        min_token_expiration_seconds: f.min_token_expiration.as_secs() as i64,
        admission_control_config_file,
        admission_plugins,
        network,
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
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let mut tasks = Vec::new();
        let client = kube_client(&server.kubeconfig_path).await?;
        let kubernetes = client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .unwrap_or_default();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            kubernetes = %kubernetes,
            address = %server.local_addr,
            kubeconfig = %server.kubeconfig_path.display(),
            store = %store,
            "skiff server started"
        );
        if new_ca {
            tracing::info!(dir = %agent_dir.with_file_name("tls").display(), "generated the cluster CA");
        }
        match &node {
            Some((name, ip, pod_cidr)) => tracing::info!(
                node = %name,
                node_ip = %ip,
                pod_cidr = %pod_cidr,
                kubelet_port,
                "running this node's agent"
            ),
            None => tracing::info!("no node agent (--disable-agent)"),
        }
        if disabled.coredns {
            tracing::info!("--disable coredns: no cluster DNS");
        }
        if controllers {
            tracing::info!("running the controllers and the scheduler");
        } else {
            tracing::info!("no controllers (--disable-controller-manager)");
        }
        if controllers {
            cluster.ca_pem = Some(server.ca_cert_pem.clone());
            // The caches are every server's; the scheduler and the controllers run
            // only while this server holds their Lease in kube-system.
            let informers = skiff_informer::Informers::spawn(&client, &stop_rx);
            let identity = skiff_controllers::leader::identity(&leader_host);
            let (c, i) = (client.clone(), informers.clone());
            tasks.extend(elect(&client, "kube-scheduler", &identity, &stop_rx, move |stop| {
                skiff_scheduler::scheduling::run(c.clone(), i.clone(), stop)
            }));
            let c = client.clone();
            tasks.extend(elect(&client, "kube-controller-manager", &identity, &stop_rx, move |stop| {
                skiff_controllers::run(c.clone(), cluster.clone(), informers.clone(), stop)
            }));
        }
        if let Some((cfg, runtime)) = agent {
            tasks.extend(crate::agent::start_network(
                client.clone(),
                crate::agent::NodeNetwork {
                    network: node_network.clone(),
                    resolv_conf: cfg.node.resolv_conf.clone(),
                    flags: net_flags.clone(),
                    node_name: cfg.node.node_name.clone(),
                    node_ip: cfg.node.node_ip.clone(),
                    pod_cidr: cfg.pod_cidr.clone(),
                },
                stop_rx.clone(),
            )?);
            tasks.extend(
                crate::agent::start(
                    client,
                    runtime,
                    cfg,
                    crate::agent::Endpoint {
                        ca_pem: &server.ca_cert_pem,
                        kubelet_port,
                        server: &format!("https://127.0.0.1:{}", server.port),
                        cert_dir: &agent_dir,
                    },
                    stop,
                )
                .await?,
            );
        }
        crate::agent::wait_for_signal().await?;
        tracing::info!("stopping: signal received");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        server.shutdown().await;
        tracing::info!("stopped");
        Ok::<i32, anyhow::Error>(0)
    })
}

/// Campaigns for Lease `kube-system/<name>` and runs `component` while holding it.
fn elect<F, Fut>(
    client: &kube::Client,
    name: &str,
    identity: &str,
    stop: &tokio::sync::watch::Receiver<bool>,
    component: F,
) -> [tokio::task::JoinHandle<()>; 2]
where
    F: Fn(tokio::sync::watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use skiff_controllers::leader::{while_leading, Elector, KubeLease, Timing};
    let (leading_tx, leading_rx) = tokio::sync::watch::channel(false);
    let elector = Elector::new(
        KubeLease::new(client.clone(), "kube-system", name),
        "kube-system",
        name,
        identity,
        Timing::default(),
    );
    [
        tokio::spawn(elector.run(leading_tx, stop.clone())),
        tokio::spawn(while_leading(leading_rx, stop.clone(), component)),
    ]
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
    network: &skiff_meta::netconf::ClusterNetwork,
) -> Result<(
    skiff_agent::kubelet::AgentConfig,
    skiff_agent::cri::SharedRuntime,
)> {
    let engine = engine.ok_or_else(|| anyhow!("the node agent needs the engine root"))?;
    let node_ip = f.node_ip.clone().unwrap_or_else(|| {
        f.advertise_address
            .map(|a| a.to_string())
            .or_else(|| (!f.bind_address.is_unspecified()).then(|| f.bind_address.to_string()))
            .unwrap_or_else(|| "127.0.0.1".into())
    });
    // The server's own node takes the first /24 of the cluster CIDR (joining nodes get
    // theirs from the control plane's allocator).
    let (net, _) = skiff_engine::network::parse_cidr(&f.cluster_cidr)?;
    let (mut cfg, runtime) = crate::agent::config(
        engine,
        f.node_name.clone(),
        node_ip,
        f.kubelet_port,
        crate::agent::PodNet {
            bridge: &f.pod_bridge,
            cidr: &format!("{net}/24"),
            network,
            flags: &f.net,
        },
    )?;
    cfg.control_plane = true;
    f.node.apply(&mut cfg)?;
    Ok((cfg, runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_takes_k3s_component_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let d = Disabled::parse(&names(&["servicelb", "traefik", ""])).unwrap();
        assert!(d.servicelb && !d.coredns);
        assert!(Disabled::parse(&names(&["coredns"])).unwrap().coredns);
        let e = Disabled::parse(&names(&["local-storage"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--disable local-storage: unknown component"),
            "{e}"
        );
    }
}
