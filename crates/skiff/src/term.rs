//! Terminal handling for `-it`: raw mode on the client's terminal and its size
//! (the relay to a pty master is the engine's, [`skiff_engine::relay::console`]).

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
