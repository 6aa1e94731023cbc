//! Credentials in docker's `config.json` (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`): `auths` entries holding base64 `user:password`, and the
//! credential helpers it names (`credsStore`, `credHelpers`), run when installed.

use crate::error::{Error, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The key docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token). Never printed: `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The key a registry host has in `config.json` (Docker Hub's is its v1 URL).
pub fn config_key(host: &str) -> String {
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// `https://host:5000/v2/` → `host:5000`, as docker matches `auths` keys.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// A docker `config.json`.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_location() -> AuthFile {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/root"));
                home.join(".docker")
            }
        };
        AuthFile {
            path: dir.join("config.json"),
        }
    }

    /// The file at `path`.
    pub fn at(path: &Path) -> AuthFile {
        AuthFile {
            path: path.to_path_buf(),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Map<String, Value>> {
        match std::fs::read(&self.path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(Error::Invalid(format!(
                    "{}: not a JSON object",
                    self.path.display()
                ))),
                Err(e) => Err(Error::Invalid(format!(
                    "loading config file {}: {e}",
                    self.path.display()
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
    }

    fn write(&self, m: &Map<String, Value>) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let data = serde_json::to_vec_pretty(&Value::Object(m.clone()))
            .map_err(|e| Error::Invalid(format!("serializing {}: {e}", self.path.display())))?;
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let res = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", self.path.display()), e));
        }
        Ok(())
    }

    /// The helper named for `host` (`credHelpers`, then `credsStore`), if installed.
    fn helper(m: &Map<String, Value>, host: &str) -> Option<String> {
        let key = config_key(host);
        let named = m
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|h| h.get(&key).or_else(|| h.get(host)))
            .or_else(|| m.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        let bin = format!("docker-credential-{named}");
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&bin).is_file()));
        if found {
            Some(bin)
        } else {
            tracing::debug!(helper = %bin, "credential helper not installed; using the auths entries");
            None
        }
    }

    /// The credentials stored for `host` (a registry host, `docker.io` for Docker Hub).
    pub fn get(&self, host: &str) -> Result<Option<Credentials>> {
        let m = self.read()?;
        if let Some(bin) = Self::helper(&m, host) {
            return helper_get(&bin, &config_key(host));
        }
        let Some(auths) = m.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let key = config_key(host);
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| key_host(k) == key_host(&key))
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else { return Ok(None) };
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| {
                    Error::Invalid(format!(
                        "{}: invalid auth entry for {key}",
                        self.path.display()
                    ))
                })?;
            let s = String::from_utf8(raw).map_err(|_| {
                Error::Invalid(format!(
                    "{}: invalid auth entry for {key}",
                    self.path.display()
                ))
            })?;
            let (u, p) = s.split_once(':').ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: invalid auth entry for {key}",
                    self.path.display()
                ))
            })?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        let user = entry.get("username").and_then(Value::as_str);
        let pass = entry.get("password").and_then(Value::as_str);
        Ok(match (user, pass) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => None,
        })
    }

    /// Stores credentials for `host` (in its helper if one is installed).
    pub fn store(&self, host: &str, c: &Credentials) -> Result<()> {
        let mut m = self.read()?;
        let key = config_key(host);
        if let Some(bin) = Self::helper(&m, host) {
            let input = json!({"ServerURL": key, "Username": c.username, "Secret": c.password});
            run_helper(&bin, "store", input.to_string().as_bytes())?;
            let auths = m.entry("auths").or_insert_with(|| json!({}));
            if let Some(a) = auths.as_object_mut() {
                a.insert(key, json!({}));
            }
            return self.write(&m);
        }
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        let auths = m.entry("auths").or_insert_with(|| json!({}));
        if !auths.is_object() {
            *auths = json!({});
        }
        if let Some(a) = auths.as_object_mut() {
            a.insert(key, json!({ "auth": auth }));
        }
        self.write(&m)
    }

    /// Removes the credentials for `host`; whether there were any.
    pub fn erase(&self, host: &str) -> Result<bool> {
        let mut m = self.read()?;
        let key = config_key(host);
        if let Some(bin) = Self::helper(&m, host) {
            run_helper(&bin, "erase", key.as_bytes())?;
        }
        let mut found = false;
        if let Some(a) = m.get_mut("auths").and_then(Value::as_object_mut) {
            let keys: Vec<String> = a
                .keys()
                .filter(|k| **k == key || key_host(k) == key_host(&key))
                .cloned()
                .collect();
            for k in keys {
                a.remove(&k);
                found = true;
            }
        }
        if found {
            self.write(&m)?;
        }
        Ok(found)
    }
}

fn run_helper(bin: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(bin)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {bin} {verb}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("running {bin} {verb}"), e))?;
    if !out.status.success() {
        // Helpers print their reason on stdout (docker-credential-helpers' protocol).
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(Error::Invalid(format!("{bin} {verb}: {msg}")));
    }
    Ok(out.stdout)
}

fn helper_get(bin: &str, key: &str) -> Result<Option<Credentials>> {
    let out = match run_helper(bin, "get", key.as_bytes()) {
        Ok(o) => o,
        Err(Error::Invalid(msg)) if msg.contains("credentials not found") => return Ok(None),
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_slice(&out)
        .map_err(|e| Error::Invalid(format!("{bin} get: invalid answer: {e}")))?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: user.to_string(),
        password: secret.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_get_erase_keep_other_fields() {
        let t = tempfile::tempdir().unwrap();
        let f = AuthFile::at(&t.path().join("d/config.json"));
        assert_eq!(f.get("localhost:5000").unwrap(), None);
        std::fs::create_dir_all(t.path().join("d")).unwrap();
        std::fs::write(
            f.path(),
            r#"{"auths":{"https://other:1/v2/":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            f.get("other:1").unwrap(),
            Some(Credentials {
                username: "u".into(),
                password: "p".into()
            })
        );
        let c = Credentials {
            username: "me".into(),
            password: "s:e:cret".into(),
        };
        f.store("localhost:5000", &c).unwrap();
        f.store("docker.io", &c).unwrap();
        assert_eq!(f.get("localhost:5000").unwrap(), Some(c.clone()));
        let v: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert_eq!(v["auths"]["localhost:5000"]["auth"], "bWU6czplOmNyZXQ=");
        assert!(v["auths"][DOCKER_HUB_KEY].is_object());
        assert!(!format!("{c:?}").contains("cret"));
        assert!(f.erase("localhost:5000").unwrap());
        assert!(!f.erase("localhost:5000").unwrap());
        assert_eq!(f.get("localhost:5000").unwrap(), None);
        assert!(f.get("docker.io").unwrap().is_some());
    }

    #[test]
    fn helper_that_is_missing_falls_back_to_auths() {
        let t = tempfile::tempdir().unwrap();
        let f = AuthFile::at(&t.path().join("config.json"));
        std::fs::write(
            f.path(),
            r#"{"credsStore":"skiff-test-not-installed","auths":{"h:1":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        assert_eq!(f.get("h:1").unwrap().unwrap().username, "u");
    }
}
