//! The runtime of a hollow node (kubemark's fake runtime): pods get a sandbox with an
//! address of the node's pod range and containers that "run", but nothing runs on the
//! host. No process, namespace, mount, cgroup, device or rule is made, and no packet
//! is sent to a pod address: such addresses are never routed.
//!
//! The kubelet code above it is the real one (registration, lease, pod sync, status,
//! volumes' files, Events); only [`crate::cri`]'s calls land here. A container shows
//! `Created` until the node's start delay has passed, then `Running`; init containers
//! exit 0 at that moment, app containers run until stopped. Pulls are instant and
//! touch no registry. Exec answers exit 0 with no output (exec probes pass); probes
//! and hooks over the network pass without a packet ([`RuntimeService::simulated`]).

use crate::cri::*;
use skiff_engine::EngineError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A hollow node's runtime.
pub struct HollowRuntime {
    /// The node's pod range: its network address and prefix length.
    range: (u32, u8),
    /// How long a container takes from its start to `Running`.
    start_delay: Duration,
    /// Where the node's files are (its image filesystem, as reported).
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Sandbox id → its address (None for host network).
    sandboxes: HashMap<String, Option<Ipv4Addr>>,
    used: HashSet<u32>,
    /// The next host index tried for an address.
    next: u32,
    containers: HashMap<String, Fake>,
    /// Normalized name → image.
    images: BTreeMap<String, Image>,
    serial: u64,
}

#[derive(Clone)]
struct Fake {
    sandbox: String,
    config_labels: BTreeMap<String, String>,
    image_id: String,
    image_ref: String,
    tty: bool,
    init: bool,
    created: SystemTime,
    /// When the start was asked for.
    started: Option<SystemTime>,
    /// When it was stopped, and its exit code.
    stopped: Option<(SystemTime, i32)>,
    restarts: u32,
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::NotFound(EngineError::NoSuchContainer(id.to_string()))
}

fn unsupported(what: &str) -> RuntimeError {
    RuntimeError::Engine(EngineError::Invalid(format!(
        "{what}: this is a hollow node, its containers do not run"
    )))
}

impl HollowRuntime {
    /// A runtime for a node whose pods take addresses of `pod_cidr` (`a.b.c.d/n`),
    /// whose containers are running `start_delay` after their start, with its files
    /// under `root`.
    pub fn new(pod_cidr: &str, start_delay: Duration, root: PathBuf) -> Result<HollowRuntime> {
        let bad = || {
            RuntimeError::Engine(EngineError::Invalid(format!(
                "pod CIDR {pod_cidr:?}: not an IPv4 range of at least 4 addresses"
            )))
        };
        let (ip, len) = pod_cidr.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 30 {
            return Err(bad());
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(HollowRuntime {
            range: (u32::from(ip) & mask, len),
            start_delay,
            root,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Host indexes a pod may get: .2 up to the last before broadcast (.1 is the
    /// node's own address on its pod network).
    fn hosts(&self) -> u32 {
        (1u32 << (32 - self.range.1)) - 3
    }

    fn status(&self, id: &str, c: &Fake) -> ContainerStatus {
        let now = SystemTime::now();
        let running_since = c.started.map(|s| s + self.start_delay);
        let (state, started_at, finished_at, exit_code, reason) = match (c.stopped, running_since) {
            (Some((at, code)), since) => (
                ContainerState::Exited,
                since.filter(|s| *s <= at).map(rfc3339),
                Some(rfc3339(at)),
                code,
                if code == 0 { "Completed" } else { "Error" },
            ),
            // An init container's work is done the moment it would be running.
            (None, Some(since)) if since <= now && c.init => (
                ContainerState::Exited,
                Some(rfc3339(since)),
                Some(rfc3339(since)),
                0,
                "Completed",
            ),
            (None, Some(since)) if since <= now => {
                (ContainerState::Running, Some(rfc3339(since)), None, 0, "")
            }
            _ => (ContainerState::Created, None, None, 0, ""),
        };
        ContainerStatus {
            id: id.to_string(),
            state,
            created_at: rfc3339(c.created),
            started_at,
            finished_at,
            exit_code,
            reason: reason.into(),
            image_id: c.image_id.clone(),
            image_ref: c.image_ref.clone(),
            labels: c.config_labels.clone(),
            log_path: self.root.join("logs").join(id),
            restart_count: c.restarts,
            tty: c.tty,
            pid: 0,
            last: None,
        }
    }
}

impl RuntimeService for HollowRuntime {
    fn simulated(&self) -> bool {
        true
    }

    fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<PodSandbox> {
        let mut st = self.state();
        if let Some(ip) = st.sandboxes.get(&config.id) {
            let ip = *ip;
            return Ok(sandbox(&config.id, ip, config.share_pid));
        }
        let ip = if config.host_network {
            None
        } else {
            let hosts = self.hosts();
            let mut found = None;
            for k in 0..hosts {
                let i = (st.next + k) % hosts;
                if !st.used.contains(&i) {
                    found = Some(i);
                    break;
                }
            }
            let i = found.ok_or_else(|| {
                RuntimeError::Engine(EngineError::Invalid(
                    "no address left in the node's pod range".into(),
                ))
            })?;
            st.used.insert(i);
            st.next = (i + 1) % hosts;
            Some(Ipv4Addr::from(self.range.0 + 2 + i))
        };
        st.sandboxes.insert(config.id.clone(), ip);
        Ok(sandbox(&config.id, ip, config.share_pid))
    }

    fn stop_pod_sandbox(&self, s: &PodSandbox) -> Result<()> {
        let mut st = self.state();
        if let Some(Some(ip)) = st.sandboxes.remove(&s.id) {
            let i = u32::from(ip).wrapping_sub(self.range.0 + 2);
            st.used.remove(&i);
        }
        let now = SystemTime::now();
        for c in st.containers.values_mut().filter(|c| c.sandbox == s.id) {
            c.stopped.get_or_insert((now, 137));
        }
        Ok(())
    }

    fn pod_sandbox_status(&self, s: &PodSandbox) -> PodSandboxState {
        if self.state().sandboxes.contains_key(&s.id) {
            PodSandboxState::Ready
        } else {
            PodSandboxState::NotReady
        }
    }

    fn create_container(&self, s: &PodSandbox, config: &ContainerConfig) -> Result<String> {
        let mut st = self.state();
        if !st.sandboxes.contains_key(&s.id) {
            return Err(not_found(&s.id));
        }
        // By id (as the pod worker names it after a pull) or by name.
        let image = st
            .images
            .get(&normalized(&config.image))
            .or_else(|| st.images.values().find(|i| i.id == config.image))
            .cloned()
            .ok_or_else(|| unsupported(&format!("image {} is not on this node", config.image)))?;
        st.serial += 1;
        // The pod's part of the id, then a serial: unique on the node.
        let prefix: String = s.id.chars().take(48).collect();
        let id = format!("{prefix:0<48}{:016x}", st.serial);
        let fake = Fake {
            sandbox: s.id.clone(),
            config_labels: config.labels.clone(),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or(image.id.clone()),
            tty: config.tty,
            init: config
                .labels
                .get("io.kubernetes.container.type")
                .map(String::as_str)
                == Some("init"),
            created: SystemTime::now(),
            started: None,
            stopped: None,
            restarts: 0,
        };
        st.containers.insert(id.clone(), fake);
        Ok(id)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        let mut st = self.state();
        let c = st.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        c.started = Some(SystemTime::now());
        c.stopped = None;
        Ok(())
    }

    fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        let mut st = self.state();
        let c = st.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        c.stopped.get_or_insert((SystemTime::now(), 0));
        Ok(())
    }

    fn kill_container(&self, id: &str) -> Result<()> {
        // The restart policy brings it back at once (and `start_delay` later it runs).
        let mut st = self.state();
        let c = st.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        c.restarts += 1;
        c.started = Some(SystemTime::now());
        Ok(())
    }

    fn remove_pods_cgroup(&self, _pods_cgroup: &str) {}

    fn remove_pod_cgroup(&self, _cgroup: &str) {}

    fn remove_container(&self, id: &str) -> Result<()> {
        self.state().containers.remove(id);
        Ok(())
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let st = self.state();
        let c = st.containers.get(id).ok_or_else(|| not_found(id))?;
        Ok(self.status(id, c))
    }

    fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let st = self.state();
        Ok(st
            .containers
            .iter()
            .filter(|(_, c)| {
                filter
                    .label_selector
                    .iter()
                    .all(|(k, v)| c.config_labels.get(k) == Some(v))
            })
            .map(|(id, c)| self.status(id, c))
            .collect())
    }

    fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        if self.state().containers.contains_key(id) {
            Ok(ContainerStats::default())
        } else {
            Err(not_found(id))
        }
    }

    fn read_log(&self, id: &str, _previous: bool) -> Result<Option<Vec<LogEntry>>> {
        if self.state().containers.contains_key(id) {
            Ok(Some(Vec::new()))
        } else {
            Err(not_found(id))
        }
    }

    fn follow_log(&self, _id: &str, _each: &mut dyn FnMut(&LogEntry) -> bool) {}

    fn exec_sync(&self, id: &str, _cmd: &[String], _timeout: Duration) -> Result<ExecSyncResponse> {
        if !self.state().containers.contains_key(id) {
            return Err(not_found(id));
        }
        Ok(ExecSyncResponse {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: 0,
            timed_out: false,
        })
    }

    fn exec(&self, _req: &ExecRequest) -> Result<ExecCommand> {
        Err(unsupported("exec"))
    }

    fn attach(&self, _id: &str) -> Result<AttachSocket> {
        Err(unsupported("attach"))
    }
}

fn sandbox(id: &str, ip: Option<Ipv4Addr>, share_pid: bool) -> PodSandbox {
    PodSandbox {
        id: id.to_string(),
        pid: 0,
        start_time: 0,
        ip,
        share_pid,
        cgroup: None,
    }
}

/// A reference as the engine names images; unparsable ones as given (a pull of one
/// fails with the parser's reason).
fn normalized(image: &str) -> String {
    skiff_image::normalize_reference(image).unwrap_or_else(|_| image.to_string())
}

impl ImageService for HollowRuntime {
    fn image_status(&self, image: &str) -> Result<Option<Image>> {
        Ok(self.state().images.get(&normalized(image)).cloned())
    }

    fn pull_image(&self, image: &str, _auth: Option<&Credentials>) -> Result<PulledImage> {
        let name = skiff_image::normalize_reference(image)
            .map_err(|e| RuntimeError::Engine(EngineError::Invalid(e.to_string())))?;
        // A stable digest per name, as a registry would give one.
        let digest = format!("sha256:{:0>64}", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            name.hash(&mut h);
            format!("{:016x}", h.finish())
        });
        let repo = name
            .split('@')
            .next()
            .map(|n| match n.rfind(':') {
                Some(i) if !n[i..].contains('/') => &n[..i],
                _ => n,
            })
            .unwrap_or(&name)
            .to_string();
        let img = Image {
            id: digest.clone(),
            created: Some(rfc3339(SystemTime::UNIX_EPOCH)),
            entrypoint: Vec::new(),
            cmd: vec!["/hollow".into()],
            env: Vec::new(),
            user: String::new(),
            repo_tags: vec![name.clone()],
            repo_digests: vec![format!("{repo}@{digest}")],
            size: 1 << 20,
        };
        let pulled = PulledImage {
            id: img.id.clone(),
            image_ref: img.repo_digests[0].clone(),
            size: img.size,
        };
        self.state().images.insert(name, img);
        Ok(pulled)
    }

    fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.state().images.values().cloned().collect())
    }

    fn remove_image(&self, id: &str) -> Result<()> {
        self.state().images.retain(|_, i| i.id != id);
        Ok(())
    }

    fn image_fs_info(&self) -> ImageFsInfo {
        ImageFsInfo {
            image_filesystem: self.root.clone(),
            container_filesystem: self.root.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(delay: u64) -> HollowRuntime {
        HollowRuntime::new(
            "10.64.3.0/24",
            Duration::from_millis(delay),
            PathBuf::from("/nonexistent"),
        )
        .unwrap()
    }

    fn sb(rt: &HollowRuntime, id: &str) -> PodSandbox {
        rt.run_pod_sandbox(&PodSandboxConfig {
            id: id.into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn addresses_come_from_the_node_range_and_are_given_back() {
        let rt = rt(0);
        let a = sb(&rt, "a");
        let b = sb(&rt, "b");
        assert_eq!(a.ip, Some(Ipv4Addr::new(10, 64, 3, 2)));
        assert_eq!(b.ip, Some(Ipv4Addr::new(10, 64, 3, 3)));
        // Asking again for a sandbox gives the same one.
        assert_eq!(sb(&rt, "a").ip, a.ip);
        rt.stop_pod_sandbox(&a).unwrap();
        // 253 addresses in a /24 (.2 to .254).
        let ips: HashSet<_> = (0..252).map(|i| sb(&rt, &format!("p{i}")).ip).collect();
        assert_eq!(ips.len(), 252);
        assert!(ips.contains(&a.ip), "a released address is used again");
        assert!(!ips.contains(&Some(Ipv4Addr::new(10, 64, 3, 255))));
        let err = rt
            .run_pod_sandbox(&PodSandboxConfig {
                id: "full".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("no address left"), "{err}");
        let host = rt
            .run_pod_sandbox(&PodSandboxConfig {
                id: "host".into(),
                host_network: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(host.ip, None);
        assert!(HollowRuntime::new("10.0.0.0/31", Duration::ZERO, PathBuf::new()).is_err());
    }

    #[test]
    fn containers_run_after_the_delay_and_init_containers_complete() {
        let rt = rt(150);
        let s = sb(&rt, "a");
        let cfg = |kind: &str| ContainerConfig {
            image: "busybox".into(),
            labels: [("io.kubernetes.container.type".to_string(), kind.to_string())].into(),
            ..Default::default()
        };
        assert!(
            rt.create_container(&s, &cfg("app")).is_err(),
            "no image yet"
        );
        let pulled = rt.pull_image("busybox", None).unwrap();
        assert!(pulled
            .image_ref
            .starts_with("docker.io/library/busybox@sha256:"));
        assert!(rt
            .image_status("docker.io/library/busybox:latest")
            .unwrap()
            .is_some());
        let app = rt.create_container(&s, &cfg("app")).unwrap();
        let by_id = ContainerConfig {
            image: pulled.id.clone(),
            ..cfg("app")
        };
        assert!(rt.create_container(&s, &by_id).is_ok());
        let init = rt.create_container(&s, &cfg("init")).unwrap();
        assert_ne!(app, init);
        assert_eq!(
            rt.container_status(&app).unwrap().state,
            ContainerState::Created
        );
        rt.start_container(&app).unwrap();
        rt.start_container(&init).unwrap();
        assert_eq!(
            rt.container_status(&app).unwrap().state,
            ContainerState::Created
        );
        std::thread::sleep(Duration::from_millis(200));
        let st = rt.container_status(&app).unwrap();
        assert_eq!(st.state, ContainerState::Running);
        assert!(st.started_at.is_some());
        let st = rt.container_status(&init).unwrap();
        assert_eq!((st.state, st.exit_code), (ContainerState::Exited, 0));
        assert_eq!(
            rt.exec_sync(&app, &[], Duration::ZERO).unwrap().exit_code,
            0
        );
        assert!(rt
            .exec(&ExecRequest {
                container_id: app.clone(),
                cmd: vec![],
                tty: false,
                stdin: false,
                size: None
            })
            .is_err());
        rt.stop_pod_sandbox(&s).unwrap();
        assert_eq!(
            rt.container_status(&app).unwrap().state,
            ContainerState::Exited
        );
        rt.remove_container(&app).unwrap();
        assert!(matches!(
            rt.container_status(&app),
            Err(RuntimeError::NotFound(_))
        ));
    }
}
