//! System hooks (upstream's system hooks): the executables in `<libdir>/pantavisor/pv/hooks/system.d/`,
//! run in name order with the `PV_*` environment; a non-zero exit stops the remaining hooks and
//! fails the operation (the caller decides what failing means for it).
//!
//! Two ways to run them. [`Hooks::start`] is the device's: it spawns the first hook and returns
//! a [`HookRun`] that the loop drives -- the device's `waitpid(-1)` reaps the hook and passes the
//! status to [`HookRun::exited`], its deadline passing calls [`HookRun::timed_out`] -- so a hook
//! that hangs stops neither supervision nor pv-ctrl. [`Hooks::run`] waits in place (boot before
//! the loop, the crash simulation, tests).
use crate::bootloader::BootEnv;
use crate::pvlog;
use crate::sys::{self, CStrArray, WaitStatus};
use std::ffi::CString;
use std::fmt;
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
            // uboot and grub have no install step of their own: the one hook (upstream's bootloader backends)
            Op::InstallUpdate => "system-install-update",
            Op::BootDone => "system-boot-done",
            Op::Done => "system-done",
        }
    }
}

/// Why a hook failed the operation; every variant names the hook and the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookError {
    /// It could not be started (fork failed: errno; or a NUL byte in its path/environment: 0).
    Spawn { hook: PathBuf, op: Op, errno: i32 },
    /// It exited with a non-zero code.
    Exit { hook: PathBuf, op: Op, code: i32 },
    /// A signal ended it.
    Signal { hook: PathBuf, op: Op, signal: i32 },
    /// It ran past `PV_SYSTEM_HOOK_TIMEOUT` and was killed (SIGKILL to its process group).
    TimedOut { hook: PathBuf, op: Op, secs: u64 },
    /// Its exit could not be waited for (blocking runs only: someone else reaped it).
    Lost { hook: PathBuf, op: Op, errno: i32 },
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (HookError::Spawn { hook, op, .. }
        | HookError::Exit { hook, op, .. }
        | HookError::Signal { hook, op, .. }
        | HookError::TimedOut { hook, op, .. }
        | HookError::Lost { hook, op, .. }) = self;
        write!(f, "hook {} ({}): ", hook.display(), op.as_str())?;
        match self {
            HookError::Spawn { errno, .. } => write!(
                f,
                "cannot start: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            HookError::Exit { code, .. } => write!(f, "failed: exit code {code}"),
            HookError::Signal { signal, .. } => write!(f, "failed: killed by signal {signal}"),
            HookError::TimedOut { secs, .. } => write!(f, "failed: killed after {secs} s"),
            HookError::Lost { errno, .. } => {
                write!(f, "wait: {}", std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for HookError {}

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

/// `PV_SYSTEM_HOOK_TIMEOUT`'s default, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

pub struct Hooks {
    dir: Option<PathBuf>,
    objects: PathBuf,
    trails: PathBuf,
    timeout_ms: u64,
}

impl Hooks {
    pub fn new(libdir: &str, storage_root: &Path) -> Hooks {
        Hooks {
            dir: Some(Path::new(libdir).join("pantavisor/pv/hooks/system.d")),
            objects: storage_root.join("objects"),
            trails: storage_root.join("trails"),
            timeout_ms: DEFAULT_TIMEOUT_SECS * 1000,
        }
    }

    /// How long one hook may run (`PV_SYSTEM_HOOK_TIMEOUT`); 0 is taken as 1 s.
    pub fn with_timeout(mut self, secs: u64) -> Hooks {
        self.timeout_ms = secs.max(1).saturating_mul(1000);
        self
    }

    /// No hooks at all (the crash simulation, unit tests).
    pub fn none() -> Hooks {
        Hooks {
            dir: None,
            objects: PathBuf::new(),
            trails: PathBuf::new(),
            timeout_ms: DEFAULT_TIMEOUT_SECS * 1000,
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

    /// The hooks of the directory in name order: regular files with the owner-exec bit.
    fn list(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(list) = std::fs::read_dir(dir) else {
            return Vec::new(); // no hook directory: nothing to run
        };
        let mut hooks: Vec<PathBuf> = list
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o100 != 0)
            })
            .map(|e| e.path())
            .collect();
        crate::sort(&mut hooks);
        hooks
    }

    /// Spawns the first hook of `op` and returns the run for the loop to drive, or `None` when
    /// there is no hook to run. Never waits.
    pub fn start(&self, op: Op, env: &Env) -> Result<Option<HookRun>, HookError> {
        let hooks = self.list();
        let Some(first) = hooks.first().cloned() else {
            return Ok(None);
        };
        let spawn_err = |errno| HookError::Spawn {
            hook: first.clone(),
            op,
            errno,
        };
        let mut vars =
            vec![CString::new("PATH=/usr/sbin:/usr/bin:/sbin:/bin").map_err(|_| spawn_err(0))?];
        for (k, v) in self.environment(op, env) {
            vars.push(CString::new(format!("{k}={v}")).map_err(|_| spawn_err(0))?);
        }
        let mut run = HookRun {
            op,
            hooks,
            index: 0,
            envp: CStrArray::new(vars),
            pid: 0,
            deadline_ms: 0,
            timeout_ms: self.timeout_ms,
        };
        run.spawn()?;
        Ok(Some(run))
    }

    /// Runs every hook of `op` and waits for them, each within the timeout (a hook past it is
    /// killed and fails the run); the first failure ends the run and is returned.
    pub fn run_blocking(&self, op: Op, env: &Env) -> Result<usize, HookError> {
        let Some(mut run) = self.start(op, env)? else {
            return Ok(0);
        };
        loop {
            // a short poll rather than a blocking wait: the timeout must hold here too
            let step = match sys::waitpid(run.pid, true) {
                Ok(Some(status)) => run.exited(status),
                Ok(None) if crate::sys::event::monotonic_ms() < run.deadline_ms => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Ok(None) => {
                    let step = run.timed_out();
                    let _ = sys::waitpid(run.pid, false); // SIGKILLed: returns at once
                    step
                }
                Err(e) => HookStep::Done(Err(HookError::Lost {
                    hook: run.hook(),
                    op,
                    errno: e.raw_os_error().unwrap_or(0),
                })),
            };
            match step {
                HookStep::Next | HookStep::Running => continue,
                HookStep::Done(r) => return r,
            }
        }
    }
}

/// What a hook's end (or its deadline) did to the run.
#[derive(Debug, PartialEq, Eq)]
pub enum HookStep {
    /// The next hook was spawned: watch the new [`HookRun::pid`] and [`HookRun::deadline_ms`].
    Next,
    /// Not an exit (a stop or continue status): nothing changed.
    Running,
    /// The run ended: how many hooks ran, or the first failure.
    Done(Result<usize, HookError>),
}

/// The hooks of one operation being run on behalf of the loop: one child at a time, each with
/// a deadline. The loop reaps; this never calls `waitpid`.
pub struct HookRun {
    op: Op,
    hooks: Vec<PathBuf>,
    /// the hook running now
    index: usize,
    envp: CStrArray,
    pid: i32,
    deadline_ms: u64,
    timeout_ms: u64,
}

impl HookRun {
    /// The running hook's pid (its process group too: it is a session leader).
    pub fn pid(&self) -> i32 {
        self.pid
    }
    /// When the running hook must be done, in CLOCK_MONOTONIC ms (`EventLoop::now_ms`).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }
    pub fn op(&self) -> Op {
        self.op
    }

    fn hook(&self) -> PathBuf {
        self.hooks.get(self.index).cloned().unwrap_or_default()
    }

    /// Forks and execs `hooks[index]`: a plain fork and exec through `sys` (std::process would
    /// cost ~37 KB of the binary for this one use). It gets PID 1's descriptors 0-2 only,
    /// default signal handling and an empty mask, its own session (so a timeout kills the
    /// hook's children too), and exactly the `PV_*` environment plus PATH.
    fn spawn(&mut self) -> Result<(), HookError> {
        use std::os::unix::ffi::OsStrExt;
        let hook = self.hook();
        let err = |errno| HookError::Spawn {
            hook: hook.clone(),
            op: self.op,
            errno,
        };
        let cpath = CString::new(hook.as_os_str().as_bytes()).map_err(|_| err(0))?;
        let argv = CStrArray::new(vec![cpath.clone()]);
        let envp = &self.envp;
        let (pid, _) = sys::clone_process(0, None, true, &mut || {
            sys::reset_signals();
            sys::cloexec_from(3);
            let _ = sys::setsid();
            let _ = sys::execve(&cpath, &argv, envp);
            127
        })
        .map_err(|e| err(e.raw_os_error().unwrap_or(0)))?;
        self.pid = pid;
        self.deadline_ms = sys::event::monotonic_ms().saturating_add(self.timeout_ms);
        Ok(())
    }

    /// The running hook was reaped with `wait_status`: spawns the next one, or ends the run.
    pub fn exited(&mut self, wait_status: i32) -> HookStep {
        let (hook, op) = (self.hook(), self.op);
        match sys::decode_wait_status(wait_status) {
            WaitStatus::Exited(0) => {}
            WaitStatus::Exited(code) => {
                return HookStep::Done(Err(HookError::Exit { hook, op, code }))
            }
            WaitStatus::Signaled(signal) => {
                return HookStep::Done(Err(HookError::Signal { hook, op, signal }))
            }
            WaitStatus::Other => return HookStep::Running,
        }
        pvlog!(Info, "hooks", "{} ({}) ok", hook.display(), op.as_str());
        self.index += 1;
        if self.index >= self.hooks.len() {
            return HookStep::Done(Ok(self.hooks.len()));
        }
        match self.spawn() {
            Ok(()) => HookStep::Next,
            Err(e) => HookStep::Done(Err(e)),
        }
    }

    /// The deadline passed: the hook and whatever it started are SIGKILLed (the loop still
    /// reaps the pid; its status no longer matters) and the run fails.
    pub fn timed_out(&mut self) -> HookStep {
        // the group first (the hook is a session leader), the pid alone if setsid failed
        if sys::kill(-self.pid, libc::SIGKILL).is_err() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
        }
        HookStep::Done(Err(HookError::TimedOut {
            hook: self.hook(),
            op: self.op,
            secs: self.timeout_ms.div_ceil(1000),
        }))
    }
}

#[cfg(test)]
#[path = "hooks_tests.rs"]
mod tests;
