//! The container table and its decisions: start in group order, exits through auto-recovery,
//! stops, the timers of each run. Every status change goes through `supervisor::next`
//! ([`Model::transition`]); nothing here touches the engine -- the effects say what to do.
use super::model::{Effect, Model, Phase};
use super::timers::{Run, Timer};
use crate::logs::Level;
use crate::state::{AutoRecovery, RestartPolicy, State, StatusGoal};
use crate::supervisor::recovery::{self, Counters, Decision};
use crate::supervisor::{self, check_goal, Action, Event, Goal, Status};
use crate::update::progress::msg;

#[derive(Clone, Debug, PartialEq)]
pub struct Ctr {
    pub name: String,
    /// Index of its group in the state's group order.
    pub group: usize,
    pub goal: StatusGoal,
    pub restart_policy: RestartPolicy,
    pub status: Status,
    pub ar: AutoRecovery,
    pub counters: Counters,
    /// The current (or last) start; 0 = never started. Its timers carry it.
    pub run: Run,
    pub started_ms: u64,
    /// The stability timer of this run was armed (once, when the goal was first reached).
    pub stable_armed: bool,
    pub timed_out: bool,
    pub stable: bool,
    pub recovery_failed: bool,
    /// Stopped through pv-ctrl: not restarted, not waited for.
    pub user_stopped: bool,
    /// Start again once the stop in progress ends (restart, or start while STOPPING).
    pub restart_after_stop: bool,
}

impl Ctr {
    pub fn new(state: &State, c: &crate::state::Container) -> Ctr {
        let group = state
            .groups()
            .iter()
            .position(|g| g.name == c.group)
            .unwrap_or(0);
        Ctr::installed(
            &c.name,
            group,
            c.status_goal,
            c.restart_policy,
            state.effective_auto_recovery(c),
        )
    }

    /// A container that was never started.
    pub fn installed(
        name: &str,
        group: usize,
        goal: StatusGoal,
        restart_policy: RestartPolicy,
        ar: AutoRecovery,
    ) -> Ctr {
        Ctr {
            name: name.to_string(),
            group,
            goal,
            restart_policy,
            status: Status::Installed,
            ar,
            counters: Counters::default(),
            run: 0,
            started_ms: 0,
            stable_armed: false,
            timed_out: false,
            stable: false,
            recovery_failed: false,
            user_stopped: false,
            restart_after_stop: false,
        }
    }

    pub fn goal_check(&self) -> Goal {
        check_goal(self.status, self.goal, self.timed_out)
    }
}

/// Its init runs (or is being started).
pub fn running(s: Status) -> bool {
    matches!(s, Status::Starting | Status::Started | Status::Ready)
}

/// Something of it is still up: an init, or mounted volumes.
fn up(s: Status) -> bool {
    running(s) || matches!(s, Status::Stopping | Status::Mounted)
}

impl Model {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.ctrs.iter().position(|c| c.name == name)
    }

    fn by_run(&self, run: Run) -> Option<usize> {
        self.ctrs.iter().position(|c| c.run == run && run != 0)
    }

    /// Feeds `event` to the status table and takes the status it implies; the caller carries
    /// out the action's effects.
    pub(super) fn transition(&mut self, i: usize, event: Event) -> Action {
        let Some(c) = self.ctrs.get_mut(i) else {
            return Action::Ignore;
        };
        let action = supervisor::next(c.status, event, c.goal);
        match action {
            Action::Become(s) => c.status = s,
            Action::Spawn => c.status = Status::Starting,
            Action::Halt => c.status = Status::Stopping,
            Action::Unmount | Action::Recover => c.status = Status::Stopped,
            Action::Restart => c.status = Status::Installed,
            Action::Mount | Action::Kill | Action::Ignore => {}
        }
        action
    }

    pub fn goals(&self) -> Vec<Goal> {
        self.ctrs.iter().map(Ctr::goal_check).collect()
    }

    /// The goal of group `g` from its members'.
    fn group_goal(&self, g: usize, goals: &[Goal]) -> Goal {
        supervisor::group_goal(
            &self
                .ctrs
                .iter()
                .zip(goals)
                .filter(|(c, _)| c.group == g)
                .map(|(_, g)| *g)
                .collect::<Vec<_>>(),
        )
    }

    /// Upstream's start ordering: each INSTALLED or BLOCKED container, in state order, is
    /// mounted when every earlier group is ACHIEVED or TIMEDOUT, else BLOCKED.
    pub(super) fn start_unblocked(&mut self, fx: &mut Vec<Effect>) {
        for i in 0..self.ctrs.len() {
            let goals = self.goals();
            let Some(c) = self.ctrs.get(i) else { continue };
            if !matches!(c.status, Status::Installed | Status::Blocked) {
                continue;
            }
            let earlier: Vec<Goal> = (0..c.group.min(self.group_timeouts.len()))
                .map(|g| self.group_goal(g, &goals))
                .collect();
            let event = if supervisor::may_start(&earlier) {
                Event::Unblocked
            } else {
                Event::Blocked
            };
            if self.transition(i, event) == Action::Mount {
                self.next_run = self.next_run.wrapping_add(1).max(1);
                let run = self.next_run;
                if let Some(c) = self.ctrs.get_mut(i) {
                    c.run = run;
                }
                fx.push(Effect::Mount(i));
            }
        }
    }

    /// Its volumes are mounted: a MOUNTED-goal container stops there, others are spawned.
    pub(super) fn mounted(&mut self, i: usize, fx: &mut Vec<Effect>) {
        if self.transition(i, Event::Mounted) == Action::Spawn {
            fx.push(Effect::Spawn(i));
        }
    }

    /// Its init exec'd: STARTED, and the run's goal timer (its group's timeout) is armed.
    pub(super) fn spawned(&mut self, i: usize, now_ms: u64, fx: &mut Vec<Effect>) {
        if self.transition(i, Event::Execed) != Action::Become(Status::Started) {
            return;
        }
        let timeout = self
            .ctrs
            .get(i)
            .and_then(|c| self.group_timeouts.get(c.group))
            .copied()
            .unwrap_or(120);
        if let Some(c) = self.ctrs.get_mut(i) {
            c.started_ms = now_ms;
            c.timed_out = false;
            c.stable = false;
            c.stable_armed = false;
            c.recovery_failed = false;
            fx.push(Effect::Arm(
                Timer::Goal(c.run),
                timeout.saturating_mul(1000),
            ));
        }
    }

    /// The run's timers die with it.
    fn end_run(&mut self, i: usize, fx: &mut Vec<Effect>) {
        if let Some(c) = self.ctrs.get_mut(i) {
            for t in [
                Timer::Goal(c.run),
                Timer::Stable(c.run),
                Timer::Grace(c.run),
            ] {
                fx.push(Effect::Cancel(t));
            }
            c.stable = false;
            c.stable_armed = false;
        }
    }

    /// Its init exited (`start_failed`: mounting, drivers or spawn failed, which counts as an
    /// exit of a run that lasted nothing).
    pub(super) fn exited(
        &mut self,
        i: usize,
        start_failed: bool,
        now_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        let event = if start_failed {
            Event::StartFailed
        } else {
            Event::Exited
        };
        let action = self.transition(i, event);
        if !matches!(action, Action::Recover | Action::Unmount) {
            return; // stale: not a run of ours
        }
        self.end_run(i, fx);
        if matches!(self.phase, Phase::Ending(_)) {
            return;
        }
        if action == Action::Unmount {
            // a stop we asked for ended (the engine cleaned up); a restart may follow
            if self.ctrs.get(i).is_some_and(|c| c.restart_after_stop) {
                self.start_again(i, fx);
            }
            return;
        }
        let update_active = self.update_active();
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        let ran_for = if start_failed {
            0
        } else {
            now_ms.saturating_sub(c.started_ms) / 1000
        };
        let (d, counters) = recovery::on_exit(&c.ar, c.counters, ran_for, update_active);
        c.counters = counters;
        let (name, run, retries) = (c.name.clone(), c.run, counters.retries);
        match d {
            Decision::Retry { delay: 0 } => {
                self.transition(i, Event::RetryNow);
                fx.push(Effect::Log(
                    Level::Info,
                    "device",
                    format!("container {name}: restarting now (retry {retries})"),
                ));
            }
            Decision::Retry { delay } | Decision::Wait { delay } => {
                self.transition(i, Event::RetryLater);
                fx.push(Effect::Log(
                    Level::Info,
                    "device",
                    format!("container {name}: restarting in {delay} s (retry {retries})"),
                ));
                fx.push(Effect::Arm(Timer::Retry(run), delay.saturating_mul(1000)));
            }
            Decision::GiveUp => {
                c.recovery_failed = true;
                fx.push(Effect::Log(
                    Level::Error,
                    "device",
                    format!(
                        "container {name}: retries exhausted, left stopped (backoff_policy never)"
                    ),
                ));
            }
            Decision::Error => self.failed(&name, msg::CONTAINER_FAILED, fx),
        }
    }

    /// Asks container `i` to stop: a running one gets its halt signal and the grace timer
    /// (STOPPING until it exits), a mounted or waiting one is unmounted (STOPPED).
    pub(super) fn stop(&mut self, i: usize, fx: &mut Vec<Effect>) {
        let Some(run) = self.ctrs.get(i).map(|c| c.run) else {
            return;
        };
        match self.transition(i, Event::StopRequested) {
            Action::Halt => {
                fx.push(Effect::Halt(i));
                fx.push(Effect::Arm(Timer::Grace(run), self.grace_ms));
            }
            Action::Unmount => {
                fx.push(Effect::Cancel(Timer::Retry(run)));
                fx.push(Effect::Unmount(i));
            }
            _ => {}
        }
    }

    /// A timer of a container's run fired (it was still armed: its run is current).
    pub(super) fn run_timer(&mut self, t: Timer, fx: &mut Vec<Effect>) {
        let run = match t {
            Timer::Goal(r) | Timer::Stable(r) | Timer::Retry(r) | Timer::Grace(r) => r,
            _ => return,
        };
        let Some(i) = self.by_run(run) else { return };
        match t {
            Timer::Goal(_) => {
                let Some(c) = self.ctrs.get_mut(i) else {
                    return;
                };
                if check_goal(c.status, c.goal, false) == Goal::Unachieved
                    && c.status >= Status::Starting
                {
                    c.timed_out = true;
                    let secs = self.group_timeouts.get(c.group).copied().unwrap_or(0);
                    fx.push(Effect::Log(
                        Level::Error,
                        "platforms",
                        format!(
                            "platform '{}' status goal timed out after waiting for more than {secs} secs",
                            c.name
                        ),
                    ));
                }
            }
            Timer::Stable(_) => {
                if let Some(c) = self.ctrs.get_mut(i) {
                    c.stable = matches!(c.status, Status::Started | Status::Ready);
                }
            }
            Timer::Retry(_) => {
                self.transition(i, Event::RetryTimer);
            }
            Timer::Grace(_) if self.transition(i, Event::GraceExpired) == Action::Kill => {
                fx.push(Effect::Kill(i));
            }
            _ => {}
        }
    }

    /// Containers that reached their goal arm their run's stability timer, once.
    pub(super) fn arm_stability(&mut self, fx: &mut Vec<Effect>) {
        for c in &mut self.ctrs {
            if c.run != 0
                && !c.stable_armed
                && !c.stable
                && c.ar.stable_timeout > 0
                && check_goal(c.status, c.goal, false) == Goal::Achieved
            {
                c.stable_armed = true;
                fx.push(Effect::Arm(
                    Timer::Stable(c.run),
                    u64::from(c.ar.stable_timeout) * 1000,
                ));
            }
        }
    }

    /// Shutdown order: the last group that still has something up is stopped first.
    pub(super) fn stop_last_group(&mut self, fx: &mut Vec<Effect>) {
        let Some(last) = self
            .ctrs
            .iter()
            .filter(|c| up(c.status))
            .map(|c| c.group)
            .max()
        else {
            return;
        };
        for i in 0..self.ctrs.len() {
            if self.ctrs.get(i).is_some_and(|c| c.group == last) {
                self.stop(i, fx);
            }
        }
    }

    /// Nothing of any container is up.
    pub fn all_down(&self) -> bool {
        self.ctrs.iter().all(|c| !up(c.status))
    }
}
