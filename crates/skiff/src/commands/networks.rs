//! `skiff network`: user-defined bridge networks (create, list, inspect, remove) and
//! connecting containers to them.

use super::engine;
use crate::format;
use anyhow::{anyhow, Result};
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub(crate) enum NetworkCmd {
    /// Create a bridge network.
    Create {
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        internal: bool,
        #[arg(long = "label")]
        label: Vec<String>,
        name: String,
    },
    /// List networks.
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Display detailed information on networks.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network (takes effect at its next start).
    Connect {
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network (takes effect at its next start).
    Disconnect {
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
}

pub(crate) fn network(root: &Path, n: NetworkCmd) -> Result<i32> {
    use skiff_engine::network as net;
    let e = engine(root)?;
    let id12 = |id: &str| id.chars().take(12).collect::<String>();
    match n {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            internal,
            label,
            name,
        } => {
            if driver != "bridge" {
                return Err(anyhow!(
                    "network driver {driver} is not supported (only bridge)"
                ));
            }
            let labels = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let created = net::create_network(
                &e.root,
                &e.bridge,
                &name,
                subnet.as_deref(),
                gateway.as_deref(),
                labels,
                internal,
            )?;
            println!("{}", created.id);
            Ok(0)
        }
        NetworkCmd::Ls { quiet, no_trunc } => {
            let list = net::list_networks(&e.root, &e.bridge)?;
            let mut all: Vec<(String, String, String)> = list
                .iter()
                .map(|n| (n.id.clone(), n.name.clone(), "bridge".to_string()))
                .collect();
            for (name, driver) in [("host", "host"), ("none", "null")] {
                use sha2::Digest;
                let id = hex::encode(sha2::Sha256::digest(
                    format!("{}/{name}", e.root.display()).as_bytes(),
                ));
                all.push((id, name.to_string(), driver.to_string()));
            }
            all.sort_by(|a, b| a.1.cmp(&b.1));
            let mut rows = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
            for (id, name, driver) in all {
                let shown = if no_trunc { id.clone() } else { id12(&id) };
                if quiet {
                    println!("{shown}");
                } else {
                    rows.push(vec![shown, name, driver, "local".into()]);
                }
            }
            if !quiet {
                print!("{}", format::table(&rows));
            }
            Ok(0)
        }
        NetworkCmd::Inspect { format: fmt, names } => {
            let containers = e.list()?;
            let mut out = Vec::new();
            for name in &names {
                let n = net::get_network(&e.root, &e.bridge, name)?;
                out.push(crate::inspect::network(&n, &containers));
            }
            format::print_inspect(&out, fmt.as_deref())?;
            Ok(0)
        }
        NetworkCmd::Rm { names } => {
            let mut failed = false;
            for name in &names {
                match e.remove_network(name) {
                    Ok(_) => println!("{name}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        NetworkCmd::Connect {
            alias,
            network: netname,
            container,
        } => {
            let n = net::get_network(&e.root, &e.bridge, &netname)?;
            e.connect_network(&container, &n.name, &alias, true)?;
            Ok(0)
        }
        NetworkCmd::Disconnect {
            force: _,
            network: netname,
            container,
        } => {
            let n = net::get_network(&e.root, &e.bridge, &netname)?;
            e.connect_network(&container, &n.name, &[], false)?;
            Ok(0)
        }
    }
}
