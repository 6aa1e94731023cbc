//! The host's skiff binary is out of a container's reach (the CVE-2019-5736 class).
//!
//! Each probe runs against a copy of the skiff binary, so a failure cannot corrupt
//! the one the other tests use. A hostile container makes skiff run inside it through
//! a `#!/proc/self/exe` script (as the public proofs of concept do), blocked on its
//! stdin so the container has all the time it needs to open `/proc/<pid>/exe`; once
//! that process is gone it tries to write the file through `/proc/self/fd`. The write
//! must fail because the file is read-only (never merely "busy", which would succeed
//! as soon as no skiff process executes it).
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_testsupport::Root;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

/// The attacker: waits for a process running skiff's `__sandbox` mode (what the
/// script makes skiff do), keeps a descriptor to its exe, and once told (/tmp/go)
/// tries to write through it. It reports through files, read from the host, since
/// its monitor is gone by then.
const VICTIM: &str = r#"
printf '#!/proc/self/exe --root\n' > /evil; chmod 755 /evil
while :; do
  for p in /proc/[0-9]*; do
    [ "$(readlink $p/exe)" = /bin/busybox ] && continue
    case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in
      *sandbox*) if (exec 3< $p/exe) 2>/dev/null; then exec 3< $p/exe; echo "$p $(readlink $p/exe)" > /tmp/grabbed; break 2; fi;;
    esac
  done
done
while [ ! -e /tmp/go ]; do sleep 0.05; done
if (echo pwned >> /proc/self/fd/3) 2>/tmp/err; then echo WROTE > /tmp/result; else echo "REFUSED $(cat /tmp/err)" > /tmp/result; fi
sleep 60
"#;

struct Copy {
    dir: PathBuf,
    exe: PathBuf,
}

impl Copy {
    fn new(tag: &str) -> Copy {
        let dir = PathBuf::from(format!(
            "/var/tmp/skiff-hostbin-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("skiff");
        std::fs::copy(EXE, &exe).unwrap();
        Copy { dir, exe }
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn state(r: &Root, c: &str, field: &str) -> i32 {
    r.ok(&["inspect", "-f", field, c]).trim().parse().unwrap()
}

/// Wait for a file in the container's root (read from the host).
fn wait_file(pid: i32, path: &str) -> String {
    let p = format!("/proc/{pid}/root{path}");
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no {p}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the attack: `trigger` starts skiff inside the victim's reach, blocked on the
/// stdin it returns a handle to. Then everything that executes the copy ends (the
/// trigger, and the victim's monitor is killed, as when a server restarts), and the
/// victim tries to write it.
fn probe(copy: &Copy, r: &Root, victim: &str, trigger: impl FnOnce() -> Child) {
    let before = std::fs::read(&copy.exe).unwrap();
    let pid = state(r, victim, "{{.State.Pid}}");
    let monitor: i32 = {
        let st: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                r.dir
                    .join("containers")
                    .join(r.ok(&["inspect", "-f", "{{.Id}}", victim]).trim())
                    .join("state.json"),
            )
            .unwrap(),
        )
        .unwrap();
        st["monitor_pid"].as_i64().unwrap() as i32
    };
    let mut child = trigger();
    let grabbed = wait_file(pid, "/tmp/grabbed");
    drop(child.stdin.take());
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(30), "trigger did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) takes integers only.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    while std::path::Path::new(&format!("/proc/{monitor}/exe")).exists()
        && std::fs::read_link(format!("/proc/{monitor}/exe")).is_ok()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(format!("/proc/{pid}/root/tmp/go"), "").unwrap();
    let out = wait_file(pid, "/tmp/result");
    assert!(
        std::fs::read(&copy.exe).unwrap() == before,
        "the binary changed: {out}"
    );
    assert!(!out.contains("WROTE"), "the host binary was written: {out}");
    assert!(
        out.contains("Read-only file system") || out.contains("Operation not permitted"),
        "grabbed {grabbed}: {out}"
    );
}

/// A hostile image: busybox plus the C library and loader the skiff binary links
/// against, so the binary can run inside it (as in the public proofs of concept,
/// which use a distribution image).
fn glibc_image(r: &Root, copy: &Copy) {
    let ctx = copy.dir.join("ctx");
    let out = std::process::Command::new("ldd")
        .arg(&copy.exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "ldd failed");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "=>", p, ..] if p.starts_with('/') => p.to_string(),
            [p, ..] if p.starts_with('/') => p.to_string(),
            _ => continue,
        };
        let dst = ctx.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&path, &dst).unwrap();
    }
    let mut df = String::from("FROM busybox\n");
    for top in std::fs::read_dir(&ctx).unwrap() {
        let n = top.unwrap().file_name().to_string_lossy().to_string();
        df.push_str(&format!("COPY {n}/ /{n}/\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    r.ok(&["build", "-q", "-t", "glibc", ctx.to_str().unwrap()]);
}

fn run_victim(r: &Root, name: &str) {
    r.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "glibc",
        "sh",
        "-c",
        VICTIM,
    ]);
}

#[test]
fn exec_helper_exe_is_read_only() {
    let copy = Copy::new("exec");
    let r = Root::with_busybox(copy.exe.to_str().unwrap());
    glibc_image(&r, &copy);
    run_victim(&r, "victim");
    probe(&copy, &r, "victim", || {
        // `skiff exec -i victim /evil __sandbox`: the kernel runs
        // `/proc/self/exe --root /evil __sandbox` inside the container.
        let mut c = r.cmd(&["exec", "-i", "victim", "/evil", "__sandbox"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    });
}

#[test]
fn container_init_in_a_shared_pid_namespace_is_read_only() {
    let copy = Copy::new("init");
    let r = Root::with_busybox(copy.exe.to_str().unwrap());
    glibc_image(&r, &copy);
    run_victim(&r, "victim2");
    // A second container in the victim's PID namespace whose entrypoint is the
    // script: its init process is what skiff's monitor forked.
    let script = copy.dir.join("evil");
    std::fs::write(&script, "#!/proc/self/exe --root\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let vol = format!("{}:/x:ro", copy.dir.display());
    probe(&copy, &r, "victim2", || {
        let mut c = r.cmd(&[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "--pid",
            "container:victim2",
            "-v",
            &vol,
            "glibc",
            "/x/evil",
            "__sandbox",
        ]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().unwrap()
    });
}

/// `skiff exec` without a terminal hands the container pipes, never the caller's own
/// files: a container process cannot reopen the file the caller's output goes to.
#[test]
fn exec_does_not_hand_host_files_into_the_container() {
    let r = Root::with_busybox(EXE);
    r.ok(&[
        "run",
        "-d",
        "--name",
        "quiet",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.txt");
    std::fs::write(&out_path, "host secret\n").unwrap();
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(&out_path)
        .unwrap();
    let st = r
        .cmd(&[
            "exec",
            "quiet",
            "sh",
            "-c",
            "readlink /proc/self/fd/1; readlink /proc/self/fd/2; echo done",
        ])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.starts_with("host secret\n"), "{text}");
    let rest = &text["host secret\n".len()..];
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 3, "{rest}");
    assert!(
        lines[0].starts_with("pipe:") && lines[1].starts_with("pipe:"),
        "stdout and stderr are pipes, not the caller's file: {rest}"
    );
    assert_eq!(lines[2], "done");
    // `run -i` alike: a file given as stdin reaches the container through a pipe.
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "from a host file\n").unwrap();
    let o = r
        .cmd(&[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "readlink /proc/self/fd/0; cat",
        ])
        .stdin(Stdio::from(std::fs::File::open(&input).unwrap()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("pipe:") && text.ends_with("\nfrom a host file\n"),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Pipes still work both ways, and the exit code comes back.
    let mut c = r.cmd(&["exec", "-i", "quiet", "sh", "-c", "tr a-z A-Z; exit 3"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "HELLO\n");
    assert_eq!(o.status.code(), Some(3));
}
