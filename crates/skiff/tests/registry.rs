//! `skiff pull`, `push`, `login` and `logout` against real Distribution registries
//! (Debian's docker-registry on loopback ports, see testsupport::registry) and skopeo,
//! each test with its own roots, registry, ports and DOCKER_CONFIG.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use skiff_testsupport::registry::{Auth, Registry};
use skiff_testsupport::{stderr, stdout, Root};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

/// Runs skiff in `r` with `DOCKER_CONFIG` (and maybe stdin).
fn sk(r: &Root, cfg: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut c = r.cmd(args);
    c.env("DOCKER_CONFIG", cfg)
        .env_remove("SKIFF_INSECURE_REGISTRIES");
    if let Some(i) = input {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        return no_secrets(child.wait_with_output().unwrap());
    }
    no_secrets(c.output().unwrap())
}

/// The tests' passwords never appear in what skiff prints.
fn no_secrets(o: Output) -> Output {
    for text in [&o.stdout, &o.stderr] {
        let text = String::from_utf8_lossy(text);
        for secret in ["s3cret-pw", "tok-pw"] {
            assert!(
                !text.contains(secret),
                "a password in skiff's output: {text}"
            );
        }
    }
    o
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn image_id(r: &Root, reference: &str) -> String {
    r.ok(&["inspect", "-f", "{{.Id}}", reference])
        .trim()
        .to_string()
}

/// The busybox image of testsupport, tagged into `reg` as `name`.
fn seeded(reg: &Registry, name: &str) -> (Root, String) {
    let r = Root::with_busybox(EXE);
    let reference = format!("{}/{name}", reg.host);
    r.ok(&["tag", "busybox", &reference]);
    (r, reference)
}

fn no_leftovers(r: &Root) {
    let tmp = r.dir.join("images/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "scratch files left in {}: {left:?}",
        tmp.display()
    );
}

#[test]
fn push_then_pull_into_a_fresh_root_and_by_digest() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "bb:v1");
    let id = image_id(&a, &reference);

    let out = ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!("The push refers to repository [{}/bb]", reg.host)
    );
    assert!(lines.iter().any(|l| l.ends_with(": Pushed")), "{out}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("v1: digest: sha256:") && last.contains(" size: "),
        "{out}"
    );
    let digest = last.split_whitespace().nth(2).unwrap().to_string();
    // The second push finds every blob in the registry.
    let out = ok(
        &sk(&a, cfg.path(), &["push", &reference], None),
        "push again",
    );
    assert!(out.contains(": Layer already exists"), "{out}");
    assert!(!out.contains(": Pushed"), "{out}");
    assert!(
        out.ends_with(&format!(
            "v1: digest: {digest} size: {}\n",
            last.rsplit(' ').next().unwrap()
        )),
        "{out}"
    );

    let b = Root::new(EXE);
    let out = ok(&sk(&b, cfg.path(), &["pull", &reference], None), "pull");
    assert!(out.starts_with("v1: Pulling from bb\n"), "{out}");
    assert!(out.contains(": Pull complete\n"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    assert!(
        out.ends_with(&format!(
            "Status: Downloaded newer image for {reference}\n{reference}\n"
        )),
        "{out}"
    );
    assert_eq!(image_id(&b, &reference), id);
    no_leftovers(&b);
    let out = ok(
        &sk(&b, cfg.path(), &["pull", &reference], None),
        "pull again",
    );
    assert!(out.contains(": Already exists\n"), "{out}");
    assert!(
        out.contains(&format!("Status: Image is up to date for {reference}\n")),
        "{out}"
    );
    let run = b.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &reference,
        "echo",
        "pulled",
    ]);
    assert_eq!(run.trim(), "pulled");
    let digests = b.ok(&["images", "--digests"]);
    assert!(
        digests.lines().next().unwrap().contains("DIGEST"),
        "{digests}"
    );
    assert!(digests.contains(&digest), "{digests}");
    let rd = b.ok(&["inspect", "-f", "{{json .RepoDigests}}", &reference]);
    assert_eq!(rd.trim(), format!("[\"{}/bb@{digest}\"]", reg.host));

    // By digest, quietly, into another root: no tag, and `run NAME@DIGEST` works.
    let c = Root::new(EXE);
    let by_digest = format!("{}/bb@{digest}", reg.host);
    let out = ok(
        &sk(&c, cfg.path(), &["pull", "-q", &by_digest], None),
        "pull by digest",
    );
    assert_eq!(out, format!("{by_digest}\n"));
    assert_eq!(image_id(&c, &by_digest), id);
    let run = c.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &by_digest,
        "echo",
        "by",
        "digest",
    ]);
    assert_eq!(run.trim(), "by digest");
    let rows = c.ok(&["images", "--digests"]);
    let row = rows.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..3],
        &[
            format!("{}/bb", reg.host).as_str(),
            "<none>",
            digest.as_str()
        ],
        "{rows}"
    );
    c.ok(&["rmi", &by_digest]);
    assert_eq!(c.ok(&["images", "-q"]), "");
    // A digest that is not there.
    let bad = format!("{}/bb@sha256:{}", reg.host, "0".repeat(64));
    let o = sk(&c, cfg.path(), &["pull", &bad], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("manifest unknown"), "{}", stderr(&o));
}

#[test]
fn errors_name_the_reference_and_the_reason() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let r = Root::new(EXE);
    let o = sk(
        &r,
        cfg.path(),
        &["pull", &format!("{}/nothing:here", reg.host)],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "skiff: Error response from daemon: manifest for {}/nothing:here not found: manifest unknown: manifest unknown",
            reg.host
        )
    );
    // A registry that is not there.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = sk(
        &r,
        cfg.path(),
        &["pull", &format!("127.0.0.1:{port}/x")],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("127.0.0.1:{port}/v2/")) && e.to_lowercase().contains("connect"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // Pushing a name that is not here.
    let o = sk(
        &r,
        cfg.path(),
        &["push", &format!("{}/absent:1", reg.host)],
        None,
    );
    assert!(
        stderr(&o).contains("An image does not exist locally with the tag"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn basic_auth_login_push_pull_logout() {
    let reg = Registry::basic("alice", "s3cret-pw");
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "private/bb:1");

    let o = sk(&a, cfg.path(), &["push", &reference], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("no basic auth credentials"),
        "{}",
        stderr(&o)
    );
    let o = sk(&a, cfg.path(), &["pull", &reference], None);
    assert!(
        stderr(&o).ends_with("no basic auth credentials"),
        "{}",
        stderr(&o)
    );

    let o = sk(
        &a,
        cfg.path(),
        &["login", "-u", "alice", "--password-stdin", &reg.host],
        Some("wrong\n"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unauthorized: authentication required"),
        "{}",
        stderr(&o)
    );
    assert!(!cfg.path().join("config.json").exists());

    let o = sk(
        &a,
        cfg.path(),
        &["login", "-u", "alice", "--password-stdin", &reg.host],
        Some("s3cret-pw\n"),
    );
    assert_eq!(ok(&o, "login"), "Login Succeeded\n");
    let conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    use base64::Engine as _;
    assert_eq!(
        conf["auths"][&reg.host]["auth"],
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret-pw")
    );

    let out = ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");
    assert!(out.contains(": Pushed"), "{out}");
    let b = Root::new(EXE);
    ok(&sk(&b, cfg.path(), &["pull", &reference], None), "pull");
    assert_eq!(image_id(&b, &reference), image_id(&a, &reference));

    let o = sk(&b, cfg.path(), &["logout", &reg.host], None);
    assert_eq!(
        ok(&o, "logout"),
        format!("Removing login credentials for {}\n", reg.host)
    );
    let conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    assert!(conf["auths"].get(&reg.host).is_none(), "{conf}");
    let o = sk(&b, cfg.path(), &["logout", &reg.host], None);
    assert_eq!(
        ok(&o, "logout again"),
        format!("Not logged in to {}\n", reg.host)
    );
    let c = Root::new(EXE);
    let o = sk(&c, cfg.path(), &["pull", &reference], None);
    assert!(
        stderr(&o).ends_with("no basic auth credentials"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn token_auth_with_anonymous_pulls() {
    let reg = Registry::start(
        Auth::Token {
            user: "bob".into(),
            password: "tok-pw".into(),
            public: vec!["pub/bb".into()],
        },
        false,
    );
    let cfg = tempfile::tempdir().unwrap();
    let (a, private) = seeded(&reg, "priv/bb:1");
    let public = format!("{}/pub/bb:1", reg.host);
    a.ok(&["tag", "busybox", &public]);

    let o = sk(&a, cfg.path(), &["push", &private], None);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("unauthorized"), "{}", stderr(&o));
    let o = sk(
        &a,
        cfg.path(),
        &["login", "-u", "bob", "-p", "nope", &reg.host],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid username or password"),
        "{}",
        stderr(&o)
    );
    let o = sk(
        &a,
        cfg.path(),
        &["login", "-u", "bob", "-p", "tok-pw", &reg.host],
        None,
    );
    assert_eq!(ok(&o, "login"), "Login Succeeded\n");
    assert!(stderr(&o).contains("--password-stdin"));
    ok(
        &sk(&a, cfg.path(), &["push", &private], None),
        "push private",
    );
    // The second repository mounts the layer from the first.
    let out = ok(&sk(&a, cfg.path(), &["push", &public], None), "push public");
    assert!(out.contains(": Mounted from priv/bb"), "{out}");

    // Anonymous: the public repository with an anonymous token, not the private one.
    let anon = tempfile::tempdir().unwrap();
    let b = Root::new(EXE);
    ok(
        &sk(&b, anon.path(), &["pull", &public], None),
        "anonymous pull",
    );
    assert_eq!(image_id(&b, &public), image_id(&a, &public));
    let o = sk(&b, anon.path(), &["pull", &private], None);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("skiff: Error response from daemon: pull access denied for {}/priv/bb, repository does not exist or may require 'skiff login': unauthorized: authentication required", reg.host)
    );
    // With the credentials, the private one.
    ok(
        &sk(&b, cfg.path(), &["pull", &private], None),
        "pull private",
    );
}

#[test]
fn tls_registry_is_verified_with_certs_d() {
    let reg = Registry::tls();
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "tls/bb:1");
    let conf_dir = a.dir.join("etc-skiff");
    // A CA that did not sign the registry's certificate: refused.
    let other = skiff_testsupport::registry::TestCa::new();
    let d = conf_dir.join("certs.d").join(&reg.host);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ca.crt"), &other.ca_pem).unwrap();
    let cd = conf_dir.to_str().unwrap();
    let o = sk(
        &a,
        cfg.path(),
        &["--config-dir", cd, "push", &reference],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    // The right CA.
    reg.install_ca(&conf_dir);
    ok(
        &sk(
            &a,
            cfg.path(),
            &["--config-dir", cd, "push", &reference],
            None,
        ),
        "push over TLS",
    );
    let b = Root::new(EXE);
    ok(
        &sk(
            &b,
            cfg.path(),
            &["--config-dir", cd, "pull", &reference],
            None,
        ),
        "pull over TLS",
    );
    assert_eq!(image_id(&b, &reference), image_id(&a, &reference));
    // --insecure-registry: TLS without verification, whatever certs.d says.
    std::fs::write(d.join("ca.crt"), &other.ca_pem).unwrap();
    let c = Root::new(EXE);
    ok(
        &sk(
            &c,
            cfg.path(),
            &[
                "--config-dir",
                cd,
                "--insecure-registry",
                &reg.host,
                "pull",
                &reference,
            ],
            None,
        ),
        "pull insecure",
    );
}

/// Runs skopeo with a blob-info cache of its own: in a private mount namespace, a
/// tmpfs over root's `/var/lib/containers/cache`, so what earlier runs recorded (a
/// layer's other compressed forms, where they were pushed) cannot change this one.
fn skopeo(args: &[&str]) -> String {
    std::fs::create_dir_all("/var/lib/containers/cache").unwrap();
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs skopeo-cache /var/lib/containers/cache && exec skopeo \"$@\"")
        .arg("skopeo")
        .args(args)
        .output()
        .expect("skopeo (scripts/deps.sh installs it)");
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn skopeo_pushes_skiff_pulls_and_back() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let a = Root::with_busybox(EXE);
    let id = image_id(&a, "busybox");
    let archive = a.dir.join("bb.tar");
    a.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let arch = archive.to_str().unwrap();
    let cases = [
        (format!("docker-archive:{arch}"), "v2s2", "from-docker:v2s2"),
        (format!("docker-archive:{arch}"), "oci", "from-docker:oci"),
        (format!("oci-archive:{arch}"), "v2s2", "from-oci:v2s2"),
        (format!("oci-archive:{arch}"), "oci", "from-oci:oci"),
        (format!("docker-archive:{arch}"), "oci", "zstd:oci"),
    ];
    // zstd goes to a registry of its own: skopeo would swap in the gzip blob of the
    // same layer it already pushed to the first one.
    let zreg = Registry::plain();
    for (src, format, name) in &cases {
        let host = if name.starts_with("zstd") {
            &zreg.host
        } else {
            &reg.host
        };
        let dest = format!("docker://{host}/{name}");
        // zstd: recompressed into an OCI layout first, then copied as it is.
        let zdir = a.dir.join("zstd-layout");
        let src = if name.starts_with("zstd") {
            let layout = format!("oci:{}:z", zdir.display());
            skopeo(&[
                "copy",
                "--quiet",
                "--dest-compress",
                "--dest-compress-format",
                "zstd",
                src,
                &layout,
            ]);
            layout
        } else {
            src.clone()
        };
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--format",
            format,
            &src,
            &dest,
        ]);
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
        let want = if *format == "oci" {
            "application/vnd.oci.image.manifest.v1+json"
        } else {
            "application/vnd.docker.distribution.manifest.v2+json"
        };
        assert!(raw.contains(want), "{name}: {raw}");
        if name.starts_with("zstd") {
            assert!(
                raw.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
                "{raw}"
            );
        }
        let b = Root::new(EXE);
        let reference = format!("{host}/{name}");
        ok(&sk(&b, cfg.path(), &["pull", &reference], None), name);
        assert_eq!(image_id(&b, &reference), id, "{name}");
        let run = b.ok(&["run", "--rm", "--network", "none", &reference, "echo", "ok"]);
        assert_eq!(run.trim(), "ok", "{name}");
    }
    // An image pulled from an OCI manifest, pushed again by skiff to another repository:
    // its blobs are mounted, the manifest is schema 2 with schema 2 layer types.
    let d = Root::new(EXE);
    let oci = format!("{}/from-oci:oci", reg.host);
    ok(&sk(&d, cfg.path(), &["pull", &oci], None), "pull oci");
    let again = format!("{}/repushed:1", reg.host);
    d.ok(&["tag", &oci, &again]);
    let out = ok(&sk(&d, cfg.path(), &["push", &again], None), "push again");
    assert!(out.contains(": Mounted from from-"), "{out}");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{again}"),
    ]);
    assert!(
        raw.contains("application/vnd.docker.image.rootfs.diff.tar.gzip")
            && !raw.contains("vnd.oci.image.layer"),
        "{raw}"
    );
    let e = Root::new(EXE);
    ok(&sk(&e, cfg.path(), &["pull", &again], None), "pull again");
    assert_eq!(image_id(&e, &again), id);

    // skiff pushes, skopeo copies it out, a fresh root loads and runs it.
    let reference = format!("{}/from-skiff:1", reg.host);
    a.ok(&["tag", "busybox", &reference]);
    ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");
    let out = a.dir.join("out.tar");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &format!("docker-archive:{}:copied:1", out.display()),
    ]);
    let c = Root::new(EXE);
    c.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(image_id(&c, "copied:1"), id);
    assert_eq!(
        c.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "copied:1",
            "echo",
            "back"
        ])
        .trim(),
        "back"
    );
}

/// A request to the plain registry with curl; returns (headers, body).
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let o = Command::new("curl")
        .args(["-sS", "-D", "-", "--fail-with-body"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "curl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let s = o.stdout;
    let split = s
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(s.len());
    (
        String::from_utf8_lossy(&s[..split]).to_string(),
        s[split..].to_vec(),
    )
}

fn header(h: &str, name: &str) -> String {
    h.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap()
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn put_blob(base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha(data);
    let (h, _) = curl(&["-X", "POST", &format!("{base}/v2/{repo}/blobs/uploads/")]);
    let loc = header(&h, "location");
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), data).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", tmp.path().display()),
        &format!("{loc}{sep}digest={digest}"),
    ]);
    digest
}

fn put_manifest(base: &str, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> String {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), body).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {media_type}"),
        "--data-binary",
        &format!("@{}", tmp.path().display()),
        &format!("{base}/v2/{repo}/manifests/{tag}"),
    ]);
    sha(body)
}

#[test]
fn multi_platform_index_chooses_the_platform() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "multi:amd");
    ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");
    let base = reg.url.clone();
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
    let (_, amd_manifest) = curl(&["-H", accept, &format!("{base}/v2/multi/manifests/amd")]);
    let m: serde_json::Value = serde_json::from_slice(&amd_manifest).unwrap();
    let (_, config) = curl(&[&format!(
        "{base}/v2/multi/blobs/{}",
        m["config"]["digest"].as_str().unwrap()
    )]);
    // The same layer under an arm64 config.
    let mut c: serde_json::Value = serde_json::from_slice(&config).unwrap();
    c["architecture"] = "arm64".into();
    c["variant"] = "v8".into();
    let arm_config = serde_json::to_vec(&c).unwrap();
    let arm_id = put_blob(&base, "multi", &arm_config);
    let mut arm = m.clone();
    arm["config"]["digest"] = arm_id.clone().into();
    arm["config"]["size"] = arm_config.len().into();
    let arm_manifest = serde_json::to_vec(&arm).unwrap();
    let mt = "application/vnd.docker.distribution.manifest.v2+json";
    let arm_digest = put_manifest(&base, "multi", "arm", mt, &arm_manifest);
    let amd_digest = sha(&amd_manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": amd_digest, "size": amd_manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": mt, "digest": arm_digest, "size": arm_manifest.len(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    });
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = put_manifest(
        &base,
        "multi",
        "both",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let both = format!("{}/multi:both", reg.host);
    let amd_id = image_id(&a, &reference);
    let host_is_arm = std::env::consts::ARCH == "aarch64";

    let b = Root::new(EXE);
    let out = ok(&sk(&b, cfg.path(), &["pull", &both], None), "pull index");
    assert!(out.contains(&format!("Digest: {index_digest}\n")), "{out}");
    assert_eq!(
        image_id(&b, &both),
        if host_is_arm {
            arm_id.clone()
        } else {
            amd_id.clone()
        }
    );
    let other = if host_is_arm {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let c = Root::new(EXE);
    ok(
        &sk(&c, cfg.path(), &["pull", "--platform", other, &both], None),
        "pull other platform",
    );
    assert_eq!(
        image_id(&c, &both),
        if host_is_arm { amd_id } else { arm_id }
    );
    let o = sk(
        &c,
        cfg.path(),
        &["pull", "--platform", "linux/s390x", &both],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "skiff: Error response from daemon: no matching manifest for linux/s390x in the manifest list entries (it has: linux/amd64, linux/arm64/v8)"
    );
}

/// A fake registry serving one image whose layer is wrong: `mode` "wrong" sends other
/// bytes, "short" promises more bytes than it sends and hangs up mid-blob.
fn fake_registry(mode: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let layer = b"not the layer the digest names".to_vec();
    let claimed = sha(b"the real layer bytes");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "1".repeat(64))]},
    }))
    .unwrap();
    let config_digest = sha(&config);
    let layer_desc = if mode == "foreign" {
        serde_json::json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": claimed, "size": 4096, "urls": ["https://example.invalid/layer"]})
    } else {
        serde_json::json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": claimed, "size": 4096})
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [layer_desc],
    }))
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", l.local_addr().unwrap().port());
    let t = std::thread::spawn(move || {
        // Each connection in its own thread: the client may open several.
        for s in l.incoming().take(16) {
            let Ok(s) = s else { break };
            let (layer, manifest, config, config_digest) = (
                layer.clone(),
                manifest.clone(),
                config.clone(),
                config_digest.clone(),
            );
            std::thread::spawn(move || {
                serve_fake(s, mode, &layer, &manifest, &config, &config_digest)
            });
        }
    });
    (host, t)
}

fn serve_fake(
    mut s: std::net::TcpStream,
    mode: &str,
    layer: &[u8],
    manifest: &[u8],
    config: &[u8],
    config_digest: &str,
) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let (ct, body): (&str, &[u8]) = if path == "/v2/" {
            ("application/json", b"{}")
        } else if path.contains("/manifests/") {
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                manifest,
            )
        } else if path.ends_with(config_digest) {
            ("application/octet-stream", config)
        } else if mode == "short" {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n");
            let _ = s.write_all(layer);
            let _ = s.flush();
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        } else {
            ("application/octet-stream", layer)
        };
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(body);
        let _ = s.flush();
    }
}

fn store_files(r: &Root) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["images/blobs/sha256", "images/layers", "images/tmp"] {
        if let Ok(d) = std::fs::read_dir(r.dir.join(sub)) {
            out.extend(
                d.flatten()
                    .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn a_bad_or_cut_blob_fails_and_leaves_nothing() {
    let cfg = tempfile::tempdir().unwrap();
    for mode in ["wrong", "short", "foreign"] {
        let (host, _t) = fake_registry(mode);
        let r = Root::new(EXE);
        r.ok(&["images"]);
        let before = store_files(&r);
        let o = sk(&r, cfg.path(), &["pull", &format!("{host}/bad:1")], None);
        assert_eq!(o.status.code(), Some(1), "{mode}: {}", stdout(&o));
        let e = stderr(&o);
        if mode == "wrong" {
            assert!(e.contains("digest mismatch"), "{mode}: {e}");
        }
        if mode == "foreign" {
            assert!(
                e.contains("foreign layer") && e.contains("example.invalid"),
                "{e}"
            );
        }
        assert_eq!(e.lines().count(), 1, "{mode}: {e}");
        assert_eq!(store_files(&r), before, "{mode}: the store changed");
        assert_eq!(r.ok(&["images", "-q"]), "", "{mode}");
    }
}

#[test]
fn chunked_push_default_tag_and_run_pulls() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "chunked");
    // 64 KiB per request: the ~1 MB layer goes up in chunks.
    let o = a
        .cmd(&["push", &reference])
        .env("DOCKER_CONFIG", cfg.path())
        .env("SKIFF_PUSH_CHUNK_SIZE", "65536")
        .output()
        .unwrap();
    let out = ok(&o, "chunked push");
    assert!(
        out.contains(": Pushed") && out.contains("latest: digest: sha256:"),
        "{out}"
    );

    let b = Root::new(EXE);
    let out = ok(&sk(&b, cfg.path(), &["pull", &reference], None), "pull");
    assert!(
        out.starts_with("Using default tag: latest\nlatest: Pulling from chunked\n"),
        "{out}"
    );
    assert_eq!(image_id(&b, &reference), image_id(&a, &reference));

    // run and create: --pull never fails, the default (missing) pulls, always re-checks.
    let c = Root::new(EXE);
    let o = sk(
        &c,
        cfg.path(),
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            &reference,
            "true",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
    let o = sk(
        &c,
        cfg.path(),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &reference,
            "echo",
            "fetched",
        ],
        None,
    );
    let out = ok(&o, "run (pulls a missing image by default)");
    assert_eq!(out, "fetched\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "Unable to find image '{}:latest' locally",
            reference
        )),
        "{err}"
    );
    assert!(err.contains("Status: Downloaded newer image for"), "{err}");
    let o = sk(
        &c,
        cfg.path(),
        &[
            "create",
            "--pull",
            "always",
            "--network",
            "none",
            &reference,
            "true",
        ],
        None,
    );
    let id = ok(&o, "create --pull always");
    assert_eq!(id.trim().len(), 64, "{id}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Status: Image is up to date for"));
}

#[test]
fn killing_the_registry_mid_pull_leaves_nothing_and_a_later_pull_works() {
    let mut reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    // One 48 MiB layer of random bytes (gzip cannot shrink it): a pull takes long
    // enough to be cut.
    let a = Root::new(EXE);
    let tar = a.dir.join("big.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut data = vec![0u8; 48 << 20];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut data)
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, "big", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let reference = format!("{}/big:1", reg.host);
    a.ok(&["import", tar.to_str().unwrap(), &reference]);
    ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");

    let b = Root::new(EXE);
    b.ok(&["images"]);
    let before = store_files(&b);
    let child = b
        .cmd(&["pull", &reference])
        .env("DOCKER_CONFIG", cfg.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer is streaming into the store's scratch space, then cut.
    let tmp = b.dir.join("images/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let streaming = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with("pull-")
                    && e.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false)
            });
        if streaming {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never started streaming"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    reg.kill();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains(&reg.host), "{e}");
    assert_eq!(
        store_files(&b),
        before,
        "the cut pull left something in the store"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");

    reg.restart();
    ok(
        &sk(&b, cfg.path(), &["pull", &reference], None),
        "pull after the restart",
    );
    assert_eq!(image_id(&b, &reference), image_id(&a, &reference));
    no_leftovers(&b);
}

#[test]
fn build_pulls_its_base_image() {
    let reg = Registry::plain();
    let cfg = tempfile::tempdir().unwrap();
    let (a, reference) = seeded(&reg, "base:1");
    ok(&sk(&a, cfg.path(), &["push", &reference], None), "push");
    let b = Root::new(EXE);
    let ctx = b.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {reference} AS base\nENV STAGE=one\nFROM base\nLABEL built=yes\n"),
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    let out = ok(
        &sk(&b, cfg.path(), &["build", "-t", "child:1", c], None),
        "build",
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {reference}")),
        "{out}"
    );
    assert_eq!(image_id(&b, &reference), image_id(&a, &reference));
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Config.Labels.built}}", "child:1"])
            .trim(),
        "yes"
    );
    // Present: not pulled again, unless --pull.
    let out = ok(
        &sk(&b, cfg.path(), &["build", "-t", "child:2", c], None),
        "build again",
    );
    assert!(!out.contains("Pulling from"), "{out}");
    let out = ok(
        &sk(
            &b,
            cfg.path(),
            &["build", "--pull", "-t", "child:3", c],
            None,
        ),
        "build --pull",
    );
    assert!(
        out.contains(&format!("Status: Image is up to date for {reference}")),
        "{out}"
    );
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn registries_yaml_mirrors_fall_back_rewrite_and_authenticate() {
    // The mirror that answers asks for a password, which registries.yaml gives it.
    let reg = Registry::basic("alice", "s3cret-pw");
    let cfg = tempfile::tempdir().unwrap();
    let dead = dead_port();
    let conf = tempfile::tempdir().unwrap();
    let yaml = conf.path().join("registries.yaml");
    std::fs::write(
        &yaml,
        format!(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://127.0.0.1:{dead}\"\n      - \"http://{host}\"\n    rewrite:\n      \"^library/rw-(.*)$\": \"hub/$1\"\nconfigs:\n  \"{host}\":\n    auth:\n      username: alice\n      password: s3cret-pw\n",
            host = reg.host
        ),
    )
    .unwrap();
    let flags = |args: &[&str]| -> Vec<String> {
        ["--private-registry", yaml.to_str().unwrap()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |r: &Root, args: &[&str]| {
        let a = flags(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        sk(r, cfg.path(), &a, None)
    };
    // Seed the mirror: pushes use registries.yaml's credentials for its host too.
    let a = Root::with_busybox(EXE);
    for name in ["library/mirrored:v1", "hub/rewritten:v1"] {
        let reference = format!("{}/{name}", reg.host);
        a.ok(&["tag", "busybox", &reference]);
        ok(&run(&a, &["push", &reference]), "push to the mirror");
    }
    let id = image_id(&a, "busybox");

    // docker.io names come from the mirror: the dead endpoint first, then the live one;
    // the upstream is never tried (SKIFF_DISABLE_DEFAULT_REGISTRY_ENDPOINT in test roots).
    let b = Root::new(EXE);
    let out = ok(
        &run(&b, &["pull", "mirrored:v1"]),
        "pull through the mirror",
    );
    assert!(
        out.ends_with(
            "Status: Downloaded newer image for mirrored:v1\ndocker.io/library/mirrored:v1\n"
        ),
        "{out}"
    );
    assert_eq!(image_id(&b, "mirrored:v1"), id);
    // A rewrite maps library/rw-rewritten to hub/rewritten on the mirror.
    ok(
        &run(&b, &["pull", "rw-rewritten:v1"]),
        "pull with a rewrite",
    );
    assert_eq!(image_id(&b, "docker.io/library/rw-rewritten:v1"), id);
    // `run` pulls through the mirror as well.
    let c = Root::new(EXE);
    let o = run(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "mirrored:v1",
            "echo",
            "hi",
        ],
    );
    assert_eq!(ok(&o, "run through the mirror"), "hi\n");

    // Missing everywhere: the last endpoint's answer, naming the reference.
    let o = run(&b, &["pull", "absent:v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("manifest for absent:v1 not found: manifest unknown"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));

    // A registry whose only mirror is dead falls back to the registry itself (the
    // default endpoint; the test roots disable it only beside docker.io's mirror).
    std::fs::write(
        &yaml,
        format!(
            "mirrors:\n  \"{host}\":\n    endpoint: [\"http://127.0.0.1:{dead}\"]\nconfigs:\n  \"{host}\":\n    auth: {{username: alice, password: s3cret-pw}}\n",
            host = reg.host
        ),
    )
    .unwrap();
    let d = Root::new(EXE);
    let o = d
        .cmd(&[
            "--private-registry",
            yaml.to_str().unwrap(),
            "pull",
            &format!("{}/library/mirrored:v1", reg.host),
        ])
        .env("DOCKER_CONFIG", cfg.path())
        .env_remove("SKIFF_DISABLE_DEFAULT_REGISTRY_ENDPOINT")
        .output()
        .unwrap();
    ok(&no_secrets(o), "fallback to the registry itself");
    // With the default endpoint disabled, the dead mirror is all there is.
    let o = run(&d, &["pull", &format!("{}/hub/rewritten:v1", reg.host)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("127.0.0.1:{dead}")),
        "{}",
        stderr(&o)
    );

    // Without the credentials the mirror refuses: the error says so.
    std::fs::write(
        &yaml,
        format!(
            "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n",
            reg.host
        ),
    )
    .unwrap();
    let o = run(&c, &["pull", "mirrored:v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no basic auth credentials"),
        "{}",
        stderr(&o)
    );

    // Bad files are refused, naming the file and the mistake.
    std::fs::write(&yaml, "mirrors:\n  docker.io:\n    endpoints: [x]\n").unwrap();
    let o = run(&c, &["pull", "mirrored:v1"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("registries.yaml") && e.contains("unknown field `endpoints`"),
        "{e}"
    );
    let o = sk(
        &c,
        cfg.path(),
        &[
            "--private-registry",
            "/nonexistent/registries.yaml",
            "pull",
            "x",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/registries.yaml"),
        "{}",
        stderr(&o)
    );
}
