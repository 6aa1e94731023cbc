//! Exec: a process started in a running container, with the container's environment,
//! capabilities and security options (no_new_privs and seccomp, as docker's), and the
//! session around it: its stdio, its terminal, its exit code. These rules live here
//! alone: `skiff exec` parses its flags into [`ExecOptions`] and runs a session in its
//! own process; the node agent runs one in an exec helper ([`Helper::Exec`]) started
//! from the sealed view of the binary, as every helper is.
//!
//! Without a terminal a session hands the container pipes, never the caller's own
//! files (see [`crate::relay`]); the process is made non-dumpable and every other
//! descriptor close-on-exec by the runtime until it executes the command.
//!
//! [`Helper::Exec`]: crate::reexec::Helper::Exec

use crate::relay::{self, Relay};
use crate::state::Status;
use crate::{Container, Engine, EngineError, Result};
use skiff_runtime::spec::{self, Process};
use std::os::fd::RawFd;

/// What `skiff exec` (or the node agent, or the Docker API) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `KEY=value` set over the container's environment; a bare `KEY` unsets it.
    pub env: Vec<String>,
    /// Default: the container's working directory, else `/`.
    pub workdir: Option<String>,
    /// Default: the container's user.
    pub user: Option<String>,
    /// All capabilities (as the container has when it is privileged).
    pub privileged: bool,
    /// Give the process a terminal.
    pub tty: bool,
    /// The terminal's first size (columns, rows).
    pub console_size: Option<(u16, u16)>,
}

/// A session's descriptors in the calling process (-1 for none). `resize`, when
/// given, carries "COLS ROWS" lines that resize the process's terminal.
#[derive(Debug, Clone, Copy)]
pub struct SessionIo {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub resize: RawFd,
}

/// An exec ready to start: the container and the process, the rules applied.
pub struct ExecPlan {
    container: Container,
    process: Process,
}

impl Engine {
    /// The process `opts` asks for in container `reference`, with the container's
    /// environment, user, working directory, capabilities and security options.
    pub fn exec_plan(&self, reference: &str, opts: &ExecOptions) -> Result<ExecPlan> {
        let c = self.get(reference)?;
        let r = &c.record;
        let mut env = r.env.clone();
        for kv in &opts.env {
            let k = kv.split('=').next().unwrap_or(kv);
            env.retain(|x| x.split('=').next() != Some(k));
            if kv.contains('=') {
                env.push(kv.clone());
            }
        }
        let capabilities = if opts.privileged || r.host.privileged {
            vec!["ALL".to_string()]
        } else {
            spec::adjust_capabilities(
                spec::DEFAULT_CAPABILITIES,
                &r.host.cap_add,
                &r.host.cap_drop,
            )
            .map_err(EngineError::Invalid)?
        };
        // exec'd processes get the container's no_new_privs and seccomp, as docker's.
        let (no_new_privileges, seccomp) = crate::create::security_options(&r.host)?;
        let cwd = match &opts.workdir {
            Some(w) => w.clone(),
            None if r.working_dir.is_empty() => "/".into(),
            None => r.working_dir.clone(),
        };
        let process = Process {
            args: opts.cmd.clone(),
            env,
            cwd,
            user: opts.user.clone().unwrap_or_else(|| r.user.clone()),
            additional_gids: vec![],
            capabilities,
            no_new_privileges,
            rlimits: vec![],
            terminal: opts.tty,
            console_size: if opts.tty { opts.console_size } else { None },
            oom_score_adj: None,
            seccomp,
        };
        Ok(ExecPlan {
            container: c,
            process,
        })
    }

    /// Start `plan`'s process inside its running container (all its namespaces and
    /// its cgroup). The caller must be single-threaded and a child subreaper.
    pub fn exec_start(
        &self,
        plan: &ExecPlan,
        stdio: skiff_runtime::Stdio,
    ) -> Result<skiff_runtime::Started> {
        let c = self.get(&plan.container.record.id)?;
        if c.state.status == Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.record.id
            )));
        }
        if c.state.status != Status::Running || c.state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        let target = skiff_runtime::ExecTarget {
            pid: c.state.pid,
            cgroup: c.state.cgroup.as_ref(),
        };
        let started = skiff_runtime::exec(&target, &plan.process, stdio).map_err(|e| match e {
            skiff_runtime::Error::Exec(f) => EngineError::Start {
                code: f.code,
                message: f.message,
            },
            e => e.into(),
        })?;
        tracing::debug!(container = %c.record.id, pid = started.pid, "exec started");
        Ok(started)
    }

    /// Run `plan` as a session in this process: start it with `io` (pipes in place
    /// of any descriptor that is not one), relay its terminal or its output, and
    /// return its exit code (0 at once when `detach`). `started` learns the process's
    /// pid once it runs (to forward signals to it). Call single-threaded: the
    /// process is forked from here, and this process becomes a child subreaper.
    pub fn exec_session(
        &self,
        plan: &ExecPlan,
        io: SessionIo,
        detach: bool,
        started: impl FnOnce(i32),
    ) -> Result<i32> {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let tty = plan.process.terminal;
        let mut relay = if tty {
            None
        } else {
            Some(
                Relay::new([io.stdin, io.stdout, io.stderr])
                    .map_err(|e| EngineError::io("exec: making its pipes", e))?,
            )
        };
        let [stdin, stdout, stderr] = relay.as_ref().map(|r| r.stdio).unwrap_or([-1; 3]);
        let stdio = skiff_runtime::Stdio {
            stdin,
            stdout,
            stderr,
        };
        let process = self.exec_start(plan, stdio);
        if let Some(r) = relay.as_mut() {
            r.start();
        }
        let process = process?;
        if detach {
            return Ok(0);
        }
        started(process.pid);
        if let Some(master) = process.console {
            relay::console(master, io.stdin, io.stdout, io.resize);
        }
        let code = wait_exit(process.pid);
        if let Some(r) = relay {
            r.finish();
        }
        Ok(code)
    }
}

/// The exit code of child `pid` (128 + the signal that killed it; 126 when it
/// cannot be waited for).
fn wait_exit(pid: i32) -> i32 {
    loop {
        let mut st = 0;
        // SAFETY: waitpid writes the status into a local.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return 126;
        }
        if libc::WIFEXITED(st) {
            return libc::WEXITSTATUS(st);
        }
        if libc::WIFSIGNALED(st) {
            return 128 + libc::WTERMSIG(st);
        }
    }
}

/// How a session that could not start is told (docker's words) and the exit code
/// it leaves with: the command's 126/127, else 125.
pub fn failure(e: &EngineError) -> (i32, String) {
    match e {
        EngineError::Start { code, message } => (
            *code,
            format!("Error response from daemon: OCI runtime exec failed: {message}: unknown"),
        ),
        e => (125, format!("Error response from daemon: {e}")),
    }
}

/// The exec helper ([`crate::reexec::Helper::Exec`]): a session in container `id`
/// on this process's stdio (stdin only when `stdin`), as the node agent's exec and
/// probes run it. Never returns; its exit code is the process's.
pub fn helper_main(
    root: &std::path::Path,
    id: &str,
    opts: &ExecOptions,
    stdin: bool,
    resize: Option<RawFd>,
) -> ! {
    let fail = |code: i32, message: String| -> ! {
        eprintln!("skiff: {message}");
        std::process::exit(code)
    };
    // Started from the sealed view by the engine; run directly from the host file
    // (by hand), it becomes one before it forks into the container.
    if let Err(e) = skiff_runtime::sealed::reexec_sealed() {
        fail(
            125,
            format!("Error: cannot run from a read-only view of the skiff binary: {e}"),
        );
    }
    // Monitors are never started from here: the exe is not used.
    let engine = match Engine::open(root, std::path::Path::new("/proc/self/exe")) {
        Ok(e) => e,
        Err(e) => fail(125, format!("Error: {e}")),
    };
    let plan = match engine.exec_plan(id, opts) {
        Ok(p) => p,
        Err(e) => fail(125, format!("Error: {e}")),
    };
    let io = SessionIo {
        stdin: if stdin { 0 } else { -1 },
        stdout: 1,
        stderr: 2,
        resize: resize.unwrap_or(-1),
    };
    match engine.exec_session(&plan, io, false, |_| {}) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let (code, message) = failure(&e);
            fail(code, message)
        }
    }
}
