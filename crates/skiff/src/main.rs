#![recursion_limit = "512"]
//! The skiff binary: a docker-style CLI over the engine, and the hidden modes the
//! engine re-executes (the container monitor). Nothing but wiring lives here.

mod agent;
mod commands;
mod format;
mod inspect;
mod relay;
mod server;
mod term;

use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};
use commands::{images, networks, system, volumes};
use skiff_engine::ops::{Attach, Report};
use skiff_engine::{CreateOptions, Engine, EngineError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A lightweight container engine and Kubernetes-compatible cluster"
)]
struct Cli {
    /// Root directory of engine state (images, containers, volumes).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/skiff",
        env = "SKIFF_ROOT"
    )]
    root: PathBuf,
    /// Name of the default bridge (used when the root's network is first created).
    #[arg(long = "bridge-name", global = true, env = "SKIFF_BRIDGE")]
    bridge_name: Option<String>,
    /// Subnet of the default bridge, e.g. 172.18.0.0/16 (first creation only).
    #[arg(long = "bridge-cidr", global = true, env = "SKIFF_BRIDGE_CIDR")]
    bridge_cidr: Option<String>,
    /// nftables table holding this engine's rules (first creation only).
    #[arg(long = "filter-table", global = true, env = "SKIFF_FILTER_TABLE")]
    filter_table: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Default)]
struct RunFlags {
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
            memory: self.memory.clone(),
            memory_swap: self.memory_swap.clone(),
            cpus: self.cpus.clone(),
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            cpuset_cpus: self.cpuset_cpus.clone(),
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
struct StopArgs {
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and start a container.
    #[command(disable_help_flag = true)]
    Run(RunFlags),
    /// Create a container without starting it.
    #[command(disable_help_flag = true)]
    Create(RunFlags),
    /// Start stopped containers.
    Start {
        #[arg(short = 'a', long)]
        attach: bool,
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers (stop signal, then SIGKILL).
    Stop(StopArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Send a signal to containers.
    Kill {
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Fetch a container's logs.
    Logs {
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(short = 'n', long)]
        tail: Option<String>,
        #[arg(short = 't', long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
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
    },
    /// Low-level information on containers, images or volumes.
    Inspect(commands::inspect::InspectArgs),
    /// Attach to a running container's input and output.
    Attach {
        #[arg(long = "no-stdin")]
        no_stdin: bool,
        #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
        sig_proxy: bool,
        container: String,
    },
    /// Block until containers stop, then print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Pause all processes in containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename {
        container: String,
        new_name: String,
    },
    /// List port mappings of a container.
    Port {
        container: String,
        port: Option<String>,
    },
    /// Display the running processes of a container.
    Top {
        container: String,
    },
    /// Resource usage statistics.
    Stats {
        #[arg(long = "no-stream")]
        no_stream: bool,
        #[arg(short = 'a', long)]
        all: bool,
        containers: Vec<String>,
    },
    /// Run the Kubernetes-compatible control plane (k3s's flags).
    Server(server::ServerFlags),
    /// Run a node agent that joins a server by its token (k3s's flags).
    Agent(agent::AgentFlags),
    /// Manage images (docker's `image` group).
    #[command(subcommand)]
    Image(images::ImageCmd),
    /// Engine-wide information.
    Info,
    /// Version information.
    Version,
    /// List images.
    Images(images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(images::TagArgs),
    /// Remove images.
    Rmi(images::RmiArgs),
    /// Import a root filesystem tarball as an image.
    Import(images::ImportArgs),
    /// Show the history of an image.
    History(images::HistoryArgs),
    /// Build an image from a Dockerfile.
    Build(images::BuildArgs),
    /// Create a new image from a container's changes.
    Commit {
        #[arg(short = 'a', long)]
        author: Option<String>,
        #[arg(short = 'm', long)]
        message: Option<String>,
        #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
        pause: bool,
        container: String,
        repository: Option<String>,
    },
    /// Copy files between a container and the host.
    Cp {
        source: String,
        destination: String,
    },
    /// Save images to a tar archive (OCI layout and docker-save layout in one).
    Save(images::SaveArgs),
    /// Load images from a tar archive (OCI or docker-save layout).
    Load(images::LoadArgs),
    /// Registry commands (not available yet).
    Pull(images::PullArgs),
    Push(images::PushArgs),
    Login(images::LoginArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volumes::VolumeCmd),
    /// Manage the engine.
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(networks::NetworkCmd),
}

/// An error with the exit code skiff should leave with.
#[derive(Debug)]
struct Exit(i32, String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn main() {
    // Before anything else: run from a read-only view of our own file, so no helper
    // that enters a container exposes a writable host binary.
    if let Err(e) = skiff_runtime::sealed::reexec_sealed() {
        eprintln!("skiff: Error: cannot run from a read-only view of the skiff binary: {e}");
        std::process::exit(125);
    }
    // skiff's own helper processes (see skiff_engine::reexec), before any parsing.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some((root, helper)) = skiff_engine::reexec::Helper::from_args(&args) {
        helper.run(&root);
    }
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(c) => c,
        Err(e) => {
            if let Some(x) = e.downcast_ref::<Exit>() {
                if !x.1.is_empty() {
                    eprintln!("skiff: {}", x.1);
                }
                x.0
            } else {
                eprintln!("skiff: Error: {e:#}");
                125
            }
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The static init for `--init`, built by build.rs.
static SKIFF_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-init"));

static BRIDGE: std::sync::OnceLock<skiff_engine::network::BridgeConfig> =
    std::sync::OnceLock::new();

fn engine(root: &Path) -> Result<Engine> {
    let exe = skiff_runtime::sealed::helper_exe()
        .map_err(|e| anyhow!("cannot find the skiff executable: {e}"))?;
    let mut e = Engine::open(root, &exe)?;
    e.install_init(SKIFF_INIT)?;
    if let Some(b) = BRIDGE.get() {
        e.bridge = b.clone();
    }
    Ok(e)
}

/// The engine of a node (server or agent): the root's network is created and
/// recorded now, from the flags on its first use, so later commands on the same root
/// use the same bridge, subnet and table.
fn node_engine(root: &Path) -> Result<Engine> {
    let mut e = engine(root)?;
    e.bridge = skiff_engine::network::BridgeConfig::load_or_init(root, &e.bridge)?;
    skiff_engine::network::ensure_bridge(&e.bridge)?;
    Ok(e)
}

static FORWARD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = FORWARD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forwarding() {
    for s in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        unsafe { libc::signal(s, forward_signal as *const () as libc::sighandler_t) };
    }
}

fn real_main(cli: Cli) -> Result<i32> {
    let root = cli.root.clone();
    let _ = BRIDGE.set(skiff_engine::network::BridgeConfig::with(
        cli.bridge_name.as_deref(),
        cli.bridge_cidr.as_deref(),
        cli.filter_table.as_deref(),
    )?);
    match cli.cmd {
        Cmd::Run(f) => run(&root, f),
        Cmd::Create(f) => {
            let e = engine(&root)?;
            let c = e.create(&f.to_options())?;
            println!("{}", c.record.id);
            Ok(0)
        }
        Cmd::Start {
            attach,
            interactive,
            containers,
        } => {
            let e = engine(&root)?;
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
                    Ok((mut s, first)) => match first {
                        Report::Started(pid) => {
                            if attach {
                                FORWARD_PID.store(pid, Ordering::SeqCst);
                                install_forwarding();
                                code = wait_exit(&mut s)?;
                            } else {
                                println!("{c}");
                            }
                        }
                        Report::Failed(c2, msg) => {
                            eprintln!("skiff: Error response from daemon: failed to start container {c}: {msg}");
                            code = c2;
                        }
                        _ => {
                            return Err(anyhow!(
                                "failed to start container {c}: the monitor exited"
                            ))
                        }
                    },
                    Err(err) => {
                        eprintln!("skiff: Error response from daemon: {err}");
                        code = 125;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Stop(StopArgs { time, containers }) => each(&root, &containers, |e, c| {
            e.stop(c, time)?;
            println!("{c}");
            Ok(())
        }),
        Cmd::Restart(StopArgs { time, containers }) => each(&root, &containers, |e, c| {
            e.stop(c, time)?;
            let (_, first) = e.start(c, None)?;
            match first {
                Report::Started(_) => {
                    println!("{c}");
                    Ok(())
                }
                Report::Failed(_, m) => Err(anyhow!("{m}")),
                _ => Err(anyhow!("the monitor exited")),
            }
        }),
        Cmd::Kill { signal, containers } => each(&root, &containers, |e, c| {
            e.kill(c, &signal)?;
            println!("{c}");
            Ok(())
        }),
        Cmd::Rm {
            force,
            volumes,
            containers,
        } => each(&root, &containers, |e, c| {
            e.remove(c, force, volumes)?;
            println!("{c}");
            Ok(())
        }),
        Cmd::Ps {
            all,
            quiet,
            no_trunc,
        } => ps(&root, all, quiet, no_trunc),
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => logs(&root, &container, follow, tail, timestamps),
        Cmd::Exec {
            detach,
            interactive,
            tty,
            env,
            workdir,
            user,
            privileged,
            container,
            command,
        } => exec(
            &root,
            ExecArgs {
                detach,
                interactive,
                tty,
                env,
                workdir,
                user,
                privileged,
                container,
                command,
            },
        ),
        Cmd::Inspect(a) => commands::inspect::inspect(&root, a),
        Cmd::Attach {
            no_stdin,
            sig_proxy,
            container,
        } => attach(&root, &container, no_stdin, sig_proxy),
        Cmd::Wait { containers } => each(&root, &containers, |e, c| {
            println!("{}", e.wait(c, None)?);
            Ok(())
        }),
        Cmd::Pause { containers } => each(&root, &containers, |e, c| {
            e.pause(c, true)?;
            println!("{c}");
            Ok(())
        }),
        Cmd::Unpause { containers } => each(&root, &containers, |e, c| {
            e.pause(c, false)?;
            println!("{c}");
            Ok(())
        }),
        Cmd::Rename {
            container,
            new_name,
        } => {
            engine(&root)?.rename(&container, &new_name)?;
            Ok(0)
        }
        Cmd::Port { container, port } => {
            let e = engine(&root)?;
            let c = e.get(&container)?;
            let mut found = false;
            for p in &c.state.ports {
                let key = format!("{}/{}", p.container_port, p.proto);
                if let Some(want) = &port {
                    let want = if want.contains('/') {
                        want.clone()
                    } else {
                        format!("{want}/tcp")
                    };
                    if want != key {
                        continue;
                    }
                    println!(
                        "{}:{}",
                        if p.host_ip.is_empty() {
                            "0.0.0.0"
                        } else {
                            &p.host_ip
                        },
                        p.host_port
                    );
                } else {
                    println!(
                        "{key} -> {}:{}",
                        if p.host_ip.is_empty() {
                            "0.0.0.0"
                        } else {
                            &p.host_ip
                        },
                        p.host_port
                    );
                }
                found = true;
            }
            if let (Some(p), false) = (&port, found) {
                return Err(Exit(
                    1,
                    format!("Error: No public port '{p}' published for {container}"),
                )
                .into());
            }
            Ok(0)
        }
        Cmd::Top { container } => {
            let e = engine(&root)?;
            let mut rows = vec![vec![
                "UID".into(),
                "PID".into(),
                "PPID".into(),
                "CMD".into(),
            ]];
            for (pid, ppid, uid, cmd) in e.top(&container)? {
                let user = if uid == 0 {
                    "root".to_string()
                } else {
                    uid.to_string()
                };
                rows.push(vec![user, pid.to_string(), ppid.to_string(), cmd]);
            }
            print!("{}", format::table(&rows));
            Ok(0)
        }
        Cmd::Stats {
            no_stream,
            all,
            containers,
        } => stats(&root, no_stream, all, &containers),
        Cmd::Images(a) => images::images(&root, a),
        Cmd::Image(i) => images::image(&root, i),
        Cmd::Server(f) => {
            let e = if f.disable_agent {
                None
            } else {
                Some(node_engine(&root)?)
            };
            server::run(f, e)
        }
        Cmd::Agent(f) => agent::run(f, node_engine(&root)?),
        Cmd::Info => system::info(&root),
        Cmd::Version => system::version(),
        Cmd::Tag(a) => images::tag(&root, a),
        Cmd::Rmi(a) => images::rmi(&root, a),
        Cmd::Import(a) => images::import(&root, a),
        Cmd::History(a) => images::history(&root, a),
        Cmd::Pull(a) => images::pull(a),
        Cmd::Push(a) => images::push(a),
        Cmd::Login(a) => images::login(a),
        Cmd::Build(a) => images::build(&root, a),
        Cmd::Commit {
            author,
            message,
            pause,
            container,
            repository,
        } => {
            let e = engine(&root)?;
            let img = e.commit(
                &container,
                repository.as_deref(),
                &skiff_engine::files::CommitOptions {
                    author,
                    message,
                    pause,
                },
            )?;
            println!("{}", img.id);
            Ok(0)
        }
        Cmd::Cp {
            source,
            destination,
        } => cp(&root, &source, &destination),
        Cmd::Save(a) => images::save(&root, a),
        Cmd::Load(a) => images::load(&root, a),
        Cmd::Volume(v) => volumes::volume(&root, v),
        Cmd::Network(n) => networks::network(&root, n),
        Cmd::System(s) => system::system(&root, s),
    }
}

/// Apply `f` to each named container, docker-style: errors are printed and the
/// command exits 1 at the end if any failed.
fn each(root: &Path, names: &[String], f: impl Fn(&Engine, &str) -> Result<()>) -> Result<i32> {
    let e = engine(root)?;
    let mut failed = false;
    for n in names {
        if let Err(err) = f(&e, n) {
            eprintln!("Error response from daemon: {err:#}");
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn wait_exit(s: &mut skiff_engine::ops::Starting) -> Result<i32> {
    loop {
        match s.next_report() {
            Report::Exited(code) => return Ok(code),
            Report::Started(pid) => FORWARD_PID.store(pid, Ordering::SeqCst),
            Report::Failed(code, msg) => return Err(Exit(code, msg).into()),
            Report::Lost => {
                return Err(Exit(125, "the container's monitor exited unexpectedly".into()).into())
            }
        }
    }
}

fn run(root: &Path, f: RunFlags) -> Result<i32> {
    let e = engine(root)?;
    let opts = f.to_options();
    let c = match e.create(&opts) {
        Ok(c) => c,
        Err(EngineError::Image(skiff_image::ImageError::NotFound(r))) => {
            return Err(Exit(
                125,
                format!("Unable to find image '{r}' locally\nskiff: Error response from daemon: pull access denied for {r}: the registry client is not built yet (load or build the image first)"),
            )
            .into())
        }
        Err(err) => return Err(Exit(125, format!("Error response from daemon: {err}")).into()),
    };
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
            FORWARD_PID.store(pid, Ordering::SeqCst);
            if !f.tty {
                install_forwarding();
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

/// `skiff cp CONTAINER:SRC DEST` or `skiff cp SRC CONTAINER:DEST`.
fn cp(root: &Path, source: &str, destination: &str) -> Result<i32> {
    let e = engine(root)?;
    let split = |s: &str| -> Option<(String, String)> {
        if s.starts_with('/') || s.starts_with('.') {
            return None;
        }
        s.split_once(':')
            .map(|(a, b)| (a.to_string(), b.to_string()))
    };
    match (split(source), split(destination)) {
        (Some((c, path)), None) => {
            let ctr = e.get(&c)?;
            let dst = PathBuf::from(destination);
            let dst_text = destination.to_string();
            e.with_rootfs(&ctr, |root| {
                let src = skiff_engine::files::in_root(root, &path);
                skiff_engine::files::copy_path(&src, &dst, &dst_text)
            })?;
            Ok(0)
        }
        (None, Some((c, path))) => {
            let ctr = e.get(&c)?;
            let src = PathBuf::from(source);
            if !src.exists() {
                return Err(anyhow!("lstat {source}: no such file or directory"));
            }
            e.with_rootfs(&ctr, |root| {
                let dst = skiff_engine::files::in_root(root, &path);
                skiff_engine::files::copy_path(&src, &dst, &path)
            })?;
            Ok(0)
        }
        (Some(_), Some(_)) => Err(anyhow!("copying between containers is not supported")),
        (None, None) => Err(anyhow!("must specify at least one container source")),
    }
}

fn ps(root: &Path, all: bool, quiet: bool, no_trunc: bool) -> Result<i32> {
    let e = engine(root)?;
    let list: Vec<_> = e
        .list()?
        .into_iter()
        .filter(|c| all || c.state.status.is_active())
        .collect();
    if quiet {
        for c in list {
            println!("{}", if no_trunc { &c.record.id } else { c.short_id() });
        }
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for c in list {
        let r = &c.record;
        let mut cmd = std::iter::once(r.path.clone())
            .chain(r.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        if !no_trunc && cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        let s = &c.state;
        let status = match s.status {
            skiff_engine::Status::Running => format!(
                "Up {}",
                format::human_duration(format::since(s.started_at.as_deref().unwrap_or("")))
            ),
            skiff_engine::Status::Paused => format!(
                "Up {} (Paused)",
                format::human_duration(format::since(s.started_at.as_deref().unwrap_or("")))
            ),
            skiff_engine::Status::Restarting => format!(
                "Restarting ({}) {} ago",
                s.exit_code,
                format::human_duration(format::since(s.finished_at.as_deref().unwrap_or("")))
            ),
            skiff_engine::Status::Exited => format!(
                "Exited ({}) {} ago",
                s.exit_code,
                format::human_duration(format::since(s.finished_at.as_deref().unwrap_or("")))
            ),
            skiff_engine::Status::Created => "Created".into(),
            ref other => other.as_str().to_string(),
        };
        let ports = if c.state.status.is_active() && !s.ports.is_empty() {
            &s.ports
        } else {
            &r.ports
        };
        let ports = ports
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    if p.host_ip.is_empty() {
                        "0.0.0.0"
                    } else {
                        &p.host_ip
                    },
                    p.host_port,
                    p.container_port,
                    p.proto
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let image = if r.image.starts_with("sha256:") {
            skiff_image::short_id(&r.image)
        } else {
            r.image.clone()
        };
        rows.push(vec![
            if no_trunc {
                r.id.clone()
            } else {
                c.short_id().to_string()
            },
            image,
            format!("\"{cmd}\""),
            format!("{} ago", format::human_duration(format::since(&r.created))),
            status,
            ports,
            r.name.clone(),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(0)
}

fn logs(root: &Path, name: &str, follow: bool, tail: Option<String>, ts: bool) -> Result<i32> {
    let e = engine(root)?;
    let c = e.get(name)?;
    let opts = skiff_engine::logs::LogOptions {
        tail: match tail.as_deref() {
            None | Some("all") => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| anyhow!("invalid --tail value: {n}"))?,
            ),
        },
        timestamps: ts,
        since: None,
    };
    let path = c.log_path();
    let entries = skiff_engine::logs::read_entries(&path);
    let skip = opts
        .tail
        .map(|t| entries.len().saturating_sub(t))
        .unwrap_or(0);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut o, mut er) = (stdout.lock(), stderr.lock());
    for en in &entries[skip..] {
        skiff_engine::logs::print_entry(en, &opts, &mut o, &mut er);
    }
    let _ = o.flush();
    if !follow {
        return Ok(0);
    }
    // Follow: print appended lines until the container stops.
    let mut c = c;
    skiff_engine::logs::follow(&mut c, &path, |en| {
        skiff_engine::logs::print_entry(en, &opts, &mut o, &mut er);
        let _ = o.flush();
        true
    });
    Ok(0)
}

/// `skiff attach`: stdio of a running container through its monitor's socket.
fn attach(root: &Path, name: &str, no_stdin: bool, sig_proxy: bool) -> Result<i32> {
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
    let (_dir, path) = skiff_engine::state::short_socket_path(&c.dir, "attach.sock")?;
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|err| anyhow!("attaching to {name}: {err}"))?;
    let tty = c.record.tty;
    let _raw = if tty && !no_stdin {
        term::RawMode::enable(0)
    } else {
        None
    };
    if sig_proxy && !tty {
        FORWARD_PID.store(c.state.pid, Ordering::SeqCst);
        install_forwarding();
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

struct ExecArgs {
    detach: bool,
    interactive: bool,
    tty: bool,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    privileged: bool,
    container: String,
    command: Vec<String>,
}

fn exec(root: &Path, a: ExecArgs) -> Result<i32> {
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
    FORWARD_PID.store(started.pid, Ordering::SeqCst);
    if !a.tty {
        install_forwarding();
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

fn stats(root: &Path, no_stream: bool, all: bool, names: &[String]) -> Result<i32> {
    if no_stream {
        return stats_once(root, all, names).map(|t| {
            print!("{t}");
            0
        });
    }
    // Streaming: redraw about once a second until interrupted, as docker does.
    loop {
        let t = stats_once(root, all, names)?;
        print!("\x1b[2J\x1b[H{t}");
        std::io::stdout().flush()?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn stats_once(root: &Path, all: bool, names: &[String]) -> Result<String> {
    let e = engine(root)?;
    let list: Vec<_> = if names.is_empty() {
        e.list()?
            .into_iter()
            .filter(|c| all || c.state.status.is_active())
            .collect()
    } else {
        names.iter().map(|n| e.get(n)).collect::<Result<_, _>>()?
    };
    // CPU % over a short sampling window, from the cgroup counters.
    let sample = |c: &skiff_engine::Container| c.state.cgroup.as_ref().map(|g| g.cpu_usage_ns());
    let before: Vec<Option<u64>> = list.iter().map(sample).collect();
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let dt = t0.elapsed().as_nanos() as f64;
    let mut rows = vec![[
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    let host_mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|x| x.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(u64::MAX);
    for (c, b) in list.iter().zip(before) {
        let (cpu, mem, lim, pids) = match &c.state.cgroup {
            Some(g) if c.state.status.is_active() => {
                let after = g.cpu_usage_ns();
                let cpu = b
                    .map(|b| (after.saturating_sub(b)) as f64 / dt * 100.0)
                    .unwrap_or(0.0);
                let (m, l) = g.memory();
                (cpu, m, l.min(host_mem), g.pids_current())
            }
            _ => (0.0, 0, 0, 0),
        };
        let pct = if lim > 0 {
            mem as f64 / lim as f64 * 100.0
        } else {
            0.0
        };
        rows.push(vec![
            c.short_id().to_string(),
            c.record.name.clone(),
            format!("{cpu:.2}%"),
            format!(
                "{} / {}",
                format::binary_size(mem),
                format::binary_size(lim)
            ),
            format!("{pct:.2}%"),
            "0B / 0B".into(),
            "0B / 0B".into(),
            pids.to_string(),
        ]);
    }
    Ok(format::table(&rows))
}
