//! `lxc.cgroup.devices.*` / `lxc.cgroup2.devices.*`: the rules read as the v1 devices
//! controller reads writes to `devices.allow` / `devices.deny` (what LXC does on cgroup v1), and
//! the equivalent `BPF_PROG_TYPE_CGROUP_DEVICE` program for the container's cgroup v2 (what
//! LXC's `cgroup2_devices.c` attaches there).
//!
//! Pure: `policy` folds the rules in file order, `program` emits the eBPF instructions.
use super::lxc::DeviceRule;

// bpf_cgroup_dev_ctx.access_type: the device type in the low half, the access in the high one
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One exception of the v1 controller: type `DEV_BLOCK`/`DEV_CHAR`, None = `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub dev_type: u32,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

/// A default plus exceptions: with `default_allow` the exceptions are denied, otherwise they
/// are the only devices allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub default_allow: bool,
    pub exceptions: Vec<Exception>,
}

impl Policy {
    /// Nothing to enforce: everything allowed (a new v1 cgroup's state, and `allow = a`).
    pub fn allows_all(&self) -> bool {
        self.default_allow && self.exceptions.is_empty()
    }
}

fn access_bits(r: &DeviceRule) -> u32 {
    (if r.read { ACC_READ } else { 0 })
        | (if r.write { ACC_WRITE } else { 0 })
        | (if r.mknod { ACC_MKNOD } else { 0 })
}

/// The rules `(allow, rule)` in file order, applied to a fresh cgroup (all allowed) as the v1
/// kernel applies each write: `a` sets the default and clears the exceptions; a rule against
/// the default adds an exception (merging the access of one for the same device), a rule
/// with it takes that access off the same device's exception.
pub fn policy(rules: &[(bool, DeviceRule)]) -> Policy {
    let mut p = Policy {
        default_allow: true,
        exceptions: Vec::new(),
    };
    for (allow, r) in rules {
        let dev_type = match r.kind {
            'b' => DEV_BLOCK,
            'c' => DEV_CHAR,
            // the kernel reads any rule starting with `a` as all devices
            _ => {
                p.default_allow = *allow;
                p.exceptions.clear();
                continue;
            }
        };
        let access = access_bits(r);
        let same =
            |e: &Exception| e.dev_type == dev_type && e.major == r.major && e.minor == r.minor;
        if *allow != p.default_allow {
            match p.exceptions.iter_mut().find(|e| same(e)) {
                Some(e) => e.access |= access,
                None => p.exceptions.push(Exception {
                    dev_type,
                    major: r.major,
                    minor: r.minor,
                    access,
                }),
            }
        } else {
            for e in p.exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !access;
            }
            p.exceptions.retain(|e| e.access != 0);
        }
    }
    p
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's layout: the register nibbles follow the bitfield order of the target.
    pub fn encode(self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") {
            self.dst | self.src << 4
        } else {
            self.dst << 4 | self.src
        };
        let o = self.off.to_ne_bytes();
        let i = self.imm.to_ne_bytes();
        [self.code, regs, o[0], o[1], i[0], i[1], i[2], i[3]]
    }
}

pub(crate) const LDX_MEM_W: u8 = 0x61;
pub(crate) const ALU32_AND_K: u8 = 0x54;
pub(crate) const ALU32_RSH_K: u8 = 0x74;
pub(crate) const ALU32_MOV_X: u8 = 0xbc;
pub(crate) const ALU64_MOV_K: u8 = 0xb7;
pub(crate) const JEQ_K: u8 = 0x15;
pub(crate) const JNE_K: u8 = 0x55;
pub(crate) const JNE_X: u8 = 0x5d;
pub(crate) const EXIT: u8 = 0x95;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// The program for `p`: r2 = type, r3 = access, r4 = major, r5 = minor (LXC's prologue), then
/// per exception a run of tests that jump to the next one on a mismatch and end in its
/// verdict, then the default. Returns 1 to allow, 0 to deny.
pub fn program(p: &Policy) -> Vec<Insn> {
    let mut out = vec![
        ins(LDX_MEM_W, 2, 1, 0, 0),
        ins(ALU32_AND_K, 2, 0, 0, 0xffff),
        ins(LDX_MEM_W, 3, 1, 0, 0),
        ins(ALU32_RSH_K, 3, 0, 0, 16),
        ins(LDX_MEM_W, 4, 1, 4, 0),
        ins(LDX_MEM_W, 5, 1, 8, 0),
    ];
    let verdict = i32::from(!p.default_allow);
    for e in &p.exceptions {
        let mut tests: Vec<Insn> = Vec::new();
        // `off` of each test is fixed below: past the rest of this exception's run
        if e.access & ACC_ALL != ACC_ALL {
            tests.push(ins(ALU32_MOV_X, 1, 3, 0, 0));
            tests.push(ins(ALU32_AND_K, 1, 0, 0, e.access as i32));
            tests.push(if p.default_allow {
                // a deny exception: no access in common, not this one
                ins(JEQ_K, 1, 0, 0, 0)
            } else {
                // an allow exception: an access outside it, not this one
                ins(JNE_X, 1, 3, 0, 0)
            });
        }
        tests.push(ins(JNE_K, 2, 0, 0, e.dev_type as i32));
        if let Some(m) = e.major {
            tests.push(ins(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = e.minor {
            tests.push(ins(JNE_K, 5, 0, 0, m as i32));
        }
        let n = tests.len();
        for (i, t) in tests.iter_mut().enumerate() {
            if t.code != ALU32_MOV_X && t.code != ALU32_AND_K {
                // to the instruction after this run's exit: the tests left, then mov + exit
                t.off = (n - i - 1 + 2) as i16;
            }
        }
        out.append(&mut tests);
        out.push(ins(ALU64_MOV_K, 0, 0, 0, verdict));
        out.push(ins(EXIT, 0, 0, 0, 0));
    }
    out.push(ins(ALU64_MOV_K, 0, 0, 0, i32::from(p.default_allow)));
    out.push(ins(EXIT, 0, 0, 0, 0));
    out
}

/// The instructions as the bytes `BPF_PROG_LOAD` reads.
pub fn encode(prog: &[Insn]) -> Vec<u8> {
    prog.iter().flat_map(|i| i.encode()).collect()
}

/// The loaded program for the rules of a config, or None when they allow everything (pvr's
/// `lxc.cgroup.devices.allow = a`). Attach it with `sys::filter::attach_cgroup_device`.
pub fn load(rules: &[(bool, String)]) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    // the parser let only valid rules through
    let rules: Vec<(bool, DeviceRule)> = rules
        .iter()
        .filter_map(|(a, r)| DeviceRule::parse(r).map(|r| (*a, r)))
        .collect();
    let p = policy(&rules);
    if p.allows_all() {
        return Ok(None);
    }
    crate::sys::filter::load_cgroup_device_prog(&encode(&program(&p))).map(Some)
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
