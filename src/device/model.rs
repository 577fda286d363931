//! The device state machine, written down: a [`Model`] of everything the device decides on,
//! typed [`Input`]s, and [`step`], a pure function from the two to the [`Effect`]s the
//! interpreter (`device/mod.rs`) carries out. Effects that have a result (a mount, a spawn, a
//! command) come back as inputs.
//!
//! Upstream's top-level states map onto it as follows: INIT is `device::init` (before the
//! model exists); RUN is the model's creation; WAIT is [`Phase::Wait`], where every input
//! ends in [`Input::Evaluate`] (start what may start, the update gates, a queued command);
//! COMMAND is [`Phase::Command`] while a command's work runs; UPDATE is probation
//! ([`super::probation::Gate`]); ROLLBACK records the failure and becomes REBOOT; REBOOT and
//! POWEROFF are [`Phase::Ending`], where containers stop in reverse group order, then the
//! managed daemons (`daemons.rs`), and the device ends once all are down. BLOCK_REBOOT has nothing to wait for here (no debug shell,
//! no Hub progress), and ERROR is INIT's FATAL path.
use super::commands::Command;
use super::containers::Ctr;
use super::daemons::{Daemons, TABLE};
use super::probation::Gate;
use super::timers::{Run, Timer};
use crate::logs::Level;
use crate::supervisor::{self, Status};
use crate::sys::power::Power;
use crate::update::progress::{msg, Status as ProgressStatus};

/// Re-evaluation period, as upstream's WAIT tick.
pub const TICK_MS: u64 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// WAIT: containers supervised toward their goals; commands admitted and run.
    Wait,
    /// COMMAND: a command's work is under way; nothing else is admitted until it ends.
    Command,
    /// REBOOT or POWEROFF: containers stop in reverse group order, then the end.
    Ending(Power),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// The revision's containers, in state order.
    pub ctrs: Vec<Ctr>,
    /// Each group's goal timeout in seconds (its own, else `PV_UPDATER_GOALS_TIMEOUT`).
    pub group_timeouts: Vec<u64>,
    pub phase: Phase,
    /// Probation of the running revision, when it is an update being tried.
    pub gate: Option<Gate>,
    /// The update on probation was entered live (no reboot): it ends UPDATED.
    pub live: bool,
    /// An update on probation failed: the reboot is a rollback.
    pub rollback: bool,
    /// The command pv-ctrl queued, run when nothing else is under way.
    pub command: Option<Command>,
    /// Upstream's managed daemons (`device/daemons.rs`).
    pub daemons: Daemons,
    /// A live update: the containers it replaces, to stop before the new state is adopted.
    pub switch: Option<Vec<String>>,
    pub commit_delay_s: u64,
    /// How long a halted container may take before it is killed.
    pub grace_ms: u64,
    pub next_run: Run,
    /// The revision status last published.
    pub published: Option<Status>,
    /// Upstream's remote mode: the Hub client runs ([`super::daemons::remote_mode`]).
    pub remote: bool,
    /// The running revision is a local one (`locals/...`): no Hub gate on its probation.
    pub local_rev: bool,
    /// Device-meta `pantahub.online` is `1` (the Hub client reaches the Hub).
    pub online: bool,
    /// `PH_UPDATER_NETWORK_TIMEOUT`: how long a remote revision on probation waits for the Hub.
    pub network_timeout_s: u64,
    /// [`Timer::Network`] was armed for this probation.
    pub network_armed: bool,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Something happened: re-evaluate (the WAIT step).
    Evaluate,
    /// A timer fired that was still armed.
    Timer(Timer),
    /// Container `i`'s volumes are mounted.
    Mounted(usize),
    /// Container `i`'s init exec'd.
    Spawned(usize),
    /// Mounting, drivers or spawning container `i` failed.
    StartFailed(usize),
    /// Container `i`'s init exited (reaped), or a stop found it gone.
    Exited(usize),
    /// A signal to PID 1 asked for a reboot or a power off.
    Signal(Power, String),
    /// The command under way ended.
    CommandDone(Outcome),
    /// Daemon `i` was spawned with this pid, or its testpath is missing (`None`).
    DaemonSpawned(usize, Option<i32>),
    /// Daemon `i` was reaped, or its spawn failed.
    DaemonExited(usize),
    /// Device-meta `pantahub.online` changed: `1` (true) or anything else.
    HubOnline(bool),
    /// The running revision changed (boot, live switch): is it local, and the remote mode
    /// the configuration gives it.
    RevisionRuns { local: bool, remote: bool },
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing more to do (GC, a refused or failed update: its progress says why).
    Done,
    /// The update is installed and tried by a reboot.
    Reboot { rev: String },
    /// The update goes live once these containers are stopped.
    Live { stop: Vec<String> },
}

/// What the interpreter must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Mount container `i`'s volumes -> [`Input::Mounted`] or [`Input::StartFailed`].
    Mount(usize),
    /// Load its drivers and spawn its init -> [`Input::Spawned`] or [`Input::StartFailed`].
    Spawn(usize),
    /// Send its halt signal -> [`Input::Exited`] when it ends (at once if it is gone).
    Halt(usize),
    /// Kill it (grace passed).
    Kill(usize),
    /// Unmount the volumes of a container that does not run.
    Unmount(usize),
    Arm(Timer, u64),
    Cancel(Timer),
    /// The progress of the running revision.
    Progress(ProgressStatus, &'static str),
    /// Start or stop capturing ERROR lines into the running revision's update log.
    Capture(bool),
    /// The update held: commit it (reboot update) or record UPDATED (live).
    Finish {
        live: bool,
    },
    /// The update on probation failed: ERROR with this message, rollback follows.
    Fail {
        container: String,
        why: &'static str,
    },
    /// Carry out a command -> [`Input::CommandDone`].
    Run(Command),
    /// The containers a live update replaces are down: adopt its state (see [`Model::adopt`]).
    Adopt,
    /// Publish the revision status (device-meta `pantavisor.status`).
    Publish(Status),
    /// Check daemon `i`'s testpath and spawn it -> [`Input::DaemonSpawned`] or
    /// [`Input::DaemonExited`].
    SpawnDaemon(usize),
    /// SIGTERM to a daemon's process group.
    StopDaemon(i32),
    /// SIGKILL to a daemon's process group.
    KillDaemon(i32),
    /// SIGUSR1 to the Hub client (UPDATE_METADATA: it sends device-meta at once).
    NotifyHub(i32),
    /// Device-meta `pantavisor.mode`: `remote` (true) or `local`.
    Mode(bool),
    /// A line of pantavisor's log from this source (upstream's `src`: the update's captured
    /// ERROR lines name it).
    Log(Level, &'static str, String),
}

impl Model {
    pub fn new(
        ctrs: Vec<Ctr>,
        group_timeouts: Vec<u64>,
        trying: bool,
        commit_delay_s: u64,
        grace_ms: u64,
        mode: crate::config::InitMode,
    ) -> Model {
        Model {
            ctrs,
            group_timeouts,
            phase: Phase::Wait,
            gate: trying.then_some(Gate::InProgress),
            live: false,
            rollback: false,
            command: None,
            daemons: Daemons::new(TABLE, mode),
            switch: None,
            commit_delay_s,
            grace_ms,
            next_run: 0,
            published: None,
            remote: false,
            local_rev: false,
            online: false,
            network_timeout_s: 120,
            network_armed: false,
        }
    }

    /// Upstream's name of the state the device is in.
    pub fn upstream_state(&self) -> &'static str {
        match self.phase {
            Phase::Ending(_) if self.rollback => "ROLLBACK",
            Phase::Ending(Power::Reboot) => "REBOOT",
            Phase::Ending(Power::PowerOff) => "POWEROFF",
            Phase::Command => "COMMAND",
            Phase::Wait if self.on_probation() || self.switch.is_some() => "UPDATE",
            Phase::Wait => "WAIT",
        }
    }

    /// The device may end now, and how.
    pub fn finished(&self) -> Option<Power> {
        match self.phase {
            Phase::Ending(p) if self.all_down() && self.daemons.down() => Some(p),
            _ => None,
        }
    }

    fn evaluate(&mut self, fx: &mut Vec<Effect>) {
        if matches!(self.phase, Phase::Ending(_)) {
            self.stop_last_group(fx);
            // upstream stops its daemons once the containers are
            if self.all_down() {
                self.stop_daemons(fx);
            }
            return;
        }
        self.spawn_daemons(fx);
        if self.switch.is_some() {
            return self.drive_switch(fx);
        }
        self.start_unblocked(fx);
        self.arm_stability(fx);
        self.gates(fx);
        if self.phase == Phase::Wait && !self.on_probation() {
            match self.command.take() {
                // upstream's COMMAND state only flips the mode
                Some(Command::GoRemote) => self.set_remote(true, fx),
                Some(cmd) => {
                    self.phase = Phase::Command;
                    fx.push(Effect::Run(cmd));
                }
                None => {}
            }
        }
        self.publish(fx);
    }

    /// The revision status, the minimum over groups, when it changed.
    fn publish(&mut self, fx: &mut Vec<Effect>) {
        let goals = self.goals();
        let groups: Vec<Status> = (0..self.group_timeouts.len())
            .map(|g| {
                supervisor::group_status(
                    &self
                        .ctrs
                        .iter()
                        .zip(&goals)
                        .filter(|(c, _)| c.group == g)
                        .map(|(c, g)| (c.status, *g))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let s = supervisor::revision_status(&groups);
        if self.published != Some(s) {
            self.published = Some(s);
            fx.push(Effect::Publish(s));
        }
    }

    fn command_done(&mut self, o: Outcome, fx: &mut Vec<Effect>) {
        if self.phase == Phase::Command {
            self.phase = Phase::Wait;
        }
        match o {
            Outcome::Done => {}
            Outcome::Reboot { rev } => self.end(Power::Reboot, &format!("update to {rev}"), fx),
            Outcome::Live { stop } => self.switch = Some(stop),
        }
    }

    /// A live update: stop what it replaces; once all of it is down, adopt.
    fn drive_switch(&mut self, fx: &mut Vec<Effect>) {
        let Some(stop) = self.switch.clone() else {
            return;
        };
        let mut waiting = false;
        for name in &stop {
            let Some(i) = self.index(name) else { continue };
            self.stop(i, fx);
            if let Some(c) = self.ctrs.get_mut(i) {
                c.restart_after_stop = false;
                waiting |= c.status == Status::Stopping;
            }
        }
        if !waiting {
            fx.push(Effect::Adopt);
        }
    }

    /// Adopts the containers of a live update's state (`fresh`, built from it): the ones it
    /// keeps keep running with their runs, counters and timers; changed and new ones start
    /// through the group order; the revision is on probation as after a reboot, ending UPDATED.
    pub fn adopt(&mut self, fresh: Vec<Ctr>, group_timeouts: Vec<u64>) -> Vec<Effect> {
        let stop = self.switch.take().unwrap_or_default();
        let mut old = std::mem::take(&mut self.ctrs);
        self.ctrs = fresh
            .into_iter()
            .map(|f| {
                let kept = old
                    .iter()
                    .position(|o| o.name == f.name && !stop.contains(&o.name))
                    .map(|p| old.swap_remove(p));
                match kept {
                    Some(k) => Ctr {
                        name: f.name,
                        group: f.group,
                        goal: f.goal,
                        restart_policy: f.restart_policy,
                        ar: f.ar,
                        ..k
                    },
                    None => f,
                }
            })
            .collect();
        self.group_timeouts = group_timeouts;
        self.published = None;
        self.live = true;
        self.gate = Some(Gate::InProgress);
        self.network_armed = false;
        vec![
            Effect::Capture(true),
            Effect::Progress(ProgressStatus::Inprogress, msg::TRYING),
        ]
    }
}

/// The device's decision for one input.
pub fn step(m: &mut Model, input: Input, now_ms: u64) -> Vec<Effect> {
    let mut fx = Vec::new();
    match input {
        Input::Evaluate => m.evaluate(&mut fx),
        Input::Timer(Timer::Tick) => fx.push(Effect::Arm(Timer::Tick, TICK_MS)),
        Input::Timer(Timer::Commit) => m.commit_delay_over(),
        Input::Timer(Timer::Hook) => {}
        Input::Timer(Timer::Respawn(i)) => m.respawn_due(i as usize),
        Input::Timer(Timer::DaemonGrace) => m.kill_daemons(&mut fx),
        Input::Timer(Timer::Network) => m.network_timed_out(&mut fx),
        Input::Timer(t) => m.run_timer(t, &mut fx),
        Input::Mounted(i) => m.mounted(i, &mut fx),
        Input::Spawned(i) => m.spawned(i, now_ms, &mut fx),
        Input::StartFailed(i) => m.exited(i, true, now_ms, &mut fx),
        Input::Exited(i) => m.exited(i, false, now_ms, &mut fx),
        Input::Signal(p, why) => m.end(p, &why, &mut fx),
        Input::CommandDone(o) => m.command_done(o, &mut fx),
        Input::DaemonSpawned(i, pid) => m.daemon_spawned(i, pid, &mut fx),
        Input::DaemonExited(i) => m.daemon_exited(i, &mut fx),
        Input::HubOnline(on) => m.hub_online(on, &mut fx),
        Input::RevisionRuns { local, remote } => {
            m.local_rev = local;
            m.set_remote(remote, &mut fx);
        }
    }
    fx
}
