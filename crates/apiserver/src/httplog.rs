//! The request log: one line per API request at `debug`, under the
//! `skiff_apiserver::httplog` target, in the shape of kube-apiserver's `httplog`
//! (`"HTTP" verb="LIST" URI="/api/v1/…" latency="…" userAgent="…" audit-ID="" srcIP="…"
//! resp=200`), plus the user. The verb is the one kube-apiserver logs (its metrics'
//! normalized verb), read from the request's attributes.

use std::net::SocketAddr;
use std::time::Instant;

use crate::rbac::Attributes;

/// What the log line says of a request, taken before it is handled.
pub(crate) struct Entry {
    verb: String,
    uri: String,
    user_agent: String,
    src_ip: String,
    start: Instant,
}

impl Entry {
    pub(crate) fn begin<B>(
        req: &hyper::Request<B>,
        attrs: &Attributes,
        peer: Option<SocketAddr>,
    ) -> Entry {
        Entry {
            verb: verb(req, attrs),
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

/// The verb kube-apiserver's httplog names (`metrics.NormalizedVerb`): the HTTP method in
/// capitals, but LIST for a GET of a collection, WATCH for a watch, APPLY for a
/// server-side apply patch and CONNECT for the streaming subresources.
fn verb<B>(req: &hyper::Request<B>, attrs: &Attributes) -> String {
    let method = req.method().as_str().to_ascii_uppercase();
    let streaming = matches!(
        attrs.subresource.as_str(),
        "log" | "exec" | "portforward" | "attach" | "proxy"
    );
    if attrs.resource_request && streaming {
        return "CONNECT".into();
    }
    match method.as_str() {
        "GET" | "HEAD" if attrs.verb == "watch" => "WATCH".into(),
        // A collection, as kube-apiserver's request scope tells (a namespace or the
        // cluster, not one named object).
        "GET" | "HEAD" if attrs.resource_request && attrs.name.is_empty() => "LIST".into(),
        "GET" | "HEAD" => "GET".into(),
        "PATCH"
            if req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .is_some_and(|ct| ct == "application/apply-patch+yaml") =>
        {
            "APPLY".into()
        }
        _ => method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(method: &str, uri: &str, content_type: Option<&str>) -> String {
        let mut req = hyper::Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(()).unwrap();
        let attrs = Attributes::of_request(method, req.uri().path(), req.uri().query());
        verb(&req, &attrs)
    }

    #[test]
    fn verbs_as_kube_apiserver_logs_them() {
        assert_eq!(
            logged("GET", "/api/v1/namespaces/default/pods", None),
            "LIST"
        );
        assert_eq!(logged("GET", "/api/v1/pods", None), "LIST");
        assert_eq!(
            logged("GET", "/api/v1/namespaces/default/pods/web", None),
            "GET"
        );
        assert_eq!(logged("GET", "/api/v1/pods?watch=true", None), "WATCH");
        assert_eq!(logged("GET", "/api/v1/namespaces/default", None), "GET");
        assert_eq!(logged("GET", "/api/v1/namespaces", None), "LIST");
        assert_eq!(logged("GET", "/version", None), "GET");
        assert_eq!(logged("GET", "/api", None), "GET");
        assert_eq!(
            logged("POST", "/api/v1/namespaces/default/pods", None),
            "POST"
        );
        assert_eq!(
            logged("PUT", "/api/v1/namespaces/default/pods/web/status", None),
            "PUT"
        );
        assert_eq!(
            logged(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web",
                Some("application/merge-patch+json")
            ),
            "PATCH"
        );
        assert_eq!(
            logged(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web",
                Some("application/apply-patch+yaml")
            ),
            "APPLY"
        );
        assert_eq!(
            logged("DELETE", "/api/v1/namespaces/default/pods/web", None),
            "DELETE"
        );
        assert_eq!(
            logged("DELETE", "/api/v1/namespaces/default/pods", None),
            "DELETE"
        );
        assert_eq!(
            logged("GET", "/api/v1/namespaces/default/pods/web/log", None),
            "CONNECT"
        );
        assert_eq!(
            logged("POST", "/api/v1/namespaces/default/pods/web/exec", None),
            "CONNECT"
        );
        assert_eq!(
            logged("GET", "/api/v1/nodes/n1/proxy/stats", None),
            "CONNECT"
        );
    }
}
