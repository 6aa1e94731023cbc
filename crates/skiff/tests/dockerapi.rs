//! `skiff system service`: the real docker CLI (28.2 at /usr/local/bin/docker) against the
//! Docker Engine API on a unix socket in the test's own root, sharing its containers
//! with skiff's own CLI.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_testsupport::Root;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

/// The machine's docker CLI 28.2, else the one on PATH (the README's test command
/// installs Debian's docker-cli where there is none).
fn docker_bin() -> &'static str {
    if Path::new("/usr/local/bin/docker").exists() {
        "/usr/local/bin/docker"
    } else {
        "docker"
    }
}

/// The service, killed (SIGTERM) when dropped.
struct Service {
    child: Child,
    sock: PathBuf,
}

impl Service {
    fn start(r: &Root, name: &str, extra: &[&str]) -> Service {
        let sock = r.dir.join(name);
        let uri = format!("unix://{}", sock.display());
        let mut args = vec!["system", "service"];
        args.extend_from_slice(extra);
        args.push(&uri);
        let child = r
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "the service did not listen on {uri}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Service { child, sock }
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(docker_bin())
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.sock.with_extension("dockercfg"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A raw HTTP/1.1 request: (status, body).
    fn raw(&self, method: &str, path: &str) -> (u16, String) {
        self.raw_body(method, path, 0, 0)
    }

    /// Waits (10 s at most) until `docker exec CONTAINER ARGS…` succeeds: the
    /// container has done `what`.
    fn until_exec(&self, container: &str, args: &[&str], what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut full = vec!["exec", container];
        full.extend_from_slice(args);
        while self.docker(&full).status.code() != Some(0) {
            assert!(Instant::now() < deadline, "{container} did not {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A raw HTTP/1.1 request with `body`: (status, body).
    fn send(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// A raw HTTP/1.1 request declaring a body of `len` bytes and sending `send` of
    /// them: (status, body).
    fn raw_body(&self, method: &str, path: &str, len: usize, send: usize) -> (u16, String) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        )
        .unwrap();
        // The server may answer (and close) before all of it is sent.
        let chunk = vec![b' '; 64 << 10];
        let mut left = send;
        while left > 0 {
            let n = left.min(chunk.len());
            if s.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes integers only.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_docker_cli_lists_inspects_stops_and_removes_skiffs_containers() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "docker.sock", &["--time", "0"]);
    // The socket is not open to everyone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&svc.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    let v = svc.ok(&["version"]);
    assert!(v.contains("Server: skiff"), "{v}");
    assert!(v.contains("1.50 (minimum version 1.24)"), "{v}");
    let info = svc.ok(&[
        "info",
        "--format",
        "{{.ServerVersion}} {{.Driver}} {{.OSType}}",
    ]);
    assert!(info.trim().ends_with("overlay2 linux"), "{info}");

    // Containers made by skiff's CLI are the API's containers.
    let web = r.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "none",
        "--label",
        "tier=front",
        "busybox",
        "sleep",
        "300",
    ]);
    let web = web.trim();
    let o = r.run(&[
        "run",
        "--name",
        "done",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    let ps = svc.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up "), "running only: {ps}");
    assert_eq!(ps.lines().count(), 1, "{ps}");
    let all = svc.ok(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}|{{.Status}}|{{.Label \"tier\"}}",
    ]);
    assert!(all.contains("web|Up "), "{all}");
    assert!(all.contains("done|Exited (3) "), "{all}");
    assert!(all.contains("web|Up ") && all.contains("|front"), "{all}");
    assert_eq!(
        svc.ok(&["ps", "-a", "--filter", "exited=3", "--format", "{{.Names}}"])
            .trim(),
        "done"
    );
    assert_eq!(
        svc.ok(&["ps", "-q", "--no-trunc", "--filter", "label=tier=front"])
            .trim(),
        web
    );
    assert_eq!(
        svc.ok(&["ps", "-a", "--filter", "name=^we", "--format", "{{.Names}}"])
            .trim(),
        "web"
    );
    assert_eq!(
        svc.ok(&["ps", "-a", "-n", "1", "--format", "{{.Names}}"])
            .trim(),
        "done"
    );
    // Bad filters are refused, as docker's, even where nothing would match.
    let bad = svc.docker(&["ps", "--filter", "status=sleepy"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad).contains("invalid filter 'status=sleepy'"),
        "{}",
        text(&bad)
    );
    let bad = svc.docker(&["ps", "--filter", "colour=red"]);
    assert!(
        text(&bad).contains("invalid filter 'colour'"),
        "{}",
        text(&bad)
    );

    let i = svc.ok(&[
        "inspect",
        "-f",
        "{{.Id}} {{.Name}} {{.State.Status}} {{.Config.Labels.tier}}",
        "web",
    ]);
    assert_eq!(i.trim(), format!("{web} /web running front"));
    let missing = svc.docker(&["inspect", "nothere"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("No such object: nothere"),
        "{}",
        text(&missing)
    );
    let images = svc.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let img = svc.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    assert!(img.trim().starts_with("sha256:"), "{img}");
    assert!(svc.ok(&["network", "ls"]).contains("NETWORK ID"));
    assert!(svc.ok(&["volume", "ls"]).contains("VOLUME NAME"));

    // Removing a running container is a conflict; stop, then remove.
    let o = svc.docker(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("stop the container before removing or force remove"),
        "{}",
        text(&o)
    );
    let o = svc.docker(&["kill", "done"]);
    assert!(text(&o).contains("is not running"), "{}", text(&o));
    assert_eq!(svc.ok(&["stop", "-t", "1", "web"]).trim(), "web");
    // Stopping a stopped container is fine (the API says 304).
    assert_eq!(svc.ok(&["stop", "web"]).trim(), "web");
    assert_eq!(svc.ok(&["wait", "done"]).trim(), "3");
    assert!(
        r.ok(&["ps", "-a"]).contains("web"),
        "skiff sees the same containers"
    );
    svc.ok(&["rm", "web", "done"]);
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "", "gone for skiff too");

    // Raw calls: versions, unknown containers, endpoints not built yet.
    let (status, body) = svc.raw("GET", "/v1.99/_ping");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too new"), "{body}");
    let (status, body) = svc.raw("GET", "/v1.24/containers/nothere/json");
    assert_eq!(
        (status, body.trim()),
        (404, r#"{"message":"No such container: nothere"}"#)
    );
    let (status, body) = svc.raw("GET", "/v1.50/swarm");
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("does not serve GET /swarm"), "{body}");
    let (status, body) = svc.raw("POST", "/v1.50/containers/create");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid JSON in the create body"), "{body}");
    // Hostile input: a volume name that climbs out of the volumes, a huge body.
    let (status, body) = svc.raw("GET", "/v1.50/volumes/..%2F..%2F..%2Fetc");
    assert_eq!(status, 404, "{body}");
    let (status, body) = svc.raw_body("POST", "/v1.50/containers/create", 16 << 20, 0);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 4194304 bytes"), "{body}");
    let (status, body) = svc.raw("HEAD", "/_ping");
    assert_eq!((status, body.as_str()), (200, ""));
}

#[test]
fn the_service_exits_when_idle_and_refuses_a_second_listener() {
    let r = Root::new(EXE);
    let mut svc = Service::start(&r, "idle.sock", &["--time", "1"]);
    // A second service on the same live socket is refused.
    let o = r.run(&[
        "system",
        "service",
        &format!("unix://{}", svc.sock.display()),
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("already listening"), "{}", text(&o));
    // Without connections, it leaves after --time and removes its socket.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = svc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the idle service did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    assert!(!svc.sock.exists(), "the socket is removed on exit");
    // TCP off loopback needs TLS, which is not built: refused, saying why.
    let o = r.run(&["system", "service", "tcp://0.0.0.0:2375"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(
        text(&o).contains("without TLS client certificates"),
        "{}",
        text(&o)
    );
}

/// The service's threads waiting for a container on a client's behalf.
fn waiting_threads(pid: u32) -> usize {
    threads_named(pid, "docker-api-wait")
}

/// The threads of process `pid` named `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == name)
        })
        .count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn docker_run_and_create_make_skiff_containers() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "run.sock", &["--time", "0"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let run = svc.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "-e",
        "GREETING=hi",
        "--label",
        "app=web",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    // Nothing on stderr: the wait docker run asks for before it starts is served.
    assert_eq!(String::from_utf8_lossy(&run.stderr), "");
    let id = String::from_utf8_lossy(&run.stdout).into_owned();
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    // `docker run -d` asked for a wait (next-exit) before starting, then left: the
    // service's waiting thread goes with it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting_threads(svc.child.id()) > 0 {
        assert!(Instant::now() < deadline, "a wait outlived its client");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Served on the published loopback port.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            write!(s, "GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut b = String::new();
            s.read_to_string(&mut b)?;
            Ok(b)
        });
        match got {
            Ok(b) if b.contains("hello from skiff") => break b,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("nothing served on {port}: {other:?}"),
        }
    };
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let ps = svc.ok(&["ps", "--format", "{{.Names}} {{.Ports}} {{.Label \"app\"}}"]);
    assert_eq!(ps.trim(), format!("web 127.0.0.1:{port}->80/tcp web"));
    // skiff's CLI sees what docker made, with its environment.
    let env = r.ok(&["exec", "web", "sh", "-c", "echo $GREETING"]);
    assert_eq!(env.trim(), "hi");
    // docker update: the running container's cgroup takes the limits at once.
    assert_eq!(
        svc.ok(&[
            "update",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "--restart",
            "on-failure:3",
            "web"
        ])
        .trim(),
        "web"
    );
    assert_eq!(
        svc.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            "web"
        ])
        .trim(),
        "67108864 134217728 500000000 50 on-failure:3"
    );
    // The limits in the container's cgroup (v1 controllers or the v2 unified tree).
    let pid = r.ok(&["inspect", "-f", "{{.State.Pid}}", "web"]);
    let limit = |v1: (&str, &str), v2: &str| -> String {
        let groups = std::fs::read_to_string(format!("/proc/{}/cgroup", pid.trim())).unwrap();
        let path = |want: &str| {
            groups.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
                (ctl.split(',').any(|c| c == want)).then(|| path.to_string())
            })
        };
        let file = match path(v1.0) {
            Some(p) => format!("/sys/fs/cgroup/{}{p}/{}", v1.0, v1.1),
            None => format!("/sys/fs/cgroup{}/{v2}", path("").unwrap()),
        };
        let v = std::fs::read_to_string(&file).unwrap();
        v.split_whitespace().next().unwrap().to_string()
    };
    let memory = || limit(("memory", "memory.limit_in_bytes"), "memory.max");
    assert_eq!(memory(), "67108864");
    assert_eq!(limit(("cpu", "cpu.cfs_quota_us"), "cpu.max"), "50000");
    assert_eq!(limit(("pids", "pids.max"), "pids.max"), "50");
    // skiff's own verb, and docker's refusals.
    assert_eq!(r.ok(&["update", "-m", "32m", "web"]).trim(), "web");
    assert_eq!(memory(), "33554432");
    // Raised above the swap limit set before, with it (cgroup v1 orders the writes).
    svc.ok(&["update", "--memory", "256m", "--memory-swap", "512m", "web"]);
    assert_eq!(memory(), "268435456");
    // docker's refusals: the CLI fails with the daemon's message.
    for (args, message) in [
        (
            &["--memory", "1g"][..],
            "update the memoryswap at the same time",
        ),
        (
            &["--memory", "1m"][..],
            "Minimum memory limit allowed is 6MB",
        ),
        (
            &["--blkio-weight", "500"][..],
            "BlkioWeight is not supported",
        ),
    ] {
        let mut a = vec!["update"];
        a.extend_from_slice(args);
        a.push("web");
        let o = svc.docker(&a);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(message), "{}", text(&o));
    }
    let o = r.run(&["update", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("one or more flags"), "{}", text(&o));
    let o = svc.docker(&["update", "-m", "64m", "nosuch"]);
    assert!(text(&o).contains("No such container"), "{}", text(&o));
    // A restart policy set on a running container is the one its monitor follows.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]);
    svc.ok(&["update", "--restart", "on-failure:2", "flaky"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = svc.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.RestartCount}}",
            "flaky",
        ]);
        if st.trim() == "exited 2" {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted twice: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }
    svc.ok(&["rm", "flaky"]);
    // A name in use is a conflict.
    let o = svc.docker(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).to_lowercase().contains("conflict"), "{}", text(&o));
    // create, then start, then wait: the exit code.
    svc.ok(&[
        "create",
        "--name",
        "job",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "exit 4",
    ]);
    assert_eq!(
        svc.ok(&[
            "ps",
            "-a",
            "--filter",
            "status=created",
            "--format",
            "{{.Names}}"
        ])
        .trim(),
        "job"
    );
    svc.ok(&["start", "job"]);
    assert_eq!(svc.ok(&["wait", "job"]).trim(), "4");
    // Logs: by stream, followed until the container exits, tail, timestamps.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 1; echo late",
    ]);
    let o = svc.docker(&["logs", "-f", "talk"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\nlate\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // A follower that goes away takes the service's reading thread with it.
    let mut follower = Command::new(docker_bin())
        .args(["logs", "-f", "web"])
        .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while threads_named(svc.child.id(), "docker-api-logs") == 0 {
        assert!(Instant::now() < deadline, "the follow never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    while threads_named(svc.child.id(), "docker-api-logs") > 0 {
        assert!(
            Instant::now() < deadline,
            "a log follow outlived its client"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    svc.ok(&["rename", "talk", "chat"]);
    assert_eq!(svc.ok(&["logs", "--tail", "1", "chat"]), "late\n");
    let ts = svc.ok(&["logs", "-t", "chat"]);
    let first = ts.lines().next().unwrap();
    assert!(first.starts_with("20") && first.ends_with("Z out"), "{ts}");
    let o = svc.docker(&["logs", "--tail", "many", "chat"]);
    assert!(text(&o).contains("invalid value for tail"), "{}", text(&o));
    // A setting skiff would not apply is refused, not dropped.
    let o = svc.docker(&["run", "-d", "--dns", "192.0.2.1", "busybox", "true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("HostConfig.Dns is not supported"),
        "{}",
        text(&o)
    );
    svc.ok(&["rm", "-f", "web", "job", "chat"]);
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
}

impl Service {
    /// docker with `input` on its stdin.
    fn docker_in(&self, args: &[&str], input: &str) -> Output {
        let mut c = Command::new(docker_bin())
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.sock.with_extension("dockercfg"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// A docker command line run in a terminal of `cols`x`rows` (util-linux's
    /// `script`, as a user at a terminal): its exit code and what the terminal showed.
    fn docker_tty(&self, cmdline: &str, cols: u16, rows: u16) -> (Option<i32>, String) {
        let o = Command::new("script")
            .args([
                "-eqc",
                &format!("stty cols {cols} rows {rows}; {} {cmdline}", docker_bin()),
                "/dev/null",
            ])
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.sock.with_extension("dockercfg"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (o.status.code(), text(&o))
    }

    /// A raw HTTP request with a JSON body: (status, body).
    fn raw_json(&self, method: &str, path: &str, json: &str) -> (u16, String) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

/// The open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .count()
}

#[test]
fn docker_run_attaches_and_docker_exec_runs_in_the_container() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "attach.sock", &["--time", "0"]);
    let pid = svc.child.id();
    let (fds0, threads0) = (open_fds(pid), threads_named(pid, "tokio-runtime-w"));

    // docker run in the foreground: the streams apart, the exit code, --rm.
    let o = svc.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "", "--rm removed it");
    // stdin to the container, its end the container's.
    let o = svc.docker_in(
        &[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "tr a-z A-Z; echo end",
        ],
        "piped in\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED IN\nend\n");
    // start -a of a container that already ran once.
    svc.ok(&[
        "create",
        "--name",
        "again",
        "--network",
        "none",
        "busybox",
        "echo",
        "again",
    ]);
    assert_eq!(svc.ok(&["start", "-a", "again"]), "again\n");
    assert_eq!(svc.ok(&["start", "-a", "again"]), "again\n");
    // A terminal: its size from the client's, the exit code through it.
    let (code, shown) = svc.docker_tty(
        "run -it --rm --network none busybox sh -c 'tty; stty size; exit 3'",
        91,
        21,
    );
    assert_eq!(code, Some(3), "{shown}");
    assert!(
        shown.contains("/dev/pts/0") && shown.contains("21 91"),
        "{shown}"
    );

    // exec in a running container.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let o = svc.docker(&["exec", "box", "sh", "-c", "echo hi; echo oops >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    let o = svc.docker_in(&["exec", "-i", "box", "wc", "-l"], "a\nb\nc\n");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "3",
        "{}",
        text(&o)
    );
    let o = svc.ok(&[
        "exec",
        "-e",
        "A=b",
        "-w",
        "/bin",
        "-u",
        "1000",
        "box",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u)",
    ]);
    assert_eq!(o.trim(), "b /bin 1000");
    let o = svc.docker(&["exec", "box", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o));
    assert!(
        text(&o).contains("executable file not found"),
        "{}",
        text(&o)
    );
    svc.ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/mark"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.docker(&["exec", "box", "cat", "/tmp/mark"]).stdout != b"detached\n" {
        assert!(Instant::now() < deadline, "the detached exec never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, shown) = svc.docker_tty("exec -it box sh -c 'tty; stty size; exit 2'", 100, 30);
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("/dev/pts/") && shown.contains("30 100"),
        "{shown}"
    );
    // top: the host's ps, its rows for the container's processes.
    let top = svc.ok(&["top", "box"]);
    assert!(top.starts_with("UID") && top.contains("sleep 300"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    let top = svc.ok(&["top", "box", "-o", "pid,comm"]);
    assert!(top.starts_with("PID") && top.contains("sleep"), "{top}");
    // stats: the container's own counters; its network namespace's interfaces.
    let st = svc.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "box",
    ]);
    let fields: Vec<&str> = st.split_whitespace().collect();
    assert_eq!(fields[0], "box", "{st}");
    assert!(fields[1].parse::<u32>().unwrap() >= 1, "{st}");
    assert!(!st.contains("0B / 0B"), "memory is counted: {st}");
    svc.ok(&["run", "-d", "--name", "netbox", "busybox", "sleep", "300"]);
    let (status, body) = svc.raw("GET", "/v1.50/containers/netbox/stats?stream=0&one-shot=1");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""networks":{"eth0":{"#), "{body}");
    assert!(body.contains(r#""pids_stats":{"current":1"#), "{body}");
    let (status, body) = svc.raw("GET", "/v1.50/containers/netbox/stats?stream=1&one-shot=1");
    assert_eq!(status, 400, "{body}");
    // docker attach to a running container: its output from then on.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    let mut attached = Command::new(docker_bin())
        .args(["attach", "--no-stdin", "ticker"])
        .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
        .env("DOCKER_CONFIG", svc.sock.with_extension("dockercfg"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(attached.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "tick\n");
    attached.kill().unwrap();
    attached.wait().unwrap();

    // Raw calls: resize, exec inspect, bad input.
    svc.ok(&[
        "run",
        "-dit",
        "--name",
        "term",
        "--network",
        "none",
        "busybox",
        "sh",
    ]);
    let (status, body) = svc.raw("POST", "/v1.50/containers/term/resize?h=33&w=77");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        svc.ok(&["exec", "term", "stty", "-F", "/dev/pts/0", "size"])
            .trim(),
        "33 77"
    );
    let (status, body) = svc.raw("POST", "/v1.50/containers/box/resize?h=33&w=77");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("no terminal"), "{body}");
    let (status, body) = svc.raw("POST", "/v1.50/containers/term/resize?h=0&w=77");
    assert_eq!(status, 400, "{body}");
    let (status, body) = svc.raw_json(
        "POST",
        "/v1.50/containers/box/exec",
        r#"{"Cmd":["sh","-c","exit 9"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let exec_id = body.split('"').nth(3).unwrap().to_string();
    let (status, body) = svc.raw_json(
        "POST",
        &format!("/v1.50/exec/{exec_id}/start"),
        r#"{"Detach":true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = svc.raw("GET", &format!("/v1.50/exec/{exec_id}/json"));
        if body.contains(r#""ExitCode":9"#) {
            assert!(body.contains(r#""Running":false"#), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = svc.raw_json(
        "POST",
        &format!("/v1.50/exec/{exec_id}/start"),
        r#"{"Detach":true}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("has already run"), "{body}");
    let (status, body) = svc.raw_json("POST", "/v1.50/exec/nope/start", "{}");
    assert_eq!(
        (status, body.trim()),
        (404, r#"{"message":"No such exec instance: nope"}"#)
    );
    let (status, body) = svc.raw_json("POST", "/v1.50/containers/box/exec", r#"{"Cmd":[]}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = svc.raw_json(
        "POST",
        "/v1.50/containers/box/exec",
        r#"{"Cmd":"x","Tty":"yes"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Tty must be true or false"), "{body}");
    let (status, body) = svc.raw_json("POST", "/v1.50/containers/box/exec", "[");
    assert_eq!(status, 400, "{body}");
    svc.ok(&["stop", "-t", "0", "again"]);
    let (status, body) = svc.raw_json(
        "POST",
        "/v1.50/containers/again/exec",
        r#"{"Cmd":["true"]}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("is not running"), "{body}");
    // An attach without the upgrade is refused, saying what it needs.
    let (status, body) = svc.raw("POST", "/v1.50/containers/box/attach?stream=1&stdout=1");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Upgrade: tcp"), "{body}");

    // Clients that leave mid-stream: attaches (to running and to waiting
    // containers), log follows, event streams and waits, a thousand of them, leak
    // nothing.
    svc.ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    for i in 0..1000 {
        let path = match i % 4 {
            0 => "/v1.50/containers/ticker/attach?stream=1&stdout=1&stderr=1&stdin=1",
            1 => "/v1.50/containers/idle/attach?stream=1&stdout=1",
            2 if i % 8 == 2 => "/v1.50/containers/ticker/logs?follow=1&stdout=1",
            2 if i % 16 == 6 => "/v1.50/events",
            2 => "/v1.50/containers/ticker/stats",
            _ => "/v1.50/containers/ticker/wait",
        };
        let method = if i % 4 == 2 { "GET" } else { "POST" };
        let mut s = UnixStream::connect(&svc.sock).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        let status = String::from_utf8_lossy(&head[9..12]).into_owned();
        assert!(status == "101" || status == "200", "{path}: {status}");
        drop(s);
    }
    // The waiting attaches end with the container.
    svc.ok(&["rm", "idle"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = (
            open_fds(pid),
            threads_named(pid, "docker-api-wait")
                + threads_named(pid, "docker-api-logs")
                + threads_named(pid, "docker-api-stats")
                + threads_named(pid, "docker-api-even"),
            children(pid),
        );
        if now.0 <= fds0 + 2 && now.1 == 0 && now.2 == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 1,000 aborted streams: (fds, threads, children) {now:?}, {fds0} fds before"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(threads_named(pid, "tokio-runtime-w") <= threads0.max(2) + 2);
    svc.ok(&["rm", "-f", "box", "ticker", "term", "again", "netbox"]);
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn images_volumes_and_networks_through_the_api() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "objects.sock", &["--time", "0"]);
    // Images: tag, history, and docker's untag rule for rmi.
    svc.ok(&["tag", "busybox", "me/box:1"]);
    assert!(r.ok(&["images"]).contains("me/box"), "skiff sees the tag");
    // The daemon's image filters: an image is listed by the names that match.
    assert_eq!(
        svc.ok(&[
            "images",
            "--filter",
            "reference=me/*",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ])
        .trim(),
        "me/box:1"
    );
    let o = svc.docker(&["images", "--filter", "before=nosuch"]);
    assert!(text(&o).contains("No such image: nosuch"), "{}", text(&o));
    let h = svc.ok(&["history", "--format", "{{.ID}} {{.Size}}", "me/box:1"]);
    assert!(h.lines().count() >= 1 && !h.contains("<missing> 0B"), "{h}");
    svc.ok(&[
        "create",
        "--name",
        "user",
        "--network",
        "none",
        "me/box:1",
        "true",
    ]);
    // One of two names: untagged although a container uses the image.
    assert_eq!(svc.ok(&["rmi", "me/box:1"]).trim(), "Untagged: me/box:1");
    // The last name of an image a container uses: refused unless forced.
    let o = svc.docker(&["rmi", "busybox"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("must force"), "{}", text(&o));
    let o = svc.docker(&["rmi", "nothere"]);
    assert!(
        text(&o).contains("No such image: nothere:latest"),
        "{}",
        text(&o)
    );
    let (status, _) = svc.raw("POST", "/v1.50/images/busybox/tag");
    assert_eq!(status, 400, "a tag needs repo=");

    // Volumes: create (with labels), list, in use, remove, prune.
    assert_eq!(
        svc.ok(&["volume", "create", "--label", "k=v", "data"])
            .trim(),
        "data"
    );
    assert_eq!(
        svc.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Labels.k}} {{.Driver}}",
            "data"
        ])
        .trim(),
        "v local"
    );
    svc.ok(&["volume", "create", "spare"]);
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data:/d",
        "busybox",
        "sleep",
        "300",
    ]);
    let o = svc.docker(&["volume", "rm", "data"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("volume is in use"), "{}", text(&o));
    // The daemon's volume filters.
    assert_eq!(
        svc.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .trim(),
        "spare"
    );
    assert_eq!(
        svc.ok(&["volume", "ls", "-q", "--filter", "label=k=v"])
            .trim(),
        "data"
    );
    let o = svc.docker(&["volume", "ls", "--filter", "bogus=1"]);
    assert!(text(&o).contains("invalid filter 'bogus'"), "{}", text(&o));
    let o = svc.docker(&["volume", "create", "-d", "nfs", "x"]);
    assert!(
        text(&o).contains("plugin \"nfs\" not found"),
        "{}",
        text(&o)
    );
    let o = svc.docker(&["volume", "create", "-o", "type=tmpfs", "x"]);
    assert!(
        text(&o).contains("DriverOpts is not supported"),
        "{}",
        text(&o)
    );
    let o = svc.docker(&["volume", "create", "../escape"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    // Sizes: ps -s, inspect -s, system df (-v) with the volume's user.
    let sizes = svc.ok(&["ps", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert!(
        sizes.starts_with("holder ") && sizes.contains("(virtual "),
        "{sizes}"
    );
    let rw = svc.ok(&[
        "inspect",
        "-s",
        "-f",
        "{{.SizeRw}} {{.SizeRootFs}}",
        "holder",
    ]);
    let n: Vec<u64> = rw.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert!(n[1] > n[0], "{rw}");
    let df = svc.ok(&["system", "df"]);
    assert!(
        df.contains("Images ") && df.contains("Local Volumes "),
        "{df}"
    );
    let dfv = svc.ok(&["system", "df", "-v"]);
    let links: Vec<&str> = dfv
        .lines()
        .find(|l| l.starts_with("data "))
        .unwrap_or_else(|| panic!("{dfv}"))
        .split_whitespace()
        .collect();
    assert_eq!(links[1], "1", "one container uses data: {dfv}");
    let pruned = svc.ok(&["volume", "prune", "-af"]);
    assert!(
        pruned.contains("spare") && !pruned.contains("data"),
        "{pruned}"
    );
    svc.ok(&["rm", "-f", "holder"]);
    assert_eq!(svc.ok(&["volume", "rm", "data"]).trim(), "data");
    let o = svc.docker(&["volume", "rm", "data"]);
    assert!(text(&o).contains("no such volume"), "{}", text(&o));

    // Networks: create with IPAM, inspect, refused options, remove.
    let id = svc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.231.7.0/24",
        "--gateway",
        "10.231.7.254",
        "--label",
        "t=1",
        "backend",
    ]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let i = svc.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}} {{.Labels.t}}",
        "backend",
    ]);
    assert_eq!(i.trim(), "backend 10.231.7.0/24 10.231.7.254 1");
    assert!(r.ok(&["network", "ls"]).contains("backend"));
    // The daemon's network filters.
    assert_eq!(
        svc.ok(&[
            "network",
            "ls",
            "--filter",
            "label=t=1",
            "--format",
            "{{.Name}}"
        ])
        .trim(),
        "backend"
    );
    assert_eq!(
        svc.ok(&[
            "network",
            "ls",
            "--filter",
            "type=custom",
            "--filter",
            "dangling=true",
            "--format",
            "{{.Name}}"
        ])
        .trim(),
        "backend"
    );
    let o = svc.docker(&["network", "ls", "--filter", "type=weird"]);
    assert!(text(&o).contains("invalid filter"), "{}", text(&o));
    let o = svc.docker(&["network", "create", "backend"]);
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    let o = svc.docker(&["network", "create", "--ipv6", "v6"]);
    assert!(
        text(&o).contains("EnableIPv6 is not supported"),
        "{}",
        text(&o)
    );
    let o = svc.docker(&["network", "create", "-d", "overlay", "ov"]);
    assert!(
        text(&o).contains("plugin \"overlay\" not found"),
        "{}",
        text(&o)
    );
    assert_eq!(svc.ok(&["network", "rm", "backend"]).trim(), "backend");
    let o = svc.docker(&["network", "rm", "backend"]);
    assert!(text(&o).contains("not found"), "{}", text(&o));
    // restart, and docker system prune -f: stopped containers, unused networks and
    // dangling images go; running ones stay.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let pid_before = svc.ok(&["inspect", "-f", "{{.State.Pid}}", "keep"]);
    assert_eq!(svc.ok(&["restart", "-t", "0", "keep"]).trim(), "keep");
    let pid_after = svc.ok(&["inspect", "-f", "{{.State.Pid}} {{.State.Running}}", "keep"]);
    assert!(
        pid_after.trim().ends_with("true") && !pid_after.starts_with(pid_before.trim()),
        "{pid_after}"
    );
    svc.ok(&["network", "create", "unused"]);
    let pruned = svc.ok(&["system", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    assert_eq!(
        svc.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(),
        "keep"
    );
    assert!(!svc.ok(&["network", "ls"]).contains("unused"));
    // docker image prune -a: every image no container uses, untagged and deleted;
    // the image of a running container stays.
    svc.ok(&["commit", "keep", "spareimg:1"]);
    let pruned = svc.ok(&["image", "prune", "-af"]);
    assert!(
        pruned.contains("untagged: spareimg:1") && pruned.contains("deleted: sha256:"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let images = svc.ok(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(images.trim(), "busybox", "{images}");
    svc.ok(&["rm", "-f", "keep"]);
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn docker_compose_brings_up_two_services_that_find_each_other_by_name() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "compose.sock", &["--time", "0"]);
    let pid = std::process::id();
    let project = format!("skt{pid}");
    let dir = r.dir.join("project");
    std::fs::create_dir_all(&dir).unwrap();
    // Its own subnet: the network is a bridge of this test's.
    std::fs::write(
        dir.join("docker-compose.yml"),
        format!(
            r#"version: "3"
services:
  web:
    image: busybox
    command: sh -c 'mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www'
  client:
    image: busybox
    depends_on: [web]
    command: sh -c 'for i in $$(seq 1 40); do wget -qO- http://web/ && break; sleep 0.25; done; exec sleep 300'
networks:
  default:
    ipam:
      config:
        - subnet: 10.232.{}.0/24
"#,
            pid % 250
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&project)
            .args(args)
            .current_dir(&dir)
            .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
            .env("DOCKER_CONFIG", svc.sock.with_extension("dockercfg"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = compose(&["up", "-d"]);
    assert!(o.status.success(), "{}", text(&o));
    let ps = compose(&["ps"]);
    let shown = text(&ps);
    assert!(
        shown.contains(&format!("{project}_web_1"))
            && shown.contains(&format!("{project}_client_1")),
        "{shown}"
    );
    assert_eq!(shown.matches(" Up ").count(), 2, "one line each: {shown}");
    // The client reached the web service by its name.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = text(&compose(&["logs", "client"]));
        if logs.contains("hello-from-web") {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // Up again: nothing to change.
    let again = compose(&["up", "-d"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        !text(&again).contains("Recreating") && !text(&again).contains("needs to be recreated"),
        "{}",
        text(&again)
    );
    let o = compose(&["down"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
    assert!(!r.ok(&["network", "ls"]).contains(&project));
}

#[test]
fn docker_pull_and_run_from_a_registry() {
    let reg = skiff_testsupport::registry::Registry::plain();
    let seed = Root::with_busybox(EXE);
    let v1 = format!("{}/api/bb:v1", reg.host);
    let v2 = format!("{}/api/bb:v2", reg.host);
    for reference in [&v1, &v2] {
        seed.ok(&["tag", "busybox", reference]);
        seed.ok(&["push", reference]);
    }
    let r = Root::new(EXE);
    let svc = Service::start(&r, "pull.sock", &["--time", "0"]);
    // /distribution: the registry's descriptor and platforms, nothing pulled.
    let (status, body) = svc.raw("GET", &format!("/v1.50/distribution/{v1}/json"));
    assert_eq!(status, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    let digest = d["Descriptor"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{body}");
    assert!(d["Descriptor"]["size"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(d["Platforms"][0]["os"], "linux", "{body}");
    assert_eq!(r.ok(&["images", "-q"]).trim(), "");
    let (status, body) = svc.raw(
        "GET",
        &format!("/v1.50/distribution/{}/api/bb:nope/json", reg.host),
    );
    assert_eq!(status, 404, "{body}");
    // docker pull: the progress stream, rendered by the CLI.
    let out = svc.ok(&["pull", &v1]);
    assert!(out.contains("v1: Pulling from api/bb"), "{out}");
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {v1}")),
        "{out}"
    );
    assert!(r.ok(&["images"]).contains(&format!("{}/api/bb", reg.host)));
    let again = svc.ok(&["pull", &v1]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {v1}")),
        "{again}"
    );
    // docker run of an image that is not here pulls it, then runs it.
    let o = svc.docker(&["run", "--rm", "--network", "none", &v2, "echo", "pulled"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "pulled\n");
    assert!(text(&o).contains("Unable to find image"), "{}", text(&o));
    // docker tag + push, then the pushed image pulled back.
    let pushed = format!("{}/api/pushed:1", reg.host);
    svc.ok(&["tag", &v1, &pushed]);
    let out = svc.ok(&["push", &pushed]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/api/pushed]",
            reg.host
        )),
        "{out}"
    );
    assert!(out.contains("1: digest: sha256:"), "{out}");
    svc.ok(&["rmi", &pushed]);
    assert!(svc
        .ok(&["pull", &pushed])
        .contains("Downloaded newer image"));
    let o = svc.docker(&["push", &format!("{}/api/absent:1", reg.host)]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("An image does not exist locally with the tag"),
        "{}",
        text(&o)
    );
    // docker save / load / import.
    let saved = r.dir.join("saved.tar");
    svc.ok(&["save", "-o", saved.to_str().unwrap(), &v1]);
    svc.ok(&["rmi", &v1, &pushed]);
    let out = svc.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {v1}"));
    let out = svc.ok(&[
        "import",
        "-c",
        "CMD [\"echo\", \"imported\"]",
        seed.dir.join("busybox-rootfs.tar").to_str().unwrap(),
        "imported:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(
        svc.ok(&["run", "--rm", "--network", "none", "imported:1"]),
        "imported\n"
    );
    r.ok(&[
        "import",
        "--change",
        "CMD [\"echo\", \"cli\"]",
        "-m",
        "by hand",
        seed.dir.join("busybox-rootfs.tar").to_str().unwrap(),
        "cliimp:1",
    ]);
    assert_eq!(
        r.ok(&["run", "--rm", "--network", "none", "cliimp:1"]),
        "cli\n"
    );
    assert_eq!(
        svc.ok(&["inspect", "-f", "{{.Comment}}", "cliimp:1"])
            .trim(),
        "by hand"
    );
    // A tag the registry does not have: the registry's reason, exit 1.
    let o = svc.docker(&["pull", &format!("{}/api/bb:nope", reg.host)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nope"), "{}", text(&o));
    // Bad input: no image, a malformed reference, a malformed auth header.
    let (status, body) = svc.raw("POST", "/v1.50/images/create");
    assert_eq!(status, 400, "{body}");
    let (status, body) = svc.raw("POST", "/v1.50/images/create?fromImage=UPPER%2Fcase");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid reference format"), "{body}");
    let mut s = UnixStream::connect(&svc.sock).unwrap();
    write!(
        s,
        "POST /v1.50/images/create?fromImage={v1} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nX-Registry-Auth: %%%\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("invalid X-Registry-Auth header"), "{out}");
}

#[test]
fn the_python_sdk_runs_execs_and_manages_networks_and_volumes() {
    // Debian's python3-docker (5.0.3, installed with docker-compose).
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "sdk.sock", &["--time", "0"]);
    let script = r#"
import docker
c = docker.DockerClient(base_url="unix://" + SOCK, version="auto")
out = c.containers.run("busybox", ["sh", "-c", "echo hello; echo oops >&2"],
                       network_mode="none", remove=True, stderr=True)
assert out == b"hello\noops\n", out
ct = c.containers.run("busybox", ["sh", "-c", "echo started; exec sleep 300"],
                      network_mode="none", detach=True, name="sdk1", labels={"sdk": "yes"})
r = ct.exec_run(["sh", "-c", "echo in; echo err >&2; exit 3"], demux=True)
assert r.exit_code == 3 and r.output == (b"in\n", b"err\n"), r
r = ct.exec_run(["id", "-u"], user="1000")
assert r.exit_code == 0 and r.output == b"1000\n", r
import time
for _ in range(100):
    if ct.logs() == b"started\n":
        break
    time.sleep(0.05)
assert ct.logs() == b"started\n", ct.logs()
assert [x.name for x in c.containers.list(filters={"label": "sdk=yes"})] == ["sdk1"]
n = c.networks.create("sdknet", labels={"k": "v"})
assert c.networks.get("sdknet").attrs["Labels"] == {"k": "v"}
v = c.volumes.create("sdkvol")
assert "sdkvol" in [x.name for x in c.volumes.list()]
assert any("busybox:latest" in i.tags for i in c.images.list())
snap = ct.commit(repository="sdksnap", tag="1", conf={"Cmd": ["echo", "from", "sdk"]})
assert "sdksnap:1" in snap.tags, snap.tags
assert c.containers.run("sdksnap:1", network_mode="none", remove=True) == b"from sdk\n"
c.images.remove("sdksnap:1")
import os, tempfile
d = tempfile.mkdtemp(dir=os.path.dirname(SOCK))
with open(os.path.join(d, "Dockerfile"), "w") as f:
    f.write("FROM busybox\nRUN echo sdk > /sdk.txt\n")
img, logs = c.images.build(path=d, tag="sdkbuilt", rm=True, labels={"by": "sdk"})
assert "sdkbuilt:latest" in img.tags, img.tags
assert img.labels == {"by": "sdk"}, img.labels
assert any("Step 2/3 : RUN" in l.get("stream", "") for l in logs), list(logs)
assert c.containers.run("sdkbuilt", ["cat", "/sdk.txt"], network_mode="none", remove=True) == b"sdk\n"
c.images.remove("sdkbuilt")
ct.stop(timeout=0)
assert ct.wait()["StatusCode"] == 137
ct.remove()
n.remove()
v.remove()
print("sdk ok")
"#;
    let o = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "SOCK = {:?}\n{script}",
            svc.sock.display().to_string()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "sdk ok");
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn docker_build_uses_the_classic_builder_over_the_api() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "build.sock", &["--time", "0"]);
    let ctx = r.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG WHO=nobody\nCOPY . /app/\nRUN echo \"built by $WHO\" > /who.txt\nCMD [\"sh\", \"-c\", \"cat /app/hello.txt /who.txt; ls /app\"]\n",
    )
    .unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(ctx.join("secret.txt"), "no\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "secret.txt\n").unwrap();
    std::fs::write(ctx.join("fail.Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let build = |args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>| {
        let mut c = Command::new(docker_bin());
        c.args(args)
            .current_dir(&ctx)
            .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
            .env("DOCKER_CONFIG", svc.sock.with_extension("dockercfg"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut i = child.stdin.take().unwrap();
        if let Some(data) = stdin {
            i.write_all(data).unwrap();
        }
        drop(i);
        child.wait_with_output().unwrap()
    };
    // Plain `docker build` (no buildx here) and DOCKER_BUILDKIT=0 take the classic path.
    for env in [&[][..], &[("DOCKER_BUILDKIT", "0")][..]] {
        let o = build(
            &[
                "build",
                "-t",
                "built:1",
                "--build-arg",
                "WHO=me",
                "--label",
                "team=core",
                ".",
            ],
            env,
            None,
        );
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("Step 1/6 : FROM busybox"), "{out}");
        assert!(out.contains("Step 6/6 : LABEL"), "{out}");
        assert!(out.contains("Successfully built "), "{out}");
        assert!(out.contains("Successfully tagged built:1"), "{out}");
    }
    let o = svc.ok(&["run", "--rm", "--network", "none", "built:1"]);
    assert_eq!(
        o,
        "hello\nbuilt by me\nDockerfile\nfail.Dockerfile\nhello.txt\n"
    );
    assert_eq!(
        svc.ok(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"team\"}}",
            "built:1"
        ])
        .trim(),
        "core"
    );
    // The same image through skiff's own CLI.
    assert!(r.ok(&["images"]).contains("built"));

    // A Dockerfile on stdin, quiet: only the image ID.
    let o = build(
        &["build", "-q", "-t", "fromstdin", "-"],
        &[],
        Some(b"FROM busybox\nENV X=1\n"),
    );
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.starts_with("sha256:") && out.len() == 71, "{out}");
    assert_eq!(
        svc.ok(&["inspect", "-f", "{{.Id}}", "fromstdin"]).trim(),
        out
    );

    // A failed RUN: its message and its exit code, as docker's classic builder.
    let o = build(&["build", "-f", "fail.Dockerfile", "."], &[], None);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{}",
        text(&o)
    );
    // A Dockerfile that is not in the context, or a link out of it.
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    t.append_link(&mut h, "Dockerfile", "/etc/passwd").unwrap();
    let t = t.into_inner().unwrap();
    // (and no context at all)
    for (q, body) in [
        ("dockerfile=nope", &t[..]),
        ("dockerfile=Dockerfile", &t[..]),
        ("", &[][..]),
    ] {
        let (status, body) = svc.send("POST", &format!("/v1.50/build?{q}"), body);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("Cannot locate specified Dockerfile"),
            "{body}"
        );
    }
    // BuildKit's protocol is refused with a clear message.
    let (status, body) = svc.raw("POST", "/v1.50/build?version=2");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BuildKit"), "{body}");
    // No context directories are left behind.
    let left: Vec<_> = std::fs::read_dir(r.dir.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // docker commit, with changes, author and message.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "tocommit",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo data > /made; exec sleep 300",
    ]);
    svc.until_exec("tocommit", &["test", "-f", "/made"], "write /made");
    // docker diff / skiff diff: what the container changed.
    svc.ok(&["exec", "tocommit", "rm", "/var/www/index.html"]);
    let diff = svc.ok(&["diff", "tocommit"]);
    assert_eq!(
        diff, "A /made\nC /var\nC /var/www\nD /var/www/index.html\n",
        "{diff}"
    );
    assert_eq!(r.ok(&["diff", "tocommit"]), diff);
    let id = svc.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "-c",
        "ENV K=v",
        "-m",
        "snap",
        "-a",
        "me",
        "tocommit",
        "snap:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        svc.ok(&["run", "--rm", "--network", "none", "snap:1"]),
        "data\n"
    );
    let shown = svc.ok(&[
        "inspect",
        "-f",
        "{{.Author}}|{{.Comment}}|{{.Config.Env}}",
        "snap:1",
    ]);
    assert!(shown.starts_with("me|snap|"), "{shown}");
    assert!(shown.contains("K=v"), "{shown}");
    let o = svc.docker(&["commit", "-c", "RUN rm -rf /", "tocommit", "bad:1"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("RUN"), "{}", text(&o));
    // skiff's own commit takes --change too.
    r.ok(&["commit", "--change", "WORKDIR /tmp", "tocommit", "snap:2"]);
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.Config.WorkingDir}}", "snap:2"])
            .trim(),
        "/tmp"
    );
    svc.ok(&["rm", "-f", "tocommit"]);

    // skiff's own CLI: a tar context on stdin, --label and --iidfile.
    let mut tarball = tar::Builder::new(Vec::new());
    tarball
        .append_path_with_name(ctx.join("Dockerfile"), "Dockerfile")
        .unwrap();
    tarball
        .append_path_with_name(ctx.join("hello.txt"), "hello.txt")
        .unwrap();
    let tarball = tarball.into_inner().unwrap();
    let iid = r.dir.join("iid");
    let mut c = r.cmd(&[
        "build",
        "-t",
        "cli:1",
        "--label",
        "a=b",
        "--iidfile",
        iid.to_str().unwrap(),
        "-",
    ]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&tarball).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(
        r.ok(&["inspect", "-f", "{{.Id}}", "cli:1"]).trim(),
        id.trim()
    );
    assert_eq!(
        r.ok(&["inspect", "-f", "{{index .Config.Labels \"a\"}}", "cli:1"])
            .trim(),
        "b"
    );
}

#[test]
fn docker_cp_copies_both_ways_inside_the_container_root() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "cp.sock", &["--time", "0"]);
    let work = r.dir.join("cpwork");
    std::fs::create_dir_all(work.join("dir/sub")).unwrap();
    std::fs::write(work.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(work.join("dir/sub/a"), "a\n").unwrap();
    let w = |p: &str| work.join(p).to_str().unwrap().to_string();
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "cpweb",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ln -s /etc /tmp/hostetc; echo mine > /etc/mark; exec sleep 300",
    ]);
    svc.until_exec("cpweb", &["test", "-L", "/tmp/hostetc"], "make its link");
    // Into the container: into a directory, and to a new name.
    svc.ok(&["cp", &w("hello.txt"), "cpweb:/tmp/"]);
    svc.ok(&["cp", &w("dir"), "cpweb:/tmp/newdir"]);
    assert_eq!(
        svc.ok(&[
            "exec",
            "cpweb",
            "cat",
            "/tmp/hello.txt",
            "/tmp/newdir/sub/a"
        ]),
        "hello\na\n"
    );
    // Owned by root without -a, as docker's.
    assert_eq!(
        svc.ok(&["exec", "cpweb", "stat", "-c", "%u:%g", "/tmp/hello.txt"])
            .trim(),
        "0:0"
    );
    // Out of it: a file, a directory, and a tar stream on stdout.
    svc.ok(&["cp", "cpweb:/tmp/hello.txt", &w("out.txt")]);
    assert_eq!(
        std::fs::read_to_string(work.join("out.txt")).unwrap(),
        "hello\n"
    );
    svc.ok(&["cp", "cpweb:/tmp/newdir", &w("got")]);
    assert_eq!(
        std::fs::read_to_string(work.join("got/sub/a")).unwrap(),
        "a\n"
    );
    std::fs::create_dir(work.join("content")).unwrap();
    svc.ok(&["cp", "cpweb:/tmp/newdir/.", &w("content")]);
    assert_eq!(
        std::fs::read_to_string(work.join("content/sub/a")).unwrap(),
        "a\n"
    );
    let o = svc.docker(&["cp", "cpweb:/tmp/hello.txt", "-"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let mut e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str().unwrap(), "hello.txt");
    let mut body = String::new();
    e.read_to_string(&mut body).unwrap();
    assert_eq!(body, "hello\n");
    // A tar stream on stdin.
    let mut t = tar::Builder::new(Vec::new());
    t.append_path_with_name(work.join("hello.txt"), "fromstdin.txt")
        .unwrap();
    let t = t.into_inner().unwrap();
    let mut child = Command::new(docker_bin())
        .args(["cp", "-", "cpweb:/tmp"])
        .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
        .env("DOCKER_CONFIG", svc.sock.with_extension("dockercfg"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&t).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        svc.ok(&["exec", "cpweb", "cat", "/tmp/fromstdin.txt"]),
        "hello\n"
    );

    // The container's links resolve inside it: /tmp/hostetc is the container's /etc.
    let marker = format!("skiff-cp-{}", std::process::id());
    std::fs::write(work.join(&marker), "x\n").unwrap();
    svc.ok(&["cp", &w(&marker), "cpweb:/tmp/hostetc/"]);
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "docker cp wrote to the host's /etc"
    );
    assert_eq!(
        svc.ok(&["exec", "cpweb", "cat", &format!("/etc/{marker}")]),
        "x\n"
    );
    svc.ok(&["cp", "cpweb:/tmp/hostetc/mark", &w("mark")]);
    assert_eq!(
        std::fs::read_to_string(work.join("mark")).unwrap(),
        "mine\n"
    );

    // What is not there, and a directory over a file.
    let o = svc.docker(&["cp", "cpweb:/nope", &w("x")]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("Could not find the file /nope in container cpweb"),
        "{}",
        text(&o)
    );
    let (status, _) = svc.raw("HEAD", "/v1.50/containers/cpweb/archive?path=/nope");
    assert_eq!(status, 404);
    let (status, _) = svc.raw("GET", "/v1.50/containers/nosuch/archive?path=/");
    assert_eq!(status, 404);
    let o = svc.docker(&["cp", &w("dir"), "cpweb:/tmp/hello.txt"]);
    assert!(!o.status.success(), "{}", text(&o));

    // A stopped container's files, through its overlay.
    svc.ok(&["stop", "-t", "0", "cpweb"]);
    svc.ok(&["cp", "cpweb:/tmp/fromstdin.txt", &w("stopped.txt")]);
    assert_eq!(
        std::fs::read_to_string(work.join("stopped.txt")).unwrap(),
        "hello\n"
    );
    svc.ok(&["cp", &w("hello.txt"), "cpweb:/"]);
    svc.ok(&["start", "cpweb"]);
    assert_eq!(svc.ok(&["exec", "cpweb", "cat", "/hello.txt"]), "hello\n");
    // skiff's own cp goes through the same helper: the link stays inside.
    let cli_marker = format!("skiff-cp-cli-{}", std::process::id());
    r.ok(&[
        "cp",
        &w(&marker),
        &format!("cpweb:/tmp/hostetc/{cli_marker}"),
    ]);
    assert!(!Path::new("/etc").join(&cli_marker).exists());
    assert_eq!(
        svc.ok(&["exec", "cpweb", "cat", &format!("/etc/{cli_marker}")]),
        "x\n"
    );
    r.ok(&["cp", "cpweb:/tmp/hostetc/mark", &w("mark2")]);
    assert_eq!(
        std::fs::read_to_string(work.join("mark2")).unwrap(),
        "mine\n"
    );
    let o = r.run(&["cp", "cpweb:/etc/mark", "-"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str().unwrap(), "mark");
    svc.ok(&["rm", "-f", "cpweb"]);

    // docker export: the container's own tree, not what is mounted over it.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "expweb",
        "--network",
        "none",
        "-v",
        "expvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo v > /data/invol; echo l > /root/inlayer; exec sleep 300",
    ]);
    svc.until_exec(
        "expweb",
        &["test", "-f", "/root/inlayer"],
        "write its files",
    );
    let listing = |tar_bytes: &[u8]| -> Vec<(String, String)> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e
                    .path()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches('/')
                    .to_string();
                let mut body = Vec::new();
                if e.header().entry_type().is_file() {
                    e.read_to_end(&mut body).unwrap();
                }
                (name, String::from_utf8_lossy(&body).into_owned())
            })
            .collect()
    };
    let o = svc.docker(&["export", "expweb"]);
    assert!(o.status.success(), "{}", text(&o));
    let entries = listing(&o.stdout);
    let has = |n: &str| entries.iter().any(|(name, _)| name == n);
    assert!(
        entries
            .iter()
            .any(|e| e == &("root/inlayer".to_string(), "l\n".to_string())),
        "{entries:?}"
    );
    assert!(has("bin/sh") && has("data") && has("proc"), "{entries:?}");
    assert!(
        !entries
            .iter()
            .any(|(n, _)| n.starts_with('/') || n.starts_with("data/") || n.starts_with("proc/")),
        "mounted trees are not exported: {entries:?}"
    );
    // A stopped container, through skiff's own verb, into a file.
    svc.ok(&["stop", "-t", "0", "expweb"]);
    r.ok(&["export", "-o", &w("exp.tar"), "expweb"]);
    let entries = listing(&std::fs::read(work.join("exp.tar")).unwrap());
    assert!(
        entries
            .iter()
            .any(|e| e == &("root/inlayer".to_string(), "l\n".to_string())),
        "{entries:?}"
    );
    assert!(!entries.iter().any(|(n, _)| n.starts_with("data/")));
    let o = svc.docker(&["export", "nosuch"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("No such container"), "{}", text(&o));
    svc.ok(&["rm", "-f", "-v", "expweb"]);
    svc.ok(&["volume", "rm", "expvol"]);
}

#[test]
fn docker_events_streams_what_the_cli_and_the_api_do() {
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "events.sock", &["--time", "0"]);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // docker events, following, while skiff's own CLI runs a container.
    let mut follow = Command::new(docker_bin())
        .args([
            "events",
            "--filter",
            "type=container",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", svc.sock.display()))
        .env("DOCKER_CONFIG", svc.sock.with_extension("dockercfg"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The stream is open once the service has a follower thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named(svc.child.id(), "docker-api-even") == 0 {
        assert!(Instant::now() < deadline, "docker events did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.ok(&[
        "run",
        "--rm",
        "--name",
        "ev1",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    svc.ok(&["volume", "create", "evvol"]);
    svc.ok(&["volume", "rm", "evvol"]);
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut got = Vec::new();
    for _ in 0..4 {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut lines, &mut l).unwrap();
        got.push(l.trim().to_string());
    }
    assert_eq!(
        got,
        vec![
            "container create ev1",
            "container start ev1",
            "container die ev1",
            "container destroy ev1"
        ]
    );
    let _ = follow.kill();
    let _ = follow.wait();
    // Image events: a tag through the API, a save through skiff's own verb.
    svc.ok(&["tag", "busybox", "evtag:1"]);
    let saved = r.dir.join("evtag.tar");
    r.ok(&["save", "-o", saved.to_str().unwrap(), "evtag:1"]);
    // Replayed with --since/--until, filtered by event and by name.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = svc.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &now.to_string(),
        "--filter",
        "event=die",
        "--filter",
        "container=ev1",
        "--format",
        "{{json .}}",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["Actor"]["Attributes"]["exitCode"], "0");
    assert_eq!(v["status"], "die");
    let vols = svc.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &now.to_string(),
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]);
    assert_eq!(vols, "create evvol\ndestroy evvol\n");
    let images = svc.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &now.to_string(),
        "--filter",
        "type=image",
        "--filter",
        "event=tag",
        "--filter",
        "event=save",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.ID}}",
    ]);
    let id = svc.ok(&["image", "inspect", "-f", "{{.Id}}", "evtag:1"]);
    let id = id.trim();
    assert_eq!(images, format!("tag evtag:1 {id}\nsave evtag:1 {id}\n"));
    // skiff's own events verb reads the same journal.
    let own = r.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &now.to_string(),
        "--filter",
        "container=ev1",
    ]);
    assert_eq!(own.lines().count(), 4, "{own}");
    assert!(
        own.lines().nth(2).unwrap().contains(" container die "),
        "{own}"
    );
    assert!(own.contains("name=ev1"), "{own}");
    let o = r.run(&["events", "--filter", "bogus=1", "--until", "1"]);
    assert_eq!(o.status.code(), Some(125));
    let (status, body) = svc.raw(
        "GET",
        "/v1.50/events?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D",
    );
    assert_eq!(status, 400, "{body}");
    // docker stop --signal: the signal asked for, not the stop signal.
    svc.ok(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 3' INT; echo ready; while true; do sleep 0.1; done",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !svc.ok(&["logs", "trapper"]).contains("ready") {
        assert!(Instant::now() < deadline, "the trap was not set");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc.ok(&["stop", "--signal", "SIGINT", "-t", "20", "trapper"]);
    assert_eq!(
        svc.ok(&["inspect", "-f", "{{.State.ExitCode}}", "trapper"])
            .trim(),
        "3"
    );
    svc.ok(&["rm", "trapper"]);
    // The Python SDK's events, decoded.
    let o = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(format!(
            "import docker\nc = docker.DockerClient(base_url='unix://{}', version='auto')\nprint(len([e for e in c.events(since={start}, until={now}, decode=True, filters={{'type': 'container'}})]))",
            svc.sock.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "4");
}

#[test]
fn docker_login_checks_credentials_with_the_registry() {
    let reg = skiff_testsupport::registry::Registry::basic("alice", "s3cret");
    let r = Root::with_busybox(EXE);
    let svc = Service::start(&r, "login.sock", &["--time", "0"]);
    let o = svc.docker(&["login", "-u", "alice", "-p", "wrong", &reg.host]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("unauthorized"), "{}", text(&o));
    let (status, _) = svc.raw_json(
        "POST",
        "/v1.50/auth",
        &format!(
            r#"{{"username":"alice","password":"nope","serveraddress":"{}"}}"#,
            reg.host
        ),
    );
    assert_eq!(status, 401);
    let o = svc.docker_in(
        &["login", "-u", "alice", "--password-stdin", &reg.host],
        "s3cret\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Login Succeeded"), "{}", text(&o));
    // The CLI keeps the credentials and sends them with a push.
    let reference = format!("{}/team/bb:1", reg.host);
    svc.ok(&["tag", "busybox", &reference]);
    svc.ok(&["push", &reference]);
    // The raw API: what is missing or of the wrong type is a 400.
    let (status, body) = svc.raw_json(
        "POST",
        "/v1.50/auth",
        &format!(r#"{{"username":"alice","serveraddress":"{}"}}"#, reg.host),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = svc.raw_json("POST", "/v1.50/auth", r#"{"username":7}"#);
    assert_eq!(status, 400);
}
