//! What a server answers from: a [`Zone`] says, for one question, which records it
//! has, that the name exists without records of that type (NODATA), that the name
//! does not exist (NXDOMAIN), or that the name is not its business (forwarded).

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// One question as a zone sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// Lower case, dot-separated, without the final dot; "" is the root. Bytes other
    /// than printable ASCII, '.' and '\' inside a label are written `\DDD`.
    pub name: &'a str,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

impl Query<'_> {
    /// The question's name as a fully qualified hickory name, for records it owns
    /// (the server writes such owners as a pointer to the question, in the client's
    /// case).
    pub fn owner(&self) -> Result<Name, hickory_proto::ProtoError> {
        let mut n = Name::from_ascii(self.name)?;
        n.set_fqdn(true);
        Ok(n)
    }

    /// Whether the name is `zone` or below it (`zone` lower case, no final dot).
    pub fn is_within(&self, zone: &str) -> bool {
        within(self.name, zone)
    }
}

/// Whether `name` is `zone` or a name below it (both lower case, no final dot).
pub fn within(name: &str, zone: &str) -> bool {
    zone.is_empty()
        || name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// A zone's answer to one question. Every answer but `NotMine` is authoritative.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// NOERROR with records: the answer section (a CNAME first, then what it points
    /// to, when the zone chases it), authority, and additional records (the A records
    /// of SRV targets).
    Records {
        answers: Vec<Record>,
        authority: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// NOERROR, no records: the name exists, not with this type. The SOA goes in the
    /// authority section so resolvers can cache the absence (RFC 2308).
    NoData { soa: Option<Record> },
    /// The name does not exist.
    NxDomain { soa: Option<Record> },
    /// Not this zone's name: the server forwards it.
    NotMine,
}

impl Answer {
    /// NOERROR with these answers and nothing else.
    pub fn records(answers: Vec<Record>) -> Answer {
        Answer::Records {
            answers,
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The source of a server's own answers. Called from several threads at once.
pub trait Zone: Send + Sync {
    fn answer(&self, q: &Query<'_>) -> Answer;
}

impl<Z: Zone + ?Sized> Zone for std::sync::Arc<Z> {
    fn answer(&self, q: &Query<'_>) -> Answer {
        (**self).answer(q)
    }
}

/// A zone that owns nothing: everything is forwarded.
pub struct Nothing;

impl Zone for Nothing {
    fn answer(&self, _: &Query<'_>) -> Answer {
        Answer::NotMine
    }
}

/// The SOA record negative answers carry, as CoreDNS writes it for its zones:
/// `<zone> SOA ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>`,
/// the record's own TTL min(ttl, 300).
pub fn soa(zone: &Name, serial: u32, ttl: u32) -> Result<Record, hickory_proto::ProtoError> {
    let mname = Name::from_ascii("ns.dns.")?.append_domain(zone)?;
    let rname = Name::from_ascii("hostmaster.")?.append_domain(zone)?;
    let data = SOA::new(mname, rname, serial, 7200, 1800, 86400, ttl);
    Ok(Record::from_rdata(
        zone.clone(),
        ttl.min(300),
        RData::SOA(data),
    ))
}

/// Two zones in turn: the first one's answer unless it is `NotMine`.
pub struct Chain<A, B>(pub A, pub B);

impl<A: Zone, B: Zone> Zone for Chain<A, B> {
    fn answer(&self, q: &Query<'_>) -> Answer {
        match self.0.answer(q) {
            Answer::NotMine => self.1.answer(q),
            a => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_label_aligned() {
        assert!(within("a.cluster.local", "cluster.local"));
        assert!(within("cluster.local", "cluster.local"));
        assert!(!within("acluster.local", "cluster.local"));
        assert!(!within("local", "cluster.local"));
        assert!(within("anything", ""));
    }

    struct Only(&'static str);

    impl Zone for Only {
        fn answer(&self, q: &Query<'_>) -> Answer {
            if q.name == self.0 {
                Answer::NoData { soa: None }
            } else {
                Answer::NotMine
            }
        }
    }

    #[test]
    fn a_chain_asks_the_second_zone_only_for_what_the_first_does_not_own() {
        let z = Chain(Only("a"), Chain(Only("b"), Nothing));
        let ask = |name| {
            z.answer(&Query {
                name,
                qtype: RecordType::A,
                qclass: DNSClass::IN,
            })
        };
        assert_eq!(ask("a"), Answer::NoData { soa: None });
        assert_eq!(ask("b"), Answer::NoData { soa: None });
        assert_eq!(ask("c"), Answer::NotMine);
    }

    #[test]
    fn soa_is_coredns_shaped() {
        let z = Name::from_ascii("cluster.local.").unwrap();
        let r = soa(&z, 12, 5).unwrap();
        assert_eq!(r.ttl(), 5);
        let RData::SOA(s) = r.data() else {
            panic!("not an SOA")
        };
        assert_eq!(s.mname().to_string(), "ns.dns.cluster.local.");
        assert_eq!(s.rname().to_string(), "hostmaster.cluster.local.");
        assert_eq!(
            (s.refresh(), s.retry(), s.expire(), s.minimum()),
            (7200, 1800, 86400, 5)
        );
        assert_eq!(soa(&z, 1, 3600).unwrap().ttl(), 300);
    }
}
