#![recursion_limit = "512"]
//! The skiff binary: the docker-style command line (its global flags and the list of
//! commands), the re-exec into a sealed binary and the dispatch of skiff's helper
//! modes before any parsing, printing a command's error with its exit code, and the
//! `match` that hands each command to `commands`. Nothing but wiring lives here.

mod agent;
mod commands;
mod dnsserve;
mod dockerapi;
mod format;
mod hollow;
mod inspect;
mod listing;
mod logging;
mod server;
mod term;

use anyhow::Result;
use clap::{Parser, Subcommand};
use commands::{cluster, containers, exec, images, networks, run, system, volumes};
use std::io::Write;
use std::path::PathBuf;

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
    /// What skiff logs: a level (error, warn, info, debug, trace) or tracing
    /// directives, e.g. warn,skiff_apiserver=debug. Default: info for `server` and
    /// `agent` (see their --log, --alsologtostderr and -v), warn for other commands.
    #[arg(long = "log-level", global = true, env = "SKIFF_LOG")]
    log_level: Option<String>,
    /// skiff's configuration directory (registry TLS files in certs.d/HOST:PORT/).
    #[arg(
        long = "config-dir",
        global = true,
        default_value = "/etc/skiff",
        env = "SKIFF_CONFIG_DIR"
    )]
    config_dir: PathBuf,
    /// A registry (host[:port]) reached over plain HTTP or unverified TLS; repeatable.
    /// Loopback registries are insecure without it.
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "SKIFF_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// k3s's registries.yaml (mirrors, rewrites, per-registry auth and tls), for the
    /// engine and the node agent. Default: <config-dir>/registries.yaml if it exists.
    #[arg(
        long = "private-registry",
        global = true,
        env = "SKIFF_PRIVATE_REGISTRY"
    )]
    private_registry: Option<PathBuf>,
    /// Pull only from the mirrors registries.yaml names, never from a registry itself
    /// (k3s's flag).
    #[arg(
        long = "disable-default-registry-endpoint",
        global = true,
        env = "SKIFF_DISABLE_DEFAULT_REGISTRY_ENDPOINT"
    )]
    disable_default_registry_endpoint: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create and start a container.
    #[command(disable_help_flag = true)]
    Run(run::RunFlags),
    /// Create a container without starting it.
    #[command(disable_help_flag = true)]
    Create(run::RunFlags),
    /// Start stopped containers.
    Start(run::StartArgs),
    /// Stop running containers (stop signal, then SIGKILL).
    Stop(containers::StopArgs),
    /// Restart containers.
    Restart(containers::StopArgs),
    /// Update the resource limits or restart policy of containers.
    Update(containers::UpdateArgs),
    /// Send a signal to containers.
    Kill(containers::KillArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// List containers.
    Ps(containers::PsArgs),
    /// Fetch a container's logs.
    Logs(containers::LogsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Low-level information on containers, images or volumes.
    Inspect(commands::inspect::InspectArgs),
    /// Attach to a running container's input and output.
    Attach(run::AttachArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(containers::Targets),
    /// Pause all processes in containers.
    Pause(containers::Targets),
    /// Unpause containers.
    Unpause(containers::Targets),
    /// Rename a container.
    Rename(containers::RenameArgs),
    /// List port mappings of a container.
    Port(containers::PortArgs),
    /// Display the running processes of a container.
    Top(containers::TopArgs),
    /// Resource usage statistics.
    Stats(containers::StatsArgs),
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
    Commit(containers::CommitArgs),
    /// Show what a container changed in its filesystem (A added, C changed, D deleted).
    Diff { container: String },
    /// Copy files between a container and the host.
    Cp(containers::CpArgs),
    /// Export a container's filesystem as a tar archive.
    Export(containers::ExportArgs),
    /// Save images to a tar archive (OCI layout and docker-save layout in one).
    Save(images::SaveArgs),
    /// Load images from a tar archive (OCI or docker-save layout).
    Load(images::LoadArgs),
    /// Download an image from a registry.
    Pull(images::PullArgs),
    /// Upload an image to a registry.
    Push(images::PushArgs),
    /// Log in to a registry (credentials go to docker's config.json).
    Login(images::LoginArgs),
    /// Log out from a registry.
    Logout(images::LogoutArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volumes::VolumeCmd),
    /// Manage the engine.
    #[command(subcommand)]
    System(system::SystemCmd),
    /// Stream the engine's events (containers, networks, volumes), as `docker events`.
    Events(system::EventsArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(networks::NetworkCmd),
    /// Serve a hosts file with skiff's DNS server (the DNS benchmark's peer of dnsmasq).
    #[command(name = "__dns-serve", hide = true)]
    DnsServe(dnsserve::DnsServeArgs),
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
    // skiff's own helper processes (see skiff_engine::reexec), before any parsing;
    // they are started from a read-only view of the binary (skiff_runtime::sealed).
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some((root, helper)) = skiff_engine::reexec::Helper::from_args(&args) {
        skiff_engine::helpers::run(helper, &root);
    }
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    // Commands whose own process forks into containers (exec's process, build's RUN
    // steps, a node's helpers) run from a read-only view of our file, so none of them
    // exposes a writable host binary; the others start their helpers from one. A server
    // without its node agent and hollow nodes never enter a container.
    let enters_containers = match &cli.cmd {
        Cmd::Exec { .. } | Cmd::Build { .. } => true,
        Cmd::Server(f) => !f.disable_agent,
        Cmd::Agent(f) => f.hollow.is_none(),
        _ => false,
    };
    if enters_containers {
        if let Err(e) = skiff_runtime::sealed::reexec_sealed() {
            eprintln!("skiff: Error: cannot run from a read-only view of the skiff binary: {e}");
            std::process::exit(125);
        }
    }
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

/// Writing to a closed pipe (`skiff images | head -1`) ends the command quietly, as
/// a Unix tool killed by SIGPIPE (exit 141), instead of a panic with a backtrace. The
/// signal itself stays ignored: servers, monitors and relays must see EPIPE on their
/// sockets, not die of it; only print!'s failure on stdout is caught here.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

fn real_main(cli: Cli) -> Result<i32> {
    logging::set_level(cli.log_level.as_deref())?;
    if !matches!(cli.cmd, Cmd::Server(_) | Cmd::Agent(_)) {
        logging::init_cli()?;
    }
    let root = cli.root.as_path();
    images::configure_registry(images::RegistryFlags {
        config_dir: cli.config_dir.clone(),
        insecure: cli.insecure_registry.clone(),
        private_registry: cli.private_registry.clone(),
        disable_default_endpoint: cli.disable_default_registry_endpoint,
    });
    commands::configure_bridge(
        cli.bridge_name.as_deref(),
        cli.bridge_cidr.as_deref(),
        cli.filter_table.as_deref(),
    )?;
    match cli.cmd {
        Cmd::Run(f) => run::run(root, f),
        Cmd::Create(f) => run::create(root, f),
        Cmd::Start(a) => run::start(root, a),
        Cmd::Stop(a) => containers::stop(root, a),
        Cmd::Update(a) => containers::update(root, a),
        Cmd::Restart(a) => containers::restart(root, a),
        Cmd::Kill(a) => containers::kill(root, a),
        Cmd::Rm(a) => containers::rm(root, a),
        Cmd::Ps(a) => containers::ps(root, a),
        Cmd::Logs(a) => containers::logs(root, a),
        Cmd::Exec(a) => exec::exec(root, a),
        Cmd::Inspect(a) => commands::inspect::inspect(root, a),
        Cmd::Attach(a) => run::attach(root, a),
        Cmd::Wait(a) => containers::wait(root, a),
        Cmd::Pause(a) => containers::pause(root, a),
        Cmd::Unpause(a) => containers::unpause(root, a),
        Cmd::Rename(a) => containers::rename(root, a),
        Cmd::Port(a) => containers::port(root, a),
        Cmd::Top(a) => containers::top(root, a),
        Cmd::Stats(a) => containers::stats(root, a),
        Cmd::Server(f) => cluster::server(root, f),
        Cmd::Agent(f) => cluster::agent(root, f),
        Cmd::Image(i) => images::image(root, i),
        Cmd::Info => system::info(root),
        Cmd::Version => system::version(),
        Cmd::Images(a) => images::images(root, a),
        Cmd::Tag(a) => images::tag(root, a),
        Cmd::Rmi(a) => images::rmi(root, a),
        Cmd::Import(a) => images::import(root, a),
        Cmd::History(a) => images::history(root, a),
        Cmd::Build(a) => images::build(root, a),
        Cmd::Commit(a) => containers::commit(root, a),
        Cmd::Diff { container } => containers::diff(root, &container),
        Cmd::Cp(a) => containers::cp(root, a),
        Cmd::Export(a) => containers::export(root, a),
        Cmd::Save(a) => images::save(root, a),
        Cmd::Load(a) => images::load(root, a),
        Cmd::Pull(a) => images::pull(root, a),
        Cmd::Push(a) => images::push(root, a),
        Cmd::Login(a) => images::login(a),
        Cmd::Logout(a) => images::logout(a),
        Cmd::Volume(v) => volumes::volume(root, v),
        Cmd::Network(n) => networks::network(root, n),
        Cmd::System(s) => system::system(root, s),
        Cmd::Events(a) => system::events(root, a),
        Cmd::DnsServe(a) => dnsserve::run(a),
    }
}
