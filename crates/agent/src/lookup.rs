//! What the pod worker reads from the API: the ConfigMaps, Secrets, ServiceAccount
//! tokens and PersistentVolumes a pod refers to, and the Services its environment
//! tells it of. [`ObjectLookup`] is what the pod worker and the spec translation ask;
//! [`ApiLookup`] answers it from the API server, from the blocking threads pods are
//! started on (the Services from an informer's cache, as the kubelet's lister).

use crate::FIELD_MANAGER;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use kube::api::Api;
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;

/// Why a claim has no volume to mount (yet).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim \"{0}\" is not bound")]
    ClaimNotBound(String),
    #[error("persistentvolume \"{0}\" not found")]
    VolumeNotFound(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Where referenced ConfigMaps, Secrets, tokens and volumes come from.
pub trait ObjectLookup {
    /// The data of ConfigMap `name` in `namespace`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// The decoded data of Secret `name` in `namespace`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// A token of ServiceAccount `account` bound to the pod (the TokenRequest API), for
    /// projected `serviceAccountToken` sources.
    fn service_account_token(
        &self,
        _namespace: &str,
        _account: &str,
        _pod: (&str, &str),
        _audience: Option<&str>,
        _expiration_seconds: i64,
    ) -> Option<String> {
        None
    }
    /// The PersistentVolume claim `claim` in `namespace` is bound to; Err says why
    /// there is none yet (the claim is missing or not bound).
    fn persistent_volume(
        &self,
        _namespace: &str,
        claim: &str,
    ) -> Result<PersistentVolume, LookupError> {
        Err(LookupError::ClaimNotFound(claim.to_string()))
    }
    /// Every Service of the cluster (for the service environment variables).
    fn services(&self) -> Vec<Service> {
        Vec::new()
    }
}

/// The objects a pod refers to, read from the API (from a blocking thread).
pub struct ApiLookup {
    client: Client,
    handle: tokio::runtime::Handle,
    /// The cluster's Services, as a watch keeps them (None: none known).
    services: Option<skiff_informer::Informer<Service>>,
}

impl ApiLookup {
    /// Reads through `client`, Services from `services`; made inside the agent's tokio
    /// runtime, which the reads run on.
    pub fn new(client: Client, services: Option<skiff_informer::Informer<Service>>) -> ApiLookup {
        ApiLookup {
            client,
            handle: tokio::runtime::Handle::current(),
            services,
        }
    }
}

impl ObjectLookup for ApiLookup {
    fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        Some(cm.data.unwrap_or_default())
    }

    fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = self.handle.block_on(api.get_opt(name)).ok().flatten()?;
        let mut out: BTreeMap<String, String> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).to_string()))
            .collect();
        out.extend(s.string_data.unwrap_or_default());
        Some(out)
    }

    fn service_account_token(
        &self,
        ns: &str,
        account: &str,
        pod: (&str, &str),
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Option<String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let req: TokenRequest = serde_json::from_value(json!({
            "spec": {
                "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
                "expirationSeconds": expiration_seconds,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.0, "uid": pod.1},
            }
        }))
        .ok()?;
        let pp = skiff_informer::post_params(FIELD_MANAGER);
        let out = self
            .handle
            .block_on(api.create_token_request(account, &pp, &req))
            .ok()?;
        out.status.map(|s| s.token)
    }

    fn services(&self) -> Vec<Service> {
        self.services
            .as_ref()
            .map(|i| i.state().iter().map(|s| (**s).clone()).collect())
            .unwrap_or_default()
    }

    fn persistent_volume(&self, ns: &str, claim: &str) -> Result<PersistentVolume, LookupError> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let c = self
            .handle
            .block_on(claims.get_opt(claim))?
            .ok_or_else(|| LookupError::ClaimNotFound(claim.to_string()))?;
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let name = c
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| bound && !v.is_empty())
            .ok_or_else(|| LookupError::ClaimNotBound(claim.to_string()))?;
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        self.handle
            .block_on(pvs.get_opt(&name))?
            .ok_or(LookupError::VolumeNotFound(name))
    }
}
