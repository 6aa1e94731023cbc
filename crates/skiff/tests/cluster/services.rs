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
