//! Integration tests of the container engine: the real skiff binary, as root,
//! starting real containers from a busybox image, each test in its own root.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_testsupport::{stderr, stdout, Root};
use std::path::Path;

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

fn root() -> Root {
    Root::with_busybox(EXE)
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// The cgroup directories recorded in a container's state.
fn cgroup_paths(r: &Root, id: &str) -> Vec<(String, String)> {
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.dir.join("containers").join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    st["cgroup"]["paths"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pid1_hostname_and_namespaces() {
    let r = root();
    let out = r.ok(&[
        "run", "--rm", "--network", "none", "-h", "box1", "busybox", "sh", "-c",
        "echo $$; hostname; for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the command is PID 1: {out}");
    assert_eq!(lines[1], "box1");
    for (i, kind) in ["pid", "mnt", "uts", "ipc", "net", "cgroup"]
        .iter()
        .enumerate()
    {
        assert_ne!(lines[2 + i], host_ns(kind), "{kind} namespace must differ");
    }
    // Default hostname: the short id.
    let id = r.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "30"]);
    let id = id.trim();
    let h = r.ok(&["exec", id, "hostname"]);
    assert_eq!(h.trim(), &id[..12]);
    let ids = r.ok(&[
        "inspect",
        "-f",
        "{{.Id}} {{.State.Status}} {{.Config.Hostname}}",
        id,
    ]);
    assert_eq!(ids.trim(), format!("{id} running {}", &id[..12]));
}

#[test]
fn exit_codes_and_errors() {
    let r = root();
    let o = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7));
    let o = r.run(&["run", "--rm", "--network", "none", "busybox", "no-such-cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("executable file not found"));
    let o = r.run(&["run", "--rm", "--network", "none", "busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = r.run(&["run", "--rm", "nosuchimage:1"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("nosuchimage"), "{}", stderr(&o));
    let o = r.run(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("invalid size"), "{}", stderr(&o));
    // Nothing is left behind by failed runs.
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");
    // Name conflicts.
    r.ok(&["create", "--name", "dup", "busybox", "true"]);
    let o = r.run(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    // exec into a stopped container.
    let o = r.run(&["exec", "dup", "true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    let o = r.run(&["rm", "nope"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("No such container: nope"));
}

#[test]
fn overlay_isolation_and_whiteouts() {
    let r = root();
    let id = r.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "rm /etc/group; echo changed > /etc/passwd; mkdir /new; sleep 60",
    ]);
    let id = id.trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = r.run(&["exec", &id, "ls", "/etc/group"]);
    assert_ne!(o.status.code(), Some(0), "deleted file is hidden");
    // Another container from the same image sees the image untouched.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat /etc/group | head -1; head -1 /etc/passwd",
    ]);
    assert_eq!(out.lines().next(), Some("root:x:0:"));
    assert!(out.contains("root:x:0:0"));
    // The deletion is a whiteout (char device 0/0) in the container's upper dir.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = r.dir.join("containers").join(&id).join("upper/etc/group");
    let md = std::fs::symlink_metadata(&wh).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    r.ok(&["rm", "-f", &id]);
}

#[test]
fn memory_limit_oom_kills_with_137() {
    let r = root();
    let o = r.run(&[
        "run",
        "--name",
        "hog",
        "--network",
        "none",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 60000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stdout(&o));
    let st = r.ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}} {{.State.Status}}",
        "hog",
    ]);
    assert_eq!(st.trim(), "true 137 exited");
}

#[test]
fn pids_limit_and_cgroup_files() {
    let r = root();
    let o = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pids-limit",
        "6",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 3 & done; wait; echo done",
    ]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("can't fork"),
        "fork beyond the limit fails: {all}"
    );

    let id = r.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "-m",
        "64m",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "60",
    ]);
    let id = id.trim();
    let paths = cgroup_paths(&r, id);
    let get = |ctrl: &str, file: &str| {
        let dir = &paths.iter().find(|(c, _)| c == ctrl).unwrap().1;
        std::fs::read_to_string(Path::new(dir).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(get("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(get("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(get("cpu", "cpu.shares"), "512");
    assert_eq!(
        get("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(get("cpuset", "cpuset.cpus"), "0");
    assert_eq!(get("pids", "pids.max"), "50");
    // The container's processes are in the group; the monitor is not.
    let procs = get("pids", "cgroup.procs");
    let pid = r.ok(&["inspect", "-f", "{{.State.Pid}}", id]);
    assert!(procs.lines().any(|l| l == pid.trim()), "{procs} vs {pid}");
    assert_eq!(procs.lines().count(), 1);
    // The group sits under a `skiff` parent beneath the engine's own cgroup.
    let mem_dir = &paths.iter().find(|(c, _)| c == "memory").unwrap().1;
    assert!(mem_dir.ends_with(&format!("/skiff/{id}")), "{mem_dir}");
    r.ok(&["rm", "-f", id]);
    for (_, d) in paths {
        assert!(!Path::new(&d).exists(), "cgroup {d} removed");
    }
}

#[test]
fn published_port_serves_http_and_conflicts_are_refused() {
    let r = root();
    let port = free_port();
    let spec = format!("{port}:80");
    r.ok(&[
        "run", "-d", "--name", "web", "-p", &spec, "busybox", "httpd", "-f", "-p", "80", "-h",
        "/var/www",
    ]);
    let body = http_get(port, "/index.html");
    assert!(body.contains("hello from skiff"), "{body}");
    let ports = r.ok(&["port", "web"]);
    assert_eq!(ports.trim(), format!("80/tcp -> 0.0.0.0:{port}"));
    let ps = r.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    // The same host port again is refused, and nothing is left of that attempt.
    let o = r.run(&["run", "-d", "-p", &spec, "busybox", "sleep", "5"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("port is already allocated"),
        "{}",
        stderr(&o)
    );
    // Containers reach each other by IP on the bridge.
    let ip = r.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let out = r.ok(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{}/index.html", ip.trim()),
    ]);
    assert!(out.contains("hello from skiff"));
    // A random host port.
    r.ok(&[
        "run", "-d", "--name", "web2", "-p", "80", "busybox", "httpd", "-f", "-p", "80", "-h",
        "/var/www",
    ]);
    let mapped = r.ok(&["port", "web2", "80"]);
    let p2: u16 = mapped.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(http_get(p2, "/index.html").contains("hello from skiff"));
    // A stopped container publishes nothing, and ps shows no ports for it (docker's).
    r.ok(&["stop", "-t", "1", "web2"]);
    let ps = r.ok(&["ps", "-a", "--no-trunc"]);
    let row = ps.lines().find(|l| l.ends_with("web2")).unwrap();
    assert!(!row.contains("->80/tcp"), "{ps}");
    r.ok(&["rm", "-f", "web", "web2"]);
    // The veths went with their namespaces.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &r.bridge])
        .output()
        .unwrap();
    assert_eq!(stdout(&links), "", "no veth left on the bridge");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no answer on port {port}");
}

#[test]
fn container_network_mode_shares_the_namespace() {
    let r = root();
    r.ok(&[
        "run", "-d", "--name", "srv", "busybox", "httpd", "-f", "-p", "8080", "-h", "/var/www",
    ]);
    let a = r.ok(&["exec", "srv", "readlink", "/proc/self/ns/net"]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--net",
        "container:srv",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; wget -qO- http://localhost:8080/index.html",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), a.trim());
    assert_eq!(lines.next().unwrap(), "hello from skiff");
    // --net host sees the host's namespace.
    let h = r.ok(&[
        "run",
        "--rm",
        "--net",
        "host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(h.trim(), host_ns("net"));
}

#[test]
fn volumes_named_anonymous_bind_and_copy_up() {
    let r = root();
    r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.trim(), "kept");
    assert!(r.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    // An empty named volume is filled from the image at its path.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "etcvol:/etc",
        "busybox",
        "cat",
        "/etc/group",
    ]);
    assert!(out.starts_with("root:x:0:"));
    // Bind mounts, read-only.
    let host = r.dir.join("bind");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h"), "from host").unwrap();
    let spec = format!("{}:/mnt/h:ro", host.display());
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /mnt/h/h; touch /mnt/h/x 2>&1 || echo ro",
    ]);
    assert!(out.contains("from host") && out.contains("ro"), "{out}");
    // Anonymous volumes go with `rm -v`.
    r.ok(&[
        "create", "--name", "anon", "-v", "/scratch", "busybox", "true",
    ]);
    let vols = r.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.lines().count(), 3, "{vols}");
    r.ok(&["rm", "-v", "anon"]);
    assert_eq!(r.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    // A volume in use is not removed.
    r.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let o = r.run(&["volume", "rm", "data"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("volume is in use"));
}

#[test]
fn logs_exec_stop_and_ps() {
    let r = root();
    let id = r.ok(&[
        "run", "-d", "--name", "talker", "--network", "none", "busybox", "sh", "-c",
        "echo one; echo two >&2; sleep 0.2; echo three; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let o = r.run(&["logs", "talker"]);
    assert_eq!(stdout(&o), "one\nthree");
    assert_eq!(stderr(&o), "two");
    let o = r.run(&["logs", "--tail", "1", "talker"]);
    assert_eq!(stdout(&o), "three");
    // The json-file format.
    let raw = std::fs::read_to_string(
        r.dir
            .join("containers")
            .join(id)
            .join(format!("{id}-json.log")),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "one\n");
    assert_eq!(first["stream"], "stdout");
    // exec: environment, working dir, user, exit code.
    let out = r.ok(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "talker",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    ]);
    assert_eq!(out.trim(), "bar /tmp 1000");
    let o = r.run(&["exec", "talker", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    // exec enters the container's cgroup.
    let cg = r.ok(&["exec", "talker", "cat", "/proc/self/cgroup"]);
    assert!(cg.lines().any(|l| l.contains(":pids:/")), "{cg}");
    let ps = r.ok(&["ps"]);
    assert!(ps
        .lines()
        .next()
        .unwrap()
        .starts_with("CONTAINER ID   IMAGE"));
    assert!(ps.contains("talker") && ps.contains("Up "), "{ps}");
    r.ok(&["stop", "-t", "5", "talker"]);
    let st = r.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "talker",
    ]);
    assert_eq!(st.trim(), "exited 0");
    assert!(!r.ok(&["ps"]).contains("talker"));
    assert!(r.ok(&["ps", "-a"]).contains("Exited (0)"));
    // Restart it and kill it.
    r.ok(&["start", "talker"]);
    r.ok(&["kill", "talker"]);
    assert_eq!(r.ok(&["wait", "talker"]).trim(), "137");
}

#[test]
fn pause_unpause_and_top() {
    let r = root();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    r.ok(&["pause", "pz"]);
    assert!(r.ok(&["ps"]).contains("(Paused)"));
    let o = r.run(&["exec", "pz", "true"]);
    assert_ne!(o.status.code(), Some(0));
    r.ok(&["unpause", "pz"]);
    let top = r.ok(&["top", "pz"]);
    assert!(top.contains("sleep 60"), "{top}");
    r.ok(&["rename", "pz", "qz"]);
    assert!(r.ok(&["ps"]).contains(" qz"));
    r.ok(&["rm", "-f", "qz"]);
}

#[test]
fn restart_policy_on_failure() {
    let r = root();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    let code = r.ok(&["wait", "flaky"]);
    assert_eq!(code.trim(), "3");
    let n = r.ok(&["inspect", "-f", "{{.RestartCount}}", "flaky"]);
    assert_eq!(n.trim(), "2");
    let o = r.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn interactive_tty_gets_a_working_shell() {
    let r = root();
    // Drive `run -it` through a pty of our own (CI has no stdin).
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let slave = pty.slave;
    let mut cmd = r.cmd(&["run", "-it", "--rm", "--network", "none", "busybox", "sh"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    use std::io::{Read, Write};
    std::thread::sleep(std::time::Duration::from_millis(500));
    master.write_all(b"tty; echo marker-$((6*7))\r").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    master.write_all(b"exit 4\r").unwrap();
    let status = child.wait().unwrap();
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut m = master;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("marker-42"), "{out}");
    assert!(
        out.contains("/dev/pts/0"),
        "the container's own devpts: {out}"
    );
    assert_eq!(status.code(), Some(4));
}

#[test]
fn security_defaults_and_overrides() {
    let r = root();
    let caps = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "grep",
        "-E",
        "CapEff|NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(
        caps.contains("CapEff:\t00000000a80425fb"),
        "docker's default set: {caps}"
    );
    // As docker: no_new_privs only when asked for (setuid binaries work).
    assert!(caps.contains("NoNewPrivs:\t0"), "{caps}");
    let caps = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(caps.contains("0000000000001000"), "{caps}");
    // Masked and read-only paths.
    let out = r.ok(&["run", "--rm", "--network", "none", "busybox", "sh", "-c", "cat /proc/kcore | wc -c; echo 1 > /proc/sys/kernel/panic 2>&1 || echo ro; touch /sys/x 2>&1 || echo sysro"]);
    assert!(
        out.lines().next() == Some("0") && out.contains("ro") && out.contains("sysro"),
        "{out}"
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>/dev/null || echo rofs; touch /scratch/y && echo tmpfs-ok",
    ]);
    assert!(out.contains("rofs") && out.contains("tmpfs-ok"), "{out}");
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "app",
        "busybox",
        "id",
    ]);
    assert_eq!(out.trim(), "uid=1000(app) gid=1000(app) groups=10(wheel)");
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "grep",
        "db",
        "/etc/hosts",
    ]);
    assert_eq!(out.trim(), "10.1.2.3\tdb");
    // Hard rlimits beyond the host's are clamped with a warning, never a failure.
    let o = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:99999999",
        "busybox",
        "sh",
        "-c",
        "ulimit -n",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1024");
}

#[test]
fn build_cache_commit_and_save_load_round_trip() {
    let r = root();
    let ctx = r.dir.join("ctx");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    std::fs::write(ctx.join("a.txt"), "one\n").unwrap();
    std::fs::write(ctx.join("d/x"), "x\n").unwrap();
    std::fs::write(ctx.join("secret.key"), "nope\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.key\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG VER=1\nENV APP=/app\nWORKDIR $APP\nCOPY . .\nRUN echo \"built $VER\" > built.txt && rm /etc/group\nENTRYPOINT [\"cat\"]\nCMD [\"built.txt\"]\n",
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let first = r.ok(&["build", "-t", "app:1", "--build-arg", "VER=7", c]);
    assert!(first.contains("Successfully tagged app:1"), "{first}");
    assert_eq!(
        r.ok(&["run", "--rm", "--network", "none", "app:1"]).trim(),
        "built 7"
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "app:1",
        "-c",
        "ls /app; ls /etc/group 2>&1; true",
    ]);
    assert!(
        out.contains("a.txt") && !out.contains("secret.key"),
        ".dockerignore applies: {out}"
    );
    assert!(
        out.contains("No such file"),
        "the RUN step's delete is a whiteout: {out}"
    );
    // Nothing changed: every step from the cache.
    let again = r.ok(&["build", "-t", "app:1", "--build-arg", "VER=7", c]);
    assert_eq!(again.matches("Using cache").count(), 7, "{again}");
    // A changed COPY source rebuilds from that step on.
    std::fs::write(ctx.join("a.txt"), "two\n").unwrap();
    let third = r.ok(&["build", "-t", "app:2", "--build-arg", "VER=7", c]);
    assert_eq!(third.matches("Using cache").count(), 3, "{third}");
    // A bad Dockerfile line names file and line.
    std::fs::write(ctx.join("Bad.Dockerfile"), "FROM busybox\nFROBNICATE x\n").unwrap();
    let o = r.run(&[
        "build",
        "-f",
        ctx.join("Bad.Dockerfile").to_str().unwrap(),
        c,
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains(":2:"), "{}", stderr(&o));
    // A failing RUN step fails the build and leaves no container behind.
    std::fs::write(ctx.join("Fail.Dockerfile"), "FROM busybox\nRUN exit 3\n").unwrap();
    let o = r.run(&[
        "build",
        "-f",
        ctx.join("Fail.Dockerfile").to_str().unwrap(),
        c,
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(r.ok(&["ps", "-aq"]).trim(), "");

    // commit: the writable layer becomes a layer; volumes are not in it.
    r.ok(&[
        "run",
        "--name",
        "src",
        "--network",
        "none",
        "-v",
        "/vol",
        "busybox",
        "sh",
        "-c",
        "echo layer > /made; echo vol > /vol/v",
    ]);
    r.ok(&["commit", "src", "snap:1"]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:1",
        "sh",
        "-c",
        "cat /made; ls /vol | wc -l",
    ]);
    assert_eq!(out.trim(), "layer\n0");
    // cp both ways, on a stopped container and a running one.
    let dest = r.dir.join("out");
    std::fs::create_dir_all(&dest).unwrap();
    r.ok(&["cp", "src:/made", dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dest.join("made")).unwrap(),
        "layer\n"
    );
    r.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    r.ok(&["cp", ctx.join("d").to_str().unwrap(), "live:/tmp/"]);
    assert_eq!(r.ok(&["exec", "live", "cat", "/tmp/d/x"]).trim(), "x");
    // cp's errors are docker's, one line each, naming the path.
    let o = r.run(&["cp", "src:/not-there", dest.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert_eq!(e.matches("Could not find the file").count(), 1, "{e}");
    assert!(e.contains("/not-there in container src"), "{e}");
    let o = r.run(&["cp", ctx.join("d").to_str().unwrap(), "live:/no/such/dir/"]);
    assert_ne!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert_eq!(
        e.matches("no such directory: /no/such/dir/").count(),
        1,
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // rmi refuses an image a running container uses, even with -f.
    let o = r.run(&["rmi", "-f", "busybox"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("being used by running container"),
        "{}",
        stderr(&o)
    );

    // save → load round trip into a fresh root.
    let archive = r.dir.join("app.tar");
    r.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    let r2 = Root::new(EXE);
    let loaded = r2.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.trim(), "Loaded image: app:1");
    assert_eq!(
        r2.ok(&["run", "--rm", "--network", "none", "app:1"]).trim(),
        "built 7"
    );
    let imgs = r2.ok(&["images"]);
    assert!(imgs.starts_with("REPOSITORY   TAG"), "{imgs}");
    let id1 = r.ok(&["inspect", "-f", "{{.Id}}", "app:1"]);
    let id2 = r2.ok(&["inspect", "-f", "{{.Id}}", "app:1"]);
    assert_eq!(id1, id2, "content-addressed ids survive the round trip");
    r.ok(&["rm", "-f", "live", "src"]);
    let pruned = r.ok(&["system", "prune", "-f"]);
    assert!(pruned.contains("Deleted"), "{pruned}");
}

#[test]
fn init_seccomp_and_stale_state() {
    let r = root();
    // --init: a reaper is PID 1 and the command's status comes through.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
    ]);
    let mut l = out.lines();
    assert!(
        l.next().unwrap().starts_with("/sbin/docker-init -- sh"),
        "{out}"
    );
    assert_ne!(l.next().unwrap(), "1");
    let o = r.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--init",
        "busybox",
        "sh",
        "-c",
        "exit 9",
    ]);
    assert_eq!(o.status.code(), Some(9));
    // The default seccomp profile denies what docker's does; unconfined lifts it.
    let out = r.ok(&["run", "--rm", "--network", "none", "busybox", "sh", "-c", "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null && echo allowed || echo denied"]);
    assert!(
        out.contains("Seccomp:\t2") && out.contains("denied"),
        "{out}"
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        "unshare -U true && echo allowed",
    ]);
    assert!(out.contains("allowed"), "{out}");
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir -p /mnt; mount -t tmpfs t /mnt && echo mounted",
    ]);
    assert!(
        out.contains("Seccomp:\t0") && out.contains("mounted"),
        "{out}"
    );

    // A monitor killed with -9: the next command reconciles the state and cleans up.
    let id = r.ok(&["run", "-d", "--network", "none", "busybox", "sleep", "60"]);
    let id = id.trim().to_string();
    let paths = cgroup_paths(&r, &id);
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.dir.join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let mon = st["monitor_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) takes integers only.
    unsafe { libc::kill(mon, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ps = r.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (255)"), "{ps}");
    for (_, d) in paths {
        assert!(!Path::new(&d).exists(), "stale cgroup {d} cleaned");
    }
    let err = r.ok(&["inspect", "-f", "{{.State.Error}}", &id]);
    assert!(err.contains("monitor"), "{err}");
}

#[test]
fn user_defined_network_resolves_names() {
    let r = root();
    let n = r.table.trim_start_matches("skt").to_string();
    let net = format!("net{n}");
    // A subnet next to the root's default one.
    let base: Vec<&str> = r.cidr.split('.').collect();
    let subnet = format!("10.{}.{}.0/24", base[1], 250 - (n.len() % 5));
    r.ok(&["network", "create", "--subnet", &subnet, &net]);
    let ls = r.ok(&["network", "ls"]);
    assert!(
        ls.contains(&net) && ls.contains("bridge") && ls.contains("host") && ls.contains("none"),
        "{ls}"
    );
    // docker's network filters (the same as the Docker API's) and --format.
    let names = |args: &[&str]| {
        let mut a = vec!["network", "ls", "--format", "{{.Name}} {{.Driver}}"];
        a.extend_from_slice(args);
        r.ok(&a).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(
        names(&["--filter", "type=builtin"]),
        ["bridge bridge", "host host", "none null"]
    );
    assert_eq!(
        names(&["--filter", "type=custom"]),
        [format!("{net} bridge")]
    );
    assert_eq!(
        names(&["--filter", "dangling=true"]),
        [format!("{net} bridge")]
    );
    assert_eq!(
        names(&[
            "--filter",
            &format!("name={net}"),
            "--filter",
            "driver=bridge"
        ]),
        [format!("{net} bridge")]
    );
    assert!(names(&["--filter", "label=nope"]).is_empty());
    let o = r.run(&["network", "ls", "--filter", "type=weird"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid filter"), "{}", stderr(&o));
    r.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        &net,
        "--network-alias",
        "database",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    ]);
    let out = r.ok(&[
        "run", "--rm", "--network", &net, "busybox", "sh", "-c",
        "head -1 /etc/resolv.conf; wget -qO- http://db/index.html; wget -qO- http://database/index.html",
    ]);
    assert_eq!(
        out,
        "nameserver 127.0.0.11\nhello from skiff\nhello from skiff\n"
    );
    let members = r.ok(&["network", "inspect", "-f", "{{json .Containers}}", &net]);
    assert!(members.contains("\"Name\":\"db\""), "{members}");
    // The default bridge has no name resolution, as in docker.
    let o = r.run(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        "-T",
        "2",
        "http://db/index.html",
    ]);
    assert_ne!(o.status.code(), Some(0));
    // connect / disconnect a running container.
    r.ok(&["run", "-d", "--name", "web", "busybox", "sleep", "60"]);
    r.ok(&["network", "connect", &net, "web"]);
    let addrs = r.ok(&["exec", "web", "ip", "-4", "-o", "addr"]);
    assert!(addrs.contains("eth1"), "{addrs}");
    r.ok(&["network", "disconnect", &net, "web"]);
    let addrs = r.ok(&["exec", "web", "ip", "-4", "-o", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");
    // In use: refused; then removed with its bridge.
    let o = r.run(&["network", "rm", &net]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("active endpoints"));
    r.ok(&["rm", "-f", "db", "web"]);
    let inspect = r.ok(&["network", "ls", "-q", "--no-trunc"]);
    assert_eq!(inspect.lines().count(), 4);
    // A user-defined network's bridge is br-<first 12 of its id>, as docker's.
    let id = r.ok(&["network", "inspect", "-f", "{{.Id}}", &net]);
    let br = format!("br-{}", &id.trim()[..12]);
    assert!(
        stdout(
            &std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
        )
        .contains(&br),
        "bridge {br} exists"
    );
    r.ok(&["network", "rm", &net]);
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!stdout(&links).contains(&br), "bridge {br} removed");
}

#[test]
fn attach_to_a_detached_container_with_stdin() {
    let r = root();
    r.ok(&[
        "run",
        "-di",
        "--name",
        "att",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done; echo bye; exit 3",
    ]);
    let mut cmd = r.cmd(&["attach", "att"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"one\ntwo\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "got one\ngot two\nbye\n"
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err one\nerr two\n");
    let o = r.run(&["attach", "att"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("start it first"), "{}", stderr(&o));
}

#[test]
fn sharing_links_devices_and_more_run_flags() {
    let r = root();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "base",
        "-v",
        "/shared",
        "busybox",
        "sh",
        "-c",
        "echo from-base > /shared/f; sleep 60",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // --volumes-from, --pid container:, --ipc container:, --link.
    let out = r.ok(&[
        "run", "--rm", "--volumes-from", "base", "--pid", "container:base", "--ipc", "container:base",
        "--link", "base:db", "busybox", "sh", "-c",
        "cat /shared/f; ps -o comm | grep -c sleep; readlink /proc/self/ns/ipc; grep -w db /etc/hosts | wc -l",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-base");
    assert_eq!(lines[1], "1", "sees base's processes: {out}");
    let base_ipc = r.ok(&["exec", "base", "readlink", "/proc/self/ns/ipc"]);
    assert_eq!(lines[2], base_ipc.trim());
    assert_eq!(lines[3], "1", "link alias in /etc/hosts: {out}");
    // --uts host.
    let h = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--uts",
        "host",
        "busybox",
        "hostname",
    ]);
    assert_eq!(h.trim(), nix_hostname());
    // --device with the host's numbers.
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        "/dev/null:/dev/mynull",
        "busybox",
        "sh",
        "-c",
        "ls -l /dev/mynull; echo x > /dev/mynull && echo ok",
    ]);
    assert!(out.contains("1,") && out.contains("ok"), "{out}");
    // logs -t and -f.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.2; done",
    ]);
    let o = r.run(&["logs", "-f", "counter"]);
    assert_eq!(stdout(&o), "n1\nn2\nn3", "follow until the container exits");
    let o = r.ok(&["logs", "-t", "counter"]);
    assert!(
        o.lines().all(|l| l.contains("T") && l.contains("Z n")),
        "{o}"
    );
    // stats --no-stream reads the cgroup counters.
    let s = r.ok(&["stats", "--no-stream", "base"]);
    assert!(s.starts_with("CONTAINER ID   NAME"), "{s}");
    assert!(s.contains("base") && s.contains("iB / "), "{s}");
    // restart always + system boot brings it back.
    r.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "--network",
        "none",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "60",
    ]);
    r.ok(&["stop", "-t", "0", "svc"]);
    assert!(r.ok(&["ps", "-a"]).contains("Exited"));
    let booted = r.ok(&["system", "boot"]);
    assert!(booted.contains("svc"), "{booted}");
    let st = r.ok(&["inspect", "-f", "{{.State.Status}}", "svc"]);
    assert_eq!(st.trim(), "running");
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// What images that run as a user rely on, as docker sets it up: device nodes 0666,
/// setuid binaries working unless `--security-opt no-new-privileges`, unprivileged
/// ICMP allowed, /sys/fs/cgroup read-only and rooted at the container's own cgroup,
/// and device nodes from the image keeping their modes.
#[test]
fn user_processes_get_dockers_defaults() {
    let r = root();
    let ctx = r.dir.join("suid-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN mkdir /suid && cp /bin/busybox /suid/busybox && chmod 4755 /suid/busybox && mknod -m 640 /imgdev c 1 3\n",
    )
    .unwrap();
    r.ok(&["build", "-q", "-t", "suid", ctx.to_str().unwrap()]);
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "1000:1000",
        "suid",
        "sh",
        "-c",
        "stat -c '%a %n' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /imgdev; \
         echo x > /dev/null && echo null-writable; \
         grep NoNewPrivs /proc/self/status; \
         cat /proc/sys/net/ipv4/ping_group_range; \
         /suid/busybox ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 && echo setuid-ping-ok",
    ]);
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(out.contains(&format!("666 /dev/{dev}")), "{dev}: {out}");
    }
    assert!(
        out.contains("640 /imgdev"),
        "the image's device keeps its mode: {out}"
    );
    assert!(out.contains("null-writable"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.contains("0\t2147483647"), "{out}");
    assert!(out.contains("setuid-ping-ok"), "{out}");
    let out = r.ok(&[
        "run", "--rm", "--network", "none", "-u", "1000:1000", "--security-opt",
        "no-new-privileges", "suid", "sh", "-c",
        "grep NoNewPrivs /proc/self/status; /suid/busybox ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 && echo setuid-ping-ok || echo setuid-refused",
    ]);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("setuid-refused"), "{out}");
    // exec'd processes follow the container's setting.
    let id = r.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--security-opt",
        "no-new-privileges",
        "suid",
        "sleep",
        "60",
    ]);
    let out = r.ok(&["exec", id.trim(), "grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // /sys/fs/cgroup: read-only, each hierarchy rooted at the container's cgroup.
    let out = r.ok(&[
        "run", "--rm", "--network", "none", "--memory", "64m", "busybox", "sh", "-c",
        "touch /sys/fs/cgroup/x 2>&1 || true; \
         if [ -e /sys/fs/cgroup/cgroup.controllers ]; then cat /sys/fs/cgroup/memory.max; \
         else cat /sys/fs/cgroup/memory/memory.limit_in_bytes; mkdir /sys/fs/cgroup/memory/sub 2>&1 || true; fi",
    ]);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        out.contains("67108864"),
        "the container's own limit at the root: {out}"
    );
    let out = r.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "mount | grep ' /sys/fs/cgroup' | head -3",
    ]);
    assert!(!out.contains("(ro"), "rw when privileged: {out}");
}

/// `skiff volume ls` with docker's filters (the same as the Docker API's) and
/// `--format`.
#[test]
fn volume_ls_filters_and_formats_as_docker() {
    let r = root();
    r.ok(&["volume", "create", "--label", "tier=db", "dbdata"]);
    r.ok(&["volume", "create", "cache"]);
    r.ok(&[
        "create",
        "--name",
        "user",
        "--network",
        "none",
        "-v",
        "dbdata:/d",
        "busybox",
        "true",
    ]);
    let names = |args: &[&str]| {
        let mut a = vec!["volume", "ls", "-q"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = r.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["cache", "dbdata"]);
    assert_eq!(names(&["--filter", "dangling=true"]), ["cache"]);
    assert_eq!(names(&["--filter", "dangling=false"]), ["dbdata"]);
    assert_eq!(names(&["--filter", "label=tier=db"]), ["dbdata"]);
    assert_eq!(names(&["--filter", "name=ach"]), ["cache"]);
    assert_eq!(
        names(&["--filter", "name=cache", "--filter", "name=dbdata"]),
        ["cache", "dbdata"]
    );
    assert_eq!(
        names(&["--filter", "driver=local", "--filter", "label=tier"]),
        ["dbdata"]
    );
    assert_eq!(
        r.ok(&[
            "volume",
            "ls",
            "--filter",
            "name=dbdata",
            "--format",
            "{{.Name}} {{.Label \"tier\"}} {{.Labels}}"
        ])
        .trim(),
        "dbdata db tier=db"
    );
    let table = r.ok(&["volume", "ls", "--filter", "name=cache"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("DRIVER") && lines[0].ends_with("VOLUME NAME"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("local") && lines[1].ends_with("cache"),
        "{table}"
    );
    for (bad, says) in [
        ("bogus=1", "invalid filter 'bogus'"),
        ("dangling=maybe", "dangling=maybe"),
        ("name=da.*", "only plain names"),
    ] {
        let o = r.run(&["volume", "ls", "--filter", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
    r.ok(&["rm", "user"]);
    r.ok(&["volume", "rm", "dbdata", "cache"]);
}

/// `skiff images` with docker's filters (the same as the Docker API's) and `--format`
/// (docker's fields and template functions, `table`, `json`).
#[test]
fn images_filter_and_format_as_docker() {
    let r = root();
    r.ok(&["tag", "busybox", "team/web:1.0"]);
    r.ok(&["tag", "busybox", "team/web:2.0"]);
    r.ok(&[
        "create",
        "--name",
        "base",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    r.ok(&["commit", "-c", "LABEL tier=db", "base", "team/db:1"]);
    let rows = |args: &[&str]| {
        let mut a = vec!["images"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--format", "{{.Repository}}:{{.Tag}}"]);
        let mut v: Vec<String> = r.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(
        rows(&["--filter", "reference=team/web"]),
        ["team/web:1.0", "team/web:2.0"]
    );
    assert_eq!(
        rows(&["--filter", "reference=team/*:1.*"]),
        ["team/web:1.0"]
    );
    // Several references are ORed; a repository argument is one more.
    assert_eq!(
        rows(&[
            "--filter",
            "reference=team/db",
            "--filter",
            "reference=busybox"
        ]),
        ["busybox:latest", "team/db:1"]
    );
    assert_eq!(rows(&["team/db"]), ["team/db:1"]);
    assert_eq!(rows(&["--filter", "label=tier=db"]), ["team/db:1"]);
    assert_eq!(rows(&["--filter", "label=tier"]), ["team/db:1"]);
    assert_eq!(rows(&["--filter", "since=busybox"]), ["team/db:1"]);
    assert!(!rows(&["--filter", "before=team/db:1"]).contains(&"team/db:1".to_string()));
    assert!(rows(&["--filter", "dangling=true"]).is_empty());
    // docker's template functions and fields.
    let id = r.ok(&["images", "-q", "team/db"]).trim().to_string();
    assert_eq!(
        r.ok(&[
            "images",
            "team/db",
            "--format",
            "{{.Repository | upper}} {{truncate .ID 5}} {{.Digest}}"
        ])
        .trim(),
        format!("TEAM/DB {} <none>", &id[..5])
    );
    let table = r.ok(&[
        "images",
        "team/db",
        "--format",
        "table {{.Repository}}\t{{.Tag}}",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].ends_with("TAG"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("team/db") && lines[1].ends_with('1'),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(r.ok(&["images", "team/db", "--format", "json"]).trim()).unwrap();
    assert_eq!(
        (json["Repository"].as_str(), json["Tag"].as_str()),
        (Some("team/db"), Some("1"))
    );
    // `image ls` is the same command.
    assert_eq!(
        r.ok(&["image", "ls", "--filter", "label=tier=db", "-q"])
            .trim(),
        id
    );
    // Bad filters and templates are refused, naming what was wrong.
    for (bad, says) in [
        ("bogus=1", "invalid filter 'bogus'"),
        ("dangling=maybe", "dangling=maybe"),
        ("before=nosuch", "No such image: nosuch"),
        ("nofilter", "bad format of filter"),
    ] {
        let o = r.run(&["images", "--filter", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
    let o = r.run(&["images", "--format", "{{truncate .ID}}"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("wrong number of args for truncate"),
        "{}",
        stderr(&o)
    );
    r.ok(&["rm", "base"]);
    r.ok(&["rmi", "team/db:1", "team/web:1.0", "team/web:2.0"]);
}

#[test]
fn ps_filters_limits_and_formats_as_docker() {
    let r = root();
    r.ok(&[
        "create", "--name", "aa1", "--label", "x=1", "--label", "y=2", "busybox", "true",
    ]);
    // Created a moment later: newest first in every listing.
    std::thread::sleep(std::time::Duration::from_millis(20));
    r.ok(&[
        "create", "--name", "aa2", "--label", "x=1", "busybox", "true",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    r.ok(&[
        "run",
        "-d",
        "--name",
        "run3",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ]);
    let names = |args: &[&str]| {
        let mut a = vec!["ps"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--format", "{{.Names}}"]);
        r.ok(&a).lines().map(str::to_string).collect::<Vec<_>>()
    };
    // Labels must all match; names match any of their values.
    assert_eq!(
        names(&["-a", "--filter", "label=x=1", "--filter", "label=y=2"]),
        ["aa1"]
    );
    assert_eq!(
        names(&["-a", "--filter", "name=aa1", "--filter", "name=aa2"]),
        ["aa2", "aa1"]
    );
    assert_eq!(names(&[]), ["run3"]);
    assert_eq!(names(&["--filter", "status=created"]), ["aa2", "aa1"]);
    assert_eq!(names(&["-n", "2"]), ["run3", "aa2"]);
    assert_eq!(names(&["-l"]), ["run3"]);
    // Templates: fields, a label, and a table with docker's headers.
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "--filter",
            "name=aa1",
            "--format",
            "{{.State}} {{.Label \"y\"}} {{.Labels}}"
        ])
        .trim(),
        "created 2 x=1,y=2"
    );
    let table = r.ok(&["ps", "--format", "table {{.Names}}\t{{.State}}"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("NAMES") && lines[0].contains("STATE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("run3") && lines[1].ends_with("running"),
        "{table}"
    );
    let sized = r.ok(&["ps", "-s", "--format", "{{.Size}}"]);
    assert!(sized.contains("(virtual "), "{sized}");
    // Bad filters are refused, as docker's daemon refuses them.
    for bad in ["bogus=1", "status=nope", "before=nosuch", "nofilter"] {
        let o = r.run(&["ps", "--filter", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{bad}");
    }
    r.ok(&["rm", "-f", "aa1", "aa2", "run3"]);
}
