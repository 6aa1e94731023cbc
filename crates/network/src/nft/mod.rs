//! nftables as a transaction of objects, rendered to the text `nft -f -` reads (what
//! knftables does for kube-proxy) or, for the commands partial syncs write, encoded as
//! nf_tables netlink messages ([`NftNetlink`]). One transaction is one atomic kernel
//! batch: either every command applies or none does.

mod cli;
mod compile;
mod netlink;
mod wire;

pub use cli::{Backend, NftCli, NftError};
pub use netlink::NftNetlink;

use std::fmt::Write as _;

/// The hook of a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// `filter` or `nat`.
    pub kind: &'static str,
    /// `prerouting`, `input`, `forward`, `output` or `postrouting`.
    pub hook: &'static str,
    /// Numeric (nft 1.0.6 refuses `dstnat` outside prerouting).
    pub priority: i32,
}

/// A set (no value type) or a map (with one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    /// `ipv4_addr`, `ipv4_addr . inet_proto . inet_service`, …
    pub key_type: String,
    /// `verdict` for a verdict map; None for a set.
    pub value_type: Option<String>,
    /// `dynamic,timeout`
    pub flags: Option<String>,
    /// Seconds.
    pub timeout: Option<u32>,
    pub comment: Option<String>,
}

impl SetSpec {
    pub fn is_map(&self) -> bool {
        self.value_type.is_some()
    }
}

/// One object of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Table {
        comment: Option<String>,
    },
    Chain {
        name: String,
        base: Option<BaseChain>,
    },
    /// A rule appended to `chain` (rules are never deleted one by one: chains are
    /// flushed and refilled).
    Rule {
        chain: String,
        rule: String,
    },
    Set(SetSpec),
    /// An element of set or map `set`; `value` only for maps.
    Element {
        set: String,
        map: bool,
        key: String,
        value: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Flush,
    Delete,
}

/// Commands on one table of family `ip`, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub table: String,
    pub ops: Vec<(Verb, Object)>,
}

impl Transaction {
    pub fn new(table: &str) -> Self {
        Transaction {
            table: table.to_string(),
            ops: Vec::new(),
        }
    }

    pub fn add(&mut self, o: Object) {
        self.ops.push((Verb::Add, o));
    }

    pub fn flush(&mut self, o: Object) {
        self.ops.push((Verb::Flush, o));
    }

    pub fn delete(&mut self, o: Object) {
        self.ops.push((Verb::Delete, o));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// One command as its line of nft text (without the newline), for messages.
    pub fn one_line(table: &str, verb: Verb, obj: &Object) -> String {
        let mut one = Transaction::new(table);
        one.ops.push((verb, obj.clone()));
        one.render().trim_end().to_string()
    }

    /// The text for `nft -f -`, one command a line.
    pub fn render(&self) -> String {
        let t = &self.table;
        let mut out = String::with_capacity(self.ops.len() * 96);
        for (verb, obj) in &self.ops {
            let v = match verb {
                Verb::Add => "add",
                Verb::Flush => "flush",
                Verb::Delete => "delete",
            };
            // Writing to a String cannot fail.
            let _ = match obj {
                Object::Table { comment } => match (verb, comment) {
                    (Verb::Add, Some(c)) => writeln!(out, "add table ip {t} {{ comment {c:?} ; }}"),
                    _ => writeln!(out, "{v} table ip {t}"),
                },
                Object::Chain { name, base } => match (verb, base) {
                    (Verb::Add, Some(b)) => writeln!(
                        out,
                        "add chain ip {t} {name} {{ type {} hook {} priority {} ; policy accept ; }}",
                        b.kind, b.hook, b.priority
                    ),
                    _ => writeln!(out, "{v} chain ip {t} {name}"),
                },
                Object::Rule { chain, rule } => writeln!(out, "{v} rule ip {t} {chain} {rule}"),
                Object::Set(s) => {
                    let what = if s.is_map() { "map" } else { "set" };
                    if *verb == Verb::Add {
                        let mut spec = match &s.value_type {
                            Some(val) => format!("type {} : {val} ; ", s.key_type),
                            None => format!("type {} ; ", s.key_type),
                        };
                        if let Some(f) = &s.flags {
                            let _ = write!(spec, "flags {f} ; ");
                        }
                        if let Some(secs) = s.timeout {
                            let _ = write!(spec, "timeout {secs}s ; ");
                        }
                        if let Some(c) = &s.comment {
                            let _ = write!(spec, "comment {c:?} ; ");
                        }
                        writeln!(out, "add {what} ip {t} {} {{ {spec}}}", s.name)
                    } else {
                        writeln!(out, "{v} {what} ip {t} {}", s.name)
                    }
                }
                Object::Element {
                    set, key, value, ..
                } => match (verb, value) {
                    (Verb::Add, Some(val)) => {
                        writeln!(out, "add element ip {t} {set} {{ {key} : {val} }}")
                    }
                    _ => writeln!(out, "{v} element ip {t} {set} {{ {key} }}"),
                },
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind_of_command() {
        let mut tx = Transaction::new("t");
        tx.add(Object::Table {
            comment: Some("c".into()),
        });
        tx.add(Object::Set(SetSpec {
            name: "m".into(),
            key_type: "ipv4_addr . inet_proto . inet_service".into(),
            value_type: Some("verdict".into()),
            flags: None,
            timeout: None,
            comment: Some("a map".into()),
        }));
        tx.add(Object::Set(SetSpec {
            name: "a".into(),
            key_type: "ipv4_addr".into(),
            value_type: None,
            flags: Some("dynamic,timeout".into()),
            timeout: Some(30),
            comment: None,
        }));
        tx.add(Object::Chain {
            name: "nat-output".into(),
            base: Some(BaseChain {
                kind: "nat",
                hook: "output",
                priority: -100,
            }),
        });
        tx.add(Object::Chain {
            name: "x/y".into(),
            base: None,
        });
        tx.flush(Object::Chain {
            name: "x/y".into(),
            base: None,
        });
        tx.add(Object::Rule {
            chain: "x/y".into(),
            rule: "jump z".into(),
        });
        tx.add(Object::Element {
            set: "m".into(),
            map: true,
            key: "10.0.0.1 . tcp . 80".into(),
            value: Some("goto x/y".into()),
        });
        tx.delete(Object::Element {
            set: "m".into(),
            map: true,
            key: "10.0.0.1 . tcp . 80".into(),
            value: Some("goto x/y".into()),
        });
        tx.flush(Object::Set(SetSpec {
            name: "a".into(),
            key_type: "ipv4_addr".into(),
            value_type: None,
            flags: None,
            timeout: None,
            comment: None,
        }));
        tx.delete(Object::Chain {
            name: "x/y".into(),
            base: None,
        });
        tx.delete(Object::Table { comment: None });
        assert_eq!(
            tx.render(),
            "add table ip t { comment \"c\" ; }\n\
             add map ip t m { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"a map\" ; }\n\
             add set ip t a { type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; }\n\
             add chain ip t nat-output { type nat hook output priority -100 ; policy accept ; }\n\
             add chain ip t x/y\n\
             flush chain ip t x/y\n\
             add rule ip t x/y jump z\n\
             add element ip t m { 10.0.0.1 . tcp . 80 : goto x/y }\n\
             delete element ip t m { 10.0.0.1 . tcp . 80 }\n\
             flush set ip t a\n\
             delete chain ip t x/y\n\
             delete table ip t\n"
        );
    }
}
