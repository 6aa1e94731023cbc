//! Kubernetes' WebSocket channel protocols, server side, as the kubelet's wsstream
//! speaks them: `v5.channel.k8s.io` and `v4.channel.k8s.io` (exec and attach from
//! kubectl 1.30), where every message starts with a channel byte (0 stdin, 1 stdout,
//! 2 stderr, 3 error, 4 resize; v5 adds 255: close the channel in the next byte, which
//! is how stdin's EOF travels); their base64 forms (`v4.base64.channel.k8s.io`,
//! `base64.channel.k8s.io`: text messages, the channel as an ASCII digit, the data in
//! base64); the unversioned `channel.k8s.io` (and no subprotocol at all), whose error
//! channel carries a plain message; and `SPDY/3.1+portforward.k8s.io` (port-forward
//! from kubectl 1.31), a tunnel whose binary messages carry the bytes of a SPDY
//! session. Clients may send binary channel data in text messages too.

use super::remote::{Io, Out};
use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, Role};
use tokio_tungstenite::WebSocketStream;

/// The channel protocols exec and attach speak, best first.
pub const CHANNEL_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// kubectl ≥1.31's port-forward tunnel.
pub const PORTFORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// Everything the port-forward endpoint speaks over WebSocket, best first: the SPDY
/// tunnel, then the channel protocols of the kubelet's `portforward/websocket.go`.
pub const PORTFORWARD_ALL: &[&str] = &[
    PORTFORWARD_TUNNEL,
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
];
/// What a client that offers no subprotocol gets: binary channels, unversioned.
pub const NO_PROTOCOL: &str = "";

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Wraps an upgraded connection as the server side of a WebSocket.
pub async fn accept(upgraded: Upgraded) -> Ws {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// Picks the first of `ours` that the client offered in `Sec-WebSocket-Protocol`.
pub fn negotiate<'a>(offered: &str, ours: &[&'a str]) -> Option<&'a str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    ours.iter().copied().find(|p| offered.contains(p))
}

/// How one negotiated channel protocol frames its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// Text messages with an ASCII channel digit and base64 data.
    pub base64: bool,
    /// v4 and later: the error channel carries a JSON Status (else a plain message,
    /// and nothing on success).
    pub versioned: bool,
    /// v5: channel 255 closes a channel.
    pub v5: bool,
}

impl Framing {
    pub fn of(protocol: &str) -> Framing {
        Framing {
            base64: protocol.contains("base64"),
            versioned: protocol.starts_with("v4.") || protocol.starts_with("v5."),
            v5: protocol.starts_with("v5."),
        }
    }

    /// A client message as (channel, data); None for control messages and messages
    /// that do not decode.
    pub fn decode(&self, msg: Message) -> Option<(u8, Bytes)> {
        let data: Bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            _ => return None,
        };
        if data.is_empty() {
            return None;
        }
        if self.base64 {
            let ch = data[0].checked_sub(b'0')?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&data[1..])
                .ok()?;
            Some((ch, Bytes::from(raw)))
        } else {
            Some((data[0], data.slice(1..)))
        }
    }

    /// A server message on `channel`.
    pub fn encode(&self, channel: u8, data: &[u8]) -> Message {
        if self.base64 {
            let mut t = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            t.push(char::from(b'0' + channel));
            t.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
            Message::Text(t.into())
        } else {
            let mut m = Vec::with_capacity(data.len() + 1);
            m.push(channel);
            m.extend_from_slice(data);
            Message::Binary(m.into())
        }
    }
}

/// A normal closure with its status code (a bare close frame is an error to Go's
/// client: "close 1005 (no status)").
pub async fn close<S>(sink: &mut S)
where
    S: futures::Sink<Message> + Unpin,
{
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Runs the channel protocol: client messages feed `io`'s stdin and resize channels;
/// `out` (stdout, stderr and the final status) becomes channel messages, then the
/// socket is closed.
pub async fn serve_channels(
    ws: Ws,
    protocol: &str,
    stdin: Option<mpsc::UnboundedSender<Bytes>>,
    resize: Option<mpsc::UnboundedSender<(u16, u16)>>,
    mut out: mpsc::UnboundedReceiver<Out>,
) {
    let framing = Framing::of(protocol);
    let (mut sink, mut source) = ws.split();
    let reader = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = framing.decode(msg) else {
                continue;
            };
            match ch {
                0 => {
                    if let Some(tx) = &stdin {
                        if !data.is_empty() {
                            let _ = tx.send(data);
                        }
                    }
                }
                4 => {
                    if let (Some(tx), Ok(sz)) =
                        (&resize, serde_json::from_slice::<serde_json::Value>(&data))
                    {
                        let w = sz.get("Width").and_then(|v| v.as_u64()).unwrap_or(0);
                        let h = sz.get("Height").and_then(|v| v.as_u64()).unwrap_or(0);
                        let _ = tx.send((w as u16, h as u16));
                    }
                }
                255 if framing.v5 && data.first() == Some(&0) => {
                    // stdin closed by the client.
                    stdin = None;
                }
                _ => {}
            }
        }
    });
    while let Some(o) = out.recv().await {
        let (ch, data, last) = match o {
            Out::Stdout(b) => (1u8, b.to_vec(), false),
            Out::Stderr(b) => (2u8, b.to_vec(), false),
            Out::Done(status) if framing.versioned => {
                (3u8, serde_json::to_vec(&status).unwrap_or_default(), true)
            }
            Out::Done(status) => {
                // Before v4 the error channel carries only a failure's message.
                if status["status"] == "Success" {
                    break;
                }
                let msg = status["message"]
                    .as_str()
                    .unwrap_or("error")
                    .as_bytes()
                    .to_vec();
                (3u8, msg, true)
            }
        };
        if sink.send(framing.encode(ch, &data)).await.is_err() {
            break;
        }
        if last {
            break;
        }
    }
    close(&mut sink).await;
    reader.abort();
}

/// Exec/attach over WebSocket: the [`Io`] the process side uses, and the task that
/// serves the socket.
pub fn channels_io(
    ws: Ws,
    protocol: &str,
    want_stdin: bool,
    tty: bool,
) -> (Io, tokio::task::JoinHandle<()>) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (rs_tx, rs_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let protocol = protocol.to_string();
    let task = tokio::spawn(async move {
        serve_channels(
            ws,
            &protocol,
            want_stdin.then_some(in_tx),
            tty.then_some(rs_tx),
            out_rx,
        )
        .await
    });
    (
        Io {
            stdin: want_stdin.then_some(in_rx),
            resize: tty.then_some(rs_rx),
            out: out_tx,
        },
        task,
    )
}

/// A WebSocket seen as a byte stream (binary messages in both directions), for the
/// SPDY port-forward tunnel.
pub struct Tunnel {
    ws: Ws,
    pending: Bytes,
}

impl Tunnel {
    pub fn new(ws: Ws) -> Tunnel {
        Tunnel {
            ws,
            pending: Bytes::new(),
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.ws.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(std::io::Error::other(e.to_string())))
                }
                Poll::Ready(Some(Ok(Message::Binary(b)))) => self.pending = b,
                Poll::Ready(Some(Ok(Message::Close(_)))) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Ok(_))) => {}
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.ws.poll_ready_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e.to_string()))),
            Poll::Ready(Ok(())) => {}
        }
        match self
            .ws
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(buf)))
        {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.ws
            .poll_flush_unpin(cx)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.ws
            .poll_close_unpin(cx)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_best_common_protocol() {
        assert_eq!(
            negotiate("v4.channel.k8s.io, v5.channel.k8s.io", CHANNEL_PROTOCOLS),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            negotiate("v4.channel.k8s.io", CHANNEL_PROTOCOLS),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate("channel.k8s.io", CHANNEL_PROTOCOLS),
            Some("channel.k8s.io")
        );
        assert_eq!(negotiate("x.k8s.io", CHANNEL_PROTOCOLS), None);
    }

    #[test]
    fn framings_decode_text_and_base64() {
        let v4 = Framing::of("v4.channel.k8s.io");
        assert_eq!(
            v4.decode(Message::Text("\u{0}hi\n".into())),
            Some((0, Bytes::from_static(b"hi\n")))
        );
        assert_eq!(
            v4.decode(Message::Binary(Bytes::from_static(b"\x00hi"))),
            Some((0, Bytes::from_static(b"hi")))
        );
        let b64 = Framing::of("base64.channel.k8s.io");
        assert!(!b64.versioned && b64.base64);
        assert_eq!(
            b64.decode(Message::Text("0aGkK".into())),
            Some((0, Bytes::from_static(b"hi\n")))
        );
        assert_eq!(b64.encode(1, b"hi\n"), Message::Text("1aGkK".into()));
        assert_eq!(b64.decode(Message::Text("0!!".into())), None);
        assert!(Framing::of("v5.channel.k8s.io").v5);
    }
}
