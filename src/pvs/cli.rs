//! `pantavisor check-state [--trust DIR] [--secureboot MODE] [--oem-name NAME] FILE`
//! (interfaces.md "Command line"): the device's checks of a state, for CI pipelines.
use super::{verify, Mode, Trust};
use crate::state::State;
use std::io::Write;
use std::path::Path;

pub const USAGE: &str =
    "usage: pantavisor check-state [--trust DIR] [--secureboot MODE] [--oem-name NAME] FILE";

/// 0 valid (summary on stdout), 1 invalid, refused by this build or by its signatures (one line
/// per reason on stderr), 2 usage or I/O error.
pub fn check_state(args: &[String]) -> i32 {
    let (mut trust_dir, mut mode, mut oem, mut file) = (None, Mode::Lenient, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("check-state: {what} needs a value"))
        };
        let r = match a.as_str() {
            "--trust" => value(a).map(|v| trust_dir = Some(v)),
            "--oem-name" => value(a).map(|v| oem = Some(v)),
            "--secureboot" => value(a).and_then(|v| Mode::parse(&v).map(|m| mode = m)),
            f if file.is_none() && !f.starts_with("--") => {
                file = Some(f.to_string());
                Ok(())
            }
            other => Err(format!("check-state: unexpected argument '{other}'")),
        };
        if let Err(e) = r {
            eprintln!("{e}\n{USAGE}");
            return 2;
        }
    }
    let Some(file) = file else {
        eprintln!("{USAGE}");
        return 2;
    };
    let trust = match &trust_dir {
        None => Trust::none(),
        Some(d) => {
            let t = Trust::from_dir(
                Path::new(d),
                "ca-certificates",
                "ca-oem-certificates",
                oem.as_deref(),
            );
            match t {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{e}");
                    return 2;
                }
            }
        }
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{file}: {e}");
            return 2;
        }
    };
    let state = match State::parse(&bytes) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{file}: {e}");
            }
            return 1;
        }
    };
    for w in state.warnings() {
        eprintln!("{file}: warning: {w}");
    }
    let refused = state.unsupported();
    for r in &refused {
        eprintln!("{file}: refused: {r}");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match verify(&state, &trust, mode, now) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("{file}: warning: {w}");
            }
        }
        Err(r) => {
            eprintln!("{file}: {}", r.message);
            for reason in r.reasons {
                eprintln!("{file}: {reason}");
            }
            return 1;
        }
    }
    if !refused.is_empty() {
        return 1;
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{file}: valid");
    let _ = writeln!(out, "{}", state.summary());
    0
}
