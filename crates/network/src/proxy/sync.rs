//! The proxier: desired rules from a snapshot, diffed against what was applied, as one
//! atomic transaction per sync. A full sync replaces the table's content in place (the
//! table itself is never deleted); a partial sync rewrites only the chains, sets and
//! map elements of the Services named as changed, and deletes what they no longer use.

use super::model::{self, Snapshot};
use super::rules::{self, RuleSettings, ServiceRules, UdpTarget};
use crate::conntrack::Conntrack;
use crate::nft::{Backend, NftError, Object, SetSpec, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStats {
    pub full: bool,
    /// Services written (all of them on a full sync).
    pub services: usize,
    /// Commands in the transaction (0: nothing to do, nothing applied).
    pub commands: usize,
    pub elapsed: Duration,
}

const TABLE_COMMENT: &str = "skiff node agent: services";

pub struct Proxier<B: Backend> {
    backend: B,
    conntrack: Option<Conntrack>,
    settings: RuleSettings,
    /// Per Service key, what the kernel holds (exact after every successful sync).
    applied: BTreeMap<String, ServiceRules>,
    need_full: bool,
}

fn chain(name: &str) -> Object {
    Object::Chain {
        name: name.to_string(),
        base: None,
    }
}

fn element(set: &str, key: &str, value: Option<&String>) -> Object {
    Object::Element {
        set: set.to_string(),
        map: value.is_some(),
        key: key.to_string(),
        value: value.cloned(),
    }
}

fn write_rules(tx: &mut Transaction, name: &str, rules: &[String]) {
    for r in rules {
        tx.add(Object::Rule {
            chain: name.to_string(),
            rule: r.clone(),
        });
    }
}

/// The full-sync transaction: the skeleton and every Service's objects, maps and sets
/// flushed and refilled, and the per-Service chains and affinity sets the kernel holds
/// (`existing_*`) but `desired` does not deleted.
pub fn plan_full(
    s: &RuleSettings,
    desired: &BTreeMap<String, ServiceRules>,
    existing_chains: &[String],
    existing_sets: &[String],
) -> Transaction {
    let mut tx = Transaction::new(&s.table);
    tx.add(Object::Table {
        comment: Some(TABLE_COMMENT.to_string()),
    });
    let sets = rules::skeleton_sets();
    for set in &sets {
        tx.add(Object::Set(set.clone()));
    }
    let wanted_sets: BTreeMap<&String, u32> = desired
        .values()
        .flat_map(|r| r.sets.iter().map(|(n, t)| (n, *t)))
        .collect();
    for (name, timeout) in &wanted_sets {
        tx.add(Object::Set(rules::affinity_spec(name, *timeout)));
    }
    let fixed = rules::skeleton_chains(s);
    for c in &fixed {
        tx.add(Object::Chain {
            name: c.name.clone(),
            base: c.base.clone(),
        });
    }
    let svc_chains: BTreeMap<&String, &Vec<String>> =
        desired.values().flat_map(|r| r.chains.iter()).collect();
    for name in svc_chains.keys() {
        tx.add(chain(name));
    }
    for c in &fixed {
        tx.flush(chain(&c.name));
        write_rules(&mut tx, &c.name, &c.rules);
    }
    for (name, rules) in &svc_chains {
        tx.flush(chain(name));
        write_rules(&mut tx, name, rules);
    }
    for set in &sets {
        tx.flush(Object::Set(set.clone()));
    }
    for r in desired.values() {
        for ((set, key), value) in &r.elements {
            tx.add(element(set, key, value.as_ref()));
        }
    }
    let stale: Vec<&String> = existing_chains
        .iter()
        .filter(|c| rules::is_service_chain(c) && !svc_chains.contains_key(c))
        .collect();
    for c in &stale {
        tx.flush(chain(c));
    }
    for c in &stale {
        tx.delete(chain(c));
    }
    for set in existing_sets {
        if rules::is_affinity_set(set) && !wanted_sets.contains_key(set) {
            tx.delete(Object::Set(rules::affinity_spec(set, 0)));
        }
        // An earlier version's maps, no longer referenced once the skeleton's chains
        // are refilled above.
        if rules::OLD_NO_ENDPOINT_MAPS.contains(&set.as_str()) {
            tx.delete(Object::Set(SetSpec {
                name: set.clone(),
                key_type: String::new(),
                value_type: Some("verdict".into()),
                flags: None,
                timeout: None,
                comment: None,
            }));
        }
    }
    tx
}

/// The partial-sync transaction for `changes` (Service key → its new objects, empty when
/// the Service is gone) given what is `applied`.
pub fn plan_partial(
    s: &RuleSettings,
    applied: &BTreeMap<String, ServiceRules>,
    changes: &BTreeMap<String, ServiceRules>,
) -> Transaction {
    let mut tx = Transaction::new(&s.table);
    let empty = ServiceRules::default();
    let pairs: Vec<(&ServiceRules, &ServiceRules)> = changes
        .iter()
        .map(|(k, new)| (applied.get(k).unwrap_or(&empty), new))
        .collect();
    // Sets first (rules refer to them), then chains, rules, elements, and last what is
    // no longer referenced.
    let mut retimed: Vec<SetSpec> = Vec::new();
    for (old, new) in &pairs {
        for (name, timeout) in &new.sets {
            match old.sets.get(name) {
                None => tx.add(Object::Set(rules::affinity_spec(name, *timeout))),
                Some(t) if t != timeout => retimed.push(rules::affinity_spec(name, *timeout)),
                Some(_) => {}
            }
        }
    }
    let mut written: Vec<(&String, &Vec<String>)> = Vec::new();
    for (old, new) in &pairs {
        let retime = new
            .sets
            .keys()
            .any(|n| retimed.iter().any(|r| &r.name == n));
        for (name, rules) in &new.chains {
            if retime || old.chains.get(name) != Some(rules) {
                written.push((name, rules));
            }
        }
    }
    for (name, _) in &written {
        tx.add(chain(name));
    }
    for (name, _) in &written {
        tx.flush(chain(name));
    }
    for set in &retimed {
        tx.delete(Object::Set(set.clone()));
        tx.add(Object::Set(set.clone()));
    }
    for (name, rules) in &written {
        write_rules(&mut tx, name, rules);
    }
    for (old, new) in &pairs {
        for ((set, key), value) in &old.elements {
            match new.elements.get(&(*set, key.clone())) {
                Some(v) if v == value => {}
                _ => tx.delete(element(set, key, value.as_ref())),
            }
        }
    }
    for (old, new) in &pairs {
        for ((set, key), value) in &new.elements {
            if old.elements.get(&(*set, key.clone())) != Some(value) {
                tx.add(element(set, key, value.as_ref()));
            }
        }
    }
    let mut gone = Vec::new();
    for (old, new) in &pairs {
        gone.extend(old.chains.keys().filter(|c| !new.chains.contains_key(*c)));
    }
    for c in &gone {
        tx.flush(chain(c));
    }
    for c in &gone {
        tx.delete(chain(c));
    }
    for (old, new) in &pairs {
        for (name, t) in &old.sets {
            if !new.sets.contains_key(name) {
                tx.delete(Object::Set(rules::affinity_spec(name, *t)));
            }
        }
    }
    tx
}

/// The UDP flows to delete when a Service goes from `old` to `new`: (vip, port, only
/// those DNAT'd to this endpoint).
pub fn stale_udp(
    old: &[UdpTarget],
    new: &[UdpTarget],
) -> Vec<(UdpTarget, Option<std::net::Ipv4Addr>)> {
    let mut out = Vec::new();
    for o in old {
        let now = new.iter().find(|n| n.vip == o.vip && n.port == o.port);
        for ep in &o.endpoints {
            if now.is_none_or(|n| !n.endpoints.contains(ep)) {
                out.push((o.clone(), Some(*ep)));
            }
        }
    }
    for n in new {
        let before = old.iter().find(|o| o.vip == n.vip && o.port == n.port);
        if !n.endpoints.is_empty() && before.is_none_or(|o| o.endpoints.is_empty()) {
            out.push((n.clone(), None));
        }
    }
    out
}

/// Map elements are keyed by address, protocol and port; two Services claiming the same
/// key (say, one external IP and port on both) would make the transaction fail. The
/// first claim wins: a Service in `keep` (applied and unchanged) before those in
/// `desired`, which are taken in key order. The losers' elements are left out, logged.
pub fn drop_conflicts(
    desired: &mut BTreeMap<String, ServiceRules>,
    keep: &BTreeMap<String, ServiceRules>,
) {
    let mut owner: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    for (k, r) in keep {
        if desired.contains_key(k) {
            continue;
        }
        for (e, v) in &r.elements {
            if rules::is_exclusive(e.0, v.as_ref()) {
                owner.insert(e.clone(), k.clone());
            }
        }
    }
    for (k, r) in desired.iter_mut() {
        r.elements.retain(|e, v| {
            if !rules::is_exclusive(e.0, v.as_ref()) {
                return true;
            }
            match owner.get(e) {
                Some(o) if o != k => {
                    tracing::warn!(service = %k, owner = %o, map = e.0, key = %e.1, "another Service has this address and port; ignored");
                    false
                }
                _ => {
                    owner.insert(e.clone(), k.clone());
                    true
                }
            }
        });
    }
}

impl<B: Backend> Proxier<B> {
    pub fn new(backend: B, settings: RuleSettings) -> Self {
        Proxier {
            backend,
            conntrack: None,
            settings,
            applied: BTreeMap::new(),
            need_full: true,
        }
    }

    /// Deletes UDP flows to endpoints that went away (with the `conntrack` tool).
    pub fn with_conntrack(mut self, conntrack: Conntrack) -> Self {
        self.conntrack = Some(conntrack);
        self
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    /// The next sync is a full one.
    pub fn request_full_sync(&mut self) {
        self.need_full = true;
    }

    pub fn needs_full_sync(&self) -> bool {
        self.need_full
    }

    /// Installs the skeleton (every fixed chain, the service-range reject, empty maps)
    /// when the table is missing; a table left by an earlier run is left as it is until
    /// the first full sync replaces its content. True when it installed.
    pub fn ensure_skeleton(&self) -> Result<bool, SyncError> {
        if self.backend.table_exists(&self.settings.table)? {
            return Ok(false);
        }
        let tx = plan_full(&self.settings, &BTreeMap::new(), &[], &[]);
        self.backend.apply(&tx)?;
        Ok(true)
    }

    fn desired(
        &self,
        snap: &Snapshot,
        only: Option<&BTreeSet<String>>,
    ) -> BTreeMap<String, ServiceRules> {
        model::build(snap, &self.settings.node_name, only)
            .into_iter()
            .map(|(k, ports)| (k, rules::service_rules(&ports, &self.settings)))
            .collect()
    }

    /// A full sync if one is due (the first, or after a failure), else a partial one of
    /// the `changed` Service keys.
    pub fn sync(
        &mut self,
        snap: &Snapshot,
        changed: &BTreeSet<String>,
    ) -> Result<SyncStats, SyncError> {
        if self.need_full {
            self.full_sync(snap)
        } else {
            self.partial_sync(snap, changed)
        }
    }

    pub fn full_sync(&mut self, snap: &Snapshot) -> Result<SyncStats, SyncError> {
        let start = Instant::now();
        self.need_full = true;
        let mut desired = self.desired(snap, None);
        drop_conflicts(&mut desired, &BTreeMap::new());
        let table = &self.settings.table;
        let (chains, sets) = if self.backend.table_exists(table)? {
            (
                self.backend.list_chains(table)?,
                self.backend.list_sets(table)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let tx = plan_full(&self.settings, &desired, &chains, &sets);
        self.backend.apply(&tx)?;
        self.need_full = false;
        let old = std::mem::replace(&mut self.applied, desired);
        let keys: BTreeSet<&String> = old.keys().chain(self.applied.keys()).collect();
        let empty = ServiceRules::default();
        for k in keys {
            let (o, n) = (
                old.get(k).unwrap_or(&empty),
                self.applied.get(k).unwrap_or(&empty),
            );
            self.clear_conntrack(&o.udp, &n.udp);
        }
        Ok(SyncStats {
            full: true,
            services: self.applied.len(),
            commands: tx.len(),
            elapsed: start.elapsed(),
        })
    }

    pub fn partial_sync(
        &mut self,
        snap: &Snapshot,
        changed: &BTreeSet<String>,
    ) -> Result<SyncStats, SyncError> {
        let start = Instant::now();
        let mut desired = self.desired(snap, Some(changed));
        for k in changed {
            desired.entry(k.clone()).or_default();
        }
        drop_conflicts(&mut desired, &self.applied);
        let tx = plan_partial(&self.settings, &self.applied, &desired);
        if !tx.is_empty() {
            if let Err(e) = self.backend.apply(&tx) {
                self.need_full = true;
                return Err(e.into());
            }
        }
        let empty = ServiceRules::default();
        for (k, new) in desired {
            let old = self.applied.remove(&k).unwrap_or_default();
            self.clear_conntrack(&old.udp, &new.udp);
            if new != empty {
                self.applied.insert(k, new);
            }
        }
        Ok(SyncStats {
            full: false,
            services: changed.len(),
            commands: tx.len(),
            elapsed: start.elapsed(),
        })
    }

    fn clear_conntrack(&self, old: &[UdpTarget], new: &[UdpTarget]) {
        let Some(ct) = &self.conntrack else { return };
        for (t, ep) in stale_udp(old, new) {
            ct.clear_udp(t.vip, t.port, ep);
        }
    }
}

#[cfg(test)]
mod tests;
