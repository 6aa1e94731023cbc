//! What skiff logs and where. Every process logs through `tracing`, filtered by the
//! global `--log-level` (env `SKIFF_LOG`): a level or tracing directives. CLI commands
//! default to warnings; `skiff server` and `skiff agent` default to info (their
//! start-up and significant actions, as k3s logs them) and take k3s's logging flags:
//! `--log FILE` (to the file instead of stderr), `--alsologtostderr`, and `-v N`.

use anyhow::{anyhow, Result};
use clap::Args;
use std::path::PathBuf;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// k3s's logging flags of `skiff server` and `skiff agent`.
#[derive(Args, Clone, Default)]
pub struct LogFlags {
    /// Log to this file (appended, created 0600) instead of stderr.
    #[arg(long = "log", short = 'l', value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// With --log, log to stderr as well.
    #[arg(long = "alsologtostderr")]
    pub also_to_stderr: bool,
    /// Verbosity, as k3s's -v: 0 keeps --log-level, 1 to 4 log at debug, 5 and more
    /// at trace.
    #[arg(short = 'v', value_name = "N")]
    pub verbosity: Option<u8>,
}

static LEVEL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Take the global `--log-level` (None when not given), refusing a filter tracing
/// cannot parse, so a typo is an error naming it rather than silence.
pub fn set_level(level: Option<&str>) -> Result<()> {
    if let Some(l) = level {
        EnvFilter::try_new(l).map_err(|e| anyhow!("invalid --log-level {l:?}: {e}"))?;
    }
    let _ = LEVEL.set(level.map(str::to_string));
    Ok(())
}

/// The filter in force: `-v` if given, else `--log-level`, else `default`.
fn filter(default: &str, verbosity: Option<u8>) -> Result<EnvFilter> {
    let level = match verbosity {
        Some(0) | None => LEVEL
            .get()
            .cloned()
            .flatten()
            .unwrap_or_else(|| default.to_string()),
        Some(1..=4) => "debug".to_string(),
        Some(_) => "trace".to_string(),
    };
    EnvFilter::try_new(&level).map_err(|e| anyhow!("invalid --log-level {level:?}: {e}"))
}

/// Log to stderr at the global level, or warnings when none was given (CLI commands).
pub fn init_cli() -> Result<()> {
    let f = filter("warn", None)?;
    let _ = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_ansi(stderr_is_terminal())
                .with_writer(std::io::stderr)
                .with_filter(f),
        )
        .try_init();
    Ok(())
}

/// Log as `skiff server` and `skiff agent` do: info by default, to stderr, or to the
/// `--log` file (also to stderr with `--alsologtostderr`).
pub fn init_daemon(flags: &LogFlags) -> Result<()> {
    let file = match &flags.log {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow!("--log {}: {e}", path.display()))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| anyhow!("--log {}: {e}", path.display()))?;
            Some(f)
        }
        None => None,
    };
    let to_stderr = file.is_none() || flags.also_to_stderr;
    let (f1, f2) = (
        filter("info", flags.verbosity)?,
        filter("info", flags.verbosity)?,
    );
    let stderr = to_stderr.then(|| {
        fmt::layer()
            .with_ansi(stderr_is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(f1)
    });
    let file = file.map(|f| {
        fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .with_filter(f2)
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

/// Colours only for a person at a terminal, never in a pipe or a file.
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}
