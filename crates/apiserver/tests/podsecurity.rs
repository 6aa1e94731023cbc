//! The PodSecurity admission plugin, driven by the real kubectl against a real server:
//! enforce (403 in kube-apiserver's words), warn (kubectl's `Warning:` lines), workload
//! templates (warnings only), version pins, namespace label validation and the warnings
//! for existing pods when a namespace's enforce level is tightened, and the plugin's
//! defaults and exemptions from `--admission-control-config-file`.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const K: &str = KUBECTL_NEW;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const TOKENS: &str = "edit-token,eddie,1001\nalice-token,alice,1002\n";

async fn with_tokens(admission_config: Option<&'static str>) -> Fixture {
    Fixture::start_with(move |cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, TOKENS).expect("write token file");
        cfg.token_auth_file = Some(file);
        if let Some(text) = admission_config {
            let file = work.join("admission.yaml");
            std::fs::write(&file, text).expect("write admission config");
            cfg.admission_control_config_file = Some(file);
        }
    })
    .await
}

/// The pod of the attack: privileged, host PID and network, the host's `/` mounted.
fn attack(name: &str, ns: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  hostPID: true\n  hostNetwork: true\n{extra_spec}  containers:\n  - name: {name}\n    image: busybox:1.36\n    securityContext:\n      privileged: true\n    volumeMounts:\n    - name: root\n      mountPath: /host\n  volumes:\n  - name: root\n    hostPath:\n      path: /\n"
    )
}

/// The attack pod's refusal under `level`.
fn attack_refused(name: &str, level: &str) -> String {
    format!(
        r#"pods "{name}" is forbidden: violates PodSecurity "{level}": host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume "root"), privileged (container "{name}" must not set securityContext.privileged=true)"#
    )
}

/// A plain pod: fine for baseline, not for restricted.
fn plain(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  containers:\n  - name: {name}\n    image: busybox:1.36\n"
    )
}

/// What restricted says of [`plain`].
fn plain_restricted(name: &str) -> String {
    format!(
        r#"allowPrivilegeEscalation != false (container "{name}" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "{name}" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "{name}" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "{name}" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    )
}

/// A pod that passes restricted.
fn hardened(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  securityContext:\n    runAsNonRoot: true\n    runAsUser: 1000\n    seccompProfile:\n      type: RuntimeDefault\n  containers:\n  - name: {name}\n    image: busybox:1.36\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [ALL]\n"
    )
}

async fn create(fx: &Fixture, kc: &Path, file: &str, yaml: &str) -> (bool, String, String) {
    let f = fx.file(file, yaml);
    fx.run_with(kc, K, &["create", "-f", f.to_str().unwrap_or_default()])
        .await
}

async fn namespace(fx: &Fixture, name: &str, labels: &[&str]) {
    fx.ok(K, &["create", "namespace", name]).await;
    if !labels.is_empty() {
        let mut args = vec!["label", "namespace", name];
        args.extend_from_slice(labels);
        fx.ok(K, &args).await;
    }
}

/// The `Warning:` lines kubectl printed.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("Warning: "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_refuses_the_attack_from_an_editor() {
    if !have_kubectl() {
        return;
    }
    let mut fx = with_tokens(None).await;
    let admin = fx.kubeconfig.clone();
    namespace(
        &fx,
        "team",
        &["pod-security.kubernetes.io/enforce=baseline"],
    )
    .await;
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "eddie-edit",
            "--clusterrole=edit",
            "--user=eddie",
            "-n",
            "team",
        ],
    )
    .await;
    let eddie = fx.token_kubeconfig("eddie", "edit-token");

    // The editor may create pods, but not this one.
    let (ok, out, err) = create(&fx, &eddie, "attack.yaml", &attack("x", "team", "")).await;
    assert!(!ok, "the attack pod was admitted: {out}");
    assert!(
        err.contains(&format!(
            r#"Error from server (Forbidden): error when creating "{}": {}"#,
            fx.work_dir.path().join("attack.yaml").display(),
            attack_refused("x", "baseline:latest")
        )),
        "{err}"
    );
    let (ok, _, err) = fx
        .run_with(&admin, K, &["get", "pod", "x", "-n", "team"])
        .await;
    assert!(!ok && err.contains(r#"pods "x" not found"#), "{err}");
    // Nor the admin (system:masters is not exempt), nor a server-side dry run.
    let (ok, _, err) = create(&fx, &admin, "attack.yaml", &attack("x", "team", "")).await;
    assert!(
        !ok && err.contains(&attack_refused("x", "baseline:latest")),
        "{err}"
    );
    let f = fx.file("attack-dry.yaml", &attack("x", "team", ""));
    let (ok, _, err) = fx
        .run_with(
            &eddie,
            K,
            &[
                "create",
                "--dry-run=server",
                "-f",
                f.to_str().unwrap_or_default(),
            ],
        )
        .await;
    assert!(
        !ok && err.contains(&attack_refused("x", "baseline:latest")),
        "{err}"
    );
    // Each part alone is refused too.
    for (name, spec, want) in [
        ("pid", "  hostPID: true\n", "host namespaces (hostPID=true)"),
        (
            "hp",
            "  volumes:\n  - name: root\n    hostPath:\n      path: /\n",
            r#"hostPath volumes (volume "root")"#,
        ),
    ] {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: team\nspec:\n{spec}  containers:\n  - name: c\n    image: busybox:1.36\n"
        );
        let (ok, _, err) = create(&fx, &eddie, &format!("{name}.yaml"), &yaml).await;
        assert!(!ok, "{name} admitted");
        assert!(
            err.contains(&format!(
                r#"pods "{name}" is forbidden: violates PodSecurity "baseline:latest": {want}"#
            )),
            "{err}"
        );
    }
    // A baseline-compliant pod is admitted, without warnings.
    let (ok, out, err) = create(&fx, &eddie, "plain.yaml", &plain("web", "team")).await;
    assert!(ok, "{out}{err}");
    assert!(warnings(&err).is_empty(), "{err}");

    // Ephemeral containers are part of the pod: a privileged debugger is refused, a
    // baseline one is not.
    let (ok, out, err) = create(&fx, &eddie, "dbgme.yaml", &plain("dbgme", "team")).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = fx
        .run_with(
            &admin,
            K,
            &[
                "debug",
                "dbgme",
                "-n",
                "team",
                "--image=busybox:1.36",
                "--profile=sysadmin",
                "--container=dbg",
            ],
        )
        .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains(r#"pods "dbgme" is forbidden: violates PodSecurity "baseline:latest": privileged (container "dbg" must not set securityContext.privileged=true)"#),
        "{err}"
    );
    let (ok, out, err) = fx
        .run_with(
            &admin,
            K,
            &[
                "debug",
                "dbgme",
                "-n",
                "team",
                "--image=busybox:1.36",
                "--profile=baseline",
                "--container=dbg2",
            ],
        )
        .await;
    assert!(ok, "{out}{err}");
    let pod = json(
        &fx.ok(K, &["get", "pod", "dbgme", "-n", "team", "-o", "json"])
            .await,
    );
    let names: Vec<&str> = pod["spec"]["ephemeralContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["dbg2"]);

    // The raw 403: a Status with kube-apiserver's reason and message.
    let body =
        serde_json::to_string(&serde_saphyr::from_str::<Value>(&attack("x", "team", "")).unwrap())
            .unwrap();
    let (code, resp) = fx
        .curl(
            "edit-token",
            "POST",
            "/api/v1/namespaces/team/pods",
            "application/json",
            &body,
        )
        .await;
    assert_eq!(code, 403, "{resp}");
    let status = json(&resp);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["code"], 403);
    assert_eq!(status["message"], attack_refused("x", "baseline:latest"));
    assert_eq!(
        status["details"],
        serde_json::json!({"name": "x", "kind": "pods"})
    );

    // Updates: a label on a running pod is not evaluated; a new image is.
    fx.ok(
        K,
        &[
            "label",
            "namespace",
            "team",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    )
    .await;
    let (ok, _, err) = fx
        .run_with(
            &eddie,
            K,
            &["label", "pod", "web", "-n", "team", "tier=front"],
        )
        .await;
    assert!(ok, "{err}");
    let (ok, _, err) = fx
        .run_with(
            &eddie,
            K,
            &["set", "image", "pod/web", "web=busybox:1.37", "-n", "team"],
        )
        .await;
    assert!(!ok, "image change admitted");
    assert!(
        err.contains(&format!(
            r#"pods "web" is forbidden: violates PodSecurity "restricted:latest": {}"#,
            plain_restricted("web")
        )),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_audit_versions_and_workloads() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let admin = fx.kubeconfig.clone();
    namespace(
        &fx,
        "w",
        &[
            "pod-security.kubernetes.io/enforce=baseline",
            "pod-security.kubernetes.io/warn=restricted",
            "pod-security.kubernetes.io/audit=restricted",
        ],
    )
    .await;
    // Warn: admitted, with kubectl's warning line.
    let (ok, out, err) = create(&fx, &admin, "p.yaml", &plain("p", "w")).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        warnings(&err),
        [format!(
            r#"would violate PodSecurity "restricted:latest": {}"#,
            plain_restricted("p")
        )],
        "{err}"
    );
    assert!(out.contains("pod/p created"), "{out}");
    // A compliant pod: no warning.
    let (ok, _, err) = create(&fx, &admin, "h.yaml", &hardened("h", "w")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    // A refused pod gets the refusal only, no warnings.
    let (ok, _, err) = create(&fx, &admin, "a.yaml", &attack("a", "w", "")).await;
    assert!(
        !ok && err.contains(&attack_refused("a", "baseline:latest")),
        "{err}"
    );
    assert!(warnings(&err).is_empty(), "{err}");

    // Audit alone neither refuses nor warns (its annotations go to the server log).
    namespace(
        &fx,
        "audited",
        &["pod-security.kubernetes.io/audit=restricted"],
    )
    .await;
    let (ok, _, err) = create(&fx, &admin, "au.yaml", &attack("au", "audited", "")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");

    // Workloads: never enforced, warned (warn follows an explicitly stricter enforce).
    namespace(
        &fx,
        "strict",
        &["pod-security.kubernetes.io/enforce=restricted"],
    )
    .await;
    let tpl = "    metadata:\n      labels: {app: d}\n    spec:\n      containers:\n      - name: d\n        image: busybox:1.36\n        securityContext: {privileged: true}\n";
    let workloads = [
        ("deploy.yaml", format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: strict\nspec:\n  selector: {{matchLabels: {{app: d}}}}\n  template:\n{tpl}")),
        ("ds.yaml", format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: d\n  namespace: strict\nspec:\n  selector: {{matchLabels: {{app: d}}}}\n  template:\n{tpl}")),
        ("job.yaml", format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: d\n  namespace: strict\nspec:\n  template:\n{}", tpl.replace("    spec:\n", "    spec:\n      restartPolicy: Never\n"))),
        ("cj.yaml", format!("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: d\n  namespace: strict\nspec:\n  schedule: '@hourly'\n  jobTemplate:\n    spec:\n      template:\n{}", tpl.replace("    spec:\n", "    spec:\n      restartPolicy: Never\n").lines().map(|l| format!("    {l}\n")).collect::<String>())),
    ];
    let want = r#"would violate PodSecurity "restricted:latest": privileged (container "d" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "d" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "d" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "d" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "d" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;
    for (file, yaml) in &workloads {
        let (ok, out, err) = create(&fx, &admin, file, yaml).await;
        assert!(ok, "{file}: {out}{err}");
        assert_eq!(warnings(&err), [want], "{file}: {err}");
    }
    // Updates of a workload are evaluated (warned) too, scaling is not.
    let (ok, _, err) = fx
        .run(K, &["label", "deploy", "d", "-n", "strict", "x=y"])
        .await;
    assert!(ok, "{err}");
    assert_eq!(warnings(&err), [want], "{err}");
    let (ok, _, err) = fx
        .run(K, &["scale", "deploy", "d", "-n", "strict", "--replicas=2"])
        .await;
    assert!(ok && warnings(&err).is_empty(), "{err}");

    // Version pins: runAsUser=0 is a restricted violation from v1.23 on only.
    namespace(
        &fx,
        "pinned",
        &[
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=v1.22",
        ],
    )
    .await;
    let root = hardened("r", "pinned").replace(
        "runAsNonRoot: true\n    runAsUser: 1000",
        "runAsNonRoot: true\n    runAsUser: 0",
    );
    let (ok, _, err) = create(&fx, &admin, "r.yaml", &root).await;
    assert!(ok, "{err}");
    assert!(warnings(&err).is_empty(), "{err}");
    fx.ok(
        K,
        &[
            "label",
            "ns",
            "pinned",
            "--overwrite",
            "pod-security.kubernetes.io/enforce-version=v1.23",
        ],
    )
    .await;
    let (ok, _, err) = create(&fx, &admin, "r2.yaml", &root.replace("name: r", "name: r2")).await;
    assert!(!ok);
    assert!(
        err.contains(r#"pods "r2" is forbidden: violates PodSecurity "restricted:v1.23": runAsUser=0 (pod must not set runAsUser=0)"#),
        "{err}"
    );
    // A namespace without labels (and kube-system) is privileged by default.
    let (ok, _, err) = create(&fx, &admin, "ks.yaml", &attack("ks", "kube-system", "")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    // ...and kube-system is not exempt once labelled.
    fx.ok(
        K,
        &["delete", "pod", "ks", "-n", "kube-system", "--wait=false"],
    )
    .await;
    fx.ok(
        K,
        &[
            "label",
            "ns",
            "kube-system",
            "pod-security.kubernetes.io/enforce=baseline",
        ],
    )
    .await;
    let (ok, _, err) = create(&fx, &admin, "ks2.yaml", &attack("ks2", "kube-system", "")).await;
    assert!(
        !ok && err.contains(&attack_refused("ks2", "baseline:latest")),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_are_validated_and_tightening_warns() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let admin = fx.kubeconfig.clone();
    namespace(&fx, "apps", &[]).await;
    // Bad values: 422 with the field errors.
    let err = fx
        .fails(
            K,
            &[
                "label",
                "ns",
                "apps",
                "pod-security.kubernetes.io/enforce=strict",
            ],
        )
        .await;
    assert!(
        err.contains(r#"The Namespace "apps" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    let err = fx
        .fails(
            K,
            &[
                "label",
                "ns",
                "apps",
                "pod-security.kubernetes.io/warn-version=1.25",
            ],
        )
        .await;
    assert!(
        err.contains(r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.25": must be "latest" or "v1.x""#),
        "{err}"
    );
    let f = fx.file(
        "badns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: badns\n  labels:\n    pod-security.kubernetes.io/audit: everything\n",
    );
    let err = fx
        .fails(K, &["create", "-f", f.to_str().unwrap_or_default()])
        .await;
    assert!(
        err.contains(r#"Namespace "badns" is invalid: metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "everything": must be one of privileged, baseline, restricted"#),
        "{err}"
    );

    // Existing pods: the attack, two plain pods (one line for both) and a hardened one.
    for (f, yaml) in [
        ("a.yaml", attack("root", "apps", "")),
        ("b.yaml", plain("web-1", "apps")),
        ("c.yaml", plain("web-2", "apps")),
        ("d.yaml", hardened("safe", "apps")),
    ] {
        let (ok, out, err) = create(&fx, &admin, f, &yaml).await;
        assert!(ok, "{out}{err}");
    }
    let (ok, out, err) = fx
        .run(
            K,
            &[
                "label",
                "--dry-run=server",
                "ns",
                "apps",
                "pod-security.kubernetes.io/enforce=restricted",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("namespace/apps labeled (server dry run)"),
        "{out}"
    );
    assert_eq!(
        warnings(&err),
        [
            r#"existing pods in namespace "apps" violate the new PodSecurity enforce level "restricted:latest""#,
            "root: host namespaces, privileged, allowPrivilegeEscalation != false, unrestricted capabilities, restricted volume types, runAsNonRoot != true, seccompProfile",
            "web-1 (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ],
        "{err}"
    );
    // The dry run changed nothing.
    let ns = json(&fx.ok(K, &["get", "ns", "apps", "-o", "json"]).await);
    assert!(ns["metadata"]["labels"]
        .get("pod-security.kubernetes.io/enforce")
        .is_none());
    // The real update: the same warnings, the label set, the pods left alone.
    let (ok, _, err) = fx
        .run(
            K,
            &[
                "label",
                "ns",
                "apps",
                "pod-security.kubernetes.io/enforce=baseline",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        warnings(&err),
        [
            r#"existing pods in namespace "apps" violate the new PodSecurity enforce level "baseline:latest""#,
            "root: host namespaces, hostPath volumes, privileged",
        ],
        "{err}"
    );
    fx.ok(K, &["get", "pod", "root", "-n", "apps"]).await;
    // Relaxing, or an unchanged level, checks nothing.
    let (ok, _, err) = fx
        .run(
            K,
            &[
                "label",
                "ns",
                "apps",
                "--overwrite",
                "pod-security.kubernetes.io/enforce=privileged",
            ],
        )
        .await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    let (ok, _, err) = fx.run(K, &["label", "ns", "apps", "unrelated=yes"]).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    fx.stop().await;
}

const CONFIG: &str = r#"apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: latest
      warn: restricted
    exemptions:
      usernames: [alice]
      runtimeClasses: [kata]
      namespaces: [ops]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_and_exemptions_from_the_config_file() {
    if !have_kubectl() {
        return;
    }
    let mut fx = with_tokens(Some(CONFIG)).await;
    let admin = fx.kubeconfig.clone();
    // The default level applies to namespaces without labels.
    namespace(&fx, "plain", &[]).await;
    let (ok, _, err) = create(&fx, &admin, "a.yaml", &attack("a", "plain", "")).await;
    assert!(
        !ok && err.contains(&attack_refused("a", "baseline:latest")),
        "{err}"
    );
    let (ok, _, err) = create(&fx, &admin, "p.yaml", &plain("p", "plain")).await;
    assert!(ok, "{err}");
    assert_eq!(
        warnings(&err),
        [format!(
            r#"would violate PodSecurity "restricted:latest": {}"#,
            plain_restricted("p")
        )]
    );
    // Labels override the defaults.
    namespace(
        &fx,
        "open",
        &[
            "pod-security.kubernetes.io/enforce=privileged",
            "pod-security.kubernetes.io/warn=privileged",
        ],
    )
    .await;
    let (ok, _, err) = create(&fx, &admin, "o.yaml", &attack("o", "open", "")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");

    // An exempt namespace: admitted, and labelling it says the labels are ignored.
    namespace(&fx, "ops", &[]).await;
    let (ok, _, err) = create(&fx, &admin, "ops.yaml", &attack("o", "ops", "")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    let (ok, _, err) = fx
        .run(
            K,
            &[
                "label",
                "ns",
                "ops",
                "pod-security.kubernetes.io/enforce=restricted",
            ],
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        warnings(&err),
        [
            r#"namespace "ops" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"#
        ],
        "{err}"
    );

    // An exempt user (alice may create pods in "plain").
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "alice-edit",
            "--clusterrole=edit",
            "--user=alice",
            "-n",
            "plain",
        ],
    )
    .await;
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "eddie-edit",
            "--clusterrole=edit",
            "--user=eddie",
            "-n",
            "plain",
        ],
    )
    .await;
    let alice = fx.token_kubeconfig("alice", "alice-token");
    let eddie = fx.token_kubeconfig("eddie", "edit-token");
    let (ok, _, err) = create(&fx, &alice, "alice.yaml", &attack("al", "plain", "")).await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    let (ok, _, err) = create(&fx, &eddie, "eddie.yaml", &attack("ed", "plain", "")).await;
    assert!(
        !ok && err.contains(&attack_refused("ed", "baseline:latest")),
        "{err}"
    );
    // Impersonating alice counts as alice.
    let (ok, _, err) = fx
        .run(
            K,
            &[
                "create",
                "-f",
                fx.file("imp.yaml", &attack("imp", "plain", ""))
                    .to_str()
                    .unwrap_or_default(),
                "--as=alice",
            ],
        )
        .await;
    assert!(ok, "{err}");

    // An exempt runtime class.
    let (ok, _, err) = create(
        &fx,
        &eddie,
        "kata.yaml",
        &attack("k", "plain", "  runtimeClassName: kata\n"),
    )
    .await;
    assert!(ok && warnings(&err).is_empty(), "{err}");
    let (ok, _, err) = create(
        &fx,
        &eddie,
        "gvisor.yaml",
        &attack("g", "plain", "  runtimeClassName: gvisor\n"),
    )
    .await;
    assert!(
        !ok && err.contains(&attack_refused("g", "baseline:latest")),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, want) in [
        (
            CONFIG.replace("enforce: baseline", "enforce: strict"),
            r#"plugins[0] (PodSecurity): defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
        ),
        (
            CONFIG.replace("namespaces: [ops]", "namespace: [ops]"),
            r#"exemptions: unknown field "namespace""#,
        ),
        ("plugins: [".to_string(), "not valid YAML"),
    ] {
        let file = dir.path().join("admission.yaml");
        std::fs::write(&file, &text).expect("write");
        let data = tempfile::tempdir().expect("tempdir");
        let mut cfg = config(data.path());
        cfg.admission_control_config_file = Some(file.clone());
        let err = match skiff_apiserver::start(cfg).await {
            Ok(s) => {
                s.shutdown().await;
                panic!("the server started with {text}");
            }
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!(
                "--admission-control-config-file {}: ",
                file.display()
            )) && err.contains(want),
            "{err}"
        );
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(data.path());
    let missing = dir.path().join("missing.yaml");
    cfg.admission_control_config_file = Some(missing.clone());
    let err = skiff_apiserver::start(cfg)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains(&format!("{}: reading: ", missing.display())),
        "{err}"
    );
}
