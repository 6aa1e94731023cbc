//! Services seen from the API: ServiceLB's load-balancer addresses, and the
//! endpoints of terminating pods. (Traffic through Services is tested where the node
//! programs it.)

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::Root;

fn lb(name: &str, port: u16, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  selector:\n    app: {name}\n  ports:\n  - port: {port}\n{extra}"
    )
}

#[test]
fn servicelb_lists_the_nodes_that_carry_a_load_balancer() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let node_ip = c.ok(&[
        "get",
        "node",
        &c.node,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    c.apply(&lb("first", 8081, ""));
    let ingress = c.wait_for(
        &[
            "get",
            "svc",
            "first",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip} {.status.loadBalancer.ingress[*].ipMode}",
        ],
        &node_ip,
        20,
    );
    assert_eq!(ingress, format!("{node_ip} VIP"));
    // kubectl shows it as the EXTERNAL-IP.
    let row = c.ok(&["get", "svc", "first", "--no-headers"]);
    assert!(
        row.split_whitespace().nth(3) == Some(node_ip.as_str()),
        "{row}"
    );
    // A younger Service on the same port finds the node's port taken (k3s's svclb pod
    // would stay Pending): it lists no node.
    c.apply(&lb("second", 8081, ""));
    // externalTrafficPolicy Local with no endpoint on the node: no node either.
    c.apply(&lb("local", 8082, "  externalTrafficPolicy: Local\n"));
    // A Service of another load balancer class is not ServiceLB's.
    c.apply(&lb("classy", 8083, "  loadBalancerClass: example.com/lb\n"));
    // Give the controller several passes (it runs on every change and every second).
    std::thread::sleep(std::time::Duration::from_secs(3));
    for name in ["second", "local", "classy"] {
        let row = c.ok(&["get", "svc", name, "--no-headers"]);
        assert_eq!(
            row.split_whitespace().nth(3),
            Some("<pending>"),
            "{name}: {row}"
        );
    }
    // When the first goes, the second takes the port.
    c.ok(&["delete", "svc", "first"]);
    c.wait_for(
        &[
            "get",
            "svc",
            "second",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ],
        &node_ip,
        20,
    );
}

#[test]
fn with_servicelb_disabled_load_balancers_stay_pending() {
    let c = Cluster::start_with(Root::with_busybox(EXE), &["--disable", "servicelb"]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(&lb("web", 8081, ""));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let row = c.ok(&["get", "svc", "web", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(3), Some("<pending>"), "{row}");
}

#[test]
fn terminating_pods_stay_in_slices_as_serving_and_leave_the_endpoints() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A pod that ignores SIGTERM terminates for its whole grace period.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 60\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"trap '' TERM; touch /tmp/ready; while true; do sleep 1; done\"]\n    readinessProbe:\n      exec:\n        command: [\"cat\", \"/tmp/ready\"]\n      periodSeconds: 1\n");
    let ip = c.wait_for(
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ],
        "10.",
        40,
    );
    c.ok(&["delete", "pod", "web", "--wait=false"]);
    let cond = c.wait_for(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[0].addresses[0]} ready={.items[0].endpoints[0].conditions.ready} serving={.items[0].endpoints[0].conditions.serving} terminating={.items[0].endpoints[0].conditions.terminating}",
        ],
        "terminating=true",
        20,
    );
    // Serving while its readiness probe still passes; never ready once terminating.
    assert!(
        cond.starts_with(&format!("{ip} ready=false serving=")),
        "{cond}"
    );
    let eps = c.ok(&[
        "get",
        "endpoints",
        "web",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}{.subsets[*].notReadyAddresses[*].ip}",
    ]);
    assert_eq!(eps.trim(), "", "a terminating pod left in Endpoints");
    c.ok(&["delete", "pod", "web", "--grace-period=0", "--force"]);
}

/// Two pods answering HTTP on 8080 with their own name, behind Service `web` (80 →
/// named port `http`), plus a Service with no endpoints.
const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: nobody\nspec:\n  selector:\n    app: nobody\n  ports:\n  - port: 80\n";

fn web_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    ports:\n    - name: http\n      containerPort: 8080\n"
    )
}

#[test]
fn cluster_ips_spread_over_endpoints_from_pods_and_the_node() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let cidr = c.service_range_covered();
    c.apply(WEB);
    c.apply(&web_pod("web-a"));
    c.apply(&web_pod("web-b"));
    let cip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    // Both endpoints listed before traffic is sent.
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
        40,
    );
    // From a pod (web-a itself: through its own Service, a hairpin for half the
    // connections), 40 connections reach both pods.
    let script = format!("for i in $(seq 40); do timeout 3 wget -qO- http://{cip}/; done");
    let got = c.wait_for(&["exec", "web-a", "--", "sh", "-c", &script], "web-", 30);
    let (a, b) = (got.matches("web-a").count(), got.matches("web-b").count());
    assert!(
        a >= 1 && b >= 1 && a + b == 40,
        "spread: {a} web-a, {b} web-b: {got}"
    );
    // From the node itself.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let o = std::process::Command::new("curl")
            .args(["-s", "-m", "3", &format!("http://{cip}/")])
            .output()
            .unwrap();
        seen.insert(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    assert!(seen.contains("web-a") && seen.contains("web-b"), "{seen:?}");
    // A Service without endpoints, and an address of the range no Service has, are
    // refused at once (a TCP reset), from the node and from a pod.
    let nobody = c.ok(&["get", "svc", "nobody", "-o", "jsonpath={.spec.clusterIP}"]);
    let unused = format!("{}.{}", cidr.rsplit_once('.').unwrap().0, 254);
    for ip in [nobody.as_str(), unused.as_str()] {
        let start = std::time::Instant::now();
        let o = std::process::Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://{ip}/")])
            .output()
            .unwrap();
        // curl's 7: could not connect (refused), not 28 (timed out).
        assert_eq!(o.status.code(), Some(7), "{ip}: {o:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{ip}");
        let e = c.kubectl(&[
            "exec",
            "web-b",
            "--",
            "timeout",
            "3",
            "wget",
            "-qO-",
            &format!("http://{ip}/"),
        ]);
        assert!(
            String::from_utf8_lossy(&e.stderr).contains("Connection refused")
                || String::from_utf8_lossy(&e.stdout).contains("Connection refused"),
            "{ip}: {e:?}"
        );
    }
    // Deleting the Service: refused at once.
    c.ok(&["delete", "svc", "web"]);
    let start = std::time::Instant::now();
    loop {
        let o = std::process::Command::new("curl")
            .args(["-s", "-m", "2", &format!("http://{cip}/")])
            .output()
            .unwrap();
        if o.status.code() == Some(7) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "still served: {o:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The agent stopping leaves the rules (and the range's reject) in place.
    let mut c = c;
    c.stop();
    let o = std::process::Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://{cip}/")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "after stop: {o:?}");
}

/// dnsmasq answering `upstream.test` on a loopback address of the test's own: the
/// node's upstream resolver (tests never query a name outside this machine).
struct Upstream {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Upstream {
    fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let addr = format!("127.77.{}.{}", pid % 250, 1 + (pid / 250) % 250);
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "192.0.2.80 upstream.test\n").unwrap();
        let child = std::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--pid-file=",
                &format!("--listen-address={addr}"),
                &format!("--addn-hosts={}", hosts.display()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/deps.sh)");
        Upstream {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pods_resolve_cluster_names_and_the_nodes_upstream() {
    let up = Upstream::start();
    let root = Root::with_busybox(EXE);
    let resolv = root.dir.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", up.addr)).unwrap();
    let c = Cluster::start_with(root, &["--resolv-conf", resolv.to_str().unwrap()]);
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let cidr = c.service_range_covered();
    // The kube-dns Service at the tenth address, answered by the node itself.
    let dns = c.wait_for(
        &[
            "get",
            "svc",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        ".",
        20,
    );
    assert_eq!(dns, format!("{}.10", cidr.rsplit_once('.').unwrap().0));
    c.apply(WEB);
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\nspec:\n  clusterIP: None\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  type: ExternalName\n  externalName: upstream.test\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: alias\nspec:\n  type: ExternalName\n  externalName: web.default.svc.cluster.local\n");
    c.apply(&web_pod("web-a"));
    let web = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let pod_ip = c.wait_for(
        &["get", "pod", "web-a", "-o", "jsonpath={.status.podIP}"],
        ".",
        40,
    );
    let lookup = |name: &str| -> String {
        c.wait_for(&["exec", "web-a", "--", "nslookup", name], "Address", 20)
    };
    // A ClusterIP Service by its full name and by the search path.
    assert!(lookup("web.default.svc.cluster.local").contains(&web));
    assert!(lookup("web").contains(&web));
    // A headless Service: the ready pod's address.
    let headless = c.wait_for(&["exec", "web-a", "--", "nslookup", "nginx"], &pod_ip, 20);
    assert!(headless.contains(&pod_ip), "{headless}");
    // ExternalName: a CNAME to the external name, and the name's address from the
    // node's upstream (dnsmasq) after it.
    let ext = c.wait_for(
        &[
            "exec",
            "web-a",
            "--",
            "nslookup",
            "db.default.svc.cluster.local",
        ],
        "canonical name",
        20,
    );
    assert!(ext.contains("canonical name = upstream.test"), "{ext}");
    assert!(ext.contains("192.0.2.80"), "{ext}");
    // ExternalName naming another Service: the CNAME, then that Service's address.
    let alias = c.wait_for(
        &[
            "exec",
            "web-a",
            "--",
            "nslookup",
            "alias.default.svc.cluster.local",
        ],
        "canonical name",
        20,
    );
    assert!(
        alias.contains("canonical name = web.default.svc.cluster.local"),
        "{alias}"
    );
    assert!(alias.contains(&web), "{alias}");
    // A name outside the cluster, from the node's upstream (dnsmasq).
    assert!(lookup("upstream.test").contains("192.0.2.80"));
    // SRV for the named port.
    let srv = c.wait_for(
        &[
            "exec",
            "web-a",
            "--",
            "nslookup",
            "-type=srv",
            "_http._tcp.web.default.svc.cluster.local",
        ],
        "web.default.svc.cluster.local",
        20,
    );
    assert!(srv.contains("80"), "{srv}");
    // A name that does not exist.
    let o = c.kubectl(&[
        "exec",
        "web-a",
        "--",
        "nslookup",
        "nothere.default.svc.cluster.local",
    ]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("NXDOMAIN"), "{out}");
    // Answers follow the Services within a second.
    c.ok(&["delete", "svc", "web"]);
    let start = std::time::Instant::now();
    loop {
        let o = c.kubectl(&[
            "exec",
            "web-a",
            "--",
            "nslookup",
            "web.default.svc.cluster.local",
        ]);
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        if out.contains("NXDOMAIN") {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(3),
            "still answered: {out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn cleanup_stops_the_nodes_pods_and_removes_its_rules_and_bridge() {
    let mut c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(&web_pod("web-a"));
    c.wait_for(
        &["get", "pod", "web-a", "-o", "jsonpath={.status.phase}"],
        "Running",
        40,
    );
    let sandbox_pid = || -> Option<i32> {
        let dir = std::fs::read_dir(c.root.dir.join("pods")).ok()?;
        dir.flatten().find_map(|e| {
            let b = std::fs::read(e.path().join("running.json")).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
            v["sandbox"]["pid"].as_i64().map(|p| p as i32)
        })
    };
    let pid = sandbox_pid().expect("the pod's sandbox is recorded");
    let alive = |pid: i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let table = c.node_table();
    let bridge = format!("{}q", c.root.bridge);
    let exists = |args: &[&str]| {
        std::process::Command::new(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    // A plain stop leaves the pods running and the rules in place.
    c.stop();
    assert!(alive(pid));
    assert!(exists(&["nft", "list", "table", "ip", &table]));
    assert!(exists(&["ip", "link", "show", &bridge]));
    let o = c.root.run(&[
        "server",
        "--cleanup",
        "--node-name",
        &c.node,
        "--pod-bridge",
        &bridge,
        "--nftables-table",
        &table,
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("stopped 1 pod(s)"), "{out}");
    let start = std::time::Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the pod still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!exists(&["nft", "list", "table", "ip", &table]));
    assert!(!exists(&["ip", "link", "show", &bridge]));
    assert!(!exists(&[
        "nft",
        "list",
        "table",
        "ip",
        &format!("{}_pods", c.root.table)
    ]));
    // Nothing left to do the second time.
    let o = c.root.run(&[
        "server",
        "--cleanup",
        "--node-name",
        &c.node,
        "--pod-bridge",
        &bridge,
        "--nftables-table",
        &table,
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("stopped 0 pod(s)"));
}

#[test]
fn an_agent_restart_keeps_connections_through_a_cluster_ip_and_resyncs() {
    let mut c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let cidr = c.service_range_covered();
    // An echo server behind a Service.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  selector: {app: echo}\n  ports: [{port: 7, targetPort: 7007}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\n  labels: {app: echo}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"nc\", \"-ll\", \"-p\", \"7007\", \"-e\", \"cat\"]\n");
    let cip = c.ok(&["get", "svc", "echo", "-o", "jsonpath={.spec.clusterIP}"]);
    c.wait_for(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=echo",
            "-o",
            "jsonpath={.items[0].endpoints[*].conditions.ready}",
        ],
        "true",
        40,
    );
    use std::io::{BufRead, BufReader, Write};
    let connect = || {
        let start = std::time::Instant::now();
        loop {
            match std::net::TcpStream::connect_timeout(
                &format!("{cip}:7").parse().unwrap(),
                std::time::Duration::from_secs(2),
            ) {
                Ok(s) => {
                    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                        .unwrap();
                    return s;
                }
                Err(e) => assert!(
                    start.elapsed() < std::time::Duration::from_secs(20),
                    "connect {cip}:7: {e}"
                ),
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let echo = |s: &mut std::net::TcpStream, r: &mut BufReader<std::net::TcpStream>, word: &str| {
        s.write_all(format!("{word}\n").as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{word}\n"));
    };
    let mut s = connect();
    let mut r = BufReader::new(s.try_clone().unwrap());
    echo(&mut s, &mut r, "before");
    // The agent (with the whole server) stops: its rules stay, the connection lives.
    c.stop();
    assert!(
        std::process::Command::new("nft")
            .args(["list", "table", "ip", &c.node_table()])
            .output()
            .unwrap()
            .status
            .success(),
        "a plain stop removed the node's table"
    );
    echo(&mut s, &mut r, "while-stopped");
    // Started again: it re-syncs its rules over the ones in place; the connection
    // lives on and new connections work.
    c.boot();
    c.wait_for(&["get", "nodes"], " Ready ", 30);
    c.wait_service_range_covered(&cidr);
    echo(&mut s, &mut r, "after");
    let mut s2 = connect();
    let mut r2 = BufReader::new(s2.try_clone().unwrap());
    echo(&mut s2, &mut r2, "new");
}
