//! The image configuration document (OCI image config plus docker's extra fields),
//! as hand-written serde structs so that docker-only fields round-trip.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The image config JSON (`application/vnd.oci.image.config.v1+json`).
/// Its sha256 digest is the image id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we do not model (docker's `container`, `docker_version`...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `config` object: what a container started from the image gets by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Vec::is_empty")]
    pub shell: Vec<String>,
    #[serde(rename = "OnBuild", default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
    /// Fields we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Docker's HEALTHCHECK settings (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(rename = "Test", default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(rename = "Interval", default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(rename = "Timeout", default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(rename = "StartPeriod", default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(rename = "StartInterval", default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(rename = "Retries", default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `rootfs`: the uncompressed layer digests, bottom first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default = "layers_type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

fn layers_type() -> String {
    "layers".to_string()
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            typ: layers_type(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The Go architecture name of this machine (`amd64`, `arm64`...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Now, in the RFC 3339 form docker writes (`2024-01-02T03:04:05.12345678Z`).
pub fn now_rfc3339() -> String {
    go_rfc3339_nano(chrono::Utc::now())
}

/// `t` as Go's `time.RFC3339Nano` writes it: the fraction without trailing zeros (and
/// no fraction at all when it is zero). Tools that decode and re-encode an image
/// config in Go (skopeo converting to OCI) then write the very same bytes, so the
/// image id does not change.
pub fn go_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    match s.rfind('.') {
        Some(dot) => {
            let frac = s[dot + 1..s.len() - 1].trim_end_matches('0');
            if frac.is_empty() {
                format!("{}Z", &s[..dot])
            } else {
                format!("{}.{frac}Z", &s[..dot])
            }
        }
        None => s,
    }
}

impl ImageConfig {
    /// An empty config for this host (what `FROM scratch` starts with).
    pub fn scratch() -> Self {
        ImageConfig {
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
            ..Default::default()
        }
    }
}

impl ContainerConfig {
    /// The value of `key` in `Env`, if set.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if kv == key => Some(""),
                _ => None,
            })
    }
    /// Set `key=value` in `Env`, replacing an existing entry in place.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        for kv in self.env.iter_mut() {
            if kv.split('=').next() == Some(key) {
                *kv = entry;
                return;
            }
        }
        self.env.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_go_writes_them() {
        use chrono::TimeZone;
        let t = |ns| chrono::Utc.timestamp_opt(1_700_000_000, ns).unwrap();
        assert_eq!(
            go_rfc3339_nano(t(123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(go_rfc3339_nano(t(120_000_000)), "2023-11-14T22:13:20.12Z");
        assert_eq!(go_rfc3339_nano(t(0)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn docker_fields_round_trip() {
        let doc = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"Shell":["/bin/bash","-c"],"OnBuild":["RUN x"],"Domainname":""},"rootfs":{"type":"layers","diff_ids":[]},"docker_version":"24"}"#;
        let c: ImageConfig = serde_json::from_str(doc).unwrap();
        assert_eq!(c.config.shell, vec!["/bin/bash", "-c"]);
        assert_eq!(
            c.config.healthcheck.as_ref().unwrap().interval,
            1_000_000_000
        );
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["docker_version"], "24");
        assert_eq!(back["config"]["Domainname"], "");
        assert_eq!(back["config"]["OnBuild"][0], "RUN x");
    }
}
