//! `skiff inspect` (and `skiff image inspect`): the docker-shaped JSON of
//! containers, images or volumes (built by `crate::inspect`), or a `--format`
//! template over it.

use super::engine;
use crate::{format, Exit};
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::Path;

#[derive(Args)]
pub(crate) struct InspectArgs {
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

pub(crate) fn inspect(root: &Path, a: InspectArgs) -> Result<i32> {
    objects(root, a.format, a.kind, &a.names)
}

/// Inspect `names` as `kind` (container, then image, when `None`).
pub(super) fn objects(
    root: &Path,
    fmt: Option<String>,
    kind: Option<String>,
    names: &[String],
) -> Result<i32> {
    let e = engine(root)?;
    let mut out = Vec::new();
    let mut failed = false;
    for n in names {
        let v = match kind.as_deref() {
            Some("image") => e
                .images
                .resolve(n)
                .map(|i| crate::inspect::image(&i, i.size))
                .map_err(|err| anyhow!("{err}")),
            Some("volume") => skiff_engine::volumes::inspect(&e.root, n)
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .map_err(|err| anyhow!("{err}")),
            Some("container") => e
                .get(n)
                .map(|c| crate::inspect::container(&c))
                .map_err(|err| anyhow!("{err}")),
            Some(other) => return Err(anyhow!("\"{other}\" is not a valid value for --type")),
            None => match e.get(n) {
                Ok(c) => Ok(crate::inspect::container(&c)),
                Err(_) => e
                    .images
                    .resolve(n)
                    .map(|i| crate::inspect::image(&i, i.size))
                    .map_err(|_| anyhow!("No such object: {n}")),
            },
        };
        match v {
            Ok(v) => out.push(v),
            Err(err) => {
                eprintln!("Error: {err}");
                failed = true;
            }
        }
    }
    match fmt {
        Some(t) => {
            for v in &out {
                println!("{}", format::template(&t, v).map_err(|m| Exit(125, m))?);
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Array(out))?
        ),
    }
    Ok(if failed { 1 } else { 0 })
}
