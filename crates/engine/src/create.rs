//! `create`: turn docker-style options and an image into a container on disk (its
//! record, its runtime spec, its root filesystem directories), without starting it.

use crate::network::PortBinding;
use crate::persist::{write_json, Lock};
use crate::state::{HostConfig, MountPoint, Record, RestartPolicy, State};
use crate::{names, volumes, Container, Engine, EngineError, Result};
use skiff_runtime::cgroups::Resources;
use skiff_runtime::spec::{
    self, ContainerSpec, Mount, MountKind, NsMode, Process, Propagation, Rlimit, Rootfs,
};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Options of `skiff create` / `skiff run`, named after docker's flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    /// Arguments after the image (replace the image's CMD).
    pub args: Vec<String>,
    /// `--entrypoint`: Some("") clears the image's entrypoint.
    pub entrypoint: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub volumes: Vec<String>,
    pub publish: Vec<String>,
    pub network: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    pub links: Vec<String>,
    pub limits: Limits,
    pub restart: Option<String>,
    pub auto_remove: bool,
    pub tty: bool,
    pub interactive: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub tmpfs: Vec<String>,
    pub ulimits: Vec<String>,
    pub add_hosts: Vec<String>,
    pub labels: Vec<String>,
    pub init: bool,
    pub volumes_from: Vec<String>,
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    pub cgroup_parent: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub oom_score_adj: Option<i32>,
    /// The terminal's first size (columns, rows), with `tty`.
    pub console_size: Option<(u16, u16)>,
    pub group_add: Vec<String>,
    pub extra_labels: BTreeMap<String, String>,
    pub network_aliases: Vec<String>,
    /// Files bind-mounted at these container paths instead of the init layer's
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` (the node agent's managed
    /// files): destination → host path.
    pub managed_files: BTreeMap<String, String>,
    /// Restart as the kubelet does (see `state::PodRuns`).
    pub pod_runs: Option<crate::state::PodRuns>,
    /// Rotate the log at this size (0: never; see `HostConfig::log_max_size`).
    pub log_max_size: u64,
    /// Log files kept, the current one included (see `HostConfig::log_max_files`).
    pub log_max_files: u32,
}

/// The resource limits `run` and `update` share, as docker's flags give them; what is
/// `None` is left as it was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
}

impl Limits {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Sets what is given in `res` (and `nano_cpus`, docker's `--cpus`), with docker's
    /// checks: at least 6 MB of memory, a swap limit above the memory limit, `--cpus`
    /// not with a CPU period or quota.
    pub fn apply_to(&self, res: &mut Resources, nano_cpus: &mut i64) -> Result<()> {
        if let Some(m) = &self.memory {
            let m = parse_size(m)?;
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(EngineError::Invalid(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
            res.memory = Some(m);
        }
        if let Some(s) = &self.memory_swap {
            res.memory_swap = Some(if s == "-1" { -1 } else { parse_size(s)? });
        }
        if let (Some(m), Some(s), Some(_)) = (res.memory, res.memory_swap, &self.memory_swap) {
            if m > 0 && s > 0 && s < m {
                return Err(EngineError::Invalid(
                    "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
                ));
            }
        }
        if let Some(c) = &self.cpus {
            let v: f64 = c.parse().map_err(|_| {
                EngineError::Invalid(format!("invalid argument \"{c}\" for \"--cpus\" flag"))
            })?;
            if v < 0.0 {
                return Err(EngineError::Invalid(format!(
                    "invalid argument \"{c}\" for \"--cpus\" flag"
                )));
            }
            if self.cpu_quota.is_some() || self.cpu_period.is_some() {
                return Err(EngineError::Invalid(
                    "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
                ));
            }
            *nano_cpus = (v * 1e9) as i64;
            res.cpu_period = Some(100_000);
            res.cpu_quota = Some((v * 100_000.0) as i64);
        } else if (self.cpu_quota.is_some() || self.cpu_period.is_some()) && *nano_cpus > 0 {
            return Err(EngineError::Invalid(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                    .into(),
            ));
        }
        if let Some(p) = self.cpu_period {
            res.cpu_period = Some(p);
        }
        if let Some(q) = self.cpu_quota {
            res.cpu_quota = Some(q);
        }
        if self.cpu_shares.is_some() {
            res.cpu_shares = self.cpu_shares;
        }
        if self.pids_limit.is_some() {
            res.pids_limit = self.pids_limit;
        }
        if self.cpuset_cpus.is_some() {
            res.cpuset_cpus = self.cpuset_cpus.clone();
        }
        if self.cpuset_mems.is_some() {
            res.cpuset_mems = self.cpuset_mems.clone();
        }
        Ok(())
    }
}

/// Parse a docker size (`512m`, `1g`, `100k`, `1024`, `2GB`) to bytes.
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| EngineError::Invalid(format!("invalid size: '{s}'")))?;
    if v < 0.0 {
        return Err(EngineError::Invalid(format!("invalid size: '{s}'")));
    }
    Ok((v * mult as f64) as i64)
}

pub(crate) fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let max = match count {
        Some(c) => c.parse().map_err(|_| {
            EngineError::Invalid(format!(
                "invalid restart policy format: maximum retry count must be an integer: {s}"
            ))
        })?,
        None => 0,
    };
    match name {
        "no" | "" if count.is_none() => Ok(RestartPolicy::default()),
        "always" | "unless-stopped" if count.is_none() => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: 0,
        }),
        "on-failure" => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        }),
        _ => Err(EngineError::Invalid(format!(
            "invalid restart policy format: {s}"
        ))),
    }
}

/// Parse `-p [ip:][hostPort:]containerPort[/proto]`. A missing host port is 0
/// (chosen at start).
pub fn parse_publish(s: &str) -> Result<PortBinding> {
    let bad = || EngineError::Invalid(format!("invalid published port: {s}"));
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) if p == "tcp" || p == "udp" => (a, p.to_string()),
        Some(_) => return Err(bad()),
        None => (s, "tcp".to_string()),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let port = |p: &str| -> Result<u16> { p.parse::<u16>().map_err(|_| bad()) };
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", 0, port(c)?),
        [h, c] => ("", if h.is_empty() { 0 } else { port(h)? }, port(c)?),
        [ip, h, c] => (*ip, if h.is_empty() { 0 } else { port(h)? }, port(c)?),
        _ => return Err(bad()),
    };
    if ctr == 0 {
        return Err(bad());
    }
    Ok(PortBinding {
        host_ip: ip.to_string(),
        host_port: host,
        container_port: ctr,
        proto,
    })
}

fn parse_ulimit(s: &str) -> Result<Rlimit> {
    let bad = || EngineError::Invalid(format!("invalid ulimit argument: {s}"));
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    let parse = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad())
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(vals)?, parse(vals)?),
    };
    Ok(Rlimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// Combine ENTRYPOINT and CMD exactly as docker does.
pub fn command_line(
    image_entrypoint: &Option<Vec<String>>,
    image_cmd: &Option<Vec<String>>,
    entrypoint_flag: &Option<String>,
    args: &[String],
) -> Vec<String> {
    let entrypoint: Vec<String> = match entrypoint_flag {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image_entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.is_empty() {
        args.to_vec()
    } else if entrypoint_flag.is_some() {
        // An overridden entrypoint drops the image's CMD.
        Vec::new()
    } else {
        image_cmd.clone().unwrap_or_default()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

fn merge_env(base: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    base.retain(|e| e.split('=').next() != Some(key));
    base.push(kv.to_string());
}

impl Engine {
    /// Create a container from `opts`. Returns it in state `created`.
    pub fn create(&self, opts: &CreateOptions) -> Result<Container> {
        let image = self.images.resolve(&opts.image)?;
        let icfg = &image.config.config;

        let restart = match &opts.restart {
            Some(r) => parse_restart(r)?,
            None => RestartPolicy::default(),
        };
        if opts.auto_remove && !restart.name.is_empty() && restart.name != "no" {
            return Err(EngineError::Invalid(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
        if opts.init && !self.init_exe().exists() {
            return Err(EngineError::Invalid(format!(
                "--init: {} not found (skiff installs it there on first use)",
                self.init_exe().display()
            )));
        }
        let argv = command_line(&icfg.entrypoint, &icfg.cmd, &opts.entrypoint, &opts.args);
        if argv.is_empty() {
            return Err(EngineError::Invalid(
                "no command specified: the image has no CMD or ENTRYPOINT and none was given"
                    .into(),
            ));
        }

        let mut env = icfg.env.clone();
        for f in &opts.env_files {
            let text = fs::read_to_string(f)
                .map_err(|e| EngineError::io(format!("reading env file {}", f.display()), e))?;
            for line in text.lines() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                if l.contains('=') {
                    merge_env(&mut env, l);
                } else if let Ok(v) = std::env::var(l) {
                    merge_env(&mut env, &format!("{l}={v}"));
                }
            }
        }
        for e in &opts.env {
            if e.contains('=') {
                merge_env(&mut env, e);
            } else if let Ok(v) = std::env::var(e) {
                merge_env(&mut env, &format!("{e}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }

        let network = opts.network.clone().unwrap_or_else(|| "bridge".into());
        let network = match network.as_str() {
            "default" => "bridge".to_string(),
            n => n.to_string(),
        };
        let mut ports = Vec::new();
        for p in &opts.publish {
            ports.push(parse_publish(p)?);
        }
        if !ports.is_empty() && (network == "none" || network.starts_with("container:")) {
            return Err(EngineError::Invalid(
                "conflicting options: port publishing and the container type network mode".into(),
            ));
        }
        if network != "bridge"
            && network != "none"
            && network != "host"
            && !network.starts_with("container:")
            && !network.starts_with("ns:")
        {
            let n = crate::network::get_network(&self.root, &self.bridge, &network)?;
            if !n.user_defined {
                return Err(EngineError::Invalid(format!("network {network} not found")));
            }
        }
        if !opts.network_aliases.is_empty()
            && matches!(network.as_str(), "bridge" | "none" | "host")
        {
            return Err(EngineError::Invalid(
                "network-scoped aliases are only supported for user-defined networks".into(),
            ));
        }

        let mut res = Resources {
            privileged: opts.privileged,
            ..Default::default()
        };
        let mut nano_cpus = 0;
        opts.limits.apply_to(&mut res, &mut nano_cpus)?;

        let mut ulimits = Vec::new();
        for u in &opts.ulimits {
            ulimits.push(parse_ulimit(u)?);
        }
        let mut labels = icfg.labels.clone();
        for l in &opts.labels {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            labels.insert(k.to_string(), v.to_string());
        }
        labels.extend(opts.extra_labels.clone());
        let mut tmpfs = BTreeMap::new();
        for t in &opts.tmpfs {
            let (p, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
            if !p.starts_with('/') {
                return Err(EngineError::Invalid(format!(
                    "invalid mount path for --tmpfs: {p}"
                )));
            }
            tmpfs.insert(p.to_string(), o.to_string());
        }
        for h in &opts.add_hosts {
            if !h.contains(':') {
                return Err(EngineError::Invalid(format!(
                    "invalid argument \"{h}\" for \"--add-host\" flag: bad format for add-host"
                )));
            }
        }

        let id = names::new_id();
        let containers = self.containers_dir();
        let _global = Lock::exclusive(&containers.join(".lock"))?;
        let name = match &opts.name {
            Some(n) => {
                let n = n.trim_start_matches('/').to_string();
                if !names::valid_name(&n) {
                    return Err(EngineError::Invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = self.find_by_name(&n)? {
                    return Err(EngineError::Conflict(format!(
                        "The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.record.id
                    )));
                }
                n
            }
            None => loop {
                let n = names::random_name();
                if self.find_by_name(&n)?.is_none() {
                    break n;
                }
            },
        };
        for mode in [
            &network,
            opts.pid.as_deref().unwrap_or(""),
            opts.ipc.as_deref().unwrap_or(""),
            opts.uts.as_deref().unwrap_or(""),
        ] {
            if let Some(p) = mode.strip_prefix("ns:") {
                if !Path::new(p).exists() {
                    return Err(EngineError::Invalid(format!(
                        "namespace path {p} does not exist"
                    )));
                }
            }
        }
        // Namespace sharing targets must exist now.
        for (what, mode) in [
            ("network", network.as_str()),
            ("pid", opts.pid.as_deref().unwrap_or("")),
            ("ipc", opts.ipc.as_deref().unwrap_or("")),
        ] {
            if let Some(t) = mode.strip_prefix("container:") {
                self.get(t).map_err(|_| {
                    EngineError::Invalid(format!(
                        "cannot join {what} of a non running container: {t}"
                    ))
                })?;
            }
        }
        for link in &opts.links {
            let target = link.split(':').next().unwrap_or(link);
            self.get(target)?;
        }

        let dir = containers.join(&id);
        let result = (|| -> Result<Container> {
            fs::create_dir_all(dir.join("upper"))
                .map_err(|e| EngineError::io("creating container dir", e))?;
            for d in ["work", "merged", "init/etc"] {
                fs::create_dir_all(dir.join(d))
                    .map_err(|e| EngineError::io("creating container dir", e))?;
            }
            let hostname = match (&opts.hostname, network.as_str()) {
                (Some(h), _) => h.clone(),
                (None, "host") => nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| id[..12].to_string()),
                _ => id[..12].to_string(),
            };

            // Volumes: -v, image VOLUMEs, --volumes-from.
            let mut mounts: Vec<MountPoint> = Vec::new();
            let mut anonymous = Vec::new();
            for v in &opts.volumes {
                let mp = volumes::parse_volume_spec(v)?;
                mounts.push(mp);
            }
            for from in &opts.volumes_from {
                let (cref, mode) = match from.rsplit_once(':') {
                    Some((c, m)) if m == "ro" || m == "rw" => (c, Some(m)),
                    _ => (from.as_str(), None),
                };
                let src = self.get(cref)?;
                for m in &src.record.mounts {
                    if mounts.iter().any(|x| x.destination == m.destination) {
                        continue;
                    }
                    let mut m = m.clone();
                    if let Some(md) = mode {
                        m.rw = md == "rw";
                        m.mode = md.to_string();
                    }
                    mounts.push(m);
                }
            }
            for dest in icfg.volumes.keys() {
                if !mounts.iter().any(|m| &m.destination == dest) && !tmpfs.contains_key(dest) {
                    mounts.push(MountPoint {
                        kind: "volume".into(),
                        name: String::new(),
                        source: String::new(),
                        destination: dest.clone(),
                        mode: String::new(),
                        rw: true,
                        propagation: String::new(),
                    });
                }
            }
            for m in &mut mounts {
                if m.kind == "volume" {
                    if m.name.is_empty() {
                        m.name = names::new_id();
                        anonymous.push(m.name.clone());
                        volumes::create(&self.root, &m.name, BTreeMap::new(), true)?;
                    } else if volumes::inspect(&self.root, &m.name).is_err() {
                        volumes::create(&self.root, &m.name, BTreeMap::new(), false)?;
                    }
                    m.source = volumes::data_dir(&self.root, &m.name)
                        .to_string_lossy()
                        .to_string();
                } else if m.kind == "bind" {
                    let p = Path::new(&m.source);
                    if !p.exists() {
                        fs::create_dir_all(p).map_err(|e| {
                            EngineError::io(format!("creating bind source {}", p.display()), e)
                        })?;
                    }
                }
            }

            let record = Record {
                id: id.clone(),
                name: name.clone(),
                created: crate::persist::now(),
                image: opts.image.clone(),
                image_id: image.id.clone(),
                path: argv[0].clone(),
                args: argv[1..].to_vec(),
                hostname: hostname.clone(),
                domainname: String::new(),
                user: opts.user.clone().unwrap_or_else(|| icfg.user.clone()),
                env: env.clone(),
                cmd: if opts.args.is_empty() {
                    if opts.entrypoint.is_some() {
                        None
                    } else {
                        icfg.cmd.clone()
                    }
                } else {
                    Some(opts.args.clone())
                },
                entrypoint: match &opts.entrypoint {
                    Some(e) if e.is_empty() => None,
                    Some(e) => Some(vec![e.clone()]),
                    None => icfg.entrypoint.clone(),
                },
                working_dir: opts
                    .workdir
                    .clone()
                    .unwrap_or_else(|| icfg.working_dir.clone()),
                labels,
                tty: opts.tty,
                open_stdin: opts.interactive,
                exposed_ports: icfg.exposed_ports.keys().cloned().collect(),
                stop_signal: opts
                    .stop_signal
                    .clone()
                    .or_else(|| {
                        if icfg.stop_signal.is_empty() {
                            None
                        } else {
                            Some(icfg.stop_signal.clone())
                        }
                    })
                    .unwrap_or_else(|| "SIGTERM".into()),
                stop_timeout: opts.stop_timeout,
                mounts,
                host: HostConfig {
                    binds: opts.volumes.clone(),
                    network_mode: network.clone(),
                    restart_policy: restart.clone(),
                    auto_remove: opts.auto_remove,
                    pod_runs: opts.pod_runs,
                    log_max_size: opts.log_max_size,
                    log_max_files: opts.log_max_files,
                    privileged: opts.privileged,
                    cap_add: opts.cap_add.clone(),
                    cap_drop: opts.cap_drop.clone(),
                    readonly_rootfs: opts.read_only,
                    tmpfs: tmpfs.clone(),
                    ulimits,
                    extra_hosts: opts.add_hosts.clone(),
                    init: opts.init,
                    uts_mode: opts.uts.clone().unwrap_or_default(),
                    pid_mode: opts.pid.clone().unwrap_or_default(),
                    ipc_mode: opts.ipc.clone().unwrap_or_else(|| "private".into()),
                    volumes_from: opts.volumes_from.clone(),
                    links: opts.links.clone(),
                    cgroup_parent: opts.cgroup_parent.clone().unwrap_or_default(),
                    devices: opts.devices.clone(),
                    security_opt: opts.security_opt.clone(),
                    resources: res,
                    nano_cpus,
                    oom_score_adj: opts.oom_score_adj,
                    console_size: opts.console_size,
                    group_add: opts.group_add.clone(),
                    managed_files: opts.managed_files.clone(),
                    extra_networks: Vec::new(),
                    primary_detached: false,
                    network_aliases: opts.network_aliases.clone(),
                },
                ports,
                anonymous_volumes: anonymous,
            };
            // Validate what the spec builder checks (capabilities, devices, users)
            // now, so `create` fails rather than `start`.
            self.runtime_spec(&record, &image, false)?;
            write_json(&dir.join("config.json"), &record)?;
            write_json(&dir.join("state.json"), &State::default())?;
            Ok(Container {
                dir: dir.clone(),
                record,
                state: State::default(),
            })
        })();
        match &result {
            Ok(c) => {
                crate::events::container(&self.root, c, "create", &[]);
                tracing::info!(container = %c.record.id, name = %c.record.name, image = %c.record.image, "container created")
            }
            Err(e) => {
                tracing::debug!(error = %e, "creating a container failed");
                let _ = fs::remove_dir_all(&dir);
            }
        }
        result
    }

    /// Build the runtime spec of a container (at start time: namespace targets are
    /// resolved to the pids they have now).
    pub fn runtime_spec(
        &self,
        r: &Record,
        image: &skiff_image::Image,
        resolve_namespaces: bool,
    ) -> Result<ContainerSpec> {
        let dir = self.containers_dir().join(&r.id);
        let layers_base = self.root.join("images").join("layers");
        let mut lower: Vec<PathBuf> = Vec::new();
        let managed = !r.host.managed_files.is_empty();
        if !managed {
            lower.push(dir.join("init"));
        }
        let mut layer_dirs = self.images.layer_dirs(image);
        layer_dirs.reverse();
        for l in layer_dirs {
            match l.strip_prefix(&layers_base) {
                Ok(rel) => lower.push(rel.to_path_buf()),
                Err(_) => lower.push(l),
            }
        }
        if managed && lower.is_empty() {
            // overlayfs needs at least one lower layer.
            fs::create_dir_all(dir.join("init")).map_err(|e| EngineError::io("init dir", e))?;
            lower.push(dir.join("init"));
        }
        let rootfs = Rootfs::Overlay {
            lower,
            lower_base: Some(layers_base),
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("merged"),
        };
        let h = &r.host;
        let caps = if h.privileged {
            vec!["ALL".to_string()]
        } else {
            spec::adjust_capabilities(spec::DEFAULT_CAPABILITIES, &h.cap_add, &h.cap_drop)
                .map_err(EngineError::Invalid)?
        };
        let (no_new_privs, seccomp) = security_options(h)?;
        let mut additional_gids = Vec::new();
        for g in &h.group_add {
            additional_gids.push(g.parse::<u32>().map_err(|_| {
                EngineError::Invalid(format!(
                    "--group-add: only numeric groups are supported: {g}"
                ))
            })?);
        }
        let init: Vec<String> = if h.init {
            vec![INIT_PATH.to_string(), "--".to_string()]
        } else {
            Vec::new()
        };
        let process = Process {
            args: init
                .into_iter()
                .chain(std::iter::once(r.path.clone()))
                .chain(r.args.iter().cloned())
                .collect(),
            env: r.env.clone(),
            cwd: if r.working_dir.is_empty() {
                "/".into()
            } else {
                r.working_dir.clone()
            },
            user: r.user.clone(),
            additional_gids,
            capabilities: caps,
            no_new_privileges: no_new_privs,
            rlimits: h.ulimits.clone(),
            terminal: r.tty,
            oom_score_adj: h.oom_score_adj,
            seccomp,
            console_size: if r.tty { h.console_size } else { None },
        };
        let mut spec = ContainerSpec::new(&r.id, rootfs, process);
        spec.hostname = Some(r.hostname.clone());
        spec.readonly_rootfs = h.readonly_rootfs;
        spec.privileged = h.privileged;
        spec.sys_readonly = !h.privileged;
        let ns_of = |mode: &str, what: &str| -> Result<NsMode> {
            Ok(match mode {
                "" | "private" | "bridge" | "none" | "shareable" => NsMode::New,
                "host" => NsMode::Host,
                m if !m.contains(':') && what == "net" => NsMode::New,
                // A namespace held by any process (the node agent's infra process).
                m if m.starts_with("ns:") => NsMode::Join(PathBuf::from(&m[3..])),
                m => match m.strip_prefix("container:") {
                    Some(t) => {
                        let c = self.get(t)?;
                        if !c.state.status.is_active() || c.state.pid <= 0 {
                            return Err(EngineError::NotRunning(format!(
                                "cannot join {what} namespace of a non running container: {t}"
                            )));
                        }
                        NsMode::Join(PathBuf::from(format!("/proc/{}/ns/{what}", c.state.pid)))
                    }
                    None => return Err(EngineError::Invalid(format!("invalid {what} mode: {m}"))),
                },
            })
        };
        // Namespace targets are resolved at start; at create time only check syntax.
        if resolve_namespaces {
            spec.namespaces.net = ns_of(&h.network_mode, "net")?;
            spec.namespaces.pid = ns_of(&h.pid_mode, "pid")?;
            spec.namespaces.ipc = ns_of(&h.ipc_mode, "ipc")?;
        }
        spec.namespaces.uts = match h.uts_mode.as_str() {
            "host" => NsMode::Host,
            m if m.starts_with("ns:") => NsMode::Join(PathBuf::from(&m[3..])),
            "" => {
                if h.network_mode == "host" {
                    NsMode::Host
                } else if let NsMode::Join(p) = &spec.namespaces.net {
                    // docker: sharing a container's network shares its hostname too.
                    NsMode::Join(p.with_file_name("uts"))
                } else {
                    NsMode::New
                }
            }
            m => return Err(EngineError::Invalid(format!("invalid UTS mode: {m}"))),
        };
        spec.namespaces.cgroup = NsMode::New;
        if spec.namespaces.net == NsMode::New {
            // As docker: unprivileged ICMP sockets, so a non-root `ping` works.
            spec.sysctl
                .push(("net.ipv4.ping_group_range".into(), "0 2147483647".into()));
        }
        for m in &r.mounts {
            spec.mounts.push(Mount {
                kind: MountKind::Bind,
                source: PathBuf::from(&m.source),
                destination: PathBuf::from(&m.destination),
                readonly: !m.rw,
                data: None,
                propagation: Propagation::Rprivate,
                copy_up: m.kind == "volume",
            });
        }
        for (p, o) in &h.tmpfs {
            let mut data = vec![];
            let mut ro = false;
            for opt in o.split(',').filter(|s| !s.is_empty()) {
                match opt {
                    "ro" => ro = true,
                    "rw" | "noexec" | "exec" | "nosuid" | "nodev" => {}
                    x => data.push(x.to_string()),
                }
            }
            spec.mounts.push(Mount {
                kind: MountKind::Tmpfs,
                source: PathBuf::new(),
                destination: PathBuf::from(p),
                readonly: ro,
                data: if data.is_empty() {
                    None
                } else {
                    Some(data.join(","))
                },
                propagation: Propagation::Private,
                copy_up: false,
            });
        }
        for (dest, src) in &h.managed_files {
            spec.mounts.push(Mount {
                kind: MountKind::Bind,
                source: PathBuf::from(src),
                destination: PathBuf::from(dest),
                readonly: false,
                data: None,
                propagation: Propagation::Rprivate,
                copy_up: false,
            });
        }
        for d in &h.devices {
            spec.devices.push(parse_device(d)?);
        }
        if h.init {
            spec.mounts.push(Mount {
                kind: MountKind::Bind,
                source: self.init_exe(),
                destination: PathBuf::from(INIT_PATH),
                readonly: true,
                data: None,
                propagation: Propagation::Private,
                copy_up: false,
            });
        }
        Ok(spec)
    }
}

/// Where `--init` puts the init inside the container (docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

impl Engine {
    /// The init binary `--init` uses, installed under the root by the binary that
    /// embeds it (see [`Engine::install_init`]).
    pub fn init_exe(&self) -> PathBuf {
        init_exe_in(&self.root)
    }

    /// Install (or refresh) the static init binary under the root.
    pub fn install_init(&self, bytes: &[u8]) -> Result<()> {
        let p = self.init_exe();
        if fs::metadata(&p)
            .map(|m| m.len() == bytes.len() as u64)
            .unwrap_or(false)
        {
            return Ok(());
        }
        let dir = self.root.join("bin");
        fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating bin dir", e))?;
        let tmp = dir.join(format!(".skiff-init.{}", std::process::id()));
        fs::write(&tmp, bytes).map_err(|e| EngineError::io("writing skiff-init", e))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o555))
            .map_err(|e| EngineError::io("chmod skiff-init", e))?;
        fs::rename(&tmp, &p).map_err(|e| EngineError::io("installing skiff-init", e))
    }
}

/// `--device /dev/host[:/dev/ctr[:perms]]`: the node copied with the host's numbers.
fn parse_device(s: &str) -> Result<spec::Device> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = s.split(':').collect();
    let host = parts[0];
    let ctr = parts.get(1).copied().unwrap_or(host);
    let md = fs::metadata(host).map_err(|e| {
        EngineError::Invalid(format!(
            "error gathering device information while adding custom device \"{host}\": {e}"
        ))
    })?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(EngineError::Invalid(format!("{host} is not a device")));
    };
    let rdev = md.rdev();
    Ok(spec::Device {
        path: PathBuf::from(ctr),
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        mode: md.mode() & 0o777,
        uid: 0,
        gid: 0,
    })
}

/// Where a root keeps the static init (and pod infra) binary.
pub fn init_exe_in(root: &Path) -> PathBuf {
    root.join("bin").join("skiff-init")
}

/// What `--security-opt` says of a container: (no_new_privs, seccomp). As docker:
/// no_new_privs only with `no-new-privileges` (so setuid binaries work by default),
/// the default seccomp profile unless privileged or `seccomp=unconfined`.
pub fn security_options(h: &crate::state::HostConfig) -> Result<(bool, bool)> {
    let mut no_new_privs = false;
    let mut seccomp = !h.privileged;
    for o in &h.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                no_new_privs = true
            }
            "no-new-privileges=false" | "no-new-privileges:false" => no_new_privs = false,
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp = false,
            "apparmor=unconfined" | "label=disable" => {}
            other => {
                return Err(EngineError::Invalid(format!(
                    "invalid --security-opt: {other}"
                )))
            }
        }
    }
    Ok((no_new_privs, seccomp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker() {
        let ep = Some(vec!["/bin/sh".to_string(), "-c".to_string()]);
        let cmd = Some(vec!["echo hi".to_string()]);
        assert_eq!(
            command_line(&ep, &cmd, &None, &[]),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            command_line(&ep, &cmd, &None, &["date".into()]),
            vec!["/bin/sh", "-c", "date"]
        );
        assert_eq!(
            command_line(&ep, &cmd, &Some("/bin/ls".into()), &[]),
            vec!["/bin/ls"]
        );
        assert_eq!(
            command_line(&ep, &cmd, &Some(String::new()), &["id".into()]),
            vec!["id"]
        );
        assert_eq!(command_line(&None, &cmd, &None, &[]), vec!["echo hi"]);
    }

    #[test]
    fn publish_specs() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.proto.as_str()),
            (8080, 80, "tcp")
        );
        let p = parse_publish("127.0.0.1:53:53/udp").unwrap();
        assert_eq!((p.host_ip.as_str(), p.proto.as_str()), ("127.0.0.1", "udp"));
        assert_eq!(parse_publish("80").unwrap().host_port, 0);
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("80/sctpx").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile").is_err());
    }
}
