//! Nodes: scheduling constraints, a restarted server re-adopting its pods, an agent
//! joining by token, pressure and eviction, drain, an unreachable node, local volumes.

use crate::EXE;
use skiff_testsupport::cluster::clean_node_root;
use skiff_testsupport::cluster::pod_cgroups;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::objects::sleeper_deployment;
use skiff_testsupport::Root;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    ns: skiff_testsupport::netns::NetNs,
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
        let host_if = format!("skt{}v{k}", pid % 100_000);
        let _ = Command::new("ip")
            .args(["link", "del", &host_if])
            .stderr(Stdio::null())
            .status();
        let ns = NetNs {
            ns: skiff_testsupport::netns::NetNs::new(&format!("skt{}n{k}", pid % 100_000)),
            host_if,
            host_ip: format!("10.213.{third}.{}", fourth + 1),
            ns_ip: format!("10.213.{third}.{}", fourth + 2),
        };
        use skiff_testsupport::netns::ip;
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
            &ns.ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ns.ns
            .ip(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", "eth0"]);
        ns.ns.ip(&["link", "set", "eth0", "up"]);
        ns
    }

    /// Makes `cmd` run inside the namespace.
    fn enter(&self, cmd: &mut Command) {
        self.ns.enter(cmd)
    }

    /// Runs a command inside the namespace.
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.ns.run(program, args)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // The namespace (and the pair's far end with it) goes when `ns` drops.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A second node: `skiff agent` on its own root, stopped (its pods deleted first)
/// and cleaned up when dropped.
pub(crate) struct JoinedAgent<'a> {
    pub(crate) cluster: &'a Cluster,
    pub(crate) root: Root,
    pub(crate) child: Option<Child>,
    pub(crate) name: String,
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
            // SAFETY: kill(2) takes integers only.
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
fn an_agent_joins_by_token_and_runs_pods_as_its_node() {
    // The second node's agent runs in a network namespace of its own, reaching the
    // API through a veth pair; the API listens on the host's end only.
    let net = NetNs::new();
    let c = Cluster::start_on(Root::with_busybox(EXE), &net.host_ip, &[]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let port = c.port();
    let token = c.token();
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

    let mut cmd = skiff_testsupport::lab::agent_command(&root, &server, &token, &name, &net.ns_ip);
    cmd.stderr(Stdio::piped());
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
        let shared = skiff_engine::cgroups::cgroup_dirs(&format!("kubepods/pod{uid}"));
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

    // The node's own credentials reach only what the Node authorizer allows. Its
    // kubeconfig points at the agent's load balancer on the node's loopback: kubectl
    // runs in the node's namespace.
    let node_kc = agent.root.dir.join("agent").join("kubelet.kubeconfig");
    let kc_text = std::fs::read_to_string(&node_kc).unwrap();
    assert!(
        kc_text.contains("server: https://127.0.0.1:6444"),
        "{kc_text}"
    );
    let as_node = |args: &[&str]| {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&node_kc)
            .arg("--cache-dir")
            .arg(agent.root.dir.join("kcache"))
            .args(args);
        net.enter(&mut cmd);
        cmd.output().unwrap()
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
    // Thresholds this host always crosses: disk pressure, and image GC due; an
    // image is only collected once the node has known it for the minimum age.
    let start = Instant::now();
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
            "--minimum-image-ttl-duration",
            "3s",
        ],
    );
    loop {
        let images = c.root.ok(&["images"]);
        if !images.contains("extra") {
            assert!(
                images.contains("busybox"),
                "the image in use went too: {images}"
            );
            assert!(
                start.elapsed() >= Duration::from_secs(3),
                "extra:v1 was collected before its minimum age"
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
fn three_nodes_in_network_namespaces_join_and_run_pods() {
    let lab = skiff_testsupport::lab::Lab::start(EXE, 3, &[], &[]);
    let names = lab.node_names();
    // Each node registered its own LAN address.
    for (i, n) in names.iter().enumerate() {
        let addr = lab.server.ok(&[
            "get",
            "node",
            n,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address} {.spec.podCIDR}",
        ]);
        assert!(
            addr.starts_with(&format!("{} 10.42.", lab.ip(i))),
            "{n}: {addr}"
        );
    }
    // A pod pinned to each node runs there.
    for (i, n) in names.iter().enumerate() {
        lab.server.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\nspec:\n  nodeName: {n}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n"
        ));
    }
    for (i, n) in names.iter().enumerate() {
        let got = lab.server.wait_for(
            &[
                "get",
                "pod",
                &format!("p{i}"),
                "-o",
                "jsonpath={.status.phase} {.spec.nodeName} {.status.hostIP}",
            ],
            "Running",
            60,
        );
        assert_eq!(got, format!("Running {n} {}", lab.ip(i)));
    }
    // The nodes reach each other over the LAN and nothing else: no route out.
    let o = lab.exec(1, "ip", &["route", "show", "default"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "");
}

/// A pod answering HTTP on 8080 with the address its client came from.
fn echo_ip_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: echo\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"mkdir -p /www/cgi-bin && printf '#!/bin/sh\\\\necho\\\\necho $REMOTE_ADDR\\\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www\"]\n"
    )
}

/// The address busybox httpd reports (`[::ffff:10.42.0.2]` on its IPv6 socket).
fn peer(remote_addr: &str) -> String {
    remote_addr
        .trim()
        .trim_start_matches('[')
        .trim_start_matches("::ffff:")
        .trim_end_matches(']')
        .to_string()
}

fn pods_reach_pods_on_other_nodes(backend: &str) {
    let lab = skiff_testsupport::lab::Lab::start(EXE, 3, &["--flannel-backend", backend], &[]);
    let names = lab.node_names();
    let c = &lab.server;
    for (i, n) in names.iter().enumerate() {
        c.apply(&echo_ip_pod(&format!("echo{i}"), n));
    }
    let ip_of = |p: &str| {
        c.wait_for(
            &[
                "get",
                "pod",
                p,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ],
            "Running 10.",
            60,
        )
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
    };
    let ips: Vec<String> = (0..names.len())
        .map(|i| ip_of(&format!("echo{i}")))
        .collect();
    // Every pod reaches every other by its pod IP, and is seen with its own address
    // (no NAT between pods).
    for from in 0..names.len() {
        for to in 0..names.len() {
            if from == to {
                continue;
            }
            let url = format!("http://{}:8080/cgi-bin/ip", ips[to]);
            let got = c.wait_for(
                &[
                    "exec",
                    &format!("echo{from}"),
                    "--",
                    // (busybox's wget -T crashes; timeout bounds it instead.)
                    "timeout",
                    "3",
                    "wget",
                    "-qO-",
                    &url,
                ],
                &ips[from],
                20,
            );
            assert_eq!(peer(&got), ips[from], "echo{from} -> echo{to} ({backend})");
        }
    }
    // A node reaches the pods on the others.
    let o = lab.exec(
        0,
        "curl",
        &[
            "-s",
            "-m",
            "3",
            &format!("http://{}:8080/cgi-bin/ip", ips[2]),
        ],
    );
    // (The node's source address: over VXLAN its flannel.1 address, the network
    // address of its pod CIDR, as flannel's; over host-gw its LAN address.)
    let cidr0 = c.ok(&["get", "node", &names[0], "-o", "jsonpath={.spec.podCIDR}"]);
    let want = match backend {
        "vxlan" => cidr0.split('/').next().unwrap().to_string(),
        _ => lab.ip(0),
    };
    assert_eq!(peer(&String::from_utf8_lossy(&o.stdout)), want);
    // Routes are skiff's (protocol 200); with vxlan through flannel.1 at MTU 1450.
    let routes =
        String::from_utf8_lossy(&lab.exec(0, "ip", &["route", "show", "proto", "200"]).stdout)
            .to_string();
    let cidr2 = c.ok(&["get", "node", &names[2], "-o", "jsonpath={.spec.podCIDR}"]);
    assert!(routes.contains(&cidr2), "{routes}");
    if backend == "vxlan" {
        let link = String::from_utf8_lossy(
            &lab.exec(0, "ip", &["-d", "link", "show", "flannel.1"])
                .stdout,
        )
        .to_string();
        assert!(
            link.contains("mtu 1450") && link.contains("vxlan id 1"),
            "{link}"
        );
    }
    // Node 2 leaves: its route goes from the others within 5 s.
    c.ok(&["delete", "pod", "echo2", "--grace-period=1"]);
    let mut lab = lab;
    let mut gone = lab.agents.pop().unwrap();
    c_stop_agent(&mut gone);
    lab.server.ok(&["delete", "node", &names[2]]);
    let start = Instant::now();
    loop {
        let r =
            String::from_utf8_lossy(&lab.exec(0, "ip", &["route", "show", "proto", "200"]).stdout)
                .to_string();
        if !r.contains(&cidr2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "route to a deleted node left: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn c_stop_agent(n: &mut skiff_testsupport::lab::LabNode) {
    n.stop();
    skiff_testsupport::cluster::clean_node_root(&n.root, &n.name);
}

#[test]
fn pods_reach_pods_on_other_nodes_over_vxlan() {
    pods_reach_pods_on_other_nodes("vxlan");
}

#[test]
fn pods_reach_pods_on_other_nodes_over_host_gw() {
    pods_reach_pods_on_other_nodes("host-gw");
}

/// A real client inside a pod (kubectl 1.33, static, copied into an image) lists pods
/// through `https://kubernetes.default.svc` with the pod's ServiceAccount token and
/// CA: the name from the cluster DNS, the address from the `kubernetes` Service,
/// forwarded by the node's rules to the API server's advertised address.
#[test]
fn an_in_cluster_client_lists_pods_through_kubernetes_default_svc() {
    let lab = skiff_testsupport::lab::Lab::start(EXE, 2, &[], &[]);
    let c = &lab.server;
    // The image, on node 0 and node 1.
    let ctx = c.root.dir.join("kubectl-image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
        ctx.join("kubectl"),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY kubectl /bin/kubectl\n",
    )
    .unwrap();
    for root in [&c.root, &lab.agents[0].root] {
        root.ok(&["build", "-q", "-t", "kubectl:test", ctx.to_str().unwrap()]);
    }
    c.ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    let names = lab.node_names();
    for (i, n) in names.iter().enumerate() {
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client{i}\nspec:\n  nodeName: {n}\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: kubectl:test\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"d=/var/run/secrets/kubernetes.io/serviceaccount; until kubectl --server https://kubernetes.default.svc --certificate-authority $d/ca.crt --token $(cat $d/token) get pods -o name; do sleep 1; done\"]\n"
        ));
    }
    for i in 0..names.len() {
        let name = format!("client{i}");
        c.wait_for(
            &["get", "pod", &name, "-o", "jsonpath={.status.phase}"],
            "Succeeded",
            90,
        );
        let logs = c.ok(&["logs", &name]);
        // (The other client may not exist yet when this one lists.)
        assert!(logs.contains(&format!("pod/{name}")), "{name}: {logs}");
    }
}

/// Three nodes: a Service with endpoints on two of them answers from pods on every
/// node, by its DNS name, spread over both endpoints; its NodePort answers on every
/// node's address and on each node's 127.0.0.1.
#[test]
fn services_span_the_nodes_of_a_cluster() {
    let lab = skiff_testsupport::lab::Lab::start(EXE, 3, &[], &[]);
    let c = &lab.server;
    let names = lab.node_names();
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n");
    for (i, n) in names.iter().enumerate() {
        if i < 2 {
            c.apply(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web{i}\n  labels:\n    app: web\nspec:\n  nodeName: {n}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo web{i} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n"
            ));
        }
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client{i}\nspec:\n  nodeName: {n}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"600\"]\n"
        ));
    }
    c.wait_for(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[*].conditions.ready}",
        ],
        "true true",
        60,
    );
    for i in 0..names.len() {
        c.wait_for(
            &[
                "get",
                "pod",
                &format!("client{i}"),
                "-o",
                "jsonpath={.status.phase}",
            ],
            "Running",
            60,
        );
    }
    let script =
        "for i in $(seq 30); do timeout 3 wget -qO- http://web.default.svc.cluster.local/; done";
    for i in 0..names.len() {
        let got = c.wait_for(
            &["exec", &format!("client{i}"), "--", "sh", "-c", script],
            "web",
            30,
        );
        assert!(
            got.contains("web0") && got.contains("web1"),
            "from node {i}: {got}"
        );
    }
    let port = c.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    for from in 0..names.len() {
        let mut targets: Vec<String> = (0..names.len()).map(|j| lab.ip(j)).collect();
        targets.push("127.0.0.1".into());
        for t in targets {
            let o = lab.exec(
                from,
                "curl",
                &["-s", "-m", "3", &format!("http://{t}:{port}/")],
            );
            let body = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(
                body == "web0" || body == "web1",
                "node {from} -> {t}:{port}: {body:?} {o:?}"
            );
        }
    }
}
