//! The per-container monitor: a small process (the skiff binary in a hidden mode)
//! that creates the container, holds its stdio, writes its json-file log or owns its
//! pty, reaps its PID 1, records exit codes and times, and applies the restart
//! policy. It outlives the CLI that started it.
//!
//! Protocol with the starter, over the status pipe (one line each):
//! `S <pid>` started, `E <code> <message>` could not start, `X <code>` exited.
//!
//! Sockets in the container's directory: `attach.sock` (stream) for clients of its
//! stdio, framed as [`attach_frame`] does; `resize.sock` (datagrams of "COLS ROWS",
//! see [`resize`]) for a container with a terminal, whose size it sets.

use crate::logs::{self, LineSplitter};
use crate::network::PortBinding;
use crate::persist::{self, read_json};
use crate::state::{self, ExitReason, NetPlan, Record, State, Status};
use crate::Container;
use skiff_runtime::cgroups::{Cgroup, Host};
use skiff_runtime::linux::Stdio;
use skiff_runtime::{sys, ContainerSpec};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// File descriptors handed to the monitor (-1 where absent).
#[derive(Debug, Clone, Copy)]
pub struct MonitorFds {
    pub status: i32,
    pub stdin: i32,
    pub stdout: i32,
    pub stderr: i32,
}

/// The fd numbers the starter installs the monitor's descriptors at.
pub const FD_STATUS: i32 = 3;
pub const FD_STDIN: i32 = 4;
pub const FD_STDOUT: i32 = 5;
pub const FD_STDERR: i32 = 6;

fn report(fd: i32, line: &str) {
    if fd >= 0 {
        let _ = sys::write_all(fd, format!("{line}\n").as_bytes());
    }
}

/// Entry point of `skiff __monitor`. Never returns. Must run before any thread exists.
pub fn run(root: &Path, id: &str, fds: MonitorFds) -> ! {
    // Detach: the starter reaps this first process at once; the real monitor is
    // re-parented to init (or the nearest subreaper) and leaves the CLI's session.
    // SAFETY: the monitor is a fresh single-threaded helper process; both sides go on
    // with only this thread, and the parent leaves at once with `_exit`, which runs
    // no exit handlers or destructors of the state it shares with the child.
    match unsafe { libc::fork() } {
        0 => {}
        -1 => {
            report(fds.status, "E 125 fork failed");
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
        // SAFETY: as above.
        _ => unsafe { libc::_exit(0) },
    }
    let _ = nix::unistd::setsid();
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = match Monitor::new(root, id, fds) {
        Ok(mut m) => m.run(),
        Err(e) => {
            report(fds.status, &format!("E 125 {e}"));
            125
        }
    };
    // SAFETY: the monitor leaves without unwinding: everything it owns was flushed
    // and recorded by `run`.
    unsafe { libc::_exit(code) }
}

struct Monitor {
    root: std::path::PathBuf,
    c: Container,
    spec: ContainerSpec,
    fds: MonitorFds,
    log: std::fs::File,
    sigfd: nix::sys::signalfd::SignalFd,
    net: Option<NetPlan>,
    /// `attach.sock`: clients that attach to the container's stdio.
    attach: Option<UnixListener>,
    /// `resize.sock`: terminal sizes for a container with a terminal.
    resize: Option<UnixDatagram>,
    /// The starting client's stdin is copied into a pipe of ours (it is not a pipe
    /// itself, and the container must never hold the client's own file).
    relay_stdin: bool,
}

impl Monitor {
    /// Appends to the json-file log, rotating it first if it has reached the
    /// container's `log_max_size`.
    fn write_log(&mut self, bytes: &[u8]) {
        let max = self.c.record.host.log_max_size;
        if max > 0 && self.log.metadata().map(|m| m.len()).unwrap_or(0) >= max {
            let path = self.c.log_path();
            if logs::rotate(&path, self.c.record.host.log_max_files).is_ok() {
                if let Ok(f) = OpenOptions::new().create(true).append(true).open(&path) {
                    self.log = f;
                }
            }
        }
        let _ = self.log.write_all(bytes);
    }

    fn new(root: &Path, id: &str, fds: MonitorFds) -> crate::Result<Monitor> {
        let dir = root.join("containers").join(id);
        let record: Record = read_json(&dir.join("config.json"))?;
        let st: State = read_json(&dir.join("state.json"))?;
        let spec: ContainerSpec = read_json(&dir.join("spec.json"))?;
        let net: Option<NetPlan> = if dir.join("net.json").exists() {
            Some(read_json(&dir.join("net.json"))?)
        } else {
            None
        };
        let c = Container {
            dir,
            record,
            state: st,
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(c.log_path())
            .map_err(|e| crate::EngineError::io("opening log", e))?;
        let mut mask = nix::sys::signal::SigSet::empty();
        mask.add(nix::sys::signal::Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| crate::EngineError::io("blocking SIGCHLD", e.into()))?;
        let sigfd = nix::sys::signalfd::SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
        .map_err(|e| crate::EngineError::io("signalfd", e.into()))?;
        let _ = std::fs::remove_file(c.dir.join(ATTACH_SOCKET));
        let attach = attach_path(&c.dir)
            .ok()
            .and_then(|(_dir, p)| UnixListener::bind(p).ok());
        let _ = std::fs::remove_file(c.dir.join(RESIZE_SOCKET));
        let resize = if spec.process.terminal {
            state::short_socket_path(&c.dir, RESIZE_SOCKET)
                .ok()
                .and_then(|(_dir, p)| UnixDatagram::bind(p).ok())
        } else {
            None
        };
        if let Some(r) = &resize {
            let _ = r.set_nonblocking(true);
        }
        Ok(Monitor {
            attach,
            resize,
            root: root.to_path_buf(),
            c,
            spec,
            fds,
            log,
            sigfd,
            net,
            relay_stdin: false,
        })
    }

    fn run(&mut self) -> i32 {
        let host = match Host::detect() {
            Ok(h) => h,
            Err(e) => return self.fail(125, &e.to_string()),
        };
        let me = std::process::id() as i32;
        let my_start = state::process_start_time(me).unwrap_or(0);
        let mut backoff = Duration::from_millis(100);
        let mut pod_backoff: Option<Duration> = None;
        loop {
            let parent = if self.c.record.host.cgroup_parent.is_empty() {
                "skiff".to_string()
            } else {
                self.c.record.host.cgroup_parent.clone()
            };
            let cg = match Cgroup::create(
                &host,
                &parent,
                &self.c.record.id,
                &self.c.record.host.resources,
            ) {
                Ok(cg) => cg,
                Err(e) => return self.fail(125, &e.to_string()),
            };
            let oom_before = cg.oom_kills();
            let started_at = Instant::now();
            let exit = match self.run_once(&cg, me, my_start) {
                Ok(code) => code,
                Err((code, msg)) => {
                    let _ = cg.kill_all();
                    let _ = cg.remove();
                    return self.fail(code, &msg);
                }
            };
            let oom = cg.oom_kills() > oom_before;
            if oom {
                crate::events::container(&self.root, &self.c, "oom", &[]);
            }
            crate::events::container(
                &self.root,
                &self.c,
                "die",
                &[("exitCode", exit.to_string())],
            );
            let _ = cg.kill_all();
            let _ = cg.remove();
            let manually = self
                .c
                .reload()
                .map(|_| self.c.state.manually_stopped)
                .unwrap_or(false);
            // `update` may have changed the restart policy and the limits since.
            if let Ok(record) = crate::persist::read_json(&self.c.dir.join("config.json")) {
                self.c.record = record;
            }
            let policy = self.c.record.host.restart_policy.clone();
            let restart = !manually
                && match policy.name.as_str() {
                    "always" | "unless-stopped" => true,
                    "on-failure" => {
                        exit != 0
                            && (policy.maximum_retry_count == 0
                                || self.c.state.restart_count < policy.maximum_retry_count)
                    }
                    _ => false,
                };
            let _ = self.c.update_state(|s| {
                s.status = if restart {
                    Status::Restarting
                } else {
                    Status::Exited
                };
                s.exit_code = exit;
                s.oom_killed = oom;
                s.pid = 0;
                s.finished_at = Some(persist::now());
                s.exit_reason = Some(if oom {
                    ExitReason::OOMKilled
                } else if exit == 0 {
                    ExitReason::Completed
                } else {
                    ExitReason::Error
                });
                if restart {
                    s.restart_count += 1;
                    s.last_run = Some(state::LastRun {
                        exit_code: exit,
                        exit_reason: s.exit_reason.clone().unwrap_or(ExitReason::Error),
                        started_at: s.started_at.clone(),
                        finished_at: s.finished_at.clone(),
                    });
                }
            });
            if !restart {
                crate::network::release_ip(&self.root, &self.c.record.id);
                if self.c.record.host.auto_remove {
                    crate::cleanup::remove_files(&self.root, &self.c);
                }
                report(self.fds.status, &format!("X {exit}"));
                return 0;
            }
            match self.c.record.host.pod_runs {
                Some(runs) => {
                    let log = self.c.log_path();
                    let _ = std::fs::rename(&log, logs::previous_path(&log));
                    if let Ok(f) = OpenOptions::new().create(true).append(true).open(&log) {
                        self.log = f;
                    }
                    // The next run starts from the image again.
                    for d in ["upper", "work"] {
                        let p = self.c.dir.join(d);
                        let _ = std::fs::remove_dir_all(&p);
                        let _ = std::fs::create_dir_all(&p);
                    }
                    let max = Duration::from_millis(runs.backoff_max_ms);
                    if started_at.elapsed() > max * 2 {
                        pod_backoff = None;
                    }
                    if let Some(d) = pod_backoff {
                        std::thread::sleep(d);
                    }
                    pod_backoff = Some(match pod_backoff {
                        None => Duration::from_millis(runs.backoff_initial_ms),
                        Some(d) => (d * 2).min(max),
                    });
                }
                None => {
                    // docker: the delay doubles from 100ms and resets after 10s of running.
                    if started_at.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(100);
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
            if self
                .c
                .reload()
                .map(|_| self.c.state.manually_stopped)
                .unwrap_or(true)
            {
                let _ = self.c.update_state(|s| s.status = Status::Exited);
                report(self.fds.status, &format!("X {exit}"));
                return 0;
            }
        }
    }

    fn fail(&mut self, code: i32, msg: &str) -> i32 {
        let _ = self.c.update_state(|s| {
            s.status = if s.started_at.is_some() {
                Status::Exited
            } else {
                Status::Created
            };
            s.exit_code = code;
            s.error = msg.to_string();
            s.pid = 0;
        });
        report(
            self.fds.status,
            &format!("E {code} {}", msg.replace('\n', " ")),
        );
        if self.c.record.host.auto_remove {
            crate::cleanup::remove_files(&self.root, &self.c);
        }
        0
    }

    /// Start the container once and follow it to its exit; returns the exit code.
    fn run_once(&mut self, cg: &Cgroup, me: i32, my_start: u64) -> Result<i32, (i32, String)> {
        let tty = self.spec.process.terminal;
        let mut out_pipe = (-1, -1);
        let mut err_pipe = (-1, -1);
        if !tty {
            out_pipe = sys::pipe().map_err(|e| (125, format!("pipe: {e}")))?;
            err_pipe = sys::pipe().map_err(|e| (125, format!("pipe: {e}")))?;
        }
        // A detached container with open stdin gets a pipe the monitor holds, for
        // attach clients; a foreground one reads the client's stdin directly when
        // that is a pipe, else a pipe the monitor copies the client's input into
        // (a file or terminal of the client's must not be reachable from inside).
        let mut stdin_pipe = None;
        let stdin = if self.c.record.open_stdin && !tty {
            if self.fds.stdin >= 0 && sys::is_pipe(self.fds.stdin) {
                self.fds.stdin
            } else {
                self.relay_stdin = self.fds.stdin >= 0;
                let p = sys::pipe().map_err(|e| (125, format!("pipe: {e}")))?;
                stdin_pipe = Some(p);
                p.0
            }
        } else {
            -1
        };
        let stdio = Stdio {
            stdin,
            stdout: out_pipe.1,
            stderr: err_pipe.1,
        };
        let created = skiff_runtime::create(&self.spec, stdio).map_err(|e| (125, e.to_string()));
        if !tty {
            sys::close(out_pipe.1);
            sys::close(err_pipe.1);
        }
        if let Some((r, _)) = stdin_pipe {
            sys::close(r);
        }
        let stdin_w = stdin_pipe.map(|(_, w)| w);
        let created = created?;
        let pid = created.pid;
        if let Err(e) = cg.join(pid) {
            created.abort();
            return Err((125, e.to_string()));
        }
        if let Some(plan) = &self.net {
            for a in &plan.attachments {
                if let Err(e) = crate::network::attach(
                    &a.bridge,
                    &self.c.record.id,
                    pid,
                    a.ip,
                    &a.ifname,
                    a.default_route,
                ) {
                    created.abort();
                    return Err((125, format!("attaching to network {}: {e}", a.network)));
                }
            }
        }
        // Ports and the embedded DNS are up before the process runs.
        let mut proxy = None;
        let mut bound_ports = Vec::new();
        if let Some(plan) = self.net.clone() {
            if !plan.ports.is_empty() || plan.dns {
                match start_proxy(&plan, &self.root, pid) {
                    Ok((child, ports)) => {
                        proxy = Some(child);
                        bound_ports = ports;
                    }
                    Err(msg) => {
                        created.abort();
                        return Err((125, msg));
                    }
                }
            }
        }
        let started = match created.start() {
            Ok(s) => s,
            Err(e) => {
                if let Some(mut p) = proxy {
                    let _ = p.kill();
                    let _ = p.wait();
                }
                return Err(match e {
                    skiff_runtime::Error::Exec(f) => (f.code, f.message),
                    e => (125, e.to_string()),
                });
            }
        };
        let cgc = cg.clone();
        let _ = self.c.update_state(|s| {
            s.ports = bound_ports.clone();
            s.status = Status::Running;
            s.pid = pid;
            s.monitor_pid = me;
            s.monitor_start = my_start;
            s.started_at = Some(persist::now());
            s.finished_at = None;
            s.error.clear();
            s.cgroup = Some(cgc);
            s.manually_stopped = false;
        });
        crate::events::container(&self.root, &self.c, "start", &[]);
        report(self.fds.status, &format!("S {pid}"));

        let console = started.console;
        if let Some(m) = console {
            set_winsize_from(m, self.fds.stdout);
        }
        let status = self.pump(pid, out_pipe.0, err_pipe.0, console, stdin_w);
        if let Some(mut p) = proxy {
            let _ = p.kill();
            let _ = p.wait();
        }
        for fd in [out_pipe.0, err_pipe.0] {
            if fd >= 0 {
                sys::close(fd);
            }
        }
        if let Some(m) = console {
            sys::close(m);
        }
        Ok(status)
    }

    /// Move output to the log, the starting client and attach clients; move attach
    /// clients' input to the container's stdin; until PID 1 exits.
    fn pump(
        &mut self,
        pid: i32,
        out_r: i32,
        err_r: i32,
        console: Option<i32>,
        stdin_w: Option<i32>,
    ) -> i32 {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::BorrowedFd;
        let mut split_out = LineSplitter::default();
        let mut split_err = LineSplitter::default();
        let mut open_out = out_r >= 0 || console.is_some();
        let mut open_err = err_r >= 0;
        let out_src = console.unwrap_or(out_r);
        let mut attach_out = self.fds.stdout;
        let mut attach_err = self.fds.stderr;
        let mut relay_in = if (console.is_some() || self.relay_stdin) && self.c.record.open_stdin {
            self.fds.stdin
        } else {
            -1
        };
        // Where attach clients' input goes.
        let mut input_target = match (console, stdin_w) {
            (Some(m), _) if self.c.record.open_stdin => Some(m),
            (_, Some(w)) => Some(w),
            _ => None,
        };
        let mut clients: Vec<(UnixStream, bool)> = Vec::new();
        let mut exit: Option<i32> = None;
        let mut exit_seen_at: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if exit.is_some() && !open_out && !open_err {
                break;
            }
            if let Some(t) = exit_seen_at {
                // Processes that inherited the pipes may outlive PID 1 (shared pid
                // namespaces); do not wait on them for long.
                if t.elapsed() > Duration::from_millis(500) {
                    break;
                }
            }
            // SAFETY: every descriptor borrowed here is owned by this loop and stays
            // open until after the poll returns.
            let b = |fd: i32| unsafe { BorrowedFd::borrow_raw(fd) };
            let mut pfds = vec![PollFd::new(b(self.sigfd.as_raw_fd()), PollFlags::POLLIN)];
            let mut kinds: Vec<usize> = vec![0];
            if open_out {
                pfds.push(PollFd::new(b(out_src), PollFlags::POLLIN));
                kinds.push(1);
            }
            if open_err {
                pfds.push(PollFd::new(b(err_r), PollFlags::POLLIN));
                kinds.push(2);
            }
            if relay_in >= 0 {
                pfds.push(PollFd::new(b(relay_in), PollFlags::POLLIN));
                kinds.push(3);
            }
            if let Some(l) = &self.attach {
                pfds.push(PollFd::new(b(l.as_raw_fd()), PollFlags::POLLIN));
                kinds.push(4);
            }
            if let (Some(r), Some(_)) = (&self.resize, console) {
                pfds.push(PollFd::new(b(r.as_raw_fd()), PollFlags::POLLIN));
                kinds.push(5);
            }
            for (i, (c, reading)) in clients.iter().enumerate() {
                if *reading {
                    pfds.push(PollFd::new(b(c.as_raw_fd()), PollFlags::POLLIN));
                    kinds.push(100 + i);
                }
            }
            let timeout = if exit.is_some() {
                PollTimeout::from(50u16)
            } else {
                PollTimeout::NONE
            };
            match poll(&mut pfds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready: Vec<(usize, bool)> = pfds
                .iter()
                .zip(kinds.iter())
                .map(|(p, k)| (*k, p.revents().map(|r| !r.is_empty()).unwrap_or(false)))
                .collect();
            if exit.is_some() && ready.iter().all(|(_, r)| !r) {
                break;
            }
            let mut dropped = Vec::new();
            for (kind, is_ready) in ready {
                if !is_ready {
                    continue;
                }
                match kind {
                    0 => {
                        while let Ok(Some(_)) = self.sigfd.read_signal() {}
                        let mut st = 0;
                        // SAFETY: waitpid(2) writes one int, which `st` is.
                        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                        if r == pid {
                            exit = Some(exit_code(st));
                            exit_seen_at = Some(Instant::now());
                        }
                        // Reap anything else that was ours.
                        // SAFETY: as above.
                        while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
                    }
                    1 | 2 => {
                        let fd = if kind == 1 { out_src } else { err_r };
                        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                        let n = unsafe {
                            libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len())
                        };
                        if n <= 0 {
                            if kind == 1 {
                                open_out = false;
                            } else {
                                open_err = false;
                            }
                            continue;
                        }
                        let data = &buf[..n as usize];
                        let (stream, splitter, attach) = if kind == 1 {
                            ("stdout", &mut split_out, &mut attach_out)
                        } else {
                            ("stderr", &mut split_err, &mut attach_err)
                        };
                        if *attach >= 0 && sys::write_all(*attach, data).is_err() {
                            *attach = -1;
                        }
                        let frame = attach_frame(kind as u8, data);
                        for (i, (c, _)) in clients.iter_mut().enumerate() {
                            if c.write_all(&frame).is_err() {
                                dropped.push(i);
                            }
                        }
                        for line in splitter.feed(data) {
                            self.write_log(&logs::encode(&line, stream));
                        }
                    }
                    3 => {
                        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                        let n = unsafe {
                            libc::read(relay_in, buf.as_mut_ptr() as *mut libc::c_void, buf.len())
                        };
                        if n <= 0 {
                            relay_in = -1;
                            // Without a terminal, the client's EOF is the container's.
                            if let (Some(w), None) = (input_target, console) {
                                sys::close(w);
                                input_target = None;
                            }
                            continue;
                        }
                        if let Some(t) = input_target {
                            let _ = sys::write_all(t, &buf[..n as usize]);
                        }
                    }
                    5 => {
                        let (Some(r), Some(master)) = (&self.resize, console) else {
                            continue;
                        };
                        let mut msg = [0u8; 64];
                        while let Ok(n) = r.recv(&mut msg) {
                            if let Some((cols, rows)) = crate::relay::parse_size(&msg[..n]) {
                                crate::relay::set_winsize(master, cols, rows);
                            }
                        }
                    }
                    4 => {
                        if let Some(l) = &self.attach {
                            if let Ok((c, _)) = l.accept() {
                                let _ = c.set_nonblocking(false);
                                clients.push((c, input_target.is_some()));
                            }
                        }
                    }
                    k => {
                        let i = k - 100;
                        let n = clients[i].0.read(&mut buf).unwrap_or(0);
                        if n == 0 {
                            // The client's input ended: so does the container's
                            // (unless it has a terminal, which stays open).
                            clients[i].1 = false;
                            if let (Some(w), None) = (input_target, console) {
                                sys::close(w);
                                input_target = None;
                            }
                            continue;
                        }
                        if let Some(t) = input_target {
                            let _ = sys::write_all(t, &buf[..n]);
                        }
                    }
                }
            }
            dropped.sort_unstable();
            dropped.dedup();
            for i in dropped.into_iter().rev() {
                clients.remove(i);
            }
        }
        for (s, stream) in [(&mut split_out, "stdout"), (&mut split_err, "stderr")] {
            if let Some(rest) = s.flush() {
                self.write_log(&logs::encode(&rest, stream));
            }
        }
        if let (Some(w), None) = (input_target, console) {
            sys::close(w);
        }
        match exit {
            Some(c) => c,
            None => {
                let mut st = 0;
                // SAFETY: waitpid(2) writes one int, which `st` is.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                exit_code(st)
            }
        }
    }
}

fn exit_code(st: i32) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        255
    }
}

/// One chunk of output to an attach client, framed as docker's stdcopy does:
/// stream (1 stdout, 2 stderr), three zero bytes, big-endian length, data.
pub fn attach_frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.push(stream);
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Start the port proxy and wait until it bound every port (or could not).
fn start_proxy(
    plan: &NetPlan,
    root: &Path,
    pid: i32,
) -> Result<(std::process::Child, Vec<PortBinding>), String> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let (r, w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
    let exe = skiff_runtime::sealed::helper_exe().map_err(|e| format!("finding skiff: {e}"))?;
    let ip = plan.primary_ip().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let helper = crate::reexec::Helper::Proxy {
        dns_pid: plan.dns.then_some(pid),
        dns_networks: if plan.dns {
            plan.attachments.iter().map(|a| a.network.clone()).collect()
        } else {
            Vec::new()
        },
        specs: plan
            .ports
            .iter()
            .map(|p| crate::network::proxy_arg(p, ip))
            .collect(),
    };
    let mut cmd = helper.command(&exe, root);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the hook only calls dup2(2), which is async-signal-safe, between fork
    // and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(w, crate::proxy::FD_STATUS);
            Ok(())
        });
    }
    let child = cmd.spawn();
    sys::close(w);
    let child = child.map_err(|e| {
        sys::close(r);
        format!("starting the port proxy: {e}")
    })?;
    // SAFETY: `r` is the read end of the pipe made above, owned here alone.
    let f = unsafe { <std::fs::File as std::os::unix::io::FromRawFd>::from_raw_fd(r) };
    let mut line = String::new();
    let _ = std::io::BufReader::new(f).read_line(&mut line);
    let line = line.trim();
    if let Some(ports) = line.strip_prefix("OK") {
        let got: Vec<u16> = ports
            .trim()
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect();
        let mut out = plan.ports.clone();
        for (p, g) in out.iter_mut().zip(got) {
            p.host_port = g;
        }
        Ok((child, out))
    } else {
        let mut child = child;
        let _ = child.wait();
        Err(line
            .strip_prefix("ERR ")
            .unwrap_or("the port proxy failed")
            .to_string())
    }
}

/// The name of a container's resize socket in its directory.
const RESIZE_SOCKET: &str = "resize.sock";
/// The name of a container's attach socket in its directory.
const ATTACH_SOCKET: &str = "attach.sock";

/// The path of the attach socket of the container whose directory is `dir` (short
/// enough for a socket address whatever the root's length), and the directory handle
/// that keeps it valid.
pub fn attach_path(dir: &Path) -> crate::Result<(std::fs::File, std::path::PathBuf)> {
    state::short_socket_path(dir, ATTACH_SOCKET)
}

/// Sets the terminal size of the running container whose directory is `dir`, through
/// its monitor's resize socket.
pub fn resize(dir: &Path, cols: u16, rows: u16) -> std::io::Result<()> {
    let (_keep, path) = state::short_socket_path(dir, RESIZE_SOCKET)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let s = UnixDatagram::unbound()?;
    s.send_to(format!("{cols} {rows}").as_bytes(), path)?;
    Ok(())
}

/// Give the pty the size of the client's terminal, if it has one.
fn set_winsize_from(master: i32, client: i32) {
    if client < 0 {
        return;
    }
    // SAFETY: an all-zero winsize is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize and TIOCSWINSZ reads one; `ws` is one.
    if unsafe { libc::ioctl(client, libc::TIOCGWINSZ, &mut ws) } == 0 {
        // SAFETY: as above.
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
}
