//! skiff's hidden helper modes, defined once for both sides (docker's `reexec`
//! pattern): the engine starts a helper with [`Helper::command`], and the binary's
//! `main` hands its arguments to [`Helper::from_args`] before any parsing of its own,
//! running the helper ([`crate::helpers::run`]) when they name one. A helper's command line is always
//! `--root ROOT __mode ARGS...`; nothing else spells a mode's name.

use crate::exec::ExecOptions;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const MONITOR: &str = "__monitor";
const SANDBOX: &str = "__sandbox";
const PROXY: &str = "__proxy";
const EXEC: &str = "__exec";
const ARCHIVE: &str = "__archive";

/// One helper mode and its arguments.
/// What the helper does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveOp {
    /// Stat the path and write it as a tar stream (preceded by the stat line).
    Get,
    /// Only stat the path.
    Stat,
    /// The container's whole filesystem as a tar stream (`docker export`), preceded by
    /// the stat line of `/`: its own tree only, what is mounted over it (volumes,
    /// `/proc`, the managed `/etc` files) left out but for the place it sits at.
    Export,
    /// Extract the tar on stdin into the directory at the path.
    Put {
        /// Refuse to replace a directory by a non-directory or the reverse
        /// (`noOverwriteDirNonDir`, which the docker CLI always sets).
        no_overwrite_dir_non_dir: bool,
        /// Keep the owners recorded in the stream (`docker cp -a`); else root owns
        /// what is written.
        copy_uid_gid: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    /// Supervise container `id` (its stdio at the descriptors of
    /// [`crate::monitor::MonitorFds`]); see [`crate::monitor`].
    Monitor { id: String },
    /// Create a pod sandbox: its spec on stdin, the sandbox on stdout; see
    /// [`crate::sandbox`].
    Sandbox,
    /// The published-port proxy and embedded DNS of one container; see
    /// [`crate::proxy`].
    Proxy {
        dns_pid: Option<i32>,
        dns_networks: Vec<String>,
        specs: Vec<String>,
    },
    /// An exec session in container `id` on the helper's stdio (stdin only when
    /// `stdin`), its terminal resized by "COLS ROWS" lines on descriptor
    /// `resize_fd`; see [`crate::exec`].
    Exec {
        id: String,
        stdin: bool,
        resize_fd: Option<i32>,
        opts: ExecOptions,
    },
    /// A container's files as a tar stream, from inside its root (`docker cp`).
    Archive {
        id: String,
        op: ArchiveOp,
        path: String,
    },
}

impl Helper {
    /// The arguments that start this helper on `root`.
    pub fn args(&self, root: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--root".into(), root.into()];
        match self {
            Helper::Monitor { id } => {
                a.push(MONITOR.into());
                a.push(id.into());
            }
            Helper::Sandbox => a.push(SANDBOX.into()),
            Helper::Proxy {
                dns_pid,
                dns_networks,
                specs,
            } => {
                a.push(PROXY.into());
                if let Some(pid) = dns_pid {
                    a.push("--dns-pid".into());
                    a.push(pid.to_string().into());
                }
                for n in dns_networks {
                    a.push("--dns-net".into());
                    a.push(n.into());
                }
                a.push("--".into());
                a.extend(specs.iter().map(OsString::from));
            }
            Helper::Exec {
                id,
                stdin,
                resize_fd,
                opts,
            } => {
                a.push(EXEC.into());
                if opts.tty {
                    a.push("-t".into());
                }
                if *stdin {
                    a.push("-i".into());
                }
                if opts.privileged {
                    a.push("--privileged".into());
                }
                if let Some((cols, rows)) = opts.console_size {
                    a.push("--size".into());
                    a.push(format!("{cols}x{rows}").into());
                }
                if let Some(fd) = resize_fd {
                    a.push("--resize-fd".into());
                    a.push(fd.to_string().into());
                }
                for kv in &opts.env {
                    a.push("-e".into());
                    a.push(kv.into());
                }
                if let Some(w) = &opts.workdir {
                    a.push("-w".into());
                    a.push(w.into());
                }
                if let Some(u) = &opts.user {
                    a.push("-u".into());
                    a.push(u.into());
                }
                a.push("--".into());
                a.push(id.into());
                a.extend(opts.cmd.iter().map(OsString::from));
            }
            Helper::Archive { id, op, path } => {
                a.push(ARCHIVE.into());
                match op {
                    ArchiveOp::Get => a.push("get".into()),
                    ArchiveOp::Stat => a.push("stat".into()),
                    ArchiveOp::Export => a.push("export".into()),
                    ArchiveOp::Put {
                        no_overwrite_dir_non_dir,
                        copy_uid_gid,
                    } => {
                        a.push("put".into());
                        if *no_overwrite_dir_non_dir {
                            a.push("--no-overwrite-dir-non-dir".into());
                        }
                        if *copy_uid_gid {
                            a.push("--copy-uid-gid".into());
                        }
                    }
                }
                a.push("--".into());
                a.push(id.into());
                a.push(path.into());
            }
        }
        a
    }

    /// A command starting this helper from `exe` (see
    /// [`skiff_runtime::sealed::helper_exe`]), named `skiff` in process listings.
    pub fn command(&self, exe: &Path, root: &Path) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(exe);
        c.arg0("skiff").args(self.args(root));
        c
    }

    /// The helper (and its root) that `args` (a process's arguments after the
    /// program name) start, if they start one.
    pub fn from_args(args: &[OsString]) -> Option<(PathBuf, Helper)> {
        let [flag, root, mode, rest @ ..] = args else {
            return None;
        };
        if flag != "--root" {
            return None;
        }
        let root = PathBuf::from(root);
        let s = |o: &OsString| o.to_str().map(String::from);
        let h = match mode.to_str()? {
            MONITOR => match rest {
                [id] => Helper::Monitor { id: s(id)? },
                _ => return None,
            },
            SANDBOX if rest.is_empty() => Helper::Sandbox,
            PROXY => {
                let mut dns_pid = None;
                let mut dns_networks = Vec::new();
                let mut it = rest.iter();
                loop {
                    match it.next()?.to_str()? {
                        "--dns-pid" => dns_pid = Some(it.next()?.to_str()?.parse().ok()?),
                        "--dns-net" => dns_networks.push(s(it.next()?)?),
                        "--" => break,
                        _ => return None,
                    }
                }
                Helper::Proxy {
                    dns_pid,
                    dns_networks,
                    specs: it.map(s).collect::<Option<Vec<_>>>()?,
                }
            }
            EXEC => {
                let (mut stdin, mut resize_fd) = (false, None);
                let mut opts = ExecOptions::default();
                let mut it = rest.iter();
                loop {
                    match it.next()?.to_str()? {
                        "-t" => opts.tty = true,
                        "-i" => stdin = true,
                        "--privileged" => opts.privileged = true,
                        "--size" => {
                            let (c, r) = it.next()?.to_str()?.split_once('x')?;
                            opts.console_size = Some((c.parse().ok()?, r.parse().ok()?));
                        }
                        "--resize-fd" => resize_fd = Some(it.next()?.to_str()?.parse().ok()?),
                        "-e" => opts.env.push(s(it.next()?)?),
                        "-w" => opts.workdir = Some(s(it.next()?)?),
                        "-u" => opts.user = Some(s(it.next()?)?),
                        "--" => break,
                        _ => return None,
                    }
                }
                let id = s(it.next()?)?;
                opts.cmd = it.map(s).collect::<Option<Vec<_>>>()?;
                Helper::Exec {
                    id,
                    stdin,
                    resize_fd,
                    opts,
                }
            }
            ARCHIVE => {
                let mut it = rest.iter();
                let mut op = match it.next()?.to_str()? {
                    "get" => ArchiveOp::Get,
                    "stat" => ArchiveOp::Stat,
                    "export" => ArchiveOp::Export,
                    "put" => ArchiveOp::Put {
                        no_overwrite_dir_non_dir: false,
                        copy_uid_gid: false,
                    },
                    _ => return None,
                };
                loop {
                    match (it.next()?.to_str()?, &mut op) {
                        ("--", _) => break,
                        (
                            "--no-overwrite-dir-non-dir",
                            ArchiveOp::Put {
                                no_overwrite_dir_non_dir,
                                ..
                            },
                        ) => *no_overwrite_dir_non_dir = true,
                        ("--copy-uid-gid", ArchiveOp::Put { copy_uid_gid, .. }) => {
                            *copy_uid_gid = true
                        }
                        _ => return None,
                    }
                }
                match (it.next(), it.next(), it.next()) {
                    (Some(id), Some(path), None) => Helper::Archive {
                        id: s(id)?,
                        op,
                        path: s(path)?,
                    },
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some((root, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_round_trips_through_its_arguments() {
        let root = Path::new("/var/lib/skiff");
        for h in [
            Helper::Monitor { id: "abc".into() },
            Helper::Sandbox,
            Helper::Proxy {
                dns_pid: Some(42),
                dns_networks: vec!["front".into(), "back".into()],
                specs: vec!["tcp:0.0.0.0:8080:10.0.0.2:80".into(), "--odd".into()],
            },
            Helper::Proxy {
                dns_pid: None,
                dns_networks: vec![],
                specs: vec![],
            },
            Helper::Exec {
                id: "abc".into(),
                stdin: true,
                resize_fd: Some(3),
                opts: ExecOptions {
                    cmd: vec!["sh".into(), "-c".into(), "--".into()],
                    env: vec!["A=b c".into(), "-e".into()],
                    workdir: Some("/tmp".into()),
                    user: Some("1000:1000".into()),
                    privileged: true,
                    tty: true,
                    console_size: Some((80, 24)),
                },
            },
            Helper::Exec {
                id: "abc".into(),
                stdin: false,
                resize_fd: None,
                opts: ExecOptions {
                    cmd: vec!["-t".into()],
                    ..Default::default()
                },
            },
            Helper::Archive {
                id: "abc".into(),
                op: ArchiveOp::Put {
                    no_overwrite_dir_non_dir: true,
                    copy_uid_gid: true,
                },
                path: "--odd".into(),
            },
            Helper::Archive {
                id: "abc".into(),
                op: ArchiveOp::Get,
                path: "/".into(),
            },
        ] {
            let args = h.args(root);
            assert_eq!(Helper::from_args(&args), Some((root.to_path_buf(), h)));
        }
        let user: Vec<OsString> = ["run", "busybox"].iter().map(OsString::from).collect();
        assert_eq!(Helper::from_args(&user), None);
        let bad: Vec<OsString> = ["--root", "/r", "__monitor"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(Helper::from_args(&bad), None);
    }
}
