//! Engine-wide commands: `info`, `version`, and `system prune` and `system boot`
//! (restarting the containers whose restart policy asks for it).

use super::engine;
use anyhow::Result;
use clap::Subcommand;
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
            all: _,
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
            let used: Vec<String> = e.list()?.into_iter().map(|c| c.record.image_id).collect();
            let imgs = e.images.prune_dangling_keeping(&used)?;
            println!("\nDeleted Images:");
            for i in imgs {
                println!("deleted: {i}");
            }
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
