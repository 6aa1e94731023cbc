//! `/containers/…`: list, inspect and the lifecycle calls that need no streams.

use super::{no_content, ok, Answer, ApiError, Req};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use skiff_engine::{Container, Engine};

/// Seconds since the epoch of an RFC 3339 time (0 if it is not one).
pub(super) fn unix_time(t: &str) -> i64 {
    crate::listing::unix_time_ns(t).div_euclid(1_000_000_000)
}

/// One container in the shape of `GET /containers/json`.
pub(super) fn summary(c: &Container) -> Value {
    let r = &c.record;
    let ports: Vec<Value> = crate::inspect::published_ports(c)
        .iter()
        .map(|p| {
            json!({
                "IP": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip },
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.proto,
            })
        })
        .collect();
    let inspected = crate::inspect::container(c);
    let networks = inspected
        .pointer("/NetworkSettings/Networks")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mounts: Vec<Value> = r
        .mounts
        .iter()
        .map(|m| {
            json!({
                "Type": m.kind,
                "Name": m.name,
                "Source": m.source,
                "Destination": m.destination,
                "Driver": if m.kind == "volume" { "local" } else { "" },
                "Mode": m.mode,
                "RW": m.rw,
                "Propagation": m.propagation,
            })
        })
        .collect();
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": crate::inspect::command_line(c),
        "Created": unix_time(&r.created),
        "Ports": ports,
        "Labels": r.labels,
        "State": c.state.status.as_str(),
        "Status": crate::inspect::status_text(c),
        "HostConfig": { "NetworkMode": if r.host.network_mode.is_empty() { "bridge" } else { &r.host.network_mode } },
        "NetworkSettings": { "Networks": networks },
        "Mounts": mounts,
    })
}

/// docker's `SizeRw` (the bytes of the writable layer) and `SizeRootFs` (those and
/// the image's).
pub(super) fn add_sizes(e: &Engine, c: &Container, v: &mut Value) {
    let rw = skiff_engine::files::dir_bytes(&c.dir.join("upper"));
    let image = e
        .images
        .resolve(&c.record.image_id)
        .map(|i| i.size)
        .unwrap_or(0);
    if let Value::Object(m) = v {
        m.insert("SizeRw".into(), json!(rw));
        m.insert("SizeRootFs".into(), json!(rw + image));
    }
}

/// `GET /containers/json?all&limit&size&filters`.
pub(super) fn list(req: &Req) -> Answer {
    let size = req.flag("size")?;
    let all = req.flag("all")?;
    let limit = req.int("limit")?.filter(|n| *n > 0);
    let filters = req.filters()?;
    let e = req.engine()?;
    let listing = crate::listing::Listing {
        all,
        limit: limit.map(|l| l as usize),
        filters,
    };
    let mut out = Vec::new();
    for c in listing.select(e.list()?)? {
        let mut v = summary(&c);
        if size {
            add_sizes(&e, &c, &mut v);
        }
        out.push(v);
    }
    ok(Value::Array(out))
}

/// `GET /containers/{id}/json`.
pub(super) fn inspect(req: &Req, id: &str) -> Answer {
    let e = req.engine()?;
    let c = e.get(id)?;
    let mut v = crate::inspect::container(&c);
    if req.flag("size")? {
        add_sizes(&e, &c, &mut v);
    }
    if let Value::Object(m) = &mut v {
        m.entry("Id").or_insert_with(|| json!(c.record.id));
    }
    ok(v)
}

/// `POST /containers/{id}/stop?t=` (and `signal`): 204, or 304 if it was not running.
pub(super) fn stop(req: &Req, id: &str) -> Answer {
    let signal = req.query.get("signal").filter(|s| !s.is_empty());
    let t = req.int("t")?;
    let e = req.engine()?;
    let c = e.get(id)?;
    if !c.state.status.is_active() {
        return no_content(StatusCode::NOT_MODIFIED);
    }
    e.stop_with(&c.record.id, t, signal.map(String::as_str))?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/kill?signal=`: 204, 409 if it is not running.
/// `POST /containers/prune`: every container not running; `{"ContainersDeleted",
/// "SpaceReclaimed"}` (the bytes of their writable layers).
pub(super) fn prune(req: &Req) -> Answer {
    req.no_filters("container prune")?;
    let e = req.engine()?;
    let mut deleted = Vec::new();
    let mut freed = 0;
    for c in e.list()? {
        if c.state.status.is_active() {
            continue;
        }
        let size = skiff_engine::files::dir_bytes(&c.dir.join("upper"));
        e.remove(&c.record.id, false, false)?;
        req.svc.waiting.forget(&c.record.id);
        req.svc.execs.forget_container(&c.record.id);
        freed += size;
        deleted.push(c.record.id);
    }
    super::ok(json!({ "ContainersDeleted": deleted, "SpaceReclaimed": freed }))
}

pub(super) fn kill(req: &Req, id: &str) -> Answer {
    let signal = req
        .query
        .get("signal")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "KILL".into());
    skiff_engine::ops::parse_signal(&signal)?;
    let e = req.engine()?;
    let c = e.get(id)?;
    if !c.state.status.is_active() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "Cannot kill container: {id}: Container {} is not running",
                c.record.id
            ),
        ));
    }
    e.kill(&c.record.id, &signal)?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub(super) fn pause(req: &Req, id: &str, paused: bool) -> Answer {
    let e = req.engine()?;
    e.pause(id, paused)?;
    no_content(StatusCode::NO_CONTENT)
}

/// What a wait waits for.
#[derive(PartialEq, Clone, Copy)]
enum Until {
    NotRunning,
    NextExit,
    Removed,
}

/// `POST /containers/{id}/wait?condition=`: 200 at once (as dockerd: `docker run`
/// starts the container only once its wait is answered), then `{"StatusCode": n}` when
/// the condition holds: `not-running` (the default), `next-exit` (an exit after this
/// call), `removed`. The waiting thread stops when the client goes away.
pub(super) fn wait(req: &Req, id: &str) -> Answer {
    let until = match req.query.get("condition").map(|s| s.as_str()) {
        None | Some("") | Some("not-running") => Until::NotRunning,
        Some("next-exit") => Until::NextExit,
        Some("removed") => Until::Removed,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "invalid condition: {other:?} (not-running, next-exit or removed)"
            )))
        }
    };
    let e = req.engine()?;
    let c = e.get(id)?;
    let svc = req.svc.clone();
    super::streamed("application/json", "docker-api-wait", move |tx| {
        let exited = |id: &str| svc.exits.code(id);
        if let Some(v) = wait_for(&e, c, until, || tx.is_closed(), exited) {
            let _ = tx.blocking_send(Bytes::from(format!("{v}\n")));
        }
    })
}

/// Polls `c` until `until` holds (its answer) or `gone()` (None).
/// Exit codes of auto-removed containers the service started, recorded from their
/// monitors' reports (their state is gone with them): the newest few hundred.
#[derive(Default)]
pub(crate) struct Exits(std::sync::Mutex<std::collections::VecDeque<(String, i32)>>);

impl Exits {
    const KEEP: usize = 256;

    pub(crate) fn record(&self, id: &str, code: i32) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= Self::KEEP {
                q.pop_front();
            }
            q.push_back((id.to_string(), code));
        }
    }

    fn code(&self, id: &str) -> Option<i32> {
        let q = self.0.lock().ok()?;
        q.iter().rev().find(|(i, _)| i == id).map(|(_, c)| *c)
    }
}

fn wait_for(
    e: &Engine,
    mut c: Container,
    until: Until,
    gone: impl Fn() -> bool,
    exited: impl Fn(&str) -> Option<i32>,
) -> Option<Value> {
    let finished_before = c.state.finished_at.clone();
    let mut delay = std::time::Duration::from_millis(2);
    loop {
        let done = match until {
            Until::NotRunning => !c.state.status.is_active(),
            Until::NextExit => {
                !c.state.status.is_active()
                    && c.state.finished_at.is_some()
                    && c.state.finished_at != finished_before
            }
            Until::Removed => false,
        };
        if done {
            return Some(json!({ "StatusCode": c.state.exit_code }));
        }
        if gone() {
            return None;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(50));
        if c.reload().is_err() {
            // Removed (also by --rm): the exit its monitor reported, if the service
            // started it (the report follows the removal closely), else the last
            // state known.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            let code = loop {
                if let Some(code) = exited(&c.record.id) {
                    break code;
                }
                if c.record.host.auto_remove && !gone() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                break c.state.exit_code;
            };
            return Some(json!({ "StatusCode": code }));
        }
        if c.state.monitor_pid > 0
            && c.state.status.is_active()
            && skiff_engine::state::process_start_time(c.state.monitor_pid)
                != Some(c.state.monitor_start)
        {
            // Its monitor died: settle its state.
            let _ = e.reconcile();
        }
    }
}

/// `DELETE /containers/{id}?force&v`: 204; 409 for a running container without force.
pub(super) fn remove(req: &Req, id: &str) -> Answer {
    if req.flag("link")? {
        return Err(ApiError::bad("links are not supported by skiff"));
    }
    let force = req.flag("force")?;
    let volumes = req.flag("v")?;
    let e = req.engine()?;
    let c = e.get(id)?;
    if c.state.status.is_active() && !force {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove",
                c.record.name,
                c.state.status.as_str()
            ),
        ));
    }
    e.remove(&c.record.id, force, volumes)?;
    req.svc.waiting.forget(&c.record.id);
    req.svc.execs.forget_container(&c.record.id);
    no_content(StatusCode::NO_CONTENT)
}

/// One log entry as the API streams it: framed by stream for a container without a
/// TTY (docker's multiplexed format: stream, three zero bytes, big-endian length),
/// raw for one with a TTY.
pub(super) fn log_frame(en: &skiff_engine::logs::Entry, timestamps: bool, tty: bool) -> Bytes {
    let mut payload = Vec::with_capacity(en.log.len() + 32);
    if timestamps {
        payload.extend_from_slice(en.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(en.log.as_bytes());
    if tty {
        return Bytes::from(payload);
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(if en.stream == "stderr" { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Bytes::from(out)
}

/// `GET /containers/{id}/logs?stdout&stderr&follow&timestamps&tail&since&until`.
pub(super) fn logs(req: &Req, id: &str) -> Answer {
    let (want_out, want_err) = (req.flag("stdout")?, req.flag("stderr")?);
    if !want_out && !want_err {
        return Err(ApiError::bad(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let follow = req.flag("follow")?;
    let timestamps = req.flag("timestamps")?;
    let tail = match req.query.get("tail").map(|s| s.as_str()) {
        None | Some("") | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad(format!("invalid value for tail: {n:?} (a number or all)"))
        })?),
    };
    let since = req.epoch_ns("since")?;
    let until = req.epoch_ns("until")?;
    let e = req.engine()?;
    let mut c = e.get(id)?;
    let tty = c.record.tty;
    let keep = move |en: &skiff_engine::logs::Entry| {
        let stream_ok = if en.stream == "stderr" {
            want_err
        } else {
            want_out
        };
        let t = i128::from(crate::listing::unix_time_ns(&en.time));
        stream_ok && since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
    };
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    super::streamed(content_type, "docker-api-logs", move |tx| {
        let path = c.log_path();
        // Streamed from the file, never held whole.
        if !skiff_engine::logs::each_kept(&path, tail, keep, |en| {
            tx.blocking_send(log_frame(en, timestamps, tty)).is_ok()
        }) {
            return;
        }
        if follow && until.is_none() {
            skiff_engine::logs::follow_while(
                &path,
                || !tx.is_closed() && c.reload().is_ok() && c.state.status.is_active(),
                |en| !keep(en) || tx.blocking_send(log_frame(en, timestamps, tty)).is_ok(),
            );
        }
    })
}

/// `GET /containers/{id}/changes`: `[{"Path", "Kind"}]` (null when nothing changed,
/// as dockerd's).
pub(super) fn changes(req: &Req, id: &str) -> Answer {
    let list = req.engine()?.changes(id)?;
    if list.is_empty() {
        return ok(Value::Null);
    }
    ok(Value::Array(
        list.into_iter()
            .map(|(p, k)| json!({ "Path": p, "Kind": k }))
            .collect(),
    ))
}

/// `POST /containers/{id}/rename?name=`: 204; 409 for a name in use.
pub(super) fn rename(req: &Req, id: &str) -> Answer {
    let name = req
        .query
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("rename needs a new name (name=)"))?;
    let e = req.engine()?;
    e.rename(id, name.trim_start_matches('/'))?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /commit?container&repo&tag&comment&author&pause&changes`: the container's
/// changes as a new image (201 `{"Id"}`). A config in the body sets the fields
/// `docker commit` can set (Cmd, Entrypoint, Env, Labels, User, WorkingDir); others
/// are refused.
pub(super) fn commit(req: &Req) -> Answer {
    let container = req
        .query
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad("commit needs a container (container=)"))?;
    let repo = req.query.get("repo").filter(|r| !r.is_empty());
    let reference = match (repo, req.query.get("tag").filter(|t| !t.is_empty())) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.clone()),
        (None, Some(_)) => return Err(ApiError::bad("a tag needs a repository (repo=)")),
        (None, None) => None,
    };
    if let Some(r) = &reference {
        skiff_image::parse_reference(r)
            .map_err(|e| ApiError::bad(format!("invalid reference format: {e}")))?;
    }
    let mut changes = req.all("changes");
    let body = if req.body.trim_ascii() == b"null" {
        json!({})
    } else {
        req.json_body("commit")?
    };
    // The body's config, as the Dockerfile instructions that set the same fields.
    for (k, v) in body.as_object().into_iter().flatten() {
        if v.is_null() {
            continue;
        }
        let words = |v: &Value| -> Result<String, ApiError> {
            serde_json::to_string(v)
                .map_err(|e| ApiError::bad(format!("invalid {k} in the commit body: {e}")))
        };
        match k.as_str() {
            "Cmd" => changes.push(format!("CMD {}", words(v)?)),
            "Entrypoint" => changes.push(format!("ENTRYPOINT {}", words(v)?)),
            "Env" => {
                for kv in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    changes.push(format!(
                        "ENV {k}={}",
                        serde_json::to_string(v).unwrap_or_default()
                    ));
                }
            }
            "Labels" => {
                for (lk, lv) in v.as_object().into_iter().flatten() {
                    changes.push(format!(
                        "LABEL {}={}",
                        words(&json!(lk))?,
                        words(&json!(lv.as_str().unwrap_or("")))?
                    ));
                }
            }
            "User" => changes.push(format!("USER {}", v.as_str().unwrap_or(""))),
            "WorkingDir" => changes.push(format!("WORKDIR {}", v.as_str().unwrap_or(""))),
            // What docker-py and the CLI send empty.
            "Hostname" | "Domainname" | "AttachStdin" | "AttachStdout" | "AttachStderr" | "Tty"
            | "OpenStdin" | "StdinOnce" | "Image" => {}
            other => {
                return Err(ApiError(
                    StatusCode::NOT_IMPLEMENTED,
                    format!("setting {other} in a commit's config is not supported by skiff yet"),
                ))
            }
        }
    }
    let e = req.engine()?;
    let pause = match req.query.get("pause").map(String::as_str) {
        None | Some("") => true,
        _ => req.flag("pause")?,
    };
    let img = e.commit(
        container,
        reference.as_deref(),
        &skiff_engine::files::CommitOptions {
            author: req.query.get("author").filter(|a| !a.is_empty()).cloned(),
            message: req.query.get("comment").filter(|c| !c.is_empty()).cloned(),
            pause,
            changes,
        },
    )?;
    Ok(super::json_response(
        StatusCode::CREATED,
        &json!({ "Id": img.id }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames_and_times() {
        let en = skiff_engine::logs::Entry {
            log: "hi\n".into(),
            stream: "stderr".into(),
            time: "2026-01-01T00:00:00.5Z".into(),
        };
        assert_eq!(
            &log_frame(&en, false, false)[..],
            b"\x02\0\0\0\0\0\0\x03hi\n"
        );
        assert_eq!(&log_frame(&en, false, true)[..], b"hi\n");
        let ts = log_frame(&en, true, false);
        assert_eq!(&ts[..8], b"\x02\0\0\0\0\0\0\x1a");
        let since = |v: &str| {
            Req::with_query([("since".to_string(), v.to_string())].into()).epoch_ns("since")
        };
        assert_eq!(since("1.5").unwrap(), Some(1_500_000_000));
        assert_eq!(
            since("1700000000").unwrap(),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(since("0").unwrap(), None);
        assert!(since("yesterday").is_err());
        assert!(since("1.1234567890").is_err());
    }
}
