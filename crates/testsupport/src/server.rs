//! `skiff server` as a user starts it (no node agent, on a free port of 127.0.0.1),
//! and the real kubectl against it. A [`Server`] is stopped (SIGTERM, waited for) on
//! drop; its log is kept for failure messages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// The command of `skiff server --disable-agent` (binary `exe`) listening on a free
/// port of 127.0.0.1, with its data in `data_dir`, its admin kubeconfig written to
/// `kubeconfig`, and `extra` flags; its standard error is piped.
pub fn command(exe: &str, data_dir: &Path, kubeconfig: &Path, extra: &[String]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([
        "server",
        "--disable-agent",
        "--https-listen-port",
        "0",
        "--bind-address",
        "127.0.0.1",
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .arg("--write-kubeconfig")
    .arg(kubeconfig)
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// A started server.
pub struct Server {
    pub child: Child,
    /// Its first line: the port and the join token.
    pub banner: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `cmd` (see [`command`]) and waits for its banner.
    pub fn start(mut cmd: Command) -> Server {
        let mut child = cmd.spawn().expect("start skiff server");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut early = Vec::new();
        let banner = read_banner(&mut stderr, &mut early);
        let log = Arc::new(Mutex::new(String::from_utf8_lossy(&early).to_string()));
        let sink = log.clone();
        // Keep draining its log, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for l in stderr.lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
        let server = Server { child, banner, log };
        assert!(server.banner.contains("API on port"), "{}", server.banner);
        server
    }

    /// What it has logged after its banner.
    pub fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Kills it at once (`kill -9`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        crate::kill(self.child.id() as i32, libc::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The API port a server's banner names (`… API on port N; …`).
pub fn banner_port(banner: &str) -> String {
    banner
        .split("API on port ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// The join token a server's banner ends with.
pub fn banner_token(banner: &str) -> String {
    banner
        .split("join token ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Runs kubectl with the kubeconfig `dir/kubeconfig` and the cache `dir/cache`.
pub fn kubectl(dir: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl is installed (see README)")
}

/// kubectl against the server whose kubeconfig is in `dir`; its output, failing the
/// test (with kubectl's error) if it fails.
pub fn kubectl_ok(dir: &Path, args: &[&str]) -> String {
    let o = kubectl(dir, args);
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Reads the server's stderr up to its banner line (`skiff server: API on port …`),
/// copying the log lines before it to `early`; panics if the server exits first, with
/// the last lines it wrote.
pub fn read_banner(stderr: &mut impl BufRead, early: &mut impl std::io::Write) -> String {
    let mut line = String::new();
    let mut last: std::collections::VecDeque<String> = Default::default();
    loop {
        line.clear();
        let n = stderr
            .read_line(&mut line)
            .expect("read the server's stderr");
        assert!(
            n > 0,
            "the server exited before its banner; it wrote:\n{}",
            last.iter().map(String::as_str).collect::<String>()
        );
        if last.len() == 20 {
            last.pop_front();
        }
        last.push_back(line.clone());
        if line.contains("API on port") {
            return line;
        }
        let _ = early.write_all(line.as_bytes());
    }
}
