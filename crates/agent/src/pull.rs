//! The image manager (the kubelet's `pkg/kubelet/images`): a container's image per
//! its pull policy, with the kubelet's events, the pod's pull secrets as a keyring,
//! one pull per image however many pods wait for it, and at most so many pulls at
//! once (`--serialize-image-pulls`, `--max-parallel-image-pulls`).
//!
//! One deliberate difference from the kubelet, for air-gapped nodes: with `Always`,
//! when the registry cannot be reached at all (refused, DNS, TLS, timeout; never on
//! an answer such as 401, 403 or 404) and the image is on the node, the node's copy
//! runs and a Warning event names the registry's error.

use crate::cri::{Credentials, Image, PulledImage, Runtime, RuntimeError};
use crate::events::PodEvents;
use crate::lookup::ObjectLookup;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How many pulls may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// `--serialize-image-pulls` (the kubelet's default: true): one at a time.
    pub serialize: bool,
    /// `--max-parallel-image-pulls` when not serialized (None: no limit).
    pub max_parallel: Option<u32>,
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits {
            serialize: true,
            max_parallel: None,
        }
    }
}

impl PullLimits {
    /// Checks the pair as the kubelet's configuration validation does.
    pub fn new(serialize: bool, max_parallel: Option<u32>) -> Result<PullLimits, String> {
        match max_parallel {
            Some(0) => Err("invalid configuration: maxParallelImagePulls (--max-parallel-image-pulls) 0 must be a positive number".into()),
            Some(n) if serialize && n != 1 => Err(format!(
                "invalid configuration: maxParallelImagePulls (--max-parallel-image-pulls) {n} must be 1 if serializeImagePulls (--serialize-image-pulls) is true"
            )),
            _ => Ok(PullLimits {
                serialize,
                max_parallel,
            }),
        }
    }

    fn slots(self) -> usize {
        if self.serialize {
            1
        } else {
            self.max_parallel.map(|n| n as usize).unwrap_or(usize::MAX)
        }
    }
}

/// Why an image could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// Missing, and the policy is Never.
    #[error("Container image \"{0}\" is not present with pull policy of Never")]
    NeverPull(String),
    /// The pull failed (the registry's reason, never a credential).
    #[error("Failed to pull image \"{image}\": {reason}")]
    Failed { image: String, reason: String },
    /// The runtime could not say whether the image is present.
    #[error("checking image \"{image}\": {reason}")]
    Status { image: String, reason: String },
}

type FlightResult = Result<PulledImage, (String, bool)>;

/// A pull in progress; the pods that need the same image wait on it.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<FlightResult>>,
    cv: Condvar,
}

/// Shared by the node's pod workers.
pub struct ImagePuller {
    limits: PullLimits,
    running: Mutex<usize>,
    freed: Condvar,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
}

impl ImagePuller {
    pub fn new(limits: PullLimits) -> ImagePuller {
        ImagePuller {
            limits,
            running: Mutex::new(0),
            freed: Condvar::new(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Pulls `image` with `auth`, or waits for the same pull another pod started.
    /// The error is the registry's reason and whether the registry was unreachable.
    fn pull_shared(
        &self,
        runtime: &dyn Runtime,
        image: &str,
        auth: Option<&Credentials>,
    ) -> FlightResult {
        let key = format!(
            "{image}\0{}",
            auth.map(|c| c.username.as_str()).unwrap_or("")
        );
        self.shared(&key, || runtime.pull_image(image, auth))
    }

    /// Runs `pull` as the flight `key` within a pull slot, unless the same flight is
    /// under way: then waits for it and shares its result.
    fn shared(
        &self,
        key: &str,
        pull: impl FnOnce() -> Result<PulledImage, RuntimeError>,
    ) -> FlightResult {
        let (flight, leader) = {
            let mut m = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match m.get(key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    m.insert(key.to_string(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut done = flight.done.lock().unwrap_or_else(|p| p.into_inner());
            while done.is_none() {
                done = flight.cv.wait(done).unwrap_or_else(|p| p.into_inner());
            }
            return done
                .clone()
                .unwrap_or(Err(("pull abandoned".into(), false)));
        }
        let res = {
            let _slot = self.slot();
            pull().map_err(|e| {
                let unreachable = matches!(
                    &e,
                    RuntimeError::Pull(skiff_registry::Error::Unreachable { .. })
                );
                (e.to_string(), unreachable)
            })
        };
        *flight.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(res.clone());
        flight.cv.notify_all();
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        res
    }

    /// Waits for a free pull slot; it is given back when the guard drops.
    fn slot(&self) -> SlotGuard<'_> {
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.limits.slots() {
            n = self.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a ImagePuller);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

/// What the agent around the image manager provides.
pub struct PullContext<'a> {
    pub runtime: &'a dyn Runtime,
    pub puller: &'a ImagePuller,
    pub lookup: &'a dyn ObjectLookup,
    pub events: &'a dyn PodEvents,
}

/// The image container `c` of `pod` runs, present or pulled per `policy` (`Always`,
/// `IfNotPresent`, `Never`), with the kubelet's events.
pub fn ensure_image(
    cx: &PullContext<'_>,
    pod: &Pod,
    c: &Container,
    image: &str,
    policy: &str,
) -> Result<Image, PullError> {
    let status = |reason: RuntimeError| PullError::Status {
        image: image.to_string(),
        reason: reason.to_string(),
    };
    let present = cx.runtime.image_status(image).map_err(status)?;
    match (policy, present) {
        ("Never" | "IfNotPresent", Some(i)) => {
            cx.events.event(
                pod,
                Some(&c.name),
                false,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            Ok(i)
        }
        ("Never", None) => {
            let e = PullError::NeverPull(image.to_string());
            cx.events.event(
                pod,
                Some(&c.name),
                true,
                "ErrImageNeverPull",
                &e.to_string(),
            );
            Err(e)
        }
        (_, present) => {
            let started = Instant::now();
            cx.events.event(
                pod,
                Some(&c.name),
                false,
                "Pulling",
                &format!("Pulling image \"{image}\""),
            );
            let keyring = pull_secrets(cx, pod, image);
            let mut last = None;
            let attempts: Vec<Option<&Credentials>> = if keyring.is_empty() {
                vec![None]
            } else {
                keyring.iter().map(Some).collect()
            };
            for auth in attempts {
                let t = Instant::now();
                match cx.puller.pull_shared(cx.runtime, image, auth) {
                    Ok(p) => {
                        cx.events.event(
                            pod,
                            Some(&c.name),
                            false,
                            "Pulled",
                            &pulled_message(image, t.elapsed(), started.elapsed(), &p),
                        );
                        return match cx.runtime.image_status(image).map_err(status)? {
                            Some(i) => Ok(i),
                            None => Err(PullError::Failed {
                                image: image.to_string(),
                                reason: "the image was pulled but is gone from the node (removed meanwhile?)".into(),
                            }),
                        };
                    }
                    Err(e) => last = Some(e),
                }
            }
            let (reason, unreachable) = last.unwrap_or_else(|| ("no pull was tried".into(), false));
            if let (Some(i), true) = (present, unreachable) {
                cx.events.event(
                    pod,
                    Some(&c.name),
                    true,
                    "Failed",
                    &format!("Failed to pull image \"{image}\" (imagePullPolicy Always): {reason}; the registry could not be reached, so the image present on this node ({}) is used", i.id),
                );
                return Ok(i);
            }
            let e = PullError::Failed {
                image: image.to_string(),
                reason,
            };
            cx.events
                .event(pod, Some(&c.name), true, "Failed", &e.to_string());
            cx.events
                .event(pod, Some(&c.name), true, "Failed", "Error: ErrImagePull");
            Err(e)
        }
    }
}

/// The kubelet's Pulled message.
fn pulled_message(image: &str, pull: Duration, total: Duration, p: &PulledImage) -> String {
    let ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
    format!(
        "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {} bytes.",
        skiff_meta::time::go_duration(ms(pull)),
        skiff_meta::time::go_duration(ms(total)),
        p.size
    )
}

/// The credentials the pod's `imagePullSecrets` hold for `image`'s registry, most
/// specific first (the kubelet's keyring). A secret that cannot be read is reported.
fn pull_secrets(cx: &PullContext<'_>, pod: &Pod, image: &str) -> Vec<Credentials> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        match cx.lookup.secret(ns, name) {
            Some(data) => entries.extend(docker_config_entries(&data)),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        cx.events.event(
            pod,
            None,
            true,
            "FailedToRetrieveImagePullSecret",
            &format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            ),
        );
    }
    keyring_lookup(&entries, image)
}

/// `(key, credentials)` pairs of a `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`:
/// `{"auths": {...}}`) or `kubernetes.io/dockercfg` (`.dockercfg`: `{...}`) Secret.
pub fn docker_config_entries(
    data: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, Credentials)> {
    let auths = if let Some(j) = data.get(".dockerconfigjson") {
        serde_json::from_str::<serde_json::Value>(j)
            .ok()
            .and_then(|v| v.get("auths").cloned())
    } else if let Some(j) = data.get(".dockercfg") {
        serde_json::from_str::<serde_json::Value>(j).ok()
    } else {
        None
    };
    let Some(serde_json::Value::Object(m)) = auths else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, v) in m {
        let s = |f: &str| v.get(f).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let (mut username, mut password) = (s("username"), s("password"));
        if username.is_empty() && password.is_empty() {
            use base64::Engine as _;
            if let Some((u, p)) = base64::engine::general_purpose::STANDARD
                .decode(s("auth").trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| {
                    t.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            {
                (username, password) = (u, p);
            }
        }
        if !username.is_empty() || !password.is_empty() {
            out.push((key, Credentials { username, password }));
        }
    }
    out
}

/// A keyring key as `(host, path)`: `https://index.docker.io/v1/` → (`docker.io`, ``),
/// `registry.example:5000/team` → (`registry.example:5000`, `team`).
fn key_parts(key: &str) -> (String, String) {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    // docker's `/v1/` and `/v2/` API suffixes are not repository paths.
    let path = path.trim_matches('/');
    let path = if matches!(path, "v1" | "v2") {
        ""
    } else {
        path
    };
    (host.to_ascii_lowercase(), path.to_string())
}

/// Whether the key host (which may start with `*.`) matches the image's registry.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            let (p_host, p_port) = suffix.split_once(':').unwrap_or((suffix, ""));
            let (h, port) = host.split_once(':').unwrap_or((host, ""));
            p_port == port
                && h.strip_suffix(p_host)
                    .is_some_and(|pre| pre.ends_with('.') && pre.len() > 1)
        }
        None => pattern == host,
    }
}

/// The credentials of `entries` that apply to `image`, longest key first.
pub fn keyring_lookup(entries: &[(String, Credentials)], image: &str) -> Vec<Credentials> {
    let Ok(r) = skiff_image::parse_reference(image) else {
        return Vec::new();
    };
    let host = r.domain.to_ascii_lowercase();
    let mut hits: Vec<(usize, Credentials)> = entries
        .iter()
        .filter_map(|(key, c)| {
            let (kh, kp) = key_parts(key);
            let path_ok = kp.is_empty() || r.path == kp || r.path.starts_with(&format!("{kp}/"));
            (host_matches(&kh, &host) && path_ok).then(|| (kh.len() + kp.len(), c.clone()))
        })
        .collect();
    hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    let mut out: Vec<Credentials> = Vec::new();
    for (_, c) in hits {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(u: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: "p".into(),
        }
    }

    #[test]
    fn keyring_matches_hosts_paths_and_wildcards() {
        let entries = vec![
            ("https://index.docker.io/v1/".to_string(), cred("hub")),
            ("registry.example:5000".to_string(), cred("reg")),
            ("registry.example:5000/team".to_string(), cred("team")),
            ("*.corp.example".to_string(), cred("corp")),
        ];
        let users = |img: &str| -> Vec<String> {
            keyring_lookup(&entries, img)
                .into_iter()
                .map(|c| c.username)
                .collect()
        };
        assert_eq!(users("busybox"), ["hub"]);
        assert_eq!(users("docker.io/library/nginx:1.27"), ["hub"]);
        assert_eq!(users("registry.example:5000/team/app:v1"), ["team", "reg"]);
        assert_eq!(users("registry.example:5000/other/app"), ["reg"]);
        assert_eq!(users("registry.example/app"), Vec::<String>::new());
        assert_eq!(users("a.corp.example/app"), ["corp"]);
        assert_eq!(users("corp.example/app"), Vec::<String>::new());
        assert_eq!(users("a.corp.example:8443/app"), Vec::<String>::new());
    }

    #[test]
    fn secrets_of_both_types_are_read() {
        let mut data = std::collections::BTreeMap::new();
        data.insert(
            ".dockerconfigjson".to_string(),
            r#"{"auths":{"localhost:5000":{"username":"u","password":"pw","auth":"dTpwdw=="}}}"#
                .to_string(),
        );
        assert_eq!(
            docker_config_entries(&data),
            vec![(
                "localhost:5000".to_string(),
                Credentials {
                    username: "u".into(),
                    password: "pw".into()
                }
            )]
        );
        let mut old = std::collections::BTreeMap::new();
        old.insert(
            ".dockercfg".to_string(),
            r#"{"localhost:5000":{"auth":"dTpwdw==","email":"x@y"}}"#.to_string(),
        );
        assert_eq!(docker_config_entries(&old)[0].1.password, "pw");
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(".dockerconfigjson".to_string(), "not json".to_string());
        assert!(docker_config_entries(&bad).is_empty());
    }

    fn pulled(id: &str) -> PulledImage {
        PulledImage {
            id: id.into(),
            image_ref: format!("r@{id}"),
            size: 1,
        }
    }

    #[test]
    fn pods_waiting_for_one_image_share_one_pull() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let puller = Arc::new(ImagePuller::new(PullLimits::default()));
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (puller, calls, started) = (puller.clone(), calls.clone(), started.clone());
                std::thread::spawn(move || {
                    started.wait();
                    puller.shared("img\0", || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(300));
                        Ok(pulled("sha256:a"))
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap().id, "sha256:a");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one pull for four waiters");
        // Done flights are gone: a later pull runs again.
        puller
            .shared("img\0", || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(pulled("sha256:a"))
            })
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn at_most_max_parallel_pulls_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for (limits, want) in [
            (PullLimits::new(true, None).unwrap(), 1),
            (PullLimits::new(false, Some(2)).unwrap(), 2),
        ] {
            let puller = Arc::new(ImagePuller::new(limits));
            let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let threads: Vec<_> = (0..5)
                .map(|i| {
                    let (puller, now, peak) = (puller.clone(), now.clone(), peak.clone());
                    std::thread::spawn(move || {
                        puller.shared(&format!("img{i}"), || {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            now.fetch_sub(1, Ordering::SeqCst);
                            Ok(pulled("x"))
                        })
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap().unwrap();
            }
            assert_eq!(peak.load(Ordering::SeqCst), want, "{limits:?}");
        }
    }

    #[test]
    fn limits_follow_the_kubelets_validation() {
        assert_eq!(PullLimits::new(true, None).unwrap().slots(), 1);
        assert_eq!(PullLimits::new(false, Some(3)).unwrap().slots(), 3);
        assert_eq!(PullLimits::new(false, None).unwrap().slots(), usize::MAX);
        assert!(PullLimits::new(true, Some(2))
            .unwrap_err()
            .contains("must be 1 if serializeImagePulls"));
        assert!(PullLimits::new(false, Some(0)).is_err());
    }
}
