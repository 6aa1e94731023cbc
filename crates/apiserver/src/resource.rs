//! What a served resource is: its names, scope and versions as discovery reports them,
//! and the generic behaviours (status and scale subresources, generation, name rules)
//! the store applies to it. The resources served are rows of `kinds::TABLE`, each beside
//! its kind's strategy; `resources` looks them up.

/// How names of a resource are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most resources).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services: must start with a letter).
    Label1035,
    /// Any string usable as a path segment (RBAC objects: `system:controller:foo`).
    PathSegment,
}

/// One served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource (the main resource then ignores status changes).
    pub status: bool,
    /// Has a `/scale` subresource (`spec.replicas`).
    pub scale: bool,
    /// `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    pub name_rule: NameRule,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group as used in storage keys ("core" for the core group).
    pub fn storage_group(&self) -> &'static str {
        // events.k8s.io/v1 Events are stored as core/v1 Events (see `convert`).
        if self.group.is_empty() || self.group == "events.k8s.io" {
            "core"
        } else {
            self.group
        }
    }

    /// The verbs of the main resource.
    pub fn verbs(&self) -> &'static [&'static str] {
        if matches!(
            self.kind,
            "SelfSubjectReview"
                | "TokenReview"
                | "SelfSubjectAccessReview"
                | "SelfSubjectRulesReview"
                | "SubjectAccessReview"
        ) {
            return &["create"];
        }
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// A row of the served resources' table (see `kinds::TABLE` for the columns' order).
#[allow(clippy::too_many_arguments)]
pub(crate) const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        status,
        scale,
        generation,
        name_rule,
    }
}

/// The `all` category.
pub(crate) const ALL: &[&str] = &["all"];
/// No short names or categories.
pub(crate) const NONE: &[&str] = &[];
