//! UDP in batches: `recvmmsg(2)` takes every query waiting on the socket (up to
//! [`BATCH`]) in one system call and `sendmmsg(2)` sends their answers in one more.
//! On loopback a query costs a few microseconds, nearly all of it in the kernel, so
//! fewer system calls per query is what makes the server faster (measured: hickory's
//! or our own parsing and encoding are a small part of it).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Queries taken per system call at most.
pub const BATCH: usize = 32;
/// The largest query read; a longer datagram is cut (and then unreadable).
pub const SLOT: usize = 4096;

/// Buffers for one batch: the datagrams, their senders, and the kernel's headers.
pub struct Batch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    namelens: Vec<libc::socklen_t>,
    count: usize,
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain integers; all zero is a valid value (family
    // AF_UNSPEC).
    unsafe { std::mem::zeroed() }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is integers and raw pointers; all zero (null pointers, zero
    // lengths) is a valid value.
    unsafe { std::mem::zeroed() }
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            bufs: vec![0u8; BATCH * SLOT],
            addrs: vec![zeroed_storage(); BATCH],
            lens: vec![0; BATCH],
            namelens: vec![0; BATCH],
            count: 0,
        }
    }

    /// Wait for at least one datagram on `fd`, then take all that are there (up to
    /// [`BATCH`]). Returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let mut hdrs: [libc::mmsghdr; BATCH] = [zeroed_mmsghdr(); BATCH];
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            iov.iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            iov.iov_len = SLOT;
            hdr.msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each of the BATCH headers points at its own iovec (alive on this
        // stack frame), that iovec at its own SLOT bytes of `self.bufs`, and its name
        // at its own sockaddr_storage with the storage's size; nothing else borrows
        // them during the call, and the kernel writes no more than those lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        for (i, hdr) in hdrs.iter().take(self.count).enumerate() {
            self.lens[i] = (hdr.msg_len as usize).min(SLOT);
            self.namelens[i] = hdr.msg_hdr.msg_namelen;
        }
        Ok(self.count)
    }

    /// Datagram `i` of the last batch.
    pub fn packet(&self, i: usize) -> &[u8] {
        &self.bufs[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// The sender of datagram `i`.
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        let ss = &self.addrs[i];
        match i32::from(ss.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in; the storage
                // is larger than it and aligned for any socket address.
                let sin =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// Send each answer to the sender of the datagram it answers (`(i, bytes)`).
    /// Answers the kernel refuses are skipped.
    pub fn send(&mut self, fd: RawFd, answers: &[(usize, Vec<u8>)]) {
        let count = answers.len().min(BATCH);
        let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        let mut hdrs: [libc::mmsghdr; BATCH] = [zeroed_mmsghdr(); BATCH];
        for (k, (i, bytes)) in answers.iter().take(count).enumerate() {
            iovs[k].iov_base = bytes.as_ptr() as *mut libc::c_void;
            iovs[k].iov_len = bytes.len();
            hdrs[k].msg_hdr.msg_name = (&mut self.addrs[*i] as *mut libc::sockaddr_storage).cast();
            hdrs[k].msg_hdr.msg_namelen = self.namelens[*i];
            hdrs[k].msg_hdr.msg_iov = &mut iovs[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers `sent..count` each point at one iovec of this frame,
            // which points at an answer's bytes (alive in `answers`, only read by the
            // kernel), and at the sender's address as recvmmsg filled it, with its
            // length.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // The first of the rest failed (the peer's buffer, a bad address):
                // drop that answer, as a lost datagram.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}
