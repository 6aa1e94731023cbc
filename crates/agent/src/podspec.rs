//! The spec translation: how a Pod's spec becomes the runtime's settings for its
//! containers (the CRI's ContainerConfig, [`container_config`]), by Kubernetes'
//! rules: command and args against the image, environment (with the objects it
//! refers to read through [`ObjectLookup`]), downward API values, resources and QoS,
//! security context, hostname and the managed /etc/hosts.

use crate::cri::{
    ContainerConfig, Image, LinuxContainerResources, Mount, NamespaceMode, NamespaceOption,
    PodSandbox, RestartPolicy,
};
use crate::lookup::ObjectLookup;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Service};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Label of engine containers whose pod spec says `stdinOnce: true` (read by attach).
pub const STDIN_ONCE_LABEL: &str = "io.kubernetes.container.stdinOnce";

/// What a container is to its pod (its `io.kubernetes.container.type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Init,
    App,
    Ephemeral,
}

impl ContainerKind {
    fn label(self) -> &'static str {
        match self {
            ContainerKind::Init => "init",
            ContainerKind::App => "app",
            ContainerKind::Ephemeral => "ephemeral",
        }
    }
}

/// Where a container goes, besides what its pod's spec says: its pod's sandbox and
/// cgroup, the pod's managed /etc files, and the node's restart and log settings.
pub struct Placement<'a> {
    pub sandbox: &'a PodSandbox,
    pub pod_uid: &'a str,
    /// The cgroup the container is a child of (its pod's).
    pub cgroup_parent: String,
    /// Where the pod's managed `hosts`, `hostname` and `resolv.conf` are.
    pub etc_dir: &'a Path,
    pub kind: ContainerKind,
    /// The engine id of an ephemeral container's `targetContainerName`, whose PID
    /// namespace it joins.
    pub target: Option<String>,
    /// The first and the longest restart delay.
    pub restarts: (Duration, Duration),
    pub log_max_size: u64,
    pub log_max_files: u32,
}

/// Why a pod's spec cannot be turned into its containers' settings.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// A referenced ConfigMap or Secret is missing (`kind` as the kubelet writes it:
    /// "configmap", "secret").
    #[error("{kind} \"{name}\" not found")]
    ObjectNotFound { kind: &'static str, name: String },
    /// A referenced key of a ConfigMap or Secret is missing (`kind`: "ConfigMap",
    /// "Secret").
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("pod has no uid")]
    NoUid,
    #[error("pod has no spec")]
    NoSpec,
    #[error("container {0} has no image")]
    NoImage(String),
    #[error("container {0} has no command and its image none")]
    NoCommand(String),
    #[error("invalid quantity: {0}")]
    InvalidQuantity(String),
    /// A `resourceFieldRef` resource that is not `requests.X` or `limits.X`.
    #[error("bad resource {0}")]
    BadResource(String),
    #[error("unsupported fieldRef fieldPath {0}")]
    UnsupportedFieldPath(String),
    /// The same, in the `fieldRef` of environment variable `env`.
    #[error("unsupported fieldRef fieldPath {path} (env {env})")]
    UnsupportedEnvFieldPath { path: String, env: String },
    #[error("container has runAsNonRoot and image will run as root")]
    RunAsRoot,
    #[error("container has runAsNonRoot and image has non-numeric user ({0}), cannot verify user is non-root")]
    NonNumericUser(String),
}

impl SpecError {
    /// A referenced object or key is missing: the kubelet's
    /// CreateContainerConfigError.
    pub fn config_missing(&self) -> bool {
        matches!(
            self,
            SpecError::ObjectNotFound { .. } | SpecError::KeyNotFound { .. }
        )
    }
}

/// Container `c` of `pod` as the runtime creates it (the CRI's ContainerConfig): its
/// command against the image's, `env` (resolved by [`resolve_env`]) over the image's
/// environment, its user, `mounts` and the managed /etc files it does not mount
/// over, its namespaces, resources, security context, labels and restart policy.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    image: &Image,
    env: Vec<String>,
    mounts: Vec<Mount>,
    at: &Placement,
) -> Result<ContainerConfig, SpecError> {
    let spec = pod.spec.as_ref().ok_or(SpecError::NoSpec)?;
    let mut full_env = image.env.clone();
    for e in &env {
        let k = e.split('=').next().unwrap_or(e);
        full_env.retain(|x| x.split('=').next() != Some(k));
        full_env.push(e.clone());
    }
    let argv = command_line(c, &image.entrypoint, &image.cmd, &full_env);
    if argv.is_empty() {
        return Err(SpecError::NoCommand(c.name.clone()));
    }
    let user = user_for(pod, c, &image.user)?;
    let sc = c.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let mut managed = BTreeMap::new();
    for f in ["hosts", "hostname", "resolv.conf"] {
        if !c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == format!("/etc/{f}"))
        {
            managed.insert(format!("/etc/{f}"), at.etc_dir.join(f));
        }
    }
    let pod_or_node = |host: Option<bool>| {
        if host.unwrap_or(false) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        }
    };
    let mut labels = BTreeMap::new();
    labels.insert("io.kubernetes.pod.uid".to_string(), at.pod_uid.to_string());
    labels.insert(
        "io.kubernetes.pod.name".to_string(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.kubernetes.pod.namespace".to_string(),
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    );
    labels.insert("io.kubernetes.container.name".to_string(), c.name.clone());
    labels.insert(
        "io.kubernetes.container.type".to_string(),
        at.kind.label().to_string(),
    );
    if c.stdin_once.unwrap_or(false) {
        // Read by attach: the first client's end of input closes the container's.
        labels.insert(STDIN_ONCE_LABEL.to_string(), "true".to_string());
    }
    Ok(ContainerConfig {
        name: c.name.clone(),
        image: image.id.clone(),
        command: argv,
        envs: env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user: Some(user),
        mounts,
        etc_files: managed,
        labels,
        namespace_options: NamespaceOption {
            network: pod_or_node(spec.host_network),
            ipc: pod_or_node(spec.host_ipc),
            pid: if spec.host_pid.unwrap_or(false) {
                NamespaceMode::Node
            } else if at.sandbox.share_pid {
                NamespaceMode::Pod
            } else if at.target.is_some() {
                NamespaceMode::Target
            } else {
                NamespaceMode::Container
            },
            target_id: at.target.clone(),
        },
        resources: container_resources(c),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        // The kubelet sets no_new_privs only for allowPrivilegeEscalation: false.
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        tty: c.tty.unwrap_or(false),
        stdin: c.stdin.unwrap_or(false),
        cgroup_parent: at.cgroup_parent.clone(),
        // App containers restart as the pod's restartPolicy says (the runtime does
        // it, with back-off); init and ephemeral containers run once.
        restart_policy: match (at.kind, spec.restart_policy.as_deref().unwrap_or("Always")) {
            (ContainerKind::App, "Always") => RestartPolicy::Always,
            (ContainerKind::App, "OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Never,
        },
        restart_backoff: at.restarts,
        log_max_size: at.log_max_size,
        log_max_files: at.log_max_files,
    })
}

/// The command a container runs: Kubernetes' `command`/`args` against the image's
/// ENTRYPOINT/CMD, with `$(VAR)` references expanded from the container's env.
pub fn command_line(
    c: &Container,
    image_entrypoint: &[String],
    image_cmd: &[String],
    env: &[String],
) -> Vec<String> {
    let vars = env_map(env);
    let expand_all = |v: &[String]| v.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>();
    match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => expand_all(cmd)
            .into_iter()
            .chain(expand_all(args))
            .collect(),
        (Some(cmd), None) => expand_all(cmd),
        (None, Some(args)) => image_entrypoint
            .iter()
            .cloned()
            .chain(expand_all(args))
            .collect(),
        (None, None) => image_entrypoint
            .iter()
            .chain(image_cmd.iter())
            .cloned()
            .collect(),
    }
}

fn env_map(env: &[String]) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Kubernetes' `$(VAR)` expansion: known variables are replaced, `$$` is a literal
/// `$`, unknown references stay as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('?');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The image pull policy in effect: the container's, else Always for `:latest` or
/// untagged images and IfNotPresent otherwise, as the API server defaults it.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None | Some("latest") => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// Values the downward API exposes that live outside the Pod object.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeInfo {
    pub pod_ip: String,
    pub host_ip: String,
    pub node_allocatable_cpu_milli: i64,
    pub node_allocatable_memory: i64,
}

/// The docker-link style variables the kubelet gives every container of `pod` for the
/// Services it may know of (`getServiceEnvVarMap` and `envvars.FromServices`): the
/// `kubernetes` Service of `default` always, and those of the pod's namespace unless
/// `enableServiceLinks` is false (a namespace's own Service wins over `default`'s of
/// the same name); only Services with a cluster IP.
pub fn service_env(pod: &Pod, services: &[Service]) -> BTreeMap<String, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let cluster_ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|sp| sp.cluster_ip.as_deref())
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .map(str::to_string)
    };
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services.iter().filter(|s| cluster_ip(s).is_some()) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let in_ns = s.metadata.namespace.as_deref().unwrap_or("") == ns;
        if links && in_ns {
            chosen.insert(name, s);
        } else if s.metadata.namespace.as_deref() == Some("default") && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        }
    }
    let mut out = BTreeMap::new();
    for (name, s) in chosen {
        let (Some(ip), Some(spec)) = (cluster_ip(s), s.spec.as_ref()) else {
            continue;
        };
        let ports = spec.ports.as_deref().unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let prefix = env_var_name(&name);
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_var_name(pn)),
                    p.port.to_string(),
                );
            }
        }
        for (i, p) in ports.iter().enumerate() {
            let proto = p
                .protocol
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let lower = proto.to_ascii_lowercase();
            // Go's net.JoinHostPort: an IPv6 address in brackets.
            let url = if ip.contains(':') {
                format!("{lower}://[{ip}]:{}", p.port)
            } else {
                format!("{lower}://{ip}:{}", p.port)
            };
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let at = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.insert(format!("{at}_PROTO"), lower);
            out.insert(format!("{at}_PORT"), p.port.to_string());
            out.insert(format!("{at}_ADDR"), ip.clone());
            out.insert(at, url);
        }
    }
    out
}

/// A Service or port name as an environment variable name (`my-svc` → `MY_SVC`).
fn env_var_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// A container's environment, as the kubelet builds it: envFrom first, then env in
/// order (later entries see earlier ones, and the `services`' variables, through
/// `$(VAR)`), then the variables of [`service_env`] the container does not set itself.
pub fn resolve_env(
    pod: &Pod,
    c: &Container,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
) -> Result<Vec<String>, SpecError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        vars.retain(|(x, _)| x != &k);
        vars.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookup.config_map(&ns, &r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(SpecError::ObjectNotFound {
                        kind: "configmap",
                        name: r.name.clone(),
                    })
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match lookup.secret(&ns, &r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(SpecError::ObjectNotFound {
                        kind: "secret",
                        name: r.name.clone(),
                    })
                }
            }
        }
    }
    let services = service_env(pod, &lookup.services());
    for e in c.env.iter().flatten() {
        let mut current = services.clone();
        current.extend(vars.iter().cloned());
        if let Some(v) = env_value(pod, c, e, lookup, rt, &ns, &current)? {
            set(&mut vars, e.name.clone(), v);
        }
    }
    for (k, v) in services {
        if !vars.iter().any(|(x, _)| x == &k) {
            vars.push((k, v));
        }
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn env_value(
    pod: &Pod,
    c: &Container,
    e: &EnvVar,
    lookup: &dyn ObjectLookup,
    rt: &PodRuntimeInfo,
    ns: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Option<String>, SpecError> {
    if let Some(v) = &e.value {
        return Ok(Some(expand(v, vars)));
    }
    let Some(src) = &e.value_from else {
        return Ok(Some(String::new()));
    };
    if let Some(f) = &src.field_ref {
        return field_ref_value(pod, &f.field_path, rt)
            .map(Some)
            .map_err(|err| match err {
                SpecError::UnsupportedFieldPath(path) => SpecError::UnsupportedEnvFieldPath {
                    path,
                    env: e.name.clone(),
                },
                other => other,
            });
    }
    if let Some(r) = &src.resource_field_ref {
        let target = match &r.container_name {
            Some(n) if !n.is_empty() => pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|x| &x.name == n))
                .unwrap_or(c),
            _ => c,
        };
        let divisor = r
            .divisor
            .as_ref()
            .map(|q| parse_quantity_milli(&q.0))
            .transpose()?
            .filter(|d| *d > 0);
        let res = target.resources.as_ref();
        let get = |which: &str, name: &str| -> Option<i128> {
            let m = if which == "limits" {
                res.and_then(|r| r.limits.as_ref())
            } else {
                res.and_then(|r| r.requests.as_ref())
            };
            m.and_then(|m| m.get(name))
                .and_then(|q| parse_quantity_milli(&q.0).ok())
        };
        let (which, name) = r
            .resource
            .split_once('.')
            .ok_or_else(|| SpecError::BadResource(r.resource.clone()))?;
        let milli = match get(which, name) {
            Some(v) => v,
            // An unset limit reports the node's allocatable, as the kubelet does.
            None if which == "limits" && name == "cpu" => rt.node_allocatable_cpu_milli as i128,
            None if which == "limits" && name == "memory" => {
                rt.node_allocatable_memory as i128 * 1000
            }
            None => 0,
        };
        // The default divisor is 1 (one core, one byte): 1000 in thousandths.
        let d = divisor.unwrap_or(1000);
        // Round up, as the kubelet does.
        let v = (milli + d - 1) / d;
        return Ok(Some(v.to_string()));
    }
    if let Some(r) = &src.config_map_key_ref {
        let data = lookup.config_map(ns, &r.name);
        return key_ref(
            "ConfigMap",
            "configmap",
            data,
            ns,
            &r.name,
            &r.key,
            r.optional,
        );
    }
    if let Some(r) = &src.secret_key_ref {
        let data = lookup.secret(ns, &r.name);
        return key_ref("Secret", "secret", data, ns, &r.name, &r.key, r.optional);
    }
    Ok(Some(String::new()))
}

/// A `configMapKeyRef` / `secretKeyRef` value, with the kubelet's messages.
fn key_ref(
    kind: &'static str,
    lower: &'static str,
    data: Option<BTreeMap<String, String>>,
    ns: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, SpecError> {
    let optional = optional == Some(true);
    match data {
        Some(d) => match d.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(SpecError::KeyNotFound {
                kind,
                namespace: ns.to_string(),
                name: name.to_string(),
                key: key.to_string(),
            }),
        },
        None if optional => Ok(None),
        None => Err(SpecError::ObjectNotFound {
            kind: lower,
            name: name.to_string(),
        }),
    }
}

/// The value of a downward API `fieldRef` path.
pub fn field_ref_value(pod: &Pod, path: &str, rt: &PodRuntimeInfo) -> Result<String, SpecError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let ns = m.namespace.clone().unwrap_or_else(|| "default".into());
    let fmt_map = |m: &Option<BTreeMap<String, String>>| {
        m.as_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => ns,
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => fmt_map(&m.labels),
        "metadata.annotations" => fmt_map(&m.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => rt.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => rt.host_ip.clone(),
        p => {
            let key = |prefix: &str| {
                p.strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix("['"))
                    .and_then(|k| k.strip_suffix("']"))
                    .map(|k| k.to_string())
            };
            if let Some(k) = key("metadata.labels") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = key("metadata.annotations") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(SpecError::UnsupportedFieldPath(p.to_string()));
            }
        }
    })
}

/// A Kubernetes quantity in thousandths (`500m` → 500, `1` → 1000, `1Ki` → 1024000),
/// as `skiff_meta::quantity` reads it.
pub fn parse_quantity_milli(s: &str) -> Result<i128, SpecError> {
    skiff_meta::quantity::parse_milli(s).map_err(|_| SpecError::InvalidQuantity(s.to_string()))
}

fn quantity(c: &Container, which: &str, name: &str) -> Option<i128> {
    let r = c.resources.as_ref()?;
    let m = if which == "limits" {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    parse_quantity_milli(&m.get(name)?.0).ok()
}

/// A container's cgroup settings from its requests and limits, as the kubelet
/// writes them: cpu limit → CFS quota over a 100 ms period, cpu request → shares
/// (min 2), memory limit → the memory limit.
pub fn container_resources(c: &Container) -> LinuxContainerResources {
    let cpu_req = quantity(c, "requests", "cpu").or_else(|| quantity(c, "limits", "cpu"));
    let shares = cpu_req
        .map(|m| ((m * 1024) / 1000).max(2) as u64)
        .unwrap_or(2);
    let mut r = LinuxContainerResources {
        cpu_shares: Some(shares),
        ..Default::default()
    };
    if let Some(l) = quantity(c, "limits", "cpu") {
        r.cpu_period = Some(100_000);
        r.cpu_quota = Some(((l * 100_000) / 1000).max(1000) as i64);
    }
    if let Some(m) = quantity(c, "limits", "memory") {
        r.memory_limit_in_bytes = Some((m / 1000) as i64);
    }
    r
}

/// The pod's QoS class (Guaranteed, Burstable, BestEffort).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for name in ["cpu", "memory"] {
            let req = quantity(c, "requests", name).or_else(|| quantity(c, "limits", name));
            let lim = quantity(c, "limits", name);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            if lim.is_none() || req != lim {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's hostname: `spec.hostname`, else its name cut to 63 characters without a
/// trailing '-' or '.' (a pod name may be a 253-character subdomain; the kubelet's
/// truncatePodHostnameIfNeeded).
pub fn pod_hostname(pod: &Pod) -> String {
    if let Some(h) = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.len() <= 63 {
        return name;
    }
    name[..63].trim_end_matches(['-', '.']).to_string()
}

/// The pod's managed /etc/hosts, in the kubelet's format, with hostAliases after
/// the managed entries under their own heading (an entry's hostnames on one line).
pub fn hosts_file(pod: &Pod, pod_ip: &str, cluster_domain: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let hostname = pod_hostname(pod);
    if !pod_ip.is_empty() {
        match spec.and_then(|s| s.subdomain.clone()) {
            Some(sub) if !sub.is_empty() => {
                let ns = pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                s.push_str(&format!(
                    "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
                ));
            }
            _ => s.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    let aliases = spec
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        // The kubelet's hostsEntriesFromHostAliases: one line per entry.
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            s.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    s
}

/// The user a container runs as (`uid[:gid]`) from its and the pod's security
/// context; `run_as_non_root` with uid 0 is refused as the kubelet refuses it.
pub fn user_for(pod: &Pod, c: &Container, image_user: &str) -> Result<String, SpecError> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| psc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => format!("{u}:{g}"),
        (Some(u), None) => u.to_string(),
        (None, Some(g)) => {
            let base = image_user.split(':').next().unwrap_or("");
            format!("{}:{g}", if base.is_empty() { "0" } else { base })
        }
        (None, None) => image_user.to_string(),
    };
    if non_root {
        let u = user.split(':').next().unwrap_or("");
        if u.is_empty() || u == "0" || u == "root" {
            return Err(SpecError::RunAsRoot);
        }
        if u.parse::<u32>().is_err() {
            return Err(SpecError::NonNumericUser(u.to_string()));
        }
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_long_pod_name_makes_a_63_character_hostname() {
        let pod = |name: &str, hostname: Option<&str>| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"containers": [], "hostname": hostname}}))
            .unwrap()
        };
        assert_eq!(pod_hostname(&pod("web", None)), "web");
        assert_eq!(pod_hostname(&pod("web", Some("h"))), "h");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(&pod(&long, None)), "a".repeat(62));
        let dotted = format!("{}.{}", "a".repeat(61), "b".repeat(10));
        assert_eq!(
            pod_hostname(&pod(&dotted, None)),
            format!("{}.b", "a".repeat(61))
        );
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    struct Objects;
    impl ObjectLookup for Objects {
        fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (ns == "default" && name == "cfg").then(|| {
                [
                    ("mode".to_string(), "fast".to_string()),
                    ("level".to_string(), "3".to_string()),
                ]
                .into_iter()
                .collect()
            })
        }
        fn secret(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "creds").then(|| {
                [("password".to_string(), "s3cret".to_string())]
                    .into_iter()
                    .collect()
            })
        }
    }

    #[test]
    fn pull_policy_defaults_as_the_api_server_does() {
        let c = |image: &str, policy: Option<&str>| Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(String::from),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("nginx", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:latest", None)), "Always");
        assert_eq!(pull_policy(&c("nginx:1.27", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/app", None)), "Always");
        assert_eq!(
            pull_policy(&c("localhost:5000/app:v2", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("app@sha256:abcd", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("nginx", Some("Never"))), "Never");
    }

    #[test]
    fn command_and_args_combine_as_kubernetes_does() {
        let ep = vec!["/docker-entrypoint.sh".to_string()];
        let cmd = vec!["nginx".to_string(), "-g".to_string()];
        let c = |v: serde_json::Value| -> Container { serde_json::from_value(v).unwrap() };
        let env = vec!["GREETING=hi".to_string()];
        assert_eq!(
            command_line(&c(json!({"name": "a"})), &ep, &cmd, &env),
            vec!["/docker-entrypoint.sh", "nginx", "-g"]
        );
        assert_eq!(
            command_line(&c(json!({"name": "a", "command": ["sh"]})), &ep, &cmd, &env),
            vec!["sh"]
        );
        assert_eq!(
            command_line(&c(json!({"name": "a", "args": ["x"]})), &ep, &cmd, &env),
            vec!["/docker-entrypoint.sh", "x"]
        );
        assert_eq!(
            command_line(
                &c(
                    json!({"name": "a", "command": ["echo"], "args": ["$(GREETING) $(NOPE) $$(GREETING)"]})
                ),
                &ep,
                &cmd,
                &env
            ),
            vec!["echo", "hi $(NOPE) $(GREETING)"]
        );
    }

    #[test]
    fn environment_from_every_source() {
        let p = pod(json!({
            "metadata": {"name": "web-0", "namespace": "default", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "$(A)-two"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                    {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}
                ]
            }]}
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let rt = PodRuntimeInfo {
            pod_ip: "10.42.0.7".into(),
            ..Default::default()
        };
        let env = resolve_env(&p, c, &Objects, &rt).unwrap();
        for want in [
            "CFG_mode=fast",
            "CFG_level=3",
            "A=1",
            "B=1-two",
            "POD=web-0",
            "APP=web",
            "IP=10.42.0.7",
            "NODE=n1",
            "CPU=500",
            "MEM=64",
            "MODE=fast",
            "PW=s3cret",
        ] {
            assert!(env.contains(&want.to_string()), "{want} in {env:?}");
        }
        let missing = pod(
            json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}}),
        );
        let c = &missing.spec.as_ref().unwrap().containers[0];
        let err = resolve_env(&missing, c, &Objects, &rt).unwrap_err();
        assert_eq!(
            err,
            SpecError::ObjectNotFound {
                kind: "configmap",
                name: "nope".into()
            }
        );
        assert!(err.config_missing());
        assert_eq!(err.to_string(), "configmap \"nope\" not found");
    }

    #[test]
    fn container_configs_follow_the_spec_the_image_and_the_placement() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "u1"},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c",
                "args": ["$(GREETING)"], "stdinOnce": true,
                "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]}]}
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let image = Image {
            id: "sha256:img".into(),
            entrypoint: vec!["echo".into()],
            env: vec!["GREETING=image".into(), "PATH=/bin".into()],
            user: "1000".into(),
            ..Default::default()
        };
        let sandbox = PodSandbox {
            id: "s".into(),
            pid: 1,
            start_time: 0,
            ip: None,
            share_pid: false,
            cgroup: None,
        };
        let at = |kind| Placement {
            sandbox: &sandbox,
            pod_uid: "u1",
            cgroup_parent: "kubepods/podu1".into(),
            etc_dir: Path::new("/pods/u1/etc"),
            kind,
            target: None,
            restarts: (Duration::from_secs(1), Duration::from_secs(2)),
            log_max_size: 10,
            log_max_files: 2,
        };
        let env = vec!["GREETING=pod".to_string()];
        let app = container_config(
            &p,
            c,
            &image,
            env.clone(),
            Vec::new(),
            &at(ContainerKind::App),
        )
        .unwrap();
        assert_eq!(app.command, ["echo", "pod"]);
        assert_eq!(app.envs, env);
        assert_eq!(app.image, "sha256:img");
        assert_eq!(app.user.as_deref(), Some("1000"));
        assert_eq!(app.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(app.labels["io.kubernetes.container.type"], "app");
        assert_eq!(app.labels[STDIN_ONCE_LABEL], "true");
        assert_eq!(app.namespace_options.pid, NamespaceMode::Container);
        // /etc/hosts is mounted over: only the other managed files are given.
        assert_eq!(
            app.etc_files.keys().collect::<Vec<_>>(),
            ["/etc/hostname", "/etc/resolv.conf"]
        );
        let init =
            container_config(&p, c, &image, env, Vec::new(), &at(ContainerKind::Init)).unwrap();
        assert_eq!(init.restart_policy, RestartPolicy::Never);
        assert_eq!(init.labels["io.kubernetes.container.type"], "init");
        let bare = Image::default();
        let none = pod(json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}}));
        let c = &none.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_config(
                &none,
                c,
                &bare,
                Vec::new(),
                Vec::new(),
                &at(ContainerKind::App)
            )
            .unwrap_err(),
            SpecError::NoCommand("c".into())
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_milli("500m").unwrap(), 500);
        assert_eq!(parse_quantity_milli("0.5").unwrap(), 500);
        assert_eq!(parse_quantity_milli("2").unwrap(), 2000);
        assert_eq!(
            parse_quantity_milli("64Mi").unwrap(),
            64 * 1024 * 1024 * 1000
        );
        assert_eq!(parse_quantity_milli("1G").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_quantity_milli("1e3").unwrap(), 1_000_000);
        assert!(parse_quantity_milli("lots").is_err());
    }

    #[test]
    fn resources_and_qos() {
        let g = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m", "memory": "128Mi"}}}]}}),
        );
        assert_eq!(qos_class(&g), "Guaranteed");
        let r = container_resources(&g.spec.as_ref().unwrap().containers[0]);
        assert_eq!(
            (
                r.cpu_quota,
                r.cpu_period,
                r.cpu_shares,
                r.memory_limit_in_bytes
            ),
            (Some(25_000), Some(100_000), Some(256), Some(128 << 20))
        );
        let b = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}),
        );
        assert_eq!(qos_class(&b), "Burstable");
        let e = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(qos_class(&e), "BestEffort");
        assert_eq!(
            container_resources(&e.spec.as_ref().unwrap().containers[0]).cpu_shares,
            Some(2)
        );
    }

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    fn services() -> Vec<Service> {
        vec![
            service(
                "default",
                "kubernetes",
                "10.43.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            service("team", "web", "10.43.0.20", json!([{"port": 80}])),
            service(
                "team",
                "my-db",
                "10.43.0.21",
                json!([
                    {"name": "sql", "port": 5432, "protocol": "TCP"},
                    {"name": "metrics-port", "port": 9187, "protocol": "UDP"},
                ]),
            ),
            service("team", "headless", "None", json!([{"port": 80}])),
            service("team", "external", "", json!([])),
            service("other", "elsewhere", "10.43.0.30", json!([{"port": 81}])),
        ]
    }

    #[test]
    fn service_environment_as_the_kubelet_builds_it() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        let env = service_env(&p, &services());
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("WEB_SERVICE_HOST", "10.43.0.20"),
            ("WEB_SERVICE_PORT", "80"),
            ("WEB_PORT", "tcp://10.43.0.20:80"),
            ("WEB_PORT_80_TCP", "tcp://10.43.0.20:80"),
            ("WEB_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_PORT_80_TCP_PORT", "80"),
            ("WEB_PORT_80_TCP_ADDR", "10.43.0.20"),
            ("MY_DB_SERVICE_HOST", "10.43.0.21"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS_PORT", "9187"),
            ("MY_DB_PORT", "tcp://10.43.0.21:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.43.0.21:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.43.0.21"),
            ("MY_DB_PORT_9187_UDP", "udp://10.43.0.21:9187"),
            ("MY_DB_PORT_9187_UDP_PROTO", "udp"),
            ("MY_DB_PORT_9187_UDP_PORT", "9187"),
            ("MY_DB_PORT_9187_UDP_ADDR", "10.43.0.21"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        // enableServiceLinks: false keeps only the kubernetes Service's.
        let p = pod(json!({"metadata": {"name": "p", "namespace": "team"},
            "spec": {"enableServiceLinks": false, "containers": [{"name": "c"}]}}));
        let env = service_env(&p, &services());
        assert_eq!(env.len(), 8);
        assert!(env.keys().all(|k| k.starts_with("KUBERNETES_")), "{env:?}");
        // A namespace's own `kubernetes` Service wins over default's.
        let mut list = services();
        list.insert(
            1,
            service("team", "kubernetes", "10.43.0.99", json!([{"port": 8443}])),
        );
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        let env = service_env(&p, &list);
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.43.0.99");
        assert!(!env.contains_key("KUBERNETES_SERVICE_PORT_HTTPS"));
    }

    struct WithServices;
    impl ObjectLookup for WithServices {
        fn config_map(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "cfg")
                .then(|| [("WEB_SERVICE_PORT".to_string(), "from-config".to_string())].into())
        }
        fn secret(&self, _ns: &str, _name: &str) -> Option<BTreeMap<String, String>> {
            None
        }
        fn services(&self) -> Vec<Service> {
            services()
        }
    }

    #[test]
    fn containers_override_service_variables_and_expand_them() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "team"}, "spec": {"containers": [{
                "name": "c",
                "envFrom": [{"configMapRef": {"name": "cfg"}}],
                "env": [
                    {"name": "URL", "value": "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/"},
                    {"name": "MY_DB_SERVICE_HOST", "value": "mine"},
                    {"name": "API", "value": "$(KUBERNETES_PORT_443_TCP_ADDR)"},
                ],
            }]}}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = resolve_env(&p, c, &WithServices, &PodRuntimeInfo::default()).unwrap();
        let get = |k: &str| {
            let hits: Vec<&String> = env
                .iter()
                .filter(|e| e.split_once('=').map(|x| x.0) == Some(k))
                .collect();
            assert_eq!(hits.len(), 1, "{k} once in {env:?}");
            hits[0].split_once('=').unwrap().1.to_string()
        };
        assert_eq!(get("WEB_SERVICE_PORT"), "from-config");
        assert_eq!(get("URL"), "http://10.43.0.20:from-config/");
        assert_eq!(get("MY_DB_SERVICE_HOST"), "mine");
        assert_eq!(get("API"), "10.43.0.1");
        assert_eq!(get("WEB_PORT_80_TCP_ADDR"), "10.43.0.20");
    }

    #[test]
    fn hosts_file_with_aliases() {
        let p = pod(
            json!({"metadata": {"name": "hostaliases-pod"}, "spec": {"containers": [],
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}]}}),
        );
        let h = hosts_file(&p, "10.244.135.10", "cluster.local");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            h.ends_with(
                "10.244.135.10\thostaliases-pod\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"
            ),
            "{h}"
        );
        let s = pod(
            json!({"metadata": {"name": "web-0", "namespace": "prod"}, "spec": {"containers": [], "hostname": "web-0", "subdomain": "web"}}),
        );
        let h = hosts_file(&s, "10.42.0.3", "cluster.local");
        assert!(h.ends_with("10.42.0.3\tweb-0.web.prod.svc.cluster.local\tweb-0\n"));
        assert!(
            !h.contains("HostAliases"),
            "no heading without aliases: {h}"
        );
    }

    #[test]
    fn security_context_users() {
        let p = pod(
            json!({"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000}, "containers": [{"name": "c"}]}}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(user_for(&p, c, "").unwrap(), "1000:3000");
        let n = pod(
            json!({"spec": {"containers": [{"name": "c", "securityContext": {"runAsNonRoot": true}}]}}),
        );
        let c = &n.spec.as_ref().unwrap().containers[0];
        assert!(user_for(&n, c, "").is_err());
        assert_eq!(user_for(&n, c, "1000").unwrap(), "1000");
    }
}
