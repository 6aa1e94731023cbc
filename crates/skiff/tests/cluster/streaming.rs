//! Streams through the API server to the node: logs, exec, attach, cp and
//! port-forward, over SPDY and WebSocket.

use crate::EXE;
use skiff_testsupport::cluster::Cluster;
use skiff_testsupport::kubectl::KUBECTL_DIR;
use skiff_testsupport::Root;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn kubectl_logs_exec_attach_cp_and_port_forward_reach_the_pod() {
    // Short restart back-off: the attached container restarts after every session.
    let c = Cluster::start_with(
        Root::with_busybox(EXE),
        &[
            "--initial-container-restart-period",
            "1s",
            "--max-container-restart-period",
            "2s",
        ],
    );
    c.wait_for(&["get", "nodes"], " Ready ", 20);
    c.apply(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\nspec:\n  containers:\n",
        "  - name: main\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"echo hello-out; echo hello-err >&2; sleep 0.3; echo third; exec sleep 1000\"]\n",
        "  - name: web\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www\"]\n",
        "  - name: reader\n    image: busybox\n    imagePullPolicy: Never\n    stdin: true\n    stdinOnce: true\n",
        "    command: [\"sh\", \"-c\", \"while read line; do echo got-$line; done\"]\n",
        "  - name: crasher\n    image: busybox\n    imagePullPolicy: Never\n",
        "    command: [\"sh\", \"-c\", \"test -f /marker && echo stale-layer; touch /marker; echo attempt-$(cat /proc/uptime); sleep 0.2; exit 1\"]\n",
    ));
    c.wait_for(
        &["get", "pod", "shell", "-o", "jsonpath={.status.phase}"],
        "Running",
        30,
    );

    // Logs: both streams, --tail, a container that must be named, a wrong one.
    let out = c.wait_for(&["logs", "shell", "-c", "main"], "third", 10);
    assert!(
        out.contains("hello-out\n") && out.contains("hello-err\n"),
        "{out}"
    );
    assert_eq!(
        c.ok(&["logs", "shell", "-c", "main", "--tail=1"]),
        "third\n"
    );
    let ts = c.ok(&["logs", "shell", "-c", "main", "--timestamps", "--tail=1"]);
    assert!(ts.ends_with("Z third\n") && ts.starts_with("20"), "{ts}");
    let o = c.kubectl(&["logs", "shell", "-c", "nope"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container nope is not valid for pod shell"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = c.kubectl(&["logs", "shell", "-c", "main", "--previous"]);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("previous terminated container \"main\" in pod \"shell\" not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The log of a restarted container's previous run.
    let start = Instant::now();
    while c
        .ok(&[
            "get",
            "pod",
            "shell",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"crasher\")].restartCount}",
        ])
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        < 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "crasher never restarted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each run starts from the image again (no /marker), and its log is its own.
    let prev = c.ok(&["logs", "shell", "-c", "crasher", "--previous"]);
    assert!(
        prev.starts_with("attempt-") && prev.lines().count() == 1,
        "{prev}"
    );
    // Failing again, it waits in CrashLoopBackOff, with the kubelet's BackOff event.
    c.wait_for(&["get", "pod", "shell"], "CrashLoopBackOff", 20);
    let ev = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=shell,reason=BackOff",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        ev.contains("Back-off restarting failed container crasher in pod shell_default"),
        "{ev}"
    );

    // exec and attach with an old (SPDY) and a new (WebSocket) client.
    for v in ["1.27", "1.29", "1.30", "1.33"] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let o = c.kubectl_with(
            &k,
            &[
                "exec",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "echo from-exec; echo e >&2; exit 3",
            ],
            None,
        );
        assert_eq!(
            o.status.code(),
            Some(3),
            "{v}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "from-exec\n", "{v}");
        // stdin reaches the process and its end is the process's EOF.
        let o = c.kubectl_with(
            &k,
            &[
                "exec",
                "-i",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "cat; echo done",
            ],
            Some(b"piped-in\n"),
        );
        assert!(
            o.status.success(),
            "{v}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "piped-in\ndone\n",
            "{v}"
        );
        // A terminal: the shell sees a tty of the size kubectl's terminal has.
        let out = c.kubectl_in_pty(
            &k,
            &[
                "exec",
                "-i",
                "-t",
                "shell",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "test -t 0 && echo is-a-tty; stty size",
            ],
            b"",
        );
        assert!(
            out.contains("is-a-tty") && out.contains("33 101"),
            "{v}: {out}"
        );
        // attach: what we type reaches the container's stdin, its answers come back;
        // with stdinOnce the end of our input ends its stdin (it exits and restarts).
        let start = Instant::now();
        loop {
            let o = c.kubectl_with(
                &k,
                &["attach", "-i", "shell", "-c", "reader"],
                Some(format!("v{v}\n").as_bytes()),
            );
            let out = String::from_utf8_lossy(&o.stdout).to_string();
            if out.contains(&format!("got-v{v}")) {
                break;
            }
            // The container may be between runs after the previous attach.
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{v}: {out} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // cp both ways (tar over exec, stdin EOF included).
    let src = c.root.dir.join("cp-src.txt");
    std::fs::write(&src, "copied-in\n").unwrap();
    c.ok(&[
        "cp",
        src.to_str().unwrap(),
        "shell:/tmp/x.txt",
        "-c",
        "main",
    ]);
    assert_eq!(
        c.ok(&["exec", "shell", "-c", "main", "--", "cat", "/tmp/x.txt"]),
        "copied-in\n"
    );
    let back = c.root.dir.join("cp-back.txt");
    c.ok(&[
        "cp",
        "shell:/tmp/x.txt",
        back.to_str().unwrap(),
        "-c",
        "main",
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied-in\n");

    // port-forward to a server listening on the pod's localhost only.
    for v in ["1.27", "1.33"] {
        let k = format!("{KUBECTL_DIR}/kubectl.{v}");
        let mut pf = c
            .kubectl_cmd(&k, &["port-forward", "pod/shell", ":8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(pf.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // Keep draining kubectl's output: a closed stdout kills it ("Handling connection").
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = pf.kill();
                let mut err = String::new();
                use std::io::Read;
                let _ = pf.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{v}: {line} {err}")
            });
        for _ in 0..2 {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if !resp.contains("pf-ok") {
                let _ = pf.kill();
                let mut err = String::new();
                use std::io::Read;
                let _ = pf.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{v}: {resp:?} {err}");
            }
        }
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(pf.id() as i32, libc::SIGTERM) };
        let _ = pf.wait();
    }

    // Non-kubectl clients over plain WebSocket, as the kubelet serves them: stdin in
    // text messages, the base64 protocols, and port-forward with its port channels.
    let exec = "/api/v1/namespaces/default/pods/shell/exec?container=main&command=head&command=-n1&stdin=true&stdout=true&stderr=true";
    let got = ws_session(
        &c,
        exec,
        Some("v4.channel.k8s.io"),
        &[("text", "\u{0}typed\n")],
        5,
    );
    assert_eq!(got["protocol"], "v4.channel.k8s.io", "{got}");
    let msgs = ws_binary_channels(&got);
    assert!(
        msgs.contains(&(1, b"typed\n".to_vec())),
        "stdin from a text message: {got}"
    );
    assert!(
        msgs.iter()
            .any(|(ch, d)| *ch == 3 && String::from_utf8_lossy(d).contains("\"Success\"")),
        "{got}"
    );
    let got = ws_session(
        &c,
        exec,
        Some("base64.channel.k8s.io"),
        &[("text", "0dHlwZWQK")],
        5,
    );
    assert_eq!(got["protocol"], "base64.channel.k8s.io", "{got}");
    let texts: Vec<String> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["op"] == "text")
        .map(|m| m["data"].as_str().unwrap().to_string())
        .collect();
    assert!(
        texts.contains(&"1dHlwZWQK".to_string()),
        "base64 stdout: {got}"
    );
    let forward = "/api/v1/namespaces/default/pods/shell/portforward?ports=8080";
    for proto in [Some("v4.channel.k8s.io"), None] {
        let req = "\u{0}GET /index.html HTTP/1.0\r\n\r\n";
        let got = ws_session(&c, forward, proto, &[("binary", req)], 3);
        assert_eq!(got["status"], 101, "{got}");
        let msgs = ws_binary_channels(&got);
        // Each channel opens with the port, little-endian.
        assert_eq!(msgs[0], (0, vec![0x90, 0x1f]), "{got}");
        assert_eq!(msgs[1], (1, vec![0x90, 0x1f]), "{got}");
        let body: Vec<u8> = msgs[2..]
            .iter()
            .filter(|(ch, _)| *ch == 0)
            .flat_map(|(_, d)| d.clone())
            .collect();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("pf-ok"), "{proto:?}: {got}");
    }
    let got = ws_session(
        &c,
        "/api/v1/namespaces/default/pods/shell/portforward",
        None,
        &[],
        3,
    );
    assert_eq!(got["status"], 400, "a port is required: {got}");
}

/// One WebSocket session through the API server with tests/wsclient.py: `send` is
/// (kind, payload) with kind `text` or `binary` (the payload's chars as bytes).
fn ws_session(
    c: &Cluster,
    path: &str,
    protocol: Option<&str>,
    send: &[(&str, &str)],
    idle: u64,
) -> serde_json::Value {
    use std::io::Write;
    let send: Vec<serde_json::Value> = send
        .iter()
        .map(|(kind, p)| match *kind {
            "text" => serde_json::json!({"text": p}),
            _ => serde_json::json!({"binary": b64(p.as_bytes())}),
        })
        .collect();
    let req = serde_json::json!({
        "kubeconfig": c.root.dir.join("kubeconfig"),
        "path": path,
        "protocol": protocol,
        "send": send,
        "idle": idle,
    });
    let mut child = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsclient.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "wsclient: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// The binary messages of a session as (channel, data).
fn ws_binary_channels(got: &serde_json::Value) -> Vec<(u8, Vec<u8>)> {
    got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["op"] == "binary")
        .map(|m| unb64(m["data"].as_str().unwrap()))
        .filter(|d| !d.is_empty())
        .map(|d| (d[0], d[1..].to_vec()))
        .collect()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_default()
}
