//! `/_ping`, `/version`, `/info`, and images: list, inspect, history, tag, remove.

use super::containers::unix_time;
use super::{ok, Answer, ApiError, Req, API_VERSION, MIN_API_VERSION};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::path::Path;

/// `GET|HEAD /_ping`: `OK`, with the API version in the headers (the client
/// negotiates from it) and the classic builder (this CLI has no buildx).
pub(super) fn ping(head: bool) -> Answer {
    let mut r = Response::new(super::full(if head {
        Bytes::new()
    } else {
        Bytes::from_static(b"OK")
    }));
    *r.status_mut() = StatusCode::OK;
    for (k, v) in [
        ("content-type", "text/plain; charset=utf-8"),
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
        ("builder-version", "1"),
    ] {
        r.headers_mut()
            .insert(k, hyper::header::HeaderValue::from_static(v));
    }
    Ok(r)
}

/// `GET /version`.
/// `POST /auth` (`docker login`): checks the credentials with the registry, as dockerd
/// does; the client keeps them (the docker CLI in its own config.json). 200 `{"Status":
/// "Login Succeeded"}`, 401 with the registry's refusal.
pub(super) fn auth(req: &Req) -> Answer {
    let body = req.json_body("the login")?;
    let field = |f: &str| -> Result<String, ApiError> {
        match body.get(f) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::bad(format!("{f} must be a string"))),
        }
    };
    let (username, password) = (field("username")?, field("password")?);
    if !field("identitytoken")?.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "identitytoken logins are not supported by skiff's Docker API yet".into(),
        ));
    }
    if username.is_empty() || password.is_empty() {
        return Err(ApiError::bad("a login needs a username and a password"));
    }
    let address = field("serveraddress")?;
    let server = crate::commands::images::login_server((!address.is_empty()).then_some(address));
    let opts = crate::commands::images::registry_options(None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the login: {e}"))?;
    let creds = skiff_registry::Credentials { username, password };
    match rt.block_on(skiff_registry::login(&server, &opts, creds)) {
        Ok(()) => ok(json!({ "Status": "Login Succeeded", "IdentityToken": "" })),
        Err(e @ skiff_registry::Error::Status { .. }) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            crate::commands::images::login_failure(&server, &opts, e),
        )),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::commands::images::login_failure(&server, &opts, e),
        )),
    }
}

pub(super) fn version() -> Answer {
    let v = env!("CARGO_PKG_VERSION");
    let arch = skiff_image::host_arch();
    ok(json!({
        "Platform": { "Name": "skiff" },
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": arch,
                "KernelVersion": skiff_runtime::sys::kernel_release(),
                "Experimental": "false",
            }
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": skiff_runtime::sys::kernel_release(),
        "BuildTime": "",
    }))
}

/// `GET /info`.
pub(super) fn info(root: &Path) -> Answer {
    let e = crate::commands::engine(root)?;
    let all = e.list()?;
    let count = |s: skiff_engine::Status| all.iter().filter(|c| c.state.status == s).count();
    let running = count(skiff_engine::Status::Running);
    let paused = count(skiff_engine::Status::Paused);
    let images = e.images.all_images()?.len();
    let cg = skiff_runtime::cgroups::Host::detect().map_err(anyhow::Error::from)?;
    let v2 = cg.version == skiff_runtime::cgroups::Version::V2;
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    ok(json!({
        "ID": id,
        "Containers": all.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": all.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "none"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "MemoryLimit": true,
        "SwapLimit": v2,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "1").unwrap_or(false),
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if v2 { "2" } else { "1" },
        "NEventsListener": 0,
        "KernelVersion": skiff_runtime::sys::kernel_release(),
        "OperatingSystem": skiff_runtime::sys::os_pretty_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": null,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": skiff_runtime::sys::meminfo("MemTotal:").unwrap_or(0),
        "DockerRootDir": e.root,
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": { "skiff": { "path": "skiff" } },
        "DefaultRuntime": "skiff",
        "Swarm": { "LocalNodeState": "inactive" },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "skiff-init",
        "SecurityOptions": ["name=seccomp,profile=builtin", if v2 { "name=cgroupns" } else { "name=cgroupv1" }],
        "Warnings": [],
    }))
}

fn image_summary(i: &skiff_image::Image) -> Value {
    let tags: Vec<String> = i
        .names
        .iter()
        .filter(|n| !n.contains('@'))
        .map(|n| skiff_image::familiar_name(n))
        .collect();
    let digests: Vec<String> = i
        .repo_digests
        .iter()
        .map(|n| skiff_image::familiar_name(n))
        .collect();
    json!({
        "Id": i.id,
        "ParentId": i.parent.clone().unwrap_or_default(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": i.config.created.as_deref().map(unix_time).unwrap_or(0),
        "Size": i.size,
        "SharedSize": -1,
        "Labels": i.config.config.labels,
        "Containers": -1,
    })
}

/// `GET /images/json?all&filters`: newest first; without `all`, untagged images that
/// are the parents of others (build steps) are left out, as docker's.
pub(super) fn images(req: &Req) -> Answer {
    let all = req.flag("all")?;
    let filters = req.filters()?;
    let e = req.engine()?;
    let mut imgs = e.images.all_images()?;
    let parents: std::collections::HashSet<String> =
        imgs.iter().filter_map(|i| i.parent.clone()).collect();
    imgs.sort_by_key(|i| std::cmp::Reverse(i.config.created.clone().unwrap_or_default()));
    let filters = crate::listing::ImageFilters::new(&filters, &imgs)?;
    let mut out = Vec::new();
    for i in &imgs {
        let tagged = i.names.iter().any(|n| !n.contains('@'));
        if !all && !tagged && parents.contains(&i.id) {
            continue;
        }
        if !filters.image(i) {
            continue;
        }
        let mut summary = image_summary(i);
        // With a reference filter, an image is listed by the names that match it.
        if filters.by_reference() {
            let names: Vec<&String> = i.names.iter().filter(|n| filters.name(n)).collect();
            if names.is_empty() {
                continue;
            }
            summary["RepoTags"] = json!(names
                .iter()
                .filter(|n| !n.contains('@'))
                .map(|n| skiff_image::familiar_name(n))
                .collect::<Vec<_>>());
        }
        out.push(summary);
    }
    ok(Value::Array(out))
}

/// `GET /images/{name}/json`.
pub(super) fn image_inspect(req: &Req, name: &str) -> Answer {
    let e = req.engine()?;
    let i = e.images.resolve(name)?;
    let mut v = crate::inspect::image(&i, i.size);
    // Before API 1.44 an image also carried the config of the container that made it
    // (docker-compose 1.29 reads its volumes); skiff keeps none apart: the image's.
    if req.version < (1, 44) {
        if let Value::Object(m) = &mut v {
            let config = m.get("Config").cloned().unwrap_or(Value::Null);
            m.insert("ContainerConfig".into(), config);
            m.entry("Container").or_insert_with(|| json!(""));
        }
    }
    ok(v)
}

/// `GET /images/{name}/history`: newest first, `<missing>` for entries not made here.
pub(super) fn image_history(req: &Req, name: &str) -> Answer {
    let e = req.engine()?;
    let img = e.images.resolve(name)?;
    let list: Vec<Value> = e
        .images
        .history(name)?
        .into_iter()
        .map(|h| {
            let tags: Vec<String> = if h.id == img.id {
                img.names.clone()
            } else {
                Vec::new()
            };
            json!({
                "Id": h.id,
                "Created": h.created.as_deref().map(unix_time).unwrap_or(0),
                "CreatedBy": h.created_by,
                "Tags": if tags.is_empty() { Value::Null } else { json!(tags) },
                "Size": h.size,
                "Comment": h.comment,
            })
        })
        .collect();
    ok(Value::Array(list))
}

/// `POST /images/{name}/tag?repo&tag`: 201.
pub(super) fn image_tag(req: &Req, name: &str) -> Answer {
    let repo = req
        .query
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad("repository name (repo) is required"))?;
    let target = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    req.engine()?.tag_image(name, &target)?;
    super::no_content(StatusCode::CREATED)
}

/// `DELETE /images/{name}?force`: `[{"Untagged"}, {"Deleted"}]`; 409 while a
/// container uses it (docker's rule: one of several names is only untagged).
pub(super) fn image_remove(req: &Req, name: &str) -> Answer {
    let force = req.flag("force")?;
    let events = req.engine()?.remove_image(name, force)?;
    ok(Value::Array(removed_json(&events)))
}

/// docker's `{"Untagged"}` / `{"Deleted"}` list of an image removal.
fn removed_json(removed: &[skiff_image::RemoveEvent]) -> Vec<Value> {
    removed
        .iter()
        .map(|ev| match ev {
            skiff_image::RemoveEvent::Untagged(n) => json!({ "Untagged": n }),
            skiff_image::RemoveEvent::Deleted(d) => json!({ "Deleted": d }),
        })
        .collect()
}

/// `POST /images/prune`: the images no container uses: dangling ones, or with
/// `dangling=false` (`docker image prune -a`) every one; `{"ImagesDeleted",
/// "SpaceReclaimed"}`.
pub(super) fn image_prune(req: &Req) -> Answer {
    let mut all = false;
    for (name, value) in req.filters()? {
        match (name.as_str(), value.as_str()) {
            ("dangling", "true" | "1") => {}
            ("dangling", "false" | "0") => all = true,
            _ => {
                return Err(ApiError(
                    StatusCode::NOT_IMPLEMENTED,
                    format!(
                    "image prune: the filter {name}={value} is not built yet in skiff's Docker API"
                ),
                ))
            }
        }
    }
    let (removed, freed) = req.engine()?.prune_images(all)?;
    ok(json!({ "ImagesDeleted": removed_json(&removed), "SpaceReclaimed": freed }))
}

/// `POST /build/prune`: skiff's build cache is its untagged intermediate images, so
/// this prunes the dangling ones; `{"CachesDeleted", "SpaceReclaimed"}`.
pub(super) fn build_prune(req: &Req) -> Answer {
    if req.flag("all")? || !req.filters()?.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "build cache prune with --all or filters is not built yet in skiff's Docker API".into(),
        ));
    }
    let (removed, freed) = req.engine()?.prune_images(false)?;
    let deleted: Vec<&String> = removed
        .iter()
        .filter_map(|ev| match ev {
            skiff_image::RemoveEvent::Deleted(id) => Some(id),
            _ => None,
        })
        .collect();
    ok(json!({ "CachesDeleted": deleted, "SpaceReclaimed": freed }))
}

/// `GET /system/df`: the images (with how many containers use each), containers (with
/// their sizes) and volumes (with their sizes and users); skiff keeps no separate
/// build cache (its intermediate images are among the images).
pub(super) fn df(req: &Req) -> Answer {
    let e = req.engine()?;
    let containers = e.list()?;
    let mut layers = 0;
    let images: Vec<Value> = e
        .images
        .all_images()?
        .iter()
        .map(|i| {
            layers += i.size;
            let mut v = image_summary(i);
            let users = containers
                .iter()
                .filter(|c| c.record.image_id == i.id)
                .count();
            v["Containers"] = json!(users);
            v["SharedSize"] = json!(0);
            v
        })
        .collect();
    let cs: Vec<Value> = containers
        .iter()
        .map(|c| {
            let mut v = super::containers::summary(c);
            super::containers::add_sizes(&e, c, &mut v);
            v
        })
        .collect();
    let volumes: Vec<Value> = skiff_engine::volumes::list(&e.root)?
        .into_iter()
        .map(|vol| {
            let users = containers
                .iter()
                .filter(|c| {
                    c.record
                        .mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.name == vol.name)
                })
                .count();
            let size = skiff_engine::files::dir_bytes(Path::new(&vol.mountpoint));
            let mut v = serde_json::to_value(&vol).unwrap_or_default();
            v["UsageData"] = json!({ "Size": size, "RefCount": users });
            v
        })
        .collect();
    ok(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": cs,
        "Volumes": volumes,
        "BuildCache": [],
    }))
}
