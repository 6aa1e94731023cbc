//! The two traits a kind implements: [`Strategy`], what it does differently from the
//! generic registry, and its supertrait [`Columns`], what `kubectl get` prints for it.
//! Every method has a default, the generic behaviour; [`Generic`] is a kind with none of
//! its own.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::admit::Objects;
use crate::error::{ApiResult, Cause};
use crate::typed::Typed;

/// What one kind does differently from the generic registry. Every method has a
/// default: the generic behaviour.
#[async_trait]
pub(crate) trait Strategy: Columns {
    /// Whether a deletion pending on this object may finish now, once its
    /// `metadata.finalizers` are gone (the registry checks those).
    fn deletion_can_finish(&self, _obj: &Value) -> bool {
        true
    }

    /// Whether deleting this object waits for something beyond `metadata.finalizers`
    /// (it is then only marked, as one with finalizers is).
    fn deletion_waits(&self, _obj: &Value) -> bool {
        false
    }

    /// The grace period a deletion of this object waits, when it waits one (given the
    /// one the request asked for); `None` for kinds that go at once.
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Marks an object whose deletion has just begun (beyond `deletionTimestamp`).
    fn deletion_started(&self, _obj: &mut Value) {}

    /// The kind's typed schema, which the decoder checks bodies against and OpenAPI
    /// describes; `None` for kinds without one (bodies pass as they are).
    fn typed(&self) -> Option<&'static dyn Typed> {
        None
    }

    /// The fields a field selector may name beyond `metadata.name` and
    /// `metadata.namespace`.
    fn field_selectors(&self) -> &'static [&'static str] {
        &[]
    }

    /// The kind's defaults (kube-apiserver's `SetDefaults_*`), applied on create and on
    /// every write of the main resource.
    fn defaults(&self, _obj: &mut Value) {}

    /// The status a new object of a kind with a status subresource starts from, before
    /// defaults: empty (what the client sent is dropped).
    fn reset_status(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    /// The status fields kube-apiserver always serializes for a kind with a status
    /// subresource, filled in on create and on every status write.
    fn status_defaults(&self, _obj: &mut Value) {}

    /// The last step of preparing a new object (after defaults): server-set state.
    fn prepare_create(&self, _obj: &mut Value) {}

    /// On an update of the main resource of a kind with a status subresource: the
    /// status it keeps, `old`'s (none if `old` has none).
    fn keep_status(&self, old: &Value, new: &mut Value) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }

    /// On an update of the main resource: server-owned state carried from `old` into
    /// `new` (after metadata and status, before defaults).
    fn prepare_update(&self, _old: &Value, _new: &mut Value) {}

    /// The kind's own fields, checked on every write (after the metadata).
    fn validate(&self, _obj: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules only a create checks.
    fn validate_create(&self, _obj: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules of an update of the main resource (immutable fields), after
    /// [`Strategy::prepare_update`].
    fn validate_update(&self, _old: &Value, _new: &Value, _causes: &mut Vec<Cause>) {}

    /// A new object after admission, before it is stored: allocations that depend on
    /// what exists.
    async fn before_create(&self, _objs: &dyn Objects, _obj: &mut Value) -> ApiResult<()> {
        Ok(())
    }

    /// A new object once it is stored (kube-apiserver's `AfterCreate`): work that follows
    /// from its existence. An error reaches the client; the object stays stored.
    async fn after_create(&self, _objs: &dyn Objects, _obj: &Value) -> ApiResult<()> {
        Ok(())
    }

    /// An object once it is gone from the store (kube-apiserver's `AfterDelete`): what it
    /// held is released here. An error reaches the client; the object stays deleted.
    async fn after_delete(&self, _objs: &dyn Objects, _obj: &Value) -> ApiResult<()> {
        Ok(())
    }

    /// Whether the kind claims something in [`Strategy::allocate`] (the registry then
    /// keeps what it needs to call [`Strategy::finish_allocation`]).
    fn allocates(&self) -> bool {
        false
    }

    /// A write of the main resource after validation and admission, just before it is
    /// stored: claims what `new` holds beyond `old` (None on a create), as
    /// kube-apiserver's Service allocators do. On an error nothing stays claimed; with
    /// `dry_run` nothing is claimed, only checked.
    async fn allocate(
        &self,
        _objs: &dyn Objects,
        _old: Option<&Value>,
        _new: &mut Value,
        _dry_run: bool,
    ) -> ApiResult<()> {
        Ok(())
    }

    /// Ends what [`Strategy::allocate`] began once the write is stored (`stored`) or
    /// has failed: releases what the losing object holds beyond the winning one.
    async fn finish_allocation(
        &self,
        _objs: &dyn Objects,
        _old: Option<&Value>,
        _new: &Value,
        _stored: bool,
    ) {
    }

    /// An update of the main resource after [`Strategy::prepare_update`], before
    /// validation: allocations that depend on what exists.
    async fn before_update(
        &self,
        _objs: &dyn Objects,
        _old: &Value,
        _new: &mut Value,
    ) -> ApiResult<()> {
        Ok(())
    }
}

/// The columns of one kind's table (`kubectl get`) and its cells for one object. Every
/// [`Strategy`] has them (a supertrait); the defaults print the name and age, as
/// kube-apiserver's default table convertor does.
pub(crate) trait Columns: Send + Sync {
    /// The columns, in order (priority 1 for the `-o wide` ones).
    fn columns(&self) -> &'static [crate::cells::Col] {
        &[crate::cells::NAME, crate::cells::AGE]
    }

    /// The cells of `obj`'s row, one per column.
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![crate::cells::name(obj), crate::cells::age(obj)]
    }
}

/// A kind without behaviour of its own.
pub(crate) struct Generic;

impl Strategy for Generic {}

impl Columns for Generic {}
