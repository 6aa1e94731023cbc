//! HTTP plumbing of the handlers: response bodies and builders, `Accept` negotiation,
//! query strings, percent-decoding, reading and parsing request bodies.

/// The cluster's network settings for nodes and admins (`ClusterNetwork` as JSON), as
/// k3s's `/v1-k3s/config`.
pub(crate) const CONFIG_PATH: &str = "/v1-skiff/config";

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;

use crate::error::ApiResult;

/// Largest request body accepted (kube-apiserver's limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub type Body = BoxBody<Bytes, Infallible>;

/// An empty body.
pub fn empty_body() -> Body {
    full(Bytes::new())
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response<Body> {
    json_bytes_response(code, crate::error::to_json(v), warnings)
}

pub(crate) fn bytes_response(code: u16, body: Vec<u8>) -> Response<Body> {
    json_bytes_response(code, body, &[])
}

/// A JSON answer, ending in a newline as Go's encoder writes it.
pub(crate) fn json_bytes_response(
    code: u16,
    body: impl Into<Bytes>,
    warnings: &[String],
) -> Response<Body> {
    let mut body: Bytes = body.into();
    if body.last() != Some(&b'\n') {
        let mut v = Vec::with_capacity(body.len() + 1);
        v.extend_from_slice(&body);
        v.push(b'\n');
        body = v.into();
    }
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private");
    for w in warnings {
        b = b.header("Warning", crate::requestctx::warning_header(w));
    }
    b.body(full(body))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// A 200 with a body built once (the OpenAPI documents).
pub(crate) fn static_response(content_type: &'static str, body: &'static [u8]) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("Content-Type", content_type)
        .body(full(Bytes::from_static(body)))
        .unwrap_or_else(|_| Response::new(full("")))
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status(), &[])
}

pub(crate) fn text_response(code: u16, text: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(full(text))
        .unwrap_or_else(|_| Response::new(full("")))
}

pub(crate) fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Parsed `Accept` header: which representation the client wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accept {
    pub(crate) table: bool,
    pub(crate) partial: bool,
}

pub(crate) fn parse_accept(h: Option<&str>) -> Accept {
    let mut a = Accept::default();
    for range in h.unwrap_or("").split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            a.table = true;
            break;
        }
        if (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList"))
            && has("g=meta.k8s.io")
        {
            a.partial = true;
            break;
        }
        let media = params.first().copied().unwrap_or("");
        if matches!(media, "application/json" | "*/*" | "application/*" | "")
            && !range.contains("as=")
        {
            break;
        }
    }
    a
}

/// Whether the client asks for aggregated discovery v2 (before any plain JSON).
pub(crate) fn wants_aggregated_discovery(accept: &str) -> bool {
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("v=v2") && has("as=APIGroupDiscoveryList") {
            return true;
        }
        if params
            .first()
            .is_some_and(|m| *m == "application/json" || *m == "*/*")
            && !range.contains("as=")
        {
            return false;
        }
    }
    false
}

pub(crate) type Query = HashMap<String, String>;

pub(crate) fn parse_query(q: Option<&str>) -> Query {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

pub(crate) fn truthy(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("1" | "true" | "True"))
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(x) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn read_body(req: Request<Incoming>) -> ApiResult<(Bytes, Option<String>)> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    let mut over = declared.is_some_and(|len| len > MAX_BODY);
    let mut discarded = 0usize;
    // Past the limit the rest is read and dropped, up to a bound, so the client gets
    // the 413 as an answer (over HTTP/2 an unread stream would be reset under it).
    let drain_until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let frame = if over {
            match tokio::time::timeout_at(drain_until, body.frame()).await {
                Ok(f) => f,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = frame else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(_) if over => break,
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over {
            discarded += data.len();
            if discarded > DRAIN_LIMIT {
                break;
            }
        } else if buf.len() + data.len() > MAX_BODY {
            over = true;
            discarded = buf.len() + data.len();
            buf = bytes::BytesMut::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(ApiError::too_large());
    }
    Ok((buf.freeze(), ct))
}

/// How much of an oversized body is read and dropped before answering 413.
pub(crate) const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

pub(crate) fn parse_json_body(body: &[u8], ct: Option<&str>) -> ApiResult<Value> {
    let base = ct
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if base == "application/vnd.kubernetes.protobuf" {
        return crate::proto::decode(body).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    if base == "application/yaml" {
        return parse_yaml_object(body);
    }
    if !matches!(base.as_str(), "application/json" | "" | "*/*") {
        return Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {base})"
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(v)
}

/// A YAML (or JSON) document that must be an object.
pub(crate) fn parse_yaml_object(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
    let v: Value = serde_saphyr::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding YAML: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_parsing() {
        let a = parse_accept(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert!(a.table);
        assert!(!parse_accept(Some("application/json")).table);
        assert!(
            parse_accept(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            ))
            .partial
        );
        assert!(wants_aggregated_discovery("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated_discovery(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated_discovery("application/json, */*"));
    }
}
