//! The cluster's bootstrap material in the datastore, so that several servers on one
//! etcd are one cluster (k3s's `/bootstrap/<token hash>` key): the CA and the
//! ServiceAccount signing key, encrypted with the join token's secret.
//!
//! The first server to start writes them (created only if absent, so two first starts
//! agree on one winner); every server then takes the datastore's copy into its
//! `<data-dir>/tls` before it loads its certificates, issuing its own serving and admin
//! certificates from the shared CA. A server whose token does not decrypt the data, or
//! whose data dir holds another CA, is refused with a message saying so.
//!
//! Encryption: AES-256-GCM (ring) under a key derived from the secret with
//! PBKDF2-HMAC-SHA256 (a random salt per write); the key name is the first 16 hex digits
//! of sha256(secret), which names the token without revealing it.

use crate::error::{Error, Result};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use skiff_store::{RangeOptions, Store};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

const PREFIX: &str = "/bootstrap/";
const PBKDF2_ROUNDS: u32 = 100_000;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What is stored: the encrypted JSON of file name → contents.
#[derive(Serialize, Deserialize)]
struct Sealed {
    version: u32,
    salt: String,
    nonce: String,
    data: String,
}

fn key_name(secret: &str) -> String {
    format!(
        "{PREFIX}{}",
        &hex::encode(Sha256::digest(secret.as_bytes()))[..16]
    )
}

fn aead_key(secret: &str, salt: &[u8]) -> Result<LessSafeKey> {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(PBKDF2_ROUNDS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        secret.as_bytes(),
        &mut key,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &key)
        .map_err(|_| Error::Tls("deriving the bootstrap key".into()))?;
    Ok(LessSafeKey::new(unbound))
}

fn seal(secret: &str, files: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut salt)
        .and_then(|_| getrandom::fill(&mut nonce))
        .map_err(|e| Error::Tls(format!("random bytes for the bootstrap data: {e}")))?;
    let mut data = serde_json::to_vec(files)
        .map_err(|e| Error::Config(format!("encoding the bootstrap data: {e}")))?;
    aead_key(secret, &salt)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(b"skiff bootstrap v1"),
            &mut data,
        )
        .map_err(|_| Error::Tls("encrypting the bootstrap data".into()))?;
    serde_json::to_vec(&Sealed {
        version: 1,
        salt: B64.encode(salt),
        nonce: B64.encode(nonce),
        data: B64.encode(data),
    })
    .map_err(|e| Error::Config(format!("encoding the bootstrap data: {e}")))
}

/// The files, or None when `secret` does not open them.
fn open(secret: &str, raw: &[u8]) -> Result<Option<BTreeMap<String, String>>> {
    let bad =
        |what: &str| Error::Config(format!("the datastore's bootstrap data is damaged: {what}"));
    let sealed: Sealed = serde_json::from_slice(raw).map_err(|e| bad(&e.to_string()))?;
    if sealed.version != 1 {
        return Err(bad(&format!("version {}", sealed.version)));
    }
    let decode = |s: &str| B64.decode(s).map_err(|e| bad(&e.to_string()));
    let (salt, nonce, mut data) = (
        decode(&sealed.salt)?,
        decode(&sealed.nonce)?,
        decode(&sealed.data)?,
    );
    let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| bad("nonce"))?;
    let Ok(plain) =
        aead_key(secret, &salt)?.open_in_place(nonce, Aad::from(b"skiff bootstrap v1"), &mut data)
    else {
        return Ok(None);
    };
    serde_json::from_slice(plain)
        .map(Some)
        .map_err(|e| bad(&e.to_string()))
}

fn read_local(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for name in crate::pki::SHARED_FILES {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        files.insert(name.to_string(), text);
    }
    Ok(files)
}

/// Makes `tls_dir` hold the cluster's shared material from `store`, writing it there
/// first when the datastore has none (this is the cluster's first server).
pub async fn sync(store: &dyn Store, tls_dir: &Path, secret: &str) -> Result<()> {
    let key = key_name(secret);
    loop {
        let stored = store.get(key.as_bytes()).await.map_err(|e| {
            Error::Config(format!(
                "reading the bootstrap data from the datastore: {e}"
            ))
        })?;
        if let Some(kv) = stored {
            let Some(files) = open(secret, &kv.value)? else {
                return Err(Error::Config(format!(
                    "the datastore's bootstrap data ({key}) does not open with this token"
                )));
            };
            return take(tls_dir, &files);
        }
        // None under this token's name: another cluster's data under another token's?
        let others = store
            .range(
                PREFIX.as_bytes(),
                RangeOptions {
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "reading the bootstrap data from the datastore: {e}"
                ))
            })?;
        if let Some(other) = others.kvs.first() {
            return Err(Error::Config(format!(
                "the datastore already holds a cluster's bootstrap data ({}) under a different token: start this server with that cluster's --token",
                String::from_utf8_lossy(&other.key)
            )));
        }
        crate::pki::ensure_ca(tls_dir)?;
        crate::authn::ensure_service_key(tls_dir)?;
        let sealed = seal(secret, &read_local(tls_dir)?)?;
        match store.create(key.as_bytes(), sealed).await {
            Ok(_) => {
                tracing::info!(key = %key, "wrote the cluster's bootstrap data to the datastore");
                return Ok(());
            }
            // Another server wrote first: take its copy.
            Err(skiff_store::Error::AlreadyExists { .. }) => continue,
            Err(e) => {
                return Err(Error::Config(format!(
                    "writing the bootstrap data to the datastore: {e}"
                )))
            }
        }
    }
}

/// Writes the shared files into `tls_dir`; a CA there that is not the cluster's is an
/// error (this data dir belongs to another cluster).
fn take(tls_dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    std::fs::create_dir_all(tls_dir)
        .map_err(|e| Error::io(format!("creating {}", tls_dir.display()), e))?;
    for name in crate::pki::SHARED_FILES {
        let Some(text) = files.get(name) else {
            return Err(Error::Config(format!(
                "the datastore's bootstrap data lacks {name}"
            )));
        };
        let path = tls_dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(local) if &local == text => continue,
            Ok(_) => {
                return Err(Error::Config(format!(
                    "{} is not the cluster's (the datastore holds another): this data dir belongs to another cluster; remove {} to join this one",
                    path.display(),
                    tls_dir.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        }
        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        crate::pki::write_private(&path, text, mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_secret() {
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), "secret pem".to_string());
        let raw = seal("s3cret", &files).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("secret pem"));
        assert_eq!(open("s3cret", &raw).unwrap(), Some(files));
        assert_eq!(open("other", &raw).unwrap(), None);
        assert!(open("s3cret", b"{}").is_err());
        assert_ne!(key_name("a"), key_name("b"));
        assert!(!key_name("s3cret").contains("s3cret"));
    }
}
