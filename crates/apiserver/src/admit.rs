//! The admission chain and after-write hooks the registry is handed, and the narrow view
//! of the cluster they read and write through ([`Objects`], which the registry
//! implements), so that admission plugins never name the registry.

use async_trait::async_trait;
use serde_json::Value;

use crate::options::{CachedObject, ListOptions, ListPage};
use crate::resource::Resource;
use crate::subresource::Subresource;

use crate::error::ApiResult;

/// What admission plugins and hooks read and write of the cluster.
#[async_trait]
pub trait Objects: Send + Sync {
    /// One object, read consistently.
    async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value>;
    /// One object as the watch cache holds it now (what kube-apiserver's plugins read
    /// from their informers).
    async fn get_cached(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<CachedObject>;
    /// The objects of `res` (in `ns`) that `opts` selects.
    async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage>;
    /// Creates `obj` unless it exists.
    async fn ensure(&self, res: &Resource, ns: Option<&str>, obj: Value) -> ApiResult<()>;
    /// Replaces the status of one object (a write to its status subresource).
    async fn write_status(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        status: Value,
    ) -> ApiResult<()>;
    /// The cluster CA (PEM) published in every namespace.
    fn root_ca(&self) -> Option<&str>;
    /// The Service IP and node-port allocator.
    fn allocator(&self) -> &dyn Allocations;
}

/// What a Service's strategy asks of the allocator (kube-apiserver's Service
/// allocators; `crate::alloc` implements it): claim what the new object holds beyond
/// the old one before the write, release the losing side's after it.
#[async_trait]
pub trait Allocations: Send + Sync {
    /// Claims the cluster IPs and node ports `new` needs (filling in the ones not
    /// given); with `dry_run` only checks.
    async fn allocate(&self, old: Option<&Value>, new: &mut Value, dry_run: bool) -> ApiResult<()>;
    /// After the write (`stored` or not): releases what the losing side held.
    async fn finish(&self, old: Option<&Value>, new: &Value, stored: bool);
    /// Releases everything a deleted Service held.
    async fn release_service(&self, svc: &Value);
}

/// The admission plugins a write passes, in kube-apiserver's order.
#[async_trait]
pub trait Admission: Send + Sync {
    /// A new object (mutating plugins, then validating ones).
    async fn admit_create(
        &self,
        objs: &dyn Objects,
        res: &Resource,
        obj: &mut Value,
    ) -> ApiResult<()>;
    /// An update of an object's main resource.
    async fn admit_update(
        &self,
        objs: &dyn Objects,
        res: &Resource,
        old: &Value,
        new: &Value,
    ) -> ApiResult<()>;
    /// An update through a subresource (status writes pass no plugin).
    async fn admit_subresource(
        &self,
        _objs: &dyn Objects,
        _res: &Resource,
        _sub: Subresource,
        _old: &Value,
        _new: &Value,
    ) -> ApiResult<()> {
        Ok(())
    }
}

/// What runs after a write reached the store: `old` is None for a create, `new` None for
/// a removal.
#[async_trait]
pub trait AfterWrite: Send + Sync {
    async fn after_write(
        &self,
        objs: &dyn Objects,
        res: &Resource,
        ns: Option<&str>,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> ApiResult<()>;
}

/// No admission at all (a registry nobody handed a chain).
pub struct Nothing;

#[async_trait]
impl Admission for Nothing {
    async fn admit_create(&self, _: &dyn Objects, _: &Resource, _: &mut Value) -> ApiResult<()> {
        Ok(())
    }
    async fn admit_update(
        &self,
        _: &dyn Objects,
        _: &Resource,
        _: &Value,
        _: &Value,
    ) -> ApiResult<()> {
        Ok(())
    }
}

#[async_trait]
impl AfterWrite for Nothing {
    async fn after_write(
        &self,
        _: &dyn Objects,
        _: &Resource,
        _: Option<&str>,
        _: Option<&Value>,
        _: Option<&Value>,
    ) -> ApiResult<()> {
        Ok(())
    }
}
