//! The classic BPF socket filter: a tiny assembler with symbolic jump
//! labels and [`socket_filter`], which keeps IPv4/IPv6 TCP (optionally
//! to/from one port) and passes up what it cannot judge cheaply.

use crate::frame::{self, LinkType};

const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_LD_H_IND: u16 = 0x48;
const BPF_LDX_B_MSH: u16 = 0xb1;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lbl {
    Next,
    Accept,
    Drop,
    V4,
    V6,
    V6Ext,
}

struct Asm {
    code: Vec<(u16, Lbl, Lbl, u32)>,
    labels: Vec<(Lbl, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, Lbl::Next, Lbl::Next, k));
    }
    fn jeq(&mut self, k: u32, t: Lbl, f: Lbl) {
        self.code.push((BPF_JEQ_K, t, f, k));
    }
    fn jset(&mut self, k: u32, t: Lbl, f: Lbl) {
        self.code.push((BPF_JSET_K, t, f, k));
    }
    fn label(&mut self, l: Lbl) {
        self.labels.push((l, self.code.len()));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let at = |l: Lbl, pc: usize| -> u8 {
            if l == Lbl::Next {
                return 0;
            }
            let target = self
                .labels
                .iter()
                .find(|(x, _)| *x == l)
                .map_or(pc + 1, |(_, t)| *t);
            // Programs here are < 64 instructions; offsets always fit.
            (target - pc - 1) as u8
        };
        self.code
            .iter()
            .enumerate()
            .map(|(pc, &(code, t, f, k))| libc::sock_filter {
                code,
                jt: at(t, pc),
                jf: at(f, pc),
                k,
            })
            .collect()
    }
}

/// Builds the classic BPF program: pass IPv4/IPv6 TCP (to/from `port` when
/// given) and whatever cannot be judged cheaply; drop the rest.
pub fn socket_filter(link: LinkType, port: Option<u16>) -> Vec<libc::sock_filter> {
    let l: u32 = match link {
        LinkType::Ethernet | LinkType::Loopback => 14,
        LinkType::RawIp => 0,
    };
    let mut a = Asm {
        code: Vec::new(),
        labels: Vec::new(),
    };
    match link {
        LinkType::Ethernet | LinkType::Loopback => {
            a.op(BPF_LD_H_ABS, 12);
            a.jeq(frame::ETHERTYPE_IPV4.into(), Lbl::V4, Lbl::Next);
            a.jeq(frame::ETHERTYPE_IPV6.into(), Lbl::V6, Lbl::Next);
            // VLAN-tagged frames are rare on the links we capture; let the
            // parser walk the tags instead of unrolling that here.
            a.jeq(frame::ETHERTYPE_VLAN.into(), Lbl::Accept, Lbl::Next);
            a.jeq(frame::ETHERTYPE_QINQ.into(), Lbl::Accept, Lbl::Next);
            a.jeq(frame::ETHERTYPE_QINQ_OLD.into(), Lbl::Accept, Lbl::Drop);
        }
        LinkType::RawIp => {
            a.op(BPF_LD_B_ABS, 0);
            a.op(BPF_ALU_AND_K, 0xf0);
            a.jeq(0x40, Lbl::V4, Lbl::Next);
            a.jeq(0x60, Lbl::V6, Lbl::Drop);
        }
    }
    a.label(Lbl::V4);
    a.op(BPF_LD_B_ABS, l + 9);
    match port {
        None => a.jeq(6, Lbl::Accept, Lbl::Drop),
        Some(p) => {
            a.jeq(6, Lbl::Next, Lbl::Drop);
            a.op(BPF_LD_H_ABS, l + 6);
            a.jset(0x1fff, Lbl::Drop, Lbl::Next);
            a.op(BPF_LDX_B_MSH, l);
            a.op(BPF_LD_H_IND, l);
            a.jeq(p.into(), Lbl::Accept, Lbl::Next);
            a.op(BPF_LD_H_IND, l + 2);
            a.jeq(p.into(), Lbl::Accept, Lbl::Drop);
        }
    }
    a.label(Lbl::V6);
    a.op(BPF_LD_B_ABS, l + 6);
    match port {
        None => a.jeq(6, Lbl::Accept, Lbl::Next),
        Some(p) => {
            // Direct TCP: check ports at the fixed offset.
            a.jeq(6, Lbl::Next, Lbl::V6Ext);
            a.op(BPF_LD_H_ABS, l + 40);
            a.jeq(p.into(), Lbl::Accept, Lbl::Next);
            a.op(BPF_LD_H_ABS, l + 42);
            a.jeq(p.into(), Lbl::Accept, Lbl::Drop);
            a.label(Lbl::V6Ext);
        }
    }
    // Extension headers: pass up for the parser to walk.
    for nh in [0u32, 43, 44, 51, 60] {
        a.jeq(nh, Lbl::Accept, Lbl::Next);
    }
    a.op(BPF_RET_K, 0);
    a.label(Lbl::Drop);
    a.op(BPF_RET_K, 0);
    a.label(Lbl::Accept);
    // Whole packet: the kernel clamps to the real length.
    a.op(BPF_RET_K, u32::MAX);
    a.finish()
}
