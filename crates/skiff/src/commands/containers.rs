//! The commands on containers that neither run nor attach to them: `stop`,
//! `restart`, `kill`, `rm`, `wait`, `pause`, `unpause`, `rename`, `ps`, `logs`,
//! `port`, `top`, `stats`, `commit` and `cp`, with their flags.

use super::{each, engine};
use crate::{format, Exit};
use anyhow::{anyhow, Context as _, Result};
use clap::Args;
use skiff_engine::ops::Report;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    /// Signal to send instead of the container's stop signal.
    #[arg(short = 's', long = "signal")]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct KillArgs {
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RmArgs {
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

// The containers `wait`, `pause` and `unpause` act on.
#[derive(Args)]
pub(crate) struct Targets {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided (name=value; repeatable)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", allow_hyphen_values = true)]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
    /// Format output using a Go template ("table …" adds the column headers)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    #[arg(short = 'f', long)]
    follow: bool,
    #[arg(short = 'n', long)]
    tail: Option<String>,
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

#[derive(Args)]
pub(crate) struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub(crate) struct PortArgs {
    container: String,
    port: Option<String>,
}

#[derive(Args)]
pub(crate) struct TopArgs {
    container: String,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    #[arg(long = "no-stream")]
    no_stream: bool,
    #[arg(short = 'a', long)]
    all: bool,
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct CommitArgs {
    #[arg(short = 'a', long)]
    author: Option<String>,
    #[arg(short = 'm', long)]
    message: Option<String>,
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    container: String,
    repository: Option<String>,
}

#[derive(Args)]
pub(crate) struct UpdateArgs {
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long)]
    cpu_period: Option<u64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `skiff update`: new resource limits or restart policy for containers, running or
/// not (`docker update`); prints each container as given.
pub(crate) fn update(root: &Path, a: UpdateArgs) -> Result<i32> {
    let limits = skiff_engine::Limits {
        memory: a.memory,
        memory_swap: a.memory_swap,
        cpus: a.cpus,
        cpu_period: a.cpu_period,
        cpu_quota: a.cpu_quota,
        cpu_shares: a.cpu_shares,
        pids_limit: a.pids_limit,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
    };
    if limits.is_empty() && a.restart.is_none() {
        return Err(Exit(
            1,
            "You must provide one or more flags when using this command.".into(),
        )
        .into());
    }
    each(root, &a.containers, |e, c| {
        e.update(c, &limits, a.restart.as_deref())?;
        println!("{c}");
        Ok(())
    })
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    container: String,
}

#[derive(Args)]
pub(crate) struct CpArgs {
    source: String,
    destination: String,
}

pub(crate) fn stop(root: &Path, a: StopArgs) -> Result<i32> {
    let StopArgs {
        time,
        signal,
        containers,
    } = a;
    each(root, &containers, |e, c| {
        e.stop_with(c, time, signal.as_deref())?;
        println!("{c}");
        Ok(())
    })
}

pub(crate) fn restart(root: &Path, a: StopArgs) -> Result<i32> {
    let StopArgs {
        time,
        signal,
        containers,
    } = a;
    each(root, &containers, |e, c| {
        e.stop_with(c, time, signal.as_deref())?;
        let (_, first) = e.start(c, None)?;
        match first {
            Report::Started(_) => {
                if let Ok(ctr) = e.get(c) {
                    skiff_engine::events::container(&e.root, &ctr, "restart", &[]);
                }
                println!("{c}");
                Ok(())
            }
            Report::Failed(_, m) => Err(anyhow!("{m}")),
            _ => Err(anyhow!("the monitor exited")),
        }
    })
}

pub(crate) fn kill(root: &Path, a: KillArgs) -> Result<i32> {
    let KillArgs { signal, containers } = a;
    each(root, &containers, |e, c| {
        e.kill(c, &signal)?;
        println!("{c}");
        Ok(())
    })
}

pub(crate) fn rm(root: &Path, a: RmArgs) -> Result<i32> {
    let RmArgs {
        force,
        volumes,
        containers,
    } = a;
    each(root, &containers, |e, c| {
        e.remove(c, force, volumes)?;
        println!("{c}");
        Ok(())
    })
}

pub(crate) fn wait(root: &Path, a: Targets) -> Result<i32> {
    each(root, &a.containers, |e, c| {
        println!("{}", e.wait(c, None)?);
        Ok(())
    })
}

pub(crate) fn pause(root: &Path, a: Targets) -> Result<i32> {
    each(root, &a.containers, |e, c| {
        e.pause(c, true)?;
        println!("{c}");
        Ok(())
    })
}

pub(crate) fn unpause(root: &Path, a: Targets) -> Result<i32> {
    each(root, &a.containers, |e, c| {
        e.pause(c, false)?;
        println!("{c}");
        Ok(())
    })
}

pub(crate) fn rename(root: &Path, a: RenameArgs) -> Result<i32> {
    let RenameArgs {
        container,
        new_name,
    } = a;
    engine(root)?.rename(&container, &new_name)?;
    Ok(0)
}

/// docker's column header of each field `ps --format` knows.
const PS_FIELDS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

/// `skiff ps`: docker's columns, `--filter` (docker's filters, through the same
/// listing as the Docker API), `-n`/`-l`, `-s`, `--format` (a template over docker's
/// ps fields; `table` adds their headers).
pub(crate) fn ps(root: &Path, a: PsArgs) -> Result<i32> {
    let filters = crate::listing::parse_filters(&a.filter).map_err(|m| Exit(1, m))?;
    let limit = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n > 0).map(|n| n as usize)
    };
    let e = engine(root)?;
    let listing = crate::listing::Listing {
        all: a.all,
        limit,
        filters,
    };
    let list = listing
        .select(e.list()?)
        .map_err(|err| Exit(1, format!("Error response from daemon: {err}")))?;
    if a.quiet {
        for c in list {
            println!(
                "{}",
                if a.no_trunc {
                    &c.record.id
                } else {
                    c.short_id()
                }
            );
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| ps_fields(&e, c, a.no_trunc, a.size))
        .collect();
    let default_format = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let tpl = a.format.as_deref().unwrap_or(default_format);
    format::print_rows(tpl, PS_FIELDS, &rows).map_err(|m| Exit(1, m))?;
    Ok(0)
}

/// One container as `docker ps --format` sees it.
fn ps_fields(
    e: &skiff_engine::Engine,
    c: &skiff_engine::Container,
    no_trunc: bool,
    size: bool,
) -> serde_json::Value {
    let r = &c.record;
    let mut cmd = crate::inspect::command_line(c);
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let ports = crate::inspect::published_ports(c)
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
    let created = format::created_at(&r.created);
    let labels = r
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mounts = r
        .mounts
        .iter()
        .map(|m| {
            if m.name.is_empty() {
                m.source.clone()
            } else {
                m.name.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let inspected = crate::inspect::container(c);
    let networks = inspected
        .pointer("/NetworkSettings/Networks")
        .and_then(|n| n.as_object())
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let size_text = if size {
        let rw = skiff_engine::files::dir_bytes(&c.dir.join("upper"));
        let image_size = e.images.resolve(&r.image_id).map(|i| i.size).unwrap_or(0);
        format!(
            "{} (virtual {})",
            format::human_size(rw),
            format::human_size(rw + image_size)
        )
    } else {
        String::new()
    };
    serde_json::json!({
        "ID": if no_trunc { r.id.clone() } else { c.short_id().to_string() },
        "Image": image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": created,
        "RunningFor": format!("{} ago", format::human_duration(format::since(&r.created))),
        "Ports": ports,
        "State": c.state.status.as_str(),
        "Status": crate::inspect::status_text(c),
        "Size": size_text,
        "Names": r.name,
        "Labels": labels,
        "Label": r.labels,
        "Mounts": mounts,
        "Networks": networks,
    })
}

pub(crate) fn logs(root: &Path, a: LogsArgs) -> Result<i32> {
    let LogsArgs {
        follow,
        tail,
        timestamps: ts,
        container,
    } = a;
    let name = container.as_str();
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
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut o, mut er) = (stdout.lock(), stderr.lock());
    skiff_engine::logs::each_kept(
        &path,
        opts.tail,
        |_| true,
        |en| {
            skiff_engine::logs::print_entry(en, &opts, &mut o, &mut er);
            true
        },
    );
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

pub(crate) fn port(root: &Path, a: PortArgs) -> Result<i32> {
    let PortArgs { container, port } = a;
    let e = engine(root)?;
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

pub(crate) fn top(root: &Path, a: TopArgs) -> Result<i32> {
    let TopArgs { container } = a;
    let e = engine(root)?;
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

pub(crate) fn stats(root: &Path, a: StatsArgs) -> Result<i32> {
    let StatsArgs {
        no_stream,
        all,
        containers,
    } = a;
    let names = containers.as_slice();
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
    let host_mem = skiff_runtime::sys::meminfo("MemTotal:").unwrap_or(u64::MAX);
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

pub(crate) fn commit(root: &Path, a: CommitArgs) -> Result<i32> {
    let CommitArgs {
        author,
        message,
        pause,
        change,
        container,
        repository,
    } = a;
    let e = engine(root)?;
    let img = e.commit(
        &container,
        repository.as_deref(),
        &skiff_engine::files::CommitOptions {
            author,
            message,
            pause,
            changes: change,
        },
    )?;
    println!("{}", img.id);
    Ok(0)
}

/// `skiff diff`: docker's `A`/`C`/`D` lines.
pub(crate) fn diff(root: &Path, container: &str) -> Result<i32> {
    let e = engine(root)?;
    for (path, kind) in e.changes(container)? {
        let k = match kind {
            0 => 'C',
            1 => 'A',
            _ => 'D',
        };
        println!("{k} {path}");
    }
    Ok(0)
}

/// `skiff export [-o FILE] CONTAINER`: the container's filesystem as a tar stream,
/// without what is mounted over it (volumes, `/proc`, the managed `/etc` files), as
/// `docker export`. Done by the archive helper, chrooted into the container's root.
pub(crate) fn export(root: &Path, a: ExportArgs) -> Result<i32> {
    use skiff_engine::archive::ArchiveOp;
    use std::io::{BufRead as _, Write as _};
    let ExportArgs { output, container } = a;
    if output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Exit(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        )
        .into());
    }
    let e = engine(root)?;
    let ctr = e.get(&container)?;
    let mut child = e
        .archive_command(&ctr.record.id, ArchiveOp::Export, "/")
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("starting the archive helper")?;
    let mut out = std::io::BufReader::with_capacity(
        64 << 10,
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the archive helper has no output"))?,
    );
    let failed = |out: std::process::Output| -> anyhow::Error {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Exit(1, format!("Error response from daemon: {msg}")).into()
    };
    let mut line = String::new();
    let _ = out.by_ref().take(64 << 10).read_line(&mut line);
    if !line.ends_with('\n') {
        drop(out);
        return Err(failed(child.wait_with_output()?));
    }
    let copied = match &output {
        Some(p) => {
            let tmp = p.with_extension("skiff-tmp");
            let written = std::fs::File::create(&tmp)
                .map_err(|err| anyhow!("{}: {err}", p.display()))
                .and_then(|f| {
                    let mut w = std::io::BufWriter::new(f);
                    std::io::copy(&mut out, &mut w)?;
                    w.flush()?;
                    Ok(())
                });
            let done = child.wait_with_output()?;
            match written {
                Ok(()) if done.status.success() => {
                    std::fs::rename(&tmp, p)?;
                    Ok(())
                }
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(failed(done))
                }
                Err(err) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(err)
                }
            }
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            std::io::copy(&mut out, &mut w).context("writing the archive")?;
            w.flush()?;
            let done = child.wait_with_output()?;
            if done.status.success() {
                Ok(())
            } else {
                Err(failed(done))
            }
        }
    };
    copied?;
    skiff_engine::events::container(&e.root, &ctr, "export", &[]);
    Ok(0)
}

/// `skiff cp CONTAINER:SRC DEST` or `skiff cp SRC CONTAINER:DEST` (`-` for a tar
/// stream on stdout or stdin), docker's rules. The container's side is done by the
/// engine's archive helper, chrooted into the container's root, so the container's
/// links resolve inside it; the host's side unpacks through the tar reader's checks.
pub(crate) fn cp(root: &Path, a: CpArgs) -> Result<i32> {
    use skiff_engine::archive::{extract_to_host, ArchiveOp, PathStat};
    use std::io::BufRead as _;
    let (source, destination) = (a.source.as_str(), a.destination.as_str());
    let e = engine(root)?;
    let split = |s: &str| -> Option<(String, String)> {
        if s.starts_with('/') || s.starts_with('.') || s == "-" {
            return None;
        }
        s.split_once(':')
            .map(|(a, b)| (a.to_string(), b.to_string()))
    };
    // A helper that failed, as the docker CLI reports the daemon's answer.
    let failed = |out: &std::process::Output, path: &str, c: &str| -> anyhow::Error {
        let msg = match out.status.code() {
            Some(skiff_engine::archive::NOT_FOUND) => {
                format!("Could not find the file {path} in container {c}")
            }
            _ => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        };
        Exit(1, format!("Error response from daemon: {msg}")).into()
    };
    let stdio = std::process::Stdio::null;
    match (split(source), split(destination)) {
        (Some((c, path)), None) => {
            let ctr = e.get(&c)?;
            let mut child = e
                .archive_command(&ctr.record.id, ArchiveOp::Get, &path)
                .stdin(stdio())
                .spawn()
                .context("starting the archive helper")?;
            let mut out = std::io::BufReader::new(
                child
                    .stdout
                    .take()
                    .ok_or_else(|| anyhow!("the archive helper has no output"))?,
            );
            let mut line = String::new();
            let _ = out.by_ref().take(64 << 10).read_line(&mut line);
            if !line.ends_with('\n') {
                drop(out);
                return Err(failed(&child.wait_with_output()?, &path, &c));
            }
            let stat: PathStat = serde_json::from_str(&line)
                .with_context(|| format!("reading the archive helper's stat of {path}"))?;
            if destination == "-" {
                let stdout = std::io::stdout();
                std::io::copy(&mut out, &mut stdout.lock()).context("writing the archive")?;
            } else {
                let dst = PathBuf::from(destination);
                extract_to_host(out, &stat, &dst, destination)?;
            }
            let done = child.wait_with_output()?;
            if !done.status.success() {
                return Err(failed(&done, &path, &c));
            }
            Ok(0)
        }
        (None, Some((c, path))) => {
            let ctr = e.get(&c)?;
            let id = ctr.record.id.clone();
            let put = ArchiveOp::Put {
                no_overwrite_dir_non_dir: true,
                copy_uid_gid: false,
            };
            if source == "-" {
                let out = e
                    .archive_command(&id, put, &path)
                    .stdin(std::process::Stdio::inherit())
                    .output()
                    .context("starting the archive helper")?;
                if !out.status.success() {
                    return Err(failed(&out, &path, &c));
                }
                return Ok(0);
            }
            let src = PathBuf::from(source);
            let src_md = std::fs::symlink_metadata(&src)
                .map_err(|_| anyhow!("lstat {source}: no such file or directory"))?;
            let contents_only = source == "." || source.ends_with("/.");
            // Where it goes: into the destination directory under its own name, else
            // as the destination (into its parent, under the destination's name).
            let stat = e
                .archive_command(&id, ArchiveOp::Stat, &path)
                .stdin(stdio())
                .output()
                .context("starting the archive helper")?;
            let exists = match stat.status.code() {
                Some(0) => Some(
                    serde_json::from_slice::<PathStat>(
                        stat.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]),
                    )
                    .context("reading the archive helper's stat")?,
                ),
                Some(skiff_engine::archive::NOT_FOUND) => None,
                _ => return Err(failed(&stat, &path, &c)),
            };
            let own_name = || -> Result<std::ffi::OsString> {
                src.canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_os_string()))
                    .or_else(|| src.file_name().map(|n| n.to_os_string()))
                    .ok_or_else(|| anyhow!("invalid source path {source}"))
            };
            let (dir, name) = match &exists {
                Some(s) if s.is_dir() => (
                    path.clone(),
                    if contents_only {
                        std::ffi::OsString::from(".")
                    } else {
                        own_name()?
                    },
                ),
                Some(_) if src_md.is_dir() => {
                    return Err(Exit(
                        1,
                        format!(
                            "Error response from daemon: cannot overwrite non-directory \
                             {path} with directory {source}"
                        ),
                    )
                    .into())
                }
                _ => {
                    if exists.is_none() && path.ends_with('/') {
                        return Err(Exit(
                            1,
                            format!("Error response from daemon: no such directory: {path}"),
                        )
                        .into());
                    }
                    let p = Path::new(&path);
                    let parent = p
                        .parent()
                        .map(|d| d.display().to_string())
                        .filter(|d| !d.is_empty())
                        .unwrap_or_else(|| "/".into());
                    let name = p
                        .file_name()
                        .ok_or_else(|| anyhow!("invalid destination path {path}"))?
                        .to_os_string();
                    (parent, name)
                }
            };
            let mut child = e
                .archive_command(&id, put, &dir)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .context("starting the archive helper")?;
            let written = (|| -> std::io::Result<()> {
                let stdin = child
                    .stdin
                    .take()
                    .ok_or_else(|| std::io::Error::other("no pipe to the archive helper"))?;
                let mut b = tar::Builder::new(std::io::BufWriter::new(stdin));
                b.follow_symlinks(false);
                if src_md.is_dir() {
                    b.append_dir_all(&name, &src)?;
                } else {
                    b.append_path_with_name(&src, &name)?;
                }
                b.into_inner()?.flush()
            })();
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(failed(&out, &dir, &c));
            }
            written.with_context(|| format!("sending {source}"))?;
            Ok(0)
        }
        (Some(_), Some(_)) => Err(anyhow!("copying between containers is not supported")),
        (None, None) => Err(anyhow!("must specify at least one container source")),
    }
}
