//! Authorization, impersonation, tokens, certificate requests, the Node authorizer and
//! pod admission, driven by the real kubectl.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const K: &str = KUBECTL_NEW;

async fn with_tokens(tokens: &'static str) -> Fixture {
    Fixture::start_with(move |cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(&file, tokens).expect("write token file");
        cfg.token_auth_file = Some(file);
    })
    .await
}

async fn ok_with(fx: &Fixture, kc: &Path, args: &[&str]) -> String {
    let (ok, out, err) = fx.run_with(kc, K, args).await;
    assert!(ok, "{args:?} failed:\nstdout: {out}\nstderr: {err}");
    out
}

async fn fails_with(fx: &Fixture, kc: &Path, args: &[&str]) -> String {
    let (ok, out, err) = fx.run_with(kc, K, args).await;
    assert!(!ok, "{args:?} unexpectedly succeeded: {out}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_impersonation_and_access_reviews() {
    if !have_kubectl() {
        return;
    }
    let mut fx = with_tokens("alice-token,alice,1001,\"dev\"\nbob-token,bob,1002\n").await;
    let alice = fx.token_kubeconfig("alice", "alice-token");

    // No binding: 403 in the real server's words.
    let err = fails_with(&fx, &alice, &["get", "pods"]).await;
    assert!(
        err.contains(r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{err}"
    );
    let err = fails_with(&fx, &alice, &["get", "deploy", "web"]).await;
    assert!(err.contains(r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "default""#), "{err}");
    let out = fails_with(&fx, &alice, &["auth", "can-i", "list", "pods"]).await;
    assert!(out.is_empty() || !out.contains("yes"), "{out}");

    // A RoleBinding to `view` grants reading in that namespace only.
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "alice-view",
            "--clusterrole=view",
            "--user=alice",
            "-n",
            "default",
        ],
    )
    .await;
    let out = ok_with(&fx, &alice, &["get", "pods"]).await;
    assert!(!out.contains("Forbidden"), "{out}");
    let err = fails_with(&fx, &alice, &["get", "pods", "-n", "kube-system"]).await;
    assert!(err.contains(r#"in the namespace "kube-system""#), "{err}");
    let err = fails_with(&fx, &alice, &["create", "configmap", "x"]).await;
    assert!(
        err.contains(r#"User "alice" cannot create resource "configmaps""#),
        "{err}"
    );
    let err = fails_with(&fx, &alice, &["get", "secrets"]).await;
    assert!(err.contains("forbidden"), "{err}");

    // can-i and its rules list.
    let (_, out, _) = fx
        .run_with(&alice, K, &["auth", "can-i", "list", "pods"])
        .await;
    assert_eq!(out.trim(), "yes");
    let (ok, out, _) = fx
        .run_with(&alice, K, &["auth", "can-i", "create", "pods"])
        .await;
    assert!(!ok && out.trim() == "no", "{out}");
    let out = ok_with(&fx, &alice, &["auth", "can-i", "--list"]).await;
    assert!(
        out.contains("selfsubjectaccessreviews.authorization.k8s.io")
            && out.lines().any(|l| l.starts_with("pods ")),
        "{out}"
    );
    let out = fx
        .ok(K, &["auth", "can-i", "list", "pods", "--as", "alice"])
        .await;
    assert_eq!(out.trim(), "yes");
    let (ok, out, _) = fx
        .run(K, &["auth", "can-i", "delete", "nodes", "--as", "alice"])
        .await;
    assert!(!ok && out.trim() == "no", "{out}");

    // Impersonation: the admin may; alice may not until RBAC lets her.
    let err = fx.fails(K, &["get", "pods", "--as", "bob"]).await;
    assert!(
        err.contains(r#"User "bob" cannot list resource "pods""#),
        "{err}"
    );
    let err = fails_with(&fx, &alice, &["get", "pods", "--as", "bob"]).await;
    assert!(
        err.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );
    fx.ok(
        K,
        &[
            "create",
            "clusterrole",
            "impersonator",
            "--verb=impersonate",
            "--resource=users,groups",
        ],
    )
    .await;
    fx.ok(
        K,
        &[
            "create",
            "clusterrolebinding",
            "alice-impersonates",
            "--clusterrole=impersonator",
            "--user=alice",
        ],
    )
    .await;
    let out = ok_with(
        &fx,
        &alice,
        &[
            "auth",
            "whoami",
            "--as",
            "bob",
            "--as-group",
            "devs",
            "-o",
            "json",
        ],
    )
    .await;
    let info = &json(&out)["status"]["userInfo"];
    assert_eq!(info["username"], "bob");
    let groups = info["groups"].to_string();
    assert!(
        groups.contains("devs") && groups.contains("system:authenticated"),
        "{out}"
    );

    // kubectl 1.27 asks authentication.k8s.io/v1beta1.
    let out = fx.ok(KUBECTL_OLD, &["auth", "whoami", "--as", "bob"]).await;
    assert!(out.contains("bob"), "{out}");
    let out = fx
        .ok(
            KUBECTL_OLD,
            &["auth", "can-i", "list", "pods", "--as", "alice"],
        )
        .await;
    assert_eq!(out.trim(), "yes");

    // SubjectAccessReview by the admin about alice.
    let sar = fx.file("sar.json", r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"alice","resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}}}"#);
    let out = fx
        .ok(
            K,
            &[
                "create",
                "-f",
                sar.to_str().unwrap_or_default(),
                "-o",
                "json",
            ],
        )
        .await;
    let status = &json(&out)["status"];
    assert_eq!(status["allowed"], true, "{out}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or("")
            .contains("alice-view"),
        "{out}"
    );

    // The default policy is there, labelled, and reconciled without losing changes.
    let out = fx
        .ok(
            K,
            &[
                "get",
                "clusterrole",
                "-l",
                "kubernetes.io/bootstrapping=rbac-defaults",
                "-o",
                "name",
            ],
        )
        .await;
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node-bootstrapper",
    ] {
        assert!(
            out.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{role}: {out}"
        );
    }
    fx.ok(K, &["label", "clusterrole", "view", "mine=yes"])
        .await;
    // view's rules are the aggregation's: a direct edit is undone; other defaults keep
    // what an administrator adds.
    let add = r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get"]}}]"#;
    fx.ok(
        K,
        &["patch", "clusterrole", "view", "--type=json", "-p", add],
    )
    .await;
    let view = fx
        .ok(K, &["get", "clusterrole", "view", "-o", "json"])
        .await;
    assert!(!view.contains("widgets"), "{view}");
    fx.ok(
        K,
        &[
            "patch",
            "clusterrole",
            "system:basic-user",
            "--type=json",
            "-p",
            add,
        ],
    )
    .await;
    let before = json(
        &fx.ok(
            K,
            &["get", "clusterrole", "system:basic-user", "-o", "json"],
        )
        .await,
    );
    assert!(before["rules"].to_string().contains("widgets"));
    fx.stop().await;
    let mut cfg = config(fx.data_dir.path());
    cfg.write_kubeconfig = Some(fx.kubeconfig.clone());
    fx.server = Some(skiff_apiserver::start(cfg).await.expect("restart"));
    let out = fx
        .ok(K, &["get", "clusterrole", "view", "--show-labels"])
        .await;
    assert!(out.contains("mine=yes"), "{out}");
    let after = json(
        &fx.ok(
            K,
            &["get", "clusterrole", "system:basic-user", "-o", "json"],
        )
        .await,
    );
    assert_eq!(before["rules"], after["rules"]);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let token = fx.ok(K, &["create", "token", "default"]).await;
    let sa = fx.token_kubeconfig("sa", token.trim());
    let out = ok_with(&fx, &sa, &["auth", "whoami", "-o", "json"]).await;
    let info = &json(&out)["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    assert!(
        info["groups"]
            .to_string()
            .contains("system:serviceaccounts:default"),
        "{out}"
    );
    let err = fails_with(&fx, &sa, &["get", "pods"]).await;
    assert!(
        err.contains(r#"User "system:serviceaccount:default:default" cannot list resource "pods""#),
        "{err}"
    );
    fx.ok(
        K,
        &[
            "create",
            "rolebinding",
            "sa-view",
            "--clusterrole=view",
            "--serviceaccount=default:default",
        ],
    )
    .await;
    ok_with(&fx, &sa, &["get", "pods"]).await;

    // TokenReview says who the token is.
    let review = fx.file("tr.json", &format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{}"}}}}"#, token.trim()));
    let out = fx
        .ok(
            K,
            &[
                "create",
                "-f",
                review.to_str().unwrap_or_default(),
                "-o",
                "json",
            ],
        )
        .await;
    let status = &json(&out)["status"];
    assert_eq!(status["authenticated"], true, "{out}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:default"
    );

    // A token of a deleted ServiceAccount, or bound to a deleted pod, is refused.
    fx.ok(K, &["create", "sa", "tmp"]).await;
    let tmp = fx
        .ok(K, &["create", "token", "tmp", "--duration", "20m"])
        .await;
    let tmp_kc = fx.token_kubeconfig("tmp", tmp.trim());
    ok_with(&fx, &tmp_kc, &["auth", "whoami"]).await;
    fx.ok(K, &["delete", "sa", "tmp"]).await;
    let err = fails_with(&fx, &tmp_kc, &["auth", "whoami"]).await;
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
    fx.ok(K, &["run", "p", "--image=busybox:1.36"]).await;
    let bound = fx
        .ok(
            K,
            &[
                "create",
                "token",
                "default",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                "p",
            ],
        )
        .await;
    let bound_kc = fx.token_kubeconfig("bound", bound.trim());
    let out = ok_with(&fx, &bound_kc, &["auth", "whoami", "-o", "json"]).await;
    assert!(
        out.contains("authentication.kubernetes.io/pod-name"),
        "{out}"
    );
    fx.ok(K, &["delete", "pod", "p", "--wait=false"]).await;
    let err = fails_with(&fx, &bound_kc, &["auth", "whoami"]).await;
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
    let err = fx.fails(K, &["create", "token", "nope"]).await;
    assert!(err.contains(r#"serviceaccounts "nope" not found"#), "{err}");
    fx.stop().await;
}

/// A key and a PEM certificate request for `cn` in `orgs`.
fn certificate_request(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    for o in orgs {
        dn.push(rcgen::DnType::OrganizationName, *o);
    }
    dn.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).expect("csr");
    (key.serialize_pem(), csr.pem().expect("pem"))
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn csr_manifest(name: &str, request_pem: &str, signer: &str) -> String {
    format!(
        r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{{"name":"{name}"}},"spec":{{"request":"{}","signerName":"{signer}","usages":["digital signature","client auth"]}}}}"#,
        b64(request_pem)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_tokens_csrs_and_the_node_authorizer() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let secret = fx.file("bt.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-abcdef\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: abcdef\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  auth-extra-groups: system:bootstrappers:worker\n  expiration: \"2099-01-01T00:00:00Z\"\n");
    fx.ok(K, &["apply", "-f", secret.to_str().unwrap_or_default()])
        .await;
    let expired = fx.file("bt2.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bootstrap-token-zzzzzz\n  namespace: kube-system\ntype: bootstrap.kubernetes.io/token\nstringData:\n  token-id: zzzzzz\n  token-secret: 0123456789abcdef\n  usage-bootstrap-authentication: \"true\"\n  expiration: \"2001-01-01T00:00:00Z\"\n");
    fx.ok(K, &["apply", "-f", expired.to_str().unwrap_or_default()])
        .await;
    let boot = fx.token_kubeconfig("boot", "abcdef.0123456789abcdef");
    let out = ok_with(&fx, &boot, &["auth", "whoami", "-o", "json"]).await;
    let info = &json(&out)["status"]["userInfo"];
    assert_eq!(info["username"], "system:bootstrap:abcdef");
    assert!(
        info["groups"]
            .to_string()
            .contains("system:bootstrappers:worker"),
        "{out}"
    );
    fails_with(&fx, &boot, &["get", "pods"]).await;
    let old = fx.token_kubeconfig("expired", "zzzzzz.0123456789abcdef");
    let err = fails_with(&fx, &old, &["auth", "whoami"]).await;
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );

    // The bootstrapper asks for a kubelet client certificate: approved and signed.
    let (node_key, request) = certificate_request("system:node:n1", &["system:nodes"]);
    let csr = fx.file(
        "csr.json",
        &csr_manifest(
            "node-csr-n1",
            &request,
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
    );
    ok_with(
        &fx,
        &boot,
        &["create", "-f", csr.to_str().unwrap_or_default()],
    )
    .await;
    let out = ok_with(&fx, &boot, &["get", "csr", "node-csr-n1"]).await;
    assert!(
        out.contains("Approved,Issued") && out.contains("system:bootstrap:abcdef"),
        "{out}"
    );
    let got = json(&ok_with(&fx, &boot, &["get", "csr", "node-csr-n1", "-o", "json"]).await);
    assert_eq!(got["status"]["conditions"][0]["reason"], "AutoApproved");
    let cert_b64 = got["status"]["certificate"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!cert_b64.is_empty(), "{got}");

    // The join token authenticates as a bootstrapper too.
    let join = fx
        .server
        .as_ref()
        .map(|s| s.token.clone())
        .unwrap_or_default();
    let join_kc = fx.token_kubeconfig("join", join.rsplit(':').next().unwrap_or_default());
    let out = ok_with(&fx, &join_kc, &["auth", "whoami", "-o", "json"]).await;
    assert!(
        out.contains("system:bootstrappers:skiff:default-node-token"),
        "{out}"
    );

    // A client signer request needs a manual approval.
    let (_, jane) = certificate_request("jane", &["devs"]);
    let jcsr = fx.file(
        "jane.json",
        &csr_manifest("jane", &jane, "kubernetes.io/kube-apiserver-client"),
    );
    fx.ok(K, &["create", "-f", jcsr.to_str().unwrap_or_default()])
        .await;
    let out = fx.ok(K, &["get", "csr", "jane"]).await;
    assert!(out.contains("Pending"), "{out}");
    fx.ok(K, &["certificate", "approve", "jane"]).await;
    let out = fx.ok(K, &["get", "csr", "jane"]).await;
    assert!(out.contains("Approved,Issued"), "{out}");

    // The node's own credentials: the Node authorizer.
    let node = fx.kubeconfig_as(
        "node",
        &[
            ("client-certificate-data", &cert_b64),
            ("client-key-data", &b64(&node_key)),
        ],
    );
    let out = ok_with(&fx, &node, &["auth", "whoami"]).await;
    assert!(
        out.contains("system:node:n1") && out.contains("system:nodes"),
        "{out}"
    );
    // Its serving certificate: a kubelet-serving request by the node itself is approved
    // and signed for server auth; the same request from someone else waits.
    let serving = |name: &str, cn: &str| {
        let (_, req) = certificate_request(cn, &["system:nodes"]);
        csr_manifest(name, &req, "kubernetes.io/kubelet-serving")
            .replace(r#""client auth""#, r#""key encipherment","server auth""#)
    };
    let f = fx.file("serving.json", &serving("serving-n1", "system:node:n1"));
    ok_with(
        &fx,
        &node,
        &["create", "-f", f.to_str().unwrap_or_default()],
    )
    .await;
    let got = json(&ok_with(&fx, &node, &["get", "csr", "serving-n1", "-o", "json"]).await);
    assert_eq!(
        got["status"]["conditions"][0]["reason"], "AutoApproved",
        "{got}"
    );
    let pem = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(got["status"]["certificate"].as_str().unwrap_or(""))
            .unwrap_or_default();
        String::from_utf8(raw).unwrap_or_default()
    };
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("cert");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let eku = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|e| e.value.clone());
    assert!(eku.is_some_and(|e| e.server_auth && !e.client_auth));
    let f = fx.file("serving2.json", &serving("serving-n2", "system:node:n2"));
    ok_with(
        &fx,
        &node,
        &["create", "-f", f.to_str().unwrap_or_default()],
    )
    .await;
    let out = fx.ok(K, &["get", "csr", "serving-n2"]).await;
    assert!(out.contains("Pending"), "{out}");
    let n1 = fx.file(
        "n1.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    let n2 = fx.file(
        "n2.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n",
    );
    ok_with(
        &fx,
        &node,
        &["create", "-f", n1.to_str().unwrap_or_default()],
    )
    .await;
    let err = fails_with(
        &fx,
        &node,
        &["create", "-f", n2.to_str().unwrap_or_default()],
    )
    .await;
    assert!(
        err.contains(r#"node "n1" is not allowed to modify node "n2""#),
        "{err}"
    );
    fx.ok(K, &["create", "-f", n2.to_str().unwrap_or_default()])
        .await;
    ok_with(&fx, &node, &["label", "node", "n1", "mine=yes"]).await;
    let err = fails_with(&fx, &node, &["label", "node", "n2", "mine=yes"]).await;
    assert!(
        err.contains(
            r#"nodes "n2" is forbidden: User "system:node:n1" cannot patch resource "nodes""#
        ),
        "{err}"
    );
    ok_with(&fx, &node, &["get", "nodes"]).await;
    fails_with(&fx, &node, &["get", "secrets"]).await;
    fails_with(&fx, &node, &["create", "configmap", "x"]).await;
    // Secrets of pods bound to the node, and nothing else.
    fx.ok(
        K,
        &["create", "secret", "generic", "s1", "--from-literal=a=b"],
    )
    .await;
    fx.ok(
        K,
        &["create", "secret", "generic", "s2", "--from-literal=a=b"],
    )
    .await;
    let pod = fx.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: onn1\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox:1.36\n    envFrom:\n    - secretRef: {name: s1}\n");
    fx.ok(K, &["apply", "-f", pod.to_str().unwrap_or_default()])
        .await;
    ok_with(&fx, &node, &["get", "secret", "s1"]).await;
    let err = fails_with(&fx, &node, &["get", "secret", "s2"]).await;
    assert!(
        err.contains("no relationship found between node 'n1' and this object"),
        "{err}"
    );
    ok_with(&fx, &node, &["get", "pods", "-A"]).await;
    let lease = fx.file("lease.yaml", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: n1\n  namespace: kube-node-lease\nspec:\n  holderIdentity: n1\n");
    ok_with(
        &fx,
        &node,
        &["create", "-f", lease.to_str().unwrap_or_default()],
    )
    .await;
    let out = ok_with(
        &fx,
        &node,
        &[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "onn1",
        ],
    )
    .await;
    assert!(out.trim().split('.').count() == 3, "{out}");
    // Status of its own pods only; its own Lease only.
    let status = r#"{"status":{"phase":"Running"}}"#;
    ok_with(
        &fx,
        &node,
        &[
            "patch",
            "pod",
            "onn1",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    )
    .await;
    fx.ok(K, &["run", "elsewhere", "--image=busybox:1.36"])
        .await;
    let elsewhere = fx.ok(K, &["get", "pod", "elsewhere", "-o", "json"]).await;
    let body = fx.file("elsewhere.json", &elsewhere);
    let err = fails_with(
        &fx,
        &node,
        &[
            "replace",
            "--raw",
            "/api/v1/namespaces/default/pods/elsewhere/status",
            "-f",
            body.to_str().unwrap_or_default(),
        ],
    )
    .await;
    assert!(
        err.contains(r#"cannot update resource "pods/status""#)
            && err.contains("no relationship found"),
        "{err}"
    );
    let other = fx.file("lease2.yaml", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: n2\n  namespace: kube-node-lease\n");
    fails_with(
        &fx,
        &node,
        &["create", "-f", other.to_str().unwrap_or_default()],
    )
    .await;
    let err = fails_with(&fx, &node, &["create", "token", "default"]).await;
    assert!(
        err.contains("node requested token not bound to a pod"),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_admission() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let pod = fx.file("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  initContainers:\n  - name: init\n    image: busybox:1.36\n  containers:\n  - name: c\n    image: busybox:1.36\n  - name: d\n    image: busybox:1.36\n");
    fx.ok(K, &["apply", "-f", pod.to_str().unwrap_or_default()])
        .await;
    let p = json(&fx.ok(K, &["get", "pod", "web", "-o", "json"]).await);
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let vol = p["spec"]["volumes"][0].clone();
    let vname = vol["name"].as_str().unwrap_or("").to_string();
    assert!(
        vname.starts_with("kube-api-access-") && vname.len() == "kube-api-access-".len() + 5,
        "{vol}"
    );
    assert_eq!(
        vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3607
    );
    assert_eq!(
        vol["projected"]["sources"][1]["configMap"]["name"],
        "kube-root-ca.crt"
    );
    for c in ["initContainers", "containers"] {
        for ctr in p["spec"][c].as_array().cloned().unwrap_or_default() {
            let m = &ctr["volumeMounts"][0];
            assert_eq!(
                m["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount",
                "{ctr}"
            );
            assert_eq!(m["readOnly"], true);
            assert_eq!(m["name"], vname.as_str());
        }
    }
    let tolerations = p["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable") && tolerations.contains("300"),
        "{tolerations}"
    );
    fx.ok(K, &["get", "configmap", "kube-root-ca.crt"]).await;

    // A missing ServiceAccount is refused; automount false mounts nothing.
    let err = fx
        .fails(
            K,
            &[
                "run",
                "x",
                "--image=busybox:1.36",
                "--overrides",
                r#"{"spec":{"serviceAccountName":"nope"}}"#,
            ],
        )
        .await;
    assert!(err.contains(r#"pods "x" is forbidden: error looking up service account default/nope: serviceaccount "nope" not found"#), "{err}");
    fx.ok(
        K,
        &[
            "run",
            "quiet",
            "--image=busybox:1.36",
            "--overrides",
            r#"{"spec":{"automountServiceAccountToken":false}}"#,
        ],
    )
    .await;
    let p = json(&fx.ok(K, &["get", "pod", "quiet", "-o", "json"]).await);
    assert!(
        p["spec"]["volumes"].as_array().is_none_or(|v| v.is_empty()),
        "{p}"
    );

    // New namespaces get their default ServiceAccount, so pods are admitted at once.
    fx.ok(K, &["create", "ns", "team"]).await;
    fx.ok(K, &["get", "sa", "default", "-n", "team"]).await;
    fx.ok(K, &["run", "first", "-n", "team", "--image=busybox:1.36"])
        .await;

    // LimitRange defaults and maximum.
    let lr = fx.file("lr.yaml", "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: lr\n  namespace: team\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m, memory: 128Mi}\n    max: {cpu: \"1\"}\n");
    fx.ok(K, &["apply", "-f", lr.to_str().unwrap_or_default()])
        .await;
    fx.ok(K, &["run", "limited", "-n", "team", "--image=busybox:1.36"])
        .await;
    let p = json(
        &fx.ok(K, &["get", "pod", "limited", "-n", "team", "-o", "json"])
            .await,
    );
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["cpu"], "500m", "{r}");
    assert_eq!(r["limits"]["memory"], "256Mi", "{r}");
    assert_eq!(r["requests"]["cpu"], "100m", "{r}");
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let err = fx.fails(K, &["run", "big", "-n", "team", "--image=busybox:1.36", "--overrides", r#"{"spec":{"containers":[{"name":"big","image":"busybox:1.36","resources":{"limits":{"cpu":"2"}}}]}}"#]).await;
    assert!(
        err.contains(
            r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{err}"
    );

    // ResourceQuota: refused past the hard limit; status.used kept.
    let q = fx.file("q.yaml", "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\n  namespace: team\nspec:\n  hard: {pods: \"2\", requests.cpu: \"1\"}\n");
    fx.ok(K, &["apply", "-f", q.to_str().unwrap_or_default()])
        .await;
    let quota = json(
        &fx.ok(K, &["get", "quota", "q", "-n", "team", "-o", "json"])
            .await,
    );
    assert_eq!(quota["status"]["used"]["pods"], "2", "{quota}");
    let err = fx
        .fails(K, &["run", "third", "-n", "team", "--image=busybox:1.36"])
        .await;
    assert!(err.contains(r#"pods "third" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"#), "{err}");
    fx.ok(K, &["delete", "pod", "first", "-n", "team", "--wait=false"])
        .await;
    let quota = json(
        &fx.ok(K, &["get", "quota", "q", "-n", "team", "-o", "json"])
            .await,
    );
    assert_eq!(quota["status"]["used"]["pods"], "1", "{quota}");
    fx.ok(K, &["run", "third", "-n", "team", "--image=busybox:1.36"])
        .await;
    // A pod that has finished no longer counts.
    fx.ok(
        K,
        &[
            "patch",
            "pod",
            "limited",
            "-n",
            "team",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Succeeded"}}"#,
        ],
    )
    .await;
    let quota = json(
        &fx.ok(K, &["get", "quota", "q", "-n", "team", "-o", "json"])
            .await,
    );
    assert_eq!(quota["status"]["used"]["pods"], "1", "{quota}");

    // Priority classes.
    fx.ok(
        K,
        &[
            "run",
            "crit",
            "--image=busybox:1.36",
            "--overrides",
            r#"{"spec":{"priorityClassName":"system-node-critical"}}"#,
        ],
    )
    .await;
    let p = json(&fx.ok(K, &["get", "pod", "crit", "-o", "json"]).await);
    assert_eq!(p["spec"]["priority"], 2000001000);
    let err = fx
        .fails(
            K,
            &[
                "run",
                "np",
                "--image=busybox:1.36",
                "--overrides",
                r#"{"spec":{"priorityClassName":"nope"}}"#,
            ],
        )
        .await;
    assert!(
        err.contains(r#"pods "np" is forbidden: no PriorityClass with name nope was found"#),
        "{err}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_roles_aggregate() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start().await;
    let k = KUBECTL_NEW;
    let rules_of = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["rules"].as_array().cloned().unwrap_or_default()
    };
    let get = |name: &'static str| {
        let fx = &fx;
        async move {
            serde_json::from_str::<serde_json::Value>(
                &fx.ok(k, &["get", "clusterrole", name, "-o", "json"]).await,
            )
            .unwrap_or_default()
        }
    };
    // The defaults are built by aggregation, as upstream.
    let admin = get("admin").await;
    assert_eq!(
        admin["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
            ["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    let rules = rules_of(&admin);
    let managers = fx
        .ok(
            k,
            &[
                "get",
                "clusterrole",
                "admin",
                "--show-managed-fields",
                "-o",
                "jsonpath={.metadata.managedFields[*].manager}",
            ],
        )
        .await;
    assert!(
        managers.contains("clusterrole-aggregation-controller"),
        "{managers}"
    );
    assert!(
        rules.iter().any(|r| r["resources"]
            .as_array()
            .is_some_and(|a| a.contains(&"rolebindings".into()))),
        "{admin}"
    );
    assert!(
        rules.iter().any(|r| r["resources"]
            .as_array()
            .is_some_and(|a| a.contains(&"deployments".into()))),
        "{admin}"
    );

    // A role labelled aggregate-to-view reaches view, edit and admin; deleting it removes it.
    fx.file(
        "templates.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: podtemplate-reader\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n- apiGroups: [\"\"]\n  resources: [podtemplates]\n  verbs: [get, list]\n",
    );
    fx.ok(k, &["apply", "-f", "templates.yaml"]).await;
    let has_templates = |v: &serde_json::Value| {
        rules_of(v)
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["podtemplates"]))
    };
    for name in ["view", "edit", "admin"] {
        assert!(has_templates(&get(name).await), "{name}");
    }
    fx.ok(
        k,
        &[
            "create",
            "rolebinding",
            "jane-view",
            "--clusterrole=view",
            "--user=jane",
        ],
    )
    .await;
    let out = fx
        .ok(k, &["auth", "can-i", "list", "podtemplates", "--as=jane"])
        .await;
    assert_eq!(out.trim(), "yes");
    fx.ok(k, &["delete", "clusterrole", "podtemplate-reader"])
        .await;
    for name in ["view", "edit", "admin"] {
        assert!(!has_templates(&get(name).await), "{name}");
    }
    let (_, out, _) = fx
        .run(k, &["auth", "can-i", "list", "podtemplates", "--as=jane"])
        .await;
    assert_eq!(out.trim(), "no");

    // CVE-2021-25740: an editor reads Endpoints and EndpointSlices but writes neither
    // (a Service of theirs could otherwise be pointed at another namespace's pods).
    fx.ok(
        k,
        &[
            "create",
            "rolebinding",
            "joe-edit",
            "--clusterrole=edit",
            "--user=joe",
        ],
    )
    .await;
    for (verb, what, want) in [
        ("create", "endpoints", "no"),
        ("update", "endpoints", "no"),
        ("create", "endpointslices.discovery.k8s.io", "no"),
        ("patch", "endpointslices.discovery.k8s.io", "no"),
        ("list", "endpoints", "yes"),
        ("list", "endpointslices.discovery.k8s.io", "yes"),
        ("create", "services", "yes"),
    ] {
        let (_, out, _) = fx.run(k, &["auth", "can-i", verb, what, "--as=joe"]).await;
        assert_eq!(out.trim(), want, "{verb} {what}");
    }

    // A role of one's own that aggregates by a label.
    fx.file(
        "agg.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: team-all\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {team: blue}\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: blue-cm\n  labels: {team: blue}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n",
    );
    fx.ok(k, &["apply", "-f", "agg.yaml"]).await;
    let team = get("team-all").await;
    assert_eq!(
        rules_of(&team),
        vec![serde_json::json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]})],
        "{team}"
    );
    fx.stop().await;
}

/// `GET /v1-skiff/config`: the cluster's network settings, for nodes and admins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_read_the_cluster_network_settings() {
    if !have_kubectl() {
        return;
    }
    let mut fx = Fixture::start_with(|cfg, work| {
        let file = work.join("tokens.csv");
        std::fs::write(
            &file,
            "node-token,system:node:n1,1,\"system:nodes\"\nalice-token,alice,2\n",
        )
        .expect("write token file");
        cfg.token_auth_file = Some(file);
        cfg.network = skiff_meta::netconf::ClusterNetwork::parse(
            "10.90.0.0/16",
            "10.91.0.0/16",
            None,
            "corp.internal",
            "31000-31999",
        )
        .expect("network settings");
    })
    .await;
    let want = serde_json::json!({
        "clusterCIDR": "10.90.0.0/16",
        "serviceCIDR": "10.91.0.0/16",
        "clusterDNS": "10.91.0.10",
        "clusterDomain": "corp.internal",
        "nodePortRange": {"first": 31000, "last": 31999},
        "flannelBackend": "vxlan",
        "dns": true,
    });
    // The admin (kubectl's certificate) and a node may read it.
    let admin = fx.ok(K, &["get", "--raw", "/v1-skiff/config"]).await;
    assert_eq!(json(&admin), want);
    let (code, body) = fx
        .curl("node-token", "GET", "/v1-skiff/config", "", "")
        .await;
    assert_eq!((code, json(&body)), (200, want));
    // Anyone else is refused: 403 for a user without the right, 401 without credentials.
    let (code, body) = fx
        .curl("alice-token", "GET", "/v1-skiff/config", "", "")
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"User \"alice\" cannot get path \"/v1-skiff/config\""#),
        "{body}"
    );
    let (code, _) = fx.curl("", "GET", "/v1-skiff/config", "", "").await;
    assert_eq!(code, 401);
    fx.stop().await;
}
