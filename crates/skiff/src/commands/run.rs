//! The commands that run a container's first process and stay with it: `run`,
//! `create`, `start` and `attach`, their flags, and waiting for the container's exit
//! code while forwarding signals to it.

use super::{engine, forward};
use crate::{term, Exit};
use anyhow::{anyhow, Result};
use clap::Args;
use skiff_engine::ops::{Attach, Report};
use skiff_engine::{CreateOptions, EngineError};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Clone, Default)]
pub(crate) struct RunFlags {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[arg(long)]
    name: Option<String>,
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    #[arg(short = 'u', long)]
    user: Option<String>,
    #[arg(long)]
    entrypoint: Option<String>,
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    #[arg(long = "network", visible_alias = "net")]
    network: Option<String>,
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    network_alias: Vec<String>,
    #[arg(long)]
    pid: Option<String>,
    #[arg(long)]
    ipc: Option<String>,
    #[arg(long)]
    uts: Option<String>,
    #[arg(long = "link")]
    link: Vec<String>,
    #[arg(short = 'm', long)]
    memory: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    restart: Option<String>,
    #[arg(long)]
    privileged: bool,
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    #[arg(long = "read-only")]
    read_only: bool,
    #[arg(long)]
    tmpfs: Vec<String>,
    #[arg(long)]
    ulimit: Vec<String>,
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    #[arg(long)]
    init: bool,
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    #[arg(long)]
    device: Vec<String>,
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    oom_score_adj: Option<i32>,
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Pull the image before running: `missing` (when it is not here; the default),
    /// `always`, `never`.
    #[arg(long, value_parser = ["missing", "always", "never"], default_value = "missing")]
    pull: String,
    /// The platform to pull the image for (os/arch[/variant]).
    #[arg(long)]
    platform: Option<String>,
    /// The image, then the command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    image_and_args: Vec<String>,
}

impl RunFlags {
    fn to_options(&self) -> CreateOptions {
        CreateOptions {
            image: self.image_and_args[0].clone(),
            args: self.image_and_args[1..].to_vec(),
            entrypoint: self.entrypoint.clone(),
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes: self.volume.clone(),
            publish: self.publish.clone(),
            network: self.network.clone(),
            pid: self.pid.clone(),
            ipc: self.ipc.clone(),
            uts: self.uts.clone(),
            links: self.link.clone(),
            limits: skiff_engine::Limits {
                memory: self.memory.clone(),
                memory_swap: self.memory_swap.clone(),
                cpus: self.cpus.clone(),
                cpu_period: self.cpu_period,
                cpu_quota: self.cpu_quota,
                cpu_shares: self.cpu_shares,
                pids_limit: self.pids_limit,
                cpuset_cpus: self.cpuset_cpus.clone(),
                cpuset_mems: None,
            },
            restart: self.restart.clone(),
            auto_remove: self.rm,
            tty: self.tty,
            interactive: self.interactive,
            privileged: self.privileged,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            read_only: self.read_only,
            tmpfs: self.tmpfs.clone(),
            ulimits: self.ulimit.clone(),
            add_hosts: self.add_host.clone(),
            labels: self.label.clone(),
            init: self.init,
            volumes_from: self.volumes_from.clone(),
            devices: self.device.clone(),
            security_opt: self.security_opt.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            oom_score_adj: self.oom_score_adj,
            // The monitor sizes the terminal from the client's own.
            console_size: None,
            group_add: self.group_add.clone(),
            extra_labels: Default::default(),
            managed_files: Default::default(),
            pod_runs: None,
            log_max_size: 0,
            log_max_files: 0,
            network_aliases: self.network_alias.clone(),
        }
    }
}

#[derive(Args)]
pub(crate) struct StartArgs {
    #[arg(short = 'a', long)]
    attach: bool,
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct AttachArgs {
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

/// Creates the container of `f`, pulling its image first as `--pull` says.
fn create_pulling(
    root: &Path,
    e: &skiff_engine::Engine,
    f: &RunFlags,
) -> Result<skiff_engine::Container> {
    let opts = f.to_options();
    // docker run's failures, a failed pull included, exit 125.
    let pull = |r: &str| {
        super::images::pull_image(root, r, f.platform.clone(), false, true, false)
            .map(|_| ())
            .map_err(|e| match e.downcast::<Exit>() {
                Ok(x) => Exit(125, x.1).into(),
                Err(e) => e,
            })
    };
    if f.pull == "always" {
        pull(&opts.image)?;
    }
    match e.create(&opts) {
        Ok(c) => Ok(c),
        Err(EngineError::Image(skiff_image::ImageError::NotFound(r))) => {
            eprintln!("Unable to find image '{r}' locally");
            if f.pull == "missing" {
                pull(&opts.image)?;
                e.create(&opts)
                    .map_err(|err| Exit(125, format!("Error response from daemon: {err}")).into())
            } else {
                Err(Exit(
                    125,
                    format!("Error response from daemon: No such image: {r}"),
                )
                .into())
            }
        }
        Err(err) => Err(Exit(125, format!("Error response from daemon: {err}")).into()),
    }
}

pub(crate) fn run(root: &Path, f: RunFlags) -> Result<i32> {
    let e = engine(root)?;
    let c = create_pulling(root, &e, &f)?;
    let attach = if f.detach {
        None
    } else {
        Some(Attach {
            stdin: if f.interactive { 0 } else { -1 },
            stdout: 1,
            stderr: 2,
        })
    };
    let _raw = if f.tty && !f.detach && f.interactive {
        term::RawMode::enable(0)
    } else {
        None
    };
    let (mut s, first) = e
        .start(&c.record.id, attach)
        .map_err(|err| Exit(125, format!("Error response from daemon: {err}")))?;
    for w in &s.warnings {
        eprintln!("WARNING: {w}");
    }
    match first {
        Report::Started(pid) => {
            if f.detach {
                println!("{}", c.record.id);
                return Ok(0);
            }
            forward::set_pid(pid);
            if !f.tty {
                forward::install();
            }
            wait_exit(&mut s)
        }
        Report::Failed(code, msg) => Err(Exit(
            code,
            format!(
                "Error response from daemon: failed to create task for container: {msg}: unknown"
            ),
        )
        .into()),
        Report::Exited(code) => Ok(code),
        Report::Lost => Err(Exit(125, "the container's monitor exited unexpectedly".into()).into()),
    }
}

pub(crate) fn create(root: &Path, f: RunFlags) -> Result<i32> {
    let e = engine(root)?;
    let c = create_pulling(root, &e, &f)?;
    println!("{}", c.record.id);
    Ok(0)
}

pub(crate) fn start(root: &Path, a: StartArgs) -> Result<i32> {
    let StartArgs {
        attach,
        interactive,
        containers,
    } = a;
    let e = engine(root)?;
    let mut code = 0;
    for c in &containers {
        let att = if attach {
            Some(Attach {
                stdin: if interactive { 0 } else { -1 },
                stdout: 1,
                stderr: 2,
            })
        } else {
            None
        };
        match e.start(c, att) {
            Ok((mut s, first)) => {
                match first {
                    Report::Started(pid) => {
                        if attach {
                            forward::set_pid(pid);
                            forward::install();
                            code = wait_exit(&mut s)?;
                        } else {
                            println!("{c}");
                        }
                    }
                    Report::Failed(c2, msg) => {
                        eprintln!("skiff: Error response from daemon: failed to start container {c}: {msg}");
                        code = c2;
                    }
                    _ => return Err(anyhow!("failed to start container {c}: the monitor exited")),
                }
            }
            Err(err) => {
                eprintln!("skiff: Error response from daemon: {err}");
                code = 125;
            }
        }
    }
    Ok(code)
}

/// `skiff attach`: stdio of a running container through its monitor's socket.
pub(crate) fn attach(root: &Path, a: AttachArgs) -> Result<i32> {
    let AttachArgs {
        no_stdin,
        sig_proxy,
        container,
    } = a;
    let name = container.as_str();
    use std::io::Read;
    let e = engine(root)?;
    let c = e.get(name)?;
    if !c.state.status.is_active() {
        return Err(Exit(
            1,
            "You cannot attach to a stopped container, start it first".into(),
        )
        .into());
    }
    if c.state.status == skiff_engine::Status::Paused {
        return Err(Exit(
            1,
            "You cannot attach to a paused container, unpause it first".into(),
        )
        .into());
    }
    let (_dir, path) = skiff_engine::monitor::attach_path(&c.dir)?;
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|err| anyhow!("attaching to {name}: {err}"))?;
    let tty = c.record.tty;
    let _raw = if tty && !no_stdin {
        term::RawMode::enable(0)
    } else {
        None
    };
    if sig_proxy && !tty {
        forward::set_pid(c.state.pid);
        forward::install();
    }
    if !no_stdin && c.record.open_stdin {
        let mut w = sock.try_clone()?;
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            let mut last_ctrl_p = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // docker's detach keys: ctrl-p ctrl-q.
                if tty {
                    for &byte in &buf[..n] {
                        if last_ctrl_p && byte == 0x11 {
                            let _ = w.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        last_ctrl_p = byte == 0x10;
                    }
                }
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
    }
    let mut r = std::io::BufReader::new(sock);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut hdr = [0u8; 8];
    loop {
        if r.read_exact(&mut hdr).is_err() {
            break;
        }
        let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        let mut data = vec![0u8; len];
        if r.read_exact(&mut data).is_err() {
            break;
        }
        if hdr[0] == 2 {
            let _ = err.write_all(&data);
            let _ = err.flush();
        } else {
            let _ = out.write_all(&data);
            let _ = out.flush();
        }
    }
    drop(_raw);
    // Detached (ctrl-p ctrl-q) leaves it running; otherwise report its exit code.
    let mut c = c;
    c.reload()?;
    if c.state.status.is_active() {
        std::thread::sleep(std::time::Duration::from_millis(100));
        c.reload()?;
        if c.state.status.is_active() && c.state.status != skiff_engine::Status::Restarting {
            return Ok(0);
        }
    }
    Ok(e.wait(&c.record.id, None)?)
}

fn wait_exit(s: &mut skiff_engine::ops::Starting) -> Result<i32> {
    loop {
        match s.next_report() {
            Report::Exited(code) => return Ok(code),
            Report::Started(pid) => forward::set_pid(pid),
            Report::Failed(code, msg) => return Err(Exit(code, msg).into()),
            Report::Lost => {
                return Err(Exit(125, "the container's monitor exited unexpectedly".into()).into())
            }
        }
    }
}
