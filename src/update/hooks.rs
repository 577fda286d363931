//! System hooks (reference 5.10): the executables in `<libdir>/pantavisor/pv/hooks/system.d/`,
//! run in name order with the `PV_*` environment; a non-zero exit stops the remaining hooks and
//! fails the operation (the caller decides what failing means for it).
use crate::bootloader::BootEnv;
use crate::pvlog;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Start,
    InstallUpdate,
    BootDone,
    Done,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "system-start",
            // uboot and grub have no install step of their own: the one hook (5.6)
            Op::InstallUpdate => "system-install-update",
            Op::BootDone => "system-boot-done",
            Op::Done => "system-done",
        }
    }
}

/// The per-call part of a hook's environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub rev: String,
    pub try_rev: String,
    pub tryboot: bool,
    pub status: String,
}

impl Env {
    pub fn new(boot: &BootEnv, rev: &str, status: &str) -> Env {
        let try_rev = boot.try_rev.clone().unwrap_or_default();
        Env {
            rev: rev.to_string(),
            tryboot: !try_rev.is_empty() && try_rev == rev,
            try_rev,
            status: status.to_string(),
        }
    }
}

pub struct Hooks {
    dir: Option<PathBuf>,
    objects: PathBuf,
    trails: PathBuf,
}

impl Hooks {
    pub fn new(libdir: &str, storage_root: &Path) -> Hooks {
        Hooks {
            dir: Some(Path::new(libdir).join("pantavisor/pv/hooks/system.d")),
            objects: storage_root.join("objects"),
            trails: storage_root.join("trails"),
        }
    }

    /// No hooks at all (the crash simulation, unit tests).
    pub fn none() -> Hooks {
        Hooks {
            dir: None,
            objects: PathBuf::new(),
            trails: PathBuf::new(),
        }
    }

    /// The `PV_*` variables of 5.10, in a fixed order.
    pub fn environment(&self, op: Op, env: &Env) -> Vec<(&'static str, String)> {
        vec![
            ("PV_OP", op.as_str().to_string()),
            ("PV_REV", env.rev.clone()),
            ("PV_TRY", env.try_rev.clone()),
            ("PV_TRYBOOT", env.tryboot.to_string()),
            ("PV_OBJ_STORAGE", self.objects.display().to_string()),
            ("PV_TRAILS_STORAGE", self.trails.display().to_string()),
            ("PV_STATUS", env.status.clone()),
        ]
    }

    /// Runs every hook of the directory in name order (regular files with the owner-exec
    /// bit); the first failure ends the run and is returned, naming the hook.
    pub fn run(&self, op: Op, env: &Env) -> Result<usize, String> {
        use std::os::unix::fs::PermissionsExt;
        let Some(dir) = &self.dir else { return Ok(0) };
        let Ok(list) = std::fs::read_dir(dir) else {
            return Ok(0); // no hook directory: nothing to run
        };
        let mut hooks: Vec<PathBuf> = list
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o100 != 0)
            })
            .map(|e| e.path())
            .collect();
        hooks.sort();
        for h in &hooks {
            run_one(h, &self.environment(op, env))
                .map_err(|e| format!("hook {} ({}): {e}", h.display(), op.as_str()))?;
            pvlog!(Info, "hooks", "{} ({}) ok", h.display(), op.as_str());
        }
        Ok(hooks.len())
    }
}

/// Runs one hook and waits for it: a plain fork and exec through `sys` (std::process would
/// cost ~37 KB of the binary for this one use). It gets PID 1's descriptors 0-2 only, default
/// signal handling and an empty mask, and exactly the `PV_*` environment plus PATH.
fn run_one(path: &Path, env: &[(&'static str, String)]) -> Result<(), String> {
    use crate::sys::{self, CStrArray, WaitStatus};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |s: Vec<u8>| CString::new(s).map_err(|_| "NUL in an argument".to_string());
    let cpath = c(path.as_os_str().as_bytes().to_vec())?;
    let argv = CStrArray::new(vec![cpath.clone()]);
    let mut vars = vec![c(b"PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_vec())?];
    for (k, v) in env {
        vars.push(c(format!("{k}={v}").into_bytes())?);
    }
    let envp = CStrArray::new(vars);
    let (pid, _) = sys::clone_process(0, None, true, &mut || {
        sys::reset_signals();
        sys::cloexec_from(3);
        let _ = sys::execve(&cpath, &argv, &envp);
        127
    })
    .map_err(|e| format!("fork: {e}"))?;
    let status = sys::waitpid(pid, false)
        .map_err(|e| format!("wait: {e}"))?
        .unwrap_or(0);
    match sys::decode_wait_status(status) {
        WaitStatus::Exited(0) => Ok(()),
        WaitStatus::Exited(n) => Err(format!("failed: exit code {n}")),
        WaitStatus::Signaled(sig) => Err(format!("failed: killed by signal {sig}")),
        WaitStatus::Other => Err("failed: stopped".into()),
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
