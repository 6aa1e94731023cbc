//! The cluster on one node: `skiff server` with its in-process node agent and
//! scheduler, driven by the real kubectl. Pods run for real on the engine.

use skiff_testsupport::Root;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

struct Cluster {
    root: Root,
    server: Option<Child>,
    node: String,
    extra: Vec<String>,
    /// The address the API (and this node's agent) listens on.
    bind: String,
    /// The server's first line: its port and join token.
    banner: String,
}

impl Cluster {
    fn start(root: Root) -> Cluster {
        Cluster::start_with(root, &[])
    }

    /// A cluster whose server has `extra` flags too.
    fn start_with(root: Root, extra: &[&str]) -> Cluster {
        Cluster::start_on(root, "127.0.0.1", extra)
    }

    /// A cluster whose API and node agent listen on `bind`.
    fn start_on(root: Root, bind: &str, extra: &[&str]) -> Cluster {
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
        };
        c.boot();
        c
    }

    fn boot(&mut self) {
        let r = &self.root;
        let second = r.cidr.split('.').nth(1).unwrap().to_string();
        let third = r.cidr.split('.').nth(2).unwrap().to_string();
        let mut child = r
            .cmd(&[
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
                // A /23: this node takes the first /24, a joining one the second.
                "--cluster-cidr",
                &format!(
                    "10.{}.{}.0/23",
                    200 + (second.parse::<u32>().unwrap() % 50),
                    (third.parse::<u32>().unwrap() * 2) % 250
                ),
            ])
            .arg("--data-dir")
            .arg(r.dir.join("server"))
            .arg("--write-kubeconfig")
            .arg(r.dir.join("kubeconfig"))
            .args(&self.extra)
            .args(lenient_eviction(&self.extra))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        stderr.read_line(&mut line).unwrap();
        assert!(line.contains("API on port"), "{line}");
        self.banner = line.clone();
        // Keep draining the server's log (into server.log), so it never blocks on a full pipe.
        let mut log = std::fs::File::create(r.dir.join("server.log")).unwrap();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
        self.server = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            unsafe { libc::kill(s.id() as i32, libc::SIGTERM) };
            let _ = s.wait();
        }
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.kubectl_with("kubectl", args, None)
    }

    /// Runs a given kubectl binary, with `stdin` as its standard input when given.
    fn kubectl_with(&self, bin: &str, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
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
    fn kubectl_in_pty(&self, bin: &str, args: &[&str], input: &[u8]) -> String {
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        let (mut master, mut slave) = (0, 0);
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(r, 0, "openpty");
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let mut cmd = self.kubectl_cmd(bin, args);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut master = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(master) });
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

    fn kubectl_cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(self.root.dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.root.dir.join("kcache"))
            .args(args);
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    fn apply(&self, yaml: &str) {
        let f = self.root.dir.join("obj.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.ok(&["apply", "-f", f.to_str().unwrap()]);
    }

    fn wait_for(&self, args: &[&str], want: &str, secs: u64) -> String {
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
fn lenient_eviction(extra: &[String]) -> Vec<String> {
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
fn pod_cgroups(node: &str, uid: &str) -> Vec<std::path::PathBuf> {
    let parent = skiff_agent::pod::pods_cgroup(&skiff_agent::pod::default_cgroup_root(node));
    skiff_agent::pod::cgroup_dirs(&format!("{parent}/pod{uid}"))
}

/// Removes what node `node`'s agent on `root` may have left: pods' infra processes,
/// containers, pod cgroups, the pod bridge and filter table, pod directories.
fn clean_node_root(root: &Root, node: &str) {
    let mut uids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root.dir.join("pods")) {
        for e in rd.flatten() {
            uids.push(e.file_name().to_string_lossy().to_string());
            if let Ok(b) = std::fs::read(e.path().join("running.json")) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                    if let Some(pid) = v["sandbox"]["pid"].as_i64() {
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
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
    skiff_agent::pod::remove_pods_cgroup(&skiff_agent::pod::pods_cgroup(
        &skiff_agent::pod::default_cgroup_root(node),
    ));
    let _ = Command::new("ip")
        .args(["link", "del", &format!("{}q", root.bridge)])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &format!("{}_pods", root.table)])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(root.dir.join("pods"));
}

#[test]
fn pods_run_on_the_node_and_are_scheduled_by_their_constraints() {
    let c = Cluster::start(Root::with_busybox(EXE));
    let node = c.wait_for(&["get", "nodes"], " Ready ", 20);
    assert!(node.contains(&c.node), "{node}");

    // The server runs from a read-only view of its binary (see
    // skiff_runtime::sealed), so every helper it starts (kubectl exec's and exec
    // probes' `skiff exec`, the sandbox helper, monitors) is sealed too.
    let pid = c.server.as_ref().unwrap().id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let fd = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(
        matches!(&fd, Err(e) if e.raw_os_error() == Some(libc::EROFS) || e.raw_os_error() == Some(libc::ETXTBSY)),
        "{}: {fd:?}",
        exe.display()
    );
    assert!(
        exe == std::path::Path::new("/") || exe.to_string_lossy().starts_with("/memfd:"),
        "the server is not sealed: {}",
        exe.display()
    );

    // The server created and recorded its root's network from its flags: a plain
    // `skiff run` on that root, with no network flags, uses the same bridge.
    let r = &c.root;
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.dir.join("networks/bridge.json")).expect("the network is recorded"),
    )
    .unwrap();
    assert_eq!(rec["bridge"], r.bridge.as_str(), "{rec}");
    assert_eq!(rec["table"], r.table.as_str(), "{rec}");
    let o = std::process::Command::new(EXE)
        .arg("--root")
        .arg(&r.dir)
        .args([
            "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
        ])
        .env_remove("SKIFF_BRIDGE")
        .env_remove("SKIFF_BRIDGE_CIDR")
        .env_remove("SKIFF_FILTER_TABLE")
        .output()
        .unwrap();
    let addr = String::from_utf8_lossy(&o.stdout);
    let prefix = r.cidr.trim_end_matches("0/24");
    assert!(
        addr.contains(&format!("inet {prefix}")),
        "{addr}{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A pod that runs to completion (the tutorial's hostAliases pod).
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hostaliases-pod\nspec:\n  restartPolicy: Never\n  hostAliases:\n  - ip: \"10.1.2.3\"\n    hostnames:\n    - \"foo.remote\"\n    - \"bar.remote\"\n  containers:\n  - name: cat-hosts\n    image: busybox\n    imagePullPolicy: Never\n    command:\n    - cat\n    args:\n    - \"/etc/hosts\"\n",
    );
    c.wait_for(
        &[
            "get",
            "pod",
            "hostaliases-pod",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Succeeded",
        30,
    );
    // The kubelet's format: the aliases under their heading, an entry per line.
    let hosts = c.ok(&["logs", "hostaliases-pod"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n")
            && hosts.ends_with(
                "\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"
            ),
        "{hosts}"
    );
    let events = c.ok(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("Scheduled"), "{events}");

    // A long-running pod gets an address the node reaches.
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: httpd\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/var/www\"]\n");
    let ip = c.wait_for(
        &[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.phase} {.status.podIP}",
        ],
        "Running 10.",
        30,
    );
    let ip = ip.split_whitespace().nth(1).unwrap().to_string();
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((ip.as_str(), 8080)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(body.ends_with("hello from skiff\n"), "{body}");
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&c.node) && wide.contains("1/1"), "{wide}");

    // A pod that fits nowhere waits, with the scheduler's reason, until a node
    // with the right label appears.
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: picky\nspec:\n  nodeSelector:\n    disk: ssd\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"60\"]\n");
    let cond = c.wait_for(
        &[
            "get",
            "pod",
            "picky",
            "-o",
            "jsonpath={.status.conditions[0].reason} {.status.conditions[0].message}",
        ],
        "Unschedulable",
        20,
    );
    assert!(
        cond.contains("didn't match Pod's node affinity/selector"),
        "{cond}"
    );
    c.ok(&["label", "node", &c.node, "disk=ssd"]);
    c.wait_for(
        &["get", "pod", "picky", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );

    // Deleting a pod stops its containers and removes every trace.
    c.ok(&["delete", "pod", "picky", "--grace-period", "1"]);
    let gone = c.kubectl(&["get", "pod", "picky"]);
    assert!(!gone.status.success());
    let ps = c.root.ok(&["ps", "-a", "--no-trunc"]);
    assert!(!ps.contains("sleep 60"), "{ps}");
}

#[test]
fn a_restarted_server_re_adopts_running_pods() {
    let mut c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: steady\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"300\"]\n");
    c.wait_for(
        &["get", "pod", "steady", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    let before = c.ok(&[
        "get",
        "pod",
        "steady",
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    c.stop();
    c.boot();
    std::thread::sleep(Duration::from_secs(2));
    let after = c.wait_for(
        &[
            "get",
            "pod",
            "steady",
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID}",
        ],
        "skiff://",
        20,
    );
    assert_eq!(before, after, "the same container, not a new one");
    assert_eq!(c.root.ok(&["ps", "-q"]).lines().count(), 1);
    c.ok(&["delete", "pod", "steady", "--grace-period", "1"]);
    assert_eq!(c.root.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn a_deployment_runs_its_replicas_replaces_lost_pods_and_rolls_to_a_new_template() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A second local image to roll to.
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    let deploy = |image: &str| {
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: {image}\n        imagePullPolicy: IfNotPresent\n        command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/var/www\"]\n")
    };
    c.apply(&deploy("busybox"));
    c.wait_for(&["get", "deploy", "web"], "2/2", 40);
    let pods = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
    // A deleted pod is replaced.
    let first = pods.lines().next().unwrap().to_string();
    c.ok(&["delete", &first, "--grace-period", "1"]);
    c.wait_for(&["get", "deploy", "web"], "2/2", 40);
    let again = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(again.lines().count(), 2);
    assert!(!again.contains(&first), "{again}");
    // Roll to a new template: a new ReplicaSet takes over, never below 2 ready.
    c.apply(&deploy("busybox:v2"));
    let start = Instant::now();
    loop {
        let ready = c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        if ready.trim().parse::<i32>().unwrap_or(0) < 2 {
            let rs = c.ok(&["get", "rs", "-o", "wide"]);
            let pods = c.ok(&["get", "pods", "-o", "wide"]);
            panic!("availability dropped: {ready}\n{rs}\n{pods}");
        }
        let rs = c.ok(&["get", "rs", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.status.readyReplicas} {end}"]);
        if rs.contains("busybox:v2=2")
            && c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
                .lines()
                .count()
                == 2
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rollout did not finish: {rs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Deleting the deployment removes its ReplicaSets and pods.
    c.ok(&["delete", "deploy", "web"]);
    c.wait_for(&["get", "pods", "-o", "name"], "", 1);
    let start = Instant::now();
    while !c.ok(&["get", "pods", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "pods left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn readiness_and_liveness_probes_drive_ready_and_restarts() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: probed\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"rm -f /tmp/ready /tmp/alive; sleep 2; touch /tmp/ready /tmp/alive; sleep 3; rm /tmp/alive; sleep 600\"]\n    readinessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/ready\"]\n      periodSeconds: 1\n    livenessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/alive\"]\n      initialDelaySeconds: 3\n      periodSeconds: 1\n      failureThreshold: 2\n");
    // Running but not ready until the readiness probe passes.
    let first = c.wait_for(
        &[
            "get",
            "pod",
            "probed",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].ready}",
        ],
        "Running",
        30,
    );
    assert_eq!(
        first.trim(),
        "Running false",
        "not ready before the probe passes"
    );
    c.wait_for(&["get", "pod", "probed"], "1/1", 20);
    // The liveness probe fails once /tmp/alive is gone: the container restarts.
    c.wait_for(
        &[
            "get",
            "pod",
            "probed",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        "1",
        30,
    );
}

#[test]
fn a_job_runs_its_completions_and_a_failing_one_hits_its_backoff_limit() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"echo computing; sleep 0.5\"]\n");
    c.wait_for(
        &[
            "get",
            "job",
            "pi",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Complete\")].type} {.status.succeeded}",
        ],
        "Complete 3",
        60,
    );
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=pi",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {end}",
    ]);
    assert_eq!(pods.matches("Succeeded").count(), 3, "{pods}");
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: doomed\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"exit 1\"]\n");
    let st = c.wait_for(
        &[
            "get",
            "job",
            "doomed",
            "-o",
            "jsonpath={.status.conditions[0].reason} {.status.failed}",
        ],
        "BackoffLimitExceeded",
        60,
    );
    assert!(st.ends_with(" 2"), "failed pods = backoffLimit + 1: {st}");
    // Deleting a job removes its pods.
    c.ok(&["delete", "job", "pi"]);
    let start = Instant::now();
    while !c
        .ok(&["get", "pods", "-l", "job-name=pi", "-o", "name"])
        .trim()
        .is_empty()
    {
        if start.elapsed() > Duration::from_secs(30) {
            let left = c.ok(&["get", "pods", "-l", "job-name=pi", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.metadata.ownerReferences[0].kind} {.status.phase};{end}"]);
            panic!("job pods left behind: {left}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_cronjob_every_minute_runs_a_job_to_completion() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: hello\nspec:\n  schedule: \"* * * * *\"\n  successfulJobsHistoryLimit: 1\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: hello\n            image: busybox\n            imagePullPolicy: Never\n            command: [\"sh\", \"-c\", \"date; echo Hello from the Kubernetes cluster\"]\n");
    // The schedule fires within a minute; its Job completes.
    let jobs = c.wait_for(
        &[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.succeeded} {end}",
        ],
        "=1",
        80,
    );
    assert!(jobs.starts_with("hello-"), "{jobs}");
    let last = c.ok(&[
        "get",
        "cronjob",
        "hello",
        "-o",
        "jsonpath={.status.lastScheduleTime}",
    ]);
    assert!(last.ends_with('Z'), "{last}");
    c.ok(&["delete", "cronjob", "hello"]);
    let start = Instant::now();
    while !c.ok(&["get", "jobs", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "jobs left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_daemonset_runs_one_pod_per_eligible_node() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        role: edge\n      containers:\n      - name: a\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .trim(),
        "",
        "no eligible node yet"
    );
    c.ok(&["label", "node", &c.node, "role=edge"]);
    c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[0].status.phase} {.items[0].spec.nodeName}",
        ],
        &format!("Running {}", c.node),
        30,
    );
    c.wait_for(
        &[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}/{.status.numberReady}",
        ],
        "1/1",
        20,
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .lines()
            .count(),
        1
    );
    c.ok(&["delete", "ds", "agent"]);
    let start = Instant::now();
    while !c
        .ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "daemonset pods left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

#[test]
fn kubectl_logs_exec_attach_cp_and_port_forward_reach_the_pod() {
    // Short restart back-off: the attached container restarts after every session.
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--initial-container-restart-period",
            "1s",
            "--max-container-restart-period",
            "2s",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\nspec:\n  containers:\n",
        "  - name: main\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"echo hello-out; echo hello-err >&2; sleep 0.3; echo third; exec sleep 1000\"]\n",
        "  - name: web\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www\"]\n",
        "  - name: reader\n    image: busybox\n    imagePullPolicy: Never\n    stdin: true\n    stdinOnce: true\n",
        "    command: [\"sh\", \"-c\", \"while read line; do echo got-$line; done\"]\n",
        "  - name: crasher\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"test -f /marker && echo stale-layer; touch /marker; echo attempt-$(cat /proc/uptime); sleep 0.2; exit 1\"]\n",
    ));
    c.wait_for(
        &["get", "pod", "shell", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );

    // Logs: both streams, --tail, a container that must be named, a wrong one.
    let out = c.wait_for(&["logs", "shell", "-c", "main"], "third", 10);
    assert!(
        out.contains("hello-out\n") && out.contains("hello-err\n"),
        "{out}"
    );
    assert_eq!(
        c.ok(&["logs", "shell", "-c", "main", "--tail=1"]),
        "third\n"
    );
    let ts = c.ok(&["logs", "shell", "-c", "main", "--timestamps", "--tail=1"]);
    assert!(ts.ends_with("Z third\n") && ts.starts_with("20"), "{ts}");
    let o = c.kubectl(&["logs", "shell", "-c", "nope"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = c.kubectl(&["logs", "shell", "-c", "main", "--previous"]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("previous terminated container \"main\" in pod \"shell\" not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The log of a restarted container's previous run.
    let start = Instant::now();
    while c
        .ok(&[
            "get",
            "pod",
            "shell",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"crasher\")].restartCount}",
        ])
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        < 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "crasher never restarted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each run starts from the image again (no /marker), and its log is its own.
    let prev = c.ok(&["logs", "shell", "-c", "crasher", "--previous"]);
    assert!(
        prev.starts_with("attempt-") && prev.lines().count() == 1,
        "{prev}"
    );
    // Failing again, it waits in CrashLoopBackOff, with the kubelet's BackOff event.
    c.wait_for(&["get", "pod", "shell"], "CrashLoopBackOff", 20);
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=shell,reason=BackOff",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        ev.contains("Back-off restarting failed container crasher in pod shell_default"),
        "{ev}"
    );

    // exec and attach with an old (SPDY) and a new (WebSocket) client.
    for v in ["1.27", "1.29", "1.30", "1.33"] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let o = c.kubectl_with(
            &k,
            &[
                "exec",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "echo from-exec; echo e >&2; exit 3",
            ],
            None,
        );
        assert_eq!(
            o.status.code(),
            Some(3),
            "{v}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "from-exec\n", "{v}");
        // stdin reaches the process and its end is the process's EOF.
        let o = c.kubectl_with(
            &k,
            &[
                "exec",
                "-i",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "cat; echo done",
            ],
            Some(b"piped-in\n"),
        );
        assert!(
            o.status.success(),
            "{v}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "piped-in\ndone\n",
            "{v}"
        );
        // A terminal: the shell sees a tty of the size kubectl's terminal has.
        let out = c.kubectl_in_pty(
            &k,
            &[
                "exec",
                "-i",
                "-t",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "test -t 0 && echo is-a-tty; stty size",
            ],
            b"",
        );
        assert!(
            out.contains("is-a-tty") && out.contains("33 101"),
            "{v}: {out}"
        );
        // attach: what we type reaches the container's stdin, its answers come back;
        // with stdinOnce the end of our input ends its stdin (it exits and restarts).
        let start = Instant::now();
        loop {
            let o = c.kubectl_with(
                &k,
                &["attach", "-i", "shell", "-c", "reader"],
                Some(format!("v{v}\n").as_bytes()),
            );
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            if out.contains(&format!("got-v{v}")) {
                break;
            }
            // The container may be between runs after the previous attach.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{v}: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // cp both ways (tar over exec, stdin EOF included).
    let src = c.root.dir.join("cp-src.txt");
    std::fs::write(&src, "copied-in\n").unwrap();
    c.ok(&[
        "cp",
        src.to_str().unwrap(),
        "shell:/tmp/x.txt",
        "-c",
        "main",
    ]);
    assert_eq!(
        c.ok(&["exec", "shell", "-c", "main", "--", "cat", "/tmp/x.txt"]),
        "copied-in\n"
    );
    let back = c.root.dir.join("cp-back.txt");
    c.ok(&[
        "cp",
        "shell:/tmp/x.txt",
        back.to_str().unwrap(),
        "-c",
        "main",
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied-in\n");

    // port-forward to a server listening on the pod's localhost only.
    for v in ["1.27", "1.33"] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let mut pf = c
            .kubectl_cmd(&k, &["port-forward", "pod/shell", ":8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(pf.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep draining kubectl's output: a closed stdout kills it ("Handling connection").
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = pf.kill();
                let mut err = String::new();
                use std::io::Read;
                let _ = pf.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{v}: {line} {err}")
            });
        for _ in 0..2 {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if !resp.contains("pf-ok") {
                let _ = pf.kill();
                let mut err = String::new();
                use std::io::Read;
                let _ = pf.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{v}: {resp:?} {err}");
            }
        }
        unsafe { libc::kill(pf.id() as i32, libc::SIGTERM) };
        let _ = pf.wait();
    }

    // Non-kubectl clients over plain WebSocket, as the kubelet serves them: stdin in
    // text messages, the base64 protocols, and port-forward with its port channels.
    let exec = "/api/v1/namespaces/default/pods/shell/exec?container=main&command=head&command=-n1&stdin=true&stdout=true&stderr=true";
    let got = ws_session(
        &c,
        exec,
        Some("v4.channel.k8s.io"),
        &[("text", "\u{0}typed\n")],
        5,
    );
    assert_eq!(got["protocol"], "v4.channel.k8s.io", "{got}");
    let msgs = ws_binary_channels(&got);
    assert!(
        msgs.contains(&(1, b"typed\n".to_vec())),
        "stdin from a text message: {got}"
    );
    assert!(
        msgs.iter()
            .any(|(ch, d)| *ch == 3 && String::from_utf8_lossy(d).contains("\"Success\"")),
        "{got}"
    );
    let got = ws_session(
        &c,
        exec,
        Some("base64.channel.k8s.io"),
        &[("text", "0dHlwZWQK")],
        5,
    );
    assert_eq!(got["protocol"], "base64.channel.k8s.io", "{got}");
    let texts: Vec<String> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["op"] == "text")
        .map(|m| m["data"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts.contains(&"1dHlwZWQK".to_string()),
        "base64 stdout: {got}"
    );
    let forward = "/api/v1/namespaces/default/pods/shell/portforward?ports=8080";
    for proto in [Some("v4.channel.k8s.io"), None] {
        let req = "\u{0}GET /index.html HTTP/1.0\r\n\r\n";
        let got = ws_session(&c, forward, proto, &[("binary", req)], 3);
        assert_eq!(got["status"], 101, "{got}");
        let msgs = ws_binary_channels(&got);
        // Each channel opens with the port, little-endian.
        assert_eq!(msgs[0], (0, vec![0x90, 0x1f]), "{got}");
        assert_eq!(msgs[1], (1, vec![0x90, 0x1f]), "{got}");
        let body: Vec<u8> = msgs[2..]
            .iter()
            .filter(|(ch, _)| *ch == 0)
            .flat_map(|(_, d)| d.clone())
            .collect();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("pf-ok"), "{proto:?}: {got}");
    }
    let got = ws_session(
        &c,
        "/api/v1/namespaces/default/pods/shell/portforward",
        None,
        &[],
        3,
    );
    assert_eq!(got["status"], 400, "a port is required: {got}");
}

/// One WebSocket session through the API server with tests/wsclient.py: `send` is
/// (kind, payload) with kind `text` or `binary` (the payload's chars as bytes).
fn ws_session(
    c: &Cluster,
    path: &str,
    protocol: Option<&str>,
    send: &[(&str, &str)],
    idle: u64,
) -> serde_json::Value {
    use std::io::Write;
    let send: Vec<serde_json::Value> = send
        .iter()
        .map(|(kind, p)| match *kind {
            "text" => serde_json::json!({"text": p}),
            _ => serde_json::json!({"binary": b64(p.as_bytes())}),
        })
        .collect();
    let req = serde_json::json!({
        "kubeconfig": c.root.dir.join("kubeconfig"),
        "path": path,
        "protocol": protocol,
        "send": send,
        "idle": idle,
    });
    let mut child = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsclient.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "wsclient: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The binary messages of a session as (channel, data).
fn ws_binary_channels(got: &serde_json::Value) -> Vec<(u8, Vec<u8>)> {
    got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["op"] == "binary")
        .map(|m| unb64(m["data"].as_str().unwrap()))
        .filter(|d| !d.is_empty())
        .map(|d| (d[0], d[1..].to_vec()))
        .collect()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}

#[test]
fn lifecycle_hooks_events_and_image_pull_errors() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let host_port = 20000 + (std::process::id() % 20000);
    let shared = c.root.dir.join("hook-out");
    std::fs::create_dir_all(&shared).unwrap();
    c.apply(&format!(
        concat!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hooks\nspec:\n",
            "  terminationGracePeriodSeconds: 5\n",
            "  volumes:\n  - name: out\n    hostPath:\n      path: {}\n",
            "  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: IfNotPresent\n",
            "    command: [\"sh\", \"-c\", \"while ! test -f /tmp/post; do sleep 0.1; done; cat /tmp/post; exec sleep 1000\"]\n",
            "    volumeMounts:\n    - name: out\n      mountPath: /out\n",
            "    lifecycle:\n      postStart:\n        exec:\n          command: [\"sh\", \"-c\", \"echo from-post-start > /tmp/post\"]\n",
            "      preStop:\n        exec:\n          command: [\"sh\", \"-c\", \"echo from-pre-stop > /out/prestop\"]\n",
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: hp\nspec:\n  containers:\n",
            "  - name: web\n    image: busybox\n    imagePullPolicy: Never\n",
            "    command: [\"sh\", \"-c\", \"mkdir /www; echo via-host-port > /www/index.html; exec httpd -f -p 8080 -h /www\"]\n",
            "    ports:\n    - containerPort: 8080\n      hostPort: {}\n",
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: never\nspec:\n  containers:\n",
            "  - name: main\n    image: not-here:v1\n    imagePullPolicy: Never\n",
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: missing\nspec:\n  containers:\n",
            "  - name: main\n    image: not-here:v1\n",
        ),
        shared.display(),
        host_port
    ));
    c.wait_for(&["logs", "hooks"], "from-post-start", 30);
    let ev = c.wait_for(
        &["get", "events", "--field-selector", "involvedObject.name=hooks", "-o", "jsonpath={range .items[*]}{.reason}:{.involvedObject.fieldPath}:{.message}{\"\\n\"}{end}"],
        "Started:spec.containers{main}:Started container main",
        10,
    );
    assert!(ev.contains("Scheduled:"), "{ev}");
    assert!(
        ev.contains(
            "Pulled:spec.containers{main}:Container image \"busybox\" already present on machine"
        ),
        "{ev}"
    );
    assert!(
        ev.contains("Created:spec.containers{main}:Created container: main"),
        "{ev}"
    );
    let describe = c.ok(&["describe", "pod", "hooks"]);
    assert!(describe.contains("Started container main"), "{describe}");

    // hostPort: the container's port on the node.
    c.wait_for(
        &["get", "pod", "hp", "-o", "jsonpath={.status.phase}"],
        "Running",
        20,
    );
    let start = Instant::now();
    loop {
        use std::io::{Read, Write};
        let mut resp = String::new();
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", host_port as u16)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut resp);
        }
        if resp.contains("via-host-port") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "hostPort: {resp:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Image errors as the kubelet reports them.
    c.wait_for(
        &[
            "get",
            "pod",
            "never",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        "ErrImageNeverPull",
        20,
    );
    c.wait_for(
        &[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        "ImagePullBackOff",
        20,
    );
    let pods = c.ok(&["get", "pods"]);
    assert!(
        pods.contains("ErrImageNeverPull") && pods.contains("ImagePullBackOff"),
        "{pods}"
    );
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(ev.contains("Failed") && ev.contains("BackOff"), "{ev}");

    // Deleting runs preStop inside the grace period, then records Killing.
    c.ok(&["delete", "pod", "hooks", "--wait=true", "--timeout=30s"]);
    assert_eq!(
        std::fs::read_to_string(shared.join("prestop")).unwrap(),
        "from-pre-stop\n"
    );
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hooks,reason=Killing",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(ev.contains("Stopping container main"), "{ev}");
    let _ = std::fs::remove_dir_all(&shared);
}

#[test]
fn the_tutorials_shared_pid_namespace_pod_and_attach_to_its_shell() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // The tutorial's nginx.yaml, with busybox's httpd standing in for nginx.
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx\nspec:\n  shareProcessNamespace: true\n",
        "  containers:\n  - name: nginx\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"httpd\", \"-f\", \"-p\", \"80\"]\n",
        // Docker Hub's busybox has CMD ["sh"]; the test image is a bare import.
        "  - name: shell\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\"]\n    stdin: true\n    tty: true\n",
    ));
    c.wait_for(
        &["get", "pod", "nginx", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    for v in ["1.27", "1.33"] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let out = c.kubectl_in_pty(
            &k,
            &["attach", "-it", "nginx", "-c", "shell"],
            b"ps ax\nexit\n",
        );
        assert!(out.contains("/pause"), "{v}: {out}");
        assert!(out.contains("httpd -f -p 80"), "{v}: {out}");
        // Leaving the shell ends its container, which restarts; wait for it.
        c.wait_for(
            &[
                "get",
                "pod",
                "nginx",
                "-o",
                "jsonpath={.status.containerStatuses[?(@.name==\"shell\")].state}",
            ],
            "running",
            30,
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container_in_the_targets_process_namespace() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // No shareProcessNamespace: only --target lets the debugger see the app.
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n",
        "  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n",
    ));
    c.wait_for(
        &["get", "pod", "app", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    for (v, name) in [("1.27", "dbg27"), ("1.33", "dbg33")] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let out = c.kubectl_in_pty(
            &k,
            &[
                "debug",
                "-it",
                "app",
                "--image=busybox",
                "--image-pull-policy=Never",
                "--target=web",
                "-c",
                name,
                "--",
                "sh",
            ],
            b"ps ax\nexit\n",
        );
        assert!(out.contains("httpd -f -p 8080"), "{v}: {out}");
        assert!(!out.contains("/pause"), "{v}: {out}");
        // Leaving the shell ends the ephemeral container for good: never restarted.
        let jp = format!(
            "jsonpath={{.status.ephemeralContainerStatuses[?(@.name==\"{name}\")].state.terminated.exitCode}}"
        );
        c.wait_for(&["get", "pod", "app", "-o", &jp], "0", 30);
        std::thread::sleep(Duration::from_millis(1500));
        let restarts = c.ok(&[
            "get",
            "pod",
            "app",
            "-o",
            &format!(
                "jsonpath={{.status.ephemeralContainerStatuses[?(@.name==\"{name}\")].restartCount}}/{{.status.ephemeralContainerStatuses[?(@.name==\"{name}\")].state}}"
            ),
        ]);
        assert!(
            restarts.starts_with("0/") && restarts.contains("terminated"),
            "{restarts}"
        );
        // What the session printed is its log.
        let logs = c.ok(&["logs", "app", "-c", name]);
        assert!(logs.contains("httpd -f -p 8080"), "{v}: {logs}");
    }
    // The app container ran on untouched; describe shows the debuggers.
    let st = c.ok(&[
        "get",
        "pod",
        "app",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}/{.status.phase}",
    ]);
    assert_eq!(st, "0/Running");
    let d = c.ok(&["describe", "pod", "app"]);
    assert!(
        d.contains("Ephemeral Containers:") && d.contains("dbg33"),
        "{d}"
    );
}

#[test]
fn projected_service_account_tokens_are_rotated_before_they_expire() {
    // Tokens of 10 s (the server's minimum lowered for the test), volumes resynced
    // every second: the agent asks for a new token once 80% of its life has passed.
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--service-account-min-token-expiration",
            "5s",
            "--sync-frequency",
            "1s",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.wait_for(&["get", "sa", "-o", "name"], "serviceaccount/default", 10);
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tok\nspec:\n",
        "  terminationGracePeriodSeconds: 1\n",
        "  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sleep\", \"600\"]\n",
        "    volumeMounts:\n    - name: t\n      mountPath: /var/run/tok\n",
        "  volumes:\n  - name: t\n    projected:\n      sources:\n",
        "      - serviceAccountToken:\n          path: token\n          expirationSeconds: 10\n",
    ));
    c.wait_for(
        &["get", "pod", "tok", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    let read = || c.ok(&["exec", "tok", "--", "cat", "/var/run/tok/token"]);
    // Whether the API server takes a token (a TokenReview, as a webhook would ask).
    let review = |token: &str| {
        let f = c.root.dir.join("review.json");
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token},
        });
        std::fs::write(&f, body.to_string()).unwrap();
        let out = c.ok(&["create", "-f", f.to_str().unwrap(), "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["status"]["authenticated"].as_bool().unwrap_or(false),
            v["status"]["user"]["username"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    let first = read();
    assert_eq!(first.split('.').count(), 3, "{first}");
    assert_eq!(
        review(&first),
        (true, "system:serviceaccount:default:default".to_string())
    );
    let start = Instant::now();
    let second = loop {
        let t = read();
        if t != first {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the token was never replaced"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Replaced before the old one expired (at 80% of its 10 s), by a good one.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(review(&second).0);
    // The old one runs out; the pod's current one still works.
    std::thread::sleep(Duration::from_secs(11));
    assert!(!review(&first).0);
    assert!(review(&read()).0);
    // Shorter than the server's minimum is refused.
    let out = c.kubectl(&["create", "token", "default", "--duration", "4s"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not specify a duration less than"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn resources_security_context_host_namespaces_and_startup_probes_as_the_kubelet_applies_them() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(concat!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: env\ndata:\n  GREETING: hi\n---\n",
        // Over its memory limit: OOMKilled, restarted, the kill kept as lastState.
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oom\nspec:\n  terminationGracePeriodSeconds: 1\n",
        "  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n",
        // The shell itself grows past the limit (the OOM killer picks it).
        "    command: [\"sh\", \"-c\", \"sleep 1; x=$(head -c 60000000 /dev/zero | tr '\\\\0' a); sleep 600\"]\n",
        "    resources:\n      limits: {memory: 24Mi}\n---\n",
        // Limits, security context, a memory-backed emptyDir, env from resources and a
        // ConfigMap, and a startup probe that passes after 3 s.
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: tight\nspec:\n  terminationGracePeriodSeconds: 1\n",
        "  securityContext:\n    runAsUser: 1000\n    runAsGroup: 3000\n",
        "  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"sleep 3; touch /cache/started; sleep 600\"]\n",
        "    resources:\n      requests: {cpu: 250m, memory: 32Mi}\n      limits: {cpu: 500m, memory: 64Mi}\n",
        "    securityContext:\n      readOnlyRootFilesystem: true\n      allowPrivilegeEscalation: false\n",
        "      capabilities:\n        drop: [ALL]\n",
        "    env:\n    - name: MEM_LIMIT\n      valueFrom:\n        resourceFieldRef: {resource: limits.memory}\n",
        "    envFrom:\n    - configMapRef: {name: env}\n",
        "    volumeMounts:\n    - name: cache\n      mountPath: /cache\n",
        "    startupProbe:\n      exec:\n        command: [\"cat\", \"/cache/started\"]\n      periodSeconds: 1\n      failureThreshold: 30\n",
        "  volumes:\n  - name: cache\n    emptyDir:\n      medium: Memory\n---\n",
        // The host's network and PID namespaces.
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: host\nspec:\n  terminationGracePeriodSeconds: 1\n",
        "  hostNetwork: true\n  hostPID: true\n",
        "  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n",
        "    resources:\n      requests: {cpu: 100m, memory: 16Mi}\n      limits: {cpu: 100m, memory: 16Mi}\n",
    ));
    // The startup probe holds `started` (and readiness) until it passes.
    c.wait_for(
        &["get", "pod", "tight", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    let early = c.ok(&[
        "get",
        "pod",
        "tight",
        "-o",
        "jsonpath={.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}",
    ]);
    assert_eq!(early, "false/false");
    c.wait_for(
        &[
            "get",
            "pod",
            "tight",
            "-o",
            "jsonpath={.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}",
        ],
        "true/true",
        30,
    );
    let sh = |pod: &str, script: &str| c.ok(&["exec", pod, "--", "sh", "-c", script]);
    assert_eq!(sh("tight", "id -u; id -g").trim(), "1000\n3000");
    let ro = c.kubectl(&["exec", "tight", "--", "touch", "/file"]);
    assert!(!ro.status.success());
    assert!(
        String::from_utf8_lossy(&ro.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&ro.stderr)
    );
    let caps = sh("tight", "grep -E '^Cap(Eff|Bnd)' /proc/self/status");
    assert!(
        caps.lines().all(|l| l.ends_with("0000000000000000")),
        "{caps}"
    );
    assert!(sh("tight", "grep NoNewPrivs /proc/self/status").contains('1'));
    assert!(sh("tight", "grep ' /cache ' /proc/mounts").starts_with("tmpfs "));
    assert_eq!(
        sh("tight", "echo $MEM_LIMIT $GREETING").trim(),
        (64 * 1024 * 1024).to_string() + " hi"
    );
    // Requests below limits: Burstable; equal: Guaranteed; none: BestEffort.
    for (pod, qos) in [
        ("tight", "Burstable"),
        ("host", "Guaranteed"),
        ("oom", "Burstable"),
    ] {
        let got = c.ok(&["get", "pod", pod, "-o", "jsonpath={.status.qosClass}"]);
        assert_eq!(got, qos, "{pod}");
    }
    // The limits are the container's cgroup's.
    let uid = c.ok(&["get", "pod", "tight", "-o", "jsonpath={.metadata.uid}"]);
    let dirs = pod_cgroups(&c.node, &uid);
    let read_child = |file: &str| -> Vec<String> {
        dirs.iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| std::fs::read_to_string(e.path().join(file)).ok())
            .map(|s| s.trim().to_string())
            .collect()
    };
    assert!(
        read_child("cpu.cfs_quota_us").contains(&"50000".to_string()),
        "{:?}",
        read_child("cpu.cfs_quota_us")
    );
    assert!(read_child("memory.limit_in_bytes").contains(&(64u64 << 20).to_string()));
    // Host namespaces.
    let host_ns = |n: &str| {
        std::fs::read_link(format!("/proc/self/ns/{n}"))
            .unwrap()
            .to_string_lossy()
            .to_string()
    };
    let pod_ns = sh(
        "host",
        "readlink /proc/self/ns/net; readlink /proc/self/ns/pid",
    );
    assert_eq!(
        pod_ns.split_whitespace().collect::<Vec<_>>(),
        [host_ns("net"), host_ns("pid")]
    );
    assert!(
        sh("host", "ps -o comm | grep -c . ")
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            > 5
    );
    let tight_ns = sh("tight", "readlink /proc/self/ns/net");
    assert_ne!(tight_ns.trim(), host_ns("net"));
    // The OOM kill: restarted, its last run terminated as OOMKilled with 137.
    let last = c.wait_for(
        &[
            "get",
            "pod",
            "oom",
            "-o",
            "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}",
        ],
        "OOMKilled/137",
        60,
    );
    assert_eq!(last, "OOMKilled/137");
    let restarts = c.ok(&[
        "get",
        "pod",
        "oom",
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert!(restarts.parse::<u32>().unwrap_or(0) >= 1, "{restarts}");
    // A container never restarted has an empty lastState, as the kubelet reports it.
    let fresh = c.ok(&[
        "get",
        "pod",
        "host",
        "-o",
        "jsonpath={.status.containerStatuses[0].lastState}",
    ]);
    assert_eq!(fresh, "{}");
}

#[test]
fn a_daemonset_rolls_to_a_new_image_and_a_stuck_rollout_exceeds_its_deadline() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    c.apply(concat!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n",
        "  selector:\n    matchLabels:\n      app: agent\n",
        "  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n",
        "      terminationGracePeriodSeconds: 1\n      containers:\n      - name: a\n",
        "        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n",
    ));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let first = c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"]);
    c.ok(&["set", "image", "ds/agent", "a=busybox:v2"]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let now = c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}={.status.phase} {end}",
        ],
        "busybox:v2=Running",
        30,
    );
    assert!(!now.contains("busybox="), "{now}");
    assert_ne!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"]),
        first
    );
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    // Undo puts the first template back, through its ControllerRevision.
    c.ok(&["rollout", "undo", "ds/agent"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert_eq!(
        c.ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox"
    );
    c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}={.status.phase} {end}",
        ],
        "busybox=Running",
        30,
    );
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "{history}"
    );

    // A Deployment whose new pods never become available: Progressing=False with
    // ProgressDeadlineExceeded after progressDeadlineSeconds; rollout status says so.
    c.apply(concat!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n",
        "  replicas: 1\n  progressDeadlineSeconds: 3\n",
        "  selector:\n    matchLabels:\n      app: stuck\n",
        "  template:\n    metadata:\n      labels:\n        app: stuck\n    spec:\n",
        "      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n",
        "        image: no-such-image\n        imagePullPolicy: Never\n",
    ));
    let reason = c.wait_for(
        &[
            "get",
            "deploy",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].status}/{.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "ProgressDeadlineExceeded",
        40,
    );
    assert_eq!(reason, "False/ProgressDeadlineExceeded");
    let o = c.kubectl(&["rollout", "status", "deploy/stuck", "--timeout=20s"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
}

#[test]
fn init_containers_prepare_a_volume_in_order_and_show_their_progress() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: init\nspec:\n  terminationGracePeriodSeconds: 1\n",
        "  initContainers:\n",
        "  - name: fetch\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"sleep 3; echo fetched > /work/index.html; echo fetch done\"]\n",
        "    volumeMounts:\n    - {name: work, mountPath: /work}\n",
        "  - name: check\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"sleep 3; cat /work/index.html; echo checked >> /work/index.html\"]\n",
        "    volumeMounts:\n    - {name: work, mountPath: /work}\n",
        "  containers:\n  - name: web\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/work\"]\n",
        "    volumeMounts:\n    - {name: work, mountPath: /work}\n",
        "  volumes:\n  - name: work\n    emptyDir: {}\n",
    ));
    // kubectl's STATUS column follows the init containers, one after the other.
    c.wait_for(&["get", "pod", "init", "--no-headers"], "Init:0/2", 20);
    c.wait_for(&["get", "pod", "init", "--no-headers"], "Init:1/2", 20);
    c.wait_for(&["get", "pod", "init", "--no-headers"], "Running", 20);
    let page = c.ok(&["exec", "init", "--", "cat", "/work/index.html"]);
    assert_eq!(page, "fetched\nchecked\n");
    let inits = c.ok(&[
        "get",
        "pod",
        "init",
        "-o",
        "jsonpath={range .status.initContainerStatuses[*]}{.name}={.state.terminated.reason}/{.state.terminated.exitCode}/{.ready} {end}",
    ]);
    assert_eq!(inits, "fetch=Completed/0/true check=Completed/0/true ");
    let init_cond = c.ok(&[
        "get",
        "pod",
        "init",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Initialized\")].status}",
    ]);
    assert_eq!(init_cond, "True");
    // Their logs stay readable.
    assert_eq!(c.ok(&["logs", "init", "-c", "fetch"]), "fetch done\n");
    assert_eq!(c.ok(&["logs", "init", "-c", "check"]), "fetched\n");
    let d = c.ok(&["describe", "pod", "init"]);
    assert!(
        d.contains("Init Containers:") && d.contains("Completed"),
        "{d}"
    );

    // A failing init container fails a pod that never restarts; its app never starts.
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad-init\nspec:\n  restartPolicy: Never\n",
        "  terminationGracePeriodSeconds: 1\n",
        "  initContainers:\n  - name: fail\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"exit 3\"]\n",
        "  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n",
    ));
    c.wait_for(
        &["get", "pod", "bad-init", "-o", "jsonpath={.status.phase}"],
        "Failed",
        30,
    );
    let row = c.ok(&["get", "pod", "bad-init", "--no-headers"]);
    assert!(row.contains("Init:Error"), "{row}");
    let st = c.ok(&[
        "get",
        "pod",
        "bad-init",
        "-o",
        "jsonpath={.status.initContainerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.waiting.reason}",
    ]);
    assert_eq!(st, "3 PodInitializing");
}

/// A Deployment of one busybox `sleep` pod, with a 1 s grace period.
fn sleeper_deployment(name: &str, ns: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n")
}

#[test]
fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.ok(&["create", "namespace", "doomed"]);
    c.apply(&sleeper_deployment("app", "doomed"));
    c.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ]);
    c.wait_for(&["get", "deploy", "app", "-n", "doomed"], "1/1", 40);
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    let phase = c.ok(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");
    let start = Instant::now();
    loop {
        let o = c.kubectl(&[
            "get",
            "ns",
            "doomed",
            "-o",
            "jsonpath={.status.conditions[*].type}",
        ]);
        if !o.status.success() {
            assert!(String::from_utf8_lossy(&o.stderr).contains("NotFound"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "namespace still there: {} {}",
            String::from_utf8_lossy(&o.stdout),
            c.ok(&["get", "all,cm", "-n", "doomed"])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let left = c.ok(&[
        "get",
        "pods,rs,deploy,cm",
        "-A",
        "-o",
        "name",
        "--field-selector",
        "metadata.namespace=doomed",
    ]);
    assert_eq!(left.trim(), "", "{left}");
    assert_eq!(
        c.root.ok(&["ps", "-q"]).trim(),
        "",
        "its containers stopped"
    );
}

#[test]
fn cascading_deletion_orphans_or_deletes_dependents_in_the_foreground() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // Orphan: the ReplicaSet and its pod outlive the Deployment, no longer owned.
    c.apply(&sleeper_deployment("kept", "default"));
    c.wait_for(&["get", "deploy", "kept"], "1/1", 40);
    c.ok(&["delete", "deploy", "kept", "--cascade=orphan"]);
    assert!(!c.kubectl(&["get", "deploy", "kept"]).status.success());
    let rs = c.ok(&["get", "rs", "-l", "app=kept", "-o", "jsonpath={.items[*].metadata.name}|{.items[*].metadata.ownerReferences}|{.items[*].status.readyReplicas}"]);
    let parts: Vec<&str> = rs.split('|').collect();
    assert!(parts[0].starts_with("kept-"), "{rs}");
    assert_eq!(parts[1], "", "no owner left: {rs}");
    assert_eq!(parts[2], "1", "{rs}");
    std::thread::sleep(Duration::from_secs(2));
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=kept",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(pod, "Running", "the pod stays");
    // Foreground: pods go first, then the ReplicaSet, then the Deployment.
    // A longer grace period keeps the pods (and so their owners) around for a while.
    c.apply(&sleeper_deployment("fg", "default").replace(
        "terminationGracePeriodSeconds: 1",
        "terminationGracePeriodSeconds: 4",
    ));
    c.wait_for(&["get", "deploy", "fg"], "1/1", 40);
    c.ok(&[
        "delete",
        "deploy",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let fin = c.ok(&[
        "get",
        "deploy",
        "fg",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(fin.contains("foregroundDeletion"), "{fin}");
    let start = Instant::now();
    let mut saw_deploy_waiting_for_pods = false;
    loop {
        let count = |what: &str| {
            c.ok(&["get", what, "-l", "app=fg", "-o", "name"])
                .lines()
                .count()
        };
        // Sampled owner first: each later sample sees at least as much deleted, so
        // the order checks below hold only if deletion really went dependents-first.
        let deploy = c.kubectl(&["get", "deploy", "fg"]).status.success();
        let rss = count("rs");
        let pods = count("pods");
        assert!(
            !(rss == 0 && pods > 0),
            "the ReplicaSet went before its pods"
        );
        assert!(
            deploy || rss == 0,
            "the Deployment went before its ReplicaSet"
        );
        if deploy && pods > 0 {
            saw_deploy_waiting_for_pods = true;
        }
        if !deploy {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "foreground deletion did not finish: {pods} pods, {rss} rs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_deploy_waiting_for_pods);
    assert_eq!(
        c.ok(&["get", "pods,rs", "-l", "app=fg", "-o", "name"])
            .trim(),
        ""
    );
    // The orphaned ReplicaSet still runs its pod.
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=kept", "-o", "name"])
            .lines()
            .count(),
        1
    );
}

#[test]
fn rollout_history_undo_pause_resume_and_restart() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    kubernetes.io/change-cause: first\nspec:\n  replicas: 1\n  revisionHistoryLimit: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [\"sleep\", \"600\"]\n");
    let done = |c: &Cluster| {
        c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    };
    let image = |c: &Cluster| {
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    done(&c);
    let first_rs = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.ok(&["set", "image", "deploy/web", "c=busybox:v2"]);
    c.ok(&[
        "annotate",
        "deploy",
        "web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    done(&c);
    let st = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.status.conditions[?(@.type==\"Progressing\")].reason} {.status.observedGeneration}/{.metadata.generation}"]);
    let f: Vec<&str> = st.split(' ').collect();
    assert_eq!(f[0], "2", "{st}");
    assert_eq!(f[1], "NewReplicaSetAvailable", "{st}");
    let (og, g) = f[2].split_once('/').unwrap();
    assert_eq!(og, g, "{st}");
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.metadata.annotations.kubernetes\\.io/change-cause}={.metadata.annotations.deployment\\.kubernetes\\.io/desired-replicas}={.metadata.annotations.deployment\\.kubernetes\\.io/max-replicas} {end}"]);
    assert!(
        rs.contains("1=first=1=2") && rs.contains("2=second=1=2"),
        "{rs}"
    );
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1         first") && history.contains("2         second"),
        "{history}"
    );
    // Undo: back to the first template, which becomes revision 3 of the same ReplicaSet.
    c.ok(&["rollout", "undo", "deploy/web"]);
    done(&c);
    assert_eq!(image(&c), "busybox");
    let rev = c.ok(&["get", "rs", &first_rs, "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.metadata.annotations.deployment\\.kubernetes\\.io/revision-history} {.spec.replicas}"]);
    assert_eq!(rev, "3 1 1");
    c.ok(&["rollout", "undo", "deploy/web", "--to-revision=2"]);
    done(&c);
    assert_eq!(image(&c), "busybox:v2");
    // Paused: a template change waits for resume.
    c.ok(&["rollout", "pause", "deploy/web"]);
    c.ok(&["set", "env", "deploy/web", "MODE=paused"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        2
    );
    c.wait_for(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "DeploymentPaused",
        10,
    );
    c.ok(&["rollout", "resume", "deploy/web"]);
    done(&c);
    let env = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].env[0].value}",
    ]);
    assert_eq!(env, "paused");
    // Restart: a new ReplicaSet of the same template; only two old ones are kept.
    c.ok(&["rollout", "restart", "deploy/web"]);
    done(&c);
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
    let mut revs: Vec<i32> = rs.split_whitespace().map(|r| r.parse().unwrap()).collect();
    revs.sort();
    assert_eq!(
        revs,
        vec![4, 5, 6],
        "revisionHistoryLimit 2 keeps two old ones"
    );
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    ]);
    assert!(!pod.is_empty());
}

#[test]
fn a_statefulset_creates_ordered_pods_rolls_from_the_highest_and_makes_claims() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let sts = |env: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: None\n  selector:\n    app: web\n  ports:\n  - port: 80\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n        env:\n        - name: MODE\n          value: {env}\n")
    };
    c.apply(&sts("one"));
    let pods = |c: &Cluster| {
        c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}={.metadata.uid}={.metadata.labels.controller-revision-hash}={.metadata.deletionTimestamp} {end}"])
    };
    // web-1 only once web-0 is ready.
    let start = Instant::now();
    loop {
        let p = pods(&c);
        if p.contains("web-1=") {
            assert!(
                p.contains("web-0=True="),
                "web-1 before web-0 was ready: {p}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "no web-1: {p}");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_for(
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
        30,
    );
    let spec = c.ok(&["get", "pod", "web-1", "-o", "jsonpath={.spec.hostname}.{.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"]);
    assert_eq!(spec, "web-1.web web-1 1");
    let st = c.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.currentReplicas} {.status.updatedReplicas}"]);
    let f: Vec<&str> = st.split(' ').collect();
    assert_eq!(f[0], f[1], "{st}");
    assert_eq!(&f[2..], &["2", "2"], "{st}");
    let revs = c.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert!(
        revs.contains(&format!("controllerrevision.apps/{}", f[0])),
        "{revs}"
    );
    // A new template: web-1 is replaced first, then web-0.
    let before = pods(&c);
    let uid_of = |p: &str, name: &str| {
        p.split_whitespace()
            .find(|x| x.starts_with(&format!("{name}=")))
            .map(|x| x.split('=').nth(2).unwrap().to_string())
    };
    let (old0, old1) = (
        uid_of(&before, "web-0").unwrap(),
        uid_of(&before, "web-1").unwrap(),
    );
    c.apply(&sts("two"));
    let start = Instant::now();
    loop {
        let p = pods(&c);
        let (u0, u1) = (uid_of(&p, "web-0"), uid_of(&p, "web-1"));
        if u0.as_ref().is_some_and(|u| *u != old0) {
            assert!(
                u1.as_ref().is_some_and(|u| *u != old1),
                "web-0 replaced before web-1: {p}"
            );
        }
        let st = c.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas} {.status.readyReplicas}"]);
        let f: Vec<&str> = st.split(' ').collect();
        if f[0] == f[1]
            && !f[0].is_empty()
            && f[2] == "2"
            && f[3] == "2"
            && u0.is_some_and(|u| u != old0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rolling update did not finish: {st} {p}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Scaling down removes the highest ordinal.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    let start = Instant::now();
    while c.kubectl(&["get", "pod", "web-1"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "web-1 stays");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.kubectl(&["get", "pod", "web-0"]).status.success());
    // Undo puts the first template back through its ControllerRevision.
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "sts/web"]);
    let mode = c.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
    ]);
    assert_eq!(mode, "one");
    c.wait_for(
        &[
            "get",
            "pod",
            "web-0",
            "-o",
            "jsonpath={.spec.containers[0].env[0].value}/{.status.phase}",
        ],
        "one/Running",
        60,
    );
    // Claims from volumeClaimTemplates, owned by the set as the retention policy asks.
    c.apply("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 2\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n        volumeMounts:\n        - name: data\n          mountPath: /data\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [\"ReadWriteOnce\"]\n      resources:\n        requests:\n          storage: 1Gi\n");
    let pvcs = c.wait_for(
        &[
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[0].kind} {end}",
        ],
        "data-db-1=",
        20,
    );
    assert!(
        pvcs.contains("data-db-0=StatefulSet") && pvcs.contains("data-db-1=StatefulSet"),
        "{pvcs}"
    );
    let vol = c.ok(&[
        "get",
        "pod",
        "db-0",
        "-o",
        "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(vol, "data-db-0");
    c.ok(&["delete", "sts", "db"]);
    let start = Instant::now();
    while !c.ok(&["get", "pvc", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "claims left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn indexed_jobs_deadlines_and_ttl_after_finished() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // Each pod knows its index, and its hostname says it.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: idx\nspec:\n  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"test \\\"$(hostname)\\\" = \\\"idx-$JOB_COMPLETION_INDEX\\\"\"]\n");
    let st = c.wait_for(
        &[
            "get",
            "job",
            "idx",
            "-o",
            "jsonpath={.status.conditions[*].type} {.status.completedIndexes} {.status.succeeded}",
        ],
        " 0-2 3",
        60,
    );
    assert_eq!(st, "SuccessCriteriaMet Complete 0-2 3");
    let idx = c.ok(&["get", "pods", "-l", "job-name=idx", "-o", "jsonpath={range .items[*]}{.metadata.labels.batch\\.kubernetes\\.io/job-completion-index}{.spec.hostname} {end}"]);
    let mut idx: Vec<&str> = idx.split_whitespace().collect();
    idx.sort();
    assert_eq!(idx, vec!["0idx-0", "1idx-1", "2idx-2"]);
    // Past activeDeadlineSeconds: failed, its pod stopped.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: slow\nspec:\n  activeDeadlineSeconds: 2\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    c.wait_for(
        &[
            "get",
            "job",
            "slow",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ],
        "DeadlineExceeded",
        30,
    );
    // Deleted, with its pods, once finished for ttlSecondsAfterFinished.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: brief\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"true\"]\n");
    c.wait_for(
        &["get", "job", "brief", "-o", "jsonpath={.status.succeeded}"],
        "1",
        30,
    );
    let start = Instant::now();
    while c.kubectl(&["get", "job", "brief"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "job outlived its TTL"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let start = Instant::now();
    while !c
        .ok(&["get", "pods", "-l", "job-name=brief", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "its pods outlived it"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn service_accounts_root_ca_and_endpoints_follow_pods() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // Every namespace gets its default ServiceAccount and the root CA.
    c.ok(&["create", "namespace", "team"]);
    c.wait_for(
        &["get", "sa", "-n", "team", "-o", "name"],
        "serviceaccount/default",
        10,
    );
    let ca = c.wait_for(
        &[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        "BEGIN CERTIFICATE",
        10,
    );
    let want = std::fs::read_to_string(c.root.dir.join("server/tls/server-ca.crt")).unwrap();
    assert_eq!(ca.trim(), want.trim());
    c.ok(&["delete", "sa", "default", "-n", "team"]);
    c.wait_for(
        &["get", "sa", "-n", "team", "-o", "name"],
        "serviceaccount/default",
        10,
    );
    // The kubernetes service's endpoint is the API server.
    let port = c.wait_for(
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ],
        "127.0.0.1:",
        10,
    );
    let kc = std::fs::read_to_string(c.root.dir.join("kubeconfig")).unwrap();
    assert!(kc.contains(&format!("https://{port}")), "{port} {kc}");
    // A pod is listed not ready, then ready, on the named target port.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"sleep 5; touch /tmp/ready; sleep 600\"]\n    ports:\n    - name: http\n      containerPort: 8080\n    readinessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/ready\"]\n      periodSeconds: 1\n");
    let ip = c.wait_for(
        &["get", "pod", "web", "-o", "jsonpath={.status.podIP}"],
        "10.",
        30,
    );
    let nr = c.wait_for(
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].notReadyAddresses[0].ip}:{.subsets[0].ports[0].port}",
        ],
        &ip,
        10,
    );
    assert_eq!(nr, format!("{ip}:8080"));
    let sl = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[0].endpoints[0].conditions.ready}",
    ]);
    assert_eq!(sl, "false");
    let ready = c.wait_for(&["get", "endpoints", "web", "-o", "jsonpath={.subsets[0].addresses[0].ip} {.subsets[0].addresses[0].targetRef.name} {.subsets[0].addresses[0].nodeName}"], &ip, 20);
    assert_eq!(ready, format!("{ip} web {}", c.node));
    let sl = c.wait_for(&["get", "endpointslices", "-l", "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io,kubernetes.io/service-name=web", "-o", "jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].endpoints[0].conditions.ready} {.items[0].endpoints[0].targetRef.name} {.items[0].ports[0].port} {.items[0].addressType}"], "true", 10);
    assert_eq!(sl, format!("{ip} true web 8080 IPv4"));
    // No Service, no endpoints.
    c.ok(&["delete", "svc", "web"]);
    let start = Instant::now();
    while !c
        .ok(&[
            "get",
            "endpoints,endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
        || c.kubectl(&["get", "endpoints", "web"]).status.success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "endpoints left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn an_unreachable_node_is_tainted_and_its_pods_evicted_by_their_tolerations() {
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &["--node-monitor-grace-period", "12s"],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A node no agent runs for: its lease is never renewed.
    c.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: ghost\n  labels:\n    kubernetes.io/hostname: ghost\n");
    let pod = |name: &str, tol: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: ghost\n  tolerations:\n{tol}  containers:\n  - name: c\n    image: busybox\n    command: [\"sleep\", \"600\"]\n")
    };
    c.apply(&pod("brief", "  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 3\n"));
    c.apply(&pod(
        "patient",
        "  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n",
    ));
    let taints = c.wait_for(
        &[
            "get",
            "node",
            "ghost",
            "-o",
            "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
        ],
        "NoExecute",
        30,
    );
    assert!(
        taints.contains("node.kubernetes.io/unreachable:NoSchedule"),
        "{taints}"
    );
    assert!(
        taints.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{taints}"
    );
    let ready = c.ok(&["get", "node", "ghost", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].reason}"]);
    assert_eq!(ready, "Unknown NodeStatusUnknown");
    // The pod that tolerates it for 3 s goes; the one that tolerates it for ever stays.
    c.wait_for(
        &[
            "get",
            "pod",
            "brief",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        "Z",
        15,
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "patient",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ]),
        ""
    );
    // The node that runs its agent is neither unknown nor tainted.
    let me = c.ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.spec.taints}|{.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(me, "|True");
    // No agent will ever finish them: remove them by force.
    c.ok(&[
        "delete",
        "pod",
        "brief",
        "patient",
        "--grace-period=0",
        "--force",
    ]);
    c.ok(&["delete", "node", "ghost"]);
}

/// A network namespace of the test's own, joined to the host by a veth pair with
/// test-only addresses (a /30 in 10.213.250.0–10.213.253.255, which no test's
/// cluster or engine subnet uses): `host_ip` on the host's end, `ns_ip` on the
/// namespace's `eth0`. The namespace (with everything in it) and the veth go when
/// dropped, also after a failed assertion.
struct NetNs {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl NetNs {
    fn new() -> NetNs {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id() as usize;
        let block = (pid * 4 + k) % 256;
        let (third, fourth) = (250 + block / 64, (block % 64) * 4);
        let ns = NetNs {
            name: format!("skt{}n{k}", pid % 100_000),
            host_if: format!("skt{}v{k}", pid % 100_000),
            host_ip: format!("10.213.{third}.{}", fourth + 1),
            ns_ip: format!("10.213.{third}.{}", fourth + 2),
        };
        ns.cleanup();
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Makes `cmd` run inside the namespace (only its network namespace changes: it
    /// keeps the host's mounts, cgroups and /sys).
    fn enter(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let f = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
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
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(program);
        cmd.args(args);
        self.enter(&mut cmd);
        cmd.output().unwrap()
    }

    fn cleanup(&self) {
        // Whatever still runs inside goes first (the agent and its monitors are
        // stopped before this; this is the safety net).
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        for args in [
            vec!["netns", "del", &self.name],
            vec!["link", "del", &self.host_if],
        ] {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A second node: `skiff agent` on its own root, stopped (its pods deleted first)
/// and cleaned up when dropped.
struct JoinedAgent<'a> {
    cluster: &'a Cluster,
    root: Root,
    child: Option<Child>,
    name: String,
}

impl Drop for JoinedAgent<'_> {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(&[
            "delete",
            "pods",
            "-A",
            "--field-selector",
            &format!("spec.nodeName={}", self.name),
            "--grace-period=1",
            "--timeout=20s",
        ]);
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        clean_node_root(&self.root, &self.name);
    }
}

#[test]
fn claims_get_local_volumes_on_the_consumers_node_and_keep_their_data() {
    let c = Cluster::start_with(Root::with_busybox(EXE), &["--housekeeping-interval", "1s"]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let sc = c.ok(&["get", "storageclass"]);
    assert!(
        sc.contains("local-path (default)")
            && sc.contains("skiff.io/local-path")
            && sc.contains("WaitForFirstConsumer"),
        "{sc}"
    );
    // A StatefulSet's claim is provisioned on the node its pod is scheduled to.
    c.apply("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: keeper\nspec:\n  serviceName: keeper\n  replicas: 1\n  selector:\n    matchLabels:\n      app: keeper\n  template:\n    metadata:\n      labels:\n        app: keeper\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"[ -f /data/first ] || echo $HOSTNAME-$RANDOM > /data/first; sleep 600\"]\n        volumeMounts:\n        - name: www\n          mountPath: /data\n  volumeClaimTemplates:\n  - metadata:\n      name: www\n    spec:\n      accessModes: [\"ReadWriteOnce\"]\n      resources:\n        requests:\n          storage: 1Gi\n");
    c.wait_for(
        &["get", "pod", "keeper-0", "-o", "jsonpath={.status.phase}"],
        "Running",
        40,
    );
    let pvc = c.ok(&[
        "get",
        "pvc",
        "www-keeper-0",
        "-o",
        "jsonpath={.status.phase} {.spec.volumeName} {.status.capacity.storage} {.metadata.annotations.volume\\.kubernetes\\.io/selected-node}",
    ]);
    let parts: Vec<&str> = pvc.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{pvc}");
    assert_eq!(
        (parts[0], parts[2], parts[3]),
        ("Bound", "1Gi", c.node.as_str()),
        "{pvc}"
    );
    let pv = parts[1].to_string();
    let affinity = c.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.persistentVolumeReclaimPolicy} {.status.phase}"]);
    assert_eq!(affinity, format!("{} Delete Bound", c.node));
    let first = c.wait_for(
        &["exec", "keeper-0", "--", "cat", "/data/first"],
        "keeper-0-",
        20,
    );
    let dir = c.root.dir.join("storage").join(&pv);
    assert_eq!(std::fs::read_to_string(dir.join("first")).unwrap(), first);
    // The pod comes back with the same data.
    c.ok(&["delete", "pod", "keeper-0", "--wait=false"]);
    c.wait_for(
        &[
            "get",
            "pod",
            "keeper-0",
            "-o",
            "jsonpath={.status.phase} {.metadata.deletionTimestamp}",
        ],
        "Running",
        40,
    );
    let again = c.wait_for(
        &["exec", "keeper-0", "--", "cat", "/data/first"],
        "keeper-0-",
        20,
    );
    assert_eq!(again, first);

    // A claim without a provisioner waits for a matching volume; the agent waits for
    // the claim of a pod placed on it directly.
    let manual = c.root.dir.join("manual-pv");
    c.apply(&format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: manual\nspec:\n  storageClassName: manual\n  accessModes: [\"ReadWriteOnce\"]\n  resources:\n    requests:\n      storage: 100Mi\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: direct\nspec:\n  nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo hi > /m/hello; sleep 600\"]\n    volumeMounts:\n    - name: m\n      mountPath: /m\n  volumes:\n  - name: m\n    persistentVolumeClaim:\n      claimName: manual\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: scheduled\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n    volumeMounts:\n    - name: m\n      mountPath: /m\n  volumes:\n  - name: m\n    persistentVolumeClaim:\n      claimName: manual\n", c.node));
    c.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=direct",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        "FailedMount",
        20,
    );
    c.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=scheduled",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        "pod has unbound immediate PersistentVolumeClaims",
        20,
    );
    assert!(c
        .ok(&["get", "pod", "direct", "-o", "jsonpath={.status.phase}"])
        .contains("Pending"));
    c.apply(&format!("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: manual-big\nspec:\n  storageClassName: manual\n  capacity:\n    storage: 5Gi\n  accessModes: [\"ReadWriteOnce\"]\n  hostPath:\n    path: /nonexistent\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: manual-small\nspec:\n  storageClassName: manual\n  capacity:\n    storage: 200Mi\n  accessModes: [\"ReadWriteOnce\", \"ReadWriteMany\"]\n  hostPath:\n    path: {}\n    type: DirectoryOrCreate\n", manual.display()));
    c.wait_for(
        &[
            "get",
            "pvc",
            "manual",
            "-o",
            "jsonpath={.status.phase} {.spec.volumeName}",
        ],
        "Bound manual-small",
        20,
    );
    c.wait_for(
        &[
            "get",
            "pod",
            "direct",
            "scheduled",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
        "Running Running",
        40,
    );
    c.wait_for(&["exec", "scheduled", "--", "cat", "/m/hello"], "hi", 20);
    assert!(c
        .ok(&["get", "pv", "manual-big", "-o", "jsonpath={.status.phase}"])
        .contains("Available"));
    // Volumes and claims carry their in-use protection finalizers.
    assert!(c
        .ok(&[
            "get",
            "pv",
            "manual-big",
            "-o",
            "jsonpath={.metadata.finalizers}"
        ])
        .contains("kubernetes.io/pv-protection"));
    assert!(c
        .ok(&[
            "get",
            "pvc",
            "www-keeper-0",
            "-o",
            "jsonpath={.metadata.finalizers}"
        ])
        .contains("kubernetes.io/pvc-protection"));

    // Deleting the set and its claim deletes the provisioned volume and its directory.
    c.ok(&["delete", "sts", "keeper", "--wait=false"]);
    // The garbage collector may have deleted the set's pod already.
    let o = c.kubectl(&["delete", "pod", "keeper-0", "--wait=false"]);
    assert!(
        o.status.success() || String::from_utf8_lossy(&o.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    c.ok(&["delete", "pvc", "www-keeper-0", "--wait=false"]);
    let start = Instant::now();
    while dir.exists() || c.kubectl(&["get", "pv", &pv]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "{pv} stays");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The manually made volume is kept (Retain), released.
    c.ok(&[
        "delete",
        "pod",
        "direct",
        "scheduled",
        "--grace-period",
        "1",
        "--wait=false",
    ]);
    c.ok(&["delete", "pvc", "manual", "--wait=false"]);
    c.wait_for(
        &[
            "get",
            "pv",
            "manual-small",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Released",
        30,
    );
    assert!(manual.join("hello").exists());
}

#[test]
fn configmap_and_downward_api_volumes_follow_their_objects_in_place() {
    let c = Cluster::start_with(Root::with_busybox(EXE), &["--sync-frequency", "1s"]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\ndata:\n  mode: one\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: watcher\n  labels:\n    stage: a\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n    volumeMounts:\n    - name: conf\n      mountPath: /conf\n    - name: conf\n      mountPath: /pinned/mode\n      subPath: mode\n    - name: info\n      mountPath: /info\n  volumes:\n  - name: conf\n    configMap:\n      name: conf\n  - name: info\n    downwardAPI:\n      items:\n      - path: labels\n        fieldRef:\n          fieldPath: metadata.labels\n");
    c.wait_for(
        &["get", "pod", "watcher", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    assert_eq!(c.ok(&["exec", "watcher", "--", "cat", "/conf/mode"]), "one");
    c.ok(&[
        "patch",
        "configmap",
        "conf",
        "-p",
        "{\"data\":{\"mode\":\"two\"}}",
    ]);
    c.ok(&["label", "pod", "watcher", "stage=b", "--overwrite"]);
    c.wait_for(&["exec", "watcher", "--", "cat", "/conf/mode"], "two", 20);
    c.wait_for(
        &["exec", "watcher", "--", "cat", "/info/labels"],
        "stage=\"b\"",
        20,
    );
    // The swap is atomic (..data points at the new generation); subPath mounts keep
    // what they started with, as in Kubernetes.
    let ls = c.ok(&["exec", "watcher", "--", "ls", "-a", "/conf"]);
    assert!(ls.contains("..data") && ls.contains("mode"), "{ls}");
    assert_eq!(
        c.ok(&["exec", "watcher", "--", "cat", "/pinned/mode"]),
        "one"
    );
}

#[test]
fn container_logs_rotate_by_size_and_kubectl_logs_reads_the_current_file() {
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--container-log-max-size",
            "4Ki",
            "--container-log-max-files",
            "3",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: chatty\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"sleep 3; i=0; while [ $i -lt 200 ]; do echo line-$i-padding-padding-padding; usleep 10000; i=$((i+1)); done; sleep 1; echo last-line; sleep 600\"]\n");
    c.wait_for(
        &["get", "pod", "chatty", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    // A follower sees every line, across rotations.
    let mut follow = c
        .kubectl_cmd("kubectl", &["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    let mut seen = 0;
    for line in reader.lines() {
        let line = line.unwrap();
        if line.starts_with("line-") {
            seen += 1;
        }
        if line == "last-line" {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seen, 200);
    let out = c.ok(&["logs", "chatty"]);
    // Only the current file: far fewer than 200 lines, ending with the latest.
    assert!(out.lines().count() < 100, "{}", out.lines().count());
    assert!(!out.contains("line-0-"), "{out}");
    let id = c.ok(&[
        "get",
        "pod",
        "chatty",
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    let id = id.trim_start_matches("skiff://").to_string();
    let logs: Vec<String> = std::fs::read_dir(c.root.dir.join("containers").join(&id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("-json.log"))
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    for f in &logs {
        let len = std::fs::metadata(c.root.dir.join("containers").join(&id).join(f))
            .unwrap()
            .len();
        assert!(len < 4096 + 200, "{f}: {len}");
    }
}

#[test]
fn an_agent_joins_by_token_and_runs_pods_as_its_node() {
    // The second node's agent runs in a network namespace of its own, reaching the
    // API through a veth pair; the API listens on the host's end only.
    let net = NetNs::new();
    let c = Cluster::start_on(Root::with_busybox(EXE), &net.host_ip, &[]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let port = c
        .banner
        .split("API on port ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = c
        .banner
        .split("join token ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(token.starts_with("K10"), "{token}");
    let server = format!("https://{}:{port}", net.host_ip);
    let root = Root::with_busybox(EXE);
    let name = format!("{}-b", c.node);

    // A token whose CA hash is not the server's is refused before anything is sent.
    let bad = format!(
        "K10{}::server:{}",
        "0".repeat(64),
        token.rsplit(':').next().unwrap()
    );
    let o = root.run(&[
        "agent",
        "--server",
        &server,
        "--token",
        &bad,
        "--node-name",
        &name,
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not match the token"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut cmd = root.cmd(&[
        "agent",
        "--server",
        &server,
        "--token",
        &token,
        "--node-name",
        &name,
        "--node-ip",
        &net.ns_ip,
        "--kubelet-port",
        "0",
        "--pod-bridge",
        &format!("{}q", root.bridge),
    ]);
    cmd.args(lenient_eviction(&[]))
        .arg("--data-dir")
        .arg(root.dir.join("agent"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    net.enter(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        use std::io::Read;
        let _ = err.read_to_end(&mut sink);
    });
    let agent = JoinedAgent {
        cluster: &c,
        root,
        child: Some(child),
        name: name.clone(),
    };
    c.wait_for(&["get", "node", &name], " Ready ", 30);
    // Its identity came from a CSR the server approved and signed.
    let csrs = c.ok(&[
        "get",
        "csr",
        "-o",
        "jsonpath={range .items[*]}{.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}",
    ]);
    assert!(csrs.contains("system:bootstrap:"), "{csrs}");
    assert!(csrs.contains("Approved"), "{csrs}");
    // So did its serving certificate (kubelet-serving, asked for by the node itself),
    // which the API server verifies against the cluster CA when it proxies logs/exec.
    let serving = c.wait_for(
        &[
            "get",
            "csr",
            "-o",
            "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}",
        ],
        &format!("kubernetes.io/kubelet-serving system:node:{name} Approved"),
        30,
    );
    // The server's own node asked with the server's credentials.
    assert!(
        serving.contains("kubernetes.io/kubelet-serving system:admin Approved"),
        "{serving}"
    );
    let cert = std::fs::read_to_string(agent.root.dir.join("agent/serving-kubelet.crt"))
        .unwrap_or_default();
    assert!(
        cert.contains("BEGIN CERTIFICATE"),
        "no serving certificate kept"
    );
    // The control plane gave it the second /24 of the cluster CIDR.
    let cidrs = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR} {end}",
    ]);
    let mine = cidrs
        .split_whitespace()
        .find(|x| x.starts_with(&format!("{name}=")))
        .unwrap()
        .to_string();
    let first = cidrs
        .split_whitespace()
        .find(|x| x.starts_with(&format!("{}=", c.node)))
        .unwrap()
        .to_string();
    assert_ne!(mine.split('=').nth(1), first.split('=').nth(1), "{cidrs}");

    // A pod placed on the new node runs there; logs and exec reach it through its agent.
    c.apply(&format!(
        concat!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-b\nspec:\n",
            "  nodeSelector:\n    kubernetes.io/hostname: {}\n  containers:\n",
            "  - name: c\n    image: busybox\n    imagePullPolicy: Never\n",
            "    command: [\"sh\", \"-c\", \"echo hello-from-b; exec sleep 1000\"]\n"
        ),
        name
    ));
    c.wait_for(
        &["get", "pod", "on-b", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    let ip = c.ok(&["get", "pod", "on-b", "-o", "jsonpath={.status.podIP}"]);
    let prefix = mine
        .split('=')
        .nth(1)
        .unwrap()
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    assert!(ip.starts_with(&prefix), "{ip} not in {mine}");
    c.wait_for(&["logs", "on-b"], "hello-from-b", 10);
    assert_eq!(c.ok(&["exec", "on-b", "--", "hostname"]), "on-b\n");
    // The agent writes as the kubelet does: its field manager owns the pod's status
    // and the node's.
    for obj in [vec!["pod", "on-b"], vec!["node", name.as_str()]] {
        let mut args = vec!["get"];
        args.extend(obj.iter().copied());
        args.extend(["-o", "jsonpath={.metadata.managedFields[*].manager}"]);
        let managers = c.ok(&args);
        assert!(
            managers.split_whitespace().any(|m| m == "kubelet"),
            "{obj:?}: {managers}"
        );
    }
    let addr = c.ok(&[
        "get",
        "node",
        &name,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    assert_eq!(addr, net.ns_ip);
    // Its pod network lives in the agent's namespace, not the host's: the bridge with
    // the pod's veth on it, the filter table, the route to the pod.
    let bridge = format!("{}q", agent.root.bridge);
    let table = format!("{}_pods", agent.root.table);
    let o = net.run("ip", &["-o", "link", "show", "master", &bridge]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("veth"),
        "no veth on {bridge} in the agent's namespace: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(net
        .run("nft", &["list", "table", "ip", &table])
        .status
        .success());
    assert!(net.run("ip", &["route", "get", &ip]).status.success());
    let host_side = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(!host_side("ip", &["link", "show", &bridge]));
    assert!(!host_side("nft", &["list", "table", "ip", &table]));

    // Each agent keeps its pods' cgroups under its own --cgroup-root (the default,
    // skiff-<node name>), and removes them with the pods.
    c.apply(&format!(
        concat!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-a\nspec:\n",
            "  nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers:\n",
            "  - name: c\n    image: busybox\n    imagePullPolicy: Never\n",
            "    command: [\"sleep\", \"1000\"]\n"
        ),
        c.node
    ));
    c.wait_for(
        &["get", "pod", "on-a", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );
    let uid = |pod: &str| c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    let (uid_a, uid_b) = (uid("on-a"), uid("on-b"));
    let holds_a_container = |dirs: &[std::path::PathBuf]| {
        !dirs.is_empty()
            && dirs.iter().all(|d| {
                std::fs::read_dir(d)
                    .map(|rd| rd.flatten().any(|e| e.path().is_dir()))
                    .unwrap_or(false)
            })
    };
    for (node, mine, other) in [(&c.node, &uid_a, &uid_b), (&name, &uid_b, &uid_a)] {
        let dirs = pod_cgroups(node, mine);
        assert!(holds_a_container(&dirs), "{dirs:?}");
        assert!(pod_cgroups(node, other).iter().all(|d| !d.exists()));
    }
    // Not in the parent every agent used to share.
    for uid in [&uid_a, &uid_b] {
        let shared = skiff_agent::pod::cgroup_dirs(&format!("kubepods/pod{uid}"));
        assert!(shared.iter().all(|d| !d.exists()), "{shared:?}");
    }
    c.ok(&[
        "delete",
        "pod",
        "on-a",
        "on-b",
        "--grace-period=1",
        "--wait=false",
    ]);
    let start = Instant::now();
    for (node, uid) in [(&c.node, &uid_a), (&name, &uid_b)] {
        loop {
            let left: Vec<_> = pod_cgroups(node, uid)
                .into_iter()
                .filter(|d| d.exists())
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "left behind: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    while c.kubectl(&["get", "pod", "on-a"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "on-a never went");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The joined node's agent finishes the deletion of its own pod (the Node authorizer
    // lets a kubelet delete pods bound to it).
    while c.kubectl(&["get", "pod", "on-b"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(40), "on-b never went");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The node's own credentials reach only what the Node authorizer allows.
    let node_kc = agent.root.dir.join("agent").join("kubelet.kubeconfig");
    let as_node = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&node_kc)
            .arg("--cache-dir")
            .arg(agent.root.dir.join("kcache"))
            .args(args)
            .output()
            .unwrap()
    };
    let who = as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        format!("system:node:{name}")
    );
    let o = as_node(&["get", "secrets", "-A"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_node(&["label", "node", &c.node, "stolen=yes"]);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    drop(agent);
}

#[test]
fn a_node_under_pressure_reports_it_and_is_tainted() {
    // Thresholds no host meets: everything is "under pressure".
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--housekeeping-interval",
            "1s",
            "--eviction-hard",
            "memory.available<100Ei,nodefs.available<101%",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let conds = c.wait_for(
        &[
            "get",
            "node",
            &c.node,
            "-o",
            "jsonpath={range .status.conditions[*]}{.type}={.status} {end}",
        ],
        "MemoryPressure=True",
        20,
    );
    assert!(
        conds.contains("DiskPressure=True") && conds.contains("PIDPressure=False"),
        "{conds}"
    );
    let taints = c.wait_for(
        &[
            "get",
            "node",
            &c.node,
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ],
        "node.kubernetes.io/disk-pressure",
        20,
    );
    assert!(
        taints.contains("node.kubernetes.io/memory-pressure"),
        "{taints}"
    );
    // New pods without a toleration are not scheduled there.
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: squeezed\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"60\"]\n");
    c.wait_for(
        &[
            "get",
            "pod",
            "squeezed",
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ],
        "untolerated taint",
        20,
    );
}

#[test]
fn pressure_evicts_pods_and_image_gc_removes_unused_images() {
    let root = Root::with_busybox(EXE);
    // busybox stays in use by a plain container; extra:v1 is used by nothing.
    root.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let ctx = root.dir.join("extra-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo extra > /extra\n",
    )
    .unwrap();
    root.ok(&["build", "-t", "extra:v1", ctx.to_str().unwrap()]);
    // Thresholds this host always crosses: disk pressure, and image GC due.
    let c = Cluster::start_with(
        root,
        &[
            "--housekeeping-interval",
            "1s",
            "--eviction-hard",
            "imagefs.available<100%",
            "--image-gc-high-threshold",
            "0",
            "--image-gc-low-threshold",
            "0",
        ],
    );
    let start = Instant::now();
    loop {
        let images = c.root.ok(&["images"]);
        if !images.contains("extra") {
            assert!(
                images.contains("busybox"),
                "the image in use went too: {images}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "extra:v1 was never collected: {images}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A pod that tolerates the pressure taint is admitted, then evicted.
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: victim\nspec:\n",
        "  tolerations:\n  - key: node.kubernetes.io/disk-pressure\n    operator: Exists\n    effect: NoSchedule\n",
        "  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"300\"]\n",
    ));
    c.wait_for(
        &[
            "get",
            "pod",
            "victim",
            "-o",
            "jsonpath={.status.phase}/{.status.reason}",
        ],
        "Failed/Evicted",
        30,
    );
    let msg = c.ok(&["get", "pod", "victim", "-o", "jsonpath={.status.message}"]);
    assert!(
        msg.contains("The node was low on resource: ephemeral-storage"),
        "{msg}"
    );
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=victim,reason=Evicted",
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(ev.contains("Warning"), "{ev}");
    // Evicted pods stay Failed: their containers are gone and nothing restarts them.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "pod", "victim", "-o", "jsonpath={.status.phase}"]),
        "Failed"
    );
}

#[test]
fn controller_and_scheduler_writes_carry_their_field_managers() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let mut deploy = sleeper_deployment("managed", "default");
    deploy = deploy.replace("replicas: 1", "replicas: 3");
    c.apply(&deploy);
    c.wait_for(&["get", "deploy", "managed"], "3/3", 40);
    // Exactly the replicas asked for: the controller never created twice on a stale cache.
    let pods = c.ok(&["get", "pods", "-l", "app=managed", "-o", "name"]);
    assert_eq!(pods.lines().count(), 3, "{pods}");
    let managers = |what: &[&str]| {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&[
            "--show-managed-fields",
            "-o",
            "jsonpath={range .items[*]}{range .metadata.managedFields[*]}{.manager}:{.operation}:{.subresource} {end}{end}",
        ]);
        c.ok(&args)
    };
    // The ReplicaSet, its status, the pods and the Deployment's status are the
    // controller manager's writes.
    let rs = managers(&["rs", "-l", "app=managed"]);
    assert!(rs.contains("kube-controller-manager:Update: "), "{rs}");
    assert!(rs.contains("kube-controller-manager:Update:status"), "{rs}");
    let pods = managers(&["pods", "-l", "app=managed"]);
    assert_eq!(
        pods.matches("kube-controller-manager:Update: ").count(),
        3,
        "{pods}"
    );
    let d = c.ok(&[
        "get",
        "deploy",
        "managed",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}:{.operation}:{.subresource} {end}",
    ]);
    assert!(d.contains("kube-controller-manager:Update:status"), "{d}");
    // A pod that fits nowhere: its PodScheduled condition is the scheduler's.
    c.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: nowhere\nspec:\n  nodeSelector:\n    disk: none\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"60\"]\n");
    c.wait_for(
        &[
            "get",
            "pod",
            "nowhere",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ],
        "Unschedulable",
        20,
    );
    let p = c.ok(&[
        "get",
        "pod",
        "nowhere",
        "--show-managed-fields",
        "-o",
        "yaml",
    ]);
    assert!(
        p.contains("manager: kube-scheduler") && p.contains("subresource: status"),
        "{p}"
    );
    // Once it fits (a node changed), it is scheduled without waiting for a poll.
    c.ok(&["label", "node", &c.node, "disk=none"]);
    c.wait_for(
        &["get", "pod", "nowhere", "-o", "jsonpath={.spec.nodeName}"],
        &c.node,
        10,
    );
    c.ok(&["delete", "pod", "nowhere", "--grace-period", "1"]);
    c.ok(&["delete", "deploy", "managed"]);
}

#[test]
fn kubectl_drain_evicts_within_the_pod_disruption_budget() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let node = c.node.clone();
    c.apply(&sleeper_deployment("web", "default").replace("replicas: 1", "replicas: 2"));
    c.apply("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 2\n  selector:\n    matchLabels:\n      app: web\n");
    // The disruption controller keeps the budget's status.
    c.wait_for(
        &["get", "pdb", "web", "-o", "jsonpath={.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.disruptionsAllowed} {.status.conditions[0].reason}"],
        "2 2 2 0 InsufficientPods",
        60,
    );
    let table = c.ok(&["get", "pdb", "web"]);
    assert!(
        table.contains("MIN AVAILABLE") && table.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );
    // Evicting through the subresource is refused with 429 while no disruption is allowed.
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let pods: Vec<&str> = pods.split_whitespace().collect();
    assert_eq!(pods.len(), 2, "{pods:?}");
    let eviction = c.root.dir.join("eviction.json");
    let write_eviction = |pod: &str| {
        std::fs::write(
            &eviction,
            format!("{{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{pod}\",\"namespace\":\"default\"}}}}"),
        )
        .unwrap();
    };
    write_eviction(pods[0]);
    let raw = format!("/api/v1/namespaces/default/pods/{}/eviction", pods[0]);
    let o = c.kubectl(&["create", "--raw", &raw, "-f", eviction.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("TooManyRequests") || err.contains("disruption budget"),
        "{err}"
    );
    // kubectl drain cordons the node, then retries the refused evictions until its timeout.
    let o = c.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout", "8s"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(c.ok(&["get", "node", &node]).contains("SchedulingDisabled"));
    assert_eq!(
        c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        2
    );
    // With room for one disruption, one eviction goes through and is recorded.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type",
        "merge",
        "-p",
        "{\"spec\":{\"minAvailable\":1}}",
    ]);
    c.wait_for(
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.observedGeneration} {.status.disruptionsAllowed}",
        ],
        "2 1",
        30,
    );
    let o = c.kubectl(&["create", "--raw", &raw, "-f", eviction.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The replacement cannot run on the cordoned node, so no second disruption is allowed.
    c.wait_for(
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy} {.status.disruptionsAllowed}",
        ],
        "1 0",
        30,
    );
    write_eviction(pods[1]);
    let raw = format!("/api/v1/namespaces/default/pods/{}/eviction", pods[1]);
    let o = c.kubectl(&["create", "--raw", &raw, "-f", eviction.to_str().unwrap()]);
    assert!(!o.status.success());
    // Without the budget, drain empties the node; uncordoned, the pods come back.
    c.ok(&["delete", "pdb", "web"]);
    let out = c.ok(&["drain", &node, "--ignore-daemonsets", "--timeout", "60s"]);
    assert!(out.contains("drained"), "{out}");
    assert!(c
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name"
        ])
        .trim()
        .is_empty());
    c.ok(&["uncordon", &node]);
    c.wait_for(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
        60,
    );
}

#[test]
fn a_suspended_job_waits_and_runs_when_resumed() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: later\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"true\"]\n");
    let table = c.wait_for(&["get", "job", "later"], "Suspended", 30);
    assert!(table.contains("0/1"), "{table}");
    let st = c.ok(&[
        "get",
        "job",
        "later",
        "-o",
        "jsonpath={.status.startTime}|{.status.conditions[0].reason}",
    ]);
    assert_eq!(st, "|JobSuspended");
    assert!(c
        .ok(&["get", "pods", "-l", "job-name=later", "-o", "name"])
        .trim()
        .is_empty());
    c.ok(&[
        "patch",
        "job",
        "later",
        "--type",
        "merge",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);
    c.wait_for(&["get", "job", "later"], "Complete", 60);
    let st = c.ok(&[
        "get",
        "job",
        "later",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Suspended\")].reason} {.status.startTime}",
    ]);
    assert!(st.starts_with("JobResumed 20"), "{st}");
}

/// The names of the pods with label `app=<app>` that are not being deleted.
fn live_pods(c: &Cluster, app: &str) -> Vec<String> {
    let list = c.ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Waits until `app` has exactly `n` pods.
fn wait_pods(c: &Cluster, app: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let pods = live_pods(c, app);
        if pods.len() == n {
            return pods;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{app}: wanted {n} pods, have {pods:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_replication_controller_runs_scales_and_its_pods_ignore_the_templates_name() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A ReplicationController without a selector (it defaults to the template's
    // labels), whose template names its pods: the name is ignored.
    c.apply("apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc-web\nspec:\n  replicas: 2\n  template:\n    metadata:\n      name: fixed-name\n      labels:\n        app: rc-web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    let rc = c.ok(&["get", "rc", "rc-web", "-o", "json"]);
    let rc: serde_json::Value = serde_json::from_str(&rc).unwrap();
    assert_eq!(rc["spec"]["selector"], serde_json::json!({"app": "rc-web"}));
    assert_eq!(
        rc["metadata"]["labels"],
        serde_json::json!({"app": "rc-web"})
    );
    let status = "jsonpath={.status.replicas}/{.status.fullyLabeledReplicas}/{.status.readyReplicas}/{.status.availableReplicas}/{.status.observedGeneration}";
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "2/2/2/2/1", 60);
    let pods = wait_pods(&c, "rc-web", 2);
    for p in &pods {
        assert!(
            p.starts_with("rc-web-") && p.len() == "rc-web-".len() + 5,
            "{pods:?}"
        );
    }
    // A deleted pod is replaced.
    c.ok(&["delete", "pod", &pods[0], "--grace-period", "1"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "2/2/2/2/1", 60);
    assert!(!live_pods(&c, "rc-web").contains(&pods[0]));
    // kubectl scale, through the scale subresource, up and down.
    c.ok(&["scale", "rc", "rc-web", "--replicas=3"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "3/3/3/3/2", 60);
    wait_pods(&c, "rc-web", 3);
    let scale = c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/rc-web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=rc-web", "{scale}");
    c.ok(&["scale", "rc", "rc-web", "--replicas=1"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "1/1/1/1/3", 60);
    wait_pods(&c, "rc-web", 1);
    // A selector that does not match the template is refused as upstream words it.
    let bad = c.root.dir.join("bad-rc.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc-bad\nspec:\n  selector:\n    app: other\n  template:\n    metadata:\n      labels:\n        app: rc-bad\n    spec:\n      containers:\n      - name: c\n        image: busybox\n").unwrap();
    let o = c.kubectl(&["create", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"rc-bad\"}: selector does not match template labels"),
        "{err}"
    );

    // A Deployment of 2 whose template has a name runs both (pods named for their
    // ReplicaSet), as does a DaemonSet's.
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: named-tmpl\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: named-tmpl\n  template:\n    metadata:\n      name: fixed-name\n      labels:\n        app: named-tmpl\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    c.wait_for(&["get", "deploy", "named-tmpl"], "2/2", 60);
    for p in wait_pods(&c, "named-tmpl", 2) {
        assert!(p.starts_with("named-tmpl-") && p != "fixed-name", "{p}");
    }
    c.apply("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: named-ds\nspec:\n  selector:\n    matchLabels:\n      app: named-ds\n  template:\n    metadata:\n      name: named-ds\n      labels:\n        app: named-ds\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    let ds = wait_pods(&c, "named-ds", 1);
    assert!(
        ds[0].starts_with("named-ds-") && ds[0].len() == "named-ds-".len() + 5,
        "{ds:?}"
    );

    // A Deployment with a 50-character name runs its pod: the generated name is cut
    // to 58 characters plus 5.
    let long = format!("long-{}", "d".repeat(45));
    c.apply(&format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {long}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: long-name\n  template:\n    metadata:\n      labels:\n        app: long-name\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n"));
    c.wait_for(&["get", "deploy", &long], "1/1", 60);
    let lp = wait_pods(&c, "long-name", 1);
    assert!(lp[0].len() == 63 && lp[0].starts_with(&long), "{lp:?}");
    let hostname = c.ok(&["exec", &lp[0], "--", "hostname"]);
    assert_eq!(hostname.trim(), lp[0]);
    c.ok(&["delete", "deploy", &long]);
    wait_pods(&c, "long-name", 0);

    // Deleting them removes their pods.
    c.ok(&["delete", "rc", "rc-web"]);
    c.ok(&["delete", "deploy", "named-tmpl"]);
    c.ok(&["delete", "ds", "named-ds"]);
    wait_pods(&c, "rc-web", 0);
    wait_pods(&c, "named-tmpl", 0);
    wait_pods(&c, "named-ds", 0);
}
