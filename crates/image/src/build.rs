//! Dockerfile builds in the style of docker's classic builder: one intermediate image per
//! instruction, one layer per COPY/ADD/RUN, a cache keyed by parent image + instruction +
//! inputs, and RUN steps executed through the engine's [`StepRunner`].

use crate::config::{now_rfc3339, History, ImageConfig};
use crate::dockerfile::{
    heredoc_marker, parse_dockerfile, parse_name_values, split_words, Dockerfile, Instruction,
    Lexer,
};
use crate::error::{ImageError, IoContext, Result};
use crate::ignore::{clean_path, glob_match, has_glob, IgnoreMatcher};
use crate::layer::{self, MergedView};
use crate::reference::familiar_name;
use crate::store::{maybe_gunzip, normalize_name, rand_hex, short_id, Image, ImageStore};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context_dir: PathBuf,
    /// The Dockerfile; default `<context_dir>/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// Names to give the result (`app`, `me/app:1`).
    pub tags: Vec<String>,
    /// `--build-arg K=V` values.
    pub build_args: BTreeMap<String, String>,
    /// Build up to this stage (`--target`).
    pub target: Option<String>,
    /// Do not use the build cache (`--no-cache`).
    pub no_cache: bool,
    /// `--label K=V` values, set on the result by one more LABEL step at the end of the
    /// built stage (docker's classic builder appends the same instruction).
    pub labels: BTreeMap<String, String>,
}

/// One RUN step for the [`StepRunner`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunStep {
    /// The command (the SHELL plus the command for the shell form).
    pub argv: Vec<String>,
    /// `K=V` environment: the image's Env plus the build args in scope (and docker's
    /// default PATH when the image has none).
    pub env: Vec<String>,
    /// Working directory inside the container (`/` if unset).
    pub workdir: String,
    /// `user[:group]` from USER (empty: root).
    pub user: String,
    /// The image's snapshot dirs, bottom first (overlayfs `lowerdir=` wants them reversed),
    /// read-only; empty for `FROM scratch` (overlayfs then needs an empty lower dir).
    pub lower_dirs: Vec<PathBuf>,
    /// Fresh, empty, writable overlay upper dir; it becomes the step's layer.
    pub upper_dir: PathBuf,
    /// Fresh, empty overlay work dir on the same file system as `upper_dir`.
    pub work_dir: PathBuf,
    /// A random 32-hex id for the step's container (printed as `Running in <12 hex>`).
    pub id: String,
}

/// A RUN step that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// The command's exit code, if it ran and exited.
    pub exit_code: Option<i32>,
    pub message: String,
}

impl StepError {
    /// The command exited with `code`.
    pub fn exit(code: i32) -> Self {
        StepError {
            exit_code: Some(code),
            message: format!("exit code {code}"),
        }
    }
    /// The command could not be run.
    pub fn other(message: impl Into<String>) -> Self {
        StepError {
            exit_code: None,
            message: message.into(),
        }
    }
}

/// Runs RUN steps as containers; implemented by the engine.
pub trait StepRunner {
    /// Run `step.argv` in a container whose rootfs is `lower_dirs` (read-only, bottom first)
    /// plus `upper_dir` (writable), with env/workdir/user from the step. Output goes to
    /// `out`. Err (with the exit code) if it exits non-zero.
    fn run(&self, step: &RunStep, out: &mut dyn Write) -> Result<(), StepError>;
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// The PATH RUN steps get when the image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Builds the Dockerfile in `opts`, printing docker-classic-builder style progress to `out`.
pub fn build(
    store: &ImageStore,
    opts: &BuildOptions,
    runner: &dyn StepRunner,
    out: &mut dyn Write,
) -> Result<Image> {
    let df_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context_dir.join("Dockerfile"));
    let text = fs::read_to_string(&df_path).ctx("reading Dockerfile", &df_path)?;
    let file = df_path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = parse_dockerfile(&text, &file)?;
    let tags: Vec<String> = opts
        .tags
        .iter()
        .map(|t| normalize_name(t))
        .collect::<Result<_>>()?;
    let _gc = store.gc_shared()?;
    let ignore = IgnoreMatcher::from_context(&opts.context_dir)?;
    let mut b = Builder {
        store,
        opts,
        runner,
        out,
        lexer: Lexer { escape: df.escape },
        ignore,
        file,
        global_args: BTreeMap::new(),
        stages: Vec::new(),
        declared_args: BTreeSet::new(),
        step: 0,
        total: 0,
    };
    let image = b.run(&df)?;
    b.say(format!("Successfully built {}", image.short_id()))?;
    store.promote(&image.id, &tags)?;
    for t in &tags {
        b.say(format!("Successfully tagged {}", familiar_name(t)))?;
    }
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !b.declared_args.contains(*k))
        .collect();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        b.say(format!(
            "[Warning] One or more build-args [{}] were not consumed",
            list.join(" ")
        ))?;
    }
    store.resolve(&image.id)
}

/// Unpacks a build context sent as a tar stream (plain, gzip or zstd) into `dir`, as
/// dockerd does for `POST /build` and `docker build -`: entries that would land outside
/// `dir` are refused by the tar reader, and device nodes and fifos are refused here
/// (a context is files, directories and links).
pub fn unpack_context(input: impl Read, dir: &Path) -> Result<()> {
    let mut ar = tar::Archive::new(maybe_gunzip(input)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    let entries = ar
        .entries()
        .map_err(|e| ImageError::io("reading the build context", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::io("reading the build context", e))?;
        let path = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link => {}
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => {
                return Err(ImageError::Build(format!(
                    "invalid build context: {path:?} is a {other:?} entry; a build context \
                     holds files, directories and links"
                )))
            }
        }
        let inside = entry.unpack_in(dir).map_err(|e| {
            ImageError::Build(format!("unpacking {path:?} of the build context: {e}"))
        })?;
        if !inside {
            return Err(ImageError::Build(format!(
                "invalid build context: {path:?} points outside the context"
            )));
        }
    }
    Ok(())
}

/// The LABEL instruction that `--label` values add (None without labels): keys and
/// values double-quoted, with the escape character before `"`, `$` and itself.
fn label_instruction(
    labels: &BTreeMap<String, String>,
    escape: char,
    file: &str,
) -> Result<Option<Instruction>> {
    if labels.is_empty() {
        return Ok(None);
    }
    let quote = |s: &str| -> Result<String> {
        if s.contains(['\n', '\r']) {
            return Err(ImageError::Build(format!(
                "invalid label {s:?}: a label may not contain a line break"
            )));
        }
        let mut q = String::from('"');
        for c in s.chars() {
            if c == '"' || c == '$' || c == escape {
                q.push(escape);
            }
            q.push(c);
        }
        q.push('"');
        Ok(q)
    };
    // A Dockerfile of its own (the parser wants a FROM first); the LABEL is its last line.
    let mut line = format!("# escape={escape}\nFROM scratch\nLABEL");
    for (k, v) in labels {
        if k.is_empty() {
            return Err(ImageError::Build("invalid label: the key is empty".into()));
        }
        line.push_str(&format!(" {}={}", quote(k)?, quote(v)?));
    }
    let mut df = parse_dockerfile(&line, file)?;
    Ok(df.instructions.pop())
}

struct Builder<'a> {
    store: &'a ImageStore,
    opts: &'a BuildOptions,
    runner: &'a dyn StepRunner,
    out: &'a mut dyn Write,
    lexer: Lexer,
    ignore: IgnoreMatcher,
    file: String,
    global_args: BTreeMap<String, String>,
    /// (stage name, resulting image id) of finished stages.
    stages: Vec<(Option<String>, Option<String>)>,
    declared_args: BTreeSet<String>,
    step: usize,
    total: usize,
}

struct StageState {
    config: ImageConfig,
    id: Option<String>,
    /// Declared ARGs with a value, in declaration order.
    args: Vec<(String, String)>,
    cmd_set: bool,
}

impl StageState {
    fn adopt(&mut self, img: Image) {
        self.config = img.config;
        self.id = Some(img.id);
    }
    fn subst_env(&self) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = self.args.iter().cloned().collect();
        for kv in &self.config.config.env {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            m.insert(k.to_string(), v.to_string());
        }
        m
    }
    fn shell(&self) -> Vec<String> {
        if self.config.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            self.config.config.shell.clone()
        }
    }
}

/// One thing to put into a COPY/ADD layer.
enum PlanKind {
    Dir { excluded: bool, top: bool },
    File,
    Symlink(PathBuf),
    Special,
    Extract,
}

struct PlanItem {
    kind: PlanKind,
    src: PathBuf,
    meta: fs::Metadata,
    /// Relative to the layer root.
    dest: PathBuf,
}

#[derive(Clone)]
struct SrcNode {
    /// The path as resolved in the tree (symlinks followed for top-level sources).
    rel: String,
    /// The name as the source was written (the link's name, not its target's).
    name: String,
    /// Real paths, topmost first (several only for merged image dirs).
    real: Vec<PathBuf>,
    meta: fs::Metadata,
    excluded: bool,
}

enum SourceTree<'a> {
    Context {
        root: PathBuf,
        ignore: &'a IgnoreMatcher,
    },
    Image {
        view: MergedView,
    },
}

fn last_name(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

fn join_rel(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

impl SourceTree<'_> {
    fn lookup(&self, rel: &str) -> Option<SrcNode> {
        match self {
            SourceTree::Context { root, ignore } => {
                let real = if rel.is_empty() {
                    root.clone()
                } else {
                    root.join(rel)
                };
                let meta = fs::symlink_metadata(&real).ok()?;
                let excluded = !rel.is_empty() && ignore.is_excluded(rel);
                if excluded && !(meta.is_dir() && ignore.has_exceptions()) {
                    return None;
                }
                Some(SrcNode {
                    rel: rel.to_string(),
                    name: last_name(rel),
                    real: vec![real],
                    meta,
                    excluded,
                })
            }
            SourceTree::Image { view } => {
                let node = view.lookup(Path::new(rel))?;
                let meta = fs::symlink_metadata(&node[0]).ok()?;
                Some(SrcNode {
                    rel: rel.to_string(),
                    name: last_name(rel),
                    real: node,
                    meta,
                    excluded: false,
                })
            }
        }
    }

    fn children(&self, node: &SrcNode) -> Result<Vec<(String, SrcNode)>> {
        let mut out = Vec::new();
        match self {
            SourceTree::Context { .. } => {
                let dir = &node.real[0];
                let mut names: Vec<String> = fs::read_dir(dir)
                    .ctx("reading", dir)?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect();
                names.sort();
                for n in names {
                    if let Some(c) = self.lookup(&join_rel(&node.rel, &n)) {
                        out.push((n, c));
                    }
                }
            }
            SourceTree::Image { .. } => {
                for (name, real) in MergedView::children(&node.real) {
                    let Ok(meta) = fs::symlink_metadata(&real[0]) else {
                        continue;
                    };
                    let n = name.to_string_lossy().to_string();
                    out.push((
                        n.clone(),
                        SrcNode {
                            rel: join_rel(&node.rel, &n),
                            name: n.clone(),
                            real,
                            meta,
                            excluded: false,
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Resolves symlinks in `rel` within the tree (never outside it).
    fn resolve(&self, rel: &str, follow_last: bool) -> String {
        let p = match self {
            SourceTree::Context { root, .. } => {
                layer::resolve_scoped(Path::new(rel), follow_last, |cand| {
                    let real = root.join(cand);
                    let m = fs::symlink_metadata(&real).ok()?;
                    if m.file_type().is_symlink() {
                        fs::read_link(&real).ok()
                    } else {
                        None
                    }
                })
            }
            SourceTree::Image { view } => view.resolve_path(Path::new(rel), follow_last),
        };
        p.to_string_lossy().to_string()
    }

    /// A top-level source: symlinks are followed, the written name is kept.
    fn lookup_source(&self, rel: &str) -> Option<SrcNode> {
        let mut node = self.lookup(&self.resolve(rel, true))?;
        node.name = last_name(rel);
        Some(node)
    }

    /// Expands a cleaned source path that may contain glob characters.
    fn expand(&self, pattern: &str) -> Result<Vec<SrcNode>> {
        if !has_glob(pattern) {
            return Ok(self.lookup_source(pattern).into_iter().collect());
        }
        let Some(root) = self.lookup("") else {
            return Ok(vec![]);
        };
        let mut cur = vec![root];
        for comp in pattern.split('/') {
            let mut next = Vec::new();
            for node in &cur {
                if !node.meta.is_dir() {
                    continue;
                }
                if has_glob(comp) {
                    let pc: Vec<char> = comp.chars().collect();
                    for (name, child) in self.children(node)? {
                        let nc: Vec<char> = name.chars().collect();
                        if glob_match(&pc, &nc, false) && !child.excluded {
                            if child.meta.file_type().is_symlink() {
                                next.extend(self.lookup_source(&child.rel));
                            } else {
                                next.push(child);
                            }
                        }
                    }
                } else if let Some(c) = self.lookup_source(&join_rel(&node.rel, comp)) {
                    next.push(c);
                }
            }
            cur = next;
        }
        Ok(cur)
    }
}

fn is_archive(path: &Path) -> bool {
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = maybe_gunzip(f) else {
        return false;
    };
    let mut block = [0u8; 512];
    let mut n = 0;
    while n < block.len() {
        match r.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    n == 512 && &block[257..262] == b"ustar"
}

/// EXPOSE arguments (`80`, `53/udp`, `8000-8010`) → `port/proto` keys.
pub(crate) fn parse_ports(words: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut ports = Vec::new();
    for p in words {
        let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        let range = match num.split_once('-') {
            Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
            None => num.parse::<u16>().ok().map(|a| (a, a)),
        };
        let Some((a, b)) = range.filter(|(a, b)| a <= b) else {
            return Err(format!("invalid port: {p}"));
        };
        if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
            return Err(format!("invalid protocol in port {p}"));
        }
        for port in a..=b {
            ports.push(format!("{port}/{proto}"));
        }
    }
    Ok(ports)
}

/// Applies `--change` instructions (as `docker commit/import --change` accepts: CMD,
/// ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR) to a config.
pub fn apply_changes(config: &mut crate::config::ContainerConfig, changes: &[&str]) -> Result<()> {
    let lexer = Lexer { escape: '\\' };
    for (i, change) in changes.iter().enumerate() {
        let ins = crate::dockerfile::parse_line("--change", i + 1, change)?;
        let err = |m: String| ImageError::Invalid(format!("--change {change:?}: {m}"));
        let env: HashMap<String, String> = config
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let shell = || -> Vec<String> {
            if config.shell.is_empty() {
                DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
            } else {
                config.shell.clone()
            }
        };
        let argv = || match &ins.json {
            Some(v) => v.clone(),
            None => {
                let mut sh = shell();
                sh.push(ins.args.clone());
                sh
            }
        };
        match ins.keyword.as_str() {
            "CMD" => config.cmd = Some(argv()),
            "ENTRYPOINT" => config.entrypoint = Some(argv()),
            "ENV" => {
                for (k, v) in parse_name_values(&lexer, &ins.args, &lookup, true).map_err(err)? {
                    config.env_set(&k, &v.unwrap_or_default());
                }
            }
            "LABEL" => {
                for (k, v) in parse_name_values(&lexer, &ins.args, &lookup, true).map_err(err)? {
                    config.labels.insert(k, v.unwrap_or_default());
                }
            }
            "EXPOSE" => {
                let words = lexer.process_words(&ins.args, &lookup).map_err(err)?;
                for p in parse_ports(&words).map_err(err)? {
                    config.exposed_ports.insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols = match &ins.json {
                    Some(v) => v.clone(),
                    None => lexer.process_words(&ins.args, &lookup).map_err(err)?,
                };
                for v in vols {
                    config.volumes.insert(v, serde_json::json!({}));
                }
            }
            "USER" => config.user = lexer.process_word(&ins.args, &lookup).map_err(err)?,
            "STOPSIGNAL" => {
                config.stop_signal = lexer.process_word(&ins.args, &lookup).map_err(err)?
            }
            "WORKDIR" => {
                let w = lexer.process_word(&ins.args, &lookup).map_err(err)?;
                let base = if config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    config.working_dir.clone()
                };
                let joined = if w.starts_with('/') {
                    w
                } else {
                    format!("{base}/{w}")
                };
                config.working_dir = format!("/{}", clean_path(&joined));
            }
            other => return Err(err(format!("{other} is not a valid change command"))),
        }
    }
    Ok(())
}

/// Parses a Go duration (`30s`, `1m30s`, `500ms`) into nanoseconds.
fn parse_duration(s: &str) -> Option<i64> {
    skiff_meta::time::parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
}

fn lookup_id(file: Option<Vec<u8>>, name: &str, field: usize) -> Option<u32> {
    let text = String::from_utf8(file?).ok()?;
    text.lines().find_map(|l| {
        let parts: Vec<&str> = l.split(':').collect();
        if parts.first() == Some(&name) {
            parts.get(field)?.parse().ok()
        } else {
            None
        }
    })
}

impl Builder<'_> {
    fn say(&mut self, line: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "{}", line.as_ref())
            .map_err(|e| ImageError::io("writing build output", e))
    }

    fn err(&self, ins: &Instruction, message: impl Into<String>) -> ImageError {
        ImageError::Dockerfile {
            file: self.file.clone(),
            line: ins.line,
            message: message.into(),
        }
    }

    fn step_line(&mut self, ins: &Instruction) -> Result<()> {
        self.step += 1;
        let line = format!("Step {}/{} : {}", self.step, self.total, ins.original);
        self.say(line)
    }

    fn run(&mut self, df: &Dockerfile) -> Result<Image> {
        // Split into global ARGs and stages.
        let mut globals = Vec::new();
        let mut stages: Vec<Vec<&Instruction>> = Vec::new();
        for ins in &df.instructions {
            if ins.keyword == "FROM" {
                stages.push(vec![ins]);
            } else if let Some(s) = stages.last_mut() {
                s.push(ins);
            } else {
                globals.push(ins);
            }
        }
        // Global ARGs come first, so stage names in FROM can use them.
        for ins in &globals {
            let env: HashMap<String, String> = self.global_args.clone().into_iter().collect();
            let pairs = parse_name_values(&self.lexer, &ins.args, &|k| env.get(k).cloned(), false)
                .map_err(|m| self.err(ins, format!("ARG {m}")))?;
            for (k, default) in pairs {
                self.declared_args.insert(k.clone());
                if let Some(v) = self.opts.build_args.get(&k).cloned().or(default) {
                    self.global_args.insert(k, v);
                }
            }
        }
        let genv: HashMap<String, String> = self.global_args.clone().into_iter().collect();
        let mut froms = Vec::new();
        for st in &stages {
            let ins = st[0];
            let words = self
                .lexer
                .process_words(&ins.args, &|k| genv.get(k).cloned())
                .map_err(|m| self.err(ins, m))?;
            let name = match words.len() {
                1 => None,
                3 if words[1].eq_ignore_ascii_case("as") => Some(words[2].to_ascii_lowercase()),
                _ => return Err(self.err(ins, "FROM requires either one or three arguments")),
            };
            froms.push((words[0].clone(), name));
        }
        let last = match &self.opts.target {
            Some(t) => {
                let t = t.to_ascii_lowercase();
                froms
                    .iter()
                    .position(|(_, n)| n.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| {
                        ImageError::Build(format!("failed to reach build target {t} in Dockerfile"))
                    })?
            }
            None => stages.len() - 1,
        };
        let labels = label_instruction(&self.opts.labels, df.escape, &self.file)?;
        if let Some(ins) = &labels {
            stages[last].push(ins);
        }
        self.total = globals.len() + stages[..=last].iter().map(|s| s.len()).sum::<usize>();
        for ins in &globals {
            self.step_line(ins)?;
        }
        let mut result = None;
        for (i, st) in stages[..=last].iter().enumerate() {
            let (base, name) = froms[i].clone();
            let id = self.build_stage(st, &base)?;
            self.stages.push((name, id.clone()));
            result = id;
        }
        let id = result.ok_or_else(|| {
            ImageError::Build("No image was generated. Is your Dockerfile empty?".into())
        })?;
        self.store.resolve(&id)
    }

    fn build_stage(&mut self, st: &[&Instruction], base: &str) -> Result<Option<String>> {
        let from = st[0];
        self.step_line(from)?;
        let mut state = StageState {
            config: ImageConfig::scratch(),
            id: None,
            args: Vec::new(),
            cmd_set: false,
        };
        let lower = base.to_ascii_lowercase();
        if let Some((_, id)) = self
            .stages
            .iter()
            .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
        {
            if let Some(id) = id.clone() {
                let img = self.store.resolve(&id)?;
                state.adopt(img);
            }
        } else if lower != "scratch" {
            let img = self.store.resolve(base).map_err(|e| {
                self.err(from, format!("base image {base}: {e} (skiff builds from local images only: pull, load or import it first)"))
            })?;
            if !img.config.config.on_build.is_empty() {
                return Err(self.err(
                    from,
                    format!("base image {base} has ONBUILD triggers, which are not supported"),
                ));
            }
            state.adopt(img);
        }
        if let Some(id) = &state.id {
            let s = short_id(id);
            self.say(format!(" ---> {s}"))?;
        }
        for ins in &st[1..] {
            self.step_line(ins)?;
            self.dispatch(&mut state, ins)?;
        }
        Ok(state.id)
    }

    fn cache_key(&self, state: &StageState, text: &str, extra: &str) -> String {
        let parent = state.id.clone().unwrap_or_else(|| "scratch".into());
        hex::encode(Sha256::digest(
            format!("{parent}\n{text}\n{extra}").as_bytes(),
        ))
    }

    fn cache_lookup(&mut self, key: &str) -> Result<Option<Image>> {
        if self.opts.no_cache {
            return Ok(None);
        }
        let Ok(id) = fs::read_to_string(self.store.cache_dir().join(key)) else {
            return Ok(None);
        };
        match self.store.resolve(id.trim()) {
            Ok(img) => {
                self.say(" ---> Using cache")?;
                self.say(format!(" ---> {}", img.short_id()))?;
                Ok(Some(img))
            }
            Err(_) => Ok(None),
        }
    }

    fn commit_step(
        &mut self,
        state: &mut StageState,
        mut config: ImageConfig,
        layer: Option<String>,
        created_by: String,
        key: &str,
    ) -> Result<()> {
        let now = now_rfc3339();
        config.created = Some(now.clone());
        if let Some(d) = &layer {
            config.rootfs.diff_ids.push(d.clone());
        }
        config.history.push(History {
            created: Some(now),
            created_by: Some(created_by),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        let img = self
            .store
            .create_image(&config, state.id.as_deref(), true, &[])?;
        self.store
            .atomic_write(&self.store.cache_dir().join(key), img.id.as_bytes())?;
        self.say(format!(" ---> {}", img.short_id()))?;
        state.adopt(img);
        Ok(())
    }

    /// A step that changes only the config.
    fn meta_step(
        &mut self,
        state: &mut StageState,
        created_by: String,
        extra: &str,
        apply: impl FnOnce(&mut ImageConfig),
    ) -> Result<()> {
        let created_by = format!("/bin/sh -c #(nop)  {created_by}");
        let key = self.cache_key(state, &created_by, extra);
        if let Some(img) = self.cache_lookup(&key)? {
            state.adopt(img);
            return Ok(());
        }
        let mut cfg = state.config.clone();
        apply(&mut cfg);
        self.commit_step(state, cfg, None, created_by, &key)
    }

    fn dispatch(&mut self, state: &mut StageState, ins: &Instruction) -> Result<()> {
        let env = state.subst_env();
        let lookup = |k: &str| env.get(k).cloned();
        let lexer = self.lexer;
        let word = |s: &str| lexer.process_word(s, &lookup).map_err(|m| self.err(ins, m));
        let words = |s: &str| {
            lexer
                .process_words(s, &lookup)
                .map_err(|m| self.err(ins, m))
        };
        match ins.keyword.as_str() {
            "RUN" => self.run_step(state, ins),
            "COPY" | "ADD" => self.copy_step(state, ins),
            "ENV" => {
                let pairs = parse_name_values(&lexer, &ins.args, &lookup, true)
                    .map_err(|m| self.err(ins, format!("ENV {m}")))?;
                let mut text = Vec::new();
                for (k, v) in &pairs {
                    text.push(format!("{k}={}", v.clone().unwrap_or_default()));
                }
                self.meta_step(state, format!("ENV {}", text.join(" ")), "", |c| {
                    for (k, v) in pairs {
                        c.config.env_set(&k, &v.unwrap_or_default());
                    }
                })
            }
            "ARG" => {
                let pairs = parse_name_values(&lexer, &ins.args, &lookup, false)
                    .map_err(|m| self.err(ins, format!("ARG {m}")))?;
                let mut names = Vec::new();
                for (k, default) in pairs {
                    self.declared_args.insert(k.clone());
                    let v = self
                        .opts
                        .build_args
                        .get(&k)
                        .cloned()
                        .or_else(|| self.global_args.get(&k).cloned())
                        .or(default.clone());
                    names.push(match &default {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    state.args.retain(|(n, _)| *n != k);
                    if let Some(v) = v {
                        state.args.push((k, v));
                    }
                }
                self.meta_step(state, format!("ARG {}", names.join(" ")), "", |_| {})
            }
            "LABEL" => {
                let pairs = parse_name_values(&lexer, &ins.args, &lookup, true)
                    .map_err(|m| self.err(ins, format!("LABEL {m}")))?;
                let text: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
                    .collect();
                self.meta_step(state, format!("LABEL {}", text.join(" ")), "", |c| {
                    for (k, v) in pairs {
                        c.config.labels.insert(k, v.unwrap_or_default());
                    }
                })
            }
            "MAINTAINER" => {
                let who = ins.args.clone();
                self.meta_step(state, format!("MAINTAINER {who}"), "", |c| {
                    c.author = Some(who)
                })
            }
            "WORKDIR" => {
                let w = word(&ins.args)?;
                let base = if state.config.config.working_dir.is_empty() {
                    "/".to_string()
                } else {
                    state.config.config.working_dir.clone()
                };
                let joined = if w.starts_with('/') {
                    w
                } else {
                    format!("{base}/{w}")
                };
                let dir = format!("/{}", clean_path(&joined));
                self.meta_step(state, format!("WORKDIR {dir}"), "", |c| {
                    c.config.working_dir = dir
                })
            }
            "USER" => {
                let u = word(&ins.args)?;
                self.meta_step(state, format!("USER {u}"), "", |c| c.config.user = u)
            }
            "STOPSIGNAL" => {
                let s = word(&ins.args)?;
                self.meta_step(state, format!("STOPSIGNAL {s}"), "", |c| {
                    c.config.stop_signal = s
                })
            }
            "CMD" | "ENTRYPOINT" => {
                let argv = match &ins.json {
                    Some(v) => v.clone(),
                    None => {
                        let mut sh = state.shell();
                        sh.push(ins.args.clone());
                        sh
                    }
                };
                let shown = serde_json::to_string(&argv).unwrap_or_default();
                if ins.keyword == "CMD" {
                    state.cmd_set = true;
                    self.meta_step(state, format!("CMD {shown}"), "", |c| {
                        c.config.cmd = Some(argv)
                    })
                } else {
                    let reset = !state.cmd_set;
                    let extra = if reset { "reset-cmd" } else { "" };
                    self.meta_step(state, format!("ENTRYPOINT {shown}"), extra, |c| {
                        c.config.entrypoint = Some(argv);
                        if reset {
                            c.config.cmd = None;
                        }
                    })
                }
            }
            "SHELL" => {
                let argv = ins.json.clone().unwrap_or_default();
                if argv.is_empty() {
                    return Err(self.err(ins, "SHELL requires at least one argument"));
                }
                let shown = serde_json::to_string(&argv).unwrap_or_default();
                self.meta_step(state, format!("SHELL {shown}"), "", |c| {
                    c.config.shell = argv
                })
            }
            "EXPOSE" => {
                let ports = parse_ports(&words(&ins.args)?).map_err(|m| self.err(ins, m))?;
                let text = ports.join(" ");
                self.meta_step(state, format!("EXPOSE {text}"), "", |c| {
                    for p in ports {
                        c.config.exposed_ports.insert(p, serde_json::json!({}));
                    }
                })
            }
            "VOLUME" => {
                let vols = match &ins.json {
                    Some(v) => v.iter().map(|s| word(s)).collect::<Result<Vec<_>>>()?,
                    None => words(&ins.args)?,
                };
                if vols.iter().any(|v| v.is_empty()) {
                    return Err(self.err(ins, "VOLUME specified can not be an empty string"));
                }
                let shown = serde_json::to_string(&vols).unwrap_or_default();
                self.meta_step(state, format!("VOLUME {shown}"), "", |c| {
                    for v in vols {
                        c.config.volumes.insert(v, serde_json::json!({}));
                    }
                })
            }
            "HEALTHCHECK" => {
                let hc = self.healthcheck(state, ins)?;
                let shown = serde_json::to_string(&hc.test).unwrap_or_default();
                let extra = format!(
                    "{} {} {} {} {}",
                    hc.interval, hc.timeout, hc.start_period, hc.start_interval, hc.retries
                );
                self.meta_step(state, format!("HEALTHCHECK {shown}"), &extra, |c| {
                    c.config.healthcheck = Some(hc)
                })
            }
            "ONBUILD" => Err(self.err(ins, "ONBUILD is not supported")),
            other => Err(self.err(ins, format!("{other} is not supported here"))),
        }
    }

    fn healthcheck(
        &self,
        state: &StageState,
        ins: &Instruction,
    ) -> Result<crate::config::HealthConfig> {
        let mut hc = crate::config::HealthConfig::default();
        let (kind, rest) = match ins.args.split_once(char::is_whitespace) {
            Some((k, r)) => (k.to_ascii_uppercase(), r.trim().to_string()),
            None => (ins.args.to_ascii_uppercase(), String::new()),
        };
        if kind == "NONE" {
            if !rest.is_empty() || !ins.flags.is_empty() {
                return Err(self.err(ins, "HEALTHCHECK NONE takes no arguments"));
            }
            hc.test = vec!["NONE".into()];
            return Ok(hc);
        }
        if kind != "CMD" || rest.is_empty() {
            return Err(self.err(
                ins,
                "HEALTHCHECK requires NONE or CMD followed by a command",
            ));
        }
        hc.test = match serde_json::from_str::<Vec<String>>(&rest) {
            Ok(v) if rest.starts_with('[') => std::iter::once("CMD".to_string()).chain(v).collect(),
            _ => vec!["CMD-SHELL".into(), rest],
        };
        let _ = state;
        for (name, value) in &ins.flags {
            let dur = || {
                parse_duration(value)
                    .ok_or_else(|| self.err(ins, format!("invalid duration for --{name}: {value}")))
            };
            match name.as_str() {
                "interval" => hc.interval = dur()?,
                "timeout" => hc.timeout = dur()?,
                "start-period" => hc.start_period = dur()?,
                "start-interval" => hc.start_interval = dur()?,
                "retries" => {
                    hc.retries = value
                        .parse()
                        .map_err(|_| self.err(ins, format!("invalid --retries: {value}")))?
                }
                other => return Err(self.err(ins, format!("unknown flag: --{other}"))),
            }
        }
        Ok(hc)
    }

    /// The shell command of a shell-form RUN. With here-documents: a lone `<<EOF` runs
    /// the body as the script; otherwise the shell gets the command and the bodies.
    fn run_script(&self, ins: &Instruction) -> String {
        if ins.heredocs.is_empty() {
            return ins.args.clone();
        }
        let words = split_words(&ins.args, self.lexer.escape);
        if words.len() == 1 && heredoc_marker(&words[0]).is_some() {
            return ins.heredocs[0].content.clone();
        }
        let mut script = ins.args.clone();
        script.push('\n');
        for h in &ins.heredocs {
            script.push_str(&h.content);
            script.push_str(&h.name);
            script.push('\n');
        }
        script
    }

    fn run_step(&mut self, state: &mut StageState, ins: &Instruction) -> Result<()> {
        if let Some((f, _)) = ins.flags.first() {
            return Err(self.err(ins, format!("RUN --{f} is not supported")));
        }
        let argv = match &ins.json {
            Some(v) => v.clone(),
            None => {
                let mut sh = state.shell();
                sh.push(self.run_script(ins));
                sh
            }
        };
        let args_used: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut created_by = argv.join(" ");
        if !args_used.is_empty() {
            created_by = format!(
                "|{} {} {}",
                args_used.len(),
                args_used.join(" "),
                created_by
            );
        }
        let key = self.cache_key(state, &created_by, "RUN");
        if let Some(img) = self.cache_lookup(&key)? {
            state.adopt(img);
            return Ok(());
        }
        let scratch = self.store.scratch_dir("run")?;
        let result = (|| {
            let upper = scratch.join("upper");
            let work = scratch.join("work");
            fs::create_dir_all(&upper).ctx("creating", &upper)?;
            fs::create_dir_all(&work).ctx("creating", &work)?;
            let c = &state.config.config;
            let mut env = c.env.clone();
            for (k, v) in &state.args {
                if c.env_get(k).is_none() {
                    env.push(format!("{k}={v}"));
                }
            }
            if c.env_get("PATH").is_none() {
                env.insert(0, format!("PATH={DEFAULT_PATH}"));
            }
            let step = RunStep {
                argv: argv.clone(),
                env,
                workdir: if c.working_dir.is_empty() {
                    "/".into()
                } else {
                    c.working_dir.clone()
                },
                user: c.user.clone(),
                lower_dirs: self.store.layer_dirs_for(&state.config.rootfs.diff_ids),
                upper_dir: upper.clone(),
                work_dir: work,
                id: format!("{}{}", rand_hex(), rand_hex()),
            };
            self.say(format!(" ---> Running in {}", &step.id[..12]))?;
            if let Err(e) = self.runner.run(&step, &mut *self.out) {
                let message = match e.exit_code {
                    Some(code) => format!(
                        "The command '{}' returned a non-zero code: {code}",
                        argv.join(" ")
                    ),
                    None => format!(
                        "The command '{}' could not be run: {}",
                        argv.join(" "),
                        e.message
                    ),
                };
                return Err(ImageError::Step {
                    message,
                    exit_code: e.exit_code,
                });
            }
            let layer = self.store.layer_from_dir(&upper)?;
            self.say(format!(
                "Removing intermediate container {}",
                &step.id[..12]
            ))?;
            Ok(layer)
        })();
        let _ = layer::remove_any(&scratch);
        let layer = result?;
        let cfg = state.config.clone();
        self.commit_step(state, cfg, Some(layer.diff_id), created_by, &key)
    }

    fn copy_step(&mut self, state: &mut StageState, ins: &Instruction) -> Result<()> {
        let is_add = ins.keyword == "ADD";
        let env = state.subst_env();
        let lookup = |k: &str| env.get(k).cloned();
        let mut args = match &ins.json {
            Some(v) => v
                .iter()
                .map(|s| self.lexer.process_word(s, &lookup))
                .collect::<std::result::Result<Vec<_>, _>>(),
            None if !ins.heredocs.is_empty() => {
                // Here-document sources become placeholders for inline files.
                let mut n = 0;
                split_words(&ins.args, self.lexer.escape)
                    .iter()
                    .map(|w| {
                        if heredoc_marker(w).is_some() {
                            n += 1;
                            Ok(format!("{HEREDOC_SOURCE}{}", n - 1))
                        } else {
                            self.lexer.process_word(w, &lookup)
                        }
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            }
            None => self.lexer.process_words(&ins.args, &lookup),
        }
        .map_err(|m| self.err(ins, m))?;
        let mut inline_dir = ScratchGuard(None);
        if args.len() < 2 {
            return Err(self.err(
                ins,
                format!("{} requires at least two arguments, but only one was provided. Destination could not be determined.", ins.keyword),
            ));
        }
        let dest_raw = args.pop().unwrap_or_default();
        let mut from = None;
        let mut chown = None;
        let mut chmod = None;
        for (name, value) in &ins.flags {
            let v = self
                .lexer
                .process_word(value, &lookup)
                .map_err(|m| self.err(ins, m))?;
            match name.as_str() {
                "from" if !is_add => from = Some(v),
                "chown" => chown = Some(v),
                "chmod" => {
                    chmod = Some(u32::from_str_radix(&v, 8).map_err(|_| {
                        self.err(
                            ins,
                            format!("invalid --chmod={v}: only octal modes are supported"),
                        )
                    })?)
                }
                "link" => {}
                other => {
                    return Err(self.err(ins, format!("{} --{other} is not supported", ins.keyword)))
                }
            }
        }
        // Where the sources come from.
        let (tree, from_id) = match &from {
            None => (
                SourceTree::Context {
                    root: self.opts.context_dir.clone(),
                    ignore: &self.ignore,
                },
                None,
            ),
            Some(f) => {
                let lower = f.to_ascii_lowercase();
                let stage_id = match lower.parse::<usize>() {
                    Ok(i) => match self.stages.get(i) {
                        Some((_, id)) => Some(id.clone()),
                        None => return Err(self.err(ins, format!("invalid from flag value {f}: stage index {i} is not a previous stage"))),
                    },
                    Err(_) => self
                        .stages
                        .iter()
                        .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
                        .map(|(_, id)| id.clone()),
                };
                let id = match stage_id {
                    Some(id) => id,
                    None => Some(
                        self.store
                            .resolve(f)
                            .map_err(|e| self.err(ins, format!("--from={f}: {e}")))?
                            .id,
                    ),
                };
                let dirs = match &id {
                    Some(id) => self.store.layer_dirs(&self.store.resolve(id)?),
                    None => vec![],
                };
                (
                    SourceTree::Image {
                        view: MergedView::new(&dirs),
                    },
                    Some(id.unwrap_or_else(|| "scratch".into())),
                )
            }
        };
        // Destination, relative to the layer root.
        let base = if state.config.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            state.config.config.working_dir.clone()
        };
        let dest_syntax_dir =
            dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{base}/{dest_raw}")
        };
        let dest_rel = PathBuf::from(clean_path(&dest_abs));
        if dest_rel.starts_with("..") {
            return Err(self.err(ins, format!("destination {dest_raw} is outside the root")));
        }
        let target_view =
            MergedView::new(&self.store.layer_dirs_for(&state.config.rootfs.diff_ids));
        // Symlinks in the destination resolve inside the image (`/bin` → `usr/bin`).
        let dest_rel = target_view.resolve_path(&dest_rel, true);
        let dest_is_dir = dest_syntax_dir
            || target_view
                .lookup(&dest_rel)
                .is_some_and(|n| fs::symlink_metadata(&n[0]).is_ok_and(|m| m.is_dir()));
        // Sources.
        let mut nodes = Vec::new();
        for src in &args {
            if let Some(idx) = src.strip_prefix(HEREDOC_SOURCE) {
                let h = idx
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| ins.heredocs.get(i))
                    .ok_or_else(|| self.err(ins, "here-document without a body"))?;
                if inline_dir.0.is_none() {
                    inline_dir.0 = Some(self.store.scratch_dir("heredoc")?);
                }
                let dir = inline_dir.0.clone().unwrap_or_default();
                let path = dir.join(&h.name);
                let content = if h.expand {
                    expand_simple(&h.content, &env)
                } else {
                    h.content.clone()
                };
                fs::write(&path, content).ctx("writing", &path)?;
                layer::set_mode(&path, 0o644)?;
                let meta = fs::symlink_metadata(&path).ctx("stat", &path)?;
                nodes.push(SrcNode {
                    rel: h.name.clone(),
                    name: h.name.clone(),
                    real: vec![path],
                    meta,
                    excluded: false,
                });
                continue;
            }
            if is_add
                && (src.starts_with("http://")
                    || src.starts_with("https://")
                    || src.starts_with("git@"))
            {
                return Err(ImageError::Unsupported(format!(
                    "{}:{}: ADD from a URL ({src}); download it with RUN instead",
                    self.file, ins.line
                )));
            }
            let cleaned = clean_path(src);
            if cleaned == ".." || cleaned.starts_with("../") {
                return Err(self.err(
                    ins,
                    format!("forbidden path outside the build context: {src}"),
                ));
            }
            let found = tree.expand(&cleaned)?;
            if found.is_empty() {
                return Err(self.err(
                    ins,
                    format!("{} failed: file not found in build context or excluded by .dockerignore: stat {src}: file does not exist", ins.keyword),
                ));
            }
            nodes.extend(found);
        }
        if nodes.len() > 1 && !dest_syntax_dir {
            return Err(self.err(
                ins,
                format!("When using {} with more than one source file, the destination must be a directory and end with a /", ins.keyword),
            ));
        }
        let mut plan = Vec::new();
        for node in &nodes {
            let real = node.real[0].clone();
            if node.meta.is_dir() {
                let first = plan.len();
                self.plan_tree(&tree, node, dest_rel.clone(), &mut plan)?;
                if let Some(PlanItem {
                    kind: PlanKind::Dir { top, .. },
                    ..
                }) = plan.get_mut(first)
                {
                    *top = true;
                }
            } else if is_add && node.meta.is_file() && is_archive(&real) {
                plan.push(PlanItem {
                    kind: PlanKind::Extract,
                    src: real,
                    meta: node.meta.clone(),
                    dest: dest_rel.clone(),
                });
            } else {
                let name = PathBuf::from(&node.name);
                let dest = if dest_is_dir {
                    dest_rel.join(name)
                } else {
                    dest_rel.clone()
                };
                self.plan_tree(&tree, node, dest, &mut plan)?;
            }
        }
        let owner = match &chown {
            Some(spec) => Some(self.resolve_chown(ins, spec, &target_view)?),
            None => None,
        };
        // Cache key: instruction + a hash of the sources' paths, metadata and content.
        let mut h = Sha256::new();
        for item in &plan {
            h.update(item.dest.as_os_str().as_encoded_bytes());
            h.update([0]);
            let m = &item.meta;
            h.update(
                format!(
                    "{:o} {} {} {}",
                    m.mode(),
                    m.len(),
                    if from_id.is_some() { m.uid() } else { 0 },
                    if from_id.is_some() { m.gid() } else { 0 }
                )
                .as_bytes(),
            );
            match &item.kind {
                PlanKind::File | PlanKind::Extract => {
                    let mut f = fs::File::open(&item.src).ctx("opening", &item.src)?;
                    std::io::copy(&mut f, &mut h).ctx("reading", &item.src)?;
                }
                PlanKind::Symlink(t) => h.update(t.as_os_str().as_encoded_bytes()),
                PlanKind::Dir { excluded, top } => h.update([*excluded as u8, *top as u8]),
                PlanKind::Special => h.update(m.rdev().to_le_bytes()),
            }
        }
        let content = hex::encode(h.finalize());
        let kind = if nodes.len() > 1 {
            "multi"
        } else if nodes[0].meta.is_dir() {
            "dir"
        } else {
            "file"
        };
        let created_by = format!(
            "/bin/sh -c #(nop) {} {kind}:{content} in {} ",
            ins.keyword, dest_abs
        );
        let extra = format!("{:?} {:?} {:?} {:?}", from_id, owner, chmod, ins.original);
        let key = self.cache_key(state, &created_by, &extra);
        if let Some(img) = self.cache_lookup(&key)? {
            state.adopt(img);
            return Ok(());
        }
        let scratch = self.store.scratch_dir("copy")?;
        let result = (|| {
            let root = scratch.join("layer");
            fs::create_dir_all(&root).ctx("creating", &root)?;
            let keep_owner = from_id.is_some();
            let mut dirs = Vec::new();
            for item in &plan {
                let dest = match (&item.kind, item.dest.parent(), item.dest.file_name()) {
                    (PlanKind::Dir { .. }, _, _) => target_view.resolve_path(&item.dest, true),
                    (_, Some(parent), Some(name)) => {
                        target_view.resolve_path(parent, true).join(name)
                    }
                    _ => item.dest.clone(),
                };
                make_parents(&root, &dest, &target_view)?;
                let dst = root.join(&dest);
                let (uid, gid) = owner.unwrap_or(if keep_owner {
                    (item.meta.uid(), item.meta.gid())
                } else {
                    (0, 0)
                });
                match &item.kind {
                    PlanKind::Dir { excluded, top } => {
                        if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                            layer::remove_any(&dst)?;
                            fs::create_dir(&dst).ctx("creating", &dst)?;
                        }
                        // An existing destination directory keeps its attributes.
                        let existing = if *top && owner.is_none() && chmod.is_none() {
                            target_view
                                .lookup(&dest)
                                .and_then(|n| fs::symlink_metadata(&n[0]).ok())
                                .filter(|m| m.is_dir())
                        } else {
                            None
                        };
                        let m = existing.as_ref().unwrap_or(&item.meta);
                        let (uid, gid) = if existing.is_some() {
                            (m.uid(), m.gid())
                        } else {
                            (uid, gid)
                        };
                        layer::set_mode(&dst, chmod.unwrap_or(m.mode()))?;
                        lchown(&dst, uid, gid)?;
                        dirs.push((dst, m.mtime(), *excluded));
                    }
                    PlanKind::File => {
                        layer::remove_any(&dst)?;
                        fs::copy(&item.src, &dst).ctx_msg(|| {
                            format!("copying {} to {}", item.src.display(), dst.display())
                        })?;
                        lchown(&dst, uid, gid)?;
                        layer::set_mode(&dst, chmod.unwrap_or(item.meta.mode()))?;
                        set_times(&dst, item.meta.mtime());
                    }
                    PlanKind::Symlink(t) => {
                        layer::remove_any(&dst)?;
                        std::os::unix::fs::symlink(t, &dst).ctx("creating symlink", &dst)?;
                        lchown(&dst, uid, gid)?;
                    }
                    PlanKind::Special => {
                        layer::remove_any(&dst)?;
                        let m = &item.meta;
                        let kind = if m.file_type().is_char_device() {
                            nix::sys::stat::SFlag::S_IFCHR
                        } else if m.file_type().is_block_device() {
                            nix::sys::stat::SFlag::S_IFBLK
                        } else if m.file_type().is_fifo() {
                            nix::sys::stat::SFlag::S_IFIFO
                        } else {
                            continue;
                        };
                        nix::sys::stat::mknod(
                            &dst,
                            kind,
                            nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o7777),
                            m.rdev(),
                        )
                        .map_err(|e| {
                            ImageError::io(format!("mknod {}", dst.display()), e.into())
                        })?;
                        lchown(&dst, uid, gid)?;
                        layer::set_mode(&dst, m.mode() & 0o7777)?;
                    }
                    PlanKind::Extract => {
                        fs::create_dir_all(&dst).ctx("creating", &dst)?;
                        let f = fs::File::open(&item.src).ctx("opening", &item.src)?;
                        let mut a = tar::Archive::new(maybe_gunzip(f)?);
                        a.set_preserve_permissions(true);
                        a.set_preserve_ownerships(true);
                        a.set_preserve_mtime(true);
                        a.set_overwrite(true);
                        a.unpack(&dst).ctx("extracting archive into", &dst)?;
                    }
                }
            }
            for (d, mtime, excluded) in dirs.into_iter().rev() {
                if excluded && fs::read_dir(&d).is_ok_and(|mut r| r.next().is_none()) {
                    let _ = fs::remove_dir(&d);
                    continue;
                }
                set_times(&d, mtime);
            }
            self.store.layer_from_dir(&root)
        })();
        let _ = layer::remove_any(&scratch);
        let layer = result?;
        let cfg = state.config.clone();
        self.commit_step(state, cfg, Some(layer.diff_id), created_by, &key)
    }

    fn plan_tree(
        &self,
        tree: &SourceTree,
        node: &SrcNode,
        dest: PathBuf,
        plan: &mut Vec<PlanItem>,
    ) -> Result<()> {
        let real = node.real[0].clone();
        let ft = node.meta.file_type();
        if ft.is_dir() {
            plan.push(PlanItem {
                kind: PlanKind::Dir {
                    excluded: node.excluded,
                    top: false,
                },
                src: real,
                meta: node.meta.clone(),
                dest: dest.clone(),
            });
            for (name, child) in tree.children(node)? {
                self.plan_tree(tree, &child, dest.join(name), plan)?;
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(&real).ctx("reading link", &real)?;
            plan.push(PlanItem {
                kind: PlanKind::Symlink(t),
                src: real,
                meta: node.meta.clone(),
                dest,
            });
        } else if ft.is_file() {
            plan.push(PlanItem {
                kind: PlanKind::File,
                src: real,
                meta: node.meta.clone(),
                dest,
            });
        } else if !ft.is_socket() {
            plan.push(PlanItem {
                kind: PlanKind::Special,
                src: real,
                meta: node.meta.clone(),
                dest,
            });
        }
        Ok(())
    }

    fn resolve_chown(
        &self,
        ins: &Instruction,
        spec: &str,
        view: &MergedView,
    ) -> Result<(u32, u32)> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let passwd = || view.read_file(Path::new("etc/passwd"));
        let group = || view.read_file(Path::new("etc/group"));
        let uid = match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup_id(passwd(), u, 2).ok_or_else(|| {
                self.err(ins, format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
            })?,
        };
        let gid = match g {
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup_id(group(), g, 2).ok_or_else(|| {
                    self.err(ins, format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
                })?,
            },
            None => match u.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup_id(group(), u, 2)
                    .or_else(|| lookup_id(passwd(), u, 3))
                    .unwrap_or(uid),
            },
        };
        Ok((uid, gid))
    }
}

/// Marks a here-document among COPY/ADD sources (not a valid path).
const HEREDOC_SOURCE: &str = "\0heredoc:";

/// Removes a scratch directory when dropped.
struct ScratchGuard(Option<PathBuf>);

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = layer::remove_any(&p);
        }
    }
}

/// `$NAME` / `${NAME}` expansion for here-document bodies (`\$` keeps a `$`).
fn expand_simple(text: &str, env: &HashMap<String, String>) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_name = |x: char| x.is_ascii_alphanumeric() || x == '_';
    while i < c.len() {
        match c[i] {
            '\\' if c.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if c.get(i + 1) == Some(&'{') => {
                let end = c[i + 2..].iter().position(|&x| x == '}');
                match end {
                    Some(e) if c[i + 2..i + 2 + e].iter().all(|&x| is_name(x)) && e > 0 => {
                        let name: String = c[i + 2..i + 2 + e].iter().collect();
                        out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                        i += e + 3;
                    }
                    _ => {
                        out.push('$');
                        i += 1;
                    }
                }
            }
            '$' if c.get(i + 1).is_some_and(|&x| is_name(x)) => {
                let start = i + 1;
                let mut j = start;
                while j < c.len() && is_name(c[j]) {
                    j += 1;
                }
                let name: String = c[start..j].iter().collect();
                out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                i = j;
            }
            x => {
                out.push(x);
                i += 1;
            }
        }
    }
    out
}

fn lchown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).ctx("chown", p)
}

fn set_times(p: &Path, mtime: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
    if let Ok(f) = fs::File::open(p) {
        let _ = f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t));
    }
}

/// Creates the missing parents of `rel` in the layer `root`, copying the attributes of
/// directories that exist in the image below (so the layer does not change them).
fn make_parents(root: &Path, rel: &Path, view: &MergedView) -> Result<()> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut cur = PathBuf::new();
    for comp in parent.components() {
        cur.push(comp);
        let p = root.join(&cur);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        layer::remove_any(&p)?;
        fs::create_dir(&p).ctx("creating", &p)?;
        match view
            .lookup(&cur)
            .and_then(|n| fs::symlink_metadata(&n[0]).ok())
        {
            Some(m) if m.is_dir() => {
                layer::set_mode(&p, m.mode())?;
                lchown(&p, m.uid(), m.gid())?;
                set_times(&p, m.mtime());
            }
            _ => layer::set_mode(&p, 0o755)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
