//! The served resources, in discovery order, and their lookups. Each is a row of
//! `kinds::TABLE`, beside its kind's strategy (defaults, validation, allocation, table
//! columns): adding a built-in kind is its file in `kinds/` and that one row.

pub use crate::resource::{NameRule, Resource};

/// How many resources are served.
const SERVED_COUNT: usize = crate::kinds::TABLE.len();

/// The resources of `kinds::TABLE`, copied out of it at compile time.
static SERVED: [Resource; SERVED_COUNT] = {
    let mut out = [crate::kinds::TABLE[0].0; SERVED_COUNT];
    let mut i = 0;
    while i < SERVED_COUNT {
        out[i] = crate::kinds::TABLE[i].0;
        i += 1;
    }
    out
};

/// Every served resource. Order within a group-version is discovery order.
pub static RESOURCES: &[Resource] = &SERVED;

/// The API groups other than core, in discovery order, each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version)
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group-version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Looks up a resource by group, version and plural.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for r in RESOURCES {
            assert!(
                seen.insert((r.group, r.version, r.plural)),
                "duplicate {}",
                r.plural
            );
            assert_eq!(r.singular, r.kind.to_lowercase());
        }
        assert!(lookup("apps", "v1", "deployments").is_some_and(|r| r.scale));
        assert!(groups().iter().any(|(g, _)| *g == "batch"));
    }
}
