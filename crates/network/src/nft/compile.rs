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

/// One batch: its bytes (delimiters included) and, for each message (sequence numbers
/// from 1), the index of the transaction command it came from.
#[derive(Debug)]
pub struct Messages {
    pub bytes: Vec<u8>,
    pub ops: Vec<usize>,
    next_seq: u32,
    next_set_id: u32,
}

impl Messages {
    fn new() -> Self {
        Messages {
            bytes: Msg::new(NFNL_MSG_BATCH_BEGIN, 0, 0, 0, NFNL_SUBSYS_NFTABLES).finish(),
            ops: Vec::new(),
            next_seq: 0,
            next_set_id: 0,
        }
    }

    fn seq(&mut self) -> u32 {
        self.next_seq += 1;
        self.next_seq
    }

    /// The command that message `seq` came from.
    pub fn op_of(&self, seq: u32) -> Option<usize> {
        self.ops.get((seq as usize).wrapping_sub(1)).copied()
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
        dreg: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    MetaSet {
        key: u32,
    },
    Ct {
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
    Masq {
        flags: u32,
    },
    Reject {
        ty: u32,
        code: u8,
    },
    Numgen {
        modulus: u32,
    },
}

/// An anonymous set a rule looks up: a verdict map (`numgen … vmap { … }`) or a set of
/// connection states (`ct state != { … }`).
#[derive(Debug, PartialEq, Eq)]
enum AnonSet {
    VerdictMap {
        id: u32,
        elements: Vec<(u32, Verdict)>,
    },
    CtStates {
        id: u32,
        states: Vec<u32>,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Rule {
    exprs: Vec<Expr>,
    sets: Vec<AnonSet>,
    comment: Option<String>,
}

const NFT_META_MARK: u32 = 3;
const NFT_META_IIFNAME: u32 = 6;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
const IPS_DST_NAT: u32 = 0x20;
const NFT_REJECT_ICMP_UNREACH: u32 = 0;
const NFT_REJECT_TCP_RST: u32 = 1;
const ICMP_PORT_UNREACH: u8 = 3;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
/// `NFT_REG32_01`, `NFT_REG32_02`: where the second and third fields of a
/// concatenation go.
const REG32_01: u32 = 9;
const REG32_02: u32 = 10;
const IFNAMSIZ: usize = 16;

fn proto_number(p: &str) -> Option<u8> {
    match p {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

fn ct_state_bit(s: &str) -> Option<u32> {
    match s {
        "invalid" => Some(1),
        "established" => Some(2),
        "related" => Some(4),
        "new" => Some(8),
        "untracked" => Some(64),
        _ => None,
    }
}

fn number(t: &str) -> Option<u32> {
    match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
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

/// Words, with `{`, `}` and `,` on their own and a quoted string as one word (quotes
/// kept).
fn tokenize(text: &str) -> Result<Vec<String>, Unsupported> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                cur.push('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') | None => return unsupported(format!("quoting in {text:?}")),
                        Some(c) => cur.push(c),
                    }
                }
                cur.push('"');
            }
            '{' | '}' | ',' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn payload(base: u32, offset: u32, len: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg: REG1,
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
        exprs.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, len));
        exprs.push(Expr::Cmp {
            op,
            data: net[..len as usize].to_vec(),
        });
    } else {
        exprs.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4));
        exprs.push(Expr::Bitwise {
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
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
        dreg: REG1,
    });
    exprs.push(Expr::Cmp {
        op: NFT_CMP_EQ,
        data: vec![n],
    });
    Ok(())
}

/// What a concatenation is looked up in: `vmap @map` (a verdict) or `@set` (a match);
/// the set's name, whether it is a verdict map, and the words used.
fn lookup_target<'a>(rest: &[&'a str]) -> Option<(&'a str, bool, usize)> {
    match rest {
        ["vmap", m, ..] => m.strip_prefix('@').map(|m| (m, true, 2)),
        [s, ..] => s.strip_prefix('@').map(|s| (s, false, 1)),
        [] => None,
    }
}

/// `… meta l4proto . th dport vmap @map` or `… @set`: the protocol and the port loaded
/// into `regs` (after whatever fields came before), then the map or set looked up.
fn proto_port_lookup(exprs: &mut Vec<Expr>, regs: [u32; 2], map: &str, vmap: bool) {
    exprs.push(Expr::Meta {
        key: NFT_META_L4PROTO,
        dreg: regs[0],
    });
    exprs.push(Expr::Payload {
        base: NFT_PAYLOAD_TRANSPORT_HEADER,
        offset: 2,
        len: 2,
        dreg: regs[1],
    });
    exprs.push(Expr::Lookup {
        set: map.to_string(),
        set_id: None,
        verdict_map: vmap,
        invert: false,
    });
}

/// A lookup in the rule's next anonymous set (`template` is nft's `__set%d` or
/// `__map%d`, named by the kernel); the set's id within the batch.
fn anon_lookup(
    exprs: &mut Vec<Expr>,
    next_id: &mut u32,
    template: &str,
    verdict_map: bool,
    invert: bool,
) -> u32 {
    *next_id += 1;
    exprs.push(Expr::Lookup {
        set: template.to_string(),
        set_id: Some(*next_id),
        verdict_map,
        invert,
    });
    *next_id
}

/// `key & mask == value` (host byte order, as nft keeps marks and ct bits).
fn masked(exprs: &mut Vec<Expr>, op: u32, mask: u32, value: u32) {
    exprs.push(Expr::Bitwise {
        mask: mask.to_ne_bytes().to_vec(),
        xor: vec![0; 4],
    });
    exprs.push(Expr::Cmp {
        op,
        data: value.to_ne_bytes().to_vec(),
    });
}

fn verdict_expr(v: Verdict) -> Expr {
    Expr::Immediate {
        dreg: REG_VERDICT,
        data: Data::Verdict(v),
    }
}

/// The rule text's expressions. `next_id` numbers anonymous sets.
fn parse_rule(text: &str, next_id: &mut u32) -> Result<Rule, Unsupported> {
    let tokens = tokenize(text)?;
    let w: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut rule = Rule::default();
    let e = &mut rule.exprs;
    let mut i = 0;
    let mut done = false;
    let bad = |why: &str| unsupported(format!("rule {text:?}: {why}"));
    while i < w.len() {
        if let ["comment", c] = &w[i..] {
            let Some(c) = c.strip_prefix('"').and_then(|c| c.strip_suffix('"')) else {
                return bad("comment");
            };
            rule.comment = Some(c.to_string());
            break;
        }
        if done {
            return bad("words after its verdict");
        }
        match &w[i..] {
            ["ip", field @ ("saddr" | "daddr"), ".", "meta", "l4proto", ".", "th", "dport", rest @ ..]
                if lookup_target(rest).is_some() =>
            {
                let (set, vmap, used) = lookup_target(rest).unwrap_or_default();
                let offset = if *field == "saddr" { 12 } else { 16 };
                e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4));
                proto_port_lookup(e, [REG32_01, REG32_02], set, vmap);
                i += 8 + used;
                done = vmap;
            }
            ["meta", "l4proto", ".", "th", "dport", rest @ ..] if lookup_target(rest).is_some() => {
                let (set, vmap, used) = lookup_target(rest).unwrap_or_default();
                proto_port_lookup(e, [REG1, REG32_01], set, vmap);
                i += 5 + used;
                done = vmap;
            }
            ["ip", field @ ("saddr" | "daddr"), rest @ ..] => {
                let offset = if *field == "saddr" { 12 } else { 16 };
                let (op, value, used) = match rest {
                    ["!=", v, ..] => (NFT_CMP_NEQ, *v, 4),
                    [v, ..] => (NFT_CMP_EQ, *v, 3),
                    [] => return bad("no value"),
                };
                if let Some(set) = value.strip_prefix('@') {
                    e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4));
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
                    return bad("port");
                };
                l4proto(e, proto)?;
                e.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2));
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
            ["meta", "mark", "set", "meta", "mark", op @ ("or" | "xor"), v, ..] => {
                let Some(v) = number(v) else {
                    return bad("mark");
                };
                let mask = if *op == "or" { !v } else { u32::MAX };
                e.push(Expr::Meta {
                    key: NFT_META_MARK,
                    dreg: REG1,
                });
                e.push(Expr::Bitwise {
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: v.to_ne_bytes().to_vec(),
                });
                e.push(Expr::MetaSet { key: NFT_META_MARK });
                i += 7;
            }
            ["meta", "mark", "&", m, "==", v, ..] => {
                let (Some(m), Some(v)) = (number(m), number(v)) else {
                    return bad("mark");
                };
                e.push(Expr::Meta {
                    key: NFT_META_MARK,
                    dreg: REG1,
                });
                masked(e, NFT_CMP_EQ, m, v);
                i += 6;
            }
            ["ct", "state", "!=", "{", rest @ ..] => {
                let Some(close) = rest.iter().position(|t| *t == "}") else {
                    return bad("unclosed set");
                };
                let mut states = Vec::new();
                for (n, t) in rest[..close].iter().enumerate() {
                    match (n % 2, ct_state_bit(t)) {
                        (0, Some(bit)) => states.push(bit),
                        (1, _) if *t == "," => {}
                        _ => return bad("ct state set"),
                    }
                }
                e.push(Expr::Ct { key: NFT_CT_STATE });
                let id = anon_lookup(e, next_id, "__set%d", false, true);
                rule.sets.push(AnonSet::CtStates { id, states });
                i += 4 + close + 1;
            }
            ["ct", "state", s, ..] if ct_state_bit(s).is_some() => {
                let bit = ct_state_bit(s).unwrap_or_default();
                e.push(Expr::Ct { key: NFT_CT_STATE });
                masked(e, NFT_CMP_NEQ, bit, 0);
                i += 3;
            }
            ["ct", "status", "&", "dnat", "==", "0", ..] => {
                e.push(Expr::Ct { key: NFT_CT_STATUS });
                masked(e, NFT_CMP_EQ, IPS_DST_NAT, 0);
                i += 6;
            }
            ["iifname", rest @ ..] => {
                let (op, name, used) = match rest {
                    ["!=", n, ..] => (NFT_CMP_NEQ, *n, 3),
                    [n, ..] => (NFT_CMP_EQ, *n, 2),
                    [] => return bad("iifname"),
                };
                let name = name.trim_matches('"');
                if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('*') {
                    return bad("interface name");
                }
                let mut data = name.as_bytes().to_vec();
                data.resize(IFNAMSIZ, 0);
                e.push(Expr::Meta {
                    key: NFT_META_IIFNAME,
                    dreg: REG1,
                });
                e.push(Expr::Cmp { op, data });
                i += used;
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
                e.push(payload(NFT_PAYLOAD_NETWORK_HEADER, 12, 4));
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
                    return bad("dnat target");
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
            ["masquerade", "fully-random", ..] => {
                e.push(Expr::Masq {
                    flags: NF_NAT_RANGE_PROTO_RANDOM_FULLY,
                });
                i += 2;
                done = true;
            }
            ["reject", "with", "tcp", "reset", ..] => {
                e.push(Expr::Reject {
                    ty: NFT_REJECT_TCP_RST,
                    code: 0,
                });
                i += 4;
                done = true;
            }
            ["reject"] | ["reject", "comment", ..] => {
                e.push(Expr::Reject {
                    ty: NFT_REJECT_ICMP_UNREACH,
                    code: ICMP_PORT_UNREACH,
                });
                i += 1;
                done = true;
            }
            ["numgen", "random", "mod", n, "vmap", "{", rest @ ..] => {
                let Some(modulus) = number(n) else {
                    return bad("modulus");
                };
                let Some(close) = rest.iter().position(|t| *t == "}") else {
                    return bad("unclosed map");
                };
                let mut elements = Vec::new();
                for entry in rest[..close].split(|t| *t == ",") {
                    let [k, ":", verdict @ ..] = entry else {
                        return bad("map entry");
                    };
                    let Some(k) = number(k) else {
                        return bad("map key");
                    };
                    elements.push((k, parse_verdict(verdict)?));
                }
                e.push(Expr::Numgen { modulus });
                let id = anon_lookup(e, next_id, "__map%d", true, false);
                rule.sets.push(AnonSet::VerdictMap { id, elements });
                i += 6 + close + 1;
                done = true;
            }
            [v @ ("jump" | "goto"), c, ..] => {
                e.push(verdict_expr(parse_verdict(&[v, c])?));
                i += 2;
                done = true;
            }
            [v @ ("drop" | "accept" | "return"), ..] => {
                e.push(verdict_expr(parse_verdict(&[v])?));
                i += 1;
                done = true;
            }
            _ => return bad(&format!("at {:?}", w[i])),
        }
    }
    if rule.exprs.is_empty() {
        return bad("empty");
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
        Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
        Expr::Ct { .. } => "ct",
        Expr::Fib { .. } => "fib",
        Expr::Lookup { .. } => "lookup",
        Expr::Dynset { .. } => "dynset",
        Expr::Immediate { .. } => "immediate",
        Expr::Dnat => "nat",
        Expr::Masq { .. } => "masq",
        Expr::Reject { .. } => "reject",
        Expr::Numgen { .. } => "numgen",
    };
    m.begin(NFTA_LIST_ELEM).put_str(NFTA_EXPR_NAME, name);
    m.begin(NFTA_EXPR_DATA);
    match e {
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            // NFTA_PAYLOAD_DREG, BASE, OFFSET, LEN
            m.put_u32(1, *dreg)
                .put_u32(2, *base)
                .put_u32(3, *offset)
                .put_u32(4, *len);
        }
        Expr::Cmp { op, data } => {
            // NFTA_CMP_SREG, OP, DATA
            m.put_u32(1, REG1).put_u32(2, *op);
            put_data(m, 3, &Data::Value(data.clone()));
        }
        Expr::Bitwise { mask, xor } => {
            // NFTA_BITWISE_SREG, DREG, LEN, MASK, XOR
            m.put_u32(1, REG1)
                .put_u32(2, REG1)
                .put_u32(3, mask.len() as u32);
            put_data(m, 4, &Data::Value(mask.clone()));
            put_data(m, 5, &Data::Value(xor.clone()));
        }
        Expr::Meta { key, dreg } => {
            // NFTA_META_DREG, KEY
            m.put_u32(1, *dreg).put_u32(2, *key);
        }
        Expr::MetaSet { key } => {
            // NFTA_META_KEY, SREG
            m.put_u32(2, *key).put_u32(3, REG1);
        }
        Expr::Ct { key } => {
            // NFTA_CT_DREG, KEY
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
        Expr::Masq { flags } => {
            // NFTA_MASQ_FLAGS
            m.put_u32(1, *flags);
        }
        Expr::Reject { ty, code } => {
            // NFTA_REJECT_TYPE, ICMP_CODE (one byte)
            m.put_u32(1, *ty).put(2, &[*code]);
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

/// nft's set user data (libnftnl's `NFTNL_UDATA_SET_*` records, as nft 1.0 writes
/// them): key byte order, then for anonymous sets the key's `typeof`, for maps the data
/// byte order and type. A comment is record 7.
const UDATA_IPV4_SET: &[u8] = &[0, 4, 2, 0, 0, 0];
const UDATA_CONCAT_VERDICT_MAP: &[u8] = &[
    0, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
];
const UDATA_CONCAT_SET: &[u8] = &[0, 4, 0, 0, 0, 0, 3, 8, 0, 4, 13, 0, 0, 0, 1, 0];
const UDATA_NUMGEN_MAP: &[u8] = &[
    0, 4, 1, 0, 0, 0, 1, 4, 0, 0, 0, 0, 4, 8, 0, 4, 1, 0, 0, 0, 1, 0, 6, 4, 0, 0, 0, 0,
];
const UDATA_CT_STATE_SET: &[u8] = &[
    0, 4, 1, 0, 0, 0, 3, 20, 0, 4, 12, 0, 0, 0, 1, 12, 0, 4, 0, 0, 0, 0, 1, 4, 255, 255, 255, 255,
];
const UDATA_SET_COMMENT: u8 = 7;
const UDATA_TABLE_COMMENT: u8 = 0;
const UDATA_RULE_COMMENT: u8 = 0;
/// nft's data type ids of a concatenation: 6 bits a field.
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_CT_STATE: u32 = 26;

/// A user-data record holding a NUL-terminated string (at most 254 bytes).
fn udata_string(out: &mut Vec<u8>, ty: u8, s: &str) -> Result<(), Unsupported> {
    if s.len() > 253 || s.contains('\0') {
        return unsupported(format!("comment {s:?}"));
    }
    out.push(ty);
    out.push((s.len() + 1) as u8);
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

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

/// The set's kernel description: flags, key type and length, whether it maps to
/// verdicts, and its user data.
fn set_layout(s: &SetSpec) -> Result<(u32, u32, u32, bool, Vec<u8>), Unsupported> {
    let map = match s.value_type.as_deref() {
        None => false,
        Some("verdict") => true,
        Some(other) => return unsupported(format!("map values {other:?}")),
    };
    let (key_type, key_len, mut udata) = match s.key_type.as_str() {
        "ipv4_addr" if !map => (TYPE_IPADDR, 4, UDATA_IPV4_SET.to_vec()),
        "ipv4_addr . inet_proto . inet_service" if map => (
            (TYPE_IPADDR << 12) | (TYPE_INET_PROTOCOL << 6) | TYPE_INET_SERVICE,
            12,
            UDATA_CONCAT_VERDICT_MAP.to_vec(),
        ),
        "inet_proto . inet_service" if map => (
            (TYPE_INET_PROTOCOL << 6) | TYPE_INET_SERVICE,
            8,
            UDATA_CONCAT_VERDICT_MAP.to_vec(),
        ),
        "ipv4_addr . inet_proto . inet_service" => (
            (TYPE_IPADDR << 12) | (TYPE_INET_PROTOCOL << 6) | TYPE_INET_SERVICE,
            12,
            UDATA_CONCAT_SET.to_vec(),
        ),
        "inet_proto . inet_service" => (
            (TYPE_INET_PROTOCOL << 6) | TYPE_INET_SERVICE,
            8,
            UDATA_CONCAT_SET.to_vec(),
        ),
        other => return unsupported(format!("set type {other:?}")),
    };
    let mut flags = if map { NFT_SET_MAP } else { 0 };
    match (s.flags.as_deref(), s.timeout) {
        (None, None) => {}
        (Some("dynamic,timeout"), Some(_)) if !map => flags |= NFT_SET_TIMEOUT | NFT_SET_EVAL,
        _ => return unsupported(format!("set flags {:?}", s.flags)),
    }
    if let Some(c) = &s.comment {
        udata_string(&mut udata, UDATA_SET_COMMENT, c)?;
    }
    Ok((flags, key_type, key_len, map, udata))
}

/// Hook numbers (`enum nf_inet_hooks`).
fn hook_number(hook: &str) -> Option<u32> {
    match hook {
        "prerouting" => Some(0),
        "input" => Some(1),
        "forward" => Some(2),
        "output" => Some(3),
        "postrouting" => Some(4),
        _ => None,
    }
}

impl Messages {
    fn push(&mut self, m: Msg, op: usize) {
        self.bytes.extend_from_slice(&m.finish());
        self.ops.push(op);
    }

    fn set_id(&mut self) -> u32 {
        self.next_set_id += 1;
        self.next_set_id
    }

    fn anon_set(&mut self, table: &str, set: &AnonSet, op: usize) {
        let (name, id, flags, key_type, map, udata, size) = match set {
            AnonSet::VerdictMap { id, elements } => (
                "__map%d",
                *id,
                NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP,
                TYPE_INTEGER,
                true,
                UDATA_NUMGEN_MAP,
                elements.len(),
            ),
            AnonSet::CtStates { id, states } => (
                "__set%d",
                *id,
                NFT_SET_ANONYMOUS | NFT_SET_CONSTANT,
                TYPE_CT_STATE,
                false,
                UDATA_CT_STATE_SET,
                states.len(),
            ),
        };
        let mut m = Msg::nft(NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_ACK, self.seq());
        m.put_str(NFTA_SET_TABLE, table)
            .put_str(NFTA_SET_NAME, name)
            .put_u32(NFTA_SET_FLAGS, flags)
            .put_u32(NFTA_SET_KEY_TYPE, key_type)
            .put_u32(NFTA_SET_KEY_LEN, 4);
        if map {
            m.put_u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
                .put_u32(NFTA_SET_DATA_LEN, 0);
        }
        m.put_u32(NFTA_SET_ID, id);
        m.begin(NFTA_SET_DESC)
            .put_u32(NFTA_SET_DESC_SIZE, size as u32)
            .end();
        m.put(NFTA_SET_USERDATA, udata);
        self.push(m, op);
        let mut m = Msg::nft(NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK, self.seq());
        m.put_str(NFTA_SET_ELEM_LIST_TABLE, table)
            .put_str(NFTA_SET_ELEM_LIST_SET, name)
            .put_u32(NFTA_SET_ELEM_LIST_SET_ID, id);
        m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        let mut element = |key: u32, v: Option<&Verdict>| {
            m.begin(NFTA_LIST_ELEM);
            put_data(
                &mut m,
                NFTA_SET_ELEM_KEY,
                &Data::Value(key.to_ne_bytes().to_vec()),
            );
            if let Some(v) = v {
                put_data(&mut m, NFTA_SET_ELEM_DATA, &Data::Verdict(v.clone()));
            }
            m.end();
        };
        match set {
            AnonSet::VerdictMap { elements, .. } => {
                for (k, v) in elements {
                    element(*k, Some(v));
                }
            }
            AnonSet::CtStates { states, .. } => {
                for s in states {
                    element(*s, None);
                }
            }
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
            (Verb::Add, Object::Table { comment }) => {
                let mut m = Msg::nft(NFT_MSG_NEWTABLE, NLM_F_CREATE | ack, self.seq());
                m.put_str(NFTA_TABLE_NAME, table)
                    .put_u32(NFTA_TABLE_FLAGS, 0);
                if let Some(c) = comment {
                    let mut udata = Vec::new();
                    udata_string(&mut udata, UDATA_TABLE_COMMENT, c)?;
                    m.put(NFTA_TABLE_USERDATA, &udata);
                }
                self.push(m, op);
            }
            (Verb::Add, Object::Chain { name, base }) => {
                let mut m = Msg::nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE | ack, self.seq());
                m.put_str(NFTA_CHAIN_TABLE, table)
                    .put_str(NFTA_CHAIN_NAME, name);
                if let Some(b) = base {
                    let Some(hook) = hook_number(b.hook) else {
                        return unsupported(format!("hook {:?}", b.hook));
                    };
                    m.put_str(NFTA_CHAIN_TYPE, b.kind)
                        .put_u32(NFTA_CHAIN_POLICY, NF_ACCEPT as u32);
                    m.begin(NFTA_CHAIN_HOOK)
                        .put_u32(NFTA_HOOK_HOOKNUM, hook)
                        .put_u32(NFTA_HOOK_PRIORITY, b.priority as u32)
                        .end();
                }
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
                let mut udata = Vec::new();
                if let Some(c) = &r.comment {
                    udata_string(&mut udata, UDATA_RULE_COMMENT, c)?;
                }
                for set in &r.sets {
                    self.anon_set(table, set, op);
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
                if !udata.is_empty() {
                    m.put(NFTA_RULE_USERDATA, &udata);
                }
                self.push(m, op);
            }
            (Verb::Add, Object::Set(s)) => {
                let (flags, key_type, key_len, map, udata) = set_layout(s)?;
                let id = self.set_id();
                let mut m = Msg::nft(NFT_MSG_NEWSET, NLM_F_CREATE | ack, self.seq());
                m.put_str(NFTA_SET_TABLE, table)
                    .put_str(NFTA_SET_NAME, &s.name)
                    .put_u32(NFTA_SET_FLAGS, flags)
                    .put_u32(NFTA_SET_KEY_TYPE, key_type)
                    .put_u32(NFTA_SET_KEY_LEN, key_len);
                if map {
                    m.put_u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
                        .put_u32(NFTA_SET_DATA_LEN, 0);
                }
                m.put_u32(NFTA_SET_ID, id);
                if let Some(t) = s.timeout {
                    m.put_u64(NFTA_SET_TIMEOUT, u64::from(t) * 1000);
                }
                m.put(NFTA_SET_USERDATA, &udata);
                self.push(m, op);
            }
            (Verb::Flush, Object::Set(s)) => {
                let mut m = Msg::nft(NFT_MSG_DELSETELEM, ack, self.seq());
                m.put_str(NFTA_SET_ELEM_LIST_TABLE, table)
                    .put_str(NFTA_SET_ELEM_LIST_SET, &s.name);
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
                return unsupported(Transaction::one_line(table, verb, other));
            }
        }
        Ok(())
    }
}

/// The messages for `tx`, or the first command the encoder does not write.
pub fn compile(tx: &Transaction) -> Result<Messages, Unsupported> {
    let mut out = Messages::new();
    for (i, (verb, obj)) in tx.ops.iter().enumerate() {
        out.command(&tx.table, i, *verb, obj)?;
    }
    let end = out.seq();
    out.bytes
        .extend(Msg::new(NFNL_MSG_BATCH_END, 0, end, 0, NFNL_SUBSYS_NFTABLES).finish());
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
                    len: 4,
                    dreg: 1
                },
                Expr::Cmp {
                    op: 0,
                    data: vec![10, 43, 0, 5]
                },
                Expr::Meta { key: 16, dreg: 1 },
                Expr::Cmp {
                    op: 0,
                    data: vec![6]
                },
                Expr::Payload {
                    base: 2,
                    offset: 2,
                    len: 2,
                    dreg: 1
                },
                Expr::Cmp {
                    op: 0,
                    data: vec![0, 80]
                },
                Expr::Payload {
                    base: 1,
                    offset: 12,
                    len: 2,
                    dreg: 1
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
                mask: vec![0xff, 0xf0, 0, 0],
                xor: vec![0; 4]
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
            r.sets,
            vec![AnonSet::VerdictMap {
                id: 1,
                elements: vec![
                    (0, Verdict::Goto("a".into())),
                    (1, Verdict::Goto("b".into()))
                ]
            }]
        );
        let r = parse("ct state != { established, related } drop comment \"x y\"").unwrap();
        assert_eq!(
            r.sets,
            vec![AnonSet::CtStates {
                id: 1,
                states: vec![2, 4]
            }]
        );
        assert_eq!(r.comment.as_deref(), Some("x y"));
        let r = parse("meta mark set meta mark or 0x4000").unwrap();
        assert_eq!(
            r.exprs[1],
            Expr::Bitwise {
                mask: (!0x4000u32).to_ne_bytes().to_vec(),
                xor: 0x4000u32.to_ne_bytes().to_vec()
            }
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
            "ct mark 1 jump x",
            "jump x comment \"c\" drop",
            "iifname \"eth*\" drop",
            "drop drop",
            "ip saddr 10.0.0.0/0 drop",
            "meta l4proto icmp dnat to 1.2.3.4:5",
            "",
        ] {
            assert!(parse(r).is_err(), "{r}");
        }
        let mut tx = Transaction::new("t");
        tx.delete(Object::Table { comment: None });
        assert_eq!(
            compile(&tx).unwrap_err(),
            Unsupported("delete table ip t".into())
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
