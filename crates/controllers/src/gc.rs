//! The garbage collector, over every listable resource the API serves (found by
//! discovery): dependents whose owners are all gone are deleted (background); an owner
//! being deleted with the `orphan` finalizer has its dependents' references to it
//! removed, then the finalizer; one with `foregroundDeletion` has its dependents
//! deleted (foreground themselves), and loses the finalizer once no dependent that
//! blocks owner deletion is left.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch};
use kube::discovery::{verbs, ApiCapabilities, Discovery, Scope};
use kube::Client;
use serde_json::json;
use std::collections::HashMap;

/// The resources served, as discovery last found them.
pub struct Resources {
    pub list: Vec<(ApiResource, ApiCapabilities)>,
}

impl Resources {
    /// Every listable and deletable resource (events.k8s.io's view of Events left out:
    /// it is the core Events again).
    pub async fn discover(client: &Client) -> Result<Resources, kube::Error> {
        let d = Discovery::new(client.clone()).run().await?;
        let mut list = Vec::new();
        for g in d.groups() {
            if g.name() == "events.k8s.io" {
                continue;
            }
            for (ar, caps) in g.recommended_resources() {
                if caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE) {
                    list.push((ar, caps));
                }
            }
        }
        Ok(Resources { list })
    }

    /// The index of the resource of `api_version`/`kind`.
    pub fn index_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.list
            .iter()
            .position(|(ar, _)| ar.kind == kind && ar.group == group)
    }

    /// An Api for one object of resource `i` (namespaced or not).
    pub fn api(&self, client: &Client, i: usize, ns: Option<&str>) -> Api<DynamicObject> {
        let (ar, caps) = &self.list[i];
        match (&caps.scope, ns) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
            _ => Api::all_with(client.clone(), ar),
        }
    }
}

/// One object and the index of its resource in [`Resources::list`].
pub struct Item {
    pub res: usize,
    pub obj: DynamicObject,
}

impl Item {
    pub fn ns(&self) -> Option<&str> {
        self.obj.metadata.namespace.as_deref()
    }
    pub fn name(&self) -> &str {
        self.obj.metadata.name.as_deref().unwrap_or("")
    }
    pub fn uid(&self) -> &str {
        self.obj.metadata.uid.as_deref().unwrap_or("")
    }
    pub fn deleting(&self) -> bool {
        self.obj.metadata.deletion_timestamp.is_some()
    }
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.obj
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|x| x == f)
    }
}

/// Every object of every resource.
pub async fn inventory(client: &Client, res: &Resources) -> Result<Vec<Item>, kube::Error> {
    let mut out = Vec::new();
    for (i, (ar, _)) in res.list.iter().enumerate() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        // Metadata only (PartialObjectMetadataList): owners, finalizers and deletion
        // are all the collector and the namespace controller read.
        for m in api.list_metadata(&ListParams::default()).await?.items {
            out.push(Item {
                res: i,
                obj: DynamicObject {
                    types: m.types,
                    metadata: m.metadata,
                    data: serde_json::Value::Null,
                },
            });
        }
    }
    Ok(out)
}

/// Removes finalizer `f` from the object.
pub async fn remove_finalizer(client: &Client, res: &Resources, it: &Item, f: &str) {
    let left: Vec<&String> = it
        .obj
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|x| *x != f)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": if left.is_empty() { json!(null) } else { json!(left) },
        "resourceVersion": it.obj.metadata.resource_version,
    }});
    if let Err(e) = res
        .api(client, it.res, it.ns())
        .patch(it.name(), &crate::patch_params(), &Patch::Merge(patch))
        .await
    {
        tracing::debug!(object = it.name(), error = %e, "removing finalizer {f}");
    }
}

/// What a dependent's owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Alive,
    /// The owner is being deleted in the foreground.
    Waiting,
    /// No object has the owner's uid.
    Dangling,
}

/// What the collector does with a dependent, given the states of its owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    DeleteBackground,
    DeleteForeground,
}

/// The real collector's rule: a dependent with a live owner stays; one whose owners
/// are all gone or waiting is deleted, in the foreground if any owner waits.
pub fn verdict(owners: &[OwnerState]) -> Verdict {
    if owners.is_empty() || owners.contains(&OwnerState::Alive) {
        Verdict::Keep
    } else if owners.contains(&OwnerState::Waiting) {
        Verdict::DeleteForeground
    } else {
        Verdict::DeleteBackground
    }
}

/// Whether the owner `r` points at is really gone (a live read, so an owner created
/// after the inventory was taken is not mistaken for a missing one).
async fn confirmed_gone(
    client: &Client,
    res: &Resources,
    ns: Option<&str>,
    r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> bool {
    let Some(i) = res.index_of(&r.api_version, &r.kind) else {
        return true;
    };
    match res.api(client, i, ns).get_opt(&r.name).await {
        Ok(Some(o)) => o.metadata.uid.as_deref() != Some(r.uid.as_str()),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// One collection pass over `items`.
pub async fn collect(client: &Client, res: &Resources, items: &[Item]) {
    let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid(), i)).collect();
    let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
    for it in items {
        for r in it.obj.metadata.owner_references.iter().flatten() {
            dependents.entry(r.uid.as_str()).or_default().push(it);
        }
    }
    // Owners being deleted with the orphan or foreground finalizer.
    for owner in items.iter().filter(|i| i.deleting()) {
        let deps = dependents.get(owner.uid()).cloned().unwrap_or_default();
        if owner.has_finalizer("orphan") {
            for d in &deps {
                let left: Vec<_> = d
                    .obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| r.uid != owner.uid())
                    .collect();
                let patch = json!({"metadata": {
                    "ownerReferences": if left.is_empty() { json!(null) } else { json!(left) },
                    "resourceVersion": d.obj.metadata.resource_version,
                }});
                if let Err(e) = res
                    .api(client, d.res, d.ns())
                    .patch(d.name(), &crate::patch_params(), &Patch::Merge(patch))
                    .await
                {
                    tracing::debug!(object = d.name(), error = %e, "orphaning");
                }
            }
            remove_finalizer(client, res, owner, "orphan").await;
        } else if owner.has_finalizer("foregroundDeletion") {
            let blocking = deps.iter().any(|d| {
                d.obj
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == owner.uid() && r.block_owner_deletion == Some(true))
            });
            if !blocking {
                remove_finalizer(client, res, owner, "foregroundDeletion").await;
            }
        }
    }
    // Dependents whose owners are gone or waiting for them.
    for it in items {
        let refs = it.obj.metadata.owner_references.as_deref().unwrap_or(&[]);
        if refs.is_empty() || it.deleting() {
            continue;
        }
        let mut states: Vec<OwnerState> = refs
            .iter()
            .map(|r| match by_uid.get(r.uid.as_str()) {
                Some(o) if o.deleting() && o.has_finalizer("foregroundDeletion") => {
                    OwnerState::Waiting
                }
                Some(_) => OwnerState::Alive,
                None => OwnerState::Dangling,
            })
            .collect();
        let v = verdict(&states);
        if v == Verdict::Keep {
            continue;
        }
        for (s, r) in states.iter_mut().zip(refs) {
            if *s == OwnerState::Dangling && !confirmed_gone(client, res, it.ns(), r).await {
                *s = OwnerState::Alive;
            }
        }
        let dp = match verdict(&states) {
            Verdict::Keep => continue,
            // A pod's own graceful deletion is its foreground.
            Verdict::DeleteForeground if res.list[it.res].0.kind != "Pod" => {
                DeleteParams::foreground()
            }
            _ => DeleteParams::background(),
        };
        match res
            .api(client, it.res, it.ns())
            .delete(it.name(), &dp)
            .await
        {
            Ok(_) => {
                tracing::info!(kind = %res.list[it.res].0.kind, namespace = it.ns().unwrap_or(""),
                object = it.name(), owners = ?states, "garbage collected")
            }
            Err(e) => tracing::debug!(object = it.name(), error = %e, "collecting"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&[]), Verdict::Keep);
        assert_eq!(verdict(&[Alive, Dangling]), Verdict::Keep);
        assert_eq!(verdict(&[Dangling]), Verdict::DeleteBackground);
        assert_eq!(verdict(&[Dangling, Waiting]), Verdict::DeleteForeground);
        assert_eq!(verdict(&[Waiting, Alive]), Verdict::Keep);
    }
}
