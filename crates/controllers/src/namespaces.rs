//! Namespace deletion: a namespace being deleted has every object in it deleted; once
//! none is left its `kubernetes` finalizer is removed through `namespaces/{name}/finalize`
//! and the API server lets it go. Its status conditions say how far it got, with the
//! real namespace controller's types and reasons.

use crate::gc::{Item, Resources};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use std::collections::BTreeMap;

/// The namespace conditions for `remaining` objects (resource plural → count) and
/// `finalizers` (finalizer → count of objects still carrying it).
pub fn conditions(
    remaining: &BTreeMap<String, usize>,
    finalizers: &BTreeMap<String, usize>,
) -> serde_json::Value {
    let now = crate::now();
    let cond = |t: &str, status: bool, reason: &str, message: String| {
        json!({"type": t, "status": if status { "True" } else { "False" }, "reason": reason,
               "message": message, "lastTransitionTime": now})
    };
    let remain_msg = remaining
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    let fin_msg = finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    json!([
        cond(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into()
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into()
        ),
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into()
        ),
        if remaining.is_empty() {
            cond(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            cond(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {remain_msg}"),
            )
        },
        if finalizers.is_empty() {
            cond(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            cond(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!("Some content in the namespace has finalizers remaining: {fin_msg}"),
            )
        },
    ])
}

/// One pass over namespace `name`, being deleted, with `items` every object in it.
pub async fn sync_namespace(client: &Client, res: &Resources, name: &str, items: &[Item]) {
    let api: Api<Namespace> = Api::all(client.clone());
    {
        let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
        let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
        for it in items {
            let ar = &res.list[it.res].0;
            let plural = if ar.group.is_empty() {
                ar.plural.clone()
            } else {
                format!("{}.{}", ar.plural, ar.group)
            };
            *remaining.entry(plural).or_default() += 1;
            for f in it.obj.metadata.finalizers.iter().flatten() {
                *finalizers.entry(f.clone()).or_default() += 1;
            }
            if !it.deleting() {
                if let Err(e) = res
                    .api(client, it.res, it.ns())
                    .delete(it.name(), &DeleteParams::background())
                    .await
                {
                    tracing::debug!(namespace = name, object = it.name(), error = %e, "deleting");
                }
            }
        }
        let _ = api
            .patch_status(
                name,
                &crate::patch_params(),
                &Patch::Merge(json!({"status": {"phase": "Terminating",
                    "conditions": conditions(&remaining, &finalizers)}})),
            )
            .await;
        if !remaining.is_empty() {
            return;
        }
        let Ok(mut current) = api.get(name).await else {
            return;
        };
        if let Some(spec) = current.spec.as_mut() {
            if let Some(f) = spec.finalizers.as_mut() {
                f.retain(|f| f != "kubernetes");
            }
        }
        match api
            .replace_subresource("finalize", name, &crate::post_params(), &current)
            .await
        {
            Ok(_) => tracing::info!(namespace = name, "namespace finalized"),
            Err(e) => tracing::warn!(namespace = name, error = %e, "finalizing"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_remains() {
        let mut r = BTreeMap::new();
        r.insert("pods".to_string(), 2);
        let mut f = BTreeMap::new();
        f.insert("foregroundDeletion".to_string(), 1);
        let c = conditions(&r, &f);
        assert_eq!(c[3]["status"], "True");
        assert_eq!(
            c[3]["message"],
            "Some resources are remaining: pods has 2 resource instances"
        );
        assert_eq!(c[4]["reason"], "SomeFinalizersRemain");
        let c = conditions(&BTreeMap::new(), &BTreeMap::new());
        assert_eq!(c[3]["reason"], "ContentRemoved");
        assert_eq!(c[4]["status"], "False");
    }
}
