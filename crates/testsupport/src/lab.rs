//! Several nodes on one machine: a cluster whose nodes each run in a network
//! namespace of their own, joined by a bridge in a "lan" namespace, with no link to
//! the host's namespace at all, so no cluster, service or pod traffic can leave the
//! machine (the namespaces have no route out). Every lab uses the same addresses
//! (`10.213.254.0/24`, node `i` at `.i+1`): they never meet.
//!
//! Node 0 runs `skiff server` (its agent in-process); the others run `skiff agent`,
//! joined by the server's token. kubectl runs in node 0's namespace. Each node has
//! its own engine [`Root`]. Dropping the lab deletes every pod, stops the agents and
//! the server, removes what their nodes left, and deletes the namespaces (the kernel
//! removes every link, route, device and nftables table in them).

use crate::cluster::{clean_node_root, lenient_eviction, Cluster};
use crate::netns::NetNs;
use crate::Root;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The lab's LAN.
pub const LAN_PREFIX: &str = "10.213.254";

/// A node that joined the lab's server.
pub struct LabNode {
    pub name: String,
    pub ip: String,
    pub ns: Arc<NetNs>,
    pub root: Root,
    child: Option<Child>,
}

impl LabNode {
    /// Stops the node's agent (SIGTERM), leaving what it made in place.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::kill(c.id() as i32, libc::SIGTERM);
            let _ = c.wait();
        }
    }
}

pub struct Lab {
    /// Node 0: the server and its in-process agent.
    pub server: Cluster,
    /// Nodes 1…: joined agents.
    pub agents: Vec<LabNode>,
    /// The LAN namespace with the bridge every node is attached to.
    pub lan: NetNs,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// kubectl's arguments that delete every pod quickly (a rig's teardown, before its
/// agents stop).
pub const DELETE_EVERY_POD: [&str; 8] = [
    "delete",
    "pods",
    "--all",
    "-A",
    "--grace-period",
    "1",
    "--timeout",
    "30s",
];

/// `skiff agent` on `root` joining `url` with `token` as node `name` at `ip`: no
/// streaming port of its own, its own pod bridge, lenient eviction, its data under
/// the root and its log in `<root>/agent.log`.
pub fn agent_command(
    root: &Root,
    url: &str,
    token: &str,
    name: &str,
    ip: &str,
) -> std::process::Command {
    let mut cmd = root.cmd(&[
        "agent",
        "--server",
        url,
        "--token",
        token,
        "--node-name",
        name,
        "--node-ip",
        ip,
        "--kubelet-port",
        "0",
        "--pod-bridge",
        &format!("{}q", root.bridge),
    ]);
    cmd.args(lenient_eviction(&[]))
        .arg("--data-dir")
        .arg(root.dir.join("agent"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(root.dir.join("agent.log")).expect("agent log"),
        ));
    cmd
}

/// A LAN namespace `<prefix>lan` with its bridge, linked to nothing else.
pub fn lan(prefix: &str) -> NetNs {
    let lan = NetNs::new(&format!("{prefix}lan"));
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    lan
}

/// Machine `i` on `lan`: namespace `<prefix>n<i>` with `eth0` at `LAN_PREFIX.<i+1>`;
/// the namespace and its address.
pub fn lan_node(lan: &NetNs, prefix: &str, i: usize) -> (Arc<NetNs>, String) {
    let ns = NetNs::new(&format!("{prefix}n{i}"));
    let ip = format!("{LAN_PREFIX}.{}", i + 1);
    // The pair is made in the lan namespace, its far end moved to the node.
    let port = format!("n{i}");
    lan.ip(&[
        "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
    ]);
    lan.ip(&["link", "set", &port, "master", "br0"]);
    lan.ip(&["link", "set", &port, "up"]);
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    (Arc::new(ns), ip)
}

impl Lab {
    /// A lab of `nodes` nodes (at least 1). `server_extra` and `agent_extra` are added
    /// to the server's and every agent's flags. Returns once every node is Ready.
    pub fn start(exe: &str, nodes: usize, server_extra: &[&str], agent_extra: &[&str]) -> Lab {
        assert!((1..200).contains(&nodes), "1 to 199 nodes");
        let k = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("skl{}x{k}", std::process::id() % 100_000);
        let lan = lan(&prefix);
        let node_ns = |lan: &NetNs, i: usize| lan_node(lan, &prefix, i);
        let (ns0, ip0) = node_ns(&lan, 0);
        let mut extra: Vec<String> = [
            "--node-ip",
            ip0.as_str(),
            "--advertise-address",
            ip0.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        extra.extend(server_extra.iter().map(|s| s.to_string()));
        let mut server = Cluster {
            root: Root::with_busybox(exe),
            server: None,
            node: format!("{prefix}-n0"),
            extra,
            bind: "0.0.0.0".into(),
            banner: String::new(),
            netns: Some(ns0),
            cluster_cidr: "10.42.0.0/16".into(),
        };
        server.boot();
        let mut lab = Lab {
            server,
            agents: Vec::new(),
            lan,
        };
        let url = format!("https://{ip0}:{}", lab.server.port());
        let token = lab.server.token();
        for i in 1..nodes {
            let (ns, ip) = node_ns(&lab.lan, i);
            let root = Root::with_busybox(exe);
            let name = format!("{prefix}-n{i}");
            let mut cmd = agent_command(&root, &url, &token, &name, &ip);
            cmd.args(agent_extra);
            ns.enter(&mut cmd);
            let child = cmd.spawn().expect("start skiff agent");
            lab.agents.push(LabNode {
                name,
                ip,
                ns,
                root,
                child: Some(child),
            });
        }
        for n in lab.node_names() {
            lab.server.wait_for(&["get", "node", &n], " Ready ", 60);
        }
        lab
    }

    /// Every node's name, node 0 first.
    pub fn node_names(&self) -> Vec<String> {
        std::iter::once(self.server.node.clone())
            .chain(self.agents.iter().map(|a| a.name.clone()))
            .collect()
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> &NetNs {
        match i {
            0 => self
                .server
                .netns
                .as_deref()
                .expect("the server runs in a namespace"),
            i => &self.agents[i - 1].ns,
        }
    }

    /// Node `i`'s address on the LAN.
    pub fn ip(&self, i: usize) -> String {
        format!("{LAN_PREFIX}.{}", i + 1)
    }

    /// Runs `program ARGS` on node `i` (in its namespace, as a host process there).
    pub fn exec(&self, i: usize, program: &str, args: &[&str]) -> Output {
        self.ns(i).run(program, args)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Let every node stop its pods properly, then make sure of it.
        if self.server.server.is_some() {
            let _ = self.server.kubectl(&DELETE_EVERY_POD);
        }
        for a in &mut self.agents {
            a.stop();
            clean_node_root(&a.root, &a.name);
        }
        // The server (a Cluster) cleans up after itself when its field is dropped;
        // the namespaces go with their owners.
    }
}
