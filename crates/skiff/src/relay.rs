//! The stdio that `skiff exec` hands into a container: never the caller's own files.
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
