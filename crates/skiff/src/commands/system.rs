//! Engine-wide commands: `info`, `version`, and `system prune` and `system boot`
//! (restarting the containers whose restart policy asks for it).

use super::engine;
use anyhow::Result;
use clap::{Args, Subcommand};
use skiff_engine::ops::Report;
use std::path::Path;

#[derive(Subcommand)]
pub(crate) enum SystemCmd {
    /// Remove stopped containers, dangling images and unused volumes.
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long)]
        volumes: bool,
    },
    /// Restart containers with `--restart always` (for a boot-time unit).
    Boot,
    /// Serve the Docker Engine API (as `podman system service`) for the docker CLI,
    /// docker-compose and the SDKs.
    Service {
        /// Seconds without a connection before the service exits (0: never).
        #[arg(short = 't', long = "time", default_value_t = 5)]
        time: u64,
        /// unix:///path (default unix:///run/skiff/docker.sock) or tcp://127.0.0.1:PORT.
        uri: Option<String>,
    },
}

pub(crate) fn info(root: &Path) -> Result<i32> {
    let e = engine(root)?;
    let all = e.list()?;
    let running = all
        .iter()
        .filter(|c| c.state.status == skiff_engine::Status::Running)
        .count();
    let paused = all
        .iter()
        .filter(|c| c.state.status == skiff_engine::Status::Paused)
        .count();
    let cg = skiff_runtime::cgroups::Host::detect()?;
    println!(
        "Client:\n Version:    {}\n\nServer:",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        " Containers: {}\n  Running: {running}\n  Paused: {paused}\n  Stopped: {}",
        all.len(),
        all.len() - running - paused
    );
    println!(" Images: {}", e.images.all_images()?.len());
    println!(" Server Version: {}", env!("CARGO_PKG_VERSION"));
    println!(" Storage Driver: overlay2\n Logging Driver: json-file");
    println!(
        " Cgroup Driver: cgroupfs\n Cgroup Version: {}",
        if cg.version == skiff_runtime::cgroups::Version::V2 {
            2
        } else {
            1
        }
    );
    println!(
        " Runtime: skiff (daemonless)\n Kernel Version: {}",
        skiff_runtime::sys::kernel_release()
    );
    println!(" Docker Root Dir: {}", e.root.display());
    Ok(0)
}

pub(crate) fn version() -> Result<i32> {
    println!("Client:\n Version:           {}\n OS/Arch:           linux/{}\n\nServer: skiff\n Engine:\n  Version:          {}", env!("CARGO_PKG_VERSION"), skiff_image::host_arch(), env!("CARGO_PKG_VERSION"));
    Ok(0)
}

/// `system service`: the Docker Engine API until `time` seconds pass without a
/// connection (0: never).
fn service(root: &Path, time: u64, uri: Option<String>) -> Result<i32> {
    let listen = crate::dockerapi::parse_listen(
        &uri.unwrap_or_else(|| format!("unix://{}", crate::dockerapi::DEFAULT_SOCKET)),
    )
    .map_err(|e| crate::Exit(125, e.to_string()))?;
    // The engine opens (and reconciles stale state) before the first request.
    engine(root)?;
    let idle = (time > 0).then(|| std::time::Duration::from_secs(time));
    crate::dockerapi::serve(root, listen, idle)
}

pub(crate) fn system(root: &Path, s: SystemCmd) -> Result<i32> {
    match s {
        SystemCmd::Service { time, uri } => service(root, time, uri),
        SystemCmd::Prune {
            force: _,
            all,
            volumes,
        } => {
            let e = engine(root)?;
            println!("Deleted Containers:");
            for c in e.list()? {
                if !c.state.status.is_active() {
                    e.remove(&c.record.id, false, false)?;
                    println!("{}", c.record.id);
                }
            }
            let (imgs, _) = e.prune_images(all)?;
            println!();
            super::images::print_pruned_images(&imgs);
            // docker prunes anonymous volumes with --volumes; unused anonymous volumes
            // left by removed containers are prunable here too.
            let (vols, _) = e.prune_volumes(volumes)?;
            println!("\nDeleted Volumes:");
            for v in vols {
                println!("{v}");
            }
            Ok(0)
        }
        SystemCmd::Boot => {
            let e = engine(root)?;
            let mut failed = false;
            for c in e.list()? {
                let p = &c.record.host.restart_policy.name;
                let wanted = p == "always" || (p == "unless-stopped" && !c.state.manually_stopped);
                if wanted && !c.state.status.is_active() {
                    match e.start(&c.record.id, None) {
                        Ok((_, Report::Started(_))) => println!("{}", c.record.name),
                        Ok((_, r)) => {
                            eprintln!("{}: {r:?}", c.record.name);
                            failed = true;
                        }
                        Err(err) => {
                            eprintln!("{}: {err}", c.record.name);
                            failed = true;
                        }
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
    }
}

#[derive(Args)]
pub(crate) struct EventsArgs {
    /// Show events since a time: a Unix timestamp, an RFC 3339 time or date, or a
    /// duration before now (`10m`, `1h30m`).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Filter (`type=`, `event=`, `container=`, `image=`, `label=`, `network=`,
    /// `volume=`); repeatable.
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format with a Go template (`{{json .}}`, `{{.Type}} {{.Action}}`).
    #[arg(long)]
    format: Option<String>,
}

/// A `--since`/`--until` time in nanoseconds since the epoch.
fn event_time(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64> {
    let bad = || {
        crate::Exit(
            125,
            format!("invalid time {s:?}: a Unix timestamp, an RFC 3339 time or a duration (10m)"),
        )
    };
    if let Some((secs, frac)) = s.split_once('.').or(Some((s, ""))) {
        if !secs.is_empty()
            && secs.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
            && frac.len() <= 9
        {
            let secs: i64 = secs.parse().map_err(|_| bad())?;
            let nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
            return Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().ok_or_else(|| bad().into());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_utc().timestamp_nanos_opt())
            .ok_or_else(|| bad().into());
    }
    // A Go duration: numbers with h, m, s, ms units.
    let mut total = 0i64;
    let mut num = String::new();
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad().into());
    }
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, len) = if rest.starts_with("ms") {
            (1_000_000f64, 2)
        } else {
            match c {
                'h' => (3.6e12, 1),
                'm' => (6e10, 1),
                's' => (1e9, 1),
                _ => return Err(bad().into()),
            }
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        total = total.saturating_add((n * unit) as i64);
        num.clear();
        rest = &rest[len..];
    }
    if !num.is_empty() {
        return Err(bad().into());
    }
    Ok(now.timestamp_nanos_opt().unwrap_or(0).saturating_sub(total))
}

/// `skiff events`: the engine's events as docker prints them.
pub(crate) fn events(root: &Path, a: EventsArgs) -> Result<i32> {
    use std::io::Write as _;
    let e = engine(root)?;
    let now = chrono::Utc::now();
    let since = a.since.as_deref().map(|s| event_time(s, now)).transpose()?;
    let until = a.until.as_deref().map(|s| event_time(s, now)).transpose()?;
    let mut filters = Vec::new();
    for f in &a.filter {
        let Some((k, v)) = f.split_once('=') else {
            return Err(crate::Exit(
                125,
                format!("bad format of filter (expected name=value): {f}"),
            )
            .into());
        };
        if !skiff_engine::events::FILTERS.contains(&k) {
            return Err(crate::Exit(125, format!("invalid filter '{k}'")).into());
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let stdout = std::io::stdout();
    let mut failed = None;
    skiff_engine::events::stream(
        &e.root,
        since,
        until,
        &filters,
        |ev| {
            let line = match &a.format {
                Some(t) => {
                    let v = serde_json::to_value(ev).unwrap_or_default();
                    match crate::format::template(t, &v) {
                        Ok(s) => s,
                        Err(err) => {
                            failed = Some(err);
                            return false;
                        }
                    }
                }
                None => {
                    let t = chrono::DateTime::from_timestamp(
                        ev.time_nano.div_euclid(1_000_000_000),
                        ev.time_nano.rem_euclid(1_000_000_000) as u32,
                    )
                    .unwrap_or_default();
                    let attrs: Vec<String> = ev
                        .actor
                        .attributes
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!(
                        "{} {} {} {} ({})",
                        t.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
                        ev.typ,
                        ev.action,
                        ev.actor.id,
                        attrs.join(", ")
                    )
                }
            };
            let mut out = stdout.lock();
            // A closed pipe (`skiff events | head -1`) ends the stream quietly.
            writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
        },
        || true,
    );
    match failed {
        Some(err) => Err(crate::Exit(125, format!("template: {err}")).into()),
        None => Ok(0),
    }
}
