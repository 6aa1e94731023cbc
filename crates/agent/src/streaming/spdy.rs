//! The server side of SPDY/3.1 as Kubernetes streaming uses it (kubectl's exec and
//! attach before 1.30, and every port-forward): framing, the zlib-compressed header
//! blocks with SPDY's dictionary, streams opened by the client (SYN_STREAM, answered
//! with SYN_REPLY), data with FIN for half-close, PING echo, GOAWAY.
//!
//! A session ([`serve`]) runs over any byte stream (an upgraded HTTP/1.1 connection, or a
//! WebSocket tunnel carrying SPDY as kubectl ≥1.31 does for port-forward). It hands
//! out each new [`Stream`] with its headers; data written with [`Writer`] goes out as
//! DATA frames. Flow control (WINDOW_UPDATE) is not enforced by Go's spdystream
//! client, and we announce no window limits either.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 1;
/// The largest frame we accept (SPDY's length field is 24 bits).
const MAX_FRAME: usize = 1 << 24;

/// The header compression dictionary of SPDY draft 3 (section 2.6.10.1): a run of
/// length-prefixed words, then a block of plain text.
fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TEXT: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1500);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TEXT.as_bytes());
    d
}

/// Header names and values of a stream (names are lower-case in SPDY).
pub type Headers = Vec<(String, String)>;

/// Looks a header up (first value).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One frame, decoded.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Data { stream: u32, fin: bool, data: Bytes },
    Control { kind: u16, flags: u8, body: Bytes },
}

/// Reads one frame (None at a clean end of the connection).
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len >= MAX_FRAME {
        return Err(invalid("frame too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let body = Bytes::from(body);
    if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(invalid(&format!("unsupported SPDY version {version}")));
        }
        Ok(Some(Frame::Control {
            kind: u16::from_be_bytes([head[2], head[3]]),
            flags,
            body,
        }))
    } else {
        Ok(Some(Frame::Data {
            stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            data: body,
        }))
    }
}

fn invalid(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("SPDY: {m}"))
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&[0x80, 0x03]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

fn data_frame(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// The decompressing side of a connection's header blocks (one zlib stream).
struct HeaderReader {
    z: Decompress,
    dict: Vec<u8>,
}

impl HeaderReader {
    fn new() -> HeaderReader {
        HeaderReader {
            z: Decompress::new(true),
            dict: dictionary(),
        }
    }

    fn decode(&mut self, mut input: &[u8]) -> std::io::Result<Headers> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            out.reserve(4096);
            let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
            let res = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            let produced = self.z.total_out() - before_out;
            input = &input[used..];
            match res {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&self.dict)
                        .map_err(|e| invalid(&format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(invalid(&format!("header block: {e}"))),
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    // Done once all input is in and the output was not cut short.
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    if used == 0 && produced == 0 {
                        return Err(invalid("header block: no progress"));
                    }
                }
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(mut b: &[u8]) -> std::io::Result<Headers> {
    let take = |n: usize, b: &mut &[u8]| -> std::io::Result<Vec<u8>> {
        if b.len() < n {
            return Err(invalid("truncated header block"));
        }
        let v = b[..n].to_vec();
        b.advance(n);
        Ok(v)
    };
    let u32_of = |v: Vec<u8>| u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize;
    let count = u32_of(take(4, &mut b)?);
    let mut h = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = u32_of(take(4, &mut b)?);
        let name = String::from_utf8_lossy(&take(n, &mut b)?).to_ascii_lowercase();
        let n = u32_of(take(4, &mut b)?);
        let value = String::from_utf8_lossy(&take(n, &mut b)?).into_owned();
        // Several values travel NUL-separated under one name.
        for v in value.split('\0') {
            h.push((name.clone(), v.to_string()));
        }
    }
    Ok(h)
}

/// The compressing side of a connection's header blocks.
struct HeaderWriter {
    z: Compress,
}

impl HeaderWriter {
    fn new() -> HeaderWriter {
        let mut z = Compress::new(Compression::default(), true);
        let _ = z.set_dictionary(&dictionary());
        HeaderWriter { z }
    }

    fn encode(&mut self, h: &[(&str, &str)]) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(h.len() as u32).to_be_bytes());
        for (k, v) in h {
            plain.extend_from_slice(&(k.len() as u32).to_be_bytes());
            plain.extend_from_slice(k.as_bytes());
            plain.extend_from_slice(&(v.len() as u32).to_be_bytes());
            plain.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = &plain[..];
        loop {
            out.reserve(256);
            let before = self.z.total_in();
            let _ = self.z.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.z.total_in() - before) as usize..];
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        out
    }
}

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// Data from the client; closed when the client half-closes (FIN) or resets.
    pub data: mpsc::UnboundedReceiver<Bytes>,
}

/// Writes frames to the connection (cheap to clone; all writes go through one task).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    headers: Arc<Mutex<HeaderWriter>>,
}

impl Writer {
    /// Data on a stream (split into frames of at most 32 KiB).
    pub fn data(&self, stream: u32, data: &[u8]) -> bool {
        for chunk in data.chunks(32 * 1024) {
            if self.tx.send(data_frame(stream, false, chunk)).is_err() {
                return false;
            }
        }
        true
    }

    /// Half-closes a stream from our side.
    pub fn fin(&self, stream: u32) {
        let _ = self.tx.send(data_frame(stream, true, &[]));
    }

    /// Resets a stream (status 5: CANCEL).
    pub fn reset(&self, stream: u32) {
        let mut b = stream.to_be_bytes().to_vec();
        b.extend_from_slice(&5u32.to_be_bytes());
        let _ = self.tx.send(control(TYPE_RST_STREAM, 0, &b));
    }

    fn reply(&self, stream: u32) {
        let block = self
            .headers
            .lock()
            .map(|mut h| h.encode(&[]))
            .unwrap_or_default();
        let mut b = stream.to_be_bytes().to_vec();
        b.extend_from_slice(&block);
        let _ = self.tx.send(control(TYPE_SYN_REPLY, 0, &b));
    }

    /// Ends the session (GOAWAY, then the writer closes the connection once every
    /// queued frame is out).
    pub fn goaway(&self) {
        let mut b = 0u32.to_be_bytes().to_vec();
        b.extend_from_slice(&0u32.to_be_bytes());
        let _ = self.tx.send(control(TYPE_GOAWAY, 0, &b));
        let _ = self.tx.send(Vec::new());
    }
}

/// A SPDY session over `io`: new streams arrive on the returned receiver; the
/// session ends when the connection does (or after [`Writer::goaway`]).
pub fn serve<IO>(io: IO) -> (Writer, mpsc::UnboundedReceiver<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = Writer {
        tx: wtx,
        headers: Arc::new(Mutex::new(HeaderWriter::new())),
    };
    tokio::spawn(async move {
        while let Some(f) = wrx.recv().await {
            // An empty buffer is the end-of-session marker.
            if f.is_empty() {
                break;
            }
            if wr.write_all(&f).await.is_err() {
                return;
            }
            // Batch whatever else is already queued before flushing.
            while let Ok(f) = wrx.try_recv() {
                if f.is_empty() {
                    let _ = wr.flush().await;
                    let _ = wr.shutdown().await;
                    return;
                }
                if wr.write_all(&f).await.is_err() {
                    return;
                }
            }
            if wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    let (stx, srx) = mpsc::unbounded_channel();
    let w = writer.clone();
    tokio::spawn(async move {
        let mut headers = HeaderReader::new();
        let mut streams: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
        loop {
            let frame = match read_frame(&mut rd).await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY session ended");
                    break;
                }
            };
            match frame {
                Frame::Data { stream, fin, data } => {
                    if let Some(tx) = streams.get(&stream) {
                        if !data.is_empty() {
                            let _ = tx.send(data);
                        }
                    }
                    if fin {
                        streams.remove(&stream);
                    }
                }
                Frame::Control { kind, flags, body } => match kind {
                    TYPE_SYN_STREAM if body.len() >= 10 => {
                        let id =
                            u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7fff_ffff;
                        let h = match headers.decode(&body[10..]) {
                            Ok(h) => h,
                            Err(e) => {
                                tracing::debug!(error = %e, "SPDY header block");
                                break;
                            }
                        };
                        let (tx, rx) = mpsc::unbounded_channel();
                        if flags & FLAG_FIN == 0 {
                            streams.insert(id, tx);
                        }
                        w.reply(id);
                        if stx
                            .send(Stream {
                                id,
                                headers: h,
                                data: rx,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                    // Keep the zlib context in step even though we ignore them.
                    TYPE_HEADERS if body.len() >= 4 && headers.decode(&body[4..]).is_err() => break,
                    TYPE_RST_STREAM if body.len() >= 4 => {
                        let id =
                            u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7fff_ffff;
                        streams.remove(&id);
                    }
                    TYPE_PING => {
                        let _ = w.tx.send(control(TYPE_PING, 0, &body));
                    }
                    TYPE_GOAWAY => break,
                    TYPE_SYN_REPLY | TYPE_SETTINGS | TYPE_WINDOW_UPDATE => {}
                    _ => {}
                },
            }
        }
        // Closing every stream's sender tells readers the client is gone.
        streams.clear();
    });
    (writer, srx)
}

/// Reads a stream's data to the end.
pub async fn read_all(s: &mut Stream) -> BytesMut {
    let mut all = BytesMut::new();
    while let Some(b) = s.data.recv().await {
        all.extend_from_slice(&b);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_the_spec_checksum() {
        // Adler-32 of SPDY/3's dictionary, as carried in the zlib header (DICTID) of
        // every header block Go's spdystream sends.
        let d = dictionary();
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &d {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2, "{} bytes", d.len());
    }

    #[test]
    fn header_blocks_round_trip_across_one_zlib_context() {
        let mut w = HeaderWriter::new();
        let mut r = HeaderReader::new();
        for i in 0..3 {
            let n = i.to_string();
            let block = w.encode(&[("streamtype", "data"), ("port", "80"), ("requestid", &n)]);
            let h = r.decode(&block).unwrap();
            assert_eq!(header(&h, "streamtype"), Some("data"));
            assert_eq!(header(&h, "requestid"), Some(n.as_str()));
        }
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let f = data_frame(3, true, b"hello");
        let mut r = &f[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some(Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::from_static(b"hello")
            })
        );
        let f = control(TYPE_PING, 0, &7u32.to_be_bytes());
        let mut r = &f[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some(Frame::Control {
                kind: TYPE_PING,
                flags: 0,
                body: Bytes::copy_from_slice(&7u32.to_be_bytes())
            })
        );
    }
}
