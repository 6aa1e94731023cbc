//! Pods whose images come from a registry: the node agent pulls per imagePullPolicy
//! with the kubelet's events, authenticates with the pod's (or its ServiceAccount's)
//! pull secrets, backs off, reports imageID and the node's images, and runs the
//! node's copy when the registry cannot be reached at all. Against a real
//! Distribution registry with htpasswd auth on a loopback port.

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::registry::Registry;
use skiff_testsupport::Root;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

/// Pushes `src` (a local image of `seed`) to `reg` as `name`; returns the digest.
fn push(seed: &Root, yaml: &std::path::Path, src: &str, reg: &Registry, name: &str) -> String {
    let reference = format!("{}/{name}", reg.host);
    seed.ok(&["tag", src, &reference]);
    let out = seed.ok(&[
        "--private-registry",
        yaml.to_str().unwrap(),
        "push",
        &reference,
    ]);
    let last = out.lines().last().unwrap_or_default().to_string();
    last.split_whitespace()
        .nth(2)
        .filter(|d| d.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in the push output: {out}"))
        .to_string()
}

/// `kubectl create secret docker-registry regcred` in `ns` for `reg`.
fn pull_secret(c: &Cluster, ns: &str, reg: &Registry) {
    c.ok(&[
        "-n",
        ns,
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", reg.host),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ]);
}

fn events(c: &Cluster, pod: &str) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
    ])
}

fn pod(name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo v=$VERSION; exec sleep 600\"]\n"
    )
}

#[test]
fn pods_pull_by_policy_with_pull_secrets_back_off_and_an_offline_fallback() {
    let mut reg = Registry::basic(USER, PASSWORD);
    let seed = Root::with_busybox(EXE);
    let yaml = seed.dir.join("seed-registries.yaml");
    std::fs::write(
        &yaml,
        format!(
            "configs:\n  \"{}\":\n    auth: {{username: {USER}, password: {PASSWORD}}}\n",
            reg.host
        ),
    )
    .unwrap();
    let app_v1 = push(&seed, &yaml, "busybox", &reg, "team/app:v1");
    push(&seed, &yaml, "busybox", &reg, "team/locked:v1");
    push(&seed, &yaml, "busybox", &reg, "team/sa:v1");
    push(&seed, &yaml, "busybox", &reg, "team/app:latest");

    // The node has no images at all; pull back-off shortened to 1 s doubling to 2 s.
    let c = Cluster::start_with(Root::new(EXE), &["--image-pull-backoff", "1s,2s"]);
    c.wait_for(&["get", "nodes"], " Ready ", 30);
    pull_secret(&c, "default", &reg);

    // A pull secret on the pod: pulled, with the kubelet's events and imageID.
    let image = format!("{}/team/app:v1", reg.host);
    c.apply(&pod(
        "with-secret",
        &image,
        "  imagePullSecrets:\n  - name: regcred\n",
    ));
    c.wait_for(
        &[
            "get",
            "pod",
            "with-secret",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Running",
        60,
    );
    let ev = c.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=with-secret",
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
        ],
        "Pulled",
        10,
    );
    assert!(
        ev.contains(&format!("Normal Pulling: Pulling image \"{image}\"")),
        "{ev}"
    );
    let pulled = ev
        .lines()
        .find(|l| l.starts_with("Normal Pulled: "))
        .unwrap_or_default();
    assert!(
        pulled.starts_with(&format!(
            "Normal Pulled: Successfully pulled image \"{image}\" in "
        )) && pulled.contains(" including waiting). Image size: ")
            && pulled.ends_with(" bytes."),
        "{ev}"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "with-secret",
            "-o",
            "jsonpath={.status.containerStatuses[0].imageID}"
        ]),
        format!("{}/team/app@{app_v1}", reg.host)
    );

    // No credentials: ErrImagePull with the registry's reason, then the back-off.
    let locked = format!("{}/team/locked:v1", reg.host);
    c.apply(&pod("no-secret", &locked, ""));
    let waiting = c.wait_for(
        &["get", "pod", "no-secret", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}"],
        "ImagePullBackOff",
        30,
    );
    assert!(waiting.contains("no basic auth credentials"), "{waiting}");
    let ev = c.wait_for(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=no-secret",
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason}: {.message}{\"\\n\"}{end}",
        ],
        "BackOff",
        20,
    );
    assert!(
        ev.contains(&format!(
            "Warning Failed: Failed to pull image \"{locked}\": "
        )) && ev.contains("Warning Failed: Error: ErrImagePull")
            && ev.contains(&format!(
                "Normal BackOff: Back-off pulling image \"{locked}\""
            )),
        "{ev}"
    );

    // The ServiceAccount's pull secrets go into pods that name none.
    c.ok(&["create", "namespace", "team"]);
    pull_secret(&c, "team", &reg);
    c.wait_for(&["-n", "team", "get", "serviceaccount"], "default", 20);
    c.ok(&[
        "-n",
        "team",
        "patch",
        "serviceaccount",
        "default",
        "-p",
        "{\"imagePullSecrets\":[{\"name\":\"regcred\"}]}",
    ]);
    let f = c.root.dir.join("sa-pod.yaml");
    std::fs::write(&f, pod("via-sa", &format!("{}/team/sa:v1", reg.host), "")).unwrap();
    c.ok(&["-n", "team", "apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        c.ok(&[
            "-n",
            "team",
            "get",
            "pod",
            "via-sa",
            "-o",
            "jsonpath={.spec.imagePullSecrets[0].name}"
        ]),
        "regcred"
    );
    c.wait_for(
        &[
            "-n",
            "team",
            "get",
            "pod",
            "via-sa",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Running",
        60,
    );

    // Always: a tag that moved is pulled again; the new pod runs the new image.
    let latest = format!("{}/team/app:latest", reg.host);
    c.apply(&pod(
        "always-1",
        &latest,
        "  imagePullSecrets:\n  - name: regcred\n",
    ));
    c.wait_for(&["logs", "always-1"], "v=\n", 60);
    let ctx = c.root.dir.join("v2");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nENV VERSION=two\n").unwrap();
    seed.ok(&["build", "-q", "-t", "app-v2", ctx.to_str().unwrap()]);
    let v2 = push(&seed, &yaml, "app-v2", &reg, "team/app:latest");
    c.apply(&pod(
        "always-2",
        &latest,
        "  imagePullSecrets:\n  - name: regcred\n",
    ));
    c.wait_for(&["logs", "always-2"], "v=two", 60);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "always-2",
            "-o",
            "jsonpath={.status.containerStatuses[0].imageID}"
        ]),
        format!("{}/team/app@{v2}", reg.host)
    );

    // The node lists its images, repo digests first.
    c.wait_for(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.images[*].names}",
        ],
        &format!("{}/team/app@{v2}", reg.host),
        30,
    );

    // The registry gone: Always runs the node's copy and says why.
    reg.kill();
    c.apply(&pod(
        "offline",
        &latest,
        "  imagePullSecrets:\n  - name: regcred\n",
    ));
    c.wait_for(&["logs", "offline"], "v=two", 60);
    let ev = events(&c, "offline");
    assert!(
        ev.lines().any(|l| l.starts_with("Warning Failed: ")
            && l.contains("the registry could not be reached, so the image present on this node")),
        "{ev}"
    );

    // No password anywhere in what the cluster shows.
    let all = c.ok(&["get", "events", "-A", "-o", "yaml"]);
    let pods = c.ok(&["get", "pods", "-A", "-o", "yaml"]);
    assert!(!all.contains(PASSWORD) && !pods.contains(PASSWORD));
}
