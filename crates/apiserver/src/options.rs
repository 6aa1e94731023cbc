//! The options and results of reads and deletes that the registry serves and admission
//! reads through [`crate::admit::Objects`].

use std::sync::Arc;

use serde_json::Value;
use skiff_meta::selector::{FieldSelector, LabelSelector};
use skiff_store::Revision;

/// Options of a list.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// 0 = no limit.
    pub limit: usize,
    pub continue_token: Option<String>,
    /// Read at exactly this revision (`resourceVersionMatch=Exact`).
    pub exact_revision: Option<Revision>,
    /// `None`: a consistent read (the state as of now); `Some(n)`: any state not older
    /// than revision `n` (`Some(0)`: any state, `resourceVersion=0`).
    pub min_revision: Option<Revision>,
}

impl ListOptions {
    /// Everything, in whatever state the watch cache holds now (no wait for it to catch
    /// up with the store): what kube-apiserver's own informers give its authorizer and
    /// admission plugins.
    pub fn any() -> ListOptions {
        ListOptions {
            min_revision: Some(0),
            ..ListOptions::default()
        }
    }
}

/// A page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
}

/// An object read for admission: the watch cache's copy, or one read from the store.
pub enum CachedObject {
    Shared(Arc<Value>),
    Owned(Value),
}

impl std::ops::Deref for CachedObject {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            CachedObject::Shared(o) => o,
            CachedObject::Owned(v) => v,
        }
    }
}

/// Options of a delete (query parameters and the DeleteOptions body).
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug)]
pub struct Deleted {
    /// The object as deleted, or as it now is (deletion pending on finalizers or grace).
    pub object: Value,
    /// Removed from the store now.
    pub removed: bool,
}
