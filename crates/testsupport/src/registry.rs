//! A real Distribution registry (Debian's `docker-registry`, 2.8) for one test: on a free
//! loopback port, with its own storage directory, plain HTTP, `htpasswd` basic auth
//! (bcrypt, generated here), TLS with a test CA, or token auth with a small token server
//! in this process signing JWTs (ES256, its certificate in the `x5c` header and in the
//! registry's `rootcertbundle`). Killed and removed on drop, and killed by the kernel if
//! the test process dies first.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// How the registry authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// `auth: htpasswd` with one user.
    Basic {
        user: String,
        password: String,
    },
    /// `auth: token` with a token server here: `user`/`password` get pull and push on
    /// every repository; anonymous requests get pull on the repositories in `public`.
    Token {
        user: String,
        password: String,
        public: Vec<String>,
    },
}

/// A test CA and a serving certificate for 127.0.0.1 and localhost, in PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "skiff test registry CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        leaf.subject_alt_names = vec![
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
            SanType::DnsName("localhost".try_into().unwrap()),
        ];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// One registry; killed and removed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, the host part of image references.
    pub host: String,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub url: String,
    /// The CA that signed its certificate, for TLS registries.
    pub ca: Option<TestCa>,
    pub dir: tempfile::TempDir,
    token_server: Option<TokenServer>,
}

fn free_port() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

impl Registry {
    /// A plain-HTTP registry without authentication.
    pub fn plain() -> Registry {
        Registry::start(Auth::None, false)
    }

    /// A registry with `auth: htpasswd` for `user`.
    pub fn basic(user: &str, password: &str) -> Registry {
        Registry::start(
            Auth::Basic {
                user: user.into(),
                password: password.into(),
            },
            false,
        )
    }

    /// A registry serving TLS with a test CA ([`Registry::ca`]).
    pub fn tls() -> Registry {
        Registry::start(Auth::None, true)
    }

    /// Starts a registry; panics naming the cause if it cannot.
    pub fn start(auth: Auth, tls: bool) -> Registry {
        assert!(
            Path::new(REGISTRY).exists(),
            "{REGISTRY} is missing: these tests need Debian's docker-registry; run scripts/deps.sh"
        );
        let mut last = String::new();
        for _ in 0..3 {
            match Registry::try_once(&auth, tls) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    fn try_once(auth: &Auth, tls: bool) -> Result<Registry, String> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let (listener, port) = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: skiff-test-secret\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if tls {
            let c = TestCa::new();
            std::fs::write(dir.path().join("server.crt"), &c.cert_pem).unwrap();
            std::fs::write(dir.path().join("server.key"), &c.key_pem).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
            ca = Some(c);
        }
        let mut token_server = None;
        match auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                let hash = bcrypt::hash(password, 5).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            Auth::Token {
                user,
                password,
                public,
            } => {
                let ts = TokenServer::start(user, password, public);
                std::fs::write(dir.path().join("token.crt"), &ts.cert_pem).unwrap();
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: skiff-test-registry\n    issuer: skiff-test-issuer\n    rootcertbundle: {}\n",
                    ts.port,
                    dir.path().join("token.crt").display()
                ));
                token_server = Some(ts);
            }
        }
        std::fs::write(dir.path().join("config.yml"), &config).unwrap();
        drop(listener);
        let child = spawn(dir.path())?;
        let scheme = if tls { "https" } else { "http" };
        let mut r = Registry {
            child,
            url: format!("{scheme}://{host}"),
            host,
            ca,
            dir,
            token_server,
        };
        r.wait_ready()?;
        Ok(r)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if TcpStream::connect(&self.host).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not answering: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the registry again (after [`Registry::kill`]) on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.dir.path()).unwrap();
        if let Err(e) = self.wait_ready() {
            panic!("docker-registry did not restart: {e}");
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry stores its data.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the CA as docker's `certs.d/HOST:PORT/ca.crt` under `config_dir`.
    pub fn install_ca(&self, config_dir: &Path) {
        let ca = self.ca.as_ref().expect("not a TLS registry");
        let d = config_dir.join("certs.d").join(&self.host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("ca.crt"), &ca.ca_pem).unwrap();
    }

    /// Kills the registry now (the directory stays until drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        if let Some(ts) = self.token_server.take() {
            ts.stop();
        }
    }
}

/// Runs `docker-registry serve DIR/config.yml`, logging to `DIR/registry.log`.
fn spawn(dir: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(REGISTRY);
    cmd.arg("serve")
        .arg(dir.join("config.yml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the registry
    // if the test process dies without running Drop.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| e.to_string())
}

/// The token server of `auth: token`: `GET /token?service=...&scope=...`.
struct TokenServer {
    port: u16,
    cert_pem: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    fn start(user: &str, password: &str, public: &[String]) -> TokenServer {
        use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "skiff test token issuer");
        let cert = params.self_signed(&key).unwrap();
        let signing = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, user, password, public) = (
            stop.clone(),
            user.to_string(),
            password.to_string(),
            public.to_vec(),
        );
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = answer_token(s, &signing, &x5c, &user, &password, &public);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenServer {
            port,
            cert_pem: cert.pem(),
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn answer_token(
    mut s: TcpStream,
    key: &jsonwebtoken::EncodingKey,
    x5c: &str,
    user: &str,
    password: &str,
    public: &[String],
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut authz = None;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authz = Some(v.trim().to_string()),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let who = match authz.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        Some(b64) => {
            let dec = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let dec = String::from_utf8_lossy(&dec).to_string();
            if dec == format!("{user}:{password}") {
                Some(user.to_string())
            } else {
                let msg = r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#;
                write!(
                    s,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                )?;
                return Ok(());
            }
        }
        None => None,
    };
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for kv in query.split('&') {
        let Some(("scope", v)) = kv.split_once('=') else {
            continue;
        };
        let scope = percent_decode(v);
        for one in scope.split(' ') {
            let parts: Vec<&str> = one.split(':').collect();
            if parts.len() < 3 || parts[0] != "repository" {
                continue;
            }
            let name = parts[1..parts.len() - 1].join(":");
            let wanted: Vec<&str> = parts[parts.len() - 1].split(',').collect();
            let granted: Vec<&str> = wanted
                .into_iter()
                .filter(|a| who.is_some() || (*a == "pull" && public.contains(&name)))
                .collect();
            access
                .push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "skiff-test-issuer",
        "sub": who.clone().unwrap_or_default(),
        "aud": "skiff-test-registry",
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![x5c.to_string()]);
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let out =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
        out.len()
    )?;
    s.flush()
}
