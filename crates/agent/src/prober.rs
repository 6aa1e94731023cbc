//! The prober: runs each container's startup, liveness and readiness probes on
//! their schedule (initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold), remembers the results, and says which
//! containers must be restarted (liveness failed) and which are ready.

use crate::probe::{self, ProbeResult};
use k8s_openapi::api::core::v1::{Container, Probe};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
struct Track {
    last_run: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The probe's current verdict (readiness starts false, liveness true).
    ok: Option<bool>,
}

/// Probe state per (engine container id, probe kind).
#[derive(Default)]
pub struct Prober {
    tracks: Mutex<BTreeMap<(String, &'static str), Track>>,
}

/// What to do after a round of probes for one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    pub ready: bool,
    pub started: bool,
    /// The liveness (or startup) probe failed past its threshold: restart it.
    pub restart: Option<String>,
    /// Failed probe runs of this round, as the Unhealthy events word them
    /// ("Liveness probe failed: …").
    pub failures: Vec<String>,
}

/// Where probes reach the container.
pub struct Target<'a> {
    pub runtime: &'a dyn crate::cri::RuntimeService,
    pub container_id: &'a str,
    pub pod_ip: Option<IpAddr>,
    /// When the container (this run of it) started.
    pub started_at: Instant,
}

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A probe's or hook's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16),
    }
}

fn run(p: &Probe, c: &Container, t: &Target) -> ProbeResult {
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return probe::exec(t.runtime, t.container_id, &cmd, timeout);
    }
    let port_of = |port: &IntOrString| resolve_port(port, c);
    let ip = t.pod_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if let Some(h) = &p.http_get {
        let Some(port) = port_of(&h.port) else {
            return ProbeResult::Failure(format!("unknown port {:?}", h.port));
        };
        let host = h.host.clone().and_then(|x| x.parse().ok()).unwrap_or(ip);
        if t.runtime.simulated() {
            return ProbeResult::Success;
        }
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect();
        return probe::http_get(
            SocketAddr::new(host, port),
            h.path.as_deref().unwrap_or("/"),
            "",
            &headers,
            timeout,
        );
    }
    if let Some(s) = &p.tcp_socket {
        let Some(port) = port_of(&s.port) else {
            return ProbeResult::Failure(format!("unknown port {:?}", s.port));
        };
        let host = s.host.clone().and_then(|x| x.parse().ok()).unwrap_or(ip);
        if t.runtime.simulated() {
            return ProbeResult::Success;
        }
        return probe::tcp(SocketAddr::new(host, port), timeout);
    }
    ProbeResult::Failure("probe has no handler".into())
}

impl Prober {
    /// Run the probes of `c` that are due, and return the container's verdict.
    pub fn check(&self, c: &Container, t: &Target) -> Verdict {
        let mut v = Verdict {
            ready: true,
            started: true,
            restart: None,
            failures: Vec::new(),
        };
        let startup_done = match &c.startup_probe {
            Some(p) => {
                let ok = self.step("startup", p, c, t, false, &mut v.failures);
                if ok == Some(false) && self.failed_out("startup", p, t) {
                    v.restart = Some(format!(
                        "Container {} failed startup probe, will be restarted",
                        c.name
                    ));
                }
                ok == Some(true)
            }
            None => true,
        };
        v.started = startup_done;
        if !startup_done {
            v.ready = false;
            return v;
        }
        if let Some(p) = &c.liveness_probe {
            if self.step("liveness", p, c, t, true, &mut v.failures) == Some(false)
                && v.restart.is_none()
            {
                v.restart = Some(format!(
                    "Container {} failed liveness probe, will be restarted",
                    c.name
                ));
            }
        }
        if let Some(p) = &c.readiness_probe {
            v.ready = self.step("readiness", p, c, t, false, &mut v.failures) == Some(true);
        }
        v
    }

    fn failed_out(&self, kind: &'static str, p: &Probe, t: &Target) -> bool {
        let m = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(t.container_id.to_string(), kind))
            .map(|tr| tr.failures >= p.failure_threshold.unwrap_or(3).max(1))
            .unwrap_or(false)
    }

    /// Run one probe if due; the verdict after thresholds.
    fn step(
        &self,
        kind: &'static str,
        p: &Probe,
        c: &Container,
        t: &Target,
        initial: bool,
        failures: &mut Vec<String>,
    ) -> Option<bool> {
        let key = (t.container_id.to_string(), kind);
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let delay = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let due = {
            let m = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
            let tr = m.get(&key).cloned().unwrap_or_default();
            if t.started_at.elapsed() < delay {
                return tr.ok.or(Some(initial).filter(|_| kind == "liveness"));
            }
            tr.last_run.map(|l| l.elapsed() >= period).unwrap_or(true)
        };
        if due {
            let r = run(p, c, t);
            let mut m = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
            let tr = m.entry(key.clone()).or_default();
            tr.last_run = Some(Instant::now());
            match r {
                ProbeResult::Success => {
                    tr.successes += 1;
                    tr.failures = 0;
                    if tr.successes >= p.success_threshold.unwrap_or(1).max(1) {
                        tr.ok = Some(true);
                    }
                }
                ProbeResult::Failure(why) => {
                    let mut kind = kind.to_string();
                    kind[..1].make_ascii_uppercase();
                    failures.push(format!("{kind} probe failed: {why}"));
                    tr.failures += 1;
                    tr.successes = 0;
                    if tr.failures >= p.failure_threshold.unwrap_or(3).max(1) {
                        tr.ok = Some(false);
                    }
                }
            }
        }
        let m = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&key).and_then(|tr| tr.ok).or(if kind == "liveness" {
            Some(initial)
        } else {
            None
        })
    }

    /// Forget a container's probe state (it restarted or went away).
    pub fn forget(&self, container_id: &str) {
        let mut m = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(id, _), _| id != container_id);
    }
}
