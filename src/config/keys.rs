//! The key table: every configuration key Pantavisor knows, its value type, its *code* default
//! (upstream's code defaults, not the shipped config's) and the levels it may be set from.
//!
//! Level masks follow upstream `config.c` (`PV`, `PH`, `OEM`, `RUN` groups) and, for keys newer
//! than the stored `config.c`, the Levels table of upstream `docs/reference/pantavisor-configuration.md`.
//! Deliberate differences: the command level is only open to the keys the doc table marks
//! (`PV_DEBUG_SSH` via ENABLE/DISABLE_SSH), not to every `RUN` key; the kernel
//! command line is one level for PV and PH keys (the prefix used only changes the level's name).
use super::Level;

/// How a value is checked and normalised when it is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Any text. Empty is refused when the key has a default (a path set to "" breaks the device).
    Str,
    /// A name used inside a path (`PV_POLICY`, `PV_OEM_NAME`): no `/`, not `.` or `..`.
    Name,
    /// `0/1/true/false/yes/no/on/off`, stored as `1`/`0`.
    Bool,
    /// Decimal `0..=i32::MAX` (upstream keeps a C `int`).
    Int,
    /// `0..=100`.
    Percent,
    /// TCP port `1..=65535`.
    Port,
    /// Bytes with optional `B/K/KB/M/MB/G/GB/T/TB` (powers of 1024), stored as bytes.
    Size,
    /// A size as above, or `N%`.
    SizeOrPercent,
    /// Seconds: bare, or `s/sec/m/min/h/d`, stored as seconds (at most u32::MAX).
    Duration,
    /// One of the listed names (case-insensitive), stored as written here. The position is the
    /// number upstream's `/config` view shows.
    Enum(&'static [&'static str]),
    /// Comma list of log server outputs (`LOG_OUTPUTS`).
    Outputs,
}

/// One row of the key table.
#[derive(Debug)]
pub struct KeyDef {
    pub name: &'static str,
    pub ty: Type,
    pub default: Option<&'static str>,
    /// Bit `1 << Level as u16` per allowed level.
    pub allowed: u16,
}

const fn bit(l: Level) -> u16 {
    1 << (l as u16)
}
/// Upstream `PV`: pantavisor.config, policy, kernel cmdline, environment.
const PV: u16 = bit(Level::PvConfFile) | bit(Level::Policy) | bit(Level::Cmdline) | bit(Level::Env);
/// Upstream `PH`: pantahub.config, policy, kernel cmdline, environment.
const PH: u16 = bit(Level::PhConfFile) | bit(Level::Policy) | bit(Level::Cmdline) | bit(Level::Env);
const OEM: u16 = bit(Level::Oem);
const META: u16 = bit(Level::UserMeta);
const CMD: u16 = bit(Level::Command);
/// `PV_SYSCTL_*` keys (upstream `LEVEL_SYSCTL = PV | OEM`).
pub const SYSCTL_ALLOWED: u16 = PV | OEM;

/// Every bootloader type upstream names, in its order (the number `/config` shows is the
/// position). Only the first three have a backend here: see [`UNSUPPORTED`].
pub const BOOTLOADERS: &[&str] = &["uboot", "uboot-pvk", "grub", "rpiab", "uboot-ab"];
/// Values upstream takes but this build has no code for (no Raspberry Pi tryboot or U-Boot
/// A/B fit backend): refused when the config is read, like a bad value, so the level below
/// keeps its value and the device still boots with a bootloader it can drive.
pub const UNSUPPORTED: &[(Key, &[&str])] = &[(Key::PV_BOOTLOADER_TYPE, &["rpiab", "uboot-ab"])];

/// The values of `k` this build refuses, if any.
pub fn unsupported(k: Key) -> &'static [&'static str] {
    UNSUPPORTED
        .iter()
        .find(|(u, _)| *u == k)
        .map_or(&[], |(_, v)| *v)
}

/// The values of an enum key this build takes ("uboot, uboot-pvk, grub").
pub fn supported_names(k: Key) -> Option<String> {
    let Type::Enum(names) = k.def().ty else {
        return None;
    };
    let refused = unsupported(k);
    let ok: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !refused.contains(n))
        .collect();
    Some(ok.join(", "))
}
pub const INIT_MODES: &[&str] = &["embedded", "standalone", "appengine"];
pub const SECUREBOOT_MODES: &[&str] = &["disabled", "audit", "lenient", "strict"];
pub const WDT_MODES: &[&str] = &["disabled", "shutdown", "startup", "always"];
pub const LOG_TIMESTAMPS: &[&str] = &["relative", "absolute"];
/// Log server outputs; bit `1 << position` in upstream's mask, `update` (bit 7) always added.
pub const LOG_OUTPUTS: &[&str] = &[
    "nullsink",
    "singlefile",
    "filetree",
    "stdout",
    "stdout.containers",
    "stdout.pantavisor",
    "stdout_direct",
];

// One list generates both the `Key` enum and its table, so they cannot drift apart; `def()` is
// a match (no index), each arm a promoted constant.
macro_rules! key_table {
    ($($id:ident: $ty:expr, $def:expr, $allowed:expr;)*) => {
        /// A configuration key, named exactly as Pantavisor names it.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Key {
            $($id,)*
        }

        impl Key {
            /// Every key, in table order: upstream's `config.c` order, which `/config2` lists.
            pub const ALL: &'static [Key] = &[$(Key::$id,)*];

            pub fn def(self) -> &'static KeyDef {
                match self {
                    $(Key::$id => {
                        const D: KeyDef = KeyDef {
                            name: stringify!($id),
                            ty: $ty,
                            default: $def,
                            allowed: $allowed,
                        };
                        &D
                    })*
                }
            }
        }
    };
}

use Type::*;
const NONE: Option<&str> = None;

key_table! {
    PH_CREDS_HOST: Str, Some("api.pantahub.com"), PH | OEM;
    PH_CREDS_ID: Str, NONE, PH | OEM;
    // Not upstream's: plain HTTP to the Hub (no TLS), for a lab only (README "Configuration").
    PH_CREDS_PLAIN_HTTP: Bool, Some("0"), PH | OEM;
    PH_CREDS_PORT: Port, Some("443"), PH | OEM;
    PH_CREDS_PROXY_HOST: Str, NONE, PH | OEM;
    PH_CREDS_PROXY_NOPROXYCONNECT: Int, Some("0"), PH | OEM;
    PH_CREDS_PROXY_PORT: Port, Some("3218"), PH | OEM;
    PH_CREDS_PRN: Str, NONE, PH | OEM;
    PH_CREDS_SECRET: Str, NONE, PH | OEM;
    PH_CREDS_TYPE: Str, Some("builtin"), PH | OEM;
    PH_FACTORY_AUTOTOK: Str, NONE, PH | OEM;
    PH_LIBEVENT_HTTP_TIMEOUT: Duration, Some("60"), PH | OEM | META;
    PH_LIBEVENT_HTTP_RETRIES: Int, Some("1"), PH | OEM | META;
    PH_METADATA_DEVMETA_INTERVAL: Duration, Some("10"), PH | OEM | META;
    PH_METADATA_USRMETA_INTERVAL: Duration, Some("5"), PH | OEM | META;
    PH_ONLINE_REQUEST_THRESHOLD: Int, Some("0"), PH | OEM | META;
    // 7.2 and 5.9 say 5; the stored upstream config.c says 60. The spec wins here.
    PH_UPDATER_INTERVAL: Duration, Some("5"), PH | OEM | META;
    PH_UPDATER_NETWORK_TIMEOUT: Duration, Some("120"), PH | OEM | META;
    PH_UPDATER_TRANSFER_MAX_COUNT: Int, Some("5"), PH | OEM | META;
    PV_BOOTLOADER_FITCONFIG: Str, NONE, PV;
    // unset as upstream shows it (`(null)`); the MTD code falls back to `pv-env`
    PV_BOOTLOADER_MTD_ENV: Str, NONE, PV;
    PV_BOOTLOADER_MTD_ONLY: Bool, Some("0"), PV;
    PV_BOOTLOADER_TYPE: Enum(BOOTLOADERS), Some("uboot"), PV;
    PV_BOOTLOADER_UBOOTAB_A_NAME: Str, Some("fitA"), PV;
    PV_BOOTLOADER_UBOOTAB_B_NAME: Str, Some("fitB"), PV;
    PV_BOOTLOADER_UBOOTAB_ENV_NAME: Str, NONE, PV;
    PV_BOOTLOADER_UBOOTAB_ENV_BAK_NAME: Str, NONE, PV;
    PV_BOOTLOADER_UBOOTAB_ENV_OFFSET: Int, Some("0"), PV;
    PV_BOOTLOADER_UBOOTAB_ENV_SIZE: Size, Some("0"), PV;
    PV_CACHE_DEVMETADIR: Str, Some("/storage/cache/devmeta"), PV;
    PV_CACHE_USRMETADIR: Str, Some("/storage/cache/meta"), PV;
    PV_CONTROL_REMOTE: Bool, Some("1"), PV | OEM;
    PV_CONTROL_REMOTE_ALWAYS: Bool, Some("0"), PV | OEM;
    PV_DEBUG_SHELL: Bool, Some("1"), PV;
    PV_DEBUG_SHELL_AUTOLOGIN: Bool, Some("0"), PV;
    PV_DEBUG_SHELL_TIMEOUT: Duration, Some("60"), PV;
    PV_DEBUG_SSH: Bool, Some("1"), PV | OEM | META | CMD;
    PV_DEBUG_SSH_AUTHORIZED_KEYS: Str, NONE, PV | OEM | META;
    PV_DISK_EXPORTSDIR: Str, Some("/exports"), PV;
    PV_DISK_VOLDIR: Str, Some("/volumes"), PV;
    PV_DISK_WRITABLEDIR: Str, Some("/writable"), PV;
    PV_DROPBEAR_CACHE_DIR: Str, Some("/storage/cache/dropbear"), PV;
    PV_LIBEVENT_DEBUG_MODE: Bool, Some("0"), PV | OEM | META;
    PV_LIBTHTTP_CERTSDIR: Str, Some("/certs"), PV;
    PV_LIBTHTTP_LOG_LEVEL: Int, Some("3"), PV | OEM | META;
    PV_LOG_AUTO_DEVLOG: Bool, Some("1"), PV | OEM;
    PV_LOG_CAPTURE: Bool, Some("1"), PV | OEM;
    PV_LOG_CAPTURE_DMESG: Bool, Some("1"), PV | OEM;
    PV_LOG_BUF_NITEMS: Int, Some("128"), PV | OEM;
    PV_LOG_DIR: Str, Some("/storage/logs/"), PV;
    PV_LOG_DIR_MAXSIZE: SizeOrPercent, Some("0"), PV | OEM | META;
    PV_LOG_FILETREE_TIMESTAMP_FORMAT: Str, NONE, PV | OEM | META;
    PV_LOG_HYSTERESIS_FACTOR: Int, Some("4"), PV | OEM | META;
    PV_LOG_LEVEL: Int, Some("0"), PV | OEM | META;
    PV_LOG_LOGGERS: Bool, Some("1"), PV | OEM;
    PV_LOG_PUSH: Bool, Some("1"), PV | OEM | META;
    PV_LOG_ROTATE_FACTOR: Int, Some("5"), PV | OEM | META;
    PV_LOG_SERVER_OUTPUTS: Outputs, Some("filetree"), PV | OEM | META;
    PV_LOG_SINGLEFILE_TIMESTAMP_FORMAT: Str, NONE, PV | OEM | META;
    PV_LOG_STDOUT_TIMESTAMP_FORMAT: Str, NONE, PV | OEM | META;
    // Not in the stored upstream table; masked like the other log format keys.
    PV_LOG_TIMESTAMP: Enum(LOG_TIMESTAMPS), Some("relative"), PV | OEM | META;
    PV_LXC_LOG_LEVEL: Int, Some("2"), PV | OEM;
    PV_NET_BRADDRESS4: Str, Some("10.0.3.1"), PV | OEM;
    PV_NET_BRDEV: Str, Some("lxcbr0"), PV | OEM;
    PV_NET_BRMASK4: Str, Some("255.255.255.0"), PV | OEM;
    PV_OEM_NAME: Name, NONE, PV;
    // Never from a policy file: the policy is chosen by this key.
    PV_POLICY: Name, NONE, bit(Level::PvConfFile) | bit(Level::Cmdline) | bit(Level::Env);
    // Optional power management; only the mode is known here (upstream's code defaults).
    PV_POWER_MODE: Str, Some("locks"), PV;
    PV_REVISION_RETRIES: Int, Some("10"), PV | OEM | META;
    PV_SECUREBOOT_CHECKSUM: Bool, Some("1"), PV;
    PV_SECUREBOOT_HANDLERS: Bool, Some("1"), PV;
    PV_SECUREBOOT_MODE: Enum(SECUREBOOT_MODES), Some("lenient"), PV;
    PV_SECUREBOOT_OEM_TRUSTSTORE: Str, Some("ca-oem-certificates"), PV;
    PV_SECUREBOOT_TRUSTSTORE: Str, Some("ca-certificates"), PV;
    PV_STORAGE_DEVICE: Str, NONE, PV;
    PV_STORAGE_FSTYPE: Str, NONE, PV;
    PV_STORAGE_GC_KEEP_FACTORY: Bool, Some("0"), PV | OEM | META;
    PV_STORAGE_GC_RESERVED: Percent, Some("5"), PV | OEM | META;
    PV_STORAGE_GC_THRESHOLD_DEFERTIME: Duration, Some("600"), PV | OEM | META;
    PV_STORAGE_GC_THRESHOLD: Percent, Some("0"), PV | OEM | META;
    // Passed as is to the tmpfs `size=` option (which also takes `%`).
    PV_STORAGE_LOGTEMPSIZE: Str, NONE, PV;
    PV_STORAGE_MNTPOINT: Str, NONE, PV;
    PV_STORAGE_MNTTYPE: Str, NONE, PV;
    PV_STORAGE_FIRMWARE_VOL: Bool, Some("0"), PV;
    PV_STORAGE_PHCONFIG_VOL: Bool, Some("0"), PV;
    PV_STORAGE_WAIT: Duration, Some("5"), PV;
    PV_SYSTEM_APPARMOR_PROFILES: Str, NONE, PV;
    PV_SYSTEM_CONFDIR: Str, Some("/configs"), PV;
    PV_SYSTEM_DRIVERS_LOAD_EARLY_AUTO: Bool, Some("0"), PV;
    PV_SYSTEM_ETCDIR: Str, Some("/etc"), PV;
    PV_SYSTEM_ETCPANTAVISORDIR: Str, Some("/etc/pantavisor"), PV;
    // Not upstream (its hooks are waited for without a limit): seconds one system hook may
    // run before it is killed and fails its operation.
    PV_SYSTEM_HOOK_TIMEOUT: Duration, Some("60"), PV;
    PV_SYSTEM_INIT_MODE: Enum(INIT_MODES), Some("embedded"), PV;
    PV_SYSTEM_LIBDIR: Str, Some("/lib"), PV;
    PV_SYSTEM_MEDIADIR: Str, Some("/media"), PV;
    PV_SYSTEM_MOUNT_SECURITYFS: Bool, Some("0"), PV;
    PV_SYSTEM_RUNDIR: Str, Some("/pv"), PV;
    PV_SYSTEM_DISKSDIR: Str, Some("/run/pantavisor/disks"), PV;
    PV_SYSTEM_USRDIR: Str, Some("/usr"), PV;
    PV_UPDATER_COMMIT_DELAY: Duration, Some("25"), PV | OEM | META;
    PV_UPDATER_GOALS_TIMEOUT: Duration, Some("120"), PV | OEM | META;
    PV_UPDATER_USE_TMP_OBJECTS: Bool, Some("0"), PV | OEM | META;
    PV_VOLMOUNT_DM_EXTRA_ARGS: Str, NONE, PV | OEM;
    PV_WDT_MODE: Enum(WDT_MODES), Some("shutdown"), PV;
    PV_WDT_TIMEOUT: Duration, Some("15"), PV;
    PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED: Bool, Some("1"), PV | OEM;
}

/// Legacy dotted names (upstream `aliases[]`), translated with a warning. The first alias of a
/// key is the one the `/config` view shows.
pub static ALIASES: &[(&str, Key)] = &[
    ("creds.host", Key::PH_CREDS_HOST),
    ("creds.id", Key::PH_CREDS_ID),
    ("creds.port", Key::PH_CREDS_PORT),
    ("creds.proxy.host", Key::PH_CREDS_PROXY_HOST),
    (
        "creds.proxy.noproxyconnect",
        Key::PH_CREDS_PROXY_NOPROXYCONNECT,
    ),
    ("creds.proxy.port", Key::PH_CREDS_PROXY_PORT),
    ("creds.prn", Key::PH_CREDS_PRN),
    ("creds.secret", Key::PH_CREDS_SECRET),
    ("creds.type", Key::PH_CREDS_TYPE),
    ("factory.autotok", Key::PH_FACTORY_AUTOTOK),
    (
        "metadata.devmeta.interval",
        Key::PH_METADATA_DEVMETA_INTERVAL,
    ),
    (
        "metadata.usrmeta.interval",
        Key::PH_METADATA_USRMETA_INTERVAL,
    ),
    ("updater.interval", Key::PH_UPDATER_INTERVAL),
    ("updater.network_timeout", Key::PH_UPDATER_NETWORK_TIMEOUT),
    ("bootloader.fitconfig", Key::PV_BOOTLOADER_FITCONFIG),
    ("bootloader.mtd_env", Key::PV_BOOTLOADER_MTD_ENV),
    ("bootloader.mtd_only", Key::PV_BOOTLOADER_MTD_ONLY),
    ("bootloader.type", Key::PV_BOOTLOADER_TYPE),
    ("cache.devmetadir", Key::PV_CACHE_DEVMETADIR),
    ("cache.usrmetadir", Key::PV_CACHE_USRMETADIR),
    ("control.remote", Key::PV_CONTROL_REMOTE),
    ("control.remote.always", Key::PV_CONTROL_REMOTE_ALWAYS),
    ("debug.shell", Key::PV_DEBUG_SHELL),
    ("debug.shell.autologin", Key::PV_DEBUG_SHELL_AUTOLOGIN),
    ("debug.ssh", Key::PV_DEBUG_SSH),
    (
        "debug.ssh_authorized_keys",
        Key::PV_DEBUG_SSH_AUTHORIZED_KEYS,
    ),
    ("disk.exportsdir", Key::PV_DISK_EXPORTSDIR),
    ("disk.voldir", Key::PV_DISK_VOLDIR),
    ("disk.writabledir", Key::PV_DISK_WRITABLEDIR),
    ("dropbear.cache.dir", Key::PV_DROPBEAR_CACHE_DIR),
    ("libthttp.certdir", Key::PV_LIBTHTTP_CERTSDIR),
    ("libthttp.log.level", Key::PV_LIBTHTTP_LOG_LEVEL),
    ("log.capture", Key::PV_LOG_CAPTURE),
    ("log.capture.dmesg", Key::PV_LOG_CAPTURE_DMESG),
    ("log.buf_nitems", Key::PV_LOG_BUF_NITEMS),
    ("log.dir", Key::PV_LOG_DIR),
    (
        "log.filetree.timestamp.format",
        Key::PV_LOG_FILETREE_TIMESTAMP_FORMAT,
    ),
    ("log.level", Key::PV_LOG_LEVEL),
    ("log.loggers", Key::PV_LOG_LOGGERS),
    ("log.push", Key::PV_LOG_PUSH),
    ("log.server.outputs", Key::PV_LOG_SERVER_OUTPUTS),
    (
        "log.singlefile.timestamp.format",
        Key::PV_LOG_SINGLEFILE_TIMESTAMP_FORMAT,
    ),
    (
        "log.stdout.timestamp.format",
        Key::PV_LOG_STDOUT_TIMESTAMP_FORMAT,
    ),
    ("lxc.log.level", Key::PV_LXC_LOG_LEVEL),
    ("net.braddress4", Key::PV_NET_BRADDRESS4),
    ("net.brdev", Key::PV_NET_BRDEV),
    ("net.brmask4", Key::PV_NET_BRMASK4),
    ("policy", Key::PV_POLICY),
    ("revision.retries", Key::PV_REVISION_RETRIES),
    ("secureboot.checksum", Key::PV_SECUREBOOT_CHECKSUM),
    ("secureboot.handlers", Key::PV_SECUREBOOT_HANDLERS),
    ("secureboot.mode", Key::PV_SECUREBOOT_MODE),
    ("secureboot.truststore", Key::PV_SECUREBOOT_TRUSTSTORE),
    ("storage.device", Key::PV_STORAGE_DEVICE),
    ("storage.fstype", Key::PV_STORAGE_FSTYPE),
    ("storage.gc.keep_factory", Key::PV_STORAGE_GC_KEEP_FACTORY),
    ("storage.gc.reserved", Key::PV_STORAGE_GC_RESERVED),
    (
        "storage.gc.threshold.defertime",
        Key::PV_STORAGE_GC_THRESHOLD_DEFERTIME,
    ),
    ("storage.gc.threshold", Key::PV_STORAGE_GC_THRESHOLD),
    ("storage.logtempsize", Key::PV_STORAGE_LOGTEMPSIZE),
    ("storage.mntpoint", Key::PV_STORAGE_MNTPOINT),
    ("storage.mnttype", Key::PV_STORAGE_MNTTYPE),
    ("storage.wait", Key::PV_STORAGE_WAIT),
    ("system.apparmor.profiles", Key::PV_SYSTEM_APPARMOR_PROFILES),
    ("system.confdir", Key::PV_SYSTEM_CONFDIR),
    (
        "system.drivers.load_early.auto",
        Key::PV_SYSTEM_DRIVERS_LOAD_EARLY_AUTO,
    ),
    ("system.etcdir", Key::PV_SYSTEM_ETCDIR),
    ("system.init.mode", Key::PV_SYSTEM_INIT_MODE),
    ("system.libdir", Key::PV_SYSTEM_LIBDIR),
    ("system.mediadir", Key::PV_SYSTEM_MEDIADIR),
    ("system.mount.securityfs", Key::PV_SYSTEM_MOUNT_SECURITYFS),
    ("system.rundir", Key::PV_SYSTEM_RUNDIR),
    ("system.usrdir", Key::PV_SYSTEM_USRDIR),
    ("updater.commit.delay", Key::PV_UPDATER_COMMIT_DELAY),
    ("updater.goals.timeout", Key::PV_UPDATER_GOALS_TIMEOUT),
    ("updater.use_tmp_objects", Key::PV_UPDATER_USE_TMP_OBJECTS),
    ("wdt.mode", Key::PV_WDT_MODE),
    ("wdt.timeout", Key::PV_WDT_TIMEOUT),
    // Named in upstream's xconnect docs as the pantavisor.config spelling.
    (
        "xconnect.dbus.systembus.enabled",
        Key::PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED,
    ),
    // Other compatible spellings upstream still accepts.
    ("meta.cache.dir", Key::PV_CACHE_USRMETADIR),
    ("pantahub.log.push", Key::PV_LOG_PUSH),
    ("updater.keep_factory", Key::PV_STORAGE_GC_KEEP_FACTORY),
    // Upstream's table spelled this key with a typo for a while.
    (
        "PV_SECUREBOOT_OEM_TRUSTORE",
        Key::PV_SECUREBOOT_OEM_TRUSTSTORE,
    ),
];
