//! `skiff network`: user-defined bridge networks (create, list, inspect, remove) and
//! connecting containers to them.

use super::engine;
use crate::format;
use anyhow::{anyhow, Result};
use clap::Subcommand;
use std::path::Path;

/// docker's column header of each field `network ls --format` knows.
const NETWORK_FIELDS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

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
    #[command(visible_alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Provide filter values (dangling, driver, id, label, name, scope, type)
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Format output using a Go template ("table …" adds the column headers, "json"
        /// prints each network as JSON)
        #[arg(long)]
        format: Option<String>,
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
        NetworkCmd::Ls {
            quiet,
            no_trunc,
            filter,
            format: fmt,
        } => {
            let filters = crate::listing::parse_filters(&filter)
                .and_then(|f| {
                    crate::listing::NetworkFilters::new(&f)
                        .map_err(|err| format!("Error response from daemon: {err}"))
                })
                .map_err(|m| crate::Exit(1, m))?;
            // Which containers are attached is read only for a `dangling` filter.
            let containers = if filters.reads_usage() {
                e.list()?
            } else {
                Vec::new()
            };
            let no_labels = std::collections::BTreeMap::new();
            let mut rows: Vec<serde_json::Value> = Vec::new();
            let mut add = |n: crate::listing::NetworkInfo<'_>, created: &str, internal: bool| {
                if !filters.matches(&n) {
                    return;
                }
                rows.push(serde_json::json!({
                    "ID": if no_trunc { n.id.to_string() } else { id12(n.id) },
                    "Name": n.name,
                    "Driver": n.driver,
                    "Scope": "local",
                    "IPv6": "false",
                    "Internal": internal.to_string(),
                    "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    "Label": n.labels,
                    "CreatedAt": format::created_at(created),
                }));
            };
            for n in net::list_networks(&e.root, &e.bridge)? {
                let inspected = if filters.reads_usage() {
                    crate::inspect::network(&n, &containers)
                } else {
                    serde_json::Value::Null
                };
                add(
                    crate::inspect::network_info(&n, &inspected),
                    &n.created,
                    n.internal,
                );
            }
            for (name, driver) in [("host", "host"), ("none", "null")] {
                use sha2::Digest;
                let id = hex::encode(sha2::Sha256::digest(
                    format!("{}/{name}", e.root.display()).as_bytes(),
                ));
                let n = crate::listing::NetworkInfo {
                    id: &id,
                    name,
                    driver,
                    labels: &no_labels,
                    in_use: false,
                };
                add(n, "", false);
            }
            rows.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            if quiet {
                for r in &rows {
                    println!("{}", r["ID"].as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            let tpl = fmt
                .as_deref()
                .unwrap_or("table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}");
            format::print_rows(tpl, NETWORK_FIELDS, &rows).map_err(|m| crate::Exit(1, m))?;
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
