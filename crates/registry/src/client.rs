//! One registry over HTTP(S): the scheme (HTTPS, or plain HTTP for an insecure
//! registry that does not speak TLS), authentication (anonymous, `Basic`, the `Bearer`
//! token flow), redirects, and reading answers.

use crate::credentials::{AuthFile, Credentials};
use crate::error::{Error, Result};
use crate::mirrors::{Endpoint, HostConfig, RegistriesConfig, Scheme};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// skiff's config dir (`/etc/skiff`); TLS files are under `certs.d/HOST:PORT/`.
    pub config_dir: PathBuf,
    /// Registries (`host[:port]`) reached over plain HTTP or unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Where credentials are read from.
    pub auth_file: AuthFile,
    /// The platform images are pulled for (`linux/amd64`), if not this host's.
    pub platform: Option<String>,
    /// Mirrors and per-host auth and TLS (k3s's `registries.yaml`).
    pub registries: std::sync::Arc<RegistriesConfig>,
    /// Pull only from mirrors, never from the registry itself (k3s's
    /// `--disable-default-registry-endpoint`).
    pub disable_default_endpoint: bool,
    /// Credentials for the image's own registry for this pull only (a pod's pull
    /// secret, the CRI's AuthConfig); never sent to a mirror, as containerd does.
    pub pull_auth: Option<Credentials>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_dir: PathBuf::from("/etc/skiff"),
            insecure_registries: Vec::new(),
            auth_file: AuthFile::default_location(),
            platform: None,
            registries: Default::default(),
            disable_default_endpoint: false,
            pull_auth: None,
        }
    }
}

/// Whether `host` is a loopback address or name (insecure by default, as in docker).
pub fn is_loopback(host: &str) -> bool {
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[derive(Debug, Clone, PartialEq)]
enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `Bearer realm="x",service="y",scope="z"` (or `Basic realm=...`).
fn parse_challenge(v: &str) -> Option<(String, HashMap<String, String>)> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end.min(q.len())..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim().to_string(), &after[i..]),
                None => (after.trim().to_string(), ""),
            }
        };
        params.insert(k, val);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some((scheme.to_ascii_lowercase(), params))
}

/// A connection to one registry.
pub struct Registry {
    /// The registry's name as references spell it (`docker.io`, `localhost:5000`).
    pub host: String,
    base: String,
    client: HyperClient<Connector, Full<Bytes>>,
    creds: Option<Credentials>,
    challenge: Mutex<Challenge>,
    tokens: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("base", &self.base)
            .finish()
    }
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// Whether `url` is on the registry at `base` (`https://host:port`): the same scheme,
/// host and port, not merely the same prefix (`host:5000` is not `host:50001`, nor is
/// `registry.example.com` `registry.example.com.evil`). Credentials go nowhere else.
fn same_origin(url: &str, base: &str) -> bool {
    url == base
        || url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

/// Walks an error's sources into one line (hyper's outer errors say little).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

impl Registry {
    /// Connects to the registry of `domain` (as a reference names it), with the
    /// credentials stored for it (`creds` overrides them, e.g. for `login`).
    pub async fn connect(
        domain: &str,
        opts: &Options,
        creds: Option<Credentials>,
    ) -> Result<Registry> {
        Registry::connect_endpoint(domain, &Endpoint::upstream(domain), opts, creds).await
    }

    /// Connects to `ep`, one of the places `domain`'s content is served from (the
    /// registry itself or a mirror). Credentials: `creds`, else `registries.yaml`'s
    /// for the endpoint's host, else `config.json`'s (for a mirror, its own host's).
    pub async fn connect_endpoint(
        domain: &str,
        ep: &Endpoint,
        opts: &Options,
        creds: Option<Credentials>,
    ) -> Result<Registry> {
        let endpoint = ep.host.clone();
        // registries.yaml's settings for this endpoint (TLS here, auth below).
        let host = opts.registries.endpoint_config(ep, domain);
        let host_tls = host.and_then(|h| h.tls.clone());
        // docker's rule (loopback registries are insecure unless named otherwise), with
        // one refinement: a loopback registry with its own certs.d directory is verified
        // against those files, since someone configured them for it.
        let certs_dir = opts.config_dir.join("certs.d");
        let explicit = opts.insecure_registries.iter().any(|r| {
            let r = r
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            r == endpoint || r == domain
        }) || host_tls.as_ref().is_some_and(|t| t.insecure_skip_verify);
        let configured = certs_dir.join(&endpoint).is_dir()
            || host_tls.as_ref().is_some_and(|t| t.ca_file.is_some());
        let insecure = explicit || (is_loopback(&endpoint) && !configured);
        let tls = crate::tls::client_config(&certs_dir, &endpoint, insecure, host_tls.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(15)));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = HyperClient::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        // A pod's pull secret (never to a mirror), registries.yaml's, then config.json's
        // (a mirror's own host's).
        let creds = match creds.or_else(|| (!ep.mirror).then(|| opts.pull_auth.clone()).flatten()) {
            Some(c) => Some(c),
            None => match host.and_then(HostConfig::credentials) {
                Some(c) => Some(c),
                None => opts
                    .auth_file
                    .get(if ep.mirror { &endpoint } else { domain })?,
            },
        };
        let scheme = if ep.scheme == Scheme::Http {
            "http"
        } else {
            "https"
        };
        let mut reg = Registry {
            host: domain.to_string(),
            base: format!("{scheme}://{endpoint}"),
            client,
            creds,
            challenge: Mutex::new(Challenge::None),
            tokens: Mutex::new(HashMap::new()),
        };
        let resp = match reg.ping().await {
            Ok(r) => r,
            Err(e)
                if ep.scheme == Scheme::Auto
                    && insecure
                    && matches!(e, Error::Unreachable { .. }) =>
            {
                tracing::debug!(registry = %endpoint, error = %e, "HTTPS failed; trying plain HTTP (insecure registry)");
                reg.base = format!("http://{endpoint}");
                reg.ping().await?
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            reg.set_challenge(&resp);
        } else if !status.is_success() {
            let url = format!("{}/v2/", reg.base);
            let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
            return Err(match Error::from_status(status.as_u16(), &body) {
                Error::Status {
                    status,
                    codes,
                    reason,
                } => Error::Status {
                    status,
                    codes,
                    reason: format!("{url} is not a registry (v2 API): {reason}"),
                },
                e => e,
            });
        }
        Ok(reg)
    }

    async fn ping(&self) -> Result<Response<Incoming>> {
        let url = format!("{}/v2/", self.base);
        self.send_raw(Method::GET, &url, &[], Bytes::new(), None)
            .await
    }

    /// Whether the registry asked for credentials (`Basic` or a token).
    pub fn requires_auth(&self) -> bool {
        self.challenge
            .lock()
            .map(|c| *c != Challenge::None)
            .unwrap_or(false)
    }

    /// The base URL (`https://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn set_challenge(&self, resp: &Response<Incoming>) {
        for v in resp.headers().get_all(WWW_AUTHENTICATE) {
            let Ok(s) = v.to_str() else { continue };
            let Some((scheme, params)) = parse_challenge(s) else {
                continue;
            };
            let c = match scheme.as_str() {
                "basic" => Challenge::Basic,
                "bearer" => match params.get("realm") {
                    Some(realm) => Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                    },
                    None => continue,
                },
                _ => continue,
            };
            if let Ok(mut cur) = self.challenge.lock() {
                *cur = c;
            }
            return;
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        auth: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>> {
        let uri: Uri = url
            .parse()
            .map_err(|e| Error::Invalid(format!("invalid URL {url}: {e}")))?;
        let mut b = Request::builder().method(method).uri(uri);
        b = b.header(
            http::header::USER_AGENT,
            concat!("skiff/", env!("CARGO_PKG_VERSION")),
        );
        for (k, v) in headers {
            b = b.header(k, v);
        }
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a.clone());
        }
        if !body.is_empty() {
            b = b.header(http::header::CONTENT_LENGTH, body.len());
        }
        let req = b
            .body(Full::new(body))
            .map_err(|e| Error::Invalid(format!("building request for {url}: {e}")))?;
        match tokio::time::timeout(Duration::from_secs(120), self.client.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(unreachable(url, chain(&e))),
            Err(_) => Err(unreachable(url, "timed out waiting for the registry")),
        }
    }

    /// The `Authorization` header for `scopes`, fetching a token if the registry wants
    /// one (`force` fetches a new one).
    async fn authorization(&self, scopes: &[String], force: bool) -> Result<Option<HeaderValue>> {
        let challenge = self
            .challenge
            .lock()
            .map(|c| c.clone())
            .unwrap_or(Challenge::None);
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.creds.as_ref().and_then(|c| basic_header(c).ok())),
            Challenge::Bearer { realm, service } => {
                let key = scopes.join(" ");
                if !force {
                    if let Some(t) = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned()) {
                        return Ok(bearer_header(&t));
                    }
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(key, token.clone());
                }
                Ok(bearer_header(&token))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let mut q = Vec::new();
        if let Some(s) = service {
            q.push(format!(
                "service={}",
                utf8_percent_encode(s, NON_ALPHANUMERIC)
            ));
        }
        for s in scopes {
            q.push(format!(
                "scope={}",
                utf8_percent_encode(s, NON_ALPHANUMERIC)
            ));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if q.is_empty() {
            realm.to_string()
        } else {
            format!("{realm}{sep}{}", q.join("&"))
        };
        let auth = self.creds.as_ref().and_then(|c| basic_header(c).ok());
        let resp = self
            .send_raw(Method::GET, &url, &[], Bytes::new(), auth.as_ref())
            .await?;
        let status = resp.status();
        let body = read_limited(resp, 1 << 20).await?;
        if !status.is_success() {
            let e = Error::from_status(status.as_u16(), &body);
            return Err(match e {
                Error::Status {
                    status,
                    codes,
                    reason,
                } => Error::Status {
                    status,
                    codes,
                    reason: format!("getting a token from {}: {reason}", realm),
                },
                e => e,
            });
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let t: Token = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("invalid token answer from {realm}: {e}")))?;
        let tok = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if tok.is_empty() {
            return Err(Error::Invalid(format!(
                "the token server {realm} sent no token"
            )));
        }
        Ok(tok)
    }

    /// Sends a request to `path_or_url` (a path under the base URL, or an absolute URL
    /// the registry gave), authenticating for `scopes`; follows redirects for GET and
    /// HEAD. Answers with any status are returned, except 401, which becomes an error
    /// after one new attempt at authenticating.
    pub async fn send(
        &self,
        method: Method,
        path_or_url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        scopes: &[String],
    ) -> Result<Response<Incoming>> {
        let mut url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{}", self.base, path_or_url)
        };
        let mut auth = self.authorization(scopes, false).await?;
        let mut retried = false;
        let mut redirects = 0;
        loop {
            let same_host = same_origin(&url, &self.base);
            let a = if same_host { auth.as_ref() } else { None };
            let resp = self
                .send_raw(method.clone(), &url, headers, body.clone(), a)
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && same_host {
                let before = self
                    .challenge
                    .lock()
                    .map(|c| c.clone())
                    .unwrap_or(Challenge::None);
                self.set_challenge(&resp);
                let now = self
                    .challenge
                    .lock()
                    .map(|c| c.clone())
                    .unwrap_or(Challenge::None);
                if now == Challenge::Basic && self.creds.is_none() {
                    return Err(Error::NoBasicCredentials {
                        method: method_name(&method),
                        url,
                    });
                }
                if !retried && (before != now || matches!(now, Challenge::Bearer { .. })) {
                    retried = true;
                    auth = self.authorization(scopes, true).await?;
                    continue;
                }
                let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
                return Err(Error::from_status(401, &body));
            }
            if status.is_redirection()
                && matches!(method, Method::GET | Method::HEAD)
                && status != StatusCode::NOT_MODIFIED
            {
                redirects += 1;
                if redirects > 5 {
                    return Err(Error::Invalid(format!("{url}: too many redirects")));
                }
                let loc = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::Invalid(format!("{url}: redirect without a Location")))?;
                url = self.resolve_url(&url, loc);
                continue;
            }
            return Ok(resp);
        }
    }

    /// `loc` (absolute, or relative to `current`) as an absolute URL.
    pub(crate) fn resolve_url(&self, current: &str, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            // scheme://host of the current URL
            let host_end = current
                .find("://")
                .and_then(|i| current[i + 3..].find('/').map(|j| i + 3 + j))
                .unwrap_or(current.len());
            format!("{}{}", &current[..host_end], loc)
        } else {
            let dir_end = current.rfind('/').map(|i| i + 1).unwrap_or(current.len());
            format!("{}{}", &current[..dir_end], loc)
        }
    }

    /// Verifies the credentials: a request to `/v2/` that needs them (for a token
    /// registry, a token fetched with them).
    pub async fn check_login(&self) -> Result<()> {
        let challenge = self
            .challenge
            .lock()
            .map(|c| c.clone())
            .unwrap_or(Challenge::None);
        if let Challenge::Bearer { realm, service } = &challenge {
            self.fetch_token(realm, service.as_deref(), &[]).await?;
        }
        let resp = self
            .send(Method::GET, "/v2/", &[], Bytes::new(), &[])
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        Err(Error::from_status(status.as_u16(), &body))
    }
}

fn method_name(m: &Method) -> String {
    let s = m.as_str().to_ascii_lowercase();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => s,
    }
}

fn basic_header(c: &Credentials) -> Result<HeaderValue> {
    let v =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    let mut h = HeaderValue::from_str(&format!("Basic {v}"))
        .map_err(|_| Error::Invalid("credentials are not valid in a header".into()))?;
    h.set_sensitive(true);
    Ok(h)
}

fn bearer_header(t: &str) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// How long a body may stall before the registry counts as gone.
const BODY_IDLE: Duration = Duration::from_secs(60);

/// The next frame of a body, or an error if none comes for [`BODY_IDLE`].
pub(crate) async fn next_frame(
    body: &mut Incoming,
) -> Result<Option<std::result::Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
    tokio::time::timeout(BODY_IDLE, body.frame())
        .await
        .map_err(|_| Error::Transport("the registry sent nothing for 60s".into()))
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(resp: Response<Incoming>, limit: usize) -> Result<Vec<u8>> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = next_frame(&mut body).await? {
        let frame = frame.map_err(|e| Error::Transport(chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Error::Invalid(format!("answer larger than {limit} bytes")));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Reads an error answer into an [`Error`].
pub(crate) async fn status_error(resp: Response<Incoming>) -> Error {
    let status = resp.status().as_u16();
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    Error::from_status(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirrors::endpoint_host;

    #[test]
    fn credentials_follow_redirects_only_to_the_same_origin() {
        let base = "http://127.0.0.1:5000";
        assert!(same_origin(
            "http://127.0.0.1:5000/v2/x/blobs/sha256:1",
            base
        ));
        assert!(same_origin("http://127.0.0.1:5000", base));
        assert!(!same_origin("http://127.0.0.1:50001/v2/", base));
        assert!(!same_origin("https://127.0.0.1:5000/v2/", base));
        let base = "https://registry.example.com";
        assert!(!same_origin(
            "https://registry.example.com.evil.test/v2/",
            base
        ));
        assert!(!same_origin(
            "https://registry.example.com@evil.test/v2/",
            base
        ));
        assert!(same_origin("https://registry.example.com/v2/?n=1", base));
    }

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.example.com/token");
        assert_eq!(p["service"], "registry.example.com");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        let (_, p) = parse_challenge("Bearer realm=x, error=insufficient_scope").unwrap();
        assert_eq!(
            (p["realm"].as_str(), p["error"].as_str()),
            ("x", "insufficient_scope")
        );
    }

    #[test]
    fn loopback_and_endpoints() {
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
        assert_eq!(endpoint_host("docker.io"), "registry-1.docker.io");
        assert_eq!(endpoint_host("quay.io"), "quay.io");
        assert_eq!(method_name(&Method::HEAD), "Head");
    }
}
