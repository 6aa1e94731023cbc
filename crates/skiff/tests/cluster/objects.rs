//! Cluster objects: namespace deletion, cascading deletion, service accounts and
//! their tokens, endpoints, field managers, configMap and downward API volumes, Service
//! IPs and node ports from the server's flags.

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::objects::sleeper_deployment;
use skiff_testsupport::Root;
use std::time::{Duration, Instant};

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
    // The root CA is put back as it was: tampered with, or deleted.
    c.ok(&[
        "patch",
        "cm",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-p",
        "{\"data\":{\"ca.crt\":\"forged\",\"extra\":\"x\"}}",
    ]);
    let restored = c.wait_for(
        &[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "team",
            "-o",
            "jsonpath={.data}",
        ],
        "BEGIN CERTIFICATE",
        10,
    );
    assert!(!restored.contains("extra"), "{restored}");
    c.ok(&["delete", "cm", "kube-root-ca.crt", "-n", "team"]);
    c.wait_for(
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
    // A pod relabelled out of the selector leaves the endpoints at once (its old
    // labels name the Service to update; the 30 s resync is not what finds it), and
    // comes back when relabelled.
    c.ok(&["label", "pod", "web", "app=other", "--overwrite"]);
    let start = Instant::now();
    while !c
        .ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ])
        .trim()
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the relabelled pod stayed in the endpoints"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.ok(&["label", "pod", "web", "app=web", "--overwrite"]);
    c.wait_for(
        &[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ],
        &ip,
        10,
    );
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
fn service_ips_and_node_ports_come_from_the_flags_and_print_as_kubectl_prints_them() {
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--service-cidr",
            "10.45.0.0/24",
            "--service-node-port-range",
            "31500-31509",
        ],
    );
    c.ok(&["create", "service", "nodeport", "web", "--tcp", "80:80"]);
    let ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.45.0."), "{ip}");
    let np: u16 = c
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .trim()
        .parse()
        .unwrap();
    assert!((31500..=31509).contains(&np), "{np}");
    let out = c.ok(&["get", "servicecidr,ipaddress"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let row = |first: &str| {
        rows.iter()
            .find(|r| r.first() == Some(&first))
            .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
            .clone()
    };
    assert_eq!(row("NAME")[..3], ["NAME", "CIDRS", "AGE"], "{out}");
    assert_eq!(
        row("servicecidr.networking.k8s.io/kubernetes")[1],
        "10.45.0.0/24"
    );
    assert!(rows.contains(&vec!["NAME", "PARENTREF"]), "{out}");
    assert_eq!(
        row("ipaddress.networking.k8s.io/10.45.0.1"),
        [
            "ipaddress.networking.k8s.io/10.45.0.1",
            "services/default/kubernetes"
        ]
    );
    let mine = format!("ipaddress.networking.k8s.io/{ip}");
    assert_eq!(row(&mine), [mine.as_str(), "services/default/web"]);
    // A taken IP and an out-of-range port, in kube-apiserver's words.
    let o = c.kubectl(&[
        "create",
        "service",
        "clusterip",
        "dup",
        "--clusterip",
        &ip,
        "--tcp",
        "80:80",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
        )),
        "{err}"
    );
    let o = c.kubectl(&[
        "create",
        "service",
        "nodeport",
        "far",
        "--tcp",
        "80:80",
        "--node-port",
        "30080",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("spec.ports[0].nodePort: Invalid value: 30080: provided port is not in the valid range. The range of valid ports is 31500-31509"),
        "{err}"
    );
    // Deleting the Service releases its IP.
    c.ok(&["delete", "svc", "web"]);
    c.wait_empty(
        &["get", "ipaddress", &ip, "--ignore-not-found", "-o", "name"],
        10,
        "the IPAddress",
    );
}
