//! The devices "controller" of cgroup v2: an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the group, allowing exactly the device
//! rules given (docker's defaults plus `--device`) and denying everything else, as
//! runc does on v2 hosts.

use crate::Error;
use std::os::unix::io::AsRawFd;
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One device rule: `c 1:3 rwm`, `b *:* m`, `a` (everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// 1 block, 2 char, 0 any.
    pub kind: u32,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
}

/// Parse a rule in the devices.allow syntax.
pub fn parse_rule(s: &str) -> Result<DeviceRule, Error> {
    let bad = || Error::Invalid(format!("invalid device rule: {s}"));
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.first() == Some(&"a") {
        return Ok(DeviceRule {
            kind: 0,
            major: None,
            minor: None,
            access: 7,
        });
    }
    if parts.len() != 3 {
        return Err(bad());
    }
    let kind = match parts[0] {
        "b" => 1,
        "c" => 2,
        _ => return Err(bad()),
    };
    let (maj, min) = parts[1].split_once(':').ok_or_else(bad)?;
    let num = |x: &str| -> Result<Option<u32>, Error> {
        if x == "*" {
            Ok(None)
        } else {
            x.parse().map(Some).map_err(|_| bad())
        }
    };
    let mut access = 0;
    for ch in parts[2].chars() {
        access |= match ch {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => return Err(bad()),
        };
    }
    Ok(DeviceRule {
        kind,
        major: num(maj)?,
        minor: num(min)?,
        access,
    })
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes.
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const MOV32_X: u8 = 0xbc;
const MOV64_K: u8 = 0xb7;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

/// Compile the rules into a program: allow on the first matching rule, else deny.
fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0), // r2 = ctx->access_type
        insn(MOV32_X, 3, 2, 0, 0),
        insn(ALU32_AND_K, 3, 0, 0, 0xffff), // r3 = device type
        insn(MOV32_X, 4, 2, 0, 0),
        insn(ALU32_RSH_K, 4, 0, 0, 16), // r4 = access
        insn(LDX_W, 5, 1, 4, 0),        // r5 = major
        insn(LDX_W, 6, 1, 8, 0),        // r6 = minor
    ];
    for r in rules {
        let mut block: Vec<Insn> = Vec::new();
        // Each check jumps to the end of this block (patched below) on mismatch.
        if r.kind != 0 {
            block.push(insn(JNE_K, 3, 0, 0, r.kind as i32));
        }
        if r.access != 7 {
            block.push(insn(MOV32_X, 7, 4, 0, 0));
            block.push(insn(ALU32_AND_K, 7, 0, 0, !(r.access as i32) & 7));
            block.push(insn(JNE_K, 7, 0, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(insn(JNE_K, 6, 0, 0, m as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len() as i16;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K {
                // Jump past the rest of the block.
                ins.off = len - (i as i16) - 1;
            }
        }
        p.extend(block);
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    pad: [u64; 12],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    pad: [u32; 11],
}

/// Load a program for `rules` and attach it to the cgroup2 directory `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<(), Error> {
    let prog = program(rules);
    let license = c"Apache-2.0";
    let load = |log: Option<&mut Vec<u8>>| -> libc::c_long {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        if let Some(l) = log {
            attr.log_level = 1;
            attr.log_size = l.len() as u32;
            attr.log_buf = l.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` is a fully initialised, zero-padded bpf_attr for
        // BPF_PROG_LOAD; the instruction array, licence string and log buffer it points
        // to live until the call returns, and the kernel writes at most `log_size`
        // bytes into the log.
        unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        }
    };
    let fd = load(None);
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        // Load again with the verifier's log, to say why.
        let mut log = vec![0u8; 1 << 16];
        let _ = load(Some(&mut log));
        let msg = String::from_utf8_lossy(&log);
        let tail: String = msg
            .trim_end_matches('\0')
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(Error::Cgroup(format!(
            "loading the device filter program: {e} ({tail})"
        )));
    }
    let fd = fd as i32;
    let d = std::fs::File::open(dir)
        .map_err(|e| Error::Cgroup(format!("opening {}: {e}", dir.display())))?;
    let at = ProgAttachAttr {
        target_fd: d.as_raw_fd() as u32,
        attach_bpf_fd: fd as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: `at` is a fully initialised, zero-padded bpf_attr for BPF_PROG_ATTACH
    // that lives until the call returns; the descriptors it names are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &at as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    let err = std::io::Error::last_os_error();
    crate::sys::close(fd);
    if r < 0 {
        return Err(Error::Cgroup(format!(
            "attaching the device filter to {}: {err}",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        assert_eq!(
            parse_rule("c 1:3 rwm").unwrap(),
            DeviceRule {
                kind: 2,
                major: Some(1),
                minor: Some(3),
                access: 7
            }
        );
        let r = parse_rule("c 136:* rw").unwrap();
        assert_eq!((r.minor, r.access), (None, 6));
        assert!(parse_rule("x 1:2 r").is_err());
        assert!(parse_rule("c 1:3 q").is_err());
    }

    #[test]
    fn program_shape() {
        let p = program(&[parse_rule("c 1:3 rwm").unwrap()]);
        // prologue 7, rule: type, major, minor checks + mov + exit = 5, deny 2.
        assert_eq!(p.len(), 14);
        assert_eq!(p[7].off, 4, "a mismatch skips the rest of the rule");
    }
}
