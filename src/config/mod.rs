//! Configuration: the key table, the levels a value can come from, the parsers for
//! config files, the kernel command line and the environment, and typed getters.
//!
//! One mechanism for every level: each key keeps one value per level, and the effective value is
//! the one of the highest level that set it. So levels may be applied in any order (the OEM file
//! arrives after the environment), a lower level set later never overrides a higher one, and
//! deleting a user-meta override brings back the value below it.
//!
//! Values are checked and normalised when set (bools `1`/`0`, sizes in bytes, durations in
//! seconds, enum names as listed), so getters only read. Nothing here is fatal: an unknown key,
//! a level a key is not allowed at, a bad value, a value this build does not support (a
//! bootloader it has no backend for) or a malformed line is a warning, logged and kept for
//! `take_warnings`, and the key keeps its previous value.
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

mod keys;
#[cfg(test)]
mod tests;

pub use keys::{Key, KeyDef, Type, LOG_OUTPUTS};

/// Where a value came from, lowest precedence first (upstream's precedence). `Args` is upstream's level
/// for values the binary derives from its own invocation; it may set any key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Default,
    Args,
    /// `pantavisor.config`
    PvConfFile,
    /// `pantahub.config`
    PhConfFile,
    /// `<etc>/pantavisor/policies/<PV_POLICY>.config`
    Policy,
    /// `<PV_OEM_NAME>/<PV_POLICY|default>.config` inside the running revision
    Oem,
    /// `pv_`/`ph_` words of the kernel command line
    Cmdline,
    /// `PV_*`/`PH_*` variables of the process
    Env,
    /// user-meta overrides
    UserMeta,
    /// pv-ctrl commands (ENABLE_SSH / DISABLE_SSH)
    Command,
}

const LEVELS: usize = 10;

impl Level {
    pub const ALL: [Level; LEVELS] = [
        Level::Default,
        Level::Args,
        Level::PvConfFile,
        Level::PhConfFile,
        Level::Policy,
        Level::Oem,
        Level::Cmdline,
        Level::Env,
        Level::UserMeta,
        Level::Command,
    ];

    /// The name `/config2` shows as "modified". The command line is "pv cmdline" here;
    /// `Config::entries` says "ph cmdline" when the value came from a `ph_` word.
    pub fn name(self) -> &'static str {
        match self {
            Level::Default => "default",
            Level::Args => "args",
            Level::PvConfFile => "pv conf file",
            Level::PhConfFile => "ph conf file",
            Level::Policy => "policy",
            Level::Oem => "oem config",
            Level::Cmdline => "pv cmdline",
            Level::Env => "env",
            Level::UserMeta => "metadata",
            Level::Command => "command",
        }
    }
}

fn level_name(level: Level, ph: bool) -> &'static str {
    if level == Level::Cmdline && ph {
        "ph cmdline"
    } else {
        level.name()
    }
}

fn allowed(mask: u16, level: Level) -> bool {
    level == Level::Args || mask & (1 << (level as u16)) != 0
}

/// Why a value was not taken (or, for `Legacy`, how it was taken). `Display` gives the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigWarning {
    UnknownKey {
        key: String,
        source: String,
    },
    NotAllowed {
        key: String,
        level: &'static str,
        source: String,
    },
    BadValue {
        key: String,
        value: String,
        expected: String,
        source: String,
    },
    /// A value upstream knows that this build has no code for (e.g. `PV_BOOTLOADER_TYPE=rpiab`).
    Unsupported {
        key: String,
        value: String,
        supported: String,
        source: String,
    },
    /// A config file line without `=` or without a key.
    BadLine {
        file: String,
        line: usize,
    },
    /// A legacy dotted key, translated.
    Legacy {
        alias: String,
        key: String,
        source: String,
    },
    TooManySysctls {
        key: String,
        source: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { key, source } => {
                write!(f, "unknown config key '{key}' from {source}, ignored")
            }
            ConfigWarning::NotAllowed { key, level, source } => write!(
                f,
                "config key '{key}' is not allowed at level '{level}' (from {source}), ignored"
            ),
            ConfigWarning::BadValue {
                key,
                value,
                expected,
                source,
            } => write!(
                f,
                "bad value '{value}' for config key '{key}' from {source}: expected {expected}; \
                 keeping the previous value"
            ),
            ConfigWarning::Unsupported {
                key,
                value,
                supported,
                source,
            } => write!(
                f,
                "unsupported value '{value}' for config key '{key}' from {source}: this build \
                 supports {supported}; keeping the previous value"
            ),
            ConfigWarning::BadLine { file, line } => {
                write!(f, "{file} line {line}: not a KEY=value line, ignored")
            }
            ConfigWarning::Legacy { alias, key, source } => {
                write!(
                    f,
                    "translating legacy config key '{alias}' as '{key}' (from {source})"
                )
            }
            ConfigWarning::TooManySysctls { key, source } => write!(
                f,
                "too many sysctl keys: '{key}' from {source} ignored (at most {MAX_SYSCTLS})"
            ),
        }
    }
}

/// Untrusted text quoted in a warning: at most 64 characters, control characters escaped.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push_str("...");
    }
    out
}

/// The origin of a value, for warnings: "pantavisor.config line 3", "env", ...
#[derive(Clone, Copy)]
struct Src<'a> {
    name: &'a str,
    line: usize,
}

impl fmt::Display for Src<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{} line {}", clip(self.name), self.line)
        } else {
            f.write_str(&clip(self.name))
        }
    }
}

#[derive(Default)]
struct Slots {
    values: [Option<Box<str>>; LEVELS],
    /// The command-line value came from a `ph_` word (only changes the level's name).
    ph_cmdline: bool,
}

impl Slots {
    fn top(&self) -> Option<(Level, &str)> {
        Level::ALL
            .iter()
            .zip(self.values.iter())
            .rev()
            .find_map(|(l, v)| v.as_deref().map(|v| (*l, v)))
    }
    fn put(&mut self, level: Level, value: Box<str>) {
        if let Some(slot) = self.values.get_mut(level as usize) {
            *slot = Some(value);
        }
    }
    fn take(&mut self, level: Level) -> bool {
        self.values
            .get_mut(level as usize)
            .and_then(Option::take)
            .is_some()
    }
    fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

/// `PV_SYSCTL_*` keys are not in the table: any sysctl may be set (bounded in number).
const MAX_SYSCTLS: usize = 128;
/// Warnings kept for `take_warnings`; more are still logged. Bounds memory on a device whose
/// user-meta keeps sending bad values.
const MAX_WARNINGS: usize = 256;

struct SysctlEntry {
    key: Box<str>,
    path: Option<Box<str>>,
    slots: Slots,
}

/// A sysctl the runtime should write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctl<'a> {
    /// `PV_SYSCTL_<PATH>`, upper case.
    pub key: &'a str,
    /// The exact path under `/proc/sys` when the key came in the legacy dotted form
    /// (`sysctl.net.ipv4.ip_forward` -> `net/ipv4/ip_forward`). When `None`, `<PATH>` is lower
    /// cased and each `_` becomes `/` where that directory exists (upstream's precedence).
    pub path: Option<&'a str>,
    pub value: &'a str,
    pub level: &'static str,
}

/// A typed value of the legacy `/config` view: bools as JSON bools, numbers (ints, sizes,
/// durations, enum positions, the log output mask) as JSON numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasValue<'a> {
    Bool(bool),
    Number(u64),
    Str(Option<&'a str>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    Embedded,
    Standalone,
    Appengine,
}

/// The bootloaders this build drives (`rpiab` and `uboot-ab` are refused when read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootloaderType {
    Uboot,
    UbootPvk,
    Grub,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WdtMode {
    Disabled,
    Shutdown,
    Startup,
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTimestamp {
    Relative,
    Absolute,
}

/// `PV_LOG_DIR_MAXSIZE`: bytes (`0` = automatic: 10 % of the partition, 100 % on tmpfs) or a
/// percentage of the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeLimit {
    Bytes(u64),
    Percent(u8),
}

/// What a name designates once legacy spellings are undone.
enum Target {
    Key(Key),
    Sysctl { key: String, path: Option<String> },
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

// Only characters a sysctl name can hold: the runtime joins it to /proc/sys, so `/` and `..`
// must never get through.
fn sysctl_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `(target, legacy)` for a key name, case-insensitively.
fn resolve(name: &str) -> Option<(Target, bool)> {
    if let Some(k) = Key::ALL
        .iter()
        .find(|k| k.def().name.eq_ignore_ascii_case(name))
    {
        return Some((Target::Key(*k), false));
    }
    if let Some(rest) = strip_prefix_ci(name, "PV_SYSCTL_") {
        if sysctl_chars(rest) {
            let key = format!("PV_SYSCTL_{}", rest.to_ascii_uppercase());
            return Some((Target::Sysctl { key, path: None }, false));
        }
        return None;
    }
    if let Some((_, k)) = keys::ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
    {
        return Some((Target::Key(*k), true));
    }
    let rest = strip_prefix_ci(name, "sysctl.")?;
    if !rest.split('.').all(sysctl_chars) {
        return None;
    }
    let key = format!("PV_SYSCTL_{}", rest.replace('.', "_").to_ascii_uppercase());
    let path = Some(rest.replace('.', "/"));
    Some((Target::Sysctl { key, path }, true))
}

/// Variables the bootloader puts on the command line (and the kernel into init's environment)
/// for the boot-env contract, and `pv_verityoff`, which upstream reads from that environment
/// (dm-verity volumes mounted plain); not configuration.
fn is_boot_env(name: &str) -> bool {
    ["pv_rev", "pv_try", "pv_trying", "pv_verityoff"]
        .iter()
        .any(|b| b.eq_ignore_ascii_case(name))
}

fn has_pv_ph_prefix(name: &str) -> Option<bool> {
    let p = name.get(..3)?;
    if p.eq_ignore_ascii_case("pv_") {
        Some(false)
    } else if p.eq_ignore_ascii_case("ph_") {
        Some(true)
    } else {
        None
    }
}

/// Kernel command line words: split at whitespace outside double quotes; the quotes themselves
/// are dropped (`pv_x="a b"` -> `pv_x=a b`), as the kernel does for parameter values.
fn cmdline_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// `0/1/true/false/yes/no/on/off`, case-insensitive.
pub fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    let is = |words: [&str; 4]| words.iter().any(|w| w.eq_ignore_ascii_case(s));
    if is(["1", "true", "yes", "on"]) {
        Some(true)
    } else if is(["0", "false", "no", "off"]) {
        Some(false)
    } else {
        None
    }
}

/// Leading decimal digits and the (trimmed) unit after them; `None` on no digits or overflow.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at_checked(end)?;
    Some((num.parse().ok()?, unit.trim()))
}

/// Bytes, or with `B/K/KB/M/MB/G/GB/T/TB` (powers of 1024, case-insensitive); `None` on overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let (n, unit) = split_number(s)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Seconds: bare, or with `s/sec/m/min/h/d`; `None` on overflow.
pub fn parse_duration(s: &str) -> Option<u64> {
    let (n, unit) = split_number(s)?;
    let mul = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mul)
}

fn parse_number(s: &str, max: u64) -> Option<u64> {
    match split_number(s)? {
        (n, "") if n <= max => Some(n),
        _ => None,
    }
}

/// The value as stored, or what was expected instead.
fn normalize(ty: Type, has_default: bool, v: &str) -> Result<String, String> {
    let t = v.trim();
    let ok = |r: Option<u64>, expected: &str| r.map(|n| n.to_string()).ok_or(expected.to_string());
    match ty {
        Type::Str if v.is_empty() && has_default => Err("a non-empty value".into()),
        Type::Str => Ok(v.to_string()),
        Type::Name if t.contains('/') || t == "." || t == ".." => Err("a name without '/'".into()),
        Type::Name => Ok(t.to_string()),
        Type::Bool => match parse_bool(t) {
            Some(b) => Ok(if b { "1" } else { "0" }.to_string()),
            None => Err("0/1/true/false/yes/no/on/off".into()),
        },
        Type::Int => ok(
            parse_number(t, i32::MAX as u64),
            "a number from 0 to 2147483647",
        ),
        Type::Percent => ok(parse_number(t, 100), "a percentage from 0 to 100"),
        Type::Port => ok(
            parse_number(t, 65535).filter(|p| *p > 0),
            "a port from 1 to 65535",
        ),
        Type::Size => ok(
            parse_size(t),
            "a size (bytes, or N with K/KB/M/MB/G/GB/T/TB)",
        ),
        Type::SizeOrPercent => match t.strip_suffix('%') {
            Some(p) => match parse_number(p, 100) {
                Some(n) => Ok(format!("{n}%")),
                None => Err("a percentage from 0% to 100%".into()),
            },
            None => ok(
                parse_size(t),
                "a size (bytes, or N with K/KB/M/MB/G/GB/T/TB) or N%",
            ),
        },
        Type::Duration => ok(
            parse_duration(t).filter(|s| *s <= u64::from(u32::MAX)),
            "a duration (seconds, or N with s/min/h/d)",
        ),
        Type::Enum(names) => match names.iter().find(|n| n.eq_ignore_ascii_case(t)) {
            Some(n) => Ok(n.to_string()),
            None => Err(format!("one of {}", names.join(", "))),
        },
        // upstream's own mask as a number (its appengine environment has `196`), kept as given
        Type::Outputs if t.parse::<u8>().is_ok() => Ok(t.to_string()),
        Type::Outputs => {
            let mut out = String::new();
            for tok in t.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some(name) = LOG_OUTPUTS.iter().find(|n| n.eq_ignore_ascii_case(tok)) else {
                    return Err(format!("a comma list of {}", LOG_OUTPUTS.join(", ")));
                };
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(name);
            }
            if out.is_empty() {
                return Err(format!("a comma list of {}", LOG_OUTPUTS.join(", ")));
            }
            Ok(out)
        }
    }
}

/// Upstream's log output mask: bit `1 << position in LOG_OUTPUTS`, plus `update` (128) always.
pub fn log_outputs_mask(list: &str) -> u16 {
    if let Ok(mask) = list.parse::<u8>() {
        return u16::from(mask);
    }
    list.split(',')
        .filter_map(|t| LOG_OUTPUTS.iter().position(|n| *n == t.trim()))
        .fold(1 << 7, |m, p| m | (1 << p))
}

/// The configuration of the device.
pub struct Config {
    /// One per `Key::ALL` entry, same order.
    keys: Vec<Slots>,
    sysctls: Vec<SysctlEntry>,
    warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Code defaults only.
    pub fn new() -> Config {
        let mut keys = Vec::new();
        keys.resize_with(Key::ALL.len(), Slots::default);
        // Upstream writes this one at init, before any file: crash dumps go to pvcrash.
        let mut slots = Slots::default();
        slots.put(Level::Default, "|/lib/pv/pvcrash --skip".into());
        let core = SysctlEntry {
            key: "PV_SYSCTL_KERNEL_CORE_PATTERN".into(),
            path: None,
            slots,
        };
        Config {
            keys,
            sysctls: vec![core],
            warnings: Vec::new(),
        }
    }

    /// The boot-time levels in one call: `pantavisor.config` text (if any), the kernel command
    /// line, the environment. Then the caller reads `policy_path()` (which depends on all
    /// three) and applies it with `apply_text(Level::Policy, ..)`; `pantahub.config` follows once
    /// storage is mounted, the OEM file at revision start. Order does not matter for precedence.
    pub fn load(
        config_file_text: Option<&str>,
        cmdline: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Config {
        let mut c = Config::new();
        if let Some(text) = config_file_text {
            c.apply_text(Level::PvConfFile, "pantavisor.config", text);
        }
        c.apply_cmdline(cmdline);
        c.apply_env(env);
        c
    }

    /// A `KEY=value` file: `#` comment lines and blank lines skipped, whitespace around key and
    /// value trimmed, one pair of double quotes around the value dropped, `=` allowed in values.
    /// `source` names the file in warnings.
    pub fn apply_text(&mut self, level: Level, source: &str, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let src = Src {
                name: source,
                line: i + 1,
            };
            match line.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    let _ = self.apply_one(level, false, src, k.trim(), unquote(v.trim()), false);
                }
                _ => self.note(&ConfigWarning::BadLine {
                    file: clip(source),
                    line: i + 1,
                }),
            }
        }
    }

    /// The kernel command line: `pv_<key>=value` and `ph_<key>=value` words, `<key>` being the
    /// key without its `PV_`/`PH_` prefix (`pv_log_level`) or a legacy alias
    /// (`pv_storage.device`). Other words, and the boot-env variables `pv_rev`/`pv_try`, are not
    /// configuration and are skipped without a word.
    pub fn apply_cmdline(&mut self, text: &str) {
        for word in cmdline_words(text) {
            let (name, value) = word.split_once('=').unwrap_or((&word, ""));
            let Some(ph) = has_pv_ph_prefix(name) else {
                continue;
            };
            if is_boot_env(name) {
                continue;
            }
            let src = Src {
                name: level_name(Level::Cmdline, ph),
                line: 0,
            };
            let _ = self.apply_one(Level::Cmdline, ph, src, name, value, true);
        }
    }

    /// Environment variables; only `PV_*`/`PH_*` (any case) are looked at.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(&mut self, env: I) {
        for (name, value) in env {
            if has_pv_ph_prefix(&name).is_none() || is_boot_env(&name) {
                continue;
            }
            let src = Src {
                name: "env",
                line: 0,
            };
            let _ = self.apply_one(Level::Env, false, src, &name, &value, true);
        }
    }

    /// Set one key (name, legacy alias or `PV_SYSCTL_*`) at `level`: the entry point for
    /// user-meta overrides and commands. On `Err` the warning is also logged and kept.
    pub fn set(&mut self, level: Level, key: &str, value: &str) -> Result<(), ConfigWarning> {
        let src = Src {
            name: level.name(),
            line: 0,
        };
        self.apply_one(level, false, src, key.trim(), value, false)
    }

    /// As `set`, for a key known at compile time (e.g. ENABLE_SSH sets `PV_DEBUG_SSH`).
    pub fn set_key(&mut self, level: Level, key: Key, value: &str) -> Result<(), ConfigWarning> {
        self.store(
            level,
            false,
            Src {
                name: level.name(),
                line: 0,
            },
            key,
            value,
        )
    }

    /// Forget the value `level` gave `key` (a deleted user-meta key): the next level down shows
    /// through. Returns whether there was one. Not a config key: `false`, no warning (most
    /// user-meta keys are not configuration).
    pub fn unset(&mut self, level: Level, key: &str) -> bool {
        if level == Level::Default {
            return false;
        }
        match resolve(key.trim()) {
            Some((Target::Key(k), _)) => {
                self.keys.get_mut(k as usize).is_some_and(|s| s.take(level))
            }
            Some((Target::Sysctl { key, .. }, _)) => {
                let found = self.sysctls.iter_mut().find(|s| *s.key == *key);
                let removed = found.is_some_and(|s| s.slots.take(level));
                self.sysctls.retain(|s| !s.slots.is_empty());
                removed
            }
            None => false,
        }
    }

    /// Whether `name` is something `set` would take: a key, an alias or a sysctl key.
    pub fn knows(name: &str) -> bool {
        resolve(name.trim()).is_some()
    }

    /// The warnings collected since the last call (also logged when they happened).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn note(&mut self, w: &ConfigWarning) {
        let msg = w.to_string();
        crate::pvlog!(Warn, "config", "{}", msg);
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(msg);
        }
    }

    fn fail(&mut self, w: ConfigWarning) -> Result<(), ConfigWarning> {
        self.note(&w);
        Err(w)
    }

    /// `prefixed`: a command-line word or variable, where `pv_`/`ph_` + alias is also a name.
    fn apply_one(
        &mut self,
        level: Level,
        ph: bool,
        src: Src,
        name: &str,
        value: &str,
        prefixed: bool,
    ) -> Result<(), ConfigWarning> {
        let found = resolve(name).or_else(|| match prefixed {
            true => name.get(3..).and_then(resolve),
            false => None,
        });
        let Some((target, legacy)) = found else {
            return self.fail(ConfigWarning::UnknownKey {
                key: clip(name),
                source: src.to_string(),
            });
        };
        let canonical = match &target {
            Target::Key(k) => k.def().name,
            Target::Sysctl { key, .. } => key.as_str(),
        };
        if legacy {
            let key = canonical.to_string();
            self.note(&ConfigWarning::Legacy {
                alias: clip(name),
                key,
                source: src.to_string(),
            });
        }
        match target {
            Target::Key(k) => self.store(level, ph, src, k, value),
            Target::Sysctl { key, path } => self.store_sysctl(level, ph, src, key, path, value),
        }
    }

    fn store(
        &mut self,
        level: Level,
        ph: bool,
        src: Src,
        k: Key,
        value: &str,
    ) -> Result<(), ConfigWarning> {
        let def = k.def();
        if !allowed(def.allowed, level) {
            let level = level_name(level, ph);
            let (key, source) = (def.name.to_string(), src.to_string());
            return self.fail(ConfigWarning::NotAllowed { key, level, source });
        }
        let v = match normalize(def.ty, def.default.is_some(), value) {
            Ok(v) => v,
            Err(expected) => {
                // name only what this build takes: a user must not be sent to `rpiab`
                let expected = keys::supported_names(k)
                    .filter(|_| !keys::unsupported(k).is_empty())
                    .map_or(expected, |s| format!("one of {s}"));
                let (key, value, source) = (def.name.to_string(), clip(value), src.to_string());
                return self.fail(ConfigWarning::BadValue {
                    key,
                    value,
                    expected,
                    source,
                });
            }
        };
        // Refused here, where the config is read, and never at boot: a value the device
        // cannot act on would otherwise end every boot in FATAL and a reboot loop.
        if keys::unsupported(k).contains(&v.as_str()) {
            let supported = keys::supported_names(k).unwrap_or_default();
            let (key, value, source) = (def.name.to_string(), v, src.to_string());
            return self.fail(ConfigWarning::Unsupported {
                key,
                value,
                supported,
                source,
            });
        }
        if let Some(slots) = self.keys.get_mut(k as usize) {
            slots.put(level, v.into_boxed_str());
            if level == Level::Cmdline {
                slots.ph_cmdline = ph;
            }
        }
        Ok(())
    }

    fn store_sysctl(
        &mut self,
        level: Level,
        ph: bool,
        src: Src,
        key: String,
        path: Option<String>,
        value: &str,
    ) -> Result<(), ConfigWarning> {
        if !allowed(keys::SYSCTL_ALLOWED, level) {
            let level = level_name(level, ph);
            return self.fail(ConfigWarning::NotAllowed {
                key,
                level,
                source: src.to_string(),
            });
        }
        if !self.sysctls.iter().any(|s| *s.key == *key) {
            if self.sysctls.len() >= MAX_SYSCTLS {
                return self.fail(ConfigWarning::TooManySysctls {
                    key,
                    source: src.to_string(),
                });
            }
            let entry = SysctlEntry {
                key: key.as_str().into(),
                path: None,
                slots: Slots::default(),
            };
            self.sysctls.push(entry);
        }
        if let Some(entry) = self.sysctls.iter_mut().find(|s| *s.key == *key) {
            entry.slots.put(level, value.into());
            if level == Level::Cmdline {
                entry.slots.ph_cmdline = ph;
            }
            if let Some(p) = path {
                entry.path = Some(p.into_boxed_str());
            }
        }
        Ok(())
    }

    /// (level, value came from a `ph_` word, value)
    fn effective(&self, k: Key) -> (Level, bool, Option<&str>) {
        match self
            .keys
            .get(k as usize)
            .and_then(|s| s.top().map(|(l, v)| (l, s.ph_cmdline, v)))
        {
            Some((l, ph, v)) => (l, ph, Some(v)),
            None => (Level::Default, false, k.def().default),
        }
    }

    /// The effective value as stored (normalised); `None` for an unset key without default.
    pub fn get(&self, k: Key) -> Option<&str> {
        self.effective(k).2
    }

    /// The level the effective value came from (`Default` when no level set it).
    pub fn level_of(&self, k: Key) -> Level {
        self.effective(k).0
    }

    /// A text value; `None` when unset or empty.
    pub fn get_str(&self, k: Key) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    pub fn get_bool(&self, k: Key) -> bool {
        self.get(k) == Some("1")
    }

    /// Ints, percentages, ports, sizes (bytes), durations (seconds); an enum's position; the
    /// log output mask. 0 for text keys and for `N%` sizes.
    pub fn get_int(&self, k: Key) -> u64 {
        let v = self.get(k).unwrap_or("");
        match k.def().ty {
            Type::Enum(names) => names.iter().position(|n| *n == v).unwrap_or(0) as u64,
            Type::Outputs => u64::from(log_outputs_mask(v)),
            // Stored normalised, so this only fails for text keys and `N%`.
            _ => v.parse().unwrap_or(0),
        }
    }

    /// For `/config2`: (key, effective value, level name) of every key of the table. A `None`
    /// value prints as `(null)`. The sysctl keys are not listed: upstream writes them to
    /// /proc/sys as it reads them and keeps no entry (`sysctls()` has them).
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, Option<&str>, &'static str)> + '_ {
        Key::ALL.iter().map(move |&k| {
            let (level, ph, v) = self.effective(k);
            (k.def().name, v, level_name(level, ph))
        })
    }

    /// For the legacy `/config`: (alias, typed value) of every key that has a dotted alias.
    pub fn alias_entries(&self) -> impl Iterator<Item = (&'static str, AliasValue<'_>)> + '_ {
        Key::ALL.iter().filter_map(move |&k| {
            let (alias, _) = keys::ALIASES
                .iter()
                .find(|(a, key)| *key == k && !a.starts_with("PV_"))?;
            let v = match k.def().ty {
                Type::Bool => AliasValue::Bool(self.get_bool(k)),
                Type::Str | Type::Name => AliasValue::Str(self.get(k)),
                _ => AliasValue::Number(self.get_int(k)),
            };
            Some((*alias, v))
        })
    }

    /// The sysctl keys with a value.
    pub fn sysctls(&self) -> impl Iterator<Item = Sysctl<'_>> + '_ {
        self.sysctls.iter().filter_map(|s| {
            let (level, value) = s.slots.top()?;
            let level = level_name(level, s.slots.ph_cmdline);
            Some(Sysctl {
                key: &s.key,
                path: s.path.as_deref(),
                value,
                level,
            })
        })
    }

    /// A path key whose code default lies under `/storage/` (meta caches, logs, dropbear keys),
    /// moved under the configured `PV_STORAGE_MNTPOINT` while the key itself was not set. Why:
    /// a standalone device keeps its storage in a temporary folder, and these defaults name the
    /// embedded mount point; a value set explicitly is taken as meant.
    pub fn storage_path(&self, k: Key) -> Cow<'_, str> {
        let v = self.get(k).unwrap_or("");
        if self.level_of(k) == Level::Default {
            if let (Some(rest), Some(mnt)) = (
                v.strip_prefix("/storage/"),
                self.get_str(Key::PV_STORAGE_MNTPOINT),
            ) {
                return Cow::Owned(format!("{}/{}", mnt.trim_end_matches('/'), rest));
            }
        }
        Cow::Borrowed(v)
    }

    /// `<etc>/pantavisor/policies/<PV_POLICY>.config`, when a policy is set.
    pub fn policy_path(&self) -> Option<PathBuf> {
        let policy = self.get_str(Key::PV_POLICY)?;
        Some(PathBuf::from(format!(
            "{}/policies/{policy}.config",
            self.etc_pantavisor_dir()
        )))
    }

    /// `<PV_OEM_NAME>/<PV_POLICY or "default">.config`, relative to the revision's directory.
    pub fn oem_config_file(&self) -> Option<String> {
        let oem = self.get_str(Key::PV_OEM_NAME)?;
        Some(format!(
            "{oem}/{}.config",
            self.get_str(Key::PV_POLICY).unwrap_or("default")
        ))
    }

    fn text(&self, k: Key) -> &str {
        self.get(k).unwrap_or("")
    }

    // ---- named getters: defaults are the table's (upstream's code defaults) ----

    pub fn init_mode(&self) -> InitMode {
        match self.text(Key::PV_SYSTEM_INIT_MODE) {
            "standalone" => InitMode::Standalone,
            "appengine" => InitMode::Appengine,
            _ => InitMode::Embedded,
        }
    }
    pub fn bootloader_type(&self) -> BootloaderType {
        match self.text(Key::PV_BOOTLOADER_TYPE) {
            "uboot-pvk" => BootloaderType::UbootPvk,
            "grub" => BootloaderType::Grub,
            _ => BootloaderType::Uboot,
        }
    }
    pub fn bootloader_mtd_only(&self) -> bool {
        self.get_bool(Key::PV_BOOTLOADER_MTD_ONLY)
    }
    pub fn bootloader_mtd_env(&self) -> &str {
        self.get_str(Key::PV_BOOTLOADER_MTD_ENV).unwrap_or("pv-env")
    }
    pub fn bootloader_fitconfig(&self) -> Option<&str> {
        self.get_str(Key::PV_BOOTLOADER_FITCONFIG)
    }
    pub fn secureboot_mode(&self) -> crate::pvs::Mode {
        // the key's type admits only the four names
        crate::pvs::Mode::parse(self.text(Key::PV_SECUREBOOT_MODE))
            .unwrap_or(crate::pvs::Mode::Lenient)
    }
    pub fn secureboot_checksum(&self) -> bool {
        self.get_bool(Key::PV_SECUREBOOT_CHECKSUM)
    }
    pub fn secureboot_handlers(&self) -> bool {
        self.get_bool(Key::PV_SECUREBOOT_HANDLERS)
    }
    /// `dm:` volumes go through dm-verity: `PV_SECUREBOOT_HANDLERS` and no `pv_verityoff`,
    /// which upstream reads from init's environment (a `pv_verityoff=1` command line word).
    pub fn verity(&self) -> bool {
        self.secureboot_handlers() && std::env::var_os("pv_verityoff").is_none()
    }
    pub fn wdt_mode(&self) -> WdtMode {
        match self.text(Key::PV_WDT_MODE) {
            "disabled" => WdtMode::Disabled,
            "startup" => WdtMode::Startup,
            "always" => WdtMode::Always,
            _ => WdtMode::Shutdown,
        }
    }
    pub fn wdt_timeout(&self) -> u64 {
        self.get_int(Key::PV_WDT_TIMEOUT)
    }

    pub fn storage_device(&self) -> Option<&str> {
        self.get_str(Key::PV_STORAGE_DEVICE)
    }
    pub fn storage_fstype(&self) -> Option<&str> {
        self.get_str(Key::PV_STORAGE_FSTYPE)
    }
    /// Unset in code (every shipped config says `/storage`); `/storage` when unset.
    pub fn storage_mntpoint(&self) -> &str {
        self.get_str(Key::PV_STORAGE_MNTPOINT).unwrap_or("/storage")
    }
    pub fn storage_mnttype(&self) -> Option<&str> {
        self.get_str(Key::PV_STORAGE_MNTTYPE)
    }
    pub fn storage_wait(&self) -> u64 {
        self.get_int(Key::PV_STORAGE_WAIT)
    }
    pub fn storage_logtempsize(&self) -> Option<&str> {
        self.get_str(Key::PV_STORAGE_LOGTEMPSIZE)
    }
    pub fn storage_gc_reserved(&self) -> u8 {
        u8::try_from(self.get_int(Key::PV_STORAGE_GC_RESERVED)).unwrap_or(100)
    }
    pub fn storage_gc_threshold(&self) -> u8 {
        u8::try_from(self.get_int(Key::PV_STORAGE_GC_THRESHOLD)).unwrap_or(100)
    }
    pub fn storage_gc_threshold_defertime(&self) -> u64 {
        self.get_int(Key::PV_STORAGE_GC_THRESHOLD_DEFERTIME)
    }
    pub fn storage_gc_keep_factory(&self) -> bool {
        self.get_bool(Key::PV_STORAGE_GC_KEEP_FACTORY)
    }

    pub fn system_rundir(&self) -> &str {
        self.text(Key::PV_SYSTEM_RUNDIR)
    }
    pub fn system_confdir(&self) -> &str {
        self.text(Key::PV_SYSTEM_CONFDIR)
    }
    pub fn system_mediadir(&self) -> &str {
        self.text(Key::PV_SYSTEM_MEDIADIR)
    }
    pub fn system_disksdir(&self) -> &str {
        self.text(Key::PV_SYSTEM_DISKSDIR)
    }
    pub fn system_libdir(&self) -> &str {
        self.text(Key::PV_SYSTEM_LIBDIR)
    }
    /// Seconds one system hook may run (`update::hooks::Hooks::with_timeout`).
    pub fn system_hook_timeout(&self) -> u64 {
        self.get_int(Key::PV_SYSTEM_HOOK_TIMEOUT)
    }
    pub fn system_etcdir(&self) -> &str {
        self.text(Key::PV_SYSTEM_ETCDIR)
    }
    pub fn system_usrdir(&self) -> &str {
        self.text(Key::PV_SYSTEM_USRDIR)
    }
    /// `PV_SYSTEM_ETCPANTAVISORDIR`, or `<PV_SYSTEM_ETCDIR>/pantavisor` while it is not set, so
    /// relocating the etc dir relocates policies too.
    pub fn etc_pantavisor_dir(&self) -> Cow<'_, str> {
        let k = Key::PV_SYSTEM_ETCPANTAVISORDIR;
        if self.level_of(k) != Level::Default {
            return Cow::Borrowed(self.text(k));
        }
        Cow::Owned(format!(
            "{}/pantavisor",
            self.system_etcdir().trim_end_matches('/')
        ))
    }
    pub fn disk_voldir(&self) -> &str {
        self.text(Key::PV_DISK_VOLDIR)
    }
    pub fn disk_exportsdir(&self) -> &str {
        self.text(Key::PV_DISK_EXPORTSDIR)
    }
    pub fn disk_writabledir(&self) -> &str {
        self.text(Key::PV_DISK_WRITABLEDIR)
    }
    /// Rebased onto the storage mount point (see `storage_path`).
    pub fn cache_usrmetadir(&self) -> Cow<'_, str> {
        self.storage_path(Key::PV_CACHE_USRMETADIR)
    }
    /// Rebased onto the storage mount point (see `storage_path`).
    pub fn cache_devmetadir(&self) -> Cow<'_, str> {
        self.storage_path(Key::PV_CACHE_DEVMETADIR)
    }
    /// Rebased onto the storage mount point (see `storage_path`).
    pub fn log_dir(&self) -> Cow<'_, str> {
        self.storage_path(Key::PV_LOG_DIR)
    }
    /// Rebased onto the storage mount point (see `storage_path`).
    pub fn dropbear_cache_dir(&self) -> Cow<'_, str> {
        self.storage_path(Key::PV_DROPBEAR_CACHE_DIR)
    }

    /// 0 FATAL .. 5 TRACE; larger numbers saturate.
    pub fn log_level(&self) -> u8 {
        u8::try_from(self.get_int(Key::PV_LOG_LEVEL)).unwrap_or(u8::MAX)
    }
    /// Upstream's mask (see `log_outputs_mask`); the names are `get(PV_LOG_SERVER_OUTPUTS)`.
    pub fn log_server_outputs(&self) -> u16 {
        log_outputs_mask(self.text(Key::PV_LOG_SERVER_OUTPUTS))
    }
    pub fn log_dir_maxsize(&self) -> SizeLimit {
        let v = self.text(Key::PV_LOG_DIR_MAXSIZE);
        match v.strip_suffix('%') {
            Some(p) => SizeLimit::Percent(p.parse().unwrap_or(0)),
            None => SizeLimit::Bytes(v.parse().unwrap_or(0)),
        }
    }
    pub fn log_timestamp(&self) -> LogTimestamp {
        match self.text(Key::PV_LOG_TIMESTAMP) {
            "absolute" => LogTimestamp::Absolute,
            _ => LogTimestamp::Relative,
        }
    }
    pub fn log_capture(&self) -> bool {
        self.get_bool(Key::PV_LOG_CAPTURE)
    }
    pub fn log_push(&self) -> bool {
        self.get_bool(Key::PV_LOG_PUSH)
    }

    pub fn updater_commit_delay(&self) -> u64 {
        self.get_int(Key::PV_UPDATER_COMMIT_DELAY)
    }
    pub fn updater_goals_timeout(&self) -> u64 {
        self.get_int(Key::PV_UPDATER_GOALS_TIMEOUT)
    }
    pub fn updater_use_tmp_objects(&self) -> bool {
        self.get_bool(Key::PV_UPDATER_USE_TMP_OBJECTS)
    }
    pub fn revision_retries(&self) -> u64 {
        self.get_int(Key::PV_REVISION_RETRIES)
    }

    pub fn control_remote(&self) -> bool {
        self.get_bool(Key::PV_CONTROL_REMOTE)
    }
    pub fn control_remote_always(&self) -> bool {
        self.get_bool(Key::PV_CONTROL_REMOTE_ALWAYS)
    }
    pub fn debug_shell(&self) -> bool {
        self.get_bool(Key::PV_DEBUG_SHELL)
    }
    pub fn debug_ssh(&self) -> bool {
        self.get_bool(Key::PV_DEBUG_SSH)
    }
    pub fn oem_name(&self) -> Option<&str> {
        self.get_str(Key::PV_OEM_NAME)
    }
    pub fn policy(&self) -> Option<&str> {
        self.get_str(Key::PV_POLICY)
    }

    pub fn net_brdev(&self) -> &str {
        self.text(Key::PV_NET_BRDEV)
    }
    pub fn net_braddress4(&self) -> &str {
        self.text(Key::PV_NET_BRADDRESS4)
    }
    pub fn net_brmask4(&self) -> &str {
        self.text(Key::PV_NET_BRMASK4)
    }

    pub fn creds_host(&self) -> &str {
        self.text(Key::PH_CREDS_HOST)
    }
    pub fn creds_port(&self) -> u16 {
        u16::try_from(self.get_int(Key::PH_CREDS_PORT)).unwrap_or(443)
    }
    /// `PH_CREDS_PLAIN_HTTP`: talk to the Hub without TLS (a lab only; `hub::tls::connect`).
    pub fn creds_plain_http(&self) -> bool {
        self.get_bool(Key::PH_CREDS_PLAIN_HTTP)
    }
    pub fn creds_type(&self) -> &str {
        self.text(Key::PH_CREDS_TYPE)
    }
    pub fn creds_id(&self) -> Option<&str> {
        self.get_str(Key::PH_CREDS_ID)
    }
    pub fn creds_prn(&self) -> Option<&str> {
        self.get_str(Key::PH_CREDS_PRN)
    }
    pub fn creds_secret(&self) -> Option<&str> {
        self.get_str(Key::PH_CREDS_SECRET)
    }
    pub fn factory_autotok(&self) -> Option<&str> {
        self.get_str(Key::PH_FACTORY_AUTOTOK)
    }
    pub fn hub_updater_interval(&self) -> u64 {
        self.get_int(Key::PH_UPDATER_INTERVAL)
    }
    pub fn hub_network_timeout(&self) -> u64 {
        self.get_int(Key::PH_UPDATER_NETWORK_TIMEOUT)
    }
}

/// Fuzz entry: arbitrary bytes through every parser and reader; must never panic.
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut c = Config::new();
    c.apply_text(Level::PvConfFile, "fuzz", &text);
    c.apply_cmdline(&text);
    c.apply_text(Level::UserMeta, "fuzz", &text);
    let _ = c.set(Level::Command, &text, &text);
    let _ = c.unset(Level::UserMeta, &text);
    let _ = (parse_size(&text), parse_duration(&text), parse_bool(&text));
    let _ = (
        c.entries().count(),
        c.alias_entries().count(),
        c.sysctls().count(),
    );
    let _ = (
        c.policy_path(),
        c.oem_config_file(),
        c.log_dir(),
        c.etc_pantavisor_dir(),
    );
    let _ = (
        c.log_dir_maxsize(),
        c.log_level(),
        c.init_mode(),
        c.take_warnings(),
    );
}
