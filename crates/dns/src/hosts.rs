//! A zone from a hosts file (`ADDRESS NAME [ALIASES...]`, `#` comments), as dnsmasq's
//! `--addn-hosts` serves one: A or AAAA for every name, PTR from each address to its
//! first name. Names the file does not hold are not its business.

use crate::table::Table;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record};
use std::net::IpAddr;

/// A hosts file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

/// The zone of a hosts file's text, every record with `ttl`.
pub fn parse(text: &str, ttl: u32) -> Result<Table, HostsError> {
    let mut t = Table::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(addr) = words.next() else {
            continue;
        };
        let err = |why: String| HostsError::Line { line: i + 1, why };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| err(format!("{addr:?} is not an address")))?;
        let mut first = None;
        for w in words {
            let mut name =
                Name::from_ascii(w).map_err(|e| err(format!("{w:?} is not a name: {e}")))?;
            name.set_fqdn(true);
            let name = name.to_lowercase();
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            t.add(Record::from_rdata(name.clone(), ttl, data));
            first.get_or_insert(name);
        }
        let Some(first) = first else {
            return Err(err(format!("no name for {addr}")));
        };
        let rev = Name::from(ip);
        t.add(Record::from_rdata(rev, ttl, RData::PTR(PTR(first))));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{Answer, Query, Zone};
    use hickory_proto::rr::{DNSClass, RecordType};

    fn ask(t: &Table, name: &str, qtype: RecordType) -> Answer {
        t.answer(&Query {
            name,
            qtype,
            qclass: DNSClass::IN,
        })
    }

    #[test]
    fn names_aliases_and_reverse() {
        let t = parse(
            "# comment\n10.0.0.1 Web web.local # trailing\n\n::1 six\n10.0.0.2 db\n",
            5,
        )
        .unwrap();
        let Answer::Records { answers, .. } = ask(&t, "web.local", RecordType::A) else {
            panic!("no A")
        };
        assert_eq!(answers[0].data(), &RData::A(A::new(10, 0, 0, 1)));
        assert_eq!(answers[0].ttl(), 5);
        assert!(matches!(
            ask(&t, "web", RecordType::A),
            Answer::Records { .. }
        ));
        let Answer::Records { answers, .. } = ask(&t, "six", RecordType::AAAA) else {
            panic!("no AAAA")
        };
        assert_eq!(answers.len(), 1);
        assert!(matches!(
            ask(&t, "six", RecordType::A),
            Answer::NoData { soa: None }
        ));
        let Answer::Records { answers, .. } = ask(&t, "1.0.0.10.in-addr.arpa", RecordType::PTR)
        else {
            panic!("no PTR")
        };
        assert_eq!(
            answers[0].data(),
            &RData::PTR(PTR(Name::from_ascii("web.").unwrap()))
        );
        assert_eq!(ask(&t, "other", RecordType::A), Answer::NotMine);
        assert_eq!(ask(&t, "local", RecordType::A), Answer::NotMine);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse("nonsense name\n", 5).is_err());
        assert!(parse("10.0.0.1\n", 5).is_err());
    }
}
