//! The Hub credentials files (reference 1.2, 7.1, 8.2) in upstream's creds work dir
//! `<rundir>/phconfig`, which the device binds to `<storage>/config` (what a device that ran
//! upstream already has, so a migrated device stays the same device on the Hub) or to the BSP
//! volume `pv--phconfig` (`PV_STORAGE_PHCONFIG_VOL=1`): `unclaimed.config` while the device is
//! registered but unclaimed, then `pantahub.config`. As upstream, the file is every key
//! pantahub.config may set, `KEY=value` a line, replaced whole and crash-safely.
//!
//! `PH_CREDS_TYPE` (8.2): `builtin`, or `ext-<x>`, whose executables `/btools/ext-<x>.register`
//! and `/btools/ext-<x>.login` register the device and log it in.

use crate::config::{Config, Key, Level};
use crate::storage::fs::{write_atomic, Fs};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const PANTAHUB: &str = "pantahub.config";
pub const UNCLAIMED: &str = "unclaimed.config";

/// Where upstream looks for the `ext-*` handlers.
pub const BTOOLS: &str = "/btools";

/// What a handler may print (its login answer is a small JSON); more is an error.
pub const OUTPUT_MAX: usize = 64 * 1024;

/// How long a handler may run before it is killed: a hung one must not hang the client.
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// The creds work dir, `<rundir>/phconfig`.
pub fn dir(rundir: &Path) -> PathBuf {
    rundir.join("phconfig")
}

/// `<rundir>/phconfig/<name>`.
pub fn path(rundir: &Path, name: &str) -> PathBuf {
    dir(rundir).join(name)
}

/// The file's text: each key the `pantahub.config` level may set that has a value, in the
/// key table's order (as upstream writes its table).
pub fn render(cfg: &Config) -> String {
    let mut out = String::new();
    for &k in Key::ALL {
        let def = k.def();
        if def.allowed & (1 << (Level::PhConfFile as u16)) == 0 {
            continue;
        }
        if let Some(v) = cfg.get(k) {
            // a value with a line break would smuggle a second key in
            if !v.contains(['\n', '\r']) {
                out.push_str(def.name);
                out.push('=');
                out.push_str(v);
                out.push('\n');
            }
        }
    }
    out
}

/// Saves the credentials: `unclaimed.config` until the device is claimed, `pantahub.config`
/// from then on (the claim is what makes them the device's for good). The work dir must be
/// there (bound by the device): credentials written to a plain folder of the rundir would be
/// gone at the next boot, and the device would register again as another one.
pub fn save(fs: &dyn Fs, rundir: &Path, cfg: &Config, claimed: bool) -> io::Result<PathBuf> {
    let p = path(rundir, if claimed { PANTAHUB } else { UNCLAIMED });
    write_atomic(fs, &p, render(cfg).as_bytes())?;
    Ok(p)
}

/// How the client gets its credentials and its session (`PH_CREDS_TYPE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Registration and login by the client itself (8.2, 8.3).
    Builtin,
    /// `/btools/<type>.register` registers (writing the credentials files), the output of
    /// `/btools/<type>.login` is the login answer.
    External { register: PathBuf, login: PathBuf },
}

/// The handler for `PH_CREDS_TYPE`, or upstream's error line (no Hub traffic then).
pub fn handler(creds_type: &str) -> Result<Handler, String> {
    if creds_type == "builtin" {
        return Ok(Handler::Builtin);
    }
    // one file name under /btools: no way out of it
    if creds_type.starts_with("ext-") && !creds_type.contains(['/', '\0']) {
        let at = |what: &str| Path::new(BTOOLS).join(format!("{creds_type}.{what}"));
        return Ok(Handler::External {
            register: at("register"),
            login: at("login"),
        });
    }
    Err(format!(
        "unable to get trest client for creds_type {}. Currently supported: builtin and ext-* handlers",
        creds_type.escape_debug()
    ))
}

/// Upstream's check before a handler runs: there, and executable by its owner.
fn check_executable(cmd: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(cmd)
        .map_err(|e| format!("unable to stat trest client for cmd {}: {e}", cmd.display()))?;
    if md.permissions().mode() & 0o100 == 0 || !md.is_file() {
        return Err(format!(
            "unable to get trest client for cmd {} ... not executable.",
            cmd.display()
        ));
    }
    Ok(())
}

/// Runs a handler with no arguments, stdout and stderr into one pipe (upstream parses both),
/// waiting at most `timeout` for it to end; a handler still running then is killed with its
/// process group. Returns its exit status and output (at most [`OUTPUT_MAX`] bytes).
pub fn run(cmd: &Path, timeout: Duration) -> Result<(ExitStatus, Vec<u8>), String> {
    check_executable(cmd)?;
    let what = |e: io::Error| format!("{}: {e}", cmd.display());
    let (mut r, w) = io::pipe().map_err(what)?;
    let mut c = Command::new(cmd);
    c.stdin(Stdio::null())
        .stdout(w.try_clone().map_err(what)?)
        .stderr(w)
        // its own group: what it leaves running goes with it at the time out
        .process_group(0);
    let mut child = c.spawn().map_err(what)?;
    // the write ends are the child's alone now: its end is our end of file
    drop(c);
    let end = Instant::now() + timeout;
    let left = |end: Instant| {
        i32::try_from(end.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(i32::MAX)
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut why = None;
    loop {
        match crate::sys::poll_readable(r.as_fd(), left(end)) {
            Ok(true) => {}
            Ok(false) => {
                why = Some(format!("still running after {timeout:?}: killed"));
                break;
            }
            Err(e) => {
                why = Some(format!("reading its output: {e}"));
                break;
            }
        }
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if out.len() + n > OUTPUT_MAX => {
                why = Some(format!("more than {OUTPUT_MAX} B of output: killed"));
                break;
            }
            Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                why = Some(format!("reading its output: {e}"));
                break;
            }
        }
    }
    // its output is closed: it ends now, or by the deadline
    while why.is_none() {
        match child.try_wait() {
            Ok(Some(st)) => return Ok((st, out)),
            Ok(None) if left(end) > 0 => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => why = Some(format!("still running after {timeout:?}: killed")),
            Err(e) => why = Some(format!("wait: {e}")),
        }
    }
    let pid = child.id() as crate::sys::Pid;
    let _ = crate::sys::kill(-pid, libc::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{}: {}", cmd.display(), why.unwrap_or_default()))
}

#[cfg(test)]
#[path = "creds_tests.rs"]
mod tests;
