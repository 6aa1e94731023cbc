//! Port forwarding into a pod (`portforward.k8s.io` over SPDY): kubectl opens an
//! error stream and a data stream per forwarded connection, paired by `requestid`;
//! the agent connects to `localhost:PORT` inside the pod's network namespace and
//! copies bytes both ways, as the kubelet's CRI runtimes do. Over a plain WebSocket
//! (the kubelet's `portforward/websocket.go`) the ports come in the query and each
//! gets a data channel (2i) and an error channel (2i+1), each opened by the server
//! with the port as two little-endian bytes.

use super::spdy::{self, Stream, Writer};
use super::ws::{self, Framing};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves one port-forward session for the pod whose infra process is `pid`.
pub async fn serve<IO>(conn: IO, pid: i32, pod: String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (writer, mut streams) = spdy::serve(conn);
    let mut pending: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(s) = streams.recv().await {
        let rid = spdy::header(&s.headers, "requestid")
            .map(String::from)
            .unwrap_or_else(|| {
                // Clients without request ids open error then data streams back to back.
                let base = if spdy::header(&s.headers, "streamtype") == Some("data") {
                    s.id.saturating_sub(2)
                } else {
                    s.id
                };
                base.to_string()
            });
        let entry = pending.entry(rid.clone()).or_default();
        match spdy::header(&s.headers, "streamtype") {
            Some("error") => entry.0 = Some(s),
            Some("data") => entry.1 = Some(s),
            _ => {
                writer.reset(s.id);
                continue;
            }
        }
        if entry.0.is_some() && entry.1.is_some() {
            if let Some((Some(err), Some(data))) = pending.remove(&rid) {
                let port = spdy::header(&data.headers, "port")
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(0);
                tokio::spawn(forward(writer.clone(), err, data, port, pid, pod.clone()));
            }
        }
    }
    writer.goaway();
}

/// Serves port-forward over a plain WebSocket with channel framing `protocol`: one
/// connection to each of `ports` inside the pod, for the life of the socket.
pub async fn serve_channels(sock: ws::Ws, protocol: &str, ports: Vec<u16>, pid: i32, pod: String) {
    use tokio_tungstenite::tungstenite::protocol::Message;
    let framing = Framing::of(protocol);
    let (mut sink, mut source) = sock.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    for (i, port) in ports.iter().enumerate() {
        let p = port.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            let _ = out_tx.send(framing.encode(ch, &p));
        }
    }
    // One connection per port; what the client sends on a data channel goes to it.
    let mut to_pod: Vec<Option<tokio::sync::mpsc::UnboundedSender<bytes::Bytes>>> = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        to_pod.push(Some(tx));
        let out = out_tx.clone();
        let pod = pod.clone();
        let data_ch = 2 * i as u8;
        tokio::spawn(async move {
            let tcp = match connect_in_netns(pid, port).await {
                Ok(t) => t,
                Err(e) => {
                    let msg = format!(
                        "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside namespace of the pod: {e}"
                    );
                    let _ = out.send(framing.encode(data_ch + 1, msg.as_bytes()));
                    return;
                }
            };
            let (mut rd, mut wr) = tcp.into_split();
            let up = async move {
                while let Some(b) = rx.recv().await {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let down = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.send(framing.encode(data_ch, &buf[..n])).is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            tokio::join!(up, down);
        });
    }
    drop(out_tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        ws::close(&mut sink).await;
    });
    while let Some(Ok(msg)) = source.next().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
        let Some((ch, data)) = framing.decode(msg) else {
            continue;
        };
        // Data channels only (the error channels are ours to write).
        if ch % 2 == 0 {
            if let Some(Some(tx)) = to_pod.get(usize::from(ch / 2)) {
                let _ = tx.send(data);
            }
        }
    }
    // The client went away: end every connection.
    to_pod.clear();
    writer.abort();
}

async fn forward(w: Writer, err: Stream, mut data: Stream, port: u16, pid: i32, pod: String) {
    let tcp = match connect_in_netns(pid, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {pod}: failed to connect to localhost:{port} inside namespace of the pod: {e}"
            );
            w.data(err.id, msg.as_bytes());
            w.fin(err.id);
            w.fin(data.id);
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let to_pod = async move {
        while let Some(b) = data.data.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let w2 = w.clone();
    let data_id = data.id;
    let from_pod = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !w2.data(data_id, &buf[..n]) {
                        break;
                    }
                }
            }
        }
        w2.fin(data_id);
    };
    tokio::join!(to_pod, from_pod);
    w.fin(err.id);
}

/// Connects to 127.0.0.1:`port` in the network namespace of process `pid` (a fresh
/// thread enters the namespace, so no pooled thread is left in it).
pub async fn connect_in_netns(pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let s = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(5),
            )?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let s = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(s)
}
