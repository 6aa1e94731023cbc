//! The wire format on the hot path. A query's header, its one question and its OPT
//! record are read in place without allocating ([`Request::parse`]); a response is
//! written straight into one buffer ([`respond`]): the header, the question bytes as
//! the client sent them (so its 0x20 case mix comes back), the records with owner
//! names equal to the question written as a pointer to it, then OPT when the query had
//! one. hickory-proto is used only to encode record data.

use crate::zone::{Answer, Query};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

/// The fixed header's length.
pub const HEADER: usize = 12;
/// The largest UDP answer without EDNS (RFC 1035).
pub const CLASSIC_UDP: usize = 512;
/// The OPT record type.
pub const OPT: u16 = 41;

pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const CD: u16 = 0x0010;

/// The longest presentation form of a name: 255 wire bytes, each at most `\DDD`.
const NAME_TEXT: usize = 1024;

/// EDNS(0) as a query carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (at least 512 once read).
    pub payload: u16,
    pub version: u8,
    /// The DNSSEC OK bit, echoed in the answer.
    pub dnssec_ok: bool,
}

/// Why a packet is not a query this server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Too short to have a header, or a response: no answer at all.
    Drop,
    /// Answered with this response code (FORMERR, NOTIMP) and no question.
    Rcode(u8),
    /// An EDNS version above 0: BADVERS (RFC 6891), with the question.
    BadVersion,
}

/// A query read in place: header fields, the single question, EDNS.
pub struct Request<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    flags: u16,
    /// The end of the question section in `packet`.
    pub question_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    name: [u8; NAME_TEXT],
    name_len: usize,
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *p.get(at)?,
        *p.get(at + 1)?,
        *p.get(at + 2)?,
        *p.get(at + 3)?,
    ]))
}

impl<'a> Request<'a> {
    /// Read a query. Only standard queries with one question are answered; other
    /// opcodes get NOTIMP, anything else unreadable FORMERR (or nothing when not even
    /// the header is there, or it is a response).
    pub fn parse(packet: &'a [u8]) -> Result<Request<'a>, Malformed> {
        if packet.len() < HEADER {
            return Err(Malformed::Drop);
        }
        let flags = u16_at(packet, 2).ok_or(Malformed::Drop)?;
        if flags & QR != 0 {
            return Err(Malformed::Drop);
        }
        if (flags >> 11) & 0xf != 0 {
            return Err(Malformed::Rcode(NOTIMP));
        }
        let formerr = Malformed::Rcode(FORMERR);
        let count = |at| u16_at(packet, at).ok_or(formerr);
        let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
        if qd != 1 || an != 0 || ns != 0 || ar > 1 {
            return Err(formerr);
        }
        let mut name = [0u8; NAME_TEXT];
        let mut name_len = 0;
        let mut at = HEADER;
        loop {
            let len = *packet.get(at).ok_or(formerr)? as usize;
            if len == 0 {
                at += 1;
                break;
            }
            // No compression pointers (or extended labels) in a question.
            if len & 0xc0 != 0 || at + 1 + len - HEADER > 255 {
                return Err(formerr);
            }
            let label = packet.get(at + 1..at + 1 + len).ok_or(formerr)?;
            if name_len > 0 {
                name[name_len] = b'.';
                name_len += 1;
            }
            for &b in label {
                name_len += put_text_byte(&mut name[name_len..], b.to_ascii_lowercase());
            }
            at += 1 + len;
        }
        let qtype = u16_at(packet, at).ok_or(formerr)?;
        let qclass = u16_at(packet, at + 2).ok_or(formerr)?;
        let question_end = at + 4;
        let mut edns = None;
        if ar == 1 {
            // The one additional record must be OPT, owned by the root.
            let at = question_end;
            if packet.get(at) != Some(&0) || u16_at(packet, at + 1) != Some(OPT) {
                return Err(formerr);
            }
            let payload = u16_at(packet, at + 3).ok_or(formerr)?;
            let ttl = u32_at(packet, at + 5).ok_or(formerr)?;
            let rdlen = u16_at(packet, at + 9).ok_or(formerr)? as usize;
            if packet.len() < at + 11 + rdlen {
                return Err(formerr);
            }
            let e = Edns {
                payload: payload.max(CLASSIC_UDP as u16),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            };
            edns = Some(e);
        }
        let req = Request {
            packet,
            id: u16_at(packet, 0).ok_or(formerr)?,
            flags,
            question_end,
            qtype,
            qclass,
            edns,
            name,
            name_len,
        };
        if matches!(req.edns, Some(e) if e.version != 0) {
            return Err(Malformed::BadVersion);
        }
        Ok(req)
    }

    /// The question's name, lower case, without the final dot ("" for the root);
    /// bytes other than printable ASCII, '.' and '\' inside a label as `\DDD`.
    pub fn name(&self) -> &str {
        // Only ASCII is ever written into `name`.
        std::str::from_utf8(&self.name[..self.name_len]).unwrap_or("")
    }

    /// The question as a zone sees it.
    pub fn query(&self) -> Query<'_> {
        Query {
            name: self.name(),
            qtype: RecordType::from(self.qtype),
            qclass: DNSClass::from(self.qclass),
        }
    }

    /// The question section as sent.
    pub fn question(&self) -> &'a [u8] {
        &self.packet[HEADER..self.question_end]
    }

    /// The question's name in wire form, as sent.
    pub fn qname_wire(&self) -> &'a [u8] {
        &self.packet[HEADER..self.question_end - 4]
    }

    pub fn recursion_desired(&self) -> bool {
        self.flags & RD != 0
    }

    pub fn checking_disabled(&self) -> bool {
        self.flags & CD != 0
    }

    /// The largest UDP answer this client takes, our own ceiling applied.
    pub fn udp_limit(&self, ours: u16) -> usize {
        match self.edns {
            Some(e) => (e.payload.min(ours) as usize).max(CLASSIC_UDP),
            None => CLASSIC_UDP,
        }
    }
}

fn put_text_byte(out: &mut [u8], b: u8) -> usize {
    if (0x21..0x7f).contains(&b) && b != b'.' && b != b'\\' {
        out[0] = b;
        1
    } else {
        out[0] = b'\\';
        out[1] = b'0' + b / 100;
        out[2] = b'0' + (b / 10) % 10;
        out[3] = b'0' + b % 10;
        4
    }
}

/// The header of a response to `req`.
fn header(buf: &mut Vec<u8>, req: &Request<'_>, aa: bool, ra: bool, rcode: u8) {
    let mut flags = QR | (req.flags & (RD | CD)) | u16::from(rcode & 0xf);
    if aa {
        flags |= AA;
    }
    if ra {
        flags |= RA;
    }
    buf.extend_from_slice(&req.id.to_be_bytes());
    buf.extend_from_slice(&flags.to_be_bytes());
    buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
}

fn set_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The OPT record of our answers: our payload size, the DO bit echoed, `ext_rcode`.
pub fn put_opt(buf: &mut Vec<u8>, payload: u16, ext_rcode: u8, dnssec_ok: bool) {
    buf.push(0);
    buf.extend_from_slice(&OPT.to_be_bytes());
    buf.extend_from_slice(&payload.to_be_bytes());
    buf.push(ext_rcode);
    buf.push(0);
    buf.push(if dnssec_ok { 0x80 } else { 0 });
    buf.push(0);
    buf.extend_from_slice(&[0, 0]);
}

/// The OPT record's length as [`put_opt`] writes it.
pub const OPT_LEN: usize = 11;

/// Whether `name` is the question's name (wire form as sent), ignoring case.
fn is_qname(name: &Name, qname: &[u8]) -> bool {
    let mut at = 0;
    for label in name.iter() {
        let Some(&len) = qname.get(at) else {
            return false;
        };
        let len = len as usize;
        match qname.get(at + 1..at + 1 + len) {
            Some(l) if l.eq_ignore_ascii_case(label) => at += 1 + len,
            _ => return false,
        }
    }
    qname.get(at) == Some(&0)
}

/// A name in wire form, uncompressed.
pub fn put_name(buf: &mut Vec<u8>, name: &Name) {
    for label in name.iter() {
        buf.push(label.len() as u8);
        buf.extend_from_slice(label);
    }
    buf.push(0);
}

/// A query for `name` and `qtype` in class IN, recursion desired, id 0, no EDNS:
/// what the server asks its forwarder when it chases a CNAME out of its zones.
pub fn query_for(name: &Name, qtype: RecordType) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + 64);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&RD.to_be_bytes());
    buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    put_name(&mut buf, name);
    buf.extend_from_slice(&u16::from(qtype).to_be_bytes());
    buf.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    buf
}

/// One record; names in its data are written uncompressed. False when hickory cannot
/// encode the data (the record is then left out).
fn put_record(buf: &mut Vec<u8>, scratch: &mut Vec<u8>, rec: &Record, qname: &[u8]) -> bool {
    scratch.clear();
    {
        let mut enc = BinEncoder::new(scratch);
        enc.set_canonical_names(true);
        if rec.data().emit(&mut enc).is_err() {
            return false;
        }
    }
    if scratch.len() > u16::MAX as usize {
        return false;
    }
    if is_qname(rec.name(), qname) {
        buf.extend_from_slice(&[0xc0, 0x0c]);
    } else {
        put_name(buf, rec.name());
    }
    buf.extend_from_slice(&u16::from(rec.record_type()).to_be_bytes());
    buf.extend_from_slice(&u16::from(rec.dns_class()).to_be_bytes());
    buf.extend_from_slice(&rec.ttl().to_be_bytes());
    buf.extend_from_slice(&(scratch.len() as u16).to_be_bytes());
    buf.extend_from_slice(scratch);
    true
}

/// What a server says about itself in every response.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Recursion available: there is a forwarder behind the zone.
    pub recursion: bool,
    /// Our UDP payload ceiling (advertised in OPT).
    pub max_udp_payload: u16,
}

/// The response to `req` from a zone's answer (not `NotMine`, which has no response
/// of its own), at most `limit` bytes: larger answers go out empty with TC set.
pub fn respond(req: &Request<'_>, answer: &Answer, limit: usize, policy: Policy) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let (rcode, sections): (u8, [&[Record]; 3]) = match answer {
        Answer::Records {
            answers,
            authority,
            additionals,
        } => (NOERROR, [answers, authority, additionals]),
        Answer::NoData { soa } => (NOERROR, [&[], soa.as_slice(), &[]]),
        Answer::NxDomain { soa } => (NXDOMAIN, [&[], soa.as_slice(), &[]]),
        Answer::NotMine => return error(req, REFUSED, policy),
    };
    header(&mut buf, req, true, policy.recursion, rcode);
    buf.extend_from_slice(req.question());
    let mut scratch = Vec::new();
    let qname = req.qname_wire();
    for (i, section) in sections.iter().enumerate() {
        let mut n: u16 = 0;
        for rec in section.iter() {
            if n < u16::MAX && put_record(&mut buf, &mut scratch, rec, qname) {
                n += 1;
            }
        }
        set_u16(&mut buf, 6 + 2 * i, n);
    }
    finish(&mut buf, req, limit, policy)
}

/// Close a response to `req` whose header and sections are in `buf`: truncate it to
/// header and question with TC set when it would exceed `limit`, then add our OPT
/// when the query had EDNS.
pub fn finish(buf: &mut Vec<u8>, req: &Request<'_>, limit: usize, policy: Policy) -> Vec<u8> {
    let opt = if req.edns.is_some() { OPT_LEN } else { 0 };
    if buf.len() + opt > limit {
        buf.truncate(req.question_end);
        let flags = u16_at(buf, 2).unwrap_or(QR) | TC;
        set_u16(buf, 2, flags);
        for at in [6, 8, 10] {
            set_u16(buf, at, 0);
        }
    }
    if let Some(e) = req.edns {
        let ar = u16_at(buf, 10).unwrap_or(0).saturating_add(1);
        set_u16(buf, 10, ar);
        put_opt(buf, policy.max_udp_payload, 0, e.dnssec_ok);
    }
    std::mem::take(buf)
}

/// A response to `req` with no records and response code `rcode` (SERVFAIL, REFUSED).
pub fn error(req: &Request<'_>, rcode: u8, policy: Policy) -> Vec<u8> {
    let mut buf = Vec::with_capacity(req.question_end + OPT_LEN);
    header(&mut buf, req, false, policy.recursion, rcode);
    buf.extend_from_slice(req.question());
    finish(&mut buf, req, usize::MAX, policy)
}

/// The response to a packet [`Request::parse`] refused, if it gets one.
pub fn malformed(packet: &[u8], why: Malformed, policy: Policy) -> Option<Vec<u8>> {
    match why {
        Malformed::Drop => None,
        Malformed::Rcode(rcode) => {
            let id = u16_at(packet, 0)?;
            let flags = u16_at(packet, 2)?;
            // Keep the opcode and RD; set QR; no sections.
            let f = QR | (flags & (0x7800 | RD)) | u16::from(rcode);
            let mut buf = Vec::with_capacity(HEADER);
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&f.to_be_bytes());
            buf.extend_from_slice(&[0; 8]);
            Some(buf)
        }
        Malformed::BadVersion => {
            // Re-read without the version check to echo the question.
            let mut p = packet.to_vec();
            let opt_ttl = question_end(&p)? + 5;
            *p.get_mut(opt_ttl + 1)? = 0;
            let req = Request::parse(&p).ok()?;
            let mut buf = Vec::with_capacity(req.question_end + OPT_LEN);
            header(&mut buf, &req, false, policy.recursion, NOERROR);
            buf.extend_from_slice(req.question());
            set_u16(&mut buf, 10, 1);
            // BADVERS is extended code 16: 1 in OPT's upper byte, 0 in the header.
            put_opt(&mut buf, policy.max_udp_payload, 1, false);
            Some(buf)
        }
    }
}

/// The end of the first question in a message (names in it uncompressed).
fn question_end(p: &[u8]) -> Option<usize> {
    Some(skip_name(p, HEADER)? + 4)
}

/// The offset just past the (possibly compressed) name at `at`.
pub fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)? as usize;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + len,
            0xc0 => {
                p.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
        if at >= p.len() {
            return None;
        }
    }
}

/// Header fields of a message, read without allocating.
pub fn id(p: &[u8]) -> Option<u16> {
    u16_at(p, 0)
}

pub fn rcode(p: &[u8]) -> Option<u8> {
    p.get(3).map(|b| b & 0xf)
}

pub fn is_truncated(p: &[u8]) -> bool {
    u16_at(p, 2).is_some_and(|f| f & TC != 0)
}

pub fn is_response(p: &[u8]) -> bool {
    u16_at(p, 2).is_some_and(|f| f & QR != 0)
}

pub fn count(p: &[u8], section: usize) -> Option<u16> {
    u16_at(p, 4 + 2 * section)
}

pub fn set_id(p: &mut [u8], id: u16) {
    if p.len() >= 2 {
        set_u16(p, 0, id);
    }
}

/// Set RD as in the query (`rd`).
pub fn set_rd(p: &mut [u8], rd: bool) {
    if let Some(f) = u16_at(p, 2) {
        set_u16(p, 2, if rd { f | RD } else { f & !RD });
    }
}

pub fn read_u16(p: &[u8], at: usize) -> Option<u16> {
    u16_at(p, at)
}

pub fn read_u32(p: &[u8], at: usize) -> Option<u32> {
    u32_at(p, at)
}

pub fn write_u16(p: &mut [u8], at: usize, v: u16) {
    if at + 2 <= p.len() {
        set_u16(p, at, v);
    }
}

pub fn write_u32(p: &mut [u8], at: usize, v: u32) {
    if at + 4 <= p.len() {
        p[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Set TC and cut a response back to its header and first question.
pub fn truncate_to_question(p: &mut Vec<u8>) {
    let Some(end) = question_end(p) else {
        return;
    };
    if count(p, 0) == Some(0) {
        p.truncate(HEADER);
    } else {
        p.truncate(end.min(p.len()));
    }
    if let Some(f) = u16_at(p, 2) {
        set_u16(p, 2, f | TC);
    }
    for at in [6, 8, 10] {
        set_u16(p, at, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::RData;
    use std::str::FromStr;

    fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242).set_recursion_desired(true);
        m.add_query(HQuery::query(Name::from_str(name).unwrap(), t));
        if let Some(size) = edns {
            let mut e = HEdns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    const POLICY: Policy = Policy {
        recursion: true,
        max_udp_payload: 1232,
    };

    #[test]
    fn parses_the_question_lower_case_and_edns() {
        let p = query("WwW.Example.ORG.", RecordType::AAAA, Some(4096));
        let r = Request::parse(&p).unwrap();
        assert_eq!(r.name(), "www.example.org");
        assert_eq!(r.qtype, 28);
        assert_eq!(r.qclass, 1);
        assert_eq!(r.id, 4242);
        assert!(r.recursion_desired());
        assert_eq!(
            r.edns,
            Some(Edns {
                payload: 4096,
                version: 0,
                dnssec_ok: false
            })
        );
        assert_eq!(r.udp_limit(1232), 1232);
        let p = query("a.", RecordType::A, None);
        let r = Request::parse(&p).unwrap();
        assert_eq!(r.udp_limit(1232), 512);
        let p = query(".", RecordType::NS, None);
        assert_eq!(Request::parse(&p).unwrap().name(), "");
    }

    #[test]
    fn odd_label_bytes_are_escaped() {
        let mut p = query("ab.c.", RecordType::A, None);
        p[13] = b'.';
        p[14] = 0xff;
        let r = Request::parse(&p).unwrap();
        assert_eq!(r.name(), "\\046\\255.c");
    }

    #[test]
    fn answers_echo_the_question_and_point_owners_at_it() {
        let mut p = query("db.example.", RecordType::A, None);
        // hickory writes names lower case: mix the case by hand, as 0x20 clients do.
        p[13] = b'D';
        p[16] = b'E';
        let req = Request::parse(&p).unwrap();
        let owner = req.query().owner().unwrap();
        let rec = Record::from_rdata(owner, 60, RData::A(A::new(10, 0, 0, 1)));
        let ans = Answer::records(vec![rec]);
        let out = respond(&req, &ans, 512, POLICY);
        // header + question + pointer(2) type class ttl rdlen(10) + 4
        assert_eq!(out.len(), p.len() + 16);
        assert_eq!(&out[12..p.len()], &p[12..]);
        assert_eq!(&out[p.len()..p.len() + 2], &[0xc0, 0x0c]);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.id(), 4242);
        assert_eq!(m.message_type(), MessageType::Response);
        assert!(m.authoritative() && m.recursion_desired() && m.recursion_available());
        assert_eq!(&out[12..23], b"\x02Db\x07Example");
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(10, 0, 0, 1)));
    }

    #[test]
    fn malformed_packets_get_formerr_notimp_or_nothing() {
        assert_eq!(Request::parse(&[1, 2, 3]).err(), Some(Malformed::Drop));
        let p = query("x.", RecordType::A, None);
        // A response is never answered.
        let mut resp = p.clone();
        resp[2] |= 0x80;
        assert_eq!(Request::parse(&resp).err(), Some(Malformed::Drop));
        // Cut inside the name.
        let r = Request::parse(&p[..14]).err().unwrap();
        assert_eq!(r, Malformed::Rcode(FORMERR));
        let out = malformed(&p[..14], r, POLICY).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.id(), 4242);
        assert_eq!(m.response_code(), hickory_proto::op::ResponseCode::FormErr);
        // Two questions.
        let mut two = p.clone();
        two[5] = 2;
        assert_eq!(Request::parse(&two).err(), Some(Malformed::Rcode(FORMERR)));
        // A compression pointer in the question.
        let mut ptr = p.clone();
        ptr[12] = 0xc0;
        assert_eq!(Request::parse(&ptr).err(), Some(Malformed::Rcode(FORMERR)));
        // A label running past the end.
        let mut long = p.clone();
        long[12] = 60;
        assert_eq!(Request::parse(&long).err(), Some(Malformed::Rcode(FORMERR)));
        // Another opcode.
        let mut m = Message::from_vec(&p).unwrap();
        m.set_op_code(OpCode::Status);
        let st = m.to_vec().unwrap();
        assert_eq!(Request::parse(&st).err(), Some(Malformed::Rcode(NOTIMP)));
        // Garbage of every length never panics.
        let mut x: u32 = 12345;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            if let Err(e) = Request::parse(&junk) {
                let _ = malformed(&junk, e, POLICY);
            }
        }
    }

    #[test]
    fn edns_version_above_zero_is_badvers() {
        let mut p = query("x.", RecordType::A, Some(1232));
        // OPT's TTL: ext rcode, version, flags.
        let opt_ttl = p.len() - 11 + 5;
        p[opt_ttl + 1] = 1;
        let e = Request::parse(&p).err().unwrap();
        assert_eq!(e, Malformed::BadVersion);
        let out = malformed(&p, e, POLICY).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.queries().len(), 1);
        assert_eq!(u16::from(m.response_code()), 16);
    }

    #[test]
    fn too_large_answers_are_truncated_empty() {
        let p = query("many.", RecordType::A, None);
        let req = Request::parse(&p).unwrap();
        let owner = req.query().owner().unwrap();
        let recs = (0..60)
            .map(|i| Record::from_rdata(owner.clone(), 5, RData::A(A::new(10, 0, 0, i))))
            .collect();
        let out = respond(&req, &Answer::records(recs), 512, POLICY);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.truncated());
        assert!(m.answers().is_empty());
        assert_eq!(m.queries().len(), 1);
    }
}
