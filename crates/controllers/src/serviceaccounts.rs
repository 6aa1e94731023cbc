//! Service accounts and the root CA: every active namespace has a `default`
//! ServiceAccount (re-created if deleted) and the `kube-root-ca.crt` ConfigMap whose
//! `ca.crt` is the cluster CA, kept as it should be.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::{Informer, Key, Queue, Requeue};

const ROOT_CA: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The service-account and root-CA controller: one namespace per key (cluster-scoped
/// keys, the namespace's name), queued when the namespace, its `default`
/// ServiceAccount or its `kube-root-ca.crt` changes, and resynced every namespace
/// every [`crate::wiring::RESYNC`]. A change elsewhere costs nothing here, and one
/// namespace's work reads only its own two objects from the caches.
pub struct ServiceAccounts {
    pub client: Client,
    pub namespaces: Informer<Namespace>,
    pub service_accounts: Informer<ServiceAccount>,
    /// The `kube-root-ca.crt` ConfigMaps (`Informers::root_ca_config_maps`).
    pub config_maps: Informer<ConfigMap>,
    /// The cluster CA (PEM) published as `kube-root-ca.crt`; None: not published.
    pub ca_pem: Option<String>,
}

/// Starts the controller's queue, its triggers and its workers.
pub fn spawn(
    client: &Client,
    inf: &skiff_informer::Informers,
    ca_pem: Option<String>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let q = Queue::new();
    crate::wiring::enqueue_changed(&inf.namespaces, &q);
    let namespace_of = |ns: Option<&String>| Key {
        namespace: String::new(),
        name: ns.cloned().unwrap_or_default(),
    };
    let sq = q.clone();
    inf.service_accounts.on_change(move |sa| {
        if sa.metadata.name.as_deref() == Some("default") {
            sq.add(namespace_of(sa.metadata.namespace.as_ref()));
        }
    });
    let cq = q.clone();
    inf.root_ca_config_maps.on_change(move |cm| {
        if cm.metadata.name.as_deref() == Some(ROOT_CA) {
            cq.add(namespace_of(cm.metadata.namespace.as_ref()));
        }
    });
    let c = std::sync::Arc::new(ServiceAccounts {
        client: client.clone(),
        namespaces: inf.namespaces.clone(),
        service_accounts: inf.service_accounts.clone(),
        config_maps: inf.root_ca_config_maps.clone(),
        ca_pem,
    });
    crate::wiring::spawn_controller(
        "serviceaccounts",
        2,
        q,
        inf.namespaces.clone(),
        inf.clone(),
        stop.clone(),
        move |k| {
            let c = c.clone();
            async move { c.reconcile(k).await }
        },
    )
}

impl ServiceAccounts {
    /// Namespace `key.name`: its `default` ServiceAccount exists, and its root-CA
    /// ConfigMap holds exactly the cluster CA.
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let Some(ns) = self.namespaces.get(&key) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = key.name;
        let here = |name: &str| Key {
            namespace: ns.clone(),
            name: name.to_string(),
        };
        if self.service_accounts.get(&here("default")).is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default", "namespace": ns}}))
                    .unwrap_or_default();
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
            match api.create(&crate::post_params(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e),
            }
        }
        let ca_pem = self.ca_pem.as_deref();
        let Some(pem) = ca_pem else {
            return Ok(None);
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
        match self.config_maps.get(&here(ROOT_CA)) {
            None => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": ROOT_CA, "namespace": ns,
                                 "annotations": {"kubernetes.io/description": DESCRIPTION}},
                    "data": {"ca.crt": pem},
                }))
                .unwrap_or_default();
                match api.create(&crate::post_params(), &cm).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                    Err(e) => return Err(e),
                }
            }
            Some(cm) => {
                let data = cm.data.as_ref();
                if data.and_then(|d| d.get("ca.crt")).map(String::as_str) != Some(pem)
                    || data.map_or(0, |d| d.len()) != 1
                {
                    // Exactly `ca.crt`: other keys are removed.
                    let mut want = json!({"ca.crt": pem});
                    for k in data.into_iter().flatten().map(|(k, _)| k) {
                        if k != "ca.crt" {
                            want[k] = json!(null);
                        }
                    }
                    api.patch(
                        ROOT_CA,
                        &crate::patch_params(),
                        &Patch::Merge(json!({ "data": want })),
                    )
                    .await?;
                }
            }
        }
        Ok(None)
    }
}
