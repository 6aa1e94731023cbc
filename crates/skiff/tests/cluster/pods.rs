//! Pods as the node agent runs them: probes, lifecycle hooks, init containers,
//! resources and security context, shared process namespaces, ephemeral containers,
//! log rotation.

use crate::EXE;
use skiff_testsupport::cluster::pod_cgroups;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::kubectl::KUBECTL_DIR;
use skiff_testsupport::Root;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

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
