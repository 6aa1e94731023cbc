//! k3s's `registries.yaml`: mirrors (endpoints tried in order, repository rewrites) and
//! per-host settings (`auth`, `tls`), read by the engine and the node agent alike.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000", "https://mirror.example"]
//!     rewrite:
//!       "^library/(.*)": "dockerhub/library/$1"
//!   "*":                       # every registry without an entry of its own
//!     endpoint: ["https://cache.example"]
//! configs:
//!   mirror.example:
//!     auth: {username: u, password: p}
//!     tls: {ca_file: /etc/ssl/ca.pem, cert_file: c.pem, key_file: k.pem, insecure_skip_verify: false}
//! ```
//!
//! A pull tries a registry's mirror endpoints in order and then the registry itself,
//! unless the default endpoint is disabled (k3s's `--disable-default-registry-endpoint`),
//! as containerd does. Rewrites apply on mirror endpoints only, never on the upstream.

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The host an image's registry is reached at (`docker.io` → `registry-1.docker.io`).
pub fn endpoint_host(domain: &str) -> &str {
    if domain == "docker.io" || domain == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
    /// Compiled rewrites, per mirror key, in the file's order.
    #[serde(skip)]
    rewrites: BTreeMap<String, Vec<(regex::Regex, String)>>,
}

/// One registry's mirrors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// Settings for one host (a registry or a mirror endpoint).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("auth", &self.auth.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `auth`: a user name and password, or docker's base64 `auth`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// `tls`: files for verifying the host and for a client certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// How an endpoint is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// HTTPS, falling back to plain HTTP for an insecure registry (docker's rule).
    Auto,
    Https,
    Http,
}

/// One place a registry's content may be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as it is dialled.
    pub host: String,
    pub scheme: Scheme,
    /// A mirror (from `registries.yaml`), not the registry itself.
    pub mirror: bool,
}

impl Endpoint {
    /// The registry `domain` itself (`docker.io` → `registry-1.docker.io`).
    pub fn upstream(domain: &str) -> Endpoint {
        Endpoint {
            host: endpoint_host(domain).to_string(),
            scheme: Scheme::Auto,
            mirror: false,
        }
    }

    /// `https://host:port`, `http://host`, `host:5000` (HTTPS), with an optional `/v2`.
    fn parse(s: &str, key: &str) -> Result<Endpoint> {
        // Userinfo (`user:password@`) is never repeated.
        let shown = match s.rfind('@') {
            Some(i) => format!("…@{}", &s[i + 1..]),
            None => s.to_string(),
        };
        let bad = |why: &str| {
            Error::Invalid(format!(
                "registries.yaml: mirror endpoint {shown:?} of {key:?}: {why}"
            ))
        };
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if s.contains("://") {
            return Err(bad("the scheme must be http or https"));
        } else {
            (Scheme::Https, s)
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains('@') || host.chars().any(|c| c.is_whitespace()) {
            return Err(bad("not a host[:port]"));
        }
        if !matches!(path.trim_end_matches('/'), "" | "/v2") {
            return Err(bad("path prefixes other than /v2 are not supported"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            scheme,
            mirror: true,
        })
    }
}

impl RegistriesConfig {
    /// Parses the YAML text of a `registries.yaml` (`what` names it in errors).
    pub fn parse(text: &str, what: &str) -> Result<RegistriesConfig> {
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        let mut c: RegistriesConfig = serde_yaml::from_str(text)
            .map_err(|e| Error::Invalid(format!("{what}: {}", redact_values(&e.to_string()))))?;
        for (key, m) in &c.mirrors {
            for ep in &m.endpoint {
                Endpoint::parse(ep, key)?;
            }
            let mut rules = Vec::new();
            for (pat, to) in &m.rewrite {
                let re = regex::Regex::new(pat).map_err(|e| {
                    Error::Invalid(format!("{what}: rewrite {pat:?} of mirror {key:?}: {e}"))
                })?;
                rules.push((re, to.clone()));
            }
            c.rewrites.insert(key.clone(), rules);
        }
        for (host, hc) in &c.configs {
            if let Some(a) = &hc.auth {
                if a.identitytoken.as_deref().is_some_and(|t| !t.is_empty()) {
                    return Err(Error::Invalid(format!(
                        "{what}: configs {host:?}: auth.identitytoken is not supported by skiff; use username and password"
                    )));
                }
                if let Some(b) = a.auth.as_deref().filter(|b| !b.is_empty()) {
                    decode_auth(b).map_err(|why| {
                        Error::Invalid(format!("{what}: configs {host:?}: auth.auth {why}"))
                    })?;
                }
            }
            if let Some(t) = &hc.tls {
                if t.cert_file.is_some() != t.key_file.is_some() {
                    return Err(Error::Invalid(format!(
                        "{what}: configs {host:?}: tls.cert_file and tls.key_file go together"
                    )));
                }
            }
        }
        Ok(c)
    }

    /// Reads `path`; a file that does not exist is an empty configuration when
    /// `required` is false (the default location), an error when true (named by flag).
    pub fn load(path: &Path, required: bool) -> Result<RegistriesConfig> {
        match std::fs::read_to_string(path) {
            Ok(t) => RegistriesConfig::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(RegistriesConfig::default())
            }
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn mirror(&self, domain: &str) -> Option<(&str, &Mirror)> {
        self.mirrors
            .get_key_value(domain)
            .or_else(|| {
                // docker.io is also written index.docker.io or registry-1.docker.io.
                if endpoint_host(domain) == "registry-1.docker.io" {
                    self.mirrors.get_key_value("docker.io")
                } else {
                    None
                }
            })
            .or_else(|| self.mirrors.get_key_value("*"))
            .map(|(k, m)| (k.as_str(), m))
    }

    /// Where `domain`'s content is fetched from, in order: its mirrors, then the
    /// registry itself unless it has mirrors and `disable_default` is set (k3s's
    /// `--disable-default-registry-endpoint`), or it is listed among them.
    pub fn endpoints(&self, domain: &str, disable_default: bool) -> Result<Vec<Endpoint>> {
        let upstream = Endpoint::upstream(domain);
        let mut out = Vec::new();
        let mirrored = self.mirror(domain);
        let disable_default = disable_default && mirrored.is_some();
        if let Some((key, m)) = mirrored {
            for ep in &m.endpoint {
                let mut e = Endpoint::parse(ep, key)?;
                if e.host == upstream.host || e.host == domain {
                    // The registry named as its own mirror: no rewrites there.
                    e.mirror = false;
                }
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        if !disable_default && !out.iter().any(|e| !e.mirror) {
            out.push(upstream);
        }
        if out.is_empty() {
            return Err(Error::Invalid(format!(
                "no endpoint to pull from for registry {domain}: it has no mirror in registries.yaml and the default endpoint is disabled (--disable-default-registry-endpoint)"
            )));
        }
        Ok(out)
    }

    /// The repository path to ask a mirror of `domain` for (`library/busybox`), after
    /// the mirror's rewrites (the first pattern that matches).
    pub fn rewrite(&self, domain: &str, path: &str) -> String {
        let Some((key, _)) = self.mirror(domain) else {
            return path.to_string();
        };
        for (re, to) in self.rewrites.get(key).map(Vec::as_slice).unwrap_or(&[]) {
            if re.is_match(path) {
                return re.replace(path, to.as_str()).into_owned();
            }
        }
        path.to_string()
    }

    /// The settings for `host` (`host:port`): its own entry, else `*`'s.
    pub fn host_config(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host).or_else(|| self.configs.get("*"))
    }

    /// The settings for endpoint `ep` of registry `domain`: the endpoint's own entry,
    /// else (for the registry itself, not a mirror) the registry name's, else `*`'s.
    pub fn endpoint_config(&self, ep: &Endpoint, domain: &str) -> Option<&HostConfig> {
        self.configs
            .get(&ep.host)
            .or_else(|| (!ep.mirror).then(|| self.configs.get(domain)).flatten())
            .or_else(|| self.configs.get("*"))
    }

    /// The credentials `registries.yaml` gives `host`, if any.
    pub fn credentials(&self, host: &str) -> Option<Credentials> {
        self.host_config(host)?.credentials()
    }
}

impl HostConfig {
    /// The credentials of `auth`, if it names any.
    pub fn credentials(&self) -> Option<Credentials> {
        let a = self.auth.as_ref()?;
        if let Some(b) = a.auth.as_deref().filter(|b| !b.is_empty()) {
            return decode_auth(b).ok();
        }
        Some(Credentials {
            username: a.username.clone().unwrap_or_default(),
            password: a.password.clone().unwrap_or_default(),
        })
        .filter(|c| !c.username.is_empty() || !c.password.is_empty())
    }
}

/// A YAML error without the values it quotes (`invalid type: string "…"`): the value
/// at fault may be a password written in the wrong place.
fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        let (head, tail) = rest.split_at(i + "string \"".len());
        out.push_str(head);
        match tail.find('"') {
            Some(j) => {
                out.push_str("…\"");
                rest = &tail[j + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// docker's `auth`: base64 of `user:password`. Errors never echo the value.
fn decode_auth(b: &str) -> std::result::Result<Credentials, &'static str> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .map_err(|_| "is not base64")?;
    let s = String::from_utf8(raw).map_err(|_| "is not UTF-8 text")?;
    let (u, p) = s.split_once(':').ok_or("is not base64 of user:password")?;
    Ok(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "mirror.example:8443/v2"
    rewrite:
      "^library/(.*)": "hub/$1"
  "*":
    endpoint: ["https://cache.example"]
  quay.io: {}
configs:
  "mirror.example:8443":
    auth: {auth: "dTpwYXNz"}
    tls: {insecure_skip_verify: true}
  "127.0.0.1:5000":
    auth: {username: alice, password: s3cret}
"#;

    fn host(e: &Endpoint) -> (&str, Scheme, bool) {
        (e.host.as_str(), e.scheme, e.mirror)
    }

    #[test]
    fn mirrors_come_first_then_the_registry_unless_disabled() {
        let c = RegistriesConfig::parse(FILE, "t").unwrap();
        let eps = c.endpoints("docker.io", false).unwrap();
        let hs: Vec<_> = eps.iter().map(host).collect();
        assert_eq!(
            hs,
            [
                ("127.0.0.1:5000", Scheme::Http, true),
                ("mirror.example:8443", Scheme::Https, true),
                ("registry-1.docker.io", Scheme::Auto, false)
            ]
        );
        assert_eq!(c.endpoints("docker.io", true).unwrap().len(), 2);
        // index.docker.io is docker.io.
        assert_eq!(c.endpoints("index.docker.io", true).unwrap().len(), 2);
        // "*" covers the rest; an entry without endpoints has only the registry.
        let other: Vec<_> = c.endpoints("ghcr.io", false).unwrap();
        assert_eq!(other[0].host, "cache.example");
        assert_eq!(other[1].host, "ghcr.io");
        assert_eq!(c.endpoints("quay.io", false).unwrap().len(), 1);
        // A registry without mirrors is always reached itself.
        let plain =
            RegistriesConfig::parse("mirrors: {docker.io: {endpoint: [\"m\"]}}", "t").unwrap();
        assert_eq!(
            plain.endpoints("localhost:5000", true).unwrap()[0].host,
            "localhost:5000"
        );
        let e = c.endpoints("quay.io", true).unwrap_err().to_string();
        assert!(
            e.contains("quay.io") && e.contains("--disable-default-registry-endpoint"),
            "{e}"
        );
    }

    #[test]
    fn rewrites_pick_the_first_match() {
        let c = RegistriesConfig::parse(FILE, "t").unwrap();
        assert_eq!(c.rewrite("docker.io", "library/busybox"), "hub/busybox");
        assert_eq!(c.rewrite("docker.io", "someone/app"), "someone/app");
        assert_eq!(c.rewrite("ghcr.io", "library/x"), "library/x");
    }

    #[test]
    fn credentials_come_from_configs() {
        let c = RegistriesConfig::parse(FILE, "t").unwrap();
        let a = c.credentials("mirror.example:8443").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "pass"));
        let b = c.credentials("127.0.0.1:5000").unwrap();
        assert_eq!(b.username, "alice");
        assert!(c.credentials("ghcr.io").is_none());
        assert!(
            c.host_config("mirror.example:8443")
                .unwrap()
                .tls
                .as_ref()
                .unwrap()
                .insecure_skip_verify
        );
        // Debug never shows a secret.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        for (text, want) in [
            ("mirrors: [1]", "mirrors"),
            ("mirror: {}", "unknown field `mirror`"),
            (
                "mirrors: {docker.io: {endpoint: [\"ftp://x\"]}}",
                "http or https",
            ),
            (
                "mirrors: {docker.io: {endpoint: [\"https://x/prefix\"]}}",
                "path prefixes",
            ),
            (
                "mirrors: {docker.io: {rewrite: {\"(\": \"x\"}}}",
                "rewrite \"(\"",
            ),
            ("configs: {h: {auth: {auth: \"%%%\"}}}", "not base64"),
            (
                "configs: {h: {auth: {identitytoken: \"t\"}}}",
                "identitytoken",
            ),
            ("configs: {h: {tls: {cert_file: /a}}}", "go together"),
            (
                "mirrors: {docker.io: {endpoint: [\"https://u:pw@m\"]}}",
                "\"…@m\"",
            ),
        ] {
            let e = RegistriesConfig::parse(text, "registries.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(RegistriesConfig::parse("", "x").unwrap().mirrors.is_empty());
        // A password in the wrong place is not repeated in the error.
        let e = RegistriesConfig::parse("configs: {h: {auth: \"hunter2-pw\"}}", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid type: string") && !e.contains("hunter2"),
            "{e}"
        );
        let missing = Path::new("/nonexistent/registries.yaml");
        assert!(RegistriesConfig::load(missing, false)
            .unwrap()
            .mirrors
            .is_empty());
        assert!(RegistriesConfig::load(missing, true).is_err());
    }
}
