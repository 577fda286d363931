//! What pv-ctrl hands the device, and the device's answer. pv-ctrl parses and checks the HTTP
//! shape; whether a request is admitted -- a container action in its current status, a command
//! while another waits or an update is under way -- is decided here, once, on the device's own
//! model, and an admitted request changes the model at once.
use super::containers::running;
use super::model::{Effect, Model, Phase};
use super::timers::Timer;
use crate::logs::Level;
use crate::state::RestartPolicy;
use crate::supervisor::{Action, Event, Status};
use crate::sys::power::Power;

/// The commands the device runs later, one at a time (upstream's COMMAND state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// LOCAL_RUN (`commit: false`) or LOCAL_RUN_COMMIT (`commit: true`: reboot transition).
    LocalRun {
        rev: String,
        commit: bool,
    },
    /// REMOTE_RUN (the Hub client, host only): install Hub revision `rev`, admitted and
    /// downloaded, as LOCAL_RUN installs.
    RemoteRun {
        rev: String,
    },
    /// GO_REMOTE: remote mode until the next revision runs.
    GoRemote,
    /// MAKE_FACTORY: the state of `rev` becomes revision 0, which is then run.
    MakeFactory {
        rev: String,
    },
    RunGc,
    /// ENABLE_SSH (true) / DISABLE_SSH (false): PV_DEBUG_SSH at the command level.
    DebugSsh(bool),
    /// DEFER_REBOOT with the new debug-shell timeout.
    DeferReboot(String),
}

/// A user's action on a `restart_policy: container` container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrAction {
    Start,
    Stop,
    Restart,
}

/// A request from pv-ctrl, already well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A process of this container signalled `ready`.
    Ready(String),
    Container(String, CtrAction),
    Command(Command),
    /// REBOOT_DEVICE / POWEROFF_DEVICE with the reason.
    Power(Power, String),
    /// POST /storage/gc: run now, answer what was reclaimed.
    Gc,
    /// PUT /daemons/{name}: start (true) or stop (false).
    Daemon(String, bool),
    /// UPDATE_METADATA: the Hub client sends device-meta now.
    UpdateMetadata,
}

/// Why a request was refused; pv-ctrl turns it into upstream's status and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Another command waits or runs, or the device is ending (503, retry later).
    Busy,
    /// An update is queued, in progress or on probation (503, retry later).
    UpdateActive,
    /// The boot env cannot be read: what it protects cannot be known (409).
    NoBootEnv(String),
    /// Revision 0 is running, committed or tried: it is the rollback point (409).
    FactoryInUse,
    UnknownContainer,
    UnknownDaemon,
    /// UPDATE_METADATA in local mode (409).
    LocalMode,
    /// GO_REMOTE in remote mode (204, as upstream).
    AlreadyRemote,
    /// Not a `restart_policy: container` container (403).
    NotOurs,
    /// The action is not possible in the container's status (400).
    BadStatus,
    /// Not a container whose goal is READY, or not a `ready` signal (500).
    SignalUnexpected,
    /// The storage failed (GC).
    Storage {
        no_space: bool,
        reason: String,
    },
}

/// A helper process of upstream's daemon table, as `/daemons` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub name: &'static str,
    /// Upstream's values: the daemon's pid, 0 when it does not run (never spawned, not
    /// found, or its respawn due), -1 when it ended with respawn cleared.
    pub pid: i32,
    pub respawn: bool,
}

/// What an admitted request answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// The answer comes once the work named by this ticket ends (POST /storage/gc).
    Deferred(u64),
}

impl Model {
    /// A command or a power request may be taken now?
    pub fn admit(&self, during_update_ok: bool) -> Result<(), Refusal> {
        if self.command.is_some() || self.phase != Phase::Wait {
            return Err(Refusal::Busy);
        }
        if self.update_active() && !during_update_ok {
            return Err(Refusal::UpdateActive);
        }
        Ok(())
    }

    /// Decides `r` on the model and applies it; the effects are the device's to carry out.
    /// GC's own work (reading the boot env, removing) is the caller's once this admitted it.
    pub fn request(&mut self, r: Request) -> Result<(Answer, Vec<Effect>), Refusal> {
        let mut fx = Vec::new();
        match r {
            Request::Ready(name) => self.ready(&name, &mut fx)?,
            Request::Container(name, action) => self.user_action(&name, action, &mut fx)?,
            Request::Power(p, why) => {
                self.admit(false)?;
                self.end(p, &why, &mut fx);
            }
            Request::Command(Command::GoRemote) if self.remote => {
                return Err(Refusal::AlreadyRemote)
            }
            Request::Command(c) => {
                // upstream refuses only updates, power and UNCLAIM while an update is on
                self.admit(matches!(
                    c,
                    Command::DebugSsh(_) | Command::DeferReboot(_) | Command::GoRemote
                ))?;
                fx.push(Effect::Log(
                    Level::Info,
                    "device",
                    format!("command queued: {c:?}"),
                ));
                self.command = Some(c);
            }
            Request::Gc => {
                // the GC runs on the worker: nothing else is admitted until it ends
                self.admit(false)?;
                self.phase = Phase::Command;
            }
            Request::Daemon(name, start) => self.daemon_action(&name, start, &mut fx)?,
            Request::UpdateMetadata => {
                if !self.remote {
                    return Err(Refusal::LocalMode);
                }
                if let Some(pid) = self.daemons.hub_pid() {
                    fx.push(Effect::NotifyHub(pid));
                }
            }
        }
        Ok((Answer::Ok, fx))
    }

    /// POST /signal `ready` (upstream: only for a container whose goal is READY).
    fn ready(&mut self, name: &str, fx: &mut Vec<Effect>) -> Result<(), Refusal> {
        let i = self.index(name).ok_or(Refusal::SignalUnexpected)?;
        if self.ctrs.get(i).is_some_and(|c| c.status == Status::Ready) {
            return Ok(());
        }
        match self.transition(i, Event::SignalReady) {
            Action::Become(Status::Ready) => {
                fx.push(Effect::Log(
                    Level::Info,
                    "device",
                    format!("container {name}: READY (signalled)"),
                ));
                Ok(())
            }
            _ => Err(Refusal::SignalUnexpected),
        }
    }

    /// PUT /containers/{name}: upstream's user actions. stop: a lenient stop, then
    /// `user_stopped` (no retry consumed, not restarted); start: from STOPPED/RECOVERING with
    /// fresh retries, from STOPPING once stopped, running is a no-op; restart: running is
    /// stopped then started, STOPPED/RECOVERING start at once.
    fn user_action(
        &mut self,
        name: &str,
        action: CtrAction,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refusal> {
        let i = self.index(name).ok_or(Refusal::UnknownContainer)?;
        let Some(c) = self.ctrs.get(i) else {
            return Err(Refusal::UnknownContainer);
        };
        if c.restart_policy != RestartPolicy::Container {
            return Err(Refusal::NotOurs);
        }
        let status = c.status;
        let is_running = running(status);
        let resting = matches!(status, Status::Stopped | Status::Recovering);
        let ok = match action {
            CtrAction::Start => is_running || resting || status == Status::Stopping,
            CtrAction::Stop => true,
            CtrAction::Restart => is_running || resting,
        };
        if !ok {
            return Err(Refusal::BadStatus);
        }
        fx.push(Effect::Log(
            Level::Info,
            "device",
            format!("container {name}: {action:?} asked"),
        ));
        match action {
            CtrAction::Start if is_running => {}
            CtrAction::Stop => {
                self.stop(i, fx);
                if let Some(c) = self.ctrs.get_mut(i) {
                    c.user_stopped = true;
                    c.restart_after_stop = false;
                }
            }
            CtrAction::Start | CtrAction::Restart if resting => self.start_again(i, fx),
            CtrAction::Start | CtrAction::Restart => {
                self.stop(i, fx);
                if let Some(c) = self.ctrs.get_mut(i) {
                    c.restart_after_stop = true;
                }
            }
        }
        Ok(())
    }

    /// A STOPPED or RECOVERING container goes back to INSTALLED with fresh retries.
    pub(super) fn start_again(&mut self, i: usize, fx: &mut Vec<Effect>) {
        if self.transition(i, Event::StartRequested) != Action::Restart {
            return;
        }
        if let Some(c) = self.ctrs.get_mut(i) {
            fx.push(Effect::Cancel(Timer::Retry(c.run)));
            c.restart_after_stop = false;
            c.user_stopped = false;
            c.counters = Default::default();
        }
    }
}
