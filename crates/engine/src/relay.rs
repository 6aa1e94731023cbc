//! The stdio an exec session hands into a container: never the caller's own files;
//! and the relay between a session's terminal and the caller ([`console`]).
//!
//! A descriptor given to a container process can be reopened through
//! `/proc/self/fd/N` inside it: the caller's terminal, a file its output was
//! redirected to, or a socket would all be reachable from the container. A pipe
//! reopened that way is only the same pipe, so pipes pass through as they are; any
//! other descriptor is replaced by a pipe whose other end this process copies to or
//! from the caller's descriptor, as docker's daemon does for every exec.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The descriptors to give the container (0, 1, 2 positions; -1 for none), and the
/// copies that feed them.
pub struct Relay {
    pub stdio: [RawFd; 3],
    /// Our ends of the interposed pipes: (ours, caller's descriptor, is input).
    ends: Vec<(RawFd, RawFd, bool)>,
    /// The container's ends, closed here once the process started.
    theirs: Vec<RawFd>,
    outputs: Vec<JoinHandle<()>>,
    exited: Arc<AtomicBool>,
}

impl Relay {
    /// Plan the stdio for descriptors `fds` (each the caller's 0, 1 or 2, or -1).
    pub fn new(fds: [RawFd; 3]) -> std::io::Result<Relay> {
        let mut r = Relay {
            stdio: [-1; 3],
            ends: Vec::new(),
            theirs: Vec::new(),
            outputs: Vec::new(),
            exited: Arc::new(AtomicBool::new(false)),
        };
        for (i, fd) in fds.into_iter().enumerate() {
            if fd < 0 || skiff_runtime::sys::is_pipe(fd) {
                r.stdio[i] = fd;
                continue;
            }
            let (rd, wr) = skiff_runtime::sys::pipe()?;
            let input = i == 0;
            let (ours, theirs) = if input { (wr, rd) } else { (rd, wr) };
            r.stdio[i] = theirs;
            r.theirs.push(theirs);
            r.ends.push((ours, fd, input));
        }
        Ok(r)
    }

    /// Start copying (after the process started: the engine's exec forks, so no
    /// thread may exist before it).
    pub fn start(&mut self) {
        for fd in self.theirs.drain(..) {
            skiff_runtime::sys::close(fd);
        }
        for (ours, caller, input) in self.ends.drain(..) {
            let exited = self.exited.clone();
            let t = std::thread::spawn(move || {
                if input {
                    copy(caller, ours, None);
                } else {
                    copy(ours, caller, Some(&exited));
                }
                skiff_runtime::sys::close(ours);
            });
            // Input copies block on the caller's descriptor and end with us.
            if !input {
                self.outputs.push(t);
            }
        }
    }

    /// The process exited: let the output copies drain what is in the pipes, then
    /// stop (a background process still holding a pipe does not keep us waiting).
    pub fn finish(mut self) {
        self.exited.store(true, Ordering::SeqCst);
        for t in self.outputs.drain(..) {
            let _ = t.join();
        }
    }
}

/// Copy `from` → `to` until EOF; for an output copy, also stop when the process has
/// exited and nothing more is readable.
fn copy(from: RawFd, to: RawFd, exited: Option<&AtomicBool>) {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(done) = exited {
            let mut p = libc::pollfd {
                fd: from,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd we own.
            let n = unsafe { libc::poll(&mut p, 1, 20) };
            if n == 0 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                continue;
            }
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
        }
        // SAFETY: reading into a buffer we own.
        let k = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if k < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if k <= 0 {
            break;
        }
        if skiff_runtime::sys::write_all(to, &buf[..k as usize]).is_err() {
            break;
        }
    }
}

/// Copy `input` → `master` and `master` → `output` until the pty closes (the
/// process and everything holding its slave exited). "COLS ROWS" lines read from
/// `resize` (when not -1) resize the terminal.
pub fn console(master: RawFd, input: RawFd, output: RawFd, resize: RawFd) {
    // SAFETY: ioctls on descriptors the caller owns, with a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(output, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    let mut resize = if resize >= 0 && unsafe { libc::fcntl(resize, libc::F_GETFD) } >= 0 {
        resize
    } else {
        -1
    };
    let mut pending = Vec::new();
    let mut input = input;
    let mut buf = [0u8; 8192];
    let read = |fd: RawFd, buf: &mut [u8]| -> isize {
        // SAFETY: reading into a buffer we own, at most its length.
        unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) }
    };
    loop {
        let mut fds = [master, input, resize].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // Negative descriptors are ignored by poll.
        // SAFETY: three pollfds we own.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            let k = read(master, &mut buf);
            if k <= 0 {
                return;
            }
            let _ = skiff_runtime::sys::write_all(output, &buf[..k as usize]);
        }
        if input >= 0 && fds[1].revents != 0 {
            let k = read(input, &mut buf);
            if k <= 0 {
                input = -1;
                continue;
            }
            let _ = skiff_runtime::sys::write_all(master, &buf[..k as usize]);
        }
        if resize >= 0 && fds[2].revents != 0 {
            let k = read(resize, &mut buf);
            if k <= 0 {
                resize = -1;
                continue;
            }
            pending.extend_from_slice(&buf[..k as usize]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                if let Some((cols, rows)) = parse_size(&line) {
                    set_winsize(master, cols, rows);
                }
            }
        }
    }
}

/// A terminal size message, "COLS ROWS" (both at least 1; a line end is fine).
pub fn parse_size(msg: &[u8]) -> Option<(u16, u16)> {
    let s = std::str::from_utf8(msg).ok()?;
    let mut it = s.split_whitespace();
    let (c, r): (u16, u16) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    (c > 0 && r > 0 && it.next().is_none()).then_some((c, r))
}

/// Sets the size of the terminal whose master (or slave) is `fd`.
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which `ws` is.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages() {
        assert_eq!(parse_size(b"80 24"), Some((80, 24)));
        assert_eq!(parse_size(b"132 43\n"), Some((132, 43)));
        assert_eq!(parse_size(b"0 24"), None);
        assert_eq!(parse_size(b"80x24"), None);
        assert_eq!(parse_size(b"80 24 1"), None);
        assert_eq!(parse_size(b"70000 24"), None);
        assert_eq!(parse_size(b"\xff\xfe"), None);
    }
}
