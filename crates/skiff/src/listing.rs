//! Which containers a listing shows: docker's `ps` filters (`id`, `name`, `label`,
//! `status`, `exited`, `ancestor`, `before`, `since`), `--all` and `--last`, newest
//! first. `skiff ps` and the Docker API's `GET /containers/json` both list through it.

use skiff_engine::{Container, Status};

/// Why a listing was refused.
#[derive(Debug)]
pub enum FilterError {
    /// A filter docker would refuse, or one skiff cannot answer faithfully.
    Invalid(String),
    /// `before`/`since` name a container that is not there.
    NoSuchContainer(String),
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterError::Invalid(m) => f.write_str(m),
            FilterError::NoSuchContainer(c) => write!(f, "No such container: {c}"),
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
