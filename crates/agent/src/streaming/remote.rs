//! exec and attach, independent of the wire protocol: a process (or a container's
//! attach socket) on one side, an [`Io`] (stdin, resize, and an ordered stream of
//! stdout/stderr/final status) on the other. The SPDY glue for kubectl before 1.30
//! is here too; the WebSocket glue is in [`super::ws`].

use super::spdy;
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Output towards the client, in order; `Done` is last.
#[derive(Debug)]
pub enum Out {
    Stdout(Bytes),
    Stderr(Bytes),
    Done(Value),
}

/// The client's side of an exec or attach session.
pub struct Io {
    /// None: the client sends no stdin; a closed channel: stdin reached EOF.
    pub stdin: Option<mpsc::UnboundedReceiver<Bytes>>,
    /// Terminal size changes (columns, rows).
    pub resize: Option<mpsc::UnboundedReceiver<(u16, u16)>>,
    pub out: mpsc::UnboundedSender<Out>,
}

/// The status the error channel carries at the end (v4 and later): Success, or a
/// Failure with reason NonZeroExitCode and an ExitCode cause.
pub fn exit_status(code: i32) -> Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [], exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        })
    }
}

/// A failure before or around the process (the error channel's InternalError).
pub fn failure(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500
    })
}

/// Runs `command` in container `id` through the runtime's Exec (with skiff's engine,
/// an exec helper process: the engine's exec wants a single-threaded caller).
pub async fn exec(
    rt: &dyn crate::cri::RuntimeService,
    id: &str,
    command: &[String],
    tty: bool,
    mut io: Io,
) {
    // kubectl sends its terminal's size first thing; start the process with it.
    let mut size = None;
    if let Some(rx) = io.resize.as_mut() {
        if let Ok(Some(s)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            size = Some(s);
        }
    }
    let target = rt.exec(&crate::cri::ExecRequest {
        container_id: id.to_string(),
        cmd: command.to_vec(),
        tty,
        stdin: io.stdin.is_some(),
        size,
    });
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            let _ = io.out.send(Out::Done(failure(&format!("exec: {e}"))));
            return;
        }
    };
    let mut cmd = tokio::process::Command::new(&target.program);
    cmd.args(&target.args);
    cmd.stdin(if io.stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    // Terminal size changes travel to the exec command on its resize descriptor, one
    // "COLS ROWS" line each.
    let resize_pipe = match target.resize_fd {
        Some(fd) => nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .ok()
            .map(|p| (p, fd)),
        None => None,
    };
    if let Some(((r, _), fd)) = &resize_pipe {
        use std::os::fd::AsRawFd;
        let (rfd, fd) = (r.as_raw_fd(), *fd);
        // SAFETY: dup2 only, between fork and exec; the pipe's read end stays open in
        // the parent until after the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(rfd, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = io
                .out
                .send(Out::Done(failure(&format!("starting exec: {e}"))));
            return;
        }
    };
    let resize_writer = resize_pipe.map(|((r, w), _)| {
        drop(r);
        std::fs::File::from(w)
    });
    if let (Some(mut rx), Some(w)) = (io.resize.take(), resize_writer) {
        let mut w = tokio::fs::File::from_std(w);
        tokio::spawn(async move {
            while let Some((cols, rows)) = rx.recv().await {
                if w.write_all(format!("{cols} {rows}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    if let (Some(mut rx), Some(mut stdin)) = (io.stdin.take(), child.stdin.take()) {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if stdin.write_all(&b).await.is_err() {
                    return;
                }
            }
            // EOF from the client: close the process's stdin.
            let _ = stdin.shutdown().await;
        });
    }
    let o = pump(child.stdout.take(), io.out.clone(), Out::Stdout);
    let e = pump(child.stderr.take(), io.out.clone(), Out::Stderr);
    let _ = tokio::join!(o, e);
    let code = match child.wait().await {
        Ok(s) => s.code().unwrap_or(137),
        Err(_) => 126,
    };
    let _ = io.out.send(Out::Done(exit_status(code)));
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    r: Option<R>,
    out: mpsc::UnboundedSender<Out>,
    wrap: fn(Bytes) -> Out,
) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(wrap(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                    return;
                }
            }
        }
    }
}

/// Attaches to the engine container's stdio through its monitor's socket (raw with a
/// terminal, docker's stdcopy framing without).
///
/// The end of the client's input closes the container's stdin only with
/// `stdin_once` (the pod's `stdinOnce`); otherwise the container keeps it open for
/// the next client, and the session lasts until the container exits.
pub async fn attach(
    rt: &dyn crate::cri::RuntimeService,
    id: &str,
    tty: bool,
    stdin_once: bool,
    mut io: Io,
) {
    let sock = match rt.attach(id) {
        Ok(s) => tokio::net::UnixStream::connect(&s.path).await,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    };
    let sock = match sock {
        Ok(s) => s,
        Err(e) => {
            let _ = io.out.send(Out::Done(failure(&format!(
                "attaching to the container: {e}"
            ))));
            return;
        }
    };
    let (mut rd, mut wr) = sock.into_split();
    let mut keep = None;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(mut rx) = io.stdin.take() {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            if stdin_once {
                let _ = wr.shutdown().await;
            } else {
                // Hold the write side open until the session ends.
                let _ = done_rx.await;
                drop(wr);
            }
        });
    } else {
        keep = Some(wr);
    }
    if tty {
        pump(Some(rd), io.out.clone(), Out::Stdout).await;
    } else {
        let mut head = [0u8; 8];
        loop {
            if rd.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let mut data = vec![0u8; len];
            if rd.read_exact(&mut data).await.is_err() {
                break;
            }
            let data = Bytes::from(data);
            let o = if head[0] == 2 {
                Out::Stderr(data)
            } else {
                Out::Stdout(data)
            };
            if io.out.send(o).is_err() {
                return;
            }
        }
    }
    drop(keep);
    drop(done_tx);
    let _ = io.out.send(Out::Done(exit_status(0)));
}

/// What an exec or attach request asks for (its query parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The SPDY side of exec/attach: waits for the streams kubectl opens (error, and
/// stdin/stdout/stderr/resize as asked), then returns the [`Io`] and the task that
/// carries output back. `version` is the negotiated `X-Stream-Protocol-Version`.
pub async fn spdy_io<IO>(conn: IO, version: &str, want: Want) -> Option<Io>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (writer, mut streams) = spdy::serve(conn);
    let v3plus = matches!(version, "v3.channel.k8s.io" | "v4.channel.k8s.io");
    let expected = 1
        + want.stdin as usize
        + want.stdout as usize
        + (want.stderr && !want.tty) as usize
        + (want.tty && v3plus) as usize;
    let (mut error, mut stdin, mut stdout, mut stderr, mut resize) = (None, None, None, None, None);
    let mut got = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while got < expected {
        let s = tokio::select! {
            s = streams.recv() => s?,
            _ = &mut deadline => {
                writer.goaway();
                return None;
            }
        };
        got += 1;
        match spdy::header(&s.headers, "streamtype").unwrap_or("") {
            "error" => error = Some(s),
            "stdin" => stdin = Some(s),
            "stdout" => stdout = Some(s),
            "stderr" => stderr = Some(s),
            "resize" => resize = Some(s),
            _ => got -= 1,
        }
    }
    let error = error?;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let (rs_tx, rs_rx) = mpsc::unbounded_channel();
    if let Some(mut r) = resize {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(b) = r.data.recv().await {
                buf.extend_from_slice(&b);
                // A stream of JSON objects {"Width":..,"Height":..}.
                let mut de = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                let mut consumed = 0;
                while let Some(Ok(v)) = de.next() {
                    consumed = de.byte_offset();
                    let w = v.get("Width").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let h = v.get("Height").and_then(Value::as_u64).unwrap_or(0) as u16;
                    let _ = rs_tx.send((w, h));
                }
                buf.drain(..consumed);
            }
        });
    }
    let ids = (
        stdout.as_ref().map(|s| s.id),
        stderr.as_ref().map(|s| s.id),
        stdin.as_ref().map(|s| s.id),
    );
    let v4 = version == "v4.channel.k8s.io";
    tokio::spawn(async move {
        let (out_id, err_id, in_id) = ids;
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Stdout(b) => {
                    if let Some(id) = out_id {
                        writer.data(id, &b);
                    }
                }
                Out::Stderr(b) => {
                    if let Some(id) = err_id.or(out_id) {
                        writer.data(id, &b);
                    }
                }
                Out::Done(status) => {
                    for id in [out_id, err_id].into_iter().flatten() {
                        writer.fin(id);
                    }
                    let failed = status.get("status").and_then(Value::as_str) != Some("Success");
                    if v4 {
                        writer.data(error.id, &serde_json::to_vec(&status).unwrap_or_default());
                    } else if failed {
                        let msg = status.get("message").and_then(Value::as_str).unwrap_or("");
                        writer.data(error.id, msg.as_bytes());
                    }
                    writer.fin(error.id);
                    if let Some(id) = in_id {
                        writer.reset(id);
                    }
                    writer.goaway();
                    break;
                }
            }
        }
    });
    Some(Io {
        stdin: stdin.map(|s| s.data),
        resize: want.tty.then_some(rs_rx),
        out: out_tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_shaped_as_kubelet_sends_them() {
        assert_eq!(exit_status(0)["status"], "Success");
        let s = exit_status(3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }
}
