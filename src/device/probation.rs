//! The health gates of an update on probation (upstream's UPDATE): every status goal in
//! time, then TESTING for the commit delay and until every container with a
//! `stable_timeout` is stable, then the commit -- or a rollback on the first failure.
use super::model::{Effect, Model, Phase};
use super::timers::Timer;
use crate::logs::Level;
use crate::supervisor::Goal;
use crate::sys::power::Power;
use crate::update::progress::{msg, Status as ProgressStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Booted (or switched live) into an update: waiting for every goal.
    InProgress,
    /// Goals reached; commit once the delay passed and every container is stable.
    /// `holding`: the delay passed and the commit waits for stability (said once).
    Testing { delay_over: bool, holding: bool },
    /// Committed, or failed and rolling back.
    Done,
}

impl Model {
    /// An update is queued, being installed or switched to, or on probation: other updates,
    /// power commands, user GC and MAKE_FACTORY wait (503).
    pub fn update_active(&self) -> bool {
        self.switch.is_some()
            || self.phase == Phase::Command
            || matches!(
                self.command,
                Some(
                    super::commands::Command::LocalRun { .. }
                        | super::commands::Command::RemoteRun { .. }
                )
            )
            || self.on_probation()
    }

    pub fn on_probation(&self) -> bool {
        matches!(self.gate, Some(Gate::InProgress | Gate::Testing { .. }))
    }

    /// Upstream's remote-only gate (`pv_wait_network`): a Hub revision on probation in remote
    /// mode goes on to TESTING only once the Hub client reports the Hub reachable
    /// (`pantahub.online` 1); a local revision never waits for the Hub.
    pub fn waits_for_hub(&self) -> bool {
        self.hub_gated() && !self.online
    }

    fn hub_gated(&self) -> bool {
        self.remote && !self.local_rev && self.gate == Some(Gate::InProgress)
    }

    /// `pantahub.online` changed. Upstream's `pv_wait_network` rolls a Hub revision back when
    /// the Hub communication fails while TESTING; here when the Hub client reports the Hub
    /// lost (online to offline) then.
    pub(super) fn hub_online(&mut self, on: bool, fx: &mut Vec<Effect>) {
        let lost = self.online && !on;
        self.online = on;
        let testing = matches!(self.gate, Some(Gate::Testing { .. }));
        if lost && testing && self.remote && !self.local_rev {
            self.failed("", msg::HUB_UNSTABLE, fx);
        }
    }

    /// [`Timer::Network`]: a Hub revision still waiting for the Hub rolls back.
    pub(super) fn network_timed_out(&mut self, fx: &mut Vec<Effect>) {
        if self.waits_for_hub() {
            self.failed("", msg::HUB_UNREACHABLE, fx);
        }
    }

    pub(super) fn gates(&mut self, fx: &mut Vec<Effect>) {
        let Some(gate) = self.gate else { return };
        let goals = self.goals();
        if self.hub_gated() && !self.network_armed {
            // upstream arms it as the revision starts to run; it matters only here
            self.network_armed = true;
            fx.push(Effect::Arm(
                Timer::Network,
                self.network_timeout_s.saturating_mul(1000),
            ));
            if !self.online {
                fx.push(Effect::Log(
                    Level::Warn,
                    "controller",
                    format!(
                        "no connection. Will rollback in {} seconds",
                        self.network_timeout_s
                    ),
                ));
            }
        }
        match gate {
            Gate::InProgress => {
                let late = self
                    .ctrs
                    .iter()
                    .zip(&goals)
                    .find(|(_, g)| **g == Goal::TimedOut)
                    .map(|(c, _)| c.name.clone());
                if let Some(name) = late {
                    return self.failed(&name, msg::GOAL_TIMEOUT, fx);
                }
                if goals
                    .iter()
                    .all(|g| matches!(g, Goal::Achieved | Goal::NotBlocking))
                    && !self.waits_for_hub()
                {
                    let m = if self.live {
                        msg::TESTING_LIVE
                    } else {
                        msg::TESTING_REBOOT
                    };
                    fx.push(Effect::Progress(ProgressStatus::Testing, m));
                    if self.network_armed {
                        fx.push(Effect::Cancel(Timer::Network));
                    }
                    fx.push(Effect::Arm(
                        Timer::Commit,
                        self.commit_delay_s.saturating_mul(1000),
                    ));
                    self.gate = Some(Gate::Testing {
                        delay_over: false,
                        holding: false,
                    });
                }
            }
            Gate::Testing {
                delay_over: true,
                holding,
            } => {
                let waiting = self.ctrs.iter().any(|c| {
                    c.ar.stable_timeout > 0 && !c.stable && !c.recovery_failed && !c.user_stopped
                });
                if !waiting {
                    self.gate = Some(Gate::Done);
                    fx.push(Effect::Finish { live: self.live });
                    self.live = false;
                } else if !holding {
                    fx.push(Effect::Progress(ProgressStatus::Testing, msg::WAIT_STABLE));
                    self.gate = Some(Gate::Testing {
                        delay_over: true,
                        holding: true,
                    });
                }
            }
            Gate::Testing {
                delay_over: false, ..
            }
            | Gate::Done => {}
        }
    }

    pub(super) fn commit_delay_over(&mut self) {
        if let Some(Gate::Testing { holding, .. }) = self.gate {
            self.gate = Some(Gate::Testing {
                delay_over: true,
                holding,
            });
        }
    }

    /// A container failed for good: an update on probation rolls back (ERROR recorded, then
    /// a reboot the bootloader falls back from), a steady device reboots.
    pub(super) fn failed(&mut self, name: &str, why: &'static str, fx: &mut Vec<Effect>) {
        // upstream's verdict lines: the ERROR lines an update's progress `logs` carry
        if why == msg::GOAL_TIMEOUT {
            fx.push(Effect::Log(
                Level::Error,
                "controller",
                "timed out before all goals were met. Rolling back...".into(),
            ));
        } else if why == msg::HUB_UNREACHABLE {
            fx.push(Effect::Log(
                Level::Error,
                "controller",
                "timed out before getting any response from cloud. Rolling back...".into(),
            ));
        } else if why == msg::HUB_UNSTABLE {
            fx.push(Effect::Log(
                Level::Error,
                "controller",
                "connection with cloud not stable during testing, Rolling back...".into(),
            ));
        } else {
            fx.push(Effect::Log(
                Level::Error,
                "state",
                format!("platform '{name}' is not running"),
            ));
            fx.push(Effect::Log(
                Level::Error,
                "controller",
                "a platform did not work as expected. Tearing down...".into(),
            ));
        }
        if self.on_probation() {
            fx.push(Effect::Fail {
                container: name.to_string(),
                why,
            });
            self.gate = Some(Gate::Done);
            self.rollback = true;
            self.end(Power::Reboot, "rolling back", fx);
        } else {
            self.end(
                Power::Reboot,
                &format!("container {name} failed without recovery"),
                fx,
            );
        }
    }

    /// REBOOT or POWEROFF: from here containers stop in reverse group order.
    pub(super) fn end(&mut self, p: Power, why: &str, fx: &mut Vec<Effect>) {
        if matches!(self.phase, Phase::Ending(_)) {
            return;
        }
        let what = if p == Power::Reboot {
            "rebooting"
        } else {
            "powering off"
        };
        fx.push(Effect::Log(
            Level::Info,
            "device",
            format!("{what} ({why})"),
        ));
        self.phase = Phase::Ending(p);
    }
}
