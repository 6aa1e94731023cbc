//! The verbs on a resource, one module per group, as kube-apiserver's REST handlers:
//! reading (get, list, watch: [`read`]), creating (objects and the create-only
//! subresources binding, eviction and token: [`create`]), replacing (PUT: [`update`]),
//! patching ([`patching`], server-side apply in [`apply`]) and deleting (one object or a
//! collection: [`delete`]). Each reads its request (body, dry-run, field validation) and
//! answers it; what a subresource does lives in its own module (`scale`, `binding`,
//! `eviction`, `csr`, `authn`), what a kind does in the registry's strategies.
//! `handler` picks the verb.

pub(crate) mod apply;
pub(crate) mod create;
pub(crate) mod delete;
pub(crate) mod patching;
pub(crate) mod read;
pub(crate) mod update;

use hyper::Response;
use serde_json::Value;

use crate::error::ApiResult;
use crate::http::{json_response, Accept, Body, Query};
use crate::managed::Manager;
use crate::resource::Resource;
use crate::scale::scale_of;
use crate::state::State;
use crate::subresource::Subresource;
use crate::user::User;

/// What every verb reads of a resource request, besides its name, subresource and body.
pub(crate) struct Call<'a> {
    pub(crate) state: &'a State,
    pub(crate) user: &'a User,
    pub(crate) res: &'static Resource,
    pub(crate) ns: Option<&'a str>,
    pub(crate) q: Query,
    /// The representation the client asked for (JSON, Table, PartialObjectMetadata).
    pub(crate) accept: Accept,
    /// Who writes (`fieldManager`, else the user agent).
    pub(crate) manager: Manager,
}

impl Call<'_> {
    /// A write through `{name}/scale` (PUT or PATCH): `mutate` turns the stored workload
    /// into the scaled one, written as the main resource by the manager "through scale";
    /// the answer is the workload's Scale.
    pub(crate) async fn write_scale<F>(
        &self,
        name: &str,
        dry: bool,
        mutate: F,
    ) -> ApiResult<Response<Body>>
    where
        F: FnMut(&Value) -> ApiResult<Value> + Send,
    {
        let updated = self
            .state
            .registry
            .update_as(
                self.res,
                self.ns,
                name,
                Subresource::Main,
                dry,
                Some(&self.manager.through("scale")),
                mutate,
            )
            .await?;
        Ok(json_response(200, &scale_of(self.res, &updated), &[]))
    }
}
