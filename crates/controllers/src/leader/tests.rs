use super::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// One Lease in memory with resourceVersion checks; a candidate in `hung` never gets an
/// answer (its API server or datastore is unreachable).
#[derive(Default)]
struct Shared {
    lease: Option<Value>,
    rv: u64,
    hung: HashSet<String>,
}

#[derive(Clone)]
struct Fake {
    shared: Arc<Mutex<Shared>>,
    who: String,
}

impl Fake {
    async fn gate(&self) {
        let hung = self.shared.lock().unwrap().hung.contains(&self.who);
        if hung {
            std::future::pending::<()>().await;
        }
    }
}

impl LeaseApi for Fake {
    async fn get(&self) -> Result<Option<Value>, String> {
        self.gate().await;
        let s = self.shared.lock().unwrap();
        Ok(s.lease.clone().map(|mut l| {
            l["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            l
        }))
    }

    async fn create(&self, lease: Value) -> Result<(), String> {
        self.gate().await;
        let mut s = self.shared.lock().unwrap();
        if s.lease.is_some() {
            return Err("AlreadyExists".into());
        }
        s.rv += 1;
        s.lease = Some(lease);
        Ok(())
    }

    async fn replace(&self, lease: Value) -> Result<(), String> {
        self.gate().await;
        let mut s = self.shared.lock().unwrap();
        if lease["metadata"]["resourceVersion"] != json!(s.rv.to_string()) {
            return Err("Conflict".into());
        }
        s.rv += 1;
        s.lease = Some(lease);
        Ok(())
    }
}

/// A candidate's terms as (start, end) instants, recorded from its `leading` signal.
type Terms = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

fn candidate(
    shared: &Arc<Mutex<Shared>>,
    who: &str,
    stop: &watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, Terms) {
    let api = Fake {
        shared: shared.clone(),
        who: who.to_string(),
    };
    let e = Elector::new(api, "kube-system", "kube-scheduler", who, Timing::default());
    let (tx, mut rx) = watch::channel(false);
    let terms: Terms = Arc::default();
    let t = terms.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let now = Instant::now();
            let mut v = t.lock().unwrap();
            if *rx.borrow() {
                v.push((now, None));
            } else if let Some(last) = v.last_mut() {
                last.1 = Some(now);
            }
        }
    });
    (tokio::spawn(e.run(tx, stop.clone())), terms)
}

fn holder(shared: &Arc<Mutex<Shared>>) -> String {
    let s = shared.lock().unwrap();
    s.lease.as_ref().unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn one_leader_and_a_killed_one_is_replaced_after_the_lease_expires() {
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let (_stop_tx, stop) = watch::channel(false);
    let (a, a_terms) = candidate(&shared, "a", &stop);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_b, b_terms) = candidate(&shared, "b", &stop);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(holder(&shared), "a");
    assert_eq!(a_terms.lock().unwrap().len(), 1);
    assert!(b_terms.lock().unwrap().is_empty());
    // kill -9: no release, no more renewals.
    let killed = Instant::now();
    a.abort();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        b_terms.lock().unwrap().is_empty(),
        "b took over before the lease expired"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(holder(&shared), "b");
    let b = b_terms.lock().unwrap().clone();
    assert_eq!(b.len(), 1);
    // Within a lease duration plus a retry period of the last renewal.
    assert!(
        b[0].0 >= killed + Duration::from_secs(13),
        "{:?}",
        b[0].0 - killed
    );
    assert!(
        b[0].0 <= killed + Duration::from_secs(17),
        "{:?}",
        b[0].0 - killed
    );
    let l = shared.lock().unwrap().lease.clone().unwrap();
    assert_eq!(l["spec"]["leaseTransitions"], json!(1));
    assert_eq!(l["spec"]["leaseDurationSeconds"], json!(15));
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_datastore_stops_before_another_takes_over() {
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let (stop_tx, stop) = watch::channel(false);
    let (_a, a_terms) = candidate(&shared, "a", &stop);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_b, b_terms) = candidate(&shared, "b", &stop);
    tokio::time::sleep(Duration::from_secs(7)).await;
    shared.lock().unwrap().hung.insert("a".into());
    tokio::time::sleep(Duration::from_secs(40)).await;
    let a = a_terms.lock().unwrap().clone();
    let b = b_terms.lock().unwrap().clone();
    assert_eq!(a.len(), 1);
    let a_end = a[0].1.expect("a stopped leading");
    assert_eq!(b.len(), 1, "{b:?}");
    // a stopped within the renew deadline of its last renewal; b started only after the
    // lease expired: the terms do not overlap, with the margin in between.
    assert!(
        a_end + Duration::from_secs(4) <= b[0].0,
        "a until {a_end:?}, b from {:?}",
        b[0].0
    );
    assert_eq!(holder(&shared), "b");
    // Stopping ends the candidates, and the leader's signal goes false.
    stop_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(b_terms.lock().unwrap()[0].1.is_some());
}

#[tokio::test(start_paused = true)]
async fn the_component_runs_only_while_leading() {
    let (lead_tx, lead_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = Arc::new(Mutex::new(0i32));
    let starts = Arc::new(Mutex::new(0i32));
    let (r, s) = (running.clone(), starts.clone());
    let task = tokio::spawn(while_leading(lead_rx, stop_rx, move |mut stop| {
        let (r, s) = (r.clone(), s.clone());
        async move {
            *r.lock().unwrap() += 1;
            *s.lock().unwrap() += 1;
            let _ = stop.changed().await;
            *r.lock().unwrap() -= 1;
        }
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*running.lock().unwrap(), 0);
    lead_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*running.lock().unwrap(), 1);
    lead_tx.send(false).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*running.lock().unwrap(), 0);
    lead_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((*running.lock().unwrap(), *starts.lock().unwrap()), (1, 2));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(*running.lock().unwrap(), 0);
}
