//! Binary encoding of the embedded backend's records.
//!
//! Current-state record (table `kv`, keyed by the key):
//!   create_revision i64 LE | mod_revision i64 LE | version i64 LE | value bytes
//! History record (table `log`, keyed by revision):
//!   kind u8 (0 put, 1 delete) | key_len u32 LE | key | meta (3 x i64) | value_len u32 | value
//!   | has_prev u8 | [prev meta (3 x i64) | prev_value_len u32 | prev_value]

use crate::{Error, Event, EventKind, KeyValue, Result};

const META: usize = 24;

pub(crate) fn encode_current(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(META + kv.value.len());
    put_meta(&mut out, kv);
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn decode_current(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    let mut r = Reader {
        buf: bytes,
        table: "kv",
    };
    let (create_revision, mod_revision, version) = r.meta()?;
    Ok(KeyValue {
        key: key.to_vec(),
        value: r.buf.to_vec(),
        create_revision,
        mod_revision,
        version,
    })
}

pub(crate) fn encode_event(ev: &Event) -> Vec<u8> {
    let prev_len = ev
        .prev_kv
        .as_ref()
        .map(|p| META + 4 + p.value.len())
        .unwrap_or(0);
    let mut out =
        Vec::with_capacity(1 + 4 + ev.kv.key.len() + META + 4 + ev.kv.value.len() + 1 + prev_len);
    out.push(match ev.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    put_bytes(&mut out, &ev.kv.key);
    put_meta(&mut out, &ev.kv);
    put_bytes(&mut out, &ev.kv.value);
    match &ev.prev_kv {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put_meta(&mut out, p);
            put_bytes(&mut out, &p.value);
        }
    }
    out
}

/// The key of a history record, without decoding the rest.
pub(crate) fn event_key(bytes: &[u8]) -> Result<&[u8]> {
    let mut r = Reader {
        buf: bytes,
        table: "log",
    };
    r.u8()?;
    r.bytes()
}

pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event> {
    let mut r = Reader {
        buf: bytes,
        table: "log",
    };
    let kind = match r.u8()? {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        other => {
            return Err(Error::Corrupt {
                table: "log",
                detail: format!("unknown event kind {other}"),
            })
        }
    };
    let key = r.bytes()?.to_vec();
    let (create_revision, mod_revision, version) = r.meta()?;
    let value = r.bytes()?.to_vec();
    let prev_kv = match r.u8()? {
        0 => None,
        _ => {
            let (create_revision, mod_revision, version) = r.meta()?;
            let value = r.bytes()?.to_vec();
            Some(KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision,
                version,
            })
        }
    };
    Ok(Event {
        kind,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
        },
        prev_kv,
    })
}

fn put_meta(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Keys and values beyond 4 GiB are not representable; redb refuses them earlier anyway.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    table: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Corrupt {
                table: self.table,
                detail: format!("record truncated: need {n} bytes, have {}", self.buf.len()),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(a))
    }

    fn meta(&mut self) -> Result<(i64, i64, i64)> {
        Ok((self.i64()?, self.i64()?, self.i64()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        let n = u32::from_le_bytes(a) as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &[u8], value: &[u8], c: i64, m: i64, v: i64) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: c,
            mod_revision: m,
            version: v,
        }
    }

    #[test]
    fn current_round_trips() {
        let k = kv(b"/a", b"hello", 2, 5, 3);
        let enc = encode_current(&k);
        assert_eq!(decode_current(b"/a", &enc).ok(), Some(k));
    }

    #[test]
    fn event_round_trips() {
        let put = Event {
            kind: EventKind::Put,
            kv: kv(b"/k", b"new", 2, 7, 2),
            prev_kv: Some(kv(b"/k", b"old", 2, 2, 1)),
        };
        let enc = encode_event(&put);
        assert_eq!(event_key(&enc).ok(), Some(&b"/k"[..]));
        assert_eq!(decode_event(&enc).ok(), Some(put));
        let del = Event {
            kind: EventKind::Delete,
            kv: kv(b"/k", b"", 0, 9, 0),
            prev_kv: None,
        };
        assert_eq!(decode_event(&encode_event(&del)).ok(), Some(del));
    }

    #[test]
    fn truncated_records_are_errors() {
        assert!(decode_current(b"k", &[1, 2, 3]).is_err());
        let enc = encode_event(&Event {
            kind: EventKind::Put,
            kv: kv(b"/k", b"v", 2, 2, 1),
            prev_kv: None,
        });
        assert!(decode_event(&enc[..enc.len() - 2]).is_err());
        assert!(decode_event(&[7]).is_err());
    }
}
