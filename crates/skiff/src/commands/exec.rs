//! `skiff exec`: a process started in a running container, its stdio relayed through
//! pipes (or a terminal), and its exit code as ours. The rules (environment,
//! capabilities, security options, which descriptors the container may get) are the
//! engine's ([`skiff_engine::exec`]); this parses the flags and runs the session.

use super::{engine, forward};
use crate::{term, Exit};
use anyhow::Result;
use clap::Args;
use skiff_engine::exec::{ExecOptions, SessionIo};
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
    let opts = ExecOptions {
        cmd: a.command,
        // `-e KEY` takes KEY's value from our environment (unset when we have none).
        env: a
            .env
            .into_iter()
            .map(|kv| {
                if kv.contains('=') {
                    return kv;
                }
                match std::env::var(&kv) {
                    Ok(v) => format!("{kv}={v}"),
                    Err(_) => kv,
                }
            })
            .collect(),
        workdir: a.workdir,
        user: a.user,
        privileged: a.privileged,
        tty: a.tty,
        console_size: if a.tty { term::initial_size() } else { None },
    };
    let plan = e.exec_plan(&a.container, &opts)?;
    let io = SessionIo {
        stdin: if a.interactive && !a.detach { 0 } else { -1 },
        stdout: if a.detach { -1 } else { 1 },
        stderr: if a.detach { -1 } else { 2 },
        resize: -1,
    };
    let raw = if a.tty && a.interactive {
        term::RawMode::enable(0)
    } else {
        None
    };
    let tty = a.tty;
    let code = e.exec_session(&plan, io, a.detach, |pid| {
        forward::set_pid(pid);
        if !tty {
            forward::install();
        }
    });
    drop(raw);
    code.map_err(|err| {
        let (code, message) = skiff_engine::exec::failure(&err);
        Exit(code, message).into()
    })
}
