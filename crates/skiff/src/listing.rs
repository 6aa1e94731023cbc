//! Which containers a listing shows: docker's `ps` filters (`id`, `name`, `label`,
//! `status`, `exited`, `ancestor`, `before`, `since`), `--all` and `--last`, newest
//! first. `skiff ps` and the Docker API's `GET /containers/json` both list through it.
//! Likewise [`ImageFilters`]: docker's image filters (`dangling`, `label`,
//! `reference`, `before`, `since`), for `skiff images` and `GET /images/json`, and
//! [`VolumeFilters`] (`dangling`, `driver`, `label`, `name`), for `skiff volume ls` and
//! `GET /volumes`, and [`NetworkFilters`] (`dangling`, `driver`, `id`, `label`, `name`,
//! `scope`, `type`), for `skiff network ls` and `GET /networks`.

use skiff_engine::{Container, Status};

/// Why a listing was refused.
#[derive(Debug)]
pub enum FilterError {
    /// A filter docker would refuse, or one skiff cannot answer faithfully.
    Invalid(String),
    /// `before`/`since` name a container that is not there.
    NoSuchContainer(String),
    /// `before`/`since` name an image that is not there.
    NoSuchImage(String),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Invalid(m) => f.write_str(m),
            FilterError::NoSuchContainer(c) => write!(f, "No such container: {c}"),
            FilterError::NoSuchImage(i) => write!(f, "No such image: {i}"),
        }
    }
}

impl std::error::Error for FilterError {}

/// What a listing asks for.
#[derive(Debug, Default)]
pub struct Listing {
    /// Stopped containers too.
    pub all: bool,
    /// At most this many, the newest (docker's `--last`; implies `all`).
    pub limit: Option<usize>,
    /// (name, value) pairs: ANDed across names, ORed within one (labels: all must
    /// match), as docker's.
    pub filters: Vec<(String, String)>,
}

impl Listing {
    /// The containers of `cs` this listing shows, newest first.
    pub fn select(&self, mut cs: Vec<Container>) -> Result<Vec<Container>, FilterError> {
        // A bad filter is an error even when no container would be asked about it.
        for (n, v) in &self.filters {
            check(n, v, &cs)?;
        }
        cs.sort_by_key(|c| std::cmp::Reverse(unix_time_ns(&c.record.created)));
        let mut by_name: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (n, v) in &self.filters {
            by_name.entry(n.as_str()).or_default().push(v.as_str());
        }
        // A status or exited filter (or a limit) shows stopped containers too.
        let show_all = self.all
            || self.limit.is_some()
            || by_name.contains_key("status")
            || by_name.contains_key("exited");
        let mut out = Vec::new();
        for c in &cs {
            if self.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            if !show_all && !c.state.status.is_active() {
                continue;
            }
            let mut keep = true;
            for (name, values) in &by_name {
                let mut hits = 0;
                for v in values {
                    hits += usize::from(passes(c, name, v, &cs)?);
                }
                keep &= if *name == "label" {
                    hits == values.len()
                } else {
                    hits > 0
                };
            }
            if keep {
                out.push(c.clone());
            }
        }
        Ok(out)
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time (0 if it is not one).
pub fn unix_time_ns(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .unwrap_or(0)
}

const STATES: [&str; 7] = [
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

/// Refuses a filter docker would refuse (unknown name, bad value, unknown container
/// for before/since) or one skiff cannot answer faithfully.
pub fn check(name: &str, value: &str, all: &[Container]) -> Result<(), FilterError> {
    match name {
        "id" | "label" | "ancestor" => Ok(()),
        "name" => {
            let core = value
                .trim_start_matches('/')
                .trim_start_matches('^')
                .trim_end_matches('$');
            if core.chars().any(|ch| "*+?()[]{}|\\".contains(ch)) {
                return Err(FilterError::Invalid(format!(
                    "name filter {value:?}: only plain names with ^ and $ anchors are supported"
                )));
            }
            Ok(())
        }
        "status" if STATES.contains(&value) => Ok(()),
        "status" => Err(FilterError::Invalid(format!(
            "invalid filter 'status={value}': must be one of {}",
            STATES.join(", ")
        ))),
        "exited" => value
            .parse::<i32>()
            .map(|_| ())
            .map_err(|_| FilterError::Invalid(format!("invalid filter 'exited={value}'"))),
        "before" | "since" => all
            .iter()
            .any(|o| o.record.id.starts_with(value) || o.record.name == value)
            .then_some(())
            .ok_or_else(|| FilterError::NoSuchContainer(value.to_string())),
        other => Err(FilterError::Invalid(format!("invalid filter '{other}'"))),
    }
}

/// Whether `c` passes one of docker's container list filters (checked by [`check`]).
fn passes(c: &Container, name: &str, value: &str, all: &[Container]) -> Result<bool, FilterError> {
    let r = &c.record;
    Ok(match name {
        "id" => r.id.starts_with(value),
        // docker matches the name as a regular expression; [`check`] lets through
        // only plain names and ^/$ anchors.
        "name" => {
            let v = value.trim_start_matches('/');
            let core = v.trim_start_matches('^').trim_end_matches('$');
            match (v.starts_with('^'), v.ends_with('$')) {
                (true, true) => r.name == core,
                (true, false) => r.name.starts_with(core),
                (false, true) => r.name.ends_with(core),
                (false, false) => r.name.contains(core),
            }
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => r.labels.get(k).is_some_and(|x| x == v),
            None => r.labels.contains_key(value),
        },
        "status" => c.state.status.as_str() == value,
        "exited" => c.state.status == Status::Exited && value.parse() == Ok(c.state.exit_code),
        "ancestor" => {
            r.image == value
                || r.image_id == value
                || r.image_id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| !value.is_empty() && h.starts_with(value))
                || skiff_image::normalize_reference(value)
                    .ok()
                    .zip(skiff_image::normalize_reference(&r.image).ok())
                    .is_some_and(|(a, b)| a == b)
        }
        "before" | "since" => {
            let other = all
                .iter()
                .find(|o| o.record.id.starts_with(value) || o.record.name == value)
                .ok_or_else(|| FilterError::NoSuchContainer(value.to_string()))?;
            let (mine, theirs) = (
                unix_time_ns(&r.created),
                unix_time_ns(&other.record.created),
            );
            if name == "before" {
                mine < theirs
            } else {
                mine > theirs
            }
        }
        other => return Err(FilterError::Invalid(format!("invalid filter '{other}'"))),
    })
}

/// `--filter name=value` flags as (name, value) pairs; a flag without `=` is refused
/// with docker's message.
pub fn parse_filters(flags: &[String]) -> Result<Vec<(String, String)>, String> {
    flags
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))
        })
        .collect()
}

/// A `dangling` filter's value.
fn dangling(value: &str) -> Result<bool, FilterError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FilterError::Invalid(format!(
            "invalid filter 'dangling={value}'"
        ))),
    }
}

/// A `label` filter's value: a key, or a key and the value it must have.
fn label(value: &str) -> (String, Option<String>) {
    match value.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (value.to_string(), None),
    }
}

/// A volume or network `name` filter: docker matches it as a regular expression;
/// skiff takes plain substrings and refuses what would need more.
fn plain_name(value: &str) -> Result<String, FilterError> {
    if value.chars().any(|c| "*+?()[]{}|\\^$".contains(c)) {
        return Err(FilterError::Invalid(format!(
            "name filter {value:?}: only plain names are supported"
        )));
    }
    Ok(value.to_string())
}

/// Whether `labels` have every wanted label (and value, where one is given).
fn labels_match(
    want: &[(String, Option<String>)],
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.iter().all(|(k, v)| {
        labels
            .get(k)
            .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
    })
}

/// docker's image list filters, checked once and then applied to each image: names
/// are ANDed; several `reference`s are ORed, several `label`s must all match.
pub struct ImageFilters {
    dangling: Option<bool>,
    labels: Vec<(String, Option<String>)>,
    references: Vec<String>,
    /// Created strictly before / after these images' creation times.
    before: Option<i64>,
    since: Option<i64>,
}

impl ImageFilters {
    /// Checks `filters` as docker does (unknown names, bad values, unknown images for
    /// before/since are refused); `images` are every image, for before/since.
    pub fn new(
        filters: &[(String, String)],
        images: &[skiff_image::Image],
    ) -> Result<ImageFilters, FilterError> {
        let mut f = ImageFilters {
            dangling: None,
            labels: Vec::new(),
            references: Vec::new(),
            before: None,
            since: None,
        };
        let created = |value: &str| -> Result<i64, FilterError> {
            if value.is_empty() {
                return Err(FilterError::NoSuchImage(String::new()));
            }
            let want = skiff_image::normalize_reference(value).ok();
            images
                .iter()
                .find(|i| {
                    i.id == value
                        || i.id.trim_start_matches("sha256:").starts_with(value)
                        || want.as_ref().is_some_and(|w| i.names.contains(w))
                })
                .map(|i| unix_time_ns(i.config.created.as_deref().unwrap_or_default()))
                .ok_or_else(|| FilterError::NoSuchImage(value.to_string()))
        };
        for (name, value) in filters {
            match name.as_str() {
                "dangling" => f.dangling = Some(dangling(value)?),
                "label" => f.labels.push(label(value)),
                "reference" => f.references.push(value.clone()),
                "before" => f.before = Some(created(value)?),
                "since" => f.since = Some(created(value)?),
                other => return Err(FilterError::Invalid(format!("invalid filter '{other}'"))),
            }
        }
        Ok(f)
    }

    /// Whether image `i` passes every filter but `reference`.
    pub fn image(&self, i: &skiff_image::Image) -> bool {
        let tagged = i.names.iter().any(|n| !n.contains('@'));
        let created = unix_time_ns(i.config.created.as_deref().unwrap_or_default());
        self.dangling.is_none_or(|d| d != tagged)
            && labels_match(&self.labels, &i.config.config.labels)
            && self.before.as_ref().is_none_or(|b| created < *b)
            && self.since.as_ref().is_none_or(|s| created > *s)
    }

    /// Whether a name of an image (normalized, `docker.io/library/busybox:latest`)
    /// passes the `reference` filters: docker's `FamiliarMatch`, a glob over the
    /// familiar name with its tag (`busybox:1.*`) or without (`busy*`).
    pub fn name(&self, normalized: &str) -> bool {
        if self.references.is_empty() {
            return true;
        }
        let familiar = skiff_image::familiar_name(normalized);
        let repo = familiar
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(familiar.as_str(), |(r, _)| r);
        self.references
            .iter()
            .any(|p| glob(p, &familiar) || glob(p, repo))
    }

    /// Whether any `reference` filter is given.
    pub fn by_reference(&self) -> bool {
        !self.references.is_empty()
    }
}

/// docker's volume list filters: names ANDed, several values of one name ORed (labels:
/// all must match).
pub struct VolumeFilters {
    dangling: Option<bool>,
    drivers: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    names: Vec<String>,
}

impl VolumeFilters {
    /// Checks `filters` as docker does (unknown names and bad values are refused).
    pub fn new(filters: &[(String, String)]) -> Result<VolumeFilters, FilterError> {
        let mut f = VolumeFilters {
            dangling: None,
            drivers: Vec::new(),
            labels: Vec::new(),
            names: Vec::new(),
        };
        for (name, value) in filters {
            match name.as_str() {
                "dangling" => f.dangling = Some(dangling(value)?),
                "driver" => f.drivers.push(value.clone()),
                "label" => f.labels.push(label(value)),
                "name" => f.names.push(plain_name(value)?),
                other => return Err(FilterError::Invalid(format!("invalid filter '{other}'"))),
            }
        }
        Ok(f)
    }

    /// Whether a `dangling` filter asks which volumes containers mount (the only
    /// filter that needs the containers read).
    pub fn reads_usage(&self) -> bool {
        self.dangling.is_some()
    }

    /// Whether volume `v` passes; `in_use` are the volumes some container mounts.
    pub fn matches(
        &self,
        v: &skiff_engine::volumes::Volume,
        in_use: &std::collections::HashSet<String>,
    ) -> bool {
        self.dangling.is_none_or(|d| d != in_use.contains(&v.name))
            && (self.drivers.is_empty() || self.drivers.contains(&v.driver))
            && (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
            && labels_match(&self.labels, &v.labels)
    }
}

/// What the network filters look at of one network.
pub struct NetworkInfo<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub driver: &'a str,
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Some container is attached to it.
    pub in_use: bool,
}

/// The networks every engine has (docker's predefined networks).
pub const BUILTIN_NETWORKS: &[&str] = &["bridge", "host", "none"];

/// docker's network list filters: names ANDed, several values of one name ORed
/// (labels: all must match).
pub struct NetworkFilters {
    dangling: Option<bool>,
    drivers: Vec<String>,
    ids: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    names: Vec<String>,
    scopes: Vec<String>,
    builtin: Option<bool>,
}

impl NetworkFilters {
    /// Checks `filters` as docker does (unknown names and bad values are refused).
    pub fn new(filters: &[(String, String)]) -> Result<NetworkFilters, FilterError> {
        let mut f = NetworkFilters {
            dangling: None,
            drivers: Vec::new(),
            ids: Vec::new(),
            labels: Vec::new(),
            names: Vec::new(),
            scopes: Vec::new(),
            builtin: None,
        };
        for (name, value) in filters {
            match name.as_str() {
                "dangling" => f.dangling = Some(dangling(value)?),
                "driver" => f.drivers.push(value.clone()),
                "id" => f.ids.push(value.clone()),
                "label" => f.labels.push(label(value)),
                "name" => f.names.push(plain_name(value)?),
                "scope" if ["local", "swarm", "global"].contains(&value.as_str()) => {
                    f.scopes.push(value.clone())
                }
                "scope" => {
                    return Err(FilterError::Invalid(format!(
                        "invalid filter 'scope={value}'"
                    )))
                }
                "type" => {
                    f.builtin = Some(match value.as_str() {
                        "builtin" => true,
                        "custom" => false,
                        _ => {
                            return Err(FilterError::Invalid(format!(
                                "invalid filter: 'type'='{value}'"
                            )))
                        }
                    })
                }
                other => return Err(FilterError::Invalid(format!("invalid filter '{other}'"))),
            }
        }
        Ok(f)
    }

    /// Whether a `dangling` filter asks which networks have containers attached (the
    /// only filter that needs the containers read).
    pub fn reads_usage(&self) -> bool {
        self.dangling.is_some()
    }

    /// Whether network `n` passes (all of skiff's networks are local). A predefined
    /// network is never dangling.
    pub fn matches(&self, n: &NetworkInfo<'_>) -> bool {
        let builtin = BUILTIN_NETWORKS.contains(&n.name);
        self.dangling.is_none_or(|d| d == (!builtin && !n.in_use))
            && (self.drivers.is_empty() || self.drivers.iter().any(|d| d == n.driver))
            && (self.ids.is_empty() || self.ids.iter().any(|i| n.id.starts_with(i.as_str())))
            && (self.names.is_empty() || self.names.iter().any(|m| n.name.contains(m.as_str())))
            && (self.scopes.is_empty() || self.scopes.iter().any(|s| s == "local"))
            && self.builtin.is_none_or(|b| b == builtin)
            && labels_match(&self.labels, n.labels)
    }
}

/// Go's `path.Match` for the patterns image references use: `*` (not across `/`),
/// `?`, everything else literal. Matched in time and memory proportional to the
/// pattern's length times the name's (a table of which pattern suffix matches which
/// name suffix), so no pattern a client sends can make it backtrack without end.
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // next[j]: whether p[i + 1..] matches n[j..]; row i is built from it.
    let mut next: Vec<bool> = (0..=n.len()).map(|j| j == n.len()).collect();
    for i in (0..p.len()).rev() {
        let mut row = vec![false; n.len() + 1];
        for j in (0..=n.len()).rev() {
            let c = n.get(j);
            row[j] = match p[i] {
                '*' => next[j] || (c.is_some_and(|c| *c != '/') && row[j + 1]),
                '?' => c.is_some_and(|c| *c != '/') && next[j + 1],
                lit => c == Some(&lit) && next[j + 1],
            };
        }
        next = row;
    }
    next[0]
}

#[cfg(test)]
mod image_tests {
    use super::glob;

    #[test]
    fn reference_globs_match_as_gos_path_match() {
        assert!(glob("busybox", "busybox"));
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:1.*", "busybox:1.36"));
        assert!(!glob("busybox:1.*", "busybox:latest"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("*", "team/web"), "* does not cross /");
        assert!(glob("team/*", "team/web"));
        assert!(!glob("busybox", "busybox2"));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
        assert!(glob("*box*", "busybox"));
        // A pattern that makes a backtracking matcher take exponential time.
        let name = "a".repeat(200);
        let pattern = "a*".repeat(100) + "b";
        assert!(!glob(&pattern, &name));
    }
}
