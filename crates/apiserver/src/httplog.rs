//! The request log: one line per API request at `debug`, under the
//! `skiff_apiserver::httplog` target, in the shape of kube-apiserver's `httplog`
//! (`"HTTP" verb="GET" URI="/api/v1/…" latency="…" userAgent="…" audit-ID="" srcIP="…"
//! resp=200`), plus the user.

use std::net::SocketAddr;
use std::time::Instant;

/// What the log line says of a request, taken before it is handled.
pub(crate) struct Entry {
    verb: String,
    uri: String,
    user_agent: String,
    src_ip: String,
    start: Instant,
}

impl Entry {
    pub(crate) fn begin<B>(req: &hyper::Request<B>, peer: Option<SocketAddr>) -> Entry {
        Entry {
            verb: req.method().to_string(),
            uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), ToString::to_string),
            user_agent: req
                .headers()
                .get(hyper::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            src_ip: peer.map(|p| p.to_string()).unwrap_or_default(),
            start: Instant::now(),
        }
    }

    /// Logs the request as answered with `status` by `user`.
    pub(crate) fn end(self, user: &str, status: u16) {
        tracing::debug!(
            target: "skiff_apiserver::httplog",
            verb = %self.verb,
            URI = %self.uri,
            latency = ?self.start.elapsed(),
            userAgent = %self.user_agent,
            user = %user,
            "audit-ID" = "",
            srcIP = %self.src_ip,
            resp = status,
            "HTTP"
        );
    }
}
