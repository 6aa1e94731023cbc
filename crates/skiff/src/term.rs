//! Terminal handling for `-it`: raw mode on the client's terminal and its size
//! (the relay to a pty master is the engine's, [`skiff_engine::relay::console`]).

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

fn winsize(cols: u16, rows: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}
