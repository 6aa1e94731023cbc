//! Container operations: lookup, start (spawning the monitor), stop, kill, rm, wait,
//! pause, rename, exec, and reconciling state left by dead monitors.

use crate::monitor::{FD_STATUS, FD_STDERR, FD_STDIN, FD_STDOUT};
use crate::persist::{self, read_json, write_json, Lock};
use crate::state::{self, Record, State, Status};
use crate::{Container, Engine, EngineError, Result};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Client descriptors a started container's stdio is attached to (-1: none).
#[derive(Debug, Clone, Copy)]
pub struct Attach {
    pub stdin: i32,
    pub stdout: i32,
    pub stderr: i32,
}

/// A container being started: read its monitor's reports.
pub struct Starting {
    status: BufReader<fs::File>,
    pub id: String,
    pub warnings: Vec<String>,
}

/// What the monitor reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Started(i32),
    Failed(i32, String),
    Exited(i32),
    /// The monitor went away without a word.
    Lost,
}

impl Starting {
    pub fn next_report(&mut self) -> Report {
        let mut line = String::new();
        match self.status.read_line(&mut line) {
            Ok(0) | Err(_) => Report::Lost,
            Ok(_) => {
                let line = line.trim_end();
                let (k, rest) = line.split_at(1.min(line.len()));
                let rest = rest.trim_start();
                match k {
                    "S" => Report::Started(rest.parse().unwrap_or(0)),
                    "X" => Report::Exited(rest.parse().unwrap_or(255)),
                    "E" => {
                        let (c, m) = rest.split_once(' ').unwrap_or((rest, ""));
                        Report::Failed(c.parse().unwrap_or(125), m.to_string())
                    }
                    _ => Report::Lost,
                }
            }
        }
    }
}

impl Engine {
    fn load(&self, dir: &Path) -> Result<Container> {
        let record: Record = read_json(&dir.join("config.json"))?;
        let state: State = read_json(&dir.join("state.json"))?;
        Ok(Container {
            dir: dir.to_path_buf(),
            record,
            state,
        })
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(self.containers_dir())
            .map_err(|e| EngineError::io("reading containers", e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.join("config.json").exists() {
                if let Ok(c) = self.load(&p) {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    pub fn find_by_name(&self, name: &str) -> Result<Option<Container>> {
        Ok(self
            .list()?
            .into_iter()
            .find(|c| c.record.name == name.trim_start_matches('/')))
    }

    /// A container by full id, name, or unique id prefix (as docker resolves them).
    pub fn get(&self, reference: &str) -> Result<Container> {
        let r = reference.trim_start_matches('/');
        if r.is_empty() {
            return Err(EngineError::NoSuchContainer(reference.into()));
        }
        if r.len() == 64 && r.chars().all(|c| c.is_ascii_hexdigit()) {
            let d = self.containers_dir().join(r);
            if d.join("config.json").exists() {
                return self.load(&d);
            }
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.record.name == r) {
            return Ok(c.clone());
        }
        let m: Vec<&Container> = all.iter().filter(|c| c.record.id.starts_with(r)).collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(EngineError::NoSuchContainer(reference.into())),
            _ => Err(EngineError::Ambiguous(reference.into())),
        }
    }

    /// Mark containers whose monitor died as exited and clean what they left.
    pub fn reconcile(&self) -> Result<()> {
        let Ok(all) = self.list() else { return Ok(()) };
        for mut c in all {
            if !c.state.status.is_active() {
                continue;
            }
            let alive = state::process_start_time(c.state.monitor_pid)
                .map(|t| t == c.state.monitor_start)
                .unwrap_or(false);
            if alive {
                continue;
            }
            let _l = c.lock()?;
            // Re-check under the lock: the monitor may have just finished.
            let Ok(st) = read_json::<State>(&c.state_path()) else {
                continue;
            };
            if !st.status.is_active() {
                continue;
            }
            if let Some(cg) = &st.cgroup {
                let _ = cg.kill_all();
                let _ = cg.remove();
            }
            crate::network::release_ip(&self.root, &c.record.id);
            drop(_l);
            let _ = c.update_state(|s| {
                s.status = Status::Exited;
                s.exit_code = 255;
                s.pid = 0;
                s.error = "the container's monitor process died".into();
                s.ports.clear();
                s.finished_at = Some(persist::now());
            });
        }
        Ok(())
    }

    /// Start a created or exited container: spawn its monitor and wait until the
    /// process runs (or failed to). `attach` wires the client's stdio to it.
    pub fn start(&self, reference: &str, attach: Option<Attach>) -> Result<(Starting, Report)> {
        let c = self.get(reference)?;
        if c.state.status.is_active() {
            return Err(EngineError::Conflict(format!(
                "container {} is already running",
                c.record.id
            )));
        }
        let image = self.images.resolve(&c.record.image_id)?;
        let mut spec = self.runtime_spec(&c.record, &image, true)?;
        let warnings = skiff_runtime::linux::clamp_process(&mut spec.process)?;
        let mut c = c;
        let _ = std::fs::remove_file(c.dir.join("net.json"));
        if let Some(plan) = self.network_plan(&c)? {
            let ip = plan.primary_ip().map(|i| i.to_string()).unwrap_or_default();
            c.update_state(|s| s.ip_address = ip)?;
            write_json(&c.dir.join("net.json"), &plan)?;
        }
        if c.record.host.managed_files.is_empty() {
            self.write_init_layer(&c)?;
        }
        write_json(&c.dir.join("spec.json"), &spec)?;
        c.update_state(|s| {
            s.manually_stopped = false;
            s.error.clear();
        })?;
        let (status_r, status_w) =
            skiff_runtime::sys::pipe().map_err(|e| EngineError::io("pipe", e))?;
        let a = attach.unwrap_or(Attach {
            stdin: -1,
            stdout: -1,
            stderr: -1,
        });
        let mut cmd = crate::reexec::Helper::Monitor {
            id: c.record.id.clone(),
        }
        .command(&self.exe, &self.root);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Duplicate the descriptors out of the way first: by the time pre_exec runs,
        // the child's 0/1/2 are already /dev/null.
        let mut fds = [
            (status_w, FD_STATUS),
            (a.stdin, FD_STDIN),
            (a.stdout, FD_STDOUT),
            (a.stderr, FD_STDERR),
        ];
        for (src, _) in fds.iter_mut() {
            if *src >= 0 {
                // SAFETY: F_DUPFD_CLOEXEC takes an integer and touches no memory.
                *src = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, 10) };
            }
        }
        let moved: Vec<i32> = fds.iter().map(|(s, _)| *s).collect();
        // SAFETY: the hook only calls dup2(2) and close(2), which are
        // async-signal-safe, between fork and exec; `fds` is moved into it.
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in fds.iter() {
                    if *src >= 0 {
                        libc::dup2(*src, *dst);
                    } else {
                        libc::close(*dst);
                    }
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        skiff_runtime::sys::close(status_w);
        for fd in moved {
            if fd >= 0 {
                skiff_runtime::sys::close(fd);
            }
        }
        let mut child = spawned.map_err(|e| {
            skiff_runtime::sys::close(status_r);
            EngineError::io(format!("starting monitor {}", self.exe.display()), e)
        })?;
        let _ = child.wait();
        // SAFETY: `status_r` is the read end of the status pipe, owned here alone.
        let file = unsafe { <fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(status_r) };
        let mut starting = Starting {
            status: BufReader::new(file),
            id: c.record.id.clone(),
            warnings,
        };
        let first = starting.next_report();
        match &first {
            Report::Failed(code, message) => {
                tracing::info!(container = %c.record.id, code, %message, "container failed to start")
            }
            _ => tracing::info!(container = %c.record.id, "container started"),
        }
        Ok((starting, first))
    }

    /// `network connect` (`connect = true`) or `disconnect`: recorded for the next
    /// start, and applied at once to a running container. The caller must be
    /// single-threaded.
    pub fn connect_network(
        &self,
        reference: &str,
        network: &str,
        aliases: &[String],
        connect: bool,
    ) -> Result<()> {
        let mut c = self.get(reference)?;
        let mode = c.record.host.network_mode.clone();
        if mode == "none"
            || mode == "host"
            || mode.starts_with("container:")
            || mode.starts_with("ns:")
        {
            return Err(EngineError::Conflict(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (network mode {mode})"
            )));
        }
        let net = crate::network::get_network(&self.root, &self.bridge, network)?;
        let primary = mode == net.name;
        let detached = c.record.host.primary_detached;
        let on = (primary && !detached) || c.record.host.extra_networks.contains(&net.name);
        if connect && on {
            return Err(EngineError::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.record.name, net.name
            )));
        }
        if !connect && !on {
            return Err(EngineError::Conflict(format!(
                "container {} is not connected to network {}",
                c.record.id, net.name
            )));
        }
        let running = c.state.status.is_active() && c.state.pid > 0;
        if !connect && primary && running {
            return Err(EngineError::Unsupported(format!(
                "disconnecting a running container from its primary network ({}) is not supported; stop it first, or recreate it with another --network",
                net.name
            )));
        }
        {
            let _l = Lock::exclusive(&self.containers_dir().join(".lock"))?;
            if connect && primary {
                // Back on the network it was created on (it is not running).
                c.record.host.primary_detached = false;
                for a in aliases {
                    if !c.record.host.network_aliases.contains(a) {
                        c.record.host.network_aliases.push(a.clone());
                    }
                }
            } else if !connect && primary {
                c.record.host.primary_detached = true;
            } else if connect {
                c.record.host.extra_networks.push(net.name.clone());
                for a in aliases {
                    if !c.record.host.network_aliases.contains(a) {
                        c.record.host.network_aliases.push(a.clone());
                    }
                }
            } else {
                c.record.host.extra_networks.retain(|n| n != &net.name);
            }
            write_json(&c.dir.join("config.json"), &c.record)?;
        }
        crate::events::record(
            &self.root,
            "network",
            if connect { "connect" } else { "disconnect" },
            &net.id,
            [
                ("container".to_string(), c.record.id.clone()),
                ("name".to_string(), net.name.clone()),
                ("type".to_string(), "bridge".to_string()),
            ]
            .into(),
        );
        if c.state.status != Status::Running || c.state.pid <= 0 {
            return Ok(());
        }
        let plan_path = c.dir.join("net.json");
        let mut plan: state::NetPlan = read_json(&plan_path)?;
        if connect {
            crate::network::ensure_bridge(&net.bridge)?;
            let ip = crate::network::allocate_ip(&self.root, &net.bridge, &c.record.id)?;
            let used: Vec<&str> = plan.attachments.iter().map(|a| a.ifname.as_str()).collect();
            let ifname = (0..16)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(&n.as_str()))
                .ok_or_else(|| EngineError::Conflict("too many interfaces".into()))?;
            crate::network::attach(&net.bridge, &c.record.id, c.state.pid, ip, &ifname, false)?;
            plan.attachments.push(state::NetAttachment {
                network: net.name.clone(),
                network_id: net.id.clone(),
                bridge: net.bridge.clone(),
                ip,
                ifname,
                default_route: false,
                aliases: aliases.to_vec(),
            });
        } else if let Some(pos) = plan.attachments.iter().position(|a| a.network == net.name) {
            let a = plan.attachments.remove(pos);
            crate::network::delete_link(&crate::network::host_veth(&c.record.id, &a.ifname))?;
            crate::network::release_ip_on(&self.root, &a.bridge, &c.record.id);
        }
        write_json(&plan_path, &plan)
    }

    /// The networks a container joins at start: bridges made ready, addresses leased.
    fn network_plan(&self, c: &Container) -> Result<Option<state::NetPlan>> {
        let h = &c.record.host;
        let mode = h.network_mode.as_str();
        if mode == "none"
            || mode == "host"
            || mode.starts_with("container:")
            || mode.starts_with("ns:")
        {
            return Ok(None);
        }
        let mut names = if h.primary_detached {
            Vec::new()
        } else {
            vec![mode.to_string()]
        };
        for n in &h.extra_networks {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut plan = state::NetPlan {
            attachments: Vec::new(),
            ports: c.record.ports.clone(),
            dns: false,
        };
        for (i, name) in names.iter().enumerate() {
            let net = crate::network::get_network(&self.root, &self.bridge, name)?;
            crate::network::ensure_bridge(&net.bridge)?;
            let ip = crate::network::allocate_ip(&self.root, &net.bridge, &c.record.id)?;
            plan.dns |= net.user_defined;
            plan.attachments.push(state::NetAttachment {
                network: net.name.clone(),
                network_id: net.id.clone(),
                bridge: net.bridge.clone(),
                ip,
                ifname: format!("eth{i}"),
                default_route: i == 0,
                aliases: if net.user_defined {
                    h.network_aliases.clone()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(Some(plan))
    }

    fn write_init_layer(&self, c: &Container) -> Result<()> {
        let etc = c.dir.join("init/etc");
        fs::create_dir_all(&etc).map_err(|e| EngineError::io("init layer", e))?;
        let r = &c.record;
        let host_net = r.host.network_mode == "host";
        let hosts = if host_net {
            fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            let mut h = String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            );
            for l in &r.host.links {
                let (target, alias) = l.split_once(':').unwrap_or((l.as_str(), l.as_str()));
                if let Ok(t) = self.get(target) {
                    if !t.state.ip_address.is_empty() {
                        h.push_str(&format!(
                            "{}\t{} {} {}\n",
                            t.state.ip_address,
                            alias,
                            t.record.id.get(..12).unwrap_or(""),
                            t.record.name
                        ));
                    }
                }
            }
            for e in &r.host.extra_hosts {
                if let Some((name, ip)) = e.split_once(':') {
                    h.push_str(&format!("{ip}\t{name}\n"));
                }
            }
            if !c.state.ip_address.is_empty() {
                h.push_str(&format!("{}\t{}\n", c.state.ip_address, r.hostname));
            }
            h
        };
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let user_net = !matches!(
            r.host.network_mode.as_str(),
            "bridge" | "none" | "host" | ""
        ) && !r.host.network_mode.starts_with("container:");
        let resolv = if user_net {
            // The embedded DNS (served by the container's helper at 127.0.0.11)
            // answers container names and forwards the rest.
            let mut s = String::from("nameserver 127.0.0.11\n");
            for l in resolv.lines() {
                if l.starts_with("search") || l.starts_with("domain") {
                    s.push_str(l);
                    s.push('\n');
                }
            }
            s.push_str("options ndots:0\n");
            s
        } else if host_net {
            resolv
        } else {
            // Loopback resolvers of the host are unreachable from a network namespace.
            let kept: Vec<&str> = resolv
                .lines()
                .filter(|l| {
                    !(l.trim_start().starts_with("nameserver")
                        && (l.contains(" 127.") || l.contains(" ::1")))
                })
                .collect();
            let mut s = kept.join("\n");
            if !s.contains("nameserver") {
                s.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4");
            }
            s.push('\n');
            s
        };
        for (name, content) in [
            ("hosts", hosts),
            ("hostname", format!("{}\n", r.hostname)),
            ("resolv.conf", resolv),
        ] {
            fs::write(etc.join(name), content).map_err(|e| EngineError::io("init layer", e))?;
        }
        Ok(())
    }

    /// Wait until the container is no longer active; returns its exit code.
    pub fn wait(&self, reference: &str, timeout: Option<Duration>) -> Result<i32> {
        let mut c = self.get(reference)?;
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            if !c.state.status.is_active() {
                return Ok(c.state.exit_code);
            }
            if c.state.monitor_pid > 0
                && state::process_start_time(c.state.monitor_pid) != Some(c.state.monitor_start)
            {
                // Monitor gone: reconcile and report.
                self.reconcile()?;
            }
            if let Some(t) = timeout {
                if start.elapsed() > t {
                    return Err(EngineError::Conflict(format!(
                        "timed out waiting for container {}",
                        c.record.id
                    )));
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
            if c.reload().is_err() {
                // Removed (--rm): treat as exited with the last known code.
                return Ok(c.state.exit_code);
            }
        }
    }

    /// SIGKILL the container's main process as a crash, which its restart policy
    /// answers (the node agent's failed liveness probe or postStart hook); unlike
    /// `kill`, no stop by hand is recorded.
    pub fn crash(&self, reference: &str) -> Result<()> {
        let c = self.get(reference)?;
        if !c.state.status.is_active() || c.state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        tracing::info!(container = %c.record.id, "killing the container for its restart policy");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.state.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| {
            EngineError::io(
                format!("killing container {}", c.record.id),
                std::io::Error::from(e),
            )
        })
    }

    /// Send a signal to the container's main process.
    pub fn kill(&self, reference: &str, signal: &str) -> Result<()> {
        let mut c = self.get(reference)?;
        if !c.state.status.is_active() || c.state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        let sig = parse_signal(signal)?;
        if sig == libc::SIGKILL {
            c.update_state(|s| s.manually_stopped = true)?;
        }
        if c.state.status == Status::Paused {
            if let Some(cg) = &c.state.cgroup {
                if sig == libc::SIGKILL {
                    cg.kill_all()?;
                    return Ok(());
                }
            }
        }
        // SAFETY: kill(2) takes integers only.
        if unsafe { libc::kill(c.state.pid, sig) } < 0 {
            return Err(EngineError::io(
                format!("signalling container {}", c.record.id),
                std::io::Error::last_os_error(),
            ));
        }
        crate::events::container(&self.root, &c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    /// Stop: the stop signal, then SIGKILL after `timeout` seconds.
    pub fn stop(&self, reference: &str, timeout: Option<i64>) -> Result<()> {
        self.stop_with(reference, timeout, None)
    }

    /// [`Engine::stop`] with `signal` (a name or number) instead of the container's
    /// stop signal (`docker stop --signal`).
    pub fn stop_with(
        &self,
        reference: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let wanted = signal.map(parse_signal).transpose()?;
        let mut c = self.get(reference)?;
        c.update_state(|s| s.manually_stopped = true)?;
        if !c.state.status.is_active() || c.state.pid <= 0 {
            return Ok(());
        }
        let t = timeout.or(c.record.stop_timeout).unwrap_or(10);
        if c.state.status == Status::Paused {
            if let Some(cg) = &c.state.cgroup {
                let _ = cg.freeze(false);
            }
        }
        let sig =
            wanted.unwrap_or_else(|| parse_signal(&c.record.stop_signal).unwrap_or(libc::SIGTERM));
        tracing::info!(container = %c.record.id, signal = sig, timeout = t, "stopping container");
        crate::events::container(&self.root, &c, "kill", &[("signal", sig.to_string())]);
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(c.state.pid, sig) };
        if t >= 0
            && self
                .wait(&c.record.id, Some(Duration::from_secs(t as u64)))
                .is_ok()
        {
            crate::events::container(&self.root, &c, "stop", &[]);
            return Ok(());
        }
        c.reload()?;
        tracing::info!(container = %c.record.id, "container did not stop in time: killing it");
        if let Some(cg) = &c.state.cgroup {
            if let Err(e) = cg.kill_all() {
                tracing::warn!(container = %c.record.id, error = %e, "killing the container's processes");
            }
        } else if c.state.pid > 0 {
            // SAFETY: kill(2) takes integers only.
            unsafe { libc::kill(c.state.pid, libc::SIGKILL) };
        }
        self.wait(&c.record.id, Some(Duration::from_secs(30)))?;
        crate::events::container(&self.root, &c, "stop", &[]);
        Ok(())
    }

    /// Remove a container; `force` kills a running one first; `volumes` also removes
    /// its anonymous volumes.
    pub fn remove(&self, reference: &str, force: bool, volumes: bool) -> Result<String> {
        let mut c = self.get(reference)?;
        if c.state.status.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {} container {}. Stop the container before attempting removal or force remove",
                    c.state.status.as_str(),
                    c.record.id
                )));
            }
            c.update_state(|s| s.manually_stopped = true)?;
            if let Some(cg) = &c.state.cgroup {
                if c.state.status == Status::Paused {
                    let _ = cg.freeze(false);
                }
                let _ = cg.kill_all();
            } else if c.state.pid > 0 {
                // SAFETY: kill(2) takes integers only.
                unsafe { libc::kill(c.state.pid, libc::SIGKILL) };
            }
            let _ = self.wait(&c.record.id, Some(Duration::from_secs(30)));
        }
        if !volumes {
            c.record.anonymous_volumes.clear();
        }
        crate::cleanup::remove_files(&self.root, &c);
        tracing::info!(container = %c.record.id, "container removed");
        Ok(c.record.id.clone())
    }

    /// `docker rmi` of one reference: removing one of several names only untags
    /// (even while containers use the image); the last name, or the image by id, is
    /// refused while a running container uses it, and while any container does unless
    /// `force`. What was untagged and deleted, in order.
    pub fn remove_image(
        &self,
        reference: &str,
        force: bool,
    ) -> Result<Vec<skiff_image::RemoveEvent>> {
        let img = self.images.resolve(reference)?;
        let containers = self.list()?;
        let users: Vec<_> = containers
            .iter()
            .filter(|c| c.record.image_id == img.id)
            .collect();
        if let Some(run) = users.iter().find(|c| c.state.status.is_active()) {
            return Err(EngineError::InUse(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                skiff_image::short_id(&img.id),
                run.short_id()
            )));
        }
        let bare = reference.trim_start_matches("sha256:");
        let by_id = bare.len() >= 4 && img.id.trim_start_matches("sha256:").starts_with(bare);
        let last_name = img.names.len() <= 1 || by_id;
        if let Some(c) = users.first() {
            if last_name && !force {
                return Err(EngineError::InUse(format!(
                    "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                    c.short_id(),
                    skiff_image::short_id(&img.id)
                )));
            }
        }
        let removed = self.images.remove(reference, force)?;
        self.image_events(&removed, Some(reference));
        Ok(removed)
    }

    /// Writes `untag`/`delete` events for what an image removal did (`name`: what the
    /// client named, else each event's own).
    fn image_events(&self, removed: &[skiff_image::RemoveEvent], name: Option<&str>) {
        for ev in removed {
            let (action, id) = match ev {
                skiff_image::RemoveEvent::Untagged(n) => ("untag", n),
                skiff_image::RemoveEvent::Deleted(d) => ("delete", d),
            };
            crate::events::record(
                &self.root,
                "image",
                action,
                id,
                [("name".to_string(), name.unwrap_or(id).to_string())].into(),
            );
        }
    }

    /// Records an image event as dockerd writes it: for `pull` and `push` the reference
    /// (the Actor's ID) and its repository; for `tag`, `save`, `load` and `import` the
    /// image's id and the name it was given.
    pub fn image_event(&self, action: &str, reference: &str) {
        let familiar = |r: &str| skiff_image::familiar_name(r);
        let parsed = skiff_image::parse_reference(reference).ok();
        let full = parsed
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| reference.to_string());
        let (id, name) = match action {
            "pull" | "push" => (
                familiar(&full),
                parsed
                    .as_ref()
                    .map(|r| familiar(&r.repository()))
                    .unwrap_or_else(|| reference.to_string()),
            ),
            _ => (
                self.images
                    .resolve(reference)
                    .map(|i| i.id)
                    .unwrap_or_else(|_| reference.to_string()),
                if reference.starts_with("sha256:") {
                    reference.to_string()
                } else {
                    familiar(&full)
                },
            ),
        };
        crate::events::record(
            &self.root,
            "image",
            action,
            &id,
            [("name".to_string(), name)].into(),
        );
    }

    /// Tags `source` as `target` (`docker tag`), with its event.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        self.images.tag(source, target)?;
        self.image_event("tag", target);
        Ok(())
    }

    /// `docker image prune [-a]`: the images no container uses (without `all`, only
    /// nameless ones), what was removed and the bytes freed.
    pub fn prune_images(&self, all: bool) -> Result<(Vec<skiff_image::RemoveEvent>, u64)> {
        let sizes: std::collections::HashMap<String, u64> = self
            .images
            .list()?
            .into_iter()
            .map(|i| (i.id, i.size))
            .collect();
        let used: Vec<String> = self
            .list()?
            .into_iter()
            .map(|c| c.record.image_id)
            .collect();
        let removed = self.images.prune(&used, all)?;
        self.image_events(&removed, None);
        let freed = removed
            .iter()
            .filter_map(|ev| match ev {
                skiff_image::RemoveEvent::Deleted(id) => sizes.get(id),
                _ => None,
            })
            .sum();
        Ok((removed, freed))
    }

    /// Set the size of a running container's terminal (docker's `resize`).
    pub fn resize(&self, reference: &str, cols: u16, rows: u16) -> Result<()> {
        let c = self.get(reference)?;
        if !c.state.status.is_active() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        if !c.record.tty {
            return Err(EngineError::Conflict(format!(
                "Container {} has no terminal to resize (it was not created with a TTY)",
                c.record.id
            )));
        }
        crate::monitor::resize(&c.dir, cols, rows)
            .map_err(|e| EngineError::io(format!("resizing the terminal of {}", c.record.id), e))
    }

    /// Freeze or thaw every process of the container.
    pub fn pause(&self, reference: &str, paused: bool) -> Result<()> {
        let mut c = self.get(reference)?;
        match (&c.state.status, paused) {
            (Status::Running, true) | (Status::Paused, false) => {}
            (Status::Paused, true) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is already paused",
                    c.record.id
                )))
            }
            (Status::Running, false) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not paused",
                    c.record.id
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not running",
                    c.record.id
                )))
            }
        }
        let cg = live_cgroup(&c)?;
        cg.freeze(paused)?;
        crate::events::container(
            &self.root,
            &c,
            if paused { "pause" } else { "unpause" },
            &[],
        );
        c.update_state(|s| {
            s.status = if paused {
                Status::Paused
            } else {
                Status::Running
            }
        })
    }

    pub fn rename(&self, reference: &str, new_name: &str) -> Result<()> {
        let _g = Lock::exclusive(&self.containers_dir().join(".lock"))?;
        let mut c = self.get(reference)?;
        let n = new_name.trim_start_matches('/');
        if !crate::names::valid_name(n) {
            return Err(EngineError::Invalid(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if let Some(o) = self.find_by_name(n)? {
            return Err(EngineError::Conflict(format!(
                "The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                o.record.id
            )));
        }
        let old = std::mem::replace(&mut c.record.name, n.to_string());
        write_json(&c.dir.join("config.json"), &c.record)?;
        crate::events::container(&self.root, &c, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// `docker update`: new resource limits and restart policy. A running (or paused)
    /// container's cgroup takes the limits at once; they are kept for its next runs,
    /// and its monitor reads the restart policy when the container exits.
    pub fn update(
        &self,
        reference: &str,
        limits: &crate::create::Limits,
        restart: Option<&str>,
    ) -> Result<()> {
        // The lock `rename` takes to write a record.
        let _g = Lock::exclusive(&self.containers_dir().join(".lock"))?;
        let mut c = self.get(reference)?;
        let host = &mut c.record.host;
        if let Some(r) = restart {
            let policy = crate::create::parse_restart(r)?;
            if host.auto_remove && policy.name != "no" && !policy.name.is_empty() {
                return Err(EngineError::Invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
            host.restart_policy = policy;
        }
        let mut res = host.resources.clone();
        limits.apply_to(&mut res, &mut host.nano_cpus)?;
        if res.memory != host.resources.memory && limits.memory_swap.is_none() {
            // A swap limit set before must stay above the new memory limit (docker's
            // rule); unset, it follows the memory limit as at create.
            if let (Some(m), Some(s)) = (res.memory, host.resources.memory_swap) {
                if s > 0 && m > s {
                    return Err(EngineError::Invalid(
                        "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                    ));
                }
            }
        }
        if matches!(c.state.status, Status::Running | Status::Paused) {
            if let Some(cg) = &c.state.cgroup {
                cg.update_limits(&res).map_err(|e| {
                    EngineError::Invalid(format!("Cannot update container {}: {e}", c.record.id))
                })?;
            }
        }
        c.record.host.resources = res;
        write_json(&c.dir.join("config.json"), &c.record)?;
        crate::events::container(&self.root, &c, "update", &[]);
        Ok(())
    }

    /// The process list of a running container: (pid, ppid, user, cmdline).
    pub fn top(&self, reference: &str) -> Result<Vec<(i32, i32, u32, String)>> {
        let c = self.get(reference)?;
        let cg = live_cgroup(&c)?;
        let mut out = Vec::new();
        for pid in cg.procs() {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let uid = fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next().and_then(|x| x.parse().ok()))
                })
                .unwrap_or(0);
            let cmd = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|x| *x == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push((pid, ppid, uid, cmd));
        }
        out.sort();
        Ok(out)
    }
}

/// What a container uses ([`Engine::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory usage less the inactive page cache.
    pub memory_working_set_bytes: u64,
    /// The files of its writable layer.
    pub writable_layer_bytes: u64,
    /// Its current log file.
    pub log_bytes: u64,
    /// Its cgroup's pids.current.
    pub processes: u64,
}

impl Engine {
    /// What container `reference` uses now (nothing of its cgroup once it is gone).
    pub fn usage(&self, reference: &str) -> Result<Usage> {
        use skiff_runtime::cgroups::{Cgroup, Host};
        let c = self.get(reference)?;
        let host = Host::detect()?;
        let parent = if c.record.host.cgroup_parent.is_empty() {
            "skiff"
        } else {
            c.record.host.cgroup_parent.as_str()
        };
        let cg = Cgroup {
            version: host.version.clone(),
            paths: host.paths_for(parent, &c.record.id),
        };
        let (usage, _) = cg.memory();
        let inactive = cg
            .paths
            .get("memory")
            .or_else(|| cg.paths.get(""))
            .and_then(|d| fs::read_to_string(d.join("memory.stat")).ok())
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    matches!(k, "total_inactive_file" | "inactive_file")
                        .then(|| v.trim().parse::<u64>().ok())
                        .flatten()
                })
            })
            .unwrap_or(0);
        Ok(Usage {
            memory_working_set_bytes: usage.saturating_sub(inactive),
            writable_layer_bytes: crate::files::dir_bytes(&c.dir.join("upper")),
            log_bytes: fs::metadata(c.log_path()).map(|m| m.len()).unwrap_or(0),
            processes: cg.pids_current(),
        })
    }
}

/// The cgroup of a container that has processes (running or paused).
fn live_cgroup(c: &Container) -> Result<skiff_runtime::cgroups::Cgroup> {
    if c.state.status != Status::Running && c.state.status != Status::Paused {
        return Err(EngineError::Conflict(format!(
            "Container {} is not running",
            c.record.id
        )));
    }
    c.state
        .cgroup
        .clone()
        .ok_or_else(|| EngineError::NotRunning("container has no cgroup".into()))
}

/// A signal by name (`TERM`, `SIGTERM`, `sigkill`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let u = s.to_ascii_uppercase();
    let name = if u.starts_with("SIG") {
        u
    } else {
        format!("SIG{u}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| EngineError::Invalid(format!("invalid signal: {s}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        assert_eq!(super::parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(super::parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(super::parse_signal("hup").unwrap(), libc::SIGHUP);
        assert_eq!(super::parse_signal("9").unwrap(), 9);
        assert!(super::parse_signal("NOPE").is_err());
    }
}
