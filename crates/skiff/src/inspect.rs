//! docker-shaped `inspect` JSON for containers and images.

use serde_json::{json, Map, Value};
use skiff_engine::state::ZERO_TIME;
use skiff_engine::Container;

pub fn container(c: &Container) -> Value {
    let r = &c.record;
    let s = &c.state;
    let h = &r.host;
    let mut ports = Map::new();
    for p in &r.exposed_ports {
        ports.insert(p.clone(), Value::Null);
    }
    let mut bindings = Map::new();
    let live = s.status.is_active() && !s.ports.is_empty();
    for p in if live { &s.ports } else { &r.ports } {
        let key = format!("{}/{}", p.container_port, p.proto);
        let entry = bindings.entry(key.clone()).or_insert_with(|| json!([]));
        if let Value::Array(a) = entry {
            a.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
        ports.insert(key, Value::Null);
    }
    let exposed: Map<String, Value> = ports.keys().map(|k| (k.clone(), json!({}))).collect();
    let running = s.status.is_active();
    let tmpfs: Map<String, Value> = h.tmpfs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let ulimits: Vec<Value> = h
        .ulimits
        .iter()
        .map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard}))
        .collect();
    let res = &h.resources;
    let plan: Option<skiff_engine::state::NetPlan> =
        skiff_engine::persist::read_json(&c.dir.join("net.json")).ok();
    let first = plan
        .as_ref()
        .and_then(|p| p.attachments.first())
        .filter(|_| running);
    let (gateway, prefix) = match first {
        Some(a) => (a.bridge.gateway.to_string(), a.bridge.prefix),
        None => (String::new(), 0),
    };
    let mut networks = Map::new();
    if plan.is_none() {
        // Not started yet: the networks it will join.
        let mode = h.network_mode.as_str();
        let own = !(mode.is_empty()
            || mode == "none"
            || mode == "host"
            || mode.starts_with("container:")
            || mode.starts_with("ns:"));
        let primary = (own && !h.primary_detached).then(|| mode.to_string());
        for n in primary.into_iter().chain(h.extra_networks.iter().cloned()) {
            let aliases = if n == "bridge" || h.network_aliases.is_empty() {
                Value::Null
            } else {
                json!(h.network_aliases)
            };
            networks.insert(
                n,
                json!({ "Aliases": aliases, "NetworkID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0 }),
            );
        }
    }
    if let Some(p) = &plan {
        for a in &p.attachments {
            networks.insert(
                a.network.clone(),
                json!({
                    "Aliases": if a.aliases.is_empty() { Value::Null } else { json!(a.aliases) },
                    "NetworkID": a.network_id,
                    "Gateway": if running { a.bridge.gateway.to_string() } else { String::new() },
                    "IPAddress": if running { a.ip.to_string() } else { String::new() },
                    "IPPrefixLen": if running { a.bridge.prefix } else { 0 },
                }),
            );
        }
    }
    let net_settings = json!({
        "Bridge": "",
        "SandboxID": "",
        "Ports": if h.network_mode == "bridge" { Value::Object(bindings.clone()) } else { json!({}) },
        "SandboxKey": if running && s.pid > 0 { format!("/proc/{}/ns/net", s.pid) } else { String::new() },
        "Gateway": gateway,
        "IPAddress": if running { s.ip_address.clone() } else { String::new() },
        "IPPrefixLen": prefix,
        "MacAddress": "",
        "Networks": Value::Object(networks),
    });
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, skiff_engine::Status::Running | skiff_engine::Status::Paused),
            "Paused": s.status == skiff_engine::Status::Paused,
            "Restarting": s.status == skiff_engine::Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == skiff_engine::Status::Dead,
            "Pid": if running { s.pid } else { 0 },
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        },
        "Image": r.image_id,
        "ResolvConfPath": c.dir.join("init/etc/resolv.conf"),
        "HostnamePath": c.dir.join("init/etc/hostname"),
        "HostsPath": c.dir.join("init/etc/hosts"),
        "LogPath": c.log_path(),
        "Name": format!("/{}", r.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "Binds": if h.binds.is_empty() { Value::Null } else { json!(h.binds) },
            "ContainerIDFile": "",
            "LogConfig": {"Type": "json-file", "Config": {}},
            "NetworkMode": h.network_mode,
            "PortBindings": Value::Object(bindings),
            "RestartPolicy": {"Name": if h.restart_policy.name.is_empty() { "no" } else { &h.restart_policy.name }, "MaximumRetryCount": h.restart_policy.maximum_retry_count},
            "AutoRemove": h.auto_remove,
            "VolumesFrom": if h.volumes_from.is_empty() { Value::Null } else { json!(h.volumes_from) },
            "CapAdd": if h.cap_add.is_empty() { Value::Null } else { json!(h.cap_add) },
            "CapDrop": if h.cap_drop.is_empty() { Value::Null } else { json!(h.cap_drop) },
            "ExtraHosts": if h.extra_hosts.is_empty() { Value::Null } else { json!(h.extra_hosts) },
            "IpcMode": h.ipc_mode,
            "Links": if h.links.is_empty() { Value::Null } else { json!(h.links) },
            "OomScoreAdj": h.oom_score_adj.unwrap_or(0),
            "PidMode": h.pid_mode,
            "Privileged": h.privileged,
            "ReadonlyRootfs": h.readonly_rootfs,
            "SecurityOpt": if h.security_opt.is_empty() { Value::Null } else { json!(h.security_opt) },
            "Tmpfs": if tmpfs.is_empty() { Value::Null } else { Value::Object(tmpfs) },
            "UTSMode": h.uts_mode,
            "CgroupParent": h.cgroup_parent,
            "Memory": res.memory.unwrap_or(0),
            "MemorySwap": res.memory_swap.unwrap_or(0),
            "NanoCpus": h.nano_cpus,
            "CpuShares": res.cpu_shares.unwrap_or(0),
            "CpuPeriod": if h.nano_cpus > 0 { 0 } else { res.cpu_period.unwrap_or(0) },
            "CpuQuota": if h.nano_cpus > 0 { 0 } else { res.cpu_quota.unwrap_or(0) },
            "CpusetCpus": res.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": res.pids_limit,
            "Ulimits": if ulimits.is_empty() { Value::Null } else { json!(ulimits) },
            "Init": h.init,
        },
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "UpperDir": c.dir.join("upper"),
                "WorkDir": c.dir.join("work"),
                "MergedDir": c.dir.join("merged"),
            }
        },
        "Mounts": r.mounts,
        "Config": {
            "Hostname": r.hostname,
            "Domainname": r.domainname,
            "User": r.user,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Tty": r.tty,
            "OpenStdin": r.open_stdin,
            "StdinOnce": false,
            "Env": r.env,
            "Cmd": r.cmd,
            "Image": r.image,
            "Volumes": Value::Null,
            "WorkingDir": r.working_dir,
            "Entrypoint": r.entrypoint,
            "OnBuild": Value::Null,
            "Labels": r.labels,
            "StopSignal": r.stop_signal,
            "StopTimeout": r.stop_timeout,
        },
        "NetworkSettings": net_settings,
    })
}

pub fn image(img: &skiff_image::Image, size: u64) -> Value {
    let cfg = &img.config;
    let c = &cfg.config;
    let repo_tags: Vec<String> = img
        .names
        .iter()
        .map(|n| skiff_image::familiar_name(n))
        .collect();
    let exposed: Map<String, Value> = c
        .exposed_ports
        .keys()
        .map(|k| (k.clone(), json!({})))
        .collect();
    let volumes: Map<String, Value> = c.volumes.keys().map(|k| (k.clone(), json!({}))).collect();
    json!({
        "Id": img.id,
        "RepoTags": repo_tags,
        "RepoDigests": img.repo_digests.iter().map(|d| skiff_image::familiar_name(d)).collect::<Vec<_>>(),
        "Parent": "",
        // docker keeps the comment of the step that made the image (a commit's -m).
        "Comment": cfg.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": cfg.created,
        "Author": cfg.author.clone().unwrap_or_default(),
        "Config": {
            "User": c.user,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Env": c.env,
            "Cmd": c.cmd,
            "Entrypoint": c.entrypoint,
            "Volumes": if volumes.is_empty() { Value::Null } else { Value::Object(volumes) },
            "WorkingDir": c.working_dir,
            "Labels": c.labels,
            "StopSignal": if c.stop_signal.is_empty() { Value::Null } else { json!(c.stop_signal) },
            "Healthcheck": c.healthcheck.as_ref().map(|h| serde_json::to_value(h).unwrap_or(Value::Null)),
            "Shell": if c.shell.is_empty() { Value::Null } else { json!(c.shell) },
            "OnBuild": if c.on_build.is_empty() { Value::Null } else { json!(c.on_build) },
        },
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Size": size,
        "RootFS": {"Type": "layers", "Layers": cfg.rootfs.diff_ids},
        "Metadata": {"LastTagTime": ZERO_TIME},
    })
}

/// The STATUS column of `ps` and the `Status` of the API's container list:
/// "Up 5 minutes", "Exited (0) 2 hours ago", "Created", …
pub fn status_text(c: &Container) -> String {
    use crate::format::{human_duration, since};
    use skiff_engine::Status;
    let s = &c.state;
    let ago = |t: &Option<String>| human_duration(since(t.as_deref().unwrap_or("")));
    match s.status {
        Status::Running => format!("Up {}", ago(&s.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, ago(&s.finished_at)),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, ago(&s.finished_at)),
        Status::Created => "Created".into(),
        ref other => other.as_str().to_string(),
    }
}

/// The ports a container publishes now: none unless it is running (as docker's `ps`
/// and container list show them).
pub fn published_ports(c: &Container) -> &[skiff_engine::network::PortBinding] {
    let s = &c.state;
    if !s.status.is_active() {
        &[]
    } else if !s.ports.is_empty() {
        &s.ports
    } else {
        &c.record.ports
    }
}

/// A container's command as `ps` and the API's list show it: path and arguments.
pub fn command_line(c: &Container) -> String {
    std::iter::once(c.record.path.clone())
        .chain(c.record.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A network in the shape of `docker network inspect` (one array element), with the
/// running containers attached to it.
/// What the network list filters look at of a bridge network, given its inspect
/// document (`inspected`, for the containers attached).
pub fn network_info<'a>(
    n: &'a skiff_engine::network::Network,
    inspected: &Value,
) -> crate::listing::NetworkInfo<'a> {
    crate::listing::NetworkInfo {
        id: &n.id,
        name: &n.name,
        driver: "bridge",
        labels: &n.labels,
        in_use: inspected["Containers"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
    }
}

pub fn network(n: &skiff_engine::network::Network, containers: &[Container]) -> Value {
    let mut members = Map::new();
    for c in containers.iter().filter(|c| c.state.status.is_active()) {
        let plan: Option<skiff_engine::state::NetPlan> =
            skiff_engine::persist::read_json(&c.dir.join("net.json")).ok();
        if let Some(a) = plan
            .as_ref()
            .and_then(|p| p.attachments.iter().find(|a| a.network == n.name))
        {
            members.insert(
                c.record.id.clone(),
                json!({
                    "Name": c.record.name,
                    "IPv4Address": format!("{}/{}", a.ip, a.bridge.prefix),
                    "IPv6Address": "",
                }),
            );
        }
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": if n.created.is_empty() { ZERO_TIME } else { &n.created },
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{
                "Subnet": format!("{}/{}", n.bridge.subnet, n.bridge.prefix),
                "Gateway": n.bridge.gateway.to_string(),
            }],
        },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "Containers": members,
        // The default network names its bridge, as docker's does; a user-defined one
        // shows the options it was created with (none: skiff takes none).
        "Options": if n.user_defined {
            json!({})
        } else {
            json!({"com.docker.network.bridge.name": n.bridge.bridge})
        },
        "Labels": n.labels,
    })
}
