use super::*;
use crate::store::tests::store_with_busybox;
use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;

/// Interprets a tiny command language instead of running containers:
/// `touch PATH` writes a file into the upper dir, `rm PATH` makes a whiteout,
/// `fail N` exits N, `echo ...` prints.
#[derive(Default)]
struct FakeRunner {
    calls: RefCell<Vec<RunStep>>,
}

impl StepRunner for FakeRunner {
    fn run(&self, step: &RunStep, out: &mut dyn Write) -> Result<(), StepError> {
        self.calls.borrow_mut().push(step.clone());
        assert!(step.upper_dir.is_dir() && step.work_dir.is_dir());
        let cmd = step.argv.last().cloned().unwrap_or_default();
        for part in cmd.split("&&") {
            let words: Vec<&str> = part.split_whitespace().collect();
            let abs = |p: &str| {
                let p = if p.starts_with('/') {
                    p.to_string()
                } else {
                    format!("{}/{p}", step.workdir)
                };
                step.upper_dir.join(p.trim_start_matches('/'))
            };
            match words.as_slice() {
                ["touch", p] => {
                    let p = abs(p);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    fs::write(&p, "made").unwrap();
                }
                ["rm", p] => {
                    let p = abs(p);
                    fs::create_dir_all(p.parent().unwrap()).unwrap();
                    layer::make_whiteout(&p).unwrap();
                }
                ["fail", n] => return Err(StepError::exit(n.parse().unwrap())),
                ["echo", rest @ ..] => writeln!(out, "{}", rest.join(" ")).unwrap(),
                other => return Err(StepError::other(format!("fake runner: unknown {other:?}"))),
            }
        }
        Ok(())
    }
}

struct Ctx {
    _t: tempfile::TempDir,
    store: ImageStore,
    dir: PathBuf,
}

fn ctx(dockerfile: &str, files: &[(&str, &str)]) -> Ctx {
    let (t, store, _) = store_with_busybox();
    let dir = t.path().join("ctx");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (p, c) in files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    Ctx { _t: t, store, dir }
}

impl Ctx {
    fn build(
        &self,
        runner: &FakeRunner,
        f: impl FnOnce(&mut BuildOptions),
    ) -> (Result<Image>, String) {
        let mut opts = BuildOptions {
            context_dir: self.dir.clone(),
            tags: vec!["app".into()],
            ..Default::default()
        };
        f(&mut opts);
        let mut out = Vec::new();
        let r = build(&self.store, &opts, runner, &mut out);
        (r, String::from_utf8(out).unwrap())
    }
    fn find(&self, img: &Image, rel: &str) -> Option<PathBuf> {
        MergedView::new(&self.store.layer_dirs(img))
            .lookup(Path::new(rel))
            .map(|n| n[0].clone())
    }
}

const BASIC: &str = "FROM busybox\nENV A=1 P=/app\nWORKDIR $P\nCOPY file.txt .\nRUN touch made && rm /var/lib/gone\nCMD [\"sh\"]\n";

#[test]
fn builds_layers_config_and_output() {
    let c = ctx(BASIC, &[("file.txt", "hello")]);
    let r = FakeRunner::default();
    let (img, out) = c.build(&r, |_| {});
    let img = img.unwrap();
    assert!(out.contains("Step 1/6 : FROM busybox"), "{out}");
    assert!(out.contains("Step 4/6 : COPY file.txt ."), "{out}");
    assert!(
        out.contains(&format!("Successfully built {}", img.short_id())),
        "{out}"
    );
    assert!(out.contains("Successfully tagged app:latest"), "{out}");
    assert_eq!(img.diff_ids().len(), 3);
    assert_eq!(img.config.config.env, vec!["A=1", "P=/app"]);
    assert_eq!(img.config.config.working_dir, "/app");
    assert_eq!(img.config.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(img.config.history.len(), 6);
    assert_eq!(
        img.config.history.iter().filter(|h| !h.empty_layer).count(),
        3
    );
    let h = c.store.history("app").unwrap();
    assert_eq!(h.len(), 6);
    assert_eq!(h[0].id, img.id);
    assert!(h[1].id.starts_with("sha256:") && h[1].id != img.id);
    assert_eq!(h[5].id, c.store.resolve("busybox").unwrap().id);
    assert!(h[1].created_by.contains("touch made"));
    assert_eq!(
        fs::read_to_string(c.find(&img, "app/file.txt").unwrap()).unwrap(),
        "hello"
    );
    assert!(c.find(&img, "app/made").is_some());
    assert!(c.find(&img, "var/lib/gone").is_none());
    assert!(c.find(&img, "var/lib/keep").is_some());
    let step = &r.calls.borrow()[0];
    assert_eq!(
        step.argv,
        vec!["/bin/sh", "-c", "touch made && rm /var/lib/gone"]
    );
    assert_eq!(step.workdir, "/app");
    assert_eq!(step.lower_dirs.len(), 2);
    let m = fs::metadata(c.find(&img, "app/file.txt").unwrap()).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    // list shows the two named images, not the intermediates
    let rows = c.store.list().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(c.store.resolve("app").unwrap().id, img.id);
    // scratch dirs are gone
    assert_eq!(fs::read_dir(c.store.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn cache_hits_and_misses() {
    let c = ctx(BASIC, &[("file.txt", "hello")]);
    let r = FakeRunner::default();
    let first = c.build(&r, |_| {}).0.unwrap();
    let t = std::time::Instant::now();
    let (second, out) = c.build(&r, |_| {});
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(second.unwrap().id, first.id);
    assert_eq!(out.matches(" ---> Using cache").count(), 5, "{out}");
    assert_eq!(r.calls.borrow().len(), 1);
    // change a COPY source: COPY and later steps rebuild
    fs::write(c.dir.join("file.txt"), "changed").unwrap();
    let (third, out) = c.build(&r, |_| {});
    let third = third.unwrap();
    assert_ne!(third.id, first.id);
    assert_eq!(out.matches(" ---> Using cache").count(), 2, "{out}");
    assert_eq!(r.calls.borrow().len(), 2);
    // no_cache
    let (_, out) = c.build(&r, |o| o.no_cache = true);
    assert_eq!(out.matches("Using cache").count(), 0);
    // mode change is a change too
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(c.dir.join("file.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let (_, out) = c.build(&r, |_| {});
    assert_eq!(out.matches(" ---> Using cache").count(), 2, "{out}");
}

#[test]
fn entrypoint_and_cmd() {
    let c = ctx("FROM busybox\nCMD [\"base\"]\n", &[]);
    let r = FakeRunner::default();
    c.build(&r, |o| o.tags = vec!["base".into()]).0.unwrap();
    type Case<'a> = (&'a str, Option<Vec<&'a str>>, Option<Vec<&'a str>>);
    let cases: [Case; 4] = [
        ("FROM base\nENTRYPOINT [\"ep\"]\n", Some(vec!["ep"]), None),
        (
            "FROM base\nENTRYPOINT ep run\nCMD [\"x\"]\n",
            Some(vec!["/bin/sh", "-c", "ep run"]),
            Some(vec!["x"]),
        ),
        (
            "FROM base\nCMD [\"x\"]\nENTRYPOINT [\"ep\"]\n",
            Some(vec!["ep"]),
            Some(vec!["x"]),
        ),
        (
            "FROM base\nSHELL [\"/bin/bash\", \"-e\", \"-c\"]\nCMD echo hi\n",
            None,
            Some(vec!["/bin/bash", "-e", "-c", "echo hi"]),
        ),
    ];
    for (df, ep, cmd) in cases {
        fs::write(c.dir.join("Dockerfile"), df).unwrap();
        let img = c.build(&r, |o| o.tags = vec![]).0.unwrap();
        let own =
            |v: Option<Vec<&str>>| v.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
        assert_eq!(img.config.config.entrypoint, own(ep), "{df}");
        assert_eq!(img.config.config.cmd, own(cmd), "{df}");
    }
}

#[test]
fn metadata_instructions() {
    let df = "FROM busybox\nLABEL a=b \"c d\"=e\nEXPOSE 80 53/udp 8000-8001\nVOLUME [\"/data\"]\nUSER app:apps\nSTOPSIGNAL SIGINT\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/\nMAINTAINER me\n";
    let c = ctx(df, &[]);
    let img = c.build(&FakeRunner::default(), |_| {}).0.unwrap();
    let cc = &img.config.config;
    assert_eq!(cc.labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(cc.labels.get("c d").map(String::as_str), Some("e"));
    let ports: Vec<&String> = cc.exposed_ports.keys().collect();
    assert_eq!(ports, vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert!(cc.volumes.contains_key("/data"));
    assert_eq!(cc.user, "app:apps");
    assert_eq!(cc.stop_signal, "SIGINT");
    let hc = cc.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, vec!["CMD-SHELL", "curl -f http://x/"]);
    assert_eq!((hc.interval, hc.retries), (5_000_000_000, 3));
    assert_eq!(img.config.author.as_deref(), Some("me"));
    assert_eq!(img.diff_ids().len(), 1);
}

#[test]
fn args_and_build_args() {
    let df = "ARG BASE=busybox\nFROM $BASE\nARG V=1\nARG W\nENV E=${V:-none}\nRUN echo $V\n";
    let c = ctx(df, &[]);
    let r = FakeRunner::default();
    let (img, out) = c.build(&r, |o| {
        o.build_args.insert("V".into(), "2".into());
        o.build_args.insert("UNUSED".into(), "x".into());
    });
    let img = img.unwrap();
    assert_eq!(img.config.config.env, vec!["E=2"]);
    assert!(r.calls.borrow()[0].env.contains(&"V=2".to_string()));
    assert!(r.calls.borrow()[0].env[0].starts_with("PATH=/usr/local/sbin:"));
    let last = img.config.history.last().unwrap();
    assert_eq!(
        last.created_by.as_deref(),
        Some("|1 V=2 /bin/sh -c echo $V")
    );
    assert!(
        out.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    assert!(out.contains("Step 1/6 : ARG BASE=busybox"), "{out}");
    // a different build arg value misses the cache for the RUN
    let (_, out) = c.build(&r, |o| {
        o.build_args.insert("V".into(), "3".into());
    });
    assert_eq!(r.calls.borrow().len(), 2, "{out}");
}

#[test]
fn multi_stage_copy_from_and_target() {
    let df = "FROM busybox AS builder\nRUN touch /out/app\nFROM scratch\nCOPY --from=builder /out/app /bin/app\nCOPY --from=0 /etc/passwd /etc/\nCOPY --from=busybox /bin/busybox /bin/\n";
    let c = ctx(df, &[]);
    let r = FakeRunner::default();
    let img = c.build(&r, |_| {}).0.unwrap();
    assert_eq!(img.diff_ids().len(), 3);
    assert_eq!(
        fs::read_to_string(c.find(&img, "bin/app").unwrap()).unwrap(),
        "made"
    );
    assert!(c.find(&img, "etc/passwd").is_some());
    assert!(c.find(&img, "bin/busybox").is_some());
    assert!(c.find(&img, "var").is_none());
    let (t, out) = c.build(&r, |o| {
        o.target = Some("builder".into());
        o.tags = vec!["b".into()];
    });
    let t = t.unwrap();
    assert_eq!(t.diff_ids().len(), 2);
    assert!(out.contains("Step 2/2 : RUN"), "{out}");
    let (e, _) = c.build(&r, |o| o.target = Some("nope".into()));
    assert!(e.unwrap_err().to_string().contains("target nope"));
}

#[test]
fn dockerignore_filters_context() {
    let df = "FROM busybox\nCOPY . /ctx/\n";
    let c = ctx(
        df,
        &[
            ("a.txt", "a"),
            ("b.log", "b"),
            ("secret/x", "x"),
            ("secret/keep", "k"),
            ("sub/c.txt", "c"),
            (".dockerignore", "*.log\nsecret\n!secret/keep\n"),
        ],
    );
    let r = FakeRunner::default();
    let img = c.build(&r, |_| {}).0.unwrap();
    assert!(c.find(&img, "ctx/a.txt").is_some());
    assert!(c.find(&img, "ctx/sub/c.txt").is_some());
    assert!(c.find(&img, "ctx/b.log").is_none());
    assert!(c.find(&img, "ctx/secret/x").is_none());
    assert!(c.find(&img, "ctx/secret/keep").is_some());
    // an ignored file does not bust the cache
    fs::write(c.dir.join("b.log"), "changed").unwrap();
    let (_, out) = c.build(&r, |_| {});
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    fs::write(c.dir.join("Dockerfile"), "FROM busybox\nCOPY b.log /\n").unwrap();
    let e = c.build(&r, |_| {}).0.unwrap_err().to_string();
    assert!(
        e.contains("Dockerfile:2:") && e.contains("excluded by .dockerignore"),
        "{e}"
    );
}

#[test]
fn copy_globs_chown_dest_rules_and_add() {
    let mut tarball = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(2);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    tarball
        .append_data(&mut h, "inside/t.txt", &b"tt"[..])
        .unwrap();
    let tarball = tarball.into_inner().unwrap();
    let df = "FROM busybox\nCOPY --chown=app:apps *.txt /dst/\nCOPY one.txt /renamed\nCOPY dir /d\nADD arch.tar /x/\nCOPY --chmod=700 one.txt /m\n";
    let c = ctx(
        df,
        &[("one.txt", "1"), ("two.txt", "2"), ("dir/sub/f", "f")],
    );
    fs::write(c.dir.join("arch.tar"), tarball).unwrap();
    let img = c.build(&FakeRunner::default(), |_| {}).0.unwrap();
    let m = fs::metadata(c.find(&img, "dst/two.txt").unwrap()).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert!(c.find(&img, "dst/one.txt").is_some());
    assert_eq!(
        fs::read_to_string(c.find(&img, "renamed").unwrap()).unwrap(),
        "1"
    );
    assert!(c.find(&img, "d/sub/f").is_some());
    assert!(c.find(&img, "d/dir").is_none());
    assert_eq!(
        fs::read_to_string(c.find(&img, "x/inside/t.txt").unwrap()).unwrap(),
        "tt"
    );
    assert_eq!(
        fs::metadata(c.find(&img, "m").unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    // errors
    let r = FakeRunner::default();
    for (df, want) in [
        (
            "FROM busybox\nCOPY one.txt two.txt /nodir\n",
            "must be a directory and end with a /",
        ),
        ("FROM busybox\nADD https://x/y /y\n", "not supported"),
        ("FROM busybox\nCOPY ../x /y\n", "outside the build context"),
        (
            "FROM busybox\nCOPY --chown=nobody one.txt /y\n",
            "no such user",
        ),
        (
            "FROM busybox\nCOPY one.txt\n",
            "requires at least two arguments",
        ),
        ("FROM nothere\n", "No such image: nothere:latest"),
        (
            "FROM busybox\nONBUILD RUN x\n",
            "Dockerfile:2: ONBUILD is not supported",
        ),
    ] {
        fs::write(c.dir.join("Dockerfile"), df).unwrap();
        let e = c.build(&r, |_| {}).0.unwrap_err().to_string();
        assert!(e.contains(want), "{df}: {e}");
    }
}

#[test]
fn run_failure_carries_exit_code_and_cleans_up() {
    let c = ctx("FROM busybox\nRUN echo hi && fail 3\n", &[]);
    let (r, out) = c.build(&FakeRunner::default(), |_| {});
    match r.unwrap_err() {
        ImageError::Step { exit_code, message } => {
            assert_eq!(exit_code, Some(3));
            assert_eq!(
                message,
                "The command '/bin/sh -c echo hi && fail 3' returned a non-zero code: 3"
            );
        }
        e => panic!("unexpected {e}"),
    }
    assert!(out.contains("hi\n"));
    assert_eq!(fs::read_dir(c.store.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
    assert_eq!(parse_duration("500ms"), Some(500_000_000));
    assert_eq!(parse_duration("x"), None);
}

#[test]
fn change_commands() {
    let mut c = crate::config::ContainerConfig::default();
    apply_changes(
        &mut c,
        &[
            "ENV A=1",
            "CMD [\"sh\"]",
            "EXPOSE 80",
            "WORKDIR /w",
            "WORKDIR x",
            "USER $A",
            "LABEL k=v",
            "ENTRYPOINT run me",
        ],
    )
    .unwrap();
    assert_eq!(c.env, vec!["A=1"]);
    assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
    assert!(c.exposed_ports.contains_key("80/tcp"));
    assert_eq!(c.working_dir, "/w/x");
    assert_eq!(c.user, "1");
    assert_eq!(
        c.entrypoint,
        Some(vec!["/bin/sh".to_string(), "-c".into(), "run me".into()])
    );
    assert!(apply_changes(&mut c, &["RUN x"])
        .unwrap_err()
        .to_string()
        .contains("not a valid change"));
    assert!(apply_changes(&mut c, &["BOGUS x"]).is_err());
}

/// Runs steps for real: overlay mount of the step's dirs and a chroot (no namespaces);
/// checks the RunStep contract against the kernel. Skipped where mounting is not allowed.
struct ChrootRunner;

impl StepRunner for ChrootRunner {
    fn run(&self, step: &RunStep, out: &mut dyn Write) -> Result<(), StepError> {
        use std::os::unix::process::CommandExt;
        let mnt = step.upper_dir.parent().unwrap().join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let lower: Vec<String> = step
            .lower_dirs
            .iter()
            .rev()
            .map(|d| d.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            step.upper_dir.display(),
            step.work_dir.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &mnt,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| StepError::other(format!("mount: {e}")))?;
        let root = mnt.clone();
        let wd = step.workdir.clone();
        let mut cmd = std::process::Command::new(&step.argv[0]);
        cmd.args(&step.argv[1..]).env_clear();
        for kv in &step.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::chroot(&root)?;
                let _ = std::fs::create_dir_all(&wd);
                nix::unistd::chdir(wd.as_str())?;
                Ok(())
            });
        }
        let res = cmd.output();
        let _ = nix::mount::umount(&mnt);
        let _ = fs::remove_dir(&mnt);
        let o = res.map_err(|e| StepError::other(e.to_string()))?;
        out.write_all(&o.stdout).unwrap();
        out.write_all(&o.stderr).unwrap();
        match o.status.code() {
            Some(0) => Ok(()),
            Some(c) => Err(StepError::exit(c)),
            None => Err(StepError::other("killed by a signal")),
        }
    }
}

#[test]
fn real_run_steps_through_overlay() {
    if !Path::new("/bin/busybox").is_file() {
        return;
    }
    let df = "FROM busybox\nENV GREETING=hi\nWORKDIR /work\nRUN echo $GREETING > out.txt && rm /var/lib/gone && mkdir -p /etc/new\nRUN cat <<EOF > h.txt\nfrom $GREETING\nEOF\nRUN [\"/bin/sh\", \"-c\", \"cat /work/out.txt; exit 4\"]\n";
    let c = ctx(df, &[]);
    let mut opts = BuildOptions {
        context_dir: c.dir.clone(),
        ..Default::default()
    };
    let mut output = Vec::new();
    let res = build(&c.store, &opts, &ChrootRunner, &mut output);
    let text = String::from_utf8_lossy(&output).to_string();
    if text.contains("mount:") {
        eprintln!("overlay mount not possible here, skipping");
        return;
    }
    match res {
        Err(ImageError::Step {
            exit_code: Some(4), ..
        }) => {}
        other => panic!("expected exit 4, got {other:?}\n{text}"),
    }
    assert!(text.contains("hi\n"), "{text}");
    // the first RUN's layer is cached and correct
    fs::write(c.dir.join("Dockerfile"), df.rsplit_once("RUN [").unwrap().0).unwrap();
    opts.tags = vec!["real".into()];
    let img = build(&c.store, &opts, &ChrootRunner, &mut output).unwrap();
    assert_eq!(
        fs::read_to_string(c.find(&img, "work/out.txt").unwrap()).unwrap(),
        "hi\n"
    );
    assert!(c.find(&img, "var/lib/gone").is_none());
    assert!(c.find(&img, "etc/new").is_some());
    assert_eq!(
        fs::read_to_string(c.find(&img, "work/h.txt").unwrap()).unwrap(),
        "from hi\n"
    );
    assert_eq!(fs::read_dir(c.store.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn symlinks_resolve_inside_the_image_and_context() {
    let c = ctx("FROM busybox\n", &[("one.txt", "1")]);
    // a base whose /lnk is an absolute symlink to /usr/bin (like /bin on modern distros)
    let upper = c.dir.parent().unwrap().join("upper");
    fs::create_dir_all(upper.join("usr/bin")).unwrap();
    fs::write(upper.join("usr/bin/tool"), "tool").unwrap();
    std::os::unix::fs::symlink("/usr/bin", upper.join("lnk")).unwrap();
    let base = c.store.resolve("busybox").unwrap();
    c.store
        .commit(
            Some(&base),
            &upper,
            crate::CommitOptions::default(),
            Some("linked"),
        )
        .unwrap();
    std::os::unix::fs::symlink("one.txt", c.dir.join("link")).unwrap();
    let df = "FROM linked\nCOPY one.txt /lnk/\nCOPY --from=linked /lnk/tool /copied-tool\nCOPY link /dir/\n";
    fs::write(c.dir.join("Dockerfile"), df).unwrap();
    let img = c.build(&FakeRunner::default(), |_| {}).0.unwrap();
    assert!(fs::symlink_metadata(c.find(&img, "lnk").unwrap())
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read_to_string(c.find(&img, "usr/bin/one.txt").unwrap()).unwrap(),
        "1"
    );
    assert_eq!(
        fs::read_to_string(c.find(&img, "copied-tool").unwrap()).unwrap(),
        "tool"
    );
    let m = fs::symlink_metadata(c.find(&img, "dir/link").unwrap()).unwrap();
    assert!(m.is_file());
    // a context symlink pointing outside the context stays inside it
    std::os::unix::fs::symlink("/etc/hostname", c.dir.join("out")).unwrap();
    fs::write(c.dir.join("Dockerfile"), "FROM busybox\nCOPY out /x\n").unwrap();
    let e = c
        .build(&FakeRunner::default(), |_| {})
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("file not found"), "{e}");
}

#[test]
fn heredoc_run_and_copy() {
    let df = "FROM busybox\nENV WHO=world\nRUN <<EOF\ntouch /a\nEOF\nRUN cat <<EOF\nhello\nEOF\nCOPY <<EOF <<'RAW' /etc/\nhi $WHO\nEOF\nkeep $WHO\nRAW\n";
    let c = ctx(df, &[]);
    let r = FakeRunner::default();
    // The fake runner only knows `touch`, so give it scripts it understands.
    let (img, out) = c.build(&r, |_| {});
    let calls = r.calls.borrow();
    assert_eq!(calls[0].argv, vec!["/bin/sh", "-c", "touch /a\n"]);
    drop(calls);
    assert!(img.is_err(), "{out}"); // `cat <<EOF` is not in the fake's language
    let calls = r.calls.borrow();
    assert_eq!(calls[1].argv[2], "cat <<EOF\nhello\nEOF\n");
    drop(calls);
    let df =
        "FROM busybox\nENV WHO=world\nCOPY <<EOF <<'RAW' /etc/\nhi $WHO\nEOF\nkeep $WHO\nRAW\n";
    fs::write(c.dir.join("Dockerfile"), df).unwrap();
    let img = c.build(&r, |_| {}).0.unwrap();
    assert_eq!(
        fs::read_to_string(c.find(&img, "etc/EOF").unwrap()).unwrap(),
        "hi world\n"
    );
    assert_eq!(
        fs::read_to_string(c.find(&img, "etc/RAW").unwrap()).unwrap(),
        "keep $WHO\n"
    );
    assert_eq!(fs::read_dir(c.store.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn labels_option_adds_a_final_label_step() {
    let df = "FROM busybox AS one\nLABEL a=b\nFROM one\nRUN touch made\n";
    let c = ctx(df, &[]);
    let r = FakeRunner::default();
    let labels: BTreeMap<String, String> = [
        ("x.y".to_string(), "v $HOME \"q\" \\".to_string()),
        ("a".to_string(), "over".to_string()),
    ]
    .into();
    let (img, out) = c.build(&r, |o| o.labels = labels.clone());
    let img = img.unwrap();
    assert!(out.contains("Step 5/5 : LABEL"), "{out}");
    assert_eq!(img.config.config.labels.get("x.y"), labels.get("x.y"));
    assert_eq!(img.config.config.labels.get("a").unwrap(), "over");
    // With --target the labels go on the target stage.
    let (img, out) = c.build(&r, |o| {
        o.labels = labels.clone();
        o.target = Some("one".into());
    });
    assert!(out.contains("Step 3/3 : LABEL"), "{out}");
    assert_eq!(img.unwrap().config.config.labels.get("a").unwrap(), "over");
    let bad: BTreeMap<String, String> = [("k".to_string(), "a\nRUN x".to_string())].into();
    let err = c.build(&r, |o| o.labels = bad.clone()).0.unwrap_err();
    assert!(err.to_string().contains("line break"), "{err}");
}

#[test]
fn context_tar_unpacks_inside_and_refuses_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "sub/Dockerfile", &b"abc"[..])
        .unwrap();
    let good = b.into_inner().unwrap();
    unpack_context(&good[..], dir.path()).unwrap();
    assert_eq!(fs::read(dir.path().join("sub/Dockerfile")).unwrap(), b"abc");

    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "null", &b""[..]).unwrap();
    let dev = b.into_inner().unwrap();
    let err = unpack_context(&dev[..], dir.path()).unwrap_err();
    assert!(err.to_string().contains("\"null\""), "{err}");
    assert!(!dir.path().join("null").exists());
}
