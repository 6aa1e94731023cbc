//! resolv.conf as glibc reads it (resolv.conf(5)): `nameserver` (at most three
//! used), `search` and `domain` (the last of them wins), `options`. Unknown keywords
//! are ignored, as glibc does; `#` and `;` start comments.

use std::net::{IpAddr, SocketAddr};

/// glibc uses the first three nameservers (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// Every `nameserver` line's address, in order (the caller applies MAXNS).
    pub nameservers: Vec<IpAddr>,
    /// The search list: from the last `search` or `domain` line.
    pub search: Vec<String>,
    /// `options` words, in order (`ndots:5`, `edns0`, ...).
    pub options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut rc = ResolvConf::default();
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut words = line
                .split(['#', ';'])
                .next()
                .unwrap_or("")
                .split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (fe80::1%eth0) keeps its address part.
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.split('%').next())
                        .and_then(|w| w.parse().ok())
                    {
                        rc.nameservers.push(ip);
                    }
                }
                Some("search") => rc.search = words.map(str::to_string).collect(),
                Some("domain") => {
                    rc.search = words.next().map(str::to_string).into_iter().collect()
                }
                Some("options") => rc.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        rc
    }

    pub fn read(path: &std::path::Path) -> std::io::Result<ResolvConf> {
        Ok(ResolvConf::parse(&std::fs::read_to_string(path)?))
    }

    /// The nameservers glibc would use, on port 53.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .take(MAX_NAMESERVERS)
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect()
    }

    /// The value of option `name` (`ndots` in `ndots:5`), the last one winning.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find_map(|o| match o.split_once(':') {
                Some((k, v)) if k == name => Some(v),
                None if o == name => Some(""),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_glibc_reads() {
        let rc = ResolvConf::parse(
            "# generated\nnameserver 10.0.0.2\nnameserver  fe80::1%eth0 \n; comment\n\
             search a.example b.example # tail\noptions ndots:2 timeout:1\n\
             options edns0 ndots:3\nnameserver bogus\nsortlist 1.2.3.4\n\
             nameserver 10.0.0.3\nnameserver 10.0.0.4\n",
        );
        assert_eq!(
            rc.nameservers,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap(),
                "10.0.0.3".parse().unwrap(),
                "10.0.0.4".parse().unwrap()
            ]
        );
        assert_eq!(rc.upstreams().len(), 3);
        assert_eq!(rc.upstreams()[0], "10.0.0.2:53".parse().unwrap());
        assert_eq!(rc.search, vec!["a.example", "b.example"]);
        assert_eq!(rc.option("ndots"), Some("3"));
        assert_eq!(rc.option("edns0"), Some(""));
        assert_eq!(rc.option("rotate"), None);
    }

    #[test]
    fn the_last_of_search_and_domain_wins() {
        let rc = ResolvConf::parse("search a b\ndomain c.example\n");
        assert_eq!(rc.search, vec!["c.example"]);
        let rc = ResolvConf::parse("domain c.example\nsearch a b\n");
        assert_eq!(rc.search, vec!["a", "b"]);
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
    }
}
