//! `lxc.seccomp.profile`: LXC's policy file read and compiled by hand into the classic BPF
//! filter that `seccomp(SECCOMP_SET_MODE_FILTER)` takes (LXC does this through libseccomp).
//!
//! Pure: `parse` reads the text, `compile` emits the instructions. What the file means is LXC's
//! (`seccomp.c`): line 1 the version (1 or 2), line 2 `allowlist` (v1 and v2; old `whitelist`)
//! or `denylist` (`blacklist`) with an optional default action, then one syscall per line with
//! an optional action and up to six `[index,value,op(,mask)]` argument checks, `#` comments,
//! and `[arch]` sections whose rules are read only when the section fits this machine (and
//! then apply to its compat arch too). A syscall name no arch knows is skipped with a warning,
//! as LXC skips it; `notify` needs a supervisor this engine does not have and is refused.
use super::syscalls;
use super::Paths;
use std::path::{Path, PathBuf};

// seccomp(2) return values, Linux ABI.
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// classic BPF opcodes
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// The kernel's BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;
/// x86_64: syscall numbers with this bit are x32's.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const MNT_FORCE: u64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// SECCOMP_RET_KILL_THREAD, libseccomp's SCMP_ACT_KILL.
    Kill,
    Trap,
    Errno(u16),
    Allow,
}

impl Action {
    fn ret(self) -> u32 {
        match self {
            Action::Kill => RET_KILL_THREAD,
            Action::Trap => RET_TRAP,
            Action::Errno(e) => RET_ERRNO | u32::from(e),
            Action::Allow => RET_ALLOW,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// One `[index,value,op(,mask)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Syscall {
    Name(String),
    /// Version 1 lines are numbers of the native arch.
    Number(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub syscall: Syscall,
    pub action: Action,
    /// All must hold.
    pub args: Vec<ArgCheck>,
    /// In the profile, for messages.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// For syscalls no rule matches.
    pub default: Action,
    pub rules: Vec<Rule>,
}

/// An architecture the filter knows: AUDIT_ARCH_* value and its syscall table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    I386,
    Aarch64,
    Arm,
    /// o32, big endian.
    Mips,
    /// o32, little endian.
    Mipsel,
}

impl Arch {
    fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xc000_003e,
            Arch::I386 => 0x4000_0003,
            Arch::Aarch64 => 0xc000_00b7,
            Arch::Arm => 0x4000_0028,
            Arch::Mips => 0x0000_0008,
            Arch::Mipsel => 0x4000_0008,
        }
    }

    /// Empty for an arch this build has no table of (not its own or its compat arch).
    fn table(self) -> &'static [u16] {
        match self {
            #[cfg(any(test, target_arch = "x86_64"))]
            Arch::X86_64 => &syscalls::X86_64,
            #[cfg(any(test, target_arch = "x86_64"))]
            Arch::I386 => &syscalls::I386,
            #[cfg(any(test, target_arch = "aarch64"))]
            Arch::Aarch64 => &syscalls::AARCH64,
            #[cfg(any(test, target_arch = "aarch64", target_arch = "arm"))]
            Arch::Arm => &syscalls::ARM,
            #[cfg(any(test, target_arch = "mips"))]
            Arch::Mips | Arch::Mipsel => &syscalls::MIPS_O32,
            #[allow(unreachable_patterns)]
            _ => &[],
        }
    }

    fn big_endian(self) -> bool {
        self == Arch::Mips
    }

    /// The number of `name` on this arch.
    pub fn number(self, name: &str) -> Option<u32> {
        let i = syscalls::NAMES.lines().position(|n| n == name)?;
        let n = *self.table().get(i)?;
        (n != syscalls::NONE).then_some(u32::from(n))
    }
}

/// The arch this binary runs as, then the compat arch whose processes the kernel also runs
/// (LXC filters both). None on an arch without a table.
pub fn native_arches() -> Option<&'static [Arch]> {
    if cfg!(target_arch = "x86_64") {
        Some(&[Arch::X86_64, Arch::I386])
    } else if cfg!(target_arch = "aarch64") {
        Some(&[Arch::Aarch64, Arch::Arm])
    } else if cfg!(target_arch = "arm") {
        Some(&[Arch::Arm])
    } else if cfg!(all(target_arch = "mips", target_endian = "big")) {
        Some(&[Arch::Mips])
    } else if cfg!(target_arch = "mips") {
        Some(&[Arch::Mipsel])
    } else {
        None
    }
}

/// A problem in a profile: `<line>: <message>` (line 0: the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileError {
    pub line: usize,
    pub message: String,
}

fn perr(line: usize, message: impl Into<String>) -> ProfileError {
    ProfileError {
        line,
        message: message.into(),
    }
}

/// LXC's action words; Ok(None) when `text` holds none (empty or a comment).
fn action(text: &str, line: usize) -> Result<Option<Action>, ProfileError> {
    let t = text.trim_start();
    let word = t.split_whitespace().next().unwrap_or("");
    if word.is_empty() || word.starts_with('#') || word.starts_with('[') {
        return Ok(None);
    }
    Ok(Some(match word {
        "kill" => Action::Kill,
        "trap" => Action::Trap,
        "allow" => Action::Allow,
        "errno" => {
            let n = t.split_whitespace().nth(1).unwrap_or("");
            let e = n
                .parse::<u16>()
                .map_err(|_| perr(line, format!("errno needs a number 0-65535, got {n:?}")))?;
            Action::Errno(e)
        }
        "notify" => {
            return Err(perr(
                line,
                "action notify needs a seccomp supervisor (lxc.seccomp.notify.proxy), which this \
                 engine does not have",
            ))
        }
        w => return Err(perr(line, format!("unknown action {w:?}"))),
    }))
}

/// strtoull with base 0, as LXC reads the numbers of an argument check.
fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = s.strip_prefix('0').filter(|o| !o.is_empty()) {
        u64::from_str_radix(oct, 8).ok()
    } else {
        s.parse().ok()
    }
}

fn arg_check(text: &str, line: usize) -> Result<ArgCheck, ProfileError> {
    let bad = |what: &str| perr(line, format!("argument check [{text}]: {what}"));
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    let (index, value, op, mask) = match f.as_slice() {
        [i, v, o] => (*i, *v, *o, None),
        [i, v, o, m] => (*i, *v, *o, Some(*m)),
        _ => return Err(bad("expected index,value,op or index,value,op,mask")),
    };
    let index = number(index)
        .and_then(|i| u8::try_from(i).ok())
        .filter(|i| *i < 6)
        .ok_or_else(|| bad("index must be 0-5"))?;
    let value = number(value).ok_or_else(|| bad("bad value"))?;
    let mask = match mask {
        Some(m) => Some(number(m).ok_or_else(|| bad("bad mask"))?),
        None => None,
    };
    let op = match op {
        "SCMP_CMP_NE" | "!=" => Op::Ne,
        "SCMP_CMP_LT" | "<" => Op::Lt,
        "SCMP_CMP_LE" | "<=" => Op::Le,
        "SCMP_CMP_EQ" | "==" => Op::Eq,
        "SCMP_CMP_GE" | ">=" => Op::Ge,
        "SCMP_CMP_GT" | ">" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" | "&=" => Op::MaskedEq(mask.unwrap_or(0)),
        _ => return Err(bad("unknown operator")),
    };
    Ok(ArgCheck { index, op, value })
}

/// Whether the rules of section `[name]` are read on a machine whose first arch is `native`;
/// Err for a name LXC does not know.
fn section_applies(name: &str, native: Arch) -> Result<bool, ()> {
    use Arch::*;
    let lower = name.to_ascii_lowercase();
    // LXC takes the all-lowercase and all-uppercase spellings only
    if name != lower && name != name.to_ascii_uppercase() {
        return Err(());
    }
    Ok(match lower.as_str() {
        "all" => true,
        "x86" => matches!(native, X86_64 | I386),
        "x32" | "x86_64" => native == X86_64,
        "arm" => matches!(native, Arm | Aarch64),
        "arm64" => native == Aarch64,
        "mips" => native == Mips,
        "mipsel" => native == Mipsel,
        "ppc64le" | "ppc64" | "ppc" | "mips64" | "mips64n32" | "mipsel64" | "mipsel64n32"
        | "s390x" | "s390" | "loongarch64" => false,
        _ => return Err(()),
    })
}

/// Reads a profile for a machine whose first arch is `native`; the warnings (skipped lines)
/// come back beside it.
pub fn parse(text: &str, native: Arch) -> Result<(Profile, Vec<String>), ProfileError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let version = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
    let version = match version {
        "1" => 1,
        "2" => 2,
        _ => return Err(perr(1, format!("version must be 1 or 2, got {version:?}"))),
    };
    let (_, header) = lines
        .next()
        .ok_or_else(|| perr(2, "no policy line (allowlist or denylist)"))?;
    if header.split_whitespace().any(|w| w == "debug") {
        return Err(perr(2, "debug is not implemented (as in LXC)"));
    }
    let mut warnings = Vec::new();
    let starts = |p: &str| header.starts_with(p);
    let deny = if starts("denylist") || starts("blacklist") {
        true
    } else if starts("allowlist") || starts("whitelist") {
        false
    } else {
        return Err(perr(
            2,
            format!("policy must be allowlist or denylist, got {header:?}"),
        ));
    };
    if version == 1 {
        if deny {
            return Err(perr(2, "version 1 supports only allowlist"));
        }
        let mut rules = Vec::new();
        for (n, l) in lines {
            let nr = l
                .trim()
                .parse::<u32>()
                .map_err(|_| perr(n, format!("version 1 wants a syscall number, got {l:?}")))?;
            rules.push(Rule {
                syscall: Syscall::Number(nr),
                action: Action::Allow,
                args: Vec::new(),
                line: n,
            });
        }
        return Ok((
            Profile {
                default: Action::Kill,
                rules,
            },
            warnings,
        ));
    }
    let given = match header.split_once(' ') {
        Some((_, rest)) => action(rest, 2)?,
        None => None,
    };
    let (default, rule_default) = if deny {
        (given.unwrap_or(Action::Allow), Action::Kill)
    } else {
        (given.unwrap_or(Action::Kill), Action::Allow)
    };
    let mut rules = Vec::new();
    let mut skipping = false;
    for (n, raw) in lines {
        let l = raw.trim_end();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('[') {
            let name = l.trim_start_matches('[').trim_end_matches(']');
            skipping = !section_applies(name, native)
                .map_err(|()| perr(n, format!("unsupported architecture {l:?}")))?;
            continue;
        }
        if skipping {
            continue;
        }
        let (name, rest) = l.split_once(' ').unwrap_or((l, ""));
        let act = action(rest, n)?.unwrap_or(rule_default);
        if name.starts_with("reject_force_umount") {
            // LXC's pseudo syscall: umount2(.., MNT_FORCE) fails with EACCES
            rules.push(Rule {
                syscall: Syscall::Name("umount2".into()),
                action: Action::Errno(libc::EACCES as u16),
                args: vec![ArgCheck {
                    index: 1,
                    op: Op::MaskedEq(MNT_FORCE),
                    value: MNT_FORCE,
                }],
                line: n,
            });
            continue;
        }
        let mut args = Vec::new();
        if rest.contains('[') {
            for piece in rest.split(']').filter(|p| !p.trim().is_empty()) {
                let Some((_, inner)) = piece.split_once('[') else {
                    return Err(perr(
                        n,
                        format!("text after the argument checks: {piece:?}"),
                    ));
                };
                if args.len() == 6 {
                    return Err(perr(n, "more than 6 argument checks"));
                }
                args.push(arg_check(inner, n)?);
            }
        }
        // the names are those of every arch with a table, known here or not
        if !syscalls::NAMES.lines().any(|n| n == name) {
            warnings.push(format!(
                "line {n}: syscall {name:?} is unknown, rule skipped"
            ));
            continue;
        }
        rules.push(Rule {
            syscall: Syscall::Name(name.to_string()),
            action: act,
            args,
            line: n,
        });
    }
    Ok((Profile { default, rules }, warnings))
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Offsets into `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_offsets(arch: Arch, index: u8) -> (u32, u32) {
    let base = 16 + 8 * u32::from(index);
    if arch.big_endian() {
        (base + 4, base)
    } else {
        (base, base + 4)
    }
}

/// The instructions of one check: falling off the end means it holds; jumps to the failure
/// exit are left as u8::MAX for `fix`.
fn arg_block(arch: Arch, c: &ArgCheck) -> Vec<libc::sock_filter> {
    let (lo_off, hi_off) = arg_offsets(arch, c.index);
    let (hi, lo) = ((c.value >> 32) as u32, c.value as u32);
    // A 64-bit comparison as two 32-bit ones: decide on the high words when they differ.
    // Offsets below are finished by `fix` (u8::MAX = to the failure exit, 0 = next).
    const F: u8 = u8::MAX;
    let mut v = vec![stmt(LD_W_ABS, hi_off)];
    match c.op {
        Op::Eq | Op::Ne | Op::MaskedEq(_) => {
            let (mhi, mlo) = match c.op {
                Op::MaskedEq(m) => (Some((m >> 32) as u32), Some(m as u32)),
                _ => (None, None),
            };
            if let Some(m) = mhi {
                v.push(stmt(ALU_AND_K, m));
            }
            let ne = c.op == Op::Ne;
            // Ne holds as soon as the high words differ: jump over the low compare
            v.push(if ne {
                jump(JEQ_K, hi, 0, 2)
            } else {
                jump(JEQ_K, hi, 0, F)
            });
            v.push(stmt(LD_W_ABS, lo_off));
            if let Some(m) = mlo {
                v.push(stmt(ALU_AND_K, m));
            }
            v.push(if ne {
                jump(JEQ_K, lo, F, 0)
            } else {
                jump(JEQ_K, lo, 0, F)
            });
        }
        Op::Gt | Op::Ge | Op::Lt | Op::Le => {
            // hi > H: Gt/Ge hold, Lt/Le fail; hi < H: the reverse; equal: compare the lows
            let greater_holds = matches!(c.op, Op::Gt | Op::Ge);
            let (on_gt, on_lt) = if greater_holds { (3, F) } else { (F, 2) };
            v.push(jump(JGT_K, hi, on_gt, 0));
            v.push(jump(JEQ_K, hi, 0, on_lt));
            v.push(stmt(LD_W_ABS, lo_off));
            v.push(match c.op {
                Op::Gt => jump(JGT_K, lo, 0, F),
                Op::Ge => jump(JGE_K, lo, 0, F),
                Op::Lt => jump(JGE_K, lo, F, 0),
                _ => jump(JGT_K, lo, F, 0),
            });
        }
    }
    v
}

/// Resolves the u8::MAX placeholders of `block` to jumps `beyond` instructions past its end.
fn fix(block: &mut [libc::sock_filter], beyond: usize) -> Result<(), String> {
    let n = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        for j in [&mut ins.jt, &mut ins.jf] {
            if *j == u8::MAX {
                let off = n - i - 1 + beyond;
                *j = u8::try_from(off).map_err(|_| "argument checks too long".to_string())?;
            }
        }
    }
    Ok(())
}

/// One arch's part: the rules of its syscalls, then the default. Starts with A undefined.
fn arch_part(p: &Profile, arch: Arch, native: bool) -> Result<Vec<libc::sock_filter>, String> {
    let mut out = vec![stmt(LD_W_ABS, NR)];
    if arch == Arch::X86_64 {
        // x32 calls (no table here) are refused as a foreign arch would be
        out.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
        out.push(stmt(RET_K, RET_KILL_THREAD));
    }
    // per syscall: the rules with argument checks in file order, then the plain one
    let mut order: Vec<&Rule> = p.rules.iter().filter(|r| !r.args.is_empty()).collect();
    order.extend(p.rules.iter().filter(|r| r.args.is_empty()));
    let mut plain: Vec<(u32, Action, usize)> = Vec::new();
    for r in order {
        let nr = match &r.syscall {
            Syscall::Number(n) if native => *n,
            Syscall::Number(_) => continue,
            Syscall::Name(name) => match arch.number(name) {
                Some(n) => n,
                None => continue,
            },
        };
        if r.args.is_empty() {
            if let Some((_, a, line)) = plain.iter().find(|(n, _, _)| *n == nr) {
                if *a != r.action {
                    return Err(format!(
                        "line {}: a rule for this syscall (line {line}) has another action",
                        r.line
                    ));
                }
                continue;
            }
            plain.push((nr, r.action, r.line));
            if r.action == p.default {
                continue;
            }
            out.push(jump(JEQ_K, nr, 0, 1));
            out.push(stmt(RET_K, r.action.ret()));
            continue;
        }
        // jeq nr; the checks (a failure jumps to the reload); ret; reload nr
        let mut blocks: Vec<_> = r.args.iter().map(|c| arg_block(arch, c)).collect();
        let checks: usize = blocks.iter().map(Vec::len).sum();
        let mut fixed = Vec::with_capacity(checks);
        let mut end = 0;
        for b in &mut blocks {
            end += b.len();
            fix(b, checks - end + 1)?;
            fixed.append(b);
        }
        let skip = u8::try_from(fixed.len() + 2).map_err(|_| "argument checks too long")?;
        out.push(jump(JEQ_K, nr, 0, skip));
        out.append(&mut fixed);
        out.push(stmt(RET_K, r.action.ret()));
        out.push(stmt(LD_W_ABS, NR));
    }
    out.push(stmt(RET_K, p.default.ret()));
    Ok(out)
}

/// The filter for `arches` (the first is native: version 1 numbers are its own); any other
/// arch is killed, as libseccomp's default bad-arch action does.
pub fn compile(p: &Profile, arches: &[Arch]) -> Result<Vec<libc::sock_filter>, String> {
    let mut parts = Vec::with_capacity(arches.len());
    for (i, a) in arches.iter().enumerate() {
        parts.push(arch_part(p, *a, i == 0)?);
    }
    // dispatch: ld arch; per arch "jeq; ja part"; kill
    let mut out = vec![stmt(LD_W_ABS, ARCH)];
    let dispatch = 2 * arches.len() + 1;
    let mut at = 0usize;
    for (i, a) in arches.iter().enumerate() {
        out.push(jump(JEQ_K, a.audit(), 0, 1));
        // from after this ja to the part: the rest of the dispatch, then earlier parts
        let rest = dispatch - 2 * i - 2;
        let k = u32::try_from(rest + at).map_err(|_| "filter too long")?;
        out.push(stmt(JA, k));
        at += parts.get(i).map_or(0, Vec::len);
    }
    out.push(stmt(RET_K, RET_KILL_THREAD));
    for mut part in parts {
        out.append(&mut part);
    }
    if out.len() > MAX_INSNS {
        return Err(format!(
            "the filter has {} instructions, more than the kernel's {MAX_INSNS}",
            out.len()
        ));
    }
    Ok(out)
}

/// Where `lxc.seccomp.profile` is: an absolute path is a path of the device (pvr's `/storage`,
/// `/volumes`, ... mapped as the engine maps them); a relative one is beside the container's
/// LXC config in the revision, where pvr puts the container's files.
pub fn resolve(value: &str, config_dir: &Path, paths: &Paths) -> PathBuf {
    if value.starts_with('/') {
        paths.map_host_path(value)
    } else {
        config_dir.join(value)
    }
}

/// Reads and compiles the profile at `path` for this machine; Ok has the filter and the
/// warnings, Err the message (with the profile's line).
pub fn load(path: &Path) -> Result<(Vec<libc::sock_filter>, Vec<String>), String> {
    let arches = native_arches().ok_or("no syscall table for this architecture")?;
    let native = *arches
        .first()
        .ok_or("no syscall table for this architecture")?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (profile, warnings) = parse(&text, native).map_err(|e| match e.line {
        0 => e.message,
        n => format!("line {n}: {}", e.message),
    })?;
    let filter = compile(&profile, arches)?;
    Ok((filter, warnings))
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
