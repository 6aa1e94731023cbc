//! Bearer-token authentication beyond client certificates: the static token file, the join
//! token (`K10…::server:<secret>` or its bare secret: a bootstrapper), bootstrap tokens
//! (`<id>.<secret>` from `bootstrap.kubernetes.io/token` Secrets in kube-system) and
//! ServiceAccount tokens (ES256 JWTs signed with the key in `<data-dir>/tls/service.key`,
//! issued by the TokenRequest API and checked against the ServiceAccount and the pod they
//! are bound to). Also impersonation (`Impersonate-*` headers).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, Error};
use crate::rbac::{self, Attributes};
use crate::registry::Registry;
use crate::resources::lookup;
use crate::user::User;

use crate::error::ApiResult;

/// The issuer and default audience of ServiceAccount tokens (kube-apiserver's default
/// `--service-account-issuer` in k3s).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The group of the join token's bootstrapper (k3s's and kubeadm's default token group).
pub const JOIN_GROUP: &str = "system:bootstrappers:skiff:default-node-token";

/// Everything that authenticates bearer tokens.
pub struct Authenticator {
    /// `--token-auth-file`.
    pub tokens: HashMap<String, User>,
    /// The join token's secret.
    pub join_secret: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
}

/// The claims of a ServiceAccount token (the real server's layout).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub k8s: K8sClaims,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct K8sClaims {
    pub namespace: String,
    pub serviceaccount: ObjRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ObjRef {
    pub name: String,
    pub uid: String,
}

/// The ServiceAccount signing key (PEM) in `dir` (the `tls` directory), generated at
/// first start.
pub(crate) fn ensure_service_key(dir: &Path) -> crate::Result<String> {
    let path = dir.join(crate::pki::SERVICE_KEY);
    match std::fs::read_to_string(&path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = rcgen::KeyPair::generate()
                .map_err(|e| Error::Tls(format!("generating the service-account key: {e}")))?;
            let pem = key.serialize_pem();
            crate::pki::write_private(&path, &pem, 0o600)?;
            Ok(pem)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

impl Authenticator {
    /// Loads (or generates at first start) the ServiceAccount signing key in `<data_dir>/tls`.
    pub fn load(
        data_dir: &Path,
        tokens: HashMap<String, User>,
        join_token: &str,
    ) -> crate::Result<Authenticator> {
        let pem = ensure_service_key(&data_dir.join("tls"))?;
        let key = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| Error::Tls(format!("loading the service-account key: {e}")))?;
        let public = key.public_key_pem();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| Error::Tls(format!("loading the service-account key: {e}")))?;
        let decoding = DecodingKey::from_ec_pem(public.as_bytes())
            .map_err(|e| Error::Tls(format!("loading the service-account public key: {e}")))?;
        use sha2::Digest;
        let kid = hex::encode(&sha2::Sha256::digest(public.as_bytes())[..16]);
        let join_secret = join_token
            .rsplit_once(':')
            .map(|(_, s)| s)
            .unwrap_or(join_token)
            .to_string();
        Ok(Authenticator {
            tokens,
            join_secret,
            encoding,
            decoding,
            kid,
        })
    }

    /// Signs a ServiceAccount token.
    pub fn sign(&self, claims: &Claims) -> ApiResult<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing the token: {e}")))
    }

    /// Authenticates a bearer token; `audiences`: the accepted audiences of JWTs (the
    /// issuer when empty). `Err(message)` when the token is not valid.
    pub async fn authenticate(
        &self,
        reg: &Registry,
        token: &str,
        audiences: &[String],
    ) -> ApiResult<Result<User, String>> {
        if let Some(u) = self.tokens.get(token) {
            return Ok(Ok(with_authenticated(u.clone())));
        }
        let secret = token
            .rsplit_once("::server:")
            .map(|(_, s)| s)
            .unwrap_or(token);
        if !self.join_secret.is_empty() && secret == self.join_secret {
            return Ok(Ok(with_authenticated(User {
                name: "system:bootstrap:skiff".into(),
                groups: vec![BOOTSTRAPPERS.into(), JOIN_GROUP.into()],
                ..Default::default()
            })));
        }
        if let Some((id, secret)) = parse_bootstrap_token(token) {
            return bootstrap_token(reg, id, secret).await;
        }
        if token.split('.').count() == 3 {
            return self.service_account_token(reg, token, audiences).await;
        }
        Ok(Err("invalid bearer token".into()))
    }

    async fn service_account_token(
        &self,
        reg: &Registry,
        token: &str,
        audiences: &[String],
    ) -> ApiResult<Result<User, String>> {
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 0;
        let auds: Vec<String> = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences.to_vec()
        };
        v.set_audience(&auds);
        v.set_issuer(&[ISSUER]);
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(d) => d.claims,
            Err(e) => return Ok(Err(format!("invalid bearer token: {e}"))),
        };
        let ns = claims.k8s.namespace.clone();
        let sa = &claims.k8s.serviceaccount;
        let live = |plural: &str, name: &str, uid: &str| {
            let (plural, name, uid, ns) = (
                plural.to_string(),
                name.to_string(),
                uid.to_string(),
                ns.clone(),
            );
            async move {
                let Some(res) = lookup("", "v1", &plural) else {
                    return Ok::<_, ApiError>(false);
                };
                match reg.get(res, Some(&ns), &name).await {
                    Ok(o) => Ok(o.pointer("/metadata/uid").and_then(Value::as_str)
                        == Some(uid.as_str())
                        && o.pointer("/metadata/deletionTimestamp").is_none()),
                    Err(e) if e.code == 404 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        };
        if !live("serviceaccounts", &sa.name, &sa.uid).await? {
            return Ok(Err(format!(
                "serviceaccounts \"{}\" not found or was recreated",
                sa.name
            )));
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &claims.k8s.pod {
            if !live("pods", &pod.name, &pod.uid).await? {
                return Ok(Err(format!(
                    "pods \"{}\" not found or was recreated",
                    pod.name
                )));
            }
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![pod.uid.clone()],
            );
        }
        if let Some(secret) = &claims.k8s.secret {
            if !live("secrets", &secret.name, &secret.uid).await? {
                return Ok(Err(format!(
                    "secrets \"{}\" not found or was recreated",
                    secret.name
                )));
            }
        }
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={}", claims.jti)],
        );
        Ok(Ok(with_authenticated(User {
            name: claims.sub.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ],
            uid: sa.uid.clone(),
            extra,
        })))
    }
}

/// Adds `system:authenticated` to an authenticated user's groups.
pub fn with_authenticated(mut u: User) -> User {
    if !u.groups.iter().any(|g| g == AUTHENTICATED) {
        u.groups.push(AUTHENTICATED.into());
    }
    u
}

fn is_token_part(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `<6 chars>.<16 chars>` of `[a-z0-9]`.
pub fn parse_bootstrap_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    (is_token_part(id, 6) && is_token_part(secret, 16)).then_some((id, secret))
}

async fn bootstrap_token(
    reg: &Registry,
    id: &str,
    secret: &str,
) -> ApiResult<Result<User, String>> {
    use base64::Engine;
    let Some(res) = lookup("", "v1", "secrets") else {
        return Ok(Err("invalid bearer token".into()));
    };
    let s = match reg
        .get(res, Some("kube-system"), &format!("bootstrap-token-{id}"))
        .await
    {
        Ok(s) => s,
        Err(e) if e.code == 404 => return Ok(Err("invalid bearer token".into())),
        Err(e) => return Err(e),
    };
    let field = |k: &str| {
        s.get("data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let valid = s.get("type").and_then(Value::as_str) == Some("bootstrap.kubernetes.io/token")
        && s.pointer("/metadata/deletionTimestamp").is_none()
        && field("token-id") == id
        && field("token-secret") == secret
        && field("usage-bootstrap-authentication") == "true";
    if !valid {
        return Ok(Err("invalid bearer token".into()));
    }
    let exp = field("expiration");
    if !exp.is_empty() {
        match chrono::DateTime::parse_from_rfc3339(&exp) {
            Ok(t) if t > chrono::Utc::now() => {}
            _ => return Ok(Err("invalid bearer token: the token has expired".into())),
        }
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    for g in field("auth-extra-groups").split(',').map(str::trim) {
        if g.starts_with("system:bootstrappers:") && !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    Ok(Ok(with_authenticated(User {
        name: format!("system:bootstrap:{id}"),
        groups,
        ..Default::default()
    })))
}

/// Applies the `Impersonate-*` headers of a request: checks that `user` may impersonate
/// each requested attribute and returns the impersonated user (`None`: no impersonation).
pub async fn impersonate(
    reg: &Registry,
    user: &User,
    headers: &hyper::HeaderMap,
) -> ApiResult<Option<User>> {
    let get_all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
            .collect()
    };
    let names = get_all("impersonate-user");
    let groups = get_all("impersonate-group");
    let uids = get_all("impersonate-uid");
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers.iter() {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-") {
            let key = crate::http::percent_decode(key);
            if let Ok(v) = v.to_str() {
                extra.entry(key).or_default().push(v.to_string());
            }
        }
    }
    if names.is_empty() && groups.is_empty() && uids.is_empty() && extra.is_empty() {
        return Ok(None);
    }
    let Some(name) = names.first().cloned() else {
        return Err(ApiError::bad_request(
            "requested impersonation of groups, uid or extra without impersonating a user",
        ));
    };
    let mut checks = Vec::new();
    let mut imp = User {
        name: name.clone(),
        ..Default::default()
    };
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            checks.push(Attributes::resource("impersonate", "", "serviceaccounts", ns).named(sa));
            imp.groups.push("system:serviceaccounts".into());
            imp.groups.push(format!("system:serviceaccounts:{ns}"));
        }
        None => checks.push(Attributes::resource("impersonate", "", "users", "").named(&name)),
    }
    for g in &groups {
        checks.push(Attributes::resource("impersonate", "", "groups", "").named(g));
        if !imp.groups.contains(g) {
            imp.groups.push(g.clone());
        }
    }
    if let Some(uid) = uids.first() {
        checks.push(Attributes::resource("impersonate", "", "uids", "").named(uid));
        imp.uid = uid.clone();
    }
    for (k, vals) in &extra {
        for v in vals {
            checks.push(
                Attributes::resource("impersonate", "authentication.k8s.io", "userextras", "")
                    .named(v)
                    .subresource(k),
            );
        }
    }
    imp.extra = extra;
    for a in checks {
        let d = crate::authz::authorize(reg, user, &a).await?;
        if !d.allowed {
            return Err(rbac::forbidden(user, &a, &d.reason));
        }
    }
    if imp.name == "system:anonymous" {
        if !imp.groups.iter().any(|g| g == "system:unauthenticated") {
            imp.groups.push("system:unauthenticated".into());
        }
        return Ok(Some(imp));
    }
    Ok(Some(with_authenticated(imp)))
}

/// A ServiceAccount token request (`serviceaccounts/<name>/token`): the TokenRequest with
/// its status filled.
pub async fn token_request(
    auth: &Authenticator,
    reg: &Registry,
    ns: &str,
    sa_name: &str,
    mut body: Value,
) -> ApiResult<Value> {
    let sares = lookup("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts not served"))?;
    let sa = reg.get(sares, Some(ns), sa_name).await?;
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if let Some(msg) = crate::validation::token_expiration_error(expiration) {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            vec![crate::validation::invalid_raw(
                "spec.expirationSeconds",
                &expiration.to_string(),
                msg,
            )],
        ));
    }
    let expiration = expiration.min(48 * 3600);
    let mut audiences: Vec<String> = skiff_meta::object::string_list(spec.get("audiences"));
    if audiences.is_empty() {
        audiences.push(ISSUER.into());
    }
    let mut k8s = K8sClaims {
        namespace: ns.into(),
        serviceaccount: ObjRef {
            name: sa_name.into(),
            uid: sa
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
        },
        ..Default::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => {
                return Err(ApiError::bad_request(format!(
                "cannot bind token to object of kind {other:?}: only Pod and Secret are supported"
            )))
            }
        };
        let res = lookup("", "v1", plural).ok_or_else(|| ApiError::internal("not served"))?;
        let obj = reg.get(res, Some(ns), name).await?;
        let uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(want) = bound
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        {
            if want != uid {
                return Err(ApiError::new(409, "Conflict", format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                )));
            }
        }
        if kind == "Pod" {
            if obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                != sa_name
            {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to pod \"{name}\": it does not use service account \"{sa_name}\""
                )));
            }
            k8s.pod = Some(ObjRef {
                name: name.into(),
                uid,
            });
        } else {
            k8s.secret = Some(ObjRef {
                name: name.into(),
                uid,
            });
        }
    }
    let now = chrono::Utc::now();
    let exp = now + chrono::Duration::seconds(expiration);
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("system:serviceaccount:{ns}:{sa_name}"),
        aud: audiences.clone(),
        exp: exp.timestamp(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: crate::strategy::new_uid(),
        k8s,
    };
    let token = auth.sign(&claims)?;
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenRequest");
    let meta = json!({"name": sa_name, "namespace": ns, "creationTimestamp": crate::strategy::now_rfc3339()});
    body["metadata"] = meta;
    body["spec"] = json!({
        "audiences": audiences,
        "expirationSeconds": expiration,
        "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
    });
    body["status"] = json!({
        "token": token,
        "expirationTimestamp": exp.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    Ok(body)
}

/// The `status` of a TokenReview of `token`.
pub async fn token_review(auth: &Authenticator, reg: &Registry, spec: &Value) -> ApiResult<Value> {
    let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
    let audiences: Vec<String> = skiff_meta::object::string_list(spec.get("audiences"));
    Ok(match auth.authenticate(reg, token, &audiences).await? {
        Ok(u) => {
            let mut user = json!({"username": u.name, "groups": u.groups});
            if !u.uid.is_empty() {
                user["uid"] = json!(u.uid);
            }
            if !u.extra.is_empty() {
                user["extra"] = json!(u.extra);
            }
            let auds = if audiences.is_empty() {
                vec![ISSUER.to_string()]
            } else {
                audiences
            };
            json!({"authenticated": true, "user": user, "audiences": auds})
        }
        Err(msg) => json!({"authenticated": false, "user": {}, "error": msg}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_token_shape() {
        assert_eq!(
            parse_bootstrap_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        assert!(parse_bootstrap_token("abcdef.0123456789ABCDEF").is_none());
        assert!(parse_bootstrap_token("abc.0123456789abcdef").is_none());
        assert!(parse_bootstrap_token("a.b.c").is_none());
    }

    #[test]
    fn signs_and_reloads_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        let a = Authenticator::load(dir.path(), HashMap::new(), "K10abc::server:s3cret").unwrap();
        assert_eq!(a.join_secret, "s3cret");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:d:x".into(),
            aud: vec![ISSUER.into()],
            exp: chrono::Utc::now().timestamp() + 600,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            k8s: K8sClaims::default(),
        };
        let t = a.sign(&claims).unwrap();
        let b = Authenticator::load(dir.path(), HashMap::new(), "s3cret").unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[ISSUER]);
        let back = jsonwebtoken::decode::<Claims>(&t, &b.decoding, &v).unwrap();
        assert_eq!(back.claims.sub, "system:serviceaccount:d:x");
    }
}
