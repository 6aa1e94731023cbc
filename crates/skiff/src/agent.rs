//! `skiff agent`: a node agent alone, joining a server by its token (k3s's `agent`
//! flags), and what `skiff server`'s in-process agent shares with it: the node's
//! settings, and starting the agent's loops and streaming endpoint.

use anyhow::{anyhow, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct AgentFlags {
    /// The server to join: `https://HOST:PORT`.
    #[arg(
        long,
        short = 's',
        env = "SKIFF_URL",
        required_unless_present = "cleanup"
    )]
    pub server: Option<String>,
    /// The join token `skiff server` prints (`K10<CA hash>::server:<secret>`).
    #[arg(
        long,
        short = 't',
        env = "SKIFF_TOKEN",
        required_unless_present = "cleanup"
    )]
    pub token: Option<String>,
    /// Directory of the agent's state (its certificates and kubeconfig).
    #[arg(long = "data-dir", short = 'd', default_value = "/var/lib/skiff/agent")]
    pub data_dir: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long = "node-name")]
    pub node_name: Option<String>,
    /// This node's address, where the server reaches its agent (default 127.0.0.1).
    #[arg(long = "node-ip", default_value = "127.0.0.1")]
    pub node_ip: String,
    /// Port of this node's streaming endpoint on the node address; 0 picks one.
    #[arg(long = "kubelet-port", default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The bridge pods attach to on this node.
    #[arg(long = "pod-bridge", default_value = "skiffpods0")]
    pub pod_bridge: String,
    /// Stop this node's pods and remove every rule, route, device and bridge the node
    /// made (as `k3s-killall.sh`), then exit; the API is not needed.
    #[arg(long)]
    pub cleanup: bool,
    /// Local port of the agent's load balancer over the cluster's servers (k3s's
    /// flag); 0 picks a free one.
    #[arg(long = "lb-server-port", default_value_t = 6444)]
    pub lb_server_port: u16,
    /// Run this many simulated nodes instead of a real one (kubemark's hollow nodes):
    /// each joins, registers and renews its Node, and reports its pods Running, but
    /// nothing runs on this host. They are named `<--node-name>-<i>` (default
    /// `hollow-node-<i>`) and labelled `node.skiff.io/hollow=true`.
    #[arg(long, value_name = "N")]
    pub hollow: Option<u32>,
    /// How long a hollow node's container takes from its start to Running and Ready.
    #[arg(long = "hollow-start-delay", default_value = "1s", requires = "hollow",
          value_parser = skiff_meta::time::parse_duration)]
    pub hollow_start_delay: std::time::Duration,
    #[command(flatten)]
    pub node: NodeFlags,
    #[command(flatten)]
    pub net: NetFlags,
    #[command(flatten)]
    pub log: crate::logging::LogFlags,
}

/// The node agent's tunables (`skiff server` and `skiff agent`), with the kubelet's
/// defaults.
#[derive(Args, Clone)]
pub struct NodeFlags {
    /// The first delay before restarting a container that failed again.
    #[arg(long = "initial-container-restart-period", default_value = "10s",
          value_parser = skiff_meta::time::parse_duration)]
    pub initial_restart: std::time::Duration,
    /// The longest delay between restarts (Kubernetes' maxContainerRestartPeriod).
    #[arg(long = "max-container-restart-period", default_value = "300s",
          value_parser = skiff_meta::time::parse_duration)]
    pub max_restart: std::time::Duration,
    /// How often the node agent's housekeeping runs (node pressure and eviction, image
    /// garbage collection, directories of deleted volumes).
    #[arg(long = "housekeeping-interval", default_value = "10s",
          value_parser = skiff_meta::time::parse_duration)]
    pub housekeeping_interval: std::time::Duration,
    /// How often the node agent brings running pods' configMap, secret, downwardAPI and
    /// projected volumes up to date (the kubelet's --sync-frequency).
    #[arg(long = "sync-frequency", default_value = "1m",
          value_parser = skiff_meta::time::parse_duration)]
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
    /// Image garbage collection starts when the image filesystem is this full (%).
    #[arg(long = "image-gc-high-threshold", default_value_t = 85)]
    pub image_gc_high_threshold: u64,
    /// … and removes unused images until it is below this (%).
    #[arg(long = "image-gc-low-threshold", default_value_t = 80)]
    pub image_gc_low_threshold: u64,
    /// An unused image is removed only once this node has known it this long.
    #[arg(long = "minimum-image-ttl-duration", default_value = "2m",
          value_parser = skiff_meta::time::parse_duration)]
    pub minimum_image_ttl_duration: std::time::Duration,
    /// The cgroup this node's pods run under, as the kubelet's `--cgroup-root`: pods
    /// get `<cgroup-root>/kubepods/pod<uid>`. Relative to the agent's own cgroup
    /// unless it starts with `/`. Default `skiff-<node name>`, so several agents on
    /// one host never share a parent.
    #[arg(long = "cgroup-root")]
    pub cgroup_root: Option<String>,
    /// The resolver configuration pods with dnsPolicy Default are given, and whose
    /// search domains ClusterFirst pods get too (the kubelet's `--resolv-conf`; empty:
    /// none).
    #[arg(long = "resolv-conf", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Pull one image at a time (the kubelet's default); `--serialize-image-pulls=false`
    /// lets pulls run side by side, up to --max-parallel-image-pulls.
    #[arg(long = "serialize-image-pulls", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub serialize_image_pulls: bool,
    /// At most this many pulls at once when not serialized (default: no limit).
    #[arg(long = "max-parallel-image-pulls")]
    pub max_parallel_image_pulls: Option<u32>,
    /// The back-off of pods that could not start, image pulls included: the first
    /// delay and the longest (for tests; the kubelet's are 10s,300s).
    #[arg(long = "image-pull-backoff", hide = true, default_value = "10s,300s",
          value_parser = parse_backoff)]
    pub start_backoff: (std::time::Duration, std::time::Duration),
}

/// `FIRST,MAX` as Go durations.
fn parse_backoff(s: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected FIRST,MAX (e.g. 10s,300s)"))?;
    let d = |x: &str| skiff_meta::time::parse_duration(x.trim()).map_err(|e| e.to_string());
    let (a, b) = (d(a)?, d(b)?);
    if a.is_zero() {
        return Err(format!("{s:?}: the first delay must be positive"));
    }
    Ok((a, b.max(a)))
}

/// The node's host-wide network names and choices (server and agent alike): a second
/// cluster in the same network namespace must set its own.
#[derive(Args, Clone, Debug)]
pub struct NetFlags {
    /// The interface pod traffic to other nodes leaves by (default: the one holding
    /// --node-ip).
    #[arg(long = "flannel-iface")]
    pub flannel_iface: Option<String>,
    /// The VXLAN device of the vxlan backend.
    #[arg(long = "vxlan-device", default_value = "flannel.1")]
    pub vxlan_device: String,
    /// The UDP port of the vxlan backend (every node of a cluster uses the same).
    #[arg(long = "vxlan-port", default_value_t = 8472)]
    pub vxlan_port: u16,
    /// The nftables table (family ip) the node programs the cluster's Services in.
    #[arg(long = "nftables-table", default_value = skiff_network::DEFAULT_TABLE)]
    pub nftables_table: String,
    /// Program no Services on this node (k3s's flag: another proxy does it).
    #[arg(long = "disable-kube-proxy")]
    pub disable_kube_proxy: bool,
    /// Where this node answers the cluster's DNS (default: its pod bridge's address,
    /// the first of its pod CIDR); the kube-dns Service sends each node's queries here.
    #[arg(long = "dns-listen-address")]
    pub dns_listen_address: Option<std::net::Ipv4Addr>,
}

/// A quantity of bytes (`10Mi`, `100M`, `1024`).
pub fn parse_bytes(s: &str) -> Result<u64, skiff_meta::quantity::QuantityError> {
    skiff_meta::quantity::parse_milli(s).map(|m| u64::try_from(m / 1000).unwrap_or(0))
}

impl NodeFlags {
    /// Sets these tunables in an agent's settings.
    pub fn apply(&self, cfg: &mut skiff_agent::kubelet::AgentConfig) -> Result<()> {
        cfg.node.restarts = (
            self.initial_restart,
            self.max_restart.max(self.initial_restart),
        );
        cfg.node.container_log_max_size = self.container_log_max_size;
        cfg.node.container_log_max_files = self.container_log_max_files;
        cfg.housekeeping_period = self.housekeeping_interval;
        cfg.volume_resync_period = self.sync_frequency;
        cfg.eviction_hard =
            skiff_agent::pressure::parse(&self.eviction_hard).map_err(|e| anyhow!(e))?;
        if self.image_gc_low_threshold > self.image_gc_high_threshold
            || self.image_gc_high_threshold > 100
        {
            return Err(anyhow!(
                "--image-gc-low-threshold ({}) must not exceed --image-gc-high-threshold ({}), which must be at most 100",
                self.image_gc_low_threshold,
                self.image_gc_high_threshold
            ));
        }
        cfg.image_pulls = skiff_agent::pull::PullLimits::new(
            self.serialize_image_pulls,
            self.max_parallel_image_pulls,
        )
        .map_err(|e| anyhow!(e))?;
        cfg.start_backoff = self.start_backoff;
        cfg.image_gc = skiff_agent::imagegc::Thresholds {
            high_percent: self.image_gc_high_threshold,
            low_percent: self.image_gc_low_threshold,
            min_age: self.minimum_image_ttl_duration,
        };
        if let Some(root) = &self.cgroup_root {
            if root.is_empty() || root.split('/').any(|p| p == "..") {
                return Err(anyhow!("--cgroup-root {root:?}: not a cgroup path"));
            }
            cfg.node.pods_cgroup = skiff_agent::pod::pods_cgroup(root);
        }
        // Read once now, so a missing or broken file stops the agent at start rather
        // than every pod later (it is read again at each pod start, as the kubelet does).
        cfg.node.resolv_conf = if self.resolv_conf.as_os_str().is_empty() {
            None
        } else {
            Some(self.resolv_conf.clone())
        };
        let host = skiff_agent::dnsconfig::read_resolv_conf(cfg.node.resolv_conf.as_deref())
            .map_err(|e| anyhow!(e))?;
        if let Some(h) = &host {
            let loopback: Vec<&String> = h
                .servers
                .iter()
                .filter(|s| {
                    s.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
                })
                .collect();
            if !loopback.is_empty() {
                tracing::warn!(
                    file = %self.resolv_conf.display(),
                    nameservers = ?loopback,
                    "--resolv-conf names loopback nameservers, which pods (in their own network namespace) cannot reach; point --resolv-conf at a file with the real upstream resolvers"
                );
            }
        }
        Ok(())
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

pub(crate) fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "skiff".into())
        .to_ascii_lowercase()
}

/// Where a node's pods live: their bridge and address range, in the cluster's
/// network.
pub struct PodNet<'a> {
    pub bridge: &'a str,
    pub cidr: &'a str,
    pub network: &'a skiff_meta::netconf::ClusterNetwork,
    pub flags: &'a NetFlags,
}

/// The agent's settings for a node whose pods live in `pod.cidr` on `pod.bridge`,
/// and the runtime it runs them on: `engine` behind the CRI-shaped interface.
pub fn config(
    engine: skiff_engine::Engine,
    node_name: Option<String>,
    node_ip: String,
    kubelet_port: u16,
    pod: PodNet<'_>,
) -> Result<(
    skiff_agent::kubelet::AgentConfig,
    skiff_agent::cri::SharedRuntime,
)> {
    let PodNet {
        bridge: pod_bridge,
        cidr: pod_cidr,
        network,
        flags: net,
    } = pod;
    let mut bridge = skiff_engine::network::BridgeConfig::with(
        Some(pod_bridge),
        Some(pod_cidr),
        Some(&format!("{}_pods", engine.bridge.table)),
    )?;
    // Pods reach pods on other nodes by their own address: only traffic leaving the
    // cluster's pod range is masqueraded.
    bridge.no_masquerade_to = Some(network.cluster_cidr.to_string());
    let node_name = node_name.unwrap_or_else(host_name);
    let cfg = agent_config(
        node_name,
        node_ip,
        kubelet_port,
        pod_cidr,
        network,
        &engine.root,
    )?;
    prepare_pod_network(&mut bridge, network, &cfg.node.node_ip, net)?;
    let registry = crate::commands::images::registry_options(None)?;
    let runtime =
        skiff_agent::cri::EngineRuntime::new(std::sync::Arc::new(engine), bridge, registry);
    Ok((cfg, std::sync::Arc::new(runtime)))
}

/// The agent's settings with the kubelet's defaults, for node `node_name` whose pods
/// take addresses of `pod_cidr` and whose pods' and local volumes' directories are
/// under `root`.
pub fn agent_config(
    node_name: String,
    node_ip: String,
    kubelet_port: u16,
    pod_cidr: &str,
    network: &skiff_meta::netconf::ClusterNetwork,
    root: &std::path::Path,
) -> Result<skiff_agent::kubelet::AgentConfig> {
    Ok(skiff_agent::kubelet::AgentConfig {
        node: skiff_agent::pod::NodeSettings {
            node_ip,
            pods_cgroup: skiff_agent::pod::pods_cgroup(&skiff_agent::pod::default_cgroup_root(
                &node_name,
            )),
            node_name,
            cluster_domain: network.cluster_domain.clone(),
            // Without a cluster DNS, ClusterFirst pods get the node's resolvers.
            cluster_dns: if network.dns {
                vec![std::net::IpAddr::V4(network.cluster_dns)]
            } else {
                Vec::new()
            },
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            pods_dir: root.join("pods"),
            restarts: skiff_agent::pod::DEFAULT_RESTARTS,
            storage_dir: root.join("storage"),
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
        },
        pod_cidr: pod_cidr.to_string(),
        lease_duration: std::time::Duration::from_secs(40),
        sync_period: std::time::Duration::from_millis(100),
        kubelet_port,
        control_plane: false,
        housekeeping_period: std::time::Duration::from_secs(10),
        volume_resync_period: std::time::Duration::from_secs(60),
        eviction_hard: skiff_agent::pressure::parse(skiff_agent::pressure::DEFAULT_EVICTION_HARD)
            .map_err(|e| anyhow!(e))?,
        image_gc: Default::default(),
        image_pulls: Default::default(),
        start_backoff: skiff_agent::kubelet::DEFAULT_START_BACKOFF,
    })
}

/// Sets the pod bridge's MTU for the cluster's backend (VXLAN takes 50 bytes of the
/// uplink's) and brings its rules up to date, before any pod starts.
pub fn prepare_pod_network(
    runtime_bridge: &mut skiff_engine::network::BridgeConfig,
    network: &skiff_meta::netconf::ClusterNetwork,
    node_ip: &str,
    flags: &NetFlags,
) -> Result<()> {
    let backend: skiff_network::routes::Backend = network.flannel_backend.parse()?;
    let ip: std::net::Ipv4Addr = node_ip
        .parse()
        .map_err(|_| anyhow!("--node-ip {node_ip:?}: not an IPv4 address"))?;
    runtime_bridge.mtu =
        skiff_network::routes::pod_mtu_for(backend, ip, flags.flannel_iface.clone())?;
    // The bridge exists before any pod: the node's DNS answers on its address. (On a
    // thread of its own: the engine's netlink calls run their own runtime, and a
    // joining agent gets here inside one.)
    let bridge = runtime_bridge.clone();
    let made: Result<(), skiff_engine::EngineError> = std::thread::scope(|s| {
        s.spawn(|| {
            skiff_engine::network::ensure_bridge(&bridge)?;
            skiff_engine::network::refresh_rules(&bridge)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(skiff_engine::EngineError::Invalid(
                "setting up the pod bridge panicked".into(),
            ))
        })
    });
    made?;
    Ok(())
}

/// This node's part of the cluster network.
pub struct NodeNetwork {
    pub network: skiff_meta::netconf::ClusterNetwork,
    /// The node's upstream resolvers (`--resolv-conf`).
    pub resolv_conf: Option<PathBuf>,
    pub flags: NetFlags,
    pub node_name: String,
    pub node_ip: String,
    pub pod_cidr: String,
}

/// Starts the node's network work: the Services' rules (kube-proxy's job) and routes
/// to the other nodes' pods (flannel's). The tasks end at `stop`, leaving what they
/// programmed in place (`--cleanup` removes it).
pub fn start_network(
    client: kube::Client,
    n: NodeNetwork,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    use skiff_network::routes;
    let backend: routes::Backend = n.network.flannel_backend.parse()?;
    let node_ip: std::net::Ipv4Addr = n
        .node_ip
        .parse()
        .map_err(|_| anyhow!("--node-ip {:?}: not an IPv4 address", n.node_ip))?;
    let pod_cidr = skiff_meta::netconf::parse_cidr("pod-cidr", &n.pod_cidr)?;
    // A loopback address cannot carry pod traffic between nodes: no routes, no
    // VXLAN device (a lone node needs neither).
    let backend = if node_ip.is_loopback() && backend != routes::Backend::None {
        tracing::warn!(
            node_ip = %node_ip,
            "the node's address is a loopback address: no routes to other nodes' pods (set --node-ip)"
        );
        routes::Backend::None
    } else {
        backend
    };
    let mut rs = routes::RouteSettings::new(backend, &n.node_name, node_ip, pod_cidr);
    rs.iface = n.flags.flannel_iface.clone();
    rs.vxlan_device = n.flags.vxlan_device.clone();
    rs.vxlan_port = n.flags.vxlan_port;
    let mut tasks = Vec::new();
    if n.flags.disable_kube_proxy {
        tracing::info!("--disable-kube-proxy: this node programs no Services");
    } else {
        let mut ps = skiff_network::ProxySettings::new(&n.node_name, node_ip, &n.network);
        ps.table = n.flags.nftables_table.clone();
        let (client, stop) = (client.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = skiff_network::run(client, ps, stop).await {
                tracing::error!(error = %e, "the service proxy stopped");
            }
        }));
    }
    if n.network.dns {
        let listen = match n.flags.dns_listen_address {
            Some(a) => a,
            None => skiff_meta::netconf::nth(pod_cidr, 1),
        };
        // Upstreams from --resolv-conf, never the cluster DNS itself.
        let upstreams: Vec<std::net::SocketAddr> = match &n.resolv_conf {
            Some(p) => skiff_dns::ResolvConf::read(p)
                .map_err(|e| anyhow!("--resolv-conf {}: {e}", p.display()))?
                .upstreams()
                .into_iter()
                .filter(|a| a.ip() != std::net::IpAddr::V4(n.network.cluster_dns))
                .collect(),
            None => Vec::new(),
        };
        if upstreams.is_empty() {
            tracing::warn!(
                "no upstream resolvers (--resolv-conf): names outside the cluster get SERVFAIL"
            );
        }
        let zone = skiff_network::clusterdns::ZoneHandle::default();
        let (client, stop, domain) = (
            client.clone(),
            stop.clone(),
            n.network.cluster_domain.clone(),
        );
        tasks.push(tokio::spawn(async move {
            skiff_network::clusterdns::keep(client, domain, zone.clone(), stop.clone()).await;
            let addr = std::net::SocketAddr::from((listen, 53));
            if let Err(e) = skiff_network::clusterdns::serve(zone, addr, upstreams, stop).await {
                tracing::error!(error = %e, address = %addr, "the node's cluster DNS could not start");
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        if let Err(e) = routes::run(client, rs, stop).await {
            tracing::error!(error = %e, "pod routes to the other nodes stopped");
        }
    }));
    Ok(tasks)
}

/// Where a node agent's streaming endpoint listens and how it gets its certificate.
pub struct Endpoint<'a> {
    /// The cluster CA (PEM): client certificates are checked against it.
    pub ca_pem: &'a str,
    /// The streaming port (0: a free one).
    pub kubelet_port: u16,
    /// The API server, for messages.
    pub server: &'a str,
    /// Where the serving certificate is kept.
    pub cert_dir: &'a std::path::Path,
}

/// Starts the agent: its streaming endpoint on `node_ip:kubelet_port` (clients
/// verified against `ca_pem`) and its pod loop. The tasks end when `stop()`'s
/// futures complete.
pub async fn start<F, Fut>(
    client: kube::Client,
    runtime: skiff_agent::cri::SharedRuntime,
    mut cfg: skiff_agent::kubelet::AgentConfig,
    endpoint: Endpoint<'_>,
    stop: F,
) -> Result<Vec<tokio::task::JoinHandle<()>>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Endpoint {
        ca_pem,
        kubelet_port,
        server,
        cert_dir,
    } = endpoint;
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
    // The streaming endpoint serves with a certificate of the cluster CA, asked for
    // through a kubelet-serving CertificateSigningRequest.
    let (serving_cert_pem, serving_key_pem) = skiff_agent::join::serving_certificate(
        &client,
        server,
        ca_pem,
        &cfg.node.node_name,
        &cfg.node.node_ip,
        cert_dir,
    )
    .await?;
    let streaming = std::sync::Arc::new(skiff_agent::streaming::Config {
        runtime: runtime.clone(),
        pods_dir: cfg.node.pods_dir.clone(),
        client_ca_pem: ca_pem.to_string(),
        serving_cert_pem,
        serving_key_pem,
    });
    let mut tasks = vec![tokio::spawn(skiff_agent::streaming::serve(
        listener,
        streaming,
        stop(),
    ))];
    let done = stop();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = skiff_agent::kubelet::run(client, runtime, cfg, done).await {
            eprintln!("skiff: node agent: {e}");
        }
    }));
    Ok(tasks)
}

/// `--cleanup`: stops every pod this node's agent left on `engine` (without grace),
/// and removes the Services' table, skiff's pod routes and VXLAN device, and the pod
/// bridge with its rules. Prints what it removed; exit 0.
pub fn cleanup(
    engine: skiff_engine::Engine,
    node_name: Option<String>,
    pod_bridge: &str,
    cgroup_root: Option<&str>,
    net: &NetFlags,
) -> Result<i32> {
    let node_name = node_name.unwrap_or_else(host_name);
    let bridge = skiff_engine::network::BridgeConfig::with(
        Some(pod_bridge),
        None,
        Some(&format!("{}_pods", engine.bridge.table)),
    )?;
    let pods_cgroup = skiff_agent::pod::pods_cgroup(
        cgroup_root.unwrap_or(&skiff_agent::pod::default_cgroup_root(&node_name)),
    );
    let node = skiff_agent::pod::NodeSettings {
        node_ip: String::new(),
        pods_cgroup,
        node_name: node_name.clone(),
        cluster_domain: String::new(),
        cluster_dns: Vec::new(),
        resolv_conf: None,
        pods_dir: engine.root.join("pods"),
        restarts: skiff_agent::pod::DEFAULT_RESTARTS,
        storage_dir: engine.root.join("storage"),
        container_log_max_size: 0,
        container_log_max_files: 0,
    };
    let runtime = skiff_agent::cri::EngineRuntime::new(
        std::sync::Arc::new(engine),
        bridge.clone(),
        Default::default(),
    );
    let (pods, errors) = skiff_agent::cleanup::stop_all_pods(&runtime, &node);
    println!("stopped {pods} pod(s) of node {node_name}");
    for e in &errors {
        eprintln!("skiff: cleanup: {e}");
    }
    if skiff_network::cleanup(&net.nftables_table)? {
        println!("removed nftables table {}", net.nftables_table);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting a runtime: {e}"))?;
    rt.block_on(async {
        let h = skiff_network::routes::handle()?;
        skiff_network::routes::cleanup(&h, &net.vxlan_device).await
    })?;
    drop(rt);
    println!("removed skiff's pod routes and {}", net.vxlan_device);
    skiff_engine::network::teardown(&bridge)?;
    println!(
        "removed pod bridge {} and table {}",
        bridge.bridge, bridge.table
    );
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// `skiff agent`: join, wait for this node's pod CIDR, run until a signal.
pub fn run(f: AgentFlags, engine: skiff_engine::Engine) -> Result<i32> {
    if f.cleanup {
        return cleanup(
            engine,
            f.node_name.clone(),
            &f.pod_bridge,
            f.node.cgroup_root.as_deref(),
            &f.net,
        );
    }
    crate::logging::init_daemon(&f.log)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting the agent runtime: {e}"))?;
    rt.block_on(async move {
        let node = f.node_name.clone().unwrap_or_else(host_name);
        let (Some(given), Some(token)) = (f.server.clone(), f.token.clone()) else {
            return Err(anyhow!("--server and --token are required to join"));
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Every API connection goes through the local load balancer, which follows the
        // cluster's servers.
        std::fs::create_dir_all(&f.data_dir)
            .map_err(|e| anyhow!("creating {}: {e}", f.data_dir.display()))?;
        let lb = skiff_agent::lb::LoadBalancer::start(
            std::net::SocketAddr::from(([127, 0, 0, 1], f.lb_server_port)),
            &given,
            Some(f.data_dir.join("lb-servers.json")),
            stop_rx.clone(),
        )
        .await
        .map_err(|e| anyhow!(e))?;
        let server = lb.url();
        let (id, client) = skiff_agent::join::join(&server, &token, &node, &f.data_dir).await?;
        let mut lb_task = Some(tokio::spawn(skiff_agent::lb::follow_endpoints(
            lb,
            client.clone(),
            stop_rx.clone(),
        )));
        let network = skiff_agent::join::cluster_network(&client, &server).await?;
        let pod_cidr = skiff_agent::kubelet::node::await_pod_cidr(&client, &node).await?;
        let (mut cfg, runtime) = config(
            engine,
            Some(node.clone()),
            f.node_ip.clone(),
            f.kubelet_port,
            PodNet {
                bridge: &f.pod_bridge,
                cidr: &pod_cidr,
                network: &network,
                flags: &f.net,
            },
        )?;
        f.node.apply(&mut cfg)?;
        eprintln!(
            "skiff agent: node {node} joined {} (pods in {pod_cidr}); kubeconfig {}",
            given,
            id.kubeconfig.display()
        );
        let stop = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let endpoint = Endpoint {
            ca_pem: &id.ca_pem,
            kubelet_port: f.kubelet_port,
            server: &given,
            cert_dir: &f.data_dir,
        };
        let node_net = NodeNetwork {
            network: network.clone(),
            resolv_conf: cfg.node.resolv_conf.clone(),
            flags: f.net.clone(),
            node_name: cfg.node.node_name.clone(),
            node_ip: cfg.node.node_ip.clone(),
            pod_cidr: pod_cidr.clone(),
        };
        let mut tasks = start_network(client.clone(), node_net, stop_rx.clone())?;
        tasks.extend(lb_task.take());
        tasks.extend(start(client, runtime, cfg, endpoint, stop).await?);
        wait_for_signal().await?;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        Ok::<i32, anyhow::Error>(0)
    })
}
