//! Pod sandboxes: an infra process (skiff-init in pause mode, executed from a
//! sealed in-memory copy so no host file is ever a pod's executable) holding the
//! namespaces a pod's containers join, with the pod's interface on a node bridge.
//!
//! The forking happens in a helper process (`skiff __sandbox`), so a multi-threaded
//! caller (the node agent) can use this safely.

use crate::network::{self, BridgeConfig};
use crate::state::process_start_time;
use crate::{Engine, EngineError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

/// What the sandbox should hold.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SandboxSpec {
    pub id: String,
    pub hostname: String,
    /// The host's network namespace (hostNetwork) instead of a new one.
    pub host_network: bool,
    pub host_ipc: bool,
    /// A new PID namespace whose PID 1 is the infra process (shareProcessNamespace).
    pub share_pid: bool,
    /// The pod's interface: a bridge and the address on it.
    pub network: Option<SandboxNet>,
    /// The pod's cgroup: the infra process gets a group of its own in it, named
    /// after the sandbox (as containerd places the sandbox container).
    #[serde(default)]
    pub cgroup_parent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxNet {
    pub bridge: BridgeConfig,
    pub ip: Ipv4Addr,
}

/// A running sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub pid: i32,
    pub start_time: u64,
    pub ip: Option<Ipv4Addr>,
    pub share_pid: bool,
    /// The infra process's cgroup, removed with the sandbox.
    #[serde(default)]
    pub cgroup: Option<skiff_runtime::cgroups::Cgroup>,
}

impl Sandbox {
    /// A namespace of the sandbox as `CreateOptions` takes it (`ns:/proc/PID/ns/KIND`).
    pub fn ns(&self, kind: &str) -> String {
        format!("ns:/proc/{}/ns/{kind}", self.pid)
    }
    pub fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

impl Engine {
    /// Start a sandbox (through the `__sandbox` helper).
    pub fn run_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        if !self.init_exe().exists() {
            return Err(EngineError::Invalid(format!(
                "{} is missing (skiff installs it on first use)",
                self.init_exe().display()
            )));
        }
        let mut child = crate::reexec::Helper::Sandbox
            .command(&self.exe, &self.root)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| EngineError::io("starting the sandbox helper", e))?;
        let input = serde_json::to_vec(spec)
            .map_err(|e| EngineError::Corrupt(format!("encoding sandbox spec: {e}")))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(&input)
                .map_err(|e| EngineError::io("writing to the sandbox helper", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| EngineError::io("waiting for the sandbox helper", e))?;
        if !out.status.success() {
            return Err(EngineError::Invalid(format!(
                "creating sandbox {}: {}",
                spec.id,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| EngineError::Corrupt(format!("sandbox helper answer: {e}")))
    }

    /// Kill the infra process (and with a shared PID namespace, every process of the
    /// pod), release the pod address.
    pub fn stop_sandbox(&self, sb: &Sandbox) -> Result<()> {
        if sb.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(sb.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            for _ in 0..500 {
                if !sb.alive() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        if let Some(cg) = &sb.cgroup {
            // Empty once the infra process is gone (it may take a moment to leave).
            for _ in 0..100 {
                match cg.remove() {
                    Ok(()) => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        }
        network::release_ip(&self.root, &sb.id);
        tracing::debug!(sandbox = %sb.id, "sandbox stopped");
        Ok(())
    }
}

/// `skiff __sandbox`: read a [`SandboxSpec`] on stdin, create the sandbox, print the
/// [`Sandbox`] as JSON. Runs single-threaded; exits the process.
pub fn helper_main(init_exe: &Path) -> ! {
    let fail = |m: String| -> ! {
        eprintln!("{m}");
        std::process::exit(1)
    };
    let mut input = Vec::new();
    if std::io::Read::read_to_end(&mut std::io::stdin(), &mut input).is_err() {
        fail("reading the sandbox spec".into());
    }
    let spec: SandboxSpec = match serde_json::from_slice(&input) {
        Ok(s) => s,
        Err(e) => fail(format!("bad sandbox spec: {e}")),
    };
    // The infra process runs from a sealed memfd copy, not a host file.
    let memfd = match skiff_runtime::sealed::memfd_copy_named(init_exe, c"skiff-pause") {
        Ok(fd) => std::os::fd::IntoRawFd::into_raw_fd(fd),
        Err(e) => fail(format!("sealing a copy of {}: {e}", init_exe.display())),
    };
    let (r, w) = match skiff_runtime::sys::pipe() {
        Ok(p) => p,
        Err(e) => fail(format!("pipe: {e}")),
    };
    let mut flags = libc::CLONE_NEWUTS;
    if !spec.host_network {
        flags |= libc::CLONE_NEWNET;
    }
    if !spec.host_ipc {
        flags |= libc::CLONE_NEWIPC;
    }
    if spec.share_pid {
        flags |= libc::CLONE_NEWPID;
    }
    // SAFETY: the sandbox helper is single-threaded (it runs before any thread
    // exists), and the child only runs the closure below, which execs or `_exit`s.
    let a = unsafe { libc::fork() };
    if a < 0 {
        fail(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if a == 0 {
        skiff_runtime::sys::close(r);
        let res = (|| -> std::result::Result<(), String> {
            let _ = nix::unistd::setsid();
            skiff_runtime::sys::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
            if !spec.hostname.is_empty() {
                nix::unistd::sethostname(&spec.hostname)
                    .map_err(|e| format!("sethostname: {e}"))?;
            }
            if !spec.host_network {
                skiff_runtime::linux::loopback_up().map_err(|(_, m)| m)?;
                // Unprivileged ICMP in the pod's network, as containerd enables it.
                std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
                    .map_err(|e| format!("setting net.ipv4.ping_group_range: {e}"))?;
            }
            let devnull = skiff_runtime::sys::open_path(Path::new("/dev/null"), libc::O_RDWR)
                .map_err(|e| e.to_string())?;
            let me = if spec.share_pid {
                // The next child is PID 1 of the new namespace.
                // SAFETY: this child is single-threaded, as its parent was; the
                // grandchild goes on to exec the infra process or `_exit`s.
                let b = unsafe { libc::fork() };
                if b < 0 {
                    return Err(format!("fork: {}", std::io::Error::last_os_error()));
                }
                if b > 0 {
                    let _ = skiff_runtime::sys::write_all(w, b.to_string().as_bytes());
                    // SAFETY: a forked child leaves without running the parent's exit
                    // handlers or destructors.
                    unsafe { libc::_exit(0) };
                }
                None
            } else {
                Some(std::process::id() as i32)
            };
            if let Some(pid) = me {
                let _ = skiff_runtime::sys::write_all(w, pid.to_string().as_bytes());
            }
            skiff_runtime::sys::close(w);
            // SAFETY: dup2(2) on descriptors this child owns; no memory is passed.
            unsafe {
                for fd in 0..3 {
                    libc::dup2(devnull, fd);
                }
                // `ps` in a pod shows PID 1 as `/pause`, as with Kubernetes' pause image.
                let argv = [c"/pause".as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null::<libc::c_char>()];
                libc::syscall(
                    libc::SYS_execveat,
                    memfd,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
            Err(format!("exec pause: {}", std::io::Error::last_os_error()))
        })();
        if let Err(m) = res {
            eprintln!("{m}");
        }
        // SAFETY: a forked child leaves without running the parent's exit handlers or
        // destructors.
        unsafe { libc::_exit(1) };
    }
    skiff_runtime::sys::close(w);
    let got = skiff_runtime::sys::read_to_end(r).unwrap_or_default();
    if spec.share_pid {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(a), None);
    }
    let pid: i32 = match String::from_utf8_lossy(&got).trim().parse() {
        Ok(p) => p,
        Err(_) => fail("the infra process did not start".into()),
    };
    // Let it exec before recording its start time (it is the same process).
    let start_time = match process_start_time(pid) {
        Some(t) => t,
        None => fail("the infra process exited at once".into()),
    };
    let mut cgroup = None;
    if let Some(parent) = &spec.cgroup_parent {
        let placed = skiff_runtime::cgroups::Host::detect().and_then(|host| {
            let cg = skiff_runtime::cgroups::Cgroup::create(
                &host,
                parent,
                &spec.id,
                &Default::default(),
            )?;
            cg.join(pid)?;
            Ok(cg)
        });
        match placed {
            Ok(cg) => cgroup = Some(cg),
            Err(e) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                fail(format!(
                    "placing the infra process in the pod's cgroup: {e}"
                ));
            }
        }
    }
    let mut ip = None;
    if let Some(n) = &spec.network {
        let r = network::ensure_bridge(&n.bridge)
            .and_then(|_| network::attach(&n.bridge, &spec.id, pid, n.ip, "eth0", true));
        if let Err(e) = r {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            fail(format!("wiring the pod network: {e}"));
        }
        ip = Some(n.ip);
    }
    let sb = Sandbox {
        id: spec.id.clone(),
        pid,
        start_time,
        ip,
        share_pid: spec.share_pid,
        cgroup,
    };
    println!("{}", serde_json::to_string(&sb).unwrap_or_default());
    std::process::exit(0)
}
