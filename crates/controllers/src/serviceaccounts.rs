//! Service accounts and the root CA: every active namespace has a `default`
//! ServiceAccount (re-created if deleted) and the `kube-root-ca.crt` ConfigMap whose
//! `ca.crt` is the cluster CA, kept as it should be.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, Patch};
use kube::Client;
use serde_json::json;

const ROOT_CA: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn in_ns<'a, K: kube::Resource>(items: &'a [K], ns: &str, name: &str) -> Option<&'a K> {
    items.iter().find(|o| {
        o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
    })
}

/// One pass over every namespace.
pub async fn sync(
    client: &Client,
    inf: &skiff_informer::Informers,
    ca_pem: Option<&str>,
) -> Result<(), kube::Error> {
    let namespaces: Vec<Namespace> = skiff_informer::cached(&inf.namespaces);
    let sas: Vec<ServiceAccount> = skiff_informer::cached(&inf.service_accounts);
    let cms: Vec<ConfigMap> = match ca_pem {
        Some(_) => inf
            .config_maps
            .select(|c| c.metadata.name.as_deref() == Some(ROOT_CA))
            .iter()
            .map(|c| (**c).clone())
            .collect(),
        None => vec![],
    };
    for ns in namespaces {
        if ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = ns.metadata.name.unwrap_or_default();
        if in_ns(&sas, &ns, "default").is_none() {
            let sa: ServiceAccount =
                serde_json::from_value(json!({"metadata": {"name": "default", "namespace": ns}}))
                    .unwrap_or_default();
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
            match api.create(&crate::post_params(), &sa).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e),
            }
        }
        let Some(pem) = ca_pem else { continue };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        match in_ns(&cms, &ns, ROOT_CA) {
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
    }
    Ok(())
}
