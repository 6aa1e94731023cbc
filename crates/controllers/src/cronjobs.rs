//! CronJobs: at each time the schedule names (standard 5-field cron, in UTC or in the
//! IANA `timeZone`; an unknown zone schedules nothing and gets an UnknownTimeZone
//! Warning event), a Job from the template, named
//! `<cronjob>-<minutes since the epoch>` as Kubernetes names them; with
//! `concurrencyPolicy` (Allow, Forbid, Replace), `suspend`,
//! `startingDeadlineSeconds`, and the successful/failed history limits.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::{Expectations, Informer, Key, Requeue, EXPECTATIONS_RECHECK};

/// A parsed cron schedule: the allowed values of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    weekdays: Vec<u32>,
    dom_star: bool,
    dow_star: bool,
}

/// Why a cron schedule does not parse; each names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not five fields (after expanding `@hourly` and the like).
    #[error("expected exactly 5 fields, found {found}: {schedule}")]
    Fields {
        /// How many fields there were.
        found: usize,
        /// The schedule as written.
        schedule: String,
    },
    /// A `/step` that is not a positive number.
    #[error("bad step in {0}")]
    Step(String),
    /// A value that is neither a number nor a known name.
    #[error("bad value {value} in {field}")]
    Value {
        /// The value.
        value: String,
        /// The field it is in.
        field: String,
    },
    /// A value or range outside the field's bounds.
    #[error("value out of range in {0}")]
    Range(String),
}

fn field(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<u32>, ScheduleError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .map_err(|_| ScheduleError::Step(s.to_string()))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(ScheduleError::Step(s.to_string()));
        }
        let num = |x: &str| -> Result<u32, ScheduleError> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(x)) {
                return Ok(i as u32 + lo);
            }
            x.parse::<u32>().map_err(|_| ScheduleError::Value {
                value: x.to_string(),
                field: s.to_string(),
            })
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let v = num(range)?;
            (v, if part.contains('/') { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(ScheduleError::Range(s.to_string()));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Schedule {
    /// Parses a standard 5-field cron schedule or one of the `@` shorthands.
    pub fn parse(s: &str) -> Result<Schedule, ScheduleError> {
        let s = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return Err(ScheduleError::Fields {
                found: f.len(),
                schedule: s.to_string(),
            });
        }
        const MON: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DOW: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let mut weekdays = field(f[4], 0, 7, DOW)?;
        if weekdays.contains(&7) {
            weekdays.retain(|d| *d != 7);
            weekdays.push(0);
            weekdays.sort_unstable();
            weekdays.dedup();
        }
        Ok(Schedule {
            minutes: field(f[0], 0, 59, &[])?,
            hours: field(f[1], 0, 23, &[])?,
            days: field(f[2], 1, 31, &[])?,
            months: field(f[3], 1, 12, MON)?,
            weekdays,
            dom_star: f[2] == "*",
            dow_star: f[4] == "*",
        })
    }

    fn matches(&self, t: &DateTime<Utc>, tz: chrono_tz::Tz) -> bool {
        let t = t.with_timezone(&tz);
        let dom = self.days.contains(&t.day());
        let dow = self.weekdays.contains(&t.weekday().num_days_from_sunday());
        // cron's rule: with both day fields restricted, either may match.
        let day_ok = match (self.dom_star, self.dow_star) {
            (false, false) => dom || dow,
            _ => dom && dow,
        };
        self.minutes.contains(&t.minute())
            && self.hours.contains(&t.hour())
            && self.months.contains(&t.month())
            && day_ok
    }

    /// The latest scheduled time in `(after, until]`, the schedule read in `tz`.
    pub fn last_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tz: chrono_tz::Tz,
    ) -> Option<DateTime<Utc>> {
        let mut t = until.with_second(0)?.with_nanosecond(0)?;
        // Bounded walk back (at most a year of minutes would be far too many for
        // a pass; 7 days covers every practical missed window).
        for _ in 0..(7 * 24 * 60) {
            if t <= after {
                return None;
            }
            if self.matches(&t, tz) {
                return Some(t);
            }
            t -= Duration::minutes(1);
        }
        None
    }
}

fn job_done(j: &Job) -> Option<bool> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        .map(|c| c.type_ == "Complete")
}

/// The Job a CronJob named `name` runs at `due`: named `<cronjob>-<due in minutes>`
/// whatever name its template has, with the template's labels and annotations and
/// the scheduled time (in the CronJob's zone), as getJobFromTemplate2.
pub fn job_from_template(
    template: &serde_json::Value,
    ns: &str,
    name: &str,
    uid: &str,
    due: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> serde_json::Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": crate::template_metadata(template),
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    job["metadata"]["name"] = json!(format!("{name}-{}", due.timestamp() / 60));
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] = json!(due
        .with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    job["metadata"]["ownerReferences"] =
        json!([crate::owner_ref("batch/v1", "CronJob", name, uid)]);
    job
}

/// CronJobs already warned about an unknown time zone (by uid).
static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The CronJob controller: a CronJob is reconciled when it or one of its Jobs changes,
/// and every second for its schedule.
pub struct CronJobs {
    pub client: Client,
    pub cronjobs: Informer<CronJob>,
    pub jobs: Informer<Job>,
    pub expectations: Expectations<Job>,
}

/// How often a CronJob's schedule is looked at.
const SCHEDULE_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl CronJobs {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let client = &self.client;
        let now = Utc::now();
        let Some(cj) = self.cronjobs.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if !self.expectations.satisfied(&key) {
            return Ok(Some(EXPECTATIONS_RECHECK));
        }
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let name = cj.metadata.name.clone().unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &cj.spec else {
            return Ok(None);
        };
        let api_cj: Api<CronJob> = Api::namespaced(client.clone(), &ns);
        let api_jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let tz = match spec.time_zone.as_deref() {
            None => chrono_tz::UTC,
            Some(z) => match z.parse::<chrono_tz::Tz>() {
                Ok(tz) => tz,
                Err(e) => {
                    if WARNED
                        .lock()
                        .map(|mut w| w.insert(uid.clone()))
                        .unwrap_or(false)
                    {
                        let involved = json!({"apiVersion": "batch/v1", "kind": "CronJob",
                            "name": name, "namespace": ns, "uid": uid});
                        skiff_informer::event(
                            client,
                            involved,
                            "Warning",
                            "UnknownTimeZone",
                            &format!("invalid timeZone: {z:?}: {e}"),
                            "cronjob-controller",
                            crate::FIELD_MANAGER,
                        )
                        .await;
                    }
                    return Ok(None);
                }
            },
        };
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(cronjob = %name, error = %e, "unparseable schedule");
                return Ok(None);
            }
        };
        let owned_jobs = self.jobs.controlled_by(&ns, &uid);
        let mut owned: Vec<&Job> = owned_jobs.iter().map(|j| j.as_ref()).collect();
        owned.sort_by_key(|j| {
            j.metadata
                .creation_timestamp
                .clone()
                .map(|t| t.0.to_string())
        });
        let active: Vec<&&Job> = owned.iter().filter(|j| job_done(j).is_none()).collect();
        let last = cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.as_ref())
            .and_then(|t| DateTime::parse_from_rfc3339(&t.0.to_string()).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                cj.metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| DateTime::parse_from_rfc3339(&t.0.to_string()).ok())
                    .map(|t| t.with_timezone(&Utc))
            })
            .unwrap_or(now);
        let mut last_schedule = None;
        if !spec.suspend.unwrap_or(false) {
            if let Some(due) = schedule.last_between(last, now, tz) {
                let late = (now - due).num_seconds();
                let in_time = spec
                    .starting_deadline_seconds
                    .map(|d| late <= d)
                    .unwrap_or(true);
                let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                let mut create = in_time;
                if in_time && !active.is_empty() {
                    match policy {
                        "Forbid" => create = false,
                        "Replace" => {
                            for j in &active {
                                if let Ok(r) = api_jobs
                                    .delete(
                                        j.metadata.name.as_deref().unwrap_or(""),
                                        &DeleteParams::background(),
                                    )
                                    .await
                                {
                                    tracing::info!(cronjob = %format!("{ns}/{name}"),
                                        job = j.metadata.name.as_deref().unwrap_or(""), "replaced running job (concurrencyPolicy Replace)");
                                    self.expectations.deleted(&key, j, r.left().as_ref());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if create {
                    let template = serde_json::to_value(&spec.job_template).unwrap_or_default();
                    let job = job_from_template(&template, &ns, &name, &uid, due, tz);
                    if let Ok(j) = serde_json::from_value::<Job>(job) {
                        match api_jobs.create(&crate::post_params(), &j).await {
                            Ok(j) => {
                                tracing::info!(cronjob = %format!("{ns}/{name}"),
                                    job = j.metadata.name.as_deref().unwrap_or(""), scheduled = %due, "scheduled job");
                                self.expectations.wrote(&key, &j)
                            }
                            Err(kube::Error::Api(e)) if e.code == 409 => {}
                            Err(e) => tracing::warn!(cronjob = %name, error = %e, "creating job"),
                        }
                    }
                }
                // Whether run, skipped or too late, this time has been handled.
                last_schedule = Some(due);
            }
        }
        // History limits.
        let keep_ok = spec.successful_jobs_history_limit.unwrap_or(3).max(0) as usize;
        let keep_failed = spec.failed_jobs_history_limit.unwrap_or(1).max(0) as usize;
        for (want, limit) in [(true, keep_ok), (false, keep_failed)] {
            let done: Vec<&&Job> = owned.iter().filter(|j| job_done(j) == Some(want)).collect();
            if done.len() > limit {
                for j in done.iter().take(done.len() - limit) {
                    if let Ok(r) = api_jobs
                        .delete(
                            j.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::background(),
                        )
                        .await
                    {
                        tracing::info!(cronjob = %format!("{ns}/{name}"),
                            job = j.metadata.name.as_deref().unwrap_or(""), "deleted job (history limit)");
                        self.expectations.deleted(&key, j, r.left().as_ref());
                    }
                }
            }
        }
        let mut status = json!({
            "active": active.iter().map(|j| json!({"kind": "Job", "apiVersion": "batch/v1",
                "name": j.metadata.name, "namespace": ns, "uid": j.metadata.uid})).collect::<Vec<_>>(),
        });
        if let Some(t) = last_schedule {
            status["lastScheduleTime"] =
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        if let Some(last_ok) = owned
            .iter()
            .filter(|j| job_done(j) == Some(true))
            .filter_map(|j| j.status.as_ref().and_then(|s| s.completion_time.clone()))
            .max_by_key(|t| t.0.to_string())
        {
            status["lastSuccessfulTime"] = serde_json::to_value(last_ok).unwrap_or_default();
        }
        if crate::patch_changes(&cj.status, &status) {
            api_cj
                .patch_status(
                    &name,
                    &crate::patch_params(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await?;
        }
        Ok(Some(SCHEDULE_RECHECK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn jobs_are_named_for_the_cronjob_and_the_time() {
        let template = json!({"metadata": {"name": "fixed", "labels": {"a": "b"}},
                              "spec": {"template": {"spec": {"containers": []}}}});
        let due = Utc.with_ymd_and_hms(2024, 1, 1, 0, 5, 0).unwrap();
        let j = job_from_template(&template, "ns", "cj", "u", due, chrono_tz::UTC);
        assert_eq!(
            j["metadata"]["name"],
            json!(format!("cj-{}", due.timestamp() / 60))
        );
        assert_eq!(j["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(
            j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            json!("2024-01-01T00:05:00Z")
        );
        let j = job_from_template(&template, "ns", "cj", "u", due, chrono_tz::Europe::Paris);
        assert_eq!(
            j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
            json!("2024-01-01T01:05:00+01:00")
        );
    }

    #[test]
    fn schedules() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap(); // a Monday
        assert!(s.matches(&t, chrono_tz::UTC));
        assert!(!s.matches(&(t + Duration::minutes(1)), chrono_tz::UTC));
        assert!(!s.matches(
            &Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap(),
            chrono_tz::UTC
        )); // Sunday
        let every = Schedule::parse("* * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 30).unwrap();
        assert_eq!(
            every.last_between(now - Duration::minutes(2), now, chrono_tz::UTC),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap())
        );
        assert_eq!(Schedule::parse("@hourly").unwrap().minutes, vec![0]);
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * *").is_err());
        // Both day fields restricted: either matches.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        assert!(s.matches(
            &Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap(),
            chrono_tz::UTC
        )); // Monday the 23rd
        assert!(s.matches(
            &Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            chrono_tz::UTC
        ));
        // Tuesday the 1st
    }

    #[test]
    fn schedules_in_a_time_zone() {
        let s = Schedule::parse("30 9 * * *").unwrap();
        let tz: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
        // 09:30 in Tokyo is 00:30 UTC.
        let utc = Utc.with_ymd_and_hms(2026, 3, 1, 0, 30, 0).unwrap();
        assert!(s.matches(&utc, tz));
        assert!(!s.matches(&utc, chrono_tz::UTC));
        assert_eq!(
            s.last_between(utc - Duration::hours(1), utc + Duration::minutes(5), tz),
            Some(utc)
        );
        assert!("Mars/Olympus".parse::<chrono_tz::Tz>().is_err());
    }
}
