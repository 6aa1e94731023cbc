//! `skiff server` and `skiff agent`: this node's engine, its network created and
//! recorded from the flags, handed to `crate::server` and `crate::agent`.

use crate::{agent, server};
use anyhow::Result;
use skiff_engine::Engine;
use std::path::Path;

pub(crate) fn server(root: &Path, f: server::ServerFlags) -> Result<i32> {
    let e = if f.disable_agent {
        None
    } else {
        Some(node_engine(root)?)
    };
    server::run(f, e)
}

pub(crate) fn agent(root: &Path, f: agent::AgentFlags) -> Result<i32> {
    // Hollow nodes run nothing: no engine, no bridge.
    if f.hollow.is_some() && !f.cleanup {
        return crate::hollow::run(f);
    }
    agent::run(f, node_engine(root)?)
}

/// The engine of a node (server or agent): the root's network is created and
/// recorded now, from the flags on its first use, so later commands on the same root
/// use the same bridge, subnet and table.
fn node_engine(root: &Path) -> Result<Engine> {
    let mut e = super::engine(root)?;
    e.bridge = skiff_engine::network::BridgeConfig::load_or_init(root, &e.bridge)?;
    skiff_engine::network::ensure_bridge(&e.bridge)?;
    Ok(e)
}
