//! A transaction as nf_tables netlink messages, for the commands and rule shapes the
//! service proxy's partial syncs write (the per-Service chains, their rules, affinity
//! sets and map elements). The expressions are the ones `nft` 1.0 generates for the same
//! text (`nft --debug=netlink`), so `nft list` prints what the text said. Anything else
//! (tables, base chains, comments, anonymous interval sets, …) is [`Unsupported`] and
//! the whole transaction goes to the `nft` command instead.

use super::wire::*;
use super::{Object, SetSpec, Transaction, Verb};
use std::net::Ipv4Addr;

/// What the netlink encoder does not write (the transaction goes to `nft` instead).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not encoded for netlink: {0}")]
pub struct Unsupported(pub String);

fn unsupported<T>(what: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported(what.into()))
}

/// The messages of one batch (without its delimiters), each with the index of the
/// transaction command it came from.
#[derive(Debug, Default)]
pub struct Messages {
    pub msgs: Vec<(Vec<u8>, usize)>,
    next_seq: u32,
    next_set_id: u32,
}

impl Messages {
    fn seq(&mut self) -> u32 {
        self.next_seq += 1;
        self.next_seq
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Drop,
    Accept,
    Return,
    Jump(String),
    Goto(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Data {
    Value(Vec<u8>),
    Verdict(Verdict),
}

const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;
const RTN_LOCAL: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFT_DYNSET_OP_UPDATE: u32 = 1;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;
const NFT_NG_RANDOM: u32 = 1;
/// `NFT_REG_1`: the first data register; 0 is the verdict register.
const REG1: u32 = 1;
const REG2: u32 = 2;
const REG_VERDICT: u32 = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        mask: Vec<u8>,
    },
    Meta {
        key: u32,
    },
    Fib {
        flags: u32,
    },
    Lookup {
        set: String,
        set_id: Option<u32>,
        verdict_map: bool,
        invert: bool,
    },
    Dynset {
        set: String,
    },
    Immediate {
        dreg: u32,
        data: Data,
    },
    Dnat,
    Numgen {
        modulus: u32,
    },
}

/// An anonymous verdict map a rule looks up (`numgen … vmap { … }`).
#[derive(Debug, Default, PartialEq, Eq)]
struct AnonMap {
    id: u32,
    elements: Vec<(u32, Verdict)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Rule {
    exprs: Vec<Expr>,
    map: Option<AnonMap>,
}

fn proto_number(p: &str) -> Option<u8> {
    match p {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

fn parse_verdict(words: &[&str]) -> Result<Verdict, Unsupported> {
    match words {
        ["drop"] => Ok(Verdict::Drop),
        ["accept"] => Ok(Verdict::Accept),
        ["return"] => Ok(Verdict::Return),
        ["jump", c] => Ok(Verdict::Jump(c.to_string())),
        ["goto", c] => Ok(Verdict::Goto(c.to_string())),
        _ => unsupported(format!("verdict {:?}", words.join(" "))),
    }
}

/// An address or CIDR compared against the 4-byte field at `offset`, as nft does it:
/// whole-byte prefixes load fewer bytes, others mask.
fn match_address(
    exprs: &mut Vec<Expr>,
    offset: u32,
    op: u32,
    value: &str,
) -> Result<(), Unsupported> {
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok().filter(|p| (1..=32).contains(p))),
        None => (value, Some(32)),
    };
    let (Ok(addr), Some(prefix)) = (addr.parse::<Ipv4Addr>(), prefix) else {
        return unsupported(format!("address {value:?}"));
    };
    let mask = if prefix == 32 {
        u32::MAX
    } else {
        !(u32::MAX >> prefix)
    };
    let net = (u32::from(addr) & mask).to_be_bytes();
    if prefix % 8 == 0 {
        let len = prefix / 8;
        exprs.push(Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len,
        });
        exprs.push(Expr::Cmp {
            op,
            data: net[..len as usize].to_vec(),
        });
    } else {
        exprs.push(Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len: 4,
        });
        exprs.push(Expr::Bitwise {
            mask: mask.to_be_bytes().to_vec(),
        });
        exprs.push(Expr::Cmp {
            op,
            data: net.to_vec(),
        });
    }
    Ok(())
}

fn l4proto(exprs: &mut Vec<Expr>, proto: &str) -> Result<(), Unsupported> {
    let Some(n) = proto_number(proto) else {
        return unsupported(format!("protocol {proto:?}"));
    };
    exprs.push(Expr::Meta {
        key: NFT_META_L4PROTO,
    });
    exprs.push(Expr::Cmp {
        op: NFT_CMP_EQ,
        data: vec![n],
    });
    Ok(())
}

/// The rule text's expressions. `next_id` numbers anonymous sets.
fn parse_rule(text: &str, next_id: &mut u32) -> Result<Rule, Unsupported> {
    let w: Vec<&str> = text.split_whitespace().collect();
    let mut rule = Rule::default();
    let e = &mut rule.exprs;
    let mut i = 0;
    let mut done = false;
    while i < w.len() {
        if done {
            return unsupported(format!("rule {text:?}: words after its verdict"));
        }
        match &w[i..] {
            ["ip", field @ ("saddr" | "daddr"), rest @ ..] => {
                let offset = if *field == "saddr" { 12 } else { 16 };
                let (op, value, used) = match rest {
                    ["!=", v, ..] => (NFT_CMP_NEQ, *v, 4),
                    [v, ..] => (NFT_CMP_EQ, *v, 3),
                    [] => return unsupported(format!("rule {text:?}")),
                };
                if let Some(set) = value.strip_prefix('@') {
                    e.push(Expr::Payload {
                        base: NFT_PAYLOAD_NETWORK_HEADER,
                        offset,
                        len: 4,
                    });
                    e.push(Expr::Lookup {
                        set: set.to_string(),
                        set_id: None,
                        verdict_map: false,
                        invert: op == NFT_CMP_NEQ,
                    });
                } else {
                    match_address(e, offset, op, value)?;
                }
                i += used;
            }
            [proto @ ("tcp" | "udp" | "sctp"), "dport", port, ..] => {
                let Ok(port) = port.parse::<u16>() else {
                    return unsupported(format!("port {port:?}"));
                };
                l4proto(e, proto)?;
                e.push(Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 2,
                    len: 2,
                });
                e.push(Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: port.to_be_bytes().to_vec(),
                });
                i += 3;
            }
            ["meta", "l4proto", proto, ..] => {
                l4proto(e, proto)?;
                i += 3;
            }
            ["fib", field @ ("saddr" | "daddr"), "type", "local", ..] => {
                let flags = if *field == "saddr" {
                    NFTA_FIB_F_SADDR
                } else {
                    NFTA_FIB_F_DADDR
                };
                e.push(Expr::Fib { flags });
                e.push(Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: RTN_LOCAL.to_ne_bytes().to_vec(),
                });
                i += 4;
            }
            ["update", set, "{", "ip", "saddr", "}", ..] if set.starts_with('@') => {
                e.push(Expr::Payload {
                    base: NFT_PAYLOAD_NETWORK_HEADER,
                    offset: 12,
                    len: 4,
                });
                e.push(Expr::Dynset {
                    set: set[1..].to_string(),
                });
                i += 6;
            }
            ["dnat", "to", target, ..] => {
                let Some((Ok(addr), Ok(port))) = target
                    .split_once(':')
                    .map(|(a, p)| (a.parse::<Ipv4Addr>(), p.parse::<u16>()))
                else {
                    return unsupported(format!("dnat target {target:?}"));
                };
                e.push(Expr::Immediate {
                    dreg: REG1,
                    data: Data::Value(addr.octets().to_vec()),
                });
                e.push(Expr::Immediate {
                    dreg: REG2,
                    data: Data::Value(port.to_be_bytes().to_vec()),
                });
                e.push(Expr::Dnat);
                i += 3;
                done = true;
            }
            ["numgen", "random", "mod", n, "vmap", "{", rest @ ..] => {
                let Ok(modulus) = n.parse::<u32>() else {
                    return unsupported(format!("modulus {n:?}"));
                };
                let Some(close) = rest.iter().position(|t| *t == "}") else {
                    return unsupported(format!("rule {text:?}: unclosed map"));
                };
                let mut elements = Vec::new();
                for entry in rest[..close].split(|t| *t == ",") {
                    let [k, ":", verdict @ ..] = entry else {
                        return unsupported(format!("map entry {:?}", entry.join(" ")));
                    };
                    let Ok(k) = k.parse::<u32>() else {
                        return unsupported(format!("map key {k:?}"));
                    };
                    elements.push((k, parse_verdict(verdict)?));
                }
                if elements.is_empty() {
                    return unsupported(format!("rule {text:?}: empty map"));
                }
                *next_id += 1;
                let id = *next_id;
                e.push(Expr::Numgen { modulus });
                e.push(Expr::Lookup {
                    set: "__map%d".to_string(),
                    set_id: Some(id),
                    verdict_map: true,
                    invert: false,
                });
                rule.map = Some(AnonMap { id, elements });
                i += 6 + close + 1;
                done = true;
            }
            [v @ ("jump" | "goto"), c, ..] => {
                e.push(Expr::Immediate {
                    dreg: REG_VERDICT,
                    data: Data::Verdict(parse_verdict(&[v, c])?),
                });
                i += 2;
                done = true;
            }
            [v @ ("drop" | "accept" | "return"), ..] => {
                e.push(Expr::Immediate {
                    dreg: REG_VERDICT,
                    data: Data::Verdict(parse_verdict(&[v])?),
                });
                i += 1;
                done = true;
            }
            _ => return unsupported(format!("rule {text:?} at {:?}", w[i])),
        }
    }
    if rule.exprs.is_empty() {
        return unsupported(format!("rule {text:?}"));
    }
    Ok(rule)
}

fn put_verdict(m: &mut Msg, v: &Verdict) {
    let (code, chain) = match v {
        Verdict::Drop => (NF_DROP, None),
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        Verdict::Goto(c) => (NFT_GOTO, Some(c)),
    };
    m.begin(NFTA_DATA_VERDICT);
    m.put_u32(NFTA_VERDICT_CODE, code as u32);
    if let Some(c) = chain {
        m.put_str(NFTA_VERDICT_CHAIN, c);
    }
    m.end();
}

fn put_data(m: &mut Msg, ty: u16, d: &Data) {
    m.begin(ty);
    match d {
        Data::Value(v) => {
            m.put(NFTA_DATA_VALUE, v);
        }
        Data::Verdict(v) => put_verdict(m, v),
    }
    m.end();
}

fn put_expr(m: &mut Msg, e: &Expr) {
    let name = match e {
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Meta { .. } => "meta",
        Expr::Fib { .. } => "fib",
        Expr::Lookup { .. } => "lookup",
        Expr::Dynset { .. } => "dynset",
        Expr::Immediate { .. } => "immediate",
        Expr::Dnat => "nat",
        Expr::Numgen { .. } => "numgen",
    };
    m.begin(NFTA_LIST_ELEM).put_str(NFTA_EXPR_NAME, name);
    m.begin(NFTA_EXPR_DATA);
    match e {
        Expr::Payload { base, offset, len } => {
            // NFTA_PAYLOAD_DREG, BASE, OFFSET, LEN
            m.put_u32(1, REG1)
                .put_u32(2, *base)
                .put_u32(3, *offset)
                .put_u32(4, *len);
        }
        Expr::Cmp { op, data } => {
            // NFTA_CMP_SREG, OP, DATA
            m.put_u32(1, REG1).put_u32(2, *op);
            put_data(m, 3, &Data::Value(data.clone()));
        }
        Expr::Bitwise { mask } => {
            // NFTA_BITWISE_SREG, DREG, LEN, MASK, XOR
            m.put_u32(1, REG1)
                .put_u32(2, REG1)
                .put_u32(3, mask.len() as u32);
            put_data(m, 4, &Data::Value(mask.clone()));
            put_data(m, 5, &Data::Value(vec![0; mask.len()]));
        }
        Expr::Meta { key } => {
            // NFTA_META_DREG, KEY
            m.put_u32(1, REG1).put_u32(2, *key);
        }
        Expr::Fib { flags } => {
            // NFTA_FIB_DREG, RESULT, FLAGS
            m.put_u32(1, REG1)
                .put_u32(2, NFT_FIB_RESULT_ADDRTYPE)
                .put_u32(3, *flags);
        }
        Expr::Lookup {
            set,
            set_id,
            verdict_map,
            invert,
        } => {
            // NFTA_LOOKUP_SET, SREG, DREG, SET_ID, FLAGS
            m.put_str(1, set).put_u32(2, REG1);
            if *verdict_map {
                m.put_u32(3, REG_VERDICT);
            }
            if let Some(id) = set_id {
                m.put_u32(4, *id);
            }
            if *invert {
                m.put_u32(5, NFT_LOOKUP_F_INV);
            }
        }
        Expr::Dynset { set } => {
            // NFTA_DYNSET_SET_NAME, OP, SREG_KEY
            m.put_str(1, set)
                .put_u32(3, NFT_DYNSET_OP_UPDATE)
                .put_u32(4, REG1);
        }
        Expr::Immediate { dreg, data } => {
            // NFTA_IMMEDIATE_DREG, DATA
            m.put_u32(1, *dreg);
            put_data(m, 2, data);
        }
        Expr::Dnat => {
            // NFTA_NAT_TYPE, FAMILY, REG_ADDR_MIN, REG_PROTO_MIN, FLAGS
            m.put_u32(1, NFT_NAT_DNAT)
                .put_u32(2, u32::from(NFPROTO_IPV4))
                .put_u32(3, REG1)
                .put_u32(5, REG2)
                .put_u32(7, NF_NAT_RANGE_PROTO_SPECIFIED);
        }
        Expr::Numgen { modulus } => {
            // NFTA_NG_DREG, MODULUS, TYPE, OFFSET
            m.put_u32(1, REG1)
                .put_u32(2, *modulus)
                .put_u32(3, NFT_NG_RANDOM)
                .put_u32(4, 0);
        }
    }
    m.end().end();
}

/// nft's set user data: key byte order (1 host, 2 big endian), and for numgen maps the
/// data byte order and the `typeof` of the key, as nft 1.0 writes them.
const UDATA_AFFINITY: &[u8] = &[0, 4, 2, 0, 0, 0];
const UDATA_NUMGEN_MAP: &[u8] = &[
    0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 4, 8, 0, 4, 1, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
];

/// An element key: one field as its bytes, several each padded to 4 bytes (nft's
/// concatenations): addresses, protocol names, port numbers.
fn element_key(key: &str) -> Result<Vec<u8>, Unsupported> {
    let fields: Vec<&str> = key.split(" . ").map(str::trim).collect();
    let mut out = Vec::new();
    for f in &fields {
        let mut bytes = if let Ok(a) = f.parse::<Ipv4Addr>() {
            a.octets().to_vec()
        } else if let Some(p) = proto_number(f) {
            vec![p]
        } else if let Ok(port) = f.parse::<u16>() {
            port.to_be_bytes().to_vec()
        } else {
            return unsupported(format!("element key {key:?}"));
        };
        if fields.len() > 1 {
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        }
        out.extend(bytes);
    }
    Ok(out)
}

fn is_affinity_spec(s: &SetSpec) -> bool {
    s.key_type == "ipv4_addr"
        && s.value_type.is_none()
        && s.flags.as_deref() == Some("dynamic,timeout")
        && s.timeout.is_some()
        && s.comment.is_none()
}

impl Messages {
    fn push(&mut self, m: Msg, op: usize) {
        self.msgs.push((m.finish(), op));
    }

    fn anon_map(&mut self, table: &str, map: &AnonMap, op: usize) {
        let mut m = Msg::nft(NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_ACK, self.seq());
        m.put_str(NFTA_SET_TABLE, table)
            .put_str(NFTA_SET_NAME, "__map%d")
            .put_u32(
                NFTA_SET_FLAGS,
                NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP,
            )
            .put_u32(NFTA_SET_KEY_TYPE, TYPE_INTEGER)
            .put_u32(NFTA_SET_KEY_LEN, 4)
            .put_u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
            .put_u32(NFTA_SET_DATA_LEN, 0)
            .put_u32(NFTA_SET_ID, map.id);
        m.begin(NFTA_SET_DESC)
            .put_u32(NFTA_SET_DESC_SIZE, map.elements.len() as u32)
            .end();
        m.put(NFTA_SET_USERDATA, UDATA_NUMGEN_MAP);
        self.push(m, op);
        let mut m = Msg::nft(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, self.seq());
        m.put_str(NFTA_SET_ELEM_LIST_TABLE, table)
            .put_str(NFTA_SET_ELEM_LIST_SET, "__map%d")
            .put_u32(NFTA_SET_ELEM_LIST_SET_ID, map.id);
        m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        for (k, v) in &map.elements {
            m.begin(NFTA_LIST_ELEM);
            put_data(
                &mut m,
                NFTA_SET_ELEM_KEY,
                &Data::Value(k.to_ne_bytes().to_vec()),
            );
            put_data(&mut m, NFTA_SET_ELEM_DATA, &Data::Verdict(v.clone()));
            m.end();
        }
        m.end();
        self.push(m, op);
    }

    fn command(
        &mut self,
        table: &str,
        op: usize,
        verb: Verb,
        obj: &Object,
    ) -> Result<(), Unsupported> {
        let ack = NLM_F_ACK;
        match (verb, obj) {
            (Verb::Add, Object::Chain { name, base: None }) => {
                let mut m = Msg::nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE | ack, self.seq());
                m.put_str(NFTA_CHAIN_TABLE, table)
                    .put_str(NFTA_CHAIN_NAME, name);
                self.push(m, op);
            }
            (Verb::Flush, Object::Chain { name, .. }) => {
                let mut m = Msg::nft(NFT_MSG_DELRULE, ack, self.seq());
                m.put_str(NFTA_RULE_TABLE, table)
                    .put_str(NFTA_RULE_CHAIN, name);
                self.push(m, op);
            }
            (Verb::Delete, Object::Chain { name, .. }) => {
                let mut m = Msg::nft(NFT_MSG_DELCHAIN, ack, self.seq());
                m.put_str(NFTA_CHAIN_TABLE, table)
                    .put_str(NFTA_CHAIN_NAME, name);
                self.push(m, op);
            }
            (Verb::Add, Object::Rule { chain, rule }) => {
                let r = parse_rule(rule, &mut self.next_set_id)?;
                if let Some(map) = &r.map {
                    self.anon_map(table, map, op);
                }
                let mut m = Msg::nft(
                    NFT_MSG_NEWRULE,
                    NLM_F_CREATE | NLM_F_APPEND | ack,
                    self.seq(),
                );
                m.put_str(NFTA_RULE_TABLE, table)
                    .put_str(NFTA_RULE_CHAIN, chain);
                m.begin(NFTA_RULE_EXPRESSIONS);
                for e in &r.exprs {
                    put_expr(&mut m, e);
                }
                m.end();
                self.push(m, op);
            }
            (Verb::Add, Object::Set(s)) if is_affinity_spec(s) => {
                self.next_set_id += 1;
                let id = self.next_set_id;
                let timeout_ms = u64::from(s.timeout.unwrap_or(0)) * 1000;
                let mut m = Msg::nft(NFT_MSG_NEWSET, NLM_F_CREATE | ack, self.seq());
                m.put_str(NFTA_SET_TABLE, table)
                    .put_str(NFTA_SET_NAME, &s.name)
                    .put_u32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL)
                    .put_u32(NFTA_SET_KEY_TYPE, TYPE_IPADDR)
                    .put_u32(NFTA_SET_KEY_LEN, 4)
                    .put_u32(NFTA_SET_ID, id)
                    .put_u64(NFTA_SET_TIMEOUT, timeout_ms)
                    .put(NFTA_SET_USERDATA, UDATA_AFFINITY);
                self.push(m, op);
            }
            (Verb::Delete, Object::Set(s)) => {
                let mut m = Msg::nft(NFT_MSG_DELSET, ack, self.seq());
                m.put_str(NFTA_SET_TABLE, table)
                    .put_str(NFTA_SET_NAME, &s.name);
                self.push(m, op);
            }
            (
                v @ (Verb::Add | Verb::Delete),
                Object::Element {
                    set, key, value, ..
                },
            ) => {
                let key = element_key(key)?;
                let data = match (v, value) {
                    (Verb::Add, Some(val)) => {
                        let words: Vec<&str> = val.split_whitespace().collect();
                        Some(parse_verdict(&words)?)
                    }
                    _ => None,
                };
                let (ty, flags) = if v == Verb::Add {
                    (NFT_MSG_NEWSETELEM, NLM_F_CREATE | ack)
                } else {
                    (NFT_MSG_DELSETELEM, ack)
                };
                let mut m = Msg::nft(ty, flags, self.seq());
                m.put_str(NFTA_SET_ELEM_LIST_TABLE, table)
                    .put_str(NFTA_SET_ELEM_LIST_SET, set);
                m.begin(NFTA_SET_ELEM_LIST_ELEMENTS).begin(NFTA_LIST_ELEM);
                put_data(&mut m, NFTA_SET_ELEM_KEY, &Data::Value(key));
                if let Some(d) = data {
                    put_data(&mut m, NFTA_SET_ELEM_DATA, &Data::Verdict(d));
                }
                m.end().end();
                self.push(m, op);
            }
            (_, other) => {
                let mut one = Transaction::new(table);
                one.ops.push((verb, other.clone()));
                return unsupported(one.render().trim_end().to_string());
            }
        }
        Ok(())
    }
}

/// The messages for `tx`, or the first command the encoder does not write.
pub fn compile(tx: &Transaction) -> Result<Messages, Unsupported> {
    let mut out = Messages::default();
    for (i, (verb, obj)) in tx.ops.iter().enumerate() {
        out.command(&tx.table, i, *verb, obj)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rule, Unsupported> {
        parse_rule(text, &mut 0)
    }

    #[test]
    fn rules_become_nfts_expressions() {
        // As `nft --debug=netlink` shows them (nft 1.0.6).
        let r = parse("ip daddr 10.43.0.5 tcp dport 80 ip saddr != 10.42.0.0/16 jump m").unwrap();
        assert_eq!(
            r.exprs,
            vec![
                Expr::Payload {
                    base: 1,
                    offset: 16,
                    len: 4
                },
                Expr::Cmp {
                    op: 0,
                    data: vec![10, 43, 0, 5]
                },
                Expr::Meta { key: 16 },
                Expr::Cmp {
                    op: 0,
                    data: vec![6]
                },
                Expr::Payload {
                    base: 2,
                    offset: 2,
                    len: 2
                },
                Expr::Cmp {
                    op: 0,
                    data: vec![0, 80]
                },
                Expr::Payload {
                    base: 1,
                    offset: 12,
                    len: 2
                },
                Expr::Cmp {
                    op: 1,
                    data: vec![10, 42]
                },
                Expr::Immediate {
                    dreg: 0,
                    data: Data::Verdict(Verdict::Jump("m".into()))
                },
            ]
        );
        let r = parse("ip saddr 10.32.0.0/12 goto m").unwrap();
        assert_eq!(
            r.exprs[1],
            Expr::Bitwise {
                mask: vec![0xff, 0xf0, 0, 0]
            }
        );
        assert_eq!(
            r.exprs[2],
            Expr::Cmp {
                op: 0,
                data: vec![10, 32, 0, 0]
            }
        );
        let r = parse("numgen random mod 2 vmap { 0 : goto a , 1 : goto b }").unwrap();
        assert_eq!(
            r.map,
            Some(AnonMap {
                id: 1,
                elements: vec![
                    (0, Verdict::Goto("a".into())),
                    (1, Verdict::Goto("b".into()))
                ]
            })
        );
        let r = parse("meta l4proto udp dnat to 10.42.0.7:53").unwrap();
        assert_eq!(r.exprs.len(), 5);
        assert_eq!(
            r.exprs[3],
            Expr::Immediate {
                dreg: 2,
                data: Data::Value(vec![0, 53])
            }
        );
    }

    #[test]
    fn what_it_does_not_know_goes_to_nft() {
        for r in [
            "ip saddr != { 1.2.3.0/24, 5.6.7.8 } drop",
            "ct state new jump x",
            "jump x comment \"c\"",
            "drop drop",
            "ip saddr 10.0.0.0/0 drop",
            "meta l4proto icmp dnat to 1.2.3.4:5",
            "",
        ] {
            assert!(parse(r).is_err(), "{r}");
        }
        let mut tx = Transaction::new("t");
        tx.add(Object::Table { comment: None });
        assert_eq!(
            compile(&tx).unwrap_err(),
            Unsupported("add table ip t".into())
        );
    }

    #[test]
    fn element_keys_concatenate_padded_fields() {
        assert_eq!(
            element_key("10.43.0.9 . tcp . 80").unwrap(),
            vec![10, 43, 0, 9, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(
            element_key("tcp . 30080").unwrap(),
            vec![6, 0, 0, 0, 0x75, 0x80, 0, 0]
        );
        assert_eq!(element_key("10.43.0.9").unwrap(), vec![10, 43, 0, 9]);
        assert!(element_key("10.43.0.9 . icmp").is_err());
    }
}
