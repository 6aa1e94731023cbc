//! The generic resource store: one code path for every resource (kube-apiserver's
//! `registry/generic` store). Objects are JSON at `/registry/<group>/<resource>/[<ns>/]<name>`;
//! `metadata.resourceVersion` is the store's `mod_revision` and is not stored.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_store::{RangeOptions, Revision, Store};

use crate::admit::{Admission, AfterWrite, Objects};
use crate::error::{ApiError, Cause};
pub use crate::options::{CachedObject, DeleteOptions, Deleted, ListOptions, ListPage};
use crate::resource::Resource;
use crate::resources::lookup;
use crate::selectable::Selectable;
use crate::storage::{decode_as, encode_as, key, prefix};
use crate::strategy;
use crate::subresource::Subresource;
pub use crate::watchcache::ItemPage;
use crate::watchcache::{Prepared, WatchCache};
use skiff_meta::object::{name_of, rv_of, set_rv};

use crate::error::ApiResult;

/// How long a consistent read waits for the watch cache before reading the store.
const CONSISTENT_WAIT: Duration = Duration::from_millis(500);
/// How long a read "not older than" a revision waits for it (kube-apiserver: 3 s).
const REVISION_WAIT: Duration = Duration::from_secs(3);

/// The generic store over a [`Store`].
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    /// Serves lists when present and fresh enough.
    cache: Option<WatchCache>,
    /// The cluster CA (PEM) published in every namespace as `kube-root-ca.crt`.
    root_ca: Option<Arc<str>>,
    /// The admission chain writes pass.
    admission: Arc<dyn Admission>,
    /// What runs after each write (quota usage).
    after_write: Arc<dyn AfterWrite>,
    /// Service cluster IPs and node ports.
    allocator: Arc<crate::alloc::Allocator>,
}

/// kube-apiserver's answer to a read of a revision the server has not reached.
pub fn too_large_rv(rv: Revision, current: Revision) -> ApiError {
    ApiError::new(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    )
}

/// Parses a resourceVersion string.
pub fn parse_rv(rv: &str) -> ApiResult<Revision> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version \"{rv}\"")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &[u8]) -> String {
    use base64::Engine;
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: String::from_utf8_lossy(last_key).into_owned(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<(Revision, Vec<u8>)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !t.start.starts_with(prefix) || t.rv <= 0 {
        return Err(bad());
    }
    Ok((t.rv, t.start.into_bytes()))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Registry {
        Registry {
            cache: None,
            root_ca: None,
            admission: Arc::new(crate::admit::Nothing),
            after_write: Arc::new(crate::admit::Nothing),
            allocator: Arc::new(crate::alloc::Allocator::new(
                store.clone(),
                Default::default(),
            )),
            store,
        }
    }

    /// Allocates Service IPs and node ports from `network`'s ranges.
    pub fn with_network(mut self, network: skiff_meta::netconf::ClusterNetwork) -> Registry {
        self.allocator = Arc::new(crate::alloc::Allocator::new(self.store.clone(), network));
        self
    }

    pub fn allocator(&self) -> &Arc<crate::alloc::Allocator> {
        &self.allocator
    }

    /// Hands the registry the admission chain its writes pass.
    pub fn with_admission(mut self, chain: Arc<dyn Admission>) -> Registry {
        self.admission = chain;
        self
    }

    /// Hands the registry what runs after each write.
    pub fn with_after_write(mut self, hook: Arc<dyn AfterWrite>) -> Registry {
        self.after_write = hook;
        self
    }

    /// Serves lists from `cache`.
    pub fn with_cache(mut self, cache: WatchCache) -> Registry {
        self.cache = Some(cache);
        self
    }

    pub fn cache(&self) -> Option<&WatchCache> {
        self.cache.as_ref()
    }

    /// Sets the CA certificate published as `kube-root-ca.crt`.
    pub fn with_root_ca(mut self, pem: &str) -> Registry {
        self.root_ca = Some(Arc::from(pem));
        self
    }

    pub fn root_ca(&self) -> Option<&str> {
        self.root_ca.as_deref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn err<'a>(res: &Resource, name: &'a str) -> impl FnOnce(skiff_store::Error) -> ApiError + 'a {
        let group = res.group;
        let plural = res.plural;
        move |e| ApiError::from_store(e, group, plural, name)
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let kv = self
            .store
            .get(key(res, ns, name).as_bytes())
            .await
            .map_err(Self::err(res, name))?
            .ok_or_else(|| ApiError::not_found(res.group, res.plural, name))?;
        decode_as(res, &kv)
    }

    /// The objects of `res` (in `ns`) that `opts` selects.
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let page = self.list_items(res, ns, opts).await?;
        Ok(ListPage {
            items: page.items.iter().map(|p| p.value()).collect(),
        })
    }

    /// [`Registry::list`] as shared items: from the watch cache when it can answer
    /// (no continue token, no exact revision, cache fresh enough), else from the store.
    pub async fn list_items(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ItemPage> {
        let prefix = prefix(res, ns);
        let mut revision_wait = REVISION_WAIT;
        let keep = |s: &Selectable| s.matches(&opts.labels, &opts.fields);
        // One node's pods come from the cache's node index.
        let node = opts
            .fields
            .terms
            .iter()
            .find(|(path, _, negated)| path == "spec.nodeName" && !negated)
            .map(|(_, v, _)| v.as_str());
        let page = |list: crate::watchcache::CachedList| {
            let continue_token = if list.more {
                list.items
                    .last()
                    .map(|p| encode_continue(list.revision, p.key.as_bytes()))
            } else {
                None
            };
            ItemPage {
                items: list.items,
                revision: list.revision,
                continue_token,
            }
        };
        match (&self.cache, &opts.continue_token, opts.exact_revision) {
            // A next page: from the snapshot the list's first page left in the cache, or
            // the cache's objects when none changed since the list's revision; else the
            // store, at that revision.
            (Some(cache), Some(token), None) => {
                let (rv, start) = decode_continue(token, &prefix)?;
                let start = String::from_utf8_lossy(&start);
                let from = Some((rv, start.as_ref()));
                if let Some(list) = cache.list(res, &prefix, node, keep, opts.limit, from) {
                    return Ok(page(list));
                }
            }
            (Some(cache), None, None) => {
                let (target, wait) = match opts.min_revision {
                    None => (
                        self.store
                            .current_revision()
                            .await
                            .map_err(|e| ApiError::from_store(e, res.group, res.plural, ""))?,
                        CONSISTENT_WAIT,
                    ),
                    Some(n) => (n, REVISION_WAIT),
                };
                if cache.wait_for(target, wait).await {
                    if let Some(list) = cache.list(res, &prefix, node, keep, opts.limit, None) {
                        return Ok(page(list));
                    }
                }
                // Already waited: the store gets one look.
                revision_wait = Duration::ZERO;
            }
            _ => {}
        }
        if let Some(rv) = opts.min_revision.filter(|r| *r > 0) {
            if opts.continue_token.is_none() && opts.exact_revision.is_none() {
                self.wait_for_store_revision(rv, revision_wait).await?;
            }
        }
        self.list_store(res, ns, opts).await
    }

    /// [`Registry::list_items`] read from the store.
    pub async fn list_store(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ItemPage> {
        let prefix = prefix(res, ns);
        let (mut revision, mut start_after) = match &opts.continue_token {
            Some(t) => {
                let (rv, start) = decode_continue(t, &prefix)?;
                (rv, Some(start))
            }
            None => (opts.exact_revision.unwrap_or(0), None),
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        loop {
            let want = if opts.limit > 0 {
                opts.limit - items.len()
            } else {
                0
            };
            let page = self
                .store
                .range(
                    prefix.as_bytes(),
                    RangeOptions {
                        limit: want,
                        start_after: start_after.clone(),
                        revision,
                    },
                )
                .await
                .map_err(|e| match e {
                    skiff_store::Error::Compacted { .. } if opts.continue_token.is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => ApiError::from_store(other, res.group, res.plural, ""),
                })?;
            revision = page.revision;
            for kv in &page.kvs {
                let obj = decode_as(res, kv)?;
                if opts.labels.matches_object(&obj) && opts.fields.matches_object(&obj) {
                    items.push(Arc::new(crate::watchcache::listed(
                        res,
                        &kv.key,
                        kv.mod_revision,
                        obj,
                    )));
                }
            }
            let last = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more || opts.limit == 0 {
                break;
            }
            if items.len() >= opts.limit {
                if let Some(last) = &last {
                    continue_token = Some(encode_continue(revision, last));
                }
                break;
            }
            start_after = last;
        }
        Ok(ItemPage {
            items,
            revision,
            continue_token,
        })
    }

    /// A read "not older than" `rv` that the cache cannot serve waits (up to 3 s) for the
    /// store to reach it, then answers 504 as kube-apiserver does.
    async fn wait_for_store_revision(&self, rv: Revision, wait: Duration) -> ApiResult<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = self
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            if current >= rv {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(too_large_rv(rv, current));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An object as the watch cache holds it now, without waiting for the cache to catch
    /// up (what kube-apiserver's admission plugins read from their informers); one the
    /// cache does not show (yet) is looked up in the store, as those plugins do.
    pub async fn get_cached(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<CachedObject> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|c| c.get(res, &key(res, ns, name)))
            .flatten();
        Ok(match cached {
            Some(p) => CachedObject::Shared(p.obj()),
            None => CachedObject::Owned(self.get(res, ns, name).await?),
        })
    }

    /// Checks that `ns` exists and is not terminating (for creates).
    async fn check_namespace(&self, ns: &str) -> ApiResult<()> {
        let Some(nsres) = lookup("", "v1", "namespaces") else {
            return Err(ApiError::internal("namespaces are not served"));
        };
        // The cache as it is, as kube-apiserver's NamespaceLifecycle reads its informer.
        let terminating = self
            .get_cached(nsres, None, ns)
            .await?
            .pointer("/metadata/deletionTimestamp")
            .is_some();
        if terminating {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Creates `obj` (already checked to be of `res`'s kind) in `ns`.
    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        self.create_as(res, ns, obj, dry_run, None).await
    }

    /// [`Registry::create`], recording `manager`'s fields in the managed fields.
    pub async fn create_as(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
        manager: Option<&crate::managed::Manager>,
    ) -> ApiResult<Value> {
        let p = self.create_prepared(res, ns, obj, dry_run, manager).await?;
        Ok(Arc::try_unwrap(p.obj()).unwrap_or_else(|o| (*o).clone()))
    }

    /// [`Registry::create_as`], answering the created object with its JSON (as the
    /// watch cache keeps it, which is handed the same). A name generated from
    /// `generateName` that is taken is generated again (RetryGenerateName).
    pub async fn create_prepared(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
        manager: Option<&crate::managed::Manager>,
    ) -> ApiResult<Arc<Prepared>> {
        let generated = name_of(&obj).is_empty()
            && obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty());
        retry_generated_name(generated, || {
            self.create_once(res, ns, obj.clone(), dry_run, manager)
        })
        .await
    }

    async fn create_once(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        manager: Option<&crate::managed::Manager>,
    ) -> ApiResult<Arc<Prepared>> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if obj.get("metadata").is_none_or(|m| !m.is_object()) {
            obj["metadata"] = json!({});
        }
        if rv_of(&obj).is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if res.namespaced {
            let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if name_of(&obj).is_empty() {
            if let Some(gen) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                if !gen.is_empty() {
                    obj["metadata"]["name"] = json!(generate_name(gen));
                }
            }
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        strategy::prepare_for_create(res, &mut obj);
        let name = name_of(&obj).to_string();
        let mut causes = crate::strategy::validate(res, &obj);
        causes.extend(strategy::validate_create(res, &obj));
        if !causes.is_empty() {
            return Err(ApiError::invalid(res.group, res.kind, &name, causes));
        }
        // The request's fields, defaults included, belong to its manager; what admission
        // adds afterwards (a pod's service-account volume, a Service's cluster IP) is
        // owned by no one, as in kube-apiserver.
        if let Some(m) = manager {
            crate::managed::record_update(res, None, &mut obj, m, None);
        }
        if let Some(ns) = ns.filter(|_| res.namespaced) {
            self.check_namespace(ns).await?;
        }
        self.admission.admit_create(self, res, &mut obj).await?;
        let strategy = crate::kinds::of(res);
        strategy.before_create(self, &mut obj).await?;
        strategy.allocate(self, None, &mut obj, dry_run).await?;
        let key = key(res, ns, &name);
        if dry_run {
            return Ok(Arc::new(crate::watchcache::listed(
                res,
                key.as_bytes(),
                0,
                obj,
            )));
        }
        let stored = match encode_as(res, &obj) {
            Ok(s) => s,
            Err(e) => {
                strategy.finish_allocation(self, None, &obj, false).await;
                return Err(e);
            }
        };
        // What to release if the store refuses the object.
        let allocated = strategy.allocates().then(|| obj.clone());
        // The watch cache takes the object as built here for this create's event.
        let cache = self
            .cache
            .as_ref()
            .filter(|_| !crate::convert::is_view(res));
        let slot = match cache {
            Some(c) => c
                .creating(res, key.clone(), stored.clone(), obj)
                .map(|p| (c, p)),
            None => Err(obj),
        };
        let rev = match self.store.create(key.as_bytes(), stored).await {
            Ok(rev) => rev,
            Err(e) => {
                if let Ok((c, p)) = &slot {
                    c.create_failed(p);
                }
                if let Some(obj) = &allocated {
                    strategy.finish_allocation(self, None, obj, false).await;
                }
                return Err(Self::err(res, &name)(e));
            }
        };
        let p = match slot {
            Ok((_, p)) => p.finish(rev),
            Err(mut obj) => {
                set_rv(&mut obj, rev);
                Arc::new(crate::watchcache::listed(res, key.as_bytes(), rev, obj))
            }
        };
        let created = p.obj();
        crate::kinds::of(res).after_create(self, &created).await?;
        self.after_write
            .after_write(
                self,
                res,
                ns.filter(|_| res.namespaced),
                None,
                Some(&created),
            )
            .await?;
        Ok(p)
    }
}

impl Registry {
    /// Read-modify-write of one object: `mutate` turns the current object into the desired
    /// one. A resourceVersion in the desired object is a precondition; without one the write
    /// is retried on conflicts (unconditional update).
    pub async fn update<F>(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        sub: Subresource,
        dry_run: bool,
        mutate: F,
    ) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value> + Send,
    {
        self.update_as(res, ns, name, sub, dry_run, None, mutate)
            .await
    }

    /// [`Registry::update`], recording the fields `manager` changes in the managed fields.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_as<F>(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        sub: Subresource,
        dry_run: bool,
        manager: Option<&crate::managed::Manager>,
        mut mutate: F,
    ) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value> + Send,
    {
        let key = key(res, ns, name);
        for _attempt in 0..16 {
            let kv = self
                .store
                .get(key.as_bytes())
                .await
                .map_err(Self::err(res, name))?
                .ok_or_else(|| ApiError::not_found(res.group, res.plural, name))?;
            let old = decode_as(res, &kv)?;
            let mut new = mutate(&old)?;
            if !new.is_object() {
                return Err(ApiError::bad_request("the body must be a JSON object"));
            }
            let precondition = match rv_of(&new) {
                Some(rv) => Some(parse_rv(rv).map_err(|_| {
                    ApiError::invalid(
                        res.group,
                        res.kind,
                        name,
                        vec![Cause::invalid(
                            "metadata.resourceVersion",
                            rv,
                            "must be a valid resource version",
                        )],
                    )
                })?),
                None => None,
            };
            if precondition.is_some_and(|p| p != kv.mod_revision) {
                return Err(ApiError::conflict(res.group, res.plural, name));
            }
            // Identity checks: the body may not move the object.
            let body_name = name_of(&new);
            if !body_name.is_empty() && body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            if let Some(body_ns) = new.pointer("/metadata/namespace").and_then(Value::as_str) {
                if res.namespaced && !body_ns.is_empty() && Some(body_ns) != ns {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
            if let Some(kind) = new.get("kind").and_then(Value::as_str) {
                if !kind.is_empty() && kind != res.kind {
                    return Err(ApiError::bad_request(format!(
                        "the kind of the body ({kind}) is not {}",
                        res.kind
                    )));
                }
            }
            if new.get("metadata").is_none_or(|m| !m.is_object()) {
                new["metadata"] = json!({});
            }
            new["metadata"]["name"] = json!(name);
            if res.namespaced {
                new["metadata"]["namespace"] = json!(ns.unwrap_or_default());
            }
            new["apiVersion"] = json!(res.api_version());
            new["kind"] = json!(res.kind);
            strategy::prepare_for_update(res, &old, &mut new, sub);
            if sub == Subresource::Main {
                crate::kinds::of(res)
                    .before_update(self, &old, &mut new)
                    .await?;
            }
            if let Some(m) = manager {
                let subresource = m.subresource.or(sub.managed_name());
                crate::managed::record_update(res, Some(&old), &mut new, m, subresource);
            }
            let mut causes = crate::strategy::validate(res, &new);
            causes.extend(strategy::validate_update(res, &old, &new, sub));
            if !causes.is_empty() {
                return Err(ApiError::invalid(res.group, res.kind, name, causes));
            }
            set_rv(&mut new, kv.mod_revision);
            if new == old {
                return Ok(old);
            }
            // Status and other subresources never add to what quotas count (and pod
            // status writes are the busiest updates).
            if sub == Subresource::Main && new.pointer("/metadata/deletionTimestamp").is_none() {
                self.admission.admit_update(self, res, &old, &new).await?;
            } else if sub != Subresource::Main {
                self.admission
                    .admit_subresource(self, res, sub, &old, &new)
                    .await?;
            }
            let strategy = crate::kinds::of(res);
            // A pending deletion completes once the last finalizer is gone.
            if deletion_can_finish(res, &new) {
                if dry_run {
                    return Ok(new);
                }
                match self
                    .store
                    .delete(key.as_bytes(), Some(kv.mod_revision))
                    .await
                {
                    Ok(_) => {
                        strategy.after_delete(self, &old).await?;
                        return Ok(new);
                    }
                    Err(skiff_store::Error::Conflict { .. }) if precondition.is_none() => continue,
                    Err(e) => return Err(Self::err(res, name)(e)),
                }
            }
            if sub == Subresource::Main {
                strategy
                    .allocate(self, Some(&old), &mut new, dry_run)
                    .await?;
            }
            if dry_run {
                return Ok(new);
            }
            let written = match encode_as(res, &new) {
                Ok(bytes) => {
                    self.store
                        .update(key.as_bytes(), bytes, Some(kv.mod_revision))
                        .await
                }
                Err(e) => {
                    if sub == Subresource::Main {
                        strategy
                            .finish_allocation(self, Some(&old), &new, false)
                            .await;
                    }
                    return Err(e);
                }
            };
            if sub == Subresource::Main {
                strategy
                    .finish_allocation(self, Some(&old), &new, written.is_ok())
                    .await;
            }
            match written {
                Ok(rev) => {
                    set_rv(&mut new, rev);
                    self.after_write
                        .after_write(self, res, ns, Some(&old), Some(&new))
                        .await?;
                    return Ok(new);
                }
                Err(skiff_store::Error::Conflict { .. }) if precondition.is_none() => continue,
                Err(e) => return Err(Self::err(res, name)(e)),
            }
        }
        Err(ApiError::conflict(res.group, res.plural, name))
    }

    /// Deletes one object as the real server does: finalizers and graceful pod deletion
    /// leave it in place with `deletionTimestamp` set.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = key(res, ns, name);
        for _attempt in 0..16 {
            let kv = self
                .store
                .get(key.as_bytes())
                .await
                .map_err(Self::err(res, name))?
                .ok_or_else(|| ApiError::not_found(res.group, res.plural, name))?;
            let mut obj = decode_as(res, &kv)?;
            let uid = obj
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(want) = &opts.precondition_uid {
                if *want != uid {
                    return Err(ApiError::new(409, "Conflict", format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {uid}",
                        res.plural
                    )));
                }
            }
            if let Some(want) = &opts.precondition_resource_version {
                if *want != kv.mod_revision.to_string() {
                    return Err(ApiError::new(409, "Conflict", format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                        res.plural, kv.mod_revision
                    )));
                }
            }
            let mut finalizers: Vec<Value> = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let add = match opts.propagation_policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Background") | None => None,
                Some(other) => {
                    return Err(ApiError::invalid(res.group, res.kind, name, vec![Cause {
                        reason: "FieldValueNotSupported",
                        field: "propagationPolicy".into(),
                        message: format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""),
                    }]))
                }
            };
            if let Some(f) = add {
                if !finalizers.iter().any(|x| x == f) {
                    finalizers.push(json!(f));
                }
            }
            let already = obj.pointer("/metadata/deletionTimestamp").is_some();
            let strategy = crate::kinds::of(res);
            let waits = strategy.deletion_waits(&obj);
            let grace = strategy.deletion_grace(&obj, opts.grace_period_seconds);
            if !finalizers.is_empty() || waits || grace.is_some() {
                let mut changed = false;
                if !already {
                    let grace = grace.unwrap_or(0);
                    let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                    obj["metadata"]["deletionTimestamp"] =
                        json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                    obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                    if res.generation {
                        let gen = obj
                            .pointer("/metadata/generation")
                            .and_then(Value::as_i64)
                            .unwrap_or(1);
                        obj["metadata"]["generation"] = json!(gen + 1);
                    }
                    strategy.deletion_started(&mut obj);
                    changed = true;
                }
                if obj
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
                    != finalizers.len()
                {
                    obj["metadata"]["finalizers"] = Value::Array(finalizers);
                    changed = true;
                }
                if !changed || opts.dry_run {
                    return Ok(Deleted {
                        object: obj,
                        removed: false,
                    });
                }
                match self
                    .store
                    .update(key.as_bytes(), encode_as(res, &obj)?, Some(kv.mod_revision))
                    .await
                {
                    Ok(rev) => {
                        set_rv(&mut obj, rev);
                        return Ok(Deleted {
                            object: obj,
                            removed: false,
                        });
                    }
                    Err(skiff_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(Self::err(res, name)(e)),
                }
            }
            if opts.dry_run {
                return Ok(Deleted {
                    object: obj,
                    removed: true,
                });
            }
            match self
                .store
                .delete(key.as_bytes(), Some(kv.mod_revision))
                .await
            {
                Ok(_) => {
                    crate::kinds::of(res).after_delete(self, &obj).await?;
                    self.after_write
                        .after_write(self, res, ns.filter(|_| res.namespaced), Some(&obj), None)
                        .await?;
                    return Ok(Deleted {
                        object: obj,
                        removed: true,
                    });
                }
                Err(skiff_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(Self::err(res, name)(e)),
            }
        }
        Err(ApiError::conflict(res.group, res.plural, name))
    }

    /// Creates `obj` unless an object of that name exists (bootstrap).
    pub async fn ensure(&self, res: &Resource, ns: Option<&str>, obj: Value) -> ApiResult<()> {
        match self.get(res, ns, name_of(&obj)).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        match self.create(res, ns, obj, false).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn deletion_can_finish(res: &Resource, obj: &Value) -> bool {
    if obj.pointer("/metadata/deletionTimestamp").is_none() {
        return false;
    }
    if obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return false;
    }
    crate::kinds::of(res).deletion_can_finish(obj)
}

/// The longest `generateName` prefix kept: a generated name fits a DNS label (63) with
/// its 5 random characters (names.SimpleNameGenerator).
pub const MAX_GENERATED_NAME_PREFIX: usize = 63 - 5;

/// A name from the `generateName` prefix `base`: cut to [`MAX_GENERATED_NAME_PREFIX`]
/// characters, then 5 random ones.
pub fn generate_name(base: &str) -> String {
    let mut cut = base.len().min(MAX_GENERATED_NAME_PREFIX);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], strategy::random_suffix())
}

/// How many times a create with a generated name is tried while the names it draws are
/// taken (kube-apiserver's maxNameGenerationCreateAttempts).
pub const GENERATED_NAME_ATTEMPTS: usize = 8;

/// Runs `create` once, or, when the name is `generated`, again (each attempt drawing a
/// new name) while it fails with AlreadyExists, up to [`GENERATED_NAME_ATTEMPTS`] times.
pub async fn retry_generated_name<T, F, Fut>(generated: bool, mut create: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<T>>,
{
    let attempts = if generated {
        GENERATED_NAME_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        match create().await {
            Err(e) if e.reason == "AlreadyExists" => last = Some(e),
            r => return r,
        }
    }
    Err(last.unwrap_or_else(|| ApiError::new(500, "InternalError", "no create attempted")))
}

#[async_trait::async_trait]
impl Objects for Registry {
    async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        Registry::get(self, res, ns, name).await
    }
    async fn get_cached(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<CachedObject> {
        Registry::get_cached(self, res, ns, name).await
    }
    async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        Registry::list(self, res, ns, opts).await
    }
    async fn ensure(&self, res: &Resource, ns: Option<&str>, obj: Value) -> ApiResult<()> {
        Registry::ensure(self, res, ns, obj).await
    }
    async fn write_status(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        status: Value,
    ) -> ApiResult<()> {
        self.update(res, ns, name, Subresource::Status, false, |old| {
            let mut new = skiff_meta::object::without_rv(old);
            new["status"] = status.clone();
            Ok(new)
        })
        .await
        .map(|_| ())
    }
    fn root_ca(&self) -> Option<&str> {
        Registry::root_ca(self)
    }
    fn allocator(&self) -> &dyn crate::admit::Allocations {
        self.allocator.as_ref()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_fit_a_label() {
        let long = "d".repeat(70);
        let n = super::generate_name(&format!("{long}-"));
        assert_eq!(n.len(), 63);
        assert!(n.starts_with(&"d".repeat(58)));
        let n = super::generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
    }

    #[tokio::test]
    async fn a_generated_name_that_is_taken_is_generated_again() {
        use crate::error::ApiError;
        let taken = || ApiError::new(409, "AlreadyExists", "taken");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let attempt = |fails: usize| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n < fails {
                    Err(taken())
                } else {
                    Ok(n)
                }
            }
        };
        // Taken three times, then free.
        let r = super::retry_generated_name(true, || attempt(3)).await;
        assert_eq!(r.ok(), Some(3));
        // Always taken: eight attempts, then the AlreadyExists.
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r = super::retry_generated_name(true, || attempt(100)).await;
        assert_eq!(r.err().map(|e| e.reason), Some("AlreadyExists"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 8);
        // A name the client chose is not retried.
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r = super::retry_generated_name(false, || attempt(100)).await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Nor is another error.
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r: Result<usize, _> =
            super::retry_generated_name(true, || async { Err(ApiError::new(422, "Invalid", "x")) })
                .await;
        assert_eq!(r.err().map(|e| e.code), Some(422));
    }
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, b"/registry/core/pods/default/a");
        let (rv, start) = decode_continue(&t, "/registry/core/pods/").unwrap();
        assert_eq!(rv, 42);
        assert_eq!(start, b"/registry/core/pods/default/a");
        assert!(decode_continue(&t, "/registry/core/secrets/").is_err());
        assert!(decode_continue("garbage!", "/registry/").is_err());
    }
}
