//! What a pod is told about the cluster network: the Services' environment variables,
//! its resolv.conf per dnsPolicy, the `kubernetes` Service's endpoints, and the
//! network settings nodes read from the server. The pods only read files and their
//! environment: nothing sends traffic (there is no service proxy to send it through).

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::Root;
use std::collections::BTreeMap;

/// A pod that sleeps (its `extra` spec lines indented under `spec:`).
fn sleeper(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: c\n    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// `env` in the pod, as a map.
fn env_of(c: &Cluster, pod: &str) -> BTreeMap<String, String> {
    c.ok(&["exec", pod, "--", "env"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let mut a = args.to_vec();
    let p = format!("jsonpath={path}");
    a.extend(["-o", &p]);
    c.ok(&a).trim().to_string()
}

#[test]
fn pods_get_service_links_and_the_kubelets_resolv_conf() {
    let root = Root::with_busybox(EXE);
    let resolv = root.dir.join("upstream-resolv.conf");
    std::fs::write(
        &resolv,
        "# the node's upstream\nnameserver 192.0.2.53\nsearch corp.example.\noptions timeout:2\n",
    )
    .unwrap();
    let resolv = resolv.to_str().unwrap().to_string();
    let c = Cluster::start_with(
        root,
        &[
            "--resolv-conf",
            &resolv,
            "--cluster-domain",
            "corp.internal",
            "--cluster-dns",
            "10.43.0.53",
            "--node-ip",
            "127.0.0.2",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 30);

    // Services that exist when the pods start.
    c.apply(concat!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n",
        "  - name: http\n    port: 80\n    targetPort: 8080\n",
        "  - name: metrics\n    port: 9090\n    protocol: UDP\n",
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: my-db\nspec:\n  ports:\n  - port: 5432\n",
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: headless\nspec:\n  clusterIP: None\n  ports:\n  - port: 80\n",
    ));
    let web_ip = jsonpath(&c, &["get", "svc", "web"], "{.spec.clusterIP}");
    let db_ip = jsonpath(&c, &["get", "svc", "my-db"], "{.spec.clusterIP}");
    let kube_ip = jsonpath(&c, &["get", "svc", "kubernetes"], "{.spec.clusterIP}");
    assert!(!web_ip.is_empty() && !db_ip.is_empty() && !kube_ip.is_empty());
    // The agent learns of Services through its watch: give it a moment, as a kubelet
    // would have had (a pod is told of the Services its node knows when it starts).
    std::thread::sleep(std::time::Duration::from_secs(1));

    let pods = [
        // The container's own env wins, and $(VAR) sees the service variables.
        concat!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: links\nspec:\n",
            "  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n",
            "    image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n",
            "    env:\n    - name: MY_DB_SERVICE_HOST\n      value: mine\n",
            "    - name: WEB_URL\n      value: http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT_HTTP)/\n",
        )
        .to_string(),
        sleeper("nolinks", "  enableServiceLinks: false\n"),
        sleeper("dns-default", "  dnsPolicy: Default\n"),
        sleeper(
            "dns-none",
            concat!(
                "  dnsPolicy: None\n",
                "  dnsConfig:\n    nameservers: [\"192.0.2.1\", \"192.0.2.2\"]\n",
                "    searches: [\"my.example\", \"my.example\"]\n",
                "    options:\n    - name: ndots\n      value: \"2\"\n    - name: edns0\n",
            ),
        ),
        sleeper(
            "dns-merged",
            concat!(
                "  dnsConfig:\n    nameservers: [\"192.0.2.9\"]\n",
                "    searches: [\"extra.example\", \"corp.internal\"]\n",
                "    options:\n    - name: ndots\n      value: \"1\"\n",
            ),
        ),
        // One nameserver too many with the cluster's: trimmed, with a Warning.
        sleeper(
            "dns-trim",
            "  dnsConfig:\n    nameservers: [\"192.0.2.7\", \"192.0.2.8\", \"192.0.2.9\"]\n",
        ),
    ];
    c.apply(&pods.join("---\n"));
    for p in [
        "links",
        "nolinks",
        "dns-default",
        "dns-none",
        "dns-merged",
        "dns-trim",
    ] {
        c.wait_for(
            &["get", "pod", p, "-o", "jsonpath={.status.phase}"],
            "Running",
            60,
        );
    }
    // A Service made after the pods started is not in their environment.
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: late\nspec:\n  ports:\n  - port: 81\n",
    );

    let env = env_of(&c, "links");
    let want = [
        ("WEB_SERVICE_HOST", web_ip.clone()),
        ("WEB_SERVICE_PORT", "80".into()),
        ("WEB_SERVICE_PORT_HTTP", "80".into()),
        ("WEB_SERVICE_PORT_METRICS", "9090".into()),
        ("WEB_PORT", format!("tcp://{web_ip}:80")),
        ("WEB_PORT_80_TCP", format!("tcp://{web_ip}:80")),
        ("WEB_PORT_80_TCP_PROTO", "tcp".into()),
        ("WEB_PORT_80_TCP_PORT", "80".into()),
        ("WEB_PORT_80_TCP_ADDR", web_ip.clone()),
        ("WEB_PORT_9090_UDP", format!("udp://{web_ip}:9090")),
        ("WEB_PORT_9090_UDP_PROTO", "udp".into()),
        ("WEB_PORT_9090_UDP_ADDR", web_ip.clone()),
        ("MY_DB_SERVICE_HOST", "mine".into()),
        ("MY_DB_SERVICE_PORT", "5432".into()),
        ("MY_DB_PORT_5432_TCP_ADDR", db_ip.clone()),
        ("WEB_URL", format!("http://{web_ip}:80/")),
        ("KUBERNETES_SERVICE_HOST", kube_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT_443_TCP", format!("tcp://{kube_ip}:443")),
    ];
    for (k, v) in &want {
        assert_eq!(env.get(*k), Some(v), "{k} in {env:?}");
    }
    assert!(
        !env.keys()
            .any(|k| k.starts_with("LATE_") || k.starts_with("HEADLESS_")),
        "{env:?}"
    );
    let env = env_of(&c, "nolinks");
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some(&kube_ip));
    assert_eq!(
        env.get("KUBERNETES_SERVICE_PORT").map(String::as_str),
        Some("443")
    );
    assert!(
        !env.keys()
            .any(|k| k.starts_with("WEB_") || k.starts_with("MY_DB_")),
        "{env:?}"
    );

    // resolv.conf per dnsPolicy, from --cluster-dns, --cluster-domain and --resolv-conf.
    let resolv_of = |p: &str| c.ok(&["exec", p, "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv_of("links"),
        "search default.svc.corp.internal svc.corp.internal corp.internal corp.example\nnameserver 10.43.0.53\noptions ndots:5\n"
    );
    assert_eq!(
        resolv_of("dns-default"),
        "search corp.example\nnameserver 192.0.2.53\noptions timeout:2\n"
    );
    assert_eq!(
        resolv_of("dns-none"),
        "search my.example\nnameserver 192.0.2.1\nnameserver 192.0.2.2\noptions ndots:2 edns0\n"
    );
    assert_eq!(
        resolv_of("dns-merged"),
        "search default.svc.corp.internal svc.corp.internal corp.internal corp.example extra.example\nnameserver 10.43.0.53\nnameserver 192.0.2.9\noptions ndots:1\n"
    );

    assert_eq!(
        resolv_of("dns-trim"),
        "search default.svc.corp.internal svc.corp.internal corp.internal corp.example\nnameserver 10.43.0.53\nnameserver 192.0.2.7\nnameserver 192.0.2.8\noptions ndots:5\n"
    );
    c.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=dns-trim,reason=DNSConfigForming",
            "-o",
            "jsonpath={.items[*].type}: {.items[*].message}",
        ],
        "Warning: Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.43.0.53 192.0.2.7 192.0.2.8",
        20,
    );

    // Malformed dnsConfig is refused with kube-apiserver's words.
    let bad = c.root.dir.join("bad.yaml");
    for (extra, want) in [
        (
            "  dnsPolicy: None\n",
            "The Pod \"bad\" is invalid: spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ),
        (
            "  dnsPolicy: None\n  dnsConfig:\n    searches: [\"a.example\"]\n",
            "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
        ),
        (
            "  dnsConfig:\n    nameservers: [\"not-an-ip\"]\n",
            "spec.dnsConfig.nameservers[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
        (
            "  dnsConfig:\n    nameservers: [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\", \"192.0.2.4\"]\n",
            "spec.dnsConfig.nameservers: Invalid value: []string{\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\", \"192.0.2.4\"}: must not have more than 3 nameservers",
        ),
        (
            "  dnsPolicy: Sometimes\n",
            "spec.dnsPolicy: Unsupported value: \"Sometimes\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ),
    ] {
        std::fs::write(&bad, sleeper("bad", extra)).unwrap();
        let o = c.kubectl(&["apply", "-f", bad.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{extra}: {err}");
    }
    // As the API answers it: 422 Invalid.
    let o = c.kubectl(&["create", "-f", bad.to_str().unwrap(), "-v=6"]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("422 Unprocessable Entity"), "{log}");

    // The kubernetes Service's endpoints: --node-ip, with no --advertise-address.
    assert_eq!(
        jsonpath(
            &c,
            &["get", "endpoints", "kubernetes"],
            "{.subsets[0].addresses[0].ip}"
        ),
        "127.0.0.2"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["get", "endpointslice", "kubernetes"],
            "{.endpoints[0].addresses[0]}"
        ),
        "127.0.0.2"
    );

    // The network settings nodes read: for the admin (and nodes), not for strangers.
    let conf: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/v1-skiff/config"])).unwrap();
    assert_eq!(conf["clusterDomain"], "corp.internal");
    assert_eq!(conf["clusterDNS"], "10.43.0.53");
    assert_eq!(conf["serviceCIDR"], "10.43.0.0/16");
    let kubeconfig = std::fs::read_to_string(c.root.dir.join("kubeconfig")).unwrap();
    let url = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let anon = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{url}/v1-skiff/config"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anon.stdout), "401");
    c.ok(&["delete", "svc", "web", "my-db", "headless", "late"]);
}

#[test]
fn the_kubernetes_endpoints_follow_the_advertise_address() {
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--disable-agent",
            "--advertise-address",
            "127.0.0.3",
            "--node-ip",
            "127.0.0.2",
        ],
    );
    let out = c.wait_for(
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ],
        "127.0.0",
        20,
    );
    assert_eq!(out.trim(), "127.0.0.3");
    let table = c.ok(&["get", "endpoints", "kubernetes"]);
    assert!(table.contains("127.0.0.3:"), "{table}");
}

#[test]
fn a_joined_agent_reads_the_cluster_network_from_the_server() {
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--cluster-domain",
            "joined.internal",
            "--cluster-dns",
            "10.43.0.77",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 30);
    let after = |s: &str| c.banner.split(s).nth(1).unwrap().to_string();
    let port = after("API on port ").split(';').next().unwrap().to_string();
    let token = after("join token ").trim().to_string();
    let root = Root::with_busybox(EXE);
    let resolv = root.dir.join("agent-resolv.conf");
    std::fs::write(&resolv, "nameserver 192.0.2.99\nsearch agent.example\n").unwrap();
    let name = format!("{}-b", c.node);
    let mut cmd = root.cmd(&[
        "agent",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--token",
        &token,
        "--node-name",
        &name,
        "--node-ip",
        "127.0.0.4",
        "--kubelet-port",
        "0",
        "--pod-bridge",
        &format!("{}q", root.bridge),
        "--resolv-conf",
        resolv.to_str().unwrap(),
        "--nftables-table",
        &format!("{}_node", root.table),
        // In the host's namespace beside other tests: a load balancer port of its own.
        "--lb-server-port",
        "0",
    ]);
    cmd.args(skiff_testsupport::cluster::lenient_eviction(&[]))
        .arg("--data-dir")
        .arg(root.dir.join("agent"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().unwrap();
    let _agent = crate::nodes::JoinedAgent {
        cluster: &c,
        root,
        child: Some(child),
        name: name.clone(),
    };
    c.wait_for(&["get", "node", &name], " Ready ", 60);
    c.apply(&sleeper("on-b", &format!("  nodeName: {name}\n")));
    c.wait_for(
        &["get", "pod", "on-b", "-o", "jsonpath={.status.phase}"],
        "Running",
        60,
    );
    // The cluster's DNS address and domain came from the server, the upstream search
    // domain from the agent's own --resolv-conf.
    assert_eq!(
        c.ok(&["exec", "on-b", "--", "cat", "/etc/resolv.conf"]),
        "search default.svc.joined.internal svc.joined.internal joined.internal agent.example\nnameserver 10.43.0.77\noptions ndots:5\n"
    );
    // The joined node's Services informer (a node may list and watch Services).
    let kube_ip = jsonpath(&c, &["get", "svc", "kubernetes"], "{.spec.clusterIP}");
    assert_eq!(
        env_of(&c, "on-b").get("KUBERNETES_SERVICE_HOST"),
        Some(&kube_ip)
    );
}
