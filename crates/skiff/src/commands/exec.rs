//! `skiff exec`: a process started in a running container, with the container's
//! environment, capabilities and security options, its stdio relayed through pipes
//! (or a terminal), and its exit code as ours.

use super::{engine, forward};
use crate::{relay, term, Exit};
use anyhow::{anyhow, Result};
use clap::Args;
use skiff_engine::EngineError;
use std::path::Path;

#[derive(Args)]
pub(crate) struct ExecArgs {
    #[arg(short = 'd', long)]
    detach: bool,
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub(crate) fn exec(root: &Path, a: ExecArgs) -> Result<i32> {
    let e = engine(root)?;
    let c = e.get(&a.container)?;
    let mut env = c.record.env.clone();
    for kv in &a.env {
        let k = kv.split('=').next().unwrap_or(kv);
        env.retain(|x| x.split('=').next() != Some(k));
        if kv.contains('=') {
            env.push(kv.clone());
        } else if let Ok(v) = std::env::var(kv) {
            env.push(format!("{kv}={v}"));
        }
    }
    let caps = if a.privileged || c.record.host.privileged {
        vec!["ALL".to_string()]
    } else {
        skiff_runtime::spec::adjust_capabilities(
            skiff_runtime::spec::DEFAULT_CAPABILITIES,
            &c.record.host.cap_add,
            &c.record.host.cap_drop,
        )
        .map_err(|m| anyhow!(m))?
    };
    // exec'd processes get the container's no_new_privs and seccomp, as docker's.
    let (no_new_privileges, seccomp) = skiff_engine::create::security_options(&c.record.host)?;
    let process = skiff_runtime::spec::Process {
        args: a.command.clone(),
        env,
        cwd: a.workdir.clone().unwrap_or_else(|| {
            if c.record.working_dir.is_empty() {
                "/".into()
            } else {
                c.record.working_dir.clone()
            }
        }),
        user: a.user.clone().unwrap_or_else(|| c.record.user.clone()),
        additional_gids: vec![],
        capabilities: caps,
        no_new_privileges,
        rlimits: vec![],
        terminal: a.tty,
        console_size: if a.tty { term::initial_size() } else { None },
        oom_score_adj: None,
        seccomp,
    };
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Without a terminal the process gets pipes, never our own files (see relay.rs).
    let mut relay = if a.tty {
        None
    } else {
        Some(relay::Relay::new([
            if a.interactive && !a.detach { 0 } else { -1 },
            if a.detach { -1 } else { 1 },
            if a.detach { -1 } else { 2 },
        ])?)
    };
    let [stdin, stdout, stderr] = relay.as_ref().map(|r| r.stdio).unwrap_or([-1; 3]);
    let stdio = skiff_runtime::Stdio {
        stdin,
        stdout,
        stderr,
    };
    let raw = if a.tty && a.interactive {
        term::RawMode::enable(0)
    } else {
        None
    };
    let started = e.exec(&a.container, &process, stdio);
    if let Some(r) = relay.as_mut() {
        r.start();
    }
    let started = match started {
        Ok(s) => s,
        Err(EngineError::Start { code, message }) => {
            drop(raw);
            return Err(Exit(
                code,
                format!("Error response from daemon: OCI runtime exec failed: {message}: unknown"),
            )
            .into());
        }
        Err(err) => {
            drop(raw);
            return Err(Exit(125, format!("Error response from daemon: {err}")).into());
        }
    };
    if a.detach {
        return Ok(0);
    }
    forward::set_pid(started.pid);
    if !a.tty {
        forward::install();
    }
    if let Some(master) = started.console {
        term::relay(master, if a.interactive { 0 } else { -1 }, 1);
    }
    let code = loop {
        let mut st = 0;
        let r = unsafe { libc::waitpid(started.pid, &mut st, 0) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break 126;
        }
        if libc::WIFEXITED(st) {
            break libc::WEXITSTATUS(st);
        }
        if libc::WIFSIGNALED(st) {
            break 128 + libc::WTERMSIG(st);
        }
    };
    if let Some(r) = relay {
        r.finish();
    }
    drop(raw);
    Ok(code)
}
