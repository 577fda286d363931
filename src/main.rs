//! argv[0] / subcommand dispatch only (interfaces.md "Command line"). Running the device --
//! INIT, RUN and the end that never exits PID 1 -- is `device::init`.
use pantavisor::device::init::{self, USAGE};
use pantavisor::state::State;
use std::io::Write;
use std::process::exit;

/// A line on stdout; unlike println!, a closed pipe (`pantavisor --help | head -1`) is no
/// panic (an abort, in this build).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

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
            out!("{}", version());
            0
        }
        Some("check-state") => check_state(rest.get(1..).unwrap_or_default()),
        Some("pvcontrol") => pvcontrol(rest.get(1..).unwrap_or_default()),
        #[cfg(feature = "hub")]
        Some("hub") => pantavisor::hub::daemon::main(),
        Some("-h") | Some("--help") => {
            out!("{USAGE}");
            0
        }
        _ => init::run(rest),
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

/// `check-state FILE`: 0 valid (summary on stdout), 1 invalid or refused by this build (one
/// line per reason on stderr), 2 usage or I/O error.
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
            let refused = state.unsupported();
            if !refused.is_empty() {
                for r in &refused {
                    eprintln!("{file}: refused: {r}");
                }
                return 1;
            }
            out!("{file}: valid");
            out!("{}", state.summary());
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
