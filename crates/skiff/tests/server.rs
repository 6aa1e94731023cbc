//! `skiff server` as a user starts it, driven by the real kubectl.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path) -> (Server, String) {
    let mut child = Command::new(EXE)
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "0",
            "--bind-address",
            "127.0.0.1",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start skiff server");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("API on port"), "{line}");
    (Server(child), line)
}

fn kubectl(dir: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .output()
        .expect("kubectl is installed (see README)");
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn server_serves_kubectl_and_keeps_objects_across_restarts() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    {
        let (_s, banner) = start(dir);
        assert!(banner.contains("join token K10"), "{banner}");
        let v = kubectl(dir, &["version", "-o", "json"]);
        assert!(v.contains("\"gitVersion\": \"v1.33"), "{v}");
        let ns = kubectl(dir, &["get", "ns", "-o", "name"]);
        for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
        }
        kubectl(dir, &["create", "configmap", "keep", "--from-literal=a=1"]);
    }
    let (_s, _) = start(dir);
    let cm = kubectl(
        dir,
        &["get", "configmap", "keep", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(cm, "1");
}

/// A real etcd on free ports, killed on drop.
struct Etcd(Child, String);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn etcd(dir: &std::path::Path) -> Etcd {
    assert!(
        std::path::Path::new("/usr/bin/etcd").exists(),
        "etcd is not installed: run scripts/deps.sh"
    );
    let (c, p) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{c}");
    let child = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{p}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{p}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", c)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Etcd(child, url)
}

#[test]
fn server_on_etcd_keeps_objects_in_etcd() {
    let t = tempfile::tempdir().unwrap();
    let e = etcd(t.path());
    let run = |data: &str| {
        let mut child = Command::new(EXE)
            .args([
                "server",
                "--disable-agent",
                "--https-listen-port",
                "0",
                "--bind-address",
                "127.0.0.1",
            ])
            .args(["--datastore-endpoint", &e.1])
            .arg("--data-dir")
            .arg(t.path().join(data))
            .arg("--write-kubeconfig")
            .arg(t.path().join("kubeconfig"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("API on port"), "{line}");
        Server(child)
    };
    {
        let _s = run("a");
        kubectl(
            t.path(),
            &["create", "configmap", "in-etcd", "--from-literal=k=v"],
        );
    }
    // A second server with a fresh data dir sees the object: it lives in etcd.
    let _s = run("b");
    let v = kubectl(
        t.path(),
        &["get", "configmap", "in-etcd", "-o", "jsonpath={.data.k}"],
    );
    assert_eq!(v, "v");
}

#[test]
fn a_bad_datastore_endpoint_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(EXE)
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "0",
            "--datastore-endpoint",
            "mysql://db",
        ])
        .arg("--data-dir")
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("only etcd endpoints"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
