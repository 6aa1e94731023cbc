//! A real etcd for one test: on free ports, with a throw-away data directory (in
//! `/dev/shm` when there is one, since etcd fsyncs every commit), killed and removed on
//! drop, and killed by the kernel if the test process dies first.
//!
//! etcd comes from the distribution (`/usr/bin/etcd`, installed by `scripts/deps.sh`);
//! `SKIFF_ETCD_BIN` names another build, `SKIFF_ETCD_TEST_DIR` another directory for
//! its data (e.g. on disk, for the benchmark).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

/// One etcd server; killed (and its data removed) on drop.
pub struct Etcd {
    child: Child,
    /// Its client URL (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

impl Etcd {
    /// Starts etcd and waits until it accepts connections; panics (naming the cause)
    /// if it cannot.
    pub fn start() -> Etcd {
        match Etcd::try_start() {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts etcd, retrying on fresh ports if it dies at start-up (another test may
    /// have taken a port between probing and binding).
    pub fn try_start() -> Result<Etcd, String> {
        let etcd = std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| ETCD.to_string());
        if !Path::new(&etcd).exists() {
            return Err(format!(
                "{etcd} is missing: these tests need a real etcd; \
                 run scripts/deps.sh (installs etcd-server) and try again"
            ));
        }
        let mut last_error = String::new();
        for _ in 0..3 {
            match Etcd::try_once(&etcd) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(format!("etcd did not start: {last_error}"))
    }

    fn try_once(etcd: &str) -> Result<Etcd, String> {
        let e = |e: std::io::Error| e.to_string();
        let builder = || {
            let mut b = tempfile::Builder::new();
            b.prefix("skiff-etcd-");
            b
        };
        let dir = if let Some(base) = std::env::var_os("SKIFF_ETCD_TEST_DIR") {
            builder().tempdir_in(base)
        } else if Path::new("/dev/shm").is_dir() {
            builder().tempdir_in("/dev/shm")
        } else {
            builder().tempdir()
        }
        .map_err(e)?;
        let (client_listener, client_port) = free_port().map_err(e)?;
        let (peer_listener, peer_port) = free_port().map_err(e)?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).map_err(e)?;
        let mut cmd = Command::new(etcd);
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(e)?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill etcd if
        // the test process dies without running Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        drop((client_listener, peer_listener));
        let child = cmd.spawn().map_err(e)?;
        let mut server = Etcd {
            child,
            endpoint: client_url,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait().map_err(e)? {
                return Err(format!("etcd exited with {status}: {}", server.log_tail()));
            }
            if TcpStream::connect(("127.0.0.1", client_port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("etcd not answering: {}", server.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its client URLs, as a store connects to them.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }

    /// Kills etcd now (its data stays until drop).
    /// Freezes etcd (SIGSTOP): connections to it hang until [`Etcd::resume`].
    pub fn pause(&self) {
        crate::kill(self.child.id() as i32, libc::SIGSTOP);
    }

    /// Thaws a paused etcd (SIGCONT).
    pub fn resume(&self) {
        crate::kill(self.child.id() as i32, libc::SIGCONT);
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One member of a test's etcd cluster, running in a network namespace of the test's
/// at `ip` (clients on port 2379, peers on 2380); killed and its data removed on drop.
pub struct Member {
    child: Option<Child>,
    pub name: String,
    /// Its client URL (`http://IP:2379`).
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl Member {
    /// Starts member `name` at `ip` in `ns`, of the cluster whose members are `all`
    /// (name, ip). It answers once a quorum of them runs.
    pub fn start_in(
        ns: &crate::netns::NetNs,
        name: &str,
        ip: &str,
        all: &[(&str, &str)],
    ) -> Member {
        let dir = tempfile::Builder::new()
            .prefix("skiff-etcd-")
            .tempdir_in(if Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .expect("a directory for etcd");
        let client = format!("http://{ip}:2379");
        let peer = format!("http://{ip}:2380");
        let cluster: Vec<String> = all
            .iter()
            .map(|(n, i)| format!("{n}=http://{i}:2380"))
            .collect();
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let mut cmd = Command::new(std::env::var("SKIFF_ETCD_BIN").unwrap_or_else(|_| ETCD.into()));
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "skiff-test"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log);
        ns.enter(&mut cmd);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill etcd if
        // the test process dies without running Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("start etcd (scripts/deps.sh installs it)");
        Member {
            child: Some(child),
            name: name.to_string(),
            endpoint: client,
            dir,
        }
    }

    /// Kills the member at once (`kill -9`); its data stays until drop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The end of its log, for an error message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_string()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
