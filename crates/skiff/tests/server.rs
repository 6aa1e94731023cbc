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

#[test]
fn server_without_disable_agent_says_the_agent_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(EXE)
        .args(["server", "--https-listen-port", "0", "--data-dir"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--disable-agent"));
}
