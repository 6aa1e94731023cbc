//! What the registry client keeps in the store besides images: which compressed blobs a
//! layer is known as in which repositories (so a push can skip or mount them and a pull
//! can tell a layer is present), and the repository digests images are known by.

use crate::error::{ImageError, IoContext, Result};
use crate::reference::parse_reference;
use crate::store::ImageStore;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::PathBuf;

/// A compressed blob in a registry whose uncompressed content is a stored layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSource {
    /// `sha256:<hex>` of the blob as the registry stores it.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `host/path` of a repository known to hold it.
    pub repository: String,
}

impl ImageStore {
    fn sources_path(&self, diff_id: &str) -> Result<PathBuf> {
        let hex = diff_id
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| ImageError::Invalid(format!("invalid digest {diff_id:?}")))?;
        Ok(self.dir().join("distribution").join(format!("{hex}.json")))
    }

    /// Whether the layer `diff_id` is stored and unpacked.
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_root(diff_id)
            .map(|r| r.join("fs").is_dir())
            .unwrap_or(false)
            && self
                .blob_path(diff_id)
                .map(|p| p.is_file())
                .unwrap_or(false)
    }

    /// The registry blobs the layer `diff_id` is known as, newest first.
    pub fn layer_sources(&self, diff_id: &str) -> Vec<LayerSource> {
        self.sources_path(diff_id)
            .ok()
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records that the layer `diff_id` is `source` in a registry.
    pub fn add_layer_source(&self, diff_id: &str, source: LayerSource) -> Result<()> {
        let path = self.sources_path(diff_id)?;
        let dir = self.dir().join("distribution");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let _lock = self.lock()?;
        let mut all = self.layer_sources(diff_id);
        all.retain(|s| !(s.digest == source.digest && s.repository == source.repository));
        all.insert(0, source);
        all.truncate(16);
        let data = serde_json::to_vec(&all)
            .map_err(|e| ImageError::json("serializing layer sources", e))?;
        self.atomic_write(&path, &data)
    }

    /// Records that image `id` is known as `repository@digest` (pulled or pushed). An
    /// older digest of the same repository is replaced.
    pub fn add_repo_digest(&self, id: &str, repository: &str, digest: &str) -> Result<()> {
        let repo = parse_reference(repository)?.repository();
        let entry = format!("{repo}@{digest}");
        self.update(|repos| {
            for rec in repos.images.values_mut() {
                rec.repo_digests.retain(|d| d != &entry);
            }
            let rec = repos
                .images
                .get_mut(id)
                .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
            rec.repo_digests
                .retain(|d| d.split('@').next() != Some(repo.as_str()));
            rec.repo_digests.push(entry);
            Ok(())
        })
    }

    /// The exact bytes of image `id`'s config (what a registry stores).
    pub fn config_bytes(&self, id: &str) -> Result<Vec<u8>> {
        self.read_blob(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::store_with_busybox;

    #[test]
    fn sources_and_repo_digests() {
        let (_t, s, img) = store_with_busybox();
        let diff = img.diff_ids()[0].clone();
        assert!(s.has_layer(&diff));
        assert!(!s.has_layer(&format!("sha256:{}", "0".repeat(64))));
        assert!(s.layer_sources(&diff).is_empty());
        let src = |d: &str, r: &str| super::LayerSource {
            digest: d.into(),
            size: 3,
            media_type: "m".into(),
            repository: r.into(),
        };
        s.add_layer_source(&diff, src("sha256:a", "localhost:5000/a"))
            .unwrap();
        s.add_layer_source(&diff, src("sha256:b", "localhost:5000/b"))
            .unwrap();
        s.add_layer_source(&diff, src("sha256:a", "localhost:5000/a"))
            .unwrap();
        let got: Vec<String> = s
            .layer_sources(&diff)
            .into_iter()
            .map(|x| x.digest)
            .collect();
        assert_eq!(got, vec!["sha256:a", "sha256:b"]);
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        s.add_repo_digest(&img.id, "localhost:5000/app:v1", &d1)
            .unwrap();
        assert_eq!(
            s.resolve(&format!("localhost:5000/app@{d1}")).unwrap().id,
            img.id
        );
        s.add_repo_digest(&img.id, "localhost:5000/app", &d2)
            .unwrap();
        let got = s.resolve(&img.id).unwrap();
        assert_eq!(got.repo_digests, vec![format!("localhost:5000/app@{d2}")]);
        assert_eq!(
            got.inspect_json()["RepoDigests"],
            serde_json::json!([format!("localhost:5000/app@{d2}")])
        );
        assert!(s.resolve(&format!("localhost:5000/app@{d1}")).is_err());
    }
}
