//! Applying transactions as nf_tables netlink batches. `nft` 1.0 reads the table's
//! chains and sets back before every command (about 1.3 MB and 30 ms with 1,000
//! Services of 10 endpoints), so a one-Service change cost tens of milliseconds; the
//! kernel itself takes well under one. The partial syncs' commands are encoded here
//! ([`super::compile`]) and sent as one batch, atomic as `nft -f` is; a transaction with
//! anything the encoder does not write (the full sync's skeleton, tables, comments)
//! goes to the `nft` command whole. Listings go to `nft` too.

use super::compile::{compile, Unsupported};
use super::wire;
use super::{Backend, NftCli, NftError, Transaction};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The socket buffers' size; batches over half of it go to `nft`.
const MAX_BATCH: usize = 64 << 20;

/// Netlink for what it encodes, `nft` for the rest.
#[derive(Debug)]
pub struct NftNetlink {
    cli: NftCli,
    /// `/run/netns/<name>` for a named namespace (tests); None: this process's.
    netns: Option<PathBuf>,
    by_netlink: AtomicU64,
    by_cli: AtomicU64,
}

impl Default for NftNetlink {
    fn default() -> Self {
        NftNetlink::new()
    }
}

fn io_err(what: &str, e: std::io::Error) -> NftError {
    NftError::Netlink {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

impl NftNetlink {
    pub fn new() -> Self {
        NftNetlink {
            cli: NftCli::new(),
            netns: None,
            by_netlink: AtomicU64::new(0),
            by_cli: AtomicU64::new(0),
        }
    }

    /// For the network namespace `ip netns` calls `netns`.
    pub fn in_netns(netns: &str) -> Self {
        NftNetlink {
            cli: NftCli::in_netns(netns),
            netns: Some(PathBuf::from(format!("/run/netns/{netns}"))),
            ..NftNetlink::new()
        }
    }

    /// Transactions applied (netlink, nft).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.by_netlink.load(Ordering::Relaxed),
            self.by_cli.load(Ordering::Relaxed),
        )
    }

    fn socket(&self) -> Result<Socket, NftError> {
        let open = || -> Result<Socket, NftError> {
            let mut s = Socket::new(NETLINK_NETFILTER).map_err(|e| io_err("socket", e))?;
            s.bind_auto().map_err(|e| io_err("bind", e))?;
            // Short acks, and the kernel's reason with an error.
            s.set_cap_ack(true)
                .map_err(|e| io_err("NETLINK_CAP_ACK", e))?;
            s.set_ext_ack(true)
                .map_err(|e| io_err("NETLINK_EXT_ACK", e))?;
            // Room for the acks of a large batch, and for the batch itself (one send):
            // the *FORCE options pass rmem_max/wmem_max as root; elsewhere the defaults
            // stay and a batch too large fails with EMSGSIZE, naming it.
            use std::os::fd::AsRawFd;
            for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
                let size: libc::c_int = MAX_BATCH as libc::c_int;
                // SAFETY: setsockopt with a pointer to a live c_int and its size.
                unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
            }
            Ok(s)
        };
        let Some(path) = &self.netns else {
            return open();
        };
        // A socket belongs to the namespace it was made in: make it on a thread that
        // entered the namespace.
        let ns = std::fs::File::open(path).map_err(|e| io_err(&path.display().to_string(), e))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    use std::os::fd::AsRawFd;
                    // SAFETY: setns on a descriptor we own, in a thread that only makes
                    // the socket and ends.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io_err("setns", std::io::Error::last_os_error()));
                    }
                    open()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(NftError::Netlink {
                        what: "socket".into(),
                        reason: "the thread making it panicked".into(),
                    })
                })
        })
    }

    fn send(&self, tx: &Transaction) -> Result<(), NftError> {
        let msgs = match compile(tx) {
            Ok(m) if m.bytes.len() < MAX_BATCH / 2 => m,
            Ok(_) => {
                self.by_cli.fetch_add(1, Ordering::Relaxed);
                return self.cli.apply(tx);
            }
            Err(Unsupported(why)) => {
                tracing::trace!(%why, "transaction goes to nft");
                self.by_cli.fetch_add(1, Ordering::Relaxed);
                return self.cli.apply(tx);
            }
        };
        let batch = &msgs.bytes;
        let sock = self.socket()?;
        let sent = sock.send(batch, 0).map_err(|e| io_err("send", e))?;
        if sent != batch.len() {
            return Err(NftError::Netlink {
                what: "send".into(),
                reason: format!("sent {sent} of {} bytes", batch.len()),
            });
        }
        // The kernel handles a batch inside send(); every message asked for an ack, and
        // the replies are queued by now. Wait a little in case they are not.
        let want = msgs.ops.len();
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while replies.len() < want {
            let mut slice = &mut buf[..];
            match sock.recv(&mut slice, libc::MSG_DONTWAIT) {
                Ok(n) => replies.extend(wire::parse_replies(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if replies.iter().any(|r| r.error != 0) || std::time::Instant::now() > deadline
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(io_err("recv", e)),
            }
        }
        if let Some(r) = replies.iter().find(|r| r.error != 0) {
            let what = match msgs.op_of(r.seq).and_then(|i| tx.ops.get(i)) {
                Some((verb, obj)) => Transaction::one_line(&tx.table, *verb, obj),
                None => format!("message {}", r.seq),
            };
            let mut reason = std::io::Error::from_raw_os_error(-r.error).to_string();
            if let Some(m) = &r.message {
                reason = format!("{reason}: {m}");
            }
            return Err(NftError::Netlink { what, reason });
        }
        if replies.len() < want {
            return Err(NftError::Netlink {
                what: format!("batch of {want} messages"),
                reason: format!("the kernel answered {} of them", replies.len()),
            });
        }
        self.by_netlink.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Backend for NftNetlink {
    fn apply(&self, tx: &Transaction) -> Result<(), NftError> {
        if tx.is_empty() {
            return Ok(());
        }
        self.send(tx)
    }

    fn table_exists(&self, table: &str) -> Result<bool, NftError> {
        self.cli.table_exists(table)
    }

    fn list_chains(&self, table: &str) -> Result<Vec<String>, NftError> {
        self.cli.list_chains(table)
    }

    fn list_sets(&self, table: &str) -> Result<Vec<String>, NftError> {
        self.cli.list_sets(table)
    }

    fn delete_table(&self, table: &str) -> Result<bool, NftError> {
        self.cli.delete_table(table)
    }
}
