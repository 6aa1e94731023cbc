//! Terminal handling for `-it`: raw mode on the client's terminal and a relay
//! between it and a pty master.

/// The client's terminal in raw mode; restored on drop.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// Put `fd` in raw mode if it is a terminal.
    pub fn enable(fd: i32) -> Option<RawMode> {
        if unsafe { libc::isatty(fd) } != 1 {
            return None;
        }
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
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
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0)
        .then_some((ws.ws_col, ws.ws_row))
}

/// Copy `input` → `master` and `master` → `output` until the pty closes (the
/// process and everything holding its slave exited). When `SKIFF_RESIZE_FD` names an
/// open descriptor (the node agent's exec does this), "COLS ROWS" lines read from it
/// resize the terminal.
pub fn relay(master: i32, input: i32, output: i32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(output, libc::TIOCGWINSZ, &mut ws) } == 0 {
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
    let mut resize: i32 = std::env::var("SKIFF_RESIZE_FD")
        .ok()
        .and_then(|v| v.parse().ok())
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
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            let k = unsafe { libc::read(master, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                return;
            }
            let _ = skiff_runtime::sys::write_all(output, &buf[..k as usize]);
        }
        if input >= 0 && fds[1].revents != 0 {
            let k = unsafe { libc::read(input, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                input = -1;
                continue;
            }
            let _ = skiff_runtime::sys::write_all(master, &buf[..k as usize]);
        }
        if resize >= 0 && fds[2].revents != 0 {
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
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
                }
            }
        }
    }
}
