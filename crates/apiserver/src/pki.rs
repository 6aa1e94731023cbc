//! The cluster's certificates, the admin kubeconfig and the join token.
//!
//! First start generates, in `<data-dir>/tls/`: a CA (`server-ca.crt`/`.key`), the serving
//! certificate (`serving.crt`/`.key`) and the admin client certificate (`client-admin.crt`/
//! `.key`, CN=system:admin, O=system:masters). A restart reuses them as they are.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Generates the cluster CA in `dir` (the `tls` directory) unless it is there.
pub(crate) fn ensure_ca(dir: &Path) -> Result<()> {
    if dir.join(CA_CERT).exists() && dir.join(CA_KEY).exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    tracing::debug!(dir = %dir.display(), "generating the cluster CA");
    let key = KeyPair::generate().map_err(tls_err("generating the CA key"))?;
    let cert = Pki::ca_params()
        .self_signed(&key)
        .map_err(tls_err("signing the CA"))?;
    write_private(&dir.join(CA_KEY), &key.serialize_pem(), 0o600)?;
    write_private(&dir.join(CA_CERT), &cert.pem(), 0o644)?;
    Ok(())
}

/// The files of `tls/` every server of a cluster shares (the CA and the
/// ServiceAccount signing key); the serving and admin certificates are each server's.
pub(crate) const SHARED_FILES: [&str; 3] = [CA_CERT, CA_KEY, SERVICE_KEY];

/// PEM material of the cluster, loaded or generated.
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

const CA_CERT: &str = "server-ca.crt";
const CA_KEY: &str = "server-ca.key";
const SERVING_CERT: &str = "serving.crt";
const SERVING_KEY: &str = "serving.key";
const SERVING_SANS: &str = "serving.sans";
const ADMIN_CERT: &str = "client-admin.crt";
const ADMIN_KEY: &str = "client-admin.key";
/// The ServiceAccount signing key (`authn` makes and reads it).
pub(crate) const SERVICE_KEY: &str = "service.key";

fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

pub(crate) fn write_private(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming to {}", path.display()), e))
}

fn validity(params: &mut CertificateParams, years: i32) {
    let now = chrono::Utc::now() - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(now.year(), now.month() as u8, now.day() as u8);
    params.not_after = rcgen::date_time_ymd(now.year() + years, now.month() as u8, 1);
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn tls_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |e| Error::Tls(format!("{what}: {e}"))
}

impl Pki {
    /// Loads the certificates from `<data_dir>/tls`, generating any that are missing.
    ///
    /// `extra_sans` (IP addresses or DNS names, like k3s's `--tls-san`) are added to the
    /// serving certificate; it is re-issued when its set of names changes.
    pub fn load_or_generate(data_dir: &Path, extra_sans: &[String]) -> Result<Pki> {
        let dir = data_dir.join("tls");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        ensure_ca(&dir)?;
        let key_pem = read(&dir, CA_KEY)?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(tls_err("loading the CA key"))?;
        let (ca_params, ca_cert_pem) = (Self::ca_params(), read(&dir, CA_CERT)?);
        // Only used to sign new leaves when some are missing; the subject must match the
        // CA certificate on disk, which `ca_params` reproduces.
        let issuer = Issuer::new(ca_params, ca_key);

        let sans = serving_sans(extra_sans)?;
        let mut fingerprint: Vec<String> = sans.iter().map(|s| format!("{s:?}")).collect();
        fingerprint.sort();
        let fingerprint = fingerprint.join("\n") + "\n";
        let same_sans =
            std::fs::read_to_string(dir.join(SERVING_SANS)).is_ok_and(|f| f == fingerprint);
        if !(dir.join(SERVING_CERT).exists() && dir.join(SERVING_KEY).exists() && same_sans) {
            tracing::debug!(dir = %dir.display(), "issuing the serving certificate");
            let mut params = CertificateParams::default();
            params.distinguished_name = dn("kube-apiserver", &[]);
            validity(&mut params, 10);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.subject_alt_names = sans;
            let key = KeyPair::generate().map_err(tls_err("generating the serving key"))?;
            let cert = params
                .signed_by(&key, &issuer)
                .map_err(tls_err("signing the serving certificate"))?;
            write_private(&dir.join(SERVING_KEY), &key.serialize_pem(), 0o600)?;
            write_private(&dir.join(SERVING_CERT), &cert.pem(), 0o644)?;
            write_private(&dir.join(SERVING_SANS), &fingerprint, 0o644)?;
        }
        if !(dir.join(ADMIN_CERT).exists() && dir.join(ADMIN_KEY).exists()) {
            let (cert, key) = sign_client_cert(&issuer, "system:admin", &["system:masters"])?;
            write_private(&dir.join(ADMIN_KEY), &key, 0o600)?;
            write_private(&dir.join(ADMIN_CERT), &cert, 0o644)?;
        }
        Ok(Pki {
            ca_cert_pem,
            serving_cert_pem: read(&dir, SERVING_CERT)?,
            serving_key_pem: read(&dir, SERVING_KEY)?,
            admin_cert_pem: read(&dir, ADMIN_CERT)?,
            admin_key_pem: read(&dir, ADMIN_KEY)?,
            dir,
        })
    }

    fn ca_params() -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("skiff-server-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 10);
        params
    }

    /// The CA's private key (PEM), for signing certificate requests.
    pub fn ca_key_pem(&self) -> Result<String> {
        read(&self.dir, CA_KEY)
    }

    /// sha256 (hex) of the CA certificate's PEM, as k3s puts it in its join token.
    pub fn ca_hash(&self) -> String {
        hex::encode(Sha256::digest(self.ca_cert_pem.as_bytes()))
    }
}

/// Signs a client certificate for `user` in `groups`; returns (cert PEM, key PEM).
fn sign_client_cert(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String)> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(user, groups);
    validity(&mut params, 10);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(tls_err("generating a client key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(tls_err("signing a client certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn serving_sans(extra: &[String]) -> Result<Vec<SanType>> {
    let mut sans = Vec::new();
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut extra_ips = Vec::new();
    for e in extra {
        match e.parse::<IpAddr>() {
            Ok(ip) => extra_ips.push(ip),
            Err(_) if !names.contains(e) => names.push(e.clone()),
            Err(_) => {}
        }
    }
    for name in &names {
        let dns = name
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| Error::Tls(format!("SAN {name}: {e}")))?;
        sans.push(SanType::DnsName(dns));
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            if let Ok(dns) = host.to_string().try_into() {
                sans.push(SanType::DnsName(dns));
            }
        }
    }
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    ips.extend(host_addresses());
    ips.extend(extra_ips.into_iter().filter(|ip| !ip.is_unspecified()));
    let mut seen = std::collections::HashSet::new();
    for ip in ips {
        if seen.insert(ip) {
            sans.push(SanType::IpAddress(ip));
        }
    }
    Ok(sans)
}

/// The addresses of the host's interfaces.
pub fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

/// The join token in k3s's format: `K10<sha256 of the CA PEM>::server:<secret>`.
///
/// The secret is `given` (a bare secret or a full K10 token), else the one kept in
/// `<data_dir>/token`, else a new random one (then kept there).
pub fn join_token(data_dir: &Path, pki: &Pki, given: Option<&str>) -> Result<String> {
    let path = data_dir.join("token");
    let secret = token_secret(data_dir, given)?;
    let token = format!("K10{}::server:{}", pki.ca_hash(), secret);
    write_private(&path, &format!("{token}\n"), 0o600)?;
    Ok(token)
}

/// The token's secret: `given` (bare or a full K10 token), else the one kept in
/// `<data_dir>/token`, else a new random one (kept there by [`join_token`]).
pub fn token_secret(data_dir: &Path, given: Option<&str>) -> Result<String> {
    let path = data_dir.join("token");
    let secret = match given {
        Some(t) => parse_token_secret(t).to_string(),
        None => match std::fs::read_to_string(&path) {
            Ok(existing) => parse_token_secret(existing.trim()).to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut buf = [0u8; 16];
                getrandom::fill(&mut buf)
                    .map_err(|e| Error::Tls(format!("generating the token secret: {e}")))?;
                hex::encode(buf)
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        },
    };
    if secret.is_empty() {
        return Err(Error::Config("the token must not be empty".into()));
    }
    Ok(secret)
}

fn parse_token_secret(token: &str) -> &str {
    match token.split_once("::") {
        Some((_, rest)) => rest.split_once(':').map(|(_, s)| s).unwrap_or(rest),
        None => token,
    }
}

/// An admin kubeconfig for `server_url` with the CA and the admin certificate embedded.
pub fn admin_kubeconfig(pki: &Pki, server_url: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server_url}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&pki.ca_cert_pem),
        cert = b64(&pki.admin_cert_pem),
        key = b64(&pki.admin_key_pem),
    )
}

/// Writes `contents` to `path` with mode 0600 (creating parent directories).
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
    }
    write_private(path, contents, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secret_parsing() {
        assert_eq!(parse_token_secret("abc"), "abc");
        assert_eq!(parse_token_secret("K10deadbeef::server:abc"), "abc");
    }

    #[test]
    fn certificates_have_the_right_extensions() {
        use x509_parser::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_generate(dir.path(), &["10.43.0.1".into()]).unwrap();
        let der = |pem: &str| {
            let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            p.contents
        };
        let ca_der = der(&pki.ca_cert_pem);
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(ca.basic_constraints().unwrap().unwrap().value.ca);

        let serving_der = der(&pki.serving_cert_pem);
        let (_, serving) = X509Certificate::from_der(&serving_der).unwrap();
        let sans = serving.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for want in [
            "DNSName(kubernetes.default.svc.cluster.local)",
            "DNSName(localhost)",
            "IPAddress(0a:2b:00:01)",
            "IPAddress(7f:00:00:01)",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            serving
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .server_auth
        );
        assert!(serving.verify_signature(Some(ca.public_key())).is_ok());

        let admin_der = der(&pki.admin_cert_pem);
        let (_, admin) = X509Certificate::from_der(&admin_der).unwrap();
        assert!(
            admin
                .extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
        let user = super::super::user_from_cert(&admin_der).unwrap();
        assert_eq!(user.name, "system:admin");
        assert_eq!(user.groups, vec!["system:masters".to_string()]);
    }

    #[test]
    fn generate_then_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_generate(dir.path(), &[]).unwrap();
        let b = Pki::load_or_generate(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        let c = Pki::load_or_generate(
            dir.path(),
            &["skiff.example.com".into(), "192.0.2.7".into()],
        )
        .unwrap();
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_eq!(a.admin_cert_pem, c.admin_cert_pem);
        assert_ne!(a.serving_cert_pem, c.serving_cert_pem);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        let t1 = join_token(dir.path(), &a, None).unwrap();
        let t2 = join_token(dir.path(), &a, None).unwrap();
        assert_eq!(t1, t2);
        assert!(t1.starts_with(&format!("K10{}::server:", a.ca_hash())));
    }
}
