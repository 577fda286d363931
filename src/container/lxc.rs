//! The LXC config subset that pvr puts into revisions, read without liblxc.
//!
//! Pure: `parse` turns the text into an `LxcConfig`; the engine acts on it. A device must not
//! refuse to boot over a cosmetic key, so unknown and unsupported keys are warnings (logged here
//! and kept in `warnings`, never dropped silently). Malformed values of keys the engine relies on
//! (numbers, addresses, mount entries, capabilities, rootfs) are errors naming file and line.
use std::fmt;
use std::net::Ipv4Addr;

// mount(2) flags, Linux ABI values.
pub const MS_RDONLY: u64 = 1;
pub const MS_NOSUID: u64 = 2;
pub const MS_NODEV: u64 = 4;
pub const MS_NOEXEC: u64 = 8;
pub const MS_SYNCHRONOUS: u64 = 16;
pub const MS_REMOUNT: u64 = 32;
pub const MS_MANDLOCK: u64 = 64;
pub const MS_DIRSYNC: u64 = 128;
pub const MS_NOSYMFOLLOW: u64 = 256;
pub const MS_NOATIME: u64 = 1024;
pub const MS_NODIRATIME: u64 = 2048;
pub const MS_BIND: u64 = 4096;
pub const MS_MOVE: u64 = 8192;
pub const MS_REC: u64 = 16384;
pub const MS_SILENT: u64 = 32768;
pub const MS_UNBINDABLE: u64 = 1 << 17;
pub const MS_PRIVATE: u64 = 1 << 18;
pub const MS_SLAVE: u64 = 1 << 19;
pub const MS_SHARED: u64 = 1 << 20;
pub const MS_RELATIME: u64 = 1 << 21;
pub const MS_I_VERSION: u64 = 1 << 23;
pub const MS_STRICTATIME: u64 = 1 << 24;
pub const MS_LAZYTIME: u64 = 1 << 25;

/// Flags that a bind mount ignores on its first mount(2) and only takes on a remount.
const PER_MOUNT_FLAGS: u64 = MS_RDONLY
    | MS_NOSUID
    | MS_NODEV
    | MS_NOEXEC
    | MS_NOATIME
    | MS_NODIRATIME
    | MS_RELATIME
    | MS_STRICTATIME
    | MS_NOSYMFOLLOW;

/// A parse failure: `<file>:<line>: <message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LxcError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LxcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for LxcError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rootfs {
    /// `lowers` in the order written: the first is the topmost, as in overlayfs' `lowerdir=`.
    Overlay {
        lowers: Vec<String>,
        upper: String,
    },
    Dir(String),
}

/// Namespaces shared with the host (`lxc.namespace.keep`); everything else is new.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceKeep {
    pub user: bool,
    pub net: bool,
    pub ipc: bool,
    pub mnt: bool,
    pub pid: bool,
    pub uts: bool,
    pub cgroup: bool,
    pub time: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetKind {
    Empty,
    Veth,
    Phys,
    /// The host's network namespace.
    None,
    Macvlan,
    Ipvlan,
    Vlan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEntry {
    pub index: u32,
    pub kind: NetKind,
    pub link: Option<String>,
    pub flags_up: bool,
    pub ipv4_address: Option<(Ipv4Addr, u8)>,
    pub ipv4_gateway: Option<Ipv4Addr>,
    pub hwaddr: Option<String>,
    pub name: Option<String>,
    pub mtu: Option<u32>,
    pub veth_pair: Option<String>,
}

impl NetEntry {
    fn new(index: u32) -> NetEntry {
        NetEntry {
            index,
            kind: NetKind::Empty,
            link: None,
            flags_up: false,
            ipv4_address: None,
            ipv4_gateway: None,
            hwaddr: None,
            name: None,
            mtu: None,
            veth_pair: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysMode {
    None,
    Rw,
    Ro,
    /// /sys read-only except /sys/devices/virtual/net (LXC's `sys` and `sys:mixed`).
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// No specifier: LXC mounts rw when the container keeps CAP_SYS_ADMIN, mixed otherwise.
    Auto,
    Mixed,
    Ro,
    Rw,
}

/// `lxc.mount.auto`. Without the key: `proc sys:rw cgroup` (spec table; LXC itself mounts nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountAuto {
    pub proc: bool,
    /// `proc:rw`; otherwise `proc:mixed` (/proc/sys and /proc/sysrq-trigger read-only).
    pub proc_rw: bool,
    pub sys: SysMode,
    pub cgroup: bool,
    pub cgroup_mode: CgroupMode,
    /// `cgroup-full`: the whole hierarchy rather than the container's own cgroup.
    pub cgroup_full: bool,
    /// `:force`: mount even when a cgroup namespace would let init do it.
    pub cgroup_force: bool,
}

impl MountAuto {
    pub const NONE: MountAuto = MountAuto {
        proc: false,
        proc_rw: false,
        sys: SysMode::None,
        cgroup: false,
        cgroup_mode: CgroupMode::Auto,
        cgroup_full: false,
        cgroup_force: false,
    };
}

impl Default for MountAuto {
    fn default() -> MountAuto {
        MountAuto {
            proc: true,
            sys: SysMode::Rw,
            cgroup: true,
            ..MountAuto::NONE
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// One `lxc.mount.entry` fstab line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    /// Relative to the rootfs: leading '/' stripped, never contains a `..` component.
    pub target: String,
    pub fstype: String,
    /// MS_* flags for the mount(2) call (propagation flags excluded).
    pub flags: u64,
    /// MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE (| MS_REC): a separate mount(2) call.
    pub propagation: u64,
    /// Filesystem options (`mode=755,size=64k`), joined by ','.
    pub data: String,
    pub create: Option<Create>,
    /// A failure is logged and the entry skipped.
    pub optional: bool,
}

impl MountEntry {
    /// A read-only bind mount: the kernel ignores MS_RDONLY on the bind itself.
    pub fn needs_ro_remount(&self) -> bool {
        self.flags & MS_BIND != 0 && self.flags & MS_RDONLY != 0
    }

    /// Flags for the remount that applies per-mount flags (ro, nosuid, nodev, noexec, atime
    /// options) to a bind mount, or None when the bind needs no remount.
    pub fn bind_remount_flags(&self) -> Option<u64> {
        let per_mount = self.flags & PER_MOUNT_FLAGS;
        (self.flags & MS_BIND != 0 && per_mount != 0).then_some(MS_REMOUNT | MS_BIND | per_mount)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupKnob {
    /// From `lxc.cgroup2.*` rather than `lxc.cgroup.*`.
    pub v2: bool,
    /// File name in the container's cgroup, e.g. `memory.max`; never contains '/'.
    pub controller_knob: String,
    pub value: String,
}

/// A device cgroup rule (`a`, `c 1:3 rwm`, `b *:* m`); None for a wildcard number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    /// 'a', 'b' or 'c'.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceRule {
    pub fn parse(rule: &str) -> Option<DeviceRule> {
        let mut words = rule.split_whitespace();
        let kind = match words.next()? {
            "a" => 'a',
            "b" => 'b',
            "c" => 'c',
            _ => return None,
        };
        let mut r = DeviceRule {
            kind,
            major: None,
            minor: None,
            read: true,
            write: true,
            mknod: true,
        };
        let numbers = match words.next() {
            Some(n) => n,
            None if kind == 'a' => return Some(r),
            None => return None,
        };
        let (major, minor) = numbers.split_once(':')?;
        let num = |s: &str| -> Option<Option<u32>> {
            if s == "*" {
                Some(None)
            } else {
                digits(s).map(Some)
            }
        };
        r.major = num(major)?;
        r.minor = num(minor)?;
        if let Some(access) = words.next() {
            if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return None;
            }
            r.read = access.contains('r');
            r.write = access.contains('w');
            r.mknod = access.contains('m');
        }
        words.next().is_none().then_some(r)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LxcConfig {
    pub rootfs: Option<Rootfs>,
    pub init_cmd: Vec<String>,
    pub init_cwd: Option<String>,
    pub environment: Vec<(String, String)>,
    pub namespace_keep: NamespaceKeep,
    /// Sorted by index.
    pub net: Vec<NetEntry>,
    pub mount_auto: MountAuto,
    pub mount_entries: Vec<MountEntry>,
    pub autodev: bool,
    pub tty_max: Option<u32>,
    pub pty_max: Option<u32>,
    /// `Some("none")`: no console (see `console_disabled`).
    pub console_path: Option<String>,
    pub cap_drop: Vec<u32>,
    pub cap_keep: Vec<u32>,
    /// `lxc.cap.keep` was given (possibly as `none`, leaving `cap_keep` empty): every capability
    /// not in `cap_keep` is dropped. See `caps_to_drop`.
    pub cap_keep_set: bool,
    /// (allow, rule) in file order; `DeviceRule::parse` reads a rule.
    pub cgroup_devices: Vec<(bool, String)>,
    pub cgroup_knobs: Vec<CgroupKnob>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    pub signal_halt: Option<String>,
    pub signal_stop: Option<String>,
    pub uts_name: Option<String>,
    /// `lxc.seccomp.profile` as written: a path on the host (see the engine for how it is
    /// resolved).
    pub seccomp_profile: Option<String>,
    /// `lxc.no_new_privs = 1`.
    pub no_new_privs: bool,
    /// `<file>:<line>: <message>`, each already logged by `parse`.
    pub warnings: Vec<String>,
}

impl Default for LxcConfig {
    fn default() -> LxcConfig {
        LxcConfig {
            rootfs: None,
            init_cmd: default_init(),
            init_cwd: None,
            environment: Vec::new(),
            namespace_keep: NamespaceKeep::default(),
            net: Vec::new(),
            mount_auto: MountAuto::default(),
            mount_entries: Vec::new(),
            autodev: true,
            tty_max: None,
            pty_max: None,
            console_path: None,
            cap_drop: Vec::new(),
            cap_keep: Vec::new(),
            cap_keep_set: false,
            cgroup_devices: Vec::new(),
            cgroup_knobs: Vec::new(),
            log_file: None,
            log_level: None,
            signal_halt: None,
            signal_stop: None,
            uts_name: None,
            seccomp_profile: None,
            no_new_privs: false,
            warnings: Vec::new(),
        }
    }
}

impl LxcConfig {
    pub fn console_disabled(&self) -> bool {
        self.console_path.as_deref() == Some("none")
    }

    /// Capabilities to drop from the bounding set on a kernel whose highest is `last_cap`:
    /// everything outside `cap_keep` when it was set, plus `cap_drop`, ascending.
    pub fn caps_to_drop(&self, last_cap: u32) -> Vec<u32> {
        (0..=last_cap.min(63))
            .filter(|c| {
                (self.cap_keep_set && !self.cap_keep.contains(c)) || self.cap_drop.contains(c)
            })
            .collect()
    }
}

fn default_init() -> Vec<String> {
    vec!["/sbin/init".to_string()]
}

/// The folders that pvr's absolute paths stand for (standalone mode relocates them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathMap {
    pub volumes: String,
    pub exports: String,
    pub storage: String,
    pub pv: String,
}

impl PathMap {
    /// `/volumes/web/root.squashfs` -> `<volumes>/web/root.squashfs`; only a whole first
    /// component matches (`/volumesx` stays); any other path is returned unchanged.
    pub fn map(&self, path: &str) -> String {
        let table = [
            ("/volumes", &self.volumes),
            ("/exports", &self.exports),
            ("/storage", &self.storage),
            ("/pv", &self.pv),
        ];
        for (prefix, folder) in table {
            if let Some(rest) = path.strip_prefix(prefix) {
                if rest.is_empty() {
                    return folder.clone();
                }
                if rest.starts_with('/') {
                    return format!("{}{}", folder.trim_end_matches('/'), rest);
                }
            }
        }
        path.to_string()
    }
}

const CAPS: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// `sys_admin`, `SYS_ADMIN`, `cap_sys_admin` and `CAP_SYS_ADMIN` are all 21.
pub fn capability_number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    CAPS.iter().position(|c| *c == bare).map(|n| n as u32)
}

/// Lowercase name without `cap_`.
pub fn capability_name(n: u32) -> Option<&'static str> {
    CAPS.get(n as usize).copied()
}

/// Parses lossily decoded text without logging, and compiles what it can (device rules, and
/// the text as a seccomp profile); the fuzz target calls it.
pub fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_inner(&text, "fuzz", false) {
        Err(e) => drop(e.to_string()),
        Ok(cfg) => {
            let map = PathMap {
                volumes: "/v".into(),
                exports: "/e/".into(),
                storage: "/s".into(),
                pv: "/p".into(),
            };
            for m in &cfg.mount_entries {
                let _ = (
                    map.map(&m.source),
                    m.needs_ro_remount(),
                    m.bind_remount_flags(),
                );
            }
            let rules: Vec<(bool, DeviceRule)> = cfg
                .cgroup_devices
                .iter()
                .filter_map(|(a, r)| DeviceRule::parse(r).map(|r| (*a, r)))
                .collect();
            let _ = super::devices::program(&super::devices::policy(&rules));
            let _ = cfg.caps_to_drop(u32::MAX);
        }
    }
    // the same bytes as a seccomp profile
    use super::seccomp::{compile, parse, Arch};
    if let Ok((p, _)) = parse(&text, Arch::X86_64) {
        let _ = compile(&p, &[Arch::X86_64, Arch::I386]);
    }
}

/// Reads an LXC config; `file` names it in errors and warnings. Warnings are logged here.
pub fn parse(text: &str, file: &str) -> Result<LxcConfig, LxcError> {
    parse_inner(text, file, true)
}

fn parse_inner(text: &str, file: &str, log: bool) -> Result<LxcConfig, LxcError> {
    let mut p = Parser {
        file,
        line: 0,
        log,
        cfg: LxcConfig::default(),
        mount_auto_seen: false,
        legacy_net: None,
        typed_nets: Vec::new(),
        apparmor: None,
    };
    for (n, raw) in text.lines().enumerate() {
        p.line = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err(p.err("NUL byte in line".into()));
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => return Err(p.err(format!("expected `key = value`, got {:?}", line))),
        };
        if !key.starts_with("lxc.") {
            return Err(p.err(format!("{:?} is not an lxc.* key", key)));
        }
        p.set(key, value)?;
    }
    p.line = 0;
    let untyped: Vec<u32> = p
        .cfg
        .net
        .iter()
        .map(|n| n.index)
        .filter(|i| !p.typed_nets.contains(i))
        .collect();
    for i in untyped {
        p.warn(format!("lxc.net.{} has no type, read as empty", i));
    }
    if let Some((line, key, value)) = p.apparmor.take() {
        // a profile the container expects to be confined by: running it unconfined would
        // silently drop that protection
        p.line = line;
        return Err(p.err(format!(
            "{key} = {value}: this build has no AppArmor; only unconfined (or unchanged) runs"
        )));
    }
    if !p.cfg.cap_drop.is_empty() && p.cfg.cap_keep_set {
        p.warn("both lxc.cap.drop and lxc.cap.keep are set (LXC refuses this); both apply".into());
    }
    Ok(p.cfg)
}

struct Parser<'a> {
    file: &'a str,
    line: usize,
    log: bool,
    cfg: LxcConfig,
    mount_auto_seen: bool,
    /// Network of the old unnumbered `lxc.network.*` keys, begun by each `lxc.network.type`.
    legacy_net: Option<u32>,
    /// Networks whose `type` was given.
    typed_nets: Vec<u32>,
    /// The last `lxc.apparmor.profile` asking for confinement: (line, key as written, value).
    apparmor: Option<(usize, String, String)>,
}

/// Old key names (LXC before 2.1) and what they became.
const LEGACY: [(&str, &str); 20] = [
    ("lxc.rootfs", "lxc.rootfs.path"),
    ("lxc.utsname", "lxc.uts.name"),
    ("lxc.tty", "lxc.tty.max"),
    ("lxc.pts", "lxc.pty.max"),
    ("lxc.init_cmd", "lxc.init.cmd"),
    ("lxc.init_uid", "lxc.init.uid"),
    ("lxc.init_gid", "lxc.init.gid"),
    ("lxc.haltsignal", "lxc.signal.halt"),
    ("lxc.stopsignal", "lxc.signal.stop"),
    ("lxc.rebootsignal", "lxc.signal.reboot"),
    ("lxc.console", "lxc.console.path"),
    ("lxc.logfile", "lxc.log.file"),
    ("lxc.loglevel", "lxc.log.level"),
    ("lxc.aa_profile", "lxc.apparmor.profile"),
    ("lxc.aa_allow_incomplete", "lxc.apparmor.allow_incomplete"),
    ("lxc.se_context", "lxc.selinux.context"),
    ("lxc.seccomp", "lxc.seccomp.profile"),
    ("lxc.id_map", "lxc.idmap"),
    ("lxc.devttydir", "lxc.tty.dir"),
    ("lxc.mount", "lxc.mount.fstab"),
];

/// LXC keys (and key families) that exist but that this runtime does not act on.
const IGNORED: [&str; 35] = [
    "lxc.arch",
    "lxc.selinux",
    "lxc.hook",
    "lxc.start",
    "lxc.group",
    "lxc.monitor",
    "lxc.idmap",
    "lxc.prlimit",
    "lxc.sysctl",
    "lxc.proc",
    "lxc.ephemeral",
    "lxc.keyring",
    "lxc.tty.dir",
    "lxc.rootfs.options",
    "lxc.rootfs.mount",
    "lxc.rootfs.managed",
    "lxc.mount.fstab",
    "lxc.init.uid",
    "lxc.init.gid",
    "lxc.init.groups",
    "lxc.log.syslog",
    "lxc.autodev.tmpfs",
    "lxc.time",
    "lxc.sched",
    "lxc.console.logfile",
    "lxc.console.rotate",
    "lxc.console.size",
    "lxc.console.buffer",
    "lxc.cgroup.dir",
    "lxc.cgroup.relative",
    "lxc.namespace.share",
    "lxc.namespace.clone",
    "lxc.signal.reboot",
    "lxc.environment.runtime",
    "lxc.environment.hooks",
];

const OBSOLETE: [&str; 4] = [
    "lxc.kmsg",
    "lxc.pivotdir",
    "lxc.rootfs.backend",
    "lxc.limit",
];

/// `key` is `family` or a key below it.
fn in_family(key: &str, family: &str) -> bool {
    key.strip_prefix(family)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// LXC drops one pair of quotes around a whole value.
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() > 1 {
            if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
                return inner;
            }
        }
    }
    value
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Parser<'_> {
    fn err(&self, message: String) -> LxcError {
        LxcError {
            file: self.file.to_string(),
            line: self.line,
            message,
        }
    }

    fn warn(&mut self, message: String) {
        let w = if self.line == 0 {
            format!("{}: {}", self.file, message)
        } else {
            format!("{}:{}: {}", self.file, self.line, message)
        };
        if self.log {
            crate::pvlog!(Warn, "lxc", "{}", w);
        }
        self.cfg.warnings.push(w);
    }

    /// `0` or `1`; None for the empty value (the key's default).
    fn flag(&self, key: &str, value: &str) -> Result<Option<bool>, LxcError> {
        match value {
            "" => Ok(None),
            "0" => Ok(Some(false)),
            "1" => Ok(Some(true)),
            _ => Err(self.err(format!("{}: expected 0 or 1, got {:?}", key, value))),
        }
    }

    fn number(&self, key: &str, value: &str) -> Result<u32, LxcError> {
        digits(value).ok_or_else(|| self.err(format!("{}: bad number {:?}", key, value)))
    }

    fn set(&mut self, orig: &str, raw_value: &str) -> Result<(), LxcError> {
        let mut key = orig.to_string();
        if let Some(rest) = orig.strip_prefix("lxc.network.") {
            key = self.legacy_network(rest);
            if key.is_empty() {
                self.warn(format!("{} before any lxc.network.type, ignored", orig));
                return Ok(());
            }
            self.warn(format!("legacy key {}, read as {}", orig, key));
        } else if let Some((_, new)) = LEGACY.iter().find(|(old, _)| *old == orig) {
            key = new.to_string();
            if !IGNORED.iter().any(|f| in_family(new, f)) {
                self.warn(format!("legacy key {}, read as {}", orig, new));
            }
        } else if orig == "lxc.network" {
            key = "lxc.net".into();
        }
        // Quotes are the tokenizer's business in lxc.init.cmd.
        let value = if key == "lxc.init.cmd" {
            raw_value
        } else {
            unquote(raw_value)
        };
        let empty = value.is_empty();
        match key.as_str() {
            "lxc.include" => self.warn(format!("{} = {}: not supported, not read", orig, value)),
            "lxc.rootfs.path" => {
                self.cfg.rootfs = if empty {
                    None
                } else {
                    Some(self.rootfs(value)?)
                }
            }
            "lxc.init.cmd" => {
                self.cfg.init_cmd = self.init_cmd(value);
                if self.cfg.init_cmd.is_empty() {
                    self.cfg.init_cmd = default_init();
                }
            }
            "lxc.init.cwd" => {
                if !empty && !value.starts_with('/') {
                    self.warn(format!("{} {:?} is not an absolute path", orig, value));
                }
                self.cfg.init_cwd = (!empty).then(|| value.to_string());
            }
            "lxc.environment" => self.environment(value),
            "lxc.namespace.keep" => self.namespace_keep(value),
            "lxc.mount.auto" => self.mount_auto(value),
            "lxc.mount.entry" => {
                if empty {
                    self.cfg.mount_entries.clear();
                } else {
                    let entry = self.mount_entry(value)?;
                    self.cfg.mount_entries.push(entry);
                }
            }
            "lxc.autodev" => self.cfg.autodev = self.flag(orig, value)?.unwrap_or(true),
            "lxc.tty.max" => {
                self.cfg.tty_max = if empty {
                    None
                } else {
                    Some(self.number(orig, value)?)
                }
            }
            "lxc.pty.max" => {
                self.cfg.pty_max = if empty {
                    None
                } else {
                    Some(self.number(orig, value)?)
                }
            }
            "lxc.console.path" => self.cfg.console_path = (!empty).then(|| value.to_string()),
            "lxc.apparmor.profile" => {
                // without AppArmor, unconfined and unchanged (keep the current one: none)
                // are what every process here has already
                self.apparmor = match value {
                    "" | "unconfined" | "unchanged" => None,
                    _ => Some((self.line, orig.to_string(), value.to_string())),
                }
            }
            // they only relax AppArmor: nothing to relax without it
            "lxc.apparmor.allow_incomplete" | "lxc.apparmor.allow_nesting" => {}
            k if in_family(k, "lxc.apparmor") => {
                self.warn(format!("{} is not supported (no AppArmor), ignored", orig))
            }
            "lxc.seccomp.profile" => self.cfg.seccomp_profile = (!empty).then(|| value.to_string()),
            // allow_nesting, notify.*: a second policy and a supervisor, neither made here
            k if in_family(k, "lxc.seccomp") => {
                self.warn(format!("{} is not supported, ignored", orig))
            }
            "lxc.no_new_privs" => self.cfg.no_new_privs = self.flag(orig, value)?.unwrap_or(false),
            "lxc.cap.drop" => {
                if empty {
                    self.cfg.cap_drop.clear();
                }
                for name in value.split_whitespace() {
                    let n = self.capability(name)?;
                    if !self.cfg.cap_drop.contains(&n) {
                        self.cfg.cap_drop.push(n);
                    }
                }
            }
            "lxc.cap.keep" => {
                self.cfg.cap_keep_set = !empty;
                if empty {
                    self.cfg.cap_keep.clear();
                }
                for name in value.split_whitespace() {
                    if name == "none" {
                        self.cfg.cap_keep.clear();
                        continue;
                    }
                    let n = self.capability(name)?;
                    if !self.cfg.cap_keep.contains(&n) {
                        self.cfg.cap_keep.push(n);
                    }
                }
            }
            "lxc.log.file" => self.cfg.log_file = (!empty).then(|| value.to_string()),
            "lxc.log.level" => {
                if !empty && !log_level_known(value) {
                    self.warn(format!("{}: unknown level {:?}", orig, value));
                }
                self.cfg.log_level = (!empty).then(|| value.to_string());
            }
            "lxc.signal.halt" | "lxc.signal.stop" => {
                if !empty && !signal_known(value) {
                    self.warn(format!("{}: unknown signal {:?}", orig, value));
                }
                let v = (!empty).then(|| value.to_string());
                if key == "lxc.signal.halt" {
                    self.cfg.signal_halt = v;
                } else {
                    self.cfg.signal_stop = v;
                }
            }
            "lxc.uts.name" => {
                if value.len() > 64 {
                    self.warn(format!("{}: longer than 64 bytes", orig));
                }
                self.cfg.uts_name = (!empty).then(|| value.to_string());
            }
            "lxc.net" if empty => {
                self.cfg.net.clear();
                self.typed_nets.clear();
            }
            "lxc.cgroup" | "lxc.cgroup2" if empty => {
                let v2 = key == "lxc.cgroup2";
                self.cfg.cgroup_knobs.retain(|k| k.v2 != v2);
                self.cfg.cgroup_devices.clear();
            }
            k if OBSOLETE.iter().any(|f| in_family(k, f)) => {
                self.warn(format!("{} is obsolete, ignored", orig))
            }
            k if IGNORED.iter().any(|f| in_family(k, f)) => {
                if k == orig {
                    self.warn(format!("{} is not supported, ignored", orig))
                } else {
                    self.warn(format!("{} (now {}) is not supported, ignored", orig, k))
                }
            }
            k => {
                if let Some(rest) = k.strip_prefix("lxc.net.") {
                    return self.net(orig, rest, value);
                }
                let knob = match k.strip_prefix("lxc.cgroup2.") {
                    Some(knob) => Some((true, knob)),
                    None => k.strip_prefix("lxc.cgroup.").map(|knob| (false, knob)),
                };
                match knob {
                    Some((v2, knob)) if knob.contains('.') => return self.cgroup(v2, knob, value),
                    _ => self.warn(format!("unknown key {}, ignored", orig)),
                }
            }
        }
        Ok(())
    }

    /// `type`/`0.type` etc. of `lxc.network.*` to `lxc.net.N.*`; "" without a network.
    fn legacy_network(&mut self, rest: &str) -> String {
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            return format!("lxc.net.{}", rest);
        }
        if rest == "type" {
            let next = self.cfg.net.last().map_or(0, |n| n.index.saturating_add(1));
            self.legacy_net = Some(next);
        }
        let field = if rest == "ipv4" { "ipv4.address" } else { rest };
        match self.legacy_net {
            Some(n) => format!("lxc.net.{}.{}", n, field),
            None => String::new(),
        }
    }

    fn rootfs(&self, value: &str) -> Result<Rootfs, LxcError> {
        if value.starts_with('/') {
            return Ok(Rootfs::Dir(value.to_string()));
        }
        let (kind, rest) = value.split_once(':').unwrap_or(("", value));
        match kind {
            "overlayfs" | "overlay" => {
                let mut parts: Vec<String> = rest.split(':').map(str::to_string).collect();
                if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
                    return Err(self.err(format!(
                        "lxc.rootfs.path {:?}: expected {}:<lower>[:<lower>...]:<upper>",
                        value, kind
                    )));
                }
                let upper = parts.pop().unwrap_or_default();
                Ok(Rootfs::Overlay {
                    lowers: parts,
                    upper,
                })
            }
            "dir" if !rest.is_empty() => Ok(Rootfs::Dir(rest.to_string())),
            "btrfs" | "zfs" | "lvm" | "loop" | "nbd" | "rbd" => Err(self.err(format!(
                "lxc.rootfs.path {:?}: storage type {} is not supported",
                value, kind
            ))),
            _ => Err(self.err(format!(
                "lxc.rootfs.path {:?}: expected an absolute path or overlayfs:...",
                value
            ))),
        }
    }

    /// Words separated by blanks; a double-quoted part keeps blanks and reads `\"` and `\\`;
    /// a single-quoted part (LXC allows them) reads everything literally; adjacent parts join.
    fn init_cmd(&mut self, value: &str) -> Vec<String> {
        let mut argv = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                ' ' | '\t' => {
                    if in_word {
                        argv.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                '"' | '\'' => {
                    in_word = true;
                    let mut closed = false;
                    while let Some(q) = chars.next() {
                        if q == c {
                            closed = true;
                            break;
                        }
                        if c == '"' && q == '\\' {
                            match chars.next() {
                                Some(e @ ('"' | '\\')) => word.push(e),
                                Some(e) => {
                                    word.push('\\');
                                    word.push(e);
                                }
                                None => word.push('\\'),
                            }
                        } else {
                            word.push(q);
                        }
                    }
                    if !closed {
                        self.warn(format!("lxc.init.cmd: unterminated {} quote", c));
                    }
                }
                _ => {
                    in_word = true;
                    word.push(c);
                }
            }
        }
        if in_word {
            argv.push(word);
        }
        argv
    }

    fn environment(&mut self, value: &str) {
        if value.is_empty() {
            self.cfg.environment.clear();
            return;
        }
        let (k, v) = match value.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k, v),
            _ => {
                self.warn(format!(
                    "lxc.environment {:?}: expected KEY=value (inheriting the host's value is not supported), ignored",
                    value
                ));
                return;
            }
        };
        match self.cfg.environment.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => self.cfg.environment.push((k.to_string(), v.to_string())),
        }
    }

    fn namespace_keep(&mut self, value: &str) {
        if value.is_empty() {
            self.cfg.namespace_keep = NamespaceKeep::default();
        }
        for ns in value.split_whitespace() {
            let keep = &mut self.cfg.namespace_keep;
            match ns {
                "user" => keep.user = true,
                "net" => keep.net = true,
                "ipc" => keep.ipc = true,
                "mnt" => keep.mnt = true,
                "pid" => keep.pid = true,
                "uts" => keep.uts = true,
                "cgroup" => keep.cgroup = true,
                "time" => keep.time = true,
                _ => self.warn(format!(
                    "lxc.namespace.keep: unknown namespace {:?}, ignored",
                    ns
                )),
            }
        }
    }

    fn mount_auto(&mut self, value: &str) {
        // The first occurrence replaces the default; later ones add (per category, last wins).
        if !self.mount_auto_seen || value.is_empty() {
            self.cfg.mount_auto = MountAuto::NONE;
            self.mount_auto_seen = true;
        }
        for word in value.split_whitespace() {
            let a = &mut self.cfg.mount_auto;
            let (kind, spec) = word.split_once(':').unwrap_or((word, ""));
            let known = match (kind, spec) {
                ("proc", "" | "mixed" | "rw") => {
                    a.proc = true;
                    a.proc_rw = spec == "rw";
                    true
                }
                ("sys", _) => {
                    let mode = match spec {
                        "" | "mixed" => Some(SysMode::Mixed),
                        "ro" => Some(SysMode::Ro),
                        "rw" => Some(SysMode::Rw),
                        _ => None,
                    };
                    mode.map(|m| a.sys = m).is_some()
                }
                ("cgroup" | "cgroup-full", _) => {
                    let (mode, force) = match spec.strip_suffix("force") {
                        Some(m) if m.is_empty() || m.ends_with(':') => {
                            (m.trim_end_matches(':'), true)
                        }
                        _ => (spec, false),
                    };
                    let mode = match mode {
                        "" => Some(CgroupMode::Auto),
                        "mixed" => Some(CgroupMode::Mixed),
                        "ro" => Some(CgroupMode::Ro),
                        "rw" => Some(CgroupMode::Rw),
                        _ => None,
                    };
                    mode.map(|m| {
                        a.cgroup = true;
                        a.cgroup_mode = m;
                        a.cgroup_full = kind == "cgroup-full";
                        a.cgroup_force = force;
                    })
                    .is_some()
                }
                _ => false,
            };
            if !known {
                self.warn(format!(
                    "lxc.mount.auto: {:?} is not supported, ignored",
                    word
                ));
            }
        }
    }

    fn mount_entry(&mut self, value: &str) -> Result<MountEntry, LxcError> {
        let fields: Vec<&str> = value.split_whitespace().collect();
        let (source, target, fstype, options) = match fields.as_slice() {
            [s, t, f, o, ..] => (*s, *t, *f, *o),
            _ => {
                return Err(self.err(format!(
                    "lxc.mount.entry {:?}: expected `source target fstype options [dump pass]`",
                    value
                )))
            }
        };
        let extra = fields.get(4..).unwrap_or_default();
        if extra.len() > 2 || extra.iter().any(|f| digits(f).is_none()) {
            self.warn(format!(
                "lxc.mount.entry {:?}: odd dump/pass fields, ignored",
                value
            ));
        }
        let target = unescape_fstab(target);
        let target = target.trim_start_matches('/').to_string();
        if target.split('/').any(|c| c == "..") {
            return Err(self.err(format!(
                "lxc.mount.entry: target {:?} leaves the rootfs",
                target
            )));
        }
        let mut m = MountEntry {
            source: unescape_fstab(source),
            target,
            fstype: unescape_fstab(fstype),
            flags: 0,
            propagation: 0,
            data: String::new(),
            create: None,
            optional: false,
        };
        for opt in options.split(',').filter(|o| !o.is_empty()) {
            if let Some((set, clear)) = mount_flag(opt) {
                m.flags = (m.flags & !clear) | set;
                continue;
            }
            match opt {
                "defaults" => {}
                "private" => m.propagation = MS_PRIVATE,
                "rprivate" => m.propagation = MS_PRIVATE | MS_REC,
                "slave" => m.propagation = MS_SLAVE,
                "rslave" => m.propagation = MS_SLAVE | MS_REC,
                "shared" => m.propagation = MS_SHARED,
                "rshared" => m.propagation = MS_SHARED | MS_REC,
                "unbindable" => m.propagation = MS_UNBINDABLE,
                "runbindable" => m.propagation = MS_UNBINDABLE | MS_REC,
                "create=dir" => m.create = Some(Create::Dir),
                "create=file" => m.create = Some(Create::File),
                "optional" => m.optional = true,
                _ if opt.starts_with("create=")
                    || opt == "relative"
                    || opt.starts_with("idmap=") =>
                {
                    self.warn(format!(
                        "lxc.mount.entry: option {:?} is not supported, ignored",
                        opt
                    ))
                }
                _ => {
                    if !m.data.is_empty() {
                        m.data.push(',');
                    }
                    m.data.push_str(opt);
                }
            }
        }
        Ok(m)
    }

    fn capability(&self, name: &str) -> Result<u32, LxcError> {
        match digits(name) {
            Some(n) if n <= 63 => Ok(n),
            Some(_) => Err(self.err(format!("capability number {} out of range", name))),
            None => capability_number(name)
                .ok_or_else(|| self.err(format!("unknown capability {:?}", name))),
        }
    }

    fn net(&mut self, orig: &str, rest: &str, value: &str) -> Result<(), LxcError> {
        let (idx, field) = rest.split_once('.').unwrap_or((rest, ""));
        let idx = digits(idx)
            .ok_or_else(|| self.err(format!("{}: bad network index {:?}", orig, idx)))?;
        let empty = value.is_empty();
        if field.is_empty() {
            if empty {
                self.cfg.net.retain(|n| n.index != idx);
                self.typed_nets.retain(|i| *i != idx);
            } else {
                self.warn(format!("unknown key {}, ignored", orig));
            }
            return Ok(());
        }
        enum Set {
            Kind(NetKind),
            Link(Option<String>),
            Up(bool),
            Addr(Option<(Ipv4Addr, u8)>),
            Gateway(Option<Ipv4Addr>),
            Hwaddr(Option<String>),
            Name(Option<String>),
            Mtu(Option<u32>),
            Pair(Option<String>),
        }
        let text = (!empty).then(|| value.to_string());
        let set = match field {
            "type" => Set::Kind(match value {
                "" => {
                    self.typed_nets.retain(|i| *i != idx);
                    NetKind::Empty
                }
                "empty" => NetKind::Empty,
                "veth" => NetKind::Veth,
                "phys" => NetKind::Phys,
                "none" => NetKind::None,
                "macvlan" => NetKind::Macvlan,
                "ipvlan" => NetKind::Ipvlan,
                "vlan" => NetKind::Vlan,
                _ => return Err(self.err(format!("{}: unknown network type {:?}", orig, value))),
            }),
            "link" => Set::Link(text),
            "flags" => {
                if !empty && value != "up" {
                    self.warn(format!("{}: unknown flags {:?}, read as up", orig, value));
                }
                Set::Up(!empty)
            }
            "ipv4.address" => Set::Addr(if empty {
                None
            } else {
                Some(self.ipv4_cidr(orig, value)?)
            }),
            "ipv4.gateway" => {
                Set::Gateway(match value {
                    "" => None,
                    "auto" | "dev" => {
                        self.warn(format!("{} = {} is not supported, ignored", orig, value));
                        None
                    }
                    _ => Some(value.parse().map_err(|_| {
                        self.err(format!("{}: bad IPv4 address {:?}", orig, value))
                    })?),
                })
            }
            "hwaddr" => Set::Hwaddr(text),
            "name" => Set::Name(text),
            "mtu" => Set::Mtu(if empty {
                None
            } else {
                Some(self.number(orig, value)?)
            }),
            "veth.pair" => Set::Pair(text),
            _ => {
                self.warn(format!("{} is not supported, ignored", orig));
                return Ok(());
            }
        };
        if matches!(set, Set::Kind(_)) && !empty && !self.typed_nets.contains(&idx) {
            self.typed_nets.push(idx);
        }
        if let Set::Addr(Some(_)) = set {
            let had = self
                .cfg
                .net
                .iter()
                .any(|n| n.index == idx && n.ipv4_address.is_some());
            if had {
                self.warn(format!(
                    "{}: only one address is supported, the last wins",
                    orig
                ));
            }
        }
        let pos = match self.cfg.net.binary_search_by_key(&idx, |n| n.index) {
            Ok(i) => i,
            Err(i) => {
                self.cfg.net.insert(i, NetEntry::new(idx));
                i
            }
        };
        if let Some(n) = self.cfg.net.get_mut(pos) {
            match set {
                Set::Kind(k) => n.kind = k,
                Set::Link(v) => n.link = v,
                Set::Up(v) => n.flags_up = v,
                Set::Addr(v) => n.ipv4_address = v,
                Set::Gateway(v) => n.ipv4_gateway = v,
                Set::Hwaddr(v) => n.hwaddr = v,
                Set::Name(v) => n.name = v,
                Set::Mtu(v) => n.mtu = v,
                Set::Pair(v) => n.veth_pair = v,
            }
        }
        Ok(())
    }

    /// `a.b.c.d/prefix [broadcast]`; without a prefix, the classful one (as LXC).
    fn ipv4_cidr(&mut self, key: &str, value: &str) -> Result<(Ipv4Addr, u8), LxcError> {
        let mut words = value.split_whitespace();
        let cidr = words.next().unwrap_or_default();
        if words.next().is_some() {
            self.warn(format!(
                "{}: broadcast address is not supported, ignored",
                key
            ));
        }
        let (addr, prefix) = match cidr.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (cidr, None),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| self.err(format!("{}: bad IPv4 address {:?}", key, addr)))?;
        let prefix = match prefix {
            Some(p) => match digits(p) {
                Some(n) if n <= 32 => n as u8,
                _ => return Err(self.err(format!("{}: bad prefix length {:?}", key, p))),
            },
            None => match addr.octets()[0] {
                0..=127 => 8,
                128..=191 => 16,
                192..=223 => 24,
                _ => 32,
            },
        };
        Ok((addr, prefix))
    }

    fn cgroup(&mut self, v2: bool, knob: &str, value: &str) -> Result<(), LxcError> {
        if knob.is_empty() || knob.contains('/') || knob.starts_with('.') {
            return Err(self.err(format!("bad cgroup knob {:?}", knob)));
        }
        let allow = match knob {
            "devices.allow" => Some(true),
            "devices.deny" => Some(false),
            _ => None,
        };
        if let Some(allow) = allow {
            if value.is_empty() {
                self.cfg.cgroup_devices.retain(|(a, _)| *a != allow);
            } else if DeviceRule::parse(value).is_none() {
                return Err(self.err(format!("{}: bad device rule {:?}", knob, value)));
            } else {
                self.cfg.cgroup_devices.push((allow, value.to_string()));
            }
        } else if value.is_empty() {
            self.cfg
                .cgroup_knobs
                .retain(|k| k.v2 != v2 || k.controller_knob != knob);
        } else {
            self.cfg.cgroup_knobs.push(CgroupKnob {
                v2,
                controller_knob: knob.to_string(),
                value: value.to_string(),
            });
        }
        Ok(())
    }
}

/// getmntent's octal escapes (`\040` for a blank).
fn unescape_fstab(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (Some(b'\\'), Some(oct)) = (b.get(i), b.get(i + 1..i + 4)) {
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        if let Some(c) = b.get(i) {
            out.push(*c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (flags set, flags cleared) of a mount option, as mount(8).
fn mount_flag(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "ro" => (MS_RDONLY, 0),
        "rw" => (0, MS_RDONLY),
        "nosuid" => (MS_NOSUID, 0),
        "suid" => (0, MS_NOSUID),
        "nodev" => (MS_NODEV, 0),
        "dev" => (0, MS_NODEV),
        "noexec" => (MS_NOEXEC, 0),
        "exec" => (0, MS_NOEXEC),
        "sync" => (MS_SYNCHRONOUS, 0),
        "async" => (0, MS_SYNCHRONOUS),
        "remount" => (MS_REMOUNT, 0),
        "mand" => (MS_MANDLOCK, 0),
        "nomand" => (0, MS_MANDLOCK),
        "dirsync" => (MS_DIRSYNC, 0),
        "nosymfollow" => (MS_NOSYMFOLLOW, 0),
        "noatime" => (MS_NOATIME, 0),
        "atime" => (0, MS_NOATIME),
        "nodiratime" => (MS_NODIRATIME, 0),
        "diratime" => (0, MS_NODIRATIME),
        "relatime" => (MS_RELATIME, 0),
        "norelatime" => (0, MS_RELATIME),
        "strictatime" => (MS_STRICTATIME, 0),
        "nostrictatime" => (0, MS_STRICTATIME),
        "lazytime" => (MS_LAZYTIME, 0),
        "nolazytime" => (0, MS_LAZYTIME),
        "iversion" => (MS_I_VERSION, 0),
        "noiversion" => (0, MS_I_VERSION),
        "bind" => (MS_BIND, 0),
        "rbind" => (MS_BIND | MS_REC, 0),
        "move" => (MS_MOVE, 0),
        "silent" => (MS_SILENT, 0),
        "loud" => (0, MS_SILENT),
        _ => return None,
    })
}

fn log_level_known(v: &str) -> bool {
    const LEVELS: [&str; 9] = [
        "TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRIT", "ALERT", "FATAL",
    ];
    digits(v).is_some_and(|n| n <= 8) || LEVELS.iter().any(|l| l.eq_ignore_ascii_case(v))
}

/// LXC's forms: a number, or `SIG` + name, `SIGRTMIN+n`, `SIGRTMAX-n` (case-insensitive).
fn signal_known(v: &str) -> bool {
    const NAMES: [&str; 33] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
    ];
    if digits(v).is_some() {
        return true;
    }
    let upper = v.to_ascii_uppercase();
    let Some(name) = upper.strip_prefix("SIG") else {
        return false;
    };
    let rt = |base: &str, sep: char| {
        name.strip_prefix(base).is_some_and(|r| {
            r.is_empty() || r.strip_prefix(sep).is_some_and(|n| digits(n).is_some())
        })
    };
    NAMES.contains(&name) || rt("RTMIN", '+') || rt("RTMAX", '-')
}

#[cfg(test)]
#[path = "lxc_tests.rs"]
mod tests;
