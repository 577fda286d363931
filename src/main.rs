//! argv[0] / subcommand dispatch only (interfaces.md "Command line").
use pantavisor::bootloader;
use pantavisor::config::{Config, InitMode, Key, Level, LogTimestamp, SizeLimit};
use pantavisor::device::Device;
use pantavisor::init::embedded;
use pantavisor::logs;
use pantavisor::pvlog;
use pantavisor::state::State;
use pantavisor::storage::{fs::RealFs, trail::Check, Storage};
use pantavisor::sys::{self, power::Power};
use pantavisor::update::{self, Boot};
use std::process::exit;

const USAGE: &str = "usage: pantavisor [--config FILE] [--cmdline \"STRING\"]\n       pantavisor --version\n       pantavisor check-state FILE";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("pantavisor");
    if argv0 == "pvcontrol" {
        exit(pvcontrol(args.get(1..).unwrap_or_default()));
    }
    let rest = args.get(1..).unwrap_or_default();
    let code = match rest.first().map(String::as_str) {
        Some("--version") => {
            println!("{}", version());
            0
        }
        Some("check-state") => check_state(rest.get(1..).unwrap_or_default()),
        Some("pvcontrol") => pvcontrol(rest.get(1..).unwrap_or_default()),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            0
        }
        _ => run(rest),
    };
    exit(code)
}

/// One line: version, target, enabled features.
fn version() -> String {
    let features: &[&str] = &[];
    format!(
        "pantavisor {} {}-{}-{} features: {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(target_env = "musl") {
            "musl"
        } else {
            "gnu"
        },
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(",")
        }
    )
}

/// `check-state FILE`: 0 valid (summary on stdout), 1 invalid (one line per error on
/// stderr), 2 usage or I/O error.
fn check_state(args: &[String]) -> i32 {
    let [file] = args else {
        eprintln!("usage: pantavisor check-state FILE");
        return 2;
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            return 2;
        }
    };
    match State::parse(&bytes) {
        Ok(state) => {
            for w in state.warnings() {
                eprintln!("{file}: warning: {w}");
            }
            println!("{file}: valid");
            println!("{}", state.summary());
            0
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{file}: {e}");
            }
            1
        }
    }
}

fn pvcontrol(args: &[String]) -> i32 {
    pantavisor::control::client::pvcontrol_main(args)
}

/// The value of `key=` in a kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Runs the device: boot env, resume decision, trail verification, then the containers until
/// it must reboot or power off. Ends as interfaces.md fixes: reboot(2) as PID 1, else exit
/// 129 (reboot) or 130 (power off).
fn run(args: &[String]) -> i32 {
    let mut config_path = None;
    let mut cmdline = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--config", Some(v)) => {
                config_path = Some(v.clone());
                it.next();
            }
            ("--cmdline", Some(v)) => {
                cmdline = Some(v.clone());
                it.next();
            }
            _ => {
                eprintln!("pantavisor: unexpected argument '{a}'\n{USAGE}");
                return 2;
            }
        }
    }
    // Blocked from the start, a signal sent before the loop exists waits for its signalfd;
    // unblocked, PID 1 would drop it (an init ignores signals it has no handler for).
    if let Err(e) = sys::event::block_signals(&pantavisor::event_loop::SIGNALS) {
        eprintln!("pantavisor: block signals: {e}");
    }
    // The real PID 1 starts with nothing mounted: /proc (for the command line) comes first.
    let pid1 = sys::event::getpid() == 1;
    if pid1 && !std::path::Path::new("/proc/self").exists() {
        embedded::early_mounts();
    }
    let config_text = match &config_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("pantavisor: --config {p}: {e}");
                return 2;
            }
        },
        None => std::fs::read_to_string("/etc/pantavisor.config").ok(),
    };
    let cmdline = match cmdline {
        Some(c) => c,
        None => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
    };
    let mut config = Config::load(config_text.as_deref(), &cmdline, std::env::vars());
    if let Some(policy) = config.policy_path() {
        if let Ok(text) = std::fs::read_to_string(&policy) {
            config.apply_text(Level::Policy, &policy.to_string_lossy(), &text);
        }
    }
    pantavisor::logs::set_level(pantavisor::logs::Level::from_number(
        config.log_level() as u64
    ));
    let embedded_mode = match config.init_mode() {
        InitMode::Standalone => false,
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
            let n = embedded::load_early_modules(std::path::Path::new(embedded::EARLY_MODULES_DIR));
            pvlog!(Info, "init", "{n} early kernel modules loaded");
            if let Some(dev) = config.storage_device() {
                let wait = std::time::Duration::from_secs(config.storage_wait());
                if let Err(e) = embedded::mount_storage(
                    dev,
                    config.storage_fstype(),
                    config.storage_mntpoint(),
                    wait,
                ) {
                    pvlog!(Fatal, "init", "{e}");
                    return end(Power::Reboot, None);
                }
            }
            true
        }
        InitMode::Appengine => {
            pvlog!(
                Fatal,
                "init",
                "PV_SYSTEM_INIT_MODE=appengine is not supported"
            );
            return 2;
        }
    };
    let root = config.storage_mntpoint().to_string();
    let fs = RealFs;
    let st = Storage::new(&fs, &root);
    if let Err(e) = st.init_layout() {
        pvlog!(Fatal, "storage", "{e}");
        return 2;
    }
    let bl = match bootloader::for_type(
        config.get_str(Key::PV_BOOTLOADER_TYPE).unwrap_or("uboot"),
        std::path::Path::new(&root),
    ) {
        Ok(b) => b,
        Err(e) => {
            pvlog!(Fatal, "bootloader", "{e}");
            return 2;
        }
    };
    let env_rev = bl.read(&fs).ok().and_then(|e| e.rev);
    let Some(booted) = cmdline_value(&cmdline, "pv_rev")
        .map(str::to_string)
        .or(env_rev)
    else {
        pvlog!(
            Fatal,
            "init",
            "no pv_rev on the command line nor in the boot env"
        );
        return 2;
    };
    let check = if config.secureboot_checksum() {
        Check::Rehash
    } else {
        Check::Presence
    };
    let power = match update::boot(&st, bl.as_ref(), &booted, check) {
        Ok(Boot::Rollback) => {
            pvlog!(
                Warn,
                "update",
                "revision {booted} failed, rebooting to fall back"
            );
            Power::Reboot
        }
        Ok(Boot::Run { trying }) => {
            init_logs(&config, &booted);
            match update::load_state(&st, &booted) {
                Ok(state) => {
                    match Device::new(&mut config, &st, bl.as_ref(), &booted, state, trying) {
                        Ok(device) => device.run(),
                        Err(e) => {
                            pvlog!(Fatal, "device", "event loop: {e}");
                            Power::Reboot
                        }
                    }
                }
                Err(e) => {
                    pvlog!(Fatal, "update", "{e}");
                    Power::Reboot
                }
            }
        }
        Err(e) => {
            // upstream: ERROR -> REBOOT; nothing else can make a broken committed revision boot
            pvlog!(Fatal, "update", "{e}");
            Power::Reboot
        }
    };
    end(power, embedded_mode.then(|| root.as_str()))
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

/// The orderly end (interfaces.md "Ending"): containers are already stopped; sync, then
/// reboot(2) as PID 1, or exit 129 / 130 as a plain process.
fn end(p: Power, storage: Option<&str>) -> i32 {
    // the log archiver's last archive is written before the sync, and its files are closed
    // before the unmount; a stuck storage does not hold the reboot for long
    pantavisor::logs::settle(2000);
    sys::power::sync();
    if let Some(mnt) = storage {
        embedded::unmount_storage(mnt);
    }
    match sys::power::reboot_if_pid1(p) {
        Ok(true) => loop {
            // the kernel ends us; never return from PID 1
            std::thread::sleep(std::time::Duration::from_secs(1));
        },
        Ok(false) => p.exit_code(),
        Err(e) => {
            pvlog!(Fatal, "device", "reboot: {e}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}
