//! TLS for registries: the system's roots plus docker's `certs.d/HOST[:PORT]/` files
//! (`*.crt` CAs, `*.cert` + `*.key` client certificates) under skiff's config dir, or no
//! verification at all for an insecure registry.

use crate::error::{Error, Result};
use crate::mirrors::TlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate (`--insecure-registry`); signatures are still checked
/// so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {what}", path.display()))
}

/// The TLS client configuration for `host` (`localhost:5000`): `certs_dir` is
/// `<config dir>/certs.d`.
pub(crate) fn client_config(
    certs_dir: &Path,
    host: &str,
    insecure: bool,
    extra: Option<&TlsConfig>,
) -> Result<rustls::ClientConfig> {
    let p = provider();
    let builder = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS setup: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    // docker's layout: certs.d/<host:port>/ (and certs.d/<host>/ when the port is 443).
    let dir = certs_dir.join(host);
    let mut client_pair = None;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.ends_with(".crt") {
                for c in read_certs(&path)? {
                    roots.add(c).map_err(|e| bad(&path, e))?;
                }
            } else if let Some(stem) = name.strip_suffix(".cert") {
                let key = dir.join(format!("{stem}.key"));
                if !key.is_file() {
                    return Err(bad(
                        &path,
                        format!("missing key {stem}.key for client certificate"),
                    ));
                }
                let certs = read_certs(&path)?;
                let k = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, e))?;
                client_pair = Some((certs, k));
            } else if let Some(stem) = name.strip_suffix(".key") {
                if !dir.join(format!("{stem}.cert")).is_file() {
                    return Err(bad(
                        &path,
                        format!("missing client certificate {stem}.cert for key"),
                    ));
                }
            }
        }
    }
    // registries.yaml's `tls` for this host: a CA file and a client certificate.
    if let Some(t) = extra {
        if let Some(ca) = &t.ca_file {
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| bad(ca, e))?;
            }
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            let k = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
            client_pair = Some((read_certs(cert)?, k));
        }
    }
    let config = if insecure {
        let b = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(p)));
        match client_pair {
            Some((c, k)) => b.with_client_auth_cert(c, k),
            None => Ok(b.with_no_client_auth()),
        }
    } else {
        let b = builder.with_root_certificates(roots);
        match client_pair {
            Some((c, k)) => b.with_client_auth_cert(c, k),
            None => Ok(b.with_no_client_auth()),
        }
    };
    config.map_err(|e| Error::Invalid(format!("client certificate for {host}: {e}")))
}
