//! Upstream's managed daemons (`daemons.c`): helper programs PID 1 runs as host processes in
//! its own namespaces, outside any container, kept alive and listed in `/daemons`. The table
//! and its decisions are here and pure ([`Model`] methods); the fork/exec, the signals and the
//! daemons' stdout/stderr are the interpreter's ([`Device`], at the end of this file).
//!
//! Upstream: at init each daemon of the init mode whose `respawn` is set is spawned, unless its
//! testpath is missing (respawn cleared, pid 0); an exit sets pid 0 and spawns it again 5 s
//! later (pid -1 when respawn was cleared); `PUT /daemons/<name>` `stop` clears respawn and
//! SIGTERMs it, `start` sets respawn and spawns it; at the end every daemon is SIGTERMed with
//! respawn cleared. Here the end also waits for them (killed after the stop grace), once the
//! containers are down, so none outlives PID 1's unmounts.
use super::commands::Refusal;
use super::model::{Effect, Model, Phase};
use super::timers::{self, Timer};
use super::Device;
use crate::config::InitMode;
use crate::logs::Level;
use crate::pvlog;
use crate::sys::{self, CStrArray};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A daemon that ended is spawned again this long after (upstream's `sleep 5`).
pub const RESPAWN_MS: u64 = 5000;

/// One row of the table: upstream's `struct pv_init_daemon` without its run-time fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    /// Not spawned, and respawn cleared, when this path does not exist (upstream's testpath).
    pub testpath: &'static str,
    /// The program and its arguments (upstream's `cmd`, as its tsh splits it).
    pub argv: &'static [&'static str],
    /// The init modes it runs in (upstream's `DM_*` flags).
    pub modes: &'static [InitMode],
    /// The Hub client: only in this build with the `hub` feature, only while the device is in
    /// remote mode ([`remote_mode`]), and told the pv-ctrl socket (`PV_CTRL_SOCKET`), its one
    /// way to the device.
    pub remote: bool,
}

/// This build's table: upstream's hwrngd, and the Hub client (this binary, which `main`
/// dispatches on its first argument `hub`) in the modes where upstream runs its pantahub
/// client. A row to come: pv-xconnect.
pub const TABLE: &[Spec] = &[
    Spec {
        name: "hwrngd",
        testpath: "/usr/bin/rngd",
        argv: &["/usr/bin/rngd", "-f"],
        modes: &[InitMode::Embedded, InitMode::Standalone],
        remote: false,
    },
    Spec {
        name: "hub",
        testpath: "/proc/self/exe",
        argv: &["/proc/self/exe", "hub"],
        modes: &[InitMode::Embedded, InitMode::Standalone],
        remote: true,
    },
];

/// Upstream's `remote_mode`, decided when a revision starts to run (boot, live switch):
/// `PV_CONTROL_REMOTE`, except that a local revision (`locals/...`) runs in local mode unless
/// `PV_CONTROL_REMOTE_ALWAYS` (which then forces remote, as upstream's `_pv_run` does). GO_REMOTE
/// switches a local device to remote until the next revision runs. Never without the Hub
/// client built in.
pub fn remote_mode(control_remote: bool, remote_always: bool, local_rev: bool) -> bool {
    cfg!(feature = "hub")
        && if local_rev {
            remote_always
        } else {
            control_remote
        }
}

/// The environment of a daemon: upstream's tsh PATH only.
const PATH: &str = "PATH=/bin:/sbin:/usr/bin:/usr/sbin:/lib/pv:/lib/pv/volmount/crypt";

/// Where a daemon is; upstream keeps only `pid`, whose values these explain ([`Daemon::pid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Never spawned, not found, or not for this init mode (pid 0).
    Idle,
    /// Its spawn was asked for; the interpreter answers at once.
    Spawning,
    Up(i32),
    /// SIGTERMed (stop, or the device ending), not reaped yet.
    Stopping(i32),
    /// Ended; spawned again when [`Timer::Respawn`] fires (pid 0).
    Due,
    /// Ended with respawn cleared (upstream's pid -1).
    Ended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub spec: &'static Spec,
    pub respawn: bool,
    pub run: Run,
    /// Its init mode is this device's (and, for the Hub client, the device is in remote mode).
    pub enabled: bool,
}

impl Daemon {
    /// The pid `/daemons` lists, as upstream's.
    pub fn pid(&self) -> i32 {
        match self.run {
            Run::Up(p) | Run::Stopping(p) => p,
            Run::Ended => -1,
            Run::Idle | Run::Spawning | Run::Due => 0,
        }
    }
}

/// The daemons of a device in `mode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemons {
    pub list: Vec<Daemon>,
    /// The device ends: every daemon was told to stop.
    ending: bool,
    mode: InitMode,
}

impl Daemons {
    pub fn new(table: &'static [Spec], mode: InitMode) -> Daemons {
        Daemons {
            list: table
                .iter()
                .filter(|spec| !spec.remote || cfg!(feature = "hub"))
                .map(|spec| Daemon {
                    spec,
                    respawn: true,
                    run: Run::Idle,
                    enabled: spec.modes.contains(&mode) && !spec.remote,
                })
                .collect(),
            ending: false,
            mode,
        }
    }

    /// The daemon whose process is `pid`.
    pub fn of_pid(&self, pid: i32) -> Option<usize> {
        self.list
            .iter()
            .position(|d| matches!(d.run, Run::Up(p) | Run::Stopping(p) if p == pid))
    }

    /// No daemon process is left.
    pub fn down(&self) -> bool {
        self.list
            .iter()
            .all(|d| !matches!(d.run, Run::Up(_) | Run::Stopping(_) | Run::Spawning))
    }

    /// The Hub client's pid when it runs.
    pub fn hub_pid(&self) -> Option<i32> {
        self.list
            .iter()
            .find(|d| d.spec.remote)
            .and_then(|d| match d.run {
                Run::Up(p) => Some(p),
                _ => None,
            })
    }

    /// What `/daemons` lists: the Hub client only while the device is in remote mode.
    pub fn views(&self) -> Vec<super::commands::Daemon> {
        self.list
            .iter()
            .filter(|d| d.enabled || !d.spec.remote)
            .map(|d| super::commands::Daemon {
                name: d.spec.name,
                pid: d.pid(),
                respawn: d.respawn,
            })
            .collect()
    }
}

fn log(fx: &mut Vec<Effect>, level: Level, line: String) {
    fx.push(Effect::Log(level, "daemons", line));
}

impl Model {
    /// Spawns every daemon of this init mode that should run and does not (not while ending).
    pub(super) fn spawn_daemons(&mut self, fx: &mut Vec<Effect>) {
        for (i, d) in self.daemons.list.iter_mut().enumerate() {
            if d.enabled && d.respawn && d.run == Run::Idle {
                d.run = Run::Spawning;
                fx.push(Effect::SpawnDaemon(i));
            }
        }
    }

    /// Remote mode on or off (at the start of a revision, by GO_REMOTE): the Hub client is
    /// spawned (by the next evaluation) or stopped, its respawn kept for the next time.
    pub(super) fn set_remote(&mut self, on: bool, fx: &mut Vec<Effect>) {
        if self.remote != on {
            let mode = if on { "remote" } else { "local" };
            log(fx, Level::Info, format!("running in {mode} mode"));
        }
        self.remote = on;
        fx.push(Effect::Mode(on));
        let mode = self.daemons.mode;
        for (i, d) in self.daemons.list.iter_mut().enumerate() {
            if !d.spec.remote || d.enabled == on || !d.spec.modes.contains(&mode) {
                continue;
            }
            d.enabled = on;
            match d.run {
                Run::Up(p) if !on => {
                    d.run = Run::Stopping(p);
                    fx.push(Effect::StopDaemon(p));
                }
                Run::Due if !on => {
                    d.run = Run::Idle;
                    fx.push(Effect::Cancel(Timer::Respawn(i as u32)));
                }
                // stopped meanwhile: spawned by the next evaluation, unless stopped by a user
                Run::Ended if on && d.respawn => d.run = Run::Idle,
                _ => {}
            }
        }
    }

    /// The spawn of daemon `i` ended: its pid, or `None` when its testpath is missing.
    pub(super) fn daemon_spawned(&mut self, i: usize, pid: Option<i32>, fx: &mut Vec<Effect>) {
        let Some(d) = self.daemons.list.get_mut(i) else {
            return;
        };
        if d.run != Run::Spawning {
            return;
        }
        match pid {
            Some(p) => d.run = Run::Up(p),
            None => {
                d.run = Run::Idle;
                d.respawn = false;
                log(
                    fx,
                    Level::Info,
                    format!("daemon not found {}: disabling respawn", d.spec.name),
                );
            }
        }
    }

    /// Daemon `i` ended (reaped, or its spawn failed): again in [`RESPAWN_MS`] if its respawn
    /// is set, so one that ends at once is never a tight loop.
    pub(super) fn daemon_exited(&mut self, i: usize, fx: &mut Vec<Effect>) {
        let ending = matches!(self.phase, Phase::Ending(_));
        let Some(d) = self.daemons.list.get_mut(i) else {
            return;
        };
        if !matches!(d.run, Run::Up(_) | Run::Stopping(_) | Run::Spawning) {
            return;
        }
        if !d.enabled && !ending {
            // the Hub client out of remote mode: spawned again when the device goes remote
            d.run = Run::Idle;
        } else if d.respawn && !ending {
            d.run = Run::Due;
            fx.push(Effect::Arm(Timer::Respawn(i as u32), RESPAWN_MS));
            log(
                fx,
                Level::Warn,
                format!("daemon {} exited: respawn in 5 s", d.spec.name),
            );
        } else {
            d.run = Run::Ended;
        }
    }

    /// [`Timer::Respawn`]: the next evaluation spawns it.
    pub(super) fn respawn_due(&mut self, i: usize) {
        if let Some(d) = self.daemons.list.get_mut(i) {
            if d.run == Run::Due {
                d.run = Run::Idle;
            }
        }
    }

    /// PUT /daemons/{name}: `stop` clears respawn and SIGTERMs it (a respawn due is dropped);
    /// `start` sets respawn and spawns it now unless it runs or its respawn is due.
    pub(super) fn daemon_action(
        &mut self,
        name: &str,
        start: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refusal> {
        let i = self
            .daemons
            .list
            .iter()
            .position(|d| d.spec.name == name)
            .ok_or(Refusal::UnknownDaemon)?;
        let Some(d) = self.daemons.list.get_mut(i) else {
            return Err(Refusal::UnknownDaemon);
        };
        let what = if start { "Starting" } else { "Stopping" };
        log(fx, Level::Info, format!("{what} daemon {name} via ctrl"));
        d.respawn = start;
        match (start, d.run) {
            (false, Run::Up(p)) => {
                d.run = Run::Stopping(p);
                fx.push(Effect::StopDaemon(p));
            }
            (false, Run::Due) => {
                d.run = Run::Ended;
                fx.push(Effect::Cancel(Timer::Respawn(i as u32)));
            }
            (true, Run::Ended) => d.run = Run::Idle,
            _ => {}
        }
        Ok(())
    }

    /// The device ends and its containers are down: every daemon is SIGTERMed with respawn
    /// cleared, and killed if still there after the stop grace.
    pub(super) fn stop_daemons(&mut self, fx: &mut Vec<Effect>) {
        if self.daemons.ending {
            return;
        }
        self.daemons.ending = true;
        for (i, d) in self.daemons.list.iter_mut().enumerate() {
            d.respawn = false;
            match d.run {
                Run::Up(p) => {
                    log(
                        fx,
                        Level::Info,
                        format!("Stopping daemon {} (pid {p})", d.spec.name),
                    );
                    d.run = Run::Stopping(p);
                    fx.push(Effect::StopDaemon(p));
                }
                Run::Due => {
                    d.run = Run::Ended;
                    fx.push(Effect::Cancel(Timer::Respawn(i as u32)));
                }
                _ => {}
            }
        }
        if !self.daemons.down() {
            fx.push(Effect::Arm(Timer::DaemonGrace, self.grace_ms));
        }
    }

    /// [`Timer::DaemonGrace`]: kills the daemons still stopping.
    pub(super) fn kill_daemons(&mut self, fx: &mut Vec<Effect>) {
        for d in &self.daemons.list {
            if let Run::Stopping(p) = d.run {
                log(
                    fx,
                    Level::Warn,
                    format!("daemon {} (pid {p}) did not stop: killed", d.spec.name),
                );
                fx.push(Effect::KillDaemon(p));
            }
        }
    }
}

/// One of a daemon's output pipes, read by the loop.
pub struct Pipe {
    token: u64,
    fd: OwnedFd,
    /// `<name>-out` or `<name>-err`, upstream's log sources.
    source: String,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
}

/// A line longer than this is logged in parts.
const LINE_MAX: usize = 4096;

/// What a daemon's environment adds to PATH: the Hub client is told the pv-ctrl socket, its
/// one way to the device.
pub fn env(spec: &Spec, rundir: &str) -> Vec<String> {
    if spec.remote {
        let sock = std::path::Path::new(rundir).join("pv-ctrl");
        vec![format!("PV_CTRL_SOCKET={}", sock.display())]
    } else {
        Vec::new()
    }
}

/// Forks and execs `spec` (a plain fork and exec through `sys`, as the hooks): its own
/// session and process group, default signal handling and an empty mask, upstream's tsh PATH
/// and `env` as its whole environment, PID 1's stdin, stdout and stderr into pipes.
fn spawn(spec: &Spec, env: &[String]) -> std::io::Result<(i32, OwnedFd, OwnedFd)> {
    let args = spec
        .argv
        .iter()
        .map(|a| CString::new(*a))
        .collect::<Result<Vec<_>, _>>()?;
    let path = args
        .first()
        .cloned()
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    let argv = CStrArray::new(args);
    let mut vars = vec![CString::new(PATH)?];
    for v in env {
        vars.push(CString::new(v.as_str())?);
    }
    let envp = CStrArray::new(vars);
    let (out_r, out_w) = sys::pipe_cloexec()?;
    let (err_r, err_w) = sys::pipe_cloexec()?;
    // numbered 3 or more, so the child's dup2 onto 1 and 2 cannot clobber one of them
    let out_w = sys::dup_cloexec_min(out_w.as_fd(), 3)?;
    let err_w = sys::dup_cloexec_min(err_w.as_fd(), 3)?;
    let (o, e) = (out_w.as_raw_fd(), err_w.as_raw_fd());
    let (pid, _) = sys::clone_process(0, None, true, &mut || {
        sys::reset_signals();
        if sys::setsid().is_err() || sys::dup2(o, 1).is_err() || sys::dup2(e, 2).is_err() {
            return 127;
        }
        sys::cloexec_from(3);
        let _ = sys::execve(&path, &argv, &envp);
        127
    })?;
    Ok((pid, out_r, err_r))
}

impl Device<'_> {
    /// Carries out [`Effect::SpawnDaemon`]: the testpath, then the spawn, as upstream.
    pub(super) fn spawn_daemon(&mut self, i: usize) -> Option<super::model::Input> {
        use super::model::Input;
        let spec = self.m.daemons.list.get(i)?.spec;
        if !std::path::Path::new(spec.testpath).exists() {
            return Some(Input::DaemonSpawned(i, None));
        }
        match spawn(spec, &env(spec, self.cfg.system_rundir())) {
            Ok((pid, out, err)) => {
                pvlog!(Info, "daemons", "spawned daemon {}: {pid}", spec.name);
                self.watch_daemon_pipe(out, format!("{}-out", spec.name));
                self.watch_daemon_pipe(err, format!("{}-err", spec.name));
                Some(Input::DaemonSpawned(i, Some(pid)))
            }
            Err(e) => {
                pvlog!(
                    Error,
                    "daemons",
                    "error forking child: '{}': {e}",
                    spec.name
                );
                Some(Input::DaemonExited(i))
            }
        }
    }

    fn watch_daemon_pipe(&mut self, fd: OwnedFd, source: String) {
        self.daemon_pipe_serial += 1;
        let token = timers::DAEMON_LOG + (self.daemon_pipe_serial & 0xffff_ffff);
        self.lp.watch(fd.as_raw_fd(), libc::POLLIN, token);
        self.daemon_pipes.push(Pipe {
            token,
            fd,
            source,
            partial: Vec::new(),
        });
    }

    /// A daemon's pipe is readable: its complete lines go to pantavisor's log with the pipe's
    /// source (upstream's log server subscription); at its end, the rest, and it is closed.
    pub(super) fn daemon_output(&mut self, token: u64) {
        let Some(k) = self.daemon_pipes.iter().position(|p| p.token == token) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let Some(p) = self.daemon_pipes.get_mut(k) else {
            return;
        };
        // one read a wake (poll is level-triggered): a chatty daemon cannot hold the loop
        let n = sys::read(p.fd.as_raw_fd(), &mut buf).unwrap_or(0);
        let chunk = buf.get(..n).unwrap_or_default();
        p.partial.extend_from_slice(chunk);
        let cut = if n == 0 || p.partial.len() >= LINE_MAX {
            p.partial.len()
        } else {
            p.partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        if cut > 0 {
            let lines: Vec<u8> = p.partial.drain(..cut).collect();
            crate::logs::append(crate::logs::PANTAVISOR, &p.source, &lines);
        }
        if n == 0 {
            self.lp.unwatch(p.fd.as_raw_fd());
            self.daemon_pipes.swap_remove(k);
        }
    }

    /// A reaped pid that is a daemon's (true) goes to the model.
    pub(super) fn daemon_reaped(&mut self, pid: i32, status: i32) -> bool {
        let Some(i) = self.m.daemons.of_pid(pid) else {
            return false;
        };
        let name = self.m.daemons.list.get(i).map_or("", |d| d.spec.name);
        let how = match sys::decode_wait_status(status) {
            sys::WaitStatus::Exited(c) => format!("exit code {c}"),
            sys::WaitStatus::Signaled(s) => crate::container::signal_name(s).to_string(),
            sys::WaitStatus::Other => return true,
        };
        pvlog!(Info, "daemons", "daemon {name} (pid {pid}) exited: {how}");
        self.feed(super::model::Input::DaemonExited(i));
        true
    }

    /// SIGTERM, SIGKILL or SIGUSR1 (UPDATE_METADATA) to a daemon's process group (it leads
    /// its own).
    pub(super) fn signal_daemon(&self, pid: i32, sig: i32) {
        if let Err(e) = sys::kill(-pid, sig) {
            pvlog!(Warn, "daemons", "kill -{sig} -{pid}: {e}");
        }
    }
}

#[cfg(test)]
#[path = "daemons_tests.rs"]
mod tests;
