//! Errors a user sees say each thing once: one line naming the object and the
//! reason, never a cause repeated by a wrapper and again by the chain below it. Run
//! the way a user meets them: the CLI against a bad root, a second server on a data
//! directory in use, and kubectl against the API.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_testsupport::server;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

/// No line of the message says a segment (between ": ") twice.
fn assert_said_once(what: &str, msg: &str) {
    let msg = msg.trim_end();
    assert!(!msg.is_empty(), "{what}: no message");
    let lines: Vec<&str> = msg.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                assert!(
                    a.len() < 8 || a != b,
                    "{what}: {a:?} is said twice in {line:?}"
                );
            }
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `skiff server` (no node) on `dir`, its kubeconfig at `dir/<kubeconfig>`, logging
/// warnings only.
fn server_cmd(dir: &std::path::Path, kubeconfig: &str) -> std::process::Command {
    let mut c = server::command(EXE, &dir.join("data"), &dir.join(kubeconfig), &[]);
    c.env("SKIFF_LOG", "warn");
    c
}

#[test]
fn cli_errors_name_the_object_and_say_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    // An engine root under a regular file: the OS error once, after the path.
    let o = Command::new(EXE)
        .arg("--root")
        .arg(file.join("root"))
        .arg("ps")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let e = stderr(&o);
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert_eq!(e.matches("Not a directory").count(), 1, "{e}");
    assert_said_once("skiff ps on a bad root", &e);

    let root = dir.path().join("root");
    for args in [
        vec!["inspect", "nosuchcontainer"],
        vec!["rm", "nosuchcontainer"],
        vec!["rmi", "nosuchimage:1"],
        vec!["load", "-i", "/nonexistent/archive.tar"],
        vec!["volume", "rm", "nosuchvolume"],
    ] {
        let o = Command::new(EXE)
            .arg("--root")
            .arg(&root)
            .args(&args)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("nosuch") || e.contains("nonexistent"),
            "{args:?}: {e}"
        );
        assert_said_once(&format!("skiff {args:?}"), &e);
    }
    let o = Command::new(EXE)
        .args(["--log-level", "nonsense=[", "ps"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--log-level"), "{}", stderr(&o));
    assert_said_once("bad --log-level", &stderr(&o));
}

#[test]
fn server_and_api_errors_say_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let _server = server::Server::start(server_cmd(dir.path(), "kubeconfig"));

    // A second server on the same data directory: the store's lock, said once.
    let o = server_cmd(dir.path(), "kubeconfig2").output().unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("opening the database"), "{e}");
    assert_eq!(e.matches("opening the database").count(), 1, "{e}");
    assert_said_once("second server", &e);

    let kubectl = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = c.spawn().expect("kubectl is installed (see README)");
        let mut input = p.stdin.take().unwrap();
        if let Some(s) = stdin {
            std::io::Write::write_all(&mut input, s.as_bytes()).unwrap();
        }
        drop(input);
        p.wait_with_output().unwrap()
    };
    // Not found, invalid, too large: each names the object and the reason once.
    let o = kubectl(&["get", "configmap", "nosuchmap"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("\"nosuchmap\" not found"),
        "{}",
        stderr(&o)
    );
    assert_said_once("kubectl get missing", &stderr(&o));

    let o = kubectl(
        &["create", "-f", "-"],
        Some(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"Bad_Name"},"spec":{"containers":[]}}"#,
        ),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("Bad_Name") && e.contains("is invalid"), "{e}");
    assert_said_once("kubectl create invalid", &e);

    let big = "x".repeat(3 << 20);
    let o = kubectl(
        &["create", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{big}"}}}}"#
        )),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.len() < 4096,
        "the error echoes the object: {} bytes",
        e.len()
    );
    assert_said_once("kubectl create too large", &e);

    let o = kubectl(&["create", "configmap", "x", "-n", "nosuchns"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nosuchns"), "{}", stderr(&o));
    assert_said_once("kubectl create in a missing namespace", &stderr(&o));
}

#[test]
fn writing_to_a_closed_pipe_ends_quietly() {
    // `skiff version | head -0`: the reader is gone before skiff writes.
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(EXE)
        .args(["--root", dir.path().to_str().unwrap(), "version"])
        .stdout(Stdio::from(w))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}
