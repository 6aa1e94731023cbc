//! The commands on images: `build`, `images` (and the `image` group), `tag`, `rmi`,
//! `history`, `import`, `save`, `load`, and the registry commands `pull`, `push`
//! and `login`, which say they are not available yet.

use super::engine;
use crate::{format, Exit};
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum ImageCmd {
    /// Display detailed information on images.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    #[command(visible_alias = "list")]
    Ls {
        #[arg(short = 'q', long)]
        quiet: bool,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        repository: Option<String>,
    },
    /// Remove images.
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Tag an image.
    Tag { source: String, target: String },
    /// Show an image's history.
    History {
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        image: String,
    },
    /// Remove dangling images.
    Prune {
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Args)]
pub(crate) struct ImagesArgs {
    #[arg(short = 'q', long)]
    quiet: bool,
    #[arg(short = 'a', long)]
    all: bool,
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    repository: Option<String>,
}

#[derive(Args)]
pub(crate) struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    file: String,
    reference: Option<String>,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    #[arg(short = 'q', long)]
    quiet: bool,
    image: String,
}

#[derive(Args)]
pub(crate) struct BuildArgs {
    #[arg(short = 't', long = "tag")]
    tag: Vec<String>,
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long = "no-cache")]
    no_cache: bool,
    #[arg(short = 'q', long)]
    quiet: bool,
    context: PathBuf,
}

#[derive(Args)]
pub(crate) struct SaveArgs {
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub(crate) struct LoadArgs {
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct PullArgs {
    image: String,
}

#[derive(Args)]
pub(crate) struct PushArgs {
    image: String,
}

#[derive(Args)]
pub(crate) struct LoginArgs {
    #[arg(short = 'u', long)]
    username: Option<String>,
    #[arg(short = 'p', long)]
    password: Option<String>,
    server: Option<String>,
}

pub(crate) fn image(root: &Path, i: ImageCmd) -> Result<i32> {
    match i {
        ImageCmd::Inspect { format, images } => {
            super::inspect::objects(root, format, Some("image".into()), &images)
        }
        ImageCmd::Ls {
            quiet,
            no_trunc,
            repository,
        } => list(root, quiet, no_trunc, repository),
        ImageCmd::Rm { force, images } => remove(root, force, &images),
        ImageCmd::Tag { source, target } => {
            engine(root)?.images.tag(&source, &target)?;
            Ok(0)
        }
        ImageCmd::History { no_trunc, image } => print_history(root, no_trunc, false, &image),
        ImageCmd::Prune { force: _ } => {
            let e = engine(root)?;
            let used: Vec<String> = e.list()?.into_iter().map(|c| c.record.image_id).collect();
            println!("Deleted Images:");
            for i in e.images.prune_dangling_keeping(&used)? {
                println!("deleted: {i}");
            }
            Ok(0)
        }
    }
}

pub(crate) fn images(root: &Path, a: ImagesArgs) -> Result<i32> {
    let ImagesArgs {
        quiet,
        all: _,
        no_trunc,
        repository,
    } = a;
    list(root, quiet, no_trunc, repository)
}

pub(crate) fn tag(root: &Path, a: TagArgs) -> Result<i32> {
    engine(root)?.images.tag(&a.source, &a.target)?;
    Ok(0)
}

pub(crate) fn rmi(root: &Path, a: RmiArgs) -> Result<i32> {
    remove(root, a.force, &a.images)
}

pub(crate) fn import(root: &Path, a: ImportArgs) -> Result<i32> {
    let ImportArgs { file, reference } = a;
    let e = engine(root)?;
    let img = if file == "-" {
        e.images
            .import_rootfs(std::io::stdin().lock(), reference.as_deref())?
    } else {
        let f = std::fs::File::open(&file).map_err(|err| anyhow!("open {file}: {err}"))?;
        e.images
            .import_rootfs(std::io::BufReader::new(f), reference.as_deref())?
    };
    println!("{}", img.id);
    Ok(0)
}

pub(crate) fn history(root: &Path, a: HistoryArgs) -> Result<i32> {
    print_history(root, a.no_trunc, a.quiet, &a.image)
}

pub(crate) fn pull(a: PullArgs) -> Result<i32> {
    let PullArgs { image } = a;
    Err(Exit(
        125,
        format!("Error response from daemon: pull {image}: the registry client is not built yet; load images with `skiff load -i FILE` or build them with `skiff build`"),
    )
    .into())
}

pub(crate) fn push(a: PushArgs) -> Result<i32> {
    let PushArgs { image } = a;
    Err(Exit(
        125,
        format!("Error response from daemon: push {image}: the registry client is not built yet; export images with `skiff save`"),
    )
    .into())
}

pub(crate) fn login(_: LoginArgs) -> Result<i32> {
    Err(Exit(
        125,
        "Error response from daemon: login: the registry client is not built yet".into(),
    )
    .into())
}

pub(crate) fn build(root: &Path, a: BuildArgs) -> Result<i32> {
    let BuildArgs {
        tag,
        file,
        build_arg,
        target,
        no_cache,
        quiet,
        context,
    } = a;
    let e = engine(root)?;
    let mut args = std::collections::BTreeMap::new();
    for a in build_arg {
        match a.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(&a) {
                    args.insert(a.clone(), v);
                }
            }
        }
    }
    if !context.is_dir() {
        return Err(Exit(
            1,
            format!(
                "ERROR: unable to prepare context: path \"{}\" not found",
                context.display()
            ),
        )
        .into());
    }
    let opts = skiff_image::BuildOptions {
        context_dir: context.clone(),
        dockerfile: file.map(|f| {
            if f.is_absolute() || f.exists() {
                f
            } else {
                context.join(f)
            }
        }),
        tags: tag,
        build_args: args,
        target,
        no_cache,
    };
    let runner = skiff_engine::build::BuildRunner { engine: &e };
    let stdout = std::io::stdout();
    let mut sink = std::io::sink();
    let mut lock = stdout.lock();
    let out: &mut dyn Write = if quiet { &mut sink } else { &mut lock };
    match skiff_image::build(&e.images, &opts, &runner, out) {
        Ok(img) => {
            if quiet {
                println!("{}", img.id);
            }
            Ok(0)
        }
        Err(err) => Err(Exit(1, format!("{err}")).into()),
    }
}

pub(crate) fn save(root: &Path, a: SaveArgs) -> Result<i32> {
    let SaveArgs { output, images } = a;
    let e = engine(root)?;
    let refs: Vec<&str> = images.iter().map(|s| s.as_str()).collect();
    match output {
        Some(p) => {
            let tmp = p.with_extension("skiff-tmp");
            let f = std::fs::File::create(&tmp).map_err(|err| anyhow!("{}: {err}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            if let Err(err) = e.images.save(&refs, &mut w) {
                let _ = std::fs::remove_file(&tmp);
                return Err(err.into());
            }
            w.flush()?;
            std::fs::rename(&tmp, &p)?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(anyhow!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                ));
            }
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            e.images.save(&refs, &mut w)?;
            w.flush()?;
        }
    }
    Ok(0)
}

pub(crate) fn load(root: &Path, a: LoadArgs) -> Result<i32> {
    let LoadArgs { input, quiet } = a;
    let e = engine(root)?;
    let names = match input {
        Some(p) => {
            let f =
                std::fs::File::open(&p).map_err(|err| anyhow!("open {}: {err}", p.display()))?;
            e.images.load(std::io::BufReader::new(f))?
        }
        None => e.images.load(std::io::stdin().lock())?,
    };
    if !quiet {
        for n in names {
            if n.starts_with("sha256:") {
                println!("Loaded image ID: {n}");
            } else {
                println!("Loaded image: {}", skiff_image::familiar_name(&n));
            }
        }
    }
    Ok(0)
}

fn list(root: &Path, quiet: bool, no_trunc: bool, repo: Option<String>) -> Result<i32> {
    let e = engine(root)?;
    let mut list = e.images.list()?;
    if let Some(r) = &repo {
        list.retain(|s| &s.repository == r);
    }
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for s in list {
            let id = if no_trunc {
                s.id.clone()
            } else {
                skiff_image::short_id(&s.id)
            };
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for s in list {
        rows.push(vec![
            s.repository.clone(),
            s.tag.clone(),
            if no_trunc {
                s.id.clone()
            } else {
                skiff_image::short_id(&s.id)
            },
            s.created
                .as_deref()
                .map(|c| format!("{} ago", format::human_duration(format::since(c))))
                .unwrap_or_else(|| "N/A".into()),
            format::human_size(s.size),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(0)
}

fn remove(root: &Path, force: bool, images: &[String]) -> Result<i32> {
    let e = engine(root)?;
    let containers = e.list()?;
    let mut failed = false;
    for i in images {
        let img = match e.images.resolve(i) {
            Ok(img) => img,
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                failed = true;
                continue;
            }
        };
        let users: Vec<_> = containers
            .iter()
            .filter(|c| c.record.image_id == img.id)
            .collect();
        if let Some(run) = users.iter().find(|c| c.state.status.is_active()) {
            eprintln!(
                "Error response from daemon: conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                skiff_image::short_id(&img.id),
                run.short_id()
            );
            failed = true;
            continue;
        }
        // Removing one of several names only untags; the last name needs no user.
        let by_id = i.trim_start_matches("sha256:").len() >= 4
            && img
                .id
                .trim_start_matches("sha256:")
                .starts_with(i.trim_start_matches("sha256:"));
        let last_name = img.names.len() <= 1 || by_id;
        if let Some(c) = users.first() {
            if last_name && !force {
                eprintln!(
                    "Error response from daemon: conflict: unable to remove repository reference \"{i}\" (must force) - container {} is using its referenced image {}",
                    c.short_id(),
                    skiff_image::short_id(&img.id)
                );
                failed = true;
                continue;
            }
        }
        match e.images.remove(i, force) {
            Ok(events) => {
                for ev in events {
                    match ev {
                        skiff_image::RemoveEvent::Untagged(n) => println!("Untagged: {n}"),
                        skiff_image::RemoveEvent::Deleted(d) => println!("Deleted: {d}"),
                    }
                }
            }
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn print_history(root: &Path, no_trunc: bool, quiet: bool, image: &str) -> Result<i32> {
    let e = engine(root)?;
    let h = e.images.history(image)?;
    if quiet {
        for x in h {
            println!(
                "{}",
                if no_trunc {
                    x.id
                } else {
                    skiff_image::short_id(&x.id)
                }
            );
        }
        return Ok(0);
    }
    let mut rows = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for x in h {
        let mut by = x.created_by.clone();
        if !no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(vec![
            if x.id.is_empty() || x.id == "<missing>" {
                "<missing>".to_string()
            } else if no_trunc {
                x.id.clone()
            } else {
                skiff_image::short_id(&x.id)
            },
            x.created
                .as_deref()
                .map(|c| format!("{} ago", format::human_duration(format::since(c))))
                .unwrap_or_default(),
            by,
            format::human_size(x.size),
            x.comment.clone(),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(0)
}
