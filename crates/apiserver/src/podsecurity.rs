//! The PodSecurity admission plugin of kube-apiserver (GA since 1.25), after
//! `k8s.io/pod-security-admission`: the Pod Security Standards' checks, the namespace
//! labels that pick a level per mode, the plugin's configuration (defaults and
//! exemptions from the `--admission-control-config-file` AdmissionConfiguration) and
//! the admission decisions.
//!
//! * Pure policy: [`check_pod`] evaluates a pod's metadata and spec (JSON, as stored)
//!   against a [`LevelVersion`] and returns the failed checks with upstream's reasons and
//!   details; [`policy_to_evaluate`] resolves namespace labels; [`evaluate_pod`] makes
//!   the enforce/audit/warn decision of one pod or template.
//! * I/O: [`admit`] is called by [`crate::admission`] on creates and updates of pods,
//!   namespaces and the workload kinds with pod templates; it reads the namespace (and,
//!   when a namespace's enforce level is tightened, its pods).
//!
//! Modes, as upstream: `enforce` rejects pods (creates, and updates that change an image
//! or add an ephemeral container) with 403 `violates PodSecurity "level:version": ...`;
//! `warn` adds `Warning` headers `would violate PodSecurity ...`; `audit` adds the audit
//! annotation `pod-security.kubernetes.io/audit-violations`. Workloads (Deployment,
//! ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController, PodTemplate)
//! get warn and audit only. skiff keeps no audit log: the audit annotations
//! (`pod-security.kubernetes.io/enforce-policy`, `.../audit-violations`, `.../exempt`,
//! `.../error`) are written to the server log under the `skiff_apiserver::audit` target,
//! at debug level one line per request ([`crate::requestctx`]), and each audit violation
//! at info level (user, resource, namespace, name and the violation); `skiff server`
//! shows them with `SKIFF_LOG=warn,skiff_apiserver::audit=info`.
//!
//! `latest` is this server's version (`v1.<minor>` of `/version`); a pinned version newer
//! than that is evaluated as the server's version, as upstream does with its emulation
//! version.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::admit::Objects;
use crate::error::{ApiError, Cause};
use crate::options::ListOptions;
use crate::resource::Resource;
use crate::resources::lookup;

use crate::error::ApiResult;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// `api.ParseLevel`.
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted".into()),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `latest` or `v1.N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    V1(u32),
}

impl Version {
    /// `api.ParseVersion`: `latest` or `v1.N` (no leading zeros).
    pub fn parse(s: &str) -> Result<Version, String> {
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let bad = || String::from(r#"must be "latest" or "v1.x""#);
        let n = s.strip_prefix("v1.").ok_or_else(bad)?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return Err(bad());
        }
        n.parse().map(Version::V1).map_err(|_| bad())
    }

    /// The minor version the checks are evaluated at: `latest` and versions newer than
    /// this server are the server's own.
    fn effective_minor(self) -> u32 {
        let max = crate::typed::kube_minor();
        match self {
            Version::Latest => max,
            Version::V1(n) => n.min(max),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(n) => write!(f, "v1.{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
    fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The level and version of each mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }
    fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// A label that did not parse: (label, value, message), a
/// `metadata.labels[<label>]: Invalid value` field error upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    pub label: String,
    pub value: String,
    pub message: String,
}

impl LabelError {
    fn cause(&self) -> Cause {
        Cause::invalid(
            format!("metadata.labels[{}]", self.label),
            &self.value,
            &self.message,
        )
    }
    fn cause_text(&self) -> String {
        cause_text(&self.cause())
    }
}

/// A field error as `field.Error.Error()` prints it.
fn cause_text(c: &Cause) -> String {
    format!("{}: {}", c.field, c.message)
}

/// `api.PolicyToEvaluate`: the namespace's labels over the defaults. A policy is always
/// returned; a bad enforce level means restricted, a bad audit or warn level privileged,
/// a bad version latest.
pub fn policy_to_evaluate(
    labels: Option<&Map<String, Value>>,
    defaults: &Policy,
) -> (Policy, Vec<LabelError>) {
    let mut p = *defaults;
    let mut errs = Vec::new();
    let Some(labels) = labels.filter(|l| !l.is_empty()) else {
        return (p, errs);
    };
    let get = |k: &str| labels.get(k).map(|v| v.as_str().unwrap_or_default());
    fn push(errs: &mut Vec<LabelError>, label: &str, value: &str, message: String) {
        errs.push(LabelError {
            label: label.into(),
            value: value.into(),
            message,
        });
    }
    let mut has_enforce_level = false;
    if let Some(v) = get(ENFORCE_LABEL) {
        match Level::parse(v) {
            Ok(l) => {
                p.enforce.level = l;
                has_enforce_level = true;
            }
            Err(e) => {
                p.enforce.level = Level::Restricted;
                push(&mut errs, ENFORCE_LABEL, v, e);
            }
        }
    }
    let modes = [
        (None, ENFORCE_VERSION_LABEL, &mut p.enforce),
        (Some(AUDIT_LABEL), AUDIT_VERSION_LABEL, &mut p.audit),
        (Some(WARN_LABEL), WARN_VERSION_LABEL, &mut p.warn),
    ];
    for (level_label, version_label, lv) in modes {
        if let Some(label) = level_label {
            if let Some(v) = get(label) {
                match Level::parse(v) {
                    Ok(l) => lv.level = l,
                    Err(e) => {
                        // Fail open for audit and warn.
                        lv.level = Level::Privileged;
                        push(&mut errs, label, v, e);
                    }
                }
            }
        }
        if let Some(v) = get(version_label) {
            match Version::parse(v) {
                Ok(ver) => lv.version = ver,
                Err(e) => {
                    lv.version = Version::Latest;
                    push(&mut errs, version_label, v, e);
                }
            }
        }
    }
    // Warn defaults to the enforce level when that is explicitly set and stricter.
    if !labels.contains_key(WARN_LABEL) && has_enforce_level && p.enforce.level > p.warn.level {
        p.warn.level = p.enforce.level;
        if !labels.contains_key(WARN_VERSION_LABEL) {
            p.warn.version = p.enforce.version;
        }
    }
    (p, errs)
}

// ---------------------------------------------------------------------------------
// The checks.

/// A failed check: upstream's `ForbiddenReason` and `ForbiddenDetail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

fn violation(reason: &str, detail: String) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail,
    })
}

/// `AggregateCheckResult.ForbiddenReason()`.
pub fn reasons(v: &[Violation]) -> String {
    v.iter()
        .map(|x| x.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `AggregateCheckResult.ForbiddenDetail()`.
pub fn details(v: &[Violation]) -> String {
    v.iter()
        .map(|x| {
            if x.detail.is_empty() {
                x.reason.clone()
            } else {
                format!("{} ({})", x.reason, x.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type CheckFn = fn(&Value, &Value) -> Option<Violation>;

struct Check {
    id: &'static str,
    level: Level,
    /// (minimum minor version, check, baseline checks it overrides), increasing.
    versions: &'static [(u32, CheckFn, &'static [&'static str])],
}

/// Every check of the Pod Security Standards, as upstream registers them.
static CHECKS: &[Check] = &[
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: &[
            (8, allow_privilege_escalation_1_8, &[]),
            (25, allow_privilege_escalation_1_25, &[]),
        ],
    },
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        versions: &[(0, app_armor_profile, &[])],
    },
    Check {
        id: "capabilities_baseline",
        level: Level::Baseline,
        versions: &[(0, capabilities_baseline, &[])],
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: &[
            (22, capabilities_restricted_1_22, &["capabilities_baseline"]),
            (25, capabilities_restricted_1_25, &["capabilities_baseline"]),
        ],
    },
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        versions: &[(0, host_namespaces, &[])],
    },
    Check {
        id: "hostPathVolumes",
        level: Level::Baseline,
        versions: &[(0, host_path_volumes, &[])],
    },
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        versions: &[(0, host_ports, &[])],
    },
    Check {
        id: "hostProbesAndHostLifecycle",
        level: Level::Baseline,
        versions: &[(34, host_probes_and_lifecycle, &[])],
    },
    Check {
        id: "privileged",
        level: Level::Baseline,
        versions: &[(0, privileged, &[])],
    },
    Check {
        id: "procMount",
        level: Level::Baseline,
        versions: &[(0, proc_mount, &[]), (35, proc_mount_1_35_baseline, &[])],
    },
    Check {
        id: "procMount_restricted",
        level: Level::Restricted,
        versions: &[(35, proc_mount, &["procMount"])],
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: &[(0, restricted_volumes, &["hostPathVolumes"])],
    },
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        versions: &[(0, run_as_non_root, &[]), (35, run_as_non_root_1_35, &[])],
    },
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        versions: &[(23, run_as_user, &[]), (35, run_as_user_1_35, &[])],
    },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: &[
            (0, se_linux_options_1_0, &[]),
            (31, se_linux_options_1_31, &[]),
        ],
    },
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        versions: &[
            (0, seccomp_baseline_1_0, &[]),
            (19, seccomp_baseline_1_19, &[]),
        ],
    },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: &[
            (19, seccomp_restricted_1_19, &["seccompProfile_baseline"]),
            (25, seccomp_restricted_1_25, &["seccompProfile_baseline"]),
        ],
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: &[
            (0, sysctls_1_0, &[]),
            (27, sysctls_1_27, &[]),
            (29, sysctls_1_29, &[]),
            (32, sysctls_1_32, &[]),
            (37, sysctls_1_37, &[]),
        ],
    },
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        versions: &[(0, windows_host_process, &[])],
    },
];

/// The version of `check` in force at `minor`.
fn version_at(check: &Check, minor: u32) -> Option<&(u32, CheckFn, &'static [&'static str])> {
    check
        .versions
        .iter()
        .rev()
        .find(|(min, _, _)| *min <= minor)
}

/// The checks of `lv` in upstream's order: baseline checks by ID, then restricted ones by
/// ID; restricted includes the baseline checks its own checks do not override.
fn checks_for(lv: LevelVersion) -> Vec<CheckFn> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = lv.version.effective_minor();
    let mut overridden = BTreeSet::new();
    if lv.level == Level::Restricted {
        for c in CHECKS.iter().filter(|c| c.level == Level::Restricted) {
            if let Some((_, _, o)) = version_at(c, minor) {
                overridden.extend(o.iter().copied());
            }
        }
    }
    let mut ordered: Vec<&Check> = CHECKS.iter().collect();
    ordered.sort_by_key(|c| (c.level == Level::Restricted, c.id));
    ordered
        .into_iter()
        .filter(|c| c.level <= lv.level && !overridden.contains(c.id))
        .filter_map(|c| version_at(c, minor).map(|(_, f, _)| *f))
        .collect()
}

/// Evaluates a pod's (or pod template's) metadata and spec against `lv`: the failed
/// checks, in upstream's order (empty: allowed).
pub fn check_pod(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Violation> {
    checks_for(lv)
        .into_iter()
        .filter_map(|f| f(meta, spec))
        .collect()
}

// Helpers over the JSON of a pod spec.

/// init containers, containers, then ephemeral containers (`visitContainers`).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec.get(k).and_then(Value::as_array).into_iter().flatten())
}

fn cname(c: &Value) -> String {
    c.get("name").and_then(Value::as_str).unwrap_or("").into()
}

/// A non-null field (`nil` in Go).
fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    v.pointer(path).filter(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn bool_at(v: &Value, path: &str) -> Option<bool> {
    v.pointer(path).and_then(Value::as_bool)
}

fn strings_at(v: &Value, path: &str) -> Vec<String> {
    v.pointer(path)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|x| x.as_str().unwrap_or("").to_string())
        .collect()
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    items.join(", ")
}

/// `container(s) "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` of a string (quotes and backslashes escaped).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn is_windows(spec: &Value) -> bool {
    str_at(spec, "/os/name") == "windows"
}

fn user_namespace_pod(spec: &Value) -> bool {
    bool_at(spec, "/hostUsers") == Some(false)
}

fn allow_privilege_escalation_1_8(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| bool_at(c, "/securityContext/allowPrivilegeEscalation") != Some(false))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn allow_privilege_escalation_1_25(meta: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    allow_privilege_escalation_1_8(meta, spec)
}

fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Violation> {
    let allowed_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut bad_setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if field(spec, "/securityContext/appArmorProfile").is_some() {
        let t = str_at(spec, "/securityContext/appArmorProfile/type");
        if !allowed_type(t) {
            bad_setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if field(c, "/securityContext/appArmorProfile").is_some() {
            let t = str_at(c, "/securityContext/appArmorProfile/type");
            if !allowed_type(t) {
                bad_containers.push(cname(c));
                bad_values.insert(t.to_string());
            }
        }
    }
    if !bad_containers.is_empty() {
        bad_setters.push(containers_phrase(&bad_containers));
    }
    let mut forbidden_annotations: Vec<String> = meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!ok).then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    let mut bad_value_list: Vec<String> = bad_values.into_iter().collect();
    if !forbidden_annotations.is_empty() {
        forbidden_annotations.sort();
        let n = forbidden_annotations.len();
        bad_value_list.extend(forbidden_annotations);
        bad_setters.push(pluralize("annotation", "annotations", n).into());
    }
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_value_list.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            bad_setters.join(" and "),
            join_quote(&bad_value_list)
        ),
    )
}

const CAPABILITIES_BASELINE: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        if field(c, "/securityContext/capabilities").is_none() {
            continue;
        }
        let mut valid = true;
        for cap in strings_at(c, "/securityContext/capabilities/add") {
            if !CAPABILITIES_BASELINE.contains(&cap.as_str()) {
                valid = false;
                caps.insert(cap);
            }
        }
        if !valid {
            bad.push(cname(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn capabilities_restricted_1_22(_: &Value, spec: &Value) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        if field(c, "/securityContext").is_none()
            || field(c, "/securityContext/capabilities").is_none()
        {
            missing_drop_all.push(cname(c));
            continue;
        }
        if !strings_at(c, "/securityContext/capabilities/drop")
            .iter()
            .any(|d| d == "ALL")
        {
            missing_drop_all.push(cname(c));
        }
        let mut added_forbidden = false;
        for cap in strings_at(c, "/securityContext/capabilities/add") {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(cap);
            }
        }
        if added_forbidden {
            adding_forbidden.push(cname(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

fn capabilities_restricted_1_25(meta: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    capabilities_restricted_1_22(meta, spec)
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| spec.get(*k).and_then(Value::as_bool) == Some(true))
        .map(|k| format!("{k}=true"))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| field(v, "/hostPath").is_some())
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp != 0 {
                valid = false;
                ports.insert(hp.to_string());
            }
        }
        if !valid {
            bad.push(cname(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn host_probes_and_lifecycle(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(spec) {
        for handler in [
            "/livenessProbe",
            "/readinessProbe",
            "/startupProbe",
            "/lifecycle/postStart",
            "/lifecycle/preStop",
        ] {
            for kind in ["httpGet", "tcpSocket"] {
                let host = str_at(c, &format!("{handler}/{kind}/host"));
                if !host.is_empty() {
                    bad.insert(cname(c));
                    hosts.insert(host.to_string());
                }
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| bool_at(c, "/securityContext/privileged") == Some(true))
        .map(cname)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        let Some(pm) = field(c, "/securityContext/procMount") else {
            continue;
        };
        let pm = pm.as_str().unwrap_or("");
        if pm != "Default" {
            bad.push(cname(c));
            types.insert(pm.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn proc_mount_1_35_baseline(meta: &Value, spec: &Value) -> Option<Violation> {
    if user_namespace_pod(spec) {
        return None;
    }
    proc_mount(meta, spec)
}

/// The volume sources of the Volume type, by JSON name, and their names in messages.
const VOLUME_TYPES: &[(&str, &str)] = &[
    ("hostPath", "hostPath"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("gitRepo", "gitRepo"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("rbd", "rbd"),
    ("flexVolume", "flexVolume"),
    ("cinder", "cinder"),
    ("cephfs", "cephfs"),
    ("flocker", "flocker"),
    ("fc", "fc"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("quobyte", "quobyte"),
    ("azureDisk", "azureDisk"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("scaleIO", "scaleIO"),
    ("storageos", "storageos"),
];

const RESTRICTED_ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        if RESTRICTED_ALLOWED_VOLUMES
            .iter()
            .any(|k| field(v, &format!("/{k}")).is_some())
        {
            continue;
        }
        bad.push(cname(v));
        let ty = VOLUME_TYPES
            .iter()
            .find(|(k, _)| field(v, &format!("/{k}")).is_some())
            .map_or("unknown", |(_, n)| n);
        types.insert(ty.to_string());
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad_setters = Vec::new();
    let mut pod_non_root = false;
    match bool_at(spec, "/securityContext/runAsNonRoot") {
        Some(false) => bad_setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match bool_at(c, "/securityContext/runAsNonRoot") {
            Some(false) => explicit.push(cname(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(cname(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        bad_setters.push(containers_phrase(&explicit));
    }
    if !bad_setters.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                bad_setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_non_root_1_35(meta: &Value, spec: &Value) -> Option<Violation> {
    if user_namespace_pod(spec) {
        return None;
    }
    run_as_non_root(meta, spec)
}

fn run_as_user(_: &Value, spec: &Value) -> Option<Violation> {
    let root = |v: &Value| {
        v.pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
    };
    let mut bad_setters = Vec::new();
    if root(spec) {
        bad_setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(spec).filter(|c| root(c)).map(cname).collect();
    if !bad.is_empty() {
        bad_setters.push(containers_phrase(&bad));
    }
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", bad_setters.join(" and ")),
    )
}

fn run_as_user_1_35(meta: &Value, spec: &Value) -> Option<Violation> {
    if user_namespace_pod(spec) {
        return None;
    }
    run_as_user(meta, spec)
}

fn se_linux_options(spec: &Value, allowed: &[&str]) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let ty = str_at(opts, "/type");
        if !allowed.contains(&ty) {
            ok = false;
            bad_types.insert(ty.to_string());
        }
        if !str_at(opts, "/user").is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_at(opts, "/role").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut bad_setters = Vec::new();
    if let Some(opts) = field(spec, "/securityContext/seLinuxOptions") {
        if !valid(opts) {
            bad_setters.push("pod".to_string());
        }
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(opts) = field(c, "/securityContext/seLinuxOptions") {
            if !valid(opts) {
                bad.push(cname(c));
            }
        }
    }
    if !bad.is_empty() {
        bad_setters.push(containers_phrase(&bad));
    }
    if bad_setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            bad_setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn se_linux_options_1_0(_: &Value, spec: &Value) -> Option<Violation> {
    se_linux_options(
        spec,
        &["", "container_t", "container_init_t", "container_kvm_t"],
    )
}

fn se_linux_options_1_31(_: &Value, spec: &Value) -> Option<Violation> {
    se_linux_options(
        spec,
        &[
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ],
    )
}

fn valid_seccomp(t: &str) -> bool {
    matches!(t, "Localhost" | "RuntimeDefault")
}

fn seccomp_baseline_1_0(meta: &Value, spec: &Value) -> Option<Violation> {
    const POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let ann = meta.get("annotations").and_then(Value::as_object);
    let mut forbidden = BTreeSet::new();
    let mut look = |key: &str| {
        if let Some(v) = ann.and_then(|a| a.get(key)) {
            let v = v.as_str().unwrap_or("");
            if !valid(v) {
                forbidden.insert(format!("{key}={}", go_quote(v)));
            }
        }
    };
    look(POD);
    for c in containers(spec) {
        look(&format!("{PREFIX}{}", cname(c)));
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The seccomp checks of 1.19+: (explicitly bad setters, bad values, containers without
/// a profile when the pod has no valid one).
fn seccomp_fields(spec: &Value) -> (Vec<String>, BTreeSet<String>, Vec<String>) {
    let mut bad_setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    if field(spec, "/securityContext/seccompProfile").is_some() {
        let t = str_at(spec, "/securityContext/seccompProfile/type");
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            bad_setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        if field(c, "/securityContext/seccompProfile").is_some() {
            let t = str_at(c, "/securityContext/seccompProfile/type");
            if !valid_seccomp(t) {
                explicit.push(cname(c));
                bad_values.insert(t.to_string());
            }
        } else if !pod_set {
            implicit.push(cname(c));
        }
    }
    if !explicit.is_empty() {
        bad_setters.push(containers_phrase(&explicit));
    }
    (bad_setters, bad_values, implicit)
}

fn seccomp_bad_setters(bad_setters: &[String], bad_values: &BTreeSet<String>) -> Option<Violation> {
    if bad_setters.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            bad_setters.join(" and "),
            join_quote(bad_values)
        ),
    )
}

fn seccomp_baseline_1_19(_: &Value, spec: &Value) -> Option<Violation> {
    let (bad_setters, bad_values, _) = seccomp_fields(spec);
    seccomp_bad_setters(&bad_setters, &bad_values)
}

fn seccomp_restricted_1_19(_: &Value, spec: &Value) -> Option<Violation> {
    let (bad_setters, bad_values, implicit) = seccomp_fields(spec);
    if let Some(v) = seccomp_bad_setters(&bad_setters, &bad_values) {
        return Some(v);
    }
    if implicit.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            containers_phrase(&implicit)
        ),
    )
}

fn seccomp_restricted_1_25(meta: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    seccomp_restricted_1_19(meta, spec)
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
const SYSCTLS_1_37: &[&str] = &[
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn sysctls(spec: &Value, allowed: &[&[&str]]) -> Option<Violation> {
    let bad: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| str_at(s, "/name").to_string())
        .filter(|n| !allowed.iter().any(|set| set.contains(&n.as_str())))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn sysctls_1_0(_: &Value, spec: &Value) -> Option<Violation> {
    sysctls(spec, &[SYSCTLS_1_0])
}
fn sysctls_1_27(_: &Value, spec: &Value) -> Option<Violation> {
    sysctls(spec, &[SYSCTLS_1_0, SYSCTLS_1_27])
}
fn sysctls_1_29(_: &Value, spec: &Value) -> Option<Violation> {
    sysctls(spec, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}
fn sysctls_1_32(_: &Value, spec: &Value) -> Option<Violation> {
    sysctls(
        spec,
        &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32],
    )
}
fn sysctls_1_37(_: &Value, spec: &Value) -> Option<Violation> {
    sysctls(
        spec,
        &[
            SYSCTLS_1_0,
            SYSCTLS_1_27,
            SYSCTLS_1_29,
            SYSCTLS_1_32,
            SYSCTLS_1_37,
        ],
    )
}

fn windows_host_process(_: &Value, spec: &Value) -> Option<Violation> {
    const P: &str = "/securityContext/windowsOptions/hostProcess";
    let bad: Vec<String> = containers(spec)
        .filter(|c| bool_at(c, P) == Some(true))
        .map(cname)
        .collect();
    let mut setters = Vec::new();
    if bool_at(spec, P) == Some(true) {
        setters.push("pod".to_string());
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

// ---------------------------------------------------------------------------------
// Configuration: the PodSecurity plugin's part of the AdmissionConfiguration.

/// The plugin's configuration (`PodSecurityConfiguration`): the policy of namespaces
/// without labels, and who and what is exempt. The default: privileged everywhere, no
/// exemptions (kube-system is not exempt), as upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub defaults: Policy,
    pub exempt_usernames: Vec<String>,
    pub exempt_namespaces: Vec<String>,
    pub exempt_runtime_classes: Vec<String>,
}

const ADMISSION_API_VERSIONS: &[&str] = &[
    "apiserver.config.k8s.io/v1",
    "apiserver.config.k8s.io/v1alpha1",
    "apiserver.k8s.io/v1alpha1",
];
const PSA_API_VERSIONS: &[&str] = &[
    "pod-security.admission.config.k8s.io/v1",
    "pod-security.admission.config.k8s.io/v1beta1",
    "pod-security.admission.config.k8s.io/v1alpha1",
];

/// Reads `--admission-control-config-file`: an AdmissionConfiguration (YAML or JSON)
/// whose `PodSecurity` plugin entry holds its PodSecurityConfiguration inline
/// (`configuration`) or in a file (`path`, relative to this file's directory). Errors
/// name the file and the problem.
pub fn load_admission_config(path: &Path) -> Result<Config, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{}: reading: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_admission_config(&text, base).map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_document(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("not valid YAML: {e}"))
    }
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what}: unknown field \"{k}\" (known: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn type_check(obj: &Map<String, Value>, versions: &[&str], kind: &str) -> Result<(), String> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if got_kind != kind {
        return Err(format!("kind is {got_kind:?}, expected {kind}"));
    }
    if !versions.contains(&api_version) {
        return Err(format!(
            "{kind} apiVersion {api_version:?} is not supported (use {})",
            versions.join(" or ")
        ));
    }
    Ok(())
}

/// Parses an AdmissionConfiguration; plugin files named by `path` are read relative to
/// `base`.
pub fn parse_admission_config(text: &str, base: &Path) -> Result<Config, String> {
    let doc = parse_document(text)?;
    let obj = doc
        .as_object()
        .ok_or("the document is not an AdmissionConfiguration object")?;
    type_check(obj, ADMISSION_API_VERSIONS, "AdmissionConfiguration")?;
    only_keys(
        obj,
        &["apiVersion", "kind", "plugins"],
        "AdmissionConfiguration",
    )?;
    let plugins = match obj.get("plugins") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("plugins: must be a list".into()),
    };
    let mut found: Option<Config> = None;
    for (i, p) in plugins.iter().enumerate() {
        let what = format!("plugins[{i}]");
        let p = p.as_object().ok_or(format!("{what}: must be an object"))?;
        only_keys(p, &["name", "path", "configuration"], &what)?;
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name != "PodSecurity" {
            return Err(format!(
                "{what}: plugin {name:?} is not configurable in skiff (only PodSecurity is)"
            ));
        }
        if found.is_some() {
            return Err(format!("{what}: PodSecurity is configured twice"));
        }
        let cfg = match (
            p.get("configuration"),
            p.get("path").and_then(Value::as_str),
        ) {
            (Some(c), _) if !c.is_null() => c.clone(),
            (_, Some(file)) if !file.is_empty() => {
                let full = base.join(file);
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    format!(
                        "{what}: reading the PodSecurity configuration {}: {e}",
                        full.display()
                    )
                })?;
                parse_document(&text).map_err(|e| format!("{}: {e}", full.display()))?
            }
            _ => Value::Null,
        };
        let parsed = if cfg.is_null() {
            Config::default()
        } else {
            parse_pod_security_config(&cfg).map_err(|e| format!("{what} (PodSecurity): {e}"))?
        };
        found = Some(parsed);
    }
    Ok(found.unwrap_or_default())
}

/// A string field of a configuration section ("" when absent; an error when not a
/// string).
fn string_field<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    section: &str,
    errs: &mut Vec<String>,
) -> &'a str {
    match m.get(key) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            errs.push(format!("{section}.{key}: must be a string, not {other}"));
            ""
        }
    }
}

/// A PodSecurityConfiguration (defaults filled, then validated as upstream).
pub fn parse_pod_security_config(v: &Value) -> Result<Config, String> {
    let obj = v
        .as_object()
        .ok_or("the configuration is not a PodSecurityConfiguration object")?;
    type_check(obj, PSA_API_VERSIONS, "PodSecurityConfiguration")?;
    only_keys(
        obj,
        &["apiVersion", "kind", "defaults", "exemptions"],
        "PodSecurityConfiguration",
    )?;
    let empty = Map::new();
    let section = |k: &str| -> Result<&Map<String, Value>, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(format!("{k}: must be an object")),
        }
    };
    let defaults = section("defaults")?;
    only_keys(
        defaults,
        &[
            "enforce",
            "enforce-version",
            "audit",
            "audit-version",
            "warn",
            "warn-version",
        ],
        "defaults",
    )?;
    let exemptions = section("exemptions")?;
    only_keys(
        exemptions,
        &["usernames", "namespaces", "runtimeClasses"],
        "exemptions",
    )?;
    let mut errs: Vec<String> = Vec::new();
    let mut cfg = Config::default();
    for (key, lv) in [
        ("enforce", &mut cfg.defaults.enforce),
        ("audit", &mut cfg.defaults.audit),
        ("warn", &mut cfg.defaults.warn),
    ] {
        let level = string_field(defaults, key, "defaults", &mut errs);
        let level = if level.is_empty() {
            "privileged"
        } else {
            level
        };
        match Level::parse(level) {
            Ok(l) => lv.level = l,
            Err(e) => errs.push(cause_text(&Cause::invalid(
                format!("defaults.{key}"),
                level,
                &e,
            ))),
        }
        let vkey = format!("{key}-version");
        let version = string_field(defaults, &vkey, "defaults", &mut errs);
        let version = if version.is_empty() {
            "latest"
        } else {
            version
        };
        match Version::parse(version) {
            Ok(v) => lv.version = v,
            Err(e) => errs.push(cause_text(&Cause::invalid(
                format!("defaults.{vkey}"),
                version,
                &e,
            ))),
        }
    }
    let list = |k: &str, errs: &mut Vec<String>| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let items = match exemptions.get(k) {
            None | Some(Value::Null) => return out,
            Some(Value::Array(a)) => a,
            Some(_) => {
                errs.push(format!("exemptions.{k}: must be a list of strings"));
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("exemptions.{k}[{i}]");
            let Some(s) = item.as_str() else {
                errs.push(format!("{path}: must be a string"));
                continue;
            };
            // check_name gives every problem (as kube-apiserver lists them): say them
            // in one message, as the exemption's cause.
            let joined = |v: Vec<String>| (!v.is_empty()).then(|| v.join(", "));
            let bad = match k {
                "namespaces" => joined(crate::validation::check_name(
                    crate::resource::NameRule::Label,
                    s,
                )),
                "runtimeClasses" => joined(crate::validation::check_name(
                    crate::resource::NameRule::Subdomain,
                    s,
                )),
                _ => s
                    .is_empty()
                    .then(|| "username must not be empty".to_string()),
            };
            if let Some(msg) = bad {
                errs.push(cause_text(&Cause::invalid(path, s, &msg)));
            } else if out.iter().any(|x| x == s) {
                errs.push(format!("{path}: Duplicate value: {}", go_quote(s)));
            } else {
                out.push(s.to_string());
            }
        }
        out
    };
    cfg.exempt_namespaces = list("namespaces", &mut errs);
    cfg.exempt_runtime_classes = list("runtimeClasses", &mut errs);
    cfg.exempt_usernames = list("usernames", &mut errs);
    match errs.len() {
        0 => Ok(cfg),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

// ---------------------------------------------------------------------------------
// Decisions.

/// What the plugin decides for one pod or pod template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The 403's message after `<resource> "<name>" is forbidden: ` (enforce only).
    pub forbidden: Option<String>,
    /// `Warning` headers.
    pub warnings: Vec<String>,
    /// Audit annotations, without the `pod-security.kubernetes.io/` prefix.
    pub audit_annotations: BTreeMap<String, String>,
}

impl Decision {
    fn exempt(reason: &str) -> Decision {
        let mut d = Decision::default();
        d.audit_annotations.insert("exempt".into(), reason.into());
        d
    }
}

/// `utilerrors.NewAggregate` of field errors.
fn aggregate(errs: &[LabelError]) -> String {
    let all: Vec<String> = errs.iter().map(LabelError::cause_text).collect();
    match all.len() {
        1 => all[0].clone(),
        _ => format!("[{}]", all.join(", ")),
    }
}

/// `Admission.EvaluatePod`: the enforce decision (when `enforce`), the audit annotation
/// and the warning for a pod's (or template's) metadata and spec under `policy`.
pub fn evaluate_pod(
    cfg: &Config,
    policy: &Policy,
    policy_errs: &[LabelError],
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> Decision {
    let runtime_class = str_at(spec, "/runtimeClassName");
    if !runtime_class.is_empty()
        && cfg
            .exempt_runtime_classes
            .iter()
            .any(|r| r == runtime_class)
    {
        return Decision::exempt("runtimeClass");
    }
    let mut d = Decision::default();
    if !policy_errs.is_empty() {
        d.audit_annotations.insert(
            "error".into(),
            format!("Failed to parse policy: {}", aggregate(policy_errs)),
        );
    }
    let mut cache: Vec<(LevelVersion, Vec<Violation>)> = Vec::new();
    let mut eval = |lv: LevelVersion| -> Vec<Violation> {
        if let Some((_, r)) = cache.iter().find(|(k, _)| *k == lv) {
            return r.clone();
        }
        let r = check_pod(lv, meta, spec);
        cache.push((lv, r.clone()));
        r
    };
    if enforce {
        d.audit_annotations
            .insert("enforce-policy".into(), policy.enforce.to_string());
        let r = eval(policy.enforce);
        if !r.is_empty() {
            d.forbidden = Some(format!(
                "violates PodSecurity {}: {}",
                go_quote(&policy.enforce.to_string()),
                details(&r)
            ));
        }
    }
    let r = eval(policy.audit);
    if !r.is_empty() {
        d.audit_annotations.insert(
            "audit-violations".into(),
            format!(
                "would violate PodSecurity {}: {}",
                go_quote(&policy.audit.to_string()),
                details(&r)
            ),
        );
    }
    // No warnings on a request that is refused anyway.
    if d.forbidden.is_none() {
        let r = eval(policy.warn);
        if !r.is_empty() {
            d.warnings.push(format!(
                "would violate PodSecurity {}: {}",
                go_quote(&policy.warn.to_string()),
                details(&r)
            ));
        }
    }
    d
}

/// `isSignificantPodUpdate`: only a changed image, a changed number of containers or a
/// new or changed ephemeral container make a pod update subject to the policy.
pub fn is_significant_pod_update(new: &Value, old: &Value) -> bool {
    let list = |v: &Value, k: &str| -> Vec<Value> {
        v.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let image = |c: &Value| c.get("image").cloned().unwrap_or(Value::Null);
    for k in ["containers", "initContainers"] {
        let (n, o) = (list(new, k), list(old, k));
        if n.len() != o.len() || n.iter().zip(&o).any(|(a, b)| image(a) != image(b)) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral
            .iter()
            .find(|o| o.get("name") == c.get("name"))
        {
            None => true,
            Some(o) => image(o) != image(c),
        }
    })
}

/// `exemptNamespaceWarning`: an exempt namespace labelled with a non-privileged policy
/// other than the defaults is told that its labels are ignored.
fn exempt_namespace_warning(
    ns: &str,
    policy: &Policy,
    labels: Option<&Map<String, Value>>,
    defaults: &Policy,
) -> Option<String> {
    if policy.fully_privileged() || policy.equivalent(defaults) {
        return None;
    }
    let has = |k: &str| labels.is_some_and(|l| l.contains_key(k));
    let mut parts = Vec::new();
    for (name, lv, level_label, version_label) in [
        (
            "enforce",
            policy.enforce,
            ENFORCE_LABEL,
            ENFORCE_VERSION_LABEL,
        ),
        ("audit", policy.audit, AUDIT_LABEL, AUDIT_VERSION_LABEL),
        ("warn", policy.warn, WARN_LABEL, WARN_VERSION_LABEL),
    ] {
        if lv.level != Level::Privileged && (has(level_label) || has(version_label)) {
            parts.push(format!("{name}={lv}"));
        }
    }
    Some(format!(
        "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
        go_quote(ns),
        parts.join(", ")
    ))
}

/// `EvaluatePodsInNamespace`: warnings for the pods of a namespace that violate its new
/// enforce level: one line per distinct set of failed checks, naming the first pod (by
/// name) and how many others share it. At most 3000 pods and about a second are spent;
/// one pod per controller comes first.
pub fn evaluate_pods_in_namespace(
    cfg: &Config,
    ns: &str,
    enforce: LevelVersion,
    pods: &[Value],
) -> Vec<String> {
    const MAX_PODS: usize = 3000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let mut first = Vec::new();
    let mut rest = Vec::new();
    let mut controllers = BTreeSet::new();
    for pod in pods {
        let rc = str_at(pod, "/spec/runtimeClassName");
        if !rc.is_empty() && cfg.exempt_runtime_classes.iter().any(|r| r == rc) {
            continue;
        }
        let controller = pod
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
            .map(|o| str_at(o, "/uid").to_string());
        match controller {
            Some(uid) if !controllers.insert(uid.clone()) => rest.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(rest);
    let total = first.len();
    let mut checked = total.min(MAX_PODS);
    // reasons → (lexically first pod name, count), in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (i, pod) in first.iter().take(MAX_PODS).enumerate() {
        let meta = pod.get("metadata").unwrap_or(&Value::Null);
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let v = check_pod(enforce, meta, spec);
        if !v.is_empty() {
            let warning = reasons(&v);
            let name = str_at(pod, "/metadata/name").to_string();
            match counts.get_mut(&warning) {
                Some((first_name, n)) => {
                    if name < *first_name {
                        *first_name = name;
                    }
                    *n += 1;
                }
                None => {
                    order.push(warning.clone());
                    counts.insert(warning, (name, 1));
                }
            }
        }
        if std::time::Instant::now() > deadline {
            checked = i + 1;
            break;
        }
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            go_quote(ns),
            go_quote(&enforce.to_string())
        ));
    }
    let mut pod_warnings: Vec<String> = order
        .iter()
        .map(|w| {
            let (name, n) = &counts[w];
            match n {
                1 => format!("{name}: {w}"),
                2 => format!("{name} (and 1 other pod): {w}"),
                n => format!("{name} (and {} other pods): {w}", n - 1),
            }
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}

// ---------------------------------------------------------------------------------
// Admission (I/O).

/// The pod template of a workload kind (`PodSpecExtractor`): `Some(None)` for a kind with
/// an optional template that has none, `None` for kinds without templates.
fn pod_template<'a>(res: &Resource, obj: &'a Value) -> Option<Option<&'a Value>> {
    let path = match (res.group, res.kind) {
        ("", "PodTemplate") => "/template",
        ("", "ReplicationController") => "/spec/template",
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => "/spec/template",
        ("batch", "Job") => "/spec/template",
        ("batch", "CronJob") => "/spec/jobTemplate/spec/template",
        _ => return None,
    };
    Some(field(obj, path))
}

fn labels_of(obj: &Value) -> Option<&Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

/// Hands a decision's warnings and audit annotations to the request; an audit violation
/// is also written to the server log at info level (skiff keeps no audit log).
fn emit(d: Decision, res: &Resource, obj: &Value) {
    if let Some(v) = d.audit_annotations.get("audit-violations") {
        tracing::info!(
            target: "skiff_apiserver::audit",
            user = crate::requestctx::user().unwrap_or_default(),
            resource = res.plural,
            namespace = str_at(obj, "/metadata/namespace"),
            name = str_at(obj, "/metadata/name"),
            "{LABEL_PREFIX}audit-violations: {v}"
        );
    }
    for (k, v) in d.audit_annotations {
        crate::requestctx::add_audit_annotation(format!("{LABEL_PREFIX}{k}"), v);
    }
    for w in d.warnings {
        crate::requestctx::add_warning(w);
    }
}

/// The PodSecurity plugin on a create (`old` None) or update of `obj`: pods are
/// evaluated for all modes, workloads' templates for audit and warn, namespaces' labels
/// are validated (and a tightened enforce level checked against the running pods).
/// Called after the mutating plugins, before ResourceQuota, as kube-apiserver orders them.
pub async fn admit(
    reg: &dyn Objects,
    cfg: &Config,
    res: &Resource,
    old: Option<&Value>,
    obj: &Value,
) -> ApiResult<()> {
    match (res.group, res.kind) {
        ("", "Namespace") => admit_namespace(reg, cfg, old, obj).await,
        ("", "Pod") => {
            if old.is_some_and(|o| !is_significant_pod_update(obj, o)) {
                return Ok(());
            }
            let meta = obj.get("metadata").unwrap_or(&Value::Null);
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let Some((policy, errs)) = namespace_policy(reg, cfg, res, obj, true).await? else {
                return Ok(());
            };
            let d = evaluate_pod(cfg, &policy, &errs, meta, spec, true);
            if let Some(msg) = d.forbidden.clone() {
                emit(d, res, obj);
                // `apierrors.NewForbidden(pods, name, err)`.
                let name = str_at(obj, "/metadata/name");
                let mut e =
                    ApiError::forbidden(format!("pods {} is forbidden: {msg}", go_quote(name)));
                e.details = Some(Box::new(crate::error::Details {
                    kind: "pods".into(),
                    name: name.into(),
                    ..Default::default()
                }));
                return Err(e);
            }
            emit(d, res, obj);
            Ok(())
        }
        _ => {
            let Some(template) = pod_template(res, obj) else {
                return Ok(());
            };
            // Writes through a subresource (`scale`) are not evaluated.
            if crate::requestctx::subresource().is_some() {
                return Ok(());
            }
            let Some((policy, errs)) = namespace_policy(reg, cfg, res, obj, false).await? else {
                return Ok(());
            };
            let Some(template) = template else {
                return Ok(());
            };
            let meta = template.get("metadata").unwrap_or(&Value::Null);
            let spec = template.get("spec").unwrap_or(&Value::Null);
            emit(
                evaluate_pod(cfg, &policy, &errs, meta, spec, false),
                res,
                obj,
            );
            Ok(())
        }
    }
}

/// The policy of the object's namespace, or None when the request is exempt (namespace
/// or user) or the namespace's policy is privileged for every mode the request is
/// evaluated in.
async fn namespace_policy(
    reg: &dyn Objects,
    cfg: &Config,
    res: &Resource,
    obj: &Value,
    pod: bool,
) -> ApiResult<Option<(Policy, Vec<LabelError>)>> {
    let ns = str_at(obj, "/metadata/namespace");
    if !ns.is_empty() && cfg.exempt_namespaces.iter().any(|n| n == ns) {
        emit(Decision::exempt("namespace"), res, obj);
        return Ok(None);
    }
    if let Some(user) = crate::requestctx::user() {
        if !user.is_empty() && cfg.exempt_usernames.contains(&user) {
            emit(Decision::exempt("user"), res, obj);
            return Ok(None);
        }
    }
    let nsres = lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not served"))?;
    let namespace = match reg.get(nsres, None, ns).await {
        Ok(n) => n,
        Err(e) if pod => {
            return Err(ApiError::internal(format!(
                "failed to lookup namespace {}: {}",
                go_quote(ns),
                e.message
            )))
        }
        Err(e) => {
            crate::requestctx::add_audit_annotation(
                format!("{LABEL_PREFIX}error"),
                format!("failed to lookup namespace {}: {}", go_quote(ns), e.message),
            );
            return Ok(None);
        }
    };
    let (policy, errs) = policy_to_evaluate(labels_of(&namespace), &cfg.defaults);
    if errs.is_empty() {
        if pod && policy.fully_privileged() {
            emit(
                Decision {
                    audit_annotations: [(
                        "enforce-policy".to_string(),
                        LevelVersion::PRIVILEGED.to_string(),
                    )]
                    .into(),
                    ..Default::default()
                },
                res,
                obj,
            );
            return Ok(None);
        }
        if !pod && policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged
        {
            return Ok(None);
        }
    }
    Ok(Some((policy, errs)))
}

/// `ValidateNamespace`: valid labels on create (and on updates that change them), and
/// on an update that tightens the enforce level, warnings for the pods that would now be
/// refused.
async fn admit_namespace(
    reg: &dyn Objects,
    cfg: &Config,
    old: Option<&Value>,
    ns: &Value,
) -> ApiResult<()> {
    let name = str_at(ns, "/metadata/name");
    let (policy, errs) = policy_to_evaluate(labels_of(ns), &cfg.defaults);
    let invalid = |errs: &[LabelError]| {
        ApiError::invalid(
            "",
            "Namespace",
            name,
            errs.iter().map(LabelError::cause).collect(),
        )
    };
    let exempt = cfg.exempt_namespaces.iter().any(|n| n == name);
    let exempt_warning = || {
        if let Some(w) = exempt_namespace_warning(name, &policy, labels_of(ns), &cfg.defaults) {
            crate::requestctx::add_warning(w);
        }
    };
    let Some(old) = old else {
        if !errs.is_empty() {
            return Err(invalid(&errs));
        }
        if exempt {
            exempt_warning();
        }
        return Ok(());
    };
    let (old_policy, old_errs) = policy_to_evaluate(labels_of(old), &cfg.defaults);
    if !errs.is_empty() && (old_errs.is_empty() || errs != old_errs) {
        return Err(invalid(&errs));
    }
    if policy.enforce == old_policy.enforce
        || policy.enforce.level == Level::Privileged
        || (policy.enforce.version == old_policy.enforce.version
            && policy.enforce.level <= old_policy.enforce.level)
    {
        return Ok(());
    }
    if exempt {
        exempt_warning();
        return Ok(());
    }
    let podres =
        lookup("", "v1", "pods").ok_or_else(|| ApiError::internal("pods are not served"))?;
    let warnings = match reg.list(podres, Some(name), &ListOptions::any()).await {
        Ok(list) => evaluate_pods_in_namespace(cfg, name, policy.enforce, &list.items),
        Err(e) => {
            tracing::warn!(namespace = name, error = %e, "PodSecurity: listing pods");
            vec!["failed to list pods while checking new PodSecurity enforce level".into()]
        }
    };
    for w in warnings {
        crate::requestctx::add_warning(w);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }
    const B: LevelVersion = LevelVersion {
        level: Level::Baseline,
        version: Version::Latest,
    };
    const R: LevelVersion = LevelVersion {
        level: Level::Restricted,
        version: Version::Latest,
    };

    /// The forbidden detail of `spec` (and `meta`) at `at`; "" when allowed.
    fn detail_at(at: LevelVersion, meta: Value, spec: Value) -> String {
        details(&check_pod(at, &meta, &spec))
    }
    fn baseline(spec: Value) -> String {
        detail_at(B, json!({}), spec)
    }
    fn restricted(spec: Value) -> String {
        detail_at(R, json!({}), spec)
    }

    /// A container that passes every restricted check.
    fn good(name: &str) -> Value {
        json!({"name": name, "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}})
    }

    #[test]
    fn the_attack_pod_in_upstream_order() {
        let spec = json!({"hostPID": true, "hostNetwork": true,
            "containers": [{"name": "x", "image": "busybox", "securityContext": {"privileged": true}}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}]});
        assert_eq!(
            baseline(spec.clone()),
            r#"host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume "root"), privileged (container "x" must not set securityContext.privileged=true)"#
        );
        assert_eq!(
            reasons(&check_pod(B, &json!({}), &spec)),
            "host namespaces, hostPath volumes, privileged"
        );
        assert_eq!(detail_at(LevelVersion::PRIVILEGED, json!({}), spec), "");
    }

    #[test]
    fn host_process() {
        let spec = json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
            "containers": [{"name": "a", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                           {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": true}}}]});
        assert_eq!(
            baseline(spec),
            r#"hostProcess (pod and containers "a", "b" must not set securityContext.windowsOptions.hostProcess=true)"#
        );
    }

    #[test]
    fn host_namespaces_all_three() {
        assert_eq!(
            baseline(
                json!({"hostNetwork": true, "hostPID": true, "hostIPC": true, "containers": []})
            ),
            "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"
        );
        assert_eq!(
            baseline(json!({"hostNetwork": false, "containers": []})),
            ""
        );
    }

    #[test]
    fn privileged_in_every_container_kind() {
        let p = json!({"privileged": true});
        let spec = json!({"initContainers": [{"name": "i", "securityContext": p}],
            "containers": [{"name": "c", "securityContext": p}, {"name": "ok", "securityContext": {"privileged": false}}],
            "ephemeralContainers": [{"name": "e", "securityContext": p}]});
        assert_eq!(
            baseline(spec),
            r#"privileged (containers "i", "c", "e" must not set securityContext.privileged=true)"#
        );
    }

    #[test]
    fn capabilities_baseline_and_restricted() {
        let spec = json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["NET_RAW", "CHOWN", "SYS_ADMIN"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["KILL"]}}}]});
        assert_eq!(
            baseline(spec.clone()),
            r#"non-default capabilities (container "a" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#
        );
        let r = check_pod(R, &json!({}), &spec);
        let caps = r
            .iter()
            .find(|v| v.reason == "unrestricted capabilities")
            .unwrap();
        assert_eq!(
            caps.detail,
            r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b" must not include "CHOWN", "KILL", "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#
        );
        // restricted replaces the baseline capabilities check.
        assert!(!r.iter().any(|v| v.reason == "non-default capabilities"));
        let mut ok = good("c");
        ok["securityContext"]["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
        assert_eq!(restricted(json!({"containers": [ok]})), "");
        // Before 1.22 restricted had no capabilities check of its own: baseline's applies.
        let old = check_pod(lv(Level::Restricted, Version::V1(21)), &json!({}), &spec);
        assert!(old.iter().any(|v| v.reason == "non-default capabilities"));
        assert!(!old.iter().any(|v| v.reason == "unrestricted capabilities"));
    }

    #[test]
    fn host_path_volumes_and_restricted_volume_types() {
        let spec = json!({"containers": [], "volumes": [
            {"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {"path": "/etc"}},
            {"name": "n", "nfs": {"server": "x", "path": "/"}}, {"name": "e", "emptyDir": {}},
            {"name": "p", "persistentVolumeClaim": {"claimName": "c"}}]});
        assert_eq!(
            baseline(spec.clone()),
            r#"hostPath volumes (volumes "a", "b")"#
        );
        assert_eq!(
            restricted(spec),
            r#"restricted volume types (volumes "a", "b", "n" use restricted volume types "hostPath", "nfs")"#
        );
        assert_eq!(
            restricted(json!({"containers": [], "volumes": [{"name": "x", "foo": {}}]})),
            r#"restricted volume types (volume "x" uses restricted volume type "unknown")"#
        );
    }

    #[test]
    fn host_ports_sorted_as_strings() {
        let spec = json!({"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 80}]},
            {"name": "b", "ports": [{"containerPort": 80}]}]});
        assert_eq!(
            baseline(spec),
            r#"hostPort (container "a" uses hostPorts 80, 8080)"#
        );
    }

    #[test]
    fn app_armor() {
        let spec = json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}},
            "containers": [{"name": "a", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}]});
        let meta = json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/b": "localhost/x"}});
        assert_eq!(
            detail_at(B, meta, spec),
            r#"forbidden AppArmor profiles (pod and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/a="unconfined"")"#
        );
    }

    #[test]
    fn se_linux() {
        let spec = json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}},
            "containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"user": "u", "role": "r", "type": "container_t"}}}]});
        assert_eq!(
            baseline(spec),
            r#"seLinuxOptions (pod and container "a" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set; role may not be set)"#
        );
        // container_engine_t is allowed from 1.31 on.
        let spec = json!({"containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}]});
        assert_eq!(baseline(spec.clone()), "");
        assert_eq!(
            detail_at(lv(Level::Baseline, Version::V1(30)), json!({}), spec),
            r#"seLinuxOptions (container "a" set forbidden securityContext.seLinuxOptions: type "container_engine_t")"#
        );
    }

    #[test]
    fn proc_mount() {
        let spec = json!({"containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}},
            {"name": "b", "securityContext": {"procMount": "Default"}}]});
        assert_eq!(
            baseline(spec),
            r#"procMount (container "a" must not set securityContext.procMount to "Unmasked")"#
        );
    }

    #[test]
    fn seccomp_baseline_and_restricted() {
        let spec = json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}, {"name": "b"}]});
        assert_eq!(
            baseline(spec.clone()),
            r#"seccompProfile (pod and container "a" must not set securityContext.seccompProfile.type to "Unconfined")"#
        );
        let r = check_pod(R, &json!({}), &spec);
        assert_eq!(r.iter().filter(|v| v.reason == "seccompProfile").count(), 1);
        let spec = json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"seccompProfile": {"type": "Localhost"}}}]});
        let r = check_pod(R, &json!({}), &spec);
        assert_eq!(
            r.iter()
                .find(|v| v.reason == "seccompProfile")
                .unwrap()
                .detail,
            r#"pod or container "a" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
        );
        // Windows pods are exempt from the restricted seccomp check from 1.25.
        let win = json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]});
        assert!(!check_pod(R, &json!({}), &win)
            .iter()
            .any(|v| v.reason == "seccompProfile"));
        // Before 1.19: the annotations.
        let meta = json!({"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/a": "runtime/default"}});
        assert_eq!(
            detail_at(
                lv(Level::Baseline, Version::V1(18)),
                meta,
                json!({"containers": [{"name": "a"}]})
            ),
            r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
        );
    }

    #[test]
    fn sysctls_by_version() {
        let spec = json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_rmem", "value": "1"}, {"name": "kernel.msgmax", "value": "1"},
            {"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]}, "containers": []});
        assert_eq!(baseline(spec.clone()), "forbidden sysctls (kernel.msgmax)");
        assert_eq!(
            detail_at(lv(Level::Baseline, Version::V1(31)), json!({}), spec),
            "forbidden sysctls (net.ipv4.tcp_rmem, kernel.msgmax)"
        );
    }

    #[test]
    fn allow_privilege_escalation_run_as_non_root_and_user() {
        let spec = json!({"securityContext": {"runAsUser": 0},
            "containers": [{"name": "a"}, {"name": "b", "securityContext": {"allowPrivilegeEscalation": true, "runAsNonRoot": false, "runAsUser": 0}}]});
        let r = check_pod(R, &json!({}), &spec);
        let get = |reason: &str| {
            r.iter()
                .find(|v| v.reason == reason)
                .map(|v| v.detail.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            get("allowPrivilegeEscalation != false"),
            r#"containers "a", "b" must set securityContext.allowPrivilegeEscalation=false"#
        );
        assert_eq!(
            get("runAsNonRoot != true"),
            r#"container "b" must not set securityContext.runAsNonRoot=false"#
        );
        assert_eq!(
            get("runAsUser=0"),
            r#"pod and container "b" must not set runAsUser=0"#
        );
        let spec = json!({"containers": [{"name": "a"}]});
        let r = check_pod(R, &json!({}), &spec);
        assert_eq!(
            r.iter()
                .find(|v| v.reason == "runAsNonRoot != true")
                .unwrap()
                .detail,
            r#"pod or container "a" must set securityContext.runAsNonRoot=true"#
        );
        // The pod-level setting covers the containers.
        let spec = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]});
        assert_eq!(restricted(spec), "");
        // runAsUser is checked from 1.23 on.
        let root = json!({"securityContext": {"runAsUser": 0}, "containers": []});
        assert_eq!(
            restricted(root.clone()),
            "runAsUser=0 (pod must not set runAsUser=0)"
        );
        assert_eq!(
            detail_at(lv(Level::Restricted, Version::V1(22)), json!({}), root),
            ""
        );
    }

    #[test]
    fn restricted_full_message_order() {
        let spec = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
        assert_eq!(
            restricted(spec.clone()),
            r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        );
        assert_eq!(restricted(json!({"containers": [good("a")]})), "");
        assert_eq!(baseline(spec), "");
    }

    #[test]
    fn probe_hosts_only_from_1_34() {
        let spec = json!({"containers": [{"name": "a", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}}]});
        assert_eq!(
            detail_at(
                lv(Level::Baseline, Version::V1(34)),
                json!({}),
                spec.clone()
            ),
            if crate::typed::kube_minor() >= 34 {
                r#"probe or lifecycle host (container "a" uses probe or lifecycle host "10.0.0.1")"#
            } else {
                ""
            }
        );
        assert_eq!(
            host_probes_and_lifecycle(&json!({}), &spec).unwrap().detail,
            r#"container "a" uses probe or lifecycle host "10.0.0.1""#
        );
    }

    #[test]
    fn labels_resolve_as_upstream() {
        let labels = |v: Value| v.as_object().cloned().unwrap();
        let d = Policy::default();
        let (p, e) = policy_to_evaluate(Some(&labels(json!({ENFORCE_LABEL: "baseline"}))), &d);
        assert!(e.is_empty());
        assert_eq!(p.enforce, B);
        // warn follows a stricter explicit enforce.
        assert_eq!(p.warn, B);
        assert_eq!(p.audit, LevelVersion::PRIVILEGED);
        let (p, _) = policy_to_evaluate(
            Some(&labels(
                json!({ENFORCE_LABEL: "baseline", ENFORCE_VERSION_LABEL: "v1.24", WARN_LABEL: "restricted"}),
            )),
            &d,
        );
        assert_eq!(p.enforce.to_string(), "baseline:v1.24");
        assert_eq!(p.warn.to_string(), "restricted:latest");
        let (p, e) = policy_to_evaluate(
            Some(&labels(
                json!({ENFORCE_LABEL: "strict", WARN_LABEL: "x", AUDIT_VERSION_LABEL: "v1.02"}),
            )),
            &d,
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(
            e.iter().map(LabelError::cause_text).collect::<Vec<_>>(),
            [
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "v1.02": must be "latest" or "v1.x""#,
                r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "x": must be one of privileged, baseline, restricted"#,
            ]
        );
        for ok in ["latest", "v1.0", "v1.25", "v1.99"] {
            assert!(Version::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["v1", "1.25", "v2.1", "v1.", "v1.x", "Latest", "v1.-1"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        // A pinned future version is evaluated as this server's.
        assert_eq!(
            Version::V1(999).effective_minor(),
            crate::typed::kube_minor()
        );
    }

    #[test]
    fn decisions_enforce_audit_warn() {
        let cfg = Config::default();
        let attack = json!({"hostPID": true, "containers": [{"name": "x", "image": "i", "securityContext": {"privileged": true}}]});
        let policy = Policy {
            enforce: B,
            audit: R,
            warn: R,
        };
        let d = evaluate_pod(&cfg, &policy, &[], &json!({}), &attack, true);
        assert_eq!(
            d.forbidden.as_deref(),
            Some(
                r#"violates PodSecurity "baseline:latest": host namespaces (hostPID=true), privileged (container "x" must not set securityContext.privileged=true)"#
            )
        );
        assert!(d.warnings.is_empty(), "no warnings on a refused request");
        assert_eq!(d.audit_annotations["enforce-policy"], "baseline:latest");
        assert!(d.audit_annotations["audit-violations"].starts_with(
            r#"would violate PodSecurity "restricted:latest": host namespaces (hostPID=true), privileged (container "x" must not set securityContext.privileged=true), allowPrivilegeEscalation != false"#
        ));
        // Templates are never enforced.
        let d = evaluate_pod(&cfg, &policy, &[], &json!({}), &attack, false);
        assert_eq!(d.forbidden, None);
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].starts_with(
            r#"would violate PodSecurity "restricted:latest": host namespaces (hostPID=true), privileged (container "x" must not set securityContext.privileged=true), allowPrivilegeEscalation != false"#
        ));
        assert!(!d.audit_annotations.contains_key("enforce-policy"));
        // An exempt runtime class.
        let cfg = Config {
            exempt_runtime_classes: vec!["kata".into()],
            ..Default::default()
        };
        let mut spec = attack.clone();
        spec["runtimeClassName"] = json!("kata");
        let d = evaluate_pod(&cfg, &policy, &[], &json!({}), &spec, true);
        assert_eq!(d, Decision::exempt("runtimeClass"));
        // Label errors are noted.
        let errs = vec![LabelError {
            label: ENFORCE_LABEL.into(),
            value: "x".into(),
            message: "must be one of privileged, baseline, restricted".into(),
        }];
        let d = evaluate_pod(
            &Config::default(),
            &policy,
            &errs,
            &json!({}),
            &json!({"containers": []}),
            true,
        );
        assert_eq!(
            d.audit_annotations["error"],
            r#"Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of privileged, baseline, restricted"#
        );
    }

    #[test]
    fn significant_updates() {
        let pod = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let mut labelled = pod.clone();
        labelled["metadata"]["labels"]["x"] = json!("y");
        labelled["spec"]["activeDeadlineSeconds"] = json!(5);
        assert!(!is_significant_pod_update(&labelled, &pod));
        let mut image = pod.clone();
        image["spec"]["containers"][0]["image"] = json!("b");
        assert!(is_significant_pod_update(&image, &pod));
        let mut eph = pod.clone();
        eph["spec"]["ephemeralContainers"] = json!([{"name": "d", "image": "a"}]);
        assert!(is_significant_pod_update(&eph, &pod));
        assert!(!is_significant_pod_update(&eph, &eph));
    }

    #[test]
    fn namespace_pod_warnings() {
        let pod = |name: &str, owner: Option<&str>, privileged: bool| {
            let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": privileged}}]}});
            if let Some(uid) = owner {
                p["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true, "kind": "ReplicaSet", "name": "rs", "apiVersion": "apps/v1"}]);
            }
            p
        };
        let pods = [
            pod("web-b", Some("u1"), true),
            pod("web-a", Some("u1"), true),
            pod("solo", None, true),
            pod("fine", None, false),
            pod("hostpid", None, false),
        ];
        let mut pods = pods.to_vec();
        pods[4]["spec"]["hostPID"] = json!(true);
        let w = evaluate_pods_in_namespace(&Config::default(), "x", B, &pods);
        assert_eq!(
            w,
            [
                r#"existing pods in namespace "x" violate the new PodSecurity enforce level "baseline:latest""#,
                "hostpid: host namespaces",
                "solo (and 2 other pods): privileged",
            ]
        );
        assert!(evaluate_pods_in_namespace(&Config::default(), "x", B, &pods[3..4]).is_empty());
    }

    #[test]
    fn exempt_namespace_warning_names_the_labelled_modes() {
        let labels = json!({ENFORCE_LABEL: "baseline", AUDIT_LABEL: "restricted"});
        let (p, _) = policy_to_evaluate(labels.as_object(), &Policy::default());
        assert_eq!(
            exempt_namespace_warning("ops", &p, labels.as_object(), &Policy::default()).unwrap(),
            r#"namespace "ops" is exempt from Pod Security, and the policy (enforce=baseline:latest, audit=restricted:latest) will be ignored"#
        );
        let (p, _) = policy_to_evaluate(None, &Policy::default());
        assert_eq!(
            exempt_namespace_warning("ops", &p, None, &Policy::default()),
            None
        );
    }

    #[test]
    fn admission_configuration_files() {
        let dir = Path::new("/nonexistent");
        let yaml = r#"
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: v1.30
      warn: restricted
    exemptions:
      usernames: [ci-bot]
      runtimeClasses: [kata]
      namespaces: [ops]
"#;
        let cfg = parse_admission_config(yaml, dir).unwrap();
        assert_eq!(cfg.defaults.enforce.to_string(), "baseline:v1.30");
        assert_eq!(cfg.defaults.warn.to_string(), "restricted:latest");
        assert_eq!(cfg.defaults.audit, LevelVersion::PRIVILEGED);
        assert_eq!(cfg.exempt_usernames, ["ci-bot"]);
        assert_eq!(cfg.exempt_runtime_classes, ["kata"]);
        assert_eq!(cfg.exempt_namespaces, ["ops"]);
        let as_json =
            serde_json::to_string(&serde_saphyr::from_str::<Value>(yaml).unwrap()).unwrap();
        assert_eq!(parse_admission_config(&as_json, dir).unwrap(), cfg);
        // No PodSecurity entry: the defaults.
        let none =
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins: []\n";
        assert_eq!(
            parse_admission_config(none, dir).unwrap(),
            Config::default()
        );

        let err = |text: &str| parse_admission_config(text, dir).unwrap_err();
        assert_eq!(
            err(&yaml.replace("enforce: baseline", "enforce: strict")),
            r#"plugins[0] (PodSecurity): defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            err(&yaml.replace("v1.30", "\"1.30\"")),
            r#"plugins[0] (PodSecurity): defaults.enforce-version: Invalid value: "1.30": must be "latest" or "v1.x""#
        );
        assert_eq!(
            err(&yaml.replace("v1.30", "1.30")),
            r#"plugins[0] (PodSecurity): defaults.enforce-version: must be a string, not 1.3"#
        );
        assert_eq!(
            err(&yaml.replace("[ops]", "[ops, ops, Bad_NS]")),
            r#"plugins[0] (PodSecurity): [exemptions.namespaces[1]: Duplicate value: "ops", exemptions.namespaces[2]: Invalid value: "Bad_NS": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')]"#
        );
        assert_eq!(
            err(&yaml.replace("exemptions:", "exemption:")),
            r#"plugins[0] (PodSecurity): PodSecurityConfiguration: unknown field "exemption" (known: apiVersion, kind, defaults, exemptions)"#
        );
        assert_eq!(
            err(&yaml.replace("name: PodSecurity", "name: EventRateLimit")),
            r#"plugins[0]: plugin "EventRateLimit" is not configurable in skiff (only PodSecurity is)"#
        );
        assert_eq!(
            err(&yaml.replace("kind: AdmissionConfiguration", "kind: Config")),
            r#"kind is "Config", expected AdmissionConfiguration"#
        );
        assert_eq!(
            err(&yaml.replace(
                "pod-security.admission.config.k8s.io/v1",
                "pod-security.admission.config.k8s.io/v2"
            )),
            r#"plugins[0] (PodSecurity): PodSecurityConfiguration apiVersion "pod-security.admission.config.k8s.io/v2" is not supported (use pod-security.admission.config.k8s.io/v1 or pod-security.admission.config.k8s.io/v1beta1 or pod-security.admission.config.k8s.io/v1alpha1)"#
        );
        assert!(
            err("plugins: [").starts_with("not valid YAML"),
            "{}",
            err("plugins: [")
        );
    }

    #[test]
    fn admission_configuration_plugin_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("psa.yaml"),
            "apiVersion: pod-security.admission.config.k8s.io/v1beta1\nkind: PodSecurityConfiguration\ndefaults:\n  audit: restricted\n",
        )
        .unwrap();
        let main = dir.path().join("admission.yaml");
        std::fs::write(
            &main,
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  path: psa.yaml\n",
        )
        .unwrap();
        let cfg = load_admission_config(&main).unwrap();
        assert_eq!(cfg.defaults.audit, R);
        let missing = dir.path().join("nope.yaml");
        assert!(load_admission_config(&missing)
            .unwrap_err()
            .starts_with(&format!("{}: reading: ", missing.display())));
    }
}
