//! CertificateSigningRequests: the requester is recorded on create, kubelet client
//! certificates asked for by bootstrappers (or by the node itself) are approved
//! automatically after an access check (kube-controller-manager's csrapproving), and
//! approved requests for the kube-apiserver client signers are signed by the cluster CA
//! (csrsigning).

use base64::Engine;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};

use crate::error::{ApiError, Cause};
use crate::rbac::Attributes;
use crate::registry::Registry;
use crate::resource::Resource;
use crate::strategy::now_rfc3339;
use crate::subresource::Subresource;
use crate::user::User;

use crate::error::ApiResult;

pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// Signs certificates with the cluster CA.
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
}

impl Signer {
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str) -> crate::Result<Signer> {
        let err = |e: rcgen::Error| crate::Error::Tls(format!("loading the CA for signing: {e}"));
        let key = KeyPair::from_pem(ca_key_pem).map_err(err)?;
        Ok(Signer {
            issuer: Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(err)?,
        })
    }

    /// A client (or, with `serving`, a server) certificate for the public key, subject
    /// and names of `request_pem`.
    fn sign(&self, request_pem: &str, seconds: i64, serving: bool) -> Result<String, String> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(request_pem).map_err(|e| e.to_string())?;
        let now = time_now();
        csr.params.not_before = now - std::time::Duration::from_secs(300);
        csr.params.not_after = now + std::time::Duration::from_secs(seconds.max(600) as u64);
        csr.params.is_ca = rcgen::IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        csr.params.extended_key_usages = vec![if serving {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let mut serial = [0u8; 16];
        let _ = getrandom::fill(&mut serial);
        serial[0] &= 0x7f;
        csr.params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        csr.signed_by(&self.issuer)
            .map(|c| c.pem())
            .map_err(|e| e.to_string())
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The PEM of `spec.request` (base64 in the API).
fn request_pem(csr: &Value) -> Option<String> {
    let b64 = csr.pointer("/spec/request").and_then(Value::as_str)?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

/// Subject CN, organizations and whether the request has SANs.
fn subject(pem: &str) -> Option<(String, Vec<String>, bool)> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&parsed.contents)
            .ok()?;
    let subj = &req.certification_request_info.subject;
    let cn = subj.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = subj
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    let sans = req
        .requested_extensions()
        .into_iter()
        .flatten()
        .any(|e| matches!(e, x509_parser::extensions::ParsedExtension::SubjectAlternativeName(s) if !s.general_names.is_empty()));
    Some((cn, orgs, sans))
}

/// On create: records who asks (the server sets spec.username/groups/uid/extra) and checks
/// the request.
pub fn prepare_create(user: &User, obj: &mut Value) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut causes = Vec::new();
    match request_pem(obj) {
        Some(pem) if subject(&pem).is_some() => {}
        _ => causes.push(Cause::invalid(
            "spec.request",
            "",
            "certificate request must be a PEM-encoded PKCS#10 CERTIFICATE REQUEST",
        )),
    }
    if obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        causes.push(Cause::required("spec.signerName"));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            &name,
            causes,
        ));
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    if user.uid.is_empty() {
        if let Some(m) = spec.as_object_mut() {
            m.remove("uid");
        }
    } else {
        spec["uid"] = json!(user.uid);
    }
    if user.extra.is_empty() {
        if let Some(m) = spec.as_object_mut() {
            m.remove("extra");
        }
    } else {
        spec["extra"] = json!(user.extra);
    }
    if spec.get("usages").is_none() {
        spec["usages"] = json!(["digital signature", "key encipherment", "client auth"]);
    }
    Ok(())
}

fn has_condition(csr: &Value, ty: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        })
}

/// The CN of a node's request: a `system:node:<name>` subject in `system:nodes`, with
/// usages `purpose` plus at most digital signature and key encipherment, and
/// subject alternative names only when `names` allows them.
fn node_request(csr: &Value, purpose: &str, names: bool) -> Option<String> {
    let (cn, orgs, sans) = request_pem(csr).as_deref().and_then(subject)?;
    if !cn.starts_with("system:node:") || orgs != ["system:nodes"] || (sans && !names) {
        return None;
    }
    let usages: Vec<&str> = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let allowed = ["digital signature", "key encipherment", purpose];
    (usages.contains(&purpose) && usages.iter().all(|u| allowed.contains(u))).then_some(cn)
}

/// Whether a node's serving certificate request is approved automatically (as k3s
/// does for its agents): a `system:node:<name>` subject in `system:nodes`, server
/// usages only, asked for by that node itself or by someone who may approve requests.
async fn serving_approvable(reg: &Registry, csr: &Value) -> ApiResult<bool> {
    let Some(cn) = node_request(csr, "server auth", true) else {
        return Ok(false);
    };
    let requester = requester(csr);
    if requester.name == cn && requester.groups.iter().any(|g| g == "system:nodes") {
        return Ok(true);
    }
    let a = Attributes::resource(
        "update",
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
    )
    .subresource("approval");
    Ok(crate::authz::authorize(reg, &requester, &a).await?.allowed)
}

/// Who asked for a request (as recorded on create).
fn requester(csr: &Value) -> User {
    User {
        name: csr
            .pointer("/spec/username")
            .and_then(Value::as_str)
            .unwrap_or("")
            .into(),
        groups: skiff_meta::object::string_list(csr.pointer("/spec/groups")),
        ..Default::default()
    }
}

/// Whether csrapproving would approve this kubelet client request.
async fn auto_approvable(reg: &Registry, csr: &Value) -> ApiResult<bool> {
    match csr.pointer("/spec/signerName").and_then(Value::as_str) {
        Some(KUBELET_CLIENT) => {}
        Some(KUBELET_SERVING) => return serving_approvable(reg, csr).await,
        _ => return Ok(false),
    }
    let Some(cn) = node_request(csr, "client auth", false) else {
        return Ok(false);
    };
    let requester = requester(csr);
    let sub = if requester.name == cn {
        "selfnodeclient"
    } else {
        "nodeclient"
    };
    let a = Attributes::resource(
        "create",
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
    )
    .subresource(sub);
    Ok(crate::authz::authorize(reg, &requester, &a).await?.allowed)
}

/// The controllers' part: approves what may be approved automatically and signs what is
/// approved and not yet signed. Returns the object as it now is.
pub async fn reconcile(
    reg: &Registry,
    res: &Resource,
    signer: &Signer,
    csr: Value,
) -> ApiResult<Value> {
    let name = csr
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let approve = !has_condition(&csr, "Approved")
        && !has_condition(&csr, "Denied")
        && auto_approvable(reg, &csr).await?;
    let approved = approve || has_condition(&csr, "Approved");
    let signer_name = csr
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let sign = approved
        && !has_condition(&csr, "Denied")
        && !has_condition(&csr, "Failed")
        && csr.pointer("/status/certificate").is_none()
        && matches!(signer_name, KUBELET_CLIENT | CLIENT | KUBELET_SERVING);
    if !approve && !sign {
        return Ok(csr);
    }
    let certificate = if sign {
        let seconds = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(365 * 24 * 3600);
        Some(
            request_pem(&csr)
                .ok_or_else(|| ApiError::bad_request("no request"))
                .and_then(|pem| {
                    signer
                        .sign(&pem, seconds, signer_name == KUBELET_SERVING)
                        .map_err(|e| ApiError::internal(format!("signing: {e}")))
                }),
        )
    } else {
        None
    };
    reg.update(res, None, &name, Subresource::Status, false, |old| {
        let mut new = skiff_meta::object::without_rv(old);
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let now = now_rfc3339();
        let mut conditions = new["status"]
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if approve && !has_condition(old, "Approved") {
            conditions.push(
                json!({"type": "Approved", "status": "True", "reason": "AutoApproved",
                "message": if signer_name == KUBELET_SERVING {
                    "Auto approving kubelet serving certificate after SubjectAccessReview."
                } else {
                    "Auto approving kubelet client certificate after SubjectAccessReview."
                },
                "lastUpdateTime": now, "lastTransitionTime": now}),
            );
        }
        match &certificate {
            Some(Ok(pem)) => {
                new["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
            Some(Err(e)) => conditions.push(
                json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                "message": e.message, "lastUpdateTime": now, "lastTransitionTime": now}),
            ),
            None => {}
        }
        new["status"]["conditions"] = Value::Array(conditions);
        Ok(new)
    })
    .await
}

/// `PUT …/approval`: only the Approved/Denied conditions change.
pub fn apply_approval(old: &Value, body: &Value) -> ApiResult<Value> {
    let mut new = old.clone();
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(rv) = body.pointer("/metadata/resourceVersion") {
            m.insert("resourceVersion".into(), rv.clone());
        }
    }
    let conditions = body
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(json!([]));
    let approved = conditions
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Approved"));
    let denied = conditions
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Denied"));
    if approved && denied {
        let name = old
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(ApiError::invalid(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            name,
            vec![Cause::invalid(
                "status.conditions",
                "Approved",
                "Approved and Denied conditions are mutually exclusive",
            )],
        ));
    }
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    new["status"]["conditions"] = conditions;
    Ok(new)
}
