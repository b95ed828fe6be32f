//! Just enough of a BTF reader for the layout tests: the structs of a
//! compiled object as clang laid them out (the way Cilium's alignchecker
//! compares its Go mirrors with the datapath's BTF).

use std::collections::BTreeMap;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// A struct as the object's BTF describes it.
#[derive(Debug)]
pub struct Struct {
    pub size: u32,
    /// Member name -> byte offset.
    pub members: BTreeMap<String, u32>,
}

/// Every named struct in raw BTF (the `.BTF` section), by name.
pub fn structs(btf: &[u8]) -> Result<BTreeMap<String, Struct>, String> {
    let u16_at = |at: usize| -> Result<u16, String> {
        btf.get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("BTF truncated at {at}"))
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        btf.get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("BTF truncated at {at}"))
    };
    if u16_at(0)? != MAGIC {
        return Err("not BTF (bad magic, or other byte order)".into());
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let strings = btf.get(hdr_len + str_off..).ok_or("BTF strings missing")?;
    let name = |off: u32| -> Result<String, String> {
        let s = strings.get(off as usize..).ok_or("BTF name out of range")?;
        let end = s
            .iter()
            .position(|b| *b == 0)
            .ok_or("BTF name unterminated")?;
        Ok(String::from_utf8_lossy(&s[..end]).into_owned())
    };

    let mut out = BTreeMap::new();
    let mut at = hdr_len + type_off;
    let end = at + type_len;
    while at < end {
        let (name_off, info, size) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
        at += 12;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let bitfields = info >> 31 == 1;
        // What follows the common part, per kind (linux/btf.h).
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            2 | 7..=12 | 16 | 18 => 0,
            other => return Err(format!("BTF kind {other} unknown")),
        };
        if kind == KIND_STRUCT && name_off != 0 {
            let mut members = BTreeMap::new();
            for i in 0..vlen {
                let m = at + 12 * i;
                let bits = u32_at(m + 8)?;
                let bits = if bitfields { bits & 0x00ff_ffff } else { bits };
                members.insert(name(u32_at(m)?)?, bits / 8);
            }
            out.insert(name(name_off)?, Struct { size, members });
        }
        at += extra;
    }
    Ok(out)
}
