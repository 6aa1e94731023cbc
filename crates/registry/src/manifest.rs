//! Manifests and indexes as registries serve them: Docker v2 schema 2, OCI image
//! manifests, Docker manifest lists and OCI indexes, and choosing a platform.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// What a pull accepts, in preference order.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl Platform {
    /// This host's platform (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Platform {
        let arch = skiff_image::host_arch().to_string();
        let variant = match arch.as_str() {
            "arm64" => "v8",
            "arm" => "v7",
            _ => "",
        };
        Platform {
            architecture: arch,
            os: "linux".into(),
            variant: variant.into(),
        }
    }

    /// Parses `os/arch[/variant]` (docker's `--platform`).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::Invalid(format!(
                "invalid platform {s:?}: want os/arch[/variant], e.g. linux/amd64"
            ))
        };
        let norm_arch = |a: &str| match a {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            a => a.to_string(),
        };
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: norm_arch(arch),
                variant: String::new(),
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: norm_arch(arch),
                variant: variant.to_string(),
            }),
            _ => Err(bad()),
        }
    }

    /// Whether an index entry for `have` serves `self` (an empty variant asks for any;
    /// arm64's entries without a variant are v8).
    pub fn matches(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        if self.variant.is_empty() {
            return true;
        }
        let hv = if have.variant.is_empty() && have.architecture == "arm64" {
            "v8"
        } else {
            have.variant.as_str()
        };
        hv == self.variant || (hv.is_empty() && self.architecture != "arm")
    }
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document is.
#[derive(Debug, Clone)]
pub enum Fetched {
    Image(Box<ImageManifest>),
    Index(Index),
}

/// Decides what `body` is from the Content-Type (or its own `mediaType`).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Fetched> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: String,
        #[serde(rename = "schemaVersion", default)]
        schema_version: u32,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("invalid manifest: {e}")))?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let mt = if !probe.media_type.is_empty() {
        probe.media_type.as_str()
    } else {
        ct
    };
    if mt == DOCKER_SCHEMA1 || ct == DOCKER_SCHEMA1 || probe.schema_version == 1 {
        return Err(Error::Invalid(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 are not supported: the image must be pushed again in a newer format".into(),
        ));
    }
    if mt == OCI_INDEX || mt == DOCKER_LIST || (probe.manifests.is_some() && probe.config.is_none())
    {
        let idx: Index = serde_json::from_slice(body)
            .map_err(|e| Error::Invalid(format!("invalid image index: {e}")))?;
        for d in &idx.manifests {
            check_digest(&d.digest)?;
        }
        return Ok(Fetched::Index(idx));
    }
    if mt == OCI_MANIFEST || mt == DOCKER_MANIFEST || probe.config.is_some() {
        let m: ImageManifest = serde_json::from_slice(body)
            .map_err(|e| Error::Invalid(format!("invalid image manifest: {e}")))?;
        check_digest(&m.config.digest)?;
        for l in &m.layers {
            check_digest(&l.digest)?;
        }
        return Ok(Fetched::Image(Box::new(m)));
    }
    Err(Error::Invalid(format!(
        "unsupported manifest media type {mt:?}"
    )))
}

/// Digests a manifest names go into URLs and file names: only `sha256:<64 hex>`.
fn check_digest(d: &str) -> Result<()> {
    if skiff_image::is_digest(d) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid manifest: unsupported or malformed digest {d:?} (want sha256:<64 hex digits>)"
        )))
    }
}

/// The entry of `index` for `want`, or an error listing the platforms there are.
pub fn choose(index: &Index, want: &Platform) -> Result<Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .collect();
    // An exact variant wins over a looser match.
    let best = candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.variant == want.variant)
        })
        .or(candidates.first());
    if let Some(d) = best {
        return Ok((*d).clone());
    }
    let have: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    Err(Error::Invalid(format!(
        "no matching manifest for {want} in the manifest list entries (it has: {})",
        if have.is_empty() {
            "no platforms".to_string()
        } else {
            have.join(", ")
        }
    )))
}

/// Whether a layer is one a registry does not serve (a foreign, non-distributable layer).
pub fn is_foreign(d: &Descriptor) -> bool {
    !d.urls.is_empty()
        || d.media_type == DOCKER_FOREIGN_LAYER
        || d.media_type.contains(".nondistributable.")
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression a layer media type names; an unknown type is an error.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    match media_type {
        DOCKER_LAYER_GZIP | "application/vnd.oci.image.layer.v1.tar+gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Compression::Zstd),
        m => Err(Error::Invalid(format!("unsupported layer media type {m}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[&str]) -> Index {
        Index {
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, p)| Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: format!("sha256:{i}"),
                    size: 1,
                    urls: vec![],
                    platform: Some(Platform::parse(p).unwrap()),
                    annotations: BTreeMap::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn chooses_platform() {
        let idx = index(&[
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v6",
            "linux/arm/v7",
        ]);
        assert_eq!(
            choose(&idx, &Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .digest,
            "sha256:0"
        );
        assert_eq!(
            choose(&idx, &Platform::parse("linux/arm64/v8").unwrap())
                .unwrap()
                .digest,
            "sha256:1"
        );
        assert_eq!(
            choose(&idx, &Platform::parse("linux/arm/v7").unwrap())
                .unwrap()
                .digest,
            "sha256:3"
        );
        assert_eq!(
            choose(&idx, &Platform::parse("linux/x86_64").unwrap())
                .unwrap()
                .digest,
            "sha256:0"
        );
        let e = choose(&idx, &Platform::parse("linux/s390x").unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no matching manifest for linux/s390x in the manifest list entries (it has: linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7)");
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn parses_kinds() {
        let d = format!("sha256:{}", "a".repeat(64));
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"x","digest":"{d}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            parse("", m.as_bytes()).unwrap(),
            Fetched::Image(_)
        ));
        // Digests end up in URLs and file names.
        let bad = m.replace(&d, "sha256:../../../../etc/passwd");
        assert!(parse("", bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("malformed digest"));
        let bad = br#"{"schemaVersion":2,"manifests":[{"digest":"sha512:abc","size":1}]}"#;
        assert!(parse(OCI_INDEX, bad).is_err());
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(OCI_INDEX, i).unwrap(), Fetched::Index(_)));
        assert!(parse("", br#"{"schemaVersion":1,"fsLayers":[]}"#)
            .unwrap_err()
            .to_string()
            .contains("schema 1"));
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Compression::Gzip
        );
        assert!(layer_compression("text/plain").is_err());
    }
}
