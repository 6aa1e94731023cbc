//! The engine as a library, the way the node agent will call it in-process:
//! containers joining namespaces held by a process that is not a container (a pod's
//! infra process), a pod-level cgroup parent, labels, managed files instead of the
//! init layer, and the dead container's record kept with its exit reason.

use skiff_engine::ops::Report;
use skiff_engine::{CreateOptions, Engine};
use skiff_testsupport::Root;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;

const EXE: &str = env!("CARGO_BIN_EXE_skiff");

#[test]
fn containers_join_an_infra_process_namespaces() {
    let r = Root::with_busybox(EXE);
    // The "infra" process: its own net, ipc and uts namespaces.
    let mut infra = std::process::Command::new("sleep");
    infra.arg("60");
    unsafe {
        infra.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut infra = infra.spawn().unwrap();
    let ipid = infra.id();
    let ns = |k: &str| format!("ns:/proc/{ipid}/ns/{k}");

    let e = Engine::open(&r.dir, std::path::Path::new(EXE)).unwrap();
    let files = r.dir.join("pod-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("hosts"),
        "127.0.0.1\tlocalhost\n10.42.0.9\tmypod\n",
    )
    .unwrap();
    let mut managed = BTreeMap::new();
    managed.insert(
        "/etc/hosts".to_string(),
        files.join("hosts").to_string_lossy().to_string(),
    );
    let mut labels = BTreeMap::new();
    labels.insert("io.kubernetes.pod.name".to_string(), "mypod".to_string());
    let opts = CreateOptions {
        image: "busybox".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /etc/hosts; exit 2".into(),
        ],
        network: Some(ns("net")),
        ipc: Some(ns("ipc")),
        uts: Some(ns("uts")),
        cgroup_parent: Some(format!("skiff-pod-{ipid}")),
        extra_labels: labels,
        managed_files: managed,
        ..Default::default()
    };
    let c = e.create(&opts).unwrap();
    assert_eq!(c.record.labels["io.kubernetes.pod.name"], "mypod");
    let (mut s, first) = e.start(&c.record.id, None).unwrap();
    assert!(matches!(first, Report::Started(_)), "{first:?}");
    assert_eq!(s.next_report(), Report::Exited(2));
    let after = e.get(&c.record.id).unwrap();
    assert_eq!(after.state.exit_code, 2);
    assert_eq!(
        after.state.exit_reason,
        Some(skiff_engine::state::ExitReason::Error)
    );
    // The pod cgroup parent holds the container's group.
    let cg_paths: Vec<std::path::PathBuf> = after
        .state
        .cgroup
        .as_ref()
        .unwrap()
        .paths
        .values()
        .cloned()
        .collect();
    let mem = after.state.cgroup.as_ref().unwrap().paths["memory"].clone();
    assert!(
        mem.to_string_lossy()
            .contains(&format!("skiff-pod-{ipid}/")),
        "{}",
        mem.display()
    );
    // Output and logs are kept after exit (for --previous).
    let logs: Vec<String> = skiff_engine::logs::read_entries(&after.log_path())
        .into_iter()
        .map(|e| e.log)
        .collect();
    let want_net = std::fs::read_link(format!("/proc/{ipid}/ns/net")).unwrap();
    let want_ipc = std::fs::read_link(format!("/proc/{ipid}/ns/ipc")).unwrap();
    assert_eq!(logs[0].trim(), want_net.to_string_lossy());
    assert_eq!(logs[1].trim(), want_ipc.to_string_lossy());
    assert_eq!(logs[3].trim(), "10.42.0.9\tmypod");
    e.remove(&c.record.id, true, true).unwrap();
    let _ = infra.kill();
    let _ = infra.wait();
    for p in cg_paths {
        assert!(!p.exists(), "container cgroup {} removed", p.display());
        let _ = std::fs::remove_dir(p.parent().unwrap());
    }
}
