//! Shared helpers for skiff's integration tests: a private engine root per test,
//! a busybox image built from Debian's busybox-static, and running the real binary.
//! Every root is torn down (containers killed and removed, directory deleted) on drop.
//!
//! Also: a real etcd ([`etcd`]), the kubectl clients ([`kubectl`]), manifests
//! ([`objects`]), a real Distribution registry ([`registry`]), `skiff server` without a
//! node ([`server`]) and, with the `cluster` feature, the one-node cluster (`cluster`)
//! and several nodes in network namespaces (`lab`, on [`netns`]).
// Test fixtures: a panic is the failure report of the test using them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "cluster")]
pub mod cluster;
pub mod etcd;
pub mod kubectl;
#[cfg(feature = "cluster")]
pub mod lab;
pub mod netns;
pub mod objects;
pub mod registry;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of Debian's busybox-static.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed: run the README's test command (it installs it)");
}

/// Write a tar of a minimal busybox root filesystem to `out`.
pub fn busybox_rootfs_tar(out: &Path) {
    let f = std::fs::File::create(out).expect("create rootfs tar");
    let mut b = tar::Builder::new(f);
    let dir = |b: &mut tar::Builder<std::fs::File>, p: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, p, std::io::empty()).expect("dir");
    };
    let file = |b: &mut tar::Builder<std::fs::File>, p: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, p, data).expect("file");
    };
    for (d, m) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var", 0o755),
        ("var/www", 0o755),
        ("home", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("sbin", 0o755),
    ] {
        dir(&mut b, d, m);
    }
    let bb = std::fs::read(busybox()).expect("read busybox");
    file(&mut b, "bin/busybox", 0o755, &bb);
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\nwheel:x:10:app\nnogroup:x:65534:\napp:x:1000:\n",
    );
    file(&mut b, "var/www/index.html", 0o644, b"hello from skiff\n");
    let list = Command::new(busybox())
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || applet.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .expect("link");
    }
    b.finish().expect("finish tar");
}

/// The registries.yaml every test root uses (`SKIFF_PRIVATE_REGISTRY`).
pub const TEST_REGISTRIES: &str = "test-registries.yaml";
/// docker.io mirrored to a loopback port that refuses connections, with the upstream
/// disabled beside it: a test that pulls a Docker Hub name fails at once, on this machine.
pub const TEST_REGISTRIES_YAML: &str =
    "mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:9\"]\n";

/// A private engine root, deleted (with everything running in it) on drop. Each
/// root has its own bridge name, subnet and nftables table, so roots never collide.
pub struct Root {
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub bridge: String,
    pub cidr: String,
    pub table: String,
}

impl Root {
    /// A fresh root under /var/tmp; `exe` is the skiff binary
    /// (`env!("CARGO_BIN_EXE_skiff")` in the skiff crate's tests).
    pub fn new(exe: &str) -> Root {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/var/tmp/skiff-test-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test root");
        // Tests never reach a registry off this machine: docker.io's only endpoint is
        // a loopback port nothing listens on (loopback registries are used directly).
        std::fs::write(dir.join(TEST_REGISTRIES), TEST_REGISTRIES_YAML).expect("registries.yaml");
        let pid = std::process::id();
        Root {
            dir,
            exe: PathBuf::from(exe),
            bridge: format!("skt{}x{}", pid % 100_000, n),
            cidr: format!("10.{}.{}.0/24", 100 + (pid % 100), n % 250),
            table: format!("skt{pid}x{n}"),
        }
    }

    /// A root with the busybox image imported as `busybox:latest`.
    pub fn with_busybox(exe: &str) -> Root {
        let r = Root::new(exe);
        let tar = r.dir.join("busybox-rootfs.tar");
        busybox_rootfs_tar(&tar);
        r.ok(&["import", tar.to_str().expect("utf8"), "busybox:latest"]);
        r
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--root").arg(&self.dir).args(args);
        c.env("SKIFF_EXE", &self.exe);
        c.env("SKIFF_BRIDGE", &self.bridge);
        c.env("SKIFF_BRIDGE_CIDR", &self.cidr);
        c.env("SKIFF_FILTER_TABLE", &self.table);
        c.env("SKIFF_PRIVATE_REGISTRY", self.dir.join(TEST_REGISTRIES));
        c.env("SKIFF_DISABLE_DEFAULT_REGISTRY_ENDPOINT", "true");
        c.stdin(Stdio::null());
        c
    }

    /// Run skiff and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run skiff")
    }

    /// Run skiff, assert success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "skiff {:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            args,
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let out = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.run(&["rm", "-f", "-v", id]);
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("networks/user")) {
            for e in rd.flatten() {
                let f = e.file_name().to_string_lossy().to_string();
                if let Some(name) = f.strip_suffix(".json") {
                    let _ = self.run(&["network", "rm", name]);
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// stdout of an Output as a trimmed string.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Sends `sig` to `pid`, ignoring a process that is already gone.
pub fn kill(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) takes integers only.
    unsafe { libc::kill(pid, sig) };
}
