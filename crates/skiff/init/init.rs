//! skiff-init: the tiny init `--init` runs as a container's PID 1 (bind-mounted
//! read-only at /sbin/docker-init). It starts the command, forwards signals to it,
//! reaps every orphan that lands on it, and exits with the command's status.
//!
//! `skiff-init --pause` is a pod's infra process: it holds the pod's namespaces,
//! reaps orphans when it is the pod's PID 1, and does nothing else until SIGINT or
//! SIGTERM (which end it, as Kubernetes' pause) or SIGKILL.
//!
//! Built by the skiff crate's build script as a static binary with plain rustc (no
//! crates), so it runs in any image, and embedded in skiff.

use std::ffi::CString;
use std::os::raw::{c_char, c_int};

#[repr(C)]
struct SigSet([u64; 16]);

extern "C" {
    fn fork() -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut [u8; 128]) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn _exit(code: c_int) -> !;
}

const SIG_BLOCK: c_int = 0;
const SIG_SETMASK: c_int = 2;
const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
const SIGCHLD: c_int = 17;
const SIGTSTP: c_int = 20;
const SIGTTIN: c_int = 21;
const SIGTTOU: c_int = 22;
const WNOHANG: c_int = 1;

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if argv0 == "/pause" || args.first().map(|a| a.as_str()) == Some("--pause") {
        pause();
    }
    let cmd: Vec<String> = match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => args,
    };
    if cmd.is_empty() {
        eprintln!("skiff-init: usage: skiff-init -- COMMAND [ARG...]");
        std::process::exit(1);
    }
    let cargs: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_str()).unwrap_or_default())
        .collect();
    let mut ptrs: Vec<*const c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    unsafe {
        let mut all = SigSet([0; 16]);
        let mut old = SigSet([0; 16]);
        sigfillset(&mut all);
        sigprocmask(SIG_BLOCK, &all, &mut old);
        let child = fork();
        if child < 0 {
            eprintln!("skiff-init: fork failed");
            std::process::exit(1);
        }
        if child == 0 {
            sigprocmask(SIG_SETMASK, &old, std::ptr::null_mut());
            setpgid(0, 0);
            execvp(ptrs[0], ptrs.as_ptr());
            let e = std::io::Error::last_os_error();
            eprintln!("skiff-init: exec {}: {e}", cmd[0]);
            _exit(if e.raw_os_error() == Some(2) { 127 } else { 126 });
        }
        loop {
            let mut info = [0u8; 128];
            let sig = sigwaitinfo(&all, &mut info);
            if sig < 0 {
                continue;
            }
            if sig == SIGCHLD {
                loop {
                    let mut st: c_int = 0;
                    let pid = waitpid(-1, &mut st, WNOHANG);
                    if pid <= 0 {
                        break;
                    }
                    if pid == child {
                        let code = if st & 0x7f == 0 {
                            (st >> 8) & 0xff
                        } else {
                            128 + (st & 0x7f)
                        };
                        std::process::exit(code);
                    }
                }
            } else if sig != SIGTTIN && sig != SIGTTOU && sig != SIGTSTP {
                kill(child, sig);
            }
        }
    }
}

fn pause() -> ! {
    unsafe {
        let mut all = SigSet([0; 16]);
        sigfillset(&mut all);
        sigprocmask(SIG_BLOCK, &all, std::ptr::null_mut());
        loop {
            let mut info = [0u8; 128];
            match sigwaitinfo(&all, &mut info) {
                SIGCHLD => {
                    let mut st: c_int = 0;
                    while waitpid(-1, &mut st, WNOHANG) > 0 {}
                }
                // As Kubernetes' pause: SIGINT and SIGTERM end it (status 0).
                SIGINT | SIGTERM => _exit(0),
                _ => {}
            }
        }
    }
}
