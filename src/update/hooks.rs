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
            let status = std::process::Command::new(h)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .envs(self.environment(op, env))
                .stdin(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("hook {} ({}): {e}", h.display(), op.as_str()))?;
            if !status.success() {
                return Err(format!(
                    "hook {} ({}) failed: {status}",
                    h.display(),
                    op.as_str()
                ));
            }
            pvlog!(Info, "hooks", "{} ({}) ok", h.display(), op.as_str());
        }
        Ok(hooks.len())
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
