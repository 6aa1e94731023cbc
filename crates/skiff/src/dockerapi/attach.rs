//! Hijacked streams: `POST /containers/{id}/attach` (and the exec sessions' streams,
//! see [`super::exec`]). The client asks with `Upgrade: tcp`, gets `101 UPGRADED`,
//! and the connection then carries the process's output (docker's multiplexed
//! frames without a terminal, raw bytes with one) and the client's input.
//!
//! An attach to a running container goes through its monitor's `attach.sock`. An
//! attach to a container that is not running (`docker run` attaches before it
//! starts) waits for the container's next start through the service: the first such
//! client gets the container's stdio as pipes handed to the monitor at start, so no
//! output is lost; later ones attach through the socket once it runs.

use super::{no_content, Answer, ApiError, Body, Req};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use skiff_engine::monitor::attach_frame;
use skiff_engine::ops::Attach;
use skiff_engine::{Container, Status};
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};

/// The most of a container's log an attach with `logs=1` replays (its end).
const MAX_PRELUDE: usize = 16 << 20;
use std::pin::Pin;
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// At most this many attach requests wait for one container's start (the oldest
/// goes first).
const MAX_WAITING: usize = 16;

/// Our ends of a process's stdio pipes: the write end of its stdin, the read ends of
/// its stdout and stderr (None where not attached).
#[derive(Default)]
pub(crate) struct Pipes {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Pipes for the streams asked for: ours, and the process's ends (stdin's read end,
/// stdout's and stderr's write ends).
pub(crate) fn pipes(
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> std::io::Result<(Pipes, [Option<OwnedFd>; 3])> {
    let pair = |on: bool| -> std::io::Result<Option<(OwnedFd, OwnedFd)>> {
        if !on {
            return Ok(None);
        }
        Ok(Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?))
    };
    let (i, o, e) = (pair(stdin)?, pair(stdout)?, pair(stderr)?);
    let (mut ours, mut theirs) = (Pipes::default(), [None, None, None]);
    if let Some((r, w)) = i {
        ours.stdin = Some(w);
        theirs[0] = Some(r);
    }
    if let Some((r, w)) = o {
        ours.stdout = Some(r);
        theirs[1] = Some(w);
    }
    if let Some((r, w)) = e {
        ours.stderr = Some(r);
        theirs[2] = Some(w);
    }
    Ok((ours, theirs))
}

/// Where a session's streams come from.
pub(crate) enum Source {
    /// Pipes to the process itself.
    Pipes(Pipes),
    /// A running container's monitor socket (frames, both ways raw input).
    Socket(std::os::unix::net::UnixStream),
    /// Nothing more (a logs-only attach, or a start that failed).
    Nothing,
}

/// What a session sends on: which output streams, and whether the client's input
/// goes to the process.
#[derive(Clone, Copy)]
pub(crate) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Work done once the output has ended, before the connection closes (an exec's
/// exit code is recorded there: the client asks for it as soon as the stream ends).
pub(crate) type After = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An attach request waiting for its container's next start.
struct Waiter {
    streams: Streams,
    tx: oneshot::Sender<Source>,
}

/// The attach requests waiting for their container's next start, by container id.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<String, Vec<Waiter>>>);

impl Waiting {
    /// Adds a waiter; past [`MAX_WAITING`] for one container the oldest is let go
    /// (its connection closes): a client that left cannot be told from one that
    /// only finished sending, so the bound is what keeps them from piling up.
    fn add(&self, id: &str, w: Waiter) -> Result<(), ApiError> {
        let mut m = self.0.lock().map_err(|_| poisoned())?;
        let list = m.entry(id.to_string()).or_default();
        list.retain(|w| !w.tx.is_closed());
        if list.len() >= MAX_WAITING {
            list.remove(0);
        }
        list.push(w);
        Ok(())
    }

    fn take(&self, id: &str) -> Vec<Waiter> {
        let mut list = self
            .0
            .lock()
            .ok()
            .and_then(|mut m| m.remove(id))
            .unwrap_or_default();
        list.retain(|w| !w.tx.is_closed());
        list
    }

    /// Ends the waits on a container that is gone.
    pub(crate) fn forget(&self, id: &str) {
        drop(self.take(id));
    }
}

fn poisoned() -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the service's state is poisoned".into(),
    )
}

/// The answer that hands the connection over: `101 UPGRADED`, with the stream's
/// media type.
pub(crate) fn upgraded(tty: bool) -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    let kind = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(kind),
    );
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    h.insert("upgrade", hyper::header::HeaderValue::from_static("tcp"));
    r
}

/// Carries one hijacked connection: `prelude` first, then the output of `src` until
/// it ends (or the client leaves), the client's input to the process meanwhile when
/// `streams.stdin`; then `after`, then the connection closes.
pub(crate) async fn session(
    up: hyper::upgrade::OnUpgrade,
    src: Source,
    streams: Streams,
    prelude: Vec<Bytes>,
    after: Option<After>,
) {
    let up = match up.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "docker API: the upgrade failed");
            if let Some(a) = after {
                a.await;
            }
            return;
        }
    };
    let (rd, mut wr) = tokio::io::split(TokioIo::new(up));
    let mut client = true;
    for b in &prelude {
        if wr.write_all(b).await.is_err() {
            client = false;
            break;
        }
    }
    let mut feeder = None;
    match src {
        Source::Pipes(p) => {
            let stdin = p.stdin.and_then(|fd| pipe::Sender::from_owned_fd(fd).ok());
            if streams.stdin {
                feeder = Some(tokio::spawn(feed(rd, stdin)));
            }
            let mut out = p
                .stdout
                .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
            let mut err = p
                .stderr
                .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
            if client {
                client = pump_pipes(&mut wr, &mut out, &mut err, streams.tty).await;
            }
        }
        Source::Socket(s) => {
            let s = s
                .set_nonblocking(true)
                .ok()
                .and_then(|_| tokio::net::UnixStream::from_std(s).ok());
            if let Some(s) = s {
                let (mut sr, sw) = s.into_split();
                if streams.stdin {
                    feeder = Some(tokio::spawn(feed(rd, Some(sw))));
                }
                if client {
                    client = pump_frames(&mut wr, &mut sr, streams).await;
                }
            }
        }
        Source::Nothing => {}
    }
    if let Some(f) = feeder {
        f.abort();
    }
    if !client {
        drop(wr);
    }
    if let Some(a) = after {
        a.await;
    }
}

/// The client's input to `to` until either ends; then `to` is closed (the process
/// sees the end of its input).
async fn feed<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(mut from: R, mut to: Option<W>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(w) = to.as_mut() {
            if w.write_all(&buf[..n]).await.is_err() {
                to = None;
            }
        }
    }
    if let Some(mut w) = to {
        let _ = w.shutdown().await;
    }
}

async fn read_some(r: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Output from the pipes to the client, framed by stream without a terminal; false
/// once the client has gone.
async fn pump_pipes<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut Option<pipe::Receiver>,
    err: &mut Option<pipe::Receiver>,
    tty: bool,
) -> bool {
    let (mut bo, mut be) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    while out.is_some() || err.is_some() {
        let (stream, r) = tokio::select! {
            r = read_some(out, &mut bo) => (1u8, r),
            r = read_some(err, &mut be) => (2u8, r),
        };
        let n = match r {
            Ok(n) if n > 0 => n,
            _ => {
                if stream == 1 {
                    *out = None;
                } else {
                    *err = None;
                }
                continue;
            }
        };
        let data = if stream == 1 { &bo[..n] } else { &be[..n] };
        let sent = if tty {
            wr.write_all(data).await
        } else {
            wr.write_all(&attach_frame(stream, data)).await
        };
        if sent.is_err() || wr.flush().await.is_err() {
            return false;
        }
    }
    true
}

/// Frames from a monitor's attach socket to the client: the streams asked for, raw
/// with a terminal; false once the client has gone.
async fn pump_frames<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    wr: &mut W,
    sr: &mut R,
    streams: Streams,
) -> bool {
    let mut hdr = [0u8; 8];
    let mut data = Vec::new();
    loop {
        if sr.read_exact(&mut hdr).await.is_err() {
            return true;
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        data.resize(len, 0);
        if sr.read_exact(&mut data).await.is_err() {
            return true;
        }
        let wanted = if hdr[0] == 2 {
            streams.stderr
        } else {
            streams.stdout
        };
        if !wanted {
            continue;
        }
        let sent = if streams.tty {
            wr.write_all(&data).await
        } else {
            wr.write_all(&attach_frame(hdr[0], &data)).await
        };
        if sent.is_err() || wr.flush().await.is_err() {
            return false;
        }
    }
}

/// `POST /containers/{id}/attach?stream&logs&stdin&stdout&stderr` with
/// `Upgrade: tcp`.
pub(super) fn attach(req: &Req, id: &str) -> Answer {
    let (stdin, stdout, stderr) = (req.flag("stdin")?, req.flag("stdout")?, req.flag("stderr")?);
    let (stream, logs) = (req.flag("stream")?, req.flag("logs")?);
    let e = req.engine()?;
    let c = e.get(id)?;
    let cid = c.record.id.clone();
    match c.state.status {
        Status::Paused => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("container {cid} is paused, unpause the container before attach."),
            ))
        }
        Status::Restarting => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("container {cid} is restarting, wait until the container is running"),
            ))
        }
        _ => {}
    }
    let streams = Streams {
        stdin: stdin && c.record.open_stdin,
        stdout,
        stderr,
        tty: c.record.tty,
    };
    let up = req.hijack()?;
    // `logs=1`: the log first, its last MAX_PRELUDE bytes at most (held until the
    // connection is up).
    let mut prelude = std::collections::VecDeque::new();
    if logs {
        let mut bytes = 0usize;
        skiff_engine::logs::each_entry(&c.log_path(), |en| {
            if (en.stream == "stderr" && stderr) || (en.stream != "stderr" && stdout) {
                let frame = super::containers::log_frame(&en, false, c.record.tty);
                bytes += frame.len();
                prelude.push_back(frame);
                while bytes > MAX_PRELUDE {
                    bytes -= prelude.pop_front().map(|f| f.len()).unwrap_or(bytes);
                }
            }
            true
        });
    }
    let prelude: Vec<Bytes> = prelude.into();
    let rt = tokio::runtime::Handle::current();
    if !stream {
        rt.spawn(session(up, Source::Nothing, streams, prelude, None));
    } else if c.state.status.is_active() {
        let sock = connect(&c)?;
        rt.spawn(session(up, Source::Socket(sock), streams, prelude, None));
    } else {
        let (tx, rx) = oneshot::channel();
        req.svc.waiting.add(&cid, Waiter { streams, tx })?;
        rt.spawn(async move {
            let src = rx.await.unwrap_or(Source::Nothing);
            session(up, src, streams, prelude, None).await
        });
    }
    Ok(upgraded(c.record.tty))
}

fn connect(c: &Container) -> Result<std::os::unix::net::UnixStream, ApiError> {
    let (_keep, path) = skiff_engine::monitor::attach_path(&c.dir)?;
    std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        ApiError(
            StatusCode::CONFLICT,
            format!("attaching to container {}: {e}", c.record.id),
        )
    })
}

/// The attach requests a start serves: the first gets the container's stdio as
/// pipes, handed to the monitor; the others attach through its socket once it runs.
pub(super) struct StartAttach {
    first: Option<(Waiter, Pipes)>,
    theirs: [Option<OwnedFd>; 3],
    rest: Vec<Waiter>,
}

impl StartAttach {
    pub(super) fn new(req: &Req, c: &Container) -> Result<StartAttach, ApiError> {
        let mut waiters = req.svc.waiting.take(&c.record.id).into_iter();
        let Some(w) = waiters.next() else {
            return Ok(StartAttach {
                first: None,
                theirs: [None, None, None],
                rest: Vec::new(),
            });
        };
        let s = w.streams;
        let (ours, theirs) = pipes(s.stdin, s.stdout, s.stderr && !s.tty)
            .map_err(|e| anyhow::anyhow!("making the attach pipes: {e}"))?;
        Ok(StartAttach {
            first: Some((w, ours)),
            theirs,
            rest: waiters.collect(),
        })
    }

    /// The descriptors the monitor gets, if anyone attached.
    pub(super) fn attach(&self) -> Option<Attach> {
        self.first.as_ref()?;
        let fd = |o: &Option<OwnedFd>| o.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        Some(Attach {
            stdin: fd(&self.theirs[0]),
            stdout: fd(&self.theirs[1]),
            stderr: fd(&self.theirs[2]),
        })
    }

    /// After the start: the process's ends are closed here (the monitor has its
    /// own), and the waiting clients get their streams.
    pub(super) fn started(self, c: &Container) {
        drop(self.theirs);
        if let Some((w, ours)) = self.first {
            let _ = w.tx.send(Source::Pipes(ours));
        }
        for w in self.rest {
            let src = connect(c).map(Source::Socket).unwrap_or(Source::Nothing);
            let _ = w.tx.send(src);
        }
    }
}

/// `POST /containers/{id}/resize?h&w`: the size of a running container's terminal.
pub(super) fn resize(req: &Req, id: &str) -> Answer {
    let (cols, rows) = size(req)?;
    req.engine()?.resize(id, cols, rows)?;
    no_content(StatusCode::OK)
}

/// The `w` and `h` parameters of a resize (both 1–65535).
pub(super) fn size(req: &Req) -> Result<(u16, u16), ApiError> {
    let get = |name: &str| -> Result<u16, ApiError> {
        req.int(name)?
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "invalid resize: {name} must be a number from 1 to 65535"
                ))
            })
    };
    Ok((get("w")?, get("h")?))
}
