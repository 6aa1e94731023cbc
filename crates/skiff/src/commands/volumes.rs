//! `skiff volume`: create, list, inspect, remove and prune named and anonymous
//! volumes, and the pruning `system prune` shares.

use super::engine;
use crate::format;
use anyhow::Result;
use clap::Subcommand;
use std::path::Path;

/// docker's column header of each field `volume ls --format` knows.
const VOLUME_FIELDS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("CreatedAt", "CREATED"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

#[derive(Subcommand)]
pub(crate) enum VolumeCmd {
    Create {
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Provide filter values (dangling, driver, label, name)
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Format output using a Go template ("table …" adds the column headers, "json"
        /// prints each volume as JSON)
        #[arg(long)]
        format: Option<String>,
    },
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(short = 'a', long)]
        all: bool,
    },
}

pub(crate) fn volume(root: &Path, v: VolumeCmd) -> Result<i32> {
    let e = engine(root)?;
    match v {
        VolumeCmd::Create { label, name } => {
            let name = name.unwrap_or_else(skiff_engine::names::new_id);
            let labels = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let v = skiff_engine::volumes::create(&e.root, &name, labels, false)?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCmd::Ls {
            quiet,
            filter,
            format: fmt,
        } => {
            let filters = crate::listing::parse_filters(&filter)
                .and_then(|f| {
                    crate::listing::VolumeFilters::new(&f)
                        .map_err(|err| format!("Error response from daemon: {err}"))
                })
                .map_err(|m| crate::Exit(1, m))?;
            let in_use = if filters.reads_usage() {
                e.volumes_in_use()?
            } else {
                Default::default()
            };
            let mut list = skiff_engine::volumes::list(&e.root)?;
            list.retain(|v| filters.matches(v, &in_use));
            if quiet {
                for v in list {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "Name": v.name,
                        "Driver": v.driver,
                        "Scope": v.scope,
                        "Mountpoint": v.mountpoint,
                        "CreatedAt": v.created_at,
                        "Labels": v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                        "Label": v.labels,
                        "Links": "N/A",
                        "Size": "N/A",
                    })
                })
                .collect();
            let tpl = fmt.as_deref().unwrap_or("table {{.Driver}}\t{{.Name}}");
            format::print_rows(tpl, VOLUME_FIELDS, &rows).map_err(|m| crate::Exit(1, m))?;
            Ok(0)
        }
        VolumeCmd::Inspect { format: fmt, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(serde_json::to_value(skiff_engine::volumes::inspect(
                    &e.root, n,
                )?)?);
            }
            format::print_inspect(&out, fmt.as_deref())?;
            Ok(0)
        }
        VolumeCmd::Rm { force, names } => {
            let mut failed = false;
            for n in &names {
                match e.remove_volume(n, force) {
                    Ok(()) => println!("{n}"),
                    Err(err) => {
                        eprintln!("Error response from daemon: {err}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        VolumeCmd::Prune { force: _, all } => {
            let (removed, _) = e.prune_volumes(all)?;
            println!("Deleted Volumes:");
            for n in removed {
                println!("{n}");
            }
            Ok(0)
        }
    }
}
