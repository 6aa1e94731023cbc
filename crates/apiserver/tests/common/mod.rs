//! A server fixture for the integration tests: a server on a free port with a temporary
//! data dir, and helpers that run the real kubectl against it with its own cache dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use skiff_apiserver::{start, RunningServer, ServerConfig};

pub use skiff_testsupport::etcd::Etcd;
// Each test binary takes what it needs of these.
#[allow(unused_imports)]
pub use skiff_testsupport::kubectl::{have_kubectl, DISPATCHER, KUBECTL_NEW, KUBECTL_OLD};

pub struct Fixture {
    pub server: Option<RunningServer>,
    pub data_dir: tempfile::TempDir,
    pub cache_dir: tempfile::TempDir,
    pub work_dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// The fixture's own etcd when the suite runs on etcd (dropped after the server).
    pub etcd: Option<Etcd>,
}

/// `SKIFF_TEST_DATASTORE=etcd` runs the suite on etcd (one etcd per fixture) instead of
/// the embedded store: the same tests, both backends.
pub fn on_etcd() -> bool {
    std::env::var("SKIFF_TEST_DATASTORE").is_ok_and(|d| d == "etcd")
}

/// Where a fixture notes its etcd endpoint, so restarts find the same store.
const ENDPOINT_FILE: &str = "test-datastore-endpoint";

pub fn config(data_dir: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: data_dir.to_path_buf(),
        bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
        https_listen_port: 0,
        datastore_endpoint: std::fs::read_to_string(data_dir.join(ENDPOINT_FILE)).ok(),
        ..ServerConfig::default()
    }
}

impl Fixture {
    pub async fn start() -> Fixture {
        Fixture::start_with(|_, _| {}).await
    }

    /// Starts with a configuration adjusted by `adjust(config, work_dir)`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig, &Path)) -> Fixture {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let work_dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = work_dir.path().join("kubeconfig");
        let etcd = on_etcd().then(Etcd::start);
        if let Some(e) = &etcd {
            std::fs::write(data_dir.path().join(ENDPOINT_FILE), &e.endpoint)
                .expect("note the etcd endpoint");
        }
        let mut cfg = config(data_dir.path());
        cfg.write_kubeconfig = Some(kubeconfig.clone());
        adjust(&mut cfg, work_dir.path());
        let server = start(cfg).await.expect("server starts");
        Fixture {
            server: Some(server),
            data_dir,
            cache_dir: tempfile::tempdir().expect("tempdir"),
            work_dir,
            kubeconfig,
            etcd,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().map(|s| s.port).unwrap_or(0)
    }

    /// Writes a file in the work dir and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.work_dir.path().join(name);
        std::fs::write(&p, contents).expect("write file");
        p
    }

    /// Runs `bin` with the kubeconfig and cache dir; returns (success, stdout, stderr).
    pub async fn run(&self, bin: &str, args: &[&str]) -> (bool, String, String) {
        self.run_with(&self.kubeconfig, bin, args).await
    }

    /// A kubeconfig for this server whose user authenticates with `user_fields` (YAML
    /// lines under `user:`, e.g. `token: abc`) instead of the admin certificate.
    pub fn kubeconfig_as(&self, name: &str, user_fields: &[(&str, &str)]) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let mut user = String::from("  user:\n");
        for (k, v) in user_fields {
            user.push_str(&format!("    {k}: {v}\n"));
        }
        let text: String = admin
            .lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("  user:\n", &user);
        self.file(&format!("{name}.kubeconfig"), &text)
    }

    /// A kubeconfig authenticating with a bearer token.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        self.kubeconfig_as(name, &[("token", token)])
    }

    /// Runs `bin` with another kubeconfig (and a cache dir of its own).
    pub async fn run_with(
        &self,
        kubeconfig: &Path,
        bin: &str,
        args: &[&str],
    ) -> (bool, String, String) {
        let cache = if kubeconfig == self.kubeconfig {
            self.cache_dir.path().to_path_buf()
        } else {
            self.cache_dir
                .path()
                .join(kubeconfig.file_stem().unwrap_or_default())
        };
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .current_dir(self.work_dir.path())
            .env("HOME", self.work_dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{bin} {args:?} timed out"))
            .unwrap_or_else(|e| panic!("running {bin}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts kubectl in the background; the task yields its stdout.
    pub fn spawn(&self, bin: &str, args: &[&str]) -> tokio::task::JoinHandle<String> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache_dir.path())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(60), cmd.output()).await {
                Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).into_owned(),
                _ => String::new(),
            }
        })
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub async fn ok(&self, bin: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(bin, args).await;
        assert!(ok, "{bin} {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Runs kubectl and asserts failure; returns stderr.
    pub async fn fails(&self, bin: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(bin, args).await;
        assert!(!ok, "{bin} {args:?} unexpectedly succeeded: {out}");
        err
    }

    /// Sends one request with curl and a bearer token (a raw HTTP client, for bodies
    /// kubectl does not send); returns (HTTP status, body).
    pub async fn curl(
        &self,
        token: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        self.curl_with(token, method, path, content_type, body, &[])
            .await
    }

    /// [`Fixture::curl`] with more request headers ("Name: value").
    pub async fn curl_with(
        &self,
        token: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
        headers: &[&str],
    ) -> (u16, String) {
        // Written whole under a name of its own, then renamed: concurrent requests never
        // read a half-written file.
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.file(
            &format!("curl-ca.crt.{n}"),
            &self
                .server
                .as_ref()
                .map(|s| s.ca_cert_pem.clone())
                .unwrap_or_default(),
        );
        let ca = self.work_dir.path().join("curl-ca.crt");
        std::fs::rename(&tmp, &ca).expect("rename the CA file");
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "-X", method, "--cacert"])
            .arg(&ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg("-w")
            .arg("\n%{http_code}");
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        if !body.is_empty() {
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(body);
        }
        cmd.arg(format!("https://127.0.0.1:{}{path}", self.port()))
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("curl timed out")
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The server's store, opened directly (the server must be stopped first when it
    /// is the embedded one).
    pub async fn open_store(&self) -> Box<dyn skiff_store::Store> {
        match &self.etcd {
            Some(e) => Box::new(
                skiff_store::EtcdStore::connect(std::slice::from_ref(&e.endpoint), None)
                    .await
                    .expect("connect to etcd"),
            ),
            None => Box::new(
                skiff_store::EmbeddedStore::open(
                    self.data_dir.path().join("db"),
                    Default::default(),
                )
                .expect("open store"),
            ),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

pub const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  a: "1"
  b: "2"
"#;

/// One object of every stored kind, in namespace `d` (cluster-scoped ones by name).
pub const EVERY_KIND: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: d}
data: {key: value}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: d}
subsets:
- addresses: [{ip: 10.1.0.5}]
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Event
metadata: {name: ev-0, namespace: d}
involvedObject: {kind: ConfigMap, name: cfg, namespace: d}
reason: Created
message: made by hand
type: Normal
source: {component: test}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: d}
spec:
  limits:
  - type: Container
    default: {cpu: 200m}
---
apiVersion: v1
kind: Node
metadata: {name: node-x, labels: {kubernetes.io/hostname: node-x}}
spec:
  podCIDR: 10.42.9.0/24
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-x}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/pv-x}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim, namespace: d}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: pod-x, namespace: d, labels: {app: web}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, "3600"]
    ports: [{containerPort: 80}]
    env: [{name: A, value: "1"}]
---
apiVersion: v1
kind: PodTemplate
metadata: {name: tmpl, namespace: d}
template:
  metadata: {labels: {app: t}}
  spec:
    containers: [{name: c, image: busybox:1.36}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc, namespace: d}
spec:
  replicas: 0
  selector: {app: rc}
  template:
    metadata: {labels: {app: rc}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: d}
spec:
  hard: {pods: "10", requests.cpu: "4"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: d}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: d}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: d}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: rev-1, namespace: d}
revision: 1
data: {spec: {template: {metadata: {labels: {app: x}}}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds, namespace: d}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: deploy, namespace: d}
spec:
  replicas: 0
  selector: {matchLabels: {app: deploy}}
  template:
    metadata: {labels: {app: deploy}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: d}
spec:
  replicas: 0
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts, namespace: d}
spec:
  replicas: 0
  serviceName: web
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      containers: [{name: c, image: busybox:1.36}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron, namespace: d}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: busybox:1.36}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: job, namespace: d}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox:1.36}]
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lease, namespace: d}
spec: {holderIdentity: me, leaseDurationSeconds: 15}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: d, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.1.0.5], conditions: {ready: true}}]
ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: example.com/ingress}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing, namespace: d}
spec:
  ingressClassName: nginx
  rules:
  - host: example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: d}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: IPAddress
metadata: {name: 10.43.0.200}
spec:
  parentRef: {group: "", resource: services, namespace: d, name: web}
---
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: extra}
spec: {cidrs: [10.44.0.0/24]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb, namespace: d}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: editor, namespace: d}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: editor, namespace: d}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: editor}
subjects: [{kind: ServiceAccount, name: robot, namespace: d}]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
description: important
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: example.com/fast
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa, namespace: d}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: deploy}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"#;

/// A key and a PEM certificate request.
pub fn certificate_request(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).expect("csr");
    csr.pem().expect("pem")
}
