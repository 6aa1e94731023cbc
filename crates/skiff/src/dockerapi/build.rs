//! `POST /build`: docker's classic builder (what `docker build` and `DOCKER_BUILDKIT=0
//! docker build` use when the CLI has no buildx). The body is the context as a tar
//! stream (plain, gzip or zstd), spooled to a file by the service; it is unpacked here
//! into a directory of its own and built by `skiff build` in a child process (its RUN
//! steps fork into containers, which the service's threads must not do), whose output
//! lines become docker's JSON stream (`{"stream": …}`, then `{"aux": {"ID": …}}`; a
//! failure is an `errorDetail` line carrying the failed RUN's exit code, which the
//! docker CLI exits with).
//!
//! A client that leaves part-way does not stop the build: it runs to its end (so its
//! step containers are taken down by the builder itself) with the output dropped.

use super::{Answer, ApiError, Req};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc::Sender;

/// Output lines a slow client may leave unread before the build waits for it.
const BACKLOG: usize = 256;
/// How much of the builder's error output is kept for the error line.
const MAX_STDERR: usize = 64 << 10;

/// What the request asks the builder for.
struct Plan {
    tags: Vec<String>,
    dockerfile: PathBuf,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    no_cache: bool,
    pull: bool,
    quiet: bool,
}

/// A JSON map of strings (`buildargs`, `labels`); `null` values are left out (a build
/// arg the client declared without a value).
fn string_map(req: &Req, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(raw) = req.query.get(name).filter(|s| !s.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let bad = |why: String| ApiError::bad(format!("invalid {name} {raw:?}: {why}"));
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(bad("not a JSON object".into()));
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Null => {}
            _ => return Err(bad(format!("the value of {k:?} is not a string"))),
        }
    }
    Ok(out)
}

/// Parameters skiff's builder does not apply: refused (501) when set to anything but
/// what the docker CLI sends by default, never silently dropped.
fn refuse_unsupported(req: &Req) -> Result<(), ApiError> {
    let nope = |what: String| {
        Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not supported by skiff's builder yet"),
        ))
    };
    let set = |k: &str| req.query.get(k).map(String::as_str).unwrap_or("");
    if !set("remote").is_empty() {
        return nope("building from a remote context (remote=)".into());
    }
    for k in [
        "extrahosts",
        "cpusetcpus",
        "cpusetmems",
        "isolation",
        "outputs",
    ] {
        if !set(k).is_empty() {
            return nope(format!("the build parameter {k}"));
        }
    }
    for k in [
        "memory",
        "memswap",
        "cpushares",
        "cpuperiod",
        "cpuquota",
        "shmsize",
    ] {
        if !matches!(set(k), "" | "0") {
            return nope(format!("the build parameter {k}"));
        }
    }
    if req.flag("squash")? {
        return nope("squash".into());
    }
    if !matches!(set("cachefrom"), "" | "[]" | "null") {
        return nope("cachefrom".into());
    }
    // RUN steps use the host's network (dockerd's default for builds).
    if !matches!(set("networkmode"), "" | "default" | "host") {
        return nope(format!("networkmode={}", set("networkmode")));
    }
    let platform = set("platform");
    if !platform.is_empty() && platform != format!("linux/{}", skiff_image::host_arch()) {
        return nope(format!("building for platform {platform}"));
    }
    Ok(())
}

fn plan(req: &Req) -> Result<Plan, ApiError> {
    match req.query.get("version").map(String::as_str).unwrap_or("") {
        "" | "1" => {}
        "2" => {
            return Err(ApiError::bad(
                "BuildKit builds (version=2) are not supported by skiff: use the classic \
                 builder (DOCKER_BUILDKIT=0)",
            ))
        }
        v => return Err(ApiError::bad(format!("invalid version {v:?}"))),
    }
    refuse_unsupported(req)?;
    let tags = req.all("t");
    for t in &tags {
        skiff_image::parse_reference(t)
            .map_err(|e| ApiError::bad(format!("invalid reference format: {t:?}: {e}")))?;
    }
    let dockerfile = PathBuf::from(
        req.query
            .get("dockerfile")
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("Dockerfile"),
    );
    if dockerfile.is_absolute()
        || dockerfile
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ApiError::bad(format!(
            "the Dockerfile ({}) must be a path inside the build context",
            dockerfile.display()
        )));
    }
    Ok(Plan {
        tags,
        dockerfile,
        build_args: string_map(req, "buildargs")?,
        labels: string_map(req, "labels")?,
        target: req.query.get("target").filter(|s| !s.is_empty()).cloned(),
        no_cache: req.flag("nocache")?,
        pull: req.flag("pull")?,
        quiet: req.flag("q")?,
    })
}

fn stream_line(text: &str) -> Bytes {
    Bytes::from(format!("{}\r\n", json!({ "stream": text })))
}

fn error_line(code: i32, message: &str) -> Bytes {
    Bytes::from(format!(
        "{}\r\n",
        json!({ "errorDetail": { "code": code, "message": message }, "error": message })
    ))
}

/// `POST /build`.
pub(super) fn build(req: &Req) -> Answer {
    let plan = plan(req)?;
    let upload = req.take_upload()?;
    let e = req.engine()?;
    let tmp = e.root.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(anyhow::Error::from)?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(anyhow::Error::from)?;
    let context = work.path().join("context");
    std::fs::create_dir(&context).map_err(anyhow::Error::from)?;
    skiff_image::unpack_context(upload, &context)
        .map_err(|err| ApiError::bad(format!("unpacking the build context: {err}")))?;
    let dockerfile = located(&context, &plan.dockerfile)?;
    let iidfile = work.path().join("iid");
    let mut cmd = std::process::Command::new(&e.exe);
    cmd.arg0("skiff")
        .arg("--root")
        .arg(&e.root)
        .args(crate::commands::images::registry_args())
        .arg("build")
        .arg("--iidfile")
        .arg(&iidfile)
        .arg("-f")
        .arg(&dockerfile);
    for t in &plan.tags {
        cmd.arg("-t").arg(t);
    }
    for (k, v) in &plan.build_args {
        cmd.arg(format!("--build-arg={k}={v}"));
    }
    for (k, v) in &plan.labels {
        cmd.arg(format!("--label={k}={v}"));
    }
    if let Some(t) = &plan.target {
        cmd.arg(format!("--target={t}"));
    }
    for (on, flag) in [
        (plan.no_cache, "--no-cache"),
        (plan.pull, "--pull"),
        (plan.quiet, "-q"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    cmd.arg(&context)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|err| anyhow::anyhow!("starting the builder: {err}"))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    super::streamed_with(BACKLOG, "application/json", "docker-api-build", move |tx| {
        let errors = std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut s) = stderr {
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > MAX_STDERR {
                        kept.drain(..kept.len() - MAX_STDERR);
                    }
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let mut client = Some(tx);
        if let Some(out) = stdout {
            relay_lines(out, &mut client);
        }
        let status = child.wait();
        let errors = errors.join().unwrap_or_default();
        let Some(tx) = client else { return };
        let code = match status {
            Ok(s) if s.success() => {
                if let Ok(id) = std::fs::read_to_string(&iidfile) {
                    let _ = tx.blocking_send(Bytes::from(format!(
                        "{}\r\n",
                        json!({ "aux": { "ID": id.trim() } })
                    )));
                }
                return;
            }
            Ok(s) => s.code().unwrap_or(1),
            Err(_) => 1,
        };
        let _ = tx.blocking_send(error_line(code, &builder_error(&errors)));
        drop(work);
    })
}

/// The builder's output lines to the client as `{"stream": …}` (a line without an end
/// is sent in pieces of at most 8 KiB); once the client has gone the rest is read and
/// dropped, so the builder never blocks on a full pipe.
fn relay_lines(out: impl Read, client: &mut Option<Sender<Bytes>>) {
    let mut r = std::io::BufReader::with_capacity(8192, out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.by_ref().take(8192).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(tx) = client {
            if tx
                .blocking_send(stream_line(&String::from_utf8_lossy(&line)))
                .is_err()
            {
                *client = None;
            }
        }
    }
}

/// The message of a failed build: the builder's last error line, without the
/// `skiff: ` prefix a CLI error carries.
fn builder_error(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.strip_prefix("skiff: ").unwrap_or(l).to_string())
        .unwrap_or_else(|| "the build failed".into())
}

/// The Dockerfile inside the unpacked context: it must exist and, with its links
/// followed, stay inside the context (docker's message when it does not).
fn located(context: &Path, rel: &Path) -> Result<PathBuf, ApiError> {
    let missing = || {
        ApiError::bad(format!(
            "Cannot locate specified Dockerfile: {}",
            rel.display()
        ))
    };
    let ctx = context.canonicalize().map_err(anyhow::Error::from)?;
    let real = context.join(rel).canonicalize().map_err(|_| missing())?;
    if !real.starts_with(&ctx) || !real.is_file() {
        return Err(missing());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        let req = |q: &str| {
            let mut r = Req::with_query(super::super::parse_query(Some(q)));
            r.pairs = super::super::parse_pairs(Some(q));
            r
        };
        let p = plan(&req(
            "t=a&t=b%3A1&dockerfile=sub%2FDf&buildargs=%7B%22X%22%3A%221%22%2C%22Y%22%3Anull%7D&labels=%7B%22l%22%3A%22v%22%7D&nocache=1&q=1&networkmode=default&memory=0",
        ))
        .unwrap();
        assert_eq!(p.tags, vec!["a", "b:1"]);
        assert_eq!(p.dockerfile, PathBuf::from("sub/Df"));
        assert_eq!(p.build_args.len(), 1);
        assert_eq!(p.labels.get("l").map(String::as_str), Some("v"));
        assert!(p.no_cache && p.quiet && !p.pull);
        for (q, status) in [
            ("version=2", StatusCode::BAD_REQUEST),
            ("dockerfile=..%2Fx", StatusCode::BAD_REQUEST),
            ("dockerfile=%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
            ("t=UPPER", StatusCode::BAD_REQUEST),
            ("buildargs=%5B%5D", StatusCode::BAD_REQUEST),
            ("memory=1000000", StatusCode::NOT_IMPLEMENTED),
            ("remote=https%3A%2F%2Fx", StatusCode::NOT_IMPLEMENTED),
            ("networkmode=none", StatusCode::NOT_IMPLEMENTED),
        ] {
            assert_eq!(plan(&req(q)).err().map(|e| e.0), Some(status), "{q}");
        }
    }

    #[test]
    fn dockerfile_must_stay_inside_the_context() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("out")).unwrap();
        std::os::unix::fs::symlink("Dockerfile", d.path().join("in")).unwrap();
        assert!(located(d.path(), Path::new("Dockerfile")).is_ok());
        assert!(located(d.path(), Path::new("in")).is_ok());
        assert_eq!(
            located(d.path(), Path::new("out")).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        assert!(located(d.path(), Path::new("nope")).is_err());
    }

    #[test]
    fn error_message_from_the_builder() {
        assert_eq!(
            builder_error("Step 1\nskiff: The command 'x' returned a non-zero code: 3\n\n"),
            "The command 'x' returned a non-zero code: 3"
        );
        assert_eq!(builder_error(""), "the build failed");
    }
}
