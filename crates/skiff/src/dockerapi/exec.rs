//! Exec: `POST /containers/{id}/exec` creates an exec instance (kept in the service,
//! as dockerd keeps them), `POST /exec/{id}/start` runs it (over a hijacked
//! connection, or detached), `GET /exec/{id}/json` reports it, `POST
//! /exec/{id}/resize` sizes its terminal.
//!
//! The process runs in an exec helper ([`Helper::Exec`]), as the node agent's execs
//! do: the engine's exec wants a single-threaded caller, and the service is not one.
//! The exit code is recorded before the stream closes, since the docker CLI asks for
//! it as soon as the stream ends.
//!
//! [`Helper::Exec`]: skiff_engine::reexec::Helper::Exec

use super::attach::{self, After, Source, Streams};
use super::create::{console_size, flag, string, strings};
use super::{no_content, ok, Answer, ApiError, Req};
use hyper::StatusCode;
use serde_json::{json, Value};
use skiff_engine::exec::ExecOptions;
use skiff_engine::Status;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Instant;

/// At most this many exec instances are kept; the oldest finished ones make room.
const MAX_EXECS: usize = 1024;
/// The descriptor an exec helper reads terminal sizes from.
const RESIZE_FD: i32 = 3;

enum Run {
    Created,
    /// The helper's pid.
    Running(u32),
    Exited(i32),
}

struct Exec {
    container: String,
    opts: ExecOptions,
    streams: Streams,
    detach_keys: String,
    run: Run,
    /// Where terminal sizes go ("COLS ROWS" lines), while it runs with a terminal.
    resize: Option<std::fs::File>,
    created: Instant,
}

/// The exec instances, by id.
#[derive(Default)]
pub(crate) struct Execs(Mutex<HashMap<String, Exec>>);

impl Execs {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Exec>>, ApiError> {
        self.0.lock().map_err(|_| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the service's state is poisoned".into(),
            )
        })
    }

    fn finish(&self, id: &str, code: i32) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(x) = m.get_mut(id) {
                x.run = Run::Exited(code);
                x.resize = None;
            }
        }
    }

    /// Drops the instances of a removed container.
    pub(crate) fn forget_container(&self, container: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, x| x.container != container || matches!(x.run, Run::Running(_)));
        }
    }
}

fn no_such(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("No such exec instance: {id}"),
    )
}

/// The container must be running (and not paused) for an exec.
fn running(req: &Req, id: &str) -> Result<String, ApiError> {
    let c = req.engine()?.get(id)?;
    let cid = c.record.id;
    match c.state.status {
        Status::Paused => Err(ApiError(
            StatusCode::CONFLICT,
            format!("Container {cid} is paused, unpause the container before exec"),
        )),
        s if !s.is_active() || s == Status::Restarting => Err(ApiError(
            StatusCode::CONFLICT,
            format!("Container {cid} is not running"),
        )),
        _ => Ok(cid),
    }
}

/// `POST /containers/{id}/exec`: 201 `{"Id"}`.
pub(super) fn create(req: &Req, id: &str) -> Answer {
    let b = req.json_body("exec create")?;
    let cmd = strings(b.get("Cmd"), "Cmd")?;
    if cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let opts = ExecOptions {
        cmd,
        env: strings(b.get("Env"), "Env")?,
        workdir: string(b.get("WorkingDir"), "WorkingDir")?,
        user: string(b.get("User"), "User")?,
        privileged: flag(b.get("Privileged"), "Privileged")?,
        tty: flag(b.get("Tty"), "Tty")?,
        console_size: console_size(b.get("ConsoleSize"))?,
    };
    let streams = Streams {
        stdin: flag(b.get("AttachStdin"), "AttachStdin")?,
        stdout: flag(b.get("AttachStdout"), "AttachStdout")?,
        stderr: flag(b.get("AttachStderr"), "AttachStderr")?,
        tty: opts.tty,
    };
    let detach_keys = string(b.get("DetachKeys"), "DetachKeys")?.unwrap_or_default();
    let container = running(req, id)?;
    // The rules (environment, user, capabilities) are checked now, as docker does.
    req.engine()?.exec_plan(&container, &opts)?;
    let exec_id = skiff_engine::names::new_id();
    let mut m = req.svc.execs.lock()?;
    if m.len() >= MAX_EXECS {
        let mut done: Vec<(Instant, String)> = m
            .iter()
            .filter(|(_, x)| matches!(x.run, Run::Exited(_)))
            .map(|(k, x)| (x.created, k.clone()))
            .collect();
        done.sort();
        for (_, k) in done.into_iter().take(m.len() + 1 - MAX_EXECS) {
            m.remove(&k);
        }
        if m.len() >= MAX_EXECS {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("{MAX_EXECS} exec instances exist and none has finished"),
            ));
        }
    }
    m.insert(
        exec_id.clone(),
        Exec {
            container,
            opts,
            streams,
            detach_keys,
            run: Run::Created,
            resize: None,
            created: Instant::now(),
        },
    );
    Ok(super::json_response(
        StatusCode::CREATED,
        &json!({ "Id": exec_id }),
    ))
}

/// `POST /exec/{id}/start` with `{"Detach", "Tty", "ConsoleSize"}`: the stream over
/// a hijacked connection, or 200 at once when detached.
pub(super) fn start(req: &Req, id: &str) -> Answer {
    let b = req.json_body("exec start")?;
    let detach = flag(b.get("Detach"), "Detach")?;
    let size = console_size(b.get("ConsoleSize"))?;
    let (container, mut opts, streams) = {
        let m = req.svc.execs.lock()?;
        let x = m.get(id).ok_or_else(|| no_such(id))?;
        match x.run {
            Run::Created => {}
            Run::Running(_) => {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("Error: Exec command {id} is already running"),
                ))
            }
            Run::Exited(_) => {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    format!("Error: Exec command {id} has already run"),
                ))
            }
        }
        (x.container.clone(), x.opts.clone(), x.streams)
    };
    if size.is_some() {
        opts.console_size = size;
    }
    running(req, &container)?;
    let up = if detach { None } else { Some(req.hijack()?) };
    let attached = up.is_some();
    let e = req.engine()?;
    let (ours, theirs) = attach::pipes(
        attached && streams.stdin,
        attached && streams.stdout,
        attached && streams.stderr && !opts.tty,
    )
    .map_err(|e| anyhow::anyhow!("making the exec pipes: {e}"))?;
    let resize = if opts.tty {
        Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| anyhow::anyhow!("making the resize pipe: {e}"))?,
        )
    } else {
        None
    };
    let helper = skiff_engine::reexec::Helper::Exec {
        id: container.clone(),
        stdin: theirs[0].is_some(),
        resize_fd: resize.as_ref().map(|_| RESIZE_FD),
        opts: opts.clone(),
    };
    let mut cmd = tokio::process::Command::from(helper.command(&e.exe, &e.root));
    let [i, o, er] = theirs;
    let stdio = |fd: Option<std::os::fd::OwnedFd>| {
        fd.map(std::process::Stdio::from)
            .unwrap_or_else(std::process::Stdio::null)
    };
    cmd.stdin(stdio(i)).stdout(stdio(o)).stderr(stdio(er));
    if let Some((r, _)) = &resize {
        let rfd = r.as_raw_fd();
        // SAFETY: dup2 only, between fork and exec; the read end stays open here
        // until after the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(rfd, RESIZE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|err| anyhow::anyhow!("starting the exec helper: {err}"))?;
    drop(cmd);
    {
        let mut m = req.svc.execs.lock()?;
        if let Some(x) = m.get_mut(id) {
            x.run = Run::Running(child.id().unwrap_or(0));
            x.resize = resize.map(|(_, w)| std::fs::File::from(w));
        }
    }
    let svc = req.svc.clone();
    let exec_id = id.to_string();
    let after: After = Box::pin(async move {
        use std::os::unix::process::ExitStatusExt;
        let code = match child.wait().await {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
            Err(_) => 126,
        };
        svc.execs.finish(&exec_id, code);
    });
    let rt = tokio::runtime::Handle::current();
    match up {
        Some(up) => {
            rt.spawn(attach::session(
                up,
                Source::Pipes(ours),
                streams,
                Vec::new(),
                Some(after),
            ));
            Ok(attach::upgraded(opts.tty))
        }
        None => {
            rt.spawn(after);
            no_content(StatusCode::OK)
        }
    }
}

/// The process an exec helper started (its only child), for `Pid`.
fn exec_pid(helper: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(0)
}

/// `GET /exec/{id}/json`.
pub(super) fn inspect(req: &Req, id: &str) -> Answer {
    let m = req.svc.execs.lock()?;
    let x = m.get(id).ok_or_else(|| no_such(id))?;
    let (running, code, pid) = match x.run {
        Run::Created => (false, Value::Null, 0),
        Run::Running(h) => (true, Value::Null, exec_pid(h)),
        Run::Exited(c) => (false, json!(c), 0),
    };
    ok(json!({
        "ID": id,
        "Running": running,
        "ExitCode": code,
        "ProcessConfig": {
            "tty": x.opts.tty,
            "entrypoint": x.opts.cmd.first(),
            "arguments": x.opts.cmd.get(1..).unwrap_or_default(),
            "privileged": x.opts.privileged,
            "user": x.opts.user.clone().unwrap_or_default(),
        },
        "OpenStdin": x.streams.stdin,
        "OpenStderr": x.streams.stderr,
        "OpenStdout": x.streams.stdout,
        "CanRemove": false,
        "ContainerID": x.container,
        "DetachKeys": x.detach_keys,
        "Pid": pid,
    }))
}

/// `POST /exec/{id}/resize?h&w`.
pub(super) fn resize(req: &Req, id: &str) -> Answer {
    use std::io::Write;
    let (cols, rows) = attach::size(req)?;
    let mut m = req.svc.execs.lock()?;
    let x = m.get_mut(id).ok_or_else(|| no_such(id))?;
    if !x.opts.tty {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("exec {id} has no terminal to resize"),
        ));
    }
    let Some(w) = x.resize.as_mut() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("exec {id} is not running"),
        ));
    };
    w.write_all(format!("{cols} {rows}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("resizing exec {id}: {e}"))?;
    no_content(StatusCode::OK)
}
