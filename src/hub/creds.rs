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
use crate::sys::{self, CStrArray, WaitStatus};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PANTAHUB: &str = "pantahub.config";
pub const UNCLAIMED: &str = "unclaimed.config";

/// Where upstream looks for the `ext-*` handlers.
pub const BTOOLS: &str = "/btools";

/// What a handler may print (its login answer is a small JSON); more is an error.
pub const OUTPUT_MAX: usize = 64 * 1024;

/// How long a handler may run before it is killed with its session: a hung one must not
/// hang the client.
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
/// waiting at most `timeout` for it to end; past that it is killed with its session. Returns
/// how it ended and its output (at most [`OUTPUT_MAX`] bytes). A plain fork and exec through
/// `sys`, as the hooks (std::process would cost some 37 KB of the binary): its own session,
/// default signals, stdin /dev/null, this process's environment.
pub fn run(cmd: &Path, timeout: Duration) -> Result<(WaitStatus, Vec<u8>), String> {
    use std::os::unix::ffi::OsStrExt;
    check_executable(cmd)?;
    let what = |e: io::Error| format!("{}: {e}", cmd.display());
    let nul = |_| format!("{}: a NUL byte in its path or environment", cmd.display());
    let path = CString::new(cmd.as_os_str().as_bytes()).map_err(nul)?;
    let argv = CStrArray::new(vec![path.clone()]);
    let mut vars = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        vars.push(CString::new(kv).map_err(nul)?);
    }
    let envp = CStrArray::new(vars);
    let null = std::fs::File::open("/dev/null").map_err(what)?;
    let (r, pipe_w) = sys::pipe_cloexec().map_err(what)?;
    // numbered 3 or more, so the child's dup2 onto 0, 1 and 2 cannot clobber one of them
    let w = sys::dup_cloexec_min(pipe_w.as_fd(), 3).map_err(what)?;
    drop(pipe_w);
    let null = sys::dup_cloexec_min(null.as_fd(), 3).map_err(what)?;
    let (o, i) = (w.as_raw_fd(), null.as_raw_fd());
    let (pid, _) = sys::clone_process(0, None, true, &mut || {
        sys::reset_signals();
        let redirected = sys::dup2(i, 0)
            .and_then(|()| sys::dup2(o, 1))
            .and_then(|()| sys::dup2(o, 2));
        if sys::setsid().is_err() || redirected.is_err() {
            return 127;
        }
        sys::cloexec_from(3);
        let _ = sys::execve(&path, &argv, &envp);
        127
    })
    .map_err(what)?;
    // the write end is the child's alone now: its end is our end of file
    drop(w);
    let end = Instant::now() + timeout;
    let left = || {
        i32::try_from(end.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(i32::MAX)
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut why = None;
    while why.is_none() {
        match sys::poll_readable(r.as_fd(), left()) {
            Ok(true) => match sys::read(r.as_raw_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) if out.len() + n > OUTPUT_MAX => {
                    why = Some(format!("more than {OUTPUT_MAX} B of output: killed"));
                }
                Ok(n) => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) => why = Some(format!("reading its output: {e}")),
            },
            Ok(false) => why = Some(format!("still running after {timeout:?}: killed")),
            Err(e) => why = Some(format!("reading its output: {e}")),
        }
    }
    // its output is closed: it ends now, or by the deadline
    while why.is_none() {
        match sys::waitpid(pid, true) {
            Ok(Some(st)) => match sys::decode_wait_status(st) {
                WaitStatus::Other => {}
                ended => return Ok((ended, out)),
            },
            Ok(None) if left() > 0 => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => why = Some(format!("still running after {timeout:?}: killed")),
            Err(e) => return Err(format!("{}: wait: {e}", cmd.display())),
        }
    }
    // the session first (it leads one), the pid alone if setsid failed
    if sys::kill(-pid, libc::SIGKILL).is_err() {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    let _ = sys::waitpid(pid, false);
    Err(format!("{}: {}", cmd.display(), why.unwrap_or_default()))
}

#[cfg(test)]
#[path = "creds_tests.rs"]
mod tests;
