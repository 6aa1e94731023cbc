//! Bounds that keep one client from exhausting the server, as kube-apiserver has them:
//! JSON patch operations and copies (CVE-2019-1002100), deeply nested and alias-heavy
//! patches, request bodies over 3 MiB on HTTP/1.1 and HTTP/2, and objects larger than
//! one store write takes. One test per file: the memory bound is read from this
//! process, where the server runs.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fixture;
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "limits-token";

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// One request with curl, the body from a file; `http` is `--http1.1` or `--http2`.
async fn curl(
    fx: &Fixture,
    http: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let ca = fx.file(
        "ca.crt",
        &fx.server
            .as_ref()
            .map(|s| s.ca_cert_pem.clone())
            .unwrap_or_default(),
    );
    let file = fx.work_dir.path().join("body");
    std::fs::write(&file, body).expect("write body");
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", http, "-X", method, "--cacert"])
        .arg(&ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg("-H")
        .arg(format!("Content-Type: {content_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg("-w")
        .arg("\n%{http_code} %{http_version}")
        .arg(format!("https://127.0.0.1:{}{path}", fx.port()))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("curl timed out")
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {err}\n{text}");
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut t = tail.split_whitespace();
    let code = t.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let version = t.next().unwrap_or("");
    let want = if http == "--http2" { "2" } else { "1.1" };
    assert_eq!(version, want, "curl spoke HTTP/{version}");
    (code, body.to_string())
}

fn status(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_in_bounded_memory() {
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, format!("{TOKEN},limiter,1003,\"system:masters\"\n"))
            .expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb"}});
    let (code, body) = curl(
        &fx,
        "--http2",
        "POST",
        cms,
        "application/json",
        &serde_json::to_vec(&cm).unwrap(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let before = rss_bytes();

    // The JSON-patch bomb: a 1 KB annotation map, then 40 copies of it into itself.
    let mut ops = vec![
        json!({"op": "add", "path": "/metadata/annotations", "value": {"a": "x".repeat(1024)}}),
    ];
    for i in 0..40 {
        ops.push(json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations/c{i}")}));
    }
    let (code, body) = curl(
        &fx,
        "--http2",
        "PATCH",
        &format!("{cms}/bomb"),
        "application/json-patch+json",
        &serde_json::to_vec(&ops).unwrap(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let s = status(&body);
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Unable to complete copy, the accumulated size increase of copy is"),
        "{body}"
    );

    // More than 10,000 operations.
    let many: Vec<Value> = (0..20_000)
        .map(|_| json!({"op": "test", "path": "/metadata/name", "value": "bomb"}))
        .collect();
    let (code, body) = curl(
        &fx,
        "--http1.1",
        "PATCH",
        &format!("{cms}/bomb"),
        "application/json-patch+json",
        &serde_json::to_vec(&many).unwrap(),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(
        status(&body)["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 20000",
        "{body}"
    );

    // Deeply nested merge and strategic-merge patches: a 400, not a stack overflow.
    let deep = format!(
        "{{\"data\":{}{}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    for ct in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        let (code, body) = curl(
            &fx,
            "--http2",
            "PATCH",
            &format!("{cms}/bomb"),
            ct,
            deep.as_bytes(),
        )
        .await;
        assert_eq!(code, 400, "{ct}: {body}");
    }
    // Server-side apply of a YAML alias bomb ("billion laughs").
    let mut laughs = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\na0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(",")));
    }
    let (code, body) = curl(
        &fx,
        "--http2",
        "PATCH",
        &format!("{cms}/bomb?fieldManager=laughs"),
        "application/apply-patch+yaml",
        laughs.as_bytes(),
    )
    .await;
    assert!(code == 400 || code == 422, "{code}: {body}");

    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 100 * 1024 * 1024,
        "the server grew by {} MiB",
        grown / (1024 * 1024)
    );
    // Nothing of the refused patches was written.
    let (code, body) = curl(
        &fx,
        "--http1.1",
        "PATCH",
        &format!("{cms}/bomb"),
        "application/merge-patch+json",
        b"{}",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        status(&body)["metadata"].get("annotations").is_none(),
        "{body}"
    );

    // Bodies over 3 MiB: 413 in kube-apiserver's words, on HTTP/1.1 and HTTP/2 alike.
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "y".repeat(3 * 1024 * 1024 + 10)}});
    let big = serde_json::to_vec(&big).unwrap();
    for http in ["--http1.1", "--http2"] {
        let (code, body) = curl(&fx, http, "POST", cms, "application/json", &big).await;
        assert_eq!(code, 413, "{http}: {body}");
        let s = status(&body);
        assert_eq!(s["reason"], "RequestEntityTooLarge", "{body}");
        assert_eq!(
            s["message"], "Request entity too large: limit is 3145728",
            "{body}"
        );
    }

    // An object larger than one store write takes (etcd's 1.5 MiB): 413 naming the
    // size and the limit, on both backends; one just under the limit is stored.
    let templates = "/api/v1/namespaces/default/podtemplates";
    let template = |name: &str, n: usize| {
        serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox",
                "env": [{"name": "X", "value": "v".repeat(n)}]}]}}
        }))
        .unwrap()
    };
    let n = 1_600_000;
    let (code, body) = curl(
        &fx,
        "--http2",
        "POST",
        templates,
        "application/json",
        &template("huge", n),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    let msg = status(&body)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rest = msg
        .strip_prefix("Request entity too large: podtemplates \"huge\" is ")
        .unwrap_or_else(|| panic!("{msg}"));
    let (stored, limit) = match rest.split_whitespace().collect::<Vec<_>>()[..] {
        [size, "bytes", "when", "stored,", "over", "the", "store's", "limit", "of", max, "bytes", "for", "one", "write"] => {
            (
                size.parse::<usize>().unwrap(),
                max.parse::<usize>().unwrap(),
            )
        }
        _ => panic!("{msg}"),
    };
    assert!(limit <= 1536 * 1024, "{msg}");
    // Just under the limit is stored, on etcd too.
    let n_edge = n - (stored - limit) - 64;
    let (code, body) = curl(
        &fx,
        "--http2",
        "POST",
        templates,
        "application/json",
        &template("edge", n_edge),
    )
    .await;
    assert_eq!(code, 201, "{}", &body[..body.len().min(400)]);
    fx.stop().await;
}
