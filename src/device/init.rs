//! INIT, and the end of PID 1: the command line, early mounts, configuration, the storage,
//! the boot env and the resume decision of the booted revision, then the device (RUN) until
//! it reboots or powers off, and the orderly end.
//!
//! PID 1 never exits: an exit of PID 1 is a kernel panic, and a board without `panic=` hangs
//! there for good. So every fatal error of INIT or RUN is one [`Fatal`], logged as one line
//! `FATAL <step>: <reason>` (on the console, and in pantavisor.log once the log tree is up),
//! followed by a pause of [`FATAL_PAUSE`] so a person at the console can read it, then the
//! orderly reboot: sync, the storage unmounted in embedded mode, reboot(2). A try boot that
//! ends so falls back through the bootloader like any failed update. A plain process (not PID
//! 1: standalone mode, the tests) exits with status 1 right after the same line: nobody reads
//! a console there, and the harness sees the line on stderr.
//!
//! The steps, as they appear in the line:
//! - `args`: an argument pantavisor does not take (a plain process exits 2 with the usage
//!   instead: that is a caller's mistake, not a device's)
//! - `config`: `--config FILE` cannot be read; `PV_SYSTEM_INIT_MODE=appengine`
//! - `storage`: `PV_STORAGE_DEVICE` not found or not mountable; the storage layout cannot be made
//! - `bootloader`: no boot-env backend for `PV_BOOTLOADER_TYPE`
//! - `boot-env`: no `pv_rev` on the kernel command line nor in the boot env
//! - `update`: the booted revision cannot be resumed (boot env or progress I/O, a committed
//!   revision whose state does not load or whose trail does not verify)
//! - `device`: the device cannot start (its event loop, pv-ctrl)
//! - `reboot`: reboot(2) itself failed; PID 1 then waits forever, there is nothing left to do
use crate::bootloader;
use crate::config::{Config, InitMode, Key, Level, LogTimestamp, SizeLimit};
use crate::device::Device;
use crate::init::embedded;
use crate::logs;
use crate::pvlog;
use crate::storage::{self, fs::RealFs, trail::Check, Storage};
use crate::sys::{self, power::Power};
use crate::update::{self, Boot};
use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

pub const USAGE: &str = "usage: pantavisor [--config FILE] [--cmdline \"STRING\"]\n       pantavisor --version\n       pantavisor check-state [--trust DIR] [--secureboot MODE] [--oem-name NAME] FILE";

/// How long PID 1 leaves a FATAL line on the console before it reboots.
pub const FATAL_PAUSE: Duration = Duration::from_secs(5);

/// Exit status of a plain process (not PID 1) after a FATAL line.
pub const FATAL_EXIT: i32 = 1;

/// Exit status of a plain process given an argument it does not take.
pub const USAGE_EXIT: i32 = 2;

/// A fatal error of INIT or RUN: the step that failed and why. Ends in a reboot (PID 1) or
/// exit status 1 (a plain process), never in an exit of PID 1.
#[derive(Debug)]
pub enum Fatal {
    /// An argument pantavisor does not take.
    Args(String),
    /// `--config FILE` cannot be read.
    ConfigFile { path: String, err: io::Error },
    /// `PV_SYSTEM_INIT_MODE=appengine`: no such mode here.
    Appengine,
    /// `PV_STORAGE_DEVICE` not found in time, or not mountable.
    StorageMount { device: String, err: io::Error },
    /// The directories of the storage layout cannot be made.
    StorageLayout(storage::Error),
    /// No boot-env backend for `PV_BOOTLOADER_TYPE`.
    Bootloader(bootloader::Error),
    /// No `pv_rev` on the command line nor in the boot env (`env`: why the env gave none).
    NoRevision { env: Option<bootloader::Error> },
    /// The resume decision of the booted revision failed (a committed revision that does
    /// not load or verify, boot env or progress I/O).
    Boot(update::Error),
    /// The state of a revision the boot accepted does not load.
    State(update::Error),
    /// The device cannot start.
    Device(io::Error),
    /// reboot(2) failed.
    Reboot(io::Error),
}

impl Fatal {
    /// The `<step>` of the FATAL line.
    pub fn step(&self) -> &'static str {
        match self {
            Fatal::Args(_) => "args",
            Fatal::ConfigFile { .. } | Fatal::Appengine => "config",
            Fatal::StorageMount { .. } | Fatal::StorageLayout(_) => "storage",
            Fatal::Bootloader(_) => "bootloader",
            Fatal::NoRevision { .. } => "boot-env",
            Fatal::Boot(_) | Fatal::State(_) => "update",
            Fatal::Device(_) => "device",
            Fatal::Reboot(_) => "reboot",
        }
    }
}

impl fmt::Display for Fatal {
    /// The `<reason>` of the FATAL line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Args(a) => write!(f, "unexpected argument '{a}'"),
            Fatal::ConfigFile { path, err } => write!(f, "--config {path}: {err}"),
            Fatal::Appengine => write!(f, "PV_SYSTEM_INIT_MODE=appengine is not supported"),
            Fatal::StorageMount { device, err } => {
                write!(f, "PV_STORAGE_DEVICE {device}: {err}")
            }
            Fatal::StorageLayout(e) => write!(f, "layout: {e}"),
            Fatal::Bootloader(e) => write!(f, "{e}"),
            Fatal::NoRevision { env: None } => {
                write!(f, "no pv_rev on the command line nor in the boot env")
            }
            Fatal::NoRevision { env: Some(e) } => {
                write!(f, "no pv_rev on the command line, and {e}")
            }
            Fatal::Boot(e) | Fatal::State(e) => write!(f, "{e}"),
            Fatal::Device(e) => write!(f, "event loop: {e}"),
            Fatal::Reboot(e) => write!(f, "reboot(2): {e}"),
        }
    }
}

/// The one FATAL line. A FATAL record is never filtered by `PV_LOG_LEVEL`.
fn log_fatal(f: &Fatal) {
    pvlog!(Fatal, "init", "FATAL {}: {f}", f.step());
}

/// `--config`, `--cmdline` (interfaces.md "Command line").
#[derive(Debug, Default)]
struct Args {
    config: Option<String>,
    cmdline: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, Fatal> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--config", Some(v)) => {
                out.config = Some(v.clone());
                it.next();
            }
            ("--cmdline", Some(v)) => {
                out.cmdline = Some(v.clone());
                it.next();
            }
            _ => return Err(Fatal::Args(a.clone())),
        }
    }
    Ok(out)
}

/// The value of `key=` in a kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Runs the device: INIT, then RUN until it must reboot or power off. Ends as interfaces.md
/// fixes: reboot(2) as PID 1 (this never returns then), else exit status 129 (reboot), 130
/// (power off), 1 (FATAL) or 2 (an argument it does not take).
pub fn run(args: &[String]) -> i32 {
    let pid1 = sys::event::getpid() == 1;
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(f) if !pid1 => {
            eprintln!("pantavisor: {f}\n{USAGE}");
            return USAGE_EXIT;
        }
        Err(f) => return fatal(&f, None),
    };
    // The storage to unmount at the end (embedded mode), set once INIT has mounted it.
    let mut storage = None;
    match init_and_run(args, pid1, &mut storage) {
        Ok(power) => end(power, storage.as_deref(), power.exit_code()),
        Err(f) => fatal(&f, storage.as_deref()),
    }
}

/// The FATAL path: the line, the pause for a console (PID 1 only), the orderly reboot.
fn fatal(f: &Fatal, storage: Option<&str>) -> i32 {
    log_fatal(f);
    if sys::event::getpid() == 1 {
        std::thread::sleep(FATAL_PAUSE);
    }
    end(Power::Reboot, storage, FATAL_EXIT)
}

fn init_and_run(args: Args, pid1: bool, storage: &mut Option<String>) -> Result<Power, Fatal> {
    // Blocked from the start, a signal sent before the loop exists waits for its signalfd;
    // unblocked, PID 1 would drop it (an init ignores signals it has no handler for).
    if let Err(e) = sys::event::block_signals(&crate::event_loop::SIGNALS) {
        pvlog!(Error, "init", "block signals: {e}");
    }
    // The real PID 1 starts with nothing mounted: /proc (for the command line) comes first.
    if pid1 && !Path::new("/proc/self").exists() {
        embedded::early_mounts();
    }
    let config_text = match &args.config {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(err) => {
                return Err(Fatal::ConfigFile {
                    path: p.clone(),
                    err,
                })
            }
        },
        None => std::fs::read_to_string("/etc/pantavisor.config").ok(),
    };
    let cmdline = match args.cmdline {
        Some(c) => c,
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    };
    let mut config = Config::load(config_text.as_deref(), &cmdline, std::env::vars());
    if let Some(policy) = config.policy_path() {
        if let Ok(text) = std::fs::read_to_string(&policy) {
            config.apply_text(Level::Policy, &policy.to_string_lossy(), &text);
        }
    }
    logs::set_level(logs::Level::from_number(config.log_level() as u64));
    let root = config.storage_mntpoint().to_string();
    match config.init_mode() {
        InitMode::Standalone => {}
        InitMode::Embedded => {
            if pid1 {
                embedded::early_mounts();
                if embedded::root_is_initramfs() {
                    if let Err(e) = embedded::reroot() {
                        pvlog!(
                            Error,
                            "init",
                            "re-root off the initramfs: {e} (containers fall back to chroot)"
                        );
                    }
                }
            }
            let n = embedded::load_early_modules(Path::new(embedded::EARLY_MODULES_DIR));
            pvlog!(Info, "init", "{n} early kernel modules loaded");
            if let Some(dev) = config.storage_device() {
                let wait = Duration::from_secs(config.storage_wait());
                embedded::mount_storage(dev, config.storage_fstype(), &root, wait).map_err(
                    |err| Fatal::StorageMount {
                        device: dev.to_string(),
                        err,
                    },
                )?;
            }
            *storage = Some(root.clone());
        }
        InitMode::Appengine => return Err(Fatal::Appengine),
    }
    let fs = RealFs;
    let st = Storage::new(&fs, &root);
    st.init_layout().map_err(Fatal::StorageLayout)?;
    // the Hub's level: PH_* keys the device keeps on its storage (absent until a Hub writes it).
    // Upstream reads it through <rundir>/phconfig once the BSP volumes are up; from
    // <storage>/config it is the same file, read here so every decision of INIT and the
    // device's start sees it as before. From the pv--phconfig volume it can only be read once
    // that is mounted (Device::mount_bsp).
    let ph = Path::new(&root).join("config/pantahub.config");
    if !config.get_bool(Key::PV_STORAGE_PHCONFIG_VOL) {
        if let Ok(text) = std::fs::read_to_string(&ph) {
            config.apply_text(Level::PhConfFile, "pantahub.config", &text);
        }
    }
    let bl = bootloader::for_type(
        config.get_str(Key::PV_BOOTLOADER_TYPE).unwrap_or("uboot"),
        Path::new(&root),
    )
    .map_err(Fatal::Bootloader)?;
    let booted = match cmdline_value(&cmdline, "pv_rev") {
        Some(r) => r.to_string(),
        None => match bl.read(&fs) {
            Ok(env) => env.rev.ok_or(Fatal::NoRevision { env: None })?,
            Err(e) => return Err(Fatal::NoRevision { env: Some(e) }),
        },
    };
    // upstream's pv_quickboot comes as an environment variable (the kernel hands init the
    // unknown command-line words); both are honoured
    let quick = std::env::var_os("pv_quickboot").is_some()
        || cmdline
            .split_whitespace()
            .any(|w| w.split('=').next() == Some("pv_quickboot"));
    let check = if config.secureboot_checksum() && !quick {
        Check::Boot {
            verity: config.verity(),
        }
    } else {
        pvlog!(Debug, "update", "state objects and JSONs checksum disabled");
        Check::Presence
    };
    let pvs = crate::pvs::Policy::of(&config);
    // the boot's checks (signatures, re-hash) go to the booted revision's log, as upstream's
    init_logs(&config, &booted);
    match update::boot(&st, bl.as_ref(), &booted, check, &pvs) {
        Ok(Boot::Rollback) => {
            pvlog!(
                Warn,
                "update",
                "revision {booted} failed, rebooting to fall back"
            );
            Ok(Power::Reboot)
        }
        Ok(Boot::Run { trying }) => {
            let state = update::load_state(&st, &booted).map_err(Fatal::State)?;
            state.log_warnings();
            apply_oem_config(&mut config, &st, &booted);
            // An update like this one is refused at admission; a booted one (the factory
            // revision) runs what it can, and says what it cannot.
            for r in state.unsupported() {
                pvlog!(Error, "state", "revision {booted}: {r}");
            }
            // as upstream, the exports folder is there from boot, whether a container exports
            let exports = config.disk_exportsdir();
            if let Err(e) = std::fs::create_dir_all(exports) {
                pvlog!(Warn, "init", "exports folder {exports}: {e}");
            }
            let device = Device::new(&mut config, &st, bl.as_ref(), &booted, state, trying)
                .map_err(Fatal::Device)?;
            Ok(device.run())
        }
        Err(e) => {
            // upstream: ERROR -> REBOOT; nothing else can make a broken committed revision
            // boot. The storage is up: the line goes to that revision's log too.
            Err(Fatal::Boot(e))
        }
    }
}

/// Logs to `<PV_LOG_DIR>/<rev>/pantavisor/pantavisor.log` (and the console) from here on.
fn init_logs(config: &Config, rev: &str) {
    let dir = config.log_dir().to_string();
    let _ = std::fs::create_dir_all(&dir);
    let mut lc = logs::LogConfig::new(&dir, rev);
    lc.outputs = logs::Outputs(config.log_server_outputs());
    lc.level = logs::Level::from_number(config.log_level() as u64);
    lc.timestamp = match config.log_timestamp() {
        LogTimestamp::Absolute => logs::Timestamp::Absolute,
        LogTimestamp::Relative => logs::Timestamp::Relative,
    };
    lc.max_size = match config.log_dir_maxsize() {
        SizeLimit::Bytes(b) => logs::MaxSize::Bytes(b),
        SizeLimit::Percent(p) => logs::MaxSize::Percent(p),
    };
    lc.rotate_factor = config.get_int(Key::PV_LOG_ROTATE_FACTOR);
    lc.hysteresis_factor = config.get_int(Key::PV_LOG_HYSTERESIS_FACTOR);
    lc.console = true;
    logs::init(lc);
}

/// The orderly end (interfaces.md "Ending"): containers are already stopped; sync, the
/// storage unmounted (embedded mode), then reboot(2) as PID 1 -- which never returns -- or
/// `exit_code` as a plain process.
fn end(p: Power, storage: Option<&str>, exit_code: i32) -> i32 {
    // the log archiver's last archive is written before the sync, and its files are closed
    // before the unmount; a stuck storage does not hold the reboot for long
    crate::logs::settle(2000);
    sys::power::sync();
    if let Some(mnt) = storage {
        embedded::unmount_storage(mnt);
    }
    match sys::power::reboot_if_pid1(p) {
        Ok(false) => exit_code,
        Ok(true) => wait_forever(),
        Err(e) => {
            log_fatal(&Fatal::Reboot(e));
            wait_forever()
        }
    }
}

/// PID 1 after reboot(2): the kernel ends it; it never returns.
fn wait_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The OEM level: `<PV_OEM_NAME>/<PV_POLICY or default>.config` of the revision being started,
/// read from its checked-out trail (a changed one is a reboot update, so boot time is when).
fn apply_oem_config(config: &mut Config, st: &Storage, rev: &str) {
    let (Some(file), Ok(trail)) = (config.oem_config_file(), st.trail_dir(rev)) else {
        return;
    };
    if let Ok(text) = std::fs::read_to_string(trail.join(&file)) {
        config.apply_text(Level::Oem, &file, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_a_short_word() {
        let io = || io::Error::from_raw_os_error(libc::ENOENT);
        let all = [
            Fatal::Args("-x".into()),
            Fatal::ConfigFile {
                path: "/c".into(),
                err: io(),
            },
            Fatal::Appengine,
            Fatal::StorageMount {
                device: "LABEL=x".into(),
                err: io(),
            },
            Fatal::Bootloader(bootloader::Error::Unsupported {
                kind: "rpiab".into(),
            }),
            Fatal::NoRevision { env: None },
            Fatal::Device(io()),
            Fatal::Reboot(io()),
        ];
        for f in &all {
            let step = f.step();
            assert!(
                !step.is_empty() && step.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{step}"
            );
            let reason = f.to_string();
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason}");
        }
        assert_eq!(
            Fatal::NoRevision { env: None }.to_string(),
            "no pv_rev on the command line nor in the boot env"
        );
    }

    #[test]
    fn args_and_cmdline() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let a = parse_args(&s(&["--config", "/c", "--cmdline", "pv_rev=1 x"])).unwrap();
        assert_eq!(
            (a.config.as_deref(), a.cmdline.as_deref()),
            (Some("/c"), Some("pv_rev=1 x"))
        );
        for bad in [&["--bogus"][..], &["--config"], &["--cmdline", "x", "y"]] {
            let e = parse_args(&s(bad)).unwrap_err();
            assert_eq!(e.step(), "args", "{bad:?}");
        }
        assert_eq!(
            cmdline_value("console=ttyS0 pv_rev=locals/a pv_try=b", "pv_rev"),
            Some("locals/a")
        );
        assert_eq!(cmdline_value("pv_revx=1 pv_try=2", "pv_rev"), None);
    }
}
