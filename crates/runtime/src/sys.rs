//! Thin, checked wrappers over the raw system calls the runtime uses.
//!
//! Everything here is safe to call in a freshly forked child of a single-threaded
//! process: no locks are taken beyond the allocator's.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// A NULL-terminated array of C strings, as execve takes argv and envp: the strings
/// and the pointers into them, kept together.
pub struct CStrArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    pub fn new<I, S>(items: I) -> io::Result<CStrArray>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let strings = items
            .into_iter()
            .map(|s| {
                CString::new(s.as_ref()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL")
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CStrArray {
            _strings: strings,
            ptrs,
        })
    }

    /// The array, valid while `self` lives.
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }
}

/// Whether `fd` is a pipe (reopening a pipe through /proc reaches only the pipe).
/// Nanoseconds in `ticks` of the kernel's USER_HZ clock (`/proc/stat`,
/// `cpuacct.stat`).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf takes an integer and touches no memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * (1_000_000_000 / hz)
}

pub fn is_pipe(fd: libc::c_int) -> bool {
    // SAFETY: fstat writes into a zeroed struct we own; a bad fd makes it fail.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO }
}

pub fn cs(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// mount(2); `what` names the call in errors.
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let r = nix::mount::mount(
        source,
        target,
        fstype,
        nix::mount::MsFlags::from_bits_retain(flags),
        data,
    );
    r.map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(
            e.kind(),
            format!(
                "mount {} on {} ({}): {e}",
                source.unwrap_or("none"),
                target.display(),
                fstype.unwrap_or("-")
            ),
        )
    })
}

pub fn mount_path(source: &Path, target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let s = source.to_string_lossy().to_string();
    mount(Some(&s), target, None, flags, None)
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
}

pub fn pivot_root_dot() -> io::Result<()> {
    nix::unistd::pivot_root(".", ".").map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("pivot_root: {e}"))
    })
}

pub fn mknod(path: &Path, kind: char, major: u64, minor: u64, mode: u32) -> io::Result<()> {
    use nix::sys::stat::{makedev, Mode, SFlag};
    let t = if kind == 'b' {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    nix::sys::stat::mknod(
        path,
        t,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    )
    .map_err(|e| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("mknod {}: {e}", path.display()))
    })
}

pub fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

pub fn setns(fd: libc::c_int, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns(2) takes a descriptor and flags by value and touches no memory of
    // ours; a bad descriptor is an EBADF error.
    check(unsafe { libc::setns(fd, nstype) }).map(|_| ())
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags)).map_err(io::Error::from)
}

pub fn open_path(path: &Path, flags: libc::c_int) -> io::Result<libc::c_int> {
    let p = cstr(path)?;
    // SAFETY: `p` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))
}

pub fn close(fd: libc::c_int) {
    // SAFETY: close(2) on a raw descriptor the caller owns and no longer uses; errors
    // (EBADF, EINTR) are ignored as the descriptor is gone either way.
    unsafe {
        libc::close(fd);
    }
}

/// dup2(2): make `dst` a copy of `src` (clearing its close-on-exec flag).
pub fn dup2(src: libc::c_int, dst: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2(2) takes descriptors by value and touches no memory of ours; the
    // caller owns `dst` (a standard stream being replaced).
    check(unsafe { libc::dup2(src, dst) }).map(|_| ())
}

/// A pipe with both ends close-on-exec.
pub fn pipe() -> io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of the two ints pipe2(2) fills.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

pub fn write_all(fd: libc::c_int, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Read until EOF.
pub fn read_to_end(fd: libc::c_int) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Read exactly one byte; Ok(None) on EOF.
pub fn read_byte(fd: libc::c_int) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: `b` is valid for a write of one byte.
        let n = unsafe { libc::read(fd, b.as_mut_ptr() as *mut libc::c_void, 1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(if n == 0 { None } else { Some(b[0]) });
    }
}

/// fork(2)-like clone with namespace flags. Returns 0 in the child.
///
/// # Safety
/// The caller must be single-threaded (or only call async-signal-safe code in the
/// child until exec), exactly as for fork.
pub unsafe fn clone_fork(flags: libc::c_int) -> io::Result<libc::pid_t> {
    let r = libc::syscall(
        libc::SYS_clone,
        (flags | libc::SIGCHLD) as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// Send a file descriptor over a unix socket.
pub fn send_fd(sock: libc::c_int, fd: libc::c_int) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(b"F")];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Receive a file descriptor sent with `send_fd`; Ok(None) if the peer closed.
pub fn recv_fd(sock: libc::c_int) -> io::Result<Option<libc::c_int>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([libc::c_int; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                return Ok(Some(*fd));
            }
        }
    }
    Ok(None)
}

/// A connected unix stream socket pair, close-on-exec.
pub fn socketpair() -> io::Result<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of the two ints socketpair(2) fills.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((fds[0], fds[1]))
}

/// The host kernel's release (`uname -r`), empty if it cannot be read.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The host's operating system as `/etc/os-release`'s `PRETTY_NAME` says, else "Linux".
pub fn os_pretty_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// A field of the host's `/proc/meminfo` (`"MemTotal:"`, `"MemAvailable:"`, ...) in
/// bytes; None if it cannot be read.
pub fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}
