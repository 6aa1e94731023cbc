//! skiff's DNS server: the embedded DNS of the engine's user-defined networks and
//! (later) the cluster DNS share it. It knows nothing of containers or Kubernetes:
//! a [`Zone`] says what it owns; [`Server`] serves it over UDP and TCP; names the
//! zone does not own go to a [`Forwarder`] (upstreams from a resolv.conf, a cache).
//!
//! - [`wire`]: queries read in place, answers written without hickory's message
//!   types (the hot path);
//! - [`zone`]: the `Zone` trait, its `Query` and `Answer`, the SOA of negative answers;
//! - [`table`]: an in-memory zone; [`hosts`]: one from a hosts file;
//! - [`server`]: the UDP workers and the TCP listener; [`batch`]: UDP by the batch;
//! - [`forward`]: upstreams, failover, TCP retry, the cache;
//! - [`resolvconf`]: resolv.conf as glibc reads it.

pub mod batch;
pub mod forward;
pub mod hosts;
pub mod resolvconf;
pub mod server;
pub mod table;
pub mod wire;
pub mod zone;

pub use forward::{Forwarder, Options};
pub use resolvconf::ResolvConf;
pub use server::{Config, Running, Server};
pub use table::Table;
pub use zone::{Answer, Query, Zone};

/// hickory's record types, for zones to build answers with.
pub use hickory_proto::rr;

/// Answer one query packet from `zone` alone (no forwarding): None when the zone does
/// not own the name or the packet gets no answer. For callers with their own loop.
pub fn answer_packet(zone: &dyn Zone, packet: &[u8], limit: usize) -> Option<Vec<u8>> {
    let policy = wire::Policy {
        recursion: true,
        max_udp_payload: 1232,
    };
    match wire::Request::parse(packet) {
        Ok(req) => match zone.answer(&req.query()) {
            Answer::NotMine => None,
            a => Some(wire::respond(&req, &a, limit, policy)),
        },
        Err(why) => wire::malformed(packet, why, policy),
    }
}
