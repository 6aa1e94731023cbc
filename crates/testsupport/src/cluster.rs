//! The cluster on one node: `skiff server` with its in-process node agent, driven by
//! the real kubectl, on a private engine [`Root`]. Dropping a [`Cluster`] deletes its
//! pods, stops the server and removes what its node left (infra processes,
//! containers, pod cgroups, the pod bridge and filter table, pod directories).

use crate::Root;
use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub root: Root,
    pub server: Option<Child>,
    pub node: String,
    pub extra: Vec<String>,
    /// The address the API (and this node's agent) listens on.
    pub bind: String,
    /// The server's first line: its port and join token.
    pub banner: String,
    /// The network namespace the server (and kubectl) run in; None: the host's.
    pub netns: Option<std::sync::Arc<crate::netns::NetNs>>,
    /// `--cluster-cidr`; empty: a /23 of the test's own (see [`Cluster::boot`]).
    pub cluster_cidr: String,
}

impl Cluster {
    pub fn start(root: Root) -> Cluster {
        Cluster::start_with(root, &[])
    }

    /// A cluster whose server has `extra` flags too.
    pub fn start_with(root: Root, extra: &[&str]) -> Cluster {
        Cluster::start_on(root, "127.0.0.1", extra)
    }

    /// A cluster whose API and node agent listen on `bind`.
    pub fn start_on(root: Root, bind: &str, extra: &[&str]) -> Cluster {
        let node = format!(
            "node-{}",
            root.table.trim_start_matches("skt").replace('x', "-")
        );
        let mut c = Cluster {
            root,
            server: None,
            node,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            bind: bind.to_string(),
            banner: String::new(),
            netns: None,
            cluster_cidr: String::new(),
        };
        c.boot();
        c
    }

    pub fn boot(&mut self) {
        let r = &self.root;
        let second = r.cidr.split('.').nth(1).unwrap().to_string();
        let third = r.cidr.split('.').nth(2).unwrap().to_string();
        // A /23: this node takes the first /24, a joining one the second.
        let cluster_cidr = if self.cluster_cidr.is_empty() {
            format!(
                "10.{}.{}.0/23",
                200 + (second.parse::<u32>().unwrap() % 50),
                (third.parse::<u32>().unwrap() * 2) % 250
            )
        } else {
            self.cluster_cidr.clone()
        };
        let mut cmd = r.cmd(&[
            "server",
            "--https-listen-port",
            "0",
            "--bind-address",
            &self.bind,
            "--node-name",
            &self.node,
            "--pod-bridge",
            &format!("{}q", r.bridge),
            "--kubelet-port",
            "0",
            "--cluster-cidr",
            &cluster_cidr,
        ]);
        // A cluster in the host's namespace programs its Services there: its own
        // table, service range and node ports, so parallel clusters never meet.
        if self.netns.is_none() {
            let has = |flag: &str| self.extra.iter().any(|a| a == flag);
            let n: u32 = third.parse().unwrap();
            let pid = std::process::id();
            if !has("--nftables-table") {
                cmd.args(["--nftables-table", &format!("{}_node", r.table)]);
            }
            if !has("--service-cidr") && !has("--cluster-dns") {
                cmd.args(["--service-cidr", &format!("10.{}.{n}.0/24", 60 + pid % 30)]);
            }
            // Nodes sharing the host's namespace route pods by hand, if at all: no
            // VXLAN device there.
            if !has("--flannel-backend") {
                cmd.args(["--flannel-backend", "none"]);
            }
            if !has("--service-node-port-range") {
                let first = 30000 + (pid * 13 + n * 10) % 2750;
                cmd.args([
                    "--service-node-port-range",
                    &format!("{first}-{}", first + 9),
                ]);
            }
        }
        cmd.arg("--data-dir")
            .arg(r.dir.join("server"))
            .arg("--write-kubeconfig")
            .arg(r.dir.join("kubeconfig"))
            .args(&self.extra)
            .args(lenient_eviction(&self.extra))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ns) = &self.netns {
            ns.enter(&mut cmd);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        // Log lines may come before the banner: keep them in server.log too.
        let mut log = std::fs::File::create(r.dir.join("server.log")).unwrap();
        self.banner = crate::server::read_banner(&mut stderr, &mut log);
        // Keep draining the server's log (into server.log), so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
        self.server = Some(child);
    }

    /// The API's port, from the server's banner.
    pub fn port(&self) -> String {
        self.banner
            .split("API on port ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .expect("the banner names the port")
            .to_string()
    }

    /// The join token, from the server's banner.
    pub fn token(&self) -> String {
        self.banner
            .split("join token ")
            .nth(1)
            .expect("the banner names the token")
            .trim()
            .to_string()
    }

    /// The node's Services table (in the host's namespace, per [`Cluster::boot`]).
    pub fn node_table(&self) -> String {
        format!("{}_node", self.root.table)
    }

    /// Waits until the node's rules reject the whole service range `cidr`: only then
    /// may a test send to an address in it (a packet no rule catches would follow the
    /// default route off the machine).
    pub fn wait_service_range_covered(&self, cidr: &str) {
        let start = Instant::now();
        loop {
            let o = Command::new("nft")
                .args([
                    "list",
                    "chain",
                    "ip",
                    &self.node_table(),
                    "cluster-ips-check",
                ])
                .output()
                .unwrap();
            let rules = String::from_utf8_lossy(&o.stdout);
            if rules.contains(&format!("ip daddr {cidr} goto reject-chain")) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the node's rules never covered {cidr}: {rules} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The cluster's service range (the `kubernetes` ServiceCIDR), once the node's
    /// rules cover it ([`Cluster::wait_service_range_covered`]).
    pub fn service_range_covered(&self) -> String {
        let cidr = self.ok(&[
            "get",
            "servicecidr",
            "kubernetes",
            "-o",
            "jsonpath={.spec.cidrs[0]}",
        ]);
        self.wait_service_range_covered(&cidr);
        cidr
    }

    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            crate::kill(s.id() as i32, libc::SIGTERM);
            let _ = s.wait();
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.kubectl_with("kubectl", args, None)
    }

    /// Runs a given kubectl binary, with `stdin` as its standard input when given.
    pub fn kubectl_with(
        &self,
        bin: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> std::process::Output {
        let mut cmd = self.kubectl_cmd(bin, args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            use std::io::Write;
            let mut w = child.stdin.take().unwrap();
            w.write_all(data).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl on a terminal (33 rows, 101 columns), typing `input` a moment
    /// after it starts; returns what it printed.
    pub fn kubectl_in_pty(&self, bin: &str, args: &[&str], input: &[u8]) -> String {
        use std::io::Read;
        let ws = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let slave = pty.slave;
        let mut cmd = self.kubectl_cmd(bin, args);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut master = std::fs::File::from(pty.master);
        if !input.is_empty() {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(1500));
            let mut w = master.try_clone().unwrap();
            w.write_all(input).unwrap();
        }
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            // EIO once the last holder of the slave (kubectl) is gone.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&out).to_string()
        });
        let _ = child.wait();
        reader.join().unwrap()
    }

    pub fn kubectl_cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(self.root.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.root.dir.join("kcache"))
            .args(args);
        if let Some(ns) = &self.netns {
            ns.enter(&mut cmd);
        }
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    pub fn apply(&self, yaml: &str) {
        let f = self.root.dir.join("obj.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.ok(&["apply", "-f", f.to_str().unwrap()]);
    }

    /// Waits until `kubectl args` prints nothing (what it lists is gone); `what` says
    /// what was left behind if it does not within `secs`.
    pub fn wait_empty(&self, args: &[&str], secs: u64, what: &str) {
        let start = Instant::now();
        while !self.ok(args).trim().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn wait_for(&self, args: &[&str], want: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let o = self.kubectl(args);
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            if out.contains(want) {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "waited for {want:?} in {args:?}; last: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Let the agent stop every pod properly, then make sure of it.
        if self.server.is_some() {
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--grace-period",
                "1",
                "--timeout",
                "20s",
            ]);
        }
        self.stop();
        clean_node_root(&self.root, &self.node);
    }
}

/// The test machine's disk is shared and may be fuller than the kubelet's default
/// thresholds allow (imagefs.available<15%): unless a test sets its own, nodes use
/// thresholds only a truly full machine reaches.
pub fn lenient_eviction(extra: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if !extra.iter().any(|a| a == "--eviction-hard") {
        out.push("--eviction-hard".into());
        out.push("memory.available<10Mi,nodefs.available<1%,imagefs.available<1%".into());
    }
    // Likewise image garbage collection (it starts at 85% by default): never.
    if !extra.iter().any(|a| a == "--image-gc-high-threshold") {
        out.extend(
            [
                "--image-gc-high-threshold",
                "100",
                "--image-gc-low-threshold",
                "99",
            ]
            .map(String::from),
        );
    }
    out
}

/// The cgroup directories (every hierarchy) of pod `uid` on node `node` (its
/// agent's default `--cgroup-root`).
pub fn pod_cgroups(node: &str, uid: &str) -> Vec<std::path::PathBuf> {
    let parent = skiff_agent::pod::pods_cgroup(&skiff_agent::pod::default_cgroup_root(node));
    skiff_engine::cgroups::cgroup_dirs(&format!("{parent}/pod{uid}"))
}

/// Removes cgroup `rel` and every group under it in every hierarchy, deepest first,
/// killing what is still in them (they are this test's only).
fn remove_cgroup_tree(rel: &str) {
    for top in skiff_engine::cgroups::cgroup_dirs(rel) {
        let mut dirs = Vec::new();
        let mut todo = vec![top];
        while let Some(d) = todo.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        todo.push(e.path());
                    }
                }
            }
            dirs.push(d);
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            for _ in 0..25 {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    crate::kill(pid, libc::SIGKILL);
                }
                match std::fs::remove_dir(&d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Removes what node `node`'s agent on `root` may have left: pods' infra processes,
/// containers, pod cgroups, the pod bridge and filter table, pod directories.
pub fn clean_node_root(root: &Root, node: &str) {
    let mut uids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.dir.join("pods")) {
        for e in rd.flatten() {
            uids.push(e.file_name().to_string_lossy().to_string());
            if let Ok(b) = std::fs::read(e.path().join("running.json")) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                    if let Some(pid) = v["sandbox"]["pid"].as_i64() {
                        crate::kill(pid as i32, libc::SIGKILL);
                    }
                }
            }
        }
    }
    let ids = root.run(&["ps", "-aq", "--no-trunc"]);
    for id in String::from_utf8_lossy(&ids.stdout).lines() {
        let _ = root.run(&["rm", "-f", id]);
    }
    for uid in uids {
        for p in pod_cgroups(node, &uid) {
            let _ = std::fs::remove_dir(p);
        }
    }
    skiff_engine::cgroups::remove_pods_cgroup(&skiff_agent::pod::pods_cgroup(
        &skiff_agent::pod::default_cgroup_root(node),
    ));
    // Whatever is left of the node's cgroup tree (a pod whose sandbox group was still
    // emptying), in every hierarchy.
    remove_cgroup_tree(&skiff_agent::pod::default_cgroup_root(node));
    let _ = Command::new("ip")
        .args(["link", "del", &format!("{}q", root.bridge)])
        .stderr(Stdio::null())
        .status();
    for table in [
        format!("{}_pods", root.table),
        format!("{}_node", root.table),
    ] {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(root.dir.join("pods"));
}
