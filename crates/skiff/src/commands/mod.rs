//! The commands of skiff's CLI, one module per group, and what they share: the
//! engine opened on `--root` (with the bridge the global flags describe and the
//! embedded `--init`), and docker's way of applying a command to each named
//! container.

pub(crate) mod cluster;
pub(crate) mod containers;
pub(crate) mod exec;
mod forward;
pub(crate) mod images;
pub(crate) mod inspect;
pub(crate) mod networks;
pub(crate) mod run;
pub(crate) mod system;
pub(crate) mod volumes;

use anyhow::{anyhow, Result};
use skiff_engine::Engine;
use std::path::Path;

/// The static init for `--init`, built by build.rs.
static SKIFF_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-init"));

static BRIDGE: std::sync::OnceLock<skiff_engine::network::BridgeConfig> =
    std::sync::OnceLock::new();

/// The default bridge from the global flags, for every engine opened after this.
pub(crate) fn configure_bridge(
    name: Option<&str>,
    cidr: Option<&str>,
    table: Option<&str>,
) -> Result<()> {
    let _ = BRIDGE.set(skiff_engine::network::BridgeConfig::with(
        name, cidr, table,
    )?);
    Ok(())
}

pub(crate) fn engine(root: &Path) -> Result<Engine> {
    let exe = skiff_runtime::sealed::helper_exe()
        .map_err(|e| anyhow!("cannot find the skiff executable: {e}"))?;
    let mut e = Engine::open(root, &exe)?;
    e.install_init(SKIFF_INIT)?;
    if let Some(b) = BRIDGE.get() {
        e.bridge = b.clone();
    }
    Ok(e)
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
