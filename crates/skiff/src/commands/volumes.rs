//! `skiff volume`: create, list, inspect, remove and prune named and anonymous
//! volumes, and the pruning `system prune` shares.

use super::engine;
use crate::format;
use anyhow::Result;
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand)]
pub(crate) enum VolumeCmd {
    Create {
        #[arg(short = 'l', long = "label")]
        label: Vec<String>,
        name: Option<String>,
    },
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
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
        VolumeCmd::Ls { quiet } => {
            let list = skiff_engine::volumes::list(&e.root)?;
            if quiet {
                for v in list {
                    println!("{}", v.name);
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                for v in list {
                    rows.push(vec![v.driver, v.name]);
                }
                print!("{}", format::table(&rows));
            }
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
