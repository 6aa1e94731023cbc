//! Deleting stale UDP conntrack entries (kube-proxy's `conntrack.CleanStaleEntries`):
//! a UDP client keeps sending to the endpoint its first packet was DNAT'd to for as long
//! as the flow lives, so flows to removed endpoints are deleted after each sync, and so
//! are flows to a ClusterIP that gained its first endpoint. Uses the `conntrack` tool.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

#[derive(Clone, Debug)]
pub struct Conntrack {
    argv: Vec<String>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new()
    }
}

impl Conntrack {
    /// `conntrack` in this process's network namespace.
    pub fn new() -> Self {
        Conntrack {
            argv: vec!["conntrack".to_string()],
        }
    }

    /// `ip netns exec <netns> conntrack` (tests).
    pub fn in_netns(netns: &str) -> Self {
        Conntrack {
            argv: ["ip", "netns", "exec", netns, "conntrack"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Deletes the UDP flows whose original destination is `vip:port` (only those
    /// DNAT'd to `endpoint`, if given). Failures are logged: a missed cleanup costs a
    /// client one conntrack timeout, not correctness of the rules.
    pub fn clear_udp(&self, vip: Ipv4Addr, port: u16, endpoint: Option<Ipv4Addr>) {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        c.args(["-D", "-p", "udp", "--orig-dst"])
            .arg(vip.to_string())
            .arg("--dport")
            .arg(port.to_string());
        if let Some(ep) = endpoint {
            c.arg("--reply-src").arg(ep.to_string());
        }
        match c.stdin(Stdio::null()).output() {
            // conntrack exits 1 when no flow matched.
            Ok(out) if out.status.success() || out.status.code() == Some(1) => {
                tracing::debug!(%vip, port, endpoint = ?endpoint, "deleted stale UDP flows");
            }
            Ok(out) => tracing::warn!(
                %vip, port, endpoint = ?endpoint,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "conntrack -D failed"
            ),
            Err(e) => tracing::warn!(error = %e, "running conntrack"),
        }
    }
}
