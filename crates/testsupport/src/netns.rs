//! Network namespaces of a test's own: made with `ip netns add`, entered by a child
//! process with setns(2) between fork and exec (only its network namespace changes:
//! it keeps the host's mounts, cgroups and /sys), and deleted with whatever still
//! runs inside when dropped, also after a failed assertion.

use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};

/// A named network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

/// Runs `ip ARGS`, panicking with its error if it fails.
pub fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl NetNs {
    /// A fresh namespace `name` (one left by an earlier run of the same name is
    /// removed first), with `lo` up.
    pub fn new(name: &str) -> NetNs {
        let ns = NetNs {
            name: name.to_string(),
        };
        ns.cleanup();
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    /// Makes `cmd` run inside the namespace.
    pub fn enter(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let f =
            std::fs::File::open(format!("/run/netns/{}", self.name)).expect("the namespace exists");
        // SAFETY: the hook only calls setns(2), which is async-signal-safe, between
        // fork and exec; `f` lives in the closure.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Runs a command inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        self.enter(&mut cmd);
        cmd.output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Runs `ip -n NAME ARGS`, panicking if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Kills what still runs inside and deletes the namespace.
    pub fn cleanup(&self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    crate::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.cleanup();
    }
}
