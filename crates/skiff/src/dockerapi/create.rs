//! `POST /containers/create`, `POST /containers/{id}/start` and `/restart`: docker's
//! create body turned into the engine's [`CreateOptions`] (the options `skiff run`
//! builds from its flags), so the API and the CLI create containers the same way.

use super::{no_content, Answer, ApiError, Req};
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use skiff_engine::ops::Report;
use skiff_engine::CreateOptions;

pub(super) fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad(format!("{what}: every element must be a string")))
            })
            .collect(),
        // docker accepts a string for Cmd/Entrypoint (a shell form the client split).
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => Err(ApiError::bad(format!("{what} must be a list of strings"))),
    }
}

pub(super) fn string(v: Option<&Value>, what: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad(format!("{what} must be a string"))),
    }
}

fn int(v: Option<&Value>, what: &str) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|n| (n != 0).then_some(n))
            .ok_or_else(|| ApiError::bad(format!("{what} must be an integer"))),
        Some(_) => Err(ApiError::bad(format!("{what} must be an integer"))),
    }
}

/// `ConsoleSize`: `[height, width]`, as (columns, rows); `[0, 0]` is none.
pub(super) fn console_size(v: Option<&Value>) -> Result<Option<(u16, u16)>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() == 2 => {
            let n = |x: &Value| x.as_u64().and_then(|n| u16::try_from(n).ok());
            match (n(&a[0]), n(&a[1])) {
                (Some(0), Some(0)) => Ok(None),
                (Some(h), Some(w)) => Ok(Some((w, h))),
                _ => Err(ApiError::bad(
                    "ConsoleSize must be [height, width], numbers from 0 to 65535",
                )),
            }
        }
        Some(_) => Err(ApiError::bad("ConsoleSize must be [height, width]")),
    }
}

pub(super) fn flag(v: Option<&Value>, what: &str) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad(format!("{what} must be true or false"))),
    }
}

fn object<'a>(
    v: Option<&'a Value>,
    what: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ApiError::bad(format!("{what} must be an object"))),
    }
}

/// Refuses a field skiff does not apply when the client set it: a silently dropped
/// setting would be a container other than the one asked for.
fn unsupported(h: &Map<String, Value>, prefix: &str, fields: &[&str]) -> Result<(), ApiError> {
    for f in fields {
        let set = match h.get(*f) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::Bool(true)) => true,
        };
        if set {
            return Err(ApiError(
                StatusCode::NOT_IMPLEMENTED,
                format!("{prefix}{f} is not supported by skiff's Docker API yet"),
            ));
        }
    }
    Ok(())
}

/// Resource settings skiff does not apply (refused when set, in a create or an update).
const UNSUPPORTED_LIMITS: &[&str] = &[
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "OomKillDisable",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
];

/// docker's resource fields (a create's HostConfig, an update's body) as the engine's
/// limits; 0 or absent is "not set".
fn limits(h: &Map<String, Value>, prefix: &str) -> Result<skiff_engine::Limits, ApiError> {
    let field = |f: &str| format!("{prefix}{f}");
    // The docker CLI sends -1 for "the kernel's default swappiness".
    if h.get("MemorySwappiness")
        .and_then(Value::as_i64)
        .is_some_and(|n| n != -1)
    {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!("{prefix}MemorySwappiness is not supported by skiff's Docker API yet"),
        ));
    }
    let nano = int(h.get("NanoCpus"), &field("NanoCpus"))?;
    let unsigned = |f: &str| -> Result<Option<u64>, ApiError> {
        int(h.get(f), &field(f))?
            .map(|n| {
                u64::try_from(n)
                    .map_err(|_| ApiError::bad(format!("{} must not be negative", field(f))))
            })
            .transpose()
    };
    Ok(skiff_engine::Limits {
        memory: int(h.get("Memory"), &field("Memory"))?.map(|n| n.to_string()),
        memory_swap: int(h.get("MemorySwap"), &field("MemorySwap"))?.map(|n| n.to_string()),
        cpus: nano.map(|n| format!("{}", n as f64 / 1e9)),
        cpu_period: unsigned("CpuPeriod")?,
        cpu_quota: int(h.get("CpuQuota"), &field("CpuQuota"))?,
        cpu_shares: unsigned("CpuShares")?,
        pids_limit: int(h.get("PidsLimit"), &field("PidsLimit"))?,
        cpuset_cpus: string(h.get("CpusetCpus"), &field("CpusetCpus"))?,
        cpuset_mems: string(h.get("CpusetMems"), &field("CpusetMems"))?,
    })
}

/// docker's `RestartPolicy` object as `--restart`'s value (`None`: not set).
fn restart_policy(h: &Map<String, Value>, prefix: &str) -> Result<Option<String>, ApiError> {
    let what = format!("{prefix}RestartPolicy");
    Ok(match object(h.get("RestartPolicy"), &what)? {
        Some(p) => match p.get("Name").and_then(|v| v.as_str()).unwrap_or("") {
            "" => None,
            "no" => Some("no".into()),
            "on-failure" => Some(
                match int(p.get("MaximumRetryCount"), "MaximumRetryCount")? {
                    Some(n) => format!("on-failure:{n}"),
                    None => "on-failure".into(),
                },
            ),
            other => Some(other.to_string()),
        },
        None => None,
    })
}

/// `POST /containers/{id}/update`: new limits and restart policy (`docker update`);
/// 200 `{"Warnings": []}`.
pub(super) fn update(req: &Req, id: &str) -> Answer {
    let body = req.json_body("the update")?;
    let Value::Object(b) = &body else {
        return Err(ApiError::bad("the update body must be a JSON object"));
    };
    unsupported(b, "", UNSUPPORTED_LIMITS)?;
    unsupported(
        b,
        "",
        &[
            "Devices",
            "DeviceCgroupRules",
            "DeviceRequests",
            "Ulimits",
            "CgroupParent",
        ],
    )?;
    let l = limits(b, "")?;
    let restart = restart_policy(b, "")?;
    let e = req.engine()?;
    e.update(id, &l, restart.as_deref())?;
    Ok(super::json_response(
        StatusCode::OK,
        &json!({ "Warnings": [] }),
    ))
}

/// The engine's options for docker's create body.
pub(super) fn options(body: &Value, name: Option<String>) -> Result<CreateOptions, ApiError> {
    let Value::Object(c) = body else {
        return Err(ApiError::bad("the create body must be a JSON object"));
    };
    let image =
        string(c.get("Image"), "Image")?.ok_or_else(|| ApiError::bad("config has no Image"))?;
    let cmd = strings(c.get("Cmd"), "Cmd")?;
    let (entrypoint, args) = match c.get("Entrypoint") {
        None | Some(Value::Null) => (None, cmd),
        e => {
            let e = strings(e, "Entrypoint")?;
            match e.split_first() {
                // An empty entrypoint resets the image's.
                None => (Some(String::new()), cmd),
                Some((first, rest)) => (
                    Some(first.clone()),
                    rest.iter().cloned().chain(cmd).collect(),
                ),
            }
        }
    };
    let labels = object(c.get("Labels"), "Labels")?
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok(format!("{k}={v}")),
                    _ => Err(ApiError::bad(format!(
                        "label {k}: its value must be a string"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let empty = Map::new();
    let h = object(c.get("HostConfig"), "HostConfig")?.unwrap_or(&empty);
    unsupported(
        h,
        "HostConfig.",
        &[
            "PublishAllPorts",
            "Dns",
            "DnsOptions",
            "DnsSearch",
            "Sysctls",
            "DeviceRequests",
            "Runtime",
        ],
    )?;
    unsupported(h, "HostConfig.", UNSUPPORTED_LIMITS)?;
    let mut publish = Vec::new();
    if let Some(pb) = object(h.get("PortBindings"), "HostConfig.PortBindings")? {
        for (port, binds) in pb {
            let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            let binds = match binds {
                Value::Array(a) => a.clone(),
                Value::Null => Vec::new(),
                _ => {
                    return Err(ApiError::bad(format!(
                        "port bindings of {port} must be a list"
                    )))
                }
            };
            for b in binds {
                let ip = b.get("HostIp").and_then(|v| v.as_str()).unwrap_or("");
                let hp = b.get("HostPort").and_then(|v| v.as_str()).unwrap_or("");
                publish.push(match (ip.is_empty(), hp.is_empty()) {
                    (true, true) => format!("{num}/{proto}"),
                    (true, false) => format!("{hp}:{num}/{proto}"),
                    (false, _) => format!("{ip}:{hp}:{num}/{proto}"),
                });
            }
        }
    }
    let mut volumes = strings(h.get("Binds"), "HostConfig.Binds")?;
    let mut tmpfs: Vec<String> = object(h.get("Tmpfs"), "HostConfig.Tmpfs")?
        .map(|m| {
            m.iter()
                .map(|(p, o)| match o.as_str() {
                    Some("") | None => p.clone(),
                    Some(o) => format!("{p}:{o}"),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(mounts)) = h.get("Mounts") {
        for m in mounts {
            let ty = m.get("Type").and_then(|v| v.as_str()).unwrap_or("");
            let src = m.get("Source").and_then(|v| v.as_str()).unwrap_or("");
            let dst = m
                .get("Target")
                .and_then(|v| v.as_str())
                .ok_or_else(|| ApiError::bad("a mount needs a Target"))?;
            let ro = m.get("ReadOnly").and_then(|v| v.as_bool()).unwrap_or(false);
            match ty {
                "bind" | "volume" => {
                    volumes.push(format!("{src}:{dst}{}", if ro { ":ro" } else { "" }))
                }
                "tmpfs" => tmpfs.push(dst.to_string()),
                other => {
                    return Err(ApiError::bad(format!(
                        "mount type {other:?} is not supported (bind, volume or tmpfs)"
                    )))
                }
            }
        }
    }
    let restart = restart_policy(h, "HostConfig.")?;
    let ulimits = match h.get("Ulimits") {
        Some(Value::Array(u)) => u
            .iter()
            .map(|u| {
                let n = u.get("Name").and_then(|v| v.as_str()).unwrap_or("");
                let s = u.get("Soft").and_then(|v| v.as_i64()).unwrap_or(0);
                let hard = u.get("Hard").and_then(|v| v.as_i64()).unwrap_or(s);
                format!("{n}={s}:{hard}")
            })
            .collect(),
        _ => Vec::new(),
    };
    let devices = match h.get("Devices") {
        Some(Value::Array(d)) => d
            .iter()
            .map(|d| {
                let host = d.get("PathOnHost").and_then(|v| v.as_str()).unwrap_or("");
                let ctr = d
                    .get("PathInContainer")
                    .and_then(|v| v.as_str())
                    .unwrap_or(host);
                let perms = d
                    .get("CgroupPermissions")
                    .and_then(|v| v.as_str())
                    .unwrap_or("rwm");
                format!("{host}:{ctr}:{perms}")
            })
            .collect(),
        _ => Vec::new(),
    };
    let network =
        string(h.get("NetworkMode"), "HostConfig.NetworkMode")?.filter(|n| n != "default");
    let mut network_aliases = Vec::new();
    if let Some(eps) = c
        .get("NetworkingConfig")
        .and_then(|n| n.get("EndpointsConfig"))
        .and_then(|e| e.as_object())
    {
        for ep in eps.values() {
            network_aliases.extend(strings(ep.get("Aliases"), "Aliases")?);
        }
    }
    let l = limits(h, "HostConfig.")?;
    let signal = string(c.get("StopSignal"), "StopSignal")?;
    Ok(CreateOptions {
        image,
        args,
        entrypoint,
        name,
        hostname: string(c.get("Hostname"), "Hostname")?,
        env: strings(c.get("Env"), "Env")?,
        workdir: string(c.get("WorkingDir"), "WorkingDir")?,
        user: string(c.get("User"), "User")?,
        volumes,
        publish,
        network,
        pid: string(h.get("PidMode"), "HostConfig.PidMode")?,
        ipc: string(h.get("IpcMode"), "HostConfig.IpcMode")?,
        uts: string(h.get("UTSMode"), "HostConfig.UTSMode")?,
        links: strings(h.get("Links"), "HostConfig.Links")?,
        limits: l,
        restart,
        auto_remove: flag(h.get("AutoRemove"), "HostConfig.AutoRemove")?,
        tty: flag(c.get("Tty"), "Tty")?,
        interactive: flag(c.get("OpenStdin"), "OpenStdin")?,
        privileged: flag(h.get("Privileged"), "HostConfig.Privileged")?,
        cap_add: strings(h.get("CapAdd"), "HostConfig.CapAdd")?,
        cap_drop: strings(h.get("CapDrop"), "HostConfig.CapDrop")?,
        read_only: flag(h.get("ReadonlyRootfs"), "HostConfig.ReadonlyRootfs")?,
        tmpfs,
        ulimits,
        add_hosts: strings(h.get("ExtraHosts"), "HostConfig.ExtraHosts")?,
        labels,
        init: flag(h.get("Init"), "HostConfig.Init")?,
        volumes_from: strings(h.get("VolumesFrom"), "HostConfig.VolumesFrom")?,
        devices,
        security_opt: strings(h.get("SecurityOpt"), "HostConfig.SecurityOpt")?,
        cgroup_parent: string(h.get("CgroupParent"), "HostConfig.CgroupParent")?,
        stop_signal: signal,
        stop_timeout: int(c.get("StopTimeout"), "StopTimeout")?,
        oom_score_adj: int(h.get("OomScoreAdj"), "HostConfig.OomScoreAdj")?.map(|n| n as i32),
        console_size: console_size(h.get("ConsoleSize"))?,
        group_add: strings(h.get("GroupAdd"), "HostConfig.GroupAdd")?,
        network_aliases,
        ..CreateOptions::default()
    })
}

/// `POST /containers/create?name=`: 201 `{"Id", "Warnings"}`; 404 for an image not
/// here (the client pulls and retries), 409 for a name in use.
pub(super) fn create(req: &Req) -> Answer {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad(format!("invalid JSON in the create body: {e}")))?;
    let name = req.query.get("name").filter(|n| !n.is_empty()).cloned();
    let opts = options(&body, name)?;
    let e = req.engine()?;
    let c = e.create(&opts)?;
    Ok(super::json_response(
        StatusCode::CREATED,
        &json!({ "Id": c.record.id, "Warnings": [] }),
    ))
}

/// `POST /containers/{id}/start`: 204; 304 if it is running already. Attach requests
/// waiting for this start get its streams.
pub(super) fn start(req: &Req, id: &str) -> Answer {
    let e = req.engine()?;
    let c = e.get(id)?;
    if c.state.status.is_active() {
        return no_content(StatusCode::NOT_MODIFIED);
    }
    // Clients that attached before the start get its stdio from the first byte.
    let attached = super::attach::StartAttach::new(req, &c)?;
    let (mut starting, first) = e.start(&c.record.id, attached.attach())?;
    if matches!(first, Report::Started(_) | Report::Exited(_)) {
        attached.started(&c);
    }
    // An auto-removed container takes its state with it: its exit code is kept from
    // its monitor's report, for a wait on its removal.
    if c.record.host.auto_remove && matches!(first, Report::Started(_)) {
        let svc = req.svc.clone();
        let id = c.record.id.clone();
        std::thread::Builder::new()
            .name("docker-api-exit".into())
            .spawn(move || loop {
                match starting.next_report() {
                    Report::Started(_) => continue,
                    Report::Exited(code) => svc.exits.record(&id, code),
                    Report::Failed(code, _) => svc.exits.record(&id, code),
                    Report::Lost => {}
                }
                break;
            })
            .map_err(anyhow::Error::from)?;
    } else if let Report::Exited(code) = first {
        req.svc.exits.record(&c.record.id, code);
    }
    match first {
        Report::Started(_) | Report::Exited(_) => no_content(StatusCode::NO_CONTENT),
        Report::Failed(_, msg) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to create task for container: {msg}: unknown"),
        )),
        Report::Lost => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the container's monitor exited unexpectedly".into(),
        )),
    }
}

/// `POST /containers/{id}/restart?t`: stop (if running), then start; 204.
pub(super) fn restart(req: &Req, id: &str) -> Answer {
    let signal = req.query.get("signal").filter(|s| !s.is_empty());
    let t = req.int("t")?;
    let e = req.engine()?;
    let c = e.get(id)?;
    if c.state.status.is_active() {
        e.stop_with(&c.record.id, t, signal.map(String::as_str))?;
    }
    start(req, &c.record.id)?;
    skiff_engine::events::container(&e.root, &c, "restart", &[]);
    no_content(StatusCode::NO_CONTENT)
}
