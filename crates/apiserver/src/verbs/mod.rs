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

use crate::http::{Accept, Query};
use crate::managed::Manager;
use crate::resource::Resource;
use crate::state::State;
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
