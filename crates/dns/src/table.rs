//! An in-memory zone: records by owner name, answered the way an authoritative
//! server does. A name with records of the asked type gets them (SRV answers carry
//! their targets' addresses as additional records); a name with a CNAME gets it and,
//! when the target is in the table, the target's records; a name that exists only
//! with other types, or only as the parent of other names, is NODATA; a name under
//! the apex that does not exist is NXDOMAIN; both negative answers carry the apex's
//! SOA. Without an apex, names the table does not hold are not its business.

use crate::zone::{within, Answer, Query, Zone};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::collections::{HashMap, HashSet};

/// How many CNAMEs in a row are followed inside the table.
const MAX_CHASE: usize = 8;

#[derive(Default)]
pub struct Table {
    apex: Option<(String, Record)>,
    names: HashMap<String, Vec<Record>>,
    /// Names that exist only because names below them do (empty non-terminals).
    parents: HashSet<String>,
}

/// The lookup key of a name: lower case, without the final dot.
pub fn key(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// A table authoritative for `apex` (with its SOA for negative answers).
    pub fn with_apex(apex: &Name, soa: Record) -> Table {
        Table {
            apex: Some((key(apex), soa)),
            ..Table::default()
        }
    }

    pub fn add(&mut self, rec: Record) {
        let k = key(rec.name());
        if let Some((apex, _)) = &self.apex {
            let mut parent = k.as_str();
            while let Some((_, rest)) = parent.split_once('.') {
                if !within(rest, apex) {
                    break;
                }
                self.parents.insert(rest.to_string());
                parent = rest;
            }
        }
        self.names.entry(k).or_default().push(rec);
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn soa(&self) -> Option<Record> {
        self.apex.as_ref().map(|(_, soa)| soa.clone())
    }

    fn matching(&self, name: &str, qtype: RecordType) -> Vec<Record> {
        self.names
            .get(name)
            .map(|rs| {
                rs.iter()
                    .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        for r in answers {
            if let RData::SRV(srv) = r.data() {
                let k = key(srv.target());
                for t in [RecordType::A, RecordType::AAAA] {
                    out.extend(self.matching(&k, t));
                }
            }
        }
        out
    }
}

impl Zone for Table {
    fn answer(&self, q: &Query<'_>) -> Answer {
        if q.qclass != DNSClass::IN && q.qclass != DNSClass::ANY {
            return Answer::NotMine;
        }
        let Some(records) = self.names.get(q.name) else {
            return match &self.apex {
                Some((apex, _)) if q.is_within(apex) => {
                    if self.parents.contains(q.name) || q.name == apex {
                        Answer::NoData { soa: self.soa() }
                    } else {
                        Answer::NxDomain { soa: self.soa() }
                    }
                }
                _ => Answer::NotMine,
            };
        };
        let answers = self.matching(q.name, q.qtype);
        if !answers.is_empty() {
            let additionals = self.additionals(&answers);
            return Answer::Records {
                answers,
                authority: Vec::new(),
                additionals,
            };
        }
        let cname = records
            .iter()
            .find(|r| r.record_type() == RecordType::CNAME)
            .cloned();
        let Some(mut cname) = cname else {
            return Answer::NoData { soa: self.soa() };
        };
        // Follow the chain while it stays in the table.
        let mut answers = Vec::new();
        for _ in 0..MAX_CHASE {
            let RData::CNAME(target) = cname.data() else {
                break;
            };
            let k = key(&target.0);
            answers.push(cname.clone());
            let next = self.matching(&k, q.qtype);
            if !next.is_empty() {
                answers.extend(next);
                break;
            }
            match self.matching(&k, RecordType::CNAME).into_iter().next() {
                Some(c) => cname = c,
                None => break,
            }
        }
        Answer::records(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::soa;
    use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
    use std::str::FromStr;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn table() -> Table {
        let apex = n("cluster.local.");
        let mut t = Table::with_apex(&apex, soa(&apex, 1, 5).unwrap());
        let web = n("web.default.svc.cluster.local.");
        t.add(Record::from_rdata(
            web.clone(),
            5,
            RData::A(A::new(10, 43, 0, 7)),
        ));
        t.add(Record::from_rdata(
            n("_http._tcp.web.default.svc.cluster.local."),
            5,
            RData::SRV(SRV::new(0, 100, 80, web.clone())),
        ));
        t.add(Record::from_rdata(
            n("7.0.43.10.in-addr.arpa."),
            5,
            RData::PTR(PTR(web.clone())),
        ));
        t.add(Record::from_rdata(
            n("ext.default.svc.cluster.local."),
            5,
            RData::CNAME(CNAME(web)),
        ));
        t
    }

    fn q(name: &str, t: RecordType) -> Answer {
        table().answer(&Query {
            name,
            qtype: t,
            qclass: DNSClass::IN,
        })
    }

    #[test]
    fn records_nodata_nxdomain_and_not_mine() {
        let Answer::Records { answers, .. } = q("web.default.svc.cluster.local", RecordType::A)
        else {
            panic!("no records")
        };
        assert_eq!(answers[0].data(), &RData::A(A::new(10, 43, 0, 7)));
        // The name exists, not with AAAA.
        let Answer::NoData { soa: Some(s) } = q("web.default.svc.cluster.local", RecordType::AAAA)
        else {
            panic!("not NODATA with SOA")
        };
        assert_eq!(s.record_type(), RecordType::SOA);
        // Empty non-terminals and the apex are NODATA too.
        for name in [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ] {
            assert!(
                matches!(q(name, RecordType::A), Answer::NoData { soa: Some(_) }),
                "{name}"
            );
        }
        assert!(matches!(
            q("nope.default.svc.cluster.local", RecordType::A),
            Answer::NxDomain { soa: Some(_) }
        ));
        assert_eq!(q("example.org", RecordType::A), Answer::NotMine);
    }

    #[test]
    fn srv_carries_the_targets_addresses() {
        let Answer::Records {
            answers,
            additionals,
            ..
        } = q("_http._tcp.web.default.svc.cluster.local", RecordType::SRV)
        else {
            panic!("no records")
        };
        assert_eq!(answers.len(), 1);
        assert_eq!(additionals.len(), 1);
        assert_eq!(
            additionals[0].name().to_string(),
            "web.default.svc.cluster.local."
        );
    }

    #[test]
    fn cname_is_chased_inside_the_table() {
        let Answer::Records { answers, .. } = q("ext.default.svc.cluster.local", RecordType::A)
        else {
            panic!("no records")
        };
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].record_type(), RecordType::CNAME);
        assert_eq!(answers[1].record_type(), RecordType::A);
        let Answer::Records { answers, .. } = q("ext.default.svc.cluster.local", RecordType::CNAME)
        else {
            panic!("no records")
        };
        assert_eq!(answers.len(), 1);
    }

    #[test]
    fn ptr_without_apex_coverage_is_still_answered() {
        let Answer::Records { answers, .. } = q("7.0.43.10.in-addr.arpa", RecordType::PTR) else {
            panic!("no records")
        };
        assert_eq!(
            answers[0].data(),
            &RData::PTR(PTR(n("web.default.svc.cluster.local.")))
        );
        // Outside the apex, an unknown address is someone else's.
        assert_eq!(
            q("8.0.43.10.in-addr.arpa", RecordType::PTR),
            Answer::NotMine
        );
    }
}
