//! The HTTP API's front door: one request authenticated, authorized and logged, then
//! routed: to the health and version endpoints, discovery and OpenAPI, the nodes' and
//! pods' streams, the access reviews, or a verb on a resource ([`crate::verbs`]), chosen
//! by method, name and subresource once the subresource and the verbs it takes are known.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use crate::error::{ApiError, ApiResult};
use crate::http::{
    error_response, full, json_response, not_found_path, parse_accept, parse_query, percent_decode,
    static_response, text_response, truthy, wants_aggregated_discovery, Body,
};
use crate::resource::Resource;
use crate::resources;
use crate::review::review;
use crate::state::State;
use crate::user::User;
use crate::verbs::{self, Call};

/// Adds what admission collected to a response: `Warning` headers; audit annotations
/// go to the server log at debug level (skiff keeps no audit log; PodSecurity's audit
/// violations are logged at info level where they are found).
fn with_collected(
    mut resp: Response<Body>,
    collected: crate::requestctx::Collected,
    method: &hyper::Method,
    path: &str,
    user: &str,
) -> Response<Body> {
    for w in &collected.warnings {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&crate::requestctx::warning_header(w)) {
            resp.headers_mut().append("Warning", v);
        }
    }
    if !collected.audit_annotations.is_empty() {
        let annotations: Vec<String> = collected
            .audit_annotations
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        tracing::debug!(target: "skiff_apiserver::audit", %method, %path, %user, annotations = %annotations.join(" "), "audit annotations");
    }
    resp
}

/// Entry point for one request.
pub async fn handle(
    state: Arc<State>,
    user: Option<User>,
    peer: Option<std::net::SocketAddr>,
    req: Request<Incoming>,
) -> Response<Body> {
    // What the request asks, as the authorizer and the request log read it.
    let attrs = crate::rbac::Attributes::of_request(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
    );
    let log = crate::httplog::Entry::begin(&req, &attrs, peer);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (resp, who) = match authenticate_and_authorize(&state, user, &req, &attrs).await {
        Ok(user) => {
            let who = user.as_ref().map(|u| u.name.clone()).unwrap_or_default();
            let name = user.as_ref().map(|u| u.name.clone());
            let (resp, collected) = crate::requestctx::scope(name, async {
                match route(&state, user.as_ref(), req).await {
                    Ok(r) => r,
                    Err(e) => error_response(&e),
                }
            })
            .await;
            (with_collected(resp, collected, &method, &path, &who), who)
        }
        Err(e) => (error_response(&e), String::new()),
    };
    log.end(&who, resp.status().as_u16());
    resp
}

/// Who the request is from (a verified client certificate wins; otherwise a bearer
/// token must be valid), after impersonation, and whether they may make it.
async fn authenticate_and_authorize(
    state: &State,
    user: Option<User>,
    req: &Request<Incoming>,
    attrs: &crate::rbac::Attributes,
) -> ApiResult<Option<User>> {
    let path = req.uri().path();
    let public = matches!(
        path.trim_end_matches('/'),
        "/version" | "/healthz" | "/livez" | "/readyz" | "/cacerts"
    );
    let mut user = user.map(crate::authn::with_authenticated);
    if user.is_none() {
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            match state.auth.authenticate(&state.registry, token, &[]).await? {
                Ok(u) => user = Some(u),
                Err(_) if public => {}
                Err(_) => return Err(ApiError::unauthorized()),
            }
        }
    }
    let Some(mut user) = user else {
        // Anonymous requests may read the public health and version endpoints only.
        return if public {
            Ok(None)
        } else {
            Err(ApiError::unauthorized())
        };
    };
    if let Some(imp) = crate::authn::impersonate(&state.registry, &user, req.headers()).await? {
        user = imp;
    }
    let decision = crate::authz::authorize(&state.registry, &user, attrs).await?;
    if !decision.allowed {
        return Err(crate::rbac::forbidden(&user, attrs, &decision.reason));
    }
    Ok(Some(user))
}

async fn route(
    state: &State,
    user: Option<&User>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return Ok(text_response(200, "ok")),
        p if p.starts_with("/healthz/")
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/") =>
        {
            return Ok(text_response(200, "ok"))
        }
        "/version" => return Ok(json_response(200, &crate::discovery::version(), &[])),
        "/cacerts" => return Ok(text_response(200, state.ca_cert_pem.clone())),
        _ => {}
    }
    if user.is_none() {
        return Err(ApiError::unauthorized());
    }
    // The cluster's network settings for joining agents (k3s's `/v1-k3s/config`);
    // authorized above (nodes by the Node authorizer, admins by RBAC).
    if path == crate::http::CONFIG_PATH && req.method() == Method::GET {
        let body = serde_json::to_value(&state.network)
            .map_err(|e| ApiError::internal(format!("encoding the network settings: {e}")))?;
        return Ok(json_response(200, &body, &[]));
    }
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if req.method() == Method::GET && !truthy(&parse_query(req.uri().query()), "watch") {
        let aggregated = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(wants_aggregated_discovery);
        match segs.as_slice() {
            ["api"] | ["apis"] if aggregated => {
                let core = segs.as_slice() == ["api"];
                return Ok(Response::builder()
                    .status(200)
                    .header("Content-Type", crate::discovery::AGGREGATED_CONTENT_TYPE)
                    .header("Cache-Control", "no-cache, private")
                    .body(full(
                        [
                            crate::error::to_json(&crate::discovery::aggregated(core)),
                            vec![b'\n'],
                        ]
                        .concat(),
                    ))
                    .unwrap_or_else(|_| Response::new(full(""))));
            }
            ["api"] => {
                return Ok(json_response(
                    200,
                    &crate::discovery::api_versions(&state.server_address),
                    &[],
                ))
            }
            ["api", v] => {
                return crate::discovery::api_resource_list("", v)
                    .map(|d| json_response(200, &d, &[]))
                    .ok_or_else(not_found_path)
            }
            ["apis"] => return Ok(json_response(200, &crate::discovery::api_group_list(), &[])),
            ["apis", g] => {
                return crate::discovery::api_group(g)
                    .map(|d| json_response(200, &d, &[]))
                    .ok_or_else(not_found_path)
            }
            ["apis", g, v] => {
                return crate::discovery::api_resource_list(g, v)
                    .map(|d| json_response(200, &d, &[]))
                    .ok_or_else(not_found_path)
            }
            _ => {}
        }
    }
    match segs.as_slice() {
        ["openapi", "v3"] => {
            return Ok(static_response(
                "application/json",
                crate::openapi::index_bytes(),
            ))
        }
        ["openapi", "v2"] => {
            let wants_pb = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("protobuf"));
            let ct = if wants_pb {
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
            } else {
                "application/json"
            };
            return Ok(static_response(ct, crate::openapi::v2_bytes(wants_pb)));
        }
        ["openapi", "v3", "api", v] => {
            return crate::openapi::group_version_bytes("", v)
                .map(|d| static_response("application/json", d))
                .ok_or_else(not_found_path)
        }
        ["openapi", "v3", "apis", g, v] => {
            return crate::openapi::group_version_bytes(g, v)
                .map(|d| static_response("application/json", d))
                .ok_or_else(not_found_path)
        }
        _ => {}
    }
    match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => {
            let (v, rest) = (
                v.to_string(),
                rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            );
            resource_request(state, user, req, "", &v, &rest).await
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() => {
            let (g, v) = (g.to_string(), v.to_string());
            let rest = rest.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let role_write = g == "rbac.authorization.k8s.io"
                && rest.first().is_some_and(|r| r == "clusterroles")
                && req.method() != Method::GET;
            let resp = resource_request(state, user, req, &g, &v, &rest).await?;
            // The clusterrole-aggregation controller's work, done as roles change.
            if role_write && resp.status().is_success() {
                crate::rbac::aggregate_cluster_roles(&state.registry).await?;
            }
            Ok(resp)
        }
        _ => Err(not_found_path()),
    }
}

/// The parts of a resource path.
struct Target {
    res: &'static Resource,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[String]) -> ApiResult<Target> {
    let (ns, rest) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2].as_str(), "status" | "finalize"))
    {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest.first().ok_or_else(not_found_path)?;
    let res = resources::lookup(group, version, plural).ok_or_else(not_found_path)?;
    if ns.is_some() && !res.namespaced {
        return Err(not_found_path());
    }
    if rest.len() > 3 {
        return Err(not_found_path());
    }
    let name = rest.get(1).cloned();
    let sub = rest.get(2).cloned();
    if let Some(n) = &name {
        if n.is_empty() || n == "." || n == ".." || n.contains('/') {
            return Err(ApiError::bad_request(format!(
                "invalid resource name {n:?}"
            )));
        }
    }
    if let Some(n) = &ns {
        if !skiff_meta::names::is_dns1123_label(n) {
            return Err(ApiError::not_found("", "namespaces", n));
        }
    }
    Ok(Target { res, ns, name, sub })
}

/// A request on a resource: the pods' and nodes' streams go to the nodes, the access
/// reviews to `review`; everything else to its verb's module, chosen by method, name
/// and subresource, once the subresource and its verbs are known.
async fn resource_request(
    state: &State,
    user: Option<&User>,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[String],
) -> ApiResult<Response<Body>> {
    if group.is_empty() && rest.len() >= 3 && rest[0] == "nodes" && rest[2] == "proxy" {
        return crate::nodeproxy::node_proxy(state, req, &rest[1], &rest[3..].join("/")).await;
    }
    let t = parse_target(group, version, rest)?;
    let method = req.method().clone();
    let res = t.res;
    let ns = t.ns.as_deref();
    if res.namespaced && t.ns.is_none() && !(method == Method::GET && t.name.is_none()) {
        return Err(not_found_path());
    }
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let q = parse_query(req.uri().query());
    let manager = crate::managed::Manager::of_request(
        q.get("fieldManager").map(String::as_str),
        req.headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok()),
    );
    if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        crate::managed::validate_manager(&manager.name, false)?;
    }
    if matches!(
        res.kind,
        "SelfSubjectReview"
            | "SelfSubjectAccessReview"
            | "SubjectAccessReview"
            | "SelfSubjectRulesReview"
            | "TokenReview"
    ) {
        return review(state, user, res, req, &method, t.name.is_some()).await;
    }
    let call = Call {
        state,
        user,
        res,
        ns,
        accept: parse_accept(req.headers().get("accept").and_then(|v| v.to_str().ok())),
        q,
        manager,
    };
    let sub = match t.sub.as_deref() {
        None => None,
        Some("binding") if res.kind == "Pod" => Some("binding"),
        Some("eviction") if res.kind == "Pod" => Some("eviction"),
        Some("ephemeralcontainers") if res.kind == "Pod" => Some("ephemeralcontainers"),
        Some("status") if res.status => Some("status"),
        Some("scale") if res.scale => Some("scale"),
        Some("finalize") if res.kind == "Namespace" => Some("finalize"),
        Some(other @ ("log" | "exec" | "attach" | "portforward")) if res.kind == "Pod" => {
            let (Some(ns), Some(name)) = (ns, t.name.as_deref()) else {
                return Err(not_found_path());
            };
            let ok = if other == "log" {
                method == Method::GET
            } else {
                matches!(method, Method::GET | Method::POST)
            };
            if !ok {
                return Err(ApiError::method_not_allowed(format!(
                    "{method} is not supported on pods/{other}"
                )));
            }
            return crate::nodeproxy::pod_subresource(state, req, ns, name, other).await;
        }
        Some(other @ ("log" | "exec" | "attach" | "portforward" | "proxy"))
            if matches!(res.kind, "Pod" | "Service" | "Node") =>
        {
            return Err(ApiError::not_implemented(format!(
                "{}/{other} is not available: skiff proxies only nodes/proxy and the pods' log, exec, attach and portforward",
                res.plural
            )))
        }
        Some("token") if res.kind == "ServiceAccount" && method == Method::POST => {
            let account = t.name.as_deref().unwrap_or_default();
            return verbs::create::token(&call, account, req).await;
        }
        Some("approval") if res.kind == "CertificateSigningRequest" => Some("approval"),
        Some(_) => return Err(not_found_path()),
    };
    crate::requestctx::set_subresource(sub);
    // Which verbs each subresource takes.
    let allowed = match sub {
        Some("binding" | "eviction") => method == Method::POST,
        Some("finalize") => method == Method::PUT,
        Some("approval") => matches!(method, Method::GET | Method::PUT),
        Some(_) => matches!(method, Method::GET | Method::PUT | Method::PATCH),
        None => true,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on {}/{}",
            res.plural,
            sub.unwrap_or_default()
        )));
    }
    match (&method, t.name.as_deref(), sub) {
        (&Method::GET, None, _) => verbs::read::list(&call).await,
        (&Method::GET, Some(name), _) => verbs::read::get(&call, name, sub).await,
        (&Method::POST, None, _) => verbs::create::create(&call, req).await,
        (&Method::POST, Some(name), Some("binding")) => {
            verbs::create::binding(&call, name, req).await
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            verbs::create::eviction(&call, name, req).await
        }
        (&Method::POST, Some(_), _) => Err(ApiError::method_not_allowed(format!(
            "POST on {} subresource {:?} is not supported by this server yet",
            res.plural,
            t.sub.as_deref().unwrap_or("")
        ))),
        (&Method::PUT, Some(name), Some("scale")) => verbs::update::scale(&call, name, req).await,
        (&Method::PUT, Some(name), Some("approval")) => {
            verbs::update::approval(&call, name, req).await
        }
        (&Method::PUT, Some(name), _) => verbs::update::update(&call, name, sub, req).await,
        (&Method::PATCH, Some(name), _) => verbs::patching::patch(&call, name, sub, req).await,
        (&Method::DELETE, Some(_), Some(_)) => Err(ApiError::method_not_allowed(
            "the subresource does not support DELETE",
        )),
        (&Method::DELETE, Some(name), None) => verbs::delete::delete(&call, name, req).await,
        (&Method::DELETE, None, _) => verbs::delete::delete_collection(&call).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on this path"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |p: &str| {
            parse_target(
                "",
                "v1",
                &p.split('/').map(String::from).collect::<Vec<_>>(),
            )
        };
        let x = t("namespaces/default/pods/web").ok().unwrap();
        assert_eq!(
            (x.res.plural, x.ns.as_deref(), x.name.as_deref()),
            ("pods", Some("default"), Some("web"))
        );
        let x = t("namespaces/foo/status").ok().unwrap();
        assert_eq!(
            (x.res.plural, x.name.as_deref(), x.sub.as_deref()),
            ("namespaces", Some("foo"), Some("status"))
        );
        let x = t("namespaces/foo").ok().unwrap();
        assert_eq!(
            (x.res.plural, x.name.as_deref()),
            ("namespaces", Some("foo"))
        );
        assert!(t("namespaces/default/nodes").is_err());
        assert!(t("namespaces/default/pods/..").is_err());
        assert_eq!(percent_decode("a%2Fb"), "a/b");
    }
}
