//! argv[0] / subcommand dispatch only (interfaces.md "Command line").
use pantavisor::bootloader;
use pantavisor::config::{Config, InitMode, Key, Level};
use pantavisor::pvlog;
use pantavisor::state::State;
use pantavisor::storage::{fs::RealFs, trail::Check, Storage};
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

fn pvcontrol(_args: &[String]) -> i32 {
    eprintln!("pvcontrol: the pv-ctrl client is not in this build yet");
    255
}

/// The value of `key=` in a kernel command line.
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Runs the device. This build goes as far as storage: boot env, resume decision, trail
/// verification, `current`; the container runtime comes next. Ends as interfaces.md fixes:
/// 129 when it has to reboot (a rollback), otherwise 0 after reporting the revision.
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
    if config.init_mode() != InitMode::Standalone {
        pvlog!(
            Fatal,
            "init",
            "only PV_SYSTEM_INIT_MODE=standalone is in this build"
        );
        return 2;
    }
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
    match update::boot(&st, bl.as_ref(), &booted, check) {
        Ok(Boot::Rollback) => {
            pvlog!(
                Warn,
                "update",
                "revision {booted} failed, rebooting to fall back"
            );
            129
        }
        Ok(Boot::Run { trying }) => {
            println!(
                "revision {booted} verified{}",
                if trying { " (trying)" } else { "" }
            );
            0
        }
        Err(e) => {
            pvlog!(Fatal, "update", "{e}");
            2
        }
    }
}
