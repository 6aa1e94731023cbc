//! The engine as a library, the way the node agent will call it in-process:
//! containers joining namespaces held by a process that is not a container (a pod's
//! infra process), a pod-level cgroup parent, labels, managed files instead of the
//! init layer, and the dead container's record kept with its exit reason.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_engine::ops::Report;
use skiff_engine::{CreateOptions, Engine};
use skiff_testsupport::Root;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

#[test]
fn containers_join_an_infra_process_namespaces() {
    let r = Root::with_busybox(EXE);
    // The "infra" process: its own net, ipc and uts namespaces.
    let mut infra = std::process::Command::new("sleep");
    infra.arg("60");
    // SAFETY: the hook only calls unshare(2), which is async-signal-safe, between
    // fork and exec.
    unsafe {
        infra.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut infra = infra.spawn().unwrap();
    let ipid = infra.id();
    let ns = |k: &str| format!("ns:/proc/{ipid}/ns/{k}");

    let e = Engine::open(&r.dir, std::path::Path::new(EXE)).unwrap();
    let files = r.dir.join("pod-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("hosts"),
        "127.0.0.1\tlocalhost\n10.42.0.9\tmypod\n",
    )
    .unwrap();
    let mut managed = BTreeMap::new();
    managed.insert(
        "/etc/hosts".to_string(),
        files.join("hosts").to_string_lossy().to_string(),
    );
    let mut labels = BTreeMap::new();
    labels.insert("io.kubernetes.pod.name".to_string(), "mypod".to_string());
    let opts = CreateOptions {
        image: "busybox".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /etc/hosts; exit 2".into(),
        ],
        network: Some(ns("net")),
        ipc: Some(ns("ipc")),
        uts: Some(ns("uts")),
        cgroup_parent: Some(format!("skiff-pod-{ipid}")),
        extra_labels: labels,
        managed_files: managed,
        ..Default::default()
    };
    let c = e.create(&opts).unwrap();
    assert_eq!(c.record.labels["io.kubernetes.pod.name"], "mypod");
    let (mut s, first) = e.start(&c.record.id, None).unwrap();
    assert!(matches!(first, Report::Started(_)), "{first:?}");
    assert_eq!(s.next_report(), Report::Exited(2));
    let after = e.get(&c.record.id).unwrap();
    assert_eq!(after.state.exit_code, 2);
    assert_eq!(
        after.state.exit_reason,
        Some(skiff_engine::state::ExitReason::Error)
    );
    // The pod cgroup parent holds the container's group.
    let cg_paths: Vec<std::path::PathBuf> = after
        .state
        .cgroup
        .as_ref()
        .unwrap()
        .paths
        .values()
        .cloned()
        .collect();
    let mem = after.state.cgroup.as_ref().unwrap().paths["memory"].clone();
    assert!(
        mem.to_string_lossy()
            .contains(&format!("skiff-pod-{ipid}/")),
        "{}",
        mem.display()
    );
    // Output and logs are kept after exit (for --previous).
    let logs: Vec<String> = skiff_engine::logs::read_entries(&after.log_path())
        .into_iter()
        .map(|e| e.log)
        .collect();
    let want_net = std::fs::read_link(format!("/proc/{ipid}/ns/net")).unwrap();
    let want_ipc = std::fs::read_link(format!("/proc/{ipid}/ns/ipc")).unwrap();
    assert_eq!(logs[0].trim(), want_net.to_string_lossy());
    assert_eq!(logs[1].trim(), want_ipc.to_string_lossy());
    assert_eq!(logs[3].trim(), "10.42.0.9\tmypod");
    e.remove(&c.record.id, true, true).unwrap();
    let _ = infra.kill();
    let _ = infra.wait();
    for p in cg_paths {
        assert!(!p.exists(), "container cgroup {} removed", p.display());
        let _ = std::fs::remove_dir(p.parent().unwrap());
    }
}

#[test]
fn a_pod_sandbox_shares_localhost_ipc_and_pid_with_its_containers() {
    let r = Root::with_busybox(EXE);
    let e = Engine::open(&r.dir, std::path::Path::new(EXE)).unwrap();
    // A pod network of its own: bridge, /24 and an address chosen by the caller.
    let cfg = skiff_engine::network::BridgeConfig::with(
        Some(&format!("{}p", r.bridge)),
        Some(&r.cidr.replace(".0/24", ".128/25")),
        Some(&format!("{}p", r.table)),
    )
    .unwrap();
    let ip = std::net::Ipv4Addr::from(u32::from(cfg.subnet) + 5);
    let sb = e
        .run_sandbox(&skiff_engine::sandbox::SandboxSpec {
            id: format!("{:0>64}", "5a4db0c"),
            hostname: "web-0".into(),
            share_pid: true,
            network: Some(skiff_engine::sandbox::SandboxNet {
                bridge: cfg.clone(),
                ip,
            }),
            ..Default::default()
        })
        .unwrap();
    assert!(sb.alive());
    // The infra process runs from a sealed memfd, not a host file.
    let exe = std::fs::read_link(format!("/proc/{}/exe", sb.pid)).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:skiff-pause"),
        "{}",
        exe.display()
    );
    let join = |args: Vec<&str>| CreateOptions {
        image: "busybox".into(),
        args: args.into_iter().map(String::from).collect(),
        network: Some(sb.ns("net")),
        ipc: Some(sb.ns("ipc")),
        uts: Some(sb.ns("uts")),
        pid: Some(sb.ns("pid")),
        ..Default::default()
    };
    let srv = e
        .create(&join(vec!["httpd", "-f", "-p", "8080", "-h", "/var/www"]))
        .unwrap();
    let (_s, first) = e.start(&srv.record.id, None).unwrap();
    assert!(matches!(first, Report::Started(_)));
    let cli = e
        .create(&join(vec![
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; wget -qO- http://localhost:8080/index.html",
        ]))
        .unwrap();
    let (mut s, first) = e.start(&cli.record.id, None).unwrap();
    assert!(matches!(first, Report::Started(_)));
    assert_eq!(s.next_report(), Report::Exited(0));
    let logs: Vec<String> =
        skiff_engine::logs::read_entries(&e.get(&cli.record.id).unwrap().log_path())
            .into_iter()
            .map(|x| x.log)
            .collect();
    assert_eq!(logs[0], "web-0\n");
    assert_eq!(logs[1], "/pause \n", "the infra process is the pod's PID 1");
    assert_eq!(logs[2], "hello from skiff\n");
    // The node reaches the pod by its address.
    let body = {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect((ip, 8080)).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        out
    };
    assert!(body.ends_with("hello from skiff\n"), "{body}");
    // Stopping the sandbox ends every process of the pod.
    e.stop_sandbox(&sb).unwrap();
    assert!(!sb.alive());
    assert_eq!(
        e.wait(&srv.record.id, Some(std::time::Duration::from_secs(10)))
            .unwrap(),
        137
    );
    e.remove(&srv.record.id, true, true).unwrap();
    e.remove(&cli.record.id, true, true).unwrap();
    skiff_engine::network::teardown(&cfg).unwrap();
}

#[test]
fn exec_probes_run_in_the_container() {
    use skiff_agent::probe::{exec, ProbeResult};
    let r = Root::with_busybox(EXE);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "probed",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/healthy; sleep 60",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t = std::time::Duration::from_secs(5);
    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let rt = runtime(&r, "p");
    assert_eq!(
        exec(&rt, "probed", &cmd("cat /tmp/healthy"), t),
        ProbeResult::Success
    );
    assert!(
        matches!(exec(&rt, "probed", &cmd("echo sick; exit 1"), t), ProbeResult::Failure(m) if m == "sick")
    );
    assert!(matches!(
        exec(&rt, "probed", &cmd("sleep 5"), std::time::Duration::from_millis(300)),
        ProbeResult::Failure(m) if m.contains("timed out")
    ));
}

/// The engine of root `r` behind the CRI-shaped interface, its pods on bridge
/// `<bridge><suffix>` in the upper half of the root's subnet.
fn runtime(r: &Root, suffix: &str) -> skiff_agent::cri::EngineRuntime {
    let e = Engine::open(&r.dir, std::path::Path::new(EXE)).unwrap();
    let bridge = skiff_engine::network::BridgeConfig::with(
        Some(&format!("{}{suffix}", r.bridge)),
        Some(&r.cidr.replace(".0/24", ".128/25")),
        Some(&format!("{}{suffix}", r.table)),
    )
    .unwrap();
    // As in every test root: docker.io only through a dead loopback mirror.
    let registry = skiff_registry::Options {
        registries: std::sync::Arc::new(
            skiff_registry::RegistriesConfig::parse(
                skiff_testsupport::TEST_REGISTRIES_YAML,
                "test registries.yaml",
            )
            .unwrap(),
        ),
        disable_default_endpoint: true,
        ..Default::default()
    };
    skiff_agent::cri::EngineRuntime::new(std::sync::Arc::new(e), bridge, registry)
}

/// Objects the pod refers to; records the events the agent reports.
#[derive(Default)]
struct Objects {
    events: std::sync::Mutex<Vec<String>>,
}
impl skiff_agent::events::PodEvents for Objects {
    fn event(
        &self,
        _: &k8s_openapi::api::core::v1::Pod,
        container: Option<&str>,
        _: bool,
        reason: &str,
        _: &str,
    ) {
        self.events
            .lock()
            .unwrap()
            .push(format!("{reason} {}", container.unwrap_or("")));
    }
}
impl skiff_agent::lookup::ObjectLookup for Objects {
    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        (ns == "default" && name == "web-config").then(|| {
            [("greeting".to_string(), "hello from a configmap".to_string())]
                .into_iter()
                .collect()
        })
    }
    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
}

#[test]
fn a_two_container_pod_with_an_init_container_and_shared_volumes() {
    use skiff_agent::pod::{start_pod, stop_pod, NodeSettings};
    let r = Root::with_busybox(EXE);
    let rt = runtime(&r, "k");
    let e = rt.engine.clone();
    let node = NodeSettings {
        node_ip: "127.0.0.1".into(),
        node_name: "node-a".into(),
        cluster_domain: "cluster.local".into(),
        cluster_dns: vec!["10.43.0.10".parse().unwrap()],
        resolv_conf: Some("/etc/resolv.conf".into()),
        pods_dir: r.dir.join("pods"),
        storage_dir: r.dir.join("storage"),
        container_log_max_size: 10 << 20,
        container_log_max_files: 5,
        pods_cgroup: skiff_agent::pod::pods_cgroup(&format!("skiff-pods-{}", std::process::id())),
        restarts: skiff_agent::pod::DEFAULT_RESTARTS,
    };
    // The tutorials' shape: an init container prepares the shared volume; one
    // container serves it, the other talks to it over localhost.
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "two-containers", "namespace": "default", "uid": "1f2e3d4c-0000-4000-8000-00000000aaaa", "labels": {"app": "web"}},
        "spec": {
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}],
            "volumes": [
                {"name": "shared-data", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "web-config"}},
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ],
            "initContainers": [{
                "name": "prepare", "image": "busybox",
                "command": ["sh", "-c", "echo prepared-by-init > /work/index.html"],
                "volumeMounts": [{"name": "shared-data", "mountPath": "/work"}]
            }],
            "containers": [
                {"name": "server", "image": "busybox",
                 "command": ["httpd", "-f", "-p", "8080", "-h", "/srv"],
                 "volumeMounts": [{"name": "shared-data", "mountPath": "/srv"}]},
                {"name": "client", "image": "busybox",
                 "command": ["sh", "-c"],
                 "args": ["sleep 0.3; wget -qO- http://localhost:8080/index.html; cat /config/greeting; echo; cat /podinfo/labels; echo; echo $POD_NAME $MY_IP; grep remote /etc/hosts; sleep 60"],
                 "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": true},
                                  {"name": "podinfo", "mountPath": "/podinfo"}]}
            ]
        }
    }))
    .unwrap();
    let objects = Objects::default();
    let cx = skiff_agent::pod::Context {
        runtime: &rt,
        node: &node,
        lookup: &objects,
        events: &objects,
        puller: &skiff_agent::pull::ImagePuller::new(Default::default()),
        init_progress: &|_, _| {},
    };
    let running = start_pod(&cx, &pod).unwrap();
    assert_eq!(running.containers.len(), 2);
    let events = objects.events.lock().unwrap().clone();
    // `busybox` means :latest, pull policy Always: docker.io is a dead loopback mirror here,
    // so the local image runs with a warning (the air-gapped rule).
    for want in [
        "Failed prepare",
        "Created prepare",
        "Started prepare",
        "Created client",
        "Started client",
        "Started server",
    ] {
        assert!(events.iter().any(|e| e == want), "{want}: {events:?}");
    }
    let ip = running.ip.unwrap().to_string();
    let client = running.containers["client"].clone();
    let mut out = String::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = skiff_engine::logs::read_entries(&e.get(&client).unwrap().log_path())
            .into_iter()
            .map(|x| x.log)
            .collect();
        if out.contains("bar.remote") {
            break;
        }
    }
    assert_eq!(
        out,
        format!("prepared-by-init\nhello from a configmap\napp=\"web\"\ntwo-containers {ip}\n10.1.2.3\tfoo.remote\tbar.remote\n")
    );
    // Both app containers share the sandbox's network namespace.
    let net = |id: &str| {
        let c = e.get(id).unwrap();
        std::fs::read_link(format!("/proc/{}/ns/net", c.state.pid)).unwrap()
    };
    assert_eq!(net(&client), net(&running.containers["server"]));
    // ContainerStats reads the container's own cgroup and writable layer.
    let st = skiff_agent::cri::RuntimeService::container_stats(&rt, &running.containers["server"])
        .unwrap();
    assert!(
        st.memory_working_set_bytes > 0 && st.processes >= 1,
        "{st:?}"
    );
    stop_pod(&rt, &running, std::time::Duration::from_secs(1), Some(&pod)).unwrap();
    assert!(
        e.list().unwrap().is_empty(),
        "every container of the pod is gone"
    );
    assert!(!running.dir.exists());
    skiff_engine::network::teardown(&rt.bridge).unwrap();
    // The pod's group went with it; the node's parent goes once no pod is left.
    for p in skiff_engine::cgroups::cgroup_dirs(&running.cgroup()) {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    skiff_engine::cgroups::remove_pods_cgroup(&node.pods_cgroup);
    for p in skiff_engine::cgroups::cgroup_dirs(&node.pods_cgroup) {
        assert!(!p.exists(), "{} left behind", p.display());
        assert!(!p.parent().unwrap().exists(), "{} left behind", p.display());
    }
}

#[test]
fn the_infra_process_lives_in_the_pod_cgroup_and_ends_on_sigterm() {
    let r = Root::with_busybox(EXE);
    let e = Engine::open(&r.dir, std::path::Path::new(EXE)).unwrap();
    let parent = format!("skiff-test-{}/podcg", std::process::id());
    for (i, share_pid) in [false, true].into_iter().enumerate() {
        let id = format!("{:0>64}", format!("cafe{i}"));
        let sb = e
            .run_sandbox(&skiff_engine::sandbox::SandboxSpec {
                id: id.clone(),
                hostname: "pod".into(),
                share_pid,
                cgroup_parent: Some(parent.clone()),
                ..Default::default()
            })
            .unwrap();
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid)).unwrap();
        let want = format!("{parent}/{id}");
        let v2 = !own.lines().any(|l| l.contains(":memory:"));
        let line = own
            .lines()
            .find(|l| {
                if v2 {
                    l.starts_with("0::")
                } else {
                    l.contains(":memory:")
                }
            })
            .unwrap_or_default();
        assert!(
            line.ends_with(&want),
            "the infra process is in the pod's cgroup: {own}"
        );
        let dirs = sb
            .cgroup
            .as_ref()
            .map(|c| c.paths.clone())
            .unwrap_or_default();
        assert!(!dirs.is_empty());
        // SIGTERM ends it, as Kubernetes' pause (exit status 0).
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(sb.pid, libc::SIGTERM) };
        let t = std::time::Instant::now();
        while sb.alive() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "pause ignored SIGTERM (share_pid={share_pid})"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        e.stop_sandbox(&sb).unwrap();
        for d in dirs.values() {
            assert!(!d.exists(), "sandbox cgroup {} removed", d.display());
        }
    }
    for d in skiff_engine::cgroups::cgroup_dirs(&parent) {
        let _ = std::fs::remove_dir(&d);
        if let Some(p) = d.parent() {
            let _ = std::fs::remove_dir(p);
        }
    }
}
