//! Probes as the kubelet runs them: exec (through `skiff exec` into the container),
//! httpGet (2xx/3xx is success) and tcpSocket (a connection is success), each with
//! its timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Failed, with the message the kubelet puts in the Unhealthy event.
    Failure(String),
}

/// TCP: success when a connection opens within `timeout`.
pub fn tcp(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => ProbeResult::Success,
        Err(e) => ProbeResult::Failure(format!("dial tcp {addr}: {e}")),
    }
}

/// HTTP GET: success on a status from 200 to 399.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> ProbeResult {
    let url = format!("http://{addr}{path}");
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return ProbeResult::Failure(format!("Get \"{url}\": dial tcp {addr}: {e}")),
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n",
        if path.is_empty() { "/" } else { path },
        if host.is_empty() { addr.to_string() } else { host.to_string() }
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()) {
        return ProbeResult::Failure(format!("Get \"{url}\": {e}"));
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => {
                return ProbeResult::Failure(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers): {e}"
                ))
            }
        }
    }
    let line = String::from_utf8_lossy(&head);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        ProbeResult::Success
    } else {
        ProbeResult::Failure(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Exec: run `command` in the container (the runtime's ExecSync); success on exit 0.
pub fn exec(
    rt: &dyn crate::cri::RuntimeService,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    match rt.exec_sync(container, command, timeout) {
        Ok(r) if r.timed_out => ProbeResult::Failure(format!(
            "command {:?} timed out after {}s",
            command.join(" "),
            timeout.as_secs()
        )),
        Ok(r) if r.exit_code == 0 => ProbeResult::Success,
        Ok(r) => ProbeResult::Failure(String::from_utf8_lossy(&r.stdout).trim().to_string()),
        Err(e) => ProbeResult::Failure(format!("starting exec probe: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(status: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = c.read(&mut b);
                let _ = c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            }
        });
        a
    }

    #[test]
    fn http_and_tcp_probes() {
        let t = Duration::from_secs(2);
        assert_eq!(
            http_get(serve_once("200 OK"), "/healthz", "", &[], t),
            ProbeResult::Success
        );
        assert_eq!(
            http_get(serve_once("302 Found"), "/", "", &[], t),
            ProbeResult::Success
        );
        assert_eq!(
            http_get(serve_once("500 Internal Server Error"), "/", "", &[], t),
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp(l.local_addr().unwrap(), t), ProbeResult::Success);
        let closed = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(tcp(closed, t), ProbeResult::Failure(_)));
    }
}
