//! The commands on images: `build`, `images` (and the `image` group), `tag`, `rmi`,
//! `history`, `import`, `save`, `load`, and the registry commands `pull`, `push`,
//! `login` and `logout` (over `skiff_registry`, with docker's output).

use super::engine;
use crate::{format, Exit};
use anyhow::{anyhow, Context as _, Result};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum ImageCmd {
    /// Display detailed information on images.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove images.
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Tag an image.
    Tag { source: String, target: String },
    /// Show an image's history.
    History {
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        image: String,
    },
    /// Remove dangling images.
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove all unused images, not just dangling ones
        #[arg(short = 'a', long)]
        all: bool,
    },
}

#[derive(Args)]
pub(crate) struct ImagesArgs {
    #[arg(short = 'q', long)]
    quiet: bool,
    #[arg(short = 'a', long)]
    all: bool,
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show the registry digests.
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided (dangling, label, reference, before,
    /// since)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template ("table …" adds the column headers, "json"
    /// prints each image as JSON)
    #[arg(long)]
    format: Option<String>,
    repository: Option<String>,
}

#[derive(Args)]
pub(crate) struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// The commit message of the imported image.
    #[arg(short = 'm', long)]
    message: Option<String>,
    file: String,
    reference: Option<String>,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    #[arg(short = 'q', long)]
    quiet: bool,
    image: String,
}

#[derive(Args)]
pub(crate) struct BuildArgs {
    #[arg(short = 't', long = "tag")]
    tag: Vec<String>,
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long = "no-cache")]
    no_cache: bool,
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Always pull the FROM images (missing ones are pulled without it).
    #[arg(long)]
    pull: bool,
    /// Set metadata on the image (`key=value`); repeatable.
    #[arg(long = "label")]
    label: Vec<String>,
    /// Write the image ID to this file.
    #[arg(long = "iidfile")]
    iidfile: Option<PathBuf>,
    /// The context directory, or `-`: a Dockerfile or a tar context on stdin.
    context: PathBuf,
}

#[derive(Args)]
pub(crate) struct SaveArgs {
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LoadArgs {
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct PullArgs {
    /// Print only the image's reference.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Pull for this platform (os/arch[/variant]) instead of the host's.
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    platform: Option<String>,
    /// NAME[:TAG|@DIGEST]
    image: String,
}

#[derive(Args)]
pub(crate) struct PushArgs {
    /// Print only the pushed digest's reference lines.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// NAME[:TAG]
    image: String,
}

#[derive(Args)]
pub(crate) struct LoginArgs {
    #[arg(short = 'u', long)]
    username: Option<String>,
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// The registry (default: Docker Hub).
    server: Option<String>,
}

#[derive(Args)]
pub(crate) struct LogoutArgs {
    /// The registry (default: Docker Hub).
    server: Option<String>,
}

pub(crate) fn image(root: &Path, i: ImageCmd) -> Result<i32> {
    match i {
        ImageCmd::Inspect { format, images } => {
            super::inspect::objects(root, format, Some("image".into()), &images)
        }
        ImageCmd::Ls(a) => list(root, a),
        ImageCmd::Rm { force, images } => remove(root, force, &images),
        ImageCmd::Tag { source, target } => {
            engine(root)?.tag_image(&source, &target)?;
            Ok(0)
        }
        ImageCmd::History { no_trunc, image } => print_history(root, no_trunc, false, &image),
        ImageCmd::Prune { force: _, all } => {
            let (removed, freed) = engine(root)?.prune_images(all)?;
            print_pruned_images(&removed);
            println!(
                "\nTotal reclaimed space: {}",
                crate::format::human_size(freed)
            );
            Ok(0)
        }
    }
}

/// docker's `Deleted Images:` list (`untagged: NAME`, `deleted: ID`).
pub(crate) fn print_pruned_images(removed: &[skiff_image::RemoveEvent]) {
    println!("Deleted Images:");
    for ev in removed {
        match ev {
            skiff_image::RemoveEvent::Untagged(n) => println!("untagged: {n}"),
            skiff_image::RemoveEvent::Deleted(d) => println!("deleted: {d}"),
        }
    }
}

pub(crate) fn images(root: &Path, a: ImagesArgs) -> Result<i32> {
    list(root, a)
}

pub(crate) fn tag(root: &Path, a: TagArgs) -> Result<i32> {
    engine(root)?.tag_image(&a.source, &a.target)?;
    Ok(0)
}

pub(crate) fn rmi(root: &Path, a: RmiArgs) -> Result<i32> {
    remove(root, a.force, &a.images)
}

pub(crate) fn import(root: &Path, a: ImportArgs) -> Result<i32> {
    let ImportArgs {
        change,
        message,
        file,
        reference,
    } = a;
    let e = engine(root)?;
    let mut config = skiff_image::ContainerConfig::default();
    let changes: Vec<&str> = change.iter().map(String::as_str).collect();
    skiff_image::apply_changes(&mut config, &changes).map_err(|err| Exit(1, err.to_string()))?;
    let input: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&file).map_err(|err| anyhow!("open {file}: {err}"))?;
        Box::new(std::io::BufReader::new(f))
    };
    let img =
        e.images
            .import_rootfs_with(input, reference.as_deref(), config, message.as_deref())?;
    e.image_event("import", &img.id);
    println!("{}", img.id);
    Ok(0)
}

pub(crate) fn history(root: &Path, a: HistoryArgs) -> Result<i32> {
    print_history(root, a.no_trunc, a.quiet, &a.image)
}

/// How registries are reached, from the global flags, set once by `main`.
#[derive(Debug, Clone)]
pub(crate) struct RegistryFlags {
    /// skiff's config dir (`certs.d/`, the default `registries.yaml`).
    pub config_dir: PathBuf,
    /// `--insecure-registry`.
    pub insecure: Vec<String>,
    /// `--private-registry FILE` (k3s's flag); else `<config dir>/registries.yaml`.
    pub private_registry: Option<PathBuf>,
    /// `--disable-default-registry-endpoint`.
    pub disable_default_endpoint: bool,
}

static REGISTRY: std::sync::OnceLock<RegistryFlags> = std::sync::OnceLock::new();

/// The global registry flags as given, for a skiff process started from this one (the
/// Docker API's builds).
pub(crate) fn registry_args() -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    if let Some(f) = REGISTRY.get() {
        a.push("--config-dir".into());
        a.push(f.config_dir.clone().into());
        for i in &f.insecure {
            a.push(format!("--insecure-registry={i}").into());
        }
        if let Some(p) = &f.private_registry {
            a.push("--private-registry".into());
            a.push(p.clone().into());
        }
        if f.disable_default_endpoint {
            a.push("--disable-default-registry-endpoint".into());
        }
    }
    a
}

/// Records the global registry flags for the commands that talk to registries.
pub(crate) fn configure_registry(flags: RegistryFlags) {
    let _ = REGISTRY.set(flags);
}

/// The registry client's options from the global flags, with `registries.yaml` read
/// (a file named by `--private-registry` must exist; the default one may not).
pub(crate) fn registry_options(platform: Option<String>) -> Result<skiff_registry::Options> {
    let f = REGISTRY.get().cloned().unwrap_or_else(|| RegistryFlags {
        config_dir: PathBuf::from("/etc/skiff"),
        insecure: Vec::new(),
        private_registry: None,
        disable_default_endpoint: false,
    });
    let registries = match &f.private_registry {
        Some(p) => skiff_registry::RegistriesConfig::load(p, true),
        None => {
            skiff_registry::RegistriesConfig::load(&f.config_dir.join("registries.yaml"), false)
        }
    }?;
    Ok(skiff_registry::Options {
        config_dir: f.config_dir,
        insecure_registries: f.insecure,
        auth_file: skiff_registry::AuthFile::default_location(),
        platform,
        registries: std::sync::Arc::new(registries),
        disable_default_endpoint: f.disable_default_endpoint,
        pull_auth: None,
    })
}

fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting the async runtime: {e}"))
}

/// docker's progress output: one line per layer event when not a terminal (events that
/// only move a progress bar are left out), per-layer lines redrawn in place on one.
struct PullDisplay {
    quiet: bool,
    tty: bool,
    /// Print on stderr (a pull inside `run`), not stdout.
    stderr: bool,
    /// The layers shown so far, in the order of their lines (a terminal's redraws).
    ids: std::sync::Mutex<Vec<String>>,
}

impl PullDisplay {
    fn new(quiet: bool, stderr: bool) -> PullDisplay {
        use std::io::IsTerminal;
        let tty = if stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        PullDisplay {
            quiet,
            tty: !quiet && tty,
            stderr,
            ids: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn out(&self) -> Box<dyn Write> {
        if self.stderr {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        }
    }

    fn bar(current: u64, total: u64) -> String {
        if total == 0 {
            return format::human_size(current);
        }
        let width: u64 = 50;
        let done = current.min(total) * width / total;
        let mut s = String::from("[");
        if done >= width {
            s.push_str(&"=".repeat(width as usize));
        } else {
            s.push_str(&"=".repeat(done as usize));
            s.push('>');
            s.push_str(&" ".repeat((width - done - 1) as usize));
        }
        format!(
            "{s}] {:>8}/{}",
            format::human_size(current),
            format::human_size(total)
        )
    }

    fn line(&self, text: String) {
        if !self.quiet {
            let mut out = self.out();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

impl skiff_registry::Progress for PullDisplay {
    fn pulling_from(&self, tag_or_digest: &str, path: &str) {
        self.line(format!("{tag_or_digest}: Pulling from {path}"));
    }

    fn layer(&self, id: &str, status: skiff_registry::LayerStatus) {
        use skiff_registry::LayerStatus as S;
        if self.quiet {
            return;
        }
        let text = match &status {
            S::Downloading { current, total } | S::Pushing { current, total } => {
                if !self.tty {
                    return;
                }
                format!("{}  {}", status.text(), Self::bar(*current, *total))
            }
            S::Extracting if !self.tty => return,
            _ => status.text(),
        };
        let Ok(mut ids) = self.ids.lock() else {
            return;
        };
        let mut out = self.out();
        if !self.tty {
            let _ = writeln!(out, "{id}: {text}");
            let _ = out.flush();
            return;
        }
        match ids.iter().position(|i| i == id) {
            Some(pos) => {
                let up = ids.len() - pos;
                let _ = write!(out, "\x1b[{up}A\r\x1b[2K{id}: {text}\r\x1b[{up}B");
            }
            None => {
                ids.push(id.to_string());
                let _ = writeln!(out, "{id}: {text}");
            }
        }
        let _ = out.flush();
    }
}

fn daemon_error(e: impl std::fmt::Display) -> anyhow::Error {
    Exit(1, format!("Error response from daemon: {e}")).into()
}

/// Pulls `reference` into the engine at `root`, printing docker's lines (on stderr for
/// a pull inside `run` or `create`); returns the pulled image.
pub(crate) fn pull_image(
    root: &Path,
    reference: &str,
    platform: Option<String>,
    quiet: bool,
    on_stderr: bool,
    print_reference: bool,
) -> Result<skiff_image::Image> {
    let e = engine(root)?;
    let parsed =
        skiff_image::parse_reference(reference).map_err(|err| Exit(1, format!("{err}")))?;
    let opts = registry_options(platform).map_err(|err| Exit(1, format!("{err}")))?;
    let display = std::sync::Arc::new(PullDisplay::new(quiet, on_stderr));
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if parsed.digest.is_none() && !last.contains(':') {
        display.line("Using default tag: latest".into());
    }
    let rt = tokio_runtime()?;
    let pulled = rt
        .block_on(skiff_registry::pull(
            &e.images,
            reference,
            &opts,
            display.clone(),
        ))
        .map_err(daemon_error)?;
    e.image_event("pull", &pulled.reference.to_string());
    let shown = skiff_image::familiar_name(&pulled.reference.to_string());
    display.line(format!("Digest: {}", pulled.digest));
    if pulled.up_to_date {
        display.line(format!("Status: Image is up to date for {shown}"));
    } else {
        display.line(format!("Status: Downloaded newer image for {shown}"));
    }
    if print_reference {
        println!("{}", pulled.reference);
    }
    Ok(pulled.image)
}

pub(crate) fn pull(root: &Path, a: PullArgs) -> Result<i32> {
    let PullArgs {
        quiet,
        platform,
        image,
    } = a;
    pull_image(root, &image, platform, quiet, false, true)?;
    Ok(0)
}

pub(crate) fn push(root: &Path, a: PushArgs) -> Result<i32> {
    let PushArgs { quiet, image } = a;
    let e = engine(root)?;
    let parsed = skiff_image::parse_reference(&image).map_err(|err| Exit(1, format!("{err}")))?;
    if !quiet {
        println!("The push refers to repository [{}]", parsed.repository());
    }
    let opts = registry_options(None)?;
    let mut push_opts = skiff_registry::PushOptions::default();
    if let Some(n) = std::env::var("SKIFF_PUSH_CHUNK_SIZE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        push_opts.chunk_size = n;
    }
    let display = std::sync::Arc::new(PullDisplay::new(quiet, false));
    let rt = tokio_runtime()?;
    let pushed = rt
        .block_on(skiff_registry::push(
            &e.images, &image, &opts, &push_opts, display,
        ))
        .map_err(daemon_error)?;
    e.image_event("push", &image);
    if quiet {
        println!("{}@{}", parsed.repository(), pushed.digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        );
    }
    Ok(0)
}

/// The registry a login names: `docker.io` for none, the host of a URL.
pub(crate) fn login_server(server: Option<String>) -> String {
    match server {
        None => "docker.io".into(),
        Some(s) => {
            let s = s
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            if s == "index.docker.io" || s == "registry-1.docker.io" {
                "docker.io".into()
            } else {
                s
            }
        }
    }
}

fn prompt(label: &str, echo: bool) -> Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Exit(
            1,
            "Error: Cannot perform an interactive login from a non TTY device".into(),
        )
        .into());
    }
    eprint!("{label}: ");
    let _ = std::io::stderr().flush();
    let saved = if echo {
        None
    } else {
        nix::sys::termios::tcgetattr(&stdin).ok().inspect(|t| {
            let mut quiet = t.clone();
            quiet
                .local_flags
                .remove(nix::sys::termios::LocalFlags::ECHO);
            let _ =
                nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet);
        })
    };
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &t);
        eprintln!();
    }
    res.map_err(|e| anyhow!("reading {label}: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub(crate) fn login(a: LoginArgs) -> Result<i32> {
    let LoginArgs {
        username,
        password,
        password_stdin,
        server,
    } = a;
    let server = login_server(server);
    let password = if password_stdin {
        if password.is_some() {
            return Err(Exit(
                1,
                "Error: --password and --password-stdin are mutually exclusive".into(),
            )
            .into());
        }
        if username.is_none() {
            return Err(Exit(
                1,
                "Error: Must provide --username with --password-stdin".into(),
            )
            .into());
        }
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| anyhow!("reading the password from stdin: {e}"))?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        if password.is_some() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        password
    };
    let username = match username {
        Some(u) => u,
        None => prompt("Username", true)?,
    };
    let password = match password {
        Some(p) => p,
        None => prompt("Password", false)?,
    };
    if username.is_empty() {
        return Err(Exit(1, "Error: Username is required".into()).into());
    }
    if password.is_empty() {
        return Err(Exit(1, "Error: Password is required".into()).into());
    }
    let creds = skiff_registry::Credentials { username, password };
    let opts = registry_options(None)?;
    let rt = tokio_runtime()?;
    rt.block_on(skiff_registry::login(&server, &opts, creds.clone()))
        .map_err(|e| daemon_error(login_failure(&server, &opts, e)))?;
    opts.auth_file
        .store(&server, &creds)
        .map_err(|e| anyhow!("storing the credentials: {e}"))?;
    println!("Login Succeeded");
    Ok(0)
}

/// Why a login to `server` failed, as dockerd says it: a refusal names the URL it asked.
pub(crate) fn login_failure(
    server: &str,
    opts: &skiff_registry::Options,
    e: skiff_registry::Error,
) -> String {
    match e {
        skiff_registry::Error::Status { .. } => {
            let base = if skiff_registry::is_loopback(server)
                || opts.insecure_registries.iter().any(|r| r == server)
            {
                "http"
            } else {
                "https"
            };
            format!(
                "Get \"{base}://{}/v2/\": {e}",
                skiff_registry::endpoint_host(server)
            )
        }
        e => e.to_string(),
    }
}

pub(crate) fn logout(a: LogoutArgs) -> Result<i32> {
    let server = login_server(a.server);
    let shown = skiff_registry::credentials::config_key(&server);
    let file = skiff_registry::AuthFile::default_location();
    if file.get(&server).map_err(|e| anyhow!("{e}"))?.is_none() {
        println!("Not logged in to {shown}");
        return Ok(0);
    }
    println!("Removing login credentials for {shown}");
    file.erase(&server).map_err(|e| anyhow!("{e}"))?;
    Ok(0)
}

pub(crate) fn build(root: &Path, a: BuildArgs) -> Result<i32> {
    let BuildArgs {
        tag,
        file,
        build_arg,
        target,
        no_cache,
        quiet,
        pull,
        label,
        iidfile,
        context,
    } = a;
    let e = engine(root)?;
    // `-`: the context comes on stdin, a tar (plain or compressed) or a lone
    // Dockerfile; it is unpacked into a directory of its own, removed afterwards.
    let _stdin_context;
    let context = if context.as_os_str() == "-" {
        let dir = stdin_context(&root.join("tmp"))?;
        let path = dir.path().to_path_buf();
        _stdin_context = dir;
        path
    } else {
        context
    };
    let mut args = std::collections::BTreeMap::new();
    for a in build_arg {
        match a.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(&a) {
                    args.insert(a.clone(), v);
                }
            }
        }
    }
    if !context.is_dir() {
        return Err(Exit(
            1,
            format!(
                "ERROR: unable to prepare context: path \"{}\" not found",
                context.display()
            ),
        )
        .into());
    }
    let opts = skiff_image::BuildOptions {
        context_dir: context.clone(),
        dockerfile: file.map(|f| {
            if f.is_absolute() || f.exists() {
                f
            } else {
                context.join(f)
            }
        }),
        tags: tag,
        build_args: args,
        target,
        no_cache,
        labels: label
            .into_iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l, String::new()),
            })
            .collect(),
    };
    // docker pulls the base images a build lacks (all of them with --pull).
    let dockerfile = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| context.join("Dockerfile"));
    for base in base_images(&dockerfile) {
        if pull || !e.images.exists(&base) {
            pull_image(root, &base, None, quiet, false, false)?;
        }
    }
    let runner = skiff_engine::build::BuildRunner { engine: &e };
    let stdout = std::io::stdout();
    let mut sink = std::io::sink();
    let mut lock = stdout.lock();
    let out: &mut dyn Write = if quiet { &mut sink } else { &mut lock };
    match skiff_image::build(&e.images, &opts, &runner, out) {
        Ok(img) => {
            if quiet {
                println!("{}", img.id);
            }
            if let Some(f) = iidfile {
                std::fs::write(&f, &img.id)
                    .with_context(|| format!("writing the image ID to {}", f.display()))?;
            }
            Ok(0)
        }
        // As docker's classic builder: a failed RUN's exit code is the build's.
        Err(err) => {
            let code = match &err {
                skiff_image::ImageError::Step {
                    exit_code: Some(c), ..
                } if *c > 0 => *c,
                _ => 1,
            };
            Err(Exit(code, format!("{err}")).into())
        }
    }
}

/// `build -`: stdin holds a tar context (plain, gzip or zstd; a tar has `ustar` at
/// offset 257) or a Dockerfile, which becomes the only file of an empty context.
fn stdin_context(tmp: &Path) -> Result<tempfile::TempDir> {
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("build-stdin-")
        .tempdir_in(tmp)
        .context("making a directory for the context on stdin")?;
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let head = std::io::BufRead::fill_buf(&mut input)
        .context("reading the context from stdin")?
        .to_vec();
    let compressed = head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    let tar = head.len() >= 262 && &head[257..262] == b"ustar";
    if compressed || tar {
        skiff_image::unpack_context(input, dir.path())
            .map_err(|e| Exit(1, format!("ERROR: unable to prepare context: {e}")))?;
    } else {
        let mut text = Vec::new();
        std::io::Read::take(input, 16 << 20)
            .read_to_end(&mut text)
            .context("reading the Dockerfile from stdin")?;
        std::fs::write(dir.path().join("Dockerfile"), text)
            .context("writing the Dockerfile from stdin")?;
    }
    Ok(dir)
}

/// The images a Dockerfile's FROM lines name: not `scratch`, not an earlier stage, not
/// one with a variable to expand (the build reports those itself).
fn base_images(dockerfile: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dockerfile) else {
        return Vec::new();
    };
    let Ok(df) = skiff_image::parse_dockerfile(&text, "Dockerfile") else {
        return Vec::new();
    };
    let mut stages = std::collections::BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    for ins in df.instructions.iter().filter(|i| i.keyword == "FROM") {
        let words: Vec<&str> = ins.args.split_whitespace().collect();
        let Some(image) = words.first() else { continue };
        let lower = image.to_lowercase();
        if lower != "scratch"
            && !image.contains('$')
            && !stages.contains(&lower)
            && !out.iter().any(|o| o == image)
        {
            out.push(image.to_string());
        }
        if words.len() >= 3 && words[1].eq_ignore_ascii_case("as") {
            stages.insert(words[2].to_lowercase());
        }
    }
    out
}

pub(crate) fn save(root: &Path, a: SaveArgs) -> Result<i32> {
    let SaveArgs { output, images } = a;
    let e = engine(root)?;
    let refs: Vec<&str> = images.iter().map(|s| s.as_str()).collect();
    match output {
        Some(p) => {
            let tmp = p.with_extension("skiff-tmp");
            let f = std::fs::File::create(&tmp).map_err(|err| anyhow!("{}: {err}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            if let Err(err) = e.images.save(&refs, &mut w) {
                let _ = std::fs::remove_file(&tmp);
                return Err(err.into());
            }
            w.flush()?;
            std::fs::rename(&tmp, &p)?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(anyhow!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                ));
            }
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            e.images.save(&refs, &mut w)?;
            w.flush()?;
        }
    }
    for r in refs {
        e.image_event("save", r);
    }
    Ok(0)
}

pub(crate) fn load(root: &Path, a: LoadArgs) -> Result<i32> {
    let LoadArgs { input, quiet } = a;
    let e = engine(root)?;
    let names = match input {
        Some(p) => {
            let f =
                std::fs::File::open(&p).map_err(|err| anyhow!("open {}: {err}", p.display()))?;
            e.images.load(std::io::BufReader::new(f))?
        }
        None => e.images.load(std::io::stdin().lock())?,
    };
    for n in &names {
        e.image_event("load", n);
    }
    if !quiet {
        for n in names {
            if n.starts_with("sha256:") {
                println!("Loaded image ID: {n}");
            } else {
                println!("Loaded image: {}", skiff_image::familiar_name(&n));
            }
        }
    }
    Ok(0)
}

/// docker's column header of each field `images --format` knows.
const IMAGE_FIELDS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// `skiff images`: a row per name (and `<none>` rows for dangling images), docker's
/// columns, `--filter` (through the same filters as the Docker API), `--digests`,
/// `--no-trunc`, `-q`, `--format`.
fn list(root: &Path, a: ImagesArgs) -> Result<i32> {
    let e = engine(root)?;
    let mut filters = crate::listing::parse_filters(&a.filter).map_err(|m| Exit(1, m))?;
    // A repository argument is docker's reference filter.
    if let Some(r) = &a.repository {
        filters.push(("reference".into(), r.clone()));
    }
    let images = e.images.all_images()?;
    let filters = crate::listing::ImageFilters::new(&filters, &images)
        .map_err(|err| Exit(1, format!("Error response from daemon: {err}")))?;
    let by_id: std::collections::HashMap<&str, &skiff_image::Image> =
        images.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut list = e.images.list()?;
    list.retain(|s| {
        by_id.get(s.id.as_str()).is_some_and(|i| filters.image(i))
            && (!filters.by_reference()
                || (s.repository != "<none>"
                    && skiff_image::normalize_reference(&format!("{}:{}", s.repository, s.tag))
                        .is_ok_and(|n| filters.name(&n))))
    });
    let id_of = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            skiff_image::short_id(id)
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for s in list {
            let id = id_of(&s.id);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            // The registry digest this row's repository knows the image by.
            let digest = by_id
                .get(s.id.as_str())
                .and_then(|img| {
                    img.repo_digests.iter().find_map(|rd| {
                        let (repo, digest) = rd.split_once('@')?;
                        (skiff_image::familiar_name(repo) == s.repository)
                            .then(|| digest.to_string())
                    })
                })
                .unwrap_or_else(|| "<none>".into());
            let created_at = s
                .created
                .as_deref()
                .map(format::created_at)
                .unwrap_or_default();
            serde_json::json!({
                "ID": id_of(&s.id),
                "Repository": s.repository,
                "Tag": s.tag,
                "Digest": digest,
                "CreatedSince": s
                    .created
                    .as_deref()
                    .map(|c| format!("{} ago", format::human_duration(format::since(c))))
                    .unwrap_or_else(|| "N/A".into()),
                "CreatedAt": created_at,
                "Size": format::human_size(s.size),
                "VirtualSize": format::human_size(s.size),
                "Containers": "N/A",
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
            })
        })
        .collect();
    let default_format = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let tpl = a.format.as_deref().unwrap_or(default_format);
    format::print_rows(tpl, IMAGE_FIELDS, &rows).map_err(|m| Exit(1, m))?;
    Ok(0)
}

fn remove(root: &Path, force: bool, images: &[String]) -> Result<i32> {
    let e = engine(root)?;
    let mut failed = false;
    for i in images {
        match e.remove_image(i, force) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        skiff_image::RemoveEvent::Untagged(n) => println!("Untagged: {n}"),
                        skiff_image::RemoveEvent::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn print_history(root: &Path, no_trunc: bool, quiet: bool, image: &str) -> Result<i32> {
    let e = engine(root)?;
    let h = e.images.history(image)?;
    if quiet {
        for x in h {
            println!(
                "{}",
                if no_trunc {
                    x.id
                } else {
                    skiff_image::short_id(&x.id)
                }
            );
        }
        return Ok(0);
    }
    let mut rows = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for x in h {
        let mut by = x.created_by.clone();
        if !no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(vec![
            if x.id.is_empty() || x.id == "<missing>" {
                "<missing>".to_string()
            } else if no_trunc {
                x.id.clone()
            } else {
                skiff_image::short_id(&x.id)
            },
            x.created
                .as_deref()
                .map(|c| format!("{} ago", format::human_duration(format::since(c))))
                .unwrap_or_default(),
            by,
            format::human_size(x.size),
            x.comment.clone(),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(0)
}
