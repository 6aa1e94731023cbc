//! Which endpoints take traffic (kube-proxy's `CategorizeEndpoints`).

use super::model::{Endpoint, ServicePort};

/// The endpoints in use: the ready ones; if none is ready, those serving and
/// terminating (so connections still land while a rollout replaces every pod).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// A service port's endpoints sorted into what its chains use.
#[derive(Debug, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// For `internalTrafficPolicy: Cluster`: usable endpoints on any node.
    pub cluster: Vec<&'a Endpoint>,
    /// For `internalTrafficPolicy: Local`: usable endpoints on this node.
    pub local: Vec<&'a Endpoint>,
    /// Whether the port has any usable endpoint anywhere.
    pub any: bool,
}

impl Categorized<'_> {
    /// The endpoints ClusterIP traffic goes to under the port's policy.
    pub fn internal(&self, sp: &ServicePort) -> &[&Endpoint] {
        if sp.internal_local {
            &self.local
        } else {
            &self.cluster
        }
    }
}

pub fn categorize(sp: &ServicePort) -> Categorized<'_> {
    let cluster = usable(sp.endpoints.iter());
    let local = if sp.internal_local || sp.external_local {
        usable(sp.endpoints.iter().filter(|e| e.local))
    } else {
        Vec::new()
    };
    Categorized {
        any: !cluster.is_empty(),
        cluster,
        local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Protocol;
    use std::net::Ipv4Addr;

    fn ep(last: u8, ready: bool, serving: bool, terminating: bool, local: bool) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(10, 0, 0, last),
            port: 80,
            ready,
            serving,
            terminating,
            local,
        }
    }

    fn sp(endpoints: Vec<Endpoint>, internal_local: bool) -> ServicePort {
        ServicePort {
            namespace: "ns".into(),
            service: "s".into(),
            port_name: "".into(),
            protocol: Protocol::Tcp,
            cluster_ip: Ipv4Addr::new(10, 43, 0, 1),
            port: 80,
            internal_local,
            node_port: None,
            external_local: false,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            source_ranges: Vec::new(),
            affinity: None,
            endpoints,
        }
    }

    fn ips(v: &[&Endpoint]) -> Vec<u8> {
        v.iter().map(|e| e.ip.octets()[3]).collect()
    }

    #[test]
    fn ready_first_then_serving_terminating_and_local_by_node() {
        let s = sp(
            vec![
                ep(1, true, true, false, false),
                ep(2, false, true, true, true),
                ep(3, false, false, true, true),
            ],
            false,
        );
        let c = categorize(&s);
        assert_eq!(ips(&c.cluster), vec![1]);
        assert!(c.any);
        let s = sp(
            vec![
                ep(2, false, true, true, false),
                ep(3, false, false, true, false),
            ],
            false,
        );
        assert_eq!(ips(&categorize(&s).cluster), vec![2]);
        let s = sp(vec![ep(3, false, false, false, false)], false);
        assert!(!categorize(&s).any);
        let s = sp(
            vec![
                ep(1, true, true, false, false),
                ep(2, true, true, false, true),
            ],
            true,
        );
        let c = categorize(&s);
        assert_eq!(ips(c.internal(&s)), vec![2]);
        let s = sp(vec![ep(1, true, true, false, false)], true);
        let c = categorize(&s);
        assert!(c.any && c.internal(&s).is_empty());
    }
}
