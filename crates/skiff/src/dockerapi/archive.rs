//! `GET`, `HEAD` and `PUT /containers/{id}/archive?path=`: what `docker cp` sends and
//! receives. The work is done by the engine's archive helper, chrooted into the
//! container's root ([`skiff_engine::archive`]); here its stat line becomes the
//! `X-Docker-Container-Path-Stat` header (base64 JSON), its tar stream the body, and
//! its exit code the status (404 for a path that is not there, 400 for an extraction
//! that cannot be done).

use super::{no_content, Answer, ApiError, Req};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use skiff_engine::archive::{ArchiveOp, INVALID, NOT_FOUND};
use std::io::{BufRead, Read};
use std::process::Stdio;

/// The longest stat line read from the helper.
const MAX_STAT: u64 = 64 << 10;

const STAT_HEADER: &str = "x-docker-container-path-stat";

/// The status and message of a helper that failed.
fn failed(status: std::process::ExitStatus, stderr: &[u8], path: &str, id: &str) -> ApiError {
    let message = String::from_utf8_lossy(stderr).trim().to_string();
    match status.code() {
        Some(NOT_FOUND) => ApiError(
            StatusCode::NOT_FOUND,
            format!("Could not find the file {path} in container {id}"),
        ),
        Some(INVALID) => ApiError::bad(message),
        _ => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            if message.is_empty() {
                format!("copying {path}: the archive helper failed ({status})")
            } else {
                message
            },
        ),
    }
}

fn stat_header(line: &[u8]) -> Result<hyper::header::HeaderValue, ApiError> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(line);
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.trim_end().as_bytes());
    hyper::header::HeaderValue::from_str(&encoded)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `/containers/{id}/archive`.
pub(super) fn archive(req: &Req, id: &str) -> Answer {
    let path = req
        .query
        .get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| {
            ApiError::bad("path is required (the file or directory in the container)")
        })?;
    let op = match req.method {
        Method::GET => ArchiveOp::Get,
        Method::HEAD => ArchiveOp::Stat,
        _ => ArchiveOp::Put {
            no_overwrite_dir_non_dir: req.flag("noOverwriteDirNonDir")?,
            copy_uid_gid: req.flag("copyUIDGID")?,
        },
    };
    let e = req.engine()?;
    let c = e.get(id)?;
    let helper = skiff_engine::reexec::Helper::Archive {
        id: c.record.id.clone(),
        op: op.clone(),
        path: path.clone(),
    };
    let mut cmd = helper.command(&e.exe, &e.root);
    cmd.stdin(match op {
        ArchiveOp::Put { .. } => Stdio::from(req.take_upload()?),
        _ => Stdio::null(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|err| anyhow::anyhow!("starting the archive helper: {err}"))?;
    if !matches!(op, ArchiveOp::Get) {
        let out = child
            .wait_with_output()
            .map_err(|err| anyhow::anyhow!("waiting for the archive helper: {err}"))?;
        if !out.status.success() {
            return Err(failed(out.status, &out.stderr, &path, id));
        }
        let mut r = no_content(StatusCode::OK)?;
        if matches!(op, ArchiveOp::Stat) {
            let line = out.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]);
            r.headers_mut().insert(STAT_HEADER, stat_header(line)?);
        }
        return Ok(r);
    }
    let (line, mut r) = stream(child, &path, id)?;
    r.headers_mut().insert(STAT_HEADER, stat_header(&line)?);
    Ok(r)
}

/// A reading helper's answer: its stat line first (or, instead, its failure), then its
/// tar stream as the body. The helper is killed when the client leaves.
fn stream(
    mut child: std::process::Child,
    path: &str,
    id: &str,
) -> Result<(Vec<u8>, hyper::Response<super::Body>), ApiError> {
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(anyhow::anyhow!("the archive helper has no output pipes").into());
    };
    let mut out = std::io::BufReader::with_capacity(64 << 10, stdout);
    let mut line = Vec::new();
    let got = out
        .by_ref()
        .take(MAX_STAT)
        .read_until(b'\n', &mut line)
        .unwrap_or(0);
    if got == 0 || !line.ends_with(b"\n") {
        let mut errors = Vec::new();
        let _ = stderr.by_ref().take(MAX_STAT).read_to_end(&mut errors);
        let status = child
            .wait()
            .map_err(|err| anyhow::anyhow!("waiting for the archive helper: {err}"))?;
        return Err(failed(status, &errors, path, id));
    }
    let r = super::streamed_with(16, "application/x-tar", "docker-api-archive", move |tx| {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        // The client left: stop the helper.
                        let _ = child.kill();
                        break;
                    }
                }
            }
        }
        drop(stderr);
        let _ = child.wait();
    })?;
    Ok((line, r))
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream, its
/// mounts left out (`docker export`).
pub(super) fn export(req: &Req, id: &str) -> Answer {
    let e = req.engine()?;
    let c = e.get(id)?;
    let child = e
        .archive_command(&c.record.id, ArchiveOp::Export, "/")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| anyhow::anyhow!("starting the archive helper: {err}"))?;
    let (_, r) = stream(child, "/", id)?;
    skiff_engine::events::container(&e.root, &c, "export", &[]);
    Ok(r)
}
