//! A rough benchmark (not a test): creates, gets and lists of ConfigMaps, then creates of
//! Pods (which pass every admission plugin), over HTTP/2 with
//! many concurrent clients against an in-process server, then 1,000 watchers of a
//! 100 events/s stream. The embedded store by default; etcd with
//! `DATASTORE=http://127.0.0.1:2379` (bench/api.sh runs both side by side).
//!
//! `cargo run --release -p skiff-apiserver --example api_bench -- [CLIENTS] [OPS_PER_CLIENT]`
//! (`PHASES=create,get,list,podcreate` and `WATCHERS=1000` are the defaults; `WATCHERS=0` skips
//! the watch fan-out.)
// A benchmark tool: a panic is its error report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Sender, Box<dyn std::error::Error>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn call(
    s: &mut Sender,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, Duration), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    s.ready().await?;
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await?;
    Ok((status, start.elapsed()))
}

fn report(what: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{what:8} {:6} ops in {:6.2}s = {:8.0}/s   p50 {:6.2} ms   p99 {:6.2} ms",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let ops: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let server = skiff_apiserver::start(skiff_apiserver::ServerConfig {
        data_dir: dir.path().to_path_buf(),
        bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
        https_listen_port: 0,
        datastore_endpoint: std::env::var("DATASTORE").ok().filter(|d| !d.is_empty()),
        ..Default::default()
    })
    .await?;
    let tlsdir = dir.path().join("tls");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(tlsdir.join("server-ca.crt"))?)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_file(
            tlsdir.join("client-admin.crt"),
        )?],
        PrivateKeyDer::from_pem_file(tlsdir.join("client-admin.key"))?,
    )?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(tls);
    let mut senders = Vec::new();
    for _ in 0..clients {
        senders.push(connect(server.port, tls.clone()).await?);
    }
    // PHASES=create,get (say) runs only those; WATCHERS=0 skips the watch fan-out.
    let phases = std::env::var("PHASES").unwrap_or_else(|_| "create,get,list,podcreate".into());
    for phase in ["create", "get", "list", "podcreate"] {
        if !phases.split(',').any(|p| p == phase) {
            continue;
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (c, sender) in senders.iter().enumerate() {
            let mut s = sender.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let n = if phase == "list" { ops / 20 } else { ops };
                for i in 0..n.max(1) {
                    let (method, path, body) = match phase {
                        "create" => ("POST", "/api/v1/namespaces/default/configmaps".to_string(), Some(format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c{c}-{i}"}},"data":{{"k":"v"}}}}"#))),
                        "get" => ("GET", format!("/api/v1/namespaces/default/configmaps/c{c}-{i}"), None),
                        // Pods go through every admission plugin (service account and its
                        // token volume, LimitRanger, Priority, quota) and the pod defaults.
                        "podcreate" => ("POST", "/api/v1/namespaces/default/pods".to_string(), Some(format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{c}-{i}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox","command":["sleep","3600"]}}]}}}}"#))),
                        _ => ("GET", "/api/v1/namespaces/default/configmaps?limit=500".to_string(), None),
                    };
                    match call(&mut s, method, &path, body).await {
                        Ok((code, d)) if code < 300 => lat.push(d),
                        Ok((code, _)) => eprintln!("{phase}: HTTP {code}"),
                        Err(e) => eprintln!("{phase}: {e}"),
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await?);
        }
        report(phase, all, start.elapsed());
    }
    let watchers = watchers_from_env();
    if watchers > 0 {
        watch_fanout(&senders, watchers, 100, 5).await?;
    }
    server.shutdown().await;
    Ok(())
}

fn watchers_from_env() -> usize {
    std::env::var("WATCHERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1000)
}

/// The send time an event line carries (`"sent":"<micros>"`), read without decoding the
/// whole event: the load generator shares the server's two cores.
fn sent_time(line: &[u8]) -> Option<u128> {
    const KEY: &[u8] = b"\"sent\":\"";
    let at = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let end = line[at..].iter().position(|b| *b == b'"')? + at;
    std::str::from_utf8(&line[at..end]).ok()?.parse().ok()
}

fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}

/// `watchers` watches (multiplexed over the client connections) of a namespace that gets
/// `rate` creates per second for `secs` seconds; reports delivery latency of every event
/// to every watcher (each object carries its send time).
async fn watch_fanout(
    senders: &[Sender],
    watchers: usize,
    rate: u64,
    secs: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    use hyper::body::Body as _;
    let mut s = senders[0].clone();
    let (code, _) = call(
        &mut s,
        "POST",
        "/api/v1/namespaces",
        Some(r#"{"metadata":{"name":"watched"}}"#.into()),
    )
    .await?;
    if code >= 300 {
        return Err(format!("creating the namespace: HTTP {code}").into());
    }
    let total = (rate * secs) as usize;
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let mut s = senders[w % senders.len()].clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::builder()
                .uri("https://localhost/api/v1/namespaces/watched/configmaps?watch=1&resourceVersion=0")
                .body(Full::new(Bytes::new()))
                .ok()?;
            s.ready().await.ok()?;
            let resp = s.send_request(req).await.ok()?;
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut lat = Vec::new();
            while lat.len() < total {
                let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await?.ok()?;
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        // (Lines without a send time are not the stream's: the
                        // namespace's kube-root-ca.crt.)
                        let Some(sent) = sent_time(&line) else { continue };
                        lat.push(Duration::from_micros(now_micros().saturating_sub(sent) as u64));
                    }
                }
            }
            Some(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..total {
        ticker.tick().await;
        let body = format!(
            r#"{{"metadata":{{"name":"e{i}"}},"data":{{"sent":"{}"}}}}"#,
            now_micros()
        );
        let mut s = senders[i % senders.len()].clone();
        tokio::spawn(async move {
            let _ = call(
                &mut s,
                "POST",
                "/api/v1/namespaces/watched/configmaps",
                Some(body),
            )
            .await;
        });
    }
    let mut all = Vec::new();
    let mut complete = 0;
    for t in tasks {
        if let Ok(Ok(Some(lat))) = tokio::time::timeout(Duration::from_secs(30), t).await {
            complete += 1;
            all.extend(lat);
        }
    }
    report("watch", all, start.elapsed());
    println!("         {complete}/{watchers} watchers received all {total} events ({rate}/s for {secs}s)");
    Ok(())
}
