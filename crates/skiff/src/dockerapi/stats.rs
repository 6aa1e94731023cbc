//! `GET /containers/{id}/top` and `GET /containers/{id}/stats`: a container's
//! processes as the host's `ps` shows them (dockerd's way), and its resource counters
//! from its cgroup and its network namespace, in docker's JSON shapes.

use super::{ok, Answer, ApiError, Req};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use skiff_engine::Container;
use std::time::Duration;

/// `GET /containers/{id}/top?ps_args=`: `ps` (default `-ef`) on the host, its rows
/// kept for the container's processes: `{"Titles", "Processes"}`.
pub(super) fn top(req: &Req, id: &str) -> Answer {
    let args = req
        .query
        .get("ps_args")
        .filter(|a| !a.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "-ef".into());
    let pids: Vec<i32> = req.engine()?.top(id)?.iter().map(|p| p.0).collect();
    let out = std::process::Command::new("ps")
        .args(args.split_whitespace())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running ps on the host: {e}"))?;
    if !out.status.success() {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ps {args}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    let (titles, rows) = parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
    ok(json!({ "Titles": titles, "Processes": rows }))
}

/// `ps` output: its titles, and the rows whose PID is one of `pids` (the last column
/// keeps its spaces, as a command line does).
fn parse_ps(out: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>), ApiError> {
    let mut lines = out.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let Some(col) = titles.iter().position(|t| t == "PID") else {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Couldn't find PID field in ps output".into(),
        ));
    };
    let mut rows = Vec::new();
    for line in lines {
        let mut fields: Vec<String> = Vec::new();
        let mut rest = line.trim_start();
        while fields.len() + 1 < titles.len() && !rest.is_empty() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
        if !rest.is_empty() {
            fields.push(rest.to_string());
        }
        let pid: Option<i32> = fields.get(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            rows.push(fields);
        }
    }
    Ok((titles, rows))
}

/// The host's CPU time so far, in nanoseconds (all of /proc/stat's `cpu` line).
fn system_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .map(skiff_runtime::sys::ticks_to_ns)
        .unwrap_or(0)
}

fn online_cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// The interfaces of the network namespace of `pid` (but `lo`), docker's counters.
fn networks(pid: i32) -> Map<String, Value> {
    let mut m = Map::new();
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        m.insert(
            name.to_string(),
            json!({
                "rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11],
            }),
        );
    }
    m
}

/// One sample: the time, and the container's counters (None when it is not running).
struct Sample {
    read: String,
    cg: Option<skiff_runtime::cgroups::Stats>,
    system: u64,
}

fn sample(c: &Container) -> Sample {
    let running = c.state.status.is_active() && c.state.pid > 0;
    Sample {
        read: skiff_engine::persist::now(),
        cg: c
            .state
            .cgroup
            .as_ref()
            .filter(|_| running)
            .map(|g| g.stats()),
        system: system_cpu_ns(),
    }
}

fn cpu_json(s: &Sample) -> Value {
    let Some(cg) = &s.cg else {
        return json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        });
    };
    json!({
        "cpu_usage": {
            "total_usage": cg.cpu_total_ns,
            "usage_in_kernelmode": cg.cpu_system_ns,
            "usage_in_usermode": cg.cpu_user_ns,
        },
        "system_cpu_usage": s.system,
        "online_cpus": online_cpus(),
        "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
    })
}

/// docker's stats JSON from the sample before (`pre`) and now.
fn stats_json(c: &Container, pre: Option<&Sample>, now: &Sample) -> Value {
    let host_mem = skiff_runtime::sys::meminfo("MemTotal:").unwrap_or(0);
    let (memory, pids, blkio) = match &now.cg {
        Some(cg) => {
            let limit = if cg.memory_limit == u64::MAX {
                host_mem
            } else {
                cg.memory_limit.min(host_mem.max(1))
            };
            let mut io = Vec::new();
            for d in &cg.io {
                for (op, value) in [("read", d.read), ("write", d.write)] {
                    io.push(
                        json!({ "major": d.major, "minor": d.minor, "op": op, "value": value }),
                    );
                }
            }
            (
                json!({ "usage": cg.memory_usage, "stats": cg.memory_stat, "limit": limit }),
                json!({ "current": cg.pids, "limit": cg.pids_limit }),
                json!({ "io_service_bytes_recursive": io }),
            )
        }
        None => (
            json!({}),
            json!({}),
            json!({ "io_service_bytes_recursive": null }),
        ),
    };
    let zero = Sample {
        read: skiff_engine::state::ZERO_TIME.into(),
        cg: None,
        system: 0,
    };
    let pre = pre.unwrap_or(&zero);
    let mut v = json!({
        "name": format!("/{}", c.record.name),
        "id": c.record.id,
        "read": if now.cg.is_some() { now.read.clone() } else { skiff_engine::state::ZERO_TIME.into() },
        "preread": pre.read,
        "pids_stats": pids,
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(now),
        "precpu_stats": cpu_json(pre),
        "memory_stats": memory,
    });
    if now.cg.is_some() && c.state.pid > 0 {
        let nets = networks(c.state.pid);
        if !nets.is_empty() {
            v["networks"] = Value::Object(nets);
        }
    }
    v
}

/// `GET /containers/{id}/stats?stream&one-shot`: one JSON document a second while
/// streaming; one (its `precpu_stats` a second before, unless `one-shot`) otherwise.
pub(super) fn stats(req: &Req, id: &str) -> Answer {
    let stream = match req.query.get("stream") {
        None => true,
        Some(_) => req.flag("stream")?,
    };
    let one_shot = req.flag("one-shot")?;
    if one_shot && stream {
        return Err(ApiError::bad("cannot have stream=true and one-shot=true"));
    }
    let e = req.engine()?;
    let mut c = e.get(id)?;
    super::streamed("application/json", "docker-api-stats", move |tx| {
        let mut pre: Option<Sample> = None;
        if !stream && !one_shot && c.state.status.is_active() {
            pre = Some(sample(&c));
            std::thread::sleep(Duration::from_secs(1));
            let _ = c.reload();
        }
        loop {
            let now = sample(&c);
            let doc = stats_json(&c, pre.as_ref(), &now);
            if tx.blocking_send(Bytes::from(format!("{doc}\n"))).is_err() || !stream {
                return;
            }
            if now.cg.is_none() {
                return;
            }
            pre = Some(now);
            // A second between documents, leaving early when the client goes.
            for _ in 0..10 {
                if tx.is_closed() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if c.reload().is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_are_kept_for_the_containers_pids() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n\
                   root         412       1  0 10:01 ?        00:00:00 sleep 300\n\
                   1000         413     412  0 10:01 pts/0    00:00:00 sh -c echo a  b\n";
        let (titles, rows) = parse_ps(out, &[412, 413]).unwrap();
        assert_eq!(titles.len(), 8);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], "412");
        assert_eq!(rows[1][7], "sh -c echo a  b");
        let none = parse_ps("USER COMMAND\nroot x\n", &[1]).unwrap_err();
        assert!(none.1.contains("PID field"), "{}", none.1);
    }
}
