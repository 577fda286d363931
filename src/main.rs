//! argv[0] / subcommand dispatch only (interfaces.md "Command line"). Running the device --
//! INIT, RUN and the end that never exits PID 1 -- is `device::init`.
use pantavisor::device::init::{self, USAGE};
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
        Some("check-state") => pantavisor::pvs::cli::check_state(rest.get(1..).unwrap_or_default()),
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

fn pvcontrol(args: &[String]) -> i32 {
    pantavisor::control::client::pvcontrol_main(args)
}
