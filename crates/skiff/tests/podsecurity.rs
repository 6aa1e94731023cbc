//! PodSecurity in `skiff server` as a user starts it: the AdmissionConfiguration given
//! with k3s's `--kube-apiserver-arg=admission-control-config-file=FILE`, a bad one
//! refusing to start, and pods that controllers create refused too, the refusal shown
//! in the controllers' `FailedCreate` events as kube-controller-manager records them;
//! and the optional plugins DenyServiceExternalIPs and AlwaysPullImages.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_testsupport::server::{self, Server};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

const CONFIG: &str = "apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      warn: baseline
";

fn server(dir: &Path, extra: &[String]) -> Command {
    server::command(EXE, &dir.join("data"), &dir.join("kubeconfig"), extra)
}

/// Runs kubectl; returns (success, stdout, stderr).
fn kubectl(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let o = server::kubectl(dir, args);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The server's error output once it has exited (it must not start).
fn refused(dir: &Path, extra: &[String]) -> String {
    let mut child = server(dir, extra).spawn().expect("start skiff server");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "the server exited successfully");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with {extra:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn controllers_pods_are_refused_with_failed_create_events() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let config = dir.join("admission.yaml");
    std::fs::write(&config, CONFIG).unwrap();

    // A bad file, or a kube-apiserver flag skiff does not take: no server.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, CONFIG.replace("enforce: baseline", "enforce: tight")).unwrap();
    let err = refused(
        dir,
        &[format!(
            "--kube-apiserver-arg=admission-control-config-file={}",
            bad.display()
        )],
    );
    assert!(
        err.contains(&format!(
            r#"--admission-control-config-file {}: plugins[0] (PodSecurity): defaults.enforce: Invalid value: "tight": must be one of privileged, baseline, restricted"#,
            bad.display()
        )),
        "{err}"
    );
    let err = refused(dir, &["--kube-apiserver-arg=audit-log-path=/tmp/x".into()]);
    assert!(
        err.contains("--kube-apiserver-arg audit-log-path=/tmp/x: not supported (skiff takes admission-control-config-file=FILE, enable-admission-plugins=A,B and disable-admission-plugins=A,B)"),
        "{err}"
    );

    let server = Server::start(server(
        dir,
        &[format!(
            "--kube-apiserver-arg=admission-control-config-file={}",
            config.display()
        )],
    ));

    // The Deployment is admitted with a warning; its pods are not.
    let manifest = dir.join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      hostPID: true\n      containers:\n      - name: web\n        image: busybox:1.36\n        securityContext: {privileged: true}\n",
    )
    .unwrap();
    let (ok, _, err) = kubectl(dir, &["create", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        err.contains(r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostPID=true), privileged (container "web" must not set securityContext.privileged=true)"#),
        "{err}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let event = loop {
        let (_, out, err) = kubectl(
            dir,
            &[
                "get",
                "events",
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={range .items[*]}{.involvedObject.kind} {.source.component} {.type} {.message}{\"\\n\"}{end}",
            ],
        );
        if let Some(l) = out.lines().find(|l| l.starts_with("ReplicaSet ")) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no FailedCreate event: {out}{err}\nserver log:\n{}\nobjects:\n{}",
            server.log(),
            kubectl(dir, &["get", "all,events", "-A"]).1
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        event.starts_with(r#"ReplicaSet replicaset-controller Warning Error creating: pods "web-"#)
            && event.ends_with(r#"" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), privileged (container "web" must not set securityContext.privileged=true)"#),
        "{event}"
    );
    let (_, pods, _) = kubectl(dir, &["get", "pods", "-o", "name"]);
    assert!(pods.trim().is_empty(), "{pods}");
}

#[test]
fn optional_plugins_deny_external_ips_and_always_pull() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // Names skiff does not have, or cannot turn off: no server.
    let err = refused(
        dir,
        &["--enable-admission-plugins=ImagePolicyWebhook".into()],
    );
    assert!(
        err.contains(
            "--enable-admission-plugins: plugin \"ImagePolicyWebhook\" is not built into skiff"
        ),
        "{err}"
    );
    let err = refused(
        dir,
        &["--kube-apiserver-arg=disable-admission-plugins=ServiceAccount".into()],
    );
    assert!(err.contains("skiff always runs ServiceAccount"), "{err}");

    let _server = Server::start(server(
        dir,
        &["--kube-apiserver-arg=enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs,AlwaysPullImages".into()],
    ));
    let f = dir.join("obj.yaml");
    let apply = |yaml: &str| {
        std::fs::write(&f, yaml).unwrap();
        kubectl(dir, &["apply", "-f", f.to_str().unwrap()])
    };
    // CVE-2020-8554: no Service may claim an outside address as its own.
    let (ok, _, err) = apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: grab\nspec:\n  ports: [{port: 53, protocol: UDP}]\n  externalIPs: [192.0.2.53]\n");
    assert!(!ok);
    assert!(
        err.contains(
            "services \"grab\" is forbidden: Use of external IPs is denied by admission control"
        ),
        "{err}"
    );
    let (ok, _, err) = apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: plain\nspec:\n  ports: [{port: 80}]\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl(
        dir,
        &[
            "patch",
            "service",
            "plain",
            "-p",
            "{\"spec\":{\"externalIPs\":[\"192.0.2.80\"]}}",
        ],
    );
    assert!(
        !ok && err.contains("Use of external IPs is denied"),
        "{err}"
    );
    // Every new pod pulls, whatever it asked for.
    let (ok, _, err) = apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    imagePullPolicy: Never\n");
    assert!(ok, "{err}");
    let (_, out, _) = kubectl(
        dir,
        &[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.spec.containers[0].imagePullPolicy}",
        ],
    );
    assert_eq!(out, "Always");
}
