//! nf_tables netlink messages: the constants of `linux/netfilter/nf_tables.h` this
//! crate uses and a writer of netlink messages with nested attributes.

// Message types (subsystem NFNL_SUBSYS_NFTABLES in the high byte).
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFT_MSG_NEWTABLE: u16 = 0;
pub const NFT_MSG_NEWCHAIN: u16 = 3;
pub const NFT_MSG_DELCHAIN: u16 = 5;
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFT_MSG_DELRULE: u16 = 8;
pub const NFT_MSG_NEWSET: u16 = 9;
pub const NFT_MSG_DELSET: u16 = 11;
pub const NFT_MSG_NEWSETELEM: u16 = 12;
pub const NFT_MSG_DELSETELEM: u16 = 14;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLMSG_ERROR: u16 = 2;
pub const NLM_F_ACK_TLVS: u16 = 0x200;
pub const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

pub const NFPROTO_IPV4: u8 = 2;

// Attributes.
pub const NFTA_TABLE_NAME: u16 = 1;
pub const NFTA_TABLE_FLAGS: u16 = 2;
pub const NFTA_TABLE_USERDATA: u16 = 6;
pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_CHAIN_HOOK: u16 = 4;
pub const NFTA_CHAIN_POLICY: u16 = 5;
pub const NFTA_CHAIN_TYPE: u16 = 7;
pub const NFTA_HOOK_HOOKNUM: u16 = 1;
pub const NFTA_HOOK_PRIORITY: u16 = 2;
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub const NFTA_RULE_USERDATA: u16 = 7;
pub const NFTA_LIST_ELEM: u16 = 1;
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;
pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_SET_FLAGS: u16 = 3;
pub const NFTA_SET_KEY_TYPE: u16 = 4;
pub const NFTA_SET_KEY_LEN: u16 = 5;
pub const NFTA_SET_DATA_TYPE: u16 = 6;
pub const NFTA_SET_DATA_LEN: u16 = 7;
pub const NFTA_SET_DESC: u16 = 9;
pub const NFTA_SET_DESC_SIZE: u16 = 1;
pub const NFTA_SET_ID: u16 = 10;
pub const NFTA_SET_TIMEOUT: u16 = 11;
pub const NFTA_SET_USERDATA: u16 = 13;
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_DATA: u16 = 2;
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;

pub const NFT_SET_ANONYMOUS: u32 = 0x1;
pub const NFT_SET_CONSTANT: u32 = 0x2;
pub const NFT_SET_MAP: u32 = 0x8;
pub const NFT_SET_TIMEOUT: u32 = 0x10;
pub const NFT_SET_EVAL: u32 = 0x20;
/// nft's data type ids (`enum datatypes`).
pub const TYPE_INTEGER: u32 = 4;
pub const TYPE_IPADDR: u32 = 7;
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

// Verdict codes.
pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
pub const NFT_RETURN: i32 = -5;

/// One netlink message being written: header, `nfgenmsg`, attributes.
pub struct Msg {
    buf: Vec<u8>,
    open: Vec<usize>,
}

impl Msg {
    /// A message of nf_tables type `ty` (or a batch delimiter when `ty` >= 0x10 and
    /// `res_id` is the subsystem).
    pub fn new(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.push(family);
        buf.push(0);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg {
            buf,
            open: Vec::new(),
        }
    }

    /// An nf_tables message of family ip.
    pub fn nft(ty: u16, flags: u16, seq: u32) -> Msg {
        Msg::new(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            flags,
            seq,
            NFPROTO_IPV4,
            0,
        )
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn put(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// A NUL-terminated string.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v)
    }

    pub fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    pub fn put_u64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// Opens a nested attribute; [`Msg::end`] closes it.
    pub fn begin(&mut self, ty: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Self {
        if let Some(at) = self.open.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message (length filled in).
    pub fn finish(mut self) -> Vec<u8> {
        while !self.open.is_empty() {
            self.end();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One reply of the kernel to a batch message: its sequence number, the error
/// (0: acknowledged) and the kernel's extended-ack text, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub seq: u32,
    pub error: i32,
    pub message: Option<String>,
}

/// The `NLMSG_ERROR` replies in `buf` (other messages are skipped).
pub fn parse_replies(buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let u16_at = |i: usize| u16::from_ne_bytes([buf[i], buf[i + 1]]);
        let len = u32_at(at) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let ty = u16_at(at + 4);
        let flags = u16_at(at + 6);
        // nlmsgerr: error (4), then the original header (16).
        if ty == NLMSG_ERROR && len >= 16 + 4 + 16 {
            let error = u32_at(at + 16) as i32;
            let seq = u32_at(at + 20 + 8);
            let mut message = None;
            if flags & NLM_F_ACK_TLVS != 0 {
                // With NETLINK_CAP_ACK the original payload is left out.
                let mut a = at + 36;
                while a + 4 <= at + len {
                    let alen = u16_at(a) as usize;
                    let aty = u16_at(a + 2) & !NLA_F_NESTED;
                    if alen < 4 || a + alen > at + len {
                        break;
                    }
                    if aty == NLMSGERR_ATTR_MSG {
                        let text = &buf[a + 4..a + alen];
                        let text = text.split(|b| *b == 0).next().unwrap_or(&[]);
                        message = Some(String::from_utf8_lossy(text).into_owned());
                    }
                    a += (alen + 3) & !3;
                }
            }
            out.push(Reply {
                seq,
                error,
                message,
            });
        }
        at += (len + 3) & !3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_attributes_padded() {
        let mut m = Msg::nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, 7);
        m.put_str(NFTA_CHAIN_TABLE, "d")
            .put_str(NFTA_CHAIN_NAME, "newc");
        m.begin(NFTA_RULE_EXPRESSIONS).put_u32(1, 2).end();
        let b = m.finish();
        assert_eq!(b.len() as u32, u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        // header 16 + nfgenmsg 4 + "d\0" 8 + "newc\0" 12 + nest 4 + u32 8
        assert_eq!(b.len(), 16 + 4 + 8 + 12 + 12);
        assert_eq!(&b[16..20], &[2, 0, 0, 0]);
        assert_eq!(&b[20..28], &[6, 0, 1, 0, b'd', 0, 0, 0]);
        assert_eq!(&b[40..44], &[12, 0, 4, 0x80]);
        assert_eq!(&b[48..52], &[0, 0, 0, 2]);
    }

    #[test]
    fn parses_acks_and_errors_with_text() {
        let mut buf = Vec::new();
        let reply = |seq: u32, error: i32, text: Option<&str>| {
            let mut m = Vec::new();
            let mut flags = 0u16;
            let mut tlv = Vec::new();
            if let Some(t) = text {
                flags |= NLM_F_ACK_TLVS;
                let len = 4 + t.len() + 1;
                tlv.extend_from_slice(&(len as u16).to_ne_bytes());
                tlv.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
                tlv.extend_from_slice(t.as_bytes());
                tlv.push(0);
                while tlv.len() % 4 != 0 {
                    tlv.push(0);
                }
            }
            let len = 16 + 4 + 16 + tlv.len();
            m.extend_from_slice(&(len as u32).to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&flags.to_ne_bytes());
            m.extend_from_slice(&[0; 8]);
            m.extend_from_slice(&error.to_ne_bytes());
            let mut orig = [0u8; 16];
            orig[8..12].copy_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&orig);
            m.extend_from_slice(&tlv);
            m
        };
        buf.extend(reply(1, 0, None));
        buf.extend(reply(2, -2, Some("no such chain")));
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parse_replies(&buf),
            vec![
                Reply {
                    seq: 1,
                    error: 0,
                    message: None
                },
                Reply {
                    seq: 2,
                    error: -2,
                    message: Some("no such chain".into())
                }
            ]
        );
    }
}
