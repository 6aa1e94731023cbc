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

/// Copy `input` → `master` and `master` → `output` until the pty closes (the
/// process and everything holding its slave exited).
pub fn relay(master: i32, input: i32, output: i32) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(output, libc::TIOCGWINSZ, &mut ws) } == 0 {
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
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
        ];
        let n = if input >= 0 { 2 } else { 1 };
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n, -1) };
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
        if n == 2 && fds[1].revents != 0 {
            let k = unsafe { libc::read(input, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if k <= 0 {
                input = -1;
                continue;
            }
            let _ = skiff_runtime::sys::write_all(master, &buf[..k as usize]);
        }
    }
}
