//! Workloads on the one-node cluster: Deployments and their rollouts, ReplicaSets,
//! ReplicationControllers, StatefulSets, DaemonSets, Jobs and CronJobs.

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::Root;
use std::time::{Duration, Instant};

#[test]
fn a_deployment_runs_its_replicas_replaces_lost_pods_and_rolls_to_a_new_template() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A second local image to roll to.
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    let deploy = |image: &str| {
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  strategy:\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: {image}\n        imagePullPolicy: IfNotPresent\n        command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/var/www\"]\n")
    };
    c.apply(&deploy("busybox"));
    c.wait_for(&["get", "deploy", "web"], "2/2", 40);
    let pods = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(pods.lines().count(), 2, "{pods}");
    // A deleted pod is replaced.
    let first = pods.lines().next().unwrap().to_string();
    c.ok(&["delete", &first, "--grace-period", "1"]);
    c.wait_for(&["get", "deploy", "web"], "2/2", 40);
    let again = c.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(again.lines().count(), 2);
    assert!(!again.contains(&first), "{again}");
    // Roll to a new template: a new ReplicaSet takes over, never below 2 ready.
    c.apply(&deploy("busybox:v2"));
    let start = Instant::now();
    loop {
        let ready = c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        if ready.trim().parse::<i32>().unwrap_or(0) < 2 {
            let rs = c.ok(&["get", "rs", "-o", "wide"]);
            let pods = c.ok(&["get", "pods", "-o", "wide"]);
            panic!("availability dropped: {ready}\n{rs}\n{pods}");
        }
        let rs = c.ok(&["get", "rs", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.status.readyReplicas} {end}"]);
        if rs.contains("busybox:v2=2")
            && c.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
                .lines()
                .count()
                == 2
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rollout did not finish: {rs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Deleting the deployment removes its ReplicaSets and pods.
    c.ok(&["delete", "deploy", "web"]);
    c.wait_for(&["get", "pods", "-o", "name"], "", 1);
    let start = Instant::now();
    while !c.ok(&["get", "pods", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "pods left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_job_runs_its_completions_and_a_failing_one_hits_its_backoff_limit() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: pi\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: pi\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"echo computing; sleep 0.5\"]\n");
    c.wait_for(
        &[
            "get",
            "job",
            "pi",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Complete\")].type} {.status.succeeded}",
        ],
        "Complete 3",
        60,
    );
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=pi",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {end}",
    ]);
    assert_eq!(pods.matches("Succeeded").count(), 3, "{pods}");
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: doomed\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"exit 1\"]\n");
    let st = c.wait_for(
        &[
            "get",
            "job",
            "doomed",
            "-o",
            "jsonpath={.status.conditions[0].reason} {.status.failed}",
        ],
        "BackoffLimitExceeded",
        60,
    );
    assert!(st.ends_with(" 2"), "failed pods = backoffLimit + 1: {st}");
    // Deleting a job removes its pods.
    c.ok(&["delete", "job", "pi"]);
    let start = Instant::now();
    while !c
        .ok(&["get", "pods", "-l", "job-name=pi", "-o", "name"])
        .trim()
        .is_empty()
    {
        if start.elapsed() > Duration::from_secs(30) {
            let left = c.ok(&["get", "pods", "-l", "job-name=pi", "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.metadata.ownerReferences[0].kind} {.status.phase};{end}"]);
            panic!("job pods left behind: {left}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_cronjob_every_minute_runs_a_job_to_completion() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: hello\nspec:\n  schedule: \"* * * * *\"\n  successfulJobsHistoryLimit: 1\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: hello\n            image: busybox\n            imagePullPolicy: Never\n            command: [\"sh\", \"-c\", \"date; echo Hello from the Kubernetes cluster\"]\n");
    // The schedule fires within a minute; its Job completes.
    let jobs = c.wait_for(
        &[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.succeeded} {end}",
        ],
        "=1",
        80,
    );
    assert!(jobs.starts_with("hello-"), "{jobs}");
    let last = c.ok(&[
        "get",
        "cronjob",
        "hello",
        "-o",
        "jsonpath={.status.lastScheduleTime}",
    ]);
    assert!(last.ends_with('Z'), "{last}");
    c.ok(&["delete", "cronjob", "hello"]);
    let start = Instant::now();
    while !c.ok(&["get", "jobs", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "jobs left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_daemonset_runs_one_pod_per_eligible_node() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        role: edge\n      containers:\n      - name: a\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .trim(),
        "",
        "no eligible node yet"
    );
    c.ok(&["label", "node", &c.node, "role=edge"]);
    c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={.items[0].status.phase} {.items[0].spec.nodeName}",
        ],
        &format!("Running {}", c.node),
        30,
    );
    c.wait_for(
        &[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}/{.status.numberReady}",
        ],
        "1/1",
        20,
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .lines()
            .count(),
        1
    );
    c.ok(&["delete", "ds", "agent"]);
    c.wait_empty(
        &["get", "pods", "-l", "app=agent", "-o", "name"],
        30,
        "daemonset pods left behind",
    );
}

#[test]
fn a_daemonset_rolls_to_a_new_image_and_a_stuck_rollout_exceeds_its_deadline() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    c.apply(concat!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n",
        "  selector:\n    matchLabels:\n      app: agent\n",
        "  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n",
        "      terminationGracePeriodSeconds: 1\n      containers:\n      - name: a\n",
        "        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n",
    ));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let first = c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"]);
    c.ok(&["set", "image", "ds/agent", "a=busybox:v2"]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let now = c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}={.status.phase} {end}",
        ],
        "busybox:v2=Running",
        30,
    );
    assert!(now.contains("busybox:v2=Running"), "{now}");
    // `rollout status` is done once the new pod is available; the old one may still
    // be terminating (as on Kubernetes), and then goes.
    c.wait_empty(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[?(@.spec.containers[0].image==\"busybox\")]}{.metadata.name} {end}",
        ],
        30,
        "the old template's pod is still there",
    );
    assert_ne!(
        c.ok(&["get", "pods", "-l", "app=agent", "-o", "name"]),
        first
    );
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    // Undo puts the first template back, through its ControllerRevision.
    c.ok(&["rollout", "undo", "ds/agent"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert_eq!(
        c.ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox"
    );
    c.wait_for(
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[0].image}={.status.phase} {end}",
        ],
        "busybox=Running",
        30,
    );
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "{history}"
    );

    // A Deployment whose new pods never become available: Progressing=False with
    // ProgressDeadlineExceeded after progressDeadlineSeconds; rollout status says so.
    c.apply(concat!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n",
        "  replicas: 1\n  progressDeadlineSeconds: 3\n",
        "  selector:\n    matchLabels:\n      app: stuck\n",
        "  template:\n    metadata:\n      labels:\n        app: stuck\n    spec:\n",
        "      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n",
        "        image: no-such-image\n        imagePullPolicy: Never\n",
    ));
    let reason = c.wait_for(
        &[
            "get",
            "deploy",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].status}/{.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "ProgressDeadlineExceeded",
        40,
    );
    assert_eq!(reason, "False/ProgressDeadlineExceeded");
    let o = c.kubectl(&["rollout", "status", "deploy/stuck", "--timeout=20s"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{err}"
    );
}

#[test]
fn rollout_history_undo_pause_resume_and_restart() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.root.ok(&["tag", "busybox", "busybox:v2"]);
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    kubernetes.io/change-cause: first\nspec:\n  replicas: 1\n  revisionHistoryLimit: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: IfNotPresent\n        command: [\"sleep\", \"600\"]\n");
    let done = |c: &Cluster| {
        c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    };
    let image = |c: &Cluster| {
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    done(&c);
    let first_rs = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.ok(&["set", "image", "deploy/web", "c=busybox:v2"]);
    c.ok(&[
        "annotate",
        "deploy",
        "web",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    done(&c);
    let st = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.status.conditions[?(@.type==\"Progressing\")].reason} {.status.observedGeneration}/{.metadata.generation}"]);
    let f: Vec<&str> = st.split(' ').collect();
    assert_eq!(f[0], "2", "{st}");
    assert_eq!(f[1], "NewReplicaSetAvailable", "{st}");
    let (og, g) = f[2].split_once('/').unwrap();
    assert_eq!(og, g, "{st}");
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.metadata.annotations.kubernetes\\.io/change-cause}={.metadata.annotations.deployment\\.kubernetes\\.io/desired-replicas}={.metadata.annotations.deployment\\.kubernetes\\.io/max-replicas} {end}"]);
    assert!(
        rs.contains("1=first=1=2") && rs.contains("2=second=1=2"),
        "{rs}"
    );
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1         first") && history.contains("2         second"),
        "{history}"
    );
    // Undo: back to the first template, which becomes revision 3 of the same ReplicaSet.
    c.ok(&["rollout", "undo", "deploy/web"]);
    done(&c);
    assert_eq!(image(&c), "busybox");
    let rev = c.ok(&["get", "rs", &first_rs, "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.metadata.annotations.deployment\\.kubernetes\\.io/revision-history} {.spec.replicas}"]);
    assert_eq!(rev, "3 1 1");
    c.ok(&["rollout", "undo", "deploy/web", "--to-revision=2"]);
    done(&c);
    assert_eq!(image(&c), "busybox:v2");
    // Paused: a template change waits for resume.
    c.ok(&["rollout", "pause", "deploy/web"]);
    c.ok(&["set", "env", "deploy/web", "MODE=paused"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        c.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        2
    );
    c.wait_for(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "DeploymentPaused",
        10,
    );
    c.ok(&["rollout", "resume", "deploy/web"]);
    done(&c);
    let env = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].env[0].value}",
    ]);
    assert_eq!(env, "paused");
    // Restart: a new ReplicaSet of the same template; only two old ones are kept.
    c.ok(&["rollout", "restart", "deploy/web"]);
    done(&c);
    let rs = c.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
    let mut revs: Vec<i32> = rs.split_whitespace().map(|r| r.parse().unwrap()).collect();
    revs.sort();
    assert_eq!(
        revs,
        vec![4, 5, 6],
        "revisionHistoryLimit 2 keeps two old ones"
    );
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    ]);
    assert!(!pod.is_empty());
}

#[test]
fn a_statefulset_creates_ordered_pods_rolls_from_the_highest_and_makes_claims() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    let sts = |env: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: None\n  selector:\n    app: web\n  ports:\n  - port: 80\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n        env:\n        - name: MODE\n          value: {env}\n")
    };
    c.apply(&sts("one"));
    let pods = |c: &Cluster| {
        c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}={.metadata.uid}={.metadata.labels.controller-revision-hash}={.metadata.deletionTimestamp} {end}"])
    };
    // web-1 only once web-0 is ready.
    let start = Instant::now();
    loop {
        let p = pods(&c);
        if p.contains("web-1=") {
            assert!(
                p.contains("web-0=True="),
                "web-1 before web-0 was ready: {p}"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(40), "no web-1: {p}");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.wait_for(
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
        30,
    );
    let spec = c.ok(&["get", "pod", "web-1", "-o", "jsonpath={.spec.hostname}.{.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"]);
    assert_eq!(spec, "web-1.web web-1 1");
    let st = c.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.currentReplicas} {.status.updatedReplicas}"]);
    let f: Vec<&str> = st.split(' ').collect();
    assert_eq!(f[0], f[1], "{st}");
    assert_eq!(&f[2..], &["2", "2"], "{st}");
    let revs = c.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert!(
        revs.contains(&format!("controllerrevision.apps/{}", f[0])),
        "{revs}"
    );
    // A new template: web-1 is replaced first, then web-0.
    let before = pods(&c);
    let uid_of = |p: &str, name: &str| {
        p.split_whitespace()
            .find(|x| x.starts_with(&format!("{name}=")))
            .map(|x| x.split('=').nth(2).unwrap().to_string())
    };
    let (old0, old1) = (
        uid_of(&before, "web-0").unwrap(),
        uid_of(&before, "web-1").unwrap(),
    );
    c.apply(&sts("two"));
    let start = Instant::now();
    loop {
        let p = pods(&c);
        let (u0, u1) = (uid_of(&p, "web-0"), uid_of(&p, "web-1"));
        if u0.as_ref().is_some_and(|u| *u != old0) {
            assert!(
                u1.as_ref().is_some_and(|u| *u != old1),
                "web-0 replaced before web-1: {p}"
            );
        }
        let st = c.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas} {.status.readyReplicas}"]);
        let f: Vec<&str> = st.split(' ').collect();
        if f[0] == f[1]
            && !f[0].is_empty()
            && f[2] == "2"
            && f[3] == "2"
            && u0.is_some_and(|u| u != old0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rolling update did not finish: {st} {p}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Scaling down removes the highest ordinal.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    let start = Instant::now();
    while c.kubectl(&["get", "pod", "web-1"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "web-1 stays");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.kubectl(&["get", "pod", "web-0"]).status.success());
    // Undo puts the first template back through its ControllerRevision.
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "sts/web"]);
    let mode = c.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value}",
    ]);
    assert_eq!(mode, "one");
    c.wait_for(
        &[
            "get",
            "pod",
            "web-0",
            "-o",
            "jsonpath={.spec.containers[0].env[0].value}/{.status.phase}",
        ],
        "one/Running",
        60,
    );
    // Claims from volumeClaimTemplates, owned by the set as the retention policy asks.
    c.apply("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 2\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n        volumeMounts:\n        - name: data\n          mountPath: /data\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [\"ReadWriteOnce\"]\n      resources:\n        requests:\n          storage: 1Gi\n");
    let pvcs = c.wait_for(
        &[
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[0].kind} {end}",
        ],
        "data-db-1=",
        20,
    );
    assert!(
        pvcs.contains("data-db-0=StatefulSet") && pvcs.contains("data-db-1=StatefulSet"),
        "{pvcs}"
    );
    let vol = c.ok(&[
        "get",
        "pod",
        "db-0",
        "-o",
        "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(vol, "data-db-0");
    c.ok(&["delete", "sts", "db"]);
    let start = Instant::now();
    while !c.ok(&["get", "pvc", "-o", "name"]).trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "claims left behind"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn indexed_jobs_deadlines_and_ttl_after_finished() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // Each pod knows its index, and its hostname says it.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: idx\nspec:\n  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sh\", \"-c\", \"test \\\"$(hostname)\\\" = \\\"idx-$JOB_COMPLETION_INDEX\\\"\"]\n");
    let st = c.wait_for(
        &[
            "get",
            "job",
            "idx",
            "-o",
            "jsonpath={.status.conditions[*].type} {.status.completedIndexes} {.status.succeeded}",
        ],
        " 0-2 3",
        60,
    );
    assert_eq!(st, "SuccessCriteriaMet Complete 0-2 3");
    let idx = c.ok(&["get", "pods", "-l", "job-name=idx", "-o", "jsonpath={range .items[*]}{.metadata.labels.batch\\.kubernetes\\.io/job-completion-index}{.spec.hostname} {end}"]);
    let mut idx: Vec<&str> = idx.split_whitespace().collect();
    idx.sort();
    assert_eq!(idx, vec!["0idx-0", "1idx-1", "2idx-2"]);
    // Past activeDeadlineSeconds: failed, its pod stopped.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: slow\nspec:\n  activeDeadlineSeconds: 2\n  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    c.wait_for(
        &[
            "get",
            "job",
            "slow",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ],
        "DeadlineExceeded",
        30,
    );
    // Deleted, with its pods, once finished for ttlSecondsAfterFinished.
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: brief\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"true\"]\n");
    c.wait_for(
        &["get", "job", "brief", "-o", "jsonpath={.status.succeeded}"],
        "1",
        30,
    );
    let start = Instant::now();
    while c.kubectl(&["get", "job", "brief"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "job outlived its TTL"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    c.wait_empty(
        &["get", "pods", "-l", "job-name=brief", "-o", "name"],
        20,
        "its pods outlived it",
    );
}

#[test]
fn a_suspended_job_waits_and_runs_when_resumed() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: later\nspec:\n  suspend: true\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"true\"]\n");
    let table = c.wait_for(&["get", "job", "later"], "Suspended", 30);
    assert!(table.contains("0/1"), "{table}");
    let st = c.ok(&[
        "get",
        "job",
        "later",
        "-o",
        "jsonpath={.status.startTime}|{.status.conditions[0].reason}",
    ]);
    assert_eq!(st, "|JobSuspended");
    assert!(c
        .ok(&["get", "pods", "-l", "job-name=later", "-o", "name"])
        .trim()
        .is_empty());
    c.ok(&[
        "patch",
        "job",
        "later",
        "--type",
        "merge",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);
    c.wait_for(&["get", "job", "later"], "Complete", 60);
    let st = c.ok(&[
        "get",
        "job",
        "later",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Suspended\")].reason} {.status.startTime}",
    ]);
    assert!(st.starts_with("JobResumed 20"), "{st}");
}

/// The names of the pods with label `app=<app>` that are not being deleted.
fn live_pods(c: &Cluster, app: &str) -> Vec<String> {
    let list = c.ok(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Waits until `app` has exactly `n` pods.
fn wait_pods(c: &Cluster, app: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let pods = live_pods(c, app);
        if pods.len() == n {
            return pods;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{app}: wanted {n} pods, have {pods:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_replication_controller_runs_scales_and_its_pods_ignore_the_templates_name() {
    let c = Cluster::start(Root::with_busybox(EXE));
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    // A ReplicationController without a selector (it defaults to the template's
    // labels), whose template names its pods: the name is ignored.
    c.apply("apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc-web\nspec:\n  replicas: 2\n  template:\n    metadata:\n      name: fixed-name\n      labels:\n        app: rc-web\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    let rc = c.ok(&["get", "rc", "rc-web", "-o", "json"]);
    let rc: serde_json::Value = serde_json::from_str(&rc).unwrap();
    assert_eq!(rc["spec"]["selector"], serde_json::json!({"app": "rc-web"}));
    assert_eq!(
        rc["metadata"]["labels"],
        serde_json::json!({"app": "rc-web"})
    );
    let status = "jsonpath={.status.replicas}/{.status.fullyLabeledReplicas}/{.status.readyReplicas}/{.status.availableReplicas}/{.status.observedGeneration}";
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "2/2/2/2/1", 60);
    let pods = wait_pods(&c, "rc-web", 2);
    for p in &pods {
        assert!(
            p.starts_with("rc-web-") && p.len() == "rc-web-".len() + 5,
            "{pods:?}"
        );
    }
    // A deleted pod is replaced.
    c.ok(&["delete", "pod", &pods[0], "--grace-period", "1"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "2/2/2/2/1", 60);
    assert!(!live_pods(&c, "rc-web").contains(&pods[0]));
    // kubectl scale, through the scale subresource, up and down.
    c.ok(&["scale", "rc", "rc-web", "--replicas=3"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "3/3/3/3/2", 60);
    wait_pods(&c, "rc-web", 3);
    let scale = c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/rc-web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["selector"], "app=rc-web", "{scale}");
    c.ok(&["scale", "rc", "rc-web", "--replicas=1"]);
    c.wait_for(&["get", "rc", "rc-web", "-o", status], "1/1/1/1/3", 60);
    wait_pods(&c, "rc-web", 1);
    // A selector that does not match the template is refused as upstream words it.
    let bad = c.root.dir.join("bad-rc.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc-bad\nspec:\n  selector:\n    app: other\n  template:\n    metadata:\n      labels:\n        app: rc-bad\n    spec:\n      containers:\n      - name: c\n        image: busybox\n").unwrap();
    let o = c.kubectl(&["create", "-f", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"rc-bad\"}: selector does not match template labels"),
        "{err}"
    );

    // A Deployment of 2 whose template has a name runs both (pods named for their
    // ReplicaSet), as does a DaemonSet's.
    c.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: named-tmpl\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: named-tmpl\n  template:\n    metadata:\n      name: fixed-name\n      labels:\n        app: named-tmpl\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    c.wait_for(&["get", "deploy", "named-tmpl"], "2/2", 60);
    for p in wait_pods(&c, "named-tmpl", 2) {
        assert!(p.starts_with("named-tmpl-") && p != "fixed-name", "{p}");
    }
    c.apply("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: named-ds\nspec:\n  selector:\n    matchLabels:\n      app: named-ds\n  template:\n    metadata:\n      name: named-ds\n      labels:\n        app: named-ds\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n");
    let ds = wait_pods(&c, "named-ds", 1);
    assert!(
        ds[0].starts_with("named-ds-") && ds[0].len() == "named-ds-".len() + 5,
        "{ds:?}"
    );

    // A Deployment with a 50-character name runs its pod: the generated name is cut
    // to 58 characters plus 5.
    let long = format!("long-{}", "d".repeat(45));
    c.apply(&format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {long}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: long-name\n  template:\n    metadata:\n      labels:\n        app: long-name\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n        imagePullPolicy: Never\n        command: [\"sleep\", \"600\"]\n"));
    c.wait_for(&["get", "deploy", &long], "1/1", 60);
    let lp = wait_pods(&c, "long-name", 1);
    assert!(lp[0].len() == 63 && lp[0].starts_with(&long), "{lp:?}");
    let hostname = c.ok(&["exec", &lp[0], "--", "hostname"]);
    assert_eq!(hostname.trim(), lp[0]);
    c.ok(&["delete", "deploy", &long]);
    wait_pods(&c, "long-name", 0);

    // Deleting them removes their pods.
    c.ok(&["delete", "rc", "rc-web"]);
    c.ok(&["delete", "deploy", "named-tmpl"]);
    c.ok(&["delete", "ds", "named-ds"]);
    wait_pods(&c, "rc-web", 0);
    wait_pods(&c, "named-tmpl", 0);
    wait_pods(&c, "named-ds", 0);
}
