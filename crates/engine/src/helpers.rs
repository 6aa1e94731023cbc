//! The entry points of skiff's helper modes, each [`Helper`] to the code that runs it:
//! the monitor, the sandbox helper, the port proxy and exec sessions. Their command lines are defined
//! in [`crate::reexec`], which knows none of them.

use std::path::Path;

use crate::reexec::Helper;

/// Runs `helper` in this process; never returns. Call before any thread exists (the
/// monitor, the sandbox helper and exec fork).
pub fn run(helper: Helper, root: &Path) -> ! {
    match helper {
        Helper::Monitor { id } => {
            let open = |fd: i32| {
                // SAFETY: F_GETFD only asks whether the descriptor is open.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
                    fd
                } else {
                    -1
                }
            };
            crate::monitor::run(
                root,
                &id,
                crate::monitor::MonitorFds {
                    status: open(crate::monitor::FD_STATUS),
                    stdin: open(crate::monitor::FD_STDIN),
                    stdout: open(crate::monitor::FD_STDOUT),
                    stderr: open(crate::monitor::FD_STDERR),
                },
            )
        }
        Helper::Sandbox => crate::sandbox::helper_main(&crate::create::init_exe_in(root)),
        Helper::Proxy {
            dns_pid,
            dns_networks,
            specs,
        } => {
            let dns = dns_pid.map(|pid| crate::proxy::DnsConfig {
                pid,
                root: root.to_path_buf(),
                networks: dns_networks,
            });
            crate::proxy::run(&specs, crate::proxy::FD_STATUS, dns)
        }
        Helper::Exec {
            id,
            stdin,
            resize_fd,
            opts,
        } => crate::exec::helper_main(root, &id, &opts, stdin, resize_fd),
        Helper::Archive { id, op, path } => crate::archive::helper_main(root, &id, &op, &path),
    }
}
