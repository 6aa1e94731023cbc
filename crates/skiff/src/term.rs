//! Terminal handling for `-it`: raw mode on the client's terminal and a relay
//! between it and a pty master.

use std::os::fd::BorrowedFd;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// A standard stream of this process (0, 1 or 2) as a borrowed descriptor.
fn std_stream(fd: i32) -> Option<BorrowedFd<'static>> {
    // SAFETY: 0, 1 and 2 stay open for the whole life of the process (nothing in
    // skiff closes them), so a borrow of them cannot outlive the descriptor.
    (0..=2)
        .contains(&fd)
        .then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The client's terminal in raw mode; restored on drop.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Put `fd` (a standard stream) in raw mode if it is a terminal.
    pub fn enable(fd: i32) -> Option<RawMode> {
        use std::io::IsTerminal;
        let fd = std_stream(fd)?;
        if !fd.is_terminal() {
            return None;
        }
        let saved = tcgetattr(fd).ok()?;
        let mut t = saved.clone();
        cfmakeraw(&mut t);
        let _ = tcsetattr(fd, SetArg::TCSANOW, &t);
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd, SetArg::TCSANOW, &self.saved);
    }
}

/// The size a new terminal should start with: `SKIFF_TTY_SIZE` ("COLS ROWS", set by
/// the node agent's exec), else our own terminal's.
pub fn initial_size() -> Option<(u16, u16)> {
    if let Ok(v) = std::env::var("SKIFF_TTY_SIZE") {
        let mut it = v.split_whitespace().map(|n| n.parse::<u16>().ok());
        if let (Some(Some(c)), Some(Some(r))) = (it.next(), it.next()) {
            return Some((c, r));
        }
    }
    let mut ws = winsize(0, 0);
    // SAFETY: TIOCGWINSZ writes one winsize, which `ws` is.
    (unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0)
        .then_some((ws.ws_col, ws.ws_row))
}

/// Copy `input` → `master` and `master` → `output` until the pty closes (the
/// process and everything holding its slave exited). When `SKIFF_RESIZE_FD` names an
/// open descriptor (the node agent's exec does this), "COLS ROWS" lines read from it
/// resize the terminal.
pub fn relay(master: i32, input: i32, output: i32) {
    let mut ws = winsize(0, 0);
    // SAFETY: TIOCGWINSZ writes one winsize and TIOCSWINSZ reads one; `ws` is one.
    if unsafe { libc::ioctl(output, libc::TIOCGWINSZ, &mut ws) } == 0 {
        // SAFETY: as above.
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
    let mut resize: i32 = std::env::var("SKIFF_RESIZE_FD")
        .ok()
        .and_then(|v| v.parse().ok())
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .unwrap_or(-1);
    let mut pending = Vec::new();
    let mut input = input;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: input,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: resize,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Negative descriptors are ignored by poll.
        // SAFETY: `fds` is an array of three initialised pollfd, the count passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let k = unsafe { libc::read(master, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                return;
            }
            let _ = skiff_runtime::sys::write_all(output, &buf[..k as usize]);
        }
        if input >= 0 && fds[1].revents != 0 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let k = unsafe { libc::read(input, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                input = -1;
                continue;
            }
            let _ = skiff_runtime::sys::write_all(master, &buf[..k as usize]);
        }
        if resize >= 0 && fds[2].revents != 0 {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let k = unsafe { libc::read(resize, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                resize = -1;
                continue;
            }
            pending.extend_from_slice(&buf[..k as usize]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
                if let (Some(Some(cols)), Some(Some(rows))) = (it.next(), it.next()) {
                    let ws = winsize(cols, rows);
                    // SAFETY: TIOCSWINSZ reads one winsize, which `ws` is.
                    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
                }
            }
        }
    }
}

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}
