//! Passing the signals skiff receives on to the process it waits for (a container's
//! first process, or an exec'd one), as docker's client does.

use std::sync::atomic::{AtomicI32, Ordering};

static FORWARD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes integers only.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The process signals go to from now on.
pub(super) fn set_pid(pid: i32) {
    FORWARD_PID.store(pid, Ordering::SeqCst);
}

/// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2.
pub(super) fn install() {
    for s in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: `forward_signal` is an `extern "C"` handler that only does
        // async-signal-safe work (an atomic load and kill(2)).
        unsafe { libc::signal(s, forward_signal as *const () as libc::sighandler_t) };
    }
}
